// Plain reference kernels: the specification every fast kernel is tested against, and the
// fallback implementation. Written for clarity; loops follow the formulas directly.

// MARK: GEMM

/// C[m][n] = alpha * sum_k op(A)[m][k] * op(B)[k][n] + beta * C[m][n], row-major.
/// op(A) is A (m x k, leading dimension lda) or, with transA, A stored as k x m.
/// `beta == 0` overwrites C without reading it.
public func sgemmReference(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                           a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                           beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    for i in 0..<m {
        for j in 0..<n {
            var sum: Float = 0
            for p in 0..<k {
                let av = transA ? a[p * lda + i] : a[i * lda + p]
                let bv = transB ? b[j * ldb + p] : b[p * ldb + j]
                sum += av * bv
            }
            let old = beta == 0 ? 0 : beta * c[i * ldc + j]
            c[i * ldc + j] = alpha * sum + old
        }
    }
}

// MARK: Convolution

/// out[n][o][y][x] = bias[o] + sum_{c,i,j} in[n][c][y*sh-ph+i][x*sw-pw+j] * w[o][c][i][j]
/// (zero outside the input). `bias` may be nil.
public func convForwardReference(_ g: ConvGeometry, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                 bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>) {
    let (oh, ow) = (g.oh, g.ow)
    for n in 0..<g.mb {
        for o in 0..<g.oc {
            for y in 0..<oh {
                for x in 0..<ow {
                    var sum: Float = bias?[o] ?? 0
                    for c in 0..<g.ic {
                        for i in 0..<g.kh {
                            let iy = y * g.sh - g.ph + i
                            if iy < 0 || iy >= g.ih { continue }
                            for j in 0..<g.kw {
                                let ix = x * g.sw - g.pw + j
                                if ix < 0 || ix >= g.iw { continue }
                                sum += input[((n * g.ic + c) * g.ih + iy) * g.iw + ix]
                                    * weight[((o * g.ic + c) * g.kh + i) * g.kw + j]
                            }
                        }
                    }
                    output[((n * g.oc + o) * oh + y) * ow + x] = sum
                }
            }
        }
    }
}

/// dIn = d(out)/d(in)^T dOut, *overwriting* dInput:
/// dIn[n][c][iy][ix] = sum over (o, y, x, i, j) with y*sh-ph+i == iy, x*sw-pw+j == ix of dOut[n][o][y][x] * w[o][c][i][j].
public func convBackwardDataReference(_ g: ConvGeometry, outputGrad: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                      inputGrad: UnsafeMutablePointer<Float>) {
    let (oh, ow) = (g.oh, g.ow)
    inputGrad.update(repeating: 0, count: g.inputCount)
    for n in 0..<g.mb {
        for o in 0..<g.oc {
            for y in 0..<oh {
                for x in 0..<ow {
                    let d = outputGrad[((n * g.oc + o) * oh + y) * ow + x]
                    for c in 0..<g.ic {
                        for i in 0..<g.kh {
                            let iy = y * g.sh - g.ph + i
                            if iy < 0 || iy >= g.ih { continue }
                            for j in 0..<g.kw {
                                let ix = x * g.sw - g.pw + j
                                if ix < 0 || ix >= g.iw { continue }
                                inputGrad[((n * g.ic + c) * g.ih + iy) * g.iw + ix] += d * weight[((o * g.ic + c) * g.kh + i) * g.kw + j]
                            }
                        }
                    }
                }
            }
        }
    }
}

/// *Adds* the weight and bias gradients: dW[o][c][i][j] += sum_{n,y,x} dOut[n][o][y][x] * in[n][c][y*sh-ph+i][x*sw-pw+j];
/// dB[o] += sum_{n,y,x} dOut[n][o][y][x]. `biasGrad` may be nil.
public func convBackwardWeightsReference(_ g: ConvGeometry, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                         weightGrad: UnsafeMutablePointer<Float>, biasGrad: UnsafeMutablePointer<Float>?) {
    let (oh, ow) = (g.oh, g.ow)
    for o in 0..<g.oc {
        var db: Float = 0
        for c in 0..<g.ic {
            for i in 0..<g.kh {
                for j in 0..<g.kw {
                    var sum: Float = 0
                    for n in 0..<g.mb {
                        for y in 0..<oh {
                            let iy = y * g.sh - g.ph + i
                            if iy < 0 || iy >= g.ih { continue }
                            for x in 0..<ow {
                                let ix = x * g.sw - g.pw + j
                                if ix < 0 || ix >= g.iw { continue }
                                sum += outputGrad[((n * g.oc + o) * oh + y) * ow + x] * input[((n * g.ic + c) * g.ih + iy) * g.iw + ix]
                            }
                        }
                    }
                    weightGrad[((o * g.ic + c) * g.kh + i) * g.kw + j] += sum
                }
            }
        }
        if biasGrad != nil {
            for n in 0..<g.mb { for p in 0..<(oh * ow) { db += outputGrad[(n * g.oc + o) * oh * ow + p] } }
            biasGrad![o] += db
        }
    }
}

// MARK: Pooling

