// bf16 GEMM on AVX512_BF16 and the convolution / dense passes built on it. See CPTKernelsBF16.h for the
// numbers each function computes; docs/ARCHITECTURE.md ("bf16") for the design.
//
// GEMM, BLIS style: C[M][N] over a reduction of length R. Operands are bf16 pairs along the reduction:
// a packed A panel is [R/2][MR] 32-bit words (row m's pair (r, r+1): element r in the high half,
// r+1 in the low half, so vdpbf16ps, which adds the odd (high) product before the even one, runs the
// reduction in increasing order); a packed B panel is [R/2][NR] words laid out the same way, so one
// zmm load feeds 16 columns x 2 reduction steps and one A word is broadcast. Register tile MR x NR =
// 8 x 32: 16 zmm accumulators (vdpbf16ps latency 6 on Zen 4 needs >= 6 chains per port), 2 B loads
// and 8 broadcasts per 16 vdpbf16ps. No blocking of the reduction: each tile runs its whole chain.
// Operands come from bf16 sources through offset tables (element (row, r) at src[base[row] + roff[r]]),
// which lets one packer read weights, activations and convolution patches (no im2col buffer).
#include "CPTKernelsBF16.h"
#include "CPTSupport.h"
#include <immintrin.h>
#include <string.h>

#define MR 8
#define NR 32
/// Pairs of the reduction per AMX block (one tdpbf16ps: 16 rows x 16 pairs of A, 16 pairs x 16 columns of B).
#define KB 16

/// Whether this process's bf16 unit is AMX tiles (CPTSupport `pt_bf16_unit`, fixed at start-up).
static inline int use_tiles(void) { return pt_bf16_unit() == 2; }
/// Pairs of a reduction of length R as packed: ceil(R/2), rounded up to whole AMX blocks with tiles.
static inline int packed_pairs(int R) { int kp = (R + 1) / 2; return use_tiles() ? (kp + KB - 1) / KB * KB : kp; }

static inline size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }
static inline void *bump(char **p, size_t bytes) { void *r = *p; *p += align64(bytes); return r; }

void pt_bf16_round(const float *src, uint16_t *dst, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256bh v = _mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)v);
    }
    if (i < count) {
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        __m256bh v = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)v);
    }
}

// MARK: packing

/// A operand: element (m, r) at src[base[m] + roff[r]], or src[base[m] + r] when roff is NULL.
typedef struct { const uint16_t *src; const int32_t *base; const int32_t *roff; } pt_view;

/// Packs rows [m0, m0 + MR) (rows >= M zero) of the whole reduction R into [ceil(R/2)][MR] words.
static void pack_a(pt_view v, int m0, int M, int R, uint32_t *dst) {
    int kp = (R + 1) / 2;
    int rows = M - m0 < MR ? M - m0 : MR;
    if (!v.roff && rows == MR) {
        // Pairs are adjacent: one 8-lane gather of 32-bit words per pair, halves swapped.
        __m256i base = _mm256_loadu_si256((const __m256i *)(v.base + m0));
        int full = R / 2;
        for (int p = 0; p < full; p++) {
            __m256i w = _mm256_i32gather_epi32((const int *)(v.src + 2 * p), base, 2);
            _mm256_store_si256((__m256i *)(dst + p * MR), _mm256_ror_epi32(w, 16));
        }
        if (R & 1) {
            __m256i w = _mm256_i32gather_epi32((const int *)(v.src + R - 1), base, 2);
            _mm256_store_si256((__m256i *)(dst + full * MR), _mm256_slli_epi32(w, 16));
        }
        return;
    }
    for (int p = 0; p < kp; p++) {
        int r0 = 2 * p, r1 = 2 * p + 1;
        for (int i = 0; i < MR; i++) {
            uint32_t w = 0;
            if (i < rows) {
                const uint16_t *s = v.src + v.base[m0 + i];
                uint32_t hi = s[v.roff ? v.roff[r0] : r0];
                uint32_t lo = r1 < R ? s[v.roff ? v.roff[r1] : r1] : 0;
                w = hi << 16 | lo;
            }
            dst[p * MR + i] = w;
        }
    }
}

static const uint16_t interleave_index[32] = {
    0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 };

/// Word l = (element 2l of the second source (high), element 2l of the first (low)).
static const uint16_t even_interleave[32] = {
    0, 32, 2, 34, 4, 36, 6, 38, 8, 40, 10, 42, 12, 44, 14, 46, 16, 48, 18, 50, 20, 52, 22, 54, 24, 56, 26, 58, 28, 60, 30, 62 };

/// Whether lanes 0-7 and lanes 8-15 (of `count`) each step by two elements.
static int stride2_halves(const int32_t *lane, int count) {
    for (int l = 1; l < count; l++)
        if (l != 8 && lane[l] != lane[l - 1] + 2) return 0;
    return 1;
}

/// Runs of adjacent offsets among `count` lanes.
static int runs_of(const int32_t *lane, int count) {
    int runs = 1;
    for (int l = 1; l < count; l++) runs += lane[l] != lane[l - 1] + 1;
    return runs;
}

/// B operand: element (r, n) at src[lane[n] + roff[r]]. Packs columns [n0, n0 + NR) (columns >= N zero)
/// of the whole reduction into [ceil(R/2)][NR] words. Per 16 columns: two 16-element loads and one
/// permute when the lanes are adjacent in memory; otherwise gathers (one when the pair is adjacent).
static void pack_b(const uint16_t *src, const int32_t *lane, const int32_t *roff, int n0, int N, int R, uint32_t *dst) {
    int kp = (R + 1) / 2;
    const __m512i perm = _mm512_loadu_si512(interleave_index);
    const __m512i low16 = _mm512_set1_epi32(0xFFFF);
    for (int h = 0; h < NR; h += 16) {
        int first = n0 + h;
        int count = N - first; if (count > 16) count = 16;
        uint32_t *d = dst + h;
        if (count <= 0) {
            for (int p = 0; p < kp; p++) _mm512_store_si512(d + p * NR, _mm512_setzero_si512());
            continue;
        }
        __mmask16 m = (__mmask16)(count == 16 ? 0xFFFF : (1u << count) - 1);
        __m512i idx = _mm512_maskz_loadu_epi32(m, lane + first);
        __m512i iota = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        __mmask16 adjacent = _mm512_mask_cmpeq_epi32_mask(m, idx, _mm512_add_epi32(_mm512_set1_epi32(lane[first]), iota));
        if (adjacent == m) {
            const uint16_t *s = src + lane[first];
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                __m256i hi = _mm256_maskz_loadu_epi16(m, s + roff[r0]);
                __m256i lo = r1 < R ? _mm256_maskz_loadu_epi16(m, s + roff[r1]) : _mm256_setzero_si256();
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                _mm512_store_si512(d + p * NR, _mm512_permutexvar_epi16(perm, z));
            }
        } else if (stride2_halves(lane + first, count)) {
            // Each 8 lanes two elements apart (stride-2 convolutions; 8 pixels of one row, or 16 of one
            // row): 16 adjacent elements per half and row of the pair, the even ones picked by one
            // two-source permute.
            const __m512i pick = _mm512_loadu_si512(even_interleave);
            int c1 = count < 8 ? count : 8, c2 = count - c1;
            __mmask16 h1 = (__mmask16)((1u << (2 * c1 - 1)) - 1), h2 = (__mmask16)(c2 > 0 ? (1u << (2 * c2 - 1)) - 1 : 0);
            const uint16_t *s1 = src + lane[first], *s2 = src + (c2 > 0 ? lane[first + 8] : lane[first]);
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                __m512i hi = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi16(h1, s1 + roff[r0])),
                                                _mm256_maskz_loadu_epi16(h2, s2 + roff[r0]), 1);
                __m512i lo = _mm512_setzero_si512();
                if (r1 < R)
                    lo = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_maskz_loadu_epi16(h1, s1 + roff[r1])),
                                            _mm256_maskz_loadu_epi16(h2, s2 + roff[r1]), 1);
                _mm512_store_si512(d + p * NR, _mm512_permutex2var_epi16(lo, pick, hi));
            }
        } else if (runs_of(lane + first, count) <= 4) {
            // Lanes in a few runs of adjacent elements (e.g. 8x8 planes: 16 pixels in two rows): one
            // masked load per run instead of a gather.
            int start[4], len[4], n = 0;
            for (int l = 0; l < count; n++) {
                int e = l + 1;
                while (e < count && lane[first + e] == lane[first + e - 1] + 1) e++;
                start[n] = l; len[n] = e - l; l = e;
            }
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                __m256i hi = _mm256_setzero_si256(), lo = _mm256_setzero_si256();
                for (int t = 0; t < n; t++) {
                    __mmask16 rm = (__mmask16)(((1u << len[t]) - 1) << start[t]);
                    const uint16_t *base = src + lane[first + start[t]] - start[t];
                    hi = _mm256_mask_loadu_epi16(hi, rm, base + roff[r0]);
                    if (r1 < R) lo = _mm256_mask_loadu_epi16(lo, rm, base + roff[r1]);
                }
                __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
                _mm512_store_si512(d + p * NR, _mm512_permutexvar_epi16(perm, z));
            }
        } else {
            for (int p = 0; p < kp; p++) {
                int r0 = 2 * p, r1 = 2 * p + 1;
                const int *s0 = (const int *)(src + roff[r0]);
                __m512i w;
                if (r1 < R && roff[r1] == roff[r0] + 1) {
                    w = _mm512_ror_epi32(_mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, s0, 2), 16);
                } else {
                    __m512i hi = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, s0, 2);
                    __m512i lo = r1 < R ? _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), m, idx, (const int *)(src + roff[r1]), 2)
                                        : _mm512_setzero_si512();
                    w = _mm512_or_si512(_mm512_slli_epi32(hi, 16), _mm512_and_si512(lo, low16));
                }
                _mm512_store_si512(d + p * NR, w);
            }
        }
    }
}

// MARK: microkernel

/// C[0..<mr][0..<nr] (row stride ldc) = (load ? C : 0) + chain over kp pairs, then + bias[row] if bias.
static inline void ukernel(int kp, const uint32_t *a, const uint32_t *b, float *c, long ldc, int mr, int nr,
                           int load, const float *bias) {
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
#define LOADROW(r) \
    if (load && r < mr) { c##r##0 = _mm512_maskz_loadu_ps(m0, c + r * ldc); c##r##1 = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16); } \
    else { c##r##0 = _mm512_setzero_ps(); c##r##1 = _mm512_setzero_ps(); }
    LOADROW(0) LOADROW(1) LOADROW(2) LOADROW(3) LOADROW(4) LOADROW(5) LOADROW(6) LOADROW(7)
#undef LOADROW
    for (int p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#define STEP(r) { __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[r]); \
                  c##r##0 = _mm512_dpbf16_ps(c##r##0, ar, b0); c##r##1 = _mm512_dpbf16_ps(c##r##1, ar, b1); }
        STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
        a += MR; b += NR;
    }
#define STOREROW(r) if (r < mr) { \
        __m512 x0 = c##r##0, x1 = c##r##1; \
        if (bias) { __m512 bb = _mm512_set1_ps(bias[r]); x0 = _mm512_add_ps(x0, bb); x1 = _mm512_add_ps(x1, bb); } \
        _mm512_mask_storeu_ps(c + r * ldc, m0, x0); _mm512_mask_storeu_ps(c + r * ldc + 16, m1, x1); }
    STOREROW(0) STOREROW(1) STOREROW(2) STOREROW(3) STOREROW(4) STOREROW(5) STOREROW(6) STOREROW(7)
#undef STOREROW
}

/// Columns of B packed at a time: the packed block (R x NB) stays within ~384 KiB of L2.
static int column_block(int R) {
    long words = packed_pairs(R);
    long nb = 98304 / (words > 0 ? words : 1) / NR * NR;
    if (nb < NR) nb = NR;
    if (nb > 512) nb = 512;
    return (int)nb;
}

static size_t packed_a_bytes(int M, int R) {
    int rows = use_tiles() ? (M + 15) / 16 * 16 : (M + MR - 1) / MR * MR;
    return (size_t)rows * (size_t)packed_pairs(R) * 4;
}
static size_t packed_b_bytes(int N, int R) {
    int nb = column_block(R);
    if (nb > (N + NR - 1) / NR * NR) nb = (N + NR - 1) / NR * NR;
    return (size_t)nb * (size_t)packed_pairs(R) * 4;
}

static void gemm_tiles(int M, int N, int R, const uint32_t *pa, const uint16_t *bsrc, const int32_t *lane,
                       const int32_t *roff, float *c, long ldc, int load, const float *bias, uint32_t *pb);

/// C[M][N] (ldc) = (load ? C : 0) + A x B (+ bias[m]) with A packed whole in `pa` (pack_a panels in order).
static void gemm_packed_a(int M, int N, int R, const uint32_t *pa, const uint16_t *bsrc, const int32_t *lane,
                          const int32_t *roff, float *c, long ldc, int load, const float *bias, uint32_t *pb) {
    if (use_tiles()) { gemm_tiles(M, N, R, pa, bsrc, lane, roff, c, ldc, load, bias, pb); return; }
    int kp = (R + 1) / 2;
    int nb = column_block(R);
    for (int n0 = 0; n0 < N; n0 += nb) {
        int ncols = N - n0 < nb ? N - n0 : nb;
        for (int j = 0; j < ncols; j += NR) pack_b(bsrc, lane, roff, n0 + j, N, R, pb + (size_t)j * kp);
        for (int j = 0; j < ncols; j += NR) {
            int nr = ncols - j < NR ? ncols - j : NR;
            for (int m0 = 0; m0 < M; m0 += MR) {
                int mr = M - m0 < MR ? M - m0 : MR;
                ukernel(kp, pa + (size_t)(m0 / MR) * MR * kp, pb + (size_t)j * kp, c + (long)m0 * ldc + n0 + j, ldc,
                        mr, nr, load, bias ? bias + m0 : NULL);
            }
        }
    }
}

static void pack_a_tiles(pt_view v, int M, int R, uint32_t *dst);

/// The whole A operand packed for the unit: MR-row panels (`pack_a`), or AMX tiles (`pack_a_tiles`).
static void pack_a_all(pt_view v, int M, int R, uint32_t *dst) {
    if (use_tiles()) { pack_a_tiles(v, M, R, dst); return; }
    int kp = (R + 1) / 2;
    for (int m0 = 0; m0 < M; m0 += MR) pack_a(v, m0, M, R, dst + (size_t)(m0 / MR) * MR * kp);
}

// MARK: AMX tiles

// The AMX unit (Intel Sapphire Rapids and later: AMX-TILE + AMX-BF16). Same operands as the vector
// unit: B packed by `pack_b` ([pairs][NR] words, element r in the high half of its pair word), rows
// past the reduction zero up to whole blocks of KB pairs; A packed by `pack_a_tiles` as 16-row tiles,
// [row tile][block][16 rows][KB words]. Register tile 32 x 32: C in tmm0-3, A in tmm4-5, B in tmm6-7.
// One tdpbf16ps per block of 32 reduction elements (16 pairs) computes, per output element (measured
// on Intel Xeon family 6 model 207 against this model, 768k elements per sweep, exponents spread up
// to +-130, NaNs compared as NaN; it is also the SDM's current pseudocode): an fp32 chain over the
// block's even elements from 0 and one over its odd elements from 0 (each step one rounding to
// nearest even, products exact, denormals flushed), then acc + (even + odd), two more roundings.
// So the order depends only on the shapes, as with the vector unit, but the bits differ from it.

/// Packs A (rows >= M and pairs past the reduction zero) into 16-row tiles of KB pair words per block.
static void pack_a_tiles(pt_view v, int M, int R, uint32_t *dst) {
    int kpp = packed_pairs(R), blocks = kpp / KB, tilesM = (M + 15) / 16;
    for (int t = 0; t < tilesM; t++)
        for (int i = 0; i < 16; i++) {
            int m = t * 16 + i;
            const uint16_t *s = m < M ? v.src + v.base[m] : NULL;
            for (int b = 0; b < blocks; b++) {
                uint32_t *d = dst + (((size_t)t * blocks + b) * 16 + i) * KB;
                int r0 = b * 2 * KB, n = R - r0;
                if (!s || n <= 0) { _mm512_storeu_si512(d, _mm512_setzero_si512()); continue; }
                if (!v.roff) {
                    __mmask32 mk = n >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << n) - 1);
                    _mm512_storeu_si512(d, _mm512_ror_epi32(_mm512_maskz_loadu_epi16(mk, s + r0), 16));
                    continue;
                }
                for (int p = 0; p < KB; p++) {
                    int r = r0 + 2 * p;
                    uint32_t hi = r < R ? s[v.roff[r]] : 0, lo = r + 1 < R ? s[v.roff[r + 1]] : 0;
                    d[p] = hi << 16 | lo;
                }
            }
        }
}

