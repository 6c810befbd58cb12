// Passes of batch normalisation over one channel (PTModel's BatchNorm calls these through the dispatch
// table): `rows` rows of `count` values, row r starting `r * rowStride` floats after the first (one row is
// one sample's plane of the channel, so one call covers the channel's whole shard). Sums use 16 Float lanes
// per row on every level (lane l takes elements l, l+16, ...; one SIMD16 value, i.e. one zmm, two ymm or four
// xmm); each row's lanes are converted to Double and added lane by lane into 16 Double lanes, the rows' scalar
// tails into one Double; at the end the 16 Double lanes are added in lane order, then the tails' sum. So the
// order depends only on the row length and count; products accumulate through `L.madd` (fused on AVX2 and
// AVX-512, which therefore give the same bits; the baseline rounds the product first). The affine and
// input-gradient passes use no fused multiply-add, so they give the same bits on every level. Each has a
// `…Reference` twin.
//
// One call per channel rather than per row, and rows added in Double lanes rather than each row's 16 lanes
// one after another: ResNet-20's 8x8 and 16x16 planes (64 and 256 values a row) spent more time in the call
// and the 16 dependent Double adds per row than in the row itself.

import CPTPrefetch

@usableFromInline typealias BNLanes = SIMD16<Float>

/// Asks for the line `i` floats into the row `ahead` floats after `row` (0 for the last row: a line already read). A
/// channel's row is one sample's plane, often a single 4 KiB page (32x32), where the hardware's stream prefetch stops;
/// the gradient sums (the backward's first pass over the layer's input and output gradient, both long out of cache) fetch
/// the next row's lines, one per step of the current row. No result changes.
@inline(__always) func _bnFetchAhead(_ row: UnsafeRawPointer, _ i: Int, _ ahead: Int) { pt_prefetch_l2(row + 4 * (i + ahead)) }

/// Stores `v` at `row + 4 * i`: around the caches when `stream` (the row is 64-byte aligned). The passes that write a
/// tensor read much later (an activation the backward reads, an input gradient the convolution's backward fetches
/// ahead itself) stream it: a normal store reads each line from memory first, in a pass that is all memory traffic.
/// The pass ends with `pt_stream_fence()`. No result changes.
@inline(__always) func _bnStore(_ v: BNLanes, _ row: UnsafeMutableRawPointer, _ i: Int, stream: Bool) {
    if stream {
        var u = v
        pt_stream_store64(row + 4 * i, &u)
    } else {
        row.storeBytes(of: v, toByteOffset: 4 * i, as: BNLanes.self)
    }
}

/// 16 Double lanes (two zmm on AVX-512; the element loop below compiles to vcvtps2pd + vaddpd there).
@usableFromInline struct BNDoubleLanes {
    var v = SIMD16<Double>()
    @inline(__always) mutating func add(_ lanes: BNLanes) { for l in 0..<16 { v[l] += Double(lanes[l]) } }
    /// The lanes in order, then `tail`.
    @inline(__always) func total(tail: Double) -> Double {
        var t = 0.0
        for l in 0..<16 { t += v[l] }
        return t + tail
    }
}

/// Sum of the values.
func _bnRowSum<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int) -> Double {
    var lanes = BNDoubleLanes(), tail = 0.0
    for r in 0..<rows {
        let xr = x + r * stride
        let raw = UnsafeRawPointer(xr)
        var acc = BNLanes()
        var i = 0
        while i + 16 <= count { acc += raw.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self); i += 16 }
        lanes.add(acc)
        while i < count { tail += Double(xr[i]); i += 1 }
    }
    return lanes.total(tail: tail)
}

/// Sum of (x - mean)^2.
func _bnRowSquares<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int,
                                   _ mean: Float) -> Double {
    var lanes = BNDoubleLanes(), tail = 0.0
    let m = BNLanes(repeating: mean)
    for r in 0..<rows {
        let xr = x + r * stride
        let raw = UnsafeRawPointer(xr)
        var acc = BNLanes()
        var i = 0
        while i + 16 <= count {
            let d = raw.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self) - m
            acc = L.madd(acc, d, d)
            i += 16
        }
        lanes.add(acc)
        while i < count { let d = Double(xr[i] - mean); tail += d * d; i += 1 }
    }
    return lanes.total(tail: tail)
}

