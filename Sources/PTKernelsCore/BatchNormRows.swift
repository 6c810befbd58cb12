// Row passes of batch normalisation (PTModel's BatchNorm calls these through the dispatch table):
// one row is one sample's plane of one channel. Sums use 16 Float lanes on every level (lane l takes
// elements l, l+16, ...; one SIMD16 value, i.e. one zmm, two ymm or four xmm), then the lanes are
// added in Double in lane order, then the scalar tail in Double. So the order depends only on the
// row length; products accumulate through `L.madd` (fused on AVX2 and AVX-512, which therefore give
// the same bits; the baseline rounds the product first). The affine and input-gradient passes use
// no fused multiply-add, so they give the same bits on every level. Each has a `…Reference` twin.

@usableFromInline typealias BNLanes = SIMD16<Float>

@inline(__always) func _bnLanesSum(_ v: BNLanes) -> Double {
    var total = 0.0
    for i in 0..<16 { total += Double(v[i]) }
    return total
}

/// Sum of `count` values.
func _bnRowSum<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ count: Int) -> Double {
    let raw = UnsafeRawPointer(x)
    var acc = BNLanes()
    var i = 0
    while i + 16 <= count { acc += raw.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self); i += 16 }
    var total = _bnLanesSum(acc)
    while i < count { total += Double(x[i]); i += 1 }
    return total
}

/// Sum of (x - mean)^2.
func _bnRowSquares<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ count: Int, _ mean: Float) -> Double {
    let raw = UnsafeRawPointer(x)
    var acc = BNLanes()
    let m = BNLanes(repeating: mean)
    var i = 0
    while i + 16 <= count {
        let d = raw.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self) - m
        acc = L.madd(acc, d, d)
        i += 16
    }
    var total = _bnLanesSum(acc)
    while i < count { let d = Double(x[i] - mean); total += d * d; i += 1 }
    return total
}

/// (sum of dy, sum of dy * (x - mean)).
func _bnRowGradientSums<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ count: Int,
                                        _ mean: Float) -> (Double, Double) {
    let rx = UnsafeRawPointer(x), rdy = UnsafeRawPointer(dy)
    var accDy = BNLanes(), accCentered = BNLanes()
    let m = BNLanes(repeating: mean)
    var i = 0
    while i + 16 <= count {
        let g = rdy.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self)
        accDy += g
        accCentered = L.madd(accCentered, g, rx.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self) - m)
        i += 16
    }
    var sumDy = _bnLanesSum(accDy), sumCentered = _bnLanesSum(accCentered)
    while i < count { sumDy += Double(dy[i]); sumCentered += Double(dy[i]) * Double(x[i] - mean); i += 1 }
    return (sumDy, sumCentered)
}