typedef struct { uint8_t palette, start_row, reserved[14]; uint16_t colsb[16]; uint8_t rows[16]; } pt_tile_config;

/// Loads the one tile shape every kernel here uses (all eight tiles 16 rows x 64 bytes) on the calling thread.
static void configure_tiles(void) {
    pt_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) { cfg.rows[t] = 16; cfg.colsb[t] = 64; }
    _tile_loadconfig(&cfg);
}

/// C tile (rows x cols valid of 16 x 16 at c, row stride ldc) into a 16 x 16 buffer, zero elsewhere.
static void c_to_buffer(const float *c, long ldc, int rows, int cols, float *buf) {
    __mmask16 m = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
    for (int r = 0; r < 16; r++) _mm512_store_ps(buf + r * 16, r < rows ? _mm512_maskz_loadu_ps(m, c + r * ldc) : _mm512_setzero_ps());
}

/// The valid part of a 16 x 16 buffer back into C, + bias[row] if bias.
static void buffer_to_c(const float *buf, float *c, long ldc, int rows, int cols, const float *bias) {
    __mmask16 m = (__mmask16)(cols >= 16 ? 0xFFFF : (1u << cols) - 1);
    for (int r = 0; r < rows; r++) {
        __m512 x = _mm512_load_ps(buf + r * 16);
        if (bias) x = _mm512_add_ps(x, _mm512_set1_ps(bias[r]));
        _mm512_mask_storeu_ps(c + r * ldc, m, x);
    }
}

#define TILE_IN(T, ti, tj) { \
        int rows_ = mrows - 16 * (ti), cols_ = ncols - 16 * (tj); \
        if (rows_ > 16) rows_ = 16; if (cols_ > 16) cols_ = 16; \
        float *cp_ = c + (long)16 * (ti) * ldc + 16 * (tj); \
        if (!load) _tile_zero(T); \
        else if (rows_ == 16 && cols_ == 16) _tile_loadd(T, cp_, ldc * 4); \
        else { c_to_buffer(cp_, ldc, rows_, cols_, buf); _tile_loadd(T, buf, 64); } }
#define TILE_OUT(T, ti, tj) { \
        int rows_ = mrows - 16 * (ti), cols_ = ncols - 16 * (tj); \
        if (rows_ > 16) rows_ = 16; if (cols_ > 16) cols_ = 16; \
        float *cp_ = c + (long)16 * (ti) * ldc + 16 * (tj); \
        if (rows_ == 16 && cols_ == 16 && !bias) _tile_stored(T, cp_, ldc * 4); \
        else { _tile_stored(T, buf, 64); buffer_to_c(buf, cp_, ldc, rows_, cols_, bias ? bias + 16 * (ti) : NULL); } }

/// C[0..<mrows][0..<ncols] (mrows <= 32, ncols <= 32; ldc) = (load ? C : 0) + blocks of A (two row
/// tiles at a, a + ablock) x B (two column tiles at b, b + 16; rows NR words apart), + bias[row].
static void tiles_kernel(int blocks, const uint32_t *a, size_t ablock, const uint32_t *b, float *c, long ldc,
                         int mrows, int ncols, int load, const float *bias) {
    float buf[256] __attribute__((aligned(64)));
    int two_m = mrows > 16, two_n = ncols > 16;
    const long bstride = NR * 4;
    if (two_m && two_n) {
        TILE_IN(0, 0, 0) TILE_IN(1, 0, 1) TILE_IN(2, 1, 0) TILE_IN(3, 1, 1)
        for (int k = 0; k < blocks; k++) {
            const uint32_t *ak = a + (size_t)k * 16 * KB, *bk = b + (size_t)k * KB * NR;
            _tile_loadd(4, ak, 64); _tile_loadd(5, ak + ablock, 64);
            _tile_loadd(6, bk, bstride); _tile_loadd(7, bk + 16, bstride);
            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
        }
        TILE_OUT(0, 0, 0) TILE_OUT(1, 0, 1) TILE_OUT(2, 1, 0) TILE_OUT(3, 1, 1)
    } else if (two_n) {
        TILE_IN(0, 0, 0) TILE_IN(1, 0, 1)
        for (int k = 0; k < blocks; k++) {
            const uint32_t *ak = a + (size_t)k * 16 * KB, *bk = b + (size_t)k * KB * NR;
            _tile_loadd(4, ak, 64); _tile_loadd(6, bk, bstride); _tile_loadd(7, bk + 16, bstride);
            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7);
        }
        TILE_OUT(0, 0, 0) TILE_OUT(1, 0, 1)
    } else if (two_m) {
        TILE_IN(0, 0, 0) TILE_IN(2, 1, 0)
        for (int k = 0; k < blocks; k++) {
            const uint32_t *ak = a + (size_t)k * 16 * KB, *bk = b + (size_t)k * KB * NR;
            _tile_loadd(4, ak, 64); _tile_loadd(5, ak + ablock, 64); _tile_loadd(6, bk, bstride);
            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(2, 5, 6);
        }
        TILE_OUT(0, 0, 0) TILE_OUT(2, 1, 0)
    } else {
        TILE_IN(0, 0, 0)
        for (int k = 0; k < blocks; k++) {
            _tile_loadd(4, a + (size_t)k * 16 * KB, 64); _tile_loadd(6, b + (size_t)k * KB * NR, bstride);
            _tile_dpbf16ps(0, 4, 6);
        }
        TILE_OUT(0, 0, 0)
    }
}
#undef TILE_IN
#undef TILE_OUT

/// `gemm_packed_a` on AMX tiles: A packed by `pack_a_tiles`, B by `pack_b` with zero rows to whole blocks.
static void gemm_tiles(int M, int N, int R, const uint32_t *pa, const uint16_t *bsrc, const int32_t *lane,
                       const int32_t *roff, float *c, long ldc, int load, const float *bias, uint32_t *pb) {
    int kp = (R + 1) / 2, kpp = packed_pairs(R), blocks = kpp / KB;
    int nb = column_block(R);
    size_t ablock = (size_t)blocks * 16 * KB;
    configure_tiles();
    for (int n0 = 0; n0 < N; n0 += nb) {
        int ncols = N - n0 < nb ? N - n0 : nb;
        for (int j = 0; j < ncols; j += NR) {
            uint32_t *panel = pb + (size_t)j * kpp;
            pack_b(bsrc, lane, roff, n0 + j, N, R, panel);
            for (int p = kp; p < kpp; p++) _mm512_store_si512(panel + (size_t)p * NR, _mm512_setzero_si512()),
                                          _mm512_store_si512(panel + (size_t)p * NR + 16, _mm512_setzero_si512());
        }
        for (int m0 = 0; m0 < M; m0 += 32) {
            int mrows = M - m0 < 32 ? M - m0 : 32;
            for (int j = 0; j < ncols; j += NR) {
                int nr = ncols - j < NR ? ncols - j : NR;
                tiles_kernel(blocks, pa + (size_t)(m0 / 16) * ablock, ablock, pb + (size_t)j * kpp, c + (long)m0 * ldc + n0 + j,
                             ldc, mrows, nr, load, bias ? bias + m0 : NULL);
            }
        }
    }
}

/// GFLOP-counting AMX peak loop: `iterations` x 4 independent tdpbf16ps (16 x 16 x 32 products each).
float pt_bf16_tiles_peak_loop(long iterations) {
    static const uint16_t zeros[16 * 32] __attribute__((aligned(64))) = { 0 };
    float out[256] __attribute__((aligned(64)));
    configure_tiles();
    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
    _tile_loadd(4, zeros, 64); _tile_loadd(5, zeros, 64); _tile_loadd(6, zeros, 64); _tile_loadd(7, zeros, 64);
    for (long it = 0; it < iterations; it++) {
        _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, out, 64);
    return out[0];
}

long pt_bf16_tiles_peak_flops_per_iteration(void) { return 4L * 16 * 16 * 32 * 2; }

// MARK: peak

float pt_bf16_peak_loop(long iterations) {
    __m512 acc[24];
    for (int i = 0; i < 24; i++) acc[i] = _mm512_set1_ps((float)i * 1e-3f);
    __m512bh a = (__m512bh)_mm512_set1_epi32(0x3F803F80), b = (__m512bh)_mm512_set1_epi32(0x00000000);
    for (long it = 0; it < iterations; it++) {
        __asm__ volatile("" : "+v"(b));
#pragma clang loop unroll(full)
        for (int i = 0; i < 24; i++) acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
    }
    __m512 s = acc[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, acc[i]);
    return _mm512_reduce_add_ps(s);
}

long pt_bf16_peak_flops_per_iteration(void) { return 24L * 64; }

// MARK: convolution

typedef struct {
    int pih, piw;        // padded input plane
    long plane, sample;  // padded elements per channel, per sample
    int K, P;
} conv_dims;

static conv_dims dims(pt_bf16_conv_geometry g) {
    conv_dims d;
    d.pih = g.ih + 2 * g.ph; d.piw = g.iw + 2 * g.pw;
    d.plane = (long)d.pih * d.piw; d.sample = d.plane * g.ic;
    d.K = g.ic * g.kh * g.kw; d.P = g.oh * g.ow;
    return d;
}

/// Rounds one sample into its zero-padded bf16 planes (the border must already be zero).
static void pad_sample(pt_bf16_conv_geometry g, conv_dims d, const float *in, uint16_t *pad) {
    for (int c = 0; c < g.ic; c++)
        for (int y = 0; y < g.ih; y++)
            pt_bf16_round(in + ((long)c * g.ih + y) * g.iw, pad + c * d.plane + (long)(y + g.ph) * d.piw + g.pw, g.iw);
}

static void conv_offsets(pt_bf16_conv_geometry g, conv_dims d, int32_t *koff, int32_t *poff) {
    int k = 0;
    for (int c = 0; c < g.ic; c++)
        for (int i = 0; i < g.kh; i++)
            for (int j = 0; j < g.kw; j++) koff[k++] = (int32_t)(c * d.plane + i * d.piw + j);
    int q = 0;
    for (int y = 0; y < g.oh; y++)
        for (int x = 0; x < g.ow; x++) poff[q++] = (int32_t)(y * g.sh * d.piw + x * g.sw);
}

/// Forward, direct form (column stride 1, output width a multiple of 16 or 8): B is not packed. Pair
/// (k, k + 1) of the reduction at pixel q is the word (pad[koff[k] + poff[q]], pad[koff[k + 1] + poff[q]]):
/// with D = koff[k + 1] - koff[k] it is word koff[k] + poff[q] of the image I_D[e] = (pad[e], pad[e + D]),
/// and 16 pixels of one output row are 16 adjacent words there. D takes a few values only (3x3: the
/// next column, the next row, the next channel; an odd K's last pair has no second element: D = 0
/// reads zero), so building those images once per sample interleaves ~2.5 copies of the sample where
/// packing interleaved one copy per tap (9 for 3x3), and the tile loads B straight from them. Same
/// pairs, same chains: the bits of the packed path.
#define DIRECT_IMAGES 4

static int direct_forward(pt_bf16_conv_geometry g) {
    return !use_tiles() && g.sw == 1 && (g.ow % 16 == 0 || (g.ow == 8 && g.oh % 2 == 0));
}

/// The distinct deltas of the reduction's pairs (0 for a last odd element) into delta[] and each pair's
/// image into which[]; the number of images, or 0 when more than DIRECT_IMAGES are needed.
static int pair_deltas(int K, const int32_t *koff, int32_t *delta, uint8_t *which) {
    int n = 0;
    for (int p = 0; p < (K + 1) / 2; p++) {
        int32_t dd = 2 * p + 1 < K ? koff[2 * p + 1] - koff[2 * p] : 0;
        int i = 0;
        while (i < n && delta[i] != dd) i++;
        if (i == n) { if (n == DIRECT_IMAGES) return 0; delta[n++] = dd; }
        which[p] = (uint8_t)i;
    }
    return n;
}