/// (sum of g, sum of g * (x - mean)) with g = dy, or with `relu`, g = (x * scale + shift > 0 ? dy : 0), or with
/// `mask`, g = (mask > 0 ? dy : 0).
@inline(__always)
func _bnGradientSums<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ stride: Int,
                                     _ count: Int, _ mean: Float, relu: Bool, _ scale: Float, _ shift: Float,
                                     mask: UnsafePointer<Float>? = nil) -> (Double, Double) {
    var lanesDy = BNDoubleLanes(), lanesCentered = BNDoubleLanes(), tailDy = 0.0, tailCentered = 0.0
    let m = BNLanes(repeating: mean), a = BNLanes(repeating: scale), b = BNLanes(repeating: shift), zero = BNLanes()
    for r in 0..<rows {
        let xr = x + r * stride, dyr = dy + r * stride
        let rx = UnsafeRawPointer(xr), rdy = UnsafeRawPointer(dyr)
        let mr = mask.map { $0 + r * stride }
        var accDy = BNLanes(), accCentered = BNLanes()
        let ahead = r + 1 < rows ? stride : 0
        var i = 0
        while i + 16 <= count {
            _bnFetchAhead(rx, i, ahead)
            _bnFetchAhead(rdy, i, ahead)
            if let mr { _bnFetchAhead(UnsafeRawPointer(mr), i, ahead) }
            let v = rx.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self)
            var g = rdy.loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self)
            if relu { g = zero.replacing(with: g, where: v * a + b .> zero) }
            if let mr { g = zero.replacing(with: g, where: UnsafeRawPointer(mr).loadUnaligned(fromByteOffset: 4 * i, as: BNLanes.self) .> zero) }
            accDy += g
            accCentered = L.madd(accCentered, g, v - m)
            i += 16
        }
        lanesDy.add(accDy)
        lanesCentered.add(accCentered)
        while i < count {
            var g: Float = !relu || xr[i] * scale + shift > 0 ? dyr[i] : 0
            if let mr, !(mr[i] > 0) { g = 0 }
            tailDy += Double(g); tailCentered += Double(g) * Double(xr[i] - mean); i += 1
        }
    }
    return (lanesDy.total(tail: tailDy), lanesCentered.total(tail: tailCentered))
}

/// (sum of dy, sum of dy * (x - mean)).
func _bnRowGradientSums<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ stride: Int,
                                        _ count: Int, _ mean: Float) -> (Double, Double) {
    _bnGradientSums(level, x, dy, rows, stride, count, mean, relu: false, 0, 0)
}

/// y = x * scale + shift (multiply, then add).
func _bnAffine<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int, _ scale: Float,
                               _ shift: Float, _ y: UnsafeMutablePointer<Float>) {
    typealias V = L.V
    let w = L.width
    let a = V(repeating: scale), b = V(repeating: shift)
    for r in 0..<rows {
        let x = x + r * stride, y = y + r * stride
        let rx = UnsafeRawPointer(x), ry = UnsafeMutableRawPointer(y)
        var i = 0
        while i + w <= count {
            ry.storeBytes(of: rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b, toByteOffset: 4 * i, as: V.self)
            i += w
        }
        while i < count { y[i] = x[i] * scale + shift; i += 1 }
    }
}

/// dx = a * dy + b * (x - mean) + k (each product rounded, then added left to right).
func _bnInputGradient<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int, _ stride: Int,
                                      _ count: Int, _ mean: Float, _ a: Float, _ b: Float, _ k: Float, _ dx: UnsafeMutablePointer<Float>) {
    typealias V = L.V
    let w = L.width
    let va = V(repeating: a), vb = V(repeating: b), vk = V(repeating: k), vm = V(repeating: mean)
    for r in 0..<rows {
        let x = x + r * stride, dy = dy + r * stride, dx = dx + r * stride
        let rx = UnsafeRawPointer(x), rdy = UnsafeRawPointer(dy), rdx = UnsafeMutableRawPointer(dx)
        var i = 0
        while i + w <= count {
            let centered = rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) - vm
            let v = rdy.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * va + centered * vb + vk
            rdx.storeBytes(of: v, toByteOffset: 4 * i, as: V.self)
            i += w
        }
        while i < count { dx[i] = dy[i] * a + (x[i] - mean) * b + k; i += 1 }
    }
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
func _bnAffineReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int, _ scale: Float,
                                   _ shift: Float, _ z: UnsafeMutablePointer<Float>) {
    defer { pt_stream_fence() }
    typealias V = BNLanes
    let w = 16
    let a = V(repeating: scale), b = V(repeating: shift), zero = V()
    for r in 0..<rows {
        let x = x + r * stride, z = z + r * stride
        let rx = UnsafeRawPointer(x), rz = UnsafeMutableRawPointer(z)
        let stream = Int(bitPattern: rz) & 63 == 0
        var i = 0
        while i + w <= count {
            let t = rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b
            _bnStore(zero.replacing(with: t, where: t .> zero), rz, i, stream: stream)
            i += w
        }
        while i < count { let t = x[i] * scale + shift; z[i] = t > 0 ? t : 0; i += 1 }
    }
}