/// out[p][y][x] = max over the (clipped) window; `argmax` receives the index of the maximum within
/// its input plane (the first one on ties). With `reluFirst`, the window's values are ReLU's outputs
/// (x > 0 ? x : 0): the pooling of a ReLU layer's output, read from that layer's input.
public func maxPoolForwardReference(_ g: PoolGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                    argmax: UnsafeMutablePointer<Int32>, reluFirst: Bool = false) {
    let (oh, ow) = (g.oh, g.ow)
    for p in 0..<g.planes {
        let plane = input + p * g.ih * g.iw
        for y in 0..<oh {
            for x in 0..<ow {
                var best = -Float.infinity
                var bestIndex = -1
                for i in (y * g.sh)..<min(y * g.sh + g.kh, g.ih) {
                    for j in (x * g.sw)..<min(x * g.sw + g.kw, g.iw) {
                        let x = plane[i * g.iw + j]
                        let v = !reluFirst || x > 0 ? x : 0
                        if bestIndex < 0 || v > best { best = v; bestIndex = i * g.iw + j }
                    }
                }
                output[(p * oh + y) * ow + x] = best
                argmax[(p * oh + y) * ow + x] = Int32(bestIndex)
            }
        }
    }
}

/// dIn (overwritten) receives each dOut at its window's argmax (summed where windows overlap). With
/// `reluOutput` (the pooling's output over a ReLU's output, `reluFirst`), only where that output is
/// > 0: the gradient of the ReLU's input, ReLU's backward folded in (same bits as the two backwards).
public func maxPoolBackwardReference(_ g: PoolGeometry, outputGrad: UnsafePointer<Float>, argmax: UnsafePointer<Int32>,
                                     inputGrad: UnsafeMutablePointer<Float>, reluOutput: UnsafePointer<Float>? = nil) {
    let (oh, ow) = (g.oh, g.ow)
    inputGrad.update(repeating: 0, count: g.planes * g.ih * g.iw)
    for p in 0..<g.planes {
        for q in 0..<(oh * ow) {
            let at = p * oh * ow + q
            let d = reluOutput.map { $0[at] > 0 ? outputGrad[at] : 0 } ?? outputGrad[at]
            inputGrad[p * g.ih * g.iw + Int(argmax[at])] += d
        }
    }
}

// MARK: Activations and loss

/// out = max(0, in).
public func reluForwardReference(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    for i in 0..<count { output[i] = input[i] > 0 ? input[i] : 0 }
}

/// dIn = dOut where out > 0, else 0.
public func reluBackwardReference(count: Int, output: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                  inputGrad: UnsafeMutablePointer<Float>) {
    for i in 0..<count { inputGrad[i] = output[i] > 0 ? outputGrad[i] : 0 }
}

/// out = max(0, a + b) (the residual add, then ReLU).
public func addReLUReference(count: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    for i in 0..<count { let v = a[i] + b[i]; output[i] = v > 0 ? v : 0 }
}

/// ReLU backward written to each non-nil gradient (a residual add's inputs).
public func reluBackwardFanOutReference(count: Int, output: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                        first: UnsafeMutablePointer<Float>?, second: UnsafeMutablePointer<Float>?) {
    for i in 0..<count {
        let v = output[i] > 0 ? outputGrad[i] : 0
        first?[i] = v
        second?[i] = v
    }
}

/// Softmax cross-entropy over `rows` rows of `classes` logits.
/// Returns the summed loss -sum_n log softmax(logits[n])[label[n]] (in Double) and the number of rows
/// whose arg-max equals the label. `logitsGrad[n][k] = (softmax[n][k] - onehot[n][k]) * gradScale`
/// is written when given (gradScale = 1 / global batch size makes summed shard gradients a mean).
@discardableResult
public func softmaxCrossEntropyReference(rows: Int, classes: Int, logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
                                         gradScale: Float, logitsGrad: UnsafeMutablePointer<Float>?) -> (loss: Double, correct: Int) {
    var loss = 0.0
    var correct = 0
    for n in 0..<rows {
        let row = logits + n * classes
        var maxValue = row[0]
        var best = 0
        for k in 1..<max(1, classes) where row[k] > maxValue { maxValue = row[k]; best = k }
        var sum: Double = 0
        for k in 0..<classes { sum += Double(libmExp(row[k] - maxValue)) }
        let label = Int(labels[n])
        loss += -(Double(row[label] - maxValue) - libmLog(sum))
        if best == label { correct += 1 }
        if let grad = logitsGrad {
            for k in 0..<classes {
                let p = Float(Double(libmExp(row[k] - maxValue)) / sum)
                grad[n * classes + k] = (p - (k == label ? 1 : 0)) * gradScale
            }
        }
    }
    return (loss, correct)
}

// Minimal libm access without importing Foundation into the kernels.
#if canImport(Glibc)
import Glibc
@inline(__always) @usableFromInline func libmExp(_ x: Float) -> Float { expf(x) }
@inline(__always) @usableFromInline func libmLog(_ x: Double) -> Double { Glibc.log(x) }
#elseif canImport(Darwin)
import Darwin
@inline(__always) @usableFromInline func libmExp(_ x: Float) -> Float { expf(x) }
@inline(__always) @usableFromInline func libmLog(_ x: Double) -> Double { Darwin.log(x) }
#endif
