// The trainer: loads data, builds the model, runs epochs of data-parallel steps on a worker pool,
// evaluates, and reports one metrics record per epoch.
import Foundation
import PTData
import PTDistributed
import PTModel
import PTRuntime
import PTTensor

/// Loads the training and test sets a config names. `dataOverride` (the `--data` flag) replaces
/// `data.path`.
public func loadData(_ config: TrainConfig) throws -> (train: Dataset, test: Dataset) {
    let sets = try loadRawData(config)
    if config.data.zNormalize && config.data.source != .ucr {
        for set in [sets.train, sets.test] { standardizeEachSample(set) }
    }
    return sets
}

/// Scales every sample of `data` in place to zero mean and unit variance (a constant sample becomes 0).
func standardizeEachSample(_ data: Dataset) {
    let n = data.shape.count
    for i in 0..<data.count {
        let x = data.sample(i)
        var mean = 0.0
        for k in 0..<n { mean += Double(x[k]) }
        mean /= Double(n)
        var variance = 0.0
        for k in 0..<n { variance += (Double(x[k]) - mean) * (Double(x[k]) - mean) }
        let std = (variance / Double(n)).squareRoot()
        let scale = std > 1e-12 ? 1 / std : 0
        for k in 0..<n { x[k] = Float((Double(x[k]) - mean) * scale) }
    }
}

func loadRawData(_ config: TrainConfig) throws -> (train: Dataset, test: Dataset) {
    switch config.data.source {
    case .xo:
        let train = XOData.make(count: config.data.trainCount, size: config.data.size, seed: config.seed)
        let test = XOData.make(count: config.data.testCount, size: config.data.size, seed: config.seed &+ 0x7E57)
        return (train, test)
    default:
        guard let path = config.data.path else {
            throw ConfigError("data.path: not set; pass --data DIR (the \(config.data.source.rawValue) data folder)")
        }
        switch config.data.source {
        case .xo: fatalError("unreachable")
        case .idx: return try MNISTFolder.load(directory: path, classes: 10, mean: config.data.mean, std: config.data.std)
        case .cifar10:
            return try CIFAR10Folder.load(directory: path, mean: config.data.mean.map { [$0] }, std: config.data.std.map { [$0] })
        case .npy:
            return (try NPYPair.load(images: path + "/train_images.npy", labels: path + "/train_labels.npy"),
                    try NPYPair.load(images: path + "/test_images.npy", labels: path + "/test_labels.npy"))
        case .fsdd: return try SpokenDigits.load(directory: path, length: config.data.length)
        case .ucr: return try UCRFolder.load(directory: path, zNormalize: config.data.zNormalize)
        }
    }
}

/// What one epoch produced. Losses are means per sample; accuracies are fractions.
public struct EpochRecord: Sendable, Equatable, Codable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testLoss: Double
    public var testAccuracy: Double
    public var imagesPerSecond: Double
    public var seconds: Double

    /// The metrics line for this record: {"event", "epoch", "train_loss", "test_loss", "test_accuracy", ...}.
    public func json(event: String) -> String {
        "{\"event\":\(jsonString(event)),\"epoch\":\(epoch),\"train_loss\":\(jsonNumber(trainLoss)),"
            + "\"train_accuracy\":\(jsonNumber(trainAccuracy)),\"test_loss\":\(jsonNumber(testLoss)),"
            + "\"test_accuracy\":\(jsonNumber(testAccuracy)),\"images_per_sec\":\(jsonNumber((imagesPerSecond * 10).rounded() / 10)),"
            + "\"seconds\":\(jsonNumber((seconds * 1000).rounded() / 1000))}"
    }
}

/// The position of a run: epoch and step, the running sums of the current epoch, and the records of
/// finished epochs. With the weights and the optimizer state it is the whole training state: the
/// data order is a pure function of (seed, epoch), so no generator state needs saving.
public struct TrainingProgress: Sendable, Equatable, Codable {
    /// 0-based epoch being trained (== epochs when finished).
    public var epoch = 0
    /// Steps of `epoch` already taken: the data position.
    public var stepInEpoch = 0
    public var globalStep = 0
    /// Summed loss and number correct over the steps of `epoch` so far.
    public var epochLoss = 0.0
    public var epochCorrect = 0
    /// Time spent in training steps of `epoch` so far (timing only).
    public var trainingNanoseconds: UInt64 = 0
    public var records: [EpochRecord] = []
    public init() {}
}

