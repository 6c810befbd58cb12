// One instruction-set level: the vector type, the fused multiply-add, and the register-tile shapes
// that fit the level's register file. Every kernel in this module is generic over a `KernelLevel`
// and is compiled for a level only where it is specialised: in the level's own module
// (PTKernelsAVX2, PTKernelsAVX512; the baseline in PTKernels), each built for its target CPU.
// This module itself is built with cross-module optimisation, so its generic bodies are available
// to those modules for specialisation.

/// An instruction-set level the kernels are specialised for.
///
/// Tile shapes change which registers hold what, never the order of the sums: every output of a
/// GEMM or convolution tile is one chain of multiply-adds in a fixed order, and every lane-split
/// reduction (`sgemmDotNT`, direct backward weights, bias sums) splits the same way on every level
/// (16 lanes; 4 x 16 for the bias sums). So levels with a fused multiply-add (AVX2, AVX-512) compute
/// bit-identical results; the baseline, without one, rounds the product and the sum separately.
public protocol KernelLevel: SendableMetatype {
    /// The vector of the per-output chains: one register (SIMD4 for SSE, SIMD8 for AVX2, SIMD16 for AVX-512).
    associatedtype V: SIMD where V.Scalar == Float
    /// "baseline", "avx2", "avx512".
    static var name: String { get }
    /// acc + x * y, fused on levels with FMA.
    static func madd<T: SIMD>(_ acc: T, _ x: T, _ y: T) -> T where T.Scalar == Float
    /// Scalar acc + x * y, fused on levels with FMA.
    static func madd(_ acc: Float, _ x: Float, _ y: Float) -> Float
    /// Whether `madd` is one fused instruction (else a multiply and an add).
    static var hasFusedMultiplyAdd: Bool { get }

    /// GEMM tiles in order of preference (the first is the default, the others serve small m or n).
    static var gemmShapes: [GemmBlocking] { get }
    /// Runs the `shape.mr` x `shape.nv` GEMM register tile (see `GemmTile`).
    static func gemmMicro(_ shape: GemmBlocking, kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>,
                          c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool)

    /// Convolution register tiles (output channels, vectors of pixels), first is the tie-break winner.
    static var convTileShapes: [(mr: Int, nv: Int)] { get }
    /// Vectors per tile for a single output channel (oc == 1).
    static var convSingleRowVectors: Int { get }
    /// Runs `count` tiles `ConvTile<Self, mr, nv>` side by side (`ConvTile.runTiles`); nv may be any value
    /// 1...the shape's nv (the last tile of a row block).
    static func convTiles(mr: Int, nv: Int, count: Int, span: TapSpan, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>,
                          input: UnsafePointer<Float>, inPos: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>,
                          outPos: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int)

    /// Backward-weights tile (groups of (channel, kernel row), vectors of output channels) for oc % 16 == 0
    /// and kernels kw = 3 or 5 wide.
    static func weightsTileShape(oc: Int, kw: Int) -> (groups: Int, nv: Int)
    static func weightsTile(kw: Int, groups tg: Int, nv: Int, img: UnsafePointer<Float>, groupOffsets: UnsafePointer<Int>,
                            dyT: UnsafePointer<Float>, ldy: Int, oh: Int, ow: Int, rowStep: Int, colStep: Int,
                            acc: UnsafeMutablePointer<Float>, ldacc: Int, groups: Int)

    /// Rows x columns of the 16-lane dot-product tiles (`sgemmDotNT`, direct backward weights); the
    /// transposed shape is also available.
    static var dotShape: (rows: Int, cols: Int) { get }
    static func dotTile(transposed: Bool, k: Int, a: UnsafePointer<Float>, lda: Int, rows: Int,
                        b: UnsafePointer<Float>, ldb: Int, cols: Int, c: UnsafeMutablePointer<Float>, ldc: Int)
    static func directWeightsTile(transposed: Bool, samples: Int, length: Int, a: UnsafePointer<Float>, lda: Int,
                                  aStride: Int, rows: Int, b: UnsafePointer<Float>, bStride: Int,
                                  offsets: UnsafePointer<Int>, cols: Int, c: UnsafeMutablePointer<Float>, ldc: Int)