static int tiles_direct(pt_bf16_conv_geometry g);
static size_t tiles_forward_bytes(pt_bf16_conv_geometry g);
static void tiles_forward(pt_bf16_conv_geometry g, int mb, const float *in, const uint16_t *wbf, const float *bias,
                          float *out, char *s);

static int lanes_forward(pt_bf16_conv_geometry g);

static size_t forward_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    size_t direct = direct_forward(g) || lanes_forward(g) ? align64(32 * 16 * 4) + DIRECT_IMAGES * align64((size_t)(d.sample + 16) * 4) + align64((size_t)(d.K + 1) / 2 * 8)
                                        + align64((size_t)(d.K + 1) / 2) : 0;
    return align64(packed_a_bytes(g.oc, d.K)) + align64(packed_b_bytes(d.P, d.K)) + align64((size_t)(d.sample + 16) * 2)
         + align64((size_t)g.oc * d.K * 2 + 32) + align64((size_t)d.K * 4) + align64((size_t)d.P * 4) + align64((size_t)g.oc * 4)
         + direct + (tiles_direct(g) ? tiles_forward_bytes(g) : 0) + 64;
}

static const uint16_t pair_interleave[32] = {
    16, 0, 17, 1, 18, 2, 19, 3, 20, 4, 21, 5, 22, 6, 23, 7, 24, 8, 25, 9, 26, 10, 27, 11, 28, 12, 29, 13, 30, 14, 31, 15 };

/// img[e] = pad[e] << 16 | (delta ? pad[e + delta] : 0) for e < count - delta (the words a pair can read).
static void build_image(const uint16_t *pad, long count, int32_t delta, uint32_t *img) {
    const __m512i perm = _mm512_loadu_si512(pair_interleave);
    long n = count - delta;
    for (long e = 0; e < n; e += 16) {
        __mmask16 m = (__mmask16)(n - e >= 16 ? 0xFFFF : (1u << (n - e)) - 1);
        __m256i hi = _mm256_maskz_loadu_epi16(m, pad + e);
        __m256i lo = delta ? _mm256_maskz_loadu_epi16(m, pad + e + delta) : _mm256_setzero_si256();
        __m512i z = _mm512_inserti64x4(_mm512_castsi256_si512(hi), lo, 1);
        _mm512_mask_storeu_epi32(img + e, m, _mm512_permutexvar_epi16(perm, z));
    }
}

/// 16 pixels' words at b: one row segment, or (split) 8 at b and 8 at b + next (the next output row).
static inline __m512bh load_pixels(const uint32_t *b, int split, long next) {
    if (!split) return (__m512bh)_mm512_loadu_si512(b);
    return (__m512bh)_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b)),
                                        _mm256_loadu_si256((const __m256i *)(b + next)), 1);
}

/// The next sample's fp32 operands, fetched into L2 one cache line per iteration of the current
/// sample's tile loops, so that rounding and copying them reads L2 instead of memory (in training they
/// were written long before: the backward reads what the forward wrote). Prefetches change no result.
typedef struct { const char *p, *end, *p2, *end2; } next_lines;

static inline next_lines next_sample_lines(const float *a, long acount, const float *b, long bcount) {
    next_lines r = { (const char *)a, (const char *)(a + acount), (const char *)b, (const char *)(b + bcount) };
    return r;
}

static const next_lines no_next_lines = { NULL, NULL, NULL, NULL };

static inline void fetch_next_line(next_lines *r) {
    if (r->p < r->end) { _mm_prefetch(r->p, _MM_HINT_T1); r->p += 64; }
    else if (r->p2 < r->end2) { _mm_prefetch(r->p2, _MM_HINT_T1); r->p2 += 64; }
}

/// C[0..<mr][0..<16 * groups] (ldc) = chain over kp pairs of packed A x B (from 0), + bias[row]; pair p of
/// pixel group h at bptr[p] + off[h] (see `load_pixels`).
static inline void direct_forward_tile(int kp, const uint32_t *a, const uint32_t *const *bptr, long off0, long off1,
                                       int groups, int split, long next, float *c, long ldc, int mr, const float *bias,
                                       next_lines *pf) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00, c31 = c00,
           c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
    if (groups > 1) {
        for (int p = 0; p < kp; p++) {
            __m512bh b0 = load_pixels(bptr[p] + off0, split, next), b1 = load_pixels(bptr[p] + off1, split, next);
            fetch_next_line(pf);
#define STEP(r) { __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a[r]); \
                  c##r##0 = _mm512_dpbf16_ps(c##r##0, ar, b0); c##r##1 = _mm512_dpbf16_ps(c##r##1, ar, b1); }
            STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
            a += MR;
        }
    } else {
        for (int p = 0; p < kp; p++) {
            __m512bh b0 = load_pixels(bptr[p] + off0, split, next);
            fetch_next_line(pf);
#define STEP(r) { c##r##0 = _mm512_dpbf16_ps(c##r##0, (__m512bh)_mm512_set1_epi32((int)a[r]), b0); }
            STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
            a += MR;
        }
    }
    __mmask16 m1 = groups > 1 ? 0xFFFF : 0;
#define STOREROW(r) if (r < mr) { \
        __m512 x0 = c##r##0, x1 = c##r##1; \
        if (bias) { __m512 bb = _mm512_set1_ps(bias[r]); x0 = _mm512_add_ps(x0, bb); x1 = _mm512_add_ps(x1, bb); } \
        _mm512_storeu_ps(c + r * ldc, x0); _mm512_mask_storeu_ps(c + r * ldc + 16, m1, x1); }
    STOREROW(0) STOREROW(1) STOREROW(2) STOREROW(3) STOREROW(4) STOREROW(5) STOREROW(6) STOREROW(7)
#undef STOREROW
}

/// Forward with weights already rounded: wbf [oc][K]; or (vector unit) with them already packed as A
/// (`prepacked`, what `pack_a_all` makes of wbf; wbf is then not read).
/// Transposes 16 x 16 32-bit words in place (r[i] lane j -> r[j] lane i).
static inline void transpose16(__m512i r[16]) {
    __m512i t[16];
    for (int i = 0; i < 16; i += 2) { t[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]); t[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]); }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_unpacklo_epi64(t[i], t[i + 2]); r[i + 1] = _mm512_unpackhi_epi64(t[i], t[i + 2]);
        r[i + 2] = _mm512_unpacklo_epi64(t[i + 1], t[i + 3]); r[i + 3] = _mm512_unpackhi_epi64(t[i + 1], t[i + 3]);
    }
    for (int h = 0; h < 16; h += 8)
        for (int i = 0; i < 4; i++) {
            t[h + i] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0x88);
            t[h + i + 4] = _mm512_shuffle_i32x4(r[h + i], r[h + i + 4], 0xdd);
        }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_i32x4(t[i], t[i + 8], 0xdd);
    }
}

/// Forward with output channels on the lanes, for few input channels and narrow output rows (ic < 16,
/// oc a multiple of 16, column stride 1, output width 8, 10 or 12; vector unit): LeNet's conv2 (6 -> 16,
/// 10x10 outputs), where 32-pixel B tiles would be mostly padding. One zmm holds 16 output channels of
/// one pixel: A (16 channels' pair of the reduction) is one word from each of the two packed 8-row
/// panels, B one word of the direct form's pair images (`direct_forward`), broadcast per pixel. Tile:
/// two output rows (R * W <= 24 accumulators), transposed to the channels' planes through the scratch.
/// Same pairs, same chains as the packed GEMM: the same bits.
static int lanes_forward(pt_bf16_conv_geometry g) {
    return !use_tiles() && g.ic < 16 && g.oc % 16 == 0 && g.sw == 1 && (g.ow == 8 || g.ow == 10 || g.ow == 12);
}

static inline __attribute__((always_inline)) void lanes_forward_tile(const int R, const int W, int kp, const uint32_t *a0,
                                                                     const uint32_t *a1, const uint32_t *const *bptr, long off,
                                                                     long next, float *t) {
    __m512 acc[24];
#pragma clang loop unroll(full)
    for (int q = 0; q < R * W; q++) acc[q] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m512bh A = (__m512bh)_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(a0 + p * MR))),
                                                  _mm256_loadu_si256((const __m256i *)(a1 + p * MR)), 1);
        const uint32_t *b = bptr[p] + off;
#pragma clang loop unroll(full)
        for (int r = 0; r < R; r++)
#pragma clang loop unroll(full)
            for (int x = 0; x < W; x++)
                acc[r * W + x] = _mm512_dpbf16_ps(acc[r * W + x], A, (__m512bh)_mm512_set1_epi32((int)b[r * next + x]));
    }
#pragma clang loop unroll(full)
    for (int q = 0; q < R * W; q++) _mm512_store_ps(t + q * 16, acc[q]);
}

/// One sample's lanes forward (see `lanes_forward`); t: 32 x 16 floats of 64-byte aligned scratch.
static void lanes_forward_sample(pt_bf16_conv_geometry g, int kp, const uint32_t *pa, const uint32_t *const *bptr, long piw,
                                 const float *bias, float *out, float *t) {
    long P = (long)g.oh * g.ow;
    for (int o0 = 0; o0 < g.oc; o0 += 16) {
        const uint32_t *a0 = pa + (size_t)(o0 / MR) * MR * kp, *a1 = a0 + (size_t)MR * kp;
        for (int y0 = 0; y0 < g.oh; y0 += 2) {
            int rows = g.oh - y0 >= 2 ? 2 : 1, n = rows * g.ow;
            long off = (long)y0 * g.sh * piw, next = (long)g.sh * piw;
            switch (g.ow * 2 + rows) {
            case 8 * 2 + 2: lanes_forward_tile(2, 8, kp, a0, a1, bptr, off, next, t); break;
            case 8 * 2 + 1: lanes_forward_tile(1, 8, kp, a0, a1, bptr, off, next, t); break;
            case 10 * 2 + 2: lanes_forward_tile(2, 10, kp, a0, a1, bptr, off, next, t); break;
            case 10 * 2 + 1: lanes_forward_tile(1, 10, kp, a0, a1, bptr, off, next, t); break;
            case 12 * 2 + 2: lanes_forward_tile(2, 12, kp, a0, a1, bptr, off, next, t); break;
            default: lanes_forward_tile(1, 12, kp, a0, a1, bptr, off, next, t); break;
            }
            // t[q][o] -> out[o0 + o][pixel y0 * ow + q], 16 pixels at a time (rows past n read zeros).
            for (int q0 = 0; q0 < n; q0 += 16) {
                __m512i r[16];
                for (int i = 0; i < 16; i++) r[i] = q0 + i < n ? _mm512_load_si512(t + (q0 + i) * 16) : _mm512_setzero_si512();
                transpose16(r);
                __mmask16 m = (__mmask16)(n - q0 >= 16 ? 0xFFFF : (1u << (n - q0)) - 1);
                for (int o = 0; o < 16; o++) {
                    __m512 v = _mm512_castsi512_ps(r[o]);
                    if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[o0 + o]));
                    _mm512_mask_storeu_ps(out + (o0 + o) * P + (long)y0 * g.ow + q0, m, v);
                }
            }
        }
    }
}

