// A ptrain model as an ONNX graph: one or a few standard operators per layer, the weights as
// initializers under their ptrain names, inference form only (running statistics, no dropout).
import Foundation
import PTKernels
import PTModel
import PTTensor
import SwiftProtobuf

/// A tensor of the ONNX graph and its rank: 2 for flat vectors [N, C], 3 for 1-D maps [N, C, W],
/// 4 for 2-D maps [N, C, H, W].
struct GraphValue {
    var name: String
    var rank: Int
}

/// Builds the nodes and initializers of one graph; names are unique across tensors and nodes.
struct GraphBuilder {
    var nodes: [Onnx_NodeProto] = []
    var initializers: [Onnx_TensorProto] = []
    /// Names taken by graph inputs, initializers and node outputs.
    private var taken: Set<String> = []

    init(reserved: [String]) { taken = Set(reserved) }

    /// `base`, or `base_2`, `base_3`, … when it is taken.
    mutating func unique(_ base: String) -> String {
        var name = base, k = 1
        while taken.contains(name) { k += 1; name = "\(base)_\(k)" }
        taken.insert(name)
        return name
    }

    /// Adds `op` reading `inputs`; returns the name of its one output (`output`, made unique).
    @discardableResult
    mutating func node(_ op: String, name: String, inputs: [String], output: String,
                       attributes: [Onnx_AttributeProto] = []) -> String {
        let out = unique(output)
        var node = Onnx_NodeProto()
        node.opType = op
        node.name = name
        node.input = inputs
        node.output = [out]
        node.attribute = attributes
        nodes.append(node)
        return out
    }

    /// A float32 initializer holding `count` values from `values` (little-endian raw data).
    mutating func floats(_ name: String, dims: [Int], values: UnsafePointer<Float>) -> String {
        let count = dims.reduce(1, *)
        var tensor = Onnx_TensorProto()
        tensor.name = unique(name)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.dims = dims.map { Int64($0) }
        var bytes = [UInt8](repeating: 0, count: 4 * count)
        for i in 0..<count {
            let bits = values[i].bitPattern
            for b in 0..<4 { bytes[4 * i + b] = UInt8(truncatingIfNeeded: bits >> (8 * b)) }
        }
        tensor.rawData = Data(bytes)
        initializers.append(tensor)
        return tensor.name
    }

    /// An int64 initializer (shapes for Reshape).
    mutating func int64s(_ name: String, _ values: [Int]) -> String {
        var tensor = Onnx_TensorProto()
        tensor.name = unique(name)
        tensor.dataType = Int32(Onnx_TensorProto.DataType.int64.rawValue)
        tensor.dims = [Int64(values.count)]
        tensor.int64Data = values.map { Int64($0) }
        initializers.append(tensor)
        return tensor.name
    }

    /// Whether some node reads `name`.
    func isRead(_ name: String) -> Bool { nodes.contains { $0.input.contains(name) } }
}

func attribute(_ name: String, ints: [Int]) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .ints
    a.ints = ints.map { Int64($0) }
    return a
}

func attribute(_ name: String, int: Int) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .int
    a.i = Int64(int)
    return a
}

func attribute(_ name: String, float: Float) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .float
    a.f = float
    return a
}

/// Translates a model's layers, in run order, into ONNX nodes.
struct GraphTranslator {
    let model: Model
    let parameters: UnsafePointer<Float>
    let state: UnsafePointer<Float>
    /// Rank of the model's maps: 3 ([N, C, W]) for 1-D models (input height 1), else 4.
    let spatialRank: Int
    var graph: GraphBuilder

    init(model: Model, parameters: UnsafePointer<Float>, state: UnsafePointer<Float>) {
        self.model = model
        self.parameters = parameters
        self.state = state
        spatialRank = model.inputShape.height == 1 ? 3 : 4
        graph = GraphBuilder(reserved: [ONNXExport.inputName, ONNXExport.outputName])
    }

    /// The graph's nodes up to the output `logits` [N, classes].
    mutating func translate() throws {
        // values[0]: the model input; values[i + 1]: layer i's output.
        var values = [GraphValue(name: ONNXExport.inputName, rank: spatialRank)]
        for (i, layer) in model.layers.enumerated() {
            let inputs = model.inputs[i].map { values[$0] }
            values.append(try translate(layer, inputs: inputs))
        }
        var last = values.last!
        if last.rank != 2 {
            last.name = graph.node("Flatten", name: "logits", inputs: [last.name], output: "logits.flat",
                                   attributes: [attribute("axis", int: 1)])
            last.rank = 2
        }
        // The last node's output becomes `logits`; a value that other nodes also read (or the input,
        // or an initializer) is passed on through an Identity node.
        if let k = graph.nodes.lastIndex(where: { $0.output == [last.name] }), !graph.isRead(last.name) {
            graph.nodes[k].output = [ONNXExport.outputName]
        } else {
            var node = Onnx_NodeProto()
            node.opType = "Identity"
            node.name = ONNXExport.outputName
            node.input = [last.name]
            node.output = [ONNXExport.outputName]
            graph.nodes.append(node)
        }
    }

