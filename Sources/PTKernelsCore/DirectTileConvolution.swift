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

/// The kernel rows each vector of the direct forward needs: the rows i whose padded input rows y + i
/// (y, the output rows the vector's lanes lie on) are not all zero padding. The other rows' taps read only
/// zeros and add nothing, so a tile leaves them out (the value of every output is unchanged, up to the
/// sign of a zero result). Transposed LeNet conv2 (backward data: 10x10 padded by 4, 14x14 out, 13
/// vectors of 16): 49 of the 65 kernel-row sweeps; 44.5% -> 57% of peak (`bench kernels`, 1 thread,
/// AMD EPYC Zen 4, AVX-512).
/// Used only where at least 1/8 of the (output row, kernel row) pairs read padding (`pay`): splitting the
/// vectors into runs leaves more narrow tiles, and where few rows are saved that costs more than it
/// saves (LeNet conv1 forward, 6 of 140 pairs: 78.5% -> 75.3%; CIFAR 3->32, 2 of 96: 83.6% -> 79.2%).
struct DirectRowSpans {
    let g: ConvGeometry
    /// Padded row pitch, floats per vector.
    let wp: Int, width: Int

    /// Whether the direct forward of `g` leaves out the padding rows' taps.
    static func pay(_ g: ConvGeometry) -> Bool {
        var skipped = 0
        for y in 0..<g.oh { skipped += max(0, g.ph - y) + max(0, y + g.kh - g.ph - g.ih) }
        return g.ph > 0 && 8 * skipped >= g.oh * g.kh
    }

    /// The span of the vector that starts at padded position `q` (= y*wp + x).
    @inline(__always)
    func span(at q: Int) -> TapSpan {
        let yLo = q / wp, yHi = min(g.oh - 1, (q + width - 1) / wp)
        let i0 = max(0, g.ph - yHi), i1 = min(g.kh - 1, g.ph + g.ih - 1 - yLo)
        let count = i1 >= i0 ? (i1 - i0 + 1) * g.kw : 0
        return TapSpan(reduction: g.reduction, perChannel: g.kh * g.kw, first: min(i0, g.kh) * g.kw, count: count)
    }
}

/// Runs `mr` x `nv` register tiles of level L over all output channels and `vectors` vectors of L.width
/// outputs: vector v reads input + inPos[v] + offsets[p] and is stored at out + o*ldo + outPos[v]. With
/// `rowSpans`, runs of consecutive vectors that need the same kernel rows take only those. Per row block
/// of mr channels and run: the whole tiles in one call of the level, then a narrower last tile (1 ..< nv vectors).
@inline(__always)
func _runConvTiles<L: KernelLevel>(_ level: L.Type, mr: Int, nv: Int, k: Int, oc: Int, packed: UnsafePointer<Float>,
                                   offsets: UnsafePointer<Int32>, vectors: Int, input: UnsafePointer<Float>,
                                   inPos: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, ldo: Int,
                                   outPos: UnsafePointer<Int>, bias: UnsafePointer<Float>?, rowSpans: DirectRowSpans? = nil) {
    var v0 = 0
    while v0 < vectors {
        var v1 = vectors
        var span = TapSpan(reduction: k)
        if let rowSpans {
            span = rowSpans.span(at: inPos[v0])
            v1 = v0 + 1
            while v1 < vectors && rowSpans.span(at: inPos[v1]) == span { v1 += 1 }
        }
        let run = v1 - v0
        let whole = run / nv, rest = run - whole * nv
        var o0 = 0
        while o0 < oc {
            let rows = min(mr, oc - o0)
            let ap = packed + o0 * k
            let ob = bias.map { $0 + o0 }
            let c = out + o0 * ldo
            if whole > 0 {
                L.convTiles(mr: mr, nv: nv, count: whole, span: span, a: ap, offsets: offsets, input: input, inPos: inPos + v0,
                            out: c, outPos: outPos + v0, ldo: ldo, bias: ob, rows: rows)
            }
            if rest > 0 {
                L.convTiles(mr: mr, nv: rest, count: 1, span: span, a: ap, offsets: offsets, input: input,
                            inPos: inPos + v0 + whole * nv, out: c, outPos: outPos + v0 + whole * nv, ldo: ldo, bias: ob, rows: rows)
            }
            o0 += mr
        }
        v0 = v1
    }
}
