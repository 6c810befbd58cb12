// Kernel benchmarks: SGEMM and the LeNet / CIFAR convolutions, single thread, with thresholds.
// Throughput is calls per second; GFLOP/s against the FMA peak comes from `ptrain bench kernels`.
import Benchmark
import PTKernels

/// A float buffer filled with values in [-1, 1), allocated once in setup (outside the measured loop).
final class Floats: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<Float>
    init(_ count: Int) {
        pointer = .allocate(capacity: max(count, 1))
        var s: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<max(count, 1) {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            pointer[i] = Float(s >> 40) / Float(1 << 23) - 1
        }
    }
    deinit { pointer.deallocate() }
}

let benchmarks: @Sendable () -> Void = {
    // Kernels called with their workspace must not allocate (whole training steps are gated by the
    // main package's `allocation-gate`, in CI); wall clock may drift by 25% against a saved baseline
    // before `swift package benchmark baseline check` fails.
    let thresholds: [BenchmarkMetric: BenchmarkThresholds] = [
        .mallocCountTotal: .init(absolute: [.p90: 0]),
        .wallClock: .init(relative: [.p50: 25]),
    ]
    Benchmark.defaultConfiguration = .init(metrics: [.wallClock, .throughput, .mallocCountTotal],
                                           warmupIterations: 3, maxDuration: .seconds(3), maxIterations: 200,
                                           thresholds: thresholds)

    do {
        let n = 512
        let a = Floats(n * n), b = Floats(n * n), c = Floats(n * n), ws = Floats(sgemmWorkspaceCount(m: n, n: n, k: n))
        Benchmark("sgemm 512^3 NN") { benchmark in
            for _ in benchmark.scaledIterations {
                sgemm(transA: false, transB: false, m: n, n: n, k: n, a: a.pointer, lda: n, b: b.pointer, ldb: n,
                      beta: 0, c: c.pointer, ldc: n, workspace: ws.pointer)
            }
        }
    }

    let convolutions: [(String, ConvGeometry)] = [
        ("lenet-conv1", ConvGeometry(mb: 64, ic: 1, oc: 6, ih: 28, iw: 28, kh: 5, kw: 5, ph: 2, pw: 2)),
        ("lenet-conv2", ConvGeometry(mb: 64, ic: 6, oc: 16, ih: 14, iw: 14, kh: 5, kw: 5)),
        ("cifar-32to32-32x32-mb32", ConvGeometry(mb: 32, ic: 32, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1)),
    ]
    for (name, g) in convolutions {
        let kernel = ConvKernel(geometry: g)
        let x = Floats(g.inputCount), w = Floats(g.weightCount), bias = Floats(g.oc), y = Floats(g.outputCount)
        let dx = Floats(g.inputCount), dw = Floats(g.weightCount), db = Floats(g.oc), scratch = Floats(kernel.scratchCount)
        Benchmark("\(name) forward") { benchmark in
            for _ in benchmark.scaledIterations {
                kernel.forward(mb: g.mb, input: x.pointer, weight: w.pointer, bias: bias.pointer, output: y.pointer, scratch: scratch.pointer)
            }
        }
        Benchmark("\(name) backward data") { benchmark in
            for _ in benchmark.scaledIterations {
                kernel.backwardData(mb: g.mb, outputGrad: y.pointer, weight: w.pointer, inputGrad: dx.pointer, scratch: scratch.pointer)
            }
        }
        Benchmark("\(name) backward weights") { benchmark in
            for _ in benchmark.scaledIterations {
                kernel.backwardWeights(mb: g.mb, input: x.pointer, outputGrad: y.pointer, weightGrad: dw.pointer,
                                       biasGrad: db.pointer, scratch: scratch.pointer)
            }
        }
    }

    do {
        let g = PoolGeometry(planes: 64 * 6, ih: 28, iw: 28, kh: 2, kw: 2, sh: 2, sw: 2)
        let x = Floats(g.planes * g.ih * g.iw), y = Floats(g.planes * g.oh * g.ow)
        let arg = UnsafeMutablePointer<Int32>.allocate(capacity: g.planes * g.oh * g.ow)
        Benchmark("maxpool 2x2 lenet-conv1 output") { benchmark in
            for _ in benchmark.scaledIterations { maxPoolForward(g, input: x.pointer, output: y.pointer, argmax: arg) }
        }
    }
}
