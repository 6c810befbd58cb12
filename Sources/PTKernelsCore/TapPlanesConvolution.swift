// Forward convolution on tap planes (the `tapPlanes` forward entry): for 2-D layers whose output rows
// are not whole 16-pixel vectors (ResNet-20's 8x8 stage, 7x7 planes) and for strided layers, where the
// `direct` tiles would waste lanes (or cannot apply) and im2col + GEMM pays for the unfolded matrix,
// the packed B panels and (grouped) a copy-out.
//
// Output pixels are taken in flattened order q = y*ow + x. For each input channel c, kernel column j
// and row phase r (< min(sh, kh)), the tap plane holds
//     T[c][j][r][yy][x] = in[c][yy*sh + r - ph][x*sw + j - pw]   (0 outside the input),
// yy < oh + (kh-1)/sh. Tap (c, i, j) of output (y, x) is then T[c][j][i % sh][y + i/sh][x], which is
// T[c][j][i % sh] + (i/sh)*ow + q: for every tap, W consecutive outputs (across output rows) are one
// contiguous vector load. So the planes are the B operand of the `ConvTile` register tiles with one
// offset per tap, as in the direct forward (DirectConvolution.swift): no unfolded matrix (kw*phases
// copies of the input instead of kh*kw), no packed panel, and the tiles store straight into the output
// with the bias preloaded. A sample is ceil(p / W) vectors, the last one shifted back to end at p (it
// overlaps its neighbour and rewrites equal values); tiles span samples, so a group of samples shares
// one tile sweep (the tile shape's padding is paid once per group, not per sample).
// Each output: bias (or 0), then one chain of fused multiply-adds over p = (c, i, j) in increasing
// order: the same sums as `direct`.

extension ConvKernel {
    /// Row phases of the tap planes: one per kernel row modulo the vertical stride.
    @inline(__always)
    static func tapPlanePhases(_ g: ConvGeometry) -> Int { min(g.sh, g.kh) }

    /// Floats of one tap plane: the output rows and the (kh-1)/sh rows below that taps reach.
    @inline(__always)
    static func tapPlaneSize(_ g: ConvGeometry) -> Int { (g.oh + (g.kh - 1) / g.sh) * g.ow }

    /// Floats between the tap planes of consecutive samples.
    @inline(__always)
    static func tapPlanesSampleStride(_ g: ConvGeometry) -> Int {
        roundUp(g.ic * g.kw * tapPlanePhases(g) * tapPlaneSize(g), 16)
    }

    /// Floats of tap planes kept per group of samples (~384 KiB: with the packed weights, within the 1 MiB L2).
    static let tapPlanesGroupFloats = 98_304

    /// The `tapPlanes` forward entry's predicate: 2-D kernels (1-D layers keep their entries), at least
    /// 16 output pixels a sample (whole vectors at every level, the last one shifted back), and one
    /// sample's tap planes within the group budget (larger planes, e.g. 64 channels of 56x56, stay with
    /// the per-sample GEMM).
    static func tapPlanesApply(_ g: ConvGeometry) -> Bool {
        g.kh > 1 && g.oh * g.ow >= 16 && tapPlanesSampleStride(g) <= tapPlanesGroupFloats
            && g.ic * g.kw * tapPlanePhases(g) * tapPlaneSize(g) < Int(Int32.max)
    }

    /// Samples whose tap planes are filled and swept together.
    var tapPlanesGroup: Int {
        let g = geometry
        return max(1, min(max(g.mb, 1), Self.tapPlanesGroupFloats / Self.tapPlanesSampleStride(g)))
    }

    /// Scratch floats of `tapPlanesForward` (any mb, any level): the group's planes, then `PlaneTileScratch`.
    var tapPlanesScratchCount: Int {
        16 + tapPlanesGroup * Self.tapPlanesSampleStride(geometry) + PlaneTileScratch.count(geometry, group: tapPlanesGroup)
    }

    func tapPlanesForward<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                          bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                          scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let phases = Self.tapPlanePhases(g), planeSize = Self.tapPlaneSize(g)
        let stride = Self.tapPlanesSampleStride(g)
        let group = tapPlanesGroup
        let (mr, nv) = Self.convTileShape(L.self, oc: g.oc, vectors: group * ((g.oh * g.ow + L.width - 1) / L.width))
        let planes = align64(scratch)
        let tiles = PlaneTileScratch(L.self, g, after: planes + group * stride, weight: weight, mr: mr, group: group,
                                     sampleStride: stride)
        var t = 0
        for c in 0..<g.ic {
            for i in 0..<g.kh {
                for j in 0..<g.kw {
                    tiles.offsets[t] = Int32(((c * g.kw + j) * phases + i % g.sh) * planeSize + (i / g.sh) * g.ow)
                    t += 1
                }
            }
        }
        // Zero once: the same positions are outside the input for every sample.
        planes.update(repeating: 0, count: group * stride)
        let inSize = g.ic * g.ih * g.iw
        tiles.sweep(L.self, g, mb: mb, group: group, mr: mr, nv: nv, planes: planes, bias: bias, output: output) { slot, sample in
            fillTapPlanes(L.self, g, input: input + sample * inSize, planes: planes + slot * stride)
        }
    }
}

