// Software prefetch for the Swift kernels (Swift has no prefetch of its own): inlined into the caller.
#ifndef CPTPREFETCH_H
#define CPTPREFETCH_H

/// Asks for the cache line holding `p` in L2 (and the outer levels); changes no result.
static inline __attribute__((always_inline)) void pt_prefetch_l2(const void *p) { __builtin_prefetch(p, 0, 2); }

#endif
