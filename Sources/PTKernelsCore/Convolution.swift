// Convolution: each pass (forward, backward data, backward weights) keeps a named list of
// implementations in order of preference, oneDNN style; each entry has a predicate on the geometry,
// and the first applicable entry runs. The lists end in the reference, and all entries compute the
// same sums up to float rounding.

/// The three passes of a convolution, each with its own implementation list.
public enum ConvPass: String, CaseIterable, Sendable {
    case forward, backwardData, backwardWeights
}

/// One pass's implementation list: the cases in order of preference, each applicable to some
/// geometries (`isApplicable`); the last one, `reference`, to all. The choice is the first applicable
/// entry, from the geometry alone (never the instruction-set level, never a timing), so the same
/// geometry always runs the same sums.
///
/// A new entry (e.g. a bf16 kernel) is one more case: its predicate, its scratch and its body in the
/// pass's `switch`; placed before the fp32 entries it replaces, with a predicate that also asks for
/// its precision (the precision would then be part of what the predicates see, as oneDNN's data type
/// is part of its descriptor), it leaves every fp32 choice as it is.
public protocol ConvImplementationList: RawRepresentable<String>, CaseIterable, Sendable where AllCases == [Self] {
    /// Whether this entry computes the pass for `g`.
    func isApplicable(_ g: ConvGeometry) -> Bool
}

extension ConvImplementationList {
    /// The entries that compute the pass for `g`, in order of preference (the last is the reference).
    public static func applicable(to g: ConvGeometry) -> [Self] { allCases.filter { $0.isApplicable(g) } }

    /// The entry the pass runs for `g` when none is forced.
    public static func first(applicableTo g: ConvGeometry) -> Self {
        for entry in allCases where entry.isApplicable(g) { return entry }
        fatalError("no \(Self.self) entry for \(g)")   // unreachable: `reference` applies to every geometry
    }
}

/// A convolution kernel bound to one layer geometry (with the largest minibatch it will see).
/// Choosing happens once, in `init`; each call then runs the chosen entry of its pass.
///
/// Determinism: forward and backward-data sums run over ic*kh*kw (or oc*kh*kw) in an order fixed by
/// the geometry; backward-weights sums run group by group, the group size fixed by `geometry.mb` and the
/// call's `mb`. Threads never enter here.
public struct ConvKernel: Sendable {
    /// Forward implementations, in order of preference.
    public enum Forward: String, ConvImplementationList {
        /// 1x1, stride 1, no padding: the input of one sample *is* the GEMM operand (W[oc][ic] x in[ic][P]).
        case pointwiseGemm
        /// 3x3 on 8x8 planes, padding 1, ic and oc >= 32 (ResNet-20's 64-channel stage): `winograd`'s sums,
        /// the plane's 16 tiles transformed as the lanes of one vector, where `winograd`'s transforms of
        /// 4-tile rows leave half of each vector empty (`winograd8x8Applies`).
        case winograd8x8
        /// 3x3, stride 1, padding <= 2, ic and oc >= 32, >= 256 output pixels (or the 8x8 planes above):
        /// Winograd F(2x2, 3x3), 16 multiply-adds per 2x2 output tile and channel pair instead of 36
        /// (WinogradConvolution.swift).
        case winograd
        /// Where `direct` applies and its layout computes enough dropped columns (LeNet conv2: 9 vectors
        /// of 16 for 100 pixels): the direct tiles over shifted copies of the input planes, stored straight
        /// into the output; the same sums as `direct` (ShiftedPlaneConvolution.swift).
        case shiftedPlanes
        /// Stride 1, and few output channels (LeNet: oc <= 16) or output rows of whole 16-pixel vectors
        /// (CIFAR): register tiles read straight from zero-padded planes, no unfolded matrix
        /// (DirectConvolution.swift). Sub-variants, by the level's vector width (same sums): `rows`
        /// (tiles store whole output rows in place) or `paddedWidth` (rows computed on the padded
        /// width, then copied out); see `directRowVectors`.
        case direct
        /// 2-D kernels, at least 16 output pixels a sample, one sample's tap planes <= ~384 KiB: register
        /// tiles over kw column-shifted (and, strided, row-phase) copies of the input, vectors of
        /// flattened output pixels spanning rows and tiles spanning samples (TapPlanesConvolution.swift).
        /// Takes the 8x8 and 7x7 planes and the strided 3x3 layers from the GEMM entries below.
        case tapPlanes
        /// At least `directOutputPixels` output pixels a sample: one sample unfolded (im2col, in chunks of
        /// rows) and multiplied per GEMM, written straight into the output with the bias preloaded.
        case im2colGemmPerSample
        /// Samples taken in groups so the GEMM's n (pixels) is ~`targetColumns` wide: the group is
        /// unfolded into scratch, multiplied, and copied out with the bias. Any geometry.
        case im2colGemm
        /// The plain loops of `convForwardReference`.
        case reference

