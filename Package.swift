// swift-tools-version:6.2
// ptrain: data-parallel ConvNet training on CPUs.
// Tools version 6.2: the kernels need Swift 6.2 (`InlineArray`, value generics); an older toolchain
// stops here with "requires minimum Swift tools version 6.2" instead of failing inside the kernels.
//
// Compile flags (docs/ARCHITECTURE.md, "Instruction-set levels and compile flags"):
// - One binary runs on every x86-64-v2 CPU and uses the best instruction set the CPU has. The hot
//   kernels are generic code in PTKernelsCore (built with cross-module optimisation so their bodies
//   can be specialised elsewhere); PTKernelsAVX2 (`-target-cpu haswell`: AVX2 + FMA, the x86-64-v3
//   class) and PTKernelsAVX512 (`-target-cpu skylake-avx512`: x86-64-v4) specialise them, each for its
//   CPU, and PTKernels picks one table of them at start-up (CPTSupport: the CPU's features, or
//   PTRAIN_ISA=avx512|avx2|baseline). Everything else, and the baseline kernels, is built for
//   `nehalem` (x86-64-v2; swiftc's -target-cpu knows LLVM CPU names, not the psABI level names).
// - `-Ounchecked` in release only for the kernel targets: their loops over raw pointers are covered
//   by reference-twin tests. Every other target keeps Swift's checks (the parsers of untrusted files
//   among them); measured cost in docs/BENCHMARKS.md.
import PackageDescription

/// LLVM CPU of each level (swiftc -target-cpu, clang -march).
let baselineCPU = "nehalem", avx2CPU = "haswell", avx512CPU = "skylake-avx512"