/// z = relu((x * scale + shift) + other) over a whole tensor of `samples` x `channels` planes of `count` values
/// (plane (n, c) at `(n * channels + c) * count`), channel c's scale and shift at `map[c]` and `map[channels + c]`;
/// one fence at the end. The residual add walks its tensors sample by sample, and at ResNet-20's 8x8 planes a
/// fence per plane (8,192 a step) cost more than the plane's stores.
func _bnAffineAddReLUPlanes<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ other: UnsafePointer<Float>,
                                            _ map: UnsafePointer<Float>, _ samples: Int, _ channels: Int, _ count: Int,
                                            _ z: UnsafeMutablePointer<Float>) {
    defer { pt_stream_fence() }
    typealias V = BNLanes
    let w = 16, zero = V()
    for n in 0..<samples {
        for c in 0..<channels {
            let at = (n * channels + c) * count, scale = map[c], shift = map[channels + c]
            let a = V(repeating: scale), b = V(repeating: shift)
            let x = x + at, other = other + at, z = z + at
            let rx = UnsafeRawPointer(x), ro = UnsafeRawPointer(other), rz = UnsafeMutableRawPointer(z)
            let stream = Int(bitPattern: rz) & 63 == 0
            var i = 0
            while i + w <= count {
                let t = (rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b) + ro.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
                _bnStore(zero.replacing(with: t, where: t .> zero), rz, i, stream: stream)
                i += w
            }
            while i < count { let t = (x[i] * scale + shift) + other[i]; z[i] = t > 0 ? t : 0; i += 1 }
        }
    }
}

/// z = relu((x * scale + shift) + (x2 * scale2 + shift2)) over a whole tensor, as `_bnAffineAddReLUPlanes`: x's map
/// at `map`, x2's at `map2`.
func _bnAffine2AddReLUPlanes<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ map: UnsafePointer<Float>,
                                             _ x2: UnsafePointer<Float>, _ map2: UnsafePointer<Float>, _ samples: Int,
                                             _ channels: Int, _ count: Int, _ z: UnsafeMutablePointer<Float>) {
    defer { pt_stream_fence() }
    typealias V = BNLanes
    let w = 16, zero = V()
    for n in 0..<samples {
        for c in 0..<channels {
            let at = (n * channels + c) * count
            let scale = map[c], shift = map[channels + c], scale2 = map2[c], shift2 = map2[channels + c]
            let a = V(repeating: scale), b = V(repeating: shift), a2 = V(repeating: scale2), b2 = V(repeating: shift2)
            let x = x + at, x2 = x2 + at, z = z + at
            let rx = UnsafeRawPointer(x), rx2 = UnsafeRawPointer(x2), rz = UnsafeMutableRawPointer(z)
            let stream = Int(bitPattern: rz) & 63 == 0
            var i = 0
            while i + w <= count {
                let t = (rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a + b)
                    + (rx2.loadUnaligned(fromByteOffset: 4 * i, as: V.self) * a2 + b2)
                _bnStore(zero.replacing(with: t, where: t .> zero), rz, i, stream: stream)
                i += w
            }
            while i < count { let t = (x[i] * scale + shift) + (x2[i] * scale2 + shift2); z[i] = t > 0 ? t : 0; i += 1 }
        }
    }
}

