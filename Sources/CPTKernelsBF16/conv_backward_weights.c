// Convolution weight gradient in bf16: direct, output channels on the lanes, channels-last and packed forms;
// the bias sums.
#include "bf16_internal.h"

static int lanes_weights(pt_bf16_conv_geometry g);
static size_t lanes_weights_bytes(pt_bf16_conv_geometry g);

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

/// Row stride (elements) of `build_pairs`' staging rows: room for 32-element loads at any column of a padded
/// row, and not a multiple of 4 KiB apart, so 16 channels' rows do not share L1 sets.
static inline long stage_stride(conv_dims d) { return (long)(d.piw + 31) / 32 * 32 + 32; }

/// Samples per block of the direct weight gradient: enough that each tile's loop runs over at least 256 pixel
/// pairs. A tile loads and stores its 24 accumulators once per loop, which over one 8x8 sample (32 pairs,
/// 768 vdpbf16ps) is a tenth of the work; over a block of samples (each sample's pairs in order, the samples
/// in order) the chains are the same. (`bench train --profile`, ResNet-20 bf16: the 8x8 stage's backward
/// 38.9 -> 37.7 ms a step, the 16x16 stage's 38.6 -> 37.8 ms; with blocks of 128 pairs, which leave the 16x16
/// stage one sample a block, 38.0 and 38.2 ms.)
static inline int direct_block(pt_bf16_conv_geometry g) {
    int half = g.oh * g.ow / 2;
    return half >= 256 ? 1 : (256 + half - 1) / half;
}

size_t weights_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    if (tiles_direct(g)) return tiles_weights_bytes(g);
    if (lanes_weights(g)) return lanes_weights_bytes(g);
    size_t reordered = direct_weights(g) || channels_last_weights(g) ? align64((size_t)g.oc * d.K * 4) : 0;
    if (direct_weights(g)) {
        size_t S = (size_t)direct_block(g);
        return align64((size_t)16 * stage_stride(d) * 2) + align64(S * d.sample * 4) + align64(S * g.oc * d.P * 2 + 64)
             + reordered + align64((size_t)d.K / 16 * 4) + align64(S * d.P / 2 * 4) + align64((size_t)g.oc * 64) + 64;
    }
    return align64(packed_a_bytes(g.oc, d.P)) + align64(packed_b_bytes(d.K, d.P)) + align64((size_t)(d.sample + 16) * 2)
         + align64((size_t)g.oc * d.P * 2 + 32) + align64((size_t)d.K * 4) + align64((size_t)d.P * 4) + align64((size_t)g.oc * 4)
         + reordered + 64;
}

/// The pair words of one sample (see `direct_weights`), from its fp32 planes `in`, that a pair reads: rows a
/// tap reads, columns X < (ow - 2) * sw + kw. Per input row and 16 channels, the rows are rounded into a
/// small zero-bordered staging copy (`stage`, 16 x `stage_stride`, zeroed by the caller: the padded row
/// as `pad_sample` would write it, without a whole padded sample between the passes); then per 16 columns
/// one load and one permute per channel row (words of X and X + sw; zero past the row) and a 16 x 16
/// transpose; the last few columns scalar. The border rows' words are zero and written by no sample: the
/// caller zeroes `pairs` once.
static void build_pairs(pt_bf16_conv_geometry g, conv_dims d, const float *in, uint16_t *stage, uint32_t *pairs) {
    int columns = (g.ow - 2) * g.sw + g.kw;
    long hw = (long)g.ih * g.iw, ss = stage_stride(d);
    uint16_t pick[32];
    for (int l = 0; l < 16; l++) { pick[2 * l] = (uint16_t)(l + g.sw); pick[2 * l + 1] = (uint16_t)l; }
    const __m512i perm = _mm512_loadu_si512(pick);
    for (int y = 0; y < g.ih; y++) {
        int Y = y + g.ph, used = 0;
        for (int i = 0; i < g.kh && !used; i++) used = Y >= i && (Y - i) % g.sh == 0 && (Y - i) / g.sh < g.oh;
        if (!used) continue;
        for (int c0 = 0; c0 < g.ic; c0 += 16) {
            for (int c = 0; c < 16; c++) round_row(in + (c0 + c) * hw + (long)y * g.iw, stage + c * ss + g.pw, g.iw);
            uint32_t *dst = pairs + (long)Y * d.piw * g.ic + c0;
            int X0 = 0;
            for (; columns - X0 > 4; X0 += 16) {
                int n = columns - X0 < 16 ? columns - X0 : 16;
                int avail = d.piw - X0 < 32 ? d.piw - X0 : 32;
                __mmask32 m = (__mmask32)((1ull << avail) - 1);
                __m512i r[16];
                for (int c = 0; c < 16; c++) r[c] = _mm512_permutexvar_epi16(perm, _mm512_maskz_loadu_epi16(m, stage + c * ss + X0));
                transpose16(r);
                for (int x = 0; x < n; x++) _mm512_storeu_si512(dst + (long)(X0 + x) * g.ic, r[x]);
            }
            for (; X0 < columns; X0++)
                for (int c = 0; c < 16; c++) {
                    const uint16_t *row = stage + c * ss;
                    dst[(long)X0 * g.ic + c] = (uint32_t)row[X0] << 16 | (X0 + g.sw < d.piw ? row[X0 + g.sw] : 0);
                }
        }
    }
}

