// Direct forward convolution for stride 1 and few output channels (LeNet: oc = 6, 16), where an
// unfolded (im2col) matrix would cost more to write than the GEMM on it saves.
//
// The trick: pad each input plane once into scratch (Hp x Wp) and compute the output on the padded
// width: out'[o][q] with q = y*Wp + x reads pad[c][q + i*Wp + j] for every tap, so each tap is one
// contiguous vector load for 32 consecutive q, whatever row they fall in. Columns x >= ow are computed
// and dropped. Register tile: up to 6 output channels x 32 q (12 SIMD16 accumulators); per tap
// 2 loads + 6 weight broadcasts for 12 FMAs.

/// Row pitch of the padded planes. Rows share their zero padding: row y's right padding is row y+1's
/// left padding, so a pitch of iw + pw suffices when pw <= kw - 1 (an output column reading left of
/// its row lands in the previous row's zero tail, one reading right in its own). LeNet conv1 32 -> 30,
/// the transposed LeNet conv2 (backward data, pw' = 4) 18 -> 14, CIFAR 3x3 34 -> 33: fewer wasted FMAs
/// on the columns x >= ow.
@inline(__always)
func directPaddedWidth(_ g: ConvGeometry) -> Int { g.pw <= g.kw - 1 ? g.iw + g.pw : g.iw + 2 * g.pw }

extension ConvKernel {
    /// Scratch floats for `directForward`: the padded sample and the padded-width output of one sample.
    static func directScratchCount(_ g: ConvGeometry) -> Int {
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let q = roundUp(g.oh * wp, 16)
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let packed = max(roundUp(g.oc, 8), roundUp(g.oc, 6)) * g.reduction
        return g.ic * planeStride + g.oc * q + 32 + roundUp(packed, 16) + roundUp(g.reduction, 16) + 16
    }

    func directForward(mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                       output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let (oh, ow) = (g.oh, g.ow)
        let qCount = roundUp(oh * wp, 16)   // 32-wide tiles, then at most one 16-wide one
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let padded = align64(scratch)
        let full = padded + g.ic * planeStride
        // Register tiles of `_runConvTiles` (8 or 6 channels x 3 or 4 vectors of 16 q) over the padded width.
        // LeNet b64, 1 thread: see `ConvKernel.directTileShape`; the 6 x 32 `_directTile` gave conv1 66%,
        // conv2 54% of peak forward.
        // Only when they pad fewer output channels than the 6 x 32 tiles below (LeNet conv2 forward: 16 rows
        // against 18: 54% -> 60% of peak). With as many rows (LeNet conv1 forward, conv2 backward data) both
        // measured the same, so those keep the 6 x 32 tiles.
        let vectors = qCount / 16
        let (mr, nv) = Self.directTileShape(oc: g.oc, vectors: vectors)
        let useTiles = roundUp(g.oc, mr) < roundUp(g.oc, 6) && Self.tapOffsetsFitInt32(g)
        let packed = align64(full + g.oc * qCount)
        let packedCount = roundUp(roundUp(g.oc, mr) * g.reduction, 16)
        let offsets = UnsafeMutableRawPointer(packed + packedCount).assumingMemoryBound(to: Int32.self)
        if useTiles {
            _prepareConvTiles(g, wp: wp, planeStride: planeStride, mr: mr, weight: weight, packed: packed, offsets: offsets)
        }
        let taps = g.kh * g.kw
        padded.update(repeating: 0, count: g.ic * planeStride)   // borders stay zero; interiors are rewritten
        for s in 0..<mb {
            let x = input + s * g.ic * g.ih * g.iw
            for c in 0..<g.ic {
                for y in 0..<g.ih {
                    copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                }
            }
            if useTiles {
                _runConvTiles(mr: mr, nv: nv, k: g.reduction, oc: g.oc, packed: packed, offsets: offsets, vectors: vectors,
                              input: padded, inPos: { v in v * 16 }, out: full, ldo: qCount, outPos: { v in v * 16 }, bias: nil)
            } else {
                var o0 = 0
                while o0 < g.oc {
                    let count = min(6, g.oc - o0)
                    var q = 0
                    // A single output channel (LeNet conv1's backward data, run as the transposed
                    // convolution with oc = 1) would waste 5 of the 6 tile rows: 8 vectors of one row.
                    while count == 1 && q + 128 <= qCount {
                        _directTileSingle(ic: g.ic, kh: g.kh, kw: g.kw, wp: wp, planeStride: planeStride, input: padded + q,
                                          weight: weight + o0 * g.ic * taps, out: full + o0 * qCount + q)
                        q += 128
                    }
                    while q + 32 <= qCount {
                        _directTile(ic: g.ic, kh: g.kh, kw: g.kw, wp: wp, planeStride: planeStride, input: padded + q,
                                    weight: weight + o0 * g.ic * taps, outputs: count, out: full + o0 * qCount + q, ldo: qCount)
                        q += 32
                    }
                    if q < qCount {
                        _directTile16(ic: g.ic, kh: g.kh, kw: g.kw, wp: wp, planeStride: planeStride, input: padded + q,
                                      weight: weight + o0 * g.ic * taps, outputs: count, out: full + o0 * qCount + q, ldo: qCount)
                    }
                    o0 += count
                }
            }
            let out = output + s * g.oc * oh * ow
            for o in 0..<g.oc {
                let b = bias?[o] ?? 0
                for y in 0..<oh { copyAddingConstant(out + (o * oh + y) * ow, full + o * qCount + y * wp, b, ow) }
            }
        }
    }
}

