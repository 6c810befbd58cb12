// The allocation gate: steady-state training steps must not allocate.
//
// Counts every heap allocation of the process (malloc and friends, all threads; CAllocationCount)
// over steady-state steps of the production training path: the pool `ptrain` builds
// (`makeWorkerPool`: pinned workers, the calling thread as worker 0) and `Trainer.step()`, on
// synthetic data of each config's input shape (for a config whose source is fsdd: int16 clips with
// clip windows, as the audio reader stores them), after a few warm-up steps (`--warmup`, default 8).
// Under mpirun (the MPI build) it uses the MPI communicator as ptrain does, and every rank counts
// its own allocations. Prints one line per case and exits with status 1 when any step allocated,
// when a config cannot be loaded, or when the counter does not see allocations it must see (so a
// broken counter cannot pass). Run from the repository root (CI runs it; see .ci/run):
//
//     swift build -c release && .build/release/allocation-gate
//     .build/release/allocation-gate configs/cifar-small.yaml:128:1 --steps 10
//     mpirun -np 2 .build-mpi/release/allocation-gate --threads 1     # the MPI build: every rank counts
//     .build/release/allocation-gate --profile     # with per-layer timing on, as `ptrain bench train --profile`
import CAllocationCount
import Foundation
import PTData
import PTKernels
import PTDistributed
import PTModel
import PTRuntime
import PTTensor
import PTrain

// MARK: - The production path (the seam: re-point these when the run loop moves)

/// One training run as `ptrain train` sets it up, reduced to what the gate needs: build, then step.
struct ProductionRun {
    let trainer: Trainer

    init(config: TrainConfig, data: Dataset, threads: Int, communicator: Communicator) throws {
        let pool = try makeWorkerPool(threads: threads, warn: { say("allocation-gate: warning: \($0)", error: true) })
        trainer = try Trainer(config: config, train: data, test: data, pool: pool, communicator: communicator)
    }

    var workers: Int { trainer.pool.workerCount }
    var stepsPerEpoch: Int { trainer.stepsPerEpoch }

    /// One training step exactly as a run takes it (forward, loss, backward, reduction, optimizer,
    /// running statistics, the non-finite check, progress bookkeeping).
    func step() throws { _ = try trainer.step() }
}

// MARK: - Cases

struct Case {
    var label: String
    var config: TrainConfig
    var threads: Int
}

/// Every layer type and the SGD variants (Nesterov, weight decay) on 2-D data.
let everyLayer2D = """
    name: gate-every-layer-2d
    model:
      input: {channels: 3, height: 16, width: 16}
      layers:
        - {type: conv, features: 8, size: 3, padding: 1}
        - {type: batchnorm}
        - relu
        - {type: maxpool, window: 2}
        - {type: conv, features: 16, size: 3, stride: 2, padding: 1, init: glorot}
        - {type: batchnorm, momentum: 0.05}
        - relu
        - {type: avgpool, window: 3, stride: 2, edge: keep}
        - {type: dropout, rate: 0.25}
        - {type: conv, features: 16, size: 1}
        - relu
        - {type: global_avgpool}
        - flatten
        - {type: dense, neurons: 32}
        - relu
        - {type: dropout, rate: 0.5}
        - {type: dense, neurons: 10}
    optimizer: {type: sgd, lr: 0.01, momentum: 0.9, nesterov: true, weight_decay: 0.0005}
    schedule: {type: cosine, warmup_epochs: 1}
    training: {epochs: 2, batch_size: 32, shards: 4, seed: 1}
    """

/// 1-D layers and AdamW.
let everyLayer1D = """
    name: gate-every-layer-1d
    model:
      input: {channels: 1, length: 128}
      layers:
        - {type: conv1d, features: 8, size: 7, stride: 2, padding: 3}
        - {type: batchnorm}
        - relu
        - {type: maxpool1d, window: 2}
        - {type: conv1d, features: 16, size: 5, padding: 2}
        - relu
        - {type: avgpool1d, window: 4, edge: drop}
        - flatten
        - {type: dropout, rate: 0.2}
        - {type: dense, neurons: 4}
    optimizer: {type: adamw, lr: 0.001, weight_decay: 0.01}
    training: {epochs: 3, batch_size: 24, shards: 8, seed: 2}
    """