/// One tile of the direct backward weights: C[0..<mr][16 * G] (ldc) += chain over the sample's np pixel
/// pairs; row r's pair p is a[r][p] (rows >= mr read row 0, not stored); group h's pair p at
/// pairs[poff[p] + gbase[h]] (one loop over all pairs: rows of 4 pairs (8x8 planes) would end a loop
/// every 64 vdpbf16ps). G = 3 (24 accumulators) loads 11 operands per 24 vdpbf16ps where G = 2 loads 10 per 16.
static inline __attribute__((always_inline)) void direct_weights_tile(const int G, int np, const int32_t *poff, const uint32_t *a,
                                                                      long lda, int mr, const uint32_t *pairs,
                                                                      const int32_t *gbase, float *c, long ldc, next_lines *pf) {
    __m512 acc[MR][3];
    const uint32_t *ar[MR], *bp[3];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++) ar[r] = a + (mr > r) * r * lda;
#pragma clang loop unroll(full)
    for (int h = 0; h < G; h++) bp[h] = pairs + gbase[h];
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++)
#pragma clang loop unroll(full)
        for (int h = 0; h < G; h++) acc[r][h] = r < mr ? _mm512_loadu_ps(c + r * ldc + 16 * h) : _mm512_setzero_ps();
    for (int p = 0; p < np; p++) {
        long off = poff[p];
        __m512bh b[3];
#pragma clang loop unroll(full)
        for (int h = 0; h < G; h++) b[h] = (__m512bh)_mm512_loadu_si512(bp[h] + off);
        fetch_next_line(pf);
#pragma clang loop unroll(full)
        for (int r = 0; r < MR; r++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)ar[r][p]);
#pragma clang loop unroll(full)
            for (int h = 0; h < G; h++) acc[r][h] = _mm512_dpbf16_ps(acc[r][h], x, b[h]);
        }
    }
#pragma clang loop unroll(full)
    for (int r = 0; r < MR; r++)
        if (r < mr)
#pragma clang loop unroll(full)
            for (int h = 0; h < G; h++) _mm512_storeu_ps(c + r * ldc + 16 * h, acc[r][h]);
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

/// The 16 lanes of v added in lane order from 0 (fp32): the bias sums' last step.
static inline float lane_sum(__m512 v) {
    float lanes[16], sum = 0;
    _mm512_storeu_ps(lanes, v);
    for (int l = 0; l < 16; l++) sum += lanes[l];
    return sum;
}