    func tensor(_ p: ParameterTensor) -> UnsafePointer<Float> { parameters + p.offset }
    func stateTensor(_ p: ParameterTensor) -> UnsafePointer<Float> { state + p.offset }

    /// `value` (holding samples of `shape`) as a tensor of `rank`: Flatten to go flat, Reshape to
    /// give a flat vector its (1 x 1) map dimensions back.
    mutating func reshape(_ value: GraphValue, shape: Shape, rank: Int, layer: String) -> GraphValue {
        if value.rank == rank { return value }
        if rank == 2 {
            let out = graph.node("Flatten", name: "\(layer).flatten", inputs: [value.name], output: "\(layer).flat",
                                 attributes: [attribute("axis", int: 1)])
            return GraphValue(name: out, rank: 2)
        }
        let dims = rank == 4 ? [-1, shape.channels, shape.height, shape.width] : [-1, shape.channels, shape.width]
        let target = graph.int64s("\(layer).shape", dims)
        let out = graph.node("Reshape", name: "\(layer).reshape", inputs: [value.name, target], output: "\(layer).map")
        return GraphValue(name: out, rank: rank)
    }

    func unexportable(_ layer: any Layer, _ why: String) -> ONNXExportError {
        ONNXExportError("layer \(layer.name) (\(layer.summary)): cannot be exported to ONNX: \(why)")
    }

    /// The nodes of one layer; returns its output.
    mutating func translate(_ layer: any Layer, inputs: [GraphValue]) throws -> GraphValue {
        let name = layer.name
        let shape = layer.inputShape
        switch layer {
        case let conv as Conv2D:
            let g = conv.geometry
            let x = reshape(inputs[0], shape: shape, rank: spatialRank, layer: name)
            let kernel: [Int], strides: [Int], pads: [Int], dims: [Int]
            if spatialRank == 3 {
                guard g.ih == 1, g.kh == 1, g.ph == 0 else { throw unexportable(layer, "a 2-D kernel on 1-D data") }
                (kernel, strides, pads, dims) = ([g.kw], [g.sw], [g.pw, g.pw], [g.oc, g.ic, g.kw])
            } else {
                (kernel, strides, pads, dims) = ([g.kh, g.kw], [g.sh, g.sw], [g.ph, g.pw, g.ph, g.pw], [g.oc, g.ic, g.kh, g.kw])
            }
            let w = graph.floats(conv.parameters[0].name, dims: dims, values: tensor(conv.parameters[0]))
            let b = graph.floats(conv.parameters[1].name, dims: [g.oc], values: tensor(conv.parameters[1]))
            let out = graph.node("Conv", name: name, inputs: [x.name, w, b], output: name,
                                 attributes: [attribute("kernel_shape", ints: kernel), attribute("strides", ints: strides),
                                              attribute("pads", ints: pads), attribute("dilations", ints: kernel.map { _ in 1 }),
                                              attribute("group", int: 1)])
            return GraphValue(name: out, rank: spatialRank)

        case let pool as MaxPool2D:
            return try pooling(layer, pool.geometry, op: "MaxPool", inputs: inputs)
        case let pool as AvgPool2D:
            return try pooling(layer, pool.geometry, op: "AveragePool", inputs: inputs)

        case is GlobalAvgPool:
            // The mean over one position is the value itself.
            if inputs[0].rank == 2 { return inputs[0] }
            let pooled = graph.node("GlobalAveragePool", name: name, inputs: [inputs[0].name], output: "\(name).pooled")
            let out = graph.node("Flatten", name: "\(name).flatten", inputs: [pooled], output: name,
                                 attributes: [attribute("axis", int: 1)])
            return GraphValue(name: out, rank: 2)

        case let bn as BatchNorm:
            let scale = graph.floats(bn.parameters[0].name, dims: [bn.channels], values: tensor(bn.parameters[0]))
            let bias = graph.floats(bn.parameters[1].name, dims: [bn.channels], values: tensor(bn.parameters[1]))
            let mean = graph.floats(bn.state[0].name, dims: [bn.channels], values: stateTensor(bn.state[0]))
            let variance = graph.floats(bn.state[1].name, dims: [bn.channels], values: stateTensor(bn.state[1]))
            let out = graph.node("BatchNormalization", name: name, inputs: [inputs[0].name, scale, bias, mean, variance],
                                 output: name, attributes: [attribute("epsilon", float: bn.epsilon)])
            return GraphValue(name: out, rank: inputs[0].rank)

        case is ReLU:
            return GraphValue(name: graph.node("Relu", name: name, inputs: [inputs[0].name], output: name), rank: inputs[0].rank)

        case is Dropout:
            // Inference: dropout passes its input unchanged, so it has no node.
            return inputs[0]

        case is Flatten:
            if inputs[0].rank == 2 { return inputs[0] }
            let out = graph.node("Flatten", name: name, inputs: [inputs[0].name], output: name,
                                 attributes: [attribute("axis", int: 1)])
            return GraphValue(name: out, rank: 2)

        case let dense as Dense:
            // A dense layer reads its input as one vector (C, H, W order): Flatten keeps that order.
            let x = reshape(inputs[0], shape: shape, rank: 2, layer: name)
            let w = graph.floats(dense.parameters[0].name, dims: [dense.neurons, dense.inputs], values: tensor(dense.parameters[0]))
            let b = graph.floats(dense.parameters[1].name, dims: [dense.neurons], values: tensor(dense.parameters[1]))
            let out = graph.node("Gemm", name: name, inputs: [x.name, w, b], output: name,
                                 attributes: [attribute("transB", int: 1)])
            return GraphValue(name: out, rank: 2)

        case is Add:
            // (x1 + x2) + x3 …, in input order, as ptrain adds them.
            let rank = inputs[0].rank
            let xs = inputs.enumerated().map { k, v in reshape(v, shape: layer.inputShapes[k], rank: rank, layer: "\(name).in\(k)") }
            var sum = xs[0].name
            for k in 1..<xs.count {
                sum = graph.node("Add", name: k == xs.count - 1 ? name : "\(name).\(k)", inputs: [sum, xs[k].name],
                                 output: k == xs.count - 1 ? name : "\(name).partial\(k)")
            }
            return GraphValue(name: sum, rank: rank)

        case is Concat:
            let rank = inputs[0].rank
            let xs = inputs.enumerated().map { k, v in reshape(v, shape: layer.inputShapes[k], rank: rank, layer: "\(name).in\(k)") }
            let out = graph.node("Concat", name: name, inputs: xs.map(\.name), output: name, attributes: [attribute("axis", int: 1)])
            return GraphValue(name: out, rank: rank)

        default:
            throw unexportable(layer, "\(type(of: layer)) has no ONNX translation")
        }
    }

