// bf16 training's kernels: the precision a workspace runs at, the bf16 unit chosen at start-up, and
// the entry points into CPTKernelsBF16 (C: Swift cannot emit vdpbf16ps). Reference twins in
// BF16Reference.swift state the exact rounding; docs/ARCHITECTURE.md ("bf16") the design.
import CPTKernelsBF16
import CPTSupport
import PTKernelsCore

/// The precision of a workspace's convolution and dense products. Everything else (master weights,
/// optimizer state, batch-norm statistics, softmax / loss, every reduction across shards and ranks)
/// is fp32 at both.
public enum Precision: String, Sendable, CaseIterable, Codable {
    /// fp32 operands, fp32 accumulation.
    case fp32
    /// Operands rounded fp32 -> bf16 (nearest even), products accumulated in fp32 (AVX512_BF16).
    case bf16

    /// nil when this process can run at this precision; else the one-line reason it cannot.
    public var unavailableReason: String? {
        switch self {
        case .fp32: return nil
        case .bf16:
            if InstructionSet.bf16Unit != nil { return nil }
            if InstructionSet.current != .avx512 && InstructionSet.cpuFeatures.contains("avx512bf16") {
                return "bf16 needs the avx512 level with AVX512_BF16, but the \(InstructionSet.current.name) level is in use (PTRAIN_ISA); unset PTRAIN_ISA or use precision fp32"
            }
            return "bf16 needs a CPU with AVX512_BF16 (vdpbf16ps: AMD Zen 4 and later, Intel Cooper Lake, Sapphire Rapids and later); this CPU lacks it: use precision fp32"
        }
    }
}

/// The instructions bf16 products run on, chosen at start-up on top of the instruction-set level
/// (CPTSupport `pt_bf16_unit`: the best the CPU has, or PTRAIN_BF16_UNIT). Both units run the same
/// entry points on the same operands; they differ in the order of the fp32 adds (see
/// BF16Reference.swift), so a run's bits depend on its unit, and each unit's on nothing else.
public enum BF16Unit: String, Sendable {
    /// AVX-512 `vdpbf16ps` (zmm, 16 fp32 lanes x 2 products) on the avx512 level.
    case avx512bf16
    /// AMX tiles, `tdpbf16ps` (16 x 16 fp32 outputs x 32 products; Intel Sapphire Rapids and later).
    case amx

    init?(code: Int32) {
        switch code {
        case 1: self = .avx512bf16
        case 2: self = .amx
        default: return nil
        }
    }
}

extension InstructionSet {
    /// The bf16 unit of this process (nil: the level in use has none, so bf16 is unavailable).
    public static let bf16Unit: BF16Unit? = BF16Unit(code: pt_bf16_unit())

    /// The best bf16 unit for a level on a CPU with `available` features (what start-up would choose
    /// without PTRAIN_BF16_UNIT).
    public static func bf16Unit(level: InstructionSet, available: [String]) -> BF16Unit? {
        BF16Unit(code: pt_bf16_unit_for(Int32(level.rawValue), available.joined(separator: ",")))
    }
}

@inline(__always) func requireBF16() {
    precondition(InstructionSet.bf16Unit != nil, "bf16 kernel called without AVX512_BF16")
}

/// Rounds `count` floats to bf16 (nearest even; the bits of `vcvtneps2bf16`, see `bf16RoundReference`).
public func bf16Round(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<UInt16>, count: Int) {
    requireBF16()
    pt_bf16_round(src, dst, count)
}

extension ConvGeometry {
    var bf16: pt_bf16_conv_geometry {
        pt_bf16_conv_geometry(ic: Int32(ic), oc: Int32(oc), ih: Int32(ih), iw: Int32(iw), kh: Int32(kh), kw: Int32(kw),
                              sh: Int32(sh), sw: Int32(sw), ph: Int32(ph), pw: Int32(pw), oh: Int32(oh), ow: Int32(ow))
    }
}

