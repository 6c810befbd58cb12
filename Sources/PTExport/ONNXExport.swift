// ONNX export (docs/ONNX.md): trained weights and their config as one .onnx file that ONNX Runtime,
// OpenVINO, TensorRT and the rest run. The protobuf encoding is swift-protobuf's, over the types
// generated from ONNX's own schema (onnx.pb.swift; scripts/generate-onnx-proto.sh).
import Foundation
import PTFiles
import PTModel
import PTrain
import PTTensor
import SwiftProtobuf

/// An export error: one line naming the file, or the layer that has no ONNX form.
public struct ONNXExportError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// What an export wrote.
public struct ONNXExportSummary: Sendable, Equatable {
    /// Operators in the graph, and their kinds with counts ("Conv": 2, …).
    public var nodes: Int
    public var operators: [String: Int]
    /// Trained values stored (parameters and running statistics).
    public var values: Int
    /// The input's dimensions after the batch dimension ([C, H, W], or [C, W] for 1-D models).
    public var inputDimensions: [Int]
    public var classes: Int
    public var bytes: Int
}

public enum ONNXExport {
    /// The operator set the graph is written for (that of ONNX 1.12), and the matching IR version.
    public static let opset = 17
    public static let irVersion = 8
    public static let inputName = "input"
    public static let outputName = "logits"

    /// The samples a model of `config` takes: `model.input`, or the X/O generator's size.
    /// `given` (the command's `--input-shape`) wins when the config names no input.
    public static func inputShape(_ config: TrainConfig, given: Shape? = nil) throws -> Shape {
        if let input = config.input {
            if let given, given != input {
                throw ONNXExportError("--input-shape \(given) differs from the config's model.input \(input)")
            }
            return input
        }
        if let given { return given }
        if config.data.source == .xo { return Shape(channels: 1, height: config.data.size, width: config.data.size) }
        throw ONNXExportError("the config has no model.input; give the sample shape with --input-shape CxHxW")
    }

    /// The model of `config` for samples of `input`, with the weights (parameters and running
    /// statistics) of the safetensors file `weights`, as ONNX file bytes.
    public static func encode(weights: String, config: TrainConfig, input: Shape) throws -> (bytes: [UInt8], summary: ONNXExportSummary) {
        let model = try Model(input: input, layers: config.layers, maxBatch: 1)
        let parameters = AlignedBuffer(count: model.parameterCount)
        let state = AlignedBuffer(count: max(1, model.stateCount))
        model.initializeState(state)
        try Safetensors.load(model: model, into: parameters, state: state, from: weights)
        return try encode(model: model, parameters: parameters, state: state, config: config)
    }

    /// `model` with `parameters` and `state` as ONNX file bytes; `config` gives the metadata.
    public static func encode(model: Model, parameters: AlignedBuffer, state: AlignedBuffer,
                              config: TrainConfig) throws -> (bytes: [UInt8], summary: ONNXExportSummary) {
        var translator = GraphTranslator(model: model, parameters: parameters.pointer, state: state.pointer)
        try translator.translate()

        let oneD = model.inputShape.height == 1
        let inputDims = oneD ? [model.inputShape.channels, model.inputShape.width]
                             : [model.inputShape.channels, model.inputShape.height, model.inputShape.width]
        var graph = Onnx_GraphProto()
        graph.name = config.name
        graph.node = translator.graph.nodes
        graph.initializer = translator.graph.initializers
        graph.input = [valueInfo(inputName, dims: inputDims, doc: "samples after ptrain's preprocessing (metadata ptrain.preprocessing)")]
        graph.output = [valueInfo(outputName, dims: [model.classes], doc: "class scores before softmax")]

        var file = Onnx_ModelProto()
        file.irVersion = Int64(irVersion)
        var opsetID = Onnx_OperatorSetIdProto()
        opsetID.domain = ""
        opsetID.version = Int64(opset)
        file.opsetImport = [opsetID]
        file.producerName = "ptrain"
        file.producerVersion = PTrainVersion.current
        file.docString = "ptrain model '\(config.name)': input \(inputName) [N, \(inputDims.map(String.init).joined(separator: ", "))] "
            + "(float32, after ptrain's preprocessing), output \(outputName) [N, \(model.classes)]"
        file.graph = graph
        file.metadataProps = metadata(config: config, model: model).map { key, value in
            var entry = Onnx_StringStringEntryProto()
            entry.key = key
            entry.value = value
            return entry
        }
        let bytes: [UInt8] = try file.serializedBytes()
        var operators: [String: Int] = [:]
        for node in graph.node { operators[node.opType, default: 0] += 1 }
        let values = model.parameterTensors.reduce(0) { $0 + $1.count } + model.stateTensors.reduce(0) { $0 + $1.count }
        return (bytes, ONNXExportSummary(nodes: graph.node.count, operators: operators, values: values,
                                         inputDimensions: inputDims, classes: model.classes, bytes: bytes.count))
    }

