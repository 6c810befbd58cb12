// Software prefetch and streaming (non-temporal) stores for the Swift kernels (Swift has neither): inlined into the caller.
#ifndef CPTPREFETCH_H
#define CPTPREFETCH_H

/// Asks for the cache line holding `p` in L2 (and the outer levels); changes no result.
static inline __attribute__((always_inline)) void pt_prefetch_l2(const void *p) { __builtin_prefetch(p, 0, 2); }

/// Stores the 64 bytes at `v` to `p` (64-byte aligned) around the caches (a non-temporal store: the line is not
/// read first); changes no result. `pt_stream_fence` after the last one orders them before later stores.
typedef float pt_float16_vector __attribute__((ext_vector_type(16)));
static inline __attribute__((always_inline)) void pt_stream_store64(void *p, const void *v) {
    __builtin_nontemporal_store(*(const pt_float16_vector *)v, (pt_float16_vector *)p);
}
static inline __attribute__((always_inline)) void pt_stream_fence(void) {
#if defined(__x86_64__)
    __builtin_ia32_sfence();
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

#endif
