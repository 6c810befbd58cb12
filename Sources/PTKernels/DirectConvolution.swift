// Direct forward convolution for stride 1 and few output channels (LeNet: oc = 6, 16), where an
// unfolded (im2col) matrix would cost more to write than the GEMM on it saves.
//
// The trick: pad each input plane once into scratch (Hp x Wp) and compute the output on the padded
// width: out'[o][q] with q = y*Wp + x reads pad[c][q + i*Wp + j] for every tap, so each tap is one
// contiguous vector load for 32 consecutive q, whatever row they fall in. Columns x >= ow are computed
// and dropped. Register tile: up to 6 output channels x 32 q (12 SIMD16 accumulators); per tap
// 2 loads + 6 weight broadcasts for 12 FMAs.

extension ConvKernel {
    /// Scratch floats for `directForward`: the padded sample and the padded-width output of one sample.
    static func directScratchCount(_ g: ConvGeometry) -> Int {
        let (hp, wp) = (g.ih + 2 * g.ph, g.iw + 2 * g.pw)
        let q = roundUp(g.oh * wp, 32)
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        return g.ic * planeStride + g.oc * q + 32
    }

    func directForward(mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                       output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, g.iw + 2 * g.pw)
        let (oh, ow) = (g.oh, g.ow)
        let qCount = roundUp(oh * wp, 32)
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let padded = align64(scratch)
        let full = padded + g.ic * planeStride
        let taps = g.kh * g.kw
        padded.update(repeating: 0, count: g.ic * planeStride)   // borders stay zero; interiors are rewritten
        for s in 0..<mb {
            let x = input + s * g.ic * g.ih * g.iw
            for c in 0..<g.ic {
                for y in 0..<g.ih {
                    copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                }
            }
            var o0 = 0
            while o0 < g.oc {
                let count = min(6, g.oc - o0)
                var q = 0
                while q < qCount {
                    _directTile(ic: g.ic, kh: g.kh, kw: g.kw, wp: wp, planeStride: planeStride, input: padded + q,
                                weight: weight + o0 * g.ic * taps, outputs: count, out: full + o0 * qCount + q, ldo: qCount)
                    q += 32
                }
                o0 += count
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
