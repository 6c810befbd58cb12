// The training configuration: read from YAML, overridden by flags, validated with one-line
// errors that name the file, line and key.
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

    /// Checks values that do not depend on the data. Throws a one-line `ConfigError`.
    public func validate(file: String) throws {
        func fail(_ key: String, _ why: String) throws { throw ConfigError("\(file): \(key): \(why)") }
        if !learningRate.isFinite || learningRate <= 0 { try fail("optimizer.lr", "must be a finite number > 0, got \(learningRate)") }
        if !momentum.isFinite || momentum < 0 || momentum >= 1 { try fail("optimizer.momentum", "must be in [0, 1), got \(momentum)") }
        if !(beta1 >= 0 && beta1 < 1) { try fail("optimizer.beta1", "must be in [0, 1), got \(beta1)") }
        if !(beta2 >= 0 && beta2 < 1) { try fail("optimizer.beta2", "must be in [0, 1), got \(beta2)") }
        if !(epsilon.isFinite && epsilon > 0) { try fail("optimizer.eps", "must be a finite number > 0, got \(epsilon)") }
        if !weightDecay.isFinite || weightDecay < 0 { try fail("optimizer.weight_decay", "must be a finite number >= 0, got \(weightDecay)") }
        if epochs < 1 || epochs > 1_000_000 { try fail("training.epochs", "must be in 1...1000000, got \(epochs)") }
        if batchSize < 1 || batchSize > 1 << 20 { try fail("training.batch_size", "must be in 1...\(1 << 20), got \(batchSize)") }
        if warmupEpochs > Double(epochs) { try fail("schedule.warmup_epochs", "must not exceed the \(epochs) epochs, got \(warmupEpochs)") }
        if stepEpochs > 1_000_000 { try fail("schedule.step_epochs", "must be at most 1000000, got \(stepEpochs)") }
        if data.trainCount > 10_000_000 { try fail("data.train", "must be at most 10000000, got \(data.trainCount)") }
        if data.testCount > 10_000_000 { try fail("data.test", "must be at most 10000000, got \(data.testCount)") }
        if data.length > 10_000_000 { try fail("data.length", "must be at most 10000000, got \(data.length)") }
        if let mean = data.mean, !mean.isFinite { try fail("data.mean", "must be a finite number, got \(mean)") }
        if shards < 1 { try fail("training.shards", "must be at least 1, got \(shards)") }
        if shards > batchSize { try fail("training.shards", "\(shards) shards cannot split a batch of \(batchSize)") }
        if shards > Self.maximumShards { try fail("training.shards", "must be at most \(Self.maximumShards), got \(shards)") }
        if !warmupEpochs.isFinite || warmupEpochs < 0 { try fail("schedule.warmup_epochs", "must be >= 0, got \(warmupEpochs)") }
        if stepEpochs < 1 { try fail("schedule.step_epochs", "must be at least 1, got \(stepEpochs)") }
        if !gamma.isFinite || gamma <= 0 { try fail("schedule.gamma", "must be a finite number > 0, got \(gamma)") }
        if !minLR.isFinite || minLR < 0 { try fail("schedule.min_lr", "must be a finite number >= 0, got \(minLR)") }
        if data.size < 8 || data.size > 64 { try fail("data.size", "must be in 8...64, got \(data.size)") }
        if data.length < 1 { try fail("data.length", "must be at least 1, got \(data.length)") }
        if data.trainCount < 1 { try fail("data.train", "must be at least 1, got \(data.trainCount)") }
        if data.testCount < 1 { try fail("data.test", "must be at least 1, got \(data.testCount)") }
        if let std = data.std, !(std.isFinite && std > 0) { try fail("data.std", "must be a finite number > 0, got \(std)") }
        if layers.isEmpty { try fail("model.layers", "the model needs at least one layer") }
        if bucketKB < 0 || bucketKB > 1 << 23 { try fail("distributed.bucket_kb", "must be in 0...\(1 << 23), got \(bucketKB)") }
        if segmentKB < 1 || segmentKB > 1 << 20 { try fail("distributed.segment_kb", "must be in 1...\(1 << 20), got \(segmentKB)") }
        if sendsInFlight < 1 || sendsInFlight > 256 { try fail("distributed.sends_in_flight", "must be in 1...256, got \(sendsInFlight)") }
        if data.zNormalize && (data.mean != nil || data.std != nil) {
            try fail(data.mean != nil ? "data.mean" : "data.std", "has no effect with data.z_normalize: true (each sample is standardised anyway); drop one of them")
        }
    }
}