        public func isApplicable(_ g: ConvGeometry) -> Bool {
            switch self {
            case .pointwiseGemm: return ConvKernel.isPointwise(g)
            case .winograd: return ConvKernel.winogradApplies(g)
            case .winograd8x8: return ConvKernel.winograd8x8Applies(g)
            case .shiftedPlanes: return ConvKernel.forwardShiftedPlanes(g)
            case .direct:
                return g.sh == 1 && g.sw == 1 && (g.oc <= 16 || ConvKernel.outputRowsAreWholeVectors(g))
                    && ConvKernel.tapOffsetsFitInt32(g)
            case .tapPlanes: return ConvKernel.tapPlanesApply(g)
            case .im2colGemmPerSample: return g.oh * g.ow >= ConvKernel.directOutputPixels
            case .im2colGemm, .reference: return true
            }
        }
    }

    /// Backward-data implementations (the input gradient), in order of preference.
    public enum BackwardData: String, ConvImplementationList {
        /// 1x1, stride 1, no padding: per sample dIn = W^T x dOut.
        case pointwiseGemm
        /// 1x1, no padding, strided (ResNet shortcuts): per sample W^T x dOut into scratch, spread onto the
        /// strided pixels of the zeroed input gradient (no col2im over a mostly empty unfolded matrix).
        case stridedPointwise
        /// Stride 1, padding <= kernel - 1: the forward of the transposed convolution (flipped,
        /// transposed weights, padding k-1-p), which needs no col2im scatter; that forward runs the
        /// `Forward` entry of the transposed geometry (see `backwardDataAsTransposedForward`).
        case transposedForward
        /// 3x3, stride 2, padding 1, input planes twice the output (ResNet's strided 3x3 layers): the four
        /// phases of the input gradient as register tiles over the output gradient, 9 multiply-adds per
        /// channel pair and position, no col2im (StridedPhaseConvolution.swift).
        case stridedPhases
        /// Groups of samples: one GEMM W^T x dOut into an unfolded matrix, then col2im. Any geometry.
        case im2colGemm
        /// The plain loops of `convBackwardDataReference`.
        case reference

        public func isApplicable(_ g: ConvGeometry) -> Bool {
            switch self {
            case .pointwiseGemm: return ConvKernel.isPointwise(g)
            case .stridedPointwise: return ConvKernel.isStridedPointwise(g)
            case .transposedForward: return ConvKernel.backwardDataAsTransposedForward(g)
            case .stridedPhases: return ConvKernel.stridedPhasesApply(g)
            case .im2colGemm, .reference: return true
            }
        }
    }

    /// Backward-weights implementations (weight and bias gradients, added), in order of preference.
    public enum BackwardWeights: String, ConvImplementationList {
        /// 1x1, stride 1, no padding: per sample dW += dOut x in^T as 16-lane dot products (`sgemmDotNT`).
        case pointwiseGemm
        /// 1x1, no padding, strided: per sample the input subsampled into scratch (`fillTapPlanes`), then
        /// as `pointwiseGemm`.
        case stridedPointwise
        /// 3-wide kernels, oc a multiple of 16 (>= 32), ic >= 8, and 5x5 kernels, oc a multiple of 16,
        /// ic >= 6 (LeNet conv2): (taps x channels) register tiles over the padded planes and the
        /// transposed output gradient (WeightsTileConvolution.swift).
        case weightsTiles
        /// Where `direct` applies and its padded width has enough more vectors than oh*ow (a 12-channel
        /// 5x5 layer on 12x11 planes; LeNet conv2, 144 positions a sample against 112, ran it before
        /// `weightsTiles` took 5x5 kernels): the same dot products over shifted copies of the input
        /// planes (ShiftedPlaneConvolution.swift).
        case shiftedPlanes
        /// Stride 1, and few output channels or a padded width that wastes at most 1/8 of the FMAs: tiled
        /// dot products of the output gradient with shifted views of the padded planes
        /// (DirectConvolution.swift).
        case direct
        /// Groups of samples unfolded (im2col), then one `sgemmDotNT` with the output gradient. Any geometry.
        case im2colGemm
        /// The plain loops of `convBackwardWeightsReference`.
        case reference

        public func isApplicable(_ g: ConvGeometry) -> Bool {
            switch self {
            case .pointwiseGemm: return ConvKernel.isPointwise(g)
            case .stridedPointwise: return ConvKernel.isStridedPointwise(g)
            case .weightsTiles: return ConvKernel.weightsTilesApply(g)
            case .shiftedPlanes: return ConvKernel.backwardWeightsShiftedPlanes(g)
            case .direct: return ConvKernel.backwardWeightsDirect(g)
            case .im2colGemm, .reference: return true
            }
        }
    }

