// Small helpers Swift cannot spell: CPU feature checks and the per-thread floating-point mode.
#ifndef CPTSUPPORT_H
#define CPTSUPPORT_H

/// Checks a comma-separated list of x86 feature names (sse4.2, avx, avx2, fma, avx512f, avx512bw,
/// avx512dq, avx512vl) against the running CPU. Returns how many are missing and writes their names,
/// comma-separated, into `missing`. Unknown names count as present.
int pt_cpu_check_list(const char *required, char *missing, int capacity);

/// Sets flush-to-zero and denormals-are-zero for the calling thread (MXCSR on x86-64).
void pt_set_flush_to_zero(void);

/// Returns 1 when the calling thread has flush-to-zero and denormals-are-zero set.
int pt_flush_to_zero_is_set(void);

/// The features the Swift targets were compiled to use (comma-separated) and the target CPU name.
const char *pt_required_features(void);
const char *pt_target_cpu(void);

// Atomics, futex and affinity helpers for the worker pool (PTRuntime).
#include "CPTThreads.h"
#include "CPTSignals.h"

#endif
