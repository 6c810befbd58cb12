// swift-tools-version:6.2
// Kernel benchmarks for maintainers (a separate package so the main build never fetches the
// benchmark tooling). Run from this folder: `swift package benchmark` (see README.md).
//
// - package-benchmark (ordo-one/benchmark, formerly package-benchmark) needs its MallocInterposer trait
//   named here for malloc counts on Linux with Swift 6.3 (kernels with their workspace must not
//   allocate; whole training steps are gated by the root package's `allocation-gate`).
// - The benchmarks call the root package's kernels, which pick their instruction-set level at start-up
//   (`PTRAIN_ISA=avx512|avx2|baseline` forces one); this target itself needs no target CPU.
// - The root package is a path dependency; its PTKernels module is reached through the PTrain product
//   (PTKernels is not a product of its own).
import PackageDescription

let package = Package(
    name: "ptrain-benchmarks",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(name: "ptrain", path: ".."),
        .package(url: "https://github.com/ordo-one/package-benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "KernelBenchmarks",
            dependencies: [
                .product(name: "PTrain", package: "ptrain"),
                .product(name: "Benchmark", package: "package-benchmark"),
            ],
            path: "Benchmarks/KernelBenchmarks",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "package-benchmark")]
        ),
        // Worker-pool round trips (a plain executable: `swift run -c release BarrierBenchmarks [sweep]`).
        .executableTarget(
            name: "BarrierBenchmarks",
            dependencies: [.product(name: "PTrain", package: "ptrain")],
            path: "Benchmarks/BarrierBenchmarks"
        ),
    ]
)