    public let geometry: ConvGeometry
    /// The entry each pass runs.
    public let forwardImplementation: Forward
    public let backwardDataImplementation: BackwardData
    public let backwardWeightsImplementation: BackwardWeights
    /// Samples unfolded together by `im2colGemm` (so the GEMM sees ~`targetColumns` pixels).
    public let groupSize: Int
    /// The `Forward` entry of `transposedGeometry` (what `transposedForward` runs), chosen in `init`.
    let transposedForwardImplementation: Forward

    /// GEMM width aimed for when grouping samples: wide enough to amortise packing A, small enough that
    /// the unfolded group (reduction x columns floats) stays near the L2/L3 boundary.
    static let targetColumns = 2048
    /// From this many output pixels per sample, forward runs `im2colGemmPerSample` (one GEMM per sample
    /// straight into the output) instead of grouping samples: n = oh*ow is then wide enough on its own.
    static let directOutputPixels = 256

    /// Each pass runs the first applicable entry of its list, or the one given (tests force each
    /// entry in turn; one that does not apply to `geometry` stops the program).
    public init(geometry: ConvGeometry, forward: Forward? = nil, backwardData: BackwardData? = nil,
                backwardWeights: BackwardWeights? = nil) {
        self.geometry = geometry
        forwardImplementation = Self.entry(forward, geometry)
        backwardDataImplementation = Self.entry(backwardData, geometry)
        backwardWeightsImplementation = Self.entry(backwardWeights, geometry)
        groupSize = Self.groupSize(geometry)
        transposedForwardImplementation = Forward.first(applicableTo: Self.transposedGeometry(geometry))
    }

    /// For the transposed kernel, which only runs `forward`: no search (it would allocate in the step).
    init(transposed geometry: ConvGeometry, forward: Forward) {
        self.geometry = geometry
        forwardImplementation = forward
        backwardDataImplementation = .reference
        backwardWeightsImplementation = .reference
        groupSize = Self.groupSize(geometry)
        transposedForwardImplementation = .reference
    }

    /// `forced` (checked here: release builds of the kernels drop preconditions) or the first applicable entry.
    static func entry<List: ConvImplementationList>(_ forced: List?, _ g: ConvGeometry) -> List {
        guard let forced else { return List.first(applicableTo: g) }
        guard forced.isApplicable(g) else { fatalError("convolution: \(forced.rawValue) does not apply to \(g)") }
        return forced
    }

    static func groupSize(_ g: ConvGeometry) -> Int {
        max(1, min(max(g.mb, 1), targetColumns / max(1, g.oh * g.ow)))
    }

    /// The entry `pass` runs, named as `bench kernels` reports it: with its sub-variant at a level of
    /// `vectorWidth` floats (the direct forward's layout), and the transposed forward's own entry.
    public func implementationName(_ pass: ConvPass, vectorWidth: Int) -> String {
        switch pass {
        case .forward:
            guard forwardImplementation == .direct else { return forwardImplementation.rawValue }
            return "direct." + (Self.directRowVectors(geometry, width: vectorWidth) == nil ? "paddedWidth" : "rows")
        case .backwardData:
            guard backwardDataImplementation == .transposedForward else { return backwardDataImplementation.rawValue }
            return "transposedForward(" + transposedKernel.implementationName(.forward, vectorWidth: vectorWidth) + ")"
        case .backwardWeights:
            return backwardWeightsImplementation.rawValue
        }
    }

    // MARK: Predicates

    /// 1x1, stride 1, no padding.
    static func isPointwise(_ g: ConvGeometry) -> Bool {
        g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0
    }

    /// 1x1, no padding, stride > 1, 2-D planes (a ResNet shortcut that halves the size). AMD EPYC Zen 4,
    /// AVX-512, 1 thread: ResNet-20's 16->32 shortcut (mb 16) backward data / weights 36-38% of peak here,
    /// against 17% for the layer's whole backward with im2colGemm. Not for 1-D layers (ih == 1): the
    /// resnet-fsdd-1d shortcuts' per-sample GEMMs (63-250 columns) were slower than im2colGemm's grouped
    /// ones (layer3.0.shortcut.0 backward 0.70 -> 1.24 ms a step).
    static func isStridedPointwise(_ g: ConvGeometry) -> Bool {
        g.kh == 1 && g.kw == 1 && g.ph == 0 && g.pw == 0 && (g.sh > 1 || g.sw > 1) && g.ih > 1
    }

