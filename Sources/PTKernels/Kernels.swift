// The public kernel entry points: each calls the function of the level in use (`activeKernels`).
// Callers never see the level; results are the same at AVX2 and AVX-512 (see `KernelLevel`).

/// C[m][n] = alpha * op(A) op(B) + beta * C (row-major; see `sgemmReference`).
///
/// `workspace`: at least `sgemmWorkspaceCount(m:n:k:)` floats, any alignment. Layers pass one sized
/// once so the training step allocates nothing. Without one, the call uses a per-thread buffer that
/// grows on first use and is then reused (a cache, not state: it never affects results).
///
/// Deterministic: every element is `beta*C` then, per k-block of `GemmBlocking.kc`, a chain of
/// multiply-adds in increasing k, whatever the threads, the tile or the alignment of the caller's
/// pointers. alpha is folded into the packed A panel.
public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                  workspace: UnsafeMutablePointer<Float>? = nil) {
    if m <= 0 || n <= 0 { return }
    let ws = workspace ?? _threadWorkspace(sgemmWorkspaceCount(m: m, n: n, k: k))
    activeKernels.sgemm(nil, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws)
}

/// C[i][j] += sum_p A[i][p] * B[j][p], both operands p-contiguous. Deterministic: per element, 16
/// lane-chains over p (lane l takes p = l, l+16, ...), a fixed-order lane sum, then the scalar tail
/// p >= k/16*16, then one add into C.
public func sgemmDotNT(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                       c: UnsafeMutablePointer<Float>, ldc: Int) {
    activeKernels.sgemmDotNT(m, n, k, a, lda, b, ldb, c, ldc)
}

/// Name of the GEMM tile `sgemm` uses by default at the level in use (for logs and benchmarks).
public var gemmKernelName: String { activeKernels.gemmShapes[0].name }

/// Name of the GEMM tile `sgemm` uses for an m x n product.
public func gemmKernelName(m: Int, n: Int) -> String { GemmBlocking.choose(from: activeKernels.gemmShapes, m: m, n: n).name }

/// Names accepted by `_sgemmWithKernel`: every GEMM tile of the level in use.
public var _gemmKernelNames: [String] { activeKernels.gemmShapes.map(\.name) }

/// `sgemm` forced through one tile of the level in use (tests check they all give identical bits;
/// benchmarks tune the cache blocks).
public func _sgemmWithKernel(_ name: String, mc: Int? = nil, kc: Int? = nil, nc: Int? = nil, transA: Bool, transB: Bool,
                             m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    guard let base = activeKernels.gemmShapes.first(where: { $0.name == name }) else { preconditionFailure("no kernel \(name)") }
    let bl = base.with(mc: mc, kc: kc, nc: nc)
    let ws = UnsafeMutablePointer<Float>.allocate(capacity: bl.kc * (bl.mc + bl.nc) + bl.mr * bl.nr + 64)
    defer { ws.deallocate() }
    activeKernels.sgemm(bl, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws)
}

extension ConvKernel {
    /// The entry `pass` runs at the level in use, with its sub-variant (see `implementationName(_:vectorWidth:)`).
    public func implementationName(_ pass: ConvPass) -> String {
        implementationName(pass, vectorWidth: activeKernels.vectorWidth)
    }

    /// Forward over `mb` samples (mb <= geometry.mb). See `convForwardReference`.
    public func forward(mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        activeKernels.convForward(self, mb, input, weight, bias, output, scratch)
    }

    /// Input gradient (overwritten). See `convBackwardDataReference`.
    public func backwardData(mb: Int, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             inputGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        activeKernels.convBackwardData(self, mb, outputGrad, weight, inputGrad, scratch)
    }

    /// Adds weight and bias gradients. See `convBackwardWeightsReference`.
    public func backwardWeights(mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?,
                                scratch: UnsafeMutablePointer<Float>) {
        activeKernels.convBackwardWeights(self, mb, input, outputGrad, weightGrad, biasGrad, scratch)
    }
}

