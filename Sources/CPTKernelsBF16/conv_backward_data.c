// Convolution input gradient in bf16: the planar form, the transposed convolution's forward, unfolding + col2im.
#include "bf16_internal.h"

int transposed_data(pt_bf16_conv_geometry g) {
    return g.sh == 1 && g.sw == 1 && g.ph <= g.kh - 1 && g.pw <= g.kw - 1;
}

pt_bf16_conv_geometry transposed(pt_bf16_conv_geometry g) {
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

int planar_data(pt_bf16_conv_geometry g) {
    return transposed_data(g) && g.ic < 16 && g.oc % 2 == 0 && g.iw <= 16 && g.kw <= PLANAR_WIDTH - 15 && g.iw + g.pw <= PLANAR_WIDTH;
}

int pt_bf16_conv_backward_data_planar(pt_bf16_conv_geometry g) { return planar_data(g); }

size_t planar_table_words(pt_bf16_conv_geometry g) {
    int blocks = (g.ic + PLANAR_CHANNELS - 1) / PLANAR_CHANNELS;
    return (size_t)blocks * g.kh * g.kw * (g.oc / 2) * PLANAR_CHANNELS;
}

static size_t planar_bytes(pt_bf16_conv_geometry g) {
    return align64(planar_table_words(g) * 4) + align64((size_t)g.oc * g.ic * g.kh * g.kw * 2 + 32)
         + align64((size_t)(g.oc / 2) * g.oh * PLANAR_WIDTH * 4) + 64;
}

/// table[cb][a][b][op][cc] = (W[2op][c][kh-1-a][kw-1-b] high, W[2op+1][c][kh-1-a][kw-1-b] low), c = 6 cb + cc,
/// 0 past ic; wbf: the rounded weights.
void planar_table(pt_bf16_conv_geometry g, const uint16_t *wbf, uint32_t *table) {
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

size_t data_bytes(pt_bf16_conv_geometry g) {
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

/// Whether the input gradient's col2im runs in registers (`col2im_rows`): input rows of at most 32 and
/// output rows of at most 16 pixels.
static int col2im_small_rows(pt_bf16_conv_geometry g) { return g.iw <= 32 && g.ow <= 16 && g.kw <= 16; }

/// col2im for input rows of at most 32 and output rows of at most 16 pixels: each input row summed in
/// registers, the taps' output rows spread onto it by a permute (lane X of tap j takes output column
/// (X + pw - j) / sw where that is whole and in range), added under a mask in tap order (c, i, j) from 0:
/// the adds of the scatter loop, without its stores and reloads. With `add`, the row's sum is added to
/// what din held (one add, the bits of a spare buffer added in afterwards).
static void col2im_rows(pt_bf16_conv_geometry g, const float *col, float *din, int32_t idx[16][32], const uint32_t *mask,
                        int add) {
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
            if (add) {
                acc0 = _mm512_add_ps(_mm512_maskz_loadu_ps(out0, row), acc0);
                if (out1) acc1 = _mm512_add_ps(_mm512_maskz_loadu_ps(out1, row + 16), acc1);
            }
            _mm512_mask_storeu_ps(row, out0, acc0);
            if (out1) _mm512_mask_storeu_ps(row + 16, out1, acc1);
        }
}

/// W'[c][o][i][j] = W[o][c][kh-1-i][kw-1-j], rounded: the transposed convolution's weights.
void flipped_weights(pt_bf16_conv_geometry g, const float *w, uint16_t *wt) {
    int khw = g.kh * g.kw;
    uint16_t tmp[16];
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++) {
            const float *src = w + ((long)o * g.ic + c) * khw;
            uint16_t *dst = wt + ((long)c * g.oc + o) * khw;
            for (int q = 0; q < khw; q += 16) {
                int n = khw - q < 16 ? khw - q : 16;
                round_row(src + q, tmp, n);
                for (int e = 0; e < n; e++) dst[khw - 1 - (q + e)] = tmp[e];
            }
        }
}

/// The unfolding input gradient's A operand: W^T [K][oc] from the rounded wbf, packed (rows, roff: K and oc ints).
void pack_transposed_weights(pt_bf16_conv_geometry g, const uint16_t *wbf, int32_t *rows, int32_t *roff, uint32_t *pa) {
    conv_dims d = dims(g);
    for (int k = 0; k < d.K; k++) rows[k] = k;
    for (int o = 0; o < g.oc; o++) roff[o] = o * d.K;
    pt_view wv = { wbf, rows, roff };
    pack_a_all(wv, d.K, g.oc, pa);
}

/// The input gradient; `prepacked`: the weights as `pt_bf16_conv_prepare` packs them for it, or NULL.
void backward_data(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, float *din, void *scratch,
                   const uint32_t *prepacked, int add, const float *gate) {
    conv_dims d = dims(g);
    long inSize = (long)g.ic * g.ih * g.iw;
    if (planar_data(g)) {
        planar_backward_data(g, mb, dout, w, din, scratch, prepacked);
        finish_sample(gate, din, mb * inSize, 0);
        return;
    }
    if (transposed_data(g)) {
        // The transposed convolution's forward, with the flipped weights.
        pt_bf16_conv_geometry t = transposed(g);
        uint16_t *wt = rounded_weights_slot(t, scratch);
        if (!prepacked) flipped_weights(g, w, wt);
        forward_rounded(t, mb, dout, wt, NULL, din, scratch, prepacked, add, gate);
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
    int small_rows = col2im_small_rows(g);
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
            col2im_rows(g, col, dst, idx, mask, add);
            finish_sample(gate, dst, inSize, n * inSize);
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
        finish_sample(gate, dst, inSize, n * inSize);
    }
}

void pt_bf16_conv_backward_data(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, float *din, int add,
                                void *scratch) {
    backward_data(g, mb, dout, w, din, scratch, NULL, add, NULL);
}

int pt_bf16_conv_backward_data_adds(pt_bf16_conv_geometry g) {
    if (planar_data(g)) return 0;
    return transposed_data(g) ? forward_adds(transposed(g)) : col2im_small_rows(g);
}

