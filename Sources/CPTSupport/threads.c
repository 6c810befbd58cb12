// futex and affinity wrappers for the worker pool (Linux); harmless fallbacks elsewhere.
#define _GNU_SOURCE
#include "CPTThreads.h"
#include <errno.h>
#if defined(__linux__)
#include <linux/futex.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

int pt_futex_wait(uint32_t *word, uint32_t expected) {
#if defined(__linux__)
    long r = syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
    return r == 0 ? 0 : -errno;
#else
    (void)word; (void)expected;
    return 0;
#endif
}

int pt_futex_wake(uint32_t *word, int count) {
#if defined(__linux__)
    long r = syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, count, NULL, NULL, 0);
    return r < 0 ? -errno : (int)r;
#else
    (void)word; (void)count;
    return 0;
#endif
}

int pt_current_cpu(void) {
#if defined(__linux__)
    return sched_getcpu();
#else
    return -1;
#endif
}

int pt_thread_id(void) {
#if defined(__linux__)
    return (int)syscall(SYS_gettid);
#else
    return -1;
#endif
}

int pt_affinity_list(int *cpus, int capacity) {
#if defined(__linux__)
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return -1;
    int n = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        if (n < capacity) cpus[n] = cpu;
        n++;
    }
    return n;
#else
    (void)cpus; (void)capacity;
    return -1;
#endif
}

int pt_affinity_count(void) {
    return pt_affinity_list((int *)0, 0);
}
