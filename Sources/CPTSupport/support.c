// Instruction-set level choice and floating-point mode. Compiled without -march so it runs on any x86-64.
#include "CPTSupport.h"
#include <string.h>
#if defined(__x86_64__)
#include <xmmintrin.h>
#include <pmmintrin.h>
#endif

// Instruction-set levels: each level's feature list comes from the compiler (CPTFeatures*), the
// running CPU's from CPUID (`pt_cpu_features`). The level is chosen here, before any Swift code runs.
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "CPTFeaturesBaseline.h"
#include "CPTFeaturesAVX2.h"
#include "CPTFeaturesAVX512.h"

static void append(char *buf, int capacity, const char *name, size_t n) {
    size_t used = strlen(buf);
    if (used + n + 2 >= (size_t)capacity) return;
    if (used > 0) { buf[used++] = ','; buf[used] = 0; }
    memcpy(buf + used, name, n);
    buf[used + n] = 0;
}

/* Whether the comma-separated `list` contains `name` (n characters). */
static int list_contains(const char *list, const char *name, size_t n) {
    const char *p = list;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && !strncmp(p, name, n)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

int pt_features_missing(const char *required, const char *available, char *missing, int capacity) {
    int count = 0;
    if (capacity > 0) missing[0] = 0;
    const char *p = required;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len > 0 && p[0] != '~' && !list_contains(available, p, len)) {
            count++;
            append(missing, capacity, p, len);
        }
        if (!e) break;
        p = e + 1;
    }
    return count;
}

#if defined(__x86_64__)
#include <cpuid.h>

static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

#define PT_BIT(reg, bit, name) if ((reg) >> (bit) & 1) append(buf, capacity, name, strlen(name));

/* The one CPU-feature detector of the project: CPUID leaves 1, 7 and 0x80000001 (0xD for the xsave
   variants), with the vector features dropped when the OS does not save their registers (XGETBV). */
int pt_cpu_features(char *buf, int capacity) {
    if (capacity > 0) buf[0] = 0;
#if defined(__x86_64__)
    unsigned int a, b, c, d;
    unsigned int maxLeaf = __get_cpuid_max(0, 0);
    unsigned int c1 = 0, d1 = 0, b7 = 0, c7 = 0, d7 = 0, a71 = 0, cx = 0, ad = 0;
    if (__get_cpuid(1, &a, &b, &c, &d)) { c1 = c; d1 = d; }
    if (maxLeaf >= 7) { __cpuid_count(7, 0, a, b, c, d); b7 = b; c7 = c; d7 = d; __cpuid_count(7, 1, a, b, c, d); a71 = a; }
    if (__get_cpuid_max(0x80000000, 0) >= 0x80000001) { __cpuid(0x80000001, a, b, c, d); cx = c; }
    if (maxLeaf >= 0xD) { __cpuid_count(0xD, 1, a, b, c, d); ad = a; }
    unsigned long long xcr0 = (c1 >> 27 & 1) ? xgetbv0() : 0;
    int osAVX = (xcr0 & 0x6) == 0x6;              /* SSE and AVX state */
    int osAVX512 = osAVX && (xcr0 & 0xE0) == 0xE0; /* opmask, upper ZMM0-15, ZMM16-31 */
    if (!osAVX) { c1 &= ~((1u << 28) | (1u << 12) | (1u << 29)); b7 &= ~(1u << 5); }
    if (!osAVX512) { b7 &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 28) | (1u << 30) | (1u << 31));
                     c7 &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14)); a71 &= ~(1u << 5); }
    if ((xcr0 & 0x60000) != 0x60000) d7 &= ~((1u << 22) | (1u << 24)); /* XTILECFG and XTILEDATA state */
    PT_BIT(d1, 23, "mmx") PT_BIT(d1, 25, "sse") PT_BIT(d1, 26, "sse2") PT_BIT(c1, 0, "sse3") PT_BIT(c1, 9, "ssse3")
    PT_BIT(c1, 19, "sse4.1") PT_BIT(c1, 20, "sse4.2") PT_BIT(c1, 23, "popcnt") PT_BIT(c1, 13, "cmpxchg16b")
    PT_BIT(cx, 0, "sahf") PT_BIT(c1, 28, "avx") PT_BIT(b7, 5, "avx2") PT_BIT(c1, 12, "fma") PT_BIT(c1, 29, "f16c")
    PT_BIT(b7, 3, "bmi") PT_BIT(b7, 8, "bmi2") PT_BIT(cx, 5, "lzcnt") PT_BIT(c1, 22, "movbe")
    PT_BIT(b7, 16, "avx512f") PT_BIT(b7, 28, "avx512cd") PT_BIT(b7, 30, "avx512bw") PT_BIT(b7, 17, "avx512dq")
    PT_BIT(b7, 31, "avx512vl") PT_BIT(c7, 1, "avx512vbmi") PT_BIT(c7, 11, "avx512vnni") PT_BIT(a71, 5, "avx512bf16")
    PT_BIT(d7, 24, "amxtile") PT_BIT(d7, 22, "amxbf16")
    PT_BIT(b7, 21, "avx512ifma") PT_BIT(c7, 14, "avx512vpopcntdq") PT_BIT(c7, 6, "avx512vbmi2") PT_BIT(c7, 12, "avx512bitalg")
    PT_BIT(c7, 8, "gfni") PT_BIT(c7, 10, "vpclmulqdq")
    PT_BIT(d1, 24, "fxsr") PT_BIT(c1, 20, "crc32") PT_BIT(c1, 25, "aes") PT_BIT(c1, 1, "pclmul") PT_BIT(b7, 19, "adx")
    PT_BIT(c1, 30, "rdrnd") PT_BIT(b7, 18, "rdseed") PT_BIT(b7, 0, "fsgsbase") PT_BIT(b7, 10, "invpcid")
    PT_BIT(c1, 26, "xsave") PT_BIT(ad, 0, "xsaveopt") PT_BIT(ad, 1, "xsavec") PT_BIT(ad, 3, "xsaves")
    PT_BIT(b7, 23, "clflushopt") PT_BIT(b7, 24, "clwb") PT_BIT(c7, 3, "pku") PT_BIT(cx, 8, "prfchw")