/// col[(c*kh + i)*kw + j][y*ow + x] = in[c][y*sh-ph+i][x*sw-pw+j] (0 outside), one sample; row r of col
/// starts at col + r * ld (ld >= oh*ow lets several samples share one wide col matrix).
public func im2col(_ g: ConvGeometry, input: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>, ld: Int? = nil) {
    activeKernels.im2col(g, input, col, ld ?? g.oh * g.ow)
}

/// Inverse scatter of `im2col`: inputGrad (overwritten) = sum of col entries mapping to each pixel.
public func col2im(_ g: ConvGeometry, col: UnsafePointer<Float>, ld: Int? = nil, inputGrad: UnsafeMutablePointer<Float>) {
    activeKernels.col2im(g, col, ld ?? g.oh * g.ow, inputGrad)
}

/// Max pooling forward. See `maxPoolForwardReference` (same outputs and argmax, bit for bit; `reluFirst`:
/// the pooling of ReLU's output, read from ReLU's input).
public func maxPoolForward(_ g: PoolGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                           argmax: UnsafeMutablePointer<Int32>, reluFirst: Bool = false) {
    activeKernels.maxPoolForward(g, input, output, argmax, reluFirst)
}

/// Max pooling backward. See `maxPoolBackwardReference` (`reluOutput`: the pooled output of a
/// `reluFirst` forward; then the gradient of ReLU's input, ReLU's backward folded in).
public func maxPoolBackward(_ g: PoolGeometry, outputGrad: UnsafePointer<Float>, argmax: UnsafePointer<Int32>,
                            inputGrad: UnsafeMutablePointer<Float>, reluOutput: UnsafePointer<Float>? = nil) {
    activeKernels.maxPoolBackward(g, outputGrad, argmax, inputGrad, reluOutput)
}

/// ReLU forward. See `reluForwardReference` (NaN and -0 map to 0, as there).
public func reluForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    activeKernels.reluForward(count, input, output)
}

/// ReLU backward. See `reluBackwardReference`.
public func reluBackward(count: Int, output: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                         inputGrad: UnsafeMutablePointer<Float>) {
    activeKernels.reluBackward(count, output, outputGrad, inputGrad)
}

/// SGD update of `count` elements (PTModel's `SGD` formulas, bit for bit on every level).
public func sgdUpdate(lr: Float, momentum: Float, nesterov: Bool, weightDecay: Float, weights: UnsafeMutablePointer<Float>,
                      gradients: UnsafePointer<Float>, velocity: UnsafeMutablePointer<Float>, count: Int) {
    activeKernels.sgdStep(lr, momentum, nesterov, weightDecay, weights, gradients, velocity, count)
}

/// Adam update of `count` elements with the step's constants (PTModel's `Adam` formulas, bit for bit).
public func adamUpdate(beta1: Float, beta2: Float, epsilon: Float, coupledDecay: Float, shrink: Float, stepSize: Float,
                       rc2: Float, weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                       m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int) {
    activeKernels.adamStep(beta1, beta2, epsilon, coupledDecay, shrink, stepSize, rc2, weights, gradients, m, v, count)
}

/// dst[i] += src[i] for i < count, with the vectors of the level in use (e.g. summing shard gradients;
/// each element is one exact float add, so the bits do not depend on the level).
public func addFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, count: Int) {
    activeKernels.addFloats(dst, src, count)
}

/// The fixed reduction tree that bit-identical data-parallel training rests on (its one other form, over register
/// tiles, is the deferred dense weight gradient's `pt_bf16_dense_reduce_deferred`, tested against this one):
/// leaves[0][range] = the pairwise sum of leaves[0 ..< n][range], in place in the leaves: at
/// stride 1, 2, 4, ...: leaves[i][range] += leaves[i + stride][range] for i = 0, 2*stride, 4*stride, ...
/// (with `addFloats`: one exact add per element, so the same bits at every level). That is the
/// tree that splits n leaves at the largest power of two below n, so a block of 2^k consecutive
/// leaves starting at a multiple of 2^k is one of its subtrees: a rank's in-node sum of its
/// shards, finished across the ranks by the same function over their partial sums.
public func pairwiseSumInPlace(_ leaves: UnsafePointer<UnsafeMutablePointer<Float>>, n: Int, range: Range<Int>) {
    var stride = 1
    while stride < n {
        var i = 0
        while i + stride < n {
            addFloats(leaves[i] + range.lowerBound, leaves[i + stride] + range.lowerBound, count: range.count)
            i += 2 * stride
        }
        stride *= 2
    }
}

