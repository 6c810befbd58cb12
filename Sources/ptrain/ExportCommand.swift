// `ptrain export`: trained weights as an ONNX file (docs/ONNX.md).
import ArgumentParser
import Foundation
import PTExport
import PTTensor
import PTrain

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Write a checkpoint's model as an ONNX file (inference form) for ONNX Runtime and other runtimes.",
        discussion: """
            The graph takes one input, `input`: float32 [N, C, H, W] ([N, C, W] for 1-D models) holding
            samples after ptrain's preprocessing (the file's metadata_props say which: divisor, mean,
            std, z_normalize), and gives one output, `logits` [N, classes]; softmax of the logits is
            what `ptrain predict` prints. Batch norm uses its running statistics, dropout is left
            out; training state and augmentation are not exported. The file appears only when
            complete (temporary file, then rename). Opset \(ONNXExport.opset), see docs/ONNX.md.

            Examples:
              ptrain export --checkpoint runs/lenet --output lenet.onnx
              ptrain export --checkpoint runs/lenet/checkpoints/step-000000938 --output lenet.onnx
            """)

    @Option(help: ArgumentHelp("Checkpoint folder, folder of checkpoints, or run folder (its newest checkpoint, or its final weights when it has none).", valueName: "dir"))
    var checkpoint: String
    @Option(help: ArgumentHelp("The ONNX file to write.", valueName: "file")) var output: String
    @Option(help: ArgumentHelp("Sample shape CxHxW (or CxW), for configs without model.input.", valueName: "shape"))
    var inputShape: String?
    @Flag(help: "Print nothing on success.") var quiet = false

    func validate() throws {
        guard !output.isEmpty else { throw ValidationError("--output must name a file") }
        if let inputShape, Self.parseShape(inputShape) == nil {
            throw ValidationError("--input-shape must be CxHxW or CxW with positive sizes, got '\(inputShape)'")
        }
    }

    static func parseShape(_ text: String) -> Shape? {
        let parts = text.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        guard parts.allSatisfy({ ($0 ?? 0) > 0 && $0! <= 1 << 20 }) else { return nil }
        switch parts.count {
        case 2: return Shape(channels: parts[0]!, height: 1, width: parts[1]!)
        case 3: return Shape(channels: parts[0]!, height: parts[1]!, width: parts[2]!)
        default: return nil
        }
    }

    func run() throws {
        reportingErrors {
            let trained = try openTrainedModel(checkpoint)
            let input = try ONNXExport.inputShape(trained.config, given: inputShape.flatMap(Self.parseShape))
            let summary = try ONNXExport.export(weights: trained.weights, config: trained.config, input: input, to: output)
            guard !quiet else { return }
            let operators = summary.operators.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            print("\(output): \(trained.label) as ONNX opset \(ONNXExport.opset), input [N, "
                  + summary.inputDimensions.map(String.init).joined(separator: ", ") + "], logits [N, \(summary.classes)]; "
                  + "\(summary.nodes) nodes (\(operators)), \(summary.values) values, \(summary.bytes) bytes")
        }
    }
}
