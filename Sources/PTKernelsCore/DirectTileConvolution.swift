// Direct convolution with GEMM-sized register tiles, for stride 1 when the output width is a multiple of
// 16 (CIFAR 32x32 and 16x16 layers, forward and the transposed forward of backward data).
//
// Like `directForward` (DirectConvolution.swift) each input plane of a sample is copied once into padded
// planes (Hp x Wp); then output pixels [y][x..<x+16] of all (c, i, j) taps are the contiguous vectors
// pad[c][(y+i)*Wp + x + j ..< +16]: the B operand of the GEMM is read straight from the padded image
// (implicit im2col: no unfolded matrix, no packed B panel). A (the weights) is packed once per call into
// MR-row panels as for the GEMM. A register tile is MR output channels x NV vectors of pixels; the
// NV vectors are any NV consecutive vector slots of the sample's output (they may span rows), stored
// straight into the output (bias preloaded), so nothing is copied out.
// Each output value is bias (or 0) then one chain of fused multiply-adds over p = (c, i, j) in increasing
// order: a function of the geometry only.
// Measured (`bench kernels`, 1 thread, % of FMA peak, per-sample im2col + GEMM before -> these tiles):
// CIFAR forward 3->32 48 -> 75-79, 32->32 64 -> 90, 32->64 75 -> 87, 64->64 75 -> 90; backward data
// 32->32 64 -> 90, 32->64 70 -> 90 (now as the transposed forward, no col2im), 64->64 76 -> 90.
// CIFAR-small b128, 1 thread: 478 -> ~555 images/s from these alone.

extension ConvKernel {
    /// Whether `forward` (im2colGemm) runs as direct register tiles: stride 1 and whole 16-pixel output vectors.
    var directTilesApply: Bool {
        let g = geometry
        return g.sh == 1 && g.sw == 1 && g.ow % 16 == 0 && g.oh * g.ow >= 16 && Self.tapOffsetsFitInt32(g)
    }

    /// Whether every tap offset c*planeStride + i*wp + j of the padded planes fits the Int32 table.
    static func tapOffsetsFitInt32(_ g: ConvGeometry) -> Bool {
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        return g.ic * roundUp(hp * wp + 32 + g.kw, 16) < Int(Int32.max)
    }

    /// The level's register tile (MR, NV) for `oc` rows x `vectors` vectors: one row of many vectors for a
    /// single output channel, else the shape with the least padded work (ties: the level's first).
    @inline(__always)
    static func convTileShape<L: KernelLevel>(_ level: L.Type, oc: Int, vectors: Int) -> (Int, Int) {
        if oc == 1 { return (1, L.convSingleRowVectors) }
        return leastPadded(L.convTileShapes, oc: oc, vectors: vectors)
    }

    /// Most vectors a convolution tile of any level holds, and the packed-weight rows any level's tiles need.
    static let maxTileVectors = 16
    static func packedTileRows(_ oc: Int) -> Int { [8, 6, 4, 1].map { roundUp(oc, $0) }.max()! }

    /// Scratch floats of `directTilesForward` (any mb).
    var directTilesScratchCount: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let k = g.reduction
        let packed = Self.packedTileRows(g.oc) * k
        return 16 + roundUp(packed, 16) + roundUp(k, 16) + g.ic * planeStride + 16
    }

    func directTilesForward<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let k = g.reduction
        let p = g.oh * g.ow
        let w = L.width
        let vectors = p / w
        let (mr, nv) = Self.convTileShape(L.self, oc: g.oc, vectors: vectors)
        let packed = align64(scratch)
        let packedCount = roundUp(roundUp(g.oc, mr) * k, 16)
        let offsets = UnsafeMutableRawPointer(packed + packedCount).assumingMemoryBound(to: Int32.self)
        let padded = packed + packedCount + roundUp(k, 16)
        _prepareConvTiles(L.self, g, wp: wp, planeStride: planeStride, mr: mr, weight: weight, packed: packed, offsets: offsets)
        padded.update(repeating: 0, count: g.ic * planeStride)   // borders stay zero; interiors are rewritten
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * p
        for s in 0..<mb {
            let x = input + s * inSize
            for c in 0..<g.ic {
                for y in 0..<g.ih {
                    copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                }
            }
            _runConvTiles(L.self, mr: mr, nv: nv, k: k, oc: g.oc, packed: packed, offsets: offsets, vectors: vectors,
                          input: padded, inPos: { v in (v * L.width) / g.ow * wp + (v * L.width) % g.ow },
                          out: output + s * outSize, ldo: p, outPos: { v in v * L.width }, bias: bias)
        }
    }
}

/// Packs the weights (oc x ic*kh*kw) into `mr`-row panels at `packed` and writes the tap offsets
/// c*planeStride + i*wp + j (in (c, i, j) order) at `offsets`.
func _prepareConvTiles<L: KernelLevel>(_ level: L.Type, _ g: ConvGeometry, wp: Int, planeStride: Int, mr: Int, weight: UnsafePointer<Float>,
                       packed: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Int32>) {
    let k = g.reduction
    packPanelsA(L.self, trans: false, a: weight, lda: k, alpha: 1, m: g.oc, i0: 0, mc: g.oc, p0: 0, kc: k, mr: mr, dest: packed)
    var q = 0
    for c in 0..<g.ic {
        for i in 0..<g.kh {
            for j in 0..<g.kw { offsets[q] = Int32(c * planeStride + i * wp + j); q += 1 }
        }
    }
}

/// Runs `mr` x `nv` register tiles of level L over all output channels and `vectors` vectors of L.width
/// outputs: vector v reads input + inPos(v) + offsets[p] and is stored at out + o*ldo + outPos(v); the
/// last tile of a row block may be narrower (1 ..< nv vectors).
@inline(__always)
func _runConvTiles<L: KernelLevel>(_ level: L.Type, mr: Int, nv: Int, k: Int, oc: Int, packed: UnsafePointer<Float>,
                                   offsets: UnsafePointer<Int32>, vectors: Int, input: UnsafePointer<Float>,
                                   inPos: (Int) -> Int, out: UnsafeMutablePointer<Float>, ldo: Int, outPos: (Int) -> Int,
                                   bias: UnsafePointer<Float>?) {
    // Per-tile pointers live on the stack (no allocation).
    withUnsafeTemporaryAllocation(of: UnsafePointer<Float>.self, capacity: ConvKernel.maxTileVectors) { ip in
        withUnsafeTemporaryAllocation(of: Int.self, capacity: ConvKernel.maxTileVectors) { op in
            let ip = ip.baseAddress!, op = op.baseAddress!
            var o0 = 0
            while o0 < oc {
                let rows = min(mr, oc - o0)
                let ap = packed + o0 * k
                let ob = bias.map { $0 + o0 }
                var v0 = 0
                while v0 < vectors {
                    let n = min(nv, vectors - v0)
                    for t in 0..<n {
                        (ip + t).initialize(to: input + inPos(v0 + t))
                        op[t] = outPos(v0 + t)
                    }
                    L.convTile(mr: mr, nv: n, k: k, a: ap, offsets: offsets, inputs: ip, out: out + o0 * ldo, outOffsets: op,
                               ldo: ldo, bias: ob, rows: rows)
                    v0 += n
                }
                o0 += mr
            }
        }
    }
}