    /// Max or average pooling. ptrain places windows at 0, s, 2s, … without padding; with
    /// `edge: keep` a last window that hangs over the end is clipped to the input. In ONNX that is
    /// end padding of (outputs - 1) * stride + window - input (less than the window, since every
    /// window starts inside the input) with ceil_mode 0: MaxPool ignores padded positions and
    /// AveragePool with count_include_pad 0 divides by the positions inside the input, as ptrain
    /// does. With `edge: drop` the end padding is 0 (floor).
    mutating func pooling(_ layer: any Layer, _ g: PoolGeometry, op: String, inputs: [GraphValue]) throws -> GraphValue {
        let name = layer.name
        let x = reshape(inputs[0], shape: layer.inputShape, rank: spatialRank, layer: name)
        let endH = max(0, (g.oh - 1) * g.sh + g.kh - g.ih), endW = max(0, (g.ow - 1) * g.sw + g.kw - g.iw)
        guard endH < g.kh, endW < g.kw else { throw unexportable(layer, "a window starts outside the input") }
        let kernel: [Int], strides: [Int], pads: [Int]
        if spatialRank == 3 {
            guard g.ih == 1, g.kh == 1 else { throw unexportable(layer, "a 2-D window on 1-D data") }
            (kernel, strides, pads) = ([g.kw], [g.sw], [0, endW])
        } else {
            (kernel, strides, pads) = ([g.kh, g.kw], [g.sh, g.sw], [0, 0, endH, endW])
        }
        var attributes = [attribute("kernel_shape", ints: kernel), attribute("strides", ints: strides),
                          attribute("pads", ints: pads), attribute("ceil_mode", int: 0)]
        if op == "AveragePool" { attributes.append(attribute("count_include_pad", int: 0)) }
        let out = graph.node(op, name: name, inputs: [x.name], output: name, attributes: attributes)
        return GraphValue(name: out, rank: spatialRank)
    }
}
