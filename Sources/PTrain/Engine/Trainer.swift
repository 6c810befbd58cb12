// The trainer: builds the model on a worker pool, runs data-parallel training steps, evaluates,
// and keeps the position of the run (one record per finished epoch).
import Foundation
import PTData
import PTDistributed
import PTKernels
import PTModel
import PTRuntime
import PTTensor

/// The sample shape image folders are decoded to: the model input (channels 1 or 3).
func imageInputShape(_ config: TrainConfig) throws -> Shape {
    guard let input = config.input else {
        throw ConfigError("model.input: required for data.source images (channels 1 or 3, height, width)")
    }
    guard input.channels == 1 || input.channels == 3 else {
        throw ConfigError("model.input.channels: images are decoded to 1 (grey) or 3 (RGB) channels, got \(input.channels)")
    }
    return input
}

/// What one epoch produced. Losses are means per sample; accuracies are fractions.
public struct EpochRecord: Sendable, Equatable, Codable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var testLoss: Double
    public var testAccuracy: Double
    public var imagesPerSecond: Double
    /// Wall time of the epoch: its steps, the evaluation, and what ran between steps (checkpoints).
    /// A resumed epoch counts the time before the checkpoint too.
    public var seconds: Double

    public init(epoch: Int, trainLoss: Double, trainAccuracy: Double, testLoss: Double, testAccuracy: Double,
                imagesPerSecond: Double, seconds: Double) {
        self.epoch = epoch; self.trainLoss = trainLoss; self.trainAccuracy = trainAccuracy; self.testLoss = testLoss
        self.testAccuracy = testAccuracy; self.imagesPerSecond = imagesPerSecond; self.seconds = seconds
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
    /// Wall time of `epoch` so far (timing only; 0 in checkpoints written before it was kept).
    public var wallNanoseconds: UInt64 = 0
    public var records: [EpochRecord] = []
    public init() {}

    enum CodingKeys: String, CodingKey {
        case epoch, stepInEpoch, globalStep, epochLoss, epochCorrect, trainingNanoseconds, wallNanoseconds, records
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        epoch = try c.decode(Int.self, forKey: .epoch)
        stepInEpoch = try c.decode(Int.self, forKey: .stepInEpoch)
        globalStep = try c.decode(Int.self, forKey: .globalStep)
        epochLoss = try c.decode(Double.self, forKey: .epochLoss)
        epochCorrect = try c.decode(Int.self, forKey: .epochCorrect)
        trainingNanoseconds = try c.decode(UInt64.self, forKey: .trainingNanoseconds)
        wallNanoseconds = try c.decodeIfPresent(UInt64.self, forKey: .wallNanoseconds) ?? 0
        records = try c.decode([EpochRecord].self, forKey: .records)
    }
}

/// Training could not go on: a loss that stopped being finite, or a run that was stopped.
public struct TrainingError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// The config asks for a precision this process cannot run (bf16 without AVX512_BF16, or with
/// PTRAIN_ISA below avx512). The command line prints its one line and exits with code 2.
public struct PrecisionUnavailable: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = "training.precision: " + description }
}

/// Runs training for one config on one worker pool: one step at a time (`step`), with the test
/// set evaluated after each epoch. `TrainingSession` drives it (checkpoints, stop signals,
/// metrics, the run folder); benchmarks call `timedSteps`.
public final class Trainer {
    public let config: TrainConfig
    public let model: Model
    public let train: Dataset
    public let test: Dataset
    public let pool: WorkerPool
    public let parameters: AlignedBuffer
    /// Running statistics of batch normalisation layers (flat, `model.stateTensors` offsets).
    public let state: AlignedBuffer
    public let collectives: Collectives
    public var communicator: Communicator { collectives.communicator }
    let job: StepJob
    /// The evaluation pass over the current weights (the step job's workspaces); through
    /// `evaluate`, which drains the exchange first.
    let evaluator: Evaluator
    let order: UnsafeMutablePointer<Int32>
    public let schedule: LRSchedule
    /// Where training stands: everything besides weights and optimizer state that a checkpoint needs.
    public private(set) var progress = TrainingProgress()
    var preparedEpoch = -1
    var benchCursor = 0
    /// End of the previous step (monotonic ns), for the epoch's wall time; nil before the first.
    var lastMark: UInt64?
    /// The last training step whose reduced gradients the ranks have not yet checked for
    /// non-finite values (its exchange may still run: the sharded exchange), with its position and loss.
    var unchecked: StepPosition?

