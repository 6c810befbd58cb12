// A whole training run as a library call: steps and evaluation (Trainer), checkpoint cadence,
// resuming, stop signals agreed across ranks, the run folder (config, metrics, plots, final weights).
import Foundation
import PTKernels
import PTData
import PTDistributed
import PTModel
import PTRuntime
import PTTensor

/// One training run: owns the loop that `ptrain train` runs, so a Swift program can run the same
/// resumable training. Rank 0 writes the run folder and the checkpoints; every rank runs the same
/// steps and makes the same collective calls (see `Collectives` for their order).
///
/// A session is used once: build it (this loads the data, builds the model, restores a checkpoint
/// when asked, and creates the run folder), then call `run`.
public final class TrainingSession {
    /// When to write checkpoints besides the one a stop signal forces.
    public enum CheckpointCadence: Equatable, Sendable {
        case never
        /// Every N global steps.
        case steps(Int)
        /// At the end of every epoch.
        case epoch
    }

    public struct Options {
        /// The run folder (config.yaml, metrics.jsonl, loss.svg, error.svg, model.safetensors).
        /// nil: runs/NAME-TIMESTAMP, or for a resumed run whose checkpoint lies in RUN/checkpoints, RUN.
        public var runFolder: String?
        /// The metrics file (default: the run folder's metrics.jsonl).
        public var metricsPath: String?
        /// Where checkpoints go (default: the run folder's checkpoints/).
        public var checkpointDirectory: String?
        public var checkpointEvery: CheckpointCadence = .never
        /// Keep the newest K checkpoints (0 keeps all).
        public var keepCheckpoints = 3
        /// Continue exactly where a checkpoint stood: a checkpoint folder, a folder of checkpoints or
        /// a run folder (the newest checkpoint). The checkpoint's config is used. nil: start afresh.
        public var resume: String?
        /// Replaces `data.path` of the config (also of a resumed run's config).
        public var dataPath: String?
        /// Names the config's source in error messages (a file name); default "config", or the
        /// checkpoint folder when resuming.
        public var configLabel: String?
        /// Asked after every step: a non-zero value (a signal number) on any rank makes every rank
        /// stop after that step, rank 0 write a checkpoint, and `run` return `.stopped`.
        public var stopRequested: () -> Int32 = { 0 }

        public init(runFolder: String? = nil) { self.runFolder = runFolder }
    }

    /// How `run` ended.
    public enum Outcome: Equatable {
        /// Every epoch was trained; the records of all epochs.
        case finished([EpochRecord])
        /// A stop request after `globalStep` steps; the checkpoint to resume from.
        case stopped(signal: Int32, checkpoint: String, globalStep: Int)
    }

    public let config: TrainConfig
    public let trainer: Trainer
    public let options: Options
    /// The checkpoint this session continues from, or nil.
    public let resumedFrom: String?
    /// Set when a bf16 checkpoint was written on another bf16 unit than this process has: one line
    /// for the caller to show (the run goes on, with this unit's bits).
    public let resumeWarning: String?
    /// The run folder (rank 0 only).
    public let runFolder: RunFolder?
    public let checkpointDirectory: String
    /// Whether this process writes files (rank 0).
    public var isLeader: Bool { trainer.collectives.rank == 0 }
    let metrics: MetricsWriter?
    private var used = false

    /// Called after every step with the new position (on every rank).
    public var onStep: ((TrainingProgress) -> Void)?
    /// Called after every epoch with its record (on every rank).
    public var onEpoch: ((EpochRecord) -> Void)?
    /// Called on rank 0 after each checkpoint is written, with its folder.
    public var onCheckpoint: ((String) -> Void)?

