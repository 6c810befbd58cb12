// Helpers shared by the model tests: a seeded model with one batch of inputs, and one training step's bits.
import XCTest
import PTModel
import PTTensor

/// A model of `nodes` on `input` for batches of up to `batch`, its parameters initialised from `seed`, and one batch of
/// inputs in [-1, 1) from `dataSeed`.
func seededModel(_ nodes: [LayerNode], input: Shape, batch: Int, seed: UInt64, dataSeed: UInt64) throws
    -> (model: Model, parameters: AlignedBuffer, x: [Float]) {
    let model = try Model(input: input, layers: nodes, maxBatch: batch)
    let params = AlignedBuffer(count: model.parameterCount)
    model.initialize(params, seed: seed)
    var rng = Xoshiro256(seed: dataSeed)
    return (model, params, (0..<(batch * input.count)).map { _ in rng.nextUnitFloat() * 2 - 1 })
}

/// Logits, then the parameter gradients, of one training forward and backward of `ws` with `params`
/// on inputs `x` and `labels`, as bit patterns. The gradient buffer starts full of `fill`; with `clearing`,
/// backward clears that range itself (`Workspace.backward(...clearing:)`).
func trainingStepBits(_ ws: Workspace, _ params: AlignedBuffer, x: [Float], labels: [Int32], batch: Int, fill: Float = 0,
                      clearing: Range<Int>? = nil) -> [UInt32] {
    let model = ws.model
    ws.input.update(from: x, count: x.count)
    ws.labels.update(from: labels, count: batch)
    ws.training = true
    let grads = AlignedBuffer(count: model.parameterCount)
    grads.pointer.update(repeating: fill, count: model.parameterCount)
    ws.forward(batch: batch, parameters: params.pointer)
    let logits = Array(UnsafeBufferPointer(start: ws.logits, count: batch * model.classes))
    _ = ws.loss(batch: batch, gradScale: 1 / Float(batch))
    if let clearing {
        ws.backward(batch: batch, parameters: params.pointer, gradients: grads.pointer, layers: 0..<model.layers.count,
                    clearing: clearing)
    } else {
        ws.backward(batch: batch, parameters: params.pointer, gradients: grads.pointer)
    }
    return (logits + grads.array).map(\.bitPattern)
}
