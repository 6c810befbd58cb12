// swift-tools-version:6.1
// ptrain: data-parallel ConvNet training on CPUs.
//
// Compile flags, explained (see docs/ARCHITECTURE.md, "Compile flags"):
// - Every Swift target is compiled for a target CPU. Swift SIMD code built without one turns each
//   SIMD fused multiply-add into scalar libm calls (~150x slower GEMM). `@inlinable` SIMD code is
//   compiled with the *caller's* flags, so every target carries the flag, not only PTKernels.
//   The CPU defaults to `native` (the build machine). Clusters whose login node differs from the
//   compute nodes set PTRAIN_TARGET_CPU at build time, e.g. `PTRAIN_TARGET_CPU=skylake-avx512` or
//   `x86-64-v3`; `PTRAIN_TARGET_CPU=none` builds for the toolchain's default (slow, portable).
//   At start-up `ptrain` checks that the running CPU has what the binary was built for
//   (CPTSupport) and exits with code 2 and a message instead of dying with SIGILL.
// - `-Ounchecked` in release: element loops over class-held buffers were 6x faster without
//   exclusivity and bounds checks (DESIGN.md); kernels are covered by reference-twin tests.
import PackageDescription
import Foundation

let env = ProcessInfo.processInfo.environment
let targetCPU = env["PTRAIN_TARGET_CPU"] ?? "native"
let cpuSwiftFlags: [String] = targetCPU == "none" ? [] : ["-target-cpu", targetCPU]
let cpuCFlags: [String] = targetCPU == "none" ? [] : ["-march=\(targetCPU)"]

// The instruction-set features the Swift targets may use, checked at start-up by CPTSupport.
func requiredFeatures() -> [String] {
    switch targetCPU {
    case "none": return []
    case "native":
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        let flags = Set(line.split(separator: " ").map(String.init))
        return ["avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl"].filter { flags.contains($0) }
    case "x86-64-v3", "haswell", "broadwell", "skylake", "znver1", "znver2", "znver3":
        return ["avx", "avx2", "fma"]
    default:
        return targetCPU.contains("avx512") || ["x86-64-v4", "icelake-server", "sapphirerapids", "znver4", "znver5"].contains(targetCPU)
            ? ["avx", "avx2", "fma", "avx512f"] : []
    }
}

let swiftSettings: [SwiftSetting] = [
    .unsafeFlags(cpuSwiftFlags),
    .unsafeFlags(["-Ounchecked"], .when(configuration: .release)),
]
let cSettings: [CSetting] = [.unsafeFlags(cpuCFlags)]

let package = Package(
    name: "ptrain",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ptrain", targets: ["ptrain"]),
        .library(name: "PTrain", targets: ["PTrain"]),
    ],
    traits: [
        // `swift build -c release --traits MPI`: an MPI communicator (Open MPI or MPICH through
        // pkg-config "mpi-c"; Debian: libopenmpi-dev). Without it ptrain needs no MPI at all.
        .trait(name: "MPI", description: "Multi-process training over MPI (needs an MPI library, e.g. libopenmpi-dev)"),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        // System libraries, one C shim each.
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CHwloc", pkgConfig: "hwloc", providers: [.apt(["libhwloc-dev"])]),
        // Image decoding for image folders: libpng and libjpeg-turbo's TurboJPEG API.
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CTurboJPEG", pkgConfig: "libturbojpeg", providers: [.apt(["libturbojpeg0-dev"])]),
        // MPI, only with the trait MPI.
        .systemLibrary(name: "CMPI", pkgConfig: "mpi-c", providers: [.apt(["libopenmpi-dev"])]),
        // CPU feature check, flush-to-zero, and other tiny things Swift cannot spell.
        // Deliberately compiled WITHOUT the target-CPU flag: it must run on any x86-64 CPU.
        .target(name: "CPTSupport", cSettings: [
            .define("PT_REQUIRED_FEATURES", to: "\"\(requiredFeatures().joined(separator: ","))\""),
            .define("PT_TARGET_CPU", to: "\"\(targetCPU)\""),
        ]),

        // Hot path: GEMM, convolution, pooling, activations, loss. Raw pointers + geometry structs.
        .target(name: "PTKernels", swiftSettings: swiftSettings),
        // Shapes and 64-byte aligned buffers.
        .target(name: "PTTensor", swiftSettings: swiftSettings),
        // Layers, model, flat parameter layout, initialisers, optimizers, schedules.
        .target(name: "PTModel", dependencies: ["PTKernels", "PTTensor"], swiftSettings: swiftSettings),
        // Data sets: IDX (raw or gzip), the synthetic X/O generator, shuffling, batching.
        .target(name: "PTData", dependencies: ["PTTensor", "CZlib", "CPNG", "CTurboJPEG", "CPTSupport"], swiftSettings: swiftSettings),
        // hwloc topology, placement, pinned worker pool, barrier.
        .target(name: "PTRuntime", dependencies: ["CHwloc", "CPTSupport"], swiftSettings: swiftSettings),
        // Communicator protocol (in-process now; MPI behind a trait later).
        .target(name: "PTDistributed",
                dependencies: ["PTTensor", "CPTSupport", .target(name: "CMPI", condition: .when(traits: ["MPI"]))],
                swiftSettings: swiftSettings + [.define("MPI", .when(traits: ["MPI"]))]),
        // Trainer, config, run folder, metrics, safetensors.
        .target(
            name: "PTrain",
            dependencies: ["PTModel", "PTData", "PTRuntime", "PTDistributed", "PTKernels", "PTTensor", "CZlib",
                           .product(name: "Yams", package: "Yams")],
            swiftSettings: swiftSettings),
        // Counts the process's heap allocations (replaces malloc and friends): only for the gate below.
        .target(name: "CAllocationCount"),
        // The allocation gate (CI): steady-state training steps on the production pool allocate nothing.
        .executableTarget(
            name: "allocation-gate",
            dependencies: ["PTrain", "PTRuntime", "PTData", "PTModel", "PTTensor", "PTDistributed", "CAllocationCount"],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "ptrain",
            dependencies: ["PTrain", "PTRuntime", "PTData", "PTModel", "PTTensor", "PTDistributed", "CPTSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),

        .testTarget(name: "PTKernelsTests", dependencies: ["PTKernels", "PTTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "PTModelTests", dependencies: ["PTModel", "PTKernels", "PTTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "PTDataTests", dependencies: ["PTData", "PTTensor"], swiftSettings: swiftSettings),
        .testTarget(name: "PTRuntimeTests", dependencies: ["PTRuntime"], swiftSettings: swiftSettings),
        .testTarget(name: "PTDistributedTests", dependencies: ["PTDistributed"], swiftSettings: swiftSettings),
        .testTarget(name: "PTrainTests", dependencies: ["PTrain", "ptrain"], swiftSettings: swiftSettings),
    ]
)