/// Whether x[0 ..< count] holds no NaN and no infinity: x * 0 is ±0 for a finite x and NaN otherwise,
/// summed in 16 independent lanes. It was one serial chain of scalar adds: LeNet-5 b64 (61,706
/// gradients), one thread, AMD EPYC Zen 4 (shared machine), the step's optimizer phase went from
/// 0.11-0.16 ms to 0.035-0.044 ms (`ptrain bench train`, 3 interleaved runs each).
public func allFinite(_ x: UnsafePointer<Float>, count: Int) -> Bool {
    var lanes = SIMD16<Float>(repeating: 0)
    let raw = UnsafeRawPointer(x)
    var i = 0
    while i + 16 <= count {
        lanes += raw.loadUnaligned(fromByteOffset: 4 * i, as: SIMD16<Float>.self) * 0
        i += 16
    }
    var probe = lanes.sum()
    while i < count { probe += x[i] * 0; i += 1 }
    return probe.isFinite
}

// Batch normalisation passes over one channel: `rows` rows (samples) of `count` values (the plane), row r
// at `r * rowStride` floats from the start (every operand alike); see Sources/PTKernelsCore/BatchNormRows.swift
// for the summation order (16 Float lanes per row, the rows' lanes added in Double) and the `…Reference` twins.

/// Sum of the values (16 Float lanes per row; the rows' lanes, then the tails, added in Double).
@inline(__always) public func bnRowSum(_ x: UnsafePointer<Float>, count: Int, rows: Int = 1, rowStride: Int = 0) -> Double {
    activeKernels.bnRowSum(x, rows, rowStride, count)
}

/// Sum of (x - mean)^2, as `bnRowSum`.
@inline(__always) public func bnRowSquares(_ x: UnsafePointer<Float>, count: Int, mean: Float, rows: Int = 1, rowStride: Int = 0) -> Double {
    activeKernels.bnRowSquares(x, rows, rowStride, count, mean)
}

/// (sum of dy, sum of dy * (x - mean)), as `bnRowSum`.
@inline(__always) public func bnRowGradientSums(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int,
                                                mean: Float, rows: Int = 1, rowStride: Int = 0) -> (Double, Double) {
    activeKernels.bnRowGradientSums(x, dy, rows, rowStride, count, mean)
}

/// y = x * scale + shift (same bits on every level).
@inline(__always) public func bnAffine(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float,
                                       output y: UnsafeMutablePointer<Float>, rows: Int = 1, rowStride: Int = 0) {
    activeKernels.bnAffine(x, rows, rowStride, count, scale, shift, y)
}

/// dx = a * dy + b * (x - mean) + k (same bits on every level).
@inline(__always) public func bnInputGradient(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                              a: Float, b: Float, k: Float, inputGrad dx: UnsafeMutablePointer<Float>,
                                              rows: Int = 1, rowStride: Int = 0) {
    activeKernels.bnInputGradient(x, dy, rows, rowStride, count, mean, a, b, k, dx)
}

// Batch norm, the residual add and ReLU fused into single passes (PTModel's layer fusion): each gives
// the bits of the unfused passes in sequence; see BatchNormRows.swift and the `…Reference` twins.

/// z = relu(x * scale + shift).
@inline(__always) public func bnAffineReLU(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float,
                                           output z: UnsafeMutablePointer<Float>, rows: Int = 1, rowStride: Int = 0) {
    activeKernels.bnAffineReLU(x, rows, rowStride, count, scale, shift, z)
}

