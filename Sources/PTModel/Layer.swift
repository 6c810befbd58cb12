// The layer protocol and the per-call argument bundle. Layers are value types; each forward or
// backward call is one dynamic dispatch per layer per shard, never inside a loop.
import PTKernels
import PTTensor

/// One named parameter tensor of a layer (e.g. "conv1.weight", shape [6, 1, 5, 5]).
/// `offset` is relative to the start of the model's flat parameter buffer.
public struct ParameterTensor: Sendable, Equatable {
    public var name: String
    public var shape: [Int]
    public var offset: Int
    public var count: Int { shape.reduce(1, *) }
}

/// Pointers for one forward or backward call over `batch` samples.
///
/// Shapes: input [batch][inputShape], output [batch][outputShape]; parameters / gradients point at
/// the model's flat buffers (use `ParameterTensor.offset`). `inputGrad` is nil when the input is the
/// model input (nothing upstream needs it). Backward *adds* into `gradients` and *overwrites*
/// `inputGrad`. For layers with several inputs, `input` / `inputGrad` are the first of
/// `inputList` / `inputGradList`.
public struct LayerCall {
    public var batch: Int
    public var input: UnsafeMutablePointer<Float>
    public var output: UnsafeMutablePointer<Float>
    public var parameters: UnsafeMutablePointer<Float>
    public var gradients: UnsafeMutablePointer<Float>
    public var outputGrad: UnsafeMutablePointer<Float>
    public var inputGrad: UnsafeMutablePointer<Float>?
    /// Per-worker scratch of at least `scratchCount` floats.
    public var scratch: UnsafeMutablePointer<Float>
    /// Per-layer saved indices (max-pool argmax, dropout mask) of at least `indexCount(batch:)` entries.
    public var indices: UnsafeMutablePointer<Int32>
    /// Training step (dropout active) or inference.
    public var training = false
    /// The precision of the workspace making the call (`Workspace.precision`): only layers with a
    /// bf16 path (convolution, dense) look at it.
    public var precision: Precision = .fp32
    /// This layer's prepared weights in this workspace (`Layer.preparedWeightsCount` floats: work derived
    /// from the weights alone, such as bf16 copies rounded and packed), or nil: none kept.
    public var preparedWeights: UnsafeMutablePointer<Float>?
    /// Whether `preparedWeights` already holds what the current weights give (made by an earlier call
    /// while the weights stayed the same, see `Workspace.weightsVersion`); when false the layer makes
    /// it again before using it.
    public var preparedWeightsCurrent = false
    /// Seed for this layer's random noise in this call (see `Workspace.noiseSeed`).
    public var noiseSeed: UInt64 = 0
    /// The model's flat state buffer (batch normalisation's running statistics; use
    /// `Layer.state` offsets), or nil when the model has none.
    public var state: UnsafeMutablePointer<Float>?
    /// Where a training forward records this layer's statistics of the shard (`statsCount` floats),
    /// or nil when they are not collected.
    public var shardStats: UnsafeMutablePointer<Float>?
    /// Layers with several inputs (`add`, `concat`): the inputs in order, and where each input's
    /// gradient goes (nil entries: the model input, whose gradient nothing needs). Backward
    /// *overwrites* each non-nil input gradient.
    public var inputList: UnsafeMutablePointer<UnsafeMutablePointer<Float>>?
    public var inputGradList: UnsafeMutablePointer<UnsafeMutablePointer<Float>?>?
    /// Backward *adds* its input gradient into `inputGrad` instead of overwriting it. Set by the
    /// workspace only for a layer whose `addsInputGradient(precision:)` is true, where the input feeds a
    /// branch: each element is then the bits of overwriting a spare buffer and adding it in.
    public var addInputGrad = false
    /// Backward *stores* the gradient range `Layer.storedGradientRange(precision:)` names instead of adding
    /// into it. Set by the workspace only when its caller left that range unzeroed (see
    /// `Workspace.backward(batch:parameters:gradients:layers:clearing:)`): the bits are those of adding
    /// into zeros (each element's chain then starts from +0 either way).
    public var storeGradient = false
    /// With `storeGradient`: backward leaves the stored range's product to the reduction over the shards, writing
    /// into that range the operands the reduction multiplies (`DefersGradient`). Set by the workspace only for a
    /// caller that reduces with `DefersGradient.reduceDeferred` (the in-process exchange).
    public var deferGradient = false

    public init(batch: Int, input: UnsafeMutablePointer<Float>, output: UnsafeMutablePointer<Float>,
                parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                outputGrad: UnsafeMutablePointer<Float>, inputGrad: UnsafeMutablePointer<Float>?,
                scratch: UnsafeMutablePointer<Float>, indices: UnsafeMutablePointer<Int32>) {
        self.batch = batch; self.input = input; self.output = output; self.parameters = parameters
        self.gradients = gradients; self.outputGrad = outputGrad; self.inputGrad = inputGrad
        self.scratch = scratch; self.indices = indices
    }
}

extension LayerCall {
    /// The layer's prepared weights for this call, made first by `make` (given the buffer to fill)
    /// when they are not current; nil when the workspace keeps none for the layer.
    @inline(__always)
    public func currentPreparedWeights(_ make: (UnsafeMutablePointer<Float>) -> Void) -> UnsafePointer<Float>? {
        guard let p = preparedWeights else { return nil }
        if !preparedWeightsCurrent { make(p) }
        return UnsafePointer(p)
    }
}