/// A residual graph (a block repeated with a strided projection in its first copy, `add`,
/// `concat`, references by name and relative index) with crop + flip augmentation on 2-D data.
let residual2D = """
    name: gate-residual-2d
    augment: {crop: 2, flip: true}
    model:
      input: {channels: 3, height: 16, width: 16}
      blocks:
        basic:
          params: {features: 8, stride: 1, project: false}
          layers:
            - {name: conv1, type: conv, features: $features, size: 3, stride: $stride, padding: 1}
            - {name: bn1, type: batchnorm}
            - relu
            - {name: conv2, type: conv, features: $features, size: 3, padding: 1}
            - {name: bn2, type: batchnorm}
            - {name: shortcut.0, type: conv, from: input, features: $features, size: 1, stride: $stride, if: $project}
            - {name: shortcut.1, type: batchnorm, if: $project}
            - {type: add, from: [bn2, shortcut.1]}
            - relu
      layers:
        - {name: stem, type: conv, features: 8, size: 3, padding: 1}
        - {name: stem_bn, type: batchnorm}
        - relu
        - {block: basic, name: layer1, repeat: 2, features: 8}
        - {block: basic, name: layer2, repeat: 2, features: 16, first: {stride: 2, project: true}}
        - {name: side, type: conv, features: 4, size: 1}
        - {type: concat, from: [-2, side]}
        - gap
        - {name: linear, type: dense, neurons: 10}
    optimizer: {type: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.0005}
    training: {epochs: 2, batch_size: 32, shards: 4, seed: 3}
    """

/// Audio as the FSDD reader stores it (int16 clips, each with its window and mean), z-normalised
/// in the gather, with time shift + gain: the data path of `source: fsdd`.
let audioClips = """
    name: gate-audio-clips
    data: {source: fsdd, length: 4000, z_normalize: true}
    augment: {shift: 100, gain: 0.1}
    model:
      input: {channels: 1, length: 4000}
      layers:
        - {type: conv1d, features: 8, size: 9, padding: 4}
        - relu
        - {type: maxpool1d, window: 16}
        - flatten
        - {type: dense, neurons: 10}
    optimizer: {type: sgd, lr: 0.01, momentum: 0.9}
    training: {epochs: 1, batch_size: 32, shards: 8, seed: 5}
    """

/// A residual 1-D graph with time shift + gain augmentation and Adam.
let residual1D = """
    name: gate-residual-1d
    augment: {shift: 16, gain: 0.2}
    model:
      input: {channels: 1, length: 128}
      layers:
        - {name: stem, type: conv1d, features: 8, size: 5, stride: 2, padding: 2}
        - {type: batchnorm}
        - relu
        - {name: a, type: conv1d, features: 8, size: 3, padding: 1}
        - relu
        - {name: b, type: conv1d, from: stem, features: 8, size: 5, padding: 2}
        - {type: add, from: [b, -2, -5]}
        - {type: concat, from: [-1, a]}
        - {type: maxpool1d, window: 4}
        - flatten
        - {type: dense, neurons: 4}
    optimizer: {type: adam, lr: 0.001}
    training: {epochs: 3, batch_size: 24, shards: 8, seed: 4}
    """