/// out[r][0..<32] = sum over c, i, j of w[r][c][i][j] * in[c*planeStride + i*wp + j + 0..<32], r < outputs (<= 6).
/// Missing output channels re-use the last weight row and are not stored.
@inline(never)
func _directTile(ic: Int, kh: Int, kw: Int, wp: Int, planeStride: Int, input: UnsafePointer<Float>,
                 weight: UnsafePointer<Float>, outputs: Int, out: UnsafeMutablePointer<Float>, ldo: Int) {
    typealias V = SIMD16<Float>
    let taps = kh * kw
    let wstride = ic * taps
    let w0 = weight, w1 = weight + min(1, outputs - 1) * wstride, w2 = weight + min(2, outputs - 1) * wstride
    let w3 = weight + min(3, outputs - 1) * wstride, w4 = weight + min(4, outputs - 1) * wstride
    let w5 = weight + min(5, outputs - 1) * wstride
    var a0 = V(), b0 = V(), a1 = V(), b1 = V(), a2 = V(), b2 = V()
    var a3 = V(), b3 = V(), a4 = V(), b4 = V(), a5 = V(), b5 = V()
    var t = 0
    for c in 0..<ic {
        let plane = UnsafeRawPointer(input + c * planeStride)
        for i in 0..<kh {
            let row = plane + 4 * i * wp
            for j in 0..<kw {
                let u = row.loadUnaligned(fromByteOffset: 4 * j, as: V.self)
                let v = row.loadUnaligned(fromByteOffset: 4 * j + 64, as: V.self)
                var s = V(repeating: w0[t]); a0 = a0.addingProduct(s, u); b0 = b0.addingProduct(s, v)
                s = V(repeating: w1[t]); a1 = a1.addingProduct(s, u); b1 = b1.addingProduct(s, v)
                s = V(repeating: w2[t]); a2 = a2.addingProduct(s, u); b2 = b2.addingProduct(s, v)
                s = V(repeating: w3[t]); a3 = a3.addingProduct(s, u); b3 = b3.addingProduct(s, v)
                s = V(repeating: w4[t]); a4 = a4.addingProduct(s, u); b4 = b4.addingProduct(s, v)
                s = V(repeating: w5[t]); a5 = a5.addingProduct(s, u); b5 = b5.addingProduct(s, v)
                t += 1
            }
        }
    }
    @inline(__always) func store(_ r: Int, _ a: V, _ b: V) {
        guard r < outputs else { return }
        let d = UnsafeMutableRawPointer(out + r * ldo)
        d.storeBytes(of: a, as: V.self)
        d.storeBytes(of: b, toByteOffset: 64, as: V.self)
    }
    store(0, a0, b0); store(1, a1, b1); store(2, a2, b2); store(3, a3, b3); store(4, a4, b4); store(5, a5, b5)
}