/// y = x * scale + shift (multiply, then add).
func _bnAffine<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ count: Int, _ scale: Float, _ shift: Float,
                               _ y: UnsafeMutablePointer<Float>) {
    typealias V = L.V
    let w = L.width
    let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
    let a = V(repeating: scale), b = V(repeating: shift)
    var i = 0
    while i + w <= count {
        ry.storeBytes(of: rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b, toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count { y[i] = x[i] * scale + shift; i += 1 }
}

/// dx = a * dy + b * (x - mean) + k (each product rounded, then added left to right).
func _bnInputGradient<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ count: Int,
                                      _ mean: Float, _ a: Float, _ b: Float, _ k: Float, _ dx: UnsafeMutablePointer<Float>) {
    typealias V = L.V
    let w = L.width
    let rx = UnsafeRawPointer(x), rdy = UnsafeRawPointer(dy), rdx = UnsafeMutableRawPointer(dx)
    let va = V(repeating: a), vb = V(repeating: b), vk = V(repeating: k), vm = V(repeating: mean)
    var i = 0
    while i + w <= count {
        let centered = rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) - vm
        let v = rdy.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * va + centered * vb + vk
        rdx.storeBytes(of: v, toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count { dx[i] = dy[i] * a + (x[i] - mean) * b + k; i += 1 }
}

// MARK: Fused with ReLU and the residual add (PTModel's layer fusion)
//
// Each pass below is the composition of the unfused passes, element by element, with the same
// operations in the same order: the affine map (multiply, then add), then the residual add (one exact
// add, commutative), then ReLU (t > 0 ? t : 0, so NaN and -0 give 0). So fused and unfused layers give
// the same bits. Backward, ReLU's mask (its output > 0) is recomputed from the batch-norm input as
// x * scale + shift > 0, which is the forward's pre-activation bit for bit. The passes use SIMD16
// (one zmm, two ymm) on every level: the generic vector's compare and select are not lowered to
// vector instructions (measured: a lane-by-lane loop, 3-4x slower than the unfused passes).

/// z = relu(x * scale + shift).
func _bnAffineReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ count: Int, _ scale: Float, _ shift: Float,
                                   _ z: UnsafeMutablePointer<Float>) {
    typealias V = BNLanes
    let w = 16
    let rx = UnsafeRawPointer(x), rz = UnsafeMutableRawPointer(z)
    let a = V(repeating: scale), b = V(repeating: shift), zero = V()
    var i = 0
    while i + w <= count {
        let t = rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b
        rz.storeBytes(of: zero.replacing(with: t, where: t .> zero), toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count { let t = x[i] * scale + shift; z[i] = t > 0 ? t : 0; i += 1 }
}

/// z = relu((x * scale + shift) + other).
func _bnAffineAddReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ count: Int, _ scale: Float, _ shift: Float,
                                      _ other: UnsafePointer<Float>, _ z: UnsafeMutablePointer<Float>) {
    typealias V = BNLanes
    let w = 16
    let rx = UnsafeRawPointer(x), ro = UnsafeRawPointer(other), rz = UnsafeMutableRawPointer(z)
    let a = V(repeating: scale), b = V(repeating: shift), zero = V()
    var i = 0
    while i + w <= count {
        let t = (rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b) + ro.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
        rz.storeBytes(of: zero.replacing(with: t, where: t .> zero), toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count { let t = (x[i] * scale + shift) + other[i]; z[i] = t > 0 ? t : 0; i += 1 }
}

/// z = relu((x * scale + shift) + (x2 * scale2 + shift2)).
func _bnAffine2AddReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ count: Int, _ scale: Float, _ shift: Float,
                                       _ x2: UnsafePointer<Float>, _ scale2: Float, _ shift2: Float, _ z: UnsafeMutablePointer<Float>) {
    typealias V = BNLanes
    let w = 16
    let rx = UnsafeRawPointer(x), rx2 = UnsafeRawPointer(x2), rz = UnsafeMutableRawPointer(z)
    let a = V(repeating: scale), b = V(repeating: shift), a2 = V(repeating: scale2), b2 = V(repeating: shift2), zero = V()
    var i = 0
    while i + w <= count {
        let t = (rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b) + (rx2.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a2 + b2)
        rz.storeBytes(of: zero.replacing(with: t, where: t .> zero), toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count { let t = (x[i] * scale + shift) + (x2[i] * scale2 + shift2); z[i] = t > 0 ? t : 0; i += 1 }
}

/// `_bnRowGradientSums` of the masked gradient g = (x * scale + shift > 0 ? dy : 0).
func _bnRowGradientSumsReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ count: Int,
                                            _ mean: Float, _ scale: Float, _ shift: Float) -> (Double, Double) {
    let rx = UnsafeRawPointer(x), rdy = UnsafeRawPointer(dy)
    var accDy = BNLanes(), accCentered = BNLanes()
    let m = BNLanes(repeating: mean), a = BNLanes(repeating: scale), b = BNLanes(repeating: shift), zero = BNLanes()
    var i = 0
    while i + 16 <= count {
        let v = rx.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self)
        let g = zero.replacing(with: rdy.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self), where: v * a + b .> zero)
        accDy += g
        accCentered = L.madd(accCentered, g, v - m)
        i += 16
    }
    var sumDy = _bnLanesSum(accDy), sumCentered = _bnLanesSum(accCentered)
    while i < count {
        let g: Float = x[i] * scale + shift > 0 ? dy[i] : 0
        sumDy += Double(g); sumCentered += Double(g) * Double(x[i] - mean); i += 1
    }
    return (sumDy, sumCentered)
}

/// `_bnInputGradient` of the masked gradient g = (x * scale + shift > 0 ? dy : 0).
func _bnInputGradientReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ count: Int,
                                          _ mean: Float, _ a: Float, _ b: Float, _ k: Float, _ scale: Float, _ shift: Float,
                                          _ dx: UnsafeMutablePointer<Float>) {
    typealias V = BNLanes
    let w = 16
    let rx = UnsafeRawPointer(x), rdy = UnsafeRawPointer(dy), rdx = UnsafeMutableRawPointer(dx)
    let va = V(repeating: a), vb = V(repeating: b), vk = V(repeating: k), vm = V(repeating: mean)
    let vs = V(repeating: scale), vt = V(repeating: shift), zero = V()
    var i = 0
    while i + w <= count {
        let v = rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
        let g = zero.replacing(with: rdy.loadUnaligned(fromByteOffset: 4 * i, as: V.self), where: v * vs + vt .> zero)
        rdx.storeBytes(of: g * va + (v - vm) * vb + vk, toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count {
        let g: Float = x[i] * scale + shift > 0 ? dy[i] : 0
        dx[i] = g * a + (x[i] - mean) * b + k; i += 1
    }
}

// MARK: Reference twins (plain loops, the same order)

/// Twin of the row sum: 16 lane sums in Float, lanes then tail added in Double.
public func bnRowSumReference(_ x: UnsafePointer<Float>, count: Int) -> Double {
    var lanes = [Float](repeating: 0, count: 16)
    let body = count / 16 * 16
    for i in 0..<body { lanes[i % 16] += x[i] }
    var total = 0.0
    for l in 0..<16 { total += Double(lanes[l]) }
    for i in body..<count { total += Double(x[i]) }
    return total
}

/// Twin of the sum of squared deviations; `fused`: the level's multiply-add is fused.
public func bnRowSquaresReference(_ x: UnsafePointer<Float>, count: Int, mean: Float, fused: Bool) -> Double {
    var lanes = [Float](repeating: 0, count: 16)
    let body = count / 16 * 16
    for i in 0..<body {
        let d = x[i] - mean
        lanes[i % 16] = fused ? lanes[i % 16].addingProduct(d, d) : lanes[i % 16] + d * d
    }
    var total = 0.0
    for l in 0..<16 { total += Double(lanes[l]) }
    for i in body..<count { let d = Double(x[i] - mean); total += d * d }
    return total
}

/// Twin of the gradient sums: (sum of dy, sum of dy * (x - mean)).
public func bnRowGradientSumsReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                       fused: Bool) -> (Double, Double) {
    var lanesDy = [Float](repeating: 0, count: 16), lanesCentered = [Float](repeating: 0, count: 16)
    let body = count / 16 * 16
    for i in 0..<body {
        let c = x[i] - mean
        lanesDy[i % 16] += dy[i]
        lanesCentered[i % 16] = fused ? lanesCentered[i % 16].addingProduct(dy[i], c) : lanesCentered[i % 16] + dy[i] * c
    }
    var sumDy = 0.0, sumCentered = 0.0
    for l in 0..<16 { sumDy += Double(lanesDy[l]); sumCentered += Double(lanesCentered[l]) }
    for i in body..<count { sumDy += Double(dy[i]); sumCentered += Double(dy[i]) * Double(x[i] - mean) }
    return (sumDy, sumCentered)
}

/// Twin of the affine pass: y = x * scale + shift.
public func bnAffineReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, output y: UnsafeMutablePointer<Float>) {
    for i in 0..<count { y[i] = x[i] * scale + shift }
}

/// Twin of the input-gradient pass: dx = a * dy + b * (x - mean) + k.
public func bnInputGradientReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                     a: Float, b: Float, k: Float, inputGrad dx: UnsafeMutablePointer<Float>) {
    for i in 0..<count { dx[i] = dy[i] * a + (x[i] - mean) * b + k }
}