/// The gallery configs at the batch sizes of docs/BENCHMARKS.md, plus every layer type, and
/// residual graphs with every kind of augmentation (crop, flip, translation + scaling, shift + gain).
func defaultCases() throws -> [Case] {
    func file(_ path: String, batch: Int? = nil, threads: Int) throws -> Case {
        var config = try loadConfig(path)
        if let batch { config.batchSize = batch }
        return Case(label: "\(path), batch \(config.batchSize)", config: config, threads: threads)
    }
    func inline(_ text: String, name: String, threads: Int) throws -> Case {
        let config = try TrainConfig.parse(yaml: text, file: name)
        return Case(label: "\(name), batch \(config.batchSize)", config: config, threads: threads)
    }
    return [
        try file("configs/xo.yaml", threads: 2),
        try file("configs/lenet5-mnist.yaml", batch: 64, threads: 1),
        try file("configs/lenet5-mnist.yaml", batch: 256, threads: 2),
        try file("configs/cifar-small.yaml", batch: 32, threads: 2),
        // Several ranks run the sharded exchange by default; this case gates the other exchange.
        try {
            var c = try file("configs/cifar-small.yaml", batch: 32, threads: 2)
            c.config.exchange = .allGather
            c.label += ", distributed.exchange: allgather"
            return c
        }(),
        try file("configs/gunpoint-1d.yaml", threads: 2),
        try inline(audioClips, name: "(built-in int16 audio clips config)", threads: 2),
        try file("configs/fsdd-1d.yaml", threads: 1),
        try file("configs/resnet-fsdd-1d.yaml", threads: 2),
        try inline(everyLayer2D, name: "(built-in every-layer 2-D config)", threads: 2),
        try inline(everyLayer1D, name: "(built-in every-layer 1-D config)", threads: 1),
        try file("configs/resnet-mnist.yaml", batch: 32, threads: 2),
        try file("configs/resnet20-cifar.yaml", batch: 32, threads: 2),
        try inline(residual2D, name: "(built-in residual 2-D config, crop + flip)", threads: 2),
        try inline(residual1D, name: "(built-in residual 1-D config, shift + gain)", threads: 1),
    ] + (try bf16Cases(file))
}

/// bf16 workspaces (`training.precision: bf16`): the C kernels' scratch is sized up front too. Only
/// on a CPU with the bf16 unit; elsewhere the gate says so and leaves them out.
func bf16Cases(_ file: (String, Int?, Int) throws -> Case) rethrows -> [Case] {
    guard Precision.bf16.unavailableReason == nil else {
        print("allocation-gate: bf16 cases left out: \(Precision.bf16.unavailableReason!)")
        return []
    }
    return try [("configs/lenet5-mnist.yaml", 64, 1), ("configs/cifar-small.yaml", 32, 2), ("configs/resnet20-cifar.yaml", 32, 2)].map {
        var c = try file($0.0, $0.1, $0.2)
        c.config.precision = .bf16
        c.label += ", bf16"
        return c
    }
}

func loadConfig(_ path: String) throws -> TrainConfig {
    guard FileManager.default.fileExists(atPath: path) else {
        throw ConfigError("\(path): no such file (run the gate from the repository root)")
    }
    return try TrainConfig.load(path: path)
}

/// `CONFIG[:BATCH[:THREADS]]`
func parseCase(_ text: String) throws -> Case {
    let parts = text.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
    guard (1...3).contains(parts.count), !parts[0].isEmpty else {
        throw ConfigError("case '\(text)': expected CONFIG[:BATCH[:THREADS]]")
    }
    var config = try loadConfig(parts[0])
    if parts.count > 1 {
        guard let batch = Int(parts[1]), batch >= 1 else { throw ConfigError("case '\(text)': the batch size must be a positive number") }
        config.batchSize = batch
    }
    var threads = 2
    if parts.count > 2 {
        guard let t = Int(parts[2]), (1...1024).contains(t) else { throw ConfigError("case '\(text)': threads must be in 1...1024") }
        threads = t
    }
    return Case(label: "\(parts[0]), batch \(config.batchSize)", config: config, threads: threads)
}

// MARK: - Counter self-checks

/// Fails unless the counter sees allocations made on the calling thread and on worker threads.
final class ProbeJob: ParallelJob {
    func run(worker: Int, pool: WorkerPool) { pt_allocation_probe(64) }
}