/// A network layer: shapes, parameters, forward and backward.
public protocol Layer: Sendable {
    /// Unique name within the model, e.g. "conv1", "pool2", "dense3".
    var name: String { get }
    /// Short description for `ptrain summary`, e.g. "conv 5x5 s1 p2, 6 features".
    var summary: String { get }
    var inputShape: Shape { get }
    /// Shapes of every input (several for `add` and `concat`; default: `[inputShape]`).
    var inputShapes: [Shape] { get }
    var outputShape: Shape { get }
    /// Parameter tensors with offsets into the flat buffer (empty for parameter-free layers).
    var parameters: [ParameterTensor] { get }
    /// Non-trainable state tensors (running statistics) with offsets into the model's state buffer.
    var state: [ParameterTensor] { get }
    /// Floats of per-shard statistics a training forward records (see `LayerCall.shardStats`).
    var statsCount: Int { get }
    /// Fills this layer's part of the state buffer with its initial values.
    func initializeState(_ state: UnsafeMutablePointer<Float>)
    /// Forward floating-point operations per sample (2 per multiply-add; 1 per compare or max).
    var flopsPerSample: Int { get }
    /// Forward multiply-adds per sample of the layer's matrix arithmetic (conv and dense: the
    /// products with the weights; 0 for the rest). What `TrainingFlops` counts.
    var multiplyAddsPerSample: Int { get }
    /// Scratch floats one worker needs for calls with up to `maxBatch` samples.
    func scratchCount(maxBatch: Int) -> Int
    /// Scratch floats at `precision` (default: `scratchCount(maxBatch:)`; layers with a bf16 path add theirs).
    func scratchCount(maxBatch: Int, precision: Precision) -> Int
    /// Floats of prepared weights a workspace keeps for this layer at `precision` (see
    /// `LayerCall.preparedWeights`; default 0: none).
    func preparedWeightsCount(precision: Precision) -> Int
    /// Saved indices needed for `batch` samples (max pooling's argmax).
    func indexCount(batch: Int) -> Int
    /// Whether backward at `precision` honours `LayerCall.addInputGrad` (default false).
    func addsInputGradient(precision: Precision) -> Bool
    /// The part of the flat gradient buffer that backward at `precision` stores outright when
    /// `LayerCall.storeGradient` is set, without reading it (default nil: backward adds into all of its
    /// parameters' gradients).
    func storedGradientRange(precision: Precision) -> Range<Int>?
    /// Fills this layer's parameters (weights from `rng`, biases zero).
    func initialize(parameters: UnsafeMutablePointer<Float>, rng: inout Xoshiro256)
    func forward(_ call: LayerCall)
    func backward(_ call: LayerCall)
}

extension Layer {
    public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }
    public var state: [ParameterTensor] { [] }
    public var inputShapes: [Shape] { [inputShape] }
    public var statsCount: Int { 0 }
    public var multiplyAddsPerSample: Int { 0 }
    public func initializeState(_ state: UnsafeMutablePointer<Float>) {}
    public func scratchCount(maxBatch: Int) -> Int { 0 }
    public func scratchCount(maxBatch: Int, precision: Precision) -> Int { scratchCount(maxBatch: maxBatch) }
    public func preparedWeightsCount(precision: Precision) -> Int { 0 }
    public func indexCount(batch: Int) -> Int { 0 }
    public func addsInputGradient(precision: Precision) -> Bool { false }
    public func storedGradientRange(precision: Precision) -> Range<Int>? { nil }
    public func initialize(parameters: UnsafeMutablePointer<Float>, rng: inout Xoshiro256) {}
}

/// A layer whose stored weight gradient (`Layer.storedGradientRange`) can be left to the reduction over the shards:
/// with `LayerCall.deferGradient` a shard's backward writes the product's operands into that range instead of the
/// product, and `reduceDeferred` computes the reduced gradient from every shard's operands with the bits of
/// `pairwiseSumInPlace` over the stored products. A shard whose gradient buffer was zeroed (no samples) counts as a
/// zero product. Used by one rank's in-process exchange; exchanges that send the shards' sums between ranks store
/// the product.
public protocol DefersGradient: Layer {
    /// Whether the stored range is deferred in a workspace of `precision` whose shards hold up to `maxBatch` samples
    /// (the operands then fit in it).
    func defersGradient(precision: Precision, maxBatch: Int) -> Bool
    /// destination[range] (within the stored range) = the tree over the n leaves' products, read from the operands
    /// their backward left in the stored range.
    func reduceDeferred(_ leaves: UnsafePointer<UnsafeMutablePointer<Float>>, n: Int, range: Range<Int>,
                        into destination: UnsafeMutablePointer<Float>)
}

/// How weights are drawn at initialisation.
public enum Initializer: String, Sendable, CaseIterable {
    /// He (Kaiming) uniform: U(-b, b), b = sqrt(6 / fanIn). Suits layers followed by ReLU.
    case he
    /// Glorot (Xavier) uniform: U(-b, b), b = sqrt(6 / (fanIn + fanOut)).
    case glorot

    public func bound(fanIn: Int, fanOut: Int) -> Float {
        switch self {
        case .he: return (6.0 / Float(fanIn)).squareRoot()
        case .glorot: return (6.0 / Float(fanIn + fanOut)).squareRoot()
        }
    }

    /// Fills `count` weights uniformly in [-bound, bound].
    public func fill(_ p: UnsafeMutablePointer<Float>, count: Int, fanIn: Int, fanOut: Int, rng: inout Xoshiro256) {
        let b = bound(fanIn: fanIn, fanOut: fanOut)
        for i in 0..<count { p[i] = (rng.nextUnitFloat() * 2 - 1) * b }
    }
}
