// Pooling, activations and loss entry points used by the layers: SIMD16 fast paths (generic over the level, so each level's module compiles them for its CPU) with the reference
// semantics exactly (ties, NaN and edge windows included), general cases through the reference.

typealias V16 = SIMD16<Float>
typealias VI16 = SIMD16<Int32>

/// Max pooling forward. See `maxPoolForwardReference` (same outputs and argmax, bit for bit).
/// Fast path: 2x2 windows, stride 2 (every LeNet/CIFAR pool): 16 outputs per step from 32-wide rows,
/// de-interleaved into even and odd columns; clipped edge windows go through the general loop.
/// `reluFirst`: each value read goes through ReLU first (a ReLU layer folded in).
func _maxPoolForward<L: KernelLevel>(_ level: L.Type, _ g: PoolGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                           argmax: UnsafeMutablePointer<Int32>, reluFirst: Bool) {
    guard g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 else {
        maxPoolForwardReference(g, input: input, output: output, argmax: argmax, reluFirst: reluFirst)
        return
    }
    @inline(__always) func load(_ r: UnsafeRawPointer, _ offset: Int) -> V16 {
        let v = r.loadUnaligned(fromByteOffset: offset, as: V16.self)
        return reluFirst ? V16().replacing(with: v, where: v .> 0) : v
    }
    let (ih, iw, oh, ow) = (g.ih, g.iw, g.oh, g.ow)
    let fullRows = min(oh, ih / 2), fullCols = min(ow, iw / 2)
    let lane = VI16(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
    // Narrow rows (LeNet: 14 and 5 outputs) also take the vector step: lanes past the row's last full
    // window read the next row (or plane) and store garbage into later outputs, which the edge loop
    // or a later row overwrites. Only steps whose 32-wide reads and 16-wide stores stay inside the
    // buffers are taken; the last few rows of the last plane fall back to the scalar loop.
    let inTotal = g.planes * ih * iw, outTotal = g.planes * oh * ow
    for p in 0..<g.planes {
        let plane = input + p * ih * iw
        let out = output + p * oh * ow, arg = argmax + p * oh * ow
        for y in 0..<oh {
            var x = 0
            if y < fullRows {
                let r0 = UnsafeRawPointer(plane + 2 * y * iw), r1 = UnsafeRawPointer(plane + (2 * y + 1) * iw)
                let base0 = Int32(2 * y * iw), base1 = Int32((2 * y + 1) * iw)
                let readEnd = p * ih * iw + (2 * y + 1) * iw + 32, writeEnd = p * oh * ow + y * ow + 16
                while x < fullCols && readEnd + 2 * x <= inTotal && writeEnd + x <= outTotal {
                    let a = SIMD32<Float>(lowHalf: load(r0, 8 * x), highHalf: load(r0, 8 * x + 64))
                    let b = SIMD32<Float>(lowHalf: load(r1, 8 * x), highHalf: load(r1, 8 * x + 64))
                    // Scan order of the reference: (0,0), (0,1), (1,0), (1,1); strictly greater replaces.
                    let col = lane &+ VI16(repeating: Int32(2 * x))
                    var best = a.evenHalf, index = col &+ VI16(repeating: base0)
                    var v = a.oddHalf, m = v .> best
                    best.replace(with: v, where: m); index.replace(with: col &+ VI16(repeating: base0 + 1), where: m)
                    v = b.evenHalf; m = v .> best
                    best.replace(with: v, where: m); index.replace(with: col &+ VI16(repeating: base1), where: m)
                    v = b.oddHalf; m = v .> best
                    best.replace(with: v, where: m); index.replace(with: col &+ VI16(repeating: base1 + 1), where: m)
                    UnsafeMutableRawPointer(out + y * ow + x).storeBytes(of: best, as: V16.self)
                    UnsafeMutableRawPointer(arg + y * ow + x).storeBytes(of: index, as: VI16.self)
                    x += 16
                }
                x = min(x, fullCols)
            }
            while x < ow {
                var best = -Float.infinity
                var bestIndex = -1
                for i in (2 * y)..<min(2 * y + 2, ih) {
                    for j in (2 * x)..<min(2 * x + 2, iw) {
                        let raw = plane[i * iw + j]
                        let v = !reluFirst || raw > 0 ? raw : 0
                        if bestIndex < 0 || v > best { best = v; bestIndex = i * iw + j }
                    }
                }
                out[y * ow + x] = best
                arg[y * ow + x] = Int32(bestIndex)
                x += 1
            }
        }
    }
}

/// Max pooling backward. See `maxPoolBackwardReference` (`reluOutput`: a folded ReLU's mask).
func _maxPoolBackward<L: KernelLevel>(_ level: L.Type, _ g: PoolGeometry, outputGrad: UnsafePointer<Float>, argmax: UnsafePointer<Int32>,
                            inputGrad: UnsafeMutablePointer<Float>, reluOutput: UnsafePointer<Float>?) {
    let (planeIn, planeOut) = (g.ih * g.iw, g.oh * g.ow)
    inputGrad.update(repeating: 0, count: g.planes * planeIn)
    for p in 0..<g.planes {
        let dIn = inputGrad + p * planeIn, dOut = outputGrad + p * planeOut, arg = argmax + p * planeOut
        if let y = reluOutput.map({ $0 + p * planeOut }) {
            // The mask as vectors (a scalar select per gradient branched on the sign: pool1 backward 2.4x slower).
            var q = 0
            while q + 16 <= planeOut {
                let d = UnsafeRawPointer(dOut).loadUnaligned(fromByteOffset: 4 * q, as: V16.self)
                let masked = V16().replacing(with: d, where: UnsafeRawPointer(y).loadUnaligned(fromByteOffset: 4 * q, as: V16.self) .> 0)
                for l in 0..<16 { dIn[Int(arg[q + l])] += masked[l] }
                q += 16
            }
            while q < planeOut { dIn[Int(arg[q])] += y[q] > 0 ? dOut[q] : 0; q += 1 }
        } else {
            for q in 0..<planeOut { dIn[Int(arg[q])] += dOut[q] }
        }
    }
}

/// ReLU forward. See `reluForwardReference` (NaN and -0 map to 0, as there).
func _reluForward<L: KernelLevel>(_ level: L.Type, count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    let s = UnsafeRawPointer(input), d = UnsafeMutableRawPointer(output)
    var i = 0
    while i + 16 <= count {
        let v = s.loadUnaligned(fromByteOffset: 4 * i, as: V16.self)
        d.storeBytes(of: V16().replacing(with: v, where: v .> 0), toByteOffset: 4 * i, as: V16.self)
        i += 16
    }
    while i < count { output[i] = input[i] > 0 ? input[i] : 0; i += 1 }
}

/// ReLU backward. See `reluBackwardReference`.
func _reluBackward<L: KernelLevel>(_ level: L.Type, count: Int, output: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                         inputGrad: UnsafeMutablePointer<Float>) {
    let o = UnsafeRawPointer(output), g = UnsafeRawPointer(outputGrad), d = UnsafeMutableRawPointer(inputGrad)
    var i = 0
    while i + 16 <= count {
        let y = o.loadUnaligned(fromByteOffset: 4 * i, as: V16.self)
        let dy = g.loadUnaligned(fromByteOffset: 4 * i, as: V16.self)
        d.storeBytes(of: V16().replacing(with: dy, where: y .> 0), toByteOffset: 4 * i, as: V16.self)
        i += 16
    }
    while i < count { inputGrad[i] = output[i] > 0 ? outputGrad[i] : 0; i += 1 }
}

/// Residual add then ReLU in one pass: z = relu(a + b). See `addReLUReference`.
func _addReLU<L: KernelLevel>(_ level: L.Type, count: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>,
                              output: UnsafeMutablePointer<Float>) {
    let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b), d = UnsafeMutableRawPointer(output)
    var i = 0
    while i + 16 <= count {
        let v = ra.loadUnaligned(fromByteOffset: 4 * i, as: V16.self) + rb.loadUnaligned(fromByteOffset: 4 * i, as: V16.self)
        d.storeBytes(of: V16().replacing(with: v, where: v .> 0), toByteOffset: 4 * i, as: V16.self)
        i += 16
    }
    while i < count { let v = a[i] + b[i]; output[i] = v > 0 ? v : 0; i += 1 }
}