    /// - Parameters:
    ///   - config: the run's config; nil only when `options.resume` names a checkpoint. When both
    ///     are given, the checkpoint's config wins and must equal `config` (except `data.path`).
    ///   - data: training and test sets already loaded and preprocessed (`loadData`); nil loads them.
    public init(config given: TrainConfig?, pool: WorkerPool, communicator: Communicator = LocalCommunicator(),
                data: (train: Dataset, test: Dataset)? = nil, options: Options = Options()) throws {
        self.options = options
        var config: TrainConfig
        var restore: (folder: String, manifest: CheckpointManifest)?
        var outputPath = options.runFolder
        if let resume = options.resume {
            let folder = try Checkpoint.resolve(resume)
            let manifest = try Checkpoint.readManifest(folder)
            config = try Checkpoint.config(of: manifest, folder: folder)
            if var given {
                given.data.path = config.data.path
                guard given == config else {
                    throw ConfigError("\(folder): the checkpoint was written by a run with another config than the one given")
                }
            }
            restore = (folder, manifest)
            // By default the run continues in its own folder (the parent of checkpoints/).
            let parent = (folder as NSString).deletingLastPathComponent
            if outputPath == nil, (parent as NSString).lastPathComponent == "checkpoints" {
                outputPath = (parent as NSString).deletingLastPathComponent
            }
        } else if let given {
            config = given
        } else {
            throw ConfigError("TrainingSession: give a config, or a checkpoint to resume")
        }
        if let path = options.dataPath { config.data.path = path }
        self.config = config
        resumedFrom = restore?.folder
        if let restore, config.precision == .bf16, let saved = restore.manifest.bf16Unit,
           let unit = InstructionSet.bf16Unit, saved != unit.rawValue {
            resumeWarning = "\(restore.folder): written with the bf16 unit \(saved), resumed with \(unit.rawValue): the two add in different orders, so the weights leave the bits of an uninterrupted \(saved) run (PTRAIN_BF16_UNIT=\(saved) keeps them where this CPU has that unit)"
        } else {
            resumeWarning = nil
        }
        // Before any data is read: a precision this CPU cannot run is one line (exit 2 in `ptrain`).
        if let reason = config.precision.unavailableReason { throw PrecisionUnavailable(reason) }
        let sets = try data ?? loadData(config)
        let label = options.configLabel ?? restore?.folder ?? "config"
        do {
            trainer = try Trainer(config: config, train: sets.train, test: sets.test, pool: pool, communicator: communicator)
        } catch let error as ConfigError {
            throw ConfigError("\(label): \(error)")
        } catch let error as ModelError {
            throw ModelError("\(label): \(error)")
        }
        if let restore { try Checkpoint.restore(trainer, from: restore.folder, manifest: restore.manifest) }
        let leader = communicator.rank == 0
        runFolder = leader ? try RunFolder(path: outputPath, name: config.name) : nil
        checkpointDirectory = options.checkpointDirectory ?? (runFolder?.path ?? ".") + "/checkpoints"
        // An unusable checkpoint folder fails now, before anything is trained.
        if leader, options.checkpointDirectory != nil { try Checkpoint.prepareDirectory(checkpointDirectory) }
        if let runFolder {
            try runFolder.writeConfig(config)
            let start = MetricsLine.Start(
                config: config.name, processes: communicator.size, threads: pool.workerCount, shards: config.shards,
                batch_size: config.batchSize, parameters: trainer.model.trainableCount, train_samples: sets.train.count,
                test_samples: sets.test.count, resumed_at_step: trainer.progress.globalStep,
                instruction_set: InstructionSet.current.description, bf16_unit: InstructionSet.bf16Unit?.rawValue,
                precision: config.precision.rawValue,
                placement: pool.placement.map { MetricsLine.Placement(worker: $0.worker, os_cpu: $0.osCPU) })
            metrics = try MetricsWriter(path: options.metricsPath ?? runFolder.metricsPath,
                                        lines: [MetricsLine.json(start)]
                                            + trainer.progress.records.map { MetricsLine.json(MetricsLine.Epoch($0, event: "epoch")) })
        } else {
            metrics = nil
        }
    }

    /// Workers of the pool that get no shard to compute (more threads than this process's shards).
    public var idleWorkers: Int { max(0, trainer.pool.workerCount - trainer.localShards) }

    /// Whether a checkpoint is due after the step that brought the trainer to `progress`.
    func checkpointDue(_ progress: TrainingProgress) -> Bool {
        switch options.checkpointEvery {
        case .never: return false
        case .epoch: return progress.stepInEpoch == 0
        case let .steps(n): return progress.globalStep % max(1, n) == 0
        }
    }

    /// Trains until every epoch is done or a stop is requested. On rank 0 it appends one metrics
    /// line and rewrites the plots per epoch, writes checkpoints on the cadence, and at the end
    /// the final weights (`model.safetensors`) and a "done" metrics line. With several processes an
    /// error on any rank ends the whole job (`MPI_Abort`), naming the rank.
    public func run() throws -> Outcome {
        precondition(!used, "a TrainingSession runs once")
        used = true
        do {
            return try loop()
        } catch {
            trainer.collectives.abortIfSeveral(error)
            throw error
        }
    }

    private func loop() throws -> Outcome {
        let start = Date()
        while !trainer.isFinished {
            if let record = try trainer.step() {
                try metrics?.write(MetricsLine.json(MetricsLine.Epoch(record, event: "epoch")))
                try runFolder?.writePlots(trainer.progress.records, name: config.name)
                onEpoch?(record)
            }
            onStep?(trainer.progress)
            let signal = trainer.collectives.agreeOnStop(options.stopRequested())
            if checkpointDue(trainer.progress) || signal != 0 {
                let path = checkpointDirectory + "/" + Checkpoint.folderName(step: trainer.progress.globalStep)
                // Sharded exchange: the last step's exchange completes (and its gradients are
                // checked), then every rank sends its pieces of the optimizer state (no-ops otherwise).
                try trainer.drainExchange()
                trainer.gatherOptimizerState()
                if isLeader {
                    let saved = try Checkpoint.save(trainer, to: checkpointDirectory, keep: options.keepCheckpoints)
                    onCheckpoint?(saved)
                }
                trainer.collectives.checkpointWritten()
                trainer.releaseGatheredOptimizerState()
                if signal != 0 { return .stopped(signal: signal, checkpoint: path, globalStep: trainer.progress.globalStep) }
            }
        }
        try trainer.drainExchange()   // (the last step ended an epoch: already drained by its evaluation)
        let records = trainer.progress.records
        if let runFolder, let metrics {
            try runFolder.writeWeights(model: trainer.model, parameters: trainer.parameters, state: trainer.state, config: config)
            var done = records.last!
            done.seconds = Date().timeIntervalSince(start)
            // Images per second over all epochs: total images / total training time.
            let seconds = records.reduce(0.0) { $0 + Double(trainer.train.count) / max($1.imagesPerSecond, 1e-9) }
            done.imagesPerSecond = Double(trainer.train.count * records.count) / max(seconds, 1e-9)
            try metrics.write(MetricsLine.json(MetricsLine.Epoch(done, event: "done")))
        }
        return .finished(records)
    }
}