let checked: [SwiftSetting] = [.unsafeFlags(["-target-cpu", baselineCPU])]
let kernelFlags: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "ptrain",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "ptrain", targets: ["ptrain"]),
        .library(name: "PTrain", targets: ["PTrain"]),
        .library(name: "PTExport", targets: ["PTExport"]),
    ],
    traits: [
        // `swift build -c release --traits MPI`: an MPI communicator (Open MPI or MPICH through
        // pkg-config "mpi-c"; Debian: libopenmpi-dev). Without it ptrain needs no MPI at all.
        .trait(name: "MPI", description: "Multi-process training over MPI (needs an MPI library, e.g. libopenmpi-dev)"),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", exact: "5.0.1"),
        // ONNX export's protobuf encoding (library only; the generated onnx.pb.swift is committed,
        // scripts/generate-onnx-proto.sh regenerates it with this release's protoc-gen-swift).
        .package(url: "https://github.com/apple/swift-protobuf", exact: "1.39.0"),
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
        // The features the compiler may use at each level (data only, from its predefined macros).
        .target(name: "CPTFeaturesBaseline", cSettings: [.unsafeFlags(["-march=\(baselineCPU)"])]),
        .target(name: "CPTFeaturesAVX2", cSettings: [.unsafeFlags(["-march=\(avx2CPU)"])]),
        .target(name: "CPTFeaturesAVX512", cSettings: [.unsafeFlags(["-march=\(avx512CPU)"])]),
        // Level choice at start-up, flush-to-zero, and other tiny things Swift cannot spell.
        // Deliberately compiled without a target CPU: it must run (and say why not) on any x86-64 CPU.
        .target(name: "CPTSupport", dependencies: ["CPTFeaturesBaseline", "CPTFeaturesAVX2", "CPTFeaturesAVX512"]),

        // bf16 kernels in C (Swift cannot emit vdpbf16ps or tdpbf16ps): GEMM, convolution and dense passes
        // with bf16 operands and fp32 accumulation. Built for AVX-512 + AVX512_BF16 (+ AMX for the tile
        // unit) and called only when the start-up check (CPTSupport `pt_bf16_unit`) found them.
        .target(name: "CPTKernelsBF16", dependencies: ["CPTSupport"],
                cSettings: [.unsafeFlags(["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mavx512bf16", "-mfma",
                                          "-mamx-tile", "-mamx-bf16", "-O3"])]),
        // Header-only: the Swift kernels' software prefetch (inlined).
        .target(name: "CPTPrefetch"),
        // Hot path: GEMM, convolution, pooling, activations, optimizer updates, generic over the level.
        .target(name: "PTKernelsCore", dependencies: ["CPTPrefetch"],
                swiftSettings: checked + kernelFlags + [.unsafeFlags(["-cross-module-optimization"], .when(configuration: .release))]),
        // The kernels specialised for each level, each module built for its CPU.
        .target(name: "PTKernelsAVX2", dependencies: ["PTKernelsCore"],
                swiftSettings: [.unsafeFlags(["-target-cpu", avx2CPU])] + kernelFlags),
        .target(name: "PTKernelsAVX512", dependencies: ["PTKernelsCore"],
                swiftSettings: [.unsafeFlags(["-target-cpu", avx512CPU])] + kernelFlags),
        // The public kernel API: the level's table chosen once, the baseline level, references.
        .target(name: "PTKernels", dependencies: ["PTKernelsCore", "PTKernelsAVX2", "PTKernelsAVX512", "CPTSupport", "CPTKernelsBF16"],
                swiftSettings: checked + kernelFlags),
        // Shapes and 64-byte aligned buffers.
        .target(name: "PTTensor", swiftSettings: checked),
        // Writing files: the one atomic writer (temporary file, fsync, rename, fsync of the folder),
        // folders, and the one JSON encoder configuration.
        .target(name: "PTFiles", swiftSettings: checked),
        // Layers, model, flat parameter layout, initialisers, optimizers, schedules.
        .target(name: "PTModel", dependencies: ["PTKernels", "PTTensor"], swiftSettings: checked),
        // Data sets: IDX (raw or gzip), the synthetic X/O generator, shuffling, batching.
        .target(name: "PTData", dependencies: ["PTTensor", "PTFiles", "CZlib", "CPNG", "CTurboJPEG", "CPTSupport"], swiftSettings: checked),
        // hwloc topology, placement, pinned worker pool, barrier.
        .target(name: "PTRuntime", dependencies: ["CHwloc", "CPTSupport"], swiftSettings: checked),
        // Communicator protocol (in-process now; MPI behind a trait later).
        .target(name: "PTDistributed",
                dependencies: ["PTKernels", "PTTensor", "CPTSupport", .target(name: "CMPI", condition: .when(traits: ["MPI"]))],
                swiftSettings: checked + [.define("MPI", .when(traits: ["MPI"]))]),
        // Trainer, config, run folder, metrics, safetensors.
        .target(
            name: "PTrain",
            dependencies: ["PTModel", "PTData", "PTFiles", "PTRuntime", "PTDistributed", "PTKernels", "PTTensor", "CZlib",
                           .product(name: "Yams", package: "Yams")],
            swiftSettings: checked),
        // ONNX export: a trained model as an ONNX graph (ONNX's protobuf schema as generated Swift types).
        .target(
            name: "PTExport",
            dependencies: ["PTrain", "PTFiles", "PTModel", "PTKernels", "PTTensor", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: checked),
        // Counts the process's heap allocations (replaces malloc and friends): only for the gate below.
        .target(name: "CAllocationCount"),
        // The allocation gate (CI): steady-state training steps on the production pool allocate nothing.
        .executableTarget(
            name: "allocation-gate",
            dependencies: ["PTrain", "PTRuntime", "PTData", "PTModel", "PTTensor", "PTDistributed", "CAllocationCount"],
            swiftSettings: checked),
        .executableTarget(
            name: "ptrain",
            dependencies: ["PTrain", "PTExport", "PTRuntime", "PTData", "PTFiles", "PTModel", "PTTensor", "PTDistributed", "PTKernels", "CPTSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: checked),

        .testTarget(name: "PTKernelsTests", dependencies: ["PTKernels", "PTTensor", "CPTSupport"], swiftSettings: checked),
        .testTarget(name: "PTModelTests", dependencies: ["PTModel", "PTKernels", "PTTensor"], swiftSettings: checked),
        .testTarget(name: "PTDataTests", dependencies: ["PTData", "PTTensor"], swiftSettings: checked),
        .testTarget(name: "PTRuntimeTests", dependencies: ["PTRuntime"], swiftSettings: checked),
        .testTarget(name: "PTDistributedTests", dependencies: ["PTDistributed", "PTTensor"], swiftSettings: checked),
        .testTarget(name: "PTrainTests", dependencies: ["PTrain", "PTExport", "ptrain"], swiftSettings: checked),
    ]
)
