// Plain reference twins of the bf16 kernels: the specification the C kernels are tested against,
// bit for bit (Tests/PTKernelsTests/BF16Tests.swift).
//
// The exact numbers:
// - Rounding fp32 -> bf16 (`bf16RoundReference`, Intel's VCVTNEPS2BF16): zero and denormal inputs
//   become a zero of the same sign; infinities stay; a NaN keeps its top 16 bits with the quiet bit
//   (bit 6) set; everything else rounds to nearest, ties to even (add 0x7FFF + the kept LSB, keep the
//   top half; values past the largest bf16 round to infinity). MXCSR is neither read nor written.
// - One product step (`bf16StepReference`, each half of VDPBF16PS): acc + a * b with the product
//   exact (8-bit significands: a product of two bf16 fits an fp32 significand), one rounding to
//   nearest even, a denormal acc read as zero (DAZ) and a denormal result written as a zero of its
//   sign (FTZ). VDPBF16PS runs two such steps per lane, the odd element then the even one; the
//   kernels put reduction index r in the odd slot and r + 1 in the even one, so a chain runs over
//   the reduction in increasing order, and an odd-length reduction ends with one 0 x 0 step.
//   Measured on AMD Zen 4 (family 25 model 17): its vdpbf16ps and vcvtneps2bf16 give exactly these
//   bits (random sweeps and the DAZ / FTZ / NaN cases in the tests): two roundings per instruction,
//   not one fused sum.

/// The bf16 bits of x (see the file comment).
public func bf16RoundReference(_ x: Float) -> UInt16 {
    let u = x.bitPattern
    let exponent = (u >> 23) & 0xFF
    if exponent == 0 { return UInt16((u >> 16) & 0x8000) }
    if exponent == 0xFF { return UInt16(u >> 16) | (u & 0x7F_FFFF != 0 ? 0x40 : 0) }
    return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
}

/// The value of x rounded to bf16, as a Float.
@inline(__always) public func bf16ValueReference(_ x: Float) -> Float { Float(bitPattern: UInt32(bf16RoundReference(x)) << 16) }

/// x, or a zero of its sign when x is denormal (DAZ / FTZ).
@inline(__always) public func bf16FlushReference(_ x: Float) -> Float {
    x.isSubnormal ? (x.sign == .minus ? -0.0 : 0.0) : x
}

/// One half of VDPBF16PS: flush(flush(acc) + a * b), a and b already bf16 values.
@inline(__always) public func bf16StepReference(_ acc: Float, _ a: Float, _ b: Float) -> Float {
    bf16FlushReference(bf16FlushReference(acc).addingProduct(a, b))
}

/// The sum of `count` products a(r) * b(r) (fp32 values rounded to bf16 here) from `start`, in the
/// order of `unit` (the process's unit by default):
/// - avx512bf16: one chain, r increasing, padded with one 0 x 0 step when count is odd.
/// - amx: blocks of 32 (the last padded with 0 x 0 steps); per block an fp32 chain over its even r
///   and one over its odd r, each from 0 (`bf16StepReference` steps), then acc = flush(flush(acc) +
///   flush(even + odd)). What one tdpbf16ps does per output element, measured on Intel Xeon family 6
///   model 207 (Emerald Rapids): random sweeps of 768k elements with exponents spread up to +-130
///   matched bit for bit (NaNs as NaN); Intel's SDM pseudocode describes the same two chains.
/// With amx, `block` (16 or 32) is the number of elements one tdpbf16ps takes.
@inline(__always) func bf16ChainReference(start: Float, count: Int, unit: BF16Unit? = InstructionSet.bf16Unit, block: Int = 32,
                                          _ a: (Int) -> Float, _ b: (Int) -> Float) -> Float {
    var acc = start
    if unit == .amx {
        var r0 = 0
        while r0 < count {
            var even: Float = 0, odd: Float = 0
            for p in 0..<block / 2 {
                let r = r0 + 2 * p
                even = bf16StepReference(even, r < count ? bf16ValueReference(a(r)) : 0, r < count ? bf16ValueReference(b(r)) : 0)
                odd = bf16StepReference(odd, r + 1 < count ? bf16ValueReference(a(r + 1)) : 0,
                                        r + 1 < count ? bf16ValueReference(b(r + 1)) : 0)
            }
            acc = bf16FlushReference(bf16FlushReference(acc) + bf16FlushReference(even + odd))
            r0 += block
        }
        return acc
    }
    for r in 0..<count { acc = bf16StepReference(acc, bf16ValueReference(a(r)), bf16ValueReference(b(r))) }
    if count % 2 == 1 { acc = bf16StepReference(acc, 0, 0) }
    return acc
}

