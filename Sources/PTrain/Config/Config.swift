// The training configuration: read from YAML, overridden by flags, validated with one-line
// errors that name the file, line and key. Each key is declared once, in ConfigSchema.swift, whose
// tables drive the reading and checking here, the resolved YAML and the README's key list.
import Foundation
import PTData
import PTDistributed
import PTKernels
import PTModel
import PTTensor
import Yams

/// A configuration error: one line naming the file (with line number when known) and the key.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let message: String
    /// Line breaks inside the message (from a key or value) are escaped: the error stays one line.
    public init(_ message: String) {
        self.message = message.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    }
    public var description: String { message }
}

/// Where the training and test data come from.
public struct DataConfig: Sendable, Equatable {
    public enum Source: String, Sendable, CaseIterable {
        /// The slides' X/O toy problem, generated from the seed.
        case xo
        /// A folder of MNIST-format IDX files (raw or gzip).
        case idx
        /// A folder of CIFAR-10 binary batches (data_batch_1..5.bin, test_batch.bin).
        case cifar10
        /// A folder with train_images.npy, train_labels.npy, test_images.npy, test_labels.npy.
        case npy
        /// The Free Spoken Digit Dataset: recordings/{digit}_{speaker}_{index}.wav; recordings 0-4
        /// of every speaker and digit are the test set (upstream's split), 5-49 the training set.
        case fsdd
        /// A UCR/UEA time-series problem: a folder with NAME_TRAIN.ts and NAME_TEST.ts.
        case ucr
        /// A packed file written by `ptrain pack` (memory-mapped; docs/PACKED.md).
        case packed
        /// Image folders: root/train/<class>/*.png|jpg and root/test/<class>/* (classes sorted).
        case images
    }
    public var source: Source = .xo
    /// Data folder (idx); `--data` overrides it.
    public var path: String?
    /// X/O generator: image side, training and test counts.
    public var size: Int = 16
    public var trainCount: Int = 2000
    public var testCount: Int = 500
    /// Spoken digits: samples per clip (zero-padded or centre-cropped).
    public var length: Int = 8000
    /// Normalise each channel of each sample to zero mean and unit variance (any source; see `Preprocessing`).
    public var zNormalize: Bool = false
    /// Optional normalisation after scaling bytes to [0, 1]: (x - mean) / std.
    public var mean: Float?
    public var std: Float?
    /// Image folders: scale the shorter side to the model input and centre-crop (else every image
    /// must already have the input's size).
    public var resize: Bool = false
    /// Image folders: the order samples are stored in (`class`: class by class, ImageFolder's;
    /// `name`: by file name across the classes), which the seeded epoch shuffle permutes.
    public var order: ImageFolder.Order = .class
}

/// The resolved configuration of one training run.
public struct TrainConfig: Sendable, Equatable {
    public var name: String = "run"
    public var data = DataConfig()
    /// Random changes to training samples (never to evaluation).
    public var augment = Augmentation()
    /// Model input (channels, height, width); nil: taken from the data.
    public var input: Shape?
    /// The layer list in run order, blocks expanded (each layer with its name and inputs).
    public var layers: [LayerNode] = []
    /// sgd, adam or adamw.
    public enum OptimizerKind: String, Sendable, CaseIterable { case sgd, adam, adamw }
    public var optimizer: OptimizerKind = .sgd
    public var learningRate: Float = 0.01
    public var momentum: Float = 0.9
    public var nesterov: Bool = false
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8
    // Schedule.
    public var schedule: LRSchedule.Kind = .constant
    public var warmupEpochs: Double = 0
    public var stepEpochs: Int = 1
    public var gamma: Float = 0.1
    public var minLR: Float = 0
    // Training.
    public var epochs: Int = 1
    public var batchSize: Int = 64
    /// Fixed number of shards each minibatch is split into (independent of threads).
    public var shards: Int = 8
    /// The most shards a batch may be split into: one per core of a large multi-node job; each shard
    /// holds a gradient the size of the model.
    public static let maximumShards = 65_536
    public var seed: UInt64 = 1
    /// Precision of the convolution and dense products (`training.precision`): fp32, or bf16
    /// (operands rounded to bf16, fp32 accumulation; needs AVX512_BF16). Weights, optimizer state,
    /// batch-norm statistics, loss and reductions are fp32 at both.
    public var precision: Precision = .fp32
    // Distributed (several processes).
    /// How the ranks combine their gradients: `reduceScatter` (each rank owns a piece of every
    /// bucket, reduces and updates it, then the weights are all-gathered; overlaps backward) or
    /// `allGather` (every rank receives every rank's partial gradient after backward).
    public enum ExchangeKind: String, Sendable, CaseIterable { case reduceScatter = "reduce_scatter", allGather = "allgather" }
    public var exchange: ExchangeKind = .reduceScatter
    /// Gradient bucket size of the reduce-scatter exchange in KiB (0: one bucket, no overlap).
    public var bucketKB: Int = 1024
    /// Reduce-scatter exchange: let a step's all-gather of the weights run on into the next step's
    /// forward, each bucket's layers waiting only for that bucket (false: the step waits for all).
    public var overlapForward = true
    /// Reduce-scatter exchange: largest message in KiB (each bucket's transfers are cut into
    /// segments of this size, sent most urgent first).
    public var segmentKB: Int = ShardedExchange.defaultSegmentFloats / 256
    /// Reduce-scatter exchange: synchronous sends a rank keeps posted at a time.
    public var sendsInFlight: Int = ShardedExchange.defaultSendsInFlight

