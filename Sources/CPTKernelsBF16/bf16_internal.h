// What the files of CPTKernelsBF16 share (private: outside include/, so Swift does not see it): the GEMM's
// register tile and packed layouts, scratch carving, a convolution's padded dimensions, the per-sample copies
// (pair images, dout with its pair halves swapped), the GEMM microkernel, and the functions one file calls in
// another (hidden: not exported from the library). The files, by concern:
//   gemm.c                    rounding, packing, the vector GEMM, the peak loop
//   amx.c                     the AMX tile unit: its GEMM and its direct convolution passes
//   conv_forward.c            convolution forward (packed GEMM, direct over pair images, channels on the lanes)
//   conv_backward_data.c      convolution input gradient (planar, transposed forward, unfolding + col2im)
//   conv_backward_weights.c   convolution weight gradient (direct, channels on the lanes, channels-last, packed)
//   conv.c                    convolution prepared weights and scratch sizes
//   dense.c                   dense layers
// See CPTKernelsBF16.h for the numbers each entry computes, docs/ARCHITECTURE.md ("bf16") for the design.
#ifndef BF16_INTERNAL_H
#define BF16_INTERNAL_H

#include "CPTKernelsBF16.h"
#include "CPTSupport.h"
#include <immintrin.h>
#include <string.h>

#define BF16_HIDDEN __attribute__((visibility("hidden")))

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

/// vpermw index: with x in elements 0-15 and y in 16-31, 32-bit word l becomes (y[l] high, x[l] low).
static const uint16_t interleave_index[32] = {
    0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31 };

/// A operand: element (m, r) at src[base[m] + roff[r]], or src[base[m] + r] when roff is NULL.
typedef struct { const uint16_t *src; const int32_t *base; const int32_t *roff; } pt_view;

typedef struct {
    int pih, piw;        // padded input plane
    long plane, sample;  // padded elements per channel, per sample
    int K, P;
} conv_dims;

static inline conv_dims dims(pt_bf16_conv_geometry g) {
    conv_dims d;
    d.pih = g.ih + 2 * g.ph; d.piw = g.iw + 2 * g.pw;
    d.plane = (long)d.pih * d.piw; d.sample = d.plane * g.ic;
    d.K = g.ic * g.kh * g.kw; d.P = g.oh * g.ow;
    return d;
}

/// `pt_bf16_round`, inlined: the per-row callers (a row is often 32 values) spent as much on the call as on the row.
static inline void round_row(const float *src, uint16_t *dst, long count) {
    long i = 0;
    for (; i + 16 <= count; i += 16) _mm256_storeu_si256((__m256i *)(dst + i), (__m256i)_mm512_cvtneps_pbh(_mm512_loadu_ps(src + i)));
    if (i < count) {
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        _mm256_mask_storeu_epi16(dst + i, m, (__m256i)_mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(m, src + i)));
    }
}

/// Rounds one sample into its zero-padded bf16 planes (the border must already be zero).
static inline void pad_sample(pt_bf16_conv_geometry g, conv_dims d, const float *in, uint16_t *pad) {
    for (int c = 0; c < g.ic; c++)
        for (int y = 0; y < g.ih; y++)
            round_row(in + ((long)c * g.ih + y) * g.iw, pad + c * d.plane + (long)(y + g.ph) * d.piw + g.pw, g.iw);
}

/// The forward's reduction order (vector unit): with an even number of input channels k = (i, j, c), so that
/// each pair (k, k + 1) is two adjacent channels at one tap and a sample needs one pair image (pad[e],
/// pad[e + plane]) over its even channels' planes; otherwise k = (c, i, j), the weights' own order. The tile
/// unit always takes (c, i, j).
static inline int channel_pairs(pt_bf16_conv_geometry g) { return !use_tiles() && g.ic % 2 == 0; }

/// Where reduction element k lies in a weight row [c][i][j] (K ints), or NULL when that is k itself.
static inline const int32_t *reduction_order(pt_bf16_conv_geometry g, int32_t *order) {
    if (!channel_pairs(g)) return NULL;
    int k = 0;
    for (int i = 0; i < g.kh; i++)
        for (int j = 0; j < g.kw; j++)
            for (int c = 0; c < g.ic; c++) order[k++] = (int32_t)((c * g.kh + i) * g.kw + j);
    return order;
}

