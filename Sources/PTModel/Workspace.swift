// Per-worker activations, gradients and scratch, allocated once for the largest shard.
import PTKernels
import PTTensor

/// Everything one worker needs to run forward and backward over up to `model.maxBatch` samples.
/// Allocated once; `forward`, `backward` and `loss` allocate nothing.
public final class Workspace: @unchecked Sendable {
    public let model: Model
    /// activations[0] is the input batch; activations[i + 1] is layer i's output.
    public let activations: [AlignedBuffer]
    /// activationGrads[i] is the gradient with respect to activations[i] (index 0 unused).
    public let activationGrads: [AlignedBuffer]
    public let scratch: AlignedBuffer
    let indexStorage: [UnsafeMutablePointer<Int32>]
    let indexCounts: [Int]
    public let labels: UnsafeMutablePointer<Int32>

    public init(model: Model) {
        self.model = model
        let mb = model.maxBatch
        var acts = [AlignedBuffer(count: mb * model.inputShape.count)]
        var grads = [AlignedBuffer(count: 0)]
        var scratchCount = 0
        var idx: [UnsafeMutablePointer<Int32>] = []
        var idxCounts: [Int] = []
        for layer in model.layers {
            acts.append(AlignedBuffer(count: mb * layer.outputShape.count))
            grads.append(AlignedBuffer(count: mb * layer.outputShape.count))
            scratchCount = max(scratchCount, layer.scratchCount(maxBatch: mb))
            let n = max(1, layer.indexCount(batch: mb))
            let p = UnsafeMutablePointer<Int32>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            idx.append(p)
            idxCounts.append(n)
        }
        // The first layer's input gradient is never needed; give it a real buffer anyway only if asked.
        activations = acts
        activationGrads = grads
        scratch = AlignedBuffer(count: scratchCount)
        indexStorage = idx
        indexCounts = idxCounts
        labels = UnsafeMutablePointer<Int32>.allocate(capacity: mb)
        labels.initialize(repeating: 0, count: mb)
    }

    deinit {
        for p in indexStorage { p.deallocate() }
        labels.deallocate()
    }

    /// The input batch buffer: fill `batch * inputShape.count` floats before `forward`.
    public var input: UnsafeMutablePointer<Float> { activations[0].pointer }
    /// The logits after `forward`: [batch][classes].
    public var logits: UnsafeMutablePointer<Float> { activations[model.layers.count].pointer }

    /// The model's state buffer (running statistics), or nil (inference then uses batch statistics).
    public var state: UnsafeMutablePointer<Float>?
    /// Where a training forward records the shard's statistics (`model.statsPerShard` floats), or nil.
    public var shardStats: UnsafeMutablePointer<Float>?
    /// Training (dropout active) or inference. Set by the step before `forward`.
    public var training = false
    /// Seed of this call's random noise (dropout): a function of (seed, global step, shard), so the
    /// noise does not depend on which worker runs the shard.
    public var noiseSeed: UInt64 = 0

    func call(_ i: Int, batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>) -> LayerCall {
        var c = LayerCall(batch: batch, input: activations[i].pointer, output: activations[i + 1].pointer,
                          parameters: parameters, gradients: gradients, outputGrad: activationGrads[i + 1].pointer,
                          inputGrad: i == 0 ? nil : activationGrads[i].pointer, scratch: scratch.pointer, indices: indexStorage[i])
        c.training = training
        c.noiseSeed = noiseSeed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
        c.state = state
        c.shardStats = shardStats.map { $0 + model.statsOffsets[i] }
        return c
    }

    /// Runs every layer forward over `batch` samples already in `input`.
    public func forward(batch: Int, parameters: UnsafeMutablePointer<Float>) {
        precondition(batch <= model.maxBatch)
        for (i, layer) in model.layers.enumerated() {
            layer.forward(call(i, batch: batch, parameters: parameters, gradients: parameters))
        }
    }

    /// Softmax cross-entropy of the logits against `labels` (the first `batch` entries); writes the
    /// logits gradient scaled by `gradScale`. Returns the summed loss and the number correct.
    public func loss(batch: Int, gradScale: Float, computeGradient: Bool = true) -> (loss: Double, correct: Int) {
        softmaxCrossEntropy(rows: batch, classes: model.classes, logits: logits, labels: labels, gradScale: gradScale,
                            logitsGrad: computeGradient ? activationGrads[model.layers.count].pointer : nil)
    }

    /// Backward through every layer, adding parameter gradients into `gradients`.
    public func backward(batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>) {
        for i in stride(from: model.layers.count - 1, through: 0, by: -1) {
            model.layers[i].backward(call(i, batch: batch, parameters: parameters, gradients: gradients))
        }
    }

    /// Backward through the layers `layers` only, last first (the logits gradient or the layer
    /// above must already be in place): lets a caller act between groups of layers.
    public func backward(batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                         layers: Range<Int>) {
        for i in layers.reversed() {
            model.layers[i].backward(call(i, batch: batch, parameters: parameters, gradients: gradients))
        }
    }
}
