// bf16 kernels (AVX512_BF16: vdpbf16ps, vcvtneps2bf16; AMX-BF16: tdpbf16ps). Call only when
// `pt_bf16_unit()` (CPTSupport) is not 0: the code runs AVX-512 BF16 instructions unconditionally, and
// AMX tiles when the unit is 2.
//
// Numbers (docs/ARCHITECTURE.md, "bf16"): every operand is rounded fp32 -> bf16 to nearest even
// (vcvtneps2bf16: zero and denormal inputs become a signed zero, NaN stays a quiet NaN); with the vector
// unit (1) every output element is a chain of fp32 adds of exact bf16 x bf16 products in increasing
// reduction index, two per vdpbf16ps (the reduction padded with one zero product when its length is
// odd), starting from 0 or from the destination (per function below); with AMX tiles (2) the
// reduction runs in blocks of 32 (zero-padded): per block an fp32 chain over its even and one over
// its odd elements, each from 0, then acc + (even + odd). The order depends only on the shapes.
#ifndef CPTKERNELSBF16_H
#define CPTKERNELSBF16_H

#include <stddef.h>
#include <stdint.h>

/// A convolution's geometry (oh, ow derived by the caller; NCHW, one sample = ic*ih*iw floats).
typedef struct {
    int ic, oc, ih, iw, kh, kw, sh, sw, ph, pw, oh, ow;
} pt_bf16_conv_geometry;

/// fp32 -> bf16, rounded to nearest even (the bits of vcvtneps2bf16), `count` values.
void pt_bf16_round(const float *src, uint16_t *dst, long count);

/// GFLOP-counting peak loop: `iterations` x 24 independent vdpbf16ps zmm chains (64 flops each).
float pt_bf16_peak_loop(long iterations);
/// Flops of one iteration of `pt_bf16_peak_loop`.
long pt_bf16_peak_flops_per_iteration(void);
/// AMX peak loop (unit 2 only): `iterations` x 4 independent tdpbf16ps (16 x 16 x 32 products each).
float pt_bf16_tiles_peak_loop(long iterations);
/// Flops of one iteration of `pt_bf16_tiles_peak_loop`.
long pt_bf16_tiles_peak_flops_per_iteration(void);

/// Bytes of scratch the three convolution passes need for calls with up to `mb` samples.
size_t pt_bf16_conv_scratch_bytes(pt_bf16_conv_geometry g, int mb);
/// out[s][o][q] = chain over k of in x w (from 0), then + bias[o] (bias may be NULL); k = (i, j, c) when ic is even
/// on the vector unit (each pair two adjacent channels at one tap), else k = (c, i, j).
void pt_bf16_conv_forward(pt_bf16_conv_geometry g, int mb, const float *in, const float *w, const float *bias,
                          float *out, void *scratch);
/// din (overwritten): stride 1 with padding <= kernel - 1: the forward of the transposed convolution
/// (chain over (o, i, j) of dout x flipped w; (i, j, o) when oc is even on the vector unit), or for ic < 16, oc even and iw <= 16 the planar form (on
/// either unit one vector chain over (i, j, o) of the flipped kernel, kernel rows i whose dout row
/// exists only); otherwise per input pixel, the sum (fp32, taps in (i, j)
/// order) of the unfolded products, each a chain over o. With `add` (only where
/// `pt_bf16_conv_backward_data_adds`), din += that value instead: one fp32 addition per element after
/// its chain, the bits of writing it elsewhere and adding it in.
void pt_bf16_conv_backward_data(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, float *din, int add,
                                void *scratch);
/// Whether `pt_bf16_conv_backward_data` can add into din: the transposed forward over channel pairs (stride
/// 1, oc even, on the vector unit), and the unfolding path's col2im in registers (input rows of at most 32
/// and output rows of at most 16 pixels: ResNet's strided layers, on either unit).
int pt_bf16_conv_backward_data_adds(pt_bf16_conv_geometry g);
/// Whether `pt_bf16_conv_backward_data` runs g in the planar form (ConvKernel.bf16Passes asks; the
/// reference states the same rule, `bf16BackwardDataIsPlanar`, and a test checks they agree).
int pt_bf16_conv_backward_data_planar(pt_bf16_conv_geometry g);
/// Bytes of a convolution's prepared weights (rounded and packed for the forward and the input
/// gradient, made once while the weights stay the same); 0 on the tile unit, which has no prepared path.
size_t pt_bf16_conv_prepared_bytes(pt_bf16_conv_geometry g);
/// Fills `prepared` from w (scratch: `pt_bf16_conv_scratch_bytes`).
void pt_bf16_conv_prepare(pt_bf16_conv_geometry g, const float *w, void *prepared, void *scratch);
/// `pt_bf16_conv_forward` with w's prepared form (same bits).
void pt_bf16_conv_forward_prepared(pt_bf16_conv_geometry g, int mb, const float *in, const void *prepared, const float *bias,
                                   float *out, void *scratch);
/// `pt_bf16_conv_backward_data` with w's prepared form (same bits).
void pt_bf16_conv_backward_data_prepared(pt_bf16_conv_geometry g, int mb, const float *dout, const void *prepared, float *din,
                                         int add, void *scratch);