    /// Whether backward data runs as the forward of the transposed convolution (no col2im scatter)
    /// rather than GEMM + col2im: only for stride 1 with padding <= kernel-1, and only when its unfolded
    /// matrix (oc*kh*kw x ih*iw per sample) is no bigger than col2im's (ic*kh*kw x oh*ow): with few input
    /// channels (LeNet, the RGB layer) the transposed GEMM has a tiny m and its unfold dominates.
    /// Measured (machine shared with builds): LeNet conv2 backward data 6.7% -> 12% of peak, LeNet conv1
    /// 4% -> 16%, RGB 3->32 12% -> 22%, CIFAR 32->64 34% -> 39% when switched to col2im.
    /// When the transposed convolution itself runs `direct` with few output channels (ic <= 16: LeNet
    /// conv2, 6 <- 16) nothing is unfolded at all, so it always wins over GEMM + col2im (whose 10-wide
    /// rows were scalar copies: col2im was 8.5% of a LeNet step); so does the transposed forward as
    /// direct register tiles on whole 16-pixel input rows (iw % 16 == 0; CIFAR 32->64 16x16 backward
    /// data 69.5%, see DirectTileConvolution.swift).
    static func backwardDataAsTransposedForward(_ g: ConvGeometry) -> Bool {
        guard g.sh == 1 && g.sw == 1 && g.ph <= g.kh - 1 && g.pw <= g.kw - 1 else { return false }
        return g.oc * g.ih * g.iw <= g.ic * g.oh * g.ow || g.ic <= 16 || g.iw % 16 == 0
    }

    /// The transposed convolution of a stride-1 geometry: dIn = conv(dOut, W' with padding k-1-p)
    /// (padding clamped at 0 where backward data does not run it).
    static func transposedGeometry(_ g: ConvGeometry) -> ConvGeometry {
        ConvGeometry(mb: g.mb, ic: g.oc, oc: g.ic, ih: g.oh, iw: g.ow, kh: g.kh, kw: g.kw,
                     sh: 1, sw: 1, ph: max(0, g.kh - 1 - g.ph), pw: max(0, g.kw - 1 - g.pw))
    }

    /// The transposed convolution: dIn = conv(dOut, W' with padding k-1-p), W'[c][o][i][j] = W[o][c][kh-1-i][kw-1-j].
    var transposedKernel: ConvKernel {
        ConvKernel(transposed: Self.transposedGeometry(geometry), forward: transposedForwardImplementation)
    }

    // MARK: Scratch

    /// Floats of scratch one call of any pass needs (for any mb <= geometry.mb, at any level). Provide it
    /// once per worker.
    public var scratchCount: Int { max(forwardScratchCount, backwardDataScratchCount, backwardWeightsScratchCount) }

    /// Output rows unfolded at a time by the per-sample forward: the sample's unfolded matrix split into
    /// equal chunks of at most ~160K floats (640 KiB, within the 1 MiB L2 next to the packed panels).
    /// CIFAR 32->32 at 32x32 (288 x 1024 floats): 2 chunks of 16 rows. Same sums as one chunk.
    /// CIFAR-small b128, 1 thread, alternating runs: 483 / 478 / 485 images/s against 482 / 469 / 449 unchunked;
    /// chunks of 100K floats: 457 / 472 / 471 against 462 / 461 / 469 (noise); 60K: 434 / 437 / 442 (worse).
    var forwardChunkRows: Int {
        let g = geometry
        let total = g.reduction * g.oh * g.ow
        let chunks = max(1, (total + 163_839) / 163_840)
        return max(1, (g.oh + chunks - 1) / chunks)
    }

    /// Scratch of `forward`.
    var forwardScratchCount: Int {
        let g = geometry
        let p = g.oh * g.ow
        switch forwardImplementation {
        case .reference: return 0
        case .pointwiseGemm: return sgemmWorkspaceCount(m: g.oc, n: p, k: g.ic)
        case .direct: return Self.directScratchCount(g)
        case .tapPlanes: return tapPlanesScratchCount
        case .winograd, .winograd8x8: return winogradScratchCount
        case .shiftedPlanes: return shiftedForwardScratchCount
        case .im2colGemmPerSample:
            return _packedACount(m: g.oc, n: p, k: g.reduction) + 16 + g.reduction * p
                + sgemmWorkspaceCount(m: g.oc, n: p, k: g.reduction) + 64
        case .im2colGemm:
            let n = groupSize * p
            return g.reduction * n + g.oc * n + sgemmWorkspaceCount(m: g.oc, n: n, k: g.reduction) + 32
        }
    }

    /// Scratch of `backwardData`.
    var backwardDataScratchCount: Int {
        let g = geometry
        let p = g.oh * g.ow
        switch backwardDataImplementation {
        case .reference: return 0
        case .pointwiseGemm: return sgemmWorkspaceCount(m: g.ic, n: p, k: g.oc)
        case .stridedPointwise: return 16 + roundUp(g.ic * p, 16) + sgemmWorkspaceCount(m: g.ic, n: p, k: g.oc)
        case .transposedForward: return g.weightCount + 16 + transposedKernel.forwardScratchCount
        case .stridedPhases: return stridedPhasesScratchCount
        case .im2colGemm:
            let n = groupSize * p, k = g.reduction
            return k * n + g.oc * n + sgemmWorkspaceCount(m: k, n: n, k: g.oc) + 32
        }
    }