/// koff[k]: where element k = (c, i, j) of a patch lies in the padded sample; poff[q]: where output pixel q's
/// patch starts.
static inline void conv_offsets(pt_bf16_conv_geometry g, conv_dims d, int32_t *koff, int32_t *poff) {
    int k = 0;
    for (int c = 0; c < g.ic; c++)
        for (int i = 0; i < g.kh; i++)
            for (int j = 0; j < g.kw; j++) koff[k++] = (int32_t)(c * d.plane + i * d.piw + j);
    int q = 0;
    for (int y = 0; y < g.oh; y++)
        for (int x = 0; x < g.ow; x++) poff[q++] = (int32_t)(y * g.sh * d.piw + x * g.sw);
}

/// `conv_offsets` with k in the order `order` gives (`reduction_order`; NULL: (c, i, j)).
static inline void forward_offsets(pt_bf16_conv_geometry g, conv_dims d, const int32_t *order, int32_t *koff, int32_t *poff) {
    conv_offsets(g, d, koff, poff);
    if (!order) return;
    int khw = g.kh * g.kw;
    for (int k = 0; k < d.K; k++) {
        int w = order[k], c = w / khw, i = (w % khw) / g.kw, j = w % g.kw;
        koff[k] = (int32_t)(c * d.plane + i * d.piw + j);
    }
}

/// Pair images a sample may need in the direct forms (see `direct_forward` in conv_forward.c).
#define DIRECT_IMAGES 4

/// The distinct deltas of the reduction's pairs (0 for a last odd element) into delta[] and each pair's
/// image into which[]; the number of images, or 0 when more than DIRECT_IMAGES are needed.
static inline int pair_deltas(int K, const int32_t *koff, int32_t *delta, uint8_t *which) {
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

static const uint16_t pair_interleave[32] = {
    16, 0, 17, 1, 18, 2, 19, 3, 20, 4, 21, 5, 22, 6, 23, 7, 24, 8, 25, 9, 26, 10, 27, 11, 28, 12, 29, 13, 30, 14, 31, 15 };

/// img[e] = pad[e] << 16 | (delta ? pad[e + delta] : 0) for e < count - delta (the words a pair can read).
static inline void build_image(const uint16_t *pad, long count, int32_t delta, uint32_t *img) {
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

/// The pair words (bf16(a[l]) << 16 | bf16(b[l])) of 16 values of two fp32 rows, lanes outside m zero: one
/// vcvtne2ps2bf16 (rounding as `pt_bf16_round`) and one permute.
static inline __m512i pair_words(const float *a, const float *b, __mmask16 m) {
    // Elements 0-15: b's, 16-31: a's; word l = (b low, a high).
    __m512i z = (__m512i)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m, a), _mm512_maskz_loadu_ps(m, b));
    return _mm512_permutexvar_epi16(_mm512_loadu_si512(interleave_index), z);
}

/// The channel-pair image of one sample straight from its fp32 planes (ic even): for even c,
/// img[c * plane + (y + ph) * piw + pw + x] = bf16(in[c][y][x]) << 16 | bf16(in[c + 1][y][x]), the words
/// `pad_sample` then `build_image(pad + c * plane, 2 * plane, plane, ...)` give inside the border, without
/// the padded bf16 copy between them (vcvtne2ps2bf16 rounds as `pt_bf16_round`). Border words are not
/// written: the caller zeroes the image once, and no sample writes there.
static inline void pair_image(pt_bf16_conv_geometry g, conv_dims d, const float *in, uint32_t *img) {
    long hw = (long)g.ih * g.iw;
    for (int c = 0; c < g.ic; c += 2) {
        const float *a = in + c * hw, *b = a + hw;
        for (int y = 0; y < g.ih; y++) {
            uint32_t *dst = img + c * d.plane + (long)(y + g.ph) * d.piw + g.pw;
            const float *ra = a + (long)y * g.iw, *rb = b + (long)y * g.iw;
            for (int x = 0; x < g.iw; x += 16) {
                __mmask16 m = (__mmask16)(g.iw - x >= 16 ? 0xFFFF : (1u << (g.iw - x)) - 1);
                _mm512_mask_storeu_epi32(dst + x, m, pair_words(ra + x, rb + x, m));
            }
        }
    }
}

