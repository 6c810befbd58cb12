// Convolution forward in bf16: the packed GEMM, the direct form over pair images, output channels on the lanes.
#include "bf16_internal.h"

static int lanes_forward(pt_bf16_conv_geometry g);
static int phase_forward(pt_bf16_conv_geometry g);

/// Forward, direct form (column stride 1, output width a multiple of 16 or 8): B is not packed. Pair
/// (k, k + 1) of the reduction at pixel q is the word (pad[koff[k] + poff[q]], pad[koff[k + 1] + poff[q]]):
/// with D = koff[k + 1] - koff[k] it is word koff[k] + poff[q] of the image I_D[e] = (pad[e], pad[e + D]),
/// and 16 pixels of one output row are 16 adjacent words there. D takes a few values only (3x3: the
/// next column, the next row, the next channel; an odd K's last pair has no second element: D = 0
/// reads zero), so building those images once per sample interleaves ~2.5 copies of the sample where
/// packing interleaved one copy per tap (9 for 3x3), and the tile loads B straight from them. Same
/// pairs, same chains: the bits of the packed path.
static int direct_forward(pt_bf16_conv_geometry g) {
    return !use_tiles() && g.sw == 1 && (g.ow % 16 == 0 || (g.ow == 8 && g.oh % 2 == 0));
}

size_t forward_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    size_t direct = direct_forward(g) || lanes_forward(g) || phase_forward(g) ? align64(32 * 16 * 4) + DIRECT_IMAGES * align64((size_t)(d.sample + 16) * 4) + align64((size_t)(d.K + 1) / 2 * 8)
                                        + align64((size_t)(d.K + 1) / 2) : 0;
    return align64(packed_a_bytes(g.oc, d.K)) + align64(packed_b_bytes(d.P, d.K)) + align64((size_t)(d.sample + 16) * 2)
         + align64((size_t)g.oc * d.K * 2 + 32) + align64((size_t)d.K * 4) + align64((size_t)d.P * 4) + align64((size_t)g.oc * 4)
         + align64((size_t)d.K * 4) + direct + (tiles_direct(g) ? tiles_forward_bytes(g) : 0) + 64;
}

/// 16 pixels' words at b: one row segment, or (split) 8 at b and 8 at b + next (the next output row).
static inline __m512bh load_pixels(const uint32_t *b, int split, long next) {
    if (!split) return (__m512bh)_mm512_loadu_si512(b);
    return (__m512bh)_mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b)),
                                        _mm256_loadu_si256((const __m256i *)(b + next)), 1);
}

/// C[0..<mr][0..<16 * groups] (ldc) = chain over kp pairs of packed A x B (from 0), + bias[row], + C's own
/// value when `add` (one fp32 addition after the chain); pair p of pixel group h at bptr[p] + off[h] (see
/// `load_pixels`). With `relu`, the ReLU folded into the forward as each row is stored: C = C > 0 ? C : +0
/// (`finish_sample` with the output as its gate).
static inline void direct_forward_tile(int kp, const uint32_t *a, const uint32_t *const *bptr, long off0, long off1,
                                       int groups, int split, long next, float *c, long ldc, int mr, const float *bias,
                                       int add, next_lines *pf, int relu) {
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
        if (add) { x0 = _mm512_add_ps(_mm512_loadu_ps(c + r * ldc), x0); x1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, c + r * ldc + 16), x1); } \
        if (relu) { \
            x0 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x0, _mm512_setzero_ps(), _CMP_GT_OQ), x0); \
            x1 = _mm512_maskz_mov_ps(_mm512_cmp_ps_mask(x1, _mm512_setzero_ps(), _CMP_GT_OQ), x1); \
        } \
        _mm512_storeu_ps(c + r * ldc, x0); _mm512_mask_storeu_ps(c + r * ldc + 16, m1, x1); }
    STOREROW(0) STOREROW(1) STOREROW(2) STOREROW(3) STOREROW(4) STOREROW(5) STOREROW(6) STOREROW(7)
#undef STOREROW
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

/// One sample's lanes forward (see `lanes_forward`); t: 32 x 16 floats of 64-byte aligned scratch; `add`:
/// out's own value added after the chain (and bias).
static void lanes_forward_sample(pt_bf16_conv_geometry g, int kp, const uint32_t *pa, const uint32_t *const *bptr, long piw,
                                 const float *bias, int add, float *out, float *t) {
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
                    float *dst = out + (o0 + o) * P + (long)y0 * g.ow + q0;
                    if (add) v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, dst), v);
                    _mm512_mask_storeu_ps(dst, m, v);
                }
            }
        }
    }
}