/// Training stopped because the loss stopped being a finite number.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

/// Runs training for one config on one worker pool.
public final class Trainer {
    public let config: TrainConfig
    public let model: Model
    public let train: Dataset
    public let test: Dataset
    public let pool: WorkerPool
    public let parameters: AlignedBuffer
    /// Running statistics of batch normalisation layers (flat, `model.stateTensors` offsets).
    public let state: AlignedBuffer
    let job: StepJob
    let order: UnsafeMutablePointer<Int32>
    let evalOrder: UnsafeMutablePointer<Int32>
    public let schedule: LRSchedule
    /// Where training stands: everything besides weights and optimizer state that a checkpoint needs.
    public private(set) var progress = TrainingProgress()
    var preparedEpoch = -1
    var benchCursor = 0
    var epochStart: Date?

    /// Builds the model from the config and the data's sample shape; throws `ModelError` or
    /// `ConfigError` with one line naming the layer or key.
    public let communicator: Communicator

    /// - Parameter communicator: the processes of the job (one by default). With several ranks,
    ///   `shards` must be a multiple of the rank count and shards/ranks a power of two, so that each
    ///   rank's block of shards is a subtree of the fixed reduction tree.
    public init(config: TrainConfig, train: Dataset, test: Dataset, pool: WorkerPool,
                communicator: Communicator = LocalCommunicator()) throws {
        let ranks = communicator.size
        if ranks > 1 {
            let perRank = config.shards / ranks
            guard config.shards % ranks == 0, perRank > 0, perRank & (perRank - 1) == 0 else {
                throw ConfigError("training.shards: \(config.shards) shards cannot be split over \(ranks) processes; use a multiple of \(ranks) whose share per process is a power of two (e.g. \(ranks * 4))")
            }
        }
        self.communicator = communicator
        if let input = config.input, input != train.shape {
            throw ConfigError("model.input: the config says \(input), the data '\(train.name)' has samples of \(train.shape)")
        }
        guard train.shape == test.shape else {
            throw ConfigError("data: training samples are \(train.shape) but test samples are \(test.shape)")
        }
        self.config = config
        self.train = train
        self.test = test
        self.pool = pool
        model = try Model(input: train.shape, layers: config.layers, maxBatch: config.maxShard)
        guard model.classes >= train.classes else {
            throw ModelError("the last layer (\(model.layers.last!.name)) has \(model.classes) outputs but the data has \(train.classes) classes")
        }
        parameters = AlignedBuffer(count: model.parameterCount)
        model.initialize(parameters, seed: config.seed)
        state = AlignedBuffer(count: max(1, model.stateCount))
        model.initializeState(state)
        order = .allocate(capacity: max(1, train.count))
        order.initialize(repeating: 0, count: max(1, train.count))
        evalOrder = .allocate(capacity: max(1, max(train.count, test.count)))
        for i in 0..<max(train.count, test.count) { evalOrder[i] = Int32(i) }
        // Several ranks: the sharded exchange (reduce-scatter, owner's update, all-gather of the
        // weights; ShardedStep) unless the config asks for the all-gather of partial gradients.
        let transport = ranks > 1 && config.exchange == .reduceScatter ? makePointToPoint(communicator) : nil
        job = StepJob(model: model, shards: config.shards, workers: pool.workerCount, parameters: parameters,
                      optimizer: config.makeOptimizer(),
                      dataset: train, indices: order, state: state, communicator: communicator, shardedState: transport != nil)
        if let transport {
            let bucketFloats = config.bucketKB == 0 ? max(1, model.parameterCount) : max(1, config.bucketKB * 256)
            job.sharded = ShardedStep(job: job, transport: transport, bucketFloats: bucketFloats)
            job.sharded?.start()
        }
        let stepsPerEpoch = (train.count + config.batchSize - 1) / config.batchSize
        schedule = LRSchedule(kind: config.schedule, baseLR: config.learningRate,
                              warmupSteps: Int((config.warmupEpochs * Double(stepsPerEpoch)).rounded()),
                              totalSteps: stepsPerEpoch * config.epochs, stepSize: config.stepEpochs * stepsPerEpoch,
                              gamma: config.gamma, minLR: config.minLR)
    }