/// The next sample's fp32 operands, fetched one cache line per iteration of the current sample's tile
/// loops, so that rounding and copying them reads the caches instead of memory (in training they were
/// written long before: the backward reads what the forward wrote). `prefetcht0` (all levels): on Zen 4
/// ResNet-20's bf16 convolutions took ~1 ms less a step than with `prefetcht1` (L2). Prefetches change
/// no result.
typedef struct { const char *p, *end, *p2, *end2; } next_lines;

static inline next_lines next_sample_lines(const float *a, long acount, const float *b, long bcount) {
    next_lines r = { (const char *)a, (const char *)(a + acount), (const char *)b, (const char *)(b + bcount) };
    return r;
}

static const next_lines no_next_lines = { NULL, NULL, NULL, NULL };

static inline void fetch_next_line(next_lines *r) {
    if (r->p < r->end) { _mm_prefetch(r->p, _MM_HINT_T0); r->p += 64; }
    else if (r->p2 < r->end2) { _mm_prefetch(r->p2, _MM_HINT_T0); r->p2 += 64; }
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

/// fp32 -> bf16 (as `pt_bf16_round`), each pair of elements swapped, so that the 32-bit word at an even
/// index holds element 2p in its high half. `count` even.
static inline void round_swapped(const float *src, uint16_t *dst, long count) {
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

/// How a GEMM treats its result C (the `load` argument): C_ZERO, C = A x B; C_LOAD, C += A x B (each element's chain
/// starts from C's value); C_STREAM, as C_ZERO (the same bits), with whole 32-column rows at 64-byte aligned addresses
/// stored around the caches (non-temporal: a large result read much later, not read first by every store; the caller
/// fences with `_mm_sfence` after the last). The tile unit treats C_STREAM as C_ZERO.
enum { C_ZERO = 0, C_LOAD = 1, C_STREAM = 2 };

/// C[0..<mr][0..<nr] (row stride ldc) = (load == C_LOAD ? C : 0) + chain over kp pairs, then + bias[row] if bias.
static inline void ukernel(int kp, const uint32_t *a, const uint32_t *b, float *c, long ldc, int mr, int nr,
                           int load, const float *bias) {
    __m512 c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71;
    __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
    __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
#define LOADROW(r) \
    if (load == C_LOAD && r < mr) { c##r##0 = _mm512_maskz_loadu_ps(m0, c + r * ldc); c##r##1 = _mm512_maskz_loadu_ps(m1, c + r * ldc + 16); } \
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
        if (load == C_STREAM && nr == NR && ((uintptr_t)(c + r * ldc) & 63) == 0) { \
            _mm512_stream_ps(c + r * ldc, x0); _mm512_stream_ps(c + r * ldc + 16, x1); \
        } else { _mm512_mask_storeu_ps(c + r * ldc, m0, x0); _mm512_mask_storeu_ps(c + r * ldc + 16, m1, x1); } }
    STOREROW(0) STOREROW(1) STOREROW(2) STOREROW(3) STOREROW(4) STOREROW(5) STOREROW(6) STOREROW(7)
#undef STOREROW
}

// gemm.c
BF16_HIDDEN int column_block(int R);
BF16_HIDDEN void gemm_packed_a(int M, int N, int R, const uint32_t *pa, const uint16_t *bsrc, const int32_t *lane, const int32_t *roff, float *c, long ldc, int load, const float *bias, uint32_t *pb);
BF16_HIDDEN void pack_a_all(pt_view v, int M, int R, uint32_t *dst);
BF16_HIDDEN void pack_b(const uint16_t *src, const int32_t *lane, const int32_t *roff, int n0, int N, int R, uint32_t *dst);
BF16_HIDDEN size_t packed_a_bytes(int M, int R);
BF16_HIDDEN size_t packed_b_bytes(int N, int R);

// amx.c
BF16_HIDDEN void gemm_tiles(int M, int N, int R, const uint32_t *pa, const uint16_t *bsrc, const int32_t *lane, const int32_t *roff, float *c, long ldc, int load, const float *bias, uint32_t *pb);
BF16_HIDDEN void pack_a_tiles(pt_view v, int M, int R, uint32_t *dst);
BF16_HIDDEN void tiles_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw, char *s);
BF16_HIDDEN int tiles_direct(pt_bf16_conv_geometry g);
BF16_HIDDEN void tiles_forward(pt_bf16_conv_geometry g, int mb, const float *in, const uint16_t *wbf, const float *bias, float *out, char *s);
BF16_HIDDEN size_t tiles_forward_bytes(pt_bf16_conv_geometry g);
BF16_HIDDEN size_t tiles_weights_bytes(pt_bf16_conv_geometry g);

/// The ReLU next to a layer folded into a pass that writes `out` (`gate` NULL: nothing): once a sample's chains
/// are stored, out = gate > 0 ? out : 0, `gate` laid out as the whole output. `gate` = `out` itself is the
/// ReLU's forward (the ReLU layer's bits: -0 and NaN give +0); the ReLU's output is its backward. Never with `add`.
/// `finish_sample` applies it to one sample's `count` outputs at o, `at` floats into the whole output. The
/// sample was just written, so this reads it from the caches, where a ReLU layer of its own reads memory.
static inline void finish_sample(const float *gate, float *o, long count, long at) {
    if (!gate) return;
    const float *g = gate + at;
    const __m512 zero = _mm512_setzero_ps();
    long i = 0;
    for (; i + 16 <= count; i += 16) {
        __mmask16 k = _mm512_cmp_ps_mask(_mm512_loadu_ps(g + i), zero, _CMP_GT_OQ);
        _mm512_storeu_ps(o + i, _mm512_maskz_mov_ps(k, _mm512_loadu_ps(o + i)));
    }
    if (i < count) {
        __mmask16 m = (__mmask16)((1u << (count - i)) - 1);
        __mmask16 k = _mm512_mask_cmp_ps_mask(m, _mm512_maskz_loadu_ps(m, g + i), zero, _CMP_GT_OQ);
        _mm512_mask_storeu_ps(o + i, m, _mm512_maskz_mov_ps(k, _mm512_maskz_loadu_ps(m, o + i)));
    }
}

// conv_forward.c
BF16_HIDDEN size_t forward_bytes(pt_bf16_conv_geometry g);
BF16_HIDDEN void forward_rounded(pt_bf16_conv_geometry g, int mb, const float *in, const uint16_t *wbf, const float *bias, float *out, char *s, const uint32_t *prepacked, int add, const float *gate);
BF16_HIDDEN int forward_adds(pt_bf16_conv_geometry g);
BF16_HIDDEN uint16_t *rounded_weights_slot(pt_bf16_conv_geometry g, char *s);

// conv_backward_data.c
BF16_HIDDEN void backward_data(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, float *din, void *scratch, const uint32_t *prepacked, int add, const float *gate);
BF16_HIDDEN size_t data_bytes(pt_bf16_conv_geometry g);
BF16_HIDDEN void flipped_weights(pt_bf16_conv_geometry g, const float *w, uint16_t *wt);
BF16_HIDDEN void pack_transposed_weights(pt_bf16_conv_geometry g, const uint16_t *wbf, int32_t *rows, int32_t *roff, uint32_t *pa);
BF16_HIDDEN int planar_data(pt_bf16_conv_geometry g);
BF16_HIDDEN void planar_table(pt_bf16_conv_geometry g, const uint16_t *wbf, uint32_t *table);
BF16_HIDDEN size_t planar_table_words(pt_bf16_conv_geometry g);
BF16_HIDDEN pt_bf16_conv_geometry transposed(pt_bf16_conv_geometry g);
BF16_HIDDEN int transposed_data(pt_bf16_conv_geometry g);

// conv_backward_weights.c
BF16_HIDDEN size_t weights_bytes(pt_bf16_conv_geometry g);

#endif