/// Whether the amx unit runs this convolution's forward and weight gradient straight from a
/// channels-last copy (equal strides; see `bf16ConvForwardReference`); otherwise through packed GEMMs.
public func bf16TilesDirect(_ g: ConvGeometry, unit: BF16Unit? = InstructionSet.bf16Unit) -> Bool {
    unit == .amx && g.sh == g.sw
}

/// The amx direct forward's sum for output pixel (y, x) of channel o (see `bf16ConvForwardReference`):
/// `input(c, Y, X)` reads the unpadded input (0 outside it), `weight(c, i, j)` the weights of o.
func bf16TilesForwardChain(_ g: ConvGeometry, y: Int, x: Int, input: (Int, Int, Int) -> Float, weight: (Int, Int, Int) -> Float) -> Float {
    let icp = (g.ic + 15) / 16 * 16, rowLen = (g.kw * icp + 31) / 32 * 32, piw = g.iw + 2 * g.pw
    let q = y * piw + x
    return bf16ChainReference(start: 0, count: g.kh * rowLen, { r in
        let i = r / rowLen, j = (r % rowLen) / icp, c = (r % rowLen) % icp
        let e = g.sh * q + i * piw + j
        return c < g.ic ? input(c, e / piw - g.ph, e % piw - g.pw) : 0
    }, { r in
        let i = r / rowLen, j = (r % rowLen) / icp, c = (r % rowLen) % icp
        return j < g.kw && c < g.ic ? weight(c, i, j) : 0
    })
}

/// Whether the forward's chain runs over (i, j, c) (an even number of input channels on the vector unit:
/// each pair of the chain is two adjacent channels at one tap) rather than (c, i, j).
public func bf16ForwardChannelPairs(_ g: ConvGeometry, unit: BF16Unit? = InstructionSet.bf16Unit) -> Bool {
    unit != .amx && g.ic % 2 == 0
}

/// Reduction element r of the forward's chain as (c, i, j) (see `bf16ForwardChannelPairs`).
@inline(__always) func bf16ForwardTap(_ g: ConvGeometry, _ r: Int, pairs: Bool) -> (c: Int, i: Int, j: Int) {
    if pairs { let t = r / g.ic; return (r % g.ic, t / g.kw, t % g.kw) }
    let khw = g.kh * g.kw
    return (r / khw, (r % khw) / g.kw, r % g.kw)
}

/// out[s][o][y][x] = chain over (c, i, j) of in x w from 0 (padding reads 0), then + bias[o]; over (i, j, c) when
/// `bf16ForwardChannelPairs`. With
/// amx and equal strides (`bf16TilesDirect`) channels are padded to icp (a multiple of 16) and each
/// kernel row i's elements (j, c) of one output pixel, kw * icp of them contiguous in the channels-last
/// copy, run in blocks of 32 (one tdpbf16ps each); elements past kw read the copy's next pixels (the
/// padded plane's, taken row after row; 0 past it) against zero weights; kernel rows in order.
public func bf16ConvForwardReference(_ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let k = g.reduction, khw = g.kh * g.kw
    if bf16TilesDirect(g) {
        for s in 0..<g.mb {
            for o in 0..<g.oc {
                for y in 0..<g.oh {
                    for x in 0..<g.ow {
                        var v = bf16TilesForwardChain(g, y: y, x: x, input: { c, yy, xx in
                            yy < 0 || yy >= g.ih || xx < 0 || xx >= g.iw ? 0 : input[((s * g.ic + c) * g.ih + yy) * g.iw + xx]
                        }, weight: { c, i, j in weight[o * k + c * khw + i * g.kw + j] })
                        if let bias { v += bias[o] }
                        output[((s * g.oc + o) * g.oh + y) * g.ow + x] = v
                    }
                }
            }
        }
        return
    }
    let pairs = bf16ForwardChannelPairs(g)
    for s in 0..<g.mb {
        for o in 0..<g.oc {
            for y in 0..<g.oh {
                for x in 0..<g.ow {
                    var v = bf16ChainReference(start: 0, count: k, { r in
                        let (c, i, j) = bf16ForwardTap(g, r, pairs: pairs)
                        let iy = y * g.sh - g.ph + i, ix = x * g.sw - g.pw + j
                        return iy < 0 || iy >= g.ih || ix < 0 || ix >= g.iw ? 0 : input[((s * g.ic + c) * g.ih + iy) * g.iw + ix]
                    }, { r in
                        let (c, i, j) = bf16ForwardTap(g, r, pairs: pairs)
                        return weight[o * k + c * khw + i * g.kw + j]
                    })
                    if let bias { v += bias[o] }
                    output[((s * g.oc + o) * g.oh + y) * g.ow + x] = v
                }
            }
        }
    }
}