    /// Scratch of `backwardWeights`.
    var backwardWeightsScratchCount: Int {
        let g = geometry
        switch backwardWeightsImplementation {
        case .reference, .pointwiseGemm: return 0
        case .stridedPointwise: return 16 + g.ic * g.oh * g.ow
        case .weightsTiles: return weightsTilesScratchCount
        case .direct: return directWeightsScratchCount
        case .shiftedPlanes: return shiftedWeightsScratchCount
        case .im2colGemm:
            let n = groupSize * g.oh * g.ow
            return g.reduction * n + g.oc * n
        }
    }

    // MARK: Passes

    /// Forward over `mb` samples (mb <= geometry.mb) at level L. See `convForwardReference`.
    func _forward<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry.with(mb: mb)
        let p = g.oh * g.ow
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * p
        switch forwardImplementation {
        case .reference:
            convForwardReference(g, input: input, weight: weight, bias: bias, output: output)
        case .direct:
            directForward(L.self, mb: mb, input: input, weight: weight, bias: bias, output: output, scratch: scratch)
        case .tapPlanes:
            tapPlanesForward(L.self, mb: mb, input: input, weight: weight, bias: bias, output: output, scratch: scratch)
        case .winograd:
            winogradForward(L.self, mb: mb, input: input, weight: weight, bias: bias, output: output, scratch: scratch)
        case .winograd8x8:
            winogradForward(L.self, mb: mb, input: input, weight: weight, bias: bias, output: output, scratch: scratch, planes8x8: true)
        case .shiftedPlanes:
            shiftedForward(L.self, mb: mb, input: input, weight: weight, bias: bias, output: output, scratch: scratch)
        case .pointwiseGemm:
            for s in 0..<mb {
                let out = output + s * outSize
                if let bias { for o in 0..<g.oc { (out + o * p).update(repeating: bias[o], count: p) } }
                _sgemm(L.self, shape: nil, transA: false, transB: false, m: g.oc, n: p, k: g.ic, alpha: 1, a: weight, lda: g.ic,
                      b: input + s * inSize, ldb: p, beta: bias == nil ? 0 : 1, c: out, ldc: p, workspace: scratch)
            }
        case .im2colGemmPerSample:
            // One sample per GEMM, written straight into the output (bias preloaded, beta 1): no
            // copy-out pass. Measured on CIFAR-small b128 (1 thread): the grouped GEMM's copy-out
            // was ~10% of the step.
            // The weights are packed once per call, not once per sample. A sample is unfolded in chunks
            // of output rows (`forwardChunkRows`) so the unfolded chunk stays in L2 while the GEMM packs it.
            let k = g.reduction
            let packed = align64(scratch), col = packed + roundUp(_packedACount(m: g.oc, n: p, k: k), 16)
            let ws = col + k * p
            _packWholeA(L.self, m: g.oc, n: p, k: k, a: weight, lda: k, dest: packed)
            let chunk = forwardChunkRows
            for s in 0..<mb {
                let out = output + s * outSize
                if let bias { for o in 0..<g.oc { (out + o * p).update(repeating: bias[o], count: p) } }
                var y0 = 0
                while y0 < g.oh {
                    let y1 = min(g.oh, y0 + chunk), n = (y1 - y0) * g.ow
                    _im2col(L.self, g, input: input + s * inSize, col: col, ld: n, rows: y0..<y1)
                    _sgemmPrepackedA(L.self, m: g.oc, n: n, k: k, packedN: p, packedA: packed, b: col, ldb: n,
                                     beta: bias == nil ? 0 : 1, c: out + y0 * g.ow, ldc: p, workspace: ws)
                    y0 = y1
                }
            }
        case .im2colGemm:
            let k = g.reduction
            var s0 = 0
            while s0 < mb {
                let count = min(groupSize, mb - s0)
                let n = count * p
                let col = scratch, cbuf = scratch + k * n, ws = cbuf + g.oc * n
                for t in 0..<count { _im2col(L.self, g, input: input + (s0 + t) * inSize, col: col + t * p, ld: n, rows: 0..<g.oh) }
                _sgemm(L.self, shape: nil, transA: false, transB: false, m: g.oc, n: n, k: k, alpha: 1, a: weight, lda: k,
                      b: col, ldb: n, beta: 0, c: cbuf, ldc: n, workspace: ws)
                for t in 0..<count {
                    let out = output + (s0 + t) * outSize
                    for o in 0..<g.oc {
                        copyAddingConstant(out + o * p, cbuf + o * n + t * p, bias?[o] ?? 0, p)
                    }
                }
                s0 += count
            }
        }
    }

    /// Input gradient (overwritten) at level L. See `convBackwardDataReference`.
    func _backwardData<L: KernelLevel>(_ level: L.Type, mb: Int, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             inputGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry.with(mb: mb)
        let p = g.oh * g.ow
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * p
        switch backwardDataImplementation {
        case .reference:
            convBackwardDataReference(g, outputGrad: outputGrad, weight: weight, inputGrad: inputGrad)
        case .pointwiseGemm:
            for s in 0..<mb {
                _sgemm(L.self, shape: nil, transA: true, transB: false, m: g.ic, n: p, k: g.oc, alpha: 1, a: weight, lda: g.ic,
                      b: outputGrad + s * outSize, ldb: p, beta: 0, c: inputGrad + s * inSize, ldc: p, workspace: scratch)
            }
        case .stridedPointwise:
            let sub = align64(scratch), ws = sub + roundUp(g.ic * p, 16)
            for s in 0..<mb {
                _sgemm(L.self, shape: nil, transA: true, transB: false, m: g.ic, n: p, k: g.oc, alpha: 1, a: weight, lda: g.ic,
                      b: outputGrad + s * outSize, ldb: p, beta: 0, c: sub, ldc: p, workspace: ws)
                let dx = inputGrad + s * inSize
                dx.update(repeating: 0, count: inSize)
                for c in 0..<g.ic {
                    for y in 0..<g.oh {
                        let src = sub + (c * g.oh + y) * g.ow, dst = dx + (c * g.ih + y * g.sh) * g.iw
                        for x in 0..<g.ow { dst[x * g.sw] = src[x] }
                    }
                }
            }
        case .transposedForward:
            // W'[c][o][i][j] = W[o][c][kh-1-i][kw-1-j], then an ordinary forward.
            let wt = align64(scratch)
            let khw = g.kh * g.kw
            for o in 0..<g.oc {
                for c in 0..<g.ic {
                    let src = weight + (o * g.ic + c) * khw
                    let dst = wt + (c * g.oc + o) * khw
                    for q in 0..<khw { dst[q] = src[khw - 1 - q] }
                }
            }
            transposedKernel._forward(L.self, mb: mb, input: outputGrad, weight: wt, bias: nil, output: inputGrad,
                                     scratch: wt + g.weightCount)
        case .stridedPhases:
            stridedPhasesBackwardData(L.self, mb: mb, outputGrad: outputGrad, weight: weight, inputGrad: inputGrad, scratch: scratch)
        case .im2colGemm:
            let k = g.reduction
            var s0 = 0
            while s0 < mb {
                let count = min(groupSize, mb - s0)
                let n = count * p
                let col = scratch, dbuf = scratch + k * n, ws = dbuf + g.oc * n
                for t in 0..<count {
                    for o in 0..<g.oc { copyFloats(dbuf + o * n + t * p, outputGrad + (s0 + t) * outSize + o * p, p) }
                }
                _sgemm(L.self, shape: nil, transA: true, transB: false, m: k, n: n, k: g.oc, alpha: 1, a: weight, lda: k,
                      b: dbuf, ldb: n, beta: 0, c: col, ldc: n, workspace: ws)
                for t in 0..<count { _col2im(L.self, g, col: col + t * p, ld: n, inputGrad: inputGrad + (s0 + t) * inSize) }
                s0 += count
            }
        }
    }

    /// Adds weight and bias gradients at level L. See `convBackwardWeightsReference`.
    func _backwardWeights<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?,
                                scratch: UnsafeMutablePointer<Float>) {
        let g = geometry.with(mb: mb)
        let p = g.oh * g.ow
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * p
        switch backwardWeightsImplementation {
        case .reference:
            convBackwardWeightsReference(g, input: input, outputGrad: outputGrad, weightGrad: weightGrad, biasGrad: biasGrad)
            return
        case .pointwiseGemm:
            for s in 0..<mb {
                _sgemmDotNT(L.self, m: g.oc, n: g.ic, k: p, a: outputGrad + s * outSize, lda: p, b: input + s * inSize, ldb: p,
                           c: weightGrad, ldc: g.ic)
            }
        case .stridedPointwise:
            // The subsampled input is the one tap plane of a 1x1 kernel (all of it inside the input).
            let sub = align64(scratch)
            for s in 0..<mb {
                fillTapPlanes(L.self, g, input: input + s * inSize, planes: sub)
                _sgemmDotNT(L.self, m: g.oc, n: g.ic, k: p, a: outputGrad + s * outSize, lda: p, b: sub, ldb: p,
                           c: weightGrad, ldc: g.ic)
            }
        case .weightsTiles:
            tilesBackwardWeights(L.self, mb: mb, input: input, outputGrad: outputGrad, weightGrad: weightGrad, scratch: scratch)
        case .shiftedPlanes:
            shiftedBackwardWeights(L.self, mb: mb, input: input, outputGrad: outputGrad, weightGrad: weightGrad, scratch: scratch)
        case .direct:
            directBackwardWeights(L.self, mb: mb, input: input, outputGrad: outputGrad, weightGrad: weightGrad, scratch: scratch)
        case .im2colGemm:
            let k = g.reduction
            var s0 = 0
            while s0 < mb {
                let count = min(groupSize, mb - s0)
                let n = count * p
                let col = scratch, dbuf = scratch + k * n
                for t in 0..<count {
                    _im2col(L.self, g, input: input + (s0 + t) * inSize, col: col + t * p, ld: n, rows: 0..<g.oh)
                    for o in 0..<g.oc { copyFloats(dbuf + o * n + t * p, outputGrad + (s0 + t) * outSize + o * p, p) }
                }
                _sgemmDotNT(L.self, m: g.oc, n: k, k: n, a: dbuf, lda: n, b: col, ldb: n, c: weightGrad, ldc: k)
                s0 += count
            }
        }
        if let biasGrad { addRowSums(outputGrad, rows: g.oc, count: p, samples: mb, stride: outSize, into: biasGrad) }
    }
}

