// Forward-only use of trained weights: logits, class probabilities, loss, accuracy and the
// confusion matrix. Runs on the calling thread, a chunk of samples at a time.
import Foundation
import PTData
import PTModel
import PTTensor

/// A model with loaded weights, ready to classify samples.
public struct Classifier {
    public let model: Model
    public let parameters: AlignedBuffer

    /// Builds the model of `config` for samples of `shape` and loads `weights` (a safetensors file
    /// written by ptrain: parameters and running statistics).
    public init(weights: String, config: TrainConfig, shape: Shape) throws {
        if let input = config.input, input != shape {
            throw ConfigError("\(weights): the model expects samples of \(input), the input has \(shape)")
        }
        model = try Model(input: shape, layers: config.layers, maxBatch: max(1, config.maxShard))
        parameters = AlignedBuffer(count: model.parameterCount)
        state = AlignedBuffer(count: max(1, model.stateCount))
        model.initializeState(state)
        try Safetensors.load(model: model, into: parameters, state: state, from: weights)
    }

    /// Running statistics (batch normalisation).
    public let state: AlignedBuffer

    /// Class probabilities (softmax of the logits), one row of `model.classes` per sample.
    /// `samples` holds count x shape.count floats.
    public func probabilities(_ samples: UnsafePointer<Float>, count: Int) -> [[Double]] {
        let ws = Workspace(model: model)
        ws.state = state.pointer
        let size = model.inputShape.count
        var rows: [[Double]] = []
        rows.reserveCapacity(count)
        var start = 0
        while start < count {
            let n = min(model.maxBatch, count - start)
            ws.input.update(from: samples + start * size, count: n * size)
            ws.forward(batch: n, parameters: parameters.pointer)
            for i in 0..<n {
                let logits = (0..<model.classes).map { Double(ws.logits[i * model.classes + $0]) }
                let m = logits.max()!
                let e = logits.map { Foundation.exp($0 - m) }
                let sum = e.reduce(0, +)
                rows.append(e.map { $0 / sum })
            }
            start += n
        }
        return rows
    }

    /// Mean cross-entropy, accuracy and the confusion matrix (rows: true class, columns: predicted).
    public func evaluate(_ data: Dataset) -> (loss: Double, accuracy: Double, confusion: [[Int]]) {
        let samples = data.converted()
        let probs = withExtendedLifetime(samples) { probabilities(samples.pointer, count: data.count) }
        var confusion = Array(repeating: Array(repeating: 0, count: model.classes), count: model.classes)
        var loss = 0.0
        var correct = 0
        for (i, p) in probs.enumerated() {
            let label = Int(data.labels[i])
            let predicted = p.indices.max { p[$0] < p[$1] }!
            confusion[label][predicted] += 1
            if predicted == label { correct += 1 }
            loss -= Foundation.log(max(p[label], 1e-300))
        }
        return (loss / Double(max(1, data.count)), Double(correct) / Double(max(1, data.count)), confusion)
    }
}