func checkCounter(pool: WorkerPool) throws {
    var before = pt_allocation_count()
    pt_allocation_probe(64)
    let words = [Int](repeating: 7, count: 1000 + Int(before % 2))   // a Swift array: the runtime's malloc
    guard pt_allocation_count() - before >= 2, words.count > 0 else {
        throw GateError("the allocation counter missed allocations on the main thread (malloc is not interposed); the gate cannot measure")
    }
    before = pt_allocation_count()
    pool.run(ProbeJob())
    guard pt_allocation_count() - before >= UInt64(pool.workerCount) else {
        throw GateError("the allocation counter missed allocations on worker threads; the gate cannot measure")
    }
}

// MARK: - Main

struct GateError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

func say(_ line: String, error: Bool = false) {
    if error {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    } else {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }
}

/// Allocations over `steps` steady-state steps of one case.
func measure(_ gateCase: Case, warmup: Int, steps: Int, communicator: Communicator, profile: Bool = false) throws -> (allocations: UInt64, warmupAllocations: UInt64, mpiAllocations: UInt64, workers: Int) {
    var config = gateCase.config
    config.shards = min(config.shards, config.batchSize)
    guard let input = config.input else {
        throw ConfigError("\(gateCase.label): model.input: the gate needs the config's input shape")
    }
    let classes = try Model(input: input, layers: config.layers, maxBatch: 1).classes
    // Enough samples that warm-up and measured steps stay inside the first epoch: the epoch's
    // first step (sample order) and its last (test evaluation, epoch record) are not steady state.
    let count = config.batchSize * (warmup + steps + 1)
    let data = config.data.source == .fsdd
        ? try syntheticClips(shape: input, classes: classes, count: count, config: config)
        : syntheticDataset(shape: input, classes: classes, count: count, seed: config.seed)
    let run = try ProductionRun(config: config, data: data, threads: gateCase.threads, communicator: communicator)
    guard run.stepsPerEpoch > warmup + steps else { throw GateError("\(gateCase.label): the measured steps would reach the end of the epoch") }
    try checkCounter(pool: run.trainer.pool)
    if profile { _ = run.trainer.profileLayers(true) }
    // The warm-up's allocations (the epoch's sample order, first use of lazily made buffers) are
    // reported, not gated: they show that the counter sees the training path.
    let start = pt_allocation_count()
    for _ in 0..<warmup { try run.step() }
    let warmupAllocations = pt_allocation_count() - start
    try excludeMPILibraries()
    let before = pt_allocation_count(), mpiBefore = pt_allocation_count_excluded()
    for _ in 0..<steps { try run.step() }
    return (pt_allocation_count() - before, warmupAllocations, pt_allocation_count_excluded() - mpiBefore, run.workers)
}

