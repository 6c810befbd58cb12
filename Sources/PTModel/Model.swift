// The model: a validated stack of layers over one flat parameter layout.
import PTTensor

/// A layer as a config describes it: the slides' knobs (features, kernel size, stride, padding,
/// pooling window and stride, neurons).
public enum LayerSpec: Sendable, Equatable {
    /// 2-D convolution; for 1-D data use kernel height 1 (`conv1d` in configs).
    case conv(features: Int, kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Int, initializer: Initializer)
    case maxPool(windowHeight: Int, windowWidth: Int, stride: Int, keepPartial: Bool)
    case avgPool(windowHeight: Int, windowWidth: Int, stride: Int, keepPartial: Bool)
    case globalAvgPool
    case dropout(rate: Float)
    /// Batch normalisation over each channel (statistics of each shard while training).
    case batchNorm(momentum: Float, epsilon: Float)
    case relu
    case flatten
    case dense(neurons: Int, initializer: Initializer)
    /// Residual sum of two or more inputs of the same shape.
    case add
    /// Concatenation of two or more inputs along channels.
    case concat

    /// The kind in automatic names ("conv" for conv1, "bn" for bn2).
    public var kind: String {
        switch self {
        case .conv: return "conv"
        case .maxPool: return "pool"
        case .avgPool: return "avgpool"
        case .globalAvgPool: return "gap"
        case .dropout: return "dropout"
        case .batchNorm: return "bn"
        case .relu: return "relu"
        case .flatten: return "flatten"
        case .dense: return "dense"
        case .add: return "add"
        case .concat: return "concat"
        }
    }

    /// Whether the layer joins several inputs.
    public var joinsInputs: Bool {
        switch self {
        case .add, .concat: return true
        default: return false
        }
    }
}

/// A model error: one line naming the layer and why it cannot be built.
public struct ModelError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// A graph of layers from an input shape to `classes` logits, with a flat parameter layout:
/// every tensor's offset is a multiple of 16 floats, so each sits 64-byte aligned in an AlignedBuffer.
///
/// Layers run in list order; each takes its input(s) from the model input or earlier layers
/// (by default the previous layer: a plain stack). Activation 0 is the model input and activation
/// i + 1 is layer i's output.
public struct Model: Sendable {
    public let inputShape: Shape
    public let layers: [any Layer]
    /// For each layer, the activations it reads (0: the model input; j + 1: layer j's output), in
    /// input order.
    public let inputs: [[Int]]
    /// Floats in the flat parameter (and gradient, and optimizer state) buffer, including alignment gaps.
    public let parameterCount: Int
    /// Floats in the flat state buffer (running statistics), including alignment gaps.
    public let stateCount: Int
    /// Floats of statistics one shard records in a training forward (all layers), and where each
    /// layer's part starts.
    public let statsPerShard: Int
    public let statsOffsets: [Int]
    /// The largest number of samples one forward/backward call will see.
    public let maxBatch: Int

    /// Builds and validates a plain stack of layers (each reads the previous one's output).
    /// `requireClassifier: false` allows a stack that does not end in a flat vector (layer tests).
    public init(input: Shape, layers specs: [LayerSpec], maxBatch: Int, requireClassifier: Bool = true) throws {
        try self.init(input: input, layers: specs.map { LayerNode($0) }, maxBatch: maxBatch, requireClassifier: requireClassifier)
    }