/// Which passes of a convolution run in bf16 in a bf16 workspace; the others stay fp32. Chosen from
/// the geometry alone (never by timing), so the bits depend only on the model.
public struct BF16Passes: Sendable, Equatable {
    public var forward: Bool, backwardData: Bool, backwardWeights: Bool
    public init(forward: Bool, backwardData: Bool, backwardWeights: Bool) {
        self.forward = forward; self.backwardData = backwardData; self.backwardWeights = backwardWeights
    }
}

extension ConvKernel {
    /// The passes that run in bf16: those whose GEMM has at least 16 rows (two 8-row register tiles):
    /// forward and backward weights need oc >= 16, backward data ic >= 16, or the planar form
    /// (`bf16BackwardDataIsPlanar`). With fewer rows most of the 8 x 32 tile multiplies padding and the
    /// fp32 direct kernels are faster (AMD Zen 4, one thread, `ptrain bench kernels`, GFLOP/s fp32 vs
    /// bf16: LeNet conv1 (1 -> 6) backward data 51.8 vs 10.1, backward weights 65.1 vs 27.0). Layers with
    /// few input channels have kernels of their own in bf16 (Zen 4, `bench kernels`, LeNet conv2 6 -> 16,
    /// GFLOP/s counting useful products): the planar input gradient 96-108 against fp32's 53-68, and with
    /// the output channels on the vector lanes (`pt_bf16_conv_weights_on_lanes`, and the forward for
    /// output rows 8-12 wide) backward weights 160-189 against fp32 `weightsTiles`' 90 and forward 181-188
    /// against the GEMM's 92. Backward weights of a 5x5 layer that the fp32 `weightsTiles` entry takes
    /// stay fp32 where the lanes kernel does not apply (the AMX unit): that tile beat the bf16 GEMM there
    /// (92-95 against 87.6 GFLOP/s for LeNet conv2).
    public var bf16Passes: BF16Passes {
        let fp32WeightsTile = backwardWeightsImplementation == .weightsTiles && geometry.kw == 5 && !bf16WeightsOnLanes
        return BF16Passes(forward: geometry.oc >= 16, backwardData: geometry.ic >= 16 || bf16BackwardDataPlanar,
                          backwardWeights: geometry.oc >= 16 && !fp32WeightsTile)
    }

    /// Whether the bf16 kernels take this input gradient in the planar form (asked of them; false
    /// without the bf16 unit, whose code must not run). `bf16BackwardDataIsPlanar` states the same rule
    /// for the reference; `BF16Tests` checks that the two agree.
    public var bf16BackwardDataPlanar: Bool {
        InstructionSet.bf16Unit != nil && pt_bf16_conv_backward_data_planar(geometry.bf16) != 0
    }

    /// Whether the bf16 kernels run this weight gradient with the output channels on the vector lanes
    /// (asked of them; false without the bf16 unit). Same chains as the GEMM, so the reference has no rule of its own.
    public var bf16WeightsOnLanes: Bool {
        InstructionSet.bf16Unit != nil && pt_bf16_conv_weights_on_lanes(geometry.bf16) != 0
    }

    /// Floats of scratch the bf16 passes need (any mb <= geometry.mb).
    public var bf16ScratchCount: Int { (pt_bf16_conv_scratch_bytes(geometry.bf16, Int32(geometry.mb)) + 3) / 4 + 16 }

    /// Scratch floats for the passes at `precision` (the larger of the two when any pass runs in bf16).
    public func scratchCount(precision: Precision) -> Int {
        let p = bf16Passes
        return precision == .bf16 && (p.forward || p.backwardData || p.backwardWeights)
            ? max(scratchCount, bf16ScratchCount) : scratchCount
    }

    /// Floats of this convolution's prepared weights (its bf16 weights packed for the forward and the
    /// input gradient, made once while the weights stay the same); 0 where the unit has no prepared path (tiles).
    public var bf16PreparedCount: Int {
        requireBF16()
        let bytes = pt_bf16_conv_prepared_bytes(geometry.bf16)
        return bytes == 0 ? 0 : (bytes + 3) / 4 + 16
    }

