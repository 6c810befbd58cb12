// Direct convolution with GEMM-sized register tiles, for stride 1 when the output width is a multiple of
// 16 (CIFAR 32x32 and 16x16 layers, forward and the transposed forward of backward data).
//
// Like `directForward` (DirectConvolution.swift) each input plane of a sample is copied once into padded
// planes (Hp x Wp); then output pixels [y][x..<x+16] of all (c, i, j) taps are the contiguous vectors
// pad[c][(y+i)*Wp + x + j ..< +16]: the B operand of the GEMM is read straight from the padded image
// (implicit im2col: no unfolded matrix, no packed B panel). A (the weights) is packed once per call into
// MR-row panels as for the GEMM. A register tile is MR output channels x NV vectors of 16 pixels; the
// NV vectors are any NV consecutive 16-pixel slots of the sample's output (they may span rows), stored
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

    /// The register tile (MR, NV) with the least padded work, ties to 8x3.
    static func directTileShape(oc: Int, vectors: Int) -> (Int, Int) {
        var best = (8, 3)
        for t in [(8, 3), (6, 4)]
        where roundUp(oc, t.0) * roundUp(vectors, t.1) < roundUp(oc, best.0) * roundUp(vectors, best.1) { best = t }
        return best
    }

    /// Scratch floats of `directTilesForward` (any mb).
    var directTilesScratchCount: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let k = g.reduction
        let packed = max(roundUp(g.oc, 8), roundUp(g.oc, 6)) * k
        return 16 + roundUp(packed, 16) + roundUp(k, 16) + g.ic * planeStride + 16
    }

    func directTilesForward(mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                            output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let k = g.reduction
        let p = g.oh * g.ow
        let vectors = p / 16
        let (mr, nv) = Self.directTileShape(oc: g.oc, vectors: vectors)
        let packed = align64(scratch)
        let packedCount = roundUp(roundUp(g.oc, mr) * k, 16)
        let offsets = UnsafeMutableRawPointer(packed + packedCount).assumingMemoryBound(to: Int32.self)
        let padded = packed + packedCount + roundUp(k, 16)
        _prepareConvTiles(g, wp: wp, planeStride: planeStride, mr: mr, weight: weight, packed: packed, offsets: offsets)
        padded.update(repeating: 0, count: g.ic * planeStride)   // borders stay zero; interiors are rewritten
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * p
        for s in 0..<mb {
            let x = input + s * inSize
            for c in 0..<g.ic {
                for y in 0..<g.ih {
                    copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                }
            }
            _runConvTiles(mr: mr, nv: nv, k: k, oc: g.oc, packed: packed, offsets: offsets, vectors: vectors,
                          input: padded, inPos: { v in (v * 16) / g.ow * wp + (v * 16) % g.ow },
                          out: output + s * outSize, ldo: p, outPos: { v in v * 16 }, bias: bias)
        }
    }
}

/// Packs the weights (oc x ic*kh*kw) into `mr`-row panels at `packed` and writes the tap offsets
/// c*planeStride + i*wp + j (in (c, i, j) order) at `offsets`.
func _prepareConvTiles(_ g: ConvGeometry, wp: Int, planeStride: Int, mr: Int, weight: UnsafePointer<Float>,
                       packed: UnsafeMutablePointer<Float>, offsets: UnsafeMutablePointer<Int32>) {
    let k = g.reduction
    packPanelsA(trans: false, a: weight, lda: k, alpha: 1, m: g.oc, i0: 0, mc: g.oc, p0: 0, kc: k, mr: mr, dest: packed)
    var q = 0
    for c in 0..<g.ic {
        for i in 0..<g.kh {
            for j in 0..<g.kw { offsets[q] = Int32(c * planeStride + i * wp + j); q += 1 }
        }
    }
}