/// biasGrad[o] += sum over samples and pixels of rows[s][o][0..<count], per row across all samples
/// (deterministic, the same on every level): four 16-lane partial sums (vector v of a sample's row goes
/// to sum v % 4; one chain of vector adds was latency-bound: a fifth of CIFAR 3->32 backward weights),
/// then (s0 + s1) + (s2 + s3), a fixed-order lane sum, plus the scalar tail.
@inline(__always)
func addRowSums(_ base: UnsafePointer<Float>, rows: Int, count: Int, samples: Int, stride: Int,
                into sums: UnsafeMutablePointer<Float>) {
    typealias V = SIMD16<Float>
    for o in 0..<rows {
        var a0 = V(), a1 = V(), a2 = V(), a3 = V()
        var tail: Float = 0
        for s in 0..<samples {
            let row = base + s * stride + o * count
            let r = UnsafeRawPointer(row)
            var q = 0
            while q + 64 <= count {
                a0 += r.loadUnaligned(fromByteOffset: q * 4, as: V.self)
                a1 += r.loadUnaligned(fromByteOffset: q * 4 + 64, as: V.self)
                a2 += r.loadUnaligned(fromByteOffset: q * 4 + 128, as: V.self)
                a3 += r.loadUnaligned(fromByteOffset: q * 4 + 192, as: V.self)
                q += 64
            }
            if q + 16 <= count { a0 += r.loadUnaligned(fromByteOffset: q * 4, as: V.self); q += 16 }
            if q + 16 <= count { a1 += r.loadUnaligned(fromByteOffset: q * 4, as: V.self); q += 16 }
            if q + 16 <= count { a2 += r.loadUnaligned(fromByteOffset: q * 4, as: V.self); q += 16 }
            while q < count { tail += row[q]; q += 1 }
        }
        sums[o] += _laneSum((a0 + a1) + (a2 + a3)) + tail
    }
}