    /// Builds and validates a graph of layers. Unnamed layers are named by kind plus a count over the
    /// unnamed layers of that kind ("conv1", "dense2").
    /// - Throws: `ModelError` naming the first layer (and its config line, when known) whose
    ///   reference is unknown, forward or to itself, whose inputs do not fit together, whose output
    ///   would be empty or is never used, or whose settings are impossible.
    @_disfavoredOverload
    public init(input: Shape, layers nodes: [LayerNode], maxBatch: Int, requireClassifier: Bool = true) throws {
        guard input.count > 0 else { throw ModelError("model input shape \(input) is empty") }
        guard maxBatch > 0 else { throw ModelError("batch size must be at least 1") }
        self.inputShape = input
        self.maxBatch = maxBatch
        var built: [any Layer] = []
        var inputs: [[Int]] = []
        var counts: [String: Int] = [:]
        var names: [String] = []
        // Shapes of the activations so far (0: the model input).
        var shapes: [Shape] = [input]
        var offset = 0
        var stateOffset = 0
        var statsOffset = 0
        var statsOffsets: [Int] = []
        // Every name in the list, to tell a forward reference from an unknown one.
        var allNames: [String: Int] = [:]
        do {
            var autoCounts: [String: Int] = [:]
            for (index, node) in nodes.enumerated() {
                let name: String
                if let given = node.name { name = given } else {
                    autoCounts[node.spec.kind, default: 0] += 1
                    name = "\(node.spec.kind)\(autoCounts[node.spec.kind]!)"
                }
                if let first = allNames[name] {
                    let at = nodes[index].location.map { "\($0): " } ?? ""
                    throw ModelError("\(at)layer \(index + 1) (\(name)): the name is already used by layer \(first + 1)")
                }
                allNames[name] = index
            }
        }
        for (index, node) in nodes.enumerated() {
            let spec = node.spec
            let name: String
            if let given = node.name { name = given } else {
                counts[spec.kind, default: 0] += 1
                name = "\(spec.kind)\(counts[spec.kind]!)"
            }
            let label = "\(node.location.map { "\($0): " } ?? "")layer \(index + 1) (\(name))"
            // Resolve the inputs to activation indices.
            var sources: [Int] = []
            for ref in node.from ?? [.relative(-1)] {
                switch ref {
                case .input: sources.append(0)
                case let .relative(k):
                    guard k < 0 else {
                        throw ModelError("\(label): from \(k): \(k == 0 ? "a layer cannot take its own output (cycle)" : "forward reference: relative inputs must be negative (-1 is the previous layer)")")
                    }
                    guard index + 1 + k >= 0 else {
                        throw ModelError("\(label): from \(k): reaches before the model input (this is layer \(index + 1); -\(index + 1) is the input)")
                    }
                    sources.append(index + 1 + k)
                case let .name(target):
                    if target == "input" { sources.append(0); continue }
                    guard let at = allNames[target] else { throw ModelError("\(label): from '\(target)': no layer has that name") }
                    guard at != index else { throw ModelError("\(label): from '\(target)': a layer cannot take its own output (cycle)") }
                    guard at < index else {
                        throw ModelError("\(label): from '\(target)': forward reference to layer \(at + 1); inputs must come from earlier layers")
                    }
                    sources.append(at + 1)
                }
            }
            let inShapes = sources.map { shapes[$0] }
            func describe(_ k: Int) -> String { sources[k] == 0 ? "input" : names[sources[k] - 1] }
            if spec.joinsInputs {
                guard sources.count >= 2 else {
                    throw ModelError("\(label): \(spec.kind) needs at least two inputs ('from' lists them), got \(sources.count)")
                }
            } else if sources.count != 1 {
                throw ModelError("\(label): \(spec.kind) takes one input, got \(sources.count)")
            }
            let shape = inShapes[0]
            let layer: any Layer
            switch spec {
            case let .conv(features, kh, kw, stride, padding, initializer):
                guard features > 0 else { throw ModelError("\(label): features must be positive, got \(features)") }
                guard kh > 0, kw > 0 else { throw ModelError("\(label): kernel size must be positive, got \(kh)x\(kw)") }
                guard stride > 0 else { throw ModelError("\(label): stride must be positive, got \(stride)") }
                guard padding >= 0 else { throw ModelError("\(label): padding must not be negative, got \(padding)") }
                // On 1-D data (height 1) a convolution runs along the width only.
                let oneD = shape.height == 1
                let ph = oneD ? 0 : padding
                let kh = oneD ? 1 : kh
                if shape.height + 2 * ph < kh || shape.width + 2 * padding < kw {
                    throw ModelError("\(label): output would be empty: input \(shape) is smaller than the \(oneD ? "\(kw)" : "\(kh)x\(kw)") kernel with padding \(padding)")
                }
                layer = Conv2D(name: name, input: shape, features: features, kernelSize: (kh, kw),
                               stride: (oneD ? 1 : stride, stride), padding: (ph, padding), maxBatch: maxBatch,
                               parameterOffset: offset, initializer: initializer)
            case let .maxPool(wh, ww, stride, keep), let .avgPool(wh, ww, stride, keep):
                guard wh > 0, ww > 0 else { throw ModelError("\(label): pooling window must be positive, got \(wh)x\(ww)") }
                guard stride > 0 else { throw ModelError("\(label): pooling stride must be positive, got \(stride)") }
                // On 1-D data (height 1) pooling runs along the width only.
                let oneD = shape.height == 1
                let window = (oneD ? 1 : wh, ww), strides = (oneD ? 1 : stride, stride)
                if case .maxPool = spec {
                    layer = MaxPool2D(name: name, input: shape, window: window, stride: strides, keepPartial: keep)
                } else {
                    layer = AvgPool2D(name: name, input: shape, window: window, stride: strides, keepPartial: keep)
                }
                guard layer.outputShape.count > 0 else {
                    throw ModelError("\(label): output would be empty: input \(shape) is smaller than the pooling window \(oneD ? "\(ww)" : "\(wh)x\(ww)")")
                }
            case .globalAvgPool:
                layer = GlobalAvgPool(name: name, input: shape)
            case let .dropout(rate):
                guard rate >= 0, rate < 1 else { throw ModelError("\(label): dropout rate must be in [0, 1), got \(rate)") }
                layer = Dropout(name: name, input: shape, rate: rate)
            case let .batchNorm(momentum, epsilon):
                guard momentum >= 0, momentum <= 1 else { throw ModelError("\(label): momentum must be in [0, 1], got \(momentum)") }
                guard epsilon > 0, epsilon.isFinite else { throw ModelError("\(label): eps must be a finite number > 0, got \(epsilon)") }
                layer = BatchNorm(name: name, input: shape, momentum: momentum, epsilon: epsilon,
                                  parameterOffset: offset, stateOffset: stateOffset)
            case .relu:
                layer = ReLU(name: name, input: shape)
            case .flatten:
                layer = Flatten(name: name, input: shape)
            case let .dense(neurons, initializer):
                guard neurons > 0 else { throw ModelError("\(label): neurons must be positive, got \(neurons)") }
                layer = Dense(name: name, input: shape, neurons: neurons, parameterOffset: offset, initializer: initializer)
            case .add:
                for k in 1..<inShapes.count where inShapes[k] != shape {
                    throw ModelError("\(label): add needs inputs of one shape: \(describe(0)) gives \(shape), \(describe(k)) gives \(inShapes[k])")
                }
                layer = Add(name: name, inputs: inShapes)
            case .concat:
                for k in 1..<inShapes.count where inShapes[k].height != shape.height || inShapes[k].width != shape.width {
                    throw ModelError("\(label): concat needs inputs of one height and width: \(describe(0)) gives \(shape), \(describe(k)) gives \(inShapes[k])")
                }
                layer = Concat(name: name, inputs: inShapes)
            }
            for p in layer.parameters { offset = p.offset + alignedCount(p.count) }
            for t in layer.state { stateOffset = t.offset + alignedCount(t.count) }
            statsOffsets.append(statsOffset)
            statsOffset += layer.statsCount
            let out = layer.outputShape
            // Keep every buffer addressable and the run within memory: at most 2^31 parameters and
            // 2^30 activation values per shard for one layer.
            guard offset <= 1 << 31 else { throw ModelError("\(label): the model would have more than 2^31 parameters") }
            guard out.count.multipliedReportingOverflow(by: maxBatch).partialValue <= 1 << 30,
                  !out.count.multipliedReportingOverflow(by: maxBatch).overflow else {
                throw ModelError("\(label): output of \(out) per sample x \(maxBatch) samples per shard is too large (over 2^30 values)")
            }
            built.append(layer)
            inputs.append(sources)
            names.append(name)
            shapes.append(out)
        }
        guard !built.isEmpty else { throw ModelError("model has no layers") }
        // Every layer's output but the last must feed some later layer: an unused branch would
        // train nothing and leave its gradient undefined.
        var used = [Bool](repeating: false, count: built.count + 1)
        for list in inputs { for a in list { used[a] = true } }
        for i in 0..<(built.count - 1) where !used[i + 1] {
            throw ModelError("\(nodes[i].location.map { "\($0): " } ?? "")layer \(i + 1) (\(names[i])): its output is never used (only the last layer may end the graph)")
        }
        guard shapes.last!.isFlat || !requireClassifier else {
            throw ModelError("the last layer (\(built.last!.name)) must be dense so the model ends in class scores; its output is \(shapes.last!)")
        }
        self.layers = built
        self.inputs = inputs
        self.parameterCount = offset
        self.stateCount = stateOffset
        self.statsPerShard = statsOffset
        self.statsOffsets = statsOffsets
    }

