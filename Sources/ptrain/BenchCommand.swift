// `ptrain bench`: kernel GFLOP/s against the FMA peak, whole training steps, and thread scaling.
import ArgumentParser
import Foundation
import PTKernels
import PTDistributed
import PTrain

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure kernels, training steps and scaling with threads.",
        discussion: """
            Examples:
              ptrain bench kernels
              ptrain bench train --config configs/lenet5-mnist.yaml --batch-size 64 --threads 1
              ptrain bench scaling --config configs/lenet5-mnist.yaml --batch-size 256 --threads 1,2
            """,
        subcommands: [BenchKernels.self, BenchTrain.self, BenchScaling.self])
}

struct BenchOutput: ParsableArguments {
    @Option(help: "text (a table) or json (one object per line).") var format: OutputFormat = .text
    var json: Bool { format == .json }
}

struct BenchKernels: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "Single-threaded GFLOP/s of each kernel pass, as a share of the FMA peak measured in the same run.",
        discussion: """
            Runs at the instruction-set level in use (the best the CPU has; PTRAIN_ISA=avx512|avx2|baseline \
            forces one). The first row is that level's FMA peak, with its vector width and the number of \
            independent chains it keeps in flight. Kernels and peak are timed in thread CPU seconds.

            Shapes: LeNet conv1/conv2 (mb 64), CIFAR-style 3x3 layers (mb 128), a ResNet-style 3x3
            and a 1x1 layer at 56x56 (mb 8), and SGEMM 1024^3. Each convolution pass names the entry \
            of its implementation list that ran (e.g. direct.rows; JSON key "implementation").

            Example:
              PTRAIN_ISA=avx2 ptrain bench kernels --format json
            """)
    @OptionGroup var output: BenchOutput
    @Flag(help: "Shorter timings (less precise).") var quick = false
    @Option(help: "Only shapes whose name contains this text.") var filter: String?

    func run() throws {
        print(formatKernelBench(runKernelBench(quick: quick, filter: filter), json: output.json), terminator: "")
    }
}

/// Options shared by `bench train` and `bench scaling`.
struct TrainBenchOptions: ParsableArguments {
    @OptionGroup var configOptions: ConfigOptions
    @Option(name: .customLong("batch-size"), help: "Global batch size (default: the config's).") var batchSize: Int?
    @Option(help: "Shards per batch (default: the config's).") var shards: Int?
    @Option(help: "Steps per timed window (default: as many as fit in about a second).") var steps: Int?
    @Option(help: "Timed windows; the median is reported.") var windows: Int = 7
    @Option(help: "Warm-up seconds before timing.") var warmup: Double = 2
    @Option(help: ArgumentHelp("Precision of the convolution and dense products (overrides training.precision).", valueName: "fp32|bf16"))
    var precision: Precision?

    func validate() throws {
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let steps, steps < 1 { throw ValidationError("--steps must be at least 1") }
        if windows < 1 { throw ValidationError("--windows must be at least 1") }
        try OptionBounds.checkShards(shards)
    }

    func load() throws -> (TrainConfig, TrainBenchSettings) {
        var config = try configOptions.load()
        if let batchSize { config.batchSize = batchSize }
        if let shards { config.shards = shards }
        if let precision { config.precision = precision }
        if let reason = config.precision.unavailableReason { throw PrecisionUnavailable(reason) }
        config.shards = min(config.shards, config.batchSize)
        try config.validate(file: configOptions.config ?? "(built-in xo config)")
        var settings = TrainBenchSettings()
        settings.stepsPerWindow = steps
        settings.windows = windows
        settings.warmupSeconds = warmup
        return (config, settings)
    }
}

struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Measure whole training steps on synthetic data of the config's input shape.",
        discussion: """
            Warm-up, then the median images/s of several timed windows. The meter line gives the model's \
            FLOPs per training image, counted from the layer geometry (conv and dense multiply-adds x 2 \
            FLOPs x 3 passes: forward, backward-data, backward-weights; the first layer's backward-data \
            counted too; BN, ReLU, pooling and adds not counted), and the whole step's share of the peak: \
            FLOPs per image x images/s / (one core's peak at the step's precision, measured in the same run, \
            x threads x processes).

            --profile times every layer's forward and backward and the step's other phases (data \
            gathering, loss and glue, reduction, optimizer, barrier wait), each with its share of the \
            step, costliest first.

            Examples:
              ptrain bench train --config configs/lenet5-mnist.yaml --batch-size 64 --threads 1 --format json
              ptrain bench train --config configs/resnet20-cifar.yaml --batch-size 128 --threads 1 --profile
            """)
    @OptionGroup var options: TrainBenchOptions
    @OptionGroup var output: BenchOutput
    @Option(help: "Worker threads (default: one per shard, at most the allowed cores).") var threads: Int?
    @Flag(help: "Time each layer's forward and backward and the step's phases; print them costliest first.") var profile = false

    func validate() throws { try OptionBounds.checkThreads(threads) }

    func run() throws {
        reportingErrors {
            let communicator = makeCommunicator(environment: ProcessInfo.processInfo.environment)
            let (config, loaded) = try options.load()
            var settings = loaded
            settings.profile = profile
            let pool = try makeWorkerPool(threads: threads, maximum: config.shards / communicator.size, warn: { warn($0) })
            let result = try benchTrain(config: config, pool: pool, settings: settings, communicator: communicator)
            guard communicator.rank == 0 else { return }
            if output.json {
                print(result.json)
            } else {
                print("\(config.name), batch \(config.batchSize), \(config.shards) shards, \(config.precision.rawValue)\n" + formatTrainBench([result]))
                print(formatMeter(result))
                if let rows = result.profile { print(formatProfile(rows)) }
            }
        }
    }
}

struct BenchScaling: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scaling",
        abstract: "Run training steps at each thread count: images/s, speedup, parallel efficiency, phase times.",
        discussion: """
            Speedup and efficiency are relative to the first thread count given. Writes scaling.csv and
            scaling.svg (speedup against threads, with the ideal line) into --output.

            Example:
              ptrain bench scaling --config configs/lenet5-mnist.yaml --batch-size 256 --threads 1,2,4,8,16
            """)
    @OptionGroup var options: TrainBenchOptions
    @OptionGroup var output: BenchOutput
    @Option(help: ArgumentHelp("Comma-separated thread counts.", valueName: "list")) var threads: String = "1,2"
    @Option(name: .customLong("output"), help: ArgumentHelp("Folder for scaling.csv and scaling.svg (default runs/scaling-NAME-TIMESTAMP).", valueName: "dir"))
    var folder: String?

    func validate() throws {
        guard !threadCounts.isEmpty, threadCounts.allSatisfy({ $0 >= 1 }) else {
            throw ValidationError("--threads takes a comma-separated list of positive numbers, got '\(threads)'")
        }
        for count in threadCounts { try OptionBounds.checkThreads(count) }
    }

    var threadCounts: [Int] { threads.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) } }

    func run() throws {
        reportingErrors {
            let communicator = makeCommunicator(environment: ProcessInfo.processInfo.environment)
            let (config, settings) = try options.load()
            var results: [TrainBenchResult] = []
            for count in threadCounts {
                let pool = try makeWorkerPool(threads: count, warn: { warn($0) })
                results.append(try benchTrain(config: config, pool: pool, settings: settings, communicator: communicator))
            }
            guard communicator.rank == 0 else { return }
            results = scalingTable(results)
            let run = try RunFolder(path: folder, name: "scaling-\(config.name)")
            let files = try writeScalingFiles(results, folder: run.path,
                                              title: "\(config.name), batch \(config.batchSize): speedup with threads")
            if output.json {
                results.forEach { print($0.json) }
            } else {
                print("\(config.name), batch \(config.batchSize), \(config.shards) shards")
                print(formatTrainBench(results))
                print("wrote \(files.csv) and \(files.svg)")
            }
        }
    }
}