/// dst[i] = src[i] + constant.
@inline(__always)
func copyAddingConstant(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ constant: Float, _ count: Int) {
    let v = SIMD16<Float>(repeating: constant)
    let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
    var i = 0
    while i + 16 <= count {
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) + v, toByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    if i == count { return }
    // Tails as overlapping vectors (dst and src do not overlap, so overlapped values are rewritten equal).
    if count >= 16 {
        let t = (count - 16) * 4
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: t, as: SIMD16<Float>.self) + v, toByteOffset: t, as: SIMD16<Float>.self)
        return
    }
    if count >= 8 {
        let t = (count - 8) * 4, v8 = SIMD8<Float>(repeating: constant)
        let head = s.loadUnaligned(as: SIMD8<Float>.self) + v8, tail = s.loadUnaligned(fromByteOffset: t, as: SIMD8<Float>.self) + v8
        d.storeBytes(of: head, as: SIMD8<Float>.self); d.storeBytes(of: tail, toByteOffset: t, as: SIMD8<Float>.self)
        return
    }
    while i < count { dst[i] = src[i] + constant; i += 1 }
}

/// dst[i] += src[i].
@inline(__always)
func addFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
    var i = 0
    while i + 16 <= count {
        let v = d.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self) + s.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self)
        d.storeBytes(of: v, toByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    while i < count { dst[i] += src[i]; i += 1 }
}

