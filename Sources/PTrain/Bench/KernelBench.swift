// `ptrain bench kernels`: single-thread speed of the kernels on the layer shapes that matter, as a
// fraction of the FMA peak measured in the same run.
import Foundation
import PTFiles
import PTKernels

/// One measured kernel: `pass` is "forward", "backward_data", "backward_weights", "gemm" or "peak";
/// `implementation`, for a convolution pass, the entry of the pass's list that ran
/// (`ConvKernel.implementationName`, e.g. "direct.rows").
public struct KernelBenchResult: Codable, Sendable {
    public var name: String
    public var pass: String
    public var implementation: String?
    public var gflops: Double
    public var percent_of_peak: Double

    public init(name: String, pass: String, implementation: String? = nil, gflops: Double, percent_of_peak: Double) {
        self.name = name; self.pass = pass; self.implementation = implementation
        self.gflops = gflops; self.percent_of_peak = percent_of_peak
    }
}

/// The convolution shapes measured (name, geometry). FLOPs per pass = 2 * mb * oc * oh * ow * ic * kh * kw.
public let kernelBenchConvolutions: [(name: String, geometry: ConvGeometry)] = [
    ("lenet-conv1", ConvGeometry(mb: 64, ic: 1, oc: 6, ih: 28, iw: 28, kh: 5, kw: 5, ph: 2, pw: 2)),
    ("lenet-conv2", ConvGeometry(mb: 64, ic: 6, oc: 16, ih: 14, iw: 14, kh: 5, kw: 5)),
    // The calls LeNet-5 training makes (configs/lenet5-mnist.yaml: batch 64 in 8 shards): 8 samples each.
    ("lenet-conv1-shard8", ConvGeometry(mb: 8, ic: 1, oc: 6, ih: 28, iw: 28, kh: 5, kw: 5, ph: 2, pw: 2)),
    ("lenet-conv2-shard8", ConvGeometry(mb: 8, ic: 6, oc: 16, ih: 14, iw: 14, kh: 5, kw: 5)),
    ("cifar-3to32-32x32", ConvGeometry(mb: 128, ic: 3, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1)),
    ("cifar-32to32-32x32", ConvGeometry(mb: 128, ic: 32, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1)),
    ("cifar-32to64-16x16", ConvGeometry(mb: 128, ic: 32, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1)),
    ("cifar-64to64-16x16", ConvGeometry(mb: 128, ic: 64, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1)),
    // ResNet-20 (CIFAR, shards of 16): the 16-channel 32x32 stage, the 8x8 stage, the two strided 3x3
    // layers and a strided 1x1 shortcut.
    ("resnet20-16to16-32x32", ConvGeometry(mb: 16, ic: 16, oc: 16, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1)),
    ("resnet20-64to64-8x8", ConvGeometry(mb: 16, ic: 64, oc: 64, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1)),
    ("resnet20-16to32-s2", ConvGeometry(mb: 16, ic: 16, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1)),
    ("resnet20-32to64-s2", ConvGeometry(mb: 16, ic: 32, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1)),
    ("resnet20-shortcut-16to32-s2", ConvGeometry(mb: 16, ic: 16, oc: 32, ih: 32, iw: 32, kh: 1, kw: 1, sh: 2, sw: 2)),
    ("resnet-64to64-56x56", ConvGeometry(mb: 8, ic: 64, oc: 64, ih: 56, iw: 56, kh: 3, kw: 3, ph: 1, pw: 1)),
    ("pointwise-256to64-56x56", ConvGeometry(mb: 8, ic: 256, oc: 64, ih: 56, iw: 56, kh: 1, kw: 1)),
]

