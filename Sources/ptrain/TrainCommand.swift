// `ptrain train`: train a model from a config, with flags overriding the file.
import ArgumentParser
import PTKernels
import Foundation
import CPTSupport
import PTDistributed
import PTRuntime
import PTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Train a model (the default command).",
        discussion: """
            Writes the run folder (--output, default runs/NAME-TIMESTAMP): config.yaml (the resolved
            config), metrics.jsonl (one JSON object per line: an "epoch" record per epoch and a last
            "done" record), loss.svg and error.svg (per epoch), and model.safetensors (the final
            weights). Without --threads, one worker per shard, at most one per allowed core.

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
    @Option(help: "Worker threads (default: one per shard, at most the allowed cores).") var threads: Int?
    @Option(help: ArgumentHelp("Precision of the convolution and dense products: fp32 or bf16 (needs AVX512_BF16; overrides training.precision).", valueName: "fp32|bf16"))
    var precision: Precision?
    @Option(help: ArgumentHelp("Run folder (default runs/NAME-TIMESTAMP).", valueName: "dir")) var output: String?
    @Option(help: ArgumentHelp("Metrics file, one JSON object per line (default: the run folder's metrics.jsonl).", valueName: "file"))
    var metrics: String?
    @Flag(name: .shortAndLong, help: "Print only errors and the final summary.") var quiet = false
    @Flag(name: .shortAndLong, help: "More detail: the worker placement, and progress lines every 5 s in batch jobs.") var verbose = false
    @Option(name: .customLong("checkpoint-dir"), help: ArgumentHelp("Checkpoint folder (default: the run folder's checkpoints/).", valueName: "dir"))
    var checkpointDir: String?
    @Option(name: .customLong("checkpoint-every"), help: ArgumentHelp("Write a checkpoint every N steps, or at the end of every epoch ('epoch').", valueName: "N|epoch"))
    var checkpointEvery: String?
    @Option(name: .customLong("keep-checkpoints"), help: "Keep the newest K checkpoints (0 keeps all).")
    var keepCheckpoints: Int = 3
    @Option(help: ArgumentHelp("Continue exactly where a checkpoint stood: a checkpoint folder, a folder of checkpoints, or a run folder (the newest checkpoint is taken). The checkpoint's config is used; --data, --threads, --output and the checkpoint options may be given.", valueName: "dir"))
    var resume: String?

    func validate() throws {
        if let epochs, epochs < 1 { throw ValidationError("--epochs must be at least 1") }
        if let batchSize, batchSize < 1 { throw ValidationError("--batch-size must be at least 1") }
        if let lr, !(lr.isFinite && lr > 0) { throw ValidationError("--lr must be a finite number > 0") }
        try OptionBounds.checkThreads(threads)
        try OptionBounds.checkShards(shards)
        if keepCheckpoints < 0 { throw ValidationError("--keep-checkpoints must be 0 or more") }
        if let every = checkpointEvery, every != "epoch", (Int(every) ?? 0) < 1 {
            throw ValidationError("--checkpoint-every takes a number of steps (1 or more) or 'epoch', got '\(every)'")
        }
        if resume != nil {
            if configOptions.config != nil { throw ValidationError("--resume uses the checkpoint's config; drop --config") }
            if epochs != nil || batchSize != nil || lr != nil || seed != nil || shards != nil || precision != nil {
                throw ValidationError("--resume continues the checkpoint's run exactly; --epochs, --batch-size, --lr, --seed, --shards and --precision cannot change it")
            }
        }
    }

    func resolvedConfig() throws -> TrainConfig {
        var config = try configOptions.load()
        if let data { config.data.path = data; if config.data.source == .xo { config.data.source = .idx } }
        if let epochs { config.epochs = epochs }
        if let batchSize { config.batchSize = batchSize }
        if let lr { config.learningRate = lr }
        if let seed { config.seed = seed }
        if let shards { config.shards = shards }
        if let precision { config.precision = precision }
        try config.validate(file: configOptions.config ?? "(built-in xo config)")
        return config
    }

    var cadence: TrainingSession.CheckpointCadence {
        guard let every = checkpointEvery else { return .never }
        return every == "epoch" ? .epoch : .steps(Int(every) ?? 1)
    }

    func run() throws {
        pt_install_stop_handlers()
        let communicator = makeCommunicator(environment: ProcessInfo.processInfo.environment)
        do {
            try train(communicator: communicator)
        } catch let error as ExitCode {
            throw error
        } catch let error as PrecisionUnavailable {
            failUnavailable(error)
        } catch {
            // With several processes, one failing rank ends them all, naming itself.
            if communicator.size > 1 { communicator.abort("rank \(communicator.rank): \(error)", code: 1) }
            fail("\(error)")
        }
    }

    func train(communicator: Communicator) throws {
        let leader = communicator.rank == 0   // only rank 0 prints
        var options = TrainingSession.Options(runFolder: output)
        options.metricsPath = metrics
        options.checkpointDirectory = checkpointDir
        options.checkpointEvery = cadence
        options.keepCheckpoints = keepCheckpoints
        options.resume = resume
        options.stopRequested = { pt_stop_requested() }
        let config: TrainConfig?
        if resume != nil {
            config = nil
            options.dataPath = data
        } else {
            config = try resolvedConfig()
            options.configLabel = configOptions.config ?? "(built-in xo config)"
        }
        // Without --threads: one worker per shard this process computes, at most one per allowed core.
        let shards = (config ?? resume.flatMap(Checkpoint.peekConfig))?.shards
        let pool = try makeWorkerPool(threads: threads, maximum: shards.map { max(1, $0 / communicator.size) },
                                      warn: { if leader || communicator.size > 1 { warn($0) } })
        let session = try TrainingSession(config: config, pool: pool, communicator: communicator, options: options)
        if let warning = session.resumeWarning, leader { warn(warning) }
        let trainer = session.trainer
        if session.idleWorkers > 0 && (leader || communicator.size > 1) {
            let shards = trainer.localShards, idle = session.idleWorkers
            // Several processes need a power-of-two share of shards each.
            var perProcess = pool.workerCount
            if communicator.size > 1 { perProcess = 1 << (Int.bitWidth - (perProcess - 1).leadingZeroBitCount) }
            warn("\(pool.workerCount) threads but only \(shards) shard\(shards == 1 ? "" : "s") per step\(communicator.size > 1 ? " in this process" : ""): \(idle) thread\(idle == 1 ? " stays" : "s stay") idle; use --threads \(shards), or a config with more training.shards (--shards \(perProcess * communicator.size); this changes the results)")
        }
        let level: ProgressReporter.Level = !leader || quiet ? .quiet : (verbose ? .verbose : .normal)
        if level != .quiet {
            let from = session.resumedFrom.map { " resuming at epoch \(trainer.progress.epoch + 1), step \(trainer.progress.stepInEpoch + 1) from \($0)," } ?? ""
            let processes = communicator.size > 1 ? "\(communicator.size) processes x " : ""
            print("ptrain: \(session.config.name):\(from) \(trainer.train.count) training and \(trainer.test.count) test samples of \(trainer.train.shape), \(trainer.model.trainableCount) parameters, \(processes)\(pool.workerCount) thread(s), \(session.config.shards) shards")
            if verbose {
                print("placement: " + pool.placement.map { "worker \($0.worker) -> CPU \($0.osCPU)" }.joined(separator: ", "))
            }
        }
        let reporter = ProgressReporter(level: level, trainer: trainer)
        session.onEpoch = { reporter.epoch($0) }
        session.onStep = { reporter.step($0) }
        let start = Date()
        switch try session.run() {
        case let .stopped(signal, checkpoint, step):
            if leader {
                reporter.finishLine()
                FileHandle.standardError.write(Data("ptrain: stopped by signal \(signal) after global step \(step); checkpoint \(checkpoint); continue with --resume \(checkpoint)\n".utf8))
            }
            throw ExitCode(3)
        case let .finished(records):
            guard leader, let folder = session.runFolder else { return }
            let last = records.last!
            let best = records.max { $0.testAccuracy < $1.testAccuracy }!
            let seconds = records.reduce(0.0) { $0 + Double(trainer.train.count) / max($1.imagesPerSecond, 1e-9) }
            let rate = Double(trainer.train.count * records.count) / max(seconds, 1e-9)
            print(String(format: "ptrain: done: test_accuracy %.2f%%, best %.2f%% at epoch %d; %.1f s in all, %.0f images/s in training; run folder %@",
                         last.testAccuracy * 100, best.testAccuracy * 100, best.epoch, Date().timeIntervalSince(start), rate, folder.path))
        }
    }
}
