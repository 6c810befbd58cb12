// `ptrain train`: train a model from a config, with flags overriding the file.
import ArgumentParser
import PTKernels
import Foundation
import CPTSupport
import PTData
import PTDistributed
import PTModel
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
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
        if let shards, shards < 1 { throw ValidationError("--shards must be at least 1") }
        if keepCheckpoints < 0 { throw ValidationError("--keep-checkpoints must be 0 or more") }
        if let every = checkpointEvery, every != "epoch", (Int(every) ?? 0) < 1 {
            throw ValidationError("--checkpoint-every takes a number of steps (1 or more) or 'epoch', got '\(every)'")
        }
        if resume != nil {
            if configOptions.config != nil { throw ValidationError("--resume uses the checkpoint's config; drop --config") }
            if epochs != nil || batchSize != nil || lr != nil || seed != nil || shards != nil {
                throw ValidationError("--resume continues the checkpoint's run exactly; --epochs, --batch-size, --lr, --seed and --shards cannot change it")
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
        try config.validate(file: configOptions.config ?? "(built-in xo config)")
        return config
    }

    /// Whether a checkpoint is due after the step that brought the trainer to `progress`.
    func checkpointDue(_ progress: TrainingProgress) -> Bool {
        guard let every = checkpointEvery else { return false }
        if every == "epoch" { return progress.stepInEpoch == 0 }
        return progress.globalStep % (Int(every) ?? 1) == 0
    }

    func run() throws {
        pt_install_stop_handlers()
        let communicator = makeCommunicator(environment: ProcessInfo.processInfo.environment)
        do {
            try train(communicator: communicator)
        } catch let error as ExitCode {
            throw error
        } catch {
            // With several processes, one failing rank ends them all, naming itself.
            if communicator.size > 1 { communicator.abort("rank \(communicator.rank): \(error)", code: 1) }
            fail("\(error)")
        }
    }

    func train(communicator: Communicator) throws {
        let leader = communicator.rank == 0   // only rank 0 prints and writes files
        var config: TrainConfig
        var restoreFrom: (folder: String, manifest: CheckpointManifest)?
        var outputPath = output
        if let resume {
            let folder = try Checkpoint.resolve(resume)
            let manifest = try Checkpoint.readManifest(folder)
            config = try Checkpoint.config(of: manifest, folder: folder)
            if let data { config.data.path = data }
            restoreFrom = (folder, manifest)
            // By default the run continues in its own folder (the parent of checkpoints/).
            let parent = (folder as NSString).deletingLastPathComponent
            if outputPath == nil, (parent as NSString).lastPathComponent == "checkpoints" {
                outputPath = (parent as NSString).deletingLastPathComponent
            }
        } else {
            config = try resolvedConfig()
        }
        let (trainSet, testSet) = try loadData(config)
        let pool = try makeWorkerPool(threads: threads, warn: { if leader || communicator.size > 1 { warn($0) } })
        let trainer: Trainer
        do {
            trainer = try Trainer(config: config, train: trainSet, test: testSet, pool: pool, communicator: communicator)
        } catch let error as ConfigError {
            throw ConfigError("\(configOptions.config ?? restoreFrom?.folder ?? "(built-in xo config)"): \(error)")
        } catch let error as ModelError {
            throw ModelError("\(configOptions.config ?? restoreFrom?.folder ?? "(built-in xo config)"): \(error)")
        }
        if let restoreFrom { try Checkpoint.restore(trainer, from: restoreFrom.folder, manifest: restoreFrom.manifest) }
        let folder: RunFolder? = leader ? try RunFolder(path: outputPath, name: config.name) : nil
        let checkpoints = checkpointDir ?? (folder?.path ?? ".") + "/checkpoints"
        // An unusable --checkpoint-dir fails now, before anything is written.
        if leader, checkpointDir != nil { try Checkpoint.prepareDirectory(checkpoints) }
        try folder?.writeConfig(config)
        let writer: MetricsWriter? = leader ? try MetricsWriter(path: metrics ?? folder!.metricsPath) : nil
        let placement = pool.placement.map { "{\"worker\":\($0.worker),\"os_cpu\":\($0.osCPU)}" }.joined(separator: ",")
        try writer?.write("{\"event\":\"start\",\"config\":\(jsonQuote(config.name)),\"processes\":\(communicator.size),\"threads\":\(pool.workerCount),\"shards\":\(config.shards),\"batch_size\":\(config.batchSize),\"parameters\":\(trainer.model.trainableCount),\"train_samples\":\(trainSet.count),\"test_samples\":\(testSet.count),\"resumed_at_step\":\(trainer.progress.globalStep),\"instruction_set\":\"\(InstructionSet.current)\",\"placement\":[\(placement)]}")
        for record in trainer.progress.records { try writer?.write(record.json(event: "epoch")) }
        let level: ProgressReporter.Level = !leader || quiet ? .quiet : (verbose ? .verbose : .normal)
        if level != .quiet {
            let from = restoreFrom.map { " resuming at epoch \(trainer.progress.epoch + 1), step \(trainer.progress.stepInEpoch + 1) from \($0.folder)," } ?? ""
            let processes = communicator.size > 1 ? "\(communicator.size) processes x " : ""
            print("ptrain: \(config.name):\(from) \(trainSet.count) training and \(testSet.count) test samples of \(trainSet.shape), \(trainer.model.trainableCount) parameters, \(processes)\(pool.workerCount) thread(s), \(config.shards) shards")
            if verbose {
                print("placement: " + pool.placement.map { "worker \($0.worker) -> CPU \($0.osCPU)" }.joined(separator: ", "))
            }
        }
        let reporter = ProgressReporter(level: level, trainer: trainer)
        let start = Date()
        var stopSignal = 0
        let records = try trainer.run(report: { record in
            try writer?.write(record.json(event: "epoch"))
            reporter.epoch(record)
            try folder?.writePlots(trainer.progress.records, name: config.name)
        }, afterStep: { trainer in
            reporter.step(trainer.progress)
            // All ranks stop at the same step: the first signal seen by any rank counts.
            let local = Int(pt_stop_requested())
            let signal = communicator.size > 1 ? communicator.maximum(local) : local
            if checkpointDue(trainer.progress) || signal != 0 {
                if leader {
                    let path = try Checkpoint.save(trainer, to: checkpoints, keep: keepCheckpoints)
                    if signal != 0 {
                        reporter.finishLine()
                        FileHandle.standardError.write(Data("ptrain: stopped by signal \(signal) after global step \(trainer.progress.globalStep); checkpoint \(path); continue with --resume \(path)\n".utf8))
                    }
                }
                if communicator.size > 1 { communicator.barrier() }
                if signal != 0 {
                    stopSignal = signal
                    return false
                }
            }
            return true
        })
        if stopSignal != 0 { throw ExitCode(3) }
        guard leader, let folder, let writer else { return }
        try folder.writeWeights(model: trainer.model, parameters: trainer.parameters, state: trainer.state, config: config)
        var done = records.last!
        done.seconds = Date().timeIntervalSince(start)
        done.imagesPerSecond = Double(trainSet.count * records.count) / max(1e-9, records.reduce(0) { $0 + Double(trainSet.count) / max($1.imagesPerSecond, 1e-9) })
        try writer.write(done.json(event: "done"))
        let best = records.max { $0.testAccuracy < $1.testAccuracy }!
        print(String(format: "ptrain: done: test_accuracy %.2f%%, best %.2f%% at epoch %d; %.1f s in all, %.0f images/s in training; run folder %@",
                     done.testAccuracy * 100, best.testAccuracy * 100, best.epoch, done.seconds, done.imagesPerSecond, folder.path))
    }
}


func jsonQuote(_ s: String) -> String {
    let data = try? JSONSerialization.data(withJSONObject: [s])
    let text = data.flatMap { String(data: $0, encoding: .utf8) } ?? "[\"\"]"
    return String(text.dropFirst().dropLast())
}