/// The valid output columns [lo, hi) of kernel column j: 0 <= x*sw - pw + j < iw.
@inline(__always)
func validColumns(_ g: ConvGeometry, _ j: Int, _ ow: Int) -> (Int, Int) {
    // x >= ceil((pw - j) / sw), x <= floor((iw - 1 + pw - j) / sw)
    let loNum = g.pw - j
    let lo = loNum <= 0 ? 0 : (loNum + g.sw - 1) / g.sw
    let hiNum = g.iw - 1 + g.pw - j
    let hi = hiNum < 0 ? 0 : min(ow, hiNum / g.sw + 1)
    return (min(lo, hi), hi)
}

/// col[(c*kh + i)*kw + j][y*ow + x] = in[c][y*sh-ph+i][x*sw-pw+j] (0 outside), one sample; row r of col
/// starts at col + r * ld (ld >= oh*ow lets several samples share one wide col matrix).
/// `im2col` of the output rows `rows` only: col[r][(y - rows.lowerBound)*ow + x].
func _im2col<L: KernelLevel>(_ level: L.Type, _ g: ConvGeometry, input: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>,
                             ld: Int, rows: Range<Int>) {
    let ow = g.ow
    let (r0, r1) = (rows.lowerBound, rows.upperBound)
    // "Same" width at stride 1 (ow == iw): source and destination rows line up, so the whole valid
    // band of a tap is one long shifted copy; only the <= pw wrapped columns per row are then zeroed.
    let bandCopy = g.sw == 1 && g.sh == 1 && ow == g.iw
    var row = 0
    for c in 0..<g.ic {
        let plane = input + c * g.ih * g.iw
        for i in 0..<g.kh {
            for j in 0..<g.kw {
                let dst = col + row * ld
                let (lo, hi) = validColumns(g, j, ow)
                if bandCopy {
                    let y0 = min(r1, max(r0, g.ph - i)), y1 = max(y0, min(r1, g.ih + g.ph - i))
                    if y0 > r0 { dst.update(repeating: 0, count: (y0 - r0) * ow) }
                    if y1 < r1 { (dst + (y1 - r0) * ow).update(repeating: 0, count: (r1 - y1) * ow) }
                    if y1 > y0 && hi > lo {
                        let first = y0 * ow + lo, last = (y1 - 1) * ow + hi
                        let shift = (i - g.ph) * g.iw + (j - g.pw)
                        copyFloats(dst + first - r0 * ow, plane + first + shift, last - first)
                        for y in y0..<y1 {
                            let d = dst + (y - r0) * ow
                            for x in 0..<lo { d[x] = 0 }
                            for x in hi..<ow { d[x] = 0 }
                        }
                    } else if y1 > y0 {
                        (dst + (y0 - r0) * ow).update(repeating: 0, count: (y1 - y0) * ow)
                    }
                    row += 1
                    continue
                }
                for y in r0..<r1 {
                    let iy = y * g.sh - g.ph + i
                    let d = dst + (y - r0) * ow
                    if iy < 0 || iy >= g.ih || lo >= hi { d.update(repeating: 0, count: ow); continue }
                    let src = plane + iy * g.iw - g.pw + j
                    if lo > 0 { d.update(repeating: 0, count: lo) }
                    if g.sw == 1 {
                        copyFloats(d + lo, src + lo, hi - lo)
                    } else {
                        for x in lo..<hi { d[x] = src[x * g.sw] }
                    }
                    if hi < ow { (d + hi).update(repeating: 0, count: ow - hi) }
                }
                row += 1
            }
        }
    }
}

/// Inverse scatter of `im2col`: inputGrad (overwritten) = sum of col entries mapping to each pixel.
func _col2im<L: KernelLevel>(_ level: L.Type, _ g: ConvGeometry, col: UnsafePointer<Float>, ld: Int, inputGrad: UnsafeMutablePointer<Float>) {
    let (oh, ow) = (g.oh, g.ow)
    inputGrad.update(repeating: 0, count: g.ic * g.ih * g.iw)
    var row = 0
    for c in 0..<g.ic {
        let plane = inputGrad + c * g.ih * g.iw
        for i in 0..<g.kh {
            for j in 0..<g.kw {
                let src = col + row * ld
                let (lo, hi) = validColumns(g, j, ow)
                for y in 0..<oh {
                    let iy = y * g.sh - g.ph + i
                    if iy < 0 || iy >= g.ih || lo >= hi { continue }
                    let dst = plane + iy * g.iw - g.pw + j
                    let s = src + y * ow
                    if g.sw == 1 {
                        addFloats(dst + lo, s + lo, hi - lo)
                    } else {
                        for x in lo..<hi { dst[x * g.sw] += s[x] }
                    }
                }
                row += 1
            }
        }
    }
}
