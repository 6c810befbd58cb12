// SGEMM entry point used by the layers. Dispatches to the fastest applicable implementation.

/// C[m][n] = alpha * op(A) op(B) + beta * C (row-major; see `sgemmReference`).
/// Results are deterministic for a given shape: the summation order depends only on (m, n, k),
/// never on threads.
public func sgemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float = 1,
                  a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                  beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    if m == 0 || n == 0 { return }
    // Scale or clear C first; the loops below only accumulate.
    for i in 0..<m {
        let row = c + i * ldc
        if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
    }
    if k == 0 { return }
    switch (transA, transB) {
    case (false, false):
        // Row of C accumulates scaled rows of B: contiguous in j, vectorises.
        for i in 0..<m {
            let crow = c + i * ldc
            for p in 0..<k {
                let av = alpha * a[i * lda + p]
                let brow = b + p * ldb
                for j in 0..<n { crow[j] += av * brow[j] }
            }
        }
    case (true, false):
        for p in 0..<k {
            let brow = b + p * ldb
            for i in 0..<m {
                let av = alpha * a[p * lda + i]
                let crow = c + i * ldc
                for j in 0..<n { crow[j] += av * brow[j] }
            }
        }
    case (false, true):
        for i in 0..<m {
            let arow = a + i * lda
            for j in 0..<n {
                let brow = b + j * ldb
                var s0: Float = 0, s1: Float = 0, s2: Float = 0, s3: Float = 0
                var p = 0
                while p + 4 <= k {
                    s0 += arow[p] * brow[p]; s1 += arow[p + 1] * brow[p + 1]
                    s2 += arow[p + 2] * brow[p + 2]; s3 += arow[p + 3] * brow[p + 3]
                    p += 4
                }
                while p < k { s0 += arow[p] * brow[p]; p += 1 }
                c[i * ldc + j] += alpha * ((s0 + s1) + (s2 + s3))
            }
        }
    case (true, true):
        for i in 0..<m {
            for j in 0..<n {
                var s: Float = 0
                for p in 0..<k { s += a[p * lda + i] * b[j * ldb + p] }
                c[i * ldc + j] += alpha * s
            }
        }
    }
}