    public init() {}

    /// The optimizer the settings describe.
    public func makeOptimizer() -> Optimizer {
        switch optimizer {
        case .sgd: return .sgd(SGD(momentum: momentum, nesterov: nesterov, weightDecay: weightDecay))
        case .adam, .adamw:
            return .adam(Adam(beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay,
                              decoupledWeightDecay: optimizer == .adamw))
        }
    }

    /// The largest shard: ceil(batchSize / shards).
    public var maxShard: Int { (batchSize + shards - 1) / shards }

    /// Checks values that do not depend on the data: every key against its schema row (values
    /// set after parsing, by command-line flags, are checked here), then the checks that span keys.
    /// Throws a one-line `ConfigError`.
    public func validate(file: String) throws {
        func fail(_ key: String, _ why: String) throws { throw ConfigError("\(file): \(key): \(why)") }
        for key in ConfigSchema.topKeys { if let why = key.check(self) { try fail(key.name, why) } }
        for section in ConfigSchema.sections {
            for key in section.keys { if let why = key.check(self) { try fail("\(section.name).\(key.name)", why) } }
        }
        if warmupEpochs > Double(epochs) { try fail("schedule.warmup_epochs", "must not exceed the \(epochs) epochs, got \(warmupEpochs)") }
        if shards > batchSize { try fail("training.shards", "\(shards) shards cannot split a batch of \(batchSize)") }
        if data.zNormalize && (data.mean != nil || data.std != nil) {
            try fail(data.mean != nil ? "data.mean" : "data.std", "has no effect with data.z_normalize: true (each sample is standardised anyway); drop one of them")
        }
    }
}

// MARK: - Reading YAML

extension TrainConfig {
    /// Reads a YAML config file. Unknown keys, wrong types and impossible values are errors that
    /// name the file, line and key.
    public static func load(path: String) throws -> TrainConfig {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
            throw ConfigError("\(path): config file not found")
        }
        guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
            throw ConfigError("\(path): cannot read the config file as UTF-8 text")
        }
        return try parse(yaml: text, file: path)
    }

    /// Parses YAML text; `file` names the source in error messages.
    public static func parse(yaml text: String, file: String) throws -> TrainConfig {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: text) else { throw ConfigError("\(file): the config file is empty") }
            root = node
        } catch let error as ConfigError {
            throw error
        } catch {
            let first = "\(error)".split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
                .filter { !$0.isEmpty }.joined(separator: " ")
            throw ConfigError("\(file): not valid YAML: \(first)")
        }
        let top = try YAMLSection(file: file, path: "", node: root)
        try top.checkKnown(ConfigSchema.topKeys.map(\.name) + ConfigSchema.sections.map(\.name))
        var c = TrainConfig()
        for key in ConfigSchema.topKeys { try key.read(top, &c) }
        for section in ConfigSchema.sections {
            guard let s = try top.section(section.name) else {
                if let missing = section.missing { throw ConfigError("\(file): \(missing)") }
                continue
            }
            try section.read(s, into: &c)
        }
        try c.validate(file: file)
        return c
    }
}
