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

void pt_bf16_dense_backward_weights(int batch, int inputs, int neurons, const float *x, const float *dy, float *dw,
                                    int add, void *scratch) {
    dense_scratch s = dense_split(batch, inputs, neurons, scratch);
    pt_bf16_round(x, s.xbf, (long)batch * inputs);
    pt_bf16_round(dy, s.ybf, (long)batch * neurons);
    for (int o = 0; o < neurons; o++) s.t0[o] = o;
    for (int b = 0; b < batch; b++) s.t1[b] = b * neurons;
    pt_view gv = { s.ybf, s.t0, s.t1 };
    pack_a_all(gv, neurons, batch, s.pa);
    for (int i = 0; i < inputs; i++) s.t2[i] = i;
    for (int b = 0; b < batch; b++) s.t1[b] = b * inputs;
    // M = neurons, N = inputs, reduction = batch: B(b, i) = x[b][i] (adjacent lanes). Stored, the gradient (4 MiB for
    // cifar-small's 4096 -> 256 layer, read next by the reduction over the shards) goes around the caches.
    gemm_packed_a(neurons, inputs, batch, s.pa, s.xbf, s.t2, s.t1, dw, inputs, add ? C_LOAD : C_STREAM, NULL, s.pb);
    if (!add) _mm_sfence();
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