/// Forward with stride 2 in both directions over channel pairs (vector unit, even ic; output width a
/// multiple of 16, or 8 with an even number of rows: ResNet's strided 3x3 layers and 1x1 shortcuts),
/// direct: tap (i, j) of output pixel (y, x) reads padded column 2x + j, so the pair image is split by
/// column parity, PI[j & 1][c / 2][Y][X'] = the pair word of padded column 2X' + (j & 1) (`phase_image`),
/// and 16 pixels of one output row are again 16 adjacent words. The same pairs and chains as the packed
/// GEMM this replaces: the same bits.
static int phase_forward(pt_bf16_conv_geometry g) {
    return channel_pairs(g) && g.sw == 2 && g.sh == 2 && (g.ow % 16 == 0 || (g.ow == 8 && g.oh % 2 == 0));
}

/// Words per padded row of a phase image, and per channel pair's plane.
static inline long phase_width(conv_dims d) { return (d.piw + 1) / 2; }

/// The phase images of one sample (see `phase_forward`) from its fp32 planes: two channel rows rounded by
/// one vcvtne2ps2bf16, interleaved into pair words (c high, c + 1 low), then split by column parity.
/// Border words are not written (the caller zeroes the images once). (Skipping the rows and the odd
/// columns a 1x1 shortcut never reads measured slower: 0.90 against 0.75-0.82 ms a step for ResNet-20's
/// first shortcut, Zen 4.)
static void phase_image(pt_bf16_conv_geometry g, conv_dims d, const float *in, uint32_t *img) {
    const __m512i split = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    long hw = (long)g.ih * g.iw, w2 = phase_width(d), plane = d.pih * w2, phase = (long)(g.ic / 2) * plane;
    for (int c = 0; c < g.ic; c += 2) {
        const float *a = in + c * hw, *b = a + hw;
        for (int y = 0; y < g.ih; y++) {
            uint32_t *row = img + (c / 2) * plane + (long)(y + g.ph) * w2;
            for (int x = 0; x < g.iw; x += 16) {
                int n = g.iw - x < 16 ? g.iw - x : 16, X0 = x + g.pw;
                __mmask16 m = (__mmask16)(n == 16 ? 0xFFFF : (1u << n) - 1);
                // Words of columns X0 + l; even l in the low 8, odd l in the high 8.
                __m512i s = _mm512_permutexvar_epi32(split, pair_words(a + (long)y * g.iw + x, b + (long)y * g.iw + x, m));
                __mmask8 me = (__mmask8)((1u << ((n + 1) / 2)) - 1), mo = (__mmask8)((1u << (n / 2)) - 1);
                __m256i even = _mm512_castsi512_si256(s), odd = _mm512_extracti32x8_epi32(s, 1);
                if (X0 % 2 == 0) {
                    _mm256_mask_storeu_epi32(row + X0 / 2, me, even);
                    _mm256_mask_storeu_epi32(row + phase + X0 / 2, mo, odd);
                } else {
                    _mm256_mask_storeu_epi32(row + phase + X0 / 2, me, even);
                    _mm256_mask_storeu_epi32(row + (X0 + 1) / 2, mo, odd);
                }
            }
        }
    }
}

/// `forward_offsets` for the phase images: koff[k] (only a pair's first element, k even, is read), poff[q].
static void phase_offsets(pt_bf16_conv_geometry g, conv_dims d, const int32_t *order, int32_t *koff, int32_t *poff) {
    long w2 = phase_width(d), plane = d.pih * w2, phase = (long)(g.ic / 2) * plane;
    int khw = g.kh * g.kw;
    for (int k = 0; k < d.K; k++) {
        int w = order[k], c = w / khw, i = (w % khw) / g.kw, j = w % g.kw;
        koff[k] = (int32_t)((j & 1) * phase + (c / 2) * plane + i * w2 + j / 2);
    }
    for (int q = 0, y = 0; y < g.oh; y++)
        for (int x = 0; x < g.ow; x++, q++) poff[q] = (int32_t)(2 * y * w2 + x);
}

/// Whether `forward_rounded` can add into its output (`add`): the direct and lanes forms over the
/// channel-pair image (vector unit, even ic); elsewhere the GEMM would start its chains from the output.
int forward_adds(pt_bf16_conv_geometry g) { return channel_pairs(g) && (direct_forward(g) || lanes_forward(g)); }

