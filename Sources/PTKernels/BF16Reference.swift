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

/// A chain over `count` products a(r) * b(r) (fp32 values rounded to bf16 here), r increasing,
/// from `start`, padded with one 0 x 0 step when count is odd.
@inline(__always) func bf16ChainReference(start: Float, count: Int, _ a: (Int) -> Float, _ b: (Int) -> Float) -> Float {
    var acc = start
    for r in 0..<count { acc = bf16StepReference(acc, bf16ValueReference(a(r)), bf16ValueReference(b(r))) }
    if count % 2 == 1 { acc = bf16StepReference(acc, 0, 0) }
    return acc
}

/// out[s][o][y][x] = chain over (c, i, j) of in x w from 0 (padding reads 0), then + bias[o].
public func bf16ConvForwardReference(_ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                     bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let k = g.reduction, khw = g.kh * g.kw
    for s in 0..<g.mb {
        for o in 0..<g.oc {
            for y in 0..<g.oh {
                for x in 0..<g.ow {
                    var v = bf16ChainReference(start: 0, count: k, { r in
                        let c = r / khw, i = (r % khw) / g.kw, j = r % g.kw
                        let iy = y * g.sh - g.ph + i, ix = x * g.sw - g.pw + j
                        return iy < 0 || iy >= g.ih || ix < 0 || ix >= g.iw ? 0 : input[((s * g.ic + c) * g.ih + iy) * g.iw + ix]
                    }, { r in weight[o * k + r] })
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

/// Input gradient (overwritten). Transposed form: chain over (o, i, j) of dout (padded by k - 1 - p)
/// x W[o][c][kh-1-i][kw-1-j] from 0. Otherwise: for each tap (c, i, j) in order whose output pixel
/// lands on the input pixel, a chain over o of W[o][c][i][j] x dout, added (fp32) into a sum from 0.
public func bf16ConvBackwardDataReference(_ g: ConvGeometry, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                          inputGrad: UnsafeMutablePointer<Float>) {
    let khw = g.kh * g.kw, p = g.oh * g.ow
    for s in 0..<g.mb {
        for c in 0..<g.ic {
            for iy in 0..<g.ih {
                for ix in 0..<g.iw {
                    var v: Float = 0
                    if bf16BackwardDataIsTransposed(g) {
                        let th = g.kh - 1 - g.ph, tw = g.kw - 1 - g.pw
                        v = bf16ChainReference(start: 0, count: g.oc * khw, { r in
                            let o = r / khw, a = (r % khw) / g.kw, b = r % g.kw
                            let y = iy - th + a, x = ix - tw + b
                            return y < 0 || y >= g.oh || x < 0 || x >= g.ow ? 0 : outputGrad[(s * g.oc + o) * p + y * g.ow + x]
                        }, { r in
                            let o = r / khw, a = (r % khw) / g.kw, b = r % g.kw
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
/// (each sample's chain padded to an even length) of dout x in; bias: `bf16BiasSumsReference`.
public func bf16ConvBackwardWeightsReference(_ g: ConvGeometry, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                             weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) {
    let k = g.reduction, khw = g.kh * g.kw, p = g.oh * g.ow
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
