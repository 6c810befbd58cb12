// Dense layers in bf16: the three products on the GEMM, and the prepared weights.
#include "bf16_internal.h"

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

/// The weight gradient's operands: x and dy rounded into the scratch, A = dy^T (neurons x batch) packed into `pa`,
/// and the offset tables of B(b, i) = x[b][i] (lanes t2, reduction t1) for `pack_b` / `gemm_packed_a`.
static void weight_operands(int batch, int inputs, int neurons, const float *x, const float *dy, dense_scratch s, uint32_t *pa) {
    pt_bf16_round(x, s.xbf, (long)batch * inputs);
    pt_bf16_round(dy, s.ybf, (long)batch * neurons);
    for (int o = 0; o < neurons; o++) s.t0[o] = o;
    for (int b = 0; b < batch; b++) s.t1[b] = b * neurons;
    pt_view gv = { s.ybf, s.t0, s.t1 };
    pack_a_all(gv, neurons, batch, pa);
    for (int i = 0; i < inputs; i++) s.t2[i] = i;
    for (int b = 0; b < batch; b++) s.t1[b] = b * inputs;
}

void pt_bf16_dense_backward_weights(int batch, int inputs, int neurons, const float *x, const float *dy, float *dw,
                                    int add, void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    weight_operands(batch, inputs, neurons, x, dy, s, s.pa);
    // M = neurons, N = inputs, reduction = batch: B(b, i) = x[b][i] (adjacent lanes). Stored, the gradient (4 MiB for
    // cifar-small's 4096 -> 256 layer, read next by the reduction over the shards) goes around the caches.
    gemm_packed_a(neurons, inputs, batch, s.pa, s.xbf, s.t2, s.t1, dw, inputs, add ? C_LOAD : C_STREAM, NULL, s.pb);
    if (!add) _mm_sfence();
}

// The deferred weight gradient: a shard's backward keeps the product's operands, packed as
// `pt_bf16_dense_backward_weights` packs them (A: dy^T, neurons x batch; B: x, batch x inputs, its 32-column panels in
// order), in the shard's own gradient range, and the reduction multiplies them tile by tile: each shard's 4 x 32 tile is
// `ukernel`'s chain for those outputs, from zero, and the tiles are added in the tree in registers (pairs of shards) and
// L1 (the rest). Per shard the 4 MiB product of cifar-small's 4096 -> 256 layer is no longer written around the caches
// and read back by the reduction.

/// Words of the deferred header (the batch), of packed A and of packed B.
enum { DEFERRED_HEADER = 16 };
/// (A's words rounded up to 64 bytes: B's panels are stored with aligned stores.)
static size_t deferred_a_words(int batch, int neurons) {
    return ((size_t)((neurons + MR - 1) / MR * MR) * (size_t)((batch + 1) / 2) + 15) / 16 * 16;
}
static size_t deferred_b_words(int batch, int inputs) { return (size_t)((inputs + NR - 1) / NR * NR) * (size_t)((batch + 1) / 2); }

size_t pt_bf16_dense_deferred_bytes(int batch, int inputs, int neurons) {
    if (use_tiles()) return 0;
    return 4 * (DEFERRED_HEADER + deferred_a_words(batch, neurons) + deferred_b_words(batch, inputs));
}

void pt_bf16_dense_defer_weights(int batch, int inputs, int neurons, const float *x, const float *dy, void *deferred,
                                 void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    uint32_t *d = (uint32_t *)deferred;
    memset(d, 0, 4 * DEFERRED_HEADER);
    d[0] = (uint32_t)batch;
    uint32_t *pa = d + DEFERRED_HEADER, *pb = pa + deferred_a_words(batch, neurons);
    weight_operands(batch, inputs, neurons, x, dy, s, pa);
    int kp = (batch + 1) / 2;
    for (int j = 0; j < inputs; j += NR) pack_b(s.xbf, s.t2, s.t1, j, inputs, batch, pb + (size_t)j * kp);
}

