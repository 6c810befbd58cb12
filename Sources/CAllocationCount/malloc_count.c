// Replacements of the glibc allocation entry points that count calls (see CAllocationCount.h).
#include "CAllocationCount.h"

#define _GNU_SOURCE
#include <errno.h>
#include <link.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

// glibc's own allocator, exported under these names by every glibc since 2.0.
extern void *__libc_malloc(size_t size);
extern void *__libc_calloc(size_t count, size_t size);
extern void *__libc_realloc(void *pointer, size_t size);
extern void *__libc_memalign(size_t alignment, size_t size);
extern void *__libc_valloc(size_t size);
extern void *__libc_pvalloc(size_t size);

static unsigned long long allocations;
static unsigned long long excluded_allocations;

// Code segments of excluded libraries, [start, end). Written by pt_allocation_exclude_libraries
// while nothing is measured (the count is published last, with release order).
enum { MAX_SEGMENTS = 256 };
static uintptr_t segment_start[MAX_SEGMENTS], segment_end[MAX_SEGMENTS];
static int segment_count;

static inline int excluded(uintptr_t caller) {
    int n = __atomic_load_n(&segment_count, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++) {
        if (caller >= segment_start[i] && caller < segment_end[i]) return 1;
    }
    return 0;
}

// Inlined into each entry point, so the return address is that of the entry point's caller.
#define count_one() \
    __atomic_fetch_add(excluded((uintptr_t)__builtin_return_address(0)) ? &excluded_allocations : &allocations, \
                       1, __ATOMIC_RELAXED)

unsigned long long pt_allocation_count(void) { return __atomic_load_n(&allocations, __ATOMIC_RELAXED); }

unsigned long long pt_allocation_count_excluded(void) {
    return __atomic_load_n(&excluded_allocations, __ATOMIC_RELAXED);
}

struct exclusion { const char *const *substrings; int count; int segments; int overflow; };

static int add_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct exclusion *e = data;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    int match = 0;
    for (int i = 0; i < e->count && !match; i++) match = name[0] != 0 && strstr(name, e->substrings[i]) != NULL;
    if (!match) return 0;
    for (int h = 0; h < info->dlpi_phnum; h++) {
        const ElfW(Phdr) *p = &info->dlpi_phdr[h];
        if (p->p_type != PT_LOAD || !(p->p_flags & PF_X)) continue;
        if (e->segments == MAX_SEGMENTS) { e->overflow = 1; return 1; }
        segment_start[e->segments] = info->dlpi_addr + p->p_vaddr;
        segment_end[e->segments] = info->dlpi_addr + p->p_vaddr + p->p_memsz;
        e->segments++;
    }
    return 0;
}

int pt_allocation_exclude_libraries(const char *const *substrings, int count) {
    __atomic_store_n(&segment_count, 0, __ATOMIC_RELEASE);
    struct exclusion e = { substrings, count, 0, 0 };
    dl_iterate_phdr(add_object, &e);
    __atomic_store_n(&segment_count, e.segments, __ATOMIC_RELEASE);
    return e.overflow ? -1 : e.segments;
}

void pt_allocation_probe(unsigned long bytes) {
    // volatile: the compiler may not remove the malloc/free pair.
    void *volatile pointer = malloc(bytes);
    free(pointer);
}

void *malloc(size_t size) { count_one(); return __libc_malloc(size); }
void *calloc(size_t count, size_t size) { count_one(); return __libc_calloc(count, size); }
void *realloc(void *pointer, size_t size) { count_one(); return __libc_realloc(pointer, size); }
void *memalign(size_t alignment, size_t size) { count_one(); return __libc_memalign(alignment, size); }
void *valloc(size_t size) { count_one(); return __libc_valloc(size); }
void *pvalloc(size_t size) { count_one(); return __libc_pvalloc(size); }

void *aligned_alloc(size_t alignment, size_t size) {
    count_one();
    if (alignment == 0 || (alignment & (alignment - 1)) != 0) { errno = EINVAL; return NULL; }
    return __libc_memalign(alignment, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
    count_one();
    if (alignment < sizeof(void *) || (alignment & (alignment - 1)) != 0) return EINVAL;
    void *pointer = __libc_memalign(alignment, size);
    if (pointer == NULL && size != 0) return ENOMEM;
    *result = pointer;
    return 0;
}