/// `_bnRowGradientSums` of the masked gradient g = (x * scale + shift > 0 ? dy : 0).
func _bnRowGradientSumsReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int,
                                            _ stride: Int, _ count: Int, _ mean: Float, _ scale: Float, _ shift: Float) -> (Double, Double) {
    _bnGradientSums(level, x, dy, rows, stride, count, mean, relu: true, scale, shift)
}

/// `_bnRowGradientSums` of the gradient masked by another tensor: g = (mask > 0 ? dy : 0) (ReLU's output after a residual
/// add that this batch norm feeds: ReLU's backward and the add's gradient copy fused).
func _bnRowGradientSumsMasked<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                              _ mask: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int,
                                              _ mean: Float) -> (Double, Double) {
    _bnGradientSums(level, x, dy, rows, stride, count, mean, relu: false, 0, 0, mask: mask)
}

/// `_bnInputGradient` of the gated gradient g: with `relu`, g = (x * scale + shift > 0 ? dy : 0), with `mask`,
/// g = (mask > 0 ? dy : 0) (16 lanes on every level; no fused multiply-add, so the same bits everywhere).
@inline(__always)
func _bnGatedInputGradient<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int,
                                           _ stride: Int, _ count: Int, _ mean: Float, _ a: Float, _ b: Float, _ k: Float,
                                           relu: Bool, _ scale: Float, _ shift: Float, mask: UnsafePointer<Float>?,
                                           _ dx: UnsafeMutablePointer<Float>) {
    defer { pt_stream_fence() }
    typealias V = BNLanes
    let w = 16
    let va = V(repeating: a), vb = V(repeating: b), vk = V(repeating: k), vm = V(repeating: mean)
    let vs = V(repeating: scale), vt = V(repeating: shift), zero = V()
    for r in 0..<rows {
        let x = x + r * stride, dy = dy + r * stride, dx = dx + r * stride
        let mr = mask.map { $0 + r * stride }
        let rx = UnsafeRawPointer(x), rdy = UnsafeRawPointer(dy), rdx = UnsafeMutableRawPointer(dx)
        let stream = Int(bitPattern: rdx) & 63 == 0
        var i = 0
        while i + w <= count {
            let v = rx.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            var g = rdy.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            if relu { g = zero.replacing(with: g, where: v * vs + vt .> zero) }
            if let mr { g = zero.replacing(with: g, where: UnsafeRawPointer(mr).loadUnaligned(fromByteOffset: 4 * i, as: V.self) .> zero) }
            _bnStore(g * va + (v - vm) * vb + vk, rdx, i, stream: stream)
            i += w
        }
        while i < count {
            var g: Float = !relu || x[i] * scale + shift > 0 ? dy[i] : 0
            if let mr, !(mr[i] > 0) { g = 0 }
            dx[i] = g * a + (x[i] - mean) * b + k; i += 1
        }
    }
}

/// `_bnInputGradient` of g = (mask > 0 ? dy : 0).
func _bnInputGradientMasked<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                            _ mask: UnsafePointer<Float>, _ rows: Int, _ stride: Int, _ count: Int, _ mean: Float,
                                            _ a: Float, _ b: Float, _ k: Float, _ dx: UnsafeMutablePointer<Float>) {
    _bnGatedInputGradient(level, x, dy, rows, stride, count, mean, a, b, k, relu: false, 0, 0, mask: mask, dx)
}

/// `_bnInputGradient` of the masked gradient g = (x * scale + shift > 0 ? dy : 0).
func _bnInputGradientReLU<L: KernelLevel>(_ level: L.Type, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ rows: Int,
                                          _ stride: Int, _ count: Int, _ mean: Float, _ a: Float, _ b: Float, _ k: Float, _ scale: Float,
                                          _ shift: Float, _ dx: UnsafeMutablePointer<Float>) {
    _bnGatedInputGradient(level, x, dy, rows, stride, count, mean, a, b, k, relu: true, scale, shift, mask: nil, dx)
}

// MARK: Reference twins (plain loops, the same order)
//
// `rows` rows of `count` values, row r at `r * rowStride` (the same for every operand); sums: per row 16
// Float lanes, the rows' lanes added lane by lane in Double, the tails in one Double, then the Double lanes
// in order and the tails' sum.

@inline(__always) func _bnReferenceTotal(_ lanes: [Double], _ tail: Double) -> Double {
    var total = 0.0
    for l in 0..<16 { total += lanes[l] }
    return total + tail
}

