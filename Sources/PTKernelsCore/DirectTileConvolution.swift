// Register tiles for the direct forward (DirectConvolution.swift): the tile shape, the packed weights
// and tap offsets, and the loop over tiles. Besides the layers with few output channels, the `direct`
// forward entry also takes the layers whose output rows are whole 16-pixel vectors
// (`outputRowsAreWholeVectors`: CIFAR 32x32 and 16x16 layers, forward and the transposed forward of
// backward data), which run it in its rows layout.
// Measured there (`bench kernels`, 1 thread, % of FMA peak, per-sample im2col + GEMM before -> these
// tiles): CIFAR forward 3->32 48 -> 75-79, 32->32 64 -> 90, 32->64 75 -> 87, 64->64 75 -> 90;
// CIFAR-small b128, 1 thread: 478 -> ~555 images/s from these alone.

extension ConvKernel {
    /// Whether the output rows are whole 16-pixel vectors (so the `direct` forward's rows layout wastes
    /// nothing at any level): with stride 1, such layers run the `direct` forward whatever their channels.
    static func outputRowsAreWholeVectors(_ g: ConvGeometry) -> Bool { g.ow % 16 == 0 && g.oh * g.ow >= 16 }

    /// Whether every tap offset c*planeStride + i*wp + j of the padded planes fits the Int32 table.
    static func tapOffsetsFitInt32(_ g: ConvGeometry) -> Bool {
        g.ic * directPlaneStride(g) < Int(Int32.max)
    }

    /// The level's register tile (MR, NV) for `oc` rows x `vectors` vectors: one row of many vectors for a
    /// single output channel, else the shape with the least padded work (ties: the level's first).
    @inline(__always)
    static func convTileShape<L: KernelLevel>(_ level: L.Type, oc: Int, vectors: Int) -> (Int, Int) {
        if oc == 1 { return (1, L.convSingleRowVectors) }
        return leastPadded(L.convTileShapes, oc: oc, vectors: vectors)
    }

    /// The packed-weight rows any level's tiles need.
    static func packedTileRows(_ oc: Int) -> Int { AllLevels.convTileRows.map { roundUp(oc, $0) }.max()! }
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
/// outputs: vector v reads input + inPos[v] + offsets[p] and is stored at out + o*ldo + outPos[v]. Per row
/// block of mr channels: the whole tiles in one call of the level, then a narrower last tile (1 ..< nv vectors).
@inline(__always)
func _runConvTiles<L: KernelLevel>(_ level: L.Type, mr: Int, nv: Int, k: Int, oc: Int, packed: UnsafePointer<Float>,
                                   offsets: UnsafePointer<Int32>, vectors: Int, input: UnsafePointer<Float>,
                                   inPos: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int,
                                   outPos: UnsafePointer<Int>, bias: UnsafePointer<Float>?) {
    var o0 = 0
    while o0 < oc {
        let rows = min(mr, oc - o0)
        let ap = packed + o0 * k
        let ob = bias.map { $0 + o0 }
        let c = out + o0 * ldo
        let whole = vectors / nv, rest = vectors - whole * nv
        if whole > 0 {
            L.convTiles(mr: mr, nv: nv, count: whole, k: k, a: ap, offsets: offsets, input: input, inPos: inPos, out: c,
                        outPos: outPos, ldo: ldo, bias: ob, rows: rows)
        }
        if rest > 0 {
            L.convTiles(mr: mr, nv: rest, count: 1, k: k, a: ap, offsets: offsets, input: input, inPos: inPos + whole * nv, out: c,
                        outPos: outPos + whole * nv, ldo: ldo, bias: ob, rows: rows)
        }
        o0 += mr
    }
}