/// Runs `mr` x `nv` register tiles over all output channels and `vectors` vectors of 16 outputs:
/// vector v reads input + inPos(v) + offsets[p] and is stored at out + o*ldo + outPos(v); the last
/// tile of a row block may be narrower (1 ..< nv vectors).
@inline(__always)
func _runConvTiles(mr: Int, nv: Int, k: Int, oc: Int, packed: UnsafePointer<Float>, offsets: UnsafePointer<Int32>,
                   vectors: Int, input: UnsafePointer<Float>, inPos: (Int) -> Int,
                   out: UnsafeMutablePointer<Float>, ldo: Int, outPos: (Int) -> Int, bias: UnsafePointer<Float>?) {
    // Per-tile pointers live on the stack (no allocation): up to 4 vectors.
    var ins: (UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>, UnsafePointer<Float>) = (input, input, input, input)
    var outs: (Int, Int, Int, Int) = (0, 0, 0, 0)
    withUnsafeMutableBytes(of: &ins) { insRaw in
        withUnsafeMutableBytes(of: &outs) { outsRaw in
            let ip = insRaw.baseAddress!.assumingMemoryBound(to: UnsafePointer<Float>.self)
            let op = outsRaw.baseAddress!.assumingMemoryBound(to: Int.self)
            var o0 = 0
            while o0 < oc {
                let rows = min(mr, oc - o0)
                let ap = packed + o0 * k
                let ob = bias.map { $0 + o0 }
                var v0 = 0
                while v0 < vectors {
                    // The last tile may be narrower (1 ..< nv vectors).
                    let n = min(nv, vectors - v0)
                    for t in 0..<n {
                        ip[t] = input + inPos(v0 + t)
                        op[t] = outPos(v0 + t)
                    }
                    let c = out + o0 * ldo
                    switch (mr, n) {
                    case (8, 3): _convTile8x3(k: k, a: ap, offsets: offsets, inputs: ip, out: c, outOffsets: op, ldo: ldo, bias: ob, rows: rows)
                    case (8, 2): _convTile8x2(k: k, a: ap, offsets: offsets, inputs: ip, out: c, outOffsets: op, ldo: ldo, bias: ob, rows: rows)
                    case (8, _): _convTile8x1(k: k, a: ap, offsets: offsets, inputs: ip, out: c, outOffsets: op, ldo: ldo, bias: ob, rows: rows)
                    case (_, 4): _convTile6x4(k: k, a: ap, offsets: offsets, inputs: ip, out: c, outOffsets: op, ldo: ldo, bias: ob, rows: rows)
                    case (_, 3): _convTile6x3(k: k, a: ap, offsets: offsets, inputs: ip, out: c, outOffsets: op, ldo: ldo, bias: ob, rows: rows)
                    case (_, 2): _convTile6x2(k: k, a: ap, offsets: offsets, inputs: ip, out: c, outOffsets: op, ldo: ldo, bias: ob, rows: rows)
                    default: _convTile6x1(k: k, a: ap, offsets: offsets, inputs: ip, out: c, outOffsets: op, ldo: ldo, bias: ob, rows: rows)
                    }
                    v0 += n
                }
                o0 += mr
            }
        }
    }
}

