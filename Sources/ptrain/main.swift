// ptrain: the command-line tool. `ptrain` alone runs `ptrain train` with the built-in X/O job.
import ArgumentParser
import Foundation
import PTrain

/// The root command; `train` is the default subcommand.
struct PTrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ptrain",
        abstract: "Train convolutional neural networks on every core of a CPU.",
        discussion: """
            Examples:
              ptrain --threads 2                                  # the default job: X/O from the slides
              ptrain train --config configs/lenet5-mnist.yaml --data DIR --output runs/lenet
              ptrain summary --config configs/lenet5-mnist.yaml
              ptrain export --checkpoint runs/lenet --output lenet.onnx
              ptrain topo

            Exit codes: 0 success; 1 bad input, configuration or data, or training failed;
            2 the CPU lacks instructions the binary was built for; 3 stopped by a signal after writing
            a checkpoint; 128+N a second signal N; 64 wrong command-line usage.
            """,
        version: PTrainVersion.current,
        subcommands: [Train.self, Eval.self, Predict.self, Export.self, Summary.self, Topo.self, Bench.self, Pack.self],
        defaultSubcommand: Train.self)
}

// Usage errors (an unknown option, a value out of range) print one line and exit with 64; help
// and version requests print in full.
do {
    var command = try PTrainCommand.parseAsRoot()
    try command.run()
} catch {
    if PTrainCommand.exitCode(for: error) == .validationFailure {
        let message = PTrainCommand.message(for: error)
            .replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
        FileHandle.standardError.write(Data("ptrain: error: \(message) (see ptrain --help)\n".utf8))
        exit(ExitCode.validationFailure.rawValue)
    }
    PTrainCommand.exit(withError: error)
}
