// Instruction-set levels: the start-up choice and its check against CPU feature sets that lack
// something, identical results at AVX2 and AVX-512, and a peak meter no kernel can beat.
import XCTest
import Foundation
import PTKernels

final class InstructionSetTests: XCTestCase {
    func testFeatureListsComeFromTheCompilerAndNest() {
        let base = Set(InstructionSet.baseline.requiredFeatures)
        let avx2 = Set(InstructionSet.avx2.requiredFeatures)
        let avx512 = Set(InstructionSet.avx512.requiredFeatures)
        // What the compiler defines for nehalem / haswell / skylake-avx512 (a few landmarks of each).
        XCTAssertTrue(base.isSuperset(of: ["sse4.2", "popcnt", "ssse3"]), "\(base)")
        XCTAssertFalse(base.contains("avx"))
        XCTAssertTrue(avx2.isSuperset(of: ["avx", "avx2", "fma", "bmi2", "f16c"]), "\(avx2)")
        XCTAssertFalse(avx2.contains("avx512f"))
        XCTAssertTrue(avx512.isSuperset(of: ["avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"]), "\(avx512)")
        XCTAssertTrue(base.isSubset(of: avx2) && avx2.isSubset(of: avx512))
        // Intrinsic-only features are listed for the level but never required.
        for level in InstructionSet.allCases { XCTAssertFalse(level.requiredFeatures.contains { $0.hasPrefix("~") }) }
    }

    func testSelectionAgainstFeatureSetsThatLackSomething() {
        let base = InstructionSet.baseline.requiredFeatures
        let avx2 = InstructionSet.avx2.requiredFeatures
        let avx512 = InstructionSet.avx512.requiredFeatures
        XCTAssertEqual(try InstructionSet.select(requested: nil, available: avx512).get(), .avx512)
        XCTAssertEqual(try InstructionSet.select(requested: nil, available: avx2).get(), .avx2)
        XCTAssertEqual(try InstructionSet.select(requested: nil, available: base).get(), .baseline)
        XCTAssertEqual(try InstructionSet.select(requested: "avx2", available: avx512).get(), .avx2)
        XCTAssertEqual(try InstructionSet.select(requested: "baseline", available: avx512).get(), .baseline)
        // Every single missing feature of a level drops the automatic choice below it, and a forced
        // level then fails with one line naming the feature.
        for (level, features) in [(InstructionSet.avx512, avx512), (.avx2, avx2)] {
            for missing in features where !InstructionSet(rawValue: level.rawValue - 1)!.requiredFeatures.contains(missing) {
                let available = features.filter { $0 != missing }
                XCTAssertEqual(try InstructionSet.select(requested: nil, available: available).get().rawValue, level.rawValue - 1,
                               "\(level) without \(missing)")
                switch InstructionSet.select(requested: level.name, available: available) {
                case .success(let l): XCTFail("PTRAIN_ISA=\(level) chose \(l) without \(missing)")
                case .failure(let e):
                    XCTAssertTrue(e.message.contains(missing) && e.message.contains("PTRAIN_ISA=\(level.name)"), e.message)
                    XCTAssertFalse(e.message.contains("\n"))
                }
            }
        }
        // Without a baseline feature nothing runs.
        for missing in base {
            guard case .failure(let e) = InstructionSet.select(requested: nil, available: avx512.filter { $0 != missing }) else {
                XCTFail("no error without \(missing)"); continue
            }
            XCTAssertTrue(e.message.contains(missing), e.message)
        }
        guard case .failure(let e) = InstructionSet.select(requested: "sse9", available: avx512) else { return XCTFail() }
        XCTAssertTrue(e.message.contains("sse9") && e.message.contains("avx512, avx2 or baseline"), e.message)
    }

    func testCurrentLevelIsTheRequestedOrTheBest() {
        let supported = InstructionSet.supported
        XCTAssertTrue(supported.contains(.baseline))
        if let requested = ProcessInfo.processInfo.environment["PTRAIN_ISA"], !requested.isEmpty {
            XCTAssertEqual(InstructionSet.current.name, requested)
        } else {
            XCTAssertEqual(InstructionSet.current, supported.last)
        }
        print("instruction set: \(InstructionSet.current) (supported: \(supported.map(\.name)); CPU: \(InstructionSet.cpuFeatures))")
    }

    func testEveryLevelsGemmTilesAreCoveredByTheWorkspace() {
        for level in InstructionSet.supported {
            for shape in level.kernels.gemmShapes {
                XCTAssertTrue(GemmBlocking.allLevels.contains(shape), "\(shape.name) missing from GemmBlocking.allLevels")
            }
        }
    }

