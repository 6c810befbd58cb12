// Counts heap allocations of the whole process, for the allocation gate (`allocation-gate`).
//
// Linking this target into an executable replaces malloc, calloc, realloc, posix_memalign,
// aligned_alloc, memalign, valloc and pvalloc for every thread and every shared library of the
// process (the executable's definitions come first in symbol lookup). Each call adds one to a
// process-wide counter and forwards to glibc's allocator (__libc_malloc and friends), so free()
// needs no replacement. Only for measuring programs: never link it into ptrain or the library.
#ifndef CALLOCATIONCOUNT_H
#define CALLOCATIONCOUNT_H

/// Allocation calls (malloc, calloc, realloc, the aligned variants) made so far by all threads.
unsigned long long pt_allocation_count(void);

/// Allocates `bytes` with malloc and frees it: a known allocation for the counter's self-check.
void pt_allocation_probe(unsigned long bytes);

#endif