    /// A training step, for the non-finite check and its message.
    struct StepPosition {
        let epoch: Int, stepInEpoch: Int, globalStep: Int
        let loss: Double
        /// The step job's generation of the step.
        let generation: Int
    }

    /// Builds the model from the config and the data's sample shape; throws `ModelError` or
    /// `ConfigError` with one line naming the layer or key.
    /// - Parameter communicator: the processes of the job (one by default). With several ranks,
    ///   `shards` must be a multiple of the rank count and shards/ranks a power of two, so that each
    ///   rank's block of shards is a subtree of the fixed reduction tree.
    public init(config: TrainConfig, train: Dataset, test: Dataset, pool: WorkerPool,
                communicator: Communicator = LocalCommunicator()) throws {
        if let reason = config.precision.unavailableReason { throw PrecisionUnavailable(reason) }
        let ranks = communicator.size
        if ranks > 1 {
            let perRank = config.shards / ranks
            guard config.shards % ranks == 0, perRank > 0, perRank & (perRank - 1) == 0 else {
                throw ConfigError("training.shards: \(config.shards) shards cannot be split over \(ranks) processes; use a multiple of \(ranks) whose share per process is a power of two (e.g. \(ranks * 4))")
            }
        }
        collectives = Collectives(communicator)
        if let input = config.input, input != train.shape {
            throw ConfigError("model.input: the config says \(input), the data '\(train.name)' has samples of \(train.shape)")
        }
        guard train.shape == test.shape else {
            throw ConfigError("data: training samples are \(train.shape) but test samples are \(test.shape)")
        }
        self.config = config
        self.pool = pool
        model = try Model(input: train.shape, layers: config.layers, maxBatch: config.maxShard)
        guard model.classes >= train.classes else {
            throw ModelError("the last layer (\(model.layers.last!.name)) has \(model.classes) outputs but the data has \(train.classes) classes")
        }
        self.train = spreadOverWorkers(train, pool: pool)
        self.test = test.store === train.store ? self.train : spreadOverWorkers(test, pool: pool)
        // The workers write their slices of the parameters and the optimizer state (first touch).
        let initial = AlignedBuffer(count: model.parameterCount)
        model.initialize(initial, seed: config.seed)
        parameters = AlignedBuffer(uninitializedCount: model.parameterCount)
        state = AlignedBuffer(count: max(1, model.stateCount))
        model.initializeState(state)
        order = .allocate(capacity: max(1, train.count))
        order.initialize(repeating: 0, count: max(1, train.count))
        job = StepJob(model: model, config: config, pool: pool, parameters: parameters, initialParameters: initial, state: state,
                      collectives: collectives, exchange: Self.chooseExchange(config: config, model: model, collectives: collectives))
        evaluator = Evaluator(model: model, config: config, pool: pool, parameters: parameters.pointer, state: state.pointer,
                              collectives: collectives, workspaces: job.workspaces, identityCount: max(train.count, test.count))
        let stepsPerEpoch = (train.count + config.batchSize - 1) / config.batchSize
        schedule = LRSchedule(kind: config.schedule, baseLR: config.learningRate,
                              warmupSteps: Int((config.warmupEpochs * Double(stepsPerEpoch)).rounded()),
                              totalSteps: stepsPerEpoch * config.epochs, stepSize: config.stepEpochs * stepsPerEpoch,
                              gamma: config.gamma, minLR: config.minLR)
    }

    deinit {
        order.deallocate()
    }

    /// The gradient exchange, chosen once: one rank: in-process; several ranks: the sharded
    /// exchange (reduce-scatter to the piece owners, the owner's update with this rank's pieces of
    /// the optimizer state only, all-gather of the weights) unless the config asks for the
    /// all-gather of partial gradients.
    static func chooseExchange(config: TrainConfig, model: Model, collectives: Collectives) -> ExchangeChoice {
        guard collectives.size > 1 else { return .inProcess }
        guard config.exchange == .reduceScatter, let transport = collectives.makeExchangeTransport() else { return .allGather }
        let exchange = ShardedExchange(layout: ReduceScatterExchange.layout(of: model, ranks: transport.size, bucketKB: config.bucketKB),
                                       transport: transport, segmentFloats: config.segmentKB * 256,
                                       sendsInFlight: config.sendsInFlight)
        // The exchange may run on into the next forward only while the main thread's collectives
        // may run beside it (MPI_THREAD_MULTIPLE); otherwise each step drains it.
        let concurrent = collectives.communicator.allowsCollectivesDuringExchange
        if config.overlapForward && !concurrent && collectives.rank == 0 {
            FileHandle.standardError.write(Data("ptrain: warning: distributed.overlap_forward: the MPI library does not provide MPI_THREAD_MULTIPLE; each step waits for its whole exchange\n".utf8))
        }
        return .reduceScatter(exchange, overlapsForward: config.overlapForward && concurrent)
    }