static void forward_rounded(pt_bf16_conv_geometry g, int mb, const float *in, const uint16_t *wbf, const float *bias,
                            float *out, char *s, const uint32_t *prepacked) {
    conv_dims d = dims(g);
    s = (char *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    uint32_t *pa = bump(&s, packed_a_bytes(g.oc, d.K));
    uint32_t *pb = bump(&s, packed_b_bytes(d.P, d.K));
    uint16_t *pad = bump(&s, (size_t)(d.sample + 16) * 2);
    bump(&s, (size_t)g.oc * d.K * 2 + 32);   // (the caller's rounded weights live here)
    if (tiles_direct(g)) { tiles_forward(g, mb, in, wbf, bias, out, s); return; }
    int32_t *koff = bump(&s, (size_t)d.K * 4), *poff = bump(&s, (size_t)d.P * 4), *rows = bump(&s, (size_t)g.oc * 4);
    if (prepacked) {
        pa = (uint32_t *)prepacked;
    } else {
        for (int o = 0; o < g.oc; o++) rows[o] = o * d.K;
        pt_view wv = { wbf, rows, NULL };
        pack_a_all(wv, g.oc, d.K, pa);
    }
    conv_offsets(g, d, koff, poff);
    memset(pad, 0, (size_t)(d.sample + 16) * 2);
    int kp = (d.K + 1) / 2, images = 0;
    int32_t delta[DIRECT_IMAGES];
    uint32_t *image[DIRECT_IMAGES];
    const uint32_t **bptr = NULL;
    int lanes = lanes_forward(g);
    float *tile = lanes ? bump(&s, 32 * 16 * 4) : NULL;
    if (direct_forward(g) || lanes) {
        for (int i = 0; i < DIRECT_IMAGES; i++) image[i] = bump(&s, (size_t)(d.sample + 16) * 4);
        bptr = bump(&s, (size_t)kp * 8);
        uint8_t *which = bump(&s, (size_t)kp);
        images = pair_deltas(d.K, koff, delta, which);
        for (int p = 0; p < kp; p++) bptr[p] = image[which[p]] + koff[2 * p];
    }
    int split = g.ow == 8;
    for (int n = 0; n < mb; n++) {
        pad_sample(g, d, in + (long)n * g.ic * g.ih * g.iw, pad);
        float *o = out + (long)n * g.oc * d.P;
        if (!images) {
            gemm_packed_a(g.oc, d.P, d.K, pa, pad, poff, koff, o, d.P, 0, bias, pb);
            continue;
        }
        for (int i = 0; i < images; i++) build_image(pad, d.sample, delta[i], image[i]);
        if (lanes) {
            lanes_forward_sample(g, kp, pa, bptr, d.piw, bias, o, tile);
            continue;
        }
        long insize = (long)g.ic * g.ih * g.iw;
        next_lines pf = n + 1 < mb ? next_sample_lines(in + (n + 1) * insize, insize, NULL, 0) : no_next_lines;
        for (int q0 = 0; q0 < d.P; q0 += 32) {
            int groups = d.P - q0 >= 32 ? 2 : 1;
            for (int m0 = 0; m0 < g.oc; m0 += MR)
                direct_forward_tile(kp, pa + (size_t)(m0 / MR) * MR * kp, bptr, poff[q0], groups > 1 ? poff[q0 + 16] : 0,
                                    groups, split, (long)g.sh * d.piw, o + (long)m0 * d.P + q0, d.P,
                                    g.oc - m0 < MR ? g.oc - m0 : MR, bias ? bias + m0 : NULL, &pf);
        }
    }
}

/// Where `forward_rounded` expects the rounded weights inside its scratch.
static uint16_t *rounded_weights_slot(pt_bf16_conv_geometry g, char *s) {
    conv_dims d = dims(g);
    s = (char *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    return (uint16_t *)(s + align64(packed_a_bytes(g.oc, d.K)) + align64(packed_b_bytes(d.P, d.K)) + align64((size_t)(d.sample + 16) * 2));
}

void pt_bf16_conv_forward(pt_bf16_conv_geometry g, int mb, const float *in, const float *w, const float *bias,
                          float *out, void *scratch) {
    uint16_t *wbf = rounded_weights_slot(g, scratch);
    pt_bf16_round(w, wbf, (long)g.oc * g.ic * g.kh * g.kw);
    forward_rounded(g, mb, in, wbf, bias, out, scratch, NULL);
}

static int transposed_data(pt_bf16_conv_geometry g) {
    return g.sh == 1 && g.sw == 1 && g.ph <= g.kh - 1 && g.pw <= g.kw - 1;
}

static pt_bf16_conv_geometry transposed(pt_bf16_conv_geometry g) {
    pt_bf16_conv_geometry t = { g.oc, g.ic, g.oh, g.ow, g.kh, g.kw, 1, 1, g.kh - 1 - g.ph, g.kw - 1 - g.pw, g.ih, g.iw };
    return t;
}

// MARK: planar input gradient

/// Input gradient, planar form, for narrow layers where the GEMM forms would mostly multiply padding
/// (LeNet's conv2: 6 input channels on 14x14, 5x5 taps): stride 1, padding <= kernel - 1, ic < 16,
/// oc even, input rows of at most 16 pixels. One zmm holds 16 pixels of one input-gradient row (lanes
/// past iw are computed and not stored); a pair is two output channels (o, o + 1) at one tap, so the
/// word of lane x for tap (a, b) of the flipped kernel and pair op is Q[op][y][x + b] = (dout[2op][y][x + b - tw]
/// high, dout[2op + 1][y][x + b - tw] low), y = iy - th + a (th = kh - 1 - ph, tw = kw - 1 - pw), from a
/// per-sample copy of dout with zero columns around each row; the weight pair is broadcast. The chain of
/// each input pixel runs over the taps (a, b) whose dout row y exists (a, then b, then o increasing, from
/// 0): rows outside dout are skipped, not multiplied by zero (`bf16ConvBackwardDataReference`). Register
/// tile: 4 rows x 6 channels; per tap and pair, 6 weight broadcasts and one word vector per row feed
/// 24 vdpbf16ps (masked off for a row that does not take the tap row).
#define PLANAR_ROWS 4
#define PLANAR_CHANNELS 6
#define PLANAR_WIDTH 32

static int planar_data(pt_bf16_conv_geometry g) {
    return transposed_data(g) && g.ic < 16 && g.oc % 2 == 0 && g.iw <= 16 && g.kw <= PLANAR_WIDTH - 15 && g.iw + g.pw <= PLANAR_WIDTH;
}

static size_t planar_table_words(pt_bf16_conv_geometry g) {
    int blocks = (g.ic + PLANAR_CHANNELS - 1) / PLANAR_CHANNELS;
    return (size_t)blocks * g.kh * g.kw * (g.oc / 2) * PLANAR_CHANNELS;
}

static size_t planar_bytes(pt_bf16_conv_geometry g) {
    return align64(planar_table_words(g) * 4) + align64((size_t)g.oc * g.ic * g.kh * g.kw * 2 + 32)
         + align64((size_t)(g.oc / 2) * g.oh * PLANAR_WIDTH * 4) + 64;
}

/// table[cb][a][b][op][cc] = (W[2op][c][kh-1-a][kw-1-b] high, W[2op+1][c][kh-1-a][kw-1-b] low), c = 6 cb + cc,
/// 0 past ic; wbf: the rounded weights.
static void planar_table(pt_bf16_conv_geometry g, const uint16_t *wbf, uint32_t *table) {
    int khw = g.kh * g.kw, ops = g.oc / 2;
    long k = 0;
    for (int c0 = 0; c0 < g.ic; c0 += PLANAR_CHANNELS)
        for (int a = 0; a < g.kh; a++)
            for (int b = 0; b < g.kw; b++) {
                int t = (g.kh - 1 - a) * g.kw + (g.kw - 1 - b);
                for (int op = 0; op < ops; op++)
                    for (int cc = 0; cc < PLANAR_CHANNELS; cc++, k++) {
                        int c = c0 + cc;
                        table[k] = c < g.ic ? (uint32_t)wbf[((long)(2 * op) * g.ic + c) * khw + t] << 16
                                                  | wbf[((long)(2 * op + 1) * g.ic + c) * khw + t]
                                            : 0;
                    }
            }
}

/// Adds tap row a into the tile: tile row r reads the words at row[r] (pair plane 0; planes `plane`
/// words apart) under mask k[r]: all lanes, or none for a row that does not take this tap row (its
/// dout row does not exist, or the row is past the input), whose accumulators stay as they are (merge
/// masking: no step, no rounding). w is the table at tap row a; the six weight pairs of a tap stay in
/// registers for all the rows (24 accumulators + 6 + 1 of the 32 zmm).
static inline __attribute__((always_inline)) void planar_tap_row(int kw, int ops, const uint32_t *const row[PLANAR_ROWS],
                                                                 const __mmask16 k[PLANAR_ROWS], long plane, const uint32_t *w,
                                                                 __m512 acc[PLANAR_ROWS][PLANAR_CHANNELS]) {
    for (int b = 0; b < kw; b++)
        for (int op = 0; op < ops; op++) {
            const uint32_t *wt = w + (long)(b * ops + op) * PLANAR_CHANNELS;
            __m512bh wv[PLANAR_CHANNELS];
#pragma clang loop unroll(full)
            for (int cc = 0; cc < PLANAR_CHANNELS; cc++) wv[cc] = (__m512bh)_mm512_set1_epi32((int)wt[cc]);
#pragma clang loop unroll(full)
            for (int r = 0; r < PLANAR_ROWS; r++) {
                __m512bh v = (__m512bh)_mm512_loadu_si512(row[r] + op * plane + b);
#pragma clang loop unroll(full)
                for (int cc = 0; cc < PLANAR_CHANNELS; cc++) acc[r][cc] = _mm512_mask_dpbf16_ps(acc[r][cc], k[r], v, wv[cc]);
            }
        }
}

/// Q[op][y][tw + x] = (dout[2op][y][x] high, dout[2op + 1][y][x] low) for one sample (the other words stay 0).
static void planar_words(pt_bf16_conv_geometry g, const float *dn, uint32_t *q) {
    long P = (long)g.oh * g.ow, plane = (long)g.oh * PLANAR_WIDTH;
    int tw = g.kw - 1 - g.pw;
    for (int op = 0; op < g.oc / 2; op++)
        for (int y = 0; y < g.oh; y++) {
            const float *hi = dn + 2 * op * P + (long)y * g.ow, *lo = hi + P;
            uint32_t *dst = q + op * plane + (long)y * PLANAR_WIDTH + tw;
            for (int x = 0; x < g.ow; x += 16) {
                __mmask16 m = (__mmask16)(g.ow - x >= 16 ? 0xFFFF : (1u << (g.ow - x)) - 1);
                __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, hi + x)));
                __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, lo + x)));
                _mm512_mask_storeu_epi32(dst + x, m, _mm512_or_si512(_mm512_slli_epi32(h, 16), l));
            }
        }
}

/// The planar input gradient; `prepared`: the table as `pt_bf16_conv_prepare` makes it, or NULL.
static void planar_backward_data(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, float *din, void *scratch,
                                 const uint32_t *prepared) {
    char *s = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t *table = bump(&s, planar_table_words(g) * 4);
    uint16_t *wbf = bump(&s, (size_t)g.oc * g.ic * g.kh * g.kw * 2 + 32);
    int ops = g.oc / 2, th = g.kh - 1 - g.ph;
    long plane = (long)g.oh * PLANAR_WIDTH;
    uint32_t *q = bump(&s, (size_t)ops * plane * 4);
    if (prepared) {
        table = (uint32_t *)prepared;
    } else {
        pt_bf16_round(w, wbf, (long)g.oc * g.ic * g.kh * g.kw);
        planar_table(g, wbf, table);
    }
    memset(q, 0, (size_t)ops * plane * 4);
    long P = (long)g.oh * g.ow, inSize = (long)g.ic * g.ih * g.iw;
    long wrow = (long)g.kw * ops * PLANAR_CHANNELS, wblock = g.kh * wrow;
    __mmask16 store = (__mmask16)(g.iw >= 16 ? 0xFFFF : (1u << g.iw) - 1);
    for (int n = 0; n < mb; n++) {
        planar_words(g, dout + n * g.oc * P, q);
        float *dst = din + n * inSize;
        for (int c0 = 0; c0 < g.ic; c0 += PLANAR_CHANNELS) {
            int nc = g.ic - c0 < PLANAR_CHANNELS ? g.ic - c0 : PLANAR_CHANNELS;
            const uint32_t *tb = table + (c0 / PLANAR_CHANNELS) * wblock;
            for (int iy0 = 0; iy0 < g.ih; iy0 += PLANAR_ROWS) {
                int nr = g.ih - iy0 < PLANAR_ROWS ? g.ih - iy0 : PLANAR_ROWS;
                __m512 acc[PLANAR_ROWS][PLANAR_CHANNELS];
                for (int r = 0; r < PLANAR_ROWS; r++)
                    for (int cc = 0; cc < PLANAR_CHANNELS; cc++) acc[r][cc] = _mm512_setzero_ps();
                // Tap rows in order; tile row r takes tap row a where its dout row y0 + r = iy0 + r - th + a exists.
                for (int a = 0; a < g.kh; a++) {
                    int y0 = iy0 - th + a, any = 0;
                    const uint32_t *row[PLANAR_ROWS];
                    __mmask16 k[PLANAR_ROWS];
                    for (int r = 0; r < PLANAR_ROWS; r++) {
                        int takes = r < nr && y0 + r >= 0 && y0 + r < g.oh;
                        row[r] = q + (long)(takes ? y0 + r : 0) * PLANAR_WIDTH;
                        k[r] = takes ? 0xFFFF : 0;
                        any |= takes;
                    }
                    if (any) planar_tap_row(g.kw, ops, row, k, plane, tb + a * wrow, acc);
                }
                for (int r = 0; r < nr; r++)
                    for (int cc = 0; cc < nc; cc++)
                        _mm512_mask_storeu_ps(dst + ((long)(c0 + cc) * g.ih + iy0 + r) * g.iw, store, acc[r][cc]);
            }
        }
    }
}

static size_t data_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    if (planar_data(g)) return planar_bytes(g);
    if (transposed_data(g)) return forward_bytes(transposed(g));
    // dcol [K][P] = W^T x dout: A = rounded weights read transposed, B = the sample's rounded dout.
    return align64(packed_a_bytes(d.K, g.oc)) + align64(packed_b_bytes(d.P, g.oc)) + align64((size_t)g.oc * d.K * 2 + 32)
         + align64((size_t)g.oc * d.P * 2 + 32) + align64((size_t)d.K * d.P * 4) + align64((size_t)d.K * 4)
         + align64((size_t)g.oc * 4) + align64((size_t)d.P * 4) + 64;
}

/// row[2x] += from[x] for lo <= x < hi: eight at a time, spread to the even lanes (the odd ones are
/// neither read nor written), the same adds as the scalar loop.
static inline void add_stride2(float *row, const float *from, int lo, int hi) {
    for (int x = lo; x < hi; x += 8) {
        int n = hi - x < 8 ? hi - x : 8;
        __mmask16 even = (__mmask16)(0x5555 & ((1u << (2 * n - 1)) - 1));
        __m512 f = _mm512_maskz_expand_ps(even, _mm512_castps256_ps512(_mm256_maskz_loadu_ps((__mmask8)((1u << n) - 1), from + x)));
        __m512 v = _mm512_maskz_loadu_ps(even, row + 2 * x);
        _mm512_mask_storeu_ps(row + 2 * x, even, _mm512_add_ps(v, f));
    }
}

/// col2im for input rows of at most 32 and output rows of at most 16 pixels: each input row summed in
/// registers, the taps' output rows spread onto it by a permute (lane X of tap j takes output column
/// (X + pw - j) / sw where that is whole and in range), added under a mask in tap order (c, i, j) from 0:
/// the adds of the scatter loop, without its stores and reloads.
static void col2im_rows(pt_bf16_conv_geometry g, const float *col, float *din, int32_t idx[16][32], const uint32_t *mask) {
    int P = g.oh * g.ow;
    __mmask16 from_mask = (__mmask16)((1u << g.ow) - 1);
    __mmask16 out0 = (__mmask16)(g.iw >= 16 ? 0xFFFF : (1u << g.iw) - 1), out1 = (__mmask16)(g.iw <= 16 ? 0 : (1u << (g.iw - 16)) - 1);
    for (int c = 0; c < g.ic; c++)
        for (int iy = 0; iy < g.ih; iy++) {
            __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
            for (int i = 0; i < g.kh; i++) {
                int yy = iy + g.ph - i;
                if (yy < 0 || yy % g.sh != 0 || yy / g.sh >= g.oh) continue;
                const float *from = col + (long)(c * g.kh + i) * g.kw * P + (yy / g.sh) * g.ow;
                for (int j = 0; j < g.kw; j++, from += P) {
                    __m512 src = _mm512_maskz_loadu_ps(from_mask, from);
                    acc0 = _mm512_mask_add_ps(acc0, (__mmask16)mask[j], acc0,
                                              _mm512_permutexvar_ps(_mm512_loadu_si512(idx[j]), src));
                    if (out1)
                        acc1 = _mm512_mask_add_ps(acc1, (__mmask16)(mask[j] >> 16), acc1,
                                                  _mm512_permutexvar_ps(_mm512_loadu_si512(idx[j] + 16), src));
                }
            }
            float *row = din + ((long)c * g.ih + iy) * g.iw;
            _mm512_mask_storeu_ps(row, out0, acc0);
            if (out1) _mm512_mask_storeu_ps(row + 16, out1, acc1);
        }
}

