// The config schema: one table per section, every key declared once with its type (from the
// struct field it maps to), default (the struct's), allowed values and a line of documentation.
// The tables drive parsing (TrainConfig.parse), validation (TrainConfig.validate, also after
// command-line overrides), the resolved YAML (ResolvedConfig.swift) and the README's key list
// (`ptrain config-keys`; a test keeps README.md equal to it). Layer keys: LayerSchema.swift.
//
// A new key is one row: `.value("name", \.field, allowed, doc: "...")`; an enum value also
// conforms to `ConfigChoice` (SchemaSupport.swift) for its word in "unknown WORD 'x' (known: ...)".
import PTDistributed
import PTKernels
import PTModel

enum ConfigSchema {
    /// Keys at the top level, before the sections.
    static let topKeys: [ConfigKey] = [
        .value("name", \.name, doc: "Names the run (the default run folder is runs/NAME-TIMESTAMP)."),
    ]

    static let data = ConfigSection("data", doc: "where the samples come from and how they are preprocessed", keys: [
        .value("source", \.data.source, doc: "The reader (see Configs above)."),
        .value("path", \.data.path, doc: "Data folder or file; `--data` overrides it."),
        .value("size", \.data.size, .range(8...64), doc: "xo: image side in pixels."),
        .value("train", \.data.trainCount, .atLeast(1, atMost: 10_000_000), doc: "xo: training samples."),
        .value("test", \.data.testCount, .atLeast(1, atMost: 10_000_000), doc: "xo: test samples."),
        .value("mean", \.data.mean, .finite, doc: "Preprocessing: (x - mean) / std after scaling to the natural range."),
        .value("std", \.data.std, .positive, doc: "Preprocessing: see mean."),
        .value("length", \.data.length, .atLeast(1, atMost: 10_000_000), doc: "fsdd: samples per clip (zero-padded or centre-cropped)."),
        .value("z_normalize", \.data.zNormalize, doc: "Standardise each channel of each sample (not with mean / std)."),
        .value("resize", \.data.resize, written: .unlessDefault,
               doc: "images: scale the shorter side to the model input and centre-crop."),
        .value("order", \.data.order, written: .unlessDefault, doc: "images: sample order, class by class or by file name."),
    ])

    static let augment = ConfigSection("augment", doc: "random changes to training samples", written: { !$0.augment.isIdentity }, keys: [
        .value("crop", \.augment.crop, .range(0...256, unit: "pixels of padding"), doc: "Pad by this many pixels, cut a random window of the original size."),
        .value("flip", \.augment.flip, doc: "Mirror left-right with probability 1/2."),
        .value("translate", \.augment.translate, .range(0...256, unit: "pixels"), doc: "Shift by up to this many pixels on each axis."),
        .value("scale", \.augment.scale, .closed(0, 0.5), doc: "Scale by a factor in [1 - scale, 1 + scale]."),
        .value("shift", \.augment.shift, .range(0...10_000_000, unit: "samples"), doc: "1-D: move by up to this many samples."),
        .value("gain", \.augment.gain, .halfOpen(0, 1), doc: "1-D: multiply by a factor in [1 - gain, 1 + gain]."),
    ])

    static let model = ConfigSection("model", doc: "the network", missing: "model: missing (a model needs 'layers')", keys: [
        ModelKeys.input, ModelKeys.layers, ModelKeys.blocks,
    ])

    static let optimizer = ConfigSection("optimizer", doc: "the update rule", keys: [
        .value("type", \.optimizer, doc: "sgd (momentum, nesterov) or adam / adamw (beta1, beta2, eps)."),
        .value("lr", \.learningRate, .positive, doc: "Base learning rate; `--lr` overrides it."),
        .value("momentum", \.momentum, .halfOpen(0, 1), written: .when { $0.optimizer == .sgd }, doc: "sgd: momentum."),
        .value("nesterov", \.nesterov, written: .when { $0.optimizer == .sgd }, doc: "sgd: Nesterov momentum."),
        .value("weight_decay", \.weightDecay, .nonNegative, doc: "L2 penalty (adamw: decoupled)."),
        .value("beta1", \.beta1, .halfOpen(0, 1), written: .when { $0.optimizer != .sgd }, doc: "adam, adamw: first-moment decay."),
        .value("beta2", \.beta2, .halfOpen(0, 1), written: .when { $0.optimizer != .sgd }, doc: "adam, adamw: second-moment decay."),
        .value("eps", \.epsilon, .positive, written: .when { $0.optimizer != .sgd }, doc: "adam, adamw: denominator term."),
    ])