    public var stepsPerEpoch: Int { (train.count + config.batchSize - 1) / config.batchSize }

    /// Shards this process computes (all of them with one process).
    public var localShards: Int { job.endShard - job.firstShard }

    /// Fills the sample order of `epoch` (a pure function of seed and epoch).
    func prepareEpoch(_ epoch: Int) {
        let permutation = epochPermutation(count: train.count, seed: config.seed, epoch: epoch)
        permutation.withUnsafeBufferPointer { order.update(from: $0.baseAddress!, count: train.count) }
        preparedEpoch = epoch
    }

    /// The training step at `globalStep` (in `epoch`) over the samples `order[start ..< start + batch]`.
    func trainingStep(start: Int, globalStep: Int, epoch: Int, lr: Float) -> Step {
        var mix = SplitMix64(seed: config.seed ^ 0x6E6F_6973_65)   // "noise"
        mix.state &+= UInt64(globalStep) &* 0x9E37_79B9_7F4A_7C15
        return Step(dataset: train, indices: UnsafePointer(order + start), batch: min(config.batchSize, train.count - start),
                    lr: lr, globalStep: globalStep, epoch: epoch, noiseBase: mix.next())
    }

    /// Asks a memory-mapped training set to start reading the pages of the next step's samples
    /// (those of this rank's shards only) while this step runs; nothing for heap stores or at the
    /// end of an epoch. Allocates nothing.
    func prefetchNextStep(after start: Int) {
        guard train.store.isMapped else { return }
        let next = start + config.batchSize
        guard next < train.count else { return }
        let batch = min(config.batchSize, train.count - next)
        let lo = StepJob.shardRange(job.firstShard, batch: batch, shards: job.shards).lowerBound
        let hi = StepJob.shardRange(job.endShard - 1, batch: batch, shards: job.shards).upperBound
        if hi > lo { train.store.prefetch(indices: order + next + lo, count: hi - lo) }
    }

    /// Runs one training step (the next one in `progress`) and advances `progress`; at the end of
    /// an epoch evaluates the test set and returns the epoch's record.
    public func step() throws -> EpochRecord? {
        let begin = monotonicNanoseconds()
        let mark = lastMark ?? begin
        let epoch = progress.epoch
        if preparedEpoch != epoch { prepareEpoch(epoch) }
        let step = trainingStep(start: progress.stepInEpoch * config.batchSize, globalStep: progress.globalStep,
                                epoch: epoch, lr: schedule.lr(at: progress.globalStep))
        prefetchNextStep(after: progress.stepInEpoch * config.batchSize)
        let t0 = monotonicNanoseconds()
        let totals = job.run(step)
        progress.trainingNanoseconds &+= monotonicNanoseconds() - t0
        // The ranks agree on the gradients of every step whose exchange is complete: this one, or
        // with the sharded exchange the previous one (this step's forward waited for all of it),
        // and this one at the next step or drain.
        try checkSettledSteps(newest: StepPosition(epoch: epoch, stepInEpoch: progress.stepInEpoch, globalStep: progress.globalStep,
                                                   loss: totals.loss, generation: job.generation))
        if !totals.loss.isFinite {
            try drainExchange()
            throw nonFinite("the loss", epoch: epoch, stepInEpoch: progress.stepInEpoch, globalStep: progress.globalStep, loss: totals.loss)
        }
        progress.epochLoss += totals.loss
        progress.epochCorrect += totals.correct
        progress.globalStep += 1
        progress.stepInEpoch += 1
        guard progress.stepInEpoch == stepsPerEpoch else {
            let end = monotonicNanoseconds()
            progress.wallNanoseconds &+= end &- mark
            lastMark = end
            return nil
        }
        try drainExchange()
        let evaluated = evaluate(test)
        let end = monotonicNanoseconds()
        progress.wallNanoseconds &+= end &- mark
        lastMark = end
        let trainSeconds = Double(progress.trainingNanoseconds) / 1e9
        let record = EpochRecord(epoch: epoch + 1, trainLoss: progress.epochLoss / Double(train.count),
                                 trainAccuracy: Double(progress.epochCorrect) / Double(train.count),
                                 testLoss: evaluated.loss, testAccuracy: evaluated.accuracy,
                                 imagesPerSecond: Double(train.count) / max(trainSeconds, 1e-9),
                                 seconds: Double(progress.wallNanoseconds) / 1e9)
        progress.records.append(record)
        progress.epoch += 1
        progress.stepInEpoch = 0
        progress.epochLoss = 0
        progress.epochCorrect = 0
        progress.trainingNanoseconds = 0
        progress.wallNanoseconds = 0
        return record
    }

