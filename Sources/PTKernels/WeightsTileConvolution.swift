// Backward weights of 3-wide kernels with 32, 48, 64, ... (16n) output channels: register tiles over
// (taps x output channels), the sum over output pixels as one fused multiply-add chain per accumulator.
//
// dW[o][c][i][j] = sum over samples and pixels (y, x) of dy[o][y][x] * in[c][y*sh - ph + i][x*sw - pw + j].
// Per sample the input is copied into padded planes (as `directTilesForward`) and dy is transposed to
// dyT[pixel][o], so for one pixel the output channels are whole vectors (loaded) and each tap is one
// scalar of the padded image (broadcast): a tile of G (c, i) groups x 3 columns j x NV vectors of 16
// channels keeps 24-27 accumulators, with NV vector loads and 3G broadcasts per 3G*NV FMAs (as the GEMM
// microkernel), no horizontal sums and no padded-width waste. Tile sums of one sample are added into
// acc[tap][o] (scratch); after the last sample dW[o][tap] += acc[tap][o].
// Summation order: per (sample, tap, o) one chain over the pixels in row-major order, samples added in
// order: a function of the geometry and the call's mb only.
// Measured (`bench kernels`, 1 thread, % of FMA peak, `directBackwardWeights` before -> these tiles):
// CIFAR 32->32 72 -> 74-76, 32->64 66 -> 78-80, 64->64 65 -> 85. CIFAR-small b128: ~555 -> ~595 images/s.

extension ConvKernel {
    /// Whether `backwardWeights` (im2colGemm) runs `tilesBackwardWeights`.
    var weightsTilesApply: Bool {
        let g = geometry
        // ic >= 8: with fewer input channels (the RGB layer) transposing dy costs more than the tiles gain
        // (CIFAR 3->32: 47% of peak with `directBackwardWeights`, 27% here).
        guard g.kw == 3, g.oc % 16 == 0, g.oc >= 32, g.ic >= 8 else { return false }
        let v = g.oc / 16
        return v % 4 == 0 || v % 3 == 0 || v % 2 == 0
    }

    /// (groups G, vectors NV) of the tile: 16*NV output channels per tile.
    static func weightsTileShape(oc: Int) -> (Int, Int) {
        let v = oc / 16
        if v % 4 == 0 { return (2, 4) }
        if v % 3 == 0 { return (3, 3) }
        return (4, 2)
    }

    var weightsTilesScratchCount: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        return 16 + g.ic * planeStride + roundUp(g.oh * g.ow * g.oc, 16) + g.reduction * g.oc + 16 + 16
    }

    func tilesBackwardWeights(mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                              weightGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let (oh, ow, oc) = (g.oh, g.ow, g.oc)
        let p = oh * ow
        let k = g.reduction
        let groupsTotal = g.ic * g.kh
        let (tg, nv) = Self.weightsTileShape(oc: oc)
        let padded = align64(scratch)
        let dyT = padded + g.ic * planeStride
        let acc = dyT + roundUp(p * oc, 16)
        let offsets = UnsafeMutableRawPointer(acc + k * oc).assumingMemoryBound(to: Int.self)   // 4 Ints (8 floats)
        padded.update(repeating: 0, count: g.ic * planeStride)
        acc.update(repeating: 0, count: k * oc)
        let inSize = g.ic * g.ih * g.iw, outSize = oc * p
        for s in 0..<mb {
            let x = input + s * inSize, dy = outputGrad + s * outSize
            for c in 0..<g.ic {
                for y in 0..<g.ih {
                    copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                }
            }
            // Transposed in 16 x 16 blocks (both sides stay within 16 cache lines).
            var q0 = 0
            while q0 < p {
                let qn = min(16, p - q0)
                var o0 = 0
                while o0 < oc {
                    for o in o0..<(o0 + 16) {
                        let src = dy + o * p + q0
                        let d = dyT + q0 * oc + o
                        for q in 0..<qn { d[q * oc] = src[q] }
                    }
                    o0 += 16
                }
                q0 += 16
            }
            var g0 = 0
            while g0 < groupsTotal {
                let groups = min(tg, groupsTotal - g0)
                for t in 0..<4 {
                    let gi = g0 + min(t, groups - 1)
                    let c = gi / g.kh, i = gi % g.kh
                    offsets[t] = c * planeStride + i * wp
                }
                var ob = 0
                while ob < oc {
                    let a = acc + g0 * 3 * oc + ob
                    switch nv {
                    case 4:
                        _convWeightsTile2x3x4(img: padded, groupOffsets: offsets, dyT: dyT + ob, ldy: oc, oh: oh, ow: ow,
                                              rowStep: g.sh * wp, colStep: g.sw, acc: a, ldacc: oc, groups: groups)
                    case 3:
                        _convWeightsTile3x3x3(img: padded, groupOffsets: offsets, dyT: dyT + ob, ldy: oc, oh: oh, ow: ow,
                                              rowStep: g.sh * wp, colStep: g.sw, acc: a, ldacc: oc, groups: groups)
                    default:
                        _convWeightsTile4x3x2(img: padded, groupOffsets: offsets, dyT: dyT + ob, ldy: oc, oh: oh, ow: ow,
                                              rowStep: g.sh * wp, colStep: g.sw, acc: a, ldacc: oc, groups: groups)
                    }
                    ob += 16 * nv
                }
                g0 += tg
            }
        }
        for o in 0..<oc {
            let w = weightGrad + o * k
            for q in 0..<k { w[q] += acc[q * oc + o] }
        }
    }
}

