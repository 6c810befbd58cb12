// Shifted planes (the `shiftedPlanes` forward and backward-weights entries): for stride 1 and narrow
// output rows that are not whole vectors (LeNet conv2: 10 wide), each input plane is copied kw times,
// copy j holding the padded plane's columns j ..< j + ow: shifted[c][j][Y][x] = pad[c][Y][x + j], a
// plane of hp rows of exactly ow floats. Tap (c, i, j) of output pixel q = y*ow + x then reads
// shifted[c][j][i*ow + q]: the output pixels of a sample, in the output's own dense layout, are
// contiguous vectors of every tap's view. No column is computed and dropped (the padded-width layout
// of DirectConvolution.swift computes oh x wp: 140 pixels for LeNet conv2's 100, 9 vectors against 7),
// and the forward's vectors are stored straight into the output (the last one shifted back to end at
// oh*ow, rewriting equal values), so there is no copy-out either. The price is kw copies of the input.
//
// Forward: the register tiles of the direct forward (`ConvTile`), the same chain per output (bias or 0,
// then p = (c, i, j) in increasing order), so the same bits as `direct`.
// Backward weights: the 16-lane dot products of the direct backward weights (`DotTile.runStrided`) over
// roundUp(oh*ow, 16) positions per sample instead of roundUp(oh*wp, 16) (LeNet conv2: 112 against 144;
// LeNet conv2 now runs `weightsTiles`, 5x5 kernels with oc a multiple of 16);
// the lanes take other positions than in `direct`, so other (deterministic) bits.

extension ConvKernel {
    /// Floats between shifted planes: hp rows of ow, and a zero tail that the backward weights' last
    /// vector reads (up to roundUp(oh*ow, 16) - oh*ow floats past the plane).
    @inline(__always)
    static func shiftedPlaneStride(_ g: ConvGeometry) -> Int { roundUp((g.ih + 2 * g.ph) * g.ow + 16, 16) }

    /// Whether the shifted layout saves at least 8 multiply-add vectors (16 floats) per vector of rows it
    /// copies: `savedVectors` fewer output vectors (each costing oc x reduction multiply-adds), against the
    /// `copiedRows` rows of ow floats it copies per sample. LeNet conv2 forward: 2 x 16 x 150 = 4800
    /// against 8 x 420; LeNet conv1 forward (rows layout, 56 vectors against 49): 1050 against 8 x 160.
    static func shiftedPlanesPay(_ g: ConvGeometry, savedVectors: Int, copiedRows: Int) -> Bool {
        savedVectors * g.oc * g.reduction >= 8 * copiedRows * ((g.ow + 15) / 16)
    }

    /// Stride 1, tap offsets within Int32, at least one whole vector of output pixels.
    static func shiftedPlanesFit(_ g: ConvGeometry) -> Bool {
        g.sh == 1 && g.sw == 1 && g.oh * g.ow >= 16 && g.ic * g.kw * shiftedPlaneStride(g) < Int(Int32.max)
    }

    /// The `shiftedPlanes` forward entry's predicate: where the `direct` forward would run, when its
    /// layout (at 16 floats a vector) has enough more vectors than the oh*ow/16 of the shifted one.
    static func forwardShiftedPlanes(_ g: ConvGeometry) -> Bool {
        guard shiftedPlanesFit(g) && Forward.direct.isApplicable(g) else { return false }
        let direct = directRowVectors(g, width: 16).map { $0 * g.oh } ?? (g.oh * directPaddedWidth(g) + 15) / 16
        let shifted = (g.oh * g.ow + 15) / 16
        return shiftedPlanesPay(g, savedVectors: direct - shifted, copiedRows: g.ic * g.kw * (g.ih + 2 * g.ph))
    }

    /// The `shiftedPlanes` backward-weights entry's predicate: where the `direct` backward weights would
    /// run, when its padded-width length has enough more vectors than the shifted one; the rows copied
    /// beyond what `direct` copies are the kw - 1 extra copies of each plane.
    static func backwardWeightsShiftedPlanes(_ g: ConvGeometry) -> Bool {
        guard shiftedPlanesFit(g) && backwardWeightsDirect(g) else { return false }
        let saved = (directWeightsLength(g) - roundUp(g.oh * g.ow, 16)) / 16
        return shiftedPlanesPay(g, savedVectors: saved, copiedRows: g.ic * (g.kw - 1) * (g.ih + 2 * g.ph))
    }

    /// Writes one sample's shifted planes (ic x kw planes of `shiftedPlaneStride` floats) at `dest`. Only
    /// the columns that come from the input are written: the padding and the tails are zeroed once per call
    /// (`zero`), and stay zero.
    @inline(__always)
    static func copyShiftedPlanes(_ g: ConvGeometry, input: UnsafePointer<Float>, dest: UnsafeMutablePointer<Float>) {
        let stride = shiftedPlaneStride(g)
        for c in 0..<g.ic {
            for j in 0..<g.kw {
                // Columns x with 0 <= x + j - pw < iw.
                let lo = max(0, g.pw - j), hi = min(g.ow, g.iw + g.pw - j)
                guard hi > lo else { continue }
                let plane = dest + (c * g.kw + j) * stride
                for y in 0..<g.ih {
                    copyFloats(plane + (y + g.ph) * g.ow + lo, input + (c * g.ih + y) * g.iw + lo + j - g.pw, hi - lo)
                }
            }
        }
    }