/// One sample's tap planes (see the top of this file), writing only the positions inside the input
/// (the rest stays zero).
func fillTapPlanes<L: KernelLevel>(_ level: L.Type, _ g: ConvGeometry, input: UnsafePointer<Float>, planes: UnsafeMutablePointer<Float>) {
    let phases = ConvKernel.tapPlanePhases(g), planeSize = ConvKernel.tapPlaneSize(g)
    let rows = planeSize / g.ow
    for c in 0..<g.ic {
        let plane = input + c * g.ih * g.iw
        for j in 0..<g.kw {
            let (lo, hi) = validColumns(g, j, g.ow)
            guard hi > lo else { continue }
            for r in 0..<phases {
                let dst = planes + ((c * g.kw + j) * phases + r) * planeSize
                for yy in 0..<rows {
                    let iy = yy * g.sh + r - g.ph
                    guard iy >= 0 && iy < g.ih else { continue }
                    let src = plane + iy * g.iw + j - g.pw
                    let d = dst + yy * g.ow
                    if g.sw == 1 {
                        copyFloats(d + lo, src + lo, hi - lo)
                        continue
                    }
                    var x = lo
                    if g.sw == 2 && hi - lo >= 8 {
                        // 8 outputs = the even lanes of 16 consecutive inputs, the last 8 shifted back to end
                        // at hi (rewriting equal values), while the 16 stay inside the sample (the last odd
                        // lane may read into the next row). ResNet-20's strided rows are 8 and 16 wide.
                        let available = (g.ic - c) * g.ih * g.iw - iy * g.iw - (j - g.pw)
                        while x < hi {
                            let xs = min(x, hi - 8)
                            guard 2 * xs + 16 <= available else { break }
                            let v = UnsafeRawPointer(src + 2 * xs).loadUnaligned(as: SIMD16<Float>.self)
                            UnsafeMutableRawPointer(d + xs).storeBytes(of: v.evenHalf, as: SIMD8<Float>.self)
                            x = xs + 8
                        }
                    }
                    while x < hi { d[x] = src[x * g.sw]; x += 1 }
                }
            }
        }
    }
}

/// What the plane-tile forwards (`tapPlanes`, `shiftedPlanes`) keep after a group's planes: the weights
/// packed into the tile's row panels, one Int32 offset per tap (filled by the caller), and the input and
/// output position of every output vector of the group (sample t's vector v at q = min(v*W, p-W), the
/// last one shifted back to end at p).
struct PlaneTileScratch {
    let packed: UnsafeMutablePointer<Float>
    let offsets: UnsafeMutablePointer<Int32>
    let inPos: UnsafeMutablePointer<Int>
    let outPos: UnsafeMutablePointer<Int>

    /// Floats after the planes, for any mb and any level (the narrowest level has the most vectors).
    static func count(_ g: ConvGeometry, group: Int) -> Int {
        let vectors = group * ((g.oh * g.ow + AllLevels.narrowestWidth - 1) / AllLevels.narrowestWidth)
        return 16 + roundUp(ConvKernel.packedTileRows(g.oc) * g.reduction, 16) + roundUp(g.reduction, 16) + 16 + 4 * vectors
    }

    /// Lays the scratch out after `planesEnd`, packs `weight` for tiles of `mr` rows and fills the positions.
    init<L: KernelLevel>(_ level: L.Type, _ g: ConvGeometry, after planesEnd: UnsafeMutablePointer<Float>, weight: UnsafePointer<Float>,
                         mr: Int, group: Int, sampleStride: Int) {
        let w = L.width, p = g.oh * g.ow, perSample = (p + w - 1) / w
        packed = align64(planesEnd)
        let packedCount = roundUp(roundUp(g.oc, mr) * g.reduction, 16)
        offsets = UnsafeMutableRawPointer(packed + packedCount).assumingMemoryBound(to: Int32.self)
        inPos = UnsafeMutableRawPointer(align64(packed + packedCount + roundUp(g.reduction, 16))).assumingMemoryBound(to: Int.self)
        outPos = inPos + group * perSample
        packPanelsA(L.self, trans: false, a: weight, lda: g.reduction, alpha: 1, m: g.oc, i0: 0, mc: g.oc, p0: 0, kc: g.reduction,
                    mr: mr, dest: packed)
        let outSize = g.oc * p
        for t in 0..<group {
            for v in 0..<perSample {
                let q = min(v * w, p - w)
                inPos[t * perSample + v] = t * sampleStride + q
                outPos[t * perSample + v] = t * outSize + q
            }
        }
    }

    /// The forward over `mb` samples, `group` at a time: `fill(t, sample)` writes sample's planes into
    /// slot t of `planes` (slots `sampleStride` floats apart), then one tile sweep stores the group's outputs.
    @inline(__always)
    func sweep<L: KernelLevel>(_ level: L.Type, _ g: ConvGeometry, mb: Int, group: Int, mr: Int, nv: Int,
                               planes: UnsafePointer<Float>, bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                               fill: (_ slot: Int, _ sample: Int) -> Void) {
        let p = g.oh * g.ow, perSample = (p + L.width - 1) / L.width
        var s0 = 0
        while s0 < mb {
            let count = min(group, mb - s0)
            for t in 0..<count { fill(t, s0 + t) }
            _runConvTiles(L.self, mr: mr, nv: nv, k: g.reduction, oc: g.oc, packed: packed, offsets: offsets,
                          vectors: count * perSample, input: planes, inPos: inPos, out: output + s0 * g.oc * p, ldo: p,
                          outPos: outPos, bias: bias)
            s0 += count
        }
    }
}
