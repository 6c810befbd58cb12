// Double-precision forward passes used as the function that finite differences differentiate.
// They follow the same formulas as the Float layers (checked against them in the tests).
import PTModel
import PTTensor

/// A Double forward pass of one layer on one batch: input [batch][inputShape] -> output.
func forwardDouble(_ layer: any Layer, batch: Int, input: [Double], parameters: [Double], training: Bool = false,
                   noiseSeed: UInt64 = 0) -> [Double] {
    let inS = layer.inputShape, outS = layer.outputShape
    var out = [Double](repeating: 0, count: batch * outS.count)
    switch layer {
    case let conv as Conv2D:
        let g = conv.geometry
        let w = conv.parameters[0].offset, b = conv.parameters[1].offset
        for n in 0..<batch {
            for o in 0..<g.oc {
                for y in 0..<g.oh {
                    for x in 0..<g.ow {
                        var sum = parameters[b + o]
                        for c in 0..<g.ic {
                            for i in 0..<g.kh {
                                let iy = y * g.sh - g.ph + i
                                if iy < 0 || iy >= g.ih { continue }
                                for j in 0..<g.kw {
                                    let ix = x * g.sw - g.pw + j
                                    if ix < 0 || ix >= g.iw { continue }
                                    sum += input[((n * g.ic + c) * g.ih + iy) * g.iw + ix] * parameters[w + ((o * g.ic + c) * g.kh + i) * g.kw + j]
                                }
                            }
                        }
                        out[((n * g.oc + o) * g.oh + y) * g.ow + x] = sum
                    }
                }
            }
        }
    case let pool as MaxPool2D:
        let g = pool.geometry
        for p in 0..<(batch * inS.channels) {
            for y in 0..<g.oh {
                for x in 0..<g.ow {
                    var best = -Double.infinity
                    for i in (y * g.sh)..<min(y * g.sh + g.kh, g.ih) {
                        for j in (x * g.sw)..<min(x * g.sw + g.kw, g.iw) {
                            best = max(best, input[(p * g.ih + i) * g.iw + j])
                        }
                    }
                    out[(p * g.oh + y) * g.ow + x] = best
                }
            }
        }
    case let pool as AvgPool2D:
        let g = pool.geometry
        for p in 0..<(batch * inS.channels) {
            for y in 0..<g.oh {
                for x in 0..<g.ow {
                    var sum = 0.0, count = 0.0
                    for i in (y * g.sh)..<min(y * g.sh + g.kh, g.ih) {
                        for j in (x * g.sw)..<min(x * g.sw + g.kw, g.iw) { sum += input[(p * g.ih + i) * g.iw + j]; count += 1 }
                    }
                    out[(p * g.oh + y) * g.ow + x] = sum / count
                }
            }
        }
    case is GlobalAvgPool:
        let plane = inS.height * inS.width
        for p in 0..<(batch * inS.channels) { out[p] = input[(p * plane)..<((p + 1) * plane)].reduce(0, +) / Double(plane) }
    case let dropout as Dropout:
        let threshold = UInt64((Double(1 - dropout.rate) * 4_294_967_296).rounded())
        for i in 0..<out.count {
            if !training { out[i] = input[i]; continue }
            out[i] = Dropout.keep(seed: noiseSeed, index: i, threshold: threshold) ? input[i] / (1 - Double(dropout.rate)) : 0
        }
    case let bn as BatchNorm:
        // Statistics of the call's samples (training, or no running statistics given).
        let hw = inS.height * inS.width, c = inS.channels
        let g = bn.parameters[0].offset, b = bn.parameters[1].offset
        for ch in 0..<c {
            var values: [Double] = []
            for n in 0..<batch { values += input[((n * c + ch) * hw)..<((n * c + ch + 1) * hw)] }
            let mean = values.reduce(0, +) / Double(values.count)
            let variance = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)
            let invStd = 1 / (variance + Double(bn.epsilon)).squareRoot()
            for n in 0..<batch {
                for k in 0..<hw {
                    let i = (n * c + ch) * hw + k
                    out[i] = parameters[g + ch] * (input[i] - mean) * invStd + parameters[b + ch]
                }
            }
        }
    case is ReLU:
        for i in 0..<out.count { out[i] = max(0, input[i]) }
    case is Flatten:
        out = input
    case let dense as Dense:
        let w = dense.parameters[0].offset, b = dense.parameters[1].offset
        for n in 0..<batch {
            for o in 0..<dense.neurons {
                var sum = parameters[b + o]
                for i in 0..<dense.inputs { sum += parameters[w + o * dense.inputs + i] * input[n * dense.inputs + i] }
                out[n * dense.neurons + o] = sum
            }
        }
    default:
        fatalError("no Double reference for \(layer.name)")
    }
    return out
}

/// Mean softmax cross-entropy in Double.
func softmaxCrossEntropyDouble(_ logits: [Double], labels: [Int], classes: Int) -> Double {
    var total = 0.0
    for n in 0..<labels.count {
        let row = Array(logits[(n * classes)..<((n + 1) * classes)])
        let m = row.max()!
        let lse = m + row.map { _exp($0 - m) }.reduce(0, +).logD
        total += lse - row[labels[n]]
    }
    return total / Double(labels.count)
}

#if canImport(Glibc)
import Glibc
func _exp(_ x: Double) -> Double { Glibc.exp(x) }
extension Double { var logD: Double { Glibc.log(self) } }
#endif
