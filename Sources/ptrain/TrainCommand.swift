// `ptrain train`: train a model from a config, with flags overriding the file.
import ArgumentParser
import Foundation
import PTData
import PTRuntime
import PTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model (the default command).",
        discussion: """
            Writes the run folder (--output, default runs/NAME-TIMESTAMP): config.yaml (the resolved
            config), metrics.jsonl (one JSON object per line: an "epoch" record per epoch and a last
            "done" record) and model.safetensors (the final weights).

            Examples:
              ptrain train                                        # X/O toy problem
              ptrain train --config configs/lenet5-mnist.yaml --data path/to/mnist --threads 2
            """)

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: ArgumentHelp("Data folder (overrides data.path; MNIST-format IDX files, raw or .gz).", valueName: "dir"))
    var data: String?
    @Option(help: "Number of epochs (overrides training.epochs).") var epochs: Int?
    @Option(name: .customLong("batch-size"), help: "Global minibatch size (overrides training.batch_size).") var batchSize: Int?
    @Option(help: "Learning rate (overrides optimizer.lr).") var lr: Float?
    @Option(help: "Random seed for initialisation, data generation and shuffling (overrides training.seed).") var seed: UInt64?
    @Option(help: "Shards each minibatch is split into; fixes the result independent of --threads (overrides training.shards).")
    var shards: Int?
    @Option(help: "Worker threads (default: the allowed cores).") var threads: Int?
    @Option(help: ArgumentHelp("Run folder (default runs/NAME-TIMESTAMP).", valueName: "dir")) var output: String?
    @Option(help: ArgumentHelp("Metrics file, one JSON object per line (default: the run folder's metrics.jsonl).", valueName: "file"))
    var metrics: String?
    @Flag(name: .shortAndLong, help: "Print only errors and the final summary line.") var quiet = false

    func validate() throws {
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let lr, !(lr.isFinite && lr > 0) { throw ValidationError("--lr must be a finite number > 0") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let shards, shards < 1 { throw ValidationError("--shards must be at least 1") }
    }

    func resolvedConfig() throws -> TrainConfig {
        var config = try configOptions.load()
        if let data { config.data.path = data; if config.data.source == .xo { config.data.source = .idx } }
        if let epochs { config.epochs = epochs }
        if let batchSize { config.batchSize = batchSize }
        if let lr { config.learningRate = lr }
        if let seed { config.seed = seed }
        if let shards { config.shards = shards }
        try config.validate(file: configOptions.config ?? "(built-in xo config)")
        return config
    }

    func run() throws {
        reportingErrors {
            let config = try resolvedConfig()
            let (trainSet, testSet) = try loadData(config)
            let pool = try makePool(threads: threads, quiet: quiet)
            let trainer = try Trainer(config: config, train: trainSet, test: testSet, pool: pool)
            let folder = try RunFolder(path: output, name: config.name)
            try folder.writeConfig(config)
            let writer = try MetricsWriter(path: metrics ?? folder.metricsPath)
            let placement = pool.placement.map { "{\"worker\":\($0.worker),\"os_cpu\":\($0.osCPU)}" }.joined(separator: ",")
            try writer.write("{\"event\":\"start\",\"config\":\(jsonQuote(config.name)),\"threads\":\(pool.workerCount),\"shards\":\(config.shards),\"batch_size\":\(config.batchSize),\"parameters\":\(trainer.model.trainableCount),\"train_samples\":\(trainSet.count),\"test_samples\":\(testSet.count),\"placement\":[\(placement)]}")
            if !quiet {
                print("ptrain: \(config.name): \(trainSet.count) training and \(testSet.count) test samples of \(trainSet.shape), \(trainer.model.trainableCount) parameters, \(pool.workerCount) thread(s), \(config.shards) shards")
            }
            let start = Date()
            let records = try trainer.run { record in
                try writer.write(record.json(event: "epoch"))
                if !quiet {
                    print(String(format: "epoch %d/%d  train_loss %.4f  test_loss %.4f  test_accuracy %.2f%%  %.0f images/s  %.1f s",
                                 record.epoch, config.epochs, record.trainLoss, record.testLoss, record.testAccuracy * 100,
                                 record.imagesPerSecond, record.seconds))
                }
            }
            try folder.writeWeights(model: trainer.model, parameters: trainer.parameters, config: config)
            var done = records.last!
            done.seconds = Date().timeIntervalSince(start)
            done.imagesPerSecond = Double(trainSet.count * config.epochs) / max(1e-9, records.reduce(0) { $0 + $1.seconds })
            try writer.write(done.json(event: "done"))
            let best = records.max { $0.testAccuracy < $1.testAccuracy }!
            print(String(format: "ptrain: done: test_accuracy %.2f%% (best %.2f%% at epoch %d), %.1f s; run folder %@",
                         done.testAccuracy * 100, best.testAccuracy * 100, best.epoch, done.seconds, folder.path))
        }
    }
}

/// Creates the worker pool for `threads` workers (default: the allowed cores).
func makePool(threads: Int?, quiet: Bool) throws -> WorkerPool {
    let count = threads ?? 1
    return WorkerPool(workers: count)
}

func jsonQuote(_ s: String) -> String {
    let data = try? JSONSerialization.data(withJSONObject: [s])
    let text = data.flatMap { String(data: $0, encoding: .utf8) } ?? "[\"\"]"
    return String(text.dropFirst().dropLast())
}