/// W'[c][o][i][j] = W[o][c][kh-1-i][kw-1-j], rounded: the transposed convolution's weights.
static void flipped_weights(pt_bf16_conv_geometry g, const float *w, uint16_t *wt) {
    int khw = g.kh * g.kw;
    uint16_t tmp[16];
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++) {
            const float *src = w + ((long)o * g.ic + c) * khw;
            uint16_t *dst = wt + ((long)c * g.oc + o) * khw;
            for (int q = 0; q < khw; q += 16) {
                int n = khw - q < 16 ? khw - q : 16;
                pt_bf16_round(src + q, tmp, n);
                for (int e = 0; e < n; e++) dst[khw - 1 - (q + e)] = tmp[e];
            }
        }
}

/// The unfolding input gradient's A operand: W^T [K][oc] from the rounded wbf, packed (rows, roff: K and oc ints).
static void pack_transposed_weights(pt_bf16_conv_geometry g, const uint16_t *wbf, int32_t *rows, int32_t *roff, uint32_t *pa) {
    conv_dims d = dims(g);
    for (int k = 0; k < d.K; k++) rows[k] = k;
    for (int o = 0; o < g.oc; o++) roff[o] = o * d.K;
    pt_view wv = { wbf, rows, roff };
    pack_a_all(wv, d.K, g.oc, pa);
}

/// The input gradient; `prepacked`: the weights as `pt_bf16_conv_prepare` packs them for it, or NULL.
static void backward_data(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, float *din, void *scratch,
                          const uint32_t *prepacked) {
    conv_dims d = dims(g);
    if (planar_data(g)) {
        planar_backward_data(g, mb, dout, w, din, scratch, prepacked);
        return;
    }
    if (transposed_data(g)) {
        // The transposed convolution's forward, with the flipped weights.
        pt_bf16_conv_geometry t = transposed(g);
        uint16_t *wt = rounded_weights_slot(t, scratch);
        if (!prepacked) flipped_weights(g, w, wt);
        forward_rounded(t, mb, dout, wt, NULL, din, scratch, prepacked);
        return;
    }
    char *s = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint32_t *pa = bump(&s, packed_a_bytes(d.K, g.oc));
    uint32_t *pb = bump(&s, packed_b_bytes(d.P, g.oc));
    uint16_t *wbf = bump(&s, (size_t)g.oc * d.K * 2 + 32);
    uint16_t *dbf = bump(&s, (size_t)g.oc * d.P * 2 + 32);
    float *col = bump(&s, (size_t)d.K * d.P * 4);
    int32_t *rows = bump(&s, (size_t)d.K * 4), *roff = bump(&s, (size_t)g.oc * 4), *lane = bump(&s, (size_t)d.P * 4);
    if (prepacked) {
        pa = (uint32_t *)prepacked;
    } else {
        pt_bf16_round(w, wbf, (long)g.oc * d.K);
        pack_transposed_weights(g, wbf, rows, roff, pa);
    }
    for (int o = 0; o < g.oc; o++) roff[o] = o * d.P;
    for (int q = 0; q < d.P; q++) lane[q] = q;
    long inSize = (long)g.ic * g.ih * g.iw;
    int small_rows = g.iw <= 32 && g.ow <= 16 && g.kw <= 16;
    int32_t idx[16][32];
    uint32_t mask[16];
    if (small_rows)
        for (int j = 0; j < g.kw; j++) {
            mask[j] = 0;
            for (int X = 0; X < 32; X++) {
                int t = X + g.pw - j;
                int ok = X < g.iw && t >= 0 && t % g.sw == 0 && t / g.sw < g.ow;
                idx[j][X] = ok ? t / g.sw : 0;
                mask[j] |= (uint32_t)ok << X;
            }
        }
    for (int n = 0; n < mb; n++) {
        pt_bf16_round(dout + (long)n * g.oc * d.P, dbf, (long)g.oc * d.P);
        gemm_packed_a(d.K, d.P, g.oc, pa, dbf, lane, roff, col, d.P, 0, NULL, pb);
        // col2im: taps (c, i, j) in order, each adding into distinct pixels.
        float *dst = din + n * inSize;
        if (small_rows) {
            col2im_rows(g, col, dst, idx, mask);
            continue;
        }
        memset(dst, 0, (size_t)inSize * 4);
        int k = 0;
        for (int c = 0; c < g.ic; c++)
            for (int i = 0; i < g.kh; i++)
                for (int j = 0; j < g.kw; j++, k++) {
                    const float *src = col + (long)k * d.P;
                    // Output columns x with 0 <= x * sw - pw + j < iw.
                    int lo = g.pw - j <= 0 ? 0 : (g.pw - j + g.sw - 1) / g.sw;
                    int hi = g.iw - 1 + g.pw - j < 0 ? 0 : (g.iw - 1 + g.pw - j) / g.sw + 1;
                    if (hi > g.ow) hi = g.ow;
                    for (int y = 0; y < g.oh; y++) {
                        int iy = y * g.sh - g.ph + i;
                        if (iy < 0 || iy >= g.ih) continue;
                        float *row = dst + ((long)c * g.ih + iy) * g.iw - g.pw + j;
                        const float *from = src + y * g.ow;
                        if (g.sw == 1) {
                            for (int x = lo; x < hi; x++) row[x] += from[x];
                        } else if (g.sw == 2) {
                            add_stride2(row, from, lo, hi);
                        } else {
                            for (int x = lo; x < hi; x++) row[x * g.sw] += from[x];
                        }
                    }
                }
    }
}

void pt_bf16_conv_backward_data(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, float *din,
                                void *scratch) {
    backward_data(g, mb, dout, w, din, scratch, NULL);
}

// Prepared weights (vector unit): the weights rounded and packed as the forward's A and as the input
// gradient's (the planar form's pair table, flipped for the transposed forward, or W^T for the unfolding path), made once while the
// weights stay the same; the packed words are those each call packs, so the bits are the same.

static size_t prepared_data_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    if (planar_data(g)) return planar_table_words(g) * 4;
    if (transposed_data(g)) { pt_bf16_conv_geometry t = transposed(g); return packed_a_bytes(t.oc, dims(t).K); }
    return packed_a_bytes(d.K, g.oc);
}

size_t pt_bf16_conv_prepared_bytes(pt_bf16_conv_geometry g) {
    if (use_tiles()) return 0;
    return align64(packed_a_bytes(g.oc, dims(g).K)) + align64(prepared_data_bytes(g)) + 64;
}

static size_t prepare_scratch_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    int n = d.K > g.oc ? d.K : g.oc; if (g.ic > n) n = g.ic;
    return 2 * align64((size_t)g.oc * d.K * 2 + 32) + 2 * align64((size_t)n * 4) + 64;
}

static void prepared_split_conv(pt_bf16_conv_geometry g, const void *prepared, uint32_t **forward, uint32_t **data) {
    char *s = (char *)(((uintptr_t)prepared + 63) & ~(uintptr_t)63);
    *forward = bump(&s, packed_a_bytes(g.oc, dims(g).K));
    *data = bump(&s, prepared_data_bytes(g));
}

void pt_bf16_conv_prepare(pt_bf16_conv_geometry g, const float *w, void *prepared, void *scratch) {
    conv_dims d = dims(g);
    uint32_t *forward, *data;
    prepared_split_conv(g, prepared, &forward, &data);
    char *s = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint16_t *wbf = bump(&s, (size_t)g.oc * d.K * 2 + 32), *wt = bump(&s, (size_t)g.oc * d.K * 2 + 32);
    int n = d.K > g.oc ? d.K : g.oc; if (g.ic > n) n = g.ic;
    int32_t *rows = bump(&s, (size_t)n * 4), *roff = bump(&s, (size_t)n * 4);
    pt_bf16_round(w, wbf, (long)g.oc * d.K);
    for (int o = 0; o < g.oc; o++) rows[o] = o * d.K;
    pt_view wv = { wbf, rows, NULL };
    pack_a_all(wv, g.oc, d.K, forward);
    if (planar_data(g)) {
        planar_table(g, wbf, data);
    } else if (transposed_data(g)) {
        pt_bf16_conv_geometry t = transposed(g);
        int tk = dims(t).K;
        flipped_weights(g, w, wt);
        for (int c = 0; c < g.ic; c++) rows[c] = c * tk;
        pt_view tv = { wt, rows, NULL };
        pack_a_all(tv, t.oc, tk, data);
    } else {
        pack_transposed_weights(g, wbf, rows, roff, data);
    }
}

void pt_bf16_conv_forward_prepared(pt_bf16_conv_geometry g, int mb, const float *in, const void *prepared, const float *bias,
                                   float *out, void *scratch) {
    uint32_t *forward, *data;
    prepared_split_conv(g, prepared, &forward, &data);
    forward_rounded(g, mb, in, NULL, bias, out, scratch, forward);
}

void pt_bf16_conv_backward_data_prepared(pt_bf16_conv_geometry g, int mb, const float *dout, const void *prepared, float *din,
                                         void *scratch) {
    uint32_t *forward, *data;
    prepared_split_conv(g, prepared, &forward, &data);
    backward_data(g, mb, dout, NULL, din, scratch, data);
}

/// Backward weights, direct form (ic a multiple of 16, even output width): no packing. The reduction
/// pairs (pixels q, q + 1 of one sample, q even) lie in one output row, so for tap (i, j) and channel c
/// the B word of pair (y, x) is (in[c][y*sh + i][x*sw + j], in[c][y*sh + i][(x + 1)*sw + j]). A copy of
/// the padded sample holds exactly these words channels-last, `pairs[(Y * piw + X) * ic + c]` =
/// (pad[c][Y][X] high, pad[c][Y][X + sw] low), so 16 columns (tap, channels c..c+15) of one pair are one
/// 64-byte load, and dout rounded with its pixel pairs' halves swapped is the A operand as it lies
/// (broadcast per row). Columns run k' = (i, j, c); dW is read into and written back from that order
/// around the samples (copies, so the chains are the same as the packed GEMM's).
static int direct_weights(pt_bf16_conv_geometry g) { return !use_tiles() && g.ic % 16 == 0 && g.ow % 2 == 0; }

/// Backward weights with a channels-last copy of the padded sample when ic is a multiple of 16 (and the
/// output width odd, else `direct_weights`): the B operand's columns (reduction index k) are then
/// ordered (i, j, c), 16 consecutive channels lie next to each other in memory and the packer loads
/// them instead of gathering; dW is read into and written back from that order around the samples.
/// (Not for 1x1 kernels: there the reordering costs more than the gathers it saves.)
static int channels_last_weights(pt_bf16_conv_geometry g) {
    return !direct_weights(g) && g.ic % 16 == 0 && g.kh * g.kw > 1;
}

static size_t tiles_weights_bytes(pt_bf16_conv_geometry g);

static int lanes_weights(pt_bf16_conv_geometry g);
static size_t lanes_weights_bytes(pt_bf16_conv_geometry g);

static size_t weights_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    if (tiles_direct(g)) return tiles_weights_bytes(g);
    if (lanes_weights(g)) return lanes_weights_bytes(g);
    size_t reordered = direct_weights(g) || channels_last_weights(g) ? align64((size_t)g.oc * d.K * 4) : 0;
    if (direct_weights(g))
        return align64((size_t)(d.sample + 64) * 2) + align64((size_t)d.sample * 4) + align64((size_t)g.oc * d.P * 2 + 64)
             + reordered + align64((size_t)d.K / 16 * 4) + align64((size_t)d.P / 2 * 4) + 64;
    return align64(packed_a_bytes(g.oc, d.P)) + align64(packed_b_bytes(d.K, d.P)) + align64((size_t)(d.sample + 16) * 2)
         + align64((size_t)g.oc * d.P * 2 + 32) + align64((size_t)d.K * 4) + align64((size_t)d.P * 4) + align64((size_t)g.oc * 4)
         + reordered + 64;
}


/// The pair words of the padded bf16 sample `pad` (see `direct_weights`) that a pair reads: rows a tap
/// reads, columns X < (ow - 2) * sw + kw. Per 16 channels x 16 columns: one load and one permute per
/// channel row (words of X and X + sw; zero past the row), a 16 x 16 transpose; the last few columns scalar.
static void build_pairs(pt_bf16_conv_geometry g, conv_dims d, const uint16_t *pad, uint32_t *pairs) {
    int columns = (g.ow - 2) * g.sw + g.kw;
    uint16_t pick[32];
    for (int l = 0; l < 16; l++) { pick[2 * l] = (uint16_t)(l + g.sw); pick[2 * l + 1] = (uint16_t)l; }
    const __m512i perm = _mm512_loadu_si512(pick);
    for (int Y = 0; Y < d.pih; Y++) {
        int used = 0;
        for (int i = 0; i < g.kh && !used; i++) used = Y >= i && (Y - i) % g.sh == 0 && (Y - i) / g.sh < g.oh;
        if (!used) continue;
        for (int c0 = 0; c0 < g.ic; c0 += 16) {
            const uint16_t *rows = pad + (long)c0 * d.plane + (long)Y * d.piw;
            uint32_t *dst = pairs + (long)Y * d.piw * g.ic + c0;
            int X0 = 0;
            for (; columns - X0 > 4; X0 += 16) {
                int n = columns - X0 < 16 ? columns - X0 : 16;
                int avail = d.piw - X0 < 32 ? d.piw - X0 : 32;
                __mmask32 m = (__mmask32)((1ull << avail) - 1);
                __m512i r[16];
                for (int c = 0; c < 16; c++)
                    r[c] = _mm512_permutexvar_epi16(perm, _mm512_maskz_loadu_epi16(m, rows + (long)c * d.plane + X0));
                transpose16(r);
                for (int x = 0; x < n; x++) _mm512_storeu_si512(dst + (long)(X0 + x) * g.ic, r[x]);
            }
            for (; X0 < columns; X0++)
                for (int c = 0; c < 16; c++) {
                    const uint16_t *row = rows + (long)c * d.plane;
                    dst[(long)X0 * g.ic + c] = (uint32_t)row[X0] << 16 | (X0 + g.sw < d.piw ? row[X0 + g.sw] : 0);
                }
        }
    }
}

/// fp32 -> bf16 (as `pt_bf16_round`), each pair of elements swapped, so that the 32-bit word at an even
/// index holds element 2p in its high half. `count` even.
static void round_swapped(const float *src, uint16_t *dst, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_ror_epi32(v, 16));
    }
    if (i < count) {
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        __m256i v = (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i));
        _mm256_mask_storeu_epi16(dst + i, m, _mm256_ror_epi32(v, 16));
    }
}