/// ReLU backward fanned out to two gradients (a residual add's inputs): g = (out > 0 ? dOut : 0) is
/// written to `first` and, when given, `second`. See `reluBackwardFanOutReference`.
func _reluBackwardFanOut<L: KernelLevel>(_ level: L.Type, count: Int, output: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                                         first: UnsafeMutablePointer<Float>?, second: UnsafeMutablePointer<Float>?) {
    guard let first else {
        if let second { _reluBackward(level, count: count, output: output, outputGrad: outputGrad, inputGrad: second) }
        return
    }
    guard let second else { _reluBackward(level, count: count, output: output, outputGrad: outputGrad, inputGrad: first); return }
    let o = UnsafeRawPointer(output), g = UnsafeRawPointer(outputGrad)
    let d1 = UnsafeMutableRawPointer(first), d2 = UnsafeMutableRawPointer(second)
    var i = 0
    while i + 16 <= count {
        let y = o.loadUnaligned(fromByteOffset: 4 * i, as: V16.self)
        let v = V16().replacing(with: g.loadUnaligned(fromByteOffset: 4 * i, as: V16.self), where: y .> 0)
        d1.storeBytes(of: v, toByteOffset: 4 * i, as: V16.self)
        d2.storeBytes(of: v, toByteOffset: 4 * i, as: V16.self)
        i += 16
    }
    while i < count { let v = output[i] > 0 ? outputGrad[i] : 0; first[i] = v; second[i] = v; i += 1 }
}

/// Softmax cross-entropy. See `softmaxCrossEntropyReference` (same formulas, each exponential computed
/// once; results equal the reference's).
@discardableResult
public func softmaxCrossEntropy(rows: Int, classes: Int, logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
                                gradScale: Float, logitsGrad: UnsafeMutablePointer<Float>?) -> (loss: Double, correct: Int) {
    guard let grad = logitsGrad, classes > 0 else {
        return softmaxCrossEntropyReference(rows: rows, classes: classes, logits: logits, labels: labels,
                                            gradScale: gradScale, logitsGrad: logitsGrad)
    }
    var loss = 0.0
    var correct = 0
    for n in 0..<rows {
        let row = logits + n * classes
        let g = grad + n * classes
        var maxValue = row[0]
        var best = 0
        for k in 1..<max(1, classes) where row[k] > maxValue { maxValue = row[k]; best = k }
        // The exponentials go into the gradient row first, then get normalised in place.
        var sum: Double = 0
        for k in 0..<classes { let e = libmExp(row[k] - maxValue); g[k] = e; sum += Double(e) }
        let label = Int(labels[n])
        loss += -(Double(row[label] - maxValue) - libmLog(sum))
        if best == label { correct += 1 }
        for k in 0..<classes {
            let p = Float(Double(g[k]) / sum)
            g[k] = (p - (k == label ? 1 : 0)) * gradScale
        }
    }
    return (loss, correct)
}