/// With `db` and whole 16-pixel chunks per channel (P % 16 == 0), the bias sums are taken in the pass that
/// rounds dOut (one 16-lane accumulator per channel over the samples in order, each sample's chunks in
/// order, then its lanes in order: `pt_bf16_bias_sums`' additions, the same bits) instead of a pass of
/// their own over dOut.
static void direct_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw,
                                    float *db, char *s) {
    conv_dims d = dims(g);
    int khw = g.kh * g.kw, groups = d.K / 16, S = direct_block(g), half = d.P / 2;
    uint16_t *stage = bump(&s, (size_t)16 * stage_stride(d) * 2);
    uint32_t *pairs = bump(&s, (size_t)S * d.sample * 4);
    uint16_t *dbf = bump(&s, (size_t)S * g.oc * d.P * 2 + 64);
    float *acc = bump(&s, (size_t)g.oc * d.K * 4);
    int32_t *gbase = bump(&s, (size_t)groups * 4), *poff = bump(&s, (size_t)S * half * 4);
    __m512 *bsum = db ? bump(&s, (size_t)g.oc * 64) : NULL;
    if (db) for (int o = 0; o < g.oc; o++) bsum[o] = _mm512_setzero_ps();
    // Pair p of a block: sample p / half's pair p % half, in its own pair words (samples d.sample words apart).
    for (int b = 0, p = 0; b < S; b++)
        for (int y = 0; y < g.oh; y++)
            for (int x = 0; x < g.ow; x += 2, p++) poff[p] = (int32_t)((long)b * d.sample + (y * g.sh * d.piw + x * g.sw) * g.ic);
    for (int t = 0; t < khw; t++)
        for (int c0 = 0; c0 < g.ic; c0 += 16)
            gbase[(t * g.ic + c0) / 16] = (int32_t)(((t / g.kw) * d.piw + t % g.kw) * g.ic + c0);
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int t = 0; t < khw; t++) acc[(long)o * d.K + t * g.ic + c] = dw[(long)o * d.K + c * khw + t];
    memset(stage, 0, (size_t)16 * stage_stride(d) * 2);
    memset(pairs, 0, (size_t)S * d.sample * 4);
    // A row o of a block: the block's samples' dout rows o side by side (lda words).
    long lda = (long)S * half, insize = (long)g.ic * g.ih * g.iw, outsize = (long)g.oc * d.P;
    for (int n0 = 0; n0 < mb; n0 += S) {
        int count = mb - n0 < S ? mb - n0 : S;
        for (int b = 0; b < count; b++) {
            build_pairs(g, d, in + (n0 + b) * insize, stage, pairs + b * d.sample);
            const float *dn = dout + (n0 + b) * outsize;
            for (int o = 0; o < g.oc; o++) {
                if (db) {
                    // Row by row, so that rounding reads the row the sums just brought into L1.
                    __m512 sum = bsum[o];
                    for (long q = 0; q < d.P; q += 16) sum = _mm512_add_ps(sum, _mm512_loadu_ps(dn + o * d.P + q));
                    bsum[o] = sum;
                }
                round_swapped(dn + o * d.P, dbf + (o * lda + b * half) * 2, d.P);
            }
        }
        const uint32_t *a = (const uint32_t *)dbf;
        int next = n0 + S, ahead = mb - next < S ? mb - next : S;
        next_lines pf = ahead > 0 ? next_sample_lines(in + next * insize, ahead * insize, dout + next * outsize, ahead * outsize)
                                  : no_next_lines;
        int np = count * half;
        // Column tiles of 3 groups, the last ones of 2 (or 1) when groups is not a multiple of 3.
        for (int h = 0; h < groups;) {
            int left = groups - h, gs = left == 4 || left == 2 ? 2 : left == 1 ? 1 : 3;
            for (int m0 = 0; m0 < g.oc; m0 += MR) {
                const uint32_t *am = a + m0 * lda;
                int mr = g.oc - m0 < MR ? g.oc - m0 : MR;
                float *cm = acc + (long)m0 * d.K + h * 16;
                if (gs == 3) direct_weights_tile(3, np, poff, am, lda, mr, pairs, gbase + h, cm, d.K, &pf);
                else if (gs == 2) direct_weights_tile(2, np, poff, am, lda, mr, pairs, gbase + h, cm, d.K, &pf);
                else direct_weights_tile(1, np, poff, am, lda, mr, pairs, gbase + h, cm, d.K, &pf);
            }
            h += gs;
        }
    }
    for (int o = 0; o < g.oc; o++)
        for (int c = 0; c < g.ic; c++)
            for (int t = 0; t < khw; t++) dw[(long)o * d.K + c * khw + t] = acc[(long)o * d.K + t * g.ic + c];
    if (db)
        for (int o = 0; o < g.oc; o++) db[o] += lane_sum(bsum[o]) + 0.0f;   // (+ the empty tail, as pt_bf16_bias_sums)
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
        db[o] += lane_sum(acc) + tail;
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
        int fused = d.P % 16 == 0;
        direct_backward_weights(g, mb, in, dout, dw, fused ? db : NULL, s);
        if (db && !fused) pt_bf16_bias_sums(dout, mb, g.oc, d.P, db);
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
                    round_row(sample + ((long)c * g.ih + y) * g.iw, row, g.iw);
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