/// Runs the kernel benchmark on the calling thread at the instruction-set level in use
/// (`InstructionSet.current`; PTRAIN_ISA forces one): the level's FMA peak first, then forward, backward data
/// and backward weights of each convolution in `kernelBenchConvolutions`, then SGEMM 1024^3.
/// Each entry: one warm-up, then the median of several timed repetitions (each long enough to time,
/// ~20 ms; `quick` shortens both), timed in the thread's CPU seconds like the peak, so time the
/// scheduler gives to other processes on a shared machine does not count against the kernel. `filter` keeps entries whose name contains it (the peak always runs).
public func runKernelBench(quick: Bool = false, filter: String? = nil) -> [KernelBenchResult] {
    let repetitions = quick ? 3 : 7
    let minimumSeconds = quick ? 0.005 : 0.02
    let peak = measureFMAPeak(seconds: quick ? 0.1 : 0.3)
    let level = InstructionSet.current
    var results = [KernelBenchResult(name: "fma-peak [\(level.name), \(level.vectorWidth) floats per vector, \(InstructionSet.currentKernels.peakChains) chains]",
                                     pass: "peak", gflops: peak, percent_of_peak: 100)]
    func keep(_ name: String) -> Bool { filter.map { name.contains($0) } ?? true }
    func record(_ name: String, _ pass: String, implementation: String? = nil, flops: Double, peak: Double = peak, _ body: () -> Void) {
        let seconds = medianSeconds(repetitions: repetitions, minimumSeconds: minimumSeconds, body)
        let gflops = flops / seconds / 1e9
        results.append(KernelBenchResult(name: name, pass: pass, implementation: implementation, gflops: gflops,
                                         percent_of_peak: 100 * gflops / peak))
    }

    for (name, g) in kernelBenchConvolutions where keep(name) {
        let kernel = ConvKernel(geometry: g)
        let m = ConvBenchBuffers(g, scratchCount: kernel.scratchCount)
        defer { m.free() }
        let (x, w, b, y, dy, dx, dw, db, scratch) = (m.x, m.w, m.b, m.y, m.dy, m.dx, m.dw, m.db, m.scratch)
        let flops = Double(g.forwardFlops)
        record(name, "forward", implementation: kernel.implementationName(.forward), flops: flops) {
            kernel.forward(mb: g.mb, input: x, weight: w, bias: b, output: y, scratch: scratch)
        }
        record(name, "backward_data", implementation: kernel.implementationName(.backwardData), flops: flops) {
            kernel.backwardData(mb: g.mb, outputGrad: dy, weight: w, inputGrad: dx, scratch: scratch)
        }
        record(name, "backward_weights", implementation: kernel.implementationName(.backwardWeights), flops: flops) {
            kernel.backwardWeights(mb: g.mb, input: x, outputGrad: dy, weightGrad: dw, biasGrad: db, scratch: scratch)
        }
    }

    // bf16 (with a bf16 unit): its own peak (vdpbf16ps, or tdpbf16ps with AMX), then the same convolutions with bf16 operands,
    // each as a share of the bf16 peak.
    if let unit = InstructionSet.bf16Unit, let bf16Peak = measureBF16Peak(seconds: quick ? 0.1 : 0.3) {
        results.append(KernelBenchResult(name: "bf16-peak [\(unit.rawValue), \(unit == .amx ? "4 tiles" : "24 chains")]", pass: "peak", gflops: bf16Peak,
                                         percent_of_peak: 100))
        for (name, g) in kernelBenchConvolutions where keep(name) {
            let kernel = ConvKernel(geometry: g)
            let m = ConvBenchBuffers(g, scratchCount: kernel.bf16ScratchCount)
            defer { m.free() }
            let (x, w, b, y, dy, dx, dw, db, scratch) = (m.x, m.w, m.b, m.y, m.dy, m.dx, m.dw, m.db, m.scratch)
            let flops = Double(g.forwardFlops)
            let label = "\(name) [bf16]"
            record(label, "forward", flops: flops, peak: bf16Peak) {
                kernel.bf16Forward(mb: g.mb, input: x, weight: w, bias: b, output: y, scratch: scratch)
            }
            record(label, "backward_data", flops: flops, peak: bf16Peak) {
                kernel.bf16BackwardData(mb: g.mb, outputGrad: dy, weight: w, inputGrad: dx, scratch: scratch)
            }
            record(label, "backward_weights", flops: flops, peak: bf16Peak) {
                kernel.bf16BackwardWeights(mb: g.mb, input: x, outputGrad: dy, weightGrad: dw, biasGrad: db, scratch: scratch)
            }
        }
    }

    let n = 1024
    if keep("sgemm-\(n)") {
        let a = benchBuffer(n * n, seed: 10), b = benchBuffer(n * n, seed: 11), c = benchBuffer(n * n, seed: 12)
        let ws = benchBuffer(sgemmWorkspaceCount(m: n, n: n, k: n), seed: 13)
        defer { benchFree([a, b, c, ws]) }
        record("sgemm-\(n) [\(gemmKernelName(m: n, n: n))]", "gemm", flops: 2 * Double(n * n * n)) {
            sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a, lda: n, b: b, ldb: n, beta: 0, c: c, ldc: n, workspace: ws)
        }
    }
    return results
}