#endif
    return (int)strlen(buf);
}

static const char *const level_names[PT_LEVEL_COUNT] = { "baseline", "avx2", "avx512" };

const char *pt_level_name(int level) { return level >= 0 && level < PT_LEVEL_COUNT ? level_names[level] : ""; }

const char *pt_level_features(int level) {
    switch (level) {
    case 0: return pt_level_features_baseline;
    case 1: return pt_level_features_avx2;
    case 2: return pt_level_features_avx512;
    default: return "";
    }
}

int pt_select_level(const char *requested, const char *available, char *message, int capacity) {
    char missing[512];
    if (capacity > 0) message[0] = 0;
    if (pt_features_missing(pt_level_features(0), available, missing, (int)sizeof missing) > 0) {
        snprintf(message, (size_t)capacity, "ptrain: this CPU lacks %s, which every ptrain build needs (x86-64-v2)", missing);
        return -1;
    }
    if (requested && *requested) {
        for (int level = 0; level < PT_LEVEL_COUNT; level++) {
            if (strcmp(requested, level_names[level])) continue;
            if (pt_features_missing(pt_level_features(level), available, missing, (int)sizeof missing) > 0) {
                snprintf(message, (size_t)capacity, "ptrain: PTRAIN_ISA=%s, but this CPU lacks %s (unset PTRAIN_ISA to use the best level it has)",
                         requested, missing);
                return -1;
            }
            return level;
        }
        snprintf(message, (size_t)capacity, "ptrain: PTRAIN_ISA=%s is not a level; use avx512, avx2 or baseline", requested);
        return -1;
    }
    int best = 0;
    for (int level = 1; level < PT_LEVEL_COUNT; level++) {
        if (pt_features_missing(pt_level_features(level), available, missing, (int)sizeof missing) == 0) best = level;
    }
    return best;
}

static int pt_level = 0;
static int pt_bf16 = 0;

int pt_isa_level(void) { return pt_level; }

int pt_bf16_unit(void) { return pt_bf16; }

int pt_bf16_unit_for(int level, const char *available) {
    /* AVX512_BF16 (CPUID leaf 7 subleaf 1, EAX bit 5; dropped by pt_cpu_features when the OS does
       not save the AVX-512 state) on top of the avx512 level; AMX tiles (AMX-TILE and AMX-BF16, leaf 7
       EDX bits 24 and 22, dropped when the OS does not save the tile state) on top of that. */
    if (level != 2 || !list_contains(available, "avx512bf16", strlen("avx512bf16"))) return 0;
    return list_contains(available, "amxtile", strlen("amxtile")) && list_contains(available, "amxbf16", strlen("amxbf16")) ? 2 : 1;
}

#if defined(__x86_64__) && defined(__linux__)
#include <sys/syscall.h>
/* Linux hands out the AMX tile data state only on request (arch_prctl ARCH_REQ_XCOMP_PERM with
   XFEATURE_XTILEDATA, kernel 5.16+): once per process, for all its threads. 0 when granted. */
static int request_tile_state(void) { return (int)syscall(SYS_arch_prctl, 0x1023, 18); }
#else
static int request_tile_state(void) { return -1; }
#endif

int pt_select_bf16_unit(const char *requested, int best, char *message, int capacity) {
    if (capacity > 0) message[0] = 0;
    int unit = best;
    /* A level without bf16 (PTRAIN_ISA below avx512) has no unit to pick; asking for bf16 says why. */
    if (requested && *requested && best > 0) {
        if (!strcmp(requested, "avx512bf16")) unit = best >= 1 ? 1 : -1;
        else if (!strcmp(requested, "amx")) unit = best == 2 ? 2 : -1;
        else {
            snprintf(message, (size_t)capacity, "ptrain: PTRAIN_BF16_UNIT=%s is not a bf16 unit; use amx or avx512bf16", requested);
            return -1;
        }
        if (unit < 0) {
            snprintf(message, (size_t)capacity, "ptrain: PTRAIN_BF16_UNIT=%s, but this CPU and level do not have it (unset PTRAIN_BF16_UNIT to use the best they have)",
                     requested);
            return -1;
        }
    }
    return unit;
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

// Runs before Swift code: picks the level (PTRAIN_ISA or the best the CPU runs). A CPU without the
// baseline, or without a level PTRAIN_ISA asks for, gets one line and exit code 2 instead of SIGILL.
__attribute__((constructor)) static void pt_choose_level_at_start(void) {
#if defined(__x86_64__)
    char available[1024], message[1024];
    pt_cpu_features(available, (int)sizeof available);
    int level = pt_select_level(getenv("PTRAIN_ISA"), available, message, (int)sizeof message);
    if (level < 0) {
        fprintf(stderr, "%s\n", message);
        _exit(2);
    }
    pt_level = level;
    int unit = pt_select_bf16_unit(getenv("PTRAIN_BF16_UNIT"), pt_bf16_unit_for(level, available), message, (int)sizeof message);
    if (unit < 0) {
        fprintf(stderr, "%s\n", message);
        _exit(2);
    }
    /* A kernel that withholds the tile state leaves the vector unit. */
    if (unit == 2 && request_tile_state() != 0) unit = 1;
    pt_bf16 = unit;
#endif
}
