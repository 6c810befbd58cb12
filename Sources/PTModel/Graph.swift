// Graphs: layers that take their input from any earlier layer (by name or relative index, as
// Darknet's `from=-3`), and the two layers that join branches: `add` (residual sum) and `concat`.
import PTKernels
import PTTensor

/// Where a layer takes one of its inputs from.
public enum LayerRef: Sendable, Equatable, CustomStringConvertible {
    /// The model input.
    case input
    /// `-k`: the output of the layer k places earlier in the list (-1: the previous layer, the default).
    case relative(Int)
    /// The output of the earlier layer with this name.
    case name(String)

    public var description: String {
        switch self {
        case .input: return "input"
        case let .relative(k): return String(k)
        case let .name(n): return n
        }
    }
}

/// One entry of a model's layer list: the layer, an optional name, and where its inputs come from
/// (nil: the previous layer's output). `location` ("file:line") only decorates error messages; it
/// takes no part in equality.
public struct LayerNode: Sendable, Equatable {
    public var spec: LayerSpec
    /// Explicit name (also the prefix of its tensors in safetensors files), or nil for the automatic
    /// kind + count ("conv1", "add2").
    public var name: String?
    /// Inputs; nil means the previous layer (or the model input for the first layer).
    public var from: [LayerRef]?
    public var location: String?

    public init(_ spec: LayerSpec, name: String? = nil, from: [LayerRef]? = nil, location: String? = nil) {
        self.spec = spec; self.name = name; self.from = from; self.location = location
    }

    public static func == (a: LayerNode, b: LayerNode) -> Bool { a.spec == b.spec && a.name == b.name && a.from == b.from }

    // The plain chain's vocabulary, so lists of nodes read like lists of specs.
    public static func conv(features: Int, kernelHeight: Int, kernelWidth: Int, stride: Int, padding: Int, initializer: Initializer) -> LayerNode {
        LayerNode(.conv(features: features, kernelHeight: kernelHeight, kernelWidth: kernelWidth, stride: stride, padding: padding,
                        initializer: initializer))
    }
    public static func maxPool(windowHeight: Int, windowWidth: Int, stride: Int, keepPartial: Bool) -> LayerNode {
        LayerNode(.maxPool(windowHeight: windowHeight, windowWidth: windowWidth, stride: stride, keepPartial: keepPartial))
    }
    public static func avgPool(windowHeight: Int, windowWidth: Int, stride: Int, keepPartial: Bool) -> LayerNode {
        LayerNode(.avgPool(windowHeight: windowHeight, windowWidth: windowWidth, stride: stride, keepPartial: keepPartial))
    }
    public static var globalAvgPool: LayerNode { LayerNode(.globalAvgPool) }
    public static func dropout(rate: Float) -> LayerNode { LayerNode(.dropout(rate: rate)) }
    public static func batchNorm(momentum: Float, epsilon: Float) -> LayerNode { LayerNode(.batchNorm(momentum: momentum, epsilon: epsilon)) }
    public static var relu: LayerNode { LayerNode(.relu) }
    public static var flatten: LayerNode { LayerNode(.flatten) }
    public static func dense(neurons: Int, initializer: Initializer) -> LayerNode { LayerNode(.dense(neurons: neurons, initializer: initializer)) }
}

/// Residual sum of two or more inputs of the same shape: y = x1 + x2 + ... (added in input order).
/// Backward copies the output gradient to every input.
public struct Add: Layer {
    public let name: String
    public let inputShapes: [Shape]
    public var inputShape: Shape { inputShapes[0] }
    public var outputShape: Shape { inputShapes[0] }
    public var parameters: [ParameterTensor] { [] }

    public init(name: String, inputs: [Shape]) {
        precondition(inputs.count >= 2 && inputs.allSatisfy { $0 == inputs[0] })
        self.name = name
        inputShapes = inputs
    }

    public var summary: String { "add \(inputShapes.count)" }
    public var flopsPerSample: Int { (inputShapes.count - 1) * inputShape.count }

    public func forward(_ c: LayerCall) {
        let n = c.batch * inputShape.count
        addVectors(count: n, c.inputList![0], c.inputList![1], into: c.output)
        for k in 2..<inputShapes.count { addVectors(count: n, c.output, c.inputList![k], into: c.output) }
    }

    public func backward(_ c: LayerCall) {
        let n = c.batch * inputShape.count
        for k in 0..<inputShapes.count {
            c.inputGradList![k]?.update(from: c.outputGrad, count: n)
        }
    }
}

/// Concatenation along channels (C1 x H x W, C2 x H x W, ... -> (C1 + C2 + ...) x H x W), in input
/// order. Backward splits the output gradient back.
public struct Concat: Layer {
    public let name: String
    public let inputShapes: [Shape]
    public let outputShape: Shape
    public var inputShape: Shape { inputShapes[0] }
    public var parameters: [ParameterTensor] { [] }

    public init(name: String, inputs: [Shape]) {
        precondition(inputs.count >= 2)
        self.name = name
        inputShapes = inputs
        outputShape = Shape(channels: inputs.reduce(0) { $0 + $1.channels }, height: inputs[0].height, width: inputs[0].width)
    }

    public var summary: String { "concat \(inputShapes.count)" }
    public var flopsPerSample: Int { 0 }

    public func forward(_ c: LayerCall) {
        let out = outputShape.count
        for n in 0..<c.batch {
            var at = c.output + n * out
            for (k, s) in inputShapes.enumerated() {
                at.update(from: c.inputList![k] + n * s.count, count: s.count)
                at += s.count
            }
        }
    }

    public func backward(_ c: LayerCall) {
        let out = outputShape.count
        for n in 0..<c.batch {
            var at = c.outputGrad + n * out
            for (k, s) in inputShapes.enumerated() {
                c.inputGradList![k]?.advanced(by: n * s.count).update(from: at, count: s.count)
                at += s.count
            }
        }
    }
}

/// out[i] = a[i] + b[i] (out may alias a or b). In place (out == a), PTKernels' `addFloats` (vectors of
/// the level in use; one exact add per element either way, so the same bits).
@inline(__always)
func addVectors(count n: Int, _ a: UnsafeMutablePointer<Float>, _ b: UnsafeMutablePointer<Float>, into out: UnsafeMutablePointer<Float>) {
    if out == a { addFloats(a, b, count: n); return }
    for i in 0..<n { out[i] = a[i] + b[i] }
}
