// SGEMM against sgemmReference over awkward shapes, all transposes, alpha/beta; determinism; speed floor.
import XCTest
import PTKernels

final class GEMMTests: XCTestCase {
    func run(_ ta: Bool, _ tb: Bool, _ m: Int, _ n: Int, _ k: Int, alpha: Float, beta: Float, pad: Int,
             workspace: Bool) -> (fast: Buffer, ref: Buffer) {
        let lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad
        let a = Buffer(random: (ta ? k : m) * lda, seed: UInt64(m * 7 + k))
        let b = Buffer(random: (tb ? n : k) * ldb, seed: UInt64(n * 13 + k))
        let c0 = Buffer(random: m * ldc, seed: 99)
        let fast = c0.copy(), ref = c0.copy()
        let ws = Buffer(sgemmWorkspaceCount(m: m, n: n, k: k))
        sgemm(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb,
              beta: beta, c: fast.pointer, ldc: ldc, workspace: workspace ? ws.pointer : nil)
        sgemmReference(transA: ta, transB: tb, m: m, n: n, k: k, alpha: alpha, a: a.pointer, lda: lda, b: b.pointer,
                       ldb: ldb, beta: beta, c: ref.pointer, ldc: ldc)
        return (fast, ref)
    }

    func testSweepAgainstReference() {
        let sizes = [1, 2, 5, 13, 14, 15, 17, 31, 33, 47, 64, 100]
        var cases = 0
        for (i, m) in sizes.enumerated() {
            for (j, n) in sizes.enumerated() {
                let k = sizes[(i + 2 * j) % sizes.count]
                for ta in [false, true] {
                    for tb in [false, true] {
                        let (alpha, beta): (Float, Float) = [(1, 0), (1, 1), (0.5, -2), (-1, 0.25)][(i + j) % 4]
                        let (f, r) = run(ta, tb, m, n, k, alpha: alpha, beta: beta, pad: (i + j) % 3, workspace: (i + j) % 2 == 0)
                        assertClose(f, r, reduction: k, "sgemm ta=\(ta) tb=\(tb) m=\(m) n=\(n) k=\(k) alpha=\(alpha) beta=\(beta)")
                        cases += 1
                    }
                }
            }
        }
        XCTAssertEqual(cases, 576)
    }

    func testLargeBlocksCrossed() {
        // k > KC, m > MC, n > NC: several k-blocks accumulate into C.
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let (f, r) = run(ta, tb, 130, 4150, 400, alpha: 1, beta: 0.5, pad: 1, workspace: true)
            assertClose(f, r, reduction: 400, "sgemm big ta=\(ta) tb=\(tb)")
        }
    }

    func testDotNTMatchesReference() {
        for (m, n, k) in [(1, 1, 1), (3, 5, 15), (4, 6, 16), (5, 7, 17), (9, 13, 100), (16, 25, 1000), (6, 150, 2000)] {
            let lda = k + 1, ldb = k + 3, ldc = n + 2
            let a = Buffer(random: m * lda, seed: 21), b = Buffer(random: n * ldb, seed: 22)
            let c = Buffer(random: m * ldc, seed: 23), ref = c.copy()
            sgemmDotNT(m: m, n: n, k: k, a: a.pointer, lda: lda, b: b.pointer, ldb: ldb, c: c.pointer, ldc: ldc)
            sgemmReference(transA: false, transB: true, m: m, n: n, k: k, alpha: 1, a: a.pointer, lda: lda, b: b.pointer,
                           ldb: ldb, beta: 1, c: ref.pointer, ldc: ldc)
            assertClose(c, ref, reduction: k, "sgemmDotNT m=\(m) n=\(n) k=\(k)")
        }
    }

    func testKZeroScalesC() {
        let (f, r) = run(false, false, 5, 7, 0, alpha: 1, beta: 0.5, pad: 0, workspace: false)
        assertClose(f, r, reduction: 1, "k = 0")
    }

    func testDeterministicAcrossRunsKernelsAndAlignment() {
        let (m, n, k) = (123, 301, 700)
        let a = Buffer(random: m * k, seed: 1), b = Buffer(random: k * n, seed: 2)
        let c1 = Buffer(m * n), c2 = Buffer(m * n + 1)
        sgemm(transA: false, transB: false, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, beta: 0, c: c1.pointer, ldc: n)
        // Shifted (misaligned) output pointer and the caller's own workspace.
        let ws = Buffer(sgemmWorkspaceCount(m: m, n: n, k: k) + 1)
        sgemm(transA: false, transB: false, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: n, beta: 0,
              c: c2.pointer + 1, ldc: n, workspace: ws.pointer + 1)
        let shifted = Buffer(m * n); shifted.pointer.update(from: c2.pointer + 1, count: m * n)
        assertIdentical(c1, shifted, "sgemm misaligned C / workspace")
        // Every microkernel computes the same bits.
        for kernel in _gemmKernelNames {
            let ck = Buffer(m * n)
            _sgemmWithKernel(kernel, transA: false, transB: false, m: m, n: n, k: k, a: a.pointer, lda: k,
                             b: b.pointer, ldb: n, beta: 0, c: ck.pointer, ldc: n)
            assertIdentical(c1, ck, "sgemm kernel \(kernel) vs \(gemmKernelName)")
        }
    }

    /// A level module built without its target CPU runs SIMD FMAs through libm (<1 GFLOP/s); a level
    /// compiled properly does 256^3 at tens of GFLOP/s (the baseline, SSE without FMA, at several)
    /// even while the other core is busy. Best of 10.
    func testSpeedFloorCatchesMissingTargetCPU() {
        let n = 256
        let a = Buffer(random: n * n, seed: 3), b = Buffer(random: n * n, seed: 4), c = Buffer(n * n)
        let ws = Buffer(sgemmWorkspaceCount(m: n, n: n, k: n))
        var best = Double.infinity
        for _ in 0..<10 {
            let t0 = monotonicSeconds()
            sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, beta: 0,
                  c: c.pointer, ldc: n, workspace: ws.pointer)
            best = min(best, monotonicSeconds() - t0)
        }
        let gflops = 2 * Double(n * n * n) / best / 1e9
        let floor: Double = InstructionSet.current == .baseline ? 2 : 10
        XCTAssertGreaterThan(gflops, floor, "SGEMM 256^3 at \(gflops) GFLOP/s (\(InstructionSet.current)): was the target-CPU flag lost?")
    }

    func testFMAPeakIsPlausible() {
        let peak = measureFMAPeak(seconds: 0.05)
        XCTAssertGreaterThan(peak, 5, "FMA peak \(peak) GFLOP/s")
        XCTAssertLessThan(peak, 10_000)
    }
}
