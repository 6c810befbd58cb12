// The one way raw sample values become model input: training, the per-epoch evaluation,
// `ptrain eval` and `ptrain predict` all go through `Preprocessing`.
import Foundation
import PTData
import PTTensor

/// How the values a reader produces become the model's input, derived from the config's `data`
/// section. Readers only decode and keep samples as stored: unsigned bytes (IDX, CIFAR-10, NPY
/// `u1`, images) are byte / 255, int16 audio sample / 32768, time series are zero-padded to the
/// longest, floats stay as they are. Then, in this order:
/// 1. with `data.mean` or `data.std`: x = (x - mean) / std (defaults 0 and 1);
/// 2. with `data.z_normalize`: each channel of each sample to zero mean and unit variance over
///    its whole (padded) length, two passes in Double; a constant channel becomes 0.
/// (The config rejects both at once: step 2 would undo step 1.)
/// All of it is one `SampleConversion` (`conversion(for:)`), which the workers apply with a
/// `SampleConverter` as they gather a shard: samples are never normalised in place.
public struct Preprocessing: Sendable, Equatable {
    public var mean: Float?
    public var std: Float?
    public var zNormalize: Bool

    public init(_ data: DataConfig) {
        mean = data.mean
        std = data.std
        zNormalize = data.zNormalize
    }

    /// The conversion from stored values of `elementType` to model inputs: the reader's decoding
    /// (`divisor`: bytes / 255, int16 / 32768 unless the source says otherwise), then the steps
    /// above. This is the only normaliser: training, evaluation, `eval`, `predict` and `pack`'s
    /// sources all get their `SampleConverter` from here.
    public func conversion(for elementType: ElementType, divisor: Float? = nil) -> SampleConversion {
        var c = SampleConversion.natural(elementType)
        if let divisor { c.divisor = divisor }
        c.mean = mean.map { [$0] } ?? []
        c.std = std.map { [$0] } ?? []
        c.zNormalize = zNormalize
        return c
    }

    /// `data` (samples as its reader stores them, with the reader's divisor) converted by these
    /// steps when gathered. Throws a one-line error when the values do not fit (e.g. std <= 0).
    public func prepare(_ data: Dataset) throws -> Dataset {
        try data.with(conversion: conversion(for: data.store.elementType, divisor: data.conversion.divisor))
    }

    /// The prepared converter for `shape` and `elementType` (what `prepare` gives a data set).
    public func converter(for elementType: ElementType, shape: Shape, divisor: Float? = nil) throws -> SampleConverter {
        try SampleConverter(conversion(for: elementType, divisor: divisor), elementType: elementType, shape: shape)
    }

    /// Applies the steps to `count` already decoded samples of `shape` in place (the converter's
    /// float path with divisor 1: the same code the workers' gather runs).
    public func apply(_ values: UnsafeMutablePointer<Float>, count: Int, shape: Shape) throws {
        try converter(for: .float32, shape: shape).convertInPlace(values, samples: count)
    }

    /// The model-input value of an empty (zero) raw value: (0 - mean) / std with `data.mean` /
    /// `data.std`; 0 with `z_normalize` (a standardised sample's mean) or without either.
    public var emptyValue: Float {
        zNormalize ? 0 : -(mean ?? 0) / (std ?? 1)
    }

    /// `augment` with the value padding takes (`fill`) set to `emptyValue`: augmentation runs on
    /// preprocessed samples, so what enters at an edge is an empty pixel after preprocessing.
    public func augmentation(_ augment: Augmentation) -> Augmentation {
        var result = augment
        result.fill = emptyValue
        return result
    }
}

/// Loads the training and test sets a config names, samples as stored, with the conversion
/// `Preprocessing` derives from the config applied when they are gathered.
public func loadData(_ config: TrainConfig) throws -> (train: Dataset, test: Dataset) {
    let sets = try loadUnprocessedData(config)
    let preprocessing = Preprocessing(config.data)
    return (try preprocessing.prepare(sets.train), try preprocessing.prepare(sets.test))
}

/// The training and test sets as the data source's reader decodes them (the reader's natural
/// conversion: bytes / 255, int16 / 32768, a packed file's divisor), before `Preprocessing`.
public func loadUnprocessedData(_ config: TrainConfig) throws -> (train: Dataset, test: Dataset) {
    switch config.data.source {
    case .xo:
        let train = XOData.make(count: config.data.trainCount, size: config.data.size, seed: config.seed)
        let test = XOData.make(count: config.data.testCount, size: config.data.size, seed: config.seed &+ 0x7E57)
        return (train, test)
    default:
        guard let path = config.data.path else {
            throw ConfigError("data.path: not set; pass --data DIR (the \(config.data.source.rawValue) data folder)")
        }
        let sets: (train: Dataset, test: Dataset)
        switch config.data.source {
        case .xo: fatalError("unreachable")
        case .idx: sets = try MNISTFolder.load(directory: path, classes: 10)
        case .cifar10: sets = try CIFAR10Folder.load(directory: path)
        case .npy:
            sets = (try NPYPair.load(images: path + "/train_images.npy", labels: path + "/train_labels.npy"),
                    try NPYPair.load(images: path + "/test_images.npy", labels: path + "/test_labels.npy"))
        case .fsdd: sets = try SpokenDigits.load(directory: path, length: config.data.length)
        case .ucr: sets = try UCRFolder.load(directory: path)
        case .packed:
            let file = try PackedFile(path: path)
            sets = (file.train, file.test)
        case .images:
            sets = try ImageFolder.load(root: path, shape: try imageInputShape(config), resize: config.data.resize,
                                        order: config.data.order)
        }
        return sets
    }
}

/// Samples to classify, read from an IDX file (unsigned bytes, N x H x W, N x C x H x W or N x L)
/// or an NPY file (N x C x H x W, N x H x W or N x L; unsigned bytes or numbers), kept as stored
/// and converted as the readers' sets are (bytes / 255, numbers as they are, then `preprocessing`)
/// when gathered. Labels are all 0.
public func loadSamples(_ path: String, preprocessing: Preprocessing) throws -> Dataset {
    let file = try SampleFile.load(path: path)
    let name = (path as NSString).lastPathComponent
    return try Dataset(name: name, shape: file.shape, classes: 1, store: file.store,
                       conversion: preprocessing.conversion(for: file.store.elementType),
                       labels: [Int32](repeating: 0, count: file.store.count))
}