    func nonFinite(_ what: String, epoch: Int, stepInEpoch: Int, globalStep: Int, loss: Double) -> TrainingError {
        TrainingError(message: "training stopped: a non-finite value (NaN or infinity) appeared in \(what) at epoch \(epoch + 1), step \(stepInEpoch + 1) (global step \(globalStep + 1)); the loss was \(loss); try a smaller learning rate")
    }

    /// Collective: the ranks agree on the gradients of the unchecked step and of `newest` once
    /// settled (`GradientExchange.settled`, the same on every rank); a step not yet settled waits
    /// in `unchecked`. Throws `TrainingError` for the first whose gradients were not finite.
    func checkSettledSteps(newest: StepPosition? = nil) throws {
        let settled = job.exchange.settled
        if let previous = unchecked, previous.generation <= settled {
            unchecked = nil
            try checkGradients(previous)
        }
        guard let newest else { return }
        if newest.generation <= settled {
            try checkGradients(newest)
        } else {
            precondition(unchecked == nil, "two training steps without a settled exchange")
            unchecked = newest
        }
    }

    func checkGradients(_ step: StepPosition) throws {
        if let layer = job.firstNonFiniteLayer(generation: step.generation) {
            throw nonFinite(layer, epoch: step.epoch, stepInEpoch: step.stepInEpoch, globalStep: step.globalStep, loss: step.loss)
        }
    }

    /// Completes the last step's exchange (the sharded exchange may still run it) and checks its
    /// gradients (collective: every rank calls it at the same point). Whatever reads the weights
    /// or the optimizer state between steps comes after this: evaluation, checkpoints, the final
    /// weights. Throws `TrainingError` when that step's gradients were not finite.
    public func drainExchange() throws {
        job.exchange.drain()
        try checkSettledSteps()
    }

    /// Benchmark steps: `count` training steps of the production step job on the production pool,
    /// over the training set in order (cycling), at the base learning rate, without touching
    /// `progress` or evaluating. Returns the elapsed nanoseconds. After one warm-up call the
    /// steps allocate nothing (the allocation gate in Benchmarks/ checks this).
    public func timedSteps(_ count: Int) -> UInt64 {
        if preparedEpoch != 0 { prepareEpoch(0) }
        let t0 = monotonicNanoseconds()
        for _ in 0..<count {
            let step = trainingStep(start: benchCursor * config.batchSize, globalStep: 0, epoch: 0, lr: config.learningRate)
            _ = job.run(step)
            benchCursor = (benchCursor + 1) % stepsPerEpoch
        }
        return monotonicNanoseconds() - t0
    }

    /// Mean time per worker in each phase since the last `resetPhaseTimes`, in nanoseconds:
    /// compute (forward and backward, data gathering included, waits for the exchange excluded),
    /// data (gathering alone), waiting at the barrier, reduction, optimizer, and worker 0's time in
    /// the cross-process exchange (the sharded exchange: its waits for it).
    public func phaseTimes() -> (compute: Double, data: Double, wait: Double, reduce: Double, optimizer: Double, communicate: Double) {
        let t = job.timing
        // The exchange runs on worker 0 only: its time, not a mean over workers.
        return (t.mean(.compute), t.mean(.data), t.mean(.wait), t.mean(.reduce), t.mean(.optimizer),
                t.mean(.communicate) * Double(t.workers))
    }

    public func resetPhaseTimes() {
        job.timing.reset()
        job.exchange.resetTimes()
    }

    /// The sharded exchange's figures since the last `resetPhaseTimes` (drains first): bytes this
    /// rank sent per step (counted; since the trainer was built), the whole exchange (first bucket
    /// started to last weights arrived) and its exposed part (the time the workers waited for it:
    /// in the next step's forward, at the end of the step without overlap into the forward, and in
    /// drains), in nanoseconds summed over the steps. Nil without the sharded exchange.
    public func exchangeFigures() -> ExchangeFigures? { job.exchange.figures }

