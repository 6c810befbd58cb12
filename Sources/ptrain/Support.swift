// Shared command-line pieces: options common to commands, and one-line error reporting.
import ArgumentParser
import Foundation
import PTKernels
import PTRuntime
import PTrain

/// Prints "ptrain: error: MESSAGE" to standard error and exits with code 1 (never a stack trace).
func fail(_ message: String) -> Never {
    // One line, always: a line break inside a message (from a file name or a value) is escaped.
    let line = message.replacingOccurrences(of: "\r", with: "\\r").replacingOccurrences(of: "\n", with: "\\n")
    FileHandle.standardError.write(Data("ptrain: error: \(line)\n".utf8))
    exit(1)
}

/// A precision this CPU cannot run: one line, exit code 2 (as a CPU without the requested level).
func failUnavailable(_ error: PrecisionUnavailable) -> Never {
    FileHandle.standardError.write(Data("ptrain: error: \(error)\n".utf8))
    exit(2)
}

extension Precision: ExpressibleByArgument {}

/// Prints a warning line to standard error.
func warn(_ message: String) {
    FileHandle.standardError.write(Data("ptrain: warning: \(message)\n".utf8))
}

/// Runs `body`, turning any error into one line and exit code 1.
func reportingErrors<T>(_ body: () throws -> T) -> T {
    do {
        return try body()
    } catch let error as ExitCode {
        exit(error.rawValue)
    } catch let error as PrecisionUnavailable {
        failUnavailable(error)
    } catch {
        fail("\(error)")
    }
}

/// `--format`: what a command that prints results prints (the same two words everywhere).
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    /// For people: tables and lines.
    case text
    /// For programs: JSON (`JSON.line`: one object per line, keys sorted).
    case json
}

/// The config a command works on: `--config FILE`, or the built-in default job.
struct ConfigOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("YAML config file (default: the built-in X/O job, same as configs/xo.yaml).", valueName: "file"))
    var config: String?

    func load() throws -> TrainConfig {
        if let config { return try TrainConfig.load(path: config) }
        return try TrainConfig.parse(yaml: defaultConfigYAML, file: "(built-in xo config)")
    }
}

/// Bounds of the options that size the run, checked in `validate()` so that an absurd value is a
/// usage error before any thread or buffer exists.
enum OptionBounds {
    /// `--threads N`: 1...WorkerPool.maximumWorkers.
    static func checkThreads(_ threads: Int?, option: String = "--threads") throws {
        guard let threads else { return }
        guard (1...WorkerPool.maximumWorkers).contains(threads) else {
            throw ValidationError("\(option) must be between 1 and \(WorkerPool.maximumWorkers), got \(threads)")
        }
    }

    /// `--shards N`: 1...TrainConfig.maximumShards.
    static func checkShards(_ shards: Int?) throws {
        guard let shards else { return }
        guard (1...TrainConfig.maximumShards).contains(shards) else {
            throw ValidationError("--shards must be between 1 and \(TrainConfig.maximumShards), got \(shards)")
        }
    }
}
