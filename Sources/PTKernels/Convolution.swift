// Convolution: an implementation chosen once per layer geometry from an ordered list, ending in
// the reference. All implementations compute the same sums up to float rounding.

/// A convolution kernel bound to one layer geometry (with the largest minibatch it will see).
/// Choosing happens once, in `init`; each call then runs the chosen implementation.
public struct ConvKernel: Sendable {
    public enum Implementation: String, CaseIterable, Sendable {
        /// Per sample: im2col into scratch, then GEMM (forward: W[oc][K] x col[K][P]).
        case im2colGemm
        /// The plain loops of `convForwardReference` and friends.
        case reference
    }

    public let geometry: ConvGeometry
    public let implementation: Implementation

    /// Implementations in order of preference; the first applicable one is used.
    public static func applicable(_ g: ConvGeometry) -> [Implementation] {
        [.im2colGemm, .reference]
    }

    public init(geometry: ConvGeometry, implementation: Implementation? = nil) {
        self.geometry = geometry
        self.implementation = implementation ?? Self.applicable(geometry)[0]
    }

    /// Floats of scratch one call needs (independent of mb: im2col works a sample at a time).
    public var scratchCount: Int {
        switch implementation {
        case .im2colGemm: return geometry.reduction * geometry.oh * geometry.ow
        case .reference: return 0
        }
    }

    /// Forward over `mb` samples (mb <= geometry.mb). See `convForwardReference`.
    public func forward(mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>, bias: UnsafePointer<Float>?,
                        output: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry.with(mb: mb)
        switch implementation {
        case .reference:
            convForwardReference(g, input: input, weight: weight, bias: bias, output: output)
        case .im2colGemm:
            let p = g.oh * g.ow
            for n in 0..<mb {
                im2col(g, input: input + n * g.ic * g.ih * g.iw, col: scratch)
                let out = output + n * g.oc * p
                if let bias {
                    for o in 0..<g.oc { (out + o * p).update(repeating: bias[o], count: p) }
                }
                sgemm(transA: false, transB: false, m: g.oc, n: p, k: g.reduction, a: weight, lda: g.reduction,
                      b: scratch, ldb: p, beta: bias == nil ? 0 : 1, c: out, ldc: p)
            }
        }
    }

    /// Input gradient (overwritten). See `convBackwardDataReference`.
    public func backwardData(mb: Int, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                             inputGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry.with(mb: mb)
        switch implementation {
        case .reference:
            convBackwardDataReference(g, outputGrad: outputGrad, weight: weight, inputGrad: inputGrad)
        case .im2colGemm:
            let p = g.oh * g.ow
            for n in 0..<mb {
                sgemm(transA: true, transB: false, m: g.reduction, n: p, k: g.oc, a: weight, lda: g.reduction,
                      b: outputGrad + n * g.oc * p, ldb: p, beta: 0, c: scratch, ldc: p)
                col2im(g, col: scratch, inputGrad: inputGrad + n * g.ic * g.ih * g.iw)
            }
        }
    }

    /// Adds weight and bias gradients. See `convBackwardWeightsReference`.
    public func backwardWeights(mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?,
                                scratch: UnsafeMutablePointer<Float>) {
        let g = geometry.with(mb: mb)
        switch implementation {
        case .reference:
            convBackwardWeightsReference(g, input: input, outputGrad: outputGrad, weightGrad: weightGrad, biasGrad: biasGrad)
        case .im2colGemm:
            let p = g.oh * g.ow
            for n in 0..<mb {
                im2col(g, input: input + n * g.ic * g.ih * g.iw, col: scratch)
                let dout = outputGrad + n * g.oc * p
                sgemm(transA: false, transB: true, m: g.oc, n: g.reduction, k: p, a: dout, lda: p,
                      b: scratch, ldb: p, beta: 1, c: weightGrad, ldc: g.reduction)
                if let biasGrad {
                    for o in 0..<g.oc {
                        var s: Float = 0
                        let row = dout + o * p
                        for q in 0..<p { s += row[q] }
                        biasGrad[o] += s
                    }
                }
            }
        }
    }
}

/// col[(c*kh + i)*kw + j][y*ow + x] = in[c][y*sh-ph+i][x*sw-pw+j] (0 outside), one sample.
@inlinable
public func im2col(_ g: ConvGeometry, input: UnsafePointer<Float>, col: UnsafeMutablePointer<Float>) {
    let (oh, ow) = (g.oh, g.ow)
    var row = 0
    for c in 0..<g.ic {
        let plane = input + c * g.ih * g.iw
        for i in 0..<g.kh {
            for j in 0..<g.kw {
                let dst = col + row * oh * ow
                for y in 0..<oh {
                    let iy = y * g.sh - g.ph + i
                    let d = dst + y * ow
                    if iy < 0 || iy >= g.ih { d.update(repeating: 0, count: ow); continue }
                    let src = plane + iy * g.iw
                    for x in 0..<ow {
                        let ix = x * g.sw - g.pw + j
                        d[x] = (ix >= 0 && ix < g.iw) ? src[ix] : 0
                    }
                }
                row += 1
            }
        }
    }
}

/// Inverse scatter of `im2col`: inputGrad (overwritten) = sum of col entries mapping to each pixel.
@inlinable
public func col2im(_ g: ConvGeometry, col: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>) {
    let (oh, ow) = (g.oh, g.ow)
    inputGrad.update(repeating: 0, count: g.ic * g.ih * g.iw)
    var row = 0
    for c in 0..<g.ic {
        let plane = inputGrad + c * g.ih * g.iw
        for i in 0..<g.kh {
            for j in 0..<g.kw {
                let src = col + row * oh * ow
                for y in 0..<oh {
                    let iy = y * g.sh - g.ph + i
                    if iy < 0 || iy >= g.ih { continue }
                    let dst = plane + iy * g.iw
                    let s = src + y * ow
                    for x in 0..<ow {
                        let ix = x * g.sw - g.pw + j
                        if ix >= 0 && ix < g.iw { dst[ix] += s[x] }
                    }
                }
                row += 1
            }
        }
    }
}