/// Twin of the sum.
public func bnRowSumReference(_ x: UnsafePointer<Float>, count: Int, rows: Int = 1, rowStride: Int = 0) -> Double {
    var total = [Double](repeating: 0, count: 16), tail = 0.0
    let body = count / 16 * 16
    for r in 0..<rows {
        let x = x + r * rowStride
        var lanes = [Float](repeating: 0, count: 16)
        for i in 0..<body { lanes[i % 16] += x[i] }
        for l in 0..<16 { total[l] += Double(lanes[l]) }
        for i in body..<count { tail += Double(x[i]) }
    }
    return _bnReferenceTotal(total, tail)
}

/// Twin of the sum of squared deviations; `fused`: the level's multiply-add is fused.
public func bnRowSquaresReference(_ x: UnsafePointer<Float>, count: Int, mean: Float, fused: Bool, rows: Int = 1,
                                  rowStride: Int = 0) -> Double {
    var total = [Double](repeating: 0, count: 16), tail = 0.0
    let body = count / 16 * 16
    for r in 0..<rows {
        let x = x + r * rowStride
        var lanes = [Float](repeating: 0, count: 16)
        for i in 0..<body {
            let d = x[i] - mean
            lanes[i % 16] = fused ? lanes[i % 16].addingProduct(d, d) : lanes[i % 16] + d * d
        }
        for l in 0..<16 { total[l] += Double(lanes[l]) }
        for i in body..<count { let d = Double(x[i] - mean); tail += d * d }
    }
    return _bnReferenceTotal(total, tail)
}

/// Twin of the gradient sums: (sum of dy, sum of dy * (x - mean)).
public func bnRowGradientSumsReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                       fused: Bool, rows: Int = 1, rowStride: Int = 0) -> (Double, Double) {
    var totalDy = [Double](repeating: 0, count: 16), totalCentered = [Double](repeating: 0, count: 16)
    var tailDy = 0.0, tailCentered = 0.0
    let body = count / 16 * 16
    for r in 0..<rows {
        let x = x + r * rowStride, dy = dy + r * rowStride
        var lanesDy = [Float](repeating: 0, count: 16), lanesCentered = [Float](repeating: 0, count: 16)
        for i in 0..<body {
            let c = x[i] - mean
            lanesDy[i % 16] += dy[i]
            lanesCentered[i % 16] = fused ? lanesCentered[i % 16].addingProduct(dy[i], c) : lanesCentered[i % 16] + dy[i] * c
        }
        for l in 0..<16 { totalDy[l] += Double(lanesDy[l]); totalCentered[l] += Double(lanesCentered[l]) }
        for i in body..<count { tailDy += Double(dy[i]); tailCentered += Double(dy[i]) * Double(x[i] - mean) }
    }
    return (_bnReferenceTotal(totalDy, tailDy), _bnReferenceTotal(totalCentered, tailCentered))
}

/// Calls `body(offset)` for the start of each row.
@inline(__always) func _bnReferenceRows(_ rows: Int, _ rowStride: Int, _ body: (Int) -> Void) {
    for r in 0..<rows { body(r * rowStride) }
}

/// Twin of the affine pass: y = x * scale + shift.
public func bnAffineReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, output y: UnsafeMutablePointer<Float>,
                              rows: Int = 1, rowStride: Int = 0) {
    _bnReferenceRows(rows, rowStride) { o in for i in o..<(o + count) { y[i] = x[i] * scale + shift } }
}

/// Twin of the input-gradient pass: dx = a * dy + b * (x - mean) + k.
public func bnInputGradientReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                     a: Float, b: Float, k: Float, inputGrad dx: UnsafeMutablePointer<Float>, rows: Int = 1,
                                     rowStride: Int = 0) {
    _bnReferenceRows(rows, rowStride) { o in for i in o..<(o + count) { dx[i] = dy[i] * a + (x[i] - mean) * b + k } }
}

/// Twin of the fused affine + ReLU pass: z = relu(x * scale + shift).
public func bnAffineReLUReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, output z: UnsafeMutablePointer<Float>,
                                  rows: Int = 1, rowStride: Int = 0) {
    _bnReferenceRows(rows, rowStride) { o in for i in o..<(o + count) { let t = x[i] * scale + shift; z[i] = t > 0 ? t : 0 } }
}