/// out[0..<128] = sum over c, i, j of w[c][i][j] * in[c*planeStride + i*wp + j + 0..<128]: one output
/// channel, 8 independent accumulators (enough to hide the FMA latency). Same summation order per
/// output as `_directTile`, so the two give identical results.
@inline(never)
func _directTileSingle(ic: Int, kh: Int, kw: Int, wp: Int, planeStride: Int, input: UnsafePointer<Float>,
                       weight: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
    typealias V = SIMD16<Float>
    var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V(), a6 = V(), a7 = V()
    var t = 0
    for c in 0..<ic {
        let plane = UnsafeRawPointer(input + c * planeStride)
        for i in 0..<kh {
            let row = plane + 4 * i * wp
            for j in 0..<kw {
                let s = V(repeating: weight[t])
                let base = 4 * j
                a0 = a0.addingProduct(s, row.loadUnaligned(fromByteOffset: base, as: V.self))
                a1 = a1.addingProduct(s, row.loadUnaligned(fromByteOffset: base + 64, as: V.self))
                a2 = a2.addingProduct(s, row.loadUnaligned(fromByteOffset: base + 128, as: V.self))
                a3 = a3.addingProduct(s, row.loadUnaligned(fromByteOffset: base + 192, as: V.self))
                a4 = a4.addingProduct(s, row.loadUnaligned(fromByteOffset: base + 256, as: V.self))
                a5 = a5.addingProduct(s, row.loadUnaligned(fromByteOffset: base + 320, as: V.self))
                a6 = a6.addingProduct(s, row.loadUnaligned(fromByteOffset: base + 384, as: V.self))
                a7 = a7.addingProduct(s, row.loadUnaligned(fromByteOffset: base + 448, as: V.self))
                t += 1
            }
        }
    }
    let d = UnsafeMutableRawPointer(out)
    d.storeBytes(of: a0, as: V.self); d.storeBytes(of: a1, toByteOffset: 64, as: V.self)
    d.storeBytes(of: a2, toByteOffset: 128, as: V.self); d.storeBytes(of: a3, toByteOffset: 192, as: V.self)
    d.storeBytes(of: a4, toByteOffset: 256, as: V.self); d.storeBytes(of: a5, toByteOffset: 320, as: V.self)
    d.storeBytes(of: a6, toByteOffset: 384, as: V.self); d.storeBytes(of: a7, toByteOffset: 448, as: V.self)
}