    deinit {
        order.deallocate()
        evalOrder.deallocate()
    }

    public var stepsPerEpoch: Int { (train.count + config.batchSize - 1) / config.batchSize }

    /// Fills the sample order of `epoch` (a pure function of seed and epoch).
    func prepareEpoch(_ epoch: Int) {
        let permutation = epochPermutation(count: train.count, seed: config.seed, epoch: epoch)
        permutation.withUnsafeBufferPointer { order.update(from: $0.baseAddress!, count: train.count) }
        preparedEpoch = epoch
    }

    /// Runs one training step (the next one in `progress`) and advances `progress`; at the end of
    /// an epoch evaluates the test set and returns the epoch's record.
    public func step() throws -> EpochRecord? {
        let epoch = progress.epoch
        if preparedEpoch != epoch { prepareEpoch(epoch) }
        if progress.stepInEpoch == 0 { epochStart = Date() }
        let start = progress.stepInEpoch * config.batchSize
        job.mode = .train
        job.dataset = train
        job.indices = UnsafePointer(order + start)
        job.batch = min(config.batchSize, train.count - start)
        job.lr = schedule.lr(at: progress.globalStep)
        job.globalStep = progress.globalStep
        var mix = SplitMix64(seed: config.seed ^ 0x6E6F_6973_65)   // "noise"
        mix.state &+= UInt64(progress.globalStep) &* 0x9E37_79B9_7F4A_7C15
        job.noiseBase = mix.next()
        let t0 = monotonicNanoseconds()
        job.sharded?.beginStep()
        pool.run(job)
        job.updateRunningStatistics()
        progress.trainingNanoseconds &+= monotonicNanoseconds() - t0
        let totals = job.totals()
        if let layer = job.firstNonFiniteLayer() ?? (totals.loss.isFinite ? nil : "the loss") {
            throw TrainingError(message: "training stopped: a non-finite value (NaN or infinity) appeared in \(layer) at epoch \(epoch + 1), step \(progress.stepInEpoch + 1) (global step \(progress.globalStep + 1)); the loss was \(totals.loss); try a smaller learning rate")
        }
        progress.epochLoss += totals.loss
        progress.epochCorrect += totals.correct
        progress.globalStep += 1
        progress.stepInEpoch += 1
        guard progress.stepInEpoch == stepsPerEpoch else { return nil }
        let evaluated = evaluate(test)
        let trainSeconds = Double(progress.trainingNanoseconds) / 1e9
        let record = EpochRecord(epoch: epoch + 1, trainLoss: progress.epochLoss / Double(train.count),
                                 trainAccuracy: Double(progress.epochCorrect) / Double(train.count),
                                 testLoss: evaluated.loss, testAccuracy: evaluated.accuracy,
                                 imagesPerSecond: Double(train.count) / max(trainSeconds, 1e-9),
                                 seconds: Date().timeIntervalSince(epochStart ?? Date()))
        progress.records.append(record)
        progress.epoch += 1
        progress.stepInEpoch = 0
        progress.epochLoss = 0
        progress.epochCorrect = 0
        progress.trainingNanoseconds = 0
        return record
    }

    /// Benchmark steps: `count` training steps over the training set in order (cycling), without
    /// touching `progress` or evaluating. Returns the elapsed nanoseconds.
    public func timedSteps(_ count: Int) -> UInt64 {
        if preparedEpoch != 0 { prepareEpoch(0) }
        job.mode = .train
        job.dataset = train
        let t0 = monotonicNanoseconds()
        for _ in 0..<count {
            let start = benchCursor * config.batchSize
            job.indices = UnsafePointer(order + start)
            job.batch = min(config.batchSize, train.count - start)
            job.lr = config.learningRate
            job.sharded?.beginStep()
            pool.run(job)
            job.updateRunningStatistics()
            benchCursor = (benchCursor + 1) % stepsPerEpoch
        }
        return monotonicNanoseconds() - t0
    }