/// Twin of the fused affine + add + ReLU pass: z = relu((x * scale + shift) + other).
public func bnAffineAddReLUReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, other: UnsafePointer<Float>,
                                     output z: UnsafeMutablePointer<Float>, rows: Int = 1, rowStride: Int = 0) {
    _bnReferenceRows(rows, rowStride) { o in
        for i in o..<(o + count) { let t = (x[i] * scale + shift) + other[i]; z[i] = t > 0 ? t : 0 }
    }
}

/// Twin of the fused two-affine + add + ReLU pass: z = relu((x * scale + shift) + (x2 * scale2 + shift2)).
public func bnAffine2AddReLUReference(_ x: UnsafePointer<Float>, count: Int, scale: Float, shift: Float, _ x2: UnsafePointer<Float>,
                                      scale2: Float, shift2: Float, output z: UnsafeMutablePointer<Float>, rows: Int = 1,
                                      rowStride: Int = 0) {
    _bnReferenceRows(rows, rowStride) { o in
        for i in o..<(o + count) { let t = (x[i] * scale + shift) + (x2[i] * scale2 + shift2); z[i] = t > 0 ? t : 0 }
    }
}

/// Twin of the masked gradient sums: `bnRowGradientSumsReference` of g = (x * scale + shift > 0 ? dy : 0).
public func bnRowGradientSumsReLUReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                           scale: Float, shift: Float, fused: Bool, rows: Int = 1,
                                           rowStride: Int = 0) -> (Double, Double) {
    let extent = rows == 0 ? 0 : (rows - 1) * rowStride + count
    var g = [Float](repeating: 0, count: max(1, extent))
    _bnReferenceRows(rows, rowStride) { o in for i in o..<(o + count) { g[i] = x[i] * scale + shift > 0 ? dy[i] : 0 } }
    return g.withUnsafeBufferPointer {
        bnRowGradientSumsReference(x, outputGrad: $0.baseAddress!, count: count, mean: mean, fused: fused, rows: rows, rowStride: rowStride)
    }
}

/// Twin of the gradient sums masked by another tensor: `bnRowGradientSumsReference` of g = (mask > 0 ? dy : 0).
public func bnRowGradientSumsMaskedReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                                             count: Int, mean: Float, fused: Bool, rows: Int = 1, rowStride: Int = 0) -> (Double, Double) {
    let extent = rows == 0 ? 0 : (rows - 1) * rowStride + count
    var g = [Float](repeating: 0, count: max(1, extent))
    _bnReferenceRows(rows, rowStride) { o in for i in o..<(o + count) { g[i] = mask[i] > 0 ? dy[i] : 0 } }
    return g.withUnsafeBufferPointer {
        bnRowGradientSumsReference(x, outputGrad: $0.baseAddress!, count: count, mean: mean, fused: fused, rows: rows, rowStride: rowStride)
    }
}

/// Twin of the input gradient masked by another tensor: dx = g * a + (x - mean) * b + k, g = (mask > 0 ? dy : 0).
public func bnInputGradientMaskedReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, mask: UnsafePointer<Float>,
                                           count: Int, mean: Float, a: Float, b: Float, k: Float, inputGrad dx: UnsafeMutablePointer<Float>,
                                           rows: Int = 1, rowStride: Int = 0) {
    _bnReferenceRows(rows, rowStride) { o in
        for i in o..<(o + count) {
            let g: Float = mask[i] > 0 ? dy[i] : 0
            dx[i] = g * a + (x[i] - mean) * b + k
        }
    }
}

/// Twin of the masked input gradient: dx = g * a + (x - mean) * b + k, g = (x * scale + shift > 0 ? dy : 0).
public func bnInputGradientReLUReference(_ x: UnsafePointer<Float>, outputGrad dy: UnsafePointer<Float>, count: Int, mean: Float,
                                         a: Float, b: Float, k: Float, scale: Float, shift: Float, inputGrad dx: UnsafeMutablePointer<Float>,
                                         rows: Int = 1, rowStride: Int = 0) {
    _bnReferenceRows(rows, rowStride) { o in
        for i in o..<(o + count) {
            let g: Float = x[i] * scale + shift > 0 ? dy[i] : 0
            dx[i] = g * a + (x[i] - mean) * b + k
        }
    }
}