/// `_directTile` for the last 16 q of a plane (6 accumulators).
@inline(never)
func _directTile16(ic: Int, kh: Int, kw: Int, wp: Int, planeStride: Int, input: UnsafePointer<Float>,
                   weight: UnsafePointer<Float>, outputs: Int, out: UnsafeMutablePointer<Float>, ldo: Int) {
    typealias V = SIMD16<Float>
    let taps = kh * kw
    let wstride = ic * taps
    let w0 = weight, w1 = weight + min(1, outputs - 1) * wstride, w2 = weight + min(2, outputs - 1) * wstride
    let w3 = weight + min(3, outputs - 1) * wstride, w4 = weight + min(4, outputs - 1) * wstride
    let w5 = weight + min(5, outputs - 1) * wstride
    var a0 = V(), a1 = V(), a2 = V(), a3 = V(), a4 = V(), a5 = V()
    var t = 0
    for c in 0..<ic {
        let plane = UnsafeRawPointer(input + c * planeStride)
        for i in 0..<kh {
            let row = plane + 4 * i * wp
            for j in 0..<kw {
                let u = row.loadUnaligned(fromByteOffset: 4 * j, as: V.self)
                a0 = a0.addingProduct(V(repeating: w0[t]), u); a1 = a1.addingProduct(V(repeating: w1[t]), u)
                a2 = a2.addingProduct(V(repeating: w2[t]), u); a3 = a3.addingProduct(V(repeating: w3[t]), u)
                a4 = a4.addingProduct(V(repeating: w4[t]), u); a5 = a5.addingProduct(V(repeating: w5[t]), u)
                t += 1
            }
        }
    }
    @inline(__always) func store(_ r: Int, _ a: V) {
        guard r < outputs else { return }
        UnsafeMutableRawPointer(out + r * ldo).storeBytes(of: a, as: V.self)
    }
    store(0, a0); store(1, a1); store(2, a2); store(3, a3); store(4, a4); store(5, a5)
}

// MARK: Backward weights without unfolding

// dW[o][c][i][j] = sum over samples and output pixels of dOut[o][y][x] * pad[c][y+i][x+j]. On the padded
// width (q = y*Wp + x, with dOut' zero for x >= ow) that is a dot product of two contiguous vectors:
// dOut'[o][0..<L] . pad[c][i*Wp + j + 0..<L]. So each tap is a shifted view of the padded plane and
// nothing is unfolded (LeNet: im2col + the inner-product GEMM were ~30% of a step).

extension ConvKernel {
    /// Padded-width length of one sample's output gradient row block, rounded to whole vectors.
    static func directWeightsLength(_ g: ConvGeometry) -> Int { roundUp(g.oh * directPaddedWidth(g), 16) }

    /// Samples handled per pass of `directBackwardWeights`: as many as keep the group's padded inputs and
    /// output gradients within ~768 KiB (L2 is 1 MiB), so each tile's lane sums are amortised over
    /// several samples. Fixed by the geometry (its mb), so the summation order depends only on the shard size.
    var directWeightsGroup: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let perSample = g.ic * roundUp(hp * wp + 32 + g.kw, 16) + g.oc * Self.directWeightsLength(g)
        return max(1, min(max(g.mb, 1), 196_608 / perSample))
    }

    /// Whether backward weights runs `directBackwardWeights`: stride 1, and for `im2colGemm` layers only
    /// when the padded width wastes at most 1/8 of the FMAs. CIFAR-small b128 (shards of 16, 1 thread):
    /// 436 -> 468 and 417 -> 450 images/s against im2col + `sgemmDotNT` for all four 3x3 layers; 32x32
    /// layers only: 455 / 437.
    var backwardWeightsDirect: Bool {
        let g = geometry
        guard g.sh == 1 && g.sw == 1, implementation == .directSmall || implementation == .im2colGemm else { return false }
        if implementation == .directSmall { return true }
        return 8 * Self.directWeightsLength(g) <= 9 * g.oh * g.ow
    }

    var directWeightsScratchCount: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        return directWeightsGroup * (g.ic * planeStride + g.oc * Self.directWeightsLength(g)) + 32
    }

    func directBackwardWeights(mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                               weightGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let (oh, ow) = (g.oh, g.ow)
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let length = Self.directWeightsLength(g)
        let group = directWeightsGroup
        let inStride = g.ic * planeStride, gradStride = g.oc * length
        let padded = align64(scratch)
        let grads = padded + group * inStride
        // Borders, the columns x >= ow and the tails stay zero; interiors are rewritten per group.
        padded.update(repeating: 0, count: group * (inStride + gradStride))
        let taps = g.kh * g.kw, reduction = g.ic * taps
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * oh * ow
        var s0 = 0
        while s0 < mb {
            let count = min(group, mb - s0)
            for t in 0..<count {
                let x = input + (s0 + t) * inSize, dy = outputGrad + (s0 + t) * outSize
                for c in 0..<g.ic {
                    for y in 0..<g.ih {
                        copyFloats(padded + t * inStride + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                    }
                }
                for o in 0..<g.oc {
                    for y in 0..<oh { copyFloats(grads + t * gradStride + o * length + y * wp, dy + (o * oh + y) * ow, ow) }
                }
            }
            // Tile: 4 channels x 6 taps, or 6 x 4 when that pads less (LeNet conv1: 6 channels x 25 taps
            // computes 6 x 28 instead of 8 x 30).
            let wide = roundUp(g.oc, 6) * roundUp(reduction, 4) < roundUp(g.oc, 4) * roundUp(reduction, 6)
            let tileRows = wide ? 6 : 4, tileCols = wide ? 4 : 6
            var tap = 0
            while tap < reduction {
                let cols = min(tileCols, reduction - tap)
                @inline(__always) func offset(_ k: Int) -> Int {
                    let r = tap + min(k, cols - 1)
                    let c = r / taps, i = (r % taps) / g.kw, j = r % g.kw
                    return c * planeStride + i * wp + j
                }
                let offsets = (offset(0), offset(1), offset(2), offset(3), offset(4), offset(5))
                var o0 = 0
                while o0 < g.oc {
                    let rows = min(tileRows, g.oc - o0)
                    if wide {
                        _directWeightsTile6x4(samples: count, length: length, a: grads + o0 * length, lda: length,
                                              aStride: gradStride, rows: rows, b: padded, bStride: inStride,
                                              offsets: (offsets.0, offsets.1, offsets.2, offsets.3), cols: cols,
                                              c: weightGrad + o0 * reduction + tap, ldc: reduction)
                    } else {
                        _directWeightsTile(samples: count, length: length, a: grads + o0 * length, lda: length, aStride: gradStride,
                                           rows: rows, b: padded, bStride: inStride, offsets: offsets, cols: cols,
                                           c: weightGrad + o0 * reduction + tap, ldc: reduction)
                    }
                    o0 += tileRows
                }
                tap += tileCols
            }
            s0 += count
        }
    }
}