/// One tile of the direct backward weights: C[0..<mr][16 * groups] (ldc) += chain over the sample's np
/// pixel pairs; row r's pair p is a[r][p] (rows >= mr read row 0, not stored); group h's pair p at
/// pairs[poff[p] + gbase[h]] (one loop over all pairs: rows of 4 pairs (8x8 planes) would end a loop
/// every 64 vdpbf16ps).
static inline void direct_weights_tile(int np, const int32_t *poff, const uint32_t *a, long lda, int mr,
                                       const uint32_t *pairs, const int32_t *gbase, int groups, float *c, long ldc,
                                       next_lines *pf) {
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    const uint32_t *a0 = a, *a1 = a + (mr > 1) * lda, *a2 = a + (mr > 2) * 2 * lda, *a3 = a + (mr > 3) * 3 * lda,
                   *a4 = a + (mr > 4) * 4 * lda, *a5 = a + (mr > 5) * 5 * lda, *a6 = a + (mr > 6) * 6 * lda,
                   *a7 = a + (mr > 7) * 7 * lda;
    __mmask16 m1 = groups > 1 ? 0xFFFF : 0;
#define LOADROW(r) \
    if (r < mr) { c##r##0 = _mm512_loadu_ps(c + r * ldc); c##r##1 = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16); } \
    else { c##r##0 = _mm512_setzero_ps(); c##r##1 = _mm512_setzero_ps(); }
    LOADROW(0) LOADROW(1) LOADROW(2) LOADROW(3) LOADROW(4) LOADROW(5) LOADROW(6) LOADROW(7)
#undef LOADROW
    const uint32_t *b0p = pairs + gbase[0], *b1p = pairs + gbase[groups > 1 ? 1 : 0];
    if (groups > 1) {
        for (int p = 0; p < np; p++) {
            long off = poff[p];
            __m512bh b0 = (__m512bh)_mm512_loadu_si512(b0p + off), b1 = (__m512bh)_mm512_loadu_si512(b1p + off);
            fetch_next_line(pf);
#define STEP(r) { __m512bh ar = (__m512bh)_mm512_set1_epi32((int)a##r[p]); \
              c##r##0 = _mm512_dpbf16_ps(c##r##0, ar, b0); c##r##1 = _mm512_dpbf16_ps(c##r##1, ar, b1); }
            STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
        }
    } else {
        for (int p = 0; p < np; p++) {
            __m512bh b0 = (__m512bh)_mm512_loadu_si512(b0p + poff[p]);
            fetch_next_line(pf);
#define STEP(r) { c##r##0 = _mm512_dpbf16_ps(c##r##0, (__m512bh)_mm512_set1_epi32((int)a##r[p]), b0); }
            STEP(0) STEP(1) STEP(2) STEP(3) STEP(4) STEP(5) STEP(6) STEP(7)
#undef STEP
        }
    }
#define STOREROW(r) if (r < mr) { _mm512_storeu_ps(c + r * ldc, c##r##0); _mm512_mask_storeu_ps(c + r * ldc + 16, m1, c##r##1); }
    STOREROW(0) STOREROW(1) STOREROW(2) STOREROW(3) STOREROW(4) STOREROW(5) STOREROW(6) STOREROW(7)
#undef STOREROW
}

// MARK: backward weights, output channels on the lanes

/// Backward weights of a layer with few input channels (ic < 16, oc a multiple of 16, even output
/// width, 3x3 or 5x5; vector unit): LeNet's conv2 (6 -> 16), the 3 -> 16 / 3 -> 32 first layers of CIFAR
/// nets, where the GEMM forms' tiles are mostly padding (K = 27 or 150 columns). One zmm holds 16 output
/// channels of one tap (k = (c, i, j)), a pair is two adjacent pixels (q, q + 1) of one output row. A:
/// dout rounded with its pair halves swapped, transposed to channels-last words D[p][o]; B: one word of
/// the pair image I[e] = (pad[e], pad[e + sw]) of the sample's padded planes, broadcast per tap and
/// pair. Tile: every tap of 3 channels (3x3) or of one (5x5), 27 or 25 accumulators and one A load per
/// pair. dW is read into and written back from [k][o] around the samples. Same pairs, same chains as
/// the packed GEMM (over the samples in order, each sample's pixels in order): the same bits.
static int lanes_weights(pt_bf16_conv_geometry g) {
    return !use_tiles() && g.ic < 16 && g.oc % 16 == 0 && g.ow % 2 == 0 && g.kh == g.kw && (g.kw == 3 || g.kw == 5);
}

int pt_bf16_conv_weights_on_lanes(pt_bf16_conv_geometry g) { return lanes_weights(g); }

static size_t lanes_weights_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    return align64((size_t)(d.sample + 64) * 2) + align64((size_t)(d.sample + 64) * 4) + align64((size_t)g.oc * d.P * 2 + 64)
         + align64((size_t)(d.P / 2) * g.oc * 4) + align64((size_t)d.K * g.oc * 4) + 64;
}

/// acc[t][o0..o0+15] (rows oc floats apart; t = (cc, i, j) over ct channels from the image's first) +=
/// chain over the sample's pixel pairs of D[p][o] x I[tap t at pair p].
static inline __attribute__((always_inline)) void lanes_weights_tile(const int ct, const int kw, pt_bf16_conv_geometry g, conv_dims d,
                                                                     const uint32_t *img, const uint32_t *D, float *acc) {
    __m512 a[27];
    const int n = ct * kw * kw;
#pragma clang loop unroll(full)
    for (int t = 0; t < n; t++) a[t] = _mm512_loadu_ps(acc + (long)t * g.oc);
    int half = g.ow / 2;
    for (int y = 0; y < g.oh; y++) {
        const uint32_t *row = img + (long)y * g.sh * d.piw, *dy = D + (long)y * half * g.oc;
        for (int xp = 0; xp < half; xp++) {
            __m512bh A = (__m512bh)_mm512_loadu_si512(dy + (long)xp * g.oc);
            const uint32_t *e = row + 2 * xp * g.sw;
#pragma clang loop unroll(full)
            for (int cc = 0; cc < ct; cc++)
#pragma clang loop unroll(full)
                for (int i = 0; i < kw; i++) {
                    const uint32_t *er = e + cc * d.plane + (long)i * d.piw;
#pragma clang loop unroll(full)
                    for (int j = 0; j < kw; j++) {
                        int t = (cc * kw + i) * kw + j;
                        a[t] = _mm512_dpbf16_ps(a[t], A, (__m512bh)_mm512_set1_epi32((int)er[j]));
                    }
                }
        }
    }
#pragma clang loop unroll(full)
    for (int t = 0; t < n; t++) _mm512_storeu_ps(acc + (long)t * g.oc, a[t]);
}

static void lanes_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw, char *s) {
    conv_dims d = dims(g);
    uint16_t *pad = bump(&s, (size_t)(d.sample + 64) * 2);
    uint32_t *img = bump(&s, (size_t)(d.sample + 64) * 4);
    uint16_t *dbf = bump(&s, (size_t)g.oc * d.P * 2 + 64);
    int half = d.P / 2;
    uint32_t *D = bump(&s, (size_t)half * g.oc * 4);
    float *acc = bump(&s, (size_t)d.K * g.oc * 4);
    memset(pad, 0, (size_t)(d.sample + 64) * 2);
    for (int o = 0; o < g.oc; o++)
        for (int k = 0; k < d.K; k++) acc[(long)k * g.oc + o] = dw[(long)o * d.K + k];
    int ct = g.kw == 3 ? 3 : 1;
    const uint32_t *w32 = (const uint32_t *)dbf;
    for (int n = 0; n < mb; n++) {
        pad_sample(g, d, in + (long)n * g.ic * g.ih * g.iw, pad);
        build_image(pad, d.sample, g.sw, img);
        round_swapped(dout + (long)n * g.oc * d.P, dbf, (long)g.oc * d.P);
        // D[p][o] = word p of dout row o: 16 x 16 blocks transposed, the last pairs one by one.
        for (int o0 = 0; o0 < g.oc; o0 += 16) {
            int p0 = 0;
            for (; p0 + 16 <= half; p0 += 16) {
                __m512i r[16];
                for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_si512(w32 + (long)(o0 + i) * half + p0);
                transpose16(r);
                for (int i = 0; i < 16; i++) _mm512_storeu_si512(D + (long)(p0 + i) * g.oc + o0, r[i]);
            }
            for (; p0 < half; p0++)
                for (int i = 0; i < 16; i++) D[(long)p0 * g.oc + o0 + i] = w32[(long)(o0 + i) * half + p0];
        }
        for (int o0 = 0; o0 < g.oc; o0 += 16)
            for (int c0 = 0; c0 < g.ic; c0 += ct) {
                int m = g.ic - c0 < ct ? g.ic - c0 : ct;
                const uint32_t *ic0 = img + c0 * d.plane;
                float *a0 = acc + (long)c0 * g.kh * g.kw * g.oc + o0;
                if (g.kw == 5) lanes_weights_tile(1, 5, g, d, ic0, D + o0, a0);
                else if (m == 3) lanes_weights_tile(3, 3, g, d, ic0, D + o0, a0);
                else if (m == 2) lanes_weights_tile(2, 3, g, d, ic0, D + o0, a0);
                else lanes_weights_tile(1, 3, g, d, ic0, D + o0, a0);
            }
    }
    for (int o = 0; o < g.oc; o++)
        for (int k = 0; k < d.K; k++) dw[(long)o * d.K + k] = acc[(long)k * g.oc + o];
}

static void direct_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw,
                                    char *s) {
    conv_dims d = dims(g);
    int khw = g.kh * g.kw, groups = d.K / 16;
    uint16_t *pad = bump(&s, (size_t)(d.sample + 64) * 2);
    uint32_t *pairs = bump(&s, (size_t)d.sample * 4);
    uint16_t *dbf = bump(&s, (size_t)g.oc * d.P * 2 + 64);
    float *acc = bump(&s, (size_t)g.oc * d.K * 4);
    int32_t *gbase = bump(&s, (size_t)groups * 4), *poff = bump(&s, (size_t)d.P / 2 * 4);
    for (int y = 0, p = 0; y < g.oh; y++)
        for (int x = 0; x < g.ow; x += 2, p++) poff[p] = (int32_t)((y * g.sh * d.piw + x * g.sw) * g.ic);
    for (int t = 0; t < khw; t++)
        for (int c0 = 0; c0 < g.ic; c0 += 16)
            gbase[(t * g.ic + c0) / 16] = (int32_t)(((t / g.kw) * d.piw + t % g.kw) * g.ic + c0);
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int t = 0; t < khw; t++) acc[(long)o * d.K + t * g.ic + c] = dw[(long)o * d.K + c * khw + t];
    memset(pad, 0, (size_t)(d.sample + 64) * 2);
    long lda = d.P / 2;
    for (int n = 0; n < mb; n++) {
        pad_sample(g, d, in + (long)n * g.ic * g.ih * g.iw, pad);
        build_pairs(g, d, pad, pairs);
        round_swapped(dout + (long)n * g.oc * d.P, dbf, (long)g.oc * d.P);
        const uint32_t *a = (const uint32_t *)dbf;
        long insize = (long)g.ic * g.ih * g.iw, outsize = (long)g.oc * d.P;
        next_lines pf = n + 1 < mb ? next_sample_lines(in + (n + 1) * insize, insize, dout + (n + 1) * outsize, outsize)
                                   : no_next_lines;
        for (int h = 0; h < groups; h += 2) {
            int gs = groups - h < 2 ? groups - h : 2;
            for (int m0 = 0; m0 < g.oc; m0 += MR)
                direct_weights_tile(d.P / 2, poff, a + m0 * lda, lda, g.oc - m0 < MR ? g.oc - m0 : MR, pairs, gbase + h, gs,
                                    acc + (long)m0 * d.K + h * 16, d.K, &pf);
        }
    }
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int t = 0; t < khw; t++) dw[(long)o * d.K + c * khw + t] = acc[(long)o * d.K + t * g.ic + c];
}

// MARK: AMX direct convolution

// With AMX tiles, convolutions whose two strides are equal skip the packing of `gemm_tiles`: the
// sample is copied once into a zero-padded channels-last bf16 image X[e][c] (e = Y * piw + X over the
// padded plane, channels padded to icp, a multiple of 16), and output pixels are taken "wide": q =
// y * piw + x for x < piw, so that tap (i, j) of every output pixel reads X at e = s * q + i * piw + j.
// Sixteen consecutive wide pixels are then sixteen tile rows at a constant stride, loaded straight
// from X (the columns x >= ow are computed and dropped, or carry a zero gradient).
// - Forward (and the stride-1 input gradient, the transposed convolution's forward): for kernel row i
//   the reduction elements (j, c) of one output pixel lie contiguous in X (kw * icp of them from
//   e = s * q + i * piw), so A is 16 pixels x 32 of them and B the matching weights (zero for j >= kw
//   or c >= ic): per output, kernel rows in order, each row's run in blocks of 32, one tdpbf16ps each.
// - Weight gradient: dW of kernel row i, rows o, columns (j, c) = chain over samples, and over each
//   sample's wide pixels (Q of them, rounded up to 32) in blocks of 32 (dout zero at x >= ow and past
//   the last row), one tdpbf16ps
//   per block; B comes from a pair image PI[e][c] = (X[e][c], X[e + s][c]), columns (j, c) of one
//   pixel pair contiguous.

static int tiles_direct(pt_bf16_conv_geometry g) { return use_tiles() && g.sh == g.sw; }

typedef struct { int s, icp, rowlen, rblocks, ntiles, Q, Qt; long E, reach; } tile_dims;

/// icp: ic padded to 16; rowlen: a kernel row's kw * icp elements padded to whole 32-blocks (rblocks);
/// ntiles: 16-wide tiles of oc; Q: wide output pixels; Qt: Q padded to whole 64-pixel steps; reach:
/// pixels of X that Qt wide pixels read; E: pixels the X copy holds (>= the padded plane, reach + s).
static tile_dims tiles_dims(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    tile_dims t;
    t.s = g.sh; t.icp = (g.ic + 15) / 16 * 16; t.rowlen = (g.kw * t.icp + 31) / 32 * 32; t.rblocks = t.rowlen / 32;
    t.ntiles = (g.oc + 15) / 16; t.Q = g.oh * d.piw; t.Qt = (t.Q + 63) / 64 * 64;
    t.reach = (long)t.s * t.Qt + (long)(g.kh - 1) * d.piw + t.rowlen / t.icp + 1;
    t.E = t.reach + t.s > d.plane ? t.reach + t.s : d.plane;
    return t;
}

