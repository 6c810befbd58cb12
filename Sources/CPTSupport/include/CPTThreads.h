// Atomics, futex and CPU helpers for the worker pool's barrier. Swift cannot call the variadic
// syscall(2), and these are static inline so the atomics inline into the Swift caller.
#ifndef CPTTHREADS_H
#define CPTTHREADS_H

#include <stdint.h>

/// Acquire load of a 32-bit word.
static inline uint32_t pt_atomic_load_acquire_u32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

/// Sequentially consistent load of a 32-bit word (pairs with the seq_cst stores below).
static inline uint32_t pt_atomic_load_seqcst_u32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_SEQ_CST);
}

/// Relaxed load of a 32-bit word.
static inline uint32_t pt_atomic_load_relaxed_u32(const uint32_t *p) {
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

/// Release store of a 32-bit word.
static inline void pt_atomic_store_release_u32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/// Relaxed store of a 32-bit word.
static inline void pt_atomic_store_relaxed_u32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

/// Sequentially consistent store of a 32-bit word.
static inline void pt_atomic_store_seqcst_u32(uint32_t *p, uint32_t v) {
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
}

/// Atomic add returning the previous value (acquire-release).
static inline uint32_t pt_atomic_fetch_add_acqrel_u32(uint32_t *p, uint32_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_ACQ_REL);
}

/// Atomic add returning the previous value (sequentially consistent).
static inline uint32_t pt_atomic_fetch_add_seqcst_u32(uint32_t *p, uint32_t v) {
    return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

/// Atomic subtract returning the previous value (sequentially consistent).
static inline uint32_t pt_atomic_fetch_sub_seqcst_u32(uint32_t *p, uint32_t v) {
    return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST);
}

/// Full memory fence.
static inline void pt_atomic_fence_seqcst(void) {
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
}

/// One spin-wait hint (x86 `pause`).
static inline void pt_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/// FUTEX_WAIT_PRIVATE: sleeps while `*word == expected` (returns at once otherwise, on a wake,
/// or spuriously). Returns 0 or -errno (EAGAIN when the word already differed, EINTR).
int pt_futex_wait(uint32_t *word, uint32_t expected);

/// FUTEX_WAKE_PRIVATE: wakes up to `count` threads waiting on `word`. Returns how many woke.
int pt_futex_wake(uint32_t *word, int count);

/// sched_getcpu() of the calling thread, or -1.
int pt_current_cpu(void);

/// Linux thread id of the calling thread (gettid), for reports and tests.
int pt_thread_id(void);

/// Number of CPUs in the calling thread's affinity mask (sched_getaffinity), or -1.
int pt_affinity_count(void);

/// Writes up to `capacity` OS CPU indices of the calling thread's affinity mask into `cpus`.
/// Returns how many CPUs the mask holds (may exceed `capacity`), or -1.
int pt_affinity_list(int *cpus, int capacity);

#endif