/// 8 output channels x 3 vectors of 16 output pixels (24 accumulators); see `directTilesForward`.
@inline(never)
func _convTile8x3(k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, inputs: UnsafePointer<UnsafePointer<Float>>,
    out: UnsafeMutablePointer<Float>, outOffsets: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V(), c0_2 = V()
    var c1_0 = V(), c1_1 = V(), c1_2 = V()
    var c2_0 = V(), c2_1 = V(), c2_2 = V()
    var c3_0 = V(), c3_1 = V(), c3_2 = V()
    var c4_0 = V(), c4_1 = V(), c4_2 = V()
    var c5_0 = V(), c5_1 = V(), c5_2 = V()
    var c6_0 = V(), c6_1 = V(), c6_2 = V()
    var c7_0 = V(), c7_1 = V(), c7_2 = V()
    if let bias {
        do { let x = V(repeating: bias[min(0, rows - 1)]); c0_0 = x; c0_1 = x; c0_2 = x }
        do { let x = V(repeating: bias[min(1, rows - 1)]); c1_0 = x; c1_1 = x; c1_2 = x }
        do { let x = V(repeating: bias[min(2, rows - 1)]); c2_0 = x; c2_1 = x; c2_2 = x }
        do { let x = V(repeating: bias[min(3, rows - 1)]); c3_0 = x; c3_1 = x; c3_2 = x }
        do { let x = V(repeating: bias[min(4, rows - 1)]); c4_0 = x; c4_1 = x; c4_2 = x }
        do { let x = V(repeating: bias[min(5, rows - 1)]); c5_0 = x; c5_1 = x; c5_2 = x }
        do { let x = V(repeating: bias[min(6, rows - 1)]); c6_0 = x; c6_1 = x; c6_2 = x }
        do { let x = V(repeating: bias[min(7, rows - 1)]); c7_0 = x; c7_1 = x; c7_2 = x }
    }
    let i0 = UnsafeRawPointer(inputs[0])
    let i1 = UnsafeRawPointer(inputs[1])
    let i2 = UnsafeRawPointer(inputs[2])
    var pa = a
    for p in 0..<k {
        let off = Int(offsets[p]) &* 4
        let b0 = i0.loadUnaligned(fromByteOffset: off, as: V.self)
        let b1 = i1.loadUnaligned(fromByteOffset: off, as: V.self)
        let b2 = i2.loadUnaligned(fromByteOffset: off, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1); c0_2 = c0_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1); c1_2 = c1_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1); c2_2 = c2_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1); c3_2 = c3_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1); c4_2 = c4_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1); c5_2 = c5_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[6]); c6_0 = c6_0.addingProduct(x, b0); c6_1 = c6_1.addingProduct(x, b1); c6_2 = c6_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[7]); c7_0 = c7_0.addingProduct(x, b0); c7_1 = c7_1.addingProduct(x, b1); c7_2 = c7_2.addingProduct(x, b2) }
        pa += 8
    }
    do { let o = UnsafeMutableRawPointer(out + 0 * ldo); o.storeBytes(of: c0_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c0_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c0_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 1 { let o = UnsafeMutableRawPointer(out + 1 * ldo); o.storeBytes(of: c1_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c1_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c1_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 2 { let o = UnsafeMutableRawPointer(out + 2 * ldo); o.storeBytes(of: c2_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c2_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c2_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 3 { let o = UnsafeMutableRawPointer(out + 3 * ldo); o.storeBytes(of: c3_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c3_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c3_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 4 { let o = UnsafeMutableRawPointer(out + 4 * ldo); o.storeBytes(of: c4_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c4_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c4_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 5 { let o = UnsafeMutableRawPointer(out + 5 * ldo); o.storeBytes(of: c5_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c5_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c5_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 6 { let o = UnsafeMutableRawPointer(out + 6 * ldo); o.storeBytes(of: c6_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c6_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c6_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 7 { let o = UnsafeMutableRawPointer(out + 7 * ldo); o.storeBytes(of: c7_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c7_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c7_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
}

/// 8 output channels x 2 vectors of 16 output pixels (16 accumulators); see `directTilesForward`.
@inline(never)
func _convTile8x2(k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, inputs: UnsafePointer<UnsafePointer<Float>>,
    out: UnsafeMutablePointer<Float>, outOffsets: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V()
    var c1_0 = V(), c1_1 = V()
    var c2_0 = V(), c2_1 = V()
    var c3_0 = V(), c3_1 = V()
    var c4_0 = V(), c4_1 = V()
    var c5_0 = V(), c5_1 = V()
    var c6_0 = V(), c6_1 = V()
    var c7_0 = V(), c7_1 = V()
    if let bias {
        do { let x = V(repeating: bias[min(0, rows - 1)]); c0_0 = x; c0_1 = x }
        do { let x = V(repeating: bias[min(1, rows - 1)]); c1_0 = x; c1_1 = x }
        do { let x = V(repeating: bias[min(2, rows - 1)]); c2_0 = x; c2_1 = x }
        do { let x = V(repeating: bias[min(3, rows - 1)]); c3_0 = x; c3_1 = x }
        do { let x = V(repeating: bias[min(4, rows - 1)]); c4_0 = x; c4_1 = x }
        do { let x = V(repeating: bias[min(5, rows - 1)]); c5_0 = x; c5_1 = x }
        do { let x = V(repeating: bias[min(6, rows - 1)]); c6_0 = x; c6_1 = x }
        do { let x = V(repeating: bias[min(7, rows - 1)]); c7_0 = x; c7_1 = x }
    }
    let i0 = UnsafeRawPointer(inputs[0])
    let i1 = UnsafeRawPointer(inputs[1])
    var pa = a
    for p in 0..<k {
        let off = Int(offsets[p]) &* 4
        let b0 = i0.loadUnaligned(fromByteOffset: off, as: V.self)
        let b1 = i1.loadUnaligned(fromByteOffset: off, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[6]); c6_0 = c6_0.addingProduct(x, b0); c6_1 = c6_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[7]); c7_0 = c7_0.addingProduct(x, b0); c7_1 = c7_1.addingProduct(x, b1) }
        pa += 8
    }
    do { let o = UnsafeMutableRawPointer(out + 0 * ldo); o.storeBytes(of: c0_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c0_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 1 { let o = UnsafeMutableRawPointer(out + 1 * ldo); o.storeBytes(of: c1_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c1_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 2 { let o = UnsafeMutableRawPointer(out + 2 * ldo); o.storeBytes(of: c2_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c2_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 3 { let o = UnsafeMutableRawPointer(out + 3 * ldo); o.storeBytes(of: c3_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c3_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 4 { let o = UnsafeMutableRawPointer(out + 4 * ldo); o.storeBytes(of: c4_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c4_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 5 { let o = UnsafeMutableRawPointer(out + 5 * ldo); o.storeBytes(of: c5_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c5_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 6 { let o = UnsafeMutableRawPointer(out + 6 * ldo); o.storeBytes(of: c6_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c6_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 7 { let o = UnsafeMutableRawPointer(out + 7 * ldo); o.storeBytes(of: c7_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c7_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
}

/// 8 output channels x 1 vectors of 16 output pixels (8 accumulators); see `directTilesForward`.
@inline(never)
func _convTile8x1(k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, inputs: UnsafePointer<UnsafePointer<Float>>,
    out: UnsafeMutablePointer<Float>, outOffsets: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
    typealias V = SIMD16<Float>
    var c0_0 = V()
    var c1_0 = V()
    var c2_0 = V()
    var c3_0 = V()
    var c4_0 = V()
    var c5_0 = V()
    var c6_0 = V()
    var c7_0 = V()
    if let bias {
        do { let x = V(repeating: bias[min(0, rows - 1)]); c0_0 = x }
        do { let x = V(repeating: bias[min(1, rows - 1)]); c1_0 = x }
        do { let x = V(repeating: bias[min(2, rows - 1)]); c2_0 = x }
        do { let x = V(repeating: bias[min(3, rows - 1)]); c3_0 = x }
        do { let x = V(repeating: bias[min(4, rows - 1)]); c4_0 = x }
        do { let x = V(repeating: bias[min(5, rows - 1)]); c5_0 = x }
        do { let x = V(repeating: bias[min(6, rows - 1)]); c6_0 = x }
        do { let x = V(repeating: bias[min(7, rows - 1)]); c7_0 = x }
    }
    let i0 = UnsafeRawPointer(inputs[0])
    var pa = a
    for p in 0..<k {
        let off = Int(offsets[p]) &* 4
        let b0 = i0.loadUnaligned(fromByteOffset: off, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[6]); c6_0 = c6_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[7]); c7_0 = c7_0.addingProduct(x, b0) }
        pa += 8
    }
    do { let o = UnsafeMutableRawPointer(out + 0 * ldo); o.storeBytes(of: c0_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 1 { let o = UnsafeMutableRawPointer(out + 1 * ldo); o.storeBytes(of: c1_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 2 { let o = UnsafeMutableRawPointer(out + 2 * ldo); o.storeBytes(of: c2_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 3 { let o = UnsafeMutableRawPointer(out + 3 * ldo); o.storeBytes(of: c3_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 4 { let o = UnsafeMutableRawPointer(out + 4 * ldo); o.storeBytes(of: c4_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 5 { let o = UnsafeMutableRawPointer(out + 5 * ldo); o.storeBytes(of: c5_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 6 { let o = UnsafeMutableRawPointer(out + 6 * ldo); o.storeBytes(of: c6_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 7 { let o = UnsafeMutableRawPointer(out + 7 * ldo); o.storeBytes(of: c7_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
}

/// 6 output channels x 4 vectors of 16 output pixels (24 accumulators); see `directTilesForward`.
@inline(never)
func _convTile6x4(k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, inputs: UnsafePointer<UnsafePointer<Float>>,
    out: UnsafeMutablePointer<Float>, outOffsets: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V(), c0_2 = V(), c0_3 = V()
    var c1_0 = V(), c1_1 = V(), c1_2 = V(), c1_3 = V()
    var c2_0 = V(), c2_1 = V(), c2_2 = V(), c2_3 = V()
    var c3_0 = V(), c3_1 = V(), c3_2 = V(), c3_3 = V()
    var c4_0 = V(), c4_1 = V(), c4_2 = V(), c4_3 = V()
    var c5_0 = V(), c5_1 = V(), c5_2 = V(), c5_3 = V()
    if let bias {
        do { let x = V(repeating: bias[min(0, rows - 1)]); c0_0 = x; c0_1 = x; c0_2 = x; c0_3 = x }
        do { let x = V(repeating: bias[min(1, rows - 1)]); c1_0 = x; c1_1 = x; c1_2 = x; c1_3 = x }
        do { let x = V(repeating: bias[min(2, rows - 1)]); c2_0 = x; c2_1 = x; c2_2 = x; c2_3 = x }
        do { let x = V(repeating: bias[min(3, rows - 1)]); c3_0 = x; c3_1 = x; c3_2 = x; c3_3 = x }
        do { let x = V(repeating: bias[min(4, rows - 1)]); c4_0 = x; c4_1 = x; c4_2 = x; c4_3 = x }
        do { let x = V(repeating: bias[min(5, rows - 1)]); c5_0 = x; c5_1 = x; c5_2 = x; c5_3 = x }
    }
    let i0 = UnsafeRawPointer(inputs[0])
    let i1 = UnsafeRawPointer(inputs[1])
    let i2 = UnsafeRawPointer(inputs[2])
    let i3 = UnsafeRawPointer(inputs[3])
    var pa = a
    for p in 0..<k {
        let off = Int(offsets[p]) &* 4
        let b0 = i0.loadUnaligned(fromByteOffset: off, as: V.self)
        let b1 = i1.loadUnaligned(fromByteOffset: off, as: V.self)
        let b2 = i2.loadUnaligned(fromByteOffset: off, as: V.self)
        let b3 = i3.loadUnaligned(fromByteOffset: off, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1); c0_2 = c0_2.addingProduct(x, b2); c0_3 = c0_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1); c1_2 = c1_2.addingProduct(x, b2); c1_3 = c1_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1); c2_2 = c2_2.addingProduct(x, b2); c2_3 = c2_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1); c3_2 = c3_2.addingProduct(x, b2); c3_3 = c3_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1); c4_2 = c4_2.addingProduct(x, b2); c4_3 = c4_3.addingProduct(x, b3) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1); c5_2 = c5_2.addingProduct(x, b2); c5_3 = c5_3.addingProduct(x, b3) }
        pa += 6
    }
    do { let o = UnsafeMutableRawPointer(out + 0 * ldo); o.storeBytes(of: c0_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c0_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c0_2, toByteOffset: outOffsets[2] &* 4, as: V.self); o.storeBytes(of: c0_3, toByteOffset: outOffsets[3] &* 4, as: V.self) }
    if rows > 1 { let o = UnsafeMutableRawPointer(out + 1 * ldo); o.storeBytes(of: c1_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c1_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c1_2, toByteOffset: outOffsets[2] &* 4, as: V.self); o.storeBytes(of: c1_3, toByteOffset: outOffsets[3] &* 4, as: V.self) }
    if rows > 2 { let o = UnsafeMutableRawPointer(out + 2 * ldo); o.storeBytes(of: c2_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c2_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c2_2, toByteOffset: outOffsets[2] &* 4, as: V.self); o.storeBytes(of: c2_3, toByteOffset: outOffsets[3] &* 4, as: V.self) }
    if rows > 3 { let o = UnsafeMutableRawPointer(out + 3 * ldo); o.storeBytes(of: c3_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c3_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c3_2, toByteOffset: outOffsets[2] &* 4, as: V.self); o.storeBytes(of: c3_3, toByteOffset: outOffsets[3] &* 4, as: V.self) }
    if rows > 4 { let o = UnsafeMutableRawPointer(out + 4 * ldo); o.storeBytes(of: c4_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c4_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c4_2, toByteOffset: outOffsets[2] &* 4, as: V.self); o.storeBytes(of: c4_3, toByteOffset: outOffsets[3] &* 4, as: V.self) }
    if rows > 5 { let o = UnsafeMutableRawPointer(out + 5 * ldo); o.storeBytes(of: c5_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c5_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c5_2, toByteOffset: outOffsets[2] &* 4, as: V.self); o.storeBytes(of: c5_3, toByteOffset: outOffsets[3] &* 4, as: V.self) }
}

/// 6 output channels x 3 vectors of 16 output pixels (18 accumulators); see `directTilesForward`.
@inline(never)
func _convTile6x3(k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, inputs: UnsafePointer<UnsafePointer<Float>>,
    out: UnsafeMutablePointer<Float>, outOffsets: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V(), c0_2 = V()
    var c1_0 = V(), c1_1 = V(), c1_2 = V()
    var c2_0 = V(), c2_1 = V(), c2_2 = V()
    var c3_0 = V(), c3_1 = V(), c3_2 = V()
    var c4_0 = V(), c4_1 = V(), c4_2 = V()
    var c5_0 = V(), c5_1 = V(), c5_2 = V()
    if let bias {
        do { let x = V(repeating: bias[min(0, rows - 1)]); c0_0 = x; c0_1 = x; c0_2 = x }
        do { let x = V(repeating: bias[min(1, rows - 1)]); c1_0 = x; c1_1 = x; c1_2 = x }
        do { let x = V(repeating: bias[min(2, rows - 1)]); c2_0 = x; c2_1 = x; c2_2 = x }
        do { let x = V(repeating: bias[min(3, rows - 1)]); c3_0 = x; c3_1 = x; c3_2 = x }
        do { let x = V(repeating: bias[min(4, rows - 1)]); c4_0 = x; c4_1 = x; c4_2 = x }
        do { let x = V(repeating: bias[min(5, rows - 1)]); c5_0 = x; c5_1 = x; c5_2 = x }
    }
    let i0 = UnsafeRawPointer(inputs[0])
    let i1 = UnsafeRawPointer(inputs[1])
    let i2 = UnsafeRawPointer(inputs[2])
    var pa = a
    for p in 0..<k {
        let off = Int(offsets[p]) &* 4
        let b0 = i0.loadUnaligned(fromByteOffset: off, as: V.self)
        let b1 = i1.loadUnaligned(fromByteOffset: off, as: V.self)
        let b2 = i2.loadUnaligned(fromByteOffset: off, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1); c0_2 = c0_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1); c1_2 = c1_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1); c2_2 = c2_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1); c3_2 = c3_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1); c4_2 = c4_2.addingProduct(x, b2) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1); c5_2 = c5_2.addingProduct(x, b2) }
        pa += 6
    }
    do { let o = UnsafeMutableRawPointer(out + 0 * ldo); o.storeBytes(of: c0_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c0_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c0_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 1 { let o = UnsafeMutableRawPointer(out + 1 * ldo); o.storeBytes(of: c1_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c1_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c1_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 2 { let o = UnsafeMutableRawPointer(out + 2 * ldo); o.storeBytes(of: c2_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c2_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c2_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 3 { let o = UnsafeMutableRawPointer(out + 3 * ldo); o.storeBytes(of: c3_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c3_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c3_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 4 { let o = UnsafeMutableRawPointer(out + 4 * ldo); o.storeBytes(of: c4_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c4_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c4_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
    if rows > 5 { let o = UnsafeMutableRawPointer(out + 5 * ldo); o.storeBytes(of: c5_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c5_1, toByteOffset: outOffsets[1] &* 4, as: V.self); o.storeBytes(of: c5_2, toByteOffset: outOffsets[2] &* 4, as: V.self) }
}

/// 6 output channels x 2 vectors of 16 output pixels (12 accumulators); see `directTilesForward`.
@inline(never)
func _convTile6x2(k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, inputs: UnsafePointer<UnsafePointer<Float>>,
    out: UnsafeMutablePointer<Float>, outOffsets: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
    typealias V = SIMD16<Float>
    var c0_0 = V(), c0_1 = V()
    var c1_0 = V(), c1_1 = V()
    var c2_0 = V(), c2_1 = V()
    var c3_0 = V(), c3_1 = V()
    var c4_0 = V(), c4_1 = V()
    var c5_0 = V(), c5_1 = V()
    if let bias {
        do { let x = V(repeating: bias[min(0, rows - 1)]); c0_0 = x; c0_1 = x }
        do { let x = V(repeating: bias[min(1, rows - 1)]); c1_0 = x; c1_1 = x }
        do { let x = V(repeating: bias[min(2, rows - 1)]); c2_0 = x; c2_1 = x }
        do { let x = V(repeating: bias[min(3, rows - 1)]); c3_0 = x; c3_1 = x }
        do { let x = V(repeating: bias[min(4, rows - 1)]); c4_0 = x; c4_1 = x }
        do { let x = V(repeating: bias[min(5, rows - 1)]); c5_0 = x; c5_1 = x }
    }
    let i0 = UnsafeRawPointer(inputs[0])
    let i1 = UnsafeRawPointer(inputs[1])
    var pa = a
    for p in 0..<k {
        let off = Int(offsets[p]) &* 4
        let b0 = i0.loadUnaligned(fromByteOffset: off, as: V.self)
        let b1 = i1.loadUnaligned(fromByteOffset: off, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0); c0_1 = c0_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0); c1_1 = c1_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0); c2_1 = c2_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0); c3_1 = c3_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0); c4_1 = c4_1.addingProduct(x, b1) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0); c5_1 = c5_1.addingProduct(x, b1) }
        pa += 6
    }
    do { let o = UnsafeMutableRawPointer(out + 0 * ldo); o.storeBytes(of: c0_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c0_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 1 { let o = UnsafeMutableRawPointer(out + 1 * ldo); o.storeBytes(of: c1_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c1_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 2 { let o = UnsafeMutableRawPointer(out + 2 * ldo); o.storeBytes(of: c2_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c2_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 3 { let o = UnsafeMutableRawPointer(out + 3 * ldo); o.storeBytes(of: c3_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c3_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 4 { let o = UnsafeMutableRawPointer(out + 4 * ldo); o.storeBytes(of: c4_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c4_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
    if rows > 5 { let o = UnsafeMutableRawPointer(out + 5 * ldo); o.storeBytes(of: c5_0, toByteOffset: outOffsets[0] &* 4, as: V.self); o.storeBytes(of: c5_1, toByteOffset: outOffsets[1] &* 4, as: V.self) }
}

/// 6 output channels x 1 vectors of 16 output pixels (6 accumulators); see `directTilesForward`.
@inline(never)
func _convTile6x1(k: Int, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, inputs: UnsafePointer<UnsafePointer<Float>>,
    out: UnsafeMutablePointer<Float>, outOffsets: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
    typealias V = SIMD16<Float>
    var c0_0 = V()
    var c1_0 = V()
    var c2_0 = V()
    var c3_0 = V()
    var c4_0 = V()
    var c5_0 = V()
    if let bias {
        do { let x = V(repeating: bias[min(0, rows - 1)]); c0_0 = x }
        do { let x = V(repeating: bias[min(1, rows - 1)]); c1_0 = x }
        do { let x = V(repeating: bias[min(2, rows - 1)]); c2_0 = x }
        do { let x = V(repeating: bias[min(3, rows - 1)]); c3_0 = x }
        do { let x = V(repeating: bias[min(4, rows - 1)]); c4_0 = x }
        do { let x = V(repeating: bias[min(5, rows - 1)]); c5_0 = x }
    }
    let i0 = UnsafeRawPointer(inputs[0])
    var pa = a
    for p in 0..<k {
        let off = Int(offsets[p]) &* 4
        let b0 = i0.loadUnaligned(fromByteOffset: off, as: V.self)
        do { let x = V(repeating: pa[0]); c0_0 = c0_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[1]); c1_0 = c1_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[2]); c2_0 = c2_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[3]); c3_0 = c3_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[4]); c4_0 = c4_0.addingProduct(x, b0) }
        do { let x = V(repeating: pa[5]); c5_0 = c5_0.addingProduct(x, b0) }
        pa += 6
    }
    do { let o = UnsafeMutableRawPointer(out + 0 * ldo); o.storeBytes(of: c0_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 1 { let o = UnsafeMutableRawPointer(out + 1 * ldo); o.storeBytes(of: c1_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 2 { let o = UnsafeMutableRawPointer(out + 2 * ldo); o.storeBytes(of: c2_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 3 { let o = UnsafeMutableRawPointer(out + 3 * ldo); o.storeBytes(of: c3_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 4 { let o = UnsafeMutableRawPointer(out + 4 * ldo); o.storeBytes(of: c4_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
    if rows > 5 { let o = UnsafeMutableRawPointer(out + 5 * ldo); o.storeBytes(of: c5_0, toByteOffset: outOffsets[0] &* 4, as: V.self) }
}
