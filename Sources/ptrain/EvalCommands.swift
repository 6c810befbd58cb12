// `ptrain eval` and `ptrain predict`: use a checkpoint's weights on a data set or on new inputs.
import ArgumentParser
import Foundation
import PTData
import PTTensor
import PTrain

/// Trained weights to use: a checkpoint (a step folder, a folder of them, or a run folder with
/// checkpoints: the newest), or else a finished run folder's final weights and config.
struct TrainedModel {
    var weights: String
    var config: TrainConfig
    var label: String
}

func openTrainedModel(_ path: String) throws -> TrainedModel {
    let fm = FileManager.default
    let hasCheckpoints = fm.fileExists(atPath: path + "/" + Checkpoint.manifestFile)
        || !Checkpoint.list(path).isEmpty || !Checkpoint.list(path + "/checkpoints").isEmpty
    if !hasCheckpoints, fm.fileExists(atPath: path + "/model.safetensors"), fm.fileExists(atPath: path + "/config.yaml") {
        return TrainedModel(weights: path + "/model.safetensors", config: try TrainConfig.load(path: path + "/config.yaml"),
                            label: "run folder \(path) (final weights)")
    }
    let folder = try Checkpoint.resolve(path)
    let manifest = try Checkpoint.readManifest(folder)
    return TrainedModel(weights: folder + "/" + Checkpoint.weightsFile, config: try Checkpoint.config(of: manifest, folder: folder),
                        label: "checkpoint \(folder) (global step \(manifest.progress.globalStep))")
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Print loss, accuracy and the confusion matrix of a checkpoint on its test (or training) data.",
        discussion: """
            Example:
              ptrain eval --checkpoint runs/lenet/checkpoints --data path/to/mnist
            """)

    @Option(help: ArgumentHelp("Checkpoint folder, folder of checkpoints, or run folder (its newest checkpoint, or its final weights when it has none).", valueName: "dir"))
    var checkpoint: String
    @Option(help: ArgumentHelp("Data folder (overrides the checkpoint config's data.path).", valueName: "dir")) var data: String?
    @Option(help: "Which split to evaluate: test or train.") var split: String = "test"

    func validate() throws {
        guard split == "test" || split == "train" else { throw ValidationError("--split must be test or train, got '\(split)'") }
    }

    func run() throws {
        reportingErrors {
            var trained = try openTrainedModel(checkpoint)
            if let data { trained.config.data.path = data; if trained.config.data.source == .xo { trained.config.data.source = .idx } }
            let config = trained.config
            let sets = try loadData(config)
            let set = split == "test" ? sets.test : sets.train
            let classifier = try Classifier(weights: trained.weights, config: config, shape: set.shape)
            let result = classifier.evaluate(set)
            print("\(trained.label), \(split) set \(set.name): \(set.count) samples")
            print(String(format: "loss %.4f  accuracy %.2f%%", result.loss, result.accuracy * 100))
            print("confusion matrix (rows: true class, columns: predicted class)")
            let width = max(4, String(result.confusion.flatMap { $0 }.max() ?? 0).count + 1)
            func cell(_ s: String) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
            print(cell("") + result.confusion.indices.map { cell(String($0)) }.joined())
            for (i, row) in result.confusion.enumerated() { print(cell(String(i)) + row.map { cell(String($0)) }.joined()) }
        }
    }
}

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "predict",
        abstract: "Print class probabilities for each sample of an IDX or NPY file.",
        discussion: """
            IDX (unsigned bytes, N x H x W) and NPY files of unsigned bytes are scaled to [0, 1] and
            normalised with the config's data.mean / data.std, like the training data; NPY files of
            floats are used as they are. One line per sample: index, predicted class, probabilities.

            Example:
              ptrain predict --checkpoint runs/lenet --input t10k-images-idx3-ubyte
            """)

    @Option(help: ArgumentHelp("Checkpoint folder, folder of checkpoints, or run folder (its newest checkpoint, or its final weights when it has none).", valueName: "dir"))
    var checkpoint: String
    @Option(help: ArgumentHelp("IDX or NPY file of samples.", valueName: "file")) var input: String
    @Option(help: "Print at most this many samples (0: all).") var limit: Int = 0
    @Option(help: "text or json (one object per line: index, class, probabilities).") var format: String = "text"

    func validate() throws {
        guard format == "text" || format == "json" else { throw ValidationError("--format must be text or json") }
        guard limit >= 0 else { throw ValidationError("--limit must be 0 or more") }
    }

    func run() throws {
        reportingErrors {
            let trained = try openTrainedModel(checkpoint)
            let config = trained.config
            let (values, count, shape) = try readSamples(config)
            let classifier = try Classifier(weights: trained.weights, config: config, shape: shape)
            let n = limit == 0 ? count : min(limit, count)
            let probs = values.withUnsafeBufferPointer { classifier.probabilities($0.baseAddress!, count: n) }
            for (i, p) in probs.enumerated() {
                let best = p.indices.max { p[$0] < p[$1] }!
                if format == "json" {
                    print("{\"index\":\(i),\"class\":\(best),\"probabilities\":[\(p.map { String(format: "%.6f", $0) }.joined(separator: ","))]}")
                } else {
                    print("\(i)\t\(best)\t" + p.map { String(format: "%.4f", $0) }.joined(separator: " "))
                }
            }
        }
    }

    /// Samples as floats, their count and per-sample shape.
    func readSamples(_ config: TrainConfig) throws -> ([Float], Int, Shape) {
        let mean = config.data.mean ?? 0, std = config.data.std ?? 1
        func normalise(_ bytes: [UInt8]) -> [Float] { bytes.map { (Float($0) / 255 - mean) / std } }
        if input.hasSuffix(".npy") {
            let (dims, values) = try NPY.load(path: input)
            guard let n = dims.first, n > 0 else { throw DataError("\(input): holds no samples") }
            let rest = Array(dims.dropFirst())
            let shape: Shape
            switch rest.count {
            case 1: shape = Shape(channels: 1, height: 1, width: rest[0])
            case 2: shape = Shape(channels: 1, height: rest[0], width: rest[1])
            case 3: shape = Shape(channels: rest[0], height: rest[1], width: rest[2])
            default: throw DataError("\(input): samples of \(rest.count) dimensions are not supported (1 to 3)")
            }
            let isBytes = try npyIsBytes(input)
            return (isBytes ? values.map { ($0 / 255 - mean) / std } : values, n, shape)
        }
        let (dims, bytes) = try IDX.load(path: input)
        guard let n = dims.first, n > 0 else { throw DataError("\(input): holds no samples") }
        let shape: Shape
        switch dims.count {
        case 2: shape = Shape(channels: 1, height: 1, width: dims[1])
        case 3: shape = Shape(channels: 1, height: dims[1], width: dims[2])
        case 4: shape = Shape(channels: dims[1], height: dims[2], width: dims[3])
        default: throw DataError("\(input): an IDX file of samples needs 2 to 4 dimensions, this one has \(dims.count)")
        }
        return (normalise(bytes), n, shape)
    }

    /// Whether an NPY file stores unsigned bytes (its header's descr is '|u1').
    func npyIsBytes(_ path: String) throws -> Bool {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw DataError("\(path): cannot read") }
        defer { try? handle.close() }
        let head = handle.readData(ofLength: 128)
        return String(decoding: head, as: UTF8.self).contains("'|u1'")
    }
}