    /// Independent accumulators of the peak loop (enough to fill every FMA pipe: latency x pipes, with margin).
    static var peakChains: Int { get }
    /// The peak loop: `iterations` x `peakChains` vector multiply-adds; returns a value that depends on all.
    static func peakLoop(_ iterations: Int) -> Float
}

extension KernelLevel {
    /// Floats per vector.
    @inline(__always) public static var width: Int { V.scalarCount }
}

/// The kernels of one level as plain function values, built once by `makeKernelTable` in the level's
/// module (so every function behind them is that module's specialisation).
public struct KernelTable: Sendable {
    public let name: String
    public let vectorWidth: Int
    public let peakChains: Int
    /// Flops of one iteration of `peakLoop`: 2 per lane per multiply-add (a fused one, or a multiply
    /// chain and an add chain together).
    public let peakFlopsPerIteration: Int
    public let gemmShapes: [GemmBlocking]
    public let sgemm: @Sendable (_ shape: GemmBlocking?, _ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int,
                                 _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int, _ b: UnsafePointer<Float>, _ ldb: Int,
                                 _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int, _ workspace: UnsafeMutablePointer<Float>) -> Void
    public let sgemmDotNT: @Sendable (_ m: Int, _ n: Int, _ k: Int, _ a: UnsafePointer<Float>, _ lda: Int,
                                      _ b: UnsafePointer<Float>, _ ldb: Int, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) -> Void
    public let convForward: @Sendable (ConvKernel, _ mb: Int, _ input: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                       _ bias: UnsafePointer<Float>?, _ output: UnsafeMutablePointer<Float>,
                                       _ scratch: UnsafeMutablePointer<Float>) -> Void
    public let convBackwardData: @Sendable (ConvKernel, _ mb: Int, _ outputGrad: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                            _ inputGrad: UnsafeMutablePointer<Float>, _ scratch: UnsafeMutablePointer<Float>) -> Void
    public let convBackwardWeights: @Sendable (ConvKernel, _ mb: Int, _ input: UnsafePointer<Float>, _ outputGrad: UnsafePointer<Float>,
                                               _ weightGrad: UnsafeMutablePointer<Float>, _ biasGrad: UnsafeMutablePointer<Float>?,
                                               _ scratch: UnsafeMutablePointer<Float>) -> Void
    public let maxPoolForward: @Sendable (PoolGeometry, UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Int32>,
                                          _ reluFirst: Bool) -> Void
    public let maxPoolBackward: @Sendable (PoolGeometry, UnsafePointer<Float>, UnsafePointer<Int32>, UnsafeMutablePointer<Float>,
                                           _ reluOutput: UnsafePointer<Float>?) -> Void
    public let reluForward: @Sendable (Int, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    public let reluBackward: @Sendable (Int, UnsafePointer<Float>, UnsafePointer<Float>, UnsafeMutablePointer<Float>) -> Void
    public let im2col: @Sendable (ConvGeometry, UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void
    public let col2im: @Sendable (ConvGeometry, UnsafePointer<Float>, Int, UnsafeMutablePointer<Float>) -> Void
    public let sgdStep: @Sendable (_ lr: Float, _ momentum: Float, _ nesterov: Bool, _ weightDecay: Float,
                                   _ weights: UnsafeMutablePointer<Float>, _ gradients: UnsafePointer<Float>,
                                   _ velocity: UnsafeMutablePointer<Float>, _ count: Int) -> Void
    public let adamStep: @Sendable (_ b1: Float, _ b2: Float, _ eps: Float, _ coupled: Float, _ shrink: Float, _ stepSize: Float,
                                    _ rc2: Float, _ weights: UnsafeMutablePointer<Float>, _ gradients: UnsafePointer<Float>,
                                    _ m: UnsafeMutablePointer<Float>, _ v: UnsafeMutablePointer<Float>, _ count: Int) -> Void
    public let addFloats: @Sendable (_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) -> Void
    // Batch normalisation over one channel: `rows` rows of `count` values, `stride` floats apart (BatchNormRows.swift).
    public let bnRowSum: @Sendable (_ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int) -> Double
    public let bnRowSquares: @Sendable (_ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int, _ mean: Float) -> Double
    public let bnRowGradientSums: @Sendable (_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ stride: Int,
                                             _ count: Int, _ mean: Float) -> (Double, Double)
    public let bnAffine: @Sendable (_ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int, _ scale: Float, _ shift: Float,
                                    _ y: UnsafeMutablePointer<Float>) -> Void
    public let bnInputGradient: @Sendable (_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ stride: Int,
                                           _ count: Int, _ mean: Float, _ a: Float, _ b: Float, _ k: Float,
                                           _ dx: UnsafeMutablePointer<Float>) -> Void
    // Batch norm, the residual add and ReLU fused (PTModel's layer fusion; see BatchNormRows.swift).
    public let bnAffineReLU: @Sendable (_ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int, _ scale: Float,
                                        _ shift: Float, _ z: UnsafeMutablePointer<Float>) -> Void
    public let bnAffineAddReLUPlanes: @Sendable (_ x: UnsafePointer<Float>, _ other: UnsafePointer<Float>, _ map: UnsafePointer<Float>,
                                                 _ samples: Int, _ channels: Int, _ count: Int, _ z: UnsafeMutablePointer<Float>) -> Void
    public let bnAffine2AddReLUPlanes: @Sendable (_ x: UnsafePointer<Float>, _ map: UnsafePointer<Float>, _ x2: UnsafePointer<Float>,
                                                  _ map2: UnsafePointer<Float>, _ samples: Int, _ channels: Int, _ count: Int,
                                                  _ z: UnsafeMutablePointer<Float>) -> Void
    public let bnRowGradientSumsReLU: @Sendable (_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ stride: Int,
                                                 _ count: Int, _ mean: Float, _ scale: Float, _ shift: Float) -> (Double, Double)
    public let bnInputGradientReLU: @Sendable (_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ stride: Int,
                                               _ count: Int, _ mean: Float, _ a: Float, _ b: Float, _ k: Float, _ scale: Float,
                                               _ shift: Float, _ dx: UnsafeMutablePointer<Float>) -> Void
    public let bnRowGradientSumsMasked: @Sendable (_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ mask: UnsafePointer<Float>,
                                                   _ rows: Int, _ stride: Int, _ count: Int, _ mean: Float) -> (Double, Double)
    public let bnInputGradientMasked: @Sendable (_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ mask: UnsafePointer<Float>,
                                                 _ rows: Int, _ stride: Int, _ count: Int, _ mean: Float, _ a: Float, _ b: Float,
                                                 _ k: Float, _ dx: UnsafeMutablePointer<Float>) -> Void
    public let addReLU: @Sendable (_ count: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ z: UnsafeMutablePointer<Float>) -> Void
    public let reluBackwardFanOut: @Sendable (_ count: Int, _ z: UnsafePointer<Float>, _ dz: UnsafePointer<Float>,
                                              _ first: UnsafeMutablePointer<Float>?, _ second: UnsafeMutablePointer<Float>?) -> Void
    public let peakLoop: @Sendable (Int) -> Float
}

/// The table of level `L`. Call it only in `L`'s module (so the closures are its specialisations) and
/// only after the CPU is known to run `L`.
public func makeKernelTable<L: KernelLevel>(_ level: L.Type) -> KernelTable {
    KernelTable(
        name: L.name, vectorWidth: L.width, peakChains: L.peakChains,
        peakFlopsPerIteration: 2 * L.width * (L.hasFusedMultiplyAdd ? L.peakChains : L.peakChains / 2),
        gemmShapes: L.gemmShapes,
        sgemm: { shape, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws in
            _sgemm(L.self, shape: shape, transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                   b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, workspace: ws)
        },
        sgemmDotNT: { m, n, k, a, lda, b, ldb, c, ldc in
            _sgemmDotNT(L.self, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        },
        convForward: { kernel, mb, x, w, bias, y, scratch in
            kernel._forward(L.self, mb: mb, input: x, weight: w, bias: bias, output: y, scratch: scratch)
        },
        convBackwardData: { kernel, mb, dy, w, dx, scratch in
            kernel._backwardData(L.self, mb: mb, outputGrad: dy, weight: w, inputGrad: dx, scratch: scratch)
        },
        convBackwardWeights: { kernel, mb, x, dy, dw, db, scratch in
            kernel._backwardWeights(L.self, mb: mb, input: x, outputGrad: dy, weightGrad: dw, biasGrad: db, scratch: scratch)
        },
        maxPoolForward: { g, x, y, arg, relu in _maxPoolForward(L.self, g, input: x, output: y, argmax: arg, reluFirst: relu) },
        maxPoolBackward: { g, dy, arg, dx, relu in
            _maxPoolBackward(L.self, g, outputGrad: dy, argmax: arg, inputGrad: dx, reluOutput: relu)
        },
        reluForward: { n, x, y in _reluForward(L.self, count: n, input: x, output: y) },
        reluBackward: { n, y, dy, dx in _reluBackward(L.self, count: n, output: y, outputGrad: dy, inputGrad: dx) },
        im2col: { g, x, col, ld in _im2col(L.self, g, input: x, col: col, ld: ld, rows: 0..<g.oh) },
        col2im: { g, col, ld, dx in _col2im(L.self, g, col: col, ld: ld, inputGrad: dx) },
        sgdStep: { lr, mu, nesterov, wd, w, g, v, n in
            _sgdStep(L.self, lr: lr, momentum: mu, nesterov: nesterov, weightDecay: wd, weights: w, gradients: g, velocity: v, count: n)
        },
        adamStep: { b1, b2, eps, coupled, shrink, stepSize, rc2, w, g, m, v, n in
            _adamStep(L.self, b1: b1, b2: b2, eps: eps, coupled: coupled, shrink: shrink, stepSize: stepSize, rc2: rc2,
                      weights: w, gradients: g, m: m, v: v, count: n)
        },
        addFloats: { d, s, n in _addFloats(L.self, d, s, n) },
        bnRowSum: { x, r, st, n in _bnRowSum(L.self, x, r, st, n) },
        bnRowSquares: { x, r, st, n, mean in _bnRowSquares(L.self, x, r, st, n, mean) },
        bnRowGradientSums: { x, dy, r, st, n, mean in _bnRowGradientSums(L.self, x, dy, r, st, n, mean) },
        bnAffine: { x, r, st, n, scale, shift, y in _bnAffine(L.self, x, r, st, n, scale, shift, y) },
        bnInputGradient: { x, dy, r, st, n, mean, a, b, k, dx in _bnInputGradient(L.self, x, dy, r, st, n, mean, a, b, k, dx) },
        bnAffineReLU: { x, r, st, n, scale, shift, z in _bnAffineReLU(L.self, x, r, st, n, scale, shift, z) },
        bnAffineAddReLUPlanes: { x, o, m, ns, cs, n, z in _bnAffineAddReLUPlanes(L.self, x, o, m, ns, cs, n, z) },
        bnAffine2AddReLUPlanes: { x, m, x2, m2, ns, cs, n, z in _bnAffine2AddReLUPlanes(L.self, x, m, x2, m2, ns, cs, n, z) },
        bnRowGradientSumsReLU: { x, dy, r, st, n, mean, s, t in _bnRowGradientSumsReLU(L.self, x, dy, r, st, n, mean, s, t) },
        bnInputGradientReLU: { x, dy, r, st, n, mean, a, b, k, s, t, dx in
            _bnInputGradientReLU(L.self, x, dy, r, st, n, mean, a, b, k, s, t, dx)
        },
        bnRowGradientSumsMasked: { x, dy, z, r, st, n, mean in _bnRowGradientSumsMasked(L.self, x, dy, z, r, st, n, mean) },
        bnInputGradientMasked: { x, dy, z, r, st, n, mean, a, b, k, dx in
            _bnInputGradientMasked(L.self, x, dy, z, r, st, n, mean, a, b, k, dx)
        },
        addReLU: { n, a, b, z in _addReLU(L.self, count: n, a, b, output: z) },
        reluBackwardFanOut: { n, z, dz, d1, d2 in _reluBackwardFanOut(L.self, count: n, output: z, outputGrad: dz, first: d1, second: d2) },
        peakLoop: { L.peakLoop($0) })
}

/// Picks, among `shapes`, the (mr, nv) with the least padded work for oc rows x `vectors` vectors
/// (ties: the earlier one).
@inline(__always)
func leastPadded(_ shapes: [(mr: Int, nv: Int)], oc: Int, vectors: Int) -> (Int, Int) {
    var best = shapes[0]
    for t in shapes.dropFirst()
    where roundUp(oc, t.mr) * roundUp(vectors, t.nv) < roundUp(oc, best.mr) * roundUp(vectors, best.nv) { best = t }
    return (best.mr, best.nv)
}
