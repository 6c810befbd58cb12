// Counts heap allocations of the whole process, for the allocation gate (`allocation-gate`).
//
// Linking this target into an executable replaces malloc, calloc, realloc, posix_memalign,
// aligned_alloc, memalign, valloc and pvalloc for every thread and every shared library of the
// process (the executable's definitions come first in symbol lookup). Each call adds one to a
// process-wide counter and forwards to glibc's allocator (__libc_malloc and friends), so free()
// needs no replacement. Only for measuring programs: never link it into ptrain or the library.
#ifndef CALLOCATIONCOUNT_H
#define CALLOCATIONCOUNT_H

/// Allocation calls (malloc, calloc, realloc, the aligned variants) made so far by all threads,
/// except those called directly from the code of an excluded library (see below).
unsigned long long pt_allocation_count(void);

/// Allocation calls made directly from the code of the excluded libraries (counted apart).
unsigned long long pt_allocation_count_excluded(void);

/// Counts allocations called directly from the code of every loaded shared object whose path
/// contains one of the `count` strings apart (`pt_allocation_count_excluded`). Replaces the
/// previous set; call it when the libraries are loaded (e.g. after MPI_Init) and before
/// measuring. Only the immediate caller decides: an allocation that a library makes through
/// another library (say libc's strdup) still counts as an allocation. Returns the number of
/// code segments excluded, or -1 when there are too many to record.
int pt_allocation_exclude_libraries(const char *const *substrings, int count);

/// Allocates `bytes` with malloc and frees it: a known allocation for the counter's self-check.
void pt_allocation_probe(unsigned long bytes);

#endif
