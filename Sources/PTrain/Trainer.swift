// The trainer: loads data, builds the model, runs epochs of data-parallel steps on a worker pool,
// evaluates, and reports one metrics record per epoch.
import Foundation
import PTData
import PTModel
import PTRuntime
import PTTensor

/// Loads the training and test sets a config names. `dataOverride` (the `--data` flag) replaces
/// `data.path`.
public func loadData(_ config: TrainConfig) throws -> (train: Dataset, test: Dataset) {
    switch config.data.source {
    case .xo:
        let train = XOData.make(count: config.data.trainCount, size: config.data.size, seed: config.seed)
        let test = XOData.make(count: config.data.testCount, size: config.data.size, seed: config.seed &+ 0x7E57)
        return (train, test)
    case .idx:
        guard let path = config.data.path else {
            throw ConfigError("data.path: not set; pass --data DIR (a folder of MNIST-format IDX files)")
        }
        return try MNISTFolder.load(directory: path, classes: 10, mean: config.data.mean, std: config.data.std)
    }
}

/// What one epoch produced. Losses are means per sample; accuracies are fractions.
public struct EpochRecord: Sendable, Equatable {
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
    let job: StepJob
    let order: UnsafeMutablePointer<Int32>
    let evalOrder: UnsafeMutablePointer<Int32>
    public private(set) var globalStep = 0
    public let schedule: LRSchedule

    /// Builds the model from the config and the data's sample shape; throws `ModelError` or
    /// `ConfigError` with one line naming the layer or key.
    public init(config: TrainConfig, train: Dataset, test: Dataset, pool: WorkerPool) throws {
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
        order = .allocate(capacity: max(1, train.count))
        order.initialize(repeating: 0, count: max(1, train.count))
        evalOrder = .allocate(capacity: max(1, max(train.count, test.count)))
        for i in 0..<max(train.count, test.count) { evalOrder[i] = Int32(i) }
        job = StepJob(model: model, shards: config.shards, workers: pool.workerCount, parameters: parameters,
                      optimizer: SGD(momentum: config.momentum, nesterov: config.nesterov, weightDecay: config.weightDecay),
                      dataset: train, indices: order)
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

    /// Trains one epoch (0-based `epoch`); returns mean loss and accuracy over its samples.
    /// `afterStep` is called after every step with (step in epoch, mean loss of that step).
    public func trainEpoch(_ epoch: Int, afterStep: ((Int, Double) -> Void)? = nil) throws -> (loss: Double, accuracy: Double) {
        let permutation = epochPermutation(count: train.count, seed: config.seed, epoch: epoch)
        permutation.withUnsafeBufferPointer { order.update(from: $0.baseAddress!, count: train.count) }
        job.mode = .train
        job.dataset = train
        var lossSum = 0.0
        var correct = 0
        for step in 0..<stepsPerEpoch {
            let start = step * config.batchSize
            job.indices = UnsafePointer(order + start)
            job.batch = min(config.batchSize, train.count - start)
            job.lr = schedule.lr(at: globalStep)
            pool.run(job)
            let totals = job.totals()
            guard totals.loss.isFinite else {
                throw TrainingError(message: "training stopped: the loss became \(totals.loss) at epoch \(epoch + 1), step \(step + 1) (global step \(globalStep + 1)); try a smaller learning rate")
            }
            lossSum += totals.loss
            correct += totals.correct
            globalStep += 1
            afterStep?(step, totals.loss / Double(job.batch))
        }
        return (lossSum / Double(train.count), Double(correct) / Double(train.count))
    }

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

    /// Trains all epochs, calling `report` after each with its record.
    public func run(report: (EpochRecord) throws -> Void, afterStep: ((Int, Int, Double) -> Void)? = nil) throws -> [EpochRecord] {
        var records: [EpochRecord] = []
        for epoch in 0..<config.epochs {
            let t0 = Date()
            let trained = try trainEpoch(epoch) { step, loss in afterStep?(epoch, step, loss) }
            let trainSeconds = Date().timeIntervalSince(t0)
            let evaluated = evaluate(test)
            let seconds = Date().timeIntervalSince(t0)
            let record = EpochRecord(epoch: epoch + 1, trainLoss: trained.loss, trainAccuracy: trained.accuracy,
                                     testLoss: evaluated.loss, testAccuracy: evaluated.accuracy,
                                     imagesPerSecond: Double(train.count) / max(trainSeconds, 1e-9), seconds: seconds)
            records.append(record)
            try report(record)
        }
        return records
    }
}