    /// Fills `prepared` (`bf16PreparedCount` floats) from the weights; `scratch`: `bf16ScratchCount` floats.
    public func bf16Prepare(weight: UnsafePointer<Float>, prepared: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        pt_bf16_conv_prepare(geometry.bf16, weight, prepared, scratch)
    }

    /// `bf16Forward` from the prepared weights: the same bits.
    public func bf16Forward(mb: Int, input: UnsafePointer<Float>, prepared: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        pt_bf16_conv_forward_prepared(geometry.bf16, Int32(mb), input, prepared, bias, output, scratch)
    }

    /// `bf16BackwardData` from the prepared weights: the same bits.
    public func bf16BackwardData(mb: Int, outputGrad: UnsafePointer<Float>, prepared: UnsafePointer<Float>,
                                 inputGrad: UnsafeMutablePointer<Float>, add: Bool = false, scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        precondition(!add || bf16BackwardDataAdds, "bf16 input gradient: this geometry cannot add into inputGrad")
        pt_bf16_conv_backward_data_prepared(geometry.bf16, Int32(mb), outputGrad, prepared, inputGrad, add ? 1 : 0, scratch)
    }

    /// Whether `bf16BackwardData(add: true)` is available for this geometry (the transposed forward over
    /// channel pairs: stride 1, oc even, vector unit; the col2im in registers of the strided layers with
    /// rows of at most 32 input and 16 output pixels; asked of the kernels, false without the bf16 unit).
    /// With it a layer whose input feeds a branch adds its input gradient in place instead of writing a
    /// spare buffer that is then added (`Layer.addsInputGradient`).
    public var bf16BackwardDataAdds: Bool {
        InstructionSet.bf16Unit != nil && pt_bf16_conv_backward_data_adds(geometry.bf16) != 0
    }

    /// bf16 forward: see `bf16ConvForwardReference` (same bits).
    public func bf16Forward(mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        pt_bf16_conv_forward(geometry.bf16, Int32(mb), input, weight, bias, output, scratch)
    }

    /// bf16 input gradient (overwritten): see `bf16ConvBackwardDataReference` (same bits). With `add`
    /// (only where `bf16BackwardDataAdds`), inputGrad += that gradient, element by element after its
    /// chain: the bits of writing it elsewhere and adding it in.
    public func bf16BackwardData(mb: Int, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                 inputGrad: UnsafeMutablePointer<Float>, add: Bool = false, scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        precondition(!add || bf16BackwardDataAdds, "bf16 input gradient: this geometry cannot add into inputGrad")
        pt_bf16_conv_backward_data(geometry.bf16, Int32(mb), outputGrad, weight, inputGrad, add ? 1 : 0, scratch)
    }

    /// `bf16Forward` (from `prepared` when given, else from `weight`) with the ReLU after the layer folded in: each
    /// sample's outputs pass through ReLU as soon as they are stored. The bits of `bf16Forward` then `reluForward`.
    public func bf16ForwardReLU(mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, prepared: UnsafePointer<Float>?,
                                bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        pt_bf16_conv_forward_relu(geometry.bf16, Int32(mb), input, weight, prepared.map { UnsafeRawPointer($0) }, bias, output, scratch)
    }

    /// `bf16BackwardData` (overwriting; from `prepared` when given, else from `weight`) with the backward of the ReLU
    /// whose output is this layer's input folded in: inputGrad = gate > 0 ? that gradient : 0, `gate` being the
    /// ReLU's output (laid out as inputGrad). The bits of `bf16BackwardData` then `reluBackward(output: gate, ...)`.
    public func bf16BackwardDataGated(mb: Int, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      prepared: UnsafePointer<Float>?, gate: UnsafePointer<Float>,
                                      inputGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        pt_bf16_conv_backward_data_gated(geometry.bf16, Int32(mb), outputGrad, weight, prepared.map { UnsafeRawPointer($0) }, gate,
                                         inputGrad, scratch)
    }