/// One sample (NCHW fp32) into the channels-last copy X (border and channels >= ic stay as they are:
/// zero). Per 16 channels x 16 pixels: rounded rows interleaved into channel-pair words, transposed.
static void channels_last_sample(pt_bf16_conv_geometry g, conv_dims d, tile_dims t, const float *in, uint16_t *X) {
    const __m512i perm = _mm512_loadu_si512(interleave_index);
    for (int c0 = 0; c0 < g.ic; c0 += 16)
        for (int y = 0; y < g.ih; y++)
            for (int x0 = 0; x0 < g.iw; x0 += 16) {
                int n = g.iw - x0 < 16 ? g.iw - x0 : 16;
                __mmask16 m = (__mmask16)((1u << n) - 1);
                __m512i r[16];
                for (int k = 0; k < 8; k++) {
                    int ca = c0 + 2 * k;
                    __m256i lo = ca < g.ic ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, in + ((long)ca * g.ih + y) * g.iw + x0))
                                           : _mm256_setzero_si256();
                    __m256i hi = ca + 1 < g.ic ? (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, in + ((long)(ca + 1) * g.ih + y) * g.iw + x0))
                                               : _mm256_setzero_si256();
                    r[k] = _mm512_permutexvar_epi16(perm, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1));
                }
                for (int k = 8; k < 16; k++) r[k] = _mm512_setzero_si512();
                transpose16(r);
                uint16_t *dst = X + ((long)(y + g.ph) * d.piw + x0 + g.pw) * t.icp + c0;
                for (int x = 0; x < n; x++) _mm256_storeu_si256((__m256i *)(dst + (long)x * t.icp), _mm512_castsi512_si256(r[x]));
            }
}

static size_t tiles_forward_bytes(pt_bf16_conv_geometry g) {
    tile_dims t = tiles_dims(g);
    return align64((size_t)t.E * t.icp * 2 + 64) + align64((size_t)g.kh * t.rblocks * t.ntiles * 256 * 4) + 64;
}

/// out[o][y][x] for the valid pixels of one C tile (16 wide pixels from q0 x 16 channels from o0,
/// in buf[q][o]), + bias: transposed in registers; each output row's run of lanes l0.. is one masked
/// store at the row's address less l0 (masked-off lanes are not written).
static void store_wide_tile(pt_bf16_conv_geometry g, int piw, const float *buf, int q0, int o0, const float *bias, float *out) {
    __mmask16 seg_mask[16];
    long seg_off[16];
    int segs = 0;
    for (int l = 0; l < 16;) {
        int q = q0 + l, y = q / piw, x = q % piw;
        int run = piw - x < 16 - l ? piw - x : 16 - l;
        if (y < g.oh && x < g.ow) {
            int valid = g.ow - x < run ? g.ow - x : run;
            seg_mask[segs] = (__mmask16)(((1u << valid) - 1) << l);
            seg_off[segs++] = (long)y * g.ow + x - l;
        }
        l += run;
    }
    if (!segs) return;
    __m512i r[16];
    for (int q = 0; q < 16; q++) r[q] = _mm512_load_si512(buf + q * 16);
    transpose16(r);
    long P = (long)g.oh * g.ow;
    for (int k = 0; k < 16 && o0 + k < g.oc; k++) {
        __m512 v = _mm512_castsi512_ps(r[k]);
        if (bias) v = _mm512_add_ps(v, _mm512_set1_ps(bias[o0 + k]));
        float *row = out + (long)(o0 + k) * P;
        for (int sgi = 0; sgi < segs; sgi++) _mm512_mask_storeu_ps(row + seg_off[sgi], seg_mask[sgi], v);
    }
}

/// Forward on AMX tiles (see the section comment): wbf [oc][ic][kh][kw] rounded.
static void tiles_forward(pt_bf16_conv_geometry g, int mb, const float *in, const uint16_t *wbf, const float *bias,
                          float *out, char *s) {
    conv_dims d = dims(g);
    tile_dims t = tiles_dims(g);
    int khw = g.kh * g.kw;
    s = (char *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    uint16_t *X = bump(&s, (size_t)t.E * t.icp * 2 + 64);
    uint32_t *W = bump(&s, (size_t)g.kh * t.rblocks * t.ntiles * 256 * 4);
    // W[i][row block][n tile][pair p][16 words]: word (p, n) = elements r, r + 1 (r = 32 * block + 2p) of
    // kernel row i's run (j, c) = (r / icp, r % icp), low and high; zero past kw, ic or oc.
    for (int i = 0; i < g.kh; i++)
        for (int b = 0; b < t.rblocks; b++)
            for (int nt = 0; nt < t.ntiles; nt++)
                for (int p = 0; p < 16; p++)
                    for (int n = 0; n < 16; n++) {
                        int o = nt * 16 + n, r = b * 32 + 2 * p;
                        uint32_t half[2];
                        for (int h = 0; h < 2; h++) {
                            int j = (r + h) / t.icp, c = (r + h) % t.icp;
                            half[h] = o < g.oc && j < g.kw && c < g.ic ? wbf[((long)o * g.ic + c) * khw + i * g.kw + j] : 0;
                        }
                        W[((((long)i * t.rblocks + b) * t.ntiles + nt) * 16 + p) * 16 + n] = half[1] << 16 | half[0];
                    }
    memset(X, 0, (size_t)t.E * t.icp * 2 + 64);
    configure_tiles();
    float buf[256] __attribute__((aligned(64)));
    const long astride = (long)t.s * t.icp * 2, rowstep = (long)d.piw * t.icp, m16 = 16L * t.s * t.icp;
    for (int n = 0; n < mb; n++) {
        channels_last_sample(g, d, t, in + (long)n * g.ic * g.ih * g.iw, X);
        float *o = out + (long)n * g.oc * d.P;
        for (int q0 = 0; q0 < t.Q; q0 += 64) {
            int nt = 0;
            // Pairs of n tiles: 32 pixels x 32 channels a step (tiles 0-3).
            for (; nt + 1 < t.ntiles; nt += 2)
                for (int qa = q0; qa < q0 + 64 && qa < t.Q; qa += 32) {
                    const uint16_t *a = X + (long)t.s * qa * t.icp;
                    _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                    for (int i = 0; i < g.kh; i++)
                        for (int b = 0; b < t.rblocks; b++) {
                            const uint16_t *ab = a + i * rowstep + b * 32;
                            const uint32_t *w = W + (((long)i * t.rblocks + b) * t.ntiles + nt) * 256;
                            _tile_loadd(4, ab, astride); _tile_loadd(5, ab + m16, astride);
                            _tile_loadd(6, w, 64); _tile_loadd(7, w + 256, 64);
                            _tile_dpbf16ps(0, 4, 6); _tile_dpbf16ps(1, 4, 7); _tile_dpbf16ps(2, 5, 6); _tile_dpbf16ps(3, 5, 7);
                        }
                    _tile_stored(0, buf, 64); store_wide_tile(g, d.piw, buf, qa, nt * 16, bias, o);
                    _tile_stored(1, buf, 64); store_wide_tile(g, d.piw, buf, qa, nt * 16 + 16, bias, o);
                    _tile_stored(2, buf, 64); store_wide_tile(g, d.piw, buf, qa + 16, nt * 16, bias, o);
                    _tile_stored(3, buf, 64); store_wide_tile(g, d.piw, buf, qa + 16, nt * 16 + 16, bias, o);
                }
            if (nt < t.ntiles) {
                // The last single n tile: 64 pixels x 16 channels (tiles 0-3, A alternating in 4 and 5).
                const uint16_t *a = X + (long)t.s * q0 * t.icp;
                _tile_zero(0); _tile_zero(1); _tile_zero(2); _tile_zero(3);
                for (int i = 0; i < g.kh; i++)
                    for (int b = 0; b < t.rblocks; b++) {
                        const uint16_t *ab = a + i * rowstep + b * 32;
                        _tile_loadd(6, W + (((long)i * t.rblocks + b) * t.ntiles + nt) * 256, 64);
                        _tile_loadd(4, ab, astride); _tile_dpbf16ps(0, 4, 6);
                        _tile_loadd(5, ab + m16, astride); _tile_dpbf16ps(1, 5, 6);
                        _tile_loadd(4, ab + 2 * m16, astride); _tile_dpbf16ps(2, 4, 6);
                        _tile_loadd(5, ab + 3 * m16, astride); _tile_dpbf16ps(3, 5, 6);
                    }
                _tile_stored(0, buf, 64); store_wide_tile(g, d.piw, buf, q0, nt * 16, bias, o);
                _tile_stored(1, buf, 64); store_wide_tile(g, d.piw, buf, q0 + 16, nt * 16, bias, o);
                _tile_stored(2, buf, 64); store_wide_tile(g, d.piw, buf, q0 + 32, nt * 16, bias, o);
                _tile_stored(3, buf, 64); store_wide_tile(g, d.piw, buf, q0 + 48, nt * 16, bias, o);
            }
        }
    }
}

static size_t tiles_weights_bytes(pt_bf16_conv_geometry g) {
    tile_dims t = tiles_dims(g);
    int ocp = t.ntiles * 16;
    return align64((size_t)t.E * t.icp * 2 + 64) + align64((size_t)t.E * t.icp * 4 + 64) + align64((size_t)ocp * t.Qt * 2)
         + align64((size_t)g.kh * ocp * g.kw * t.icp * 4) + 64;
}

/// Weight gradient on AMX tiles (see the section comment); dw [oc][ic][kh][kw] added to.
static void tiles_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw, char *s) {
    conv_dims d = dims(g);
    tile_dims t = tiles_dims(g);
    int ocp = t.ntiles * 16, ncols = g.kw * t.icp, ctiles = ncols / 16, khw = g.kh * g.kw;
    uint16_t *X = bump(&s, (size_t)t.E * t.icp * 2 + 64);
    uint32_t *PI = bump(&s, (size_t)t.E * t.icp * 4 + 64);
    uint16_t *D = bump(&s, (size_t)ocp * t.Qt * 2);
    float *acc = bump(&s, (size_t)g.kh * ocp * ncols * 4);   // [i][o][j * icp + c]
    memset(X, 0, (size_t)t.E * t.icp * 2 + 64);
    memset(D, 0, (size_t)ocp * t.Qt * 2);
    memset(acc, 0, (size_t)g.kh * ocp * ncols * 4);
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int i = 0; i < g.kh; i++)
                for (int j = 0; j < g.kw; j++)
                    acc[((long)i * ocp + o) * ncols + j * t.icp + c] = dw[((long)o * g.ic + c) * khw + i * g.kw + j];
    configure_tiles();
    const __m512i perm = _mm512_loadu_si512(interleave_index);
    const long dstride = (long)t.Qt * 2, bstride = 2L * t.s * t.icp * 4, cstride = (long)ncols * 4;
    for (int n = 0; n < mb; n++) {
        channels_last_sample(g, d, t, in + (long)n * g.ic * g.ih * g.iw, X);
        for (long e = 0; e < t.reach; e++)
            for (int c0 = 0; c0 < t.icp; c0 += 16) {
                __m256i lo = _mm256_loadu_si256((const __m256i *)(X + e * t.icp + c0));
                __m256i hi = _mm256_loadu_si256((const __m256i *)(X + (e + t.s) * t.icp + c0));
                _mm512_storeu_si512(PI + e * t.icp + c0, _mm512_permutexvar_epi16(perm, _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1)));
            }
        const float *dn = dout + (long)n * g.oc * d.P;
        for (int o = 0; o < g.oc; o++)
            for (int y = 0; y < g.oh; y++) pt_bf16_round(dn + ((long)o * g.oh + y) * g.ow, D + (long)o * t.Qt + (long)y * d.piw, g.ow);
        for (int i = 0; i < g.kh; i++) {
            const uint32_t *brow = PI + (long)i * d.piw * t.icp;
            for (int ot = 0; ot < t.ntiles; ot += 2) {
                int two_o = ot + 1 < t.ntiles;
                const uint16_t *a0 = D + (long)ot * 16 * t.Qt, *a1 = a0 + 16L * t.Qt;
                for (int ct = 0; ct < ctiles; ct += 2) {
                    int two_c = ct + 1 < ctiles;
                    float *c00 = acc + ((long)i * ocp + ot * 16) * ncols + ct * 16, *c10 = c00 + 16L * ncols;
                    const uint32_t *b0 = brow + ct * 16;
                    _tile_loadd(0, c00, cstride);
                    if (two_c) _tile_loadd(1, c00 + 16, cstride);
                    if (two_o) { _tile_loadd(2, c10, cstride); if (two_c) _tile_loadd(3, c10 + 16, cstride); }
                    for (int kb = 0; kb < (t.Q + 31) / 32; kb++) {
                        const uint32_t *bk = b0 + 32L * t.s * kb * t.icp;
                        _tile_loadd(4, a0 + kb * 32, dstride);
                        _tile_loadd(6, bk, bstride);
                        _tile_dpbf16ps(0, 4, 6);
                        if (two_c) { _tile_loadd(7, bk + 16, bstride); _tile_dpbf16ps(1, 4, 7); }
                        if (two_o) {
                            _tile_loadd(5, a1 + kb * 32, dstride);
                            _tile_dpbf16ps(2, 5, 6);
                            if (two_c) _tile_dpbf16ps(3, 5, 7);
                        }
                    }
                    _tile_stored(0, c00, cstride);
                    if (two_c) _tile_stored(1, c00 + 16, cstride);
                    if (two_o) { _tile_stored(2, c10, cstride); if (two_c) _tile_stored(3, c10 + 16, cstride); }
                }
            }
        }
    }
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int i = 0; i < g.kh; i++)
                for (int j = 0; j < g.kw; j++)
                    dw[((long)o * g.ic + c) * khw + i * g.kw + j] = acc[((long)i * ocp + o) * ncols + j * t.icp + c];
}

void pt_bf16_bias_sums(const float *dout, int mb, int oc, int pixels, float *db) {
    int vec = pixels / 16 * 16;
    for (int o = 0; o < oc; o++) {
        __m512 acc = _mm512_setzero_ps();
        float tail = 0;
        for (int n = 0; n < mb; n++) {
            const float *row = dout + ((long)n * oc + o) * pixels;
            for (int q = 0; q < vec; q += 16) acc = _mm512_add_ps(acc, _mm512_loadu_ps(row + q));
            for (int q = vec; q < pixels; q++) tail += row[q];
        }
        float lanes[16];
        _mm512_storeu_ps(lanes, acc);
        float sum = 0;
        for (int l = 0; l < 16; l++) sum += lanes[l];
        db[o] += sum + tail;
    }
}

