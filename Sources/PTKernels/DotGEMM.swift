// C[m][n] += A[m][k] . B[n][k]^T with both operands k-contiguous ("inner-product" GEMM), no packing.
// Used for weight gradients, where the reduction runs over pixels: dW[oc][K] += dOut[oc][P] . col[K][P]^T.
// Packing that product for the outer-product microkernel would transpose the big col matrix element by
// element; here both operands stream as they lie, 4 rows of A x 6 rows of B per register tile
// (24 SIMD16 partial sums, 10 loads per 24 FMAs), and each partial sum is reduced once at the end.

/// C[i][j] += sum_p A[i][p] * B[j][p]. Deterministic: per element, 16 lane-chains over p (lane l takes
/// p = l, l+16, ...), a fixed-order lane sum, then the scalar tail p >= k/16*16, then one add into C.
public func sgemmDotNT(m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                       c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m <= 0 || n <= 0 || k <= 0 { return }
    // Columns outside, rows inside: B (the unfolded input, usually the bigger operand, often beyond L2)
    // streams from memory once while A (m rows) stays in cache. Same sums as any other order.
    var j = 0
    while j < n {
        let cols = min(6, n - j)
        var i = 0
        while i < m {
            let rows = min(4, m - i)
            _dotTile4x6(k: k, a: a + i * lda, lda: lda, rows: rows, b: b + j * ldb, ldb: ldb, cols: cols,
                        c: c + i * ldc + j, ldc: ldc)
            i += 4
        }
        j += 6
    }
}

/// One 4x6 tile; missing rows/columns re-read the last valid one and are not stored.
@inline(never)
func _dotTile4x6(k: Int, a: UnsafePointer<Float>, lda: Int, rows: Int, b: UnsafePointer<Float>, ldb: Int, cols: Int,
                 c: UnsafeMutablePointer<Float>, ldc: Int) {
    typealias V = SIMD16<Float>
    let a0 = UnsafeRawPointer(a), a1 = UnsafeRawPointer(a + min(1, rows - 1) * lda)
    let a2 = UnsafeRawPointer(a + min(2, rows - 1) * lda), a3 = UnsafeRawPointer(a + min(3, rows - 1) * lda)
    let b0 = UnsafeRawPointer(b), b1 = UnsafeRawPointer(b + min(1, cols - 1) * ldb)
    let b2 = UnsafeRawPointer(b + min(2, cols - 1) * ldb), b3 = UnsafeRawPointer(b + min(3, cols - 1) * ldb)
    let b4 = UnsafeRawPointer(b + min(4, cols - 1) * ldb), b5 = UnsafeRawPointer(b + min(5, cols - 1) * ldb)
    var c00 = V(), c01 = V(), c02 = V(), c03 = V(), c04 = V(), c05 = V()
    var c10 = V(), c11 = V(), c12 = V(), c13 = V(), c14 = V(), c15 = V()
    var c20 = V(), c21 = V(), c22 = V(), c23 = V(), c24 = V(), c25 = V()
    var c30 = V(), c31 = V(), c32 = V(), c33 = V(), c34 = V(), c35 = V()
    let kv = k / 16 * 16
    var o = 0
    while o < kv * 4 {
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
    @inline(__always) func finish(_ acc: V, _ r: Int, _ q: Int) {
        guard r < rows && q < cols else { return }
        let ar = a + r * lda, br = b + q * ldb
        var s = _laneSum(acc)
        var p = kv
        while p < k { s = s.addingProduct(ar[p], br[p]); p += 1 }
        c[r * ldc + q] += s
    }
    finish(c00, 0, 0); finish(c01, 0, 1); finish(c02, 0, 2); finish(c03, 0, 3); finish(c04, 0, 4); finish(c05, 0, 5)
    finish(c10, 1, 0); finish(c11, 1, 1); finish(c12, 1, 2); finish(c13, 1, 3); finish(c14, 1, 4); finish(c15, 1, 5)
    finish(c20, 2, 0); finish(c21, 2, 1); finish(c22, 2, 2); finish(c23, 2, 3); finish(c24, 2, 4); finish(c25, 2, 5)
    finish(c30, 3, 0); finish(c31, 3, 1); finish(c32, 3, 2); finish(c33, 3, 3); finish(c34, 3, 4); finish(c35, 3, 5)
}

/// `v.sum()` inlined: the same left-to-right order (lane 0 + lane 1 + ... + lane 15), so the same bits.
/// The standard library's generic `sum()` was an out-of-line call: 3% of a LeNet step.
@inline(__always) @usableFromInline
func _laneSum(_ v: SIMD16<Float>) -> Float {
    var r = v[0]
    r += v[1]; r += v[2]; r += v[3]; r += v[4]; r += v[5]; r += v[6]; r += v[7]
    r += v[8]; r += v[9]; r += v[10]; r += v[11]; r += v[12]; r += v[13]; r += v[14]; r += v[15]
    return r
}