// MARK: - Reading YAML

/// Walks a YAML mapping, remembering which keys were read so that the rest can be reported as unknown.
struct YAMLSection {
    let file: String
    let path: String
    let pairs: [(key: String, value: Node)]

    init(file: String, path: String, node: Node) throws {
        self.file = file
        self.path = path
        guard case let .mapping(mapping) = node else {
            throw ConfigError("\(Self.location(file, node)): \(path.isEmpty ? "the file" : path): expected a mapping of keys")
        }
        var pairs: [(String, Node)] = []
        for (k, v) in mapping {
            guard let key = k.string else { throw ConfigError("\(Self.location(file, k)): \(path): keys must be strings") }
            if pairs.contains(where: { $0.0 == key }) { throw ConfigError("\(Self.location(file, k)): \(path.isEmpty ? key : path + "." + key): duplicate key") }
            pairs.append((key, v))
        }
        self.pairs = pairs
    }

    static func location(_ file: String, _ node: Node) -> String {
        if let line = node.mark?.line { return "\(file):\(line)" }
        return file
    }

    func dotted(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func node(_ key: String) -> Node? { pairs.first { $0.key == key }?.value }

    func checkKnown(_ known: [String]) throws {
        for (key, value) in pairs where !known.contains(key) {
            throw ConfigError("\(Self.location(file, value)): unknown key '\(dotted(key))' (known here: \(known.joined(separator: ", ")))")
        }
    }

    func fail(_ key: String, _ why: String) -> ConfigError {
        let where_ = node(key).map { Self.location(file, $0) } ?? file
        return ConfigError("\(where_): \(dotted(key)): \(why)")
    }

    func scalar(_ key: String) throws -> String? {
        guard let n = node(key) else { return nil }
        guard case let .scalar(s) = n else { throw fail(key, "expected a single value") }
        return s.string
    }

    func int(_ key: String) throws -> Int? {
        guard let s = try scalar(key) else { return nil }
        guard let v = Int(s) else { throw fail(key, "expected an integer, got '\(s)'") }
        return v
    }

    func double(_ key: String) throws -> Double? {
        guard let s = try scalar(key) else { return nil }
        let lowered = s.lowercased()
        if [".nan", "nan", ".inf", "-.inf", "+.inf", "inf", "-inf"].contains(lowered) {
            throw fail(key, "must be a finite number, got '\(s)'")
        }
        guard let v = Double(s), v.isFinite else { throw fail(key, "expected a number, got '\(s)'") }
        return v
    }

    func float(_ key: String) throws -> Float? {
        guard let d = try double(key) else { return nil }
        guard Float(d).isFinite else { throw fail(key, "must be a finite number, got \(d) (too large)") }
        return Float(d)
    }

    func bool(_ key: String) throws -> Bool? {
        guard let s = try scalar(key) else { return nil }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(key, "expected true or false, got '\(s)'")
        }
    }

    func string(_ key: String) throws -> String? { try scalar(key) }

