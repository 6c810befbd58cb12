// Small helpers Swift cannot spell: CPU feature checks and the per-thread floating-point mode.
#ifndef CPTSUPPORT_H
#define CPTSUPPORT_H

/// Instruction-set levels: 0 baseline (x86-64-v2), 1 avx2 (AVX2 + FMA), 2 avx512.
#define PT_LEVEL_COUNT 3

/// The level chosen at start-up (before main): PTRAIN_ISA, or the best the CPU runs.
int pt_isa_level(void);
/// The bf16 unit chosen at start-up with the level: 2 (AMX tiles, tdpbf16ps) when the level is
/// avx512 and the CPU has AVX512_BF16, AMX-TILE and AMX-BF16 and Linux grants the tile state; 1 when
/// it has AVX512_BF16 (vdpbf16ps) only; 0 otherwise (no bf16 training). PTRAIN_BF16_UNIT=avx512bf16
/// picks the vector unit on an AMX CPU (its bits are those of every other AVX512_BF16 CPU).
int pt_bf16_unit(void);
/// The best bf16 unit for a level on a CPU with the features `available` (comma-separated names).
int pt_bf16_unit_for(int level, const char *available);
/// The unit for `requested` (PTRAIN_BF16_UNIT: "amx", "avx512bf16", or NULL/"" for `best`); -1 with a
/// one-line message when it is not a unit name or `best` (the CPU and level) does not reach it. With
/// `best` 0 (no bf16 at this level) the request is not looked at: 0.
int pt_select_bf16_unit(const char *requested, int best, char *message, int capacity);
/// "baseline", "avx2", "avx512" ("" for other numbers).
const char *pt_level_name(int level);
/// The features the compiler may use for a level (comma-separated; '~' marks intrinsic-only ones,
/// listed but not required). Derived from the compiler's predefined macros for the level's CPU.
const char *pt_level_features(int level);
/// The running CPU's features (comma-separated names, as `pt_level_features`). Returns the length.
int pt_cpu_features(char *buf, int capacity);
/// How many required features (names without '~') `available` lacks; writes their names to `missing`.
int pt_features_missing(const char *required, const char *available, char *missing, int capacity);
/// The level for `requested` (a level name, or NULL/"" for the best available) on a CPU with the
/// features `available`; -1 with a one-line message when the CPU lacks the baseline or the requested
/// level, or the name is not a level.
int pt_select_level(const char *requested, const char *available, char *message, int capacity);

/// Sets flush-to-zero and denormals-are-zero for the calling thread (MXCSR on x86-64).
void pt_set_flush_to_zero(void);

/// Returns 1 when the calling thread has flush-to-zero and denormals-are-zero set.
int pt_flush_to_zero_is_set(void);

// Atomics, futex and affinity helpers for the worker pool (PTRuntime).
#include "CPTThreads.h"
#include "CPTSignals.h"

#endif