/// Twin of the fused affine + ReLU pass: z = relu(x * scale + shift).
public func bnAffineReLUReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, output z: UnsafeMutablePointer<Float>) {
    for i in 0..<count { let t = x[i] * scale + shift; z[i] = t > 0 ? t : 0 }
}

/// Twin of the fused affine + add + ReLU pass: z = relu((x * scale + shift) + other).
public func bnAffineAddReLUReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, other: UnsafePointer<Float>,
                                     output z: UnsafeMutablePointer<Float>) {
    for i in 0..<count { let t = (x[i] * scale + shift) + other[i]; z[i] = t > 0 ? t : 0 }
}

/// Twin of the fused two-affine + add + ReLU pass: z = relu((x * scale + shift) + (x2 * scale2 + shift2)).
public func bnAffine2AddReLUReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, _ x2: UnsafePointer<Float>,
                                      scale2: Float, shift2: Float, output z: UnsafeMutablePointer<Float>) {
    for i in 0..<count { let t = (x[i] * scale + shift) + (x2[i] * scale2 + shift2); z[i] = t > 0 ? t : 0 }
}

/// Twin of the masked gradient sums: `bnRowGradientSumsReference` of g = (x * scale + shift > 0 ? dy : 0).
public func bnRowGradientSumsReLUReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                           scale: Float, shift: Float, fused: Bool) -> (Double, Double) {
    var g = [Float](repeating: 0, count: max(1, count))
    for i in 0..<count { g[i] = x[i] * scale + shift > 0 ? dy[i] : 0 }
    return g.withUnsafeBufferPointer { bnRowGradientSumsReference(x, outputGrad: $0.baseAddress!, count: count, mean: mean, fused: fused) }
}

/// Twin of the masked input gradient: dx = g * a + (x - mean) * b + k, g = (x * scale + shift > 0 ? dy : 0).
public func bnInputGradientReLUReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                         a: Float, b: Float, k: Float, scale: Float, shift: Float, inputGrad dx: UnsafeMutablePointer<Float>) {
    for i in 0..<count {
        let g: Float = x[i] * scale + shift > 0 ? dy[i] : 0
        dx[i] = g * a + (x[i] - mean) * b + k
    }
}