/// 2 (channel, kernel row) groups x 3 kernel columns x 4 vectors of 16 output channels (24 accumulators).
@inline(never)
func _convWeightsTile2x3x4(img: UnsafePointer<Float>, groupOffsets: UnsafePointer<Int>, dyT: UnsafePointer<Float>, ldy: Int,
    oh: Int, ow: Int, rowStep: Int, colStep: Int, acc: UnsafeMutablePointer<Float>, ldacc: Int, groups: Int) {
    typealias V = SIMD16<Float>
    var c0_0_0 = V(), c0_0_1 = V(), c0_0_2 = V(), c0_0_3 = V()
    var c0_1_0 = V(), c0_1_1 = V(), c0_1_2 = V(), c0_1_3 = V()
    var c0_2_0 = V(), c0_2_1 = V(), c0_2_2 = V(), c0_2_3 = V()
    var c1_0_0 = V(), c1_0_1 = V(), c1_0_2 = V(), c1_0_3 = V()
    var c1_1_0 = V(), c1_1_1 = V(), c1_1_2 = V(), c1_1_3 = V()
    var c1_2_0 = V(), c1_2_1 = V(), c1_2_2 = V(), c1_2_3 = V()
    let o0 = groupOffsets[0]
    let o1 = groupOffsets[1]
    for y in 0..<oh {
        var pb = img + y * rowStep
        var pd = UnsafeRawPointer(dyT + y * ow * ldy)
        for _ in 0..<ow {
            let d0 = pd.loadUnaligned(fromByteOffset: 0, as: V.self)
            let d1 = pd.loadUnaligned(fromByteOffset: 64, as: V.self)
            let d2 = pd.loadUnaligned(fromByteOffset: 128, as: V.self)
            let d3 = pd.loadUnaligned(fromByteOffset: 192, as: V.self)
            do {
                let p = pb + o0
                do { let x = V(repeating: p[0]); c0_0_0 = c0_0_0.addingProduct(x, d0); c0_0_1 = c0_0_1.addingProduct(x, d1); c0_0_2 = c0_0_2.addingProduct(x, d2); c0_0_3 = c0_0_3.addingProduct(x, d3) }
                do { let x = V(repeating: p[1]); c0_1_0 = c0_1_0.addingProduct(x, d0); c0_1_1 = c0_1_1.addingProduct(x, d1); c0_1_2 = c0_1_2.addingProduct(x, d2); c0_1_3 = c0_1_3.addingProduct(x, d3) }
                do { let x = V(repeating: p[2]); c0_2_0 = c0_2_0.addingProduct(x, d0); c0_2_1 = c0_2_1.addingProduct(x, d1); c0_2_2 = c0_2_2.addingProduct(x, d2); c0_2_3 = c0_2_3.addingProduct(x, d3) }
            }
            do {
                let p = pb + o1
                do { let x = V(repeating: p[0]); c1_0_0 = c1_0_0.addingProduct(x, d0); c1_0_1 = c1_0_1.addingProduct(x, d1); c1_0_2 = c1_0_2.addingProduct(x, d2); c1_0_3 = c1_0_3.addingProduct(x, d3) }
                do { let x = V(repeating: p[1]); c1_1_0 = c1_1_0.addingProduct(x, d0); c1_1_1 = c1_1_1.addingProduct(x, d1); c1_1_2 = c1_1_2.addingProduct(x, d2); c1_1_3 = c1_1_3.addingProduct(x, d3) }
                do { let x = V(repeating: p[2]); c1_2_0 = c1_2_0.addingProduct(x, d0); c1_2_1 = c1_2_1.addingProduct(x, d1); c1_2_2 = c1_2_2.addingProduct(x, d2); c1_2_3 = c1_2_3.addingProduct(x, d3) }
            }
            pb += colStep; pd += ldy &* 4
        }
    }
    @inline(__always) func add(_ v: V, _ tap: Int, _ lane: Int) {
        let r = UnsafeMutableRawPointer(acc + tap * ldacc + lane * 16)
        r.storeBytes(of: r.loadUnaligned(as: V.self) + v, as: V.self)
    }
    do { add(c0_0_0, 0, 0); add(c0_0_1, 0, 1); add(c0_0_2, 0, 2); add(c0_0_3, 0, 3); add(c0_1_0, 1, 0); add(c0_1_1, 1, 1); add(c0_1_2, 1, 2); add(c0_1_3, 1, 3); add(c0_2_0, 2, 0); add(c0_2_1, 2, 1); add(c0_2_2, 2, 2); add(c0_2_3, 2, 3) }
    if groups > 1 { add(c1_0_0, 3, 0); add(c1_0_1, 3, 1); add(c1_0_2, 3, 2); add(c1_0_3, 3, 3); add(c1_1_0, 4, 0); add(c1_1_1, 4, 1); add(c1_1_2, 4, 2); add(c1_1_3, 4, 3); add(c1_2_0, 5, 0); add(c1_2_1, 5, 1); add(c1_2_2, 5, 2); add(c1_2_3, 5, 3) }
}