    /// Whether every layer reads the previous layer's output (no branches).
    public var isChain: Bool { inputs.enumerated().allSatisfy { $0.element == [$0.offset] } }

    /// Names of each layer's inputs ("input" for the model input), for summaries.
    public func inputNames(_ i: Int) -> [String] { inputs[i].map { $0 == 0 ? "input" : layers[$0 - 1].name } }

    /// Number of classes: the size of the last layer's output.
    public var classes: Int { layers.last!.outputShape.count }

    /// All parameter tensors in layer order.
    public var parameterTensors: [ParameterTensor] { layers.flatMap { $0.parameters } }

    /// All state tensors (running statistics) in layer order.
    public var stateTensors: [ParameterTensor] { layers.flatMap { $0.state } }

    /// Fills the state buffer with its initial values (running means 0, variances 1).
    public func initializeState(_ state: AlignedBuffer) {
        precondition(state.count == max(1, stateCount))
        state.zero()
        for layer in layers { layer.initializeState(state.pointer) }
    }

    /// Parameters actually used (without alignment gaps).
    public var trainableCount: Int { parameterTensors.reduce(0) { $0 + $1.count } }

    /// Forward FLOPs per sample over all layers.
    public var flopsPerSample: Int { layers.reduce(0) { $0 + $1.flopsPerSample } }

    /// Initialises all parameters from `seed` (one generator, layers in order).
    public func initialize(_ parameters: AlignedBuffer, seed: UInt64) {
        precondition(parameters.count == parameterCount)
        parameters.zero()
        var rng = Xoshiro256(seed: seed, stream: 0x1A17)
        for layer in layers { layer.initialize(parameters: parameters.pointer, rng: &rng) }
    }
}