/// `pt_bf16_conv_forward` (from `prepared` when not NULL, else from w) with the ReLU after it folded in: the outputs
/// are stored as out > 0 ? out : 0 (the ReLU layer's bits; -0 and NaN give +0), as each tile or sample is stored.
void pt_bf16_conv_forward_relu(pt_bf16_conv_geometry g, int mb, const float *in, const float *w, const void *prepared,
                               const float *bias, float *out, void *scratch);
/// `pt_bf16_conv_backward_data` (overwriting; from `prepared` when not NULL, else from w) with the backward of
/// the ReLU before the layer folded in: din = gate > 0 ? din : 0, gate laid out as din (the ReLU's output, this
/// layer's input), sample by sample as each is stored.
void pt_bf16_conv_backward_data_gated(pt_bf16_conv_geometry g, int mb, const float *dout, const float *w, const void *prepared,
                                      const float *gate, float *din, void *scratch);
/// dw[o][k] += chain over samples, then pixels of each sample (padded to even per sample), starting
/// from dw; db[o] (if not NULL) += fp32 sum of dout (see `pt_bf16_bias_sums`).
void pt_bf16_conv_backward_weights(pt_bf16_conv_geometry g, int mb, const float *in, const float *dout, float *dw,
                                   float *db, void *scratch);
/// Whether `pt_bf16_conv_backward_weights` runs g with output channels on the vector lanes (few input
/// channels; the vector unit): the choice of which passes run in bf16 asks (ConvKernel.bf16Passes).
int pt_bf16_conv_weights_on_lanes(pt_bf16_conv_geometry g);
/// db[o] += for each sample s, pixel block: 16 fp32 lanes (lane l adds pixels q = l mod 16 of q < P/16*16,
/// in sample then pixel order); the lanes summed 0..15 in order, then the tail pixels (sample order), one add.
void pt_bf16_bias_sums(const float *dout, int mb, int oc, int pixels, float *db);

/// Bytes of scratch a dense layer's three passes need.
size_t pt_bf16_dense_scratch_bytes(int batch, int inputs, int neurons);
/// y[b][o] = chain over i of x[b][i] w[o][i] (from 0), then + bias[o].
void pt_bf16_dense_forward(int batch, int inputs, int neurons, const float *x, const float *w, const float *bias,
                           float *y, void *scratch);
/// dw[o][i] = chain over b of dy[b][o] x[b][i], starting from dw when `add`, else from 0 (dw not read).
void pt_bf16_dense_backward_weights(int batch, int inputs, int neurons, const float *x, const float *dy, float *dw,
                                    int add, void *scratch);
/// dx[b][i] = chain over o of dy[b][o] w[o][i] (from 0).
void pt_bf16_dense_backward_data(int batch, int inputs, int neurons, const float *dy, const float *w, float *dx,
                                 void *scratch);
/// Bytes of a dense layer's deferred weight gradient for shards of up to `batch` samples (its operands, packed), or 0
/// where none is kept (the tile unit); at most `neurons` x `inputs` floats where the layer defers (`Dense`).
size_t pt_bf16_dense_deferred_bytes(int batch, int inputs, int neurons);
/// `pt_bf16_dense_backward_weights` left to the reduction: writes the product's operands (x and dy rounded and
/// packed, and the batch) into `deferred` (`pt_bf16_dense_deferred_bytes`, 64-byte aligned) instead of the product.
void pt_bf16_dense_defer_weights(int batch, int inputs, int neurons, const float *x, const float *dy, void *deferred,
                                 void *scratch);
/// dw[lo ..< hi) (flat indices into the neurons x inputs gradient) = the fixed pairwise tree over the n shards'
/// products (`pairwiseSumInPlace`: at stride 1, 2, 4, ... leaf i += leaf i + stride), each shard's product that of
/// `pt_bf16_dense_backward_weights` from its deferred operands at leaves[s] + offset (all zero: an empty shard, +0).
void pt_bf16_dense_reduce_deferred(int n, float *const *leaves, long offset, int inputs, int neurons, long lo, long hi,
                                   float *dw);
/// Bytes of a dense layer's prepared weights (the bf16 W packed for the forward and for the input
/// gradient, made once while the weights stay the same); 0 on the tile unit, which has no prepared path.
size_t pt_bf16_dense_prepared_bytes(int inputs, int neurons);
/// Fills `prepared` from w (scratch: `pt_bf16_dense_scratch_bytes` for any batch).
void pt_bf16_dense_prepare(int inputs, int neurons, const float *w, void *prepared, void *scratch);
/// `pt_bf16_dense_forward` with w's prepared form (same bits).
void pt_bf16_dense_forward_prepared(int batch, int inputs, int neurons, const float *x, const void *prepared,
                                    const float *bias, float *y, void *scratch);
/// `pt_bf16_dense_backward_data` with w's prepared form (same bits).
void pt_bf16_dense_backward_data_prepared(int batch, int inputs, int neurons, const float *dy, const void *prepared,
                                          float *dx, void *scratch);

#endif
