// Trained weights on a worker pool: evaluation (loss, accuracy, confusion matrix) and class
// probabilities, through training's own evaluation pass (`Evaluator`).
import Foundation
import PTData
import PTDistributed
import PTModel
import PTRuntime
import PTTensor

/// What `Classifier.evaluate` measured.
public struct Evaluation: Sendable, Equatable {
    /// Mean cross-entropy per sample and the fraction classified correctly.
    public var loss: Double
    public var accuracy: Double
    /// confusion[true class][predicted class].
    public var confusion: [[Int]]
}

/// Trained weights, ready to classify samples: the model of the config with its weights and
/// running statistics, and an `Evaluator` (no gradients, no optimizer state). The forward pass,
/// the split into shards and evaluation chunks, and the loss summation are exactly those of the
/// per-epoch test evaluation during training: `evaluate` on the test set reproduces the last
/// epoch's test loss and accuracy bit for bit.
public final class Classifier {
    public let model: Model
    /// Parameters and running statistics (flat, as the trainer lays them out).
    public let parameters: AlignedBuffer
    public let state: AlignedBuffer
    public let evaluator: Evaluator

    /// Builds the model of `config` for samples of `shape` on `pool` and loads `weights` (a
    /// safetensors file written by ptrain: parameters and running statistics).
    public init(weights: String, config: TrainConfig, shape: Shape, pool: WorkerPool) throws {
        if let input = config.input, input != shape {
            throw ConfigError("\(weights): the model expects samples of \(input), the input has \(shape)")
        }
        model = try Model(input: shape, layers: config.layers, maxBatch: config.maxShard)
        parameters = AlignedBuffer(count: model.parameterCount)
        state = AlignedBuffer(count: max(1, model.stateCount))
        model.initializeState(state)
        try Safetensors.load(model: model, into: parameters, state: state, from: weights)
        evaluator = Evaluator(model: model, config: config, pool: pool, parameters: parameters.pointer, state: state.pointer,
                              collectives: Collectives(LocalCommunicator()))
    }

    /// Per-sample logits of `data` (data.count x classes), from the evaluation pass.
    func logits(_ data: Dataset) throws -> (values: [Float], loss: Double, accuracy: Double) {
        guard data.shape == model.inputShape else {
            throw DataError("\(data.name): samples of \(data.shape), the model expects \(model.inputShape)")
        }
        let classes = model.classes
        var values = [Float](repeating: 0, count: data.count * classes)
        let result = values.withUnsafeMutableBufferPointer { evaluator.evaluate(data, logits: $0.baseAddress!) }
        return (values, result.loss, result.accuracy)
    }

    /// Loss, accuracy and the confusion matrix of the current weights on `data`.
    public func evaluate(_ data: Dataset) throws -> Evaluation {
        guard data.classes <= model.classes else {
            throw DataError("\(data.name): has \(data.classes) classes, the model \(model.classes)")
        }
        let classes = model.classes
        let out = try logits(data)
        var confusion = Array(repeating: Array(repeating: 0, count: classes), count: classes)
        for i in 0..<data.count {
            confusion[Int(data.labels[i])][Self.argmax(out.values, row: i, classes: classes)] += 1
        }
        return Evaluation(loss: out.loss, accuracy: out.accuracy, confusion: confusion)
    }

    /// Class probabilities of every sample of `data` (labels are ignored): one row of
    /// `model.classes` per sample, the softmax of the logits computed as the loss kernel does
    /// (exponentials in Float, their sum in Double). The predicted class, the first largest logit,
    /// is the one the evaluation counts.
    public func probabilities(_ data: Dataset) throws -> [(predicted: Int, probabilities: [Float])] {
        let classes = model.classes
        let values = try logits(data).values
        return (0..<data.count).map { i in
            let row = Array(values[(i * classes)..<((i + 1) * classes)])
            let best = Self.argmax(values, row: i, classes: classes)
            let top = row[best]
            let e = row.map { expf($0 - top) }
            let sum = e.reduce(0.0) { $0 + Double($1) }
            return (best, e.map { Float(Double($0) / sum) })
        }
    }

    /// Index of the first largest value of row `row`: the loss kernel's rule for "correct".
    static func argmax(_ values: [Float], row: Int, classes: Int) -> Int {
        var best = 0
        for k in 1..<max(1, classes) where values[row * classes + k] > values[row * classes + best] { best = k }
        return best
    }
}
