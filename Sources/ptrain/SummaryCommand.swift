// `ptrain summary`: each layer, its output shape, parameter count and forward FLOPs per sample.
import ArgumentParser
import Foundation
import PTModel
import PTTensor
import PTrain

struct Summary: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary",
        abstract: "Print each layer with its inputs, output shape, parameters and forward FLOPs per sample.",
        discussion: """
            FLOPs count 2 per multiply-add (convolution, dense) and 1 per compare (pooling, ReLU) or
            add. The "from" column lists a layer's inputs when they are not just the previous layer
            (branches, residual sums, concatenations).

            --keys prints every config key instead (section keys and layer keys, with type, default,
            allowed values and meaning): the table in README.md, generated from the config schema.

            Examples:
              ptrain summary --config configs/lenet5-mnist.yaml
              ptrain summary --keys
            """)

    @OptionGroup var configOptions: ConfigOptions
    @Flag(help: "Print every config key as a markdown table instead (README.md's key list).") var keys = false

    func run() throws {
        if keys {
            print(TrainConfig.keyTable, terminator: "")
            return
        }
        reportingErrors {
            let config = try configOptions.load()
            let input: Shape
            if let given = config.input {
                input = given
            } else if config.data.source == .xo {
                input = Shape(channels: 1, height: config.data.size, width: config.data.size)
            } else {
                throw ConfigError("\(configOptions.config ?? "config"): model.input: needed for a summary (channels, height, width)")
            }
            let model = try Model(input: input, layers: config.layers, maxBatch: 1)
            print(Summary.table(model))
        }
    }

    static func table(_ model: Model) -> String {
        var rows: [[String]] = [["layer", "kind", "from", "output", "parameters", "FLOPs/sample"]]
        rows.append(["input", "", "", model.inputShape.description, "", ""])
        for (i, layer) in model.layers.enumerated() {
            let from = model.inputs[i] == [i] ? "" : model.inputNames(i).joined(separator: ", ")
            rows.append([layer.name, layer.summary, from, layer.outputShape.description, String(layer.parameterCount),
                         String(layer.flopsPerSample)])
        }
        rows.append(["total", "", "", "", String(model.trainableCount), String(model.flopsPerSample)])
        let widths = (0..<6).map { c in rows.map { $0[c].count }.max()! }
        func format(_ row: [String]) -> String {
            row.enumerated().map { c, cell in
                let pad = String(repeating: " ", count: widths[c] - cell.count)
                return c >= 4 ? pad + cell : cell + pad
            }.joined(separator: "  ")
        }
        let rule = String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))
        var lines = [format(rows[0]), rule]
        lines += rows.dropFirst().dropLast().map(format)
        lines += [rule, format(rows.last!)]
        return lines.joined(separator: "\n")
    }
}