/// Whether the bf16 backward data runs as the transposed convolution's forward (stride 1, padding
/// <= kernel - 1); otherwise as per-tap chains over o summed per input pixel.
public func bf16BackwardDataIsTransposed(_ g: ConvGeometry) -> Bool {
    g.sh == 1 && g.sw == 1 && g.ph <= g.kh - 1 && g.pw <= g.kw - 1
}

/// Whether the bf16 backward data runs in the planar form (a narrow layer: stride 1, padding <= kernel - 1,
/// ic < 16, oc even, input rows of at most 16 pixels; both units): see `bf16ConvBackwardDataReference`.
public func bf16BackwardDataIsPlanar(_ g: ConvGeometry) -> Bool {
    bf16BackwardDataIsTransposed(g) && g.ic < 16 && g.oc % 2 == 0 && g.iw <= 16 && g.kw <= 17 && g.iw + g.pw <= 32
}

/// Input gradient (overwritten). Planar form (`bf16BackwardDataIsPlanar`, either unit): one vector chain
/// from 0 over the taps (a, b) of the flipped kernel whose dout row iy - (kh - 1 - ph) + a exists (rows
/// outside dout are skipped), a then b, and for each tap over o in increasing order (pairs (o, o + 1));
/// dout columns outside it read 0. Transposed form: chain over (o, i, j) of dout (padded by k - 1 - p)
/// x W[o][c][kh-1-i][kw-1-j] from 0 (over (i, j, o) when oc is even on the vector unit: the transposed
/// convolution's `bf16ForwardChannelPairs`). Otherwise: for each tap (c, i, j) in order whose output pixel
/// lands on the input pixel, a chain over o of W[o][c][i][j] x dout, added (fp32) into a sum from 0.
public func bf16ConvBackwardDataReference(_ g: ConvGeometry, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                          inputGrad: UnsafeMutablePointer<Float>) {
    let khw = g.kh * g.kw, p = g.oh * g.ow
    // The transposed convolution (stride 1): dout padded by kernel - 1 - padding, weights flipped.
    let transposed = ConvGeometry(mb: 1, ic: g.oc, oc: g.ic, ih: g.oh, iw: g.ow, kh: g.kh, kw: g.kw,
                                  ph: g.kh - 1 - g.ph, pw: g.kw - 1 - g.pw)
    for s in 0..<g.mb {
        for c in 0..<g.ic {
            for iy in 0..<g.ih {
                for ix in 0..<g.iw {
                    var v: Float = 0
                    if bf16BackwardDataIsPlanar(g) {
                        let th = g.kh - 1 - g.ph, tw = g.kw - 1 - g.pw
                        let aLo = max(0, th - iy), aHi = min(g.kh - 1, th + g.oh - 1 - iy)
                        let perRow = g.kw * g.oc
                        func tap(_ r: Int) -> (a: Int, b: Int, o: Int) { (aLo + r / perRow, (r % perRow) / g.oc, r % g.oc) }
                        v = bf16ChainReference(start: 0, count: max(0, aHi - aLo + 1) * perRow, unit: .avx512bf16, { r in
                            let (a, b, o) = tap(r)
                            let y = iy - th + a, x = ix - tw + b
                            return x < 0 || x >= g.ow ? 0 : outputGrad[(s * g.oc + o) * p + y * g.ow + x]
                        }, { r in
                            let (a, b, o) = tap(r)
                            return weight[(o * g.ic + c) * khw + (g.kh - 1 - a) * g.kw + (g.kw - 1 - b)]
                        })
                    } else if bf16BackwardDataIsTransposed(g) && bf16TilesDirect(transposed) {
                        // The transposed convolution's forward on the amx direct path.
                        v = bf16TilesForwardChain(transposed, y: iy, x: ix, input: { o, yy, xx in
                            yy < 0 || yy >= g.oh || xx < 0 || xx >= g.ow ? 0 : outputGrad[(s * g.oc + o) * p + yy * g.ow + xx]
                        }, weight: { o, a, b in weight[(o * g.ic + c) * khw + (g.kh - 1 - a) * g.kw + (g.kw - 1 - b)] })
                    } else if bf16BackwardDataIsTransposed(g) {
                        // The transposed convolution's forward: its input channels are o.
                        let th = g.kh - 1 - g.ph, tw = g.kw - 1 - g.pw, pairs = bf16ForwardChannelPairs(transposed)
                        v = bf16ChainReference(start: 0, count: g.oc * khw, { r in
                            let (o, a, b) = bf16ForwardTap(transposed, r, pairs: pairs)
                            let y = iy - th + a, x = ix - tw + b
                            return y < 0 || y >= g.oh || x < 0 || x >= g.ow ? 0 : outputGrad[(s * g.oc + o) * p + y * g.ow + x]
                        }, { r in
                            let (o, a, b) = bf16ForwardTap(transposed, r, pairs: pairs)
                            return weight[(o * g.ic + c) * khw + (g.kh - 1 - a) * g.kw + (g.kw - 1 - b)]
                        })
                    } else {
                        for i in 0..<g.kh {
                            for j in 0..<g.kw {
                                let yy = iy + g.ph - i, xx = ix + g.pw - j
                                guard yy >= 0, xx >= 0, yy % g.sh == 0, xx % g.sw == 0 else { continue }
                                let y = yy / g.sh, x = xx / g.sw
                                guard y < g.oh, x < g.ow else { continue }
                                v += bf16ChainReference(start: 0, count: g.oc, { o in weight[(o * g.ic + c) * khw + i * g.kw + j] },
                                                        { o in outputGrad[(s * g.oc + o) * p + y * g.ow + x] })
                            }
                        }
                    }
                    inputGrad[((s * g.ic + c) * g.ih + iy) * g.iw + ix] = v
                }
            }
        }
    }
}