/// acc[0..<8] (4 rows x 32 columns) = one shard's chain over kp pairs of its deferred operands: rows r0 ..< r0 + 4 of
/// its packed A (8-row panels) by one 32-column panel of its packed B. The chains of `ukernel` for those outputs.
static inline __attribute__((always_inline)) void deferred_chain(const uint32_t *d, int neurons, int r0, int j, __m512 acc[8]) {
    int batch = (int)d[0], kp = (batch + 1) / 2;
    const uint32_t *a = d + DEFERRED_HEADER + (size_t)(r0 / MR) * MR * kp + r0 % MR;
    const uint32_t *b = d + DEFERRED_HEADER + deferred_a_words(batch, neurons) + (size_t)j * kp;
#pragma clang loop unroll(full)
    for (int t = 0; t < 8; t++) acc[t] = _mm512_setzero_ps();
    for (int p = 0; p < kp; p++) {
        __m512bh b0 = (__m512bh)_mm512_load_si512(b), b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma clang loop unroll(full)
        for (int r = 0; r < 4; r++) {
            __m512bh x = (__m512bh)_mm512_set1_epi32((int)a[r]);
            acc[2 * r] = _mm512_dpbf16_ps(acc[2 * r], x, b0);
            acc[2 * r + 1] = _mm512_dpbf16_ps(acc[2 * r + 1], x, b1);
        }
        a += MR; b += NR;
    }
}

/// dst = dst + src over one 4 x 32 tile (left + right, as `pairwiseSumInPlace` adds).
static inline void add_tile(float *dst, const float *src) {
    for (int e = 0; e < 4 * NR; e += 16) _mm512_store_ps(dst + e, _mm512_add_ps(_mm512_load_ps(dst + e), _mm512_load_ps(src + e)));
}

void pt_bf16_dense_reduce_deferred(int n, float *const *leaves, long offset, int inputs, int neurons, long lo, long hi,
                                   float *dw) {
    if (lo >= hi) return;
    // The tree as a stack of partial sums over runs of 2^k leaves: each pair of leaves (2i, 2i + 1) is summed in
    // registers and pushed as a run of 2 (a last odd leaf as a run of 1); while the two on top cover runs of the same
    // length they are added (left + right); at the end the stack is added from the top down (each left + the sum of
    // those above it): the pairs, and the order within each pair, of `pairwiseSumInPlace`. Tiles of 4 rows x 32
    // columns, so that two shards' accumulators fit in registers.
    enum { DEPTH = 40, TILE = 4 * NR };
    __attribute__((aligned(64))) float stack[DEPTH][TILE];
    long run[DEPTH];
    int r0 = (int)(lo / inputs), r1 = (int)((hi - 1) / inputs);
    // Column panels outside, row blocks inside: a panel's B words of every shard (8 KiB for 8 shards of 16 samples)
    // stay in L1 while the row blocks pass.
    for (int j = 0; j < inputs; j += NR) {
        for (int rb = r0 / 4 * 4; rb <= r1; rb += 4) {
            // Skip tiles wholly outside [lo, hi).
            long tlo = (long)rb * inputs + j, thi = (long)(rb + 3) * inputs + j + NR;
            if (thi <= lo || tlo >= hi) continue;
            int depth = 0;
            for (int s = 0; s < n; s += 2) {
                __m512 x[8], y[8];
                deferred_chain((const uint32_t *)(leaves[s] + offset), neurons, rb, j, x);
                if (s + 1 < n) {
                    deferred_chain((const uint32_t *)(leaves[s + 1] + offset), neurons, rb, j, y);
#pragma clang loop unroll(full)
                    for (int t = 0; t < 8; t++) x[t] = _mm512_add_ps(x[t], y[t]);
                }
#pragma clang loop unroll(full)
                for (int t = 0; t < 8; t++) _mm512_store_ps(stack[depth] + 16 * t, x[t]);
                run[depth++] = s + 1 < n ? 2 : 1;
                while (depth >= 2 && run[depth - 1] == run[depth - 2]) {
                    add_tile(stack[depth - 2], stack[depth - 1]);
                    run[depth - 2] *= 2;
                    depth--;
                }
            }
            if (depth == 0) memset(stack[0], 0, sizeof stack[0]);
            for (; depth >= 2; depth--) add_tile(stack[depth - 2], stack[depth - 1]);
            // Store the tile's elements that lie in the gradient and in [lo, hi).
            for (int r = 0; r < 4 && rb + r < neurons; r++) {
                long row = (long)(rb + r) * inputs;
                long cl = lo - row > 0 ? lo - row : 0, ch = hi - row < inputs ? hi - row : inputs;   // columns in range
                for (int h = 0; h < NR; h += 16) {
                    long from = cl - (j + h), to = ch - (j + h);
                    if (from < 0) from = 0;
                    if (to > 16) to = 16;
                    if (from >= to) continue;
                    __mmask16 m = (__mmask16)(((1u << to) - 1) & ~((1u << from) - 1));
                    _mm512_mask_storeu_ps(dw + row + j + h, m, _mm512_load_ps(stack[0] + r * NR + h));
                }
            }
        }
    }
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

/// The forward's words of `pack_b` for B(i, o) = w[o][i] (lanes o, the reduction along w's rows; `inputs` even),
/// columns [n0, n0 + NR) all within W, rounded from the fp32 weights as they are packed: 16 rows x 32 inputs at a
/// time converted, their pairs' halves swapped and transposed (no bf16 copy of W, no 16-lane gather per pair).
static void pack_forward(const float *w, int inputs, int n0, int kp, uint32_t *dst) {
    for (int h = 0; h < NR; h += 16) {
        const float *rows = w + (long)(n0 + h) * inputs;
        for (int p0 = 0; p0 < kp; p0 += 16) {
            int n = kp - p0 < 16 ? kp - p0 : 16;
            __mmask16 m0 = (__mmask16)(n >= 8 ? 0xFFFF : (1u << (2 * n)) - 1);
            __mmask16 m1 = (__mmask16)(n <= 8 ? 0 : n == 16 ? 0xFFFF : (1u << (2 * n - 16)) - 1);
            __m512i r[16];
            for (int l = 0; l < 16; l++) {
                const float *x = rows + (long)l * inputs + 2 * p0;
                __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, x + 16), _mm512_maskz_loadu_ps(m0, x));
                r[l] = _mm512_ror_epi32((__m512i)v, 16);
            }
            transpose16(r);
            for (int p = 0; p < n; p++) _mm512_store_si512(dst + (size_t)(p0 + p) * NR + h, r[p]);
        }
    }
}