/// A table for people, or (json) one JSON object per line (`JSON.line`, keys sorted): gflops
/// (2 decimals), implementation (convolution passes only), name, pass, percent_of_peak (1 decimal).
public func formatKernelBench(_ results: [KernelBenchResult], json: Bool) -> String {
    if json {
        return results.map { r in
            JSON.line(KernelBenchResult(name: r.name, pass: r.pass, implementation: r.implementation,
                                        gflops: (r.gflops * 100).rounded() / 100,
                                        percent_of_peak: (r.percent_of_peak * 10).rounded() / 10))
        }.joined(separator: "\n") + "\n"
    }
    let width = max(6, results.map(\.name.count).max() ?? 0)
    func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
    func left(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
    let implementationWidth = max(14, results.compactMap(\.implementation?.count).max() ?? 0)
    var lines = [pad("kernel", width) + "  " + pad("pass", 16) + "  " + pad("implementation", implementationWidth) + "  "
                 + left("GFLOP/s", 9) + "  " + left("% peak", 7)]
    for r in results {
        lines.append(pad(r.name, width) + "  " + pad(r.pass, 16) + "  " + pad(r.implementation ?? "", implementationWidth) + "  "
                     + left(String(format: "%.1f", r.gflops), 9)
                     + "  " + left(String(format: "%.1f", r.percent_of_peak), 7))
    }
    return lines.joined(separator: "\n") + "\n"
}

/// Median thread CPU time of one call to `body`: calls are batched so each timed repetition lasts at
/// least `minimumSeconds`; one warm-up batch first.
func medianSeconds(repetitions: Int, minimumSeconds: Double, _ body: () -> Void) -> Double {
    var t0 = threadCPUSeconds()
    body()
    let once = max(threadCPUSeconds() - t0, 1e-7)
    let calls = max(1, Int((minimumSeconds / once).rounded(.up)))
    for _ in 0..<calls { body() }   // warm-up at the timed batch size
    var times: [Double] = []
    for _ in 0..<repetitions {
        t0 = threadCPUSeconds()
        for _ in 0..<calls { body() }
        times.append((threadCPUSeconds() - t0) / Double(calls))
    }
    times.sort()
    return times[times.count / 2]
}

/// A buffer of floats in [-1, 1) (deterministic), 64-byte aligned.
/// The operands of one convolution's three passes (input, weights, bias, output and their
/// gradients, scratch), filled with seeded values; `free()` releases them.
struct ConvBenchBuffers {
    let x, w, b, y, dy, dx, dw, db, scratch: UnsafeMutablePointer<Float>
    init(_ g: ConvGeometry, scratchCount: Int) {
        x = benchBuffer(g.inputCount, seed: 1); w = benchBuffer(g.weightCount, seed: 2); b = benchBuffer(g.oc, seed: 3)
        y = benchBuffer(g.outputCount, seed: 4); dy = benchBuffer(g.outputCount, seed: 5)
        dx = benchBuffer(g.inputCount, seed: 6); dw = benchBuffer(g.weightCount, seed: 7); db = benchBuffer(g.oc, seed: 8)
        scratch = benchBuffer(scratchCount, seed: 9)
    }
    func free() { benchFree([x, w, b, y, dy, dx, dw, db, scratch]) }
}

func benchBuffer(_ count: Int, seed: UInt64) -> UnsafeMutablePointer<Float> {
    let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
    let p = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    var s = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
    for i in 0..<max(count, 1) {
        s = s &* 6364136223846793005 &+ 1442695040888963407
        p[i] = Float(s >> 40) / Float(1 << 23) - 1
    }
    return p
}

func benchFree(_ pointers: [UnsafeMutablePointer<Float>]) {
    for p in pointers { UnsafeMutableRawPointer(p).deallocate() }
}
