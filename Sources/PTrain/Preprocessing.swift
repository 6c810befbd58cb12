// The one way raw sample values become model input: training, the per-epoch evaluation,
// `ptrain eval` and `ptrain predict` all go through `Preprocessing`.
import Foundation
import PTData
import PTTensor

/// How the values a reader produces become the model's input, derived from the config's `data`
/// section. Readers only decode: unsigned bytes (IDX, CIFAR-10, NPY `u1`) become byte / 255,
/// audio becomes sample / 32768 minus the clip's mean, time series are zero-padded to the longest,
/// floats stay as stored. Then, in this order:
/// 1. with `data.mean` or `data.std`: x = (x - mean) / std (defaults 0 and 1);
/// 2. with `data.z_normalize`: each channel of each sample to zero mean and unit variance over
///    its whole (padded) length, two passes in Double; a constant channel becomes 0.
/// (The config rejects both at once: step 2 would undo step 1.)
public struct Preprocessing: Sendable, Equatable {
    public var mean: Float?
    public var std: Float?
    public var zNormalize: Bool

    public init(_ data: DataConfig) {
        mean = data.mean
        std = data.std
        zNormalize = data.zNormalize
    }

    /// Applies the steps to `count` samples of `shape` in place.
    public func apply(_ values: UnsafeMutablePointer<Float>, count: Int, shape: Shape) {
        let total = count * shape.count
        if mean != nil || std != nil {
            let m = mean ?? 0, s = std ?? 1
            for i in 0..<total { values[i] = (values[i] - m) / s }
        }
        if zNormalize {
            let length = shape.height * shape.width
            for plane in 0..<(count * shape.channels) { Self.standardize(values + plane * length, count: length) }
        }
    }

    /// Applies the steps to every sample of `data`, in place.
    public func apply(to data: Dataset) {
        apply(data.images.pointer, count: data.count, shape: data.shape)
    }

    /// `x` to zero mean and unit variance (two passes in Double); all zeros when its spread is below 1e-12.
    static func standardize(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        guard n > 0 else { return }
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

/// Loads the training and test sets a config names, preprocessed for the model
/// (`loadUnprocessedData`, then `Preprocessing`).
public func loadData(_ config: TrainConfig) throws -> (train: Dataset, test: Dataset) {
    let sets = try loadUnprocessedData(config)
    let preprocessing = Preprocessing(config.data)
    preprocessing.apply(to: sets.train)
    preprocessing.apply(to: sets.test)
    return sets
}

/// The training and test sets as the data source's reader decodes them, before `Preprocessing`.
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
        switch config.data.source {
        case .xo: fatalError("unreachable")
        case .idx: return try MNISTFolder.load(directory: path, classes: 10)
        case .cifar10: return try CIFAR10Folder.load(directory: path)
        case .npy:
            return (try NPYPair.load(images: path + "/train_images.npy", labels: path + "/train_labels.npy"),
                    try NPYPair.load(images: path + "/test_images.npy", labels: path + "/test_labels.npy"))
        case .fsdd: return try SpokenDigits.load(directory: path, length: config.data.length)
        case .ucr: return try UCRFolder.load(directory: path)
        }
    }
}

/// Samples to classify, read from an IDX file (unsigned bytes, N x H x W, N x C x H x W or N x L)
/// or an NPY file (N x C x H x W, N x H x W or N x L; unsigned bytes or numbers), decoded like the
/// readers do (bytes / 255) and then preprocessed. Labels are all 0.
public func loadSamples(_ path: String, preprocessing: Preprocessing) throws -> Dataset {
    let dims: [Int]
    var values: [Float]
    if path.hasSuffix(".npy") || path.hasSuffix(".npy.gz") {
        let file = try NPY.loadTyped(path: path)
        dims = file.shape
        values = file.values
        if file.dtype == .uint8 { values = values.map { $0 / 255 } }
    } else {
        let file = try IDX.load(path: path)
        dims = file.dims
        values = file.bytes.map { Float($0) / 255 }
    }
    guard let n = dims.first, n > 0 else { throw DataError("\(path): holds no samples") }
    let rest = Array(dims.dropFirst())
    let shape: Shape
    switch rest.count {
    case 1: shape = Shape(channels: 1, height: 1, width: rest[0])
    case 2: shape = Shape(channels: 1, height: rest[0], width: rest[1])
    case 3: shape = Shape(channels: rest[0], height: rest[1], width: rest[2])
    default: throw DataError("\(path): samples of \(rest.count) dimensions are not supported (1 to 3)")
    }
    guard shape.count > 0 else { throw DataError("\(path): samples of shape \(rest) are empty") }
    let images = AlignedBuffer(values)
    preprocessing.apply(images.pointer, count: n, shape: shape)
    let name = (path as NSString).lastPathComponent
    return Dataset(name: name, shape: shape, classes: 1, images: images, labels: [Int32](repeating: 0, count: n))
}