/// Random int16 samples of `shape`, each with a random `ClipWindow` (as the FSDD reader stores
/// clips), converted as the config's preprocessing says: the audio sources' gather path.
func syntheticClips(shape: Shape, classes: Int, count: Int, config: TrainConfig) throws -> Dataset {
    var rng = Xoshiro256(seed: config.seed, stream: 0xC11B)
    let bytes = (0..<(2 * count * shape.count)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    let clips = (0..<count).map { _ -> ClipWindow in
        let n = 1 + rng.nextInt(below: shape.count)
        return ClipWindow(first: Int32(rng.nextInt(below: shape.count - n + 1)), count: Int32(n), centre: Float(rng.nextNormal()) / 64)
    }
    let labels = (0..<count).map { _ in Int32(rng.nextInt(below: classes)) }
    let store = SampleStore(bytes: bytes, elementType: .int16, count: count, sampleElements: shape.count)
    return try Dataset(name: "synthetic clips", shape: shape, classes: classes, store: store,
                       conversion: Preprocessing(config.data).conversion(for: .int16), labels: labels, clips: clips)
}

/// The MPI library's own buffer management (Open MPI grows its free lists now and then, at its
/// own pace) is counted apart and reported, not gated: allocations called directly from the code
/// of these libraries. Everything else, ptrain's code included, is gated.
let mpiLibraries = ["libmpi", "libopen-pal", "libopen-rte", "libpmix", "/openmpi/", "mca_", "libucp", "libucs",
                    "libuct", "libfabric", "libevent"]

func excludeMPILibraries() throws {
    let strings = mpiLibraries.map { strdup($0) }
    defer { strings.forEach { free($0) } }
    let segments = strings.map { UnsafePointer($0) }.withUnsafeBufferPointer {
        pt_allocation_exclude_libraries($0.baseAddress, Int32($0.count))
    }
    guard segments >= 0 else { throw GateError("too many MPI library code segments to tell their allocations apart") }
}

/// Takes `--NAME VALUE` out of `arguments`: nil when absent, a number in `range`, or a usage error.
func takeOption(_ name: String, from arguments: inout [String], in range: ClosedRange<Int>) throws -> Int? {
    guard let i = arguments.firstIndex(of: name) else { return nil }
    guard i + 1 < arguments.count, let n = Int(arguments[i + 1]), range.contains(n) else {
        throw UsageError("\(name) takes a number in \(range.lowerBound)...\(range.upperBound)")
    }
    arguments.removeSubrange(i...(i + 1))
    return n
}

struct UsageError: Error { let message: String; init(_ message: String) { self.message = message } }

let usage = "usage: allocation-gate [--steps N] [--warmup N] [--threads N] [--profile] [CONFIG[:BATCH[:THREADS]] ...]   (default: the built-in cases; --profile: per-layer timing on)"

func gate(communicator: Communicator) -> Int32 {
    var arguments = Array(CommandLine.arguments.dropFirst())
    let warmup: Int
    let steps: Int
    let threads: Int?
    let profile: Bool
    do {
        steps = try takeOption("--steps", from: &arguments, in: 1...100_000) ?? 20
        // 8: Open MPI allocates once in about the fourth step of a process (a one-off, not per step).
        warmup = try takeOption("--warmup", from: &arguments, in: 1...100_000) ?? 8
        threads = try takeOption("--threads", from: &arguments, in: 1...1024)
        profile = arguments.contains("--profile")
        arguments.removeAll { $0 == "--profile" }
        if arguments.contains(where: { $0.hasPrefix("-") }) { throw UsageError("unknown option") }
    } catch {
        say("allocation-gate: \((error as? UsageError)?.message ?? "\(error)")\n\(usage)", error: true)
        return 64
    }
    // Under MPI (the MPI build started by mpirun) every rank counts its own allocations.
    let prefix = communicator.size > 1 ? "rank \(communicator.rank) of \(communicator.size): " : ""
    var failed = false
    do {
        var cases = arguments.isEmpty ? try defaultCases() : try arguments.map(parseCase)
        if let threads { for i in cases.indices { cases[i].threads = threads } }
        for gateCase in cases {
            let (allocations, warmupAllocations, mpiAllocations, workers) = try measure(gateCase, warmup: warmup, steps: steps,
                                                                                        communicator: communicator, profile: profile)
            let verdict = allocations == 0 ? "ok" : "FAIL"
            let perStep = String(format: "%.2f", Double(allocations) / Double(steps))
            let mpi = communicator.size > 1 || mpiAllocations > 0 ? "; the MPI library itself: \(mpiAllocations)" : ""
            say("\(prefix)\(verdict): \(gateCase.label)\(profile ? " (layers timed)" : ""), \(workers) thread(s): \(allocations) allocations in \(steps) steady-state steps (\(perStep) per step; \(warmupAllocations) in the \(warmup) warm-up steps\(mpi))")
            failed = failed || allocations != 0
        }
    } catch {
        if communicator.size > 1 { communicator.abort("allocation-gate: rank \(communicator.rank): \(error)", code: 1) }
        say("allocation-gate: \(error)", error: true)
        return 1
    }
    // Every rank ends with the same status.
    if communicator.maximum(failed ? 1 : 0) != 0 {
        say("allocation-gate: \(prefix)steady-state training steps allocated; see the FAIL lines", error: true)
        return 1
    }
    return 0
}

/// The communicator lives only inside this call, so that with MPI it is finalised before `exit`.
func main() -> Int32 {
    gate(communicator: makeCommunicator(environment: ProcessInfo.processInfo.environment))
}

exit(main())