void pt_bf16_conv_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw,
                                   float *db, void *scratch) {
    conv_dims d = dims(g);
    char *s = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    if (tiles_direct(g)) {
        tiles_backward_weights(g, mb, in, dout, dw, s);
        if (db) pt_bf16_bias_sums(dout, mb, g.oc, d.P, db);
        return;
    }
    if (direct_weights(g)) {
        direct_backward_weights(g, mb, in, dout, dw, s);
        if (db) pt_bf16_bias_sums(dout, mb, g.oc, d.P, db);
        return;
    }
    if (lanes_weights(g)) {
        lanes_backward_weights(g, mb, in, dout, dw, s);
        if (db) pt_bf16_bias_sums(dout, mb, g.oc, d.P, db);
        return;
    }
    uint32_t *pa = bump(&s, packed_a_bytes(g.oc, d.P));
    uint32_t *pb = bump(&s, packed_b_bytes(d.K, d.P));
    uint16_t *pad = bump(&s, (size_t)(d.sample + 16) * 2);
    uint16_t *dbf = bump(&s, (size_t)g.oc * d.P * 2 + 32);
    int32_t *koff = bump(&s, (size_t)d.K * 4), *poff = bump(&s, (size_t)d.P * 4), *rows = bump(&s, (size_t)g.oc * 4);
    int last = channels_last_weights(g);
    float *acc = dw;
    int khw = g.kh * g.kw;
    memset(pad, 0, (size_t)(d.sample + 16) * 2);
    if (last) {
        // pad[(y * piw + x) * ic + c]; k' = (i * kw + j) * ic + c; dW copied into acc[o][k'].
        acc = bump(&s, (size_t)g.oc * d.K * 4);
        for (int i = 0; i < g.kh; i++)
            for (int j = 0; j < g.kw; j++)
                for (int c = 0; c < g.ic; c++) koff[(i * g.kw + j) * g.ic + c] = (int32_t)((i * d.piw + j) * g.ic + c);
        for (int q = 0, y = 0; y < g.oh; y++)
            for (int x = 0; x < g.ow; x++, q++) poff[q] = (int32_t)((y * g.sh * d.piw + x * g.sw) * g.ic);
        for (int o = 0; o < g.oc; o++)
            for (int c = 0; c < g.ic; c++)
                for (int t = 0; t < khw; t++) acc[(long)o * d.K + t * g.ic + c] = dw[(long)o * d.K + c * khw + t];
    } else {
        conv_offsets(g, d, koff, poff);
    }
    for (int o = 0; o < g.oc; o++) rows[o] = o * d.P;
    pt_view dv = { dbf, rows, NULL };
    uint16_t row[4096 + 16];
    for (int n = 0; n < mb; n++) {
        const float *sample = in + (long)n * g.ic * g.ih * g.iw;
        if (last && g.iw <= 4096) {
            for (int c = 0; c < g.ic; c++)
                for (int y = 0; y < g.ih; y++) {
                    pt_bf16_round(sample + ((long)c * g.ih + y) * g.iw, row, g.iw);
                    uint16_t *dst = pad + ((long)(y + g.ph) * d.piw + g.pw) * g.ic + c;
                    for (int x = 0; x < g.iw; x++) dst[(long)x * g.ic] = row[x];
                }
        } else if (last) {
            for (int c = 0; c < g.ic; c++)
                for (int y = 0; y < g.ih; y++)
                    for (int x = 0; x < g.iw; x++) {
                        float v = sample[((long)c * g.ih + y) * g.iw + x];
                        pt_bf16_round(&v, pad + ((long)(y + g.ph) * d.piw + x + g.pw) * g.ic + c, 1);
                    }
        } else {
            pad_sample(g, d, sample, pad);
        }
        pt_bf16_round(dout + (long)n * g.oc * d.P, dbf, (long)g.oc * d.P);
        pack_a_all(dv, g.oc, d.P, pa);
        // dw[o][k] (M = oc, N = K, reduction = this sample's pixels): B(q, k) = pad[koff[k] + poff[q]].
        gemm_packed_a(g.oc, d.K, d.P, pa, pad, koff, poff, acc, d.K, 1, NULL, pb);
    }
    if (last)
        for (int o = 0; o < g.oc; o++)
            for (int c = 0; c < g.ic; c++)
                for (int t = 0; t < khw; t++) dw[(long)o * d.K + c * khw + t] = acc[(long)o * d.K + t * g.ic + c];
    if (db) pt_bf16_bias_sums(dout, mb, g.oc, d.P, db);
}

size_t pt_bf16_conv_scratch_bytes(pt_bf16_conv_geometry g, int mb) {
    (void)mb;
    size_t f = forward_bytes(g), dd = data_bytes(g), w = weights_bytes(g), p = prepare_scratch_bytes(g);
    size_t m = f > dd ? f : dd;
    m = m > w ? m : w;
    return (m > p ? m : p) + 64;
}

// MARK: dense

static size_t max3(size_t a, size_t b, size_t c) { size_t m = a > b ? a : b; return m > c ? m : c; }

size_t pt_bf16_dense_scratch_bytes(int batch, int inputs, int neurons) {
    int big = inputs > neurons ? inputs : neurons; if (batch > big) big = batch;
    // A / B of the three passes: forward (batch x neurons over inputs), weights (neurons x inputs over
    // batch), data (batch x inputs over neurons).
    size_t a = max3(packed_a_bytes(batch, inputs), packed_a_bytes(neurons, batch), packed_a_bytes(batch, neurons));
    size_t b = max3(packed_b_bytes(neurons, inputs), packed_b_bytes(inputs, batch), packed_b_bytes(inputs, neurons));
    return align64(a) + align64(b) + align64((size_t)neurons * inputs * 2 + 32) + align64((size_t)batch * inputs * 2 + 32)
         + align64((size_t)batch * neurons * 2 + 32) + 3 * align64((size_t)big * 4 + 4) + 128;
}

typedef struct { uint32_t *pa, *pb; uint16_t *wbf, *xbf, *ybf; int32_t *t0, *t1, *t2; } dense_scratch;

static dense_scratch dense_split(int batch, int inputs, int neurons, void *scratch) {
    int big = inputs > neurons ? inputs : neurons; if (batch > big) big = batch;
    size_t a = max3(packed_a_bytes(batch, inputs), packed_a_bytes(neurons, batch), packed_a_bytes(batch, neurons));
    size_t b = max3(packed_b_bytes(neurons, inputs), packed_b_bytes(inputs, batch), packed_b_bytes(inputs, neurons));
    char *s = (char *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    dense_scratch r;
    r.pa = bump(&s, a); r.pb = bump(&s, b);
    r.wbf = bump(&s, (size_t)neurons * inputs * 2 + 32); r.xbf = bump(&s, (size_t)batch * inputs * 2 + 32);
    r.ybf = bump(&s, (size_t)batch * neurons * 2 + 32);
    r.t0 = bump(&s, (size_t)big * 4 + 4); r.t1 = bump(&s, (size_t)big * 4 + 4); r.t2 = bump(&s, (size_t)big * 4 + 4);
    return r;
}

void pt_bf16_dense_forward(int batch, int inputs, int neurons, const float *x, const float *w, const float *bias,
                           float *y, void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    pt_bf16_round(x, s.xbf, (long)batch * inputs);
    pt_bf16_round(w, s.wbf, (long)neurons * inputs);
    for (int b = 0; b < batch; b++) s.t0[b] = b * inputs;
    for (int o = 0; o < neurons; o++) s.t1[o] = o * inputs;
    for (int i = 0; i < inputs; i++) s.t2[i] = i;
    pt_view xv = { s.xbf, s.t0, NULL };
    pack_a_all(xv, batch, inputs, s.pa);
    // M = batch, N = neurons, reduction = inputs: B(i, o) = w[o][i] (lanes o, gathered pairs).
    gemm_packed_a(batch, neurons, inputs, s.pa, s.wbf, s.t1, s.t2, y, neurons, 0, NULL, s.pb);
    if (bias)
        for (int b = 0; b < batch; b++)
            for (int o = 0; o < neurons; o++) y[(long)b * neurons + o] += bias[o];
}

void pt_bf16_dense_backward_weights(int batch, int inputs, int neurons, const float *x, const float *dy, float *dw,
                                    void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    pt_bf16_round(x, s.xbf, (long)batch * inputs);
    pt_bf16_round(dy, s.ybf, (long)batch * neurons);
    for (int o = 0; o < neurons; o++) s.t0[o] = o;
    for (int b = 0; b < batch; b++) s.t1[b] = b * neurons;
    pt_view gv = { s.ybf, s.t0, s.t1 };
    pack_a_all(gv, neurons, batch, s.pa);
    for (int i = 0; i < inputs; i++) s.t2[i] = i;
    for (int b = 0; b < batch; b++) s.t1[b] = b * inputs;
    // M = neurons, N = inputs, reduction = batch: B(b, i) = x[b][i] (adjacent lanes).
    gemm_packed_a(neurons, inputs, batch, s.pa, s.xbf, s.t2, s.t1, dw, inputs, 1, NULL, s.pb);
}

void pt_bf16_dense_backward_data(int batch, int inputs, int neurons, const float *dy, const float *w, float *dx,
                                 void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    pt_bf16_round(dy, s.ybf, (long)batch * neurons);
    pt_bf16_round(w, s.wbf, (long)neurons * inputs);
    for (int b = 0; b < batch; b++) s.t0[b] = b * neurons;
    pt_view gv = { s.ybf, s.t0, NULL };
    pack_a_all(gv, batch, neurons, s.pa);
    for (int i = 0; i < inputs; i++) s.t2[i] = i;
    for (int o = 0; o < neurons; o++) s.t1[o] = o * inputs;
    // M = batch, N = inputs, reduction = neurons: B(o, i) = w[o][i] (adjacent lanes).
    gemm_packed_a(batch, inputs, neurons, s.pa, s.wbf, s.t2, s.t1, dx, inputs, 0, NULL, s.pb);
}

// Prepared weights (vector unit): the two packed forms of W the forward and the input gradient read
// as B, made once for as long as the weights stay the same (a training step) instead of in every
// call. The packed words are those `gemm_packed_a` packs per column block, and each output is still
// one `ukernel` chain over the whole reduction, so the bits are those of the calls above.

/// Words of one packed B operand with N columns (whole 32-column panels) over a reduction of R.
static size_t prepacked_words(int N, int R) { return (size_t)((N + NR - 1) / NR * NR) * (size_t)((R + 1) / 2); }

size_t pt_bf16_dense_prepared_bytes(int inputs, int neurons) {
    if (use_tiles()) return 0;
    return align64(prepacked_words(neurons, inputs) * 4) + align64(prepacked_words(inputs, neurons) * 4) + 64;
}

typedef struct { uint32_t *forward, *data; } dense_prepared;

static dense_prepared prepared_split(int inputs, int neurons, void *prepared) {
    char *s = (char *)(((uintptr_t)prepared + 63) & ~(uintptr_t)63);
    dense_prepared r;
    r.forward = bump(&s, prepacked_words(neurons, inputs) * 4);
    r.data = bump(&s, prepacked_words(inputs, neurons) * 4);
    return r;
}

/// C[M][N] (ldc) = (load ? C : 0) + A x B, A packed whole in `pa`, B packed whole in `pb` (its 32-column
/// panels in order, as `pack_b` writes them).
static void gemm_prepacked(int M, int N, int R, const uint32_t *pa, const uint32_t *pb, float *c, long ldc, int load) {
    int kp = (R + 1) / 2;
    for (int j = 0; j < N; j += NR) {
        int nr = N - j < NR ? N - j : NR;
        for (int m0 = 0; m0 < M; m0 += MR)
            ukernel(kp, pa + (size_t)(m0 / MR) * MR * kp, pb + (size_t)j * kp, c + (long)m0 * ldc + j, ldc, M - m0 < MR ? M - m0 : MR,
                    nr, load, NULL);
    }
}

void pt_bf16_dense_prepare(int inputs, int neurons, const float *w, void *prepared, void *scratch) {
    dense_prepared p = prepared_split(inputs, neurons, prepared);
    dense_scratch s = dense_split(1, inputs, neurons, scratch);
    pt_bf16_round(w, s.wbf, (long)neurons * inputs);
    // Forward: B(i, o) = w[o][i] (lanes o, reduction i); input gradient: B(o, i) = w[o][i] (lanes i, reduction o).
    for (int o = 0; o < neurons; o++) s.t1[o] = o * inputs;
    for (int i = 0; i < inputs; i++) s.t2[i] = i;
    int kpi = (inputs + 1) / 2, kpo = (neurons + 1) / 2;
    for (int j = 0; j < neurons; j += NR) pack_b(s.wbf, s.t1, s.t2, j, neurons, inputs, p.forward + (size_t)j * kpi);
    for (int j = 0; j < inputs; j += NR) pack_b(s.wbf, s.t2, s.t1, j, inputs, neurons, p.data + (size_t)j * kpo);
}

/// c[batch][N] = rows (batch x R, fp32) x B, B prepacked: the rows rounded into bf and packed as A.
static void rows_times_prepacked(int batch, int R, int N, const float *rows, uint16_t *bf, dense_scratch s, const uint32_t *pb,
                                 float *c) {
    pt_bf16_round(rows, bf, (long)batch * R);
    for (int b = 0; b < batch; b++) s.t0[b] = b * R;
    pt_view v = { bf, s.t0, NULL };
    pack_a_all(v, batch, R, s.pa);
    gemm_prepacked(batch, N, R, s.pa, pb, c, N, 0);
}

void pt_bf16_dense_forward_prepared(int batch, int inputs, int neurons, const float *x, const void *prepared,
                                    const float *bias, float *y, void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    rows_times_prepacked(batch, inputs, neurons, x, s.xbf, s, prepared_split(inputs, neurons, (void *)prepared).forward, y);
    if (bias)
        for (int b = 0; b < batch; b++)
            for (int o = 0; o < neurons; o++) y[(long)b * neurons + o] += bias[o];
}

void pt_bf16_dense_backward_data_prepared(int batch, int inputs, int neurons, const float *dy, const void *prepared,
                                          float *dx, void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    rows_times_prepacked(batch, neurons, inputs, dy, s.ybf, s, prepared_split(inputs, neurons, (void *)prepared).data, dx);
}