void forward_rounded(pt_bf16_conv_geometry g, int mb, const float *in, const uint16_t *wbf, const float *bias,
                     float *out, char *s, const uint32_t *prepacked, int add, const float *gate) {
    conv_dims d = dims(g);
    long outsize = (long)g.oc * d.P;
    s = (char *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    uint32_t *pa = bump(&s, packed_a_bytes(g.oc, d.K));
    uint32_t *pb = bump(&s, packed_b_bytes(d.P, d.K));
    uint16_t *pad = bump(&s, (size_t)(d.sample + 16) * 2);
    bump(&s, (size_t)g.oc * d.K * 2 + 32);   // (the caller's rounded weights live here)
    if (tiles_direct(g)) {
        tiles_forward(g, mb, in, wbf, bias, out, s);
        finish_sample(gate, out, mb * outsize, 0);
        return;
    }
    int32_t *koff = bump(&s, (size_t)d.K * 4), *poff = bump(&s, (size_t)d.P * 4), *rows = bump(&s, (size_t)g.oc * 4);
    const int32_t *order = reduction_order(g, bump(&s, (size_t)d.K * 4));
    if (prepacked) {
        pa = (uint32_t *)prepacked;
    } else {
        for (int o = 0; o < g.oc; o++) rows[o] = o * d.K;
        pt_view wv = { wbf, rows, order };
        pack_a_all(wv, g.oc, d.K, pa);
    }
    int kp = (d.K + 1) / 2, images = 0, lanes = lanes_forward(g), phased = phase_forward(g);
    if (phased) phase_offsets(g, d, order, koff, poff);
    else forward_offsets(g, d, order, koff, poff);
    int32_t delta[DIRECT_IMAGES];
    uint32_t *image[DIRECT_IMAGES];
    const uint32_t **bptr = NULL;
    float *tile = lanes ? bump(&s, 32 * 16 * 4) : NULL;
    if (direct_forward(g) || lanes || phased) {
        for (int i = 0; i < DIRECT_IMAGES; i++) image[i] = bump(&s, (size_t)(d.sample + 16) * 4);
        bptr = bump(&s, (size_t)kp * 8);
        uint8_t *which = bump(&s, (size_t)kp);
        images = phased ? 1 : pair_deltas(d.K, koff, delta, which);
        for (int p = 0; p < kp; p++) bptr[p] = image[phased ? 0 : which[p]] + koff[2 * p];
    }
    int split = g.ow == 8;
    long rowstep = phased ? 2 * phase_width(d) : (long)g.sh * d.piw;   // words from one output row to the next
    // Channel pairs: one image (delta = the plane; split by column parity with stride 2), built straight
    // from the fp32 sample (`pair_image`, `phase_image`) around a border zeroed here once; otherwise the
    // zero-padded bf16 sample and the images built from it.
    int pairs = images && order;
    if (pairs) memset(image[0], 0, (size_t)(phased ? g.ic * d.pih * phase_width(d) : d.sample) * 4);
    else memset(pad, 0, (size_t)(d.sample + 16) * 2);
    for (int n = 0; n < mb; n++) {
        const float *sample = in + (long)n * g.ic * g.ih * g.iw;
        float *o = out + (long)n * g.oc * d.P;
        if (pairs) {
            if (phased) phase_image(g, d, sample, image[0]);
            else pair_image(g, d, sample, image[0]);
        } else {
            pad_sample(g, d, sample, pad);
            if (!images) {
                gemm_packed_a(g.oc, d.P, d.K, pa, pad, poff, koff, o, d.P, 0, bias, pb);
                finish_sample(gate, o, outsize, n * outsize);
                continue;
            }
            for (int i = 0; i < images; i++) build_image(pad, d.sample, delta[i], image[i]);
        }
        if (lanes) {
            lanes_forward_sample(g, kp, pa, bptr, d.piw, bias, add, o, tile);
            finish_sample(gate, o, outsize, n * outsize);
            continue;
        }
        long insize = (long)g.ic * g.ih * g.iw;
        next_lines pf = n + 1 < mb ? next_sample_lines(in + (n + 1) * insize, insize, NULL, 0) : no_next_lines;
        // The forward's folded ReLU inside the tiles' stores (where a pass of its own over the sample, `finish_sample`,
        // read and wrote it again: cifar-small bf16, b128, 1 thread, Zen 4, conv1's forward 1.82 -> 1.60 ms a step,
        // conv3's 6.14 -> 5.92 ms). The input gradient's gate stays a pass of its own: read at the tiles' stores it
        // made conv2's backward 25.9 -> 26.8 ms, its lines fetched a tile ahead or not.
        int self = gate == out;
        for (int q0 = 0; q0 < d.P; q0 += 32) {
            int groups = d.P - q0 >= 32 ? 2 : 1;
            for (int m0 = 0; m0 < g.oc; m0 += MR)
                direct_forward_tile(kp, pa + (size_t)(m0 / MR) * MR * kp, bptr, poff[q0], groups > 1 ? poff[q0 + 16] : 0,
                                    groups, split, rowstep, o + (long)m0 * d.P + q0, d.P,
                                    g.oc - m0 < MR ? g.oc - m0 : MR, bias ? bias + m0 : NULL, add, &pf, self);
        }
        if (!self) finish_sample(gate, o, outsize, n * outsize);
    }
}

/// Where `forward_rounded` expects the rounded weights inside its scratch.
uint16_t *rounded_weights_slot(pt_bf16_conv_geometry g, char *s) {
    conv_dims d = dims(g);
    s = (char *)(((uintptr_t)s + 63) & ~(uintptr_t)63);
    return (uint16_t *)(s + align64(packed_a_bytes(g.oc, d.K)) + align64(packed_b_bytes(d.P, d.K)) + align64((size_t)(d.sample + 16) * 2));
}