/// dW[o][r] = chain starting from dW[o][r], over samples in order and each sample's pixels in order
/// (each sample's chain padded to an even length) of dout x in; bias: `bf16BiasSumsReference`. With
/// amx and equal strides (`bf16TilesDirect`) each sample's pixels are taken wide: q = y * piw + x
/// over the padded width piw, q < oh * piw rounded up to 32, in blocks of 32; dout is 0 at x >= ow
/// and past the last row, and the input of tap (i, j) is read at e = s * q + i * piw + j of the
/// zero-padded plane (0 outside it), so the padding columns add products 0 x in.
public func bf16ConvBackwardWeightsReference(_ g: ConvGeometry, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                             weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) {
    let k = g.reduction, khw = g.kh * g.kw, p = g.oh * g.ow
    if bf16TilesDirect(g) {
        let pih = g.ih + 2 * g.ph, piw = g.iw + 2 * g.pw, wide = (g.oh * piw + 31) / 32 * 32
        for o in 0..<g.oc {
            for r in 0..<k {
                let c = r / khw, i = (r % khw) / g.kw, j = r % g.kw
                var acc = weightGrad[o * k + r]
                for s in 0..<g.mb {
                    acc = bf16ChainReference(start: acc, count: wide, { q in
                        let y = q / piw, x = q % piw
                        return y < g.oh && x < g.ow ? outputGrad[(s * g.oc + o) * p + y * g.ow + x] : 0
                    }, { q in
                        let e = g.sh * q + i * piw + j, yy = e / piw - g.ph, xx = e % piw - g.pw
                        return e / piw >= pih || yy < 0 || yy >= g.ih || xx < 0 || xx >= g.iw ? 0 : input[((s * g.ic + c) * g.ih + yy) * g.iw + xx]
                    })
                }
                weightGrad[o * k + r] = acc
            }
        }
        if let biasGrad { bf16BiasSumsReference(outputGrad, mb: g.mb, oc: g.oc, pixels: p, into: biasGrad) }
        return
    }
    for o in 0..<g.oc {
        for r in 0..<k {
            let c = r / khw, i = (r % khw) / g.kw, j = r % g.kw
            var acc = weightGrad[o * k + r]
            for s in 0..<g.mb {
                acc = bf16ChainReference(start: acc, count: p, { q in outputGrad[(s * g.oc + o) * p + q] }, { q in
                    let iy = (q / g.ow) * g.sh - g.ph + i, ix = (q % g.ow) * g.sw - g.pw + j
                    return iy < 0 || iy >= g.ih || ix < 0 || ix >= g.iw ? 0 : input[((s * g.ic + c) * g.ih + iy) * g.iw + ix]
                })
            }
            weightGrad[o * k + r] = acc
        }
    }
    if let biasGrad { bf16BiasSumsReference(outputGrad, mb: g.mb, oc: g.oc, pixels: p, into: biasGrad) }
}