    /// Writes the ONNX file of `weights` and `config` to `path` atomically (temporary file, fsync,
    /// rename): a reader never sees a partial file, and an earlier file stays whole on failure.
    @discardableResult
    public static func export(weights: String, config: TrainConfig, input: Shape, to path: String) throws -> ONNXExportSummary {
        let (bytes, summary) = try encode(weights: weights, config: config, input: input)
        try AtomicFile.write(bytes, to: path)
        return summary
    }

    /// The file's `metadata_props`: what a user needs to feed the model without its config.
    public static func metadata(config: TrainConfig, model: Model) -> [(String, String)] {
        let data = config.data
        let mean = data.mean ?? 0, std = data.std ?? 1
        let shape = model.inputShape
        let dims = shape.height == 1 ? [shape.channels, shape.width] : [shape.channels, shape.height, shape.width]
        let divisor = rawDivisor(data.source)
        var steps = ["x = stored value / \(divisor.text)"]
        if data.mean != nil || data.std != nil { steps.append("x = (x - \(mean)) / \(std)") }
        if data.zNormalize { steps.append("each channel of each sample to zero mean and unit variance over its length (constant: 0)") }
        return [
            ("ptrain.version", PTrainVersion.current),
            ("ptrain.config", config.name),
            ("ptrain.classes", String(model.classes)),
            ("ptrain.input_shape", dims.map(String.init).joined(separator: ",")),
            ("ptrain.input_layout", shape.height == 1 ? "NCW" : "NCHW"),
            ("ptrain.data_source", data.source.rawValue),
            ("ptrain.preprocessing", steps.joined(separator: "; ")),
            ("ptrain.preprocessing.divisor", divisor.value),
            ("ptrain.preprocessing.mean", "\(mean)"),
            ("ptrain.preprocessing.std", "\(std)"),
            ("ptrain.preprocessing.z_normalize", data.zNormalize ? "true" : "false"),
        ]
    }

    /// How a source's readers scale stored values before the config's normalisation: the number,
    /// or a rule where it depends on the file.
    static func rawDivisor(_ source: DataConfig.Source) -> (value: String, text: String) {
        switch source {
        case .idx, .cifar10, .images: return ("255", "255 (unsigned bytes)")
        case .fsdd: return ("32768", "32768 (16-bit audio, then minus the clip's mean)")
        case .xo, .ucr: return ("1", "1 (values as generated or stored)")
        case .npy: return ("255 for unsigned-byte files, 1 for numbers", "255 for unsigned-byte .npy files, 1 for numbers")
        case .packed: return ("the packed file's divisor", "the divisor the packed file records")
        }
    }

    static func valueInfo(_ name: String, dims: [Int], doc: String) -> Onnx_ValueInfoProto {
        var shape = Onnx_TensorShapeProto()
        var batch = Onnx_TensorShapeProto.Dimension()
        batch.dimParam = "N"
        shape.dim = [batch] + dims.map { d in
            var dim = Onnx_TensorShapeProto.Dimension()
            dim.dimValue = Int64(d)
            return dim
        }
        var tensor = Onnx_TypeProto.Tensor()
        tensor.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
        tensor.shape = shape
        var type = Onnx_TypeProto()
        type.tensorType = tensor
        var info = Onnx_ValueInfoProto()
        info.name = name
        info.type = type
        info.docString = doc
        return info
    }
}