    func section(_ key: String) throws -> YAMLSection? {
        guard let n = node(key) else { return nil }
        return try YAMLSection(file: file, path: dotted(key), node: n)
    }
}

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
        try top.checkKnown(["name", "data", "augment", "model", "optimizer", "schedule", "training", "distributed"])
        var c = TrainConfig()
        if let name = try top.string("name") { c.name = name }

        if let d = try top.section("data") {
            try d.checkKnown(["source", "path", "size", "train", "test", "mean", "std", "length", "z_normalize", "resize", "order"])
            if let s = try d.string("source") {
                guard let src = DataConfig.Source(rawValue: s == "mnist" ? "idx" : s) else {
                    throw d.fail("source", "unknown data source '\(s)' (known: xo, idx (or mnist), cifar10, npy, fsdd, ucr, packed, images)")
                }
                c.data.source = src
            }
            c.data.path = try d.string("path") ?? c.data.path
            c.data.size = try d.int("size") ?? c.data.size
            c.data.trainCount = try d.int("train") ?? c.data.trainCount
            c.data.testCount = try d.int("test") ?? c.data.testCount
            c.data.mean = try d.float("mean") ?? c.data.mean
            c.data.std = try d.float("std") ?? c.data.std
            c.data.length = try d.int("length") ?? c.data.length
            c.data.zNormalize = try d.bool("z_normalize") ?? c.data.zNormalize
            c.data.resize = try d.bool("resize") ?? c.data.resize
            if let o = try d.string("order") {
                guard let order = ImageFolder.Order(rawValue: o) else {
                    throw d.fail("order", "unknown image order '\(o)' (known: class, name)")
                }
                c.data.order = order
            }
        }

        if let a = try top.section("augment") {
            try a.checkKnown(["crop", "flip", "translate", "scale", "shift", "gain"])
            c.augment.crop = try a.int("crop") ?? 0
            c.augment.flip = try a.bool("flip") ?? false
            c.augment.translate = try a.int("translate") ?? 0
            c.augment.scale = try a.float("scale") ?? 0
            c.augment.shift = try a.int("shift") ?? 0
            c.augment.gain = try a.float("gain") ?? 0
            if !(0...256).contains(c.augment.crop) { throw a.fail("crop", "must be in 0...256 (pixels of padding), got \(c.augment.crop)") }
            if !(0...256).contains(c.augment.translate) { throw a.fail("translate", "must be in 0...256 (pixels), got \(c.augment.translate)") }
            if !(c.augment.scale >= 0 && c.augment.scale <= 0.5) { throw a.fail("scale", "must be in [0, 0.5], got \(c.augment.scale)") }
            if !(0...10_000_000).contains(c.augment.shift) { throw a.fail("shift", "must be in 0...10000000 (samples), got \(c.augment.shift)") }
            if !(c.augment.gain >= 0 && c.augment.gain < 1) { throw a.fail("gain", "must be in [0, 1), got \(c.augment.gain)") }
        }

        guard let m = try top.section("model") else { throw ConfigError("\(file): model: missing (a model needs 'layers')") }
        try m.checkKnown(["input", "layers", "blocks"])
        if let inputNode = m.node("input") {
            let i = try YAMLSection(file: file, path: "model.input", node: inputNode)
            try i.checkKnown(["channels", "height", "width", "length"])
            let channels = try i.int("channels") ?? 1
            let length = try i.int("length")
            let height = try i.int("height") ?? (length != nil ? 1 : nil)
            let width = try i.int("width") ?? length
            guard let h = height, let w = width else { throw m.fail("input", "give height and width (or length for 1-D data)") }
            guard channels > 0, h > 0, w > 0, channels <= 65_536, h <= 1 << 20, w <= 1 << 20, channels * h * w <= 1 << 28 else {
                throw m.fail("input", "sizes must be positive and at most 2^28 values per sample, got \(channels)x\(h)x\(w)")
            }
            c.input = Shape(channels: channels, height: h, width: w)
        }
        var graph = GraphParser(file: file, model: m)
        c.layers = try graph.expand()

        if let o = try top.section("optimizer") {
            try o.checkKnown(["type", "lr", "momentum", "nesterov", "weight_decay", "beta1", "beta2", "eps"])
            if let t = try o.string("type") {
                guard let kind = OptimizerKind(rawValue: t) else { throw o.fail("type", "unknown optimizer '\(t)' (known: sgd, adam, adamw)") }
                c.optimizer = kind
            }
            c.beta1 = try o.float("beta1") ?? c.beta1
            c.beta2 = try o.float("beta2") ?? c.beta2
            c.epsilon = try o.float("eps") ?? c.epsilon
            c.learningRate = try o.float("lr") ?? c.learningRate
            c.momentum = try o.float("momentum") ?? c.momentum
            c.nesterov = try o.bool("nesterov") ?? c.nesterov
            c.weightDecay = try o.float("weight_decay") ?? c.weightDecay
        }
        if let s = try top.section("schedule") {
            try s.checkKnown(["type", "warmup_epochs", "step_epochs", "gamma", "min_lr"])
            if let t = try s.string("type") {
                guard let kind = LRSchedule.Kind(rawValue: t) else {
                    throw s.fail("type", "unknown schedule '\(t)' (known: \(LRSchedule.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                c.schedule = kind
            }
            c.warmupEpochs = try s.double("warmup_epochs") ?? c.warmupEpochs
            c.stepEpochs = try s.int("step_epochs") ?? c.stepEpochs
            c.gamma = try s.float("gamma") ?? c.gamma
            c.minLR = try s.float("min_lr") ?? c.minLR
        }
        if let t = try top.section("training") {
            try t.checkKnown(["epochs", "batch_size", "shards", "seed", "precision"])
            if let p = try t.string("precision") {
                guard let precision = Precision(rawValue: p) else {
                    throw t.fail("precision", "unknown precision '\(p)' (known: \(Precision.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                c.precision = precision
            }
            c.epochs = try t.int("epochs") ?? c.epochs
            c.batchSize = try t.int("batch_size") ?? c.batchSize
            c.shards = try t.int("shards") ?? c.shards
            if let seed = try t.int("seed") {
                guard seed >= 0 else { throw t.fail("seed", "must be >= 0, got \(seed)") }
                c.seed = UInt64(seed)
            }
        }
        if let d = try top.section("distributed") {
            try d.checkKnown(["exchange", "bucket_kb", "overlap_forward", "segment_kb", "sends_in_flight"])
            if let e = try d.string("exchange") {
                guard let kind = ExchangeKind(rawValue: e) else {
                    throw d.fail("exchange", "unknown exchange '\(e)' (known: \(ExchangeKind.allCases.map(\.rawValue).joined(separator: ", ")))")
                }
                c.exchange = kind
            }
            c.bucketKB = try d.int("bucket_kb") ?? c.bucketKB
            c.overlapForward = try d.bool("overlap_forward") ?? c.overlapForward
            c.segmentKB = try d.int("segment_kb") ?? c.segmentKB
            c.sendsInFlight = try d.int("sends_in_flight") ?? c.sendsInFlight
        }
        try c.validate(file: file)
        return c
    }

    /// One layer entry (a mapping with 'type', or a bare word for a layer without settings).
    /// `extraKeys` are keys the caller reads itself (a block layer's 'if').
    static func parseLayer(_ node: Node, path: String, file: String, extraKeys: [String] = []) throws -> LayerNode {
        // A bare string ("relu", "flatten") is a layer without settings.
        if case let .scalar(s) = node {
            let location = YAMLSection.location(file, node)
            switch s.string {
            case "relu": return LayerNode(.relu, location: location)
            case "flatten": return LayerNode(.flatten, location: location)
            case "batchnorm", "bn": return LayerNode(.batchNorm(momentum: 0.1, epsilon: 1e-5), location: location)
            case "global_avgpool", "gap": return LayerNode(.globalAvgPool, location: location)
            default:
                throw ConfigError("\(YAMLSection.location(file, node)): \(path): '\(s.string)' needs settings (write it as a mapping with 'type')")
            }
        }
        let l = try YAMLSection(file: file, path: path, node: node)
        guard let type = try l.string("type") else { throw ConfigError("\(YAMLSection.location(file, node)): \(path): missing 'type'") }
        var result = LayerNode(try parseLayerSpec(l, type: type, extraKeys: ["name", "from"] + extraKeys),
                               location: YAMLSection.location(file, node))
        if let name = try l.string("name") {
            guard isValidLayerName(name) else {
                throw l.fail("name", "'\(name)' is not a layer name (letters, digits, '_', '.', '-'; starting with a letter or '_'; not 'input')")
            }
            result.name = name
        }
        result.from = try parseFrom(l)
        if result.spec.joinsInputs && result.from == nil {
            throw ConfigError("\(YAMLSection.location(file, node)): \(path): \(type) needs 'from' with at least two inputs (names or relative indices such as -3)")
        }
        return result
    }

    /// 'from': one reference or a list; a negative integer counts layers back (-1: the previous
    /// one), 'input' is the model input (inside a block: the block's input), anything else a name.
    static func parseFrom(_ l: YAMLSection) throws -> [LayerRef]? {
        guard let node = l.node("from") else { return nil }
        let items: [Node]
        switch node {
        case .scalar: items = [node]
        case let .sequence(seq): items = Array(seq)
        default: throw l.fail("from", "expected a layer name, a negative index such as -3, or a list of them")
        }
        if items.isEmpty { throw l.fail("from", "the list is empty") }
        return try items.map { item in
            guard case let .scalar(s) = item else { throw l.fail("from", "expected a layer name or a negative index, not a nested list") }
            let text = s.string
            if let k = Int(text) {
                guard k < 0 else {
                    throw l.fail("from", k == 0 ? "0 would be the layer itself (a cycle); -1 is the previous layer"
                                                : "\(k) is a forward reference; inputs must come from earlier layers (negative indices)")
                }
                return .relative(k)
            }
            if text == "input" { return .input }
            guard isValidLayerName(text) else { throw l.fail("from", "'\(text)' is neither a layer name nor a negative index") }
            return .name(text)
        }
    }

    static func parseLayerSpec(_ l: YAMLSection, type: String, extraKeys: [String]) throws -> LayerSpec {
        func initializer() throws -> Initializer {
            guard let s = try l.string("init") else { return .he }
            guard let i = Initializer(rawValue: s) else { throw l.fail("init", "unknown initialiser '\(s)' (known: he, glorot)") }
            return i
        }
        switch type {
        case "conv", "conv2d", "conv1d":
            try l.checkKnown(["type", "features", "size", "stride", "padding", "init"] + extraKeys)
            guard let features = try l.int("features") else { throw l.fail("features", "missing: how many features (filters)") }
            guard let size = try l.int("size") else { throw l.fail("size", "missing: the feature (kernel) size") }
            let stride = try l.int("stride") ?? 1
            let padding = try l.int("padding") ?? 0
            if features < 1 || features > 65_536 { throw l.fail("features", "must be in 1...65536, got \(features)") }
            if size < 1 || size > 4096 { throw l.fail("size", "must be in 1...4096, got \(size)") }
            if stride > 4096 { throw l.fail("stride", "must be at most 4096, got \(stride)") }
            if padding > 4096 { throw l.fail("padding", "must be at most 4096, got \(padding)") }
            if stride < 1 { throw l.fail("stride", "must be at least 1, got \(stride)") }
            if padding < 0 { throw l.fail("padding", "must be >= 0, got \(padding)") }
            return .conv(features: features, kernelHeight: type == "conv1d" ? 1 : size, kernelWidth: size, stride: stride,
                         padding: padding, initializer: try initializer())
        case "maxpool", "pool", "maxpool1d", "avgpool", "avgpool1d":
            try l.checkKnown(["type", "window", "stride", "edge"] + extraKeys)
            let window = try l.int("window") ?? 2
            let stride = try l.int("stride") ?? window
            if window < 1 || window > 4096 { throw l.fail("window", "must be in 1...4096, got \(window)") }
            if stride < 1 { throw l.fail("stride", "must be at least 1, got \(stride)") }
            let edge = try l.string("edge") ?? "keep"
            guard edge == "keep" || edge == "drop" else { throw l.fail("edge", "must be keep or drop, got '\(edge)'") }
            let height = type.hasSuffix("1d") ? 1 : window
            return type.hasPrefix("avg")
                ? .avgPool(windowHeight: height, windowWidth: window, stride: stride, keepPartial: edge == "keep")
                : .maxPool(windowHeight: height, windowWidth: window, stride: stride, keepPartial: edge == "keep")
        case "global_avgpool", "gap":
            try l.checkKnown(["type"] + extraKeys)
            return .globalAvgPool
        case "batchnorm", "bn":
            try l.checkKnown(["type", "momentum", "eps"] + extraKeys)
            let momentum = try l.float("momentum") ?? 0.1
            let eps = try l.float("eps") ?? 1e-5
            if !(momentum >= 0 && momentum <= 1) { throw l.fail("momentum", "must be in [0, 1], got \(momentum)") }
            if !(eps > 0) { throw l.fail("eps", "must be a number > 0, got \(eps)") }
            return .batchNorm(momentum: momentum, epsilon: eps)
        case "dropout":
            try l.checkKnown(["type", "rate"] + extraKeys)
            let rate = try l.float("rate") ?? 0.5
            if !(rate >= 0 && rate < 1) { throw l.fail("rate", "must be in [0, 1), got \(rate)") }
            return .dropout(rate: rate)
        case "relu":
            try l.checkKnown(["type"] + extraKeys)
            return .relu
        case "add":
            try l.checkKnown(["type"] + extraKeys)
            return .add
        case "concat":
            try l.checkKnown(["type"] + extraKeys)
            return .concat
        case "flatten":
            try l.checkKnown(["type"] + extraKeys)
            return .flatten
        case "dense", "fc", "linear":
            try l.checkKnown(["type", "neurons", "init"] + extraKeys)
            guard let neurons = try l.int("neurons") else { throw l.fail("neurons", "missing: how many neurons") }
            if neurons < 1 || neurons > 1 << 20 { throw l.fail("neurons", "must be in 1...\(1 << 20), got \(neurons)") }
            return .dense(neurons: neurons, initializer: try initializer())
        default:
            throw l.fail("type", "unknown layer type '\(type)' (known: conv, conv1d, maxpool, maxpool1d, avgpool, avgpool1d, global_avgpool, batchnorm, dropout, relu, flatten, dense, add, concat)")
        }
    }
}
