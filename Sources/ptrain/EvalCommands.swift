// `ptrain eval` and `ptrain predict`: use a checkpoint's weights on a data set or on new inputs.
import ArgumentParser
import Foundation
import PTKernels
import PTRuntime
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

/// The pool for `eval` and `predict`: `--threads`, or one worker per shard of the config (at most
/// one per allowed core). The result does not depend on it.
func evaluationPool(threads: Int?, config: TrainConfig) throws -> WorkerPool {
    try makeWorkerPool(threads: threads, maximum: config.shards, warn: { warn($0) })
}

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Print loss, accuracy and the confusion matrix of a checkpoint on its test (or training) data.",
        discussion: """
            The data is read and preprocessed as in training, and evaluated by the same pass as the
            per-epoch test evaluation: on the test set, the final weights give the last epoch's
            test_loss and test_accuracy exactly.

            Example:
              ptrain eval --checkpoint runs/lenet/checkpoints --data path/to/mnist
            """)

    @Option(help: ArgumentHelp("Checkpoint folder, folder of checkpoints, or run folder (its newest checkpoint, or its final weights when it has none).", valueName: "dir"))
    var checkpoint: String
    @Option(help: ArgumentHelp("Data folder (overrides the checkpoint config's data.path).", valueName: "dir")) var data: String?
    @Option(help: "Which split to evaluate: test or train.") var split: String = "test"
    @Option(help: "Worker threads (default: one per shard, at most the allowed cores).") var threads: Int?
    @Option(help: "text, or json (one object: samples, loss, accuracy, confusion).") var format: OutputFormat = .text
    @Option(help: ArgumentHelp("Precision of the convolution and dense products (default: the config's training.precision).", valueName: "fp32|bf16"))
    var precision: Precision?

    func validate() throws {
        guard split == "test" || split == "train" else { throw ValidationError("--split must be test or train, got '\(split)'") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    struct Result: Codable {
        var samples: Int
        var loss: Double
        var accuracy: Double
        var confusion: [[Int]]
    }

    func run() throws {
        reportingErrors {
            var trained = try openTrainedModel(checkpoint)
            if let data { trained.config.data.path = data; if trained.config.data.source == .xo { trained.config.data.source = .idx } }
            if let precision { trained.config.precision = precision }
            let config = trained.config
            if let reason = config.precision.unavailableReason { throw PrecisionUnavailable(reason) }
            let sets = try loadData(config)
            let set = split == "test" ? sets.test : sets.train
            let pool = try evaluationPool(threads: threads, config: config)
            let classifier = try Classifier(weights: trained.weights, config: config, shape: set.shape, pool: pool)
            let result = try classifier.evaluate(set)
            if format == .json {
                print(MetricsLine.json(Result(samples: set.count, loss: result.loss, accuracy: result.accuracy, confusion: result.confusion)))
                return
            }
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
            Samples are preprocessed as in training: unsigned bytes (IDX files, NPY files of uint8)
            are scaled to [0, 1], numbers in NPY files are taken as stored; then the config's
            data.mean / data.std and data.z_normalize apply. One line per sample: index, predicted
            class, probabilities.

            Example:
              ptrain predict --checkpoint runs/lenet --input t10k-images-idx3-ubyte
            """)

    @Option(help: ArgumentHelp("Checkpoint folder, folder of checkpoints, or run folder (its newest checkpoint, or its final weights when it has none).", valueName: "dir"))
    var checkpoint: String
    @Option(help: ArgumentHelp("IDX or NPY file of samples.", valueName: "file")) var input: String
    @Option(help: "Print at most this many samples (0: all).") var limit: Int = 0
    @Option(help: "text or json (one object per line: index, class, probabilities).") var format: OutputFormat = .text
    @Option(help: ArgumentHelp("Precision of the convolution and dense products (default: the config's training.precision).", valueName: "fp32|bf16"))
    var precision: Precision?
    @Option(help: "Worker threads (default: one per shard, at most the allowed cores).") var threads: Int?

    func validate() throws {
        guard limit >= 0 else { throw ValidationError("--limit must be 0 or more") }
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1") }
    }

    struct Line: Codable {
        var index: Int
        var `class`: Int
        var probabilities: [Float]
    }

    func run() throws {
        reportingErrors {
            var trained = try openTrainedModel(checkpoint)
            if let precision { trained.config.precision = precision }
            let config = trained.config
            if let reason = config.precision.unavailableReason { throw PrecisionUnavailable(reason) }
            let samples = try loadSamples(input, preprocessing: Preprocessing(config.data))
            let pool = try evaluationPool(threads: threads, config: config)
            let classifier = try Classifier(weights: trained.weights, config: config, shape: samples.shape, pool: pool)
            let rows = try classifier.probabilities(samples)
            let n = limit == 0 ? rows.count : min(limit, rows.count)
            var out = ""
            for (i, row) in rows.prefix(n).enumerated() {
                if format == .json {
                    out += MetricsLine.json(Line(index: i, class: row.predicted, probabilities: row.probabilities)) + "\n"
                } else {
                    out += "\(i)\t\(row.predicted)\t" + row.probabilities.map { String(format: "%.4f", $0) }.joined(separator: " ") + "\n"
                }
                if out.utf8.count > 1 << 16 { print(out, terminator: ""); out = "" }
            }
            print(out, terminator: "")
        }
    }
}