    /// The layers whose weight gradient the reduction computes (see `DefersGradient`); empty with several ranks.
    public var deferredGradientLayers: [Int] { job.exchange.deferredLayers }

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
        lastMark = nil
        unchecked = nil
        job.exchange.releaseGatheredOptimizerState()
    }

    /// The optimizer's state as checkpoints hold it: one buffer per state name, laid out like the
    /// parameters. Without the sharded exchange it is the state the workers update. With it each
    /// rank updates only its own pieces (a compact state); this is then a full-size copy that
    /// exists while a checkpoint is saved (`gatherOptimizerState()` fills it on every rank) or
    /// loaded (`restore` hands each rank its pieces and frees it).
    public var optimizerState: OptimizerState { job.exchange.checkpointState }

    /// Whether `optimizerState` holds the whole current state: always, except with the sharded
    /// exchange before `gatherOptimizerState()` (what `Checkpoint.save` checks).
    public var optimizerStateIsComplete: Bool { job.exchange.checkpointStateIsComplete }

    /// Collective (every rank, between steps, before a checkpoint is saved; `TrainingSession`
    /// calls it): gathers the optimizer state from the ranks that own its pieces. No-op without
    /// the sharded exchange.
    /// (Drains the exchange first: call `drainExchange()` before, to check the last step too.)
    public func gatherOptimizerState() { job.exchange.gatherOptimizerState() }

    /// After a checkpoint is saved: frees the gathered full-size optimizer state.
    public func releaseGatheredOptimizerState() { job.exchange.releaseGatheredOptimizerState() }

    /// Mean loss and accuracy of the current weights on `data`: the evaluation pass (`Evaluator`),
    /// after the last step's exchange completes. With several processes every rank calls it.
    public func evaluate(_ data: Dataset) -> (loss: Double, accuracy: Double) {
        job.exchange.drain()
        return evaluator.evaluate(data)
    }
}

/// `data` with its samples in pages first touched by the pool's workers in turn (4 KiB page p by
/// worker p mod W) when the workers run on more than one NUMA node (or with `force`), so the
/// pages spread evenly over the nodes instead of all sitting on the node of the thread that read
/// the files; every worker reads samples from all of them. The samples are copied as stored
/// (bytes stay bytes). Otherwise, and always for a memory-mapped set (its pages are the page
/// cache's, shared with other processes), `data` itself.
public func spreadOverWorkers(_ data: Dataset, pool: WorkerPool, force: Bool = false) -> Dataset {
    let store = data.store
    let total = store.count * store.sampleBytes
    guard !store.isMapped, total > 0, pool.workerCount > 1, force || workerNUMANodes(pool) > 1 else { return data }
    let copy: SampleStore
    if store.floatBuffer != nil {
        let floats = AlignedBuffer(uninitializedCount: store.count * store.sampleElements)
        store.withBase { pool.run(PageCopy(source: $0, destination: UnsafeMutableRawPointer(floats.pointer), bytes: total,
                                           workers: pool.workerCount)) }
        copy = SampleStore(floats: floats, sampleElements: store.sampleElements)
    } else {
        let bytes = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            store.withBase { pool.run(PageCopy(source: $0, destination: UnsafeMutableRawPointer(buffer.baseAddress!), bytes: total,
                                               workers: pool.workerCount)) }
            initialized = total
        }
        copy = SampleStore(bytes: bytes, elementType: store.elementType, count: store.count, sampleElements: store.sampleElements)
    }
    return data.with(store: copy)
}

/// The NUMA nodes of the CPUs the pool's workers are bound to (1 when unknown).
func workerNUMANodes(_ pool: WorkerPool) -> Int {
    guard let topology = try? Topology(), topology.numaNodeCount > 1 else { return 1 }
    var nodeOf: [Int: Int] = [:]
    for core in topology.cores { for cpu in core.osCPUs { nodeOf[cpu] = core.numa } }
    return max(1, Set(pool.placement.compactMap { nodeOf[$0.osCPU] }).count)
}

/// Copies `bytes` bytes, 4096 (one page) at a time, chunk c by worker c mod W.
private final class PageCopy: ParallelJob {
    let source: UnsafeRawPointer, destination: UnsafeMutableRawPointer
    let bytes: Int, workers: Int
    init(source: UnsafeRawPointer, destination: UnsafeMutableRawPointer, bytes: Int, workers: Int) {
        self.source = source; self.destination = destination; self.bytes = bytes; self.workers = workers
    }
    func run(worker: Int, pool: WorkerPool) {
        var start = worker * 4096
        while start < bytes {
            (destination + start).copyMemory(from: source + start, byteCount: min(4096, bytes - start))
            start += workers * 4096
        }
    }
}