/// 3 (channel, kernel row) groups x 3 kernel columns x 3 vectors of 16 output channels (27 accumulators).
@inline(never)
func _convWeightsTile3x3x3(img: UnsafePointer<Float>, groupOffsets: UnsafePointer<Int>, dyT: UnsafePointer<Float>, ldy: Int,
    oh: Int, ow: Int, rowStep: Int, colStep: Int, acc: UnsafeMutablePointer<Float>, ldacc: Int, groups: Int) {
    typealias V = SIMD16<Float>
    var c0_0_0 = V(), c0_0_1 = V(), c0_0_2 = V()
    var c0_1_0 = V(), c0_1_1 = V(), c0_1_2 = V()
    var c0_2_0 = V(), c0_2_1 = V(), c0_2_2 = V()
    var c1_0_0 = V(), c1_0_1 = V(), c1_0_2 = V()
    var c1_1_0 = V(), c1_1_1 = V(), c1_1_2 = V()
    var c1_2_0 = V(), c1_2_1 = V(), c1_2_2 = V()
    var c2_0_0 = V(), c2_0_1 = V(), c2_0_2 = V()
    var c2_1_0 = V(), c2_1_1 = V(), c2_1_2 = V()
    var c2_2_0 = V(), c2_2_1 = V(), c2_2_2 = V()
    let o0 = groupOffsets[0]
    let o1 = groupOffsets[1]
    let o2 = groupOffsets[2]
    for y in 0..<oh {
        var pb = img + y * rowStep
        var pd = UnsafeRawPointer(dyT + y * ow * ldy)
        for _ in 0..<ow {
            let d0 = pd.loadUnaligned(fromByteOffset: 0, as: V.self)
            let d1 = pd.loadUnaligned(fromByteOffset: 64, as: V.self)
            let d2 = pd.loadUnaligned(fromByteOffset: 128, as: V.self)
            do {
                let p = pb + o0
                do { let x = V(repeating: p[0]); c0_0_0 = c0_0_0.addingProduct(x, d0); c0_0_1 = c0_0_1.addingProduct(x, d1); c0_0_2 = c0_0_2.addingProduct(x, d2) }
                do { let x = V(repeating: p[1]); c0_1_0 = c0_1_0.addingProduct(x, d0); c0_1_1 = c0_1_1.addingProduct(x, d1); c0_1_2 = c0_1_2.addingProduct(x, d2) }
                do { let x = V(repeating: p[2]); c0_2_0 = c0_2_0.addingProduct(x, d0); c0_2_1 = c0_2_1.addingProduct(x, d1); c0_2_2 = c0_2_2.addingProduct(x, d2) }
            }
            do {
                let p = pb + o1
                do { let x = V(repeating: p[0]); c1_0_0 = c1_0_0.addingProduct(x, d0); c1_0_1 = c1_0_1.addingProduct(x, d1); c1_0_2 = c1_0_2.addingProduct(x, d2) }
                do { let x = V(repeating: p[1]); c1_1_0 = c1_1_0.addingProduct(x, d0); c1_1_1 = c1_1_1.addingProduct(x, d1); c1_1_2 = c1_1_2.addingProduct(x, d2) }
                do { let x = V(repeating: p[2]); c1_2_0 = c1_2_0.addingProduct(x, d0); c1_2_1 = c1_2_1.addingProduct(x, d1); c1_2_2 = c1_2_2.addingProduct(x, d2) }
            }
            do {
                let p = pb + o2
                do { let x = V(repeating: p[0]); c2_0_0 = c2_0_0.addingProduct(x, d0); c2_0_1 = c2_0_1.addingProduct(x, d1); c2_0_2 = c2_0_2.addingProduct(x, d2) }
                do { let x = V(repeating: p[1]); c2_1_0 = c2_1_0.addingProduct(x, d0); c2_1_1 = c2_1_1.addingProduct(x, d1); c2_1_2 = c2_1_2.addingProduct(x, d2) }
                do { let x = V(repeating: p[2]); c2_2_0 = c2_2_0.addingProduct(x, d0); c2_2_1 = c2_2_1.addingProduct(x, d1); c2_2_2 = c2_2_2.addingProduct(x, d2) }
            }
            pb += colStep; pd += ldy &* 4
        }
    }
    @inline(__always) func add(_ v: V, _ tap: Int, _ lane: Int) {
        let r = UnsafeMutableRawPointer(acc + tap * ldacc + lane * 16)
        r.storeBytes(of: r.loadUnaligned(as: V.self) + v, as: V.self)
    }
    do { add(c0_0_0, 0, 0); add(c0_0_1, 0, 1); add(c0_0_2, 0, 2); add(c0_1_0, 1, 0); add(c0_1_1, 1, 1); add(c0_1_2, 1, 2); add(c0_2_0, 2, 0); add(c0_2_1, 2, 1); add(c0_2_2, 2, 2) }
    if groups > 1 { add(c1_0_0, 3, 0); add(c1_0_1, 3, 1); add(c1_0_2, 3, 2); add(c1_1_0, 4, 0); add(c1_1_1, 4, 1); add(c1_1_2, 4, 2); add(c1_2_0, 5, 0); add(c1_2_1, 5, 1); add(c1_2_2, 5, 2) }
    if groups > 2 { add(c2_0_0, 6, 0); add(c2_0_1, 6, 1); add(c2_0_2, 6, 2); add(c2_1_0, 7, 0); add(c2_1_1, 7, 1); add(c2_1_2, 7, 2); add(c2_2_0, 8, 0); add(c2_2_1, 8, 1); add(c2_2_2, 8, 2) }
}