    /// bf16 weight gradient (added) and fp32 bias gradient (added): see `bf16ConvBackwardWeightsReference`.
    public func bf16BackwardWeights(mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                    weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?,
                                    scratch: UnsafeMutablePointer<Float>) {
        requireBF16()
        pt_bf16_conv_backward_weights(geometry.bf16, Int32(mb), input, outputGrad, weightGrad, biasGrad, scratch)
    }
}

/// Floats of scratch the bf16 dense passes need.
public func bf16DenseScratchCount(batch: Int, inputs: Int, neurons: Int) -> Int {
    (pt_bf16_dense_scratch_bytes(Int32(batch), Int32(inputs), Int32(neurons)) + 3) / 4 + 16
}

/// y[b][o] = bias[o] + x[b] . w[o] in bf16: see `bf16DenseForwardReference`.
public func bf16DenseForward(batch: Int, inputs: Int, neurons: Int, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    requireBF16()
    pt_bf16_dense_forward(Int32(batch), Int32(inputs), Int32(neurons), x, weight, bias, y, scratch)
}

/// dW[o][i] += sum_b dy[b][o] x[b][i] in bf16 (each element's chain starts from dW's value; with `add: false` from 0,
/// dW not read): see `bf16DenseBackwardWeightsReference`.
public func bf16DenseBackwardWeights(batch: Int, inputs: Int, neurons: Int, x: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                     weightGrad: UnsafeMutablePointer<Float>, add: Bool = true, scratch: UnsafeMutablePointer<Float>) {
    requireBF16()
    pt_bf16_dense_backward_weights(Int32(batch), Int32(inputs), Int32(neurons), x, outputGrad, weightGrad, add ? 1 : 0, scratch)
}

/// Floats of a dense layer's deferred weight gradient for shards of up to `batch` samples (the product's operands,
/// packed), or 0 where the unit keeps none (tiles).
public func bf16DenseDeferredCount(batch: Int, inputs: Int, neurons: Int) -> Int {
    requireBF16()
    return (pt_bf16_dense_deferred_bytes(Int32(batch), Int32(inputs), Int32(neurons)) + 3) / 4
}

/// `bf16DenseBackwardWeights` (stored, `add: false`) left to the reduction over the shards: writes the product's
/// operands into `deferred` (`bf16DenseDeferredCount` floats, 64-byte aligned) instead of the product.
public func bf16DenseDeferWeights(batch: Int, inputs: Int, neurons: Int, x: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                  deferred: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    requireBF16()
    pt_bf16_dense_defer_weights(Int32(batch), Int32(inputs), Int32(neurons), x, outputGrad, deferred, scratch)
}

/// weightGrad[range] (flat indices into the neurons x inputs gradient) = `pairwiseSumInPlace`'s tree over the shards'
/// stored weight gradients (`bf16DenseBackwardWeights`, `add: false`), computed from their deferred operands at
/// leaves[s] + offset (written by `bf16DenseDeferWeights`, or all zero for a shard without samples): the same bits.
public func bf16DenseReduceDeferred(_ leaves: UnsafePointer<UnsafeMutablePointer<Float>>, n: Int, offset: Int, inputs: Int,
                                    neurons: Int, range: Range<Int>, weightGrad: UnsafeMutablePointer<Float>) {
    requireBF16()
    leaves.withMemoryRebound(to: UnsafeMutablePointer<Float>?.self, capacity: n) {
        pt_bf16_dense_reduce_deferred(Int32(n), $0, offset, Int32(inputs), Int32(neurons), range.lowerBound, range.upperBound,
                                      weightGrad)
    }
}