/// c[r][k] += sum over samples t and q < length of a[t*aStride + r*lda + q] * b[t*bStride + offsets.k + q],
/// r < rows (<= 4), k < cols (<= 6). Per element: 16 lane-chains over (t, q), a fixed-order lane sum,
/// one add into c. Missing rows re-read the last valid one and are not stored (offsets repeat the last
/// valid tap).
@inline(never)
func _directWeightsTile(samples: Int, length: Int, a: UnsafePointer<Float>, lda: Int, aStride: Int, rows: Int,
                        b: UnsafePointer<Float>, bStride: Int, offsets: (Int, Int, Int, Int, Int, Int), cols: Int,
                        c: UnsafeMutablePointer<Float>, ldc: Int) {
    typealias V = SIMD16<Float>
    var c00 = V(), c01 = V(), c02 = V(), c03 = V(), c04 = V(), c05 = V()
    var c10 = V(), c11 = V(), c12 = V(), c13 = V(), c14 = V(), c15 = V()
    var c20 = V(), c21 = V(), c22 = V(), c23 = V(), c24 = V(), c25 = V()
    var c30 = V(), c31 = V(), c32 = V(), c33 = V(), c34 = V(), c35 = V()
    for t in 0..<samples {
        let at = a + t * aStride, bt = b + t * bStride
        let a0 = UnsafeRawPointer(at), a1 = UnsafeRawPointer(at + min(1, rows - 1) * lda)
        let a2 = UnsafeRawPointer(at + min(2, rows - 1) * lda), a3 = UnsafeRawPointer(at + min(3, rows - 1) * lda)
        let b0 = UnsafeRawPointer(bt + offsets.0), b1 = UnsafeRawPointer(bt + offsets.1)
        let b2 = UnsafeRawPointer(bt + offsets.2), b3 = UnsafeRawPointer(bt + offsets.3)
        let b4 = UnsafeRawPointer(bt + offsets.4), b5 = UnsafeRawPointer(bt + offsets.5)
        var o = 0
        while o < length * 4 {
            let x0 = b0.loadUnaligned(fromByteOffset: o, as: V.self), x1 = b1.loadUnaligned(fromByteOffset: o, as: V.self)
            let x2 = b2.loadUnaligned(fromByteOffset: o, as: V.self), x3 = b3.loadUnaligned(fromByteOffset: o, as: V.self)
            let x4 = b4.loadUnaligned(fromByteOffset: o, as: V.self), x5 = b5.loadUnaligned(fromByteOffset: o, as: V.self)
            var y = a0.loadUnaligned(fromByteOffset: o, as: V.self)
            c00 = c00.addingProduct(y, x0); c01 = c01.addingProduct(y, x1); c02 = c02.addingProduct(y, x2)
            c03 = c03.addingProduct(y, x3); c04 = c04.addingProduct(y, x4); c05 = c05.addingProduct(y, x5)
            y = a1.loadUnaligned(fromByteOffset: o, as: V.self)
            c10 = c10.addingProduct(y, x0); c11 = c11.addingProduct(y, x1); c12 = c12.addingProduct(y, x2)
            c13 = c13.addingProduct(y, x3); c14 = c14.addingProduct(y, x4); c15 = c15.addingProduct(y, x5)
            y = a2.loadUnaligned(fromByteOffset: o, as: V.self)
            c20 = c20.addingProduct(y, x0); c21 = c21.addingProduct(y, x1); c22 = c22.addingProduct(y, x2)
            c23 = c23.addingProduct(y, x3); c24 = c24.addingProduct(y, x4); c25 = c25.addingProduct(y, x5)
            y = a3.loadUnaligned(fromByteOffset: o, as: V.self)
            c30 = c30.addingProduct(y, x0); c31 = c31.addingProduct(y, x1); c32 = c32.addingProduct(y, x2)
            c33 = c33.addingProduct(y, x3); c34 = c34.addingProduct(y, x4); c35 = c35.addingProduct(y, x5)
            o += 64
        }
    }
    @inline(__always) func finish(_ acc: V, _ r: Int, _ q: Int) {
        guard r < rows && q < cols else { return }
        c[r * ldc + q] += _laneSum(acc)
    }
    finish(c00, 0, 0); finish(c01, 0, 1); finish(c02, 0, 2); finish(c03, 0, 3); finish(c04, 0, 4); finish(c05, 0, 5)
    finish(c10, 1, 0); finish(c11, 1, 1); finish(c12, 1, 2); finish(c13, 1, 3); finish(c14, 1, 4); finish(c15, 1, 5)
    finish(c20, 2, 0); finish(c21, 2, 1); finish(c22, 2, 2); finish(c23, 2, 3); finish(c24, 2, 4); finish(c25, 2, 5)
    finish(c30, 3, 0); finish(c31, 3, 1); finish(c32, 3, 2); finish(c33, 3, 3); finish(c34, 3, 4); finish(c35, 3, 5)
}