/// db[o] += (fp32, no bf16) 16 lanes: lane l adds, sample by sample, the pixels q < P/16*16 with
/// q % 16 == l; the lanes summed from lane 0 to 15; the tail pixels (sample order) summed apart; then
/// db[o] += lanes + tail.
public func bf16BiasSumsReference(_ dout: UnsafePointer<Float>, mb: Int, oc: Int, pixels: Int, into db: UnsafeMutablePointer<Float>) {
    let vec = pixels / 16 * 16
    for o in 0..<oc {
        var lanes = [Float](repeating: 0, count: 16)
        var tail: Float = 0
        for s in 0..<mb {
            let row = dout + (s * oc + o) * pixels
            for q in 0..<vec { lanes[q % 16] += row[q] }
            for q in vec..<pixels { tail += row[q] }
        }
        var sum: Float = 0
        for l in 0..<16 { sum += lanes[l] }
        db[o] += sum + tail
    }
}

/// y[b][o] = chain over i of x[b][i] x w[o][i] from 0, then + bias[o].
public func bf16DenseForwardReference(batch: Int, inputs: Int, neurons: Int, x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>) {
    for b in 0..<batch {
        for o in 0..<neurons {
            var v = bf16ChainReference(start: 0, count: inputs, { x[b * inputs + $0] }, { weight[o * inputs + $0] })
            if let bias { v += bias[o] }
            y[b * neurons + o] = v
        }
    }
}

/// dW[o][i] = chain starting from dW[o][i] over b of dy[b][o] x x[b][i].
public func bf16DenseBackwardWeightsReference(batch: Int, inputs: Int, neurons: Int, x: UnsafePointer<Float>,
                                              outputGrad: UnsafePointer<Float>, weightGrad: UnsafeMutablePointer<Float>) {
    for o in 0..<neurons {
        for i in 0..<inputs {
            weightGrad[o * inputs + i] = bf16ChainReference(start: weightGrad[o * inputs + i], count: batch,
                                                            { outputGrad[$0 * neurons + o] }, { x[$0 * inputs + i] })
        }
    }
}

/// dx[b][i] = chain over o of dy[b][o] x w[o][i] from 0.
public func bf16DenseBackwardDataReference(batch: Int, inputs: Int, neurons: Int, outputGrad: UnsafePointer<Float>,
                                           weight: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>) {
    for b in 0..<batch {
        for i in 0..<inputs {
            inputGrad[b * inputs + i] = bf16ChainReference(start: 0, count: neurons, { outputGrad[b * neurons + $0] },
                                                           { weight[$0 * inputs + i] })
        }
    }
}
