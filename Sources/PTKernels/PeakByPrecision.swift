// The single-core peak as a function of the arithmetic precision: the yardstick `ptrain bench train`
// holds the whole step against.

/// One core's peak at `precision` and the instruction-set level in use, measured on the calling thread
/// (thread CPU seconds, the best ~1 ms slice over about `seconds`), with what was measured:
/// fp32 is the level's FMA loop (`measureFMAPeak`, as `bench kernels` reports it); bf16 the bf16 unit's
/// `vdpbf16ps` loop (`measureBF16Peak`). A precision the
/// level has no peak loop for returns nil; callers then hold the step against the fp32 peak and say so.
public func peakGFLOPS(precision: Precision, seconds: Double = 0.2) -> (gflops: Double, loop: String)? {
    switch precision {
    case .fp32:
        let level = InstructionSet.current
        return (measureFMAPeak(seconds: seconds),
                "fp32 FMA, \(level.name), \(level.vectorWidth) floats per vector, \(InstructionSet.currentKernels.peakChains) chains")
    case .bf16:
        // The bf16 unit's vdpbf16ps loop; nil without the unit.
        guard Precision.bf16.unavailableReason == nil, let g = measureBF16Peak(seconds: seconds) else { return nil }
        return (g, "bf16 vdpbf16ps (AVX512_BF16), fp32 accumulation")
    }
}
