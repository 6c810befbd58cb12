// C[m][n] += A[m][k] . B[n][k]^T with both operands k-contiguous ("inner-product" GEMM), no packing.
// Used for weight gradients, where the reduction runs over pixels: dW[oc][K] += dOut[oc][P] . col[K][P]^T.
// Packing that product for the outer-product microkernel would transpose the big col matrix element by
// element; here both operands stream as they lie, R rows of A x C rows of B per register tile
// (`DotTile`, the level's `dotShape`), and each 16-lane partial sum is reduced once at the end.

/// C[i][j] += sum_p A[i][p] * B[j][p]. Deterministic: per element, 16 lane-chains over p (lane l takes
/// p = l, l+16, ...), a fixed-order lane sum, then the scalar tail p >= k/16*16, then one add into C.
func _sgemmDotNT<L: KernelLevel>(_ level: L.Type, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                 b: UnsafePointer<Float>, ldb: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m <= 0 || n <= 0 || k <= 0 { return }
    let (tr, tc) = L.dotShape
    // Columns outside, rows inside: B (the unfolded input, usually the bigger operand, often beyond L2)
    // streams from memory once while A (m rows) stays in cache. Same sums as any other order.
    var j = 0
    while j < n {
        let cols = min(tc, n - j)
        var i = 0
        while i < m {
            let rows = min(tr, m - i)
            L.dotTile(transposed: false, k: k, a: a + i * lda, lda: lda, rows: rows, b: b + j * ldb, ldb: ldb, cols: cols,
                      c: c + i * ldc + j, ldc: ldc)
            i += tr
        }
        j += tc
    }
}