/// `_directWeightsTile` with 6 rows (channels) x 4 taps; same per-element summation order.
@inline(never)
func _directWeightsTile6x4(samples: Int, length: Int, a: UnsafePointer<Float>, lda: Int, aStride: Int, rows: Int,
                           b: UnsafePointer<Float>, bStride: Int, offsets: (Int, Int, Int, Int), cols: Int,
                           c: UnsafeMutablePointer<Float>, ldc: Int) {
    typealias V = SIMD16<Float>
    var c00 = V(), c01 = V(), c02 = V(), c03 = V(), c10 = V(), c11 = V(), c12 = V(), c13 = V()
    var c20 = V(), c21 = V(), c22 = V(), c23 = V(), c30 = V(), c31 = V(), c32 = V(), c33 = V()
    var c40 = V(), c41 = V(), c42 = V(), c43 = V(), c50 = V(), c51 = V(), c52 = V(), c53 = V()
    for t in 0..<samples {
        let at = a + t * aStride, bt = b + t * bStride
        let a0 = UnsafeRawPointer(at), a1 = UnsafeRawPointer(at + min(1, rows - 1) * lda)
        let a2 = UnsafeRawPointer(at + min(2, rows - 1) * lda), a3 = UnsafeRawPointer(at + min(3, rows - 1) * lda)
        let a4 = UnsafeRawPointer(at + min(4, rows - 1) * lda), a5 = UnsafeRawPointer(at + min(5, rows - 1) * lda)
        let b0 = UnsafeRawPointer(bt + offsets.0), b1 = UnsafeRawPointer(bt + offsets.1)
        let b2 = UnsafeRawPointer(bt + offsets.2), b3 = UnsafeRawPointer(bt + offsets.3)
        var o = 0
        while o < length * 4 {
            let x0 = b0.loadUnaligned(fromByteOffset: o, as: V.self), x1 = b1.loadUnaligned(fromByteOffset: o, as: V.self)
            let x2 = b2.loadUnaligned(fromByteOffset: o, as: V.self), x3 = b3.loadUnaligned(fromByteOffset: o, as: V.self)
            var y = a0.loadUnaligned(fromByteOffset: o, as: V.self)
            c00 = c00.addingProduct(y, x0); c01 = c01.addingProduct(y, x1); c02 = c02.addingProduct(y, x2); c03 = c03.addingProduct(y, x3)
            y = a1.loadUnaligned(fromByteOffset: o, as: V.self)
            c10 = c10.addingProduct(y, x0); c11 = c11.addingProduct(y, x1); c12 = c12.addingProduct(y, x2); c13 = c13.addingProduct(y, x3)
            y = a2.loadUnaligned(fromByteOffset: o, as: V.self)
            c20 = c20.addingProduct(y, x0); c21 = c21.addingProduct(y, x1); c22 = c22.addingProduct(y, x2); c23 = c23.addingProduct(y, x3)
            y = a3.loadUnaligned(fromByteOffset: o, as: V.self)
            c30 = c30.addingProduct(y, x0); c31 = c31.addingProduct(y, x1); c32 = c32.addingProduct(y, x2); c33 = c33.addingProduct(y, x3)
            y = a4.loadUnaligned(fromByteOffset: o, as: V.self)
            c40 = c40.addingProduct(y, x0); c41 = c41.addingProduct(y, x1); c42 = c42.addingProduct(y, x2); c43 = c43.addingProduct(y, x3)
            y = a5.loadUnaligned(fromByteOffset: o, as: V.self)
            c50 = c50.addingProduct(y, x0); c51 = c51.addingProduct(y, x1); c52 = c52.addingProduct(y, x2); c53 = c53.addingProduct(y, x3)
            o += 64
        }
    }
    @inline(__always) func finish(_ acc: V, _ r: Int, _ q: Int) {
        guard r < rows && q < cols else { return }
        c[r * ldc + q] += _laneSum(acc)
    }
    finish(c00, 0, 0); finish(c01, 0, 1); finish(c02, 0, 2); finish(c03, 0, 3)
    finish(c10, 1, 0); finish(c11, 1, 1); finish(c12, 1, 2); finish(c13, 1, 3)
    finish(c20, 2, 0); finish(c21, 2, 1); finish(c22, 2, 2); finish(c23, 2, 3)
    finish(c30, 3, 0); finish(c31, 3, 1); finish(c32, 3, 2); finish(c33, 3, 3)
    finish(c40, 4, 0); finish(c41, 4, 1); finish(c42, 4, 2); finish(c43, 4, 3)
    finish(c50, 5, 0); finish(c51, 5, 1); finish(c52, 5, 2); finish(c53, 5, 3)
}