/// dx[b][i] = sum_o dy[b][o] w[o][i] in bf16 (overwritten): see `bf16DenseBackwardDataReference`.
public func bf16DenseBackwardData(batch: Int, inputs: Int, neurons: Int, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                  inputGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    requireBF16()
    pt_bf16_dense_backward_data(Int32(batch), Int32(inputs), Int32(neurons), outputGrad, weight, inputGrad, scratch)
}

/// Floats of a dense layer's prepared weights (its bf16 weights packed for the forward and the input
/// gradient, made once while the weights stay the same); 0 where the unit has no prepared path (tiles).
public func bf16DensePreparedCount(inputs: Int, neurons: Int) -> Int {
    requireBF16()
    let bytes = pt_bf16_dense_prepared_bytes(Int32(inputs), Int32(neurons))
    return bytes == 0 ? 0 : (bytes + 3) / 4 + 16
}

/// Fills `prepared` (`bf16DensePreparedCount` floats) from the weights; `scratch`: `bf16DenseScratchCount` floats.
public func bf16DensePrepare(inputs: Int, neurons: Int, weight: UnsafePointer<Float>, prepared: UnsafeMutablePointer<Float>,
                             scratch: UnsafeMutablePointer<Float>) {
    requireBF16()
    pt_bf16_dense_prepare(Int32(inputs), Int32(neurons), weight, prepared, scratch)
}

/// `bf16DenseForward` from the prepared weights: the same bits.
public func bf16DenseForward(batch: Int, inputs: Int, neurons: Int, x: UnsafePointer<Float>, prepared: UnsafePointer<Float>,
                             bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
    requireBF16()
    pt_bf16_dense_forward_prepared(Int32(batch), Int32(inputs), Int32(neurons), x, prepared, bias, y, scratch)
}

/// `bf16DenseBackwardData` from the prepared weights: the same bits.
public func bf16DenseBackwardData(batch: Int, inputs: Int, neurons: Int, outputGrad: UnsafePointer<Float>,
                                  prepared: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>,
                                  scratch: UnsafeMutablePointer<Float>) {
    requireBF16()
    pt_bf16_dense_backward_data_prepared(Int32(batch), Int32(inputs), Int32(neurons), outputGrad, prepared, inputGrad, scratch)
}

/// GFLOP/s of the bf16 unit's peak loop on the calling thread, timed like `measureFMAPeak`: the best
/// of many ~1 ms slices of thread CPU time. avx512bf16: 24 independent `vdpbf16ps` zmm chains, 64
/// flops each (16 lanes x 2 products x multiply + add); amx: 4 independent `tdpbf16ps` tiles, 16,384
/// flops each (16 x 16 outputs x 32 products x 2). nil without a bf16 unit.
public func measureBF16Peak(seconds: Double = 0.2) -> Double? {
    guard let unit = InstructionSet.bf16Unit else { return nil }
    let loop: (Int) -> Float = unit == .amx ? { pt_bf16_tiles_peak_loop($0) } : { pt_bf16_peak_loop($0) }
    let flopsPerIteration = Double(unit == .amx ? pt_bf16_tiles_peak_flops_per_iteration() : pt_bf16_peak_flops_per_iteration())
    var iterations = 1 << 10
    var sink: Float = 0
    while true {
        let t0 = threadCPUSeconds()
        sink += loop(iterations)
        let dt = threadCPUSeconds() - t0
        if dt > 0.00025 || iterations > 1 << 30 { iterations = max(1 << 8, Int(Double(iterations) * 0.001 / max(dt, 1e-9))); break }
        iterations *= 4
    }
    var best = 0.0, slices = 0
    let start = threadCPUSeconds()
    while slices < 20 || threadCPUSeconds() - start < seconds {
        let t0 = threadCPUSeconds()
        sink += loop(iterations)
        best = max(best, Double(iterations) * flopsPerIteration / (threadCPUSeconds() - t0) / 1e9)
        slices += 1
    }
    _bf16PeakSink = sink
    return best
}

nonisolated(unsafe) var _bf16PeakSink: Float = 0