/// The input gradient's words of `pack_b` for B(o, i) = w[o][i] (lanes i, the reduction over the rows o), columns
/// [n0, n0 + NR) (those >= inputs zero), rounded from the fp32 weights as they are packed: rows 2p and 2p + 1
/// converted together and interleaved.
static void pack_data(const float *w, int inputs, int neurons, int n0, uint32_t *dst) {
    const __m512i perm = _mm512_loadu_si512(interleave_index);
    int kp = (neurons + 1) / 2;
    for (int h = 0; h < NR; h += 16) {
        int count = inputs - n0 - h; if (count < 0) count = 0; if (count > 16) count = 16;
        __mmask16 m = (__mmask16)(count == 16 ? 0xFFFF : (1u << count) - 1);
        const float *col = w + n0 + h;
        for (int p = 0; p < kp; p++) {
            __m512 hi = _mm512_maskz_loadu_ps(m, col + (long)(2 * p) * inputs);
            __m512 lo = 2 * p + 1 < neurons ? _mm512_maskz_loadu_ps(m, col + (long)(2 * p + 1) * inputs) : _mm512_setzero_ps();
            // Elements 0-15 from lo, 16-31 from hi: word l = (hi[l] high, lo[l] low) after the interleave.
            __m512i z = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
            _mm512_store_si512(dst + (size_t)p * NR + h, _mm512_permutexvar_epi16(perm, z));
        }
    }
}

void pt_bf16_dense_prepare(int inputs, int neurons, const float *w, void *prepared, void *scratch) {
    dense_prepared p = prepared_split(inputs, neurons, prepared);
    int kpi = (inputs + 1) / 2, kpo = (neurons + 1) / 2;
    // Forward: B(i, o) = w[o][i] (lanes o, reduction i); input gradient: B(o, i) = w[o][i] (lanes i, reduction o).
    int full = inputs % 2 == 0 ? neurons / NR * NR : 0;
    for (int j = 0; j < full; j += NR) pack_forward(w, inputs, j, kpi, p.forward + (size_t)j * kpi);
    if (full < neurons) {
        // The last panel (or all of them with an odd number of inputs): rows [full, neurons) rounded in place in a
        // copy laid out like W, gathered by `pack_b`.
        dense_scratch s = dense_split(1, inputs, neurons, scratch);
        pt_bf16_round(w + (long)full * inputs, s.wbf + (long)full * inputs, (long)(neurons - full) * inputs);
        for (int o = 0; o < neurons; o++) s.t1[o] = o * inputs;
        for (int i = 0; i < inputs; i++) s.t2[i] = i;
        for (int j = full; j < neurons; j += NR) pack_b(s.wbf, s.t1, s.t2, j, neurons, inputs, p.forward + (size_t)j * kpi);
    }
    for (int j = 0; j < inputs; j += NR) pack_data(w, inputs, neurons, j, p.data + (size_t)j * kpo);
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