    /// Mean time per worker in each phase since the last `resetPhaseTimes`, in nanoseconds:
    /// compute (forward and backward, data gathering included), data (gathering alone), waiting at
    /// the barrier, reduction, optimizer.
    public func phaseTimes() -> (compute: Double, data: Double, wait: Double, reduce: Double, optimizer: Double, communicate: Double) {
        let t = job.timing
        // The exchange runs on worker 0 only: its time, not a mean over workers.
        return (t.mean(.compute), t.mean(.data), t.mean(.wait), t.mean(.reduce), t.mean(.optimizer),
                t.mean(.communicate) * Double(t.workers))
    }

    public func resetPhaseTimes() {
        job.timing.reset()
        job.sharded?.overlapped.resetTimes()
    }

    /// The sharded exchange's figures since the last `resetPhaseTimes`, per step: bytes this rank
    /// sent (counted; since the trainer was built), the whole exchange (first bucket started to
    /// last weights arrived) and its exposed part (after the last backward), in nanoseconds summed
    /// over the steps. Nil without the sharded exchange.
    public func exchangeFigures() -> (bytesPerStep: Double, exchangeNanoseconds: UInt64, exposedNanoseconds: UInt64,
                                      buckets: Int)? {
        guard let sharded = job.sharded else { return nil }
        return (sharded.bytesPerStep, sharded.overlapped.exchangeNanoseconds, sharded.overlapped.exposedNanoseconds,
                sharded.layout.bucketCount)
    }

    /// Whether every epoch has been trained.
    public var isFinished: Bool { progress.epoch >= config.epochs }

    /// Restores a saved position (from a checkpoint); weights and optimizer state are loaded separately.
    public func restore(_ saved: TrainingProgress) throws {
        guard saved.epoch <= config.epochs, saved.stepInEpoch < stepsPerEpoch,
              saved.globalStep == saved.epoch * stepsPerEpoch + saved.stepInEpoch else {
            throw ConfigError("checkpoint position (epoch \(saved.epoch + 1), step \(saved.stepInEpoch), global step \(saved.globalStep)) does not fit this run (\(config.epochs) epochs of \(stepsPerEpoch) steps)")
        }
        progress = saved
        preparedEpoch = -1
        job.sharded?.scatterState()
    }

    /// The optimizer's state buffers (flat, like the parameters) with their checkpoint names.
    /// With the sharded exchange each rank keeps only its pieces: these are full-size buffers that
    /// `gatherOptimizerState()` fills (for saving) or a checkpoint loads into (`restore` then keeps
    /// this rank's pieces).
    public var optimizerState: [(name: String, buffer: AlignedBuffer)] {
        let buffers = job.sharded.map { $0.fullState ?? $0.loadingBuffers() } ?? job.stateBuffers
        return Array(zip(job.optimizer.stateNames, buffers)).map { (name: $0.0, buffer: $0.1) }
    }

    /// Collective, every rank, between steps, before a checkpoint is saved: gathers the optimizer
    /// state from the ranks that own its pieces (no-op without the sharded exchange).
    public func gatherOptimizerState() { _ = job.sharded?.gatherState() }

    /// After saving: frees the gathered full-size optimizer state.
    public func releaseGatheredOptimizerState() { job.sharded?.scatterState() }

    /// Mean loss and accuracy of the current weights on `data` (forward only, on all workers).
    public func evaluate(_ data: Dataset) -> (loss: Double, accuracy: Double) {
        job.mode = .evaluate
        job.dataset = data
        let chunk = config.maxShard * config.shards
        var lossSum = 0.0
        var correct = 0
        var start = 0
        while start < data.count {
            job.indices = UnsafePointer(evalOrder + start)
            job.batch = min(chunk, data.count - start)
            pool.run(job)
            let totals = job.totals()
            lossSum += totals.loss
            correct += totals.correct
            start += chunk
        }
        return (lossSum / Double(max(1, data.count)), Double(correct) / Double(max(1, data.count)))
    }

    /// Trains until every epoch is done or `afterStep` returns false; `report` gets each epoch's
    /// record as it is completed. Returns the records of all epochs so far.
    @discardableResult
    public func run(report: (EpochRecord) throws -> Void, afterStep: (Trainer) throws -> Bool = { _ in true }) throws -> [EpochRecord] {
        while !isFinished {
            if let record = try step() { try report(record) }
            if !(try afterStep(self)) { break }
        }
        return progress.records
    }
}