    /// AVX2 and AVX-512 compute the same bits: every output is the same chain of fused multiply-adds,
    /// and every lane-split reduction has 16 lanes on both levels. (The baseline has no FMA.)
    func testFMALevelsGiveIdenticalBits() throws {
        let levels = InstructionSet.supported.filter { $0 != .baseline }
        guard levels.count >= 2 else { throw XCTSkip("this CPU runs only \(levels.map(\.name)) of the FMA levels") }
        let tables = levels.map(\.kernels)
        // GEMM, both transposes, several k-blocks.
        let (m, n, k) = (45, 301, 800)
        let a = Buffer(random: m * k, seed: 1), b = Buffer(random: k * n, seed: 2)
        var gemmOuts: [Buffer] = []
        for t in tables {
            let c = Buffer(random: m * n, seed: 3)
            let ws = Buffer(sgemmWorkspaceCount(m: m, n: n, k: k))
            t.sgemm(nil, false, true, m, n, k, 0.5, a.pointer, k, b.pointer, k, 1, c.pointer, n, ws.pointer)
            let d = Buffer(random: m * n, seed: 4)
            t.sgemmDotNT(m, n, k, a.pointer, k, b.pointer, k, d.pointer, n)
            gemmOuts.append(contentsOf: [c, d])
        }
        assertIdentical(gemmOuts[0], gemmOuts[2], "sgemm avx2 vs avx512")
        assertIdentical(gemmOuts[1], gemmOuts[3], "sgemmDotNT avx2 vs avx512")
        // Every convolution case, all passes.
        for (label, geometry, mb) in ConvolutionTests.cases {
            let g = geometry.with(mb: mb)
            let kernel = ConvKernel(geometry: geometry)
            let x = Buffer(random: g.inputCount, seed: 11), w = Buffer(random: g.weightCount, seed: 12)
            let bias = Buffer(random: g.oc, seed: 13), dy = Buffer(random: g.outputCount, seed: 14)
            var outs: [[Buffer]] = []
            for t in tables {
                let scratch = Buffer(kernel.scratchCount + 1)
                let y = Buffer(g.outputCount), dx = Buffer(g.inputCount), dw = Buffer(g.weightCount), db = Buffer(g.oc)
                t.convForward(kernel, mb, x.pointer, w.pointer, bias.pointer, y.pointer, scratch.pointer)
                t.convBackwardData(kernel, mb, dy.pointer, w.pointer, dx.pointer, scratch.pointer)
                t.convBackwardWeights(kernel, mb, x.pointer, dy.pointer, dw.pointer, db.pointer, scratch.pointer)
                outs.append([y, dx, dw, db])
            }
            for (i, pass) in ["forward", "backwardData", "backwardWeights", "bias"].enumerated() {
                assertIdentical(outs[0][i], outs[1][i], "\(label) \(pass) avx2 vs avx512")
            }
        }
    }

    /// The meter counts every FMA pipe: no kernel may beat it. Peak measured before and after (best
    /// of both), kernels as the median of five runs.
    func testNoKernelAbovePeak() {
        var peak = measureFMAPeak(seconds: 0.1)
        let n = 384
        let a = Buffer(random: n * n, seed: 3), b = Buffer(random: n * n, seed: 4), c = Buffer(n * n)
        let ws = Buffer(sgemmWorkspaceCount(m: n, n: n, k: n))
        func median(_ body: () -> Void) -> Double {
            body()
            var times: [Double] = []
            for _ in 0..<5 { let t0 = threadCPUSeconds(); body(); times.append(threadCPUSeconds() - t0) }
            return times.sorted()[2]
        }
        let gemm = 2 * Double(n * n * n) / median {
            sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n, beta: 0,
                  c: c.pointer, ldc: n, workspace: ws.pointer)
        } / 1e9
        // CIFAR 32->32 (GEMM-sized tiles) and LeNet conv1 (the direct small-channel path), forward.
        var convs: [(String, Double)] = []
        // Winograd's own multiply-adds: 16 per 2x2 tile and channel pair (36 for the direct count).
        let cifar = ConvGeometry(mb: 8, ic: 32, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1)
        let lenet = ConvGeometry(mb: 16, ic: 1, oc: 6, ih: 28, iw: 28, kh: 5, kw: 5, ph: 2, pw: 2)
        let stage3 = ConvGeometry(mb: 16, ic: 64, oc: 64, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1)
        for (name, g, entry, flops) in [
            ("cifar 32->32", cifar, ConvKernel.Forward.direct, Double(cifar.forwardFlops)),
            ("cifar 32->32 winograd", cifar, .winograd, Double(cifar.forwardFlops) * 16 / 36),
            ("resnet20 64->64 8x8 winograd8x8", stage3, .winograd8x8, Double(stage3.forwardFlops) * 16 / 36),
            ("lenet conv1", lenet, .direct, Double(lenet.forwardFlops))] {
            let kernel = ConvKernel(geometry: g, forward: entry)
            let x = Buffer(random: g.inputCount, seed: 5), w = Buffer(random: g.weightCount, seed: 6), y = Buffer(g.outputCount)
            let scratch = Buffer(kernel.scratchCount)
            convs.append((name, flops / median {
                kernel.forward(mb: g.mb, input: x.pointer, weight: w.pointer, bias: nil, output: y.pointer, scratch: scratch.pointer)
            } / 1e9))
        }
        peak = max(peak, measureFMAPeak(seconds: 0.1))
        XCTAssertLessThanOrEqual(gemm, peak, "SGEMM \(gemm) GFLOP/s above the \(InstructionSet.current) peak \(peak)")
        for (name, gflops) in convs {
            XCTAssertLessThanOrEqual(gflops, peak, "\(name) forward \(gflops) GFLOP/s above the \(InstructionSet.current) peak \(peak)")
        }
    }
}
