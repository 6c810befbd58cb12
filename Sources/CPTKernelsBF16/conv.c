// Convolution prepared weights and scratch sizes in bf16 (the forms conv_forward.c and conv_backward_data.c read).
#include "bf16_internal.h"

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

/// Ints of each of the index arrays `pt_bf16_conv_prepare` uses: its own and the transposed convolution's
/// reduction, and the channel counts.
static int prepare_index_count(pt_bf16_conv_geometry g) {
    int n = dims(g).K, tk = g.oc * g.kh * g.kw;
    if (tk > n) n = tk;
    if (g.oc > n) n = g.oc;
    if (g.ic > n) n = g.ic;
    return n;
}

static size_t prepare_scratch_bytes(pt_bf16_conv_geometry g) {
    conv_dims d = dims(g);
    int n = prepare_index_count(g);
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
    int n = prepare_index_count(g);
    int32_t *rows = bump(&s, (size_t)n * 4), *roff = bump(&s, (size_t)n * 4);
    pt_bf16_round(w, wbf, (long)g.oc * d.K);
    for (int o = 0; o < g.oc; o++) rows[o] = o * d.K;
    pt_view wv = { wbf, rows, reduction_order(g, roff) };
    pack_a_all(wv, g.oc, d.K, forward);
    if (planar_data(g)) {
        planar_table(g, wbf, data);
    } else if (transposed_data(g)) {
        pt_bf16_conv_geometry t = transposed(g);
        int tk = dims(t).K;
        flipped_weights(g, w, wt);
        for (int c = 0; c < g.ic; c++) rows[c] = c * tk;
        pt_view tv = { wt, rows, reduction_order(t, roff) };
        pack_a_all(tv, t.oc, tk, data);
    } else {
        pack_transposed_weights(g, wbf, rows, roff, data);
    }
}

/// The forward from the prepared weights when there are some, else from w rounded into the scratch; `gate` as in
/// `finish_sample`.
static void forward_from(pt_bf16_conv_geometry g, int mb, const float *in, const float *w, const void *prepared,
                         const float *bias, float *out, void *scratch, const float *gate) {
    if (prepared) {
        uint32_t *forward, *data;
        prepared_split_conv(g, prepared, &forward, &data);
        forward_rounded(g, mb, in, NULL, bias, out, scratch, forward, 0, gate);
        return;
    }
    uint16_t *wbf = rounded_weights_slot(g, scratch);
    pt_bf16_round(w, wbf, (long)g.oc * g.ic * g.kh * g.kw);
    forward_rounded(g, mb, in, wbf, bias, out, scratch, NULL, 0, gate);
}

/// The input-gradient part of the prepared weights, or NULL without them.
static const uint32_t *data_part(pt_bf16_conv_geometry g, const void *prepared) {
    if (!prepared) return NULL;
    uint32_t *forward, *data;
    prepared_split_conv(g, prepared, &forward, &data);
    return data;
}

void pt_bf16_conv_forward(pt_bf16_conv_geometry g, int mb, const float *in, const float *w, const float *bias,
                          float *out, void *scratch) {
    forward_from(g, mb, in, w, NULL, bias, out, scratch, NULL);
}

void pt_bf16_conv_forward_prepared(pt_bf16_conv_geometry g, int mb, const float *in, const void *prepared, const float *bias,
                                   float *out, void *scratch) {
    forward_from(g, mb, in, NULL, prepared, bias, out, scratch, NULL);
}

void pt_bf16_conv_forward_relu(pt_bf16_conv_geometry g, int mb, const float *in, const float *w, const void *prepared,
                               const float *bias, float *out, void *scratch) {
    forward_from(g, mb, in, w, prepared, bias, out, scratch, out);
}

void pt_bf16_conv_backward_data_prepared(pt_bf16_conv_geometry g, int mb, const float *dout, const void *prepared, float *din,
                                         int add, void *scratch) {
    backward_data(g, mb, dout, NULL, din, scratch, data_part(g, prepared), add, NULL);
}

void pt_bf16_conv_backward_data_gated(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, const void *prepared,
                                      const float *gate, float *din, void *scratch) {
    backward_data(g, mb, dout, w, din, scratch, data_part(g, prepared), 0, gate);
}

size_t pt_bf16_conv_scratch_bytes(pt_bf16_conv_geometry g, int mb) {
    (void)mb;
    size_t f = forward_bytes(g), dd = data_bytes(g), w = weights_bytes(g), p = prepare_scratch_bytes(g);
    size_t m = f > dd ? f : dd;
    m = m > w ? m : w;
    return (m > p ? m : p) + 64;
}