/// 4 (channel, kernel row) groups x 3 kernel columns x 2 vectors of 16 output channels (24 accumulators).
@inline(never)
func _convWeightsTile4x3x2(img: UnsafePointer<Float>, groupOffsets: UnsafePointer<Int>, dyT: UnsafePointer<Float>, ldy: Int,
    oh: Int, ow: Int, rowStep: Int, colStep: Int, acc: UnsafeMutablePointer<Float>, ldacc: Int, groups: Int) {
    typealias V = SIMD16<Float>
    var c0_0_0 = V(), c0_0_1 = V()
    var c0_1_0 = V(), c0_1_1 = V()
    var c0_2_0 = V(), c0_2_1 = V()
    var c1_0_0 = V(), c1_0_1 = V()
    var c1_1_0 = V(), c1_1_1 = V()
    var c1_2_0 = V(), c1_2_1 = V()
    var c2_0_0 = V(), c2_0_1 = V()
    var c2_1_0 = V(), c2_1_1 = V()
    var c2_2_0 = V(), c2_2_1 = V()
    var c3_0_0 = V(), c3_0_1 = V()
    var c3_1_0 = V(), c3_1_1 = V()
    var c3_2_0 = V(), c3_2_1 = V()
    let o0 = groupOffsets[0]
    let o1 = groupOffsets[1]
    let o2 = groupOffsets[2]
    let o3 = groupOffsets[3]
    for y in 0..<oh {
        var pb = img + y * rowStep
        var pd = UnsafeRawPointer(dyT + y * ow * ldy)
        for _ in 0..<ow {
            let d0 = pd.loadUnaligned(fromByteOffset: 0, as: V.self)
            let d1 = pd.loadUnaligned(fromByteOffset: 64, as: V.self)
            do {
                let p = pb + o0
                do { let x = V(repeating: p[0]); c0_0_0 = c0_0_0.addingProduct(x, d0); c0_0_1 = c0_0_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[1]); c0_1_0 = c0_1_0.addingProduct(x, d0); c0_1_1 = c0_1_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[2]); c0_2_0 = c0_2_0.addingProduct(x, d0); c0_2_1 = c0_2_1.addingProduct(x, d1) }
            }
            do {
                let p = pb + o1
                do { let x = V(repeating: p[0]); c1_0_0 = c1_0_0.addingProduct(x, d0); c1_0_1 = c1_0_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[1]); c1_1_0 = c1_1_0.addingProduct(x, d0); c1_1_1 = c1_1_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[2]); c1_2_0 = c1_2_0.addingProduct(x, d0); c1_2_1 = c1_2_1.addingProduct(x, d1) }
            }
            do {
                let p = pb + o2
                do { let x = V(repeating: p[0]); c2_0_0 = c2_0_0.addingProduct(x, d0); c2_0_1 = c2_0_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[1]); c2_1_0 = c2_1_0.addingProduct(x, d0); c2_1_1 = c2_1_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[2]); c2_2_0 = c2_2_0.addingProduct(x, d0); c2_2_1 = c2_2_1.addingProduct(x, d1) }
            }
            do {
                let p = pb + o3
                do { let x = V(repeating: p[0]); c3_0_0 = c3_0_0.addingProduct(x, d0); c3_0_1 = c3_0_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[1]); c3_1_0 = c3_1_0.addingProduct(x, d0); c3_1_1 = c3_1_1.addingProduct(x, d1) }
                do { let x = V(repeating: p[2]); c3_2_0 = c3_2_0.addingProduct(x, d0); c3_2_1 = c3_2_1.addingProduct(x, d1) }
            }
            pb += colStep; pd += ldy &* 4
        }
    }
    @inline(__always) func add(_ v: V, _ tap: Int, _ lane: Int) {
        let r = UnsafeMutableRawPointer(acc + tap * ldacc + lane * 16)
        r.storeBytes(of: r.loadUnaligned(as: V.self) + v, as: V.self)
    }
    do { add(c0_0_0, 0, 0); add(c0_0_1, 0, 1); add(c0_1_0, 1, 0); add(c0_1_1, 1, 1); add(c0_2_0, 2, 0); add(c0_2_1, 2, 1) }
    if groups > 1 { add(c1_0_0, 3, 0); add(c1_0_1, 3, 1); add(c1_1_0, 4, 0); add(c1_1_1, 4, 1); add(c1_2_0, 5, 0); add(c1_2_1, 5, 1) }
    if groups > 2 { add(c2_0_0, 6, 0); add(c2_0_1, 6, 1); add(c2_1_0, 7, 0); add(c2_1_1, 7, 1); add(c2_2_0, 8, 0); add(c2_2_1, 8, 1) }
    if groups > 3 { add(c3_0_0, 9, 0); add(c3_0_1, 9, 1); add(c3_1_0, 10, 0); add(c3_1_1, 10, 1); add(c3_2_0, 11, 0); add(c3_2_1, 11, 1) }
}