    static let schedule = ConfigSection("schedule", doc: "the learning rate over the run", keys: [
        .value("type", \.schedule, doc: "constant, step (step_epochs, gamma) or cosine (to min_lr)."),
        .value("warmup_epochs", \.warmupEpochs, .notNegative, doc: "Linear warm-up (fractions allowed; at most the epochs)."),
        .value("step_epochs", \.stepEpochs, .atLeast(1, atMost: 1_000_000), doc: "step: epochs between decays."),
        .value("gamma", \.gamma, .positive, doc: "step: factor at each decay."),
        .value("min_lr", \.minLR, .nonNegative, doc: "cosine: the last learning rate."),
    ])

    static let training = ConfigSection("training", doc: "the loop", keys: [
        .value("epochs", \.epochs, .range(1...1_000_000), doc: "Passes over the training set; `--epochs` overrides it."),
        .value("batch_size", \.batchSize, .range(1...(1 << 20)), doc: "Global minibatch; `--batch-size` overrides it."),
        .value("shards", \.shards, .atLeast(1, atMost: TrainConfig.maximumShards),
               doc: "Fixed pieces each batch is split into (the bits depend on this, not on threads)."),
        .value("seed", \.seed, .atLeast(0), doc: "Seeds initialisation, shuffling, dropout and augmentation."),
        .value("precision", \.precision, written: .unlessDefault,
               doc: "fp32, or bf16: conv and dense products on bf16 operands with fp32 sums (needs AVX512_BF16); `--precision` overrides it."),
    ])

    static let distributed = ConfigSection("distributed", doc: "several processes (MPI)", keys: [
        .value("exchange", \.exchange, doc: "reduce_scatter (overlaps backward) or allgather."),
        .value("bucket_kb", \.bucketKB, .range(0...(1 << 23)), doc: "reduce_scatter: gradient bucket in KiB (0: one bucket)."),
        .value("overlap_forward", \.overlapForward, doc: "reduce_scatter: let the weights' all-gather run on into the next forward."),
        .value("segment_kb", \.segmentKB, .range(1...(1 << 20)), doc: "reduce_scatter: largest message in KiB."),
        .value("sends_in_flight", \.sendsInFlight, .range(1...256), doc: "reduce_scatter: synchronous sends kept posted."),
    ])

    /// The sections in file order (also the order they are read and written in).
    static let sections: [ConfigSection] = [data, augment, model, optimizer, schedule, training, distributed]
}

// MARK: - The key list

/// One config key as the schema documents it (`TrainConfig.keys`).
public struct ConfigKeyInfo: Sendable, Equatable {
    /// Dotted: `optimizer.lr`.
    public let key: String
    /// integer, number, true/false, text, choice, mapping or list.
    public let type: String
    /// The default as YAML ("" when there is none).
    public let defaultValue: String
    /// The allowed values: a range (`1...64`, `>= 1`, `> 0`, `[0, 1)`, `[0, 0.5]`, `finite`) or the choices.
    public let allowed: String
    /// A choice key's values (empty for other keys).
    public let choices: [String]
    public let doc: String
}

extension TrainConfig {
    /// Every key of the config's sections, in file order (layer keys: `keyTable`).
    public static var keys: [ConfigKeyInfo] {
        func info(_ dotted: String, _ k: ConfigKey) -> ConfigKeyInfo {
            ConfigKeyInfo(key: dotted, type: k.type, defaultValue: k.defaultText == "none" ? "" : k.defaultText,
                          allowed: k.allowedText, choices: k.choices, doc: k.doc)
        }
        return ConfigSchema.topKeys.map { info($0.name, $0) }
            + ConfigSchema.sections.flatMap { s in s.keys.map { info("\(s.name).\($0.name)", $0) } }
    }

    /// Every config key as markdown tables: the sections' keys, then the layers' (README.md's key
    /// list; `ptrain summary --keys` prints it).
    public static var keyTable: String {
        func code(_ s: String) -> String { s.isEmpty ? "" : "`\(s)`" }
        func escaped(_ s: String) -> String { s.replacingOccurrences(of: "|", with: "\\|") }
        var lines = ["| key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- |"]
        for k in keys {
            let allowed = k.choices.isEmpty ? code(k.allowed) : k.choices.map(code).joined(separator: ", ")
            lines.append("| `\(k.key)` | \(k.type) | \(code(k.defaultValue)) | \(escaped(allowed)) | \(escaped(k.doc)) |")
        }
        return lines.joined(separator: "\n") + "\n\n" + LayerSchema.keyTable
    }
}