/// z = relu((x * scale + shift) + other) over a whole tensor of `samples` x `channels` planes of `count` values
/// (plane (n, c) at `(n * channels + c) * count`), channel c's scale and shift at `map[c]` and `map[channels + c]`.
@inline(__always) public func bnAffineAddReLU(_ x: UnsafePointer<Float>, map: UnsafePointer<Float>, other: UnsafePointer<Float>,
                                              samples: Int, channels: Int, count: Int, output z: UnsafeMutablePointer<Float>) {
    activeKernels.bnAffineAddReLUPlanes(x, other, map, samples, channels, count, z)
}

/// z = relu((x * scale + shift) + (x2 * scale2 + shift2)) over a whole tensor, as `bnAffineAddReLU`: x's map at `map`,
/// x2's at `map2`.
@inline(__always) public func bnAffine2AddReLU(_ x: UnsafePointer<Float>, map: UnsafePointer<Float>, _ x2: UnsafePointer<Float>,
                                               map2: UnsafePointer<Float>, samples: Int, channels: Int, count: Int,
                                               output z: UnsafeMutablePointer<Float>) {
    activeKernels.bnAffine2AddReLUPlanes(x, map, x2, map2, samples, channels, count, z)
}

/// `bnRowGradientSums` of g = (x * scale + shift > 0 ? dy : 0): ReLU's mask recomputed from its input.
@inline(__always) public func bnRowGradientSumsReLU(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int,
                                                    mean: Float, scale: Float, shift: Float, rows: Int = 1,
                                                    rowStride: Int = 0) -> (Double, Double) {
    activeKernels.bnRowGradientSumsReLU(x, dy, rows, rowStride, count, mean, scale, shift)
}

/// `bnInputGradient` of g = (x * scale + shift > 0 ? dy : 0).
@inline(__always) public func bnInputGradientReLU(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                                  a: Float, b: Float, k: Float, scale: Float, shift: Float,
                                                  inputGrad dx: UnsafeMutablePointer<Float>, rows: Int = 1, rowStride: Int = 0) {
    activeKernels.bnInputGradientReLU(x, dy, rows, rowStride, count, mean, a, b, k, scale, shift, dx)
}

/// `bnRowGradientSums` of g = (mask > 0 ? dy : 0): the gradient of a residual add's input that is this batch norm's
/// output, taken from the ReLU after the add (its output is the mask).
@inline(__always) public func bnRowGradientSumsMasked(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>,
                                                      mask: UnsafePointer<Float>, count: Int, mean: Float, rows: Int = 1,
                                                      rowStride: Int = 0) -> (Double, Double) {
    activeKernels.bnRowGradientSumsMasked(x, dy, mask, rows, rowStride, count, mean)
}

/// `bnInputGradient` of g = (mask > 0 ? dy : 0).
@inline(__always) public func bnInputGradientMasked(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                                                    count: Int, mean: Float, a: Float, b: Float, k: Float,
                                                    inputGrad dx: UnsafeMutablePointer<Float>, rows: Int = 1, rowStride: Int = 0) {
    activeKernels.bnInputGradientMasked(x, dy, mask, rows, rowStride, count, mean, a, b, k, dx)
}

/// z = relu(a + b) (the residual add, then ReLU). See `addReLUReference`.
public func addReLU(count: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, output z: UnsafeMutablePointer<Float>) {
    activeKernels.addReLU(count, a, b, z)
}

/// ReLU backward written to both inputs' gradients of the residual add before it (either may be nil).
/// See `reluBackwardFanOutReference`.
public func reluBackwardFanOut(count: Int, output: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                               first: UnsafeMutablePointer<Float>?, second: UnsafeMutablePointer<Float>?) {
    activeKernels.reluBackwardFanOut(count, output, outputGrad, first, second)
}

/// GFLOP/s of the FMA peak of the level in use on the calling thread (see `measureFMAPeak(_:seconds:)`).
public func measureFMAPeak(seconds: Double = 0.2) -> Double { measureFMAPeak(activeKernels, seconds: seconds) }