    /// Offset of tap r = (c, i, j) in a sample's shifted planes.
    @inline(__always)
    static func shiftedTapOffset(_ g: ConvGeometry, _ r: Int) -> Int {
        let taps = g.kh * g.kw
        let c = r / taps, i = (r % taps) / g.kw, j = r % g.kw
        return (c * g.kw + j) * shiftedPlaneStride(g) + i * g.ow
    }

    /// Samples whose shifted planes one sweep of the forward's tiles covers: the tiles then run over all
    /// their vectors (a table across samples), so few tiles are partial (LeNet conv2: 7 vectors a sample
    /// ran as 8x3 + 8x3 + 8x1 tiles; over 8 samples, 18 8x3 tiles and one 8x2). At most ~256 KiB of planes.
    var shiftedForwardGroup: Int {
        let g = geometry
        return max(1, min(max(g.mb, 1), 65_536 / (g.ic * g.kw * Self.shiftedPlaneStride(g))))
    }

    /// Scratch floats of `shiftedForward` (any mb, any level): a group's shifted planes, then `PlaneTileScratch`.
    var shiftedForwardScratchCount: Int {
        let g = geometry
        return 16 + shiftedForwardGroup * g.ic * g.kw * Self.shiftedPlaneStride(g) + PlaneTileScratch.count(g, group: shiftedForwardGroup)
    }

    func shiftedForward<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                        bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                        scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let group = shiftedForwardGroup
        let (mr, nv) = Self.convTileShape(L.self, oc: g.oc, vectors: min(group, mb) * ((g.oh * g.ow + L.width - 1) / L.width))
        let planesCount = g.ic * g.kw * Self.shiftedPlaneStride(g)
        let planes = align64(scratch)
        let tiles = PlaneTileScratch(L.self, g, after: planes + group * planesCount, weight: weight, mr: mr, group: group,
                                     sampleStride: planesCount)
        for r in 0..<g.reduction { tiles.offsets[r] = Int32(Self.shiftedTapOffset(g, r)) }
        if g.ph > 0 || g.pw > 0 { planes.update(repeating: 0, count: group * planesCount) }
        let inSize = g.ic * g.ih * g.iw
        tiles.sweep(L.self, g, mb: mb, group: group, mr: mr, nv: nv, planes: planes, bias: bias, output: output) { slot, sample in
            Self.copyShiftedPlanes(g, input: input + sample * inSize, dest: planes + slot * planesCount)
        }
    }

    /// Samples handled per pass of `shiftedBackwardWeights`: as many as keep their shifted planes and
    /// output gradients within ~768 KiB (as `directWeightsGroup`). Fixed by the geometry (its mb).
    var shiftedWeightsGroup: Int {
        let g = geometry
        let perSample = g.ic * g.kw * Self.shiftedPlaneStride(g) + g.oc * roundUp(g.oh * g.ow, 16)
        return max(1, min(max(g.mb, 1), 196_608 / perSample))
    }

    var shiftedWeightsScratchCount: Int {
        let g = geometry
        let perSample = g.ic * g.kw * Self.shiftedPlaneStride(g) + g.oc * roundUp(g.oh * g.ow, 16)
        return shiftedWeightsGroup * perSample + 32 + 2 * AllLevels.maxDotColumns
    }

    func shiftedBackwardWeights<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                                weightGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let p = g.oh * g.ow
        let length = roundUp(p, 16)
        let group = shiftedWeightsGroup
        let inStride = g.ic * g.kw * Self.shiftedPlaneStride(g), gradStride = g.oc * length
        let planes = align64(scratch)
        let grads = planes + group * inStride
        // Padding, the planes' tails and the gradients' tails (positions >= oh*ow) stay zero; without
        // padding only the tails are zeroed (every
        // other float is rewritten per group).
        if g.ph > 0 || g.pw > 0 {
            planes.update(repeating: 0, count: group * (inStride + gradStride))
        } else {
            let stride = Self.shiftedPlaneStride(g), used = g.ih * g.ow
            for plane in 0..<(group * g.ic * g.kw) { (planes + plane * stride + used).update(repeating: 0, count: stride - used) }
            for row in 0..<(group * g.oc) { (grads + row * length + p).update(repeating: 0, count: length - p) }
        }
        let tapOffsets = UnsafeMutableRawPointer(grads + group * gradStride).assumingMemoryBound(to: Int.self)
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * p
        var s0 = 0
        while s0 < mb {
            let count = min(group, mb - s0)
            for t in 0..<count {
                Self.copyShiftedPlanes(g, input: input + (s0 + t) * inSize, dest: planes + t * inStride)
                let dy = outputGrad + (s0 + t) * outSize
                for o in 0..<g.oc { copyFloats(grads + t * gradStride + o * length, dy + o * p, p) }
            }
            _weightsDotTiles(L.self, oc: g.oc, reduction: g.reduction, samples: count, length: length, grads: grads,
                             gradStride: gradStride, planes: planes, planeStride: inStride, tapOffsets: tapOffsets,
                             weightGrad: weightGrad) { r in Self.shiftedTapOffset(g, r) }
            s0 += count
        }
    }
}
