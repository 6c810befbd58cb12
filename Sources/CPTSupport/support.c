// CPU feature check and floating-point mode. Compiled without -march so it runs on any x86-64.
#include "CPTSupport.h"
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#include <pmmintrin.h>
#endif

static void append(char *buf, int capacity, const char *name) {
    size_t used = strlen(buf);
    size_t n = strlen(name);
    if (used + n + 2 >= (size_t)capacity) return;
    if (used > 0) { buf[used++] = ','; buf[used] = 0; }
    memcpy(buf + used, name, n + 1);
}

int pt_cpu_check_list(const char *required, char *missing, int capacity) {
    int count = 0;
    if (capacity > 0) missing[0] = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    char name[32];
    const char *p = required;
    while (*p) {
        int n = 0;
        while (*p && *p != ',' && n < 31) name[n++] = *p++;
        name[n] = 0;
        if (*p == ',') p++;
        if (n == 0) continue;
        int has = 1;
        if (!strcmp(name, "sse4.2")) has = __builtin_cpu_supports("sse4.2");
        else if (!strcmp(name, "avx")) has = __builtin_cpu_supports("avx");
        else if (!strcmp(name, "avx2")) has = __builtin_cpu_supports("avx2");
        else if (!strcmp(name, "fma")) has = __builtin_cpu_supports("fma");
        else if (!strcmp(name, "avx512f")) has = __builtin_cpu_supports("avx512f");
        else if (!strcmp(name, "avx512bw")) has = __builtin_cpu_supports("avx512bw");
        else if (!strcmp(name, "avx512dq")) has = __builtin_cpu_supports("avx512dq");
        else if (!strcmp(name, "avx512vl")) has = __builtin_cpu_supports("avx512vl");
        if (!has) { count++; append(missing, capacity, name); }
    }
#else
    (void)required;
#endif
    return count;
}

void pt_set_flush_to_zero(void) {
#if defined(__x86_64__)
    _MM_SET_FLUSH_ZERO_MODE(_MM_FLUSH_ZERO_ON);
    _MM_SET_DENORMALS_ZERO_MODE(_MM_DENORMALS_ZERO_ON);
#endif
}

int pt_flush_to_zero_is_set(void) {
#if defined(__x86_64__)
    return _MM_GET_FLUSH_ZERO_MODE() == _MM_FLUSH_ZERO_ON && _MM_GET_DENORMALS_ZERO_MODE() == _MM_DENORMALS_ZERO_ON;
#else
    return 1;
#endif
}

// Runs before Swift code: a binary built for AVX-512 (or AVX2) on a CPU without it would otherwise
// die with SIGILL somewhere in a kernel. Exit code 2 and one line instead.
#include <stdio.h>
#include <unistd.h>
#ifndef PT_REQUIRED_FEATURES
#define PT_REQUIRED_FEATURES ""
#endif
#ifndef PT_TARGET_CPU
#define PT_TARGET_CPU "unknown"
#endif

const char *pt_required_features(void) { return PT_REQUIRED_FEATURES; }
const char *pt_target_cpu(void) { return PT_TARGET_CPU; }

__attribute__((constructor)) static void pt_check_cpu_at_start(void) {
    char missing[256];
    if (pt_cpu_check_list(PT_REQUIRED_FEATURES, missing, (int)sizeof missing) > 0) {
        fprintf(stderr, "ptrain: this binary was built for CPU '%s' (needs %s) but this CPU lacks %s; "
                        "rebuild with PTRAIN_TARGET_CPU set for this machine (see README, \"Building for a cluster\")\n",
                PT_TARGET_CPU, PT_REQUIRED_FEATURES, missing);
        _exit(2);
    }
}
