// The run folder: config.yaml (resolved), metrics.jsonl (one JSON object per line), model.safetensors.
import Foundation
import PTModel
import PTTensor

/// Appends one JSON object per line to a metrics file, flushing each line so that a killed run
/// keeps every finished record.
public final class MetricsWriter {
    let path: String
    let handle: FileHandle

    /// Creates (truncates) the file.
    public init(path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try makeDirectory(dir) }
        guard FileManager.default.createFile(atPath: path, contents: nil) else {
            throw FileError("\(path): cannot create the metrics file")
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw FileError("\(path): cannot open the metrics file") }
        self.path = path
        handle = h
    }

    public func write(_ jsonLine: String) throws {
        do {
            try handle.write(contentsOf: Data((jsonLine + "\n").utf8))
            try handle.synchronize()
        } catch {
            throw FileError("\(path): cannot write metrics: \(error.localizedDescription)")
        }
    }

    deinit { try? handle.close() }
}

/// A training run's output folder.
public struct RunFolder {
    public let path: String

    /// Creates the folder (and parents). Default location: runs/NAME-YYYYmmdd-HHMMSS.
    public init(path: String?, name: String) throws {
        if let path {
            self.path = path
        } else {
            let f = DateFormatter()
            f.locale = Locale(identifier: "en_US_POSIX")
            f.dateFormat = "yyyyMMdd-HHmmss"
            self.path = "runs/\(name)-\(f.string(from: Date()))"
        }
        try makeDirectory(self.path)
    }

    public var configPath: String { path + "/config.yaml" }
    public var metricsPath: String { path + "/metrics.jsonl" }
    public var weightsPath: String { path + "/model.safetensors" }

    public func writeConfig(_ config: TrainConfig) throws { try AtomicFile.write(config.yaml, to: configPath) }

    public func writeWeights(model: Model, parameters: AlignedBuffer, state: AlignedBuffer, config: TrainConfig) throws {
        try Safetensors.save(model: model, parameters: parameters, state: state, to: weightsPath,
                             metadata: ["format": "pt", "producer": "ptrain", "config": config.name])
    }

    public var lossPlotPath: String { path + "/loss.svg" }
    public var accuracyPlotPath: String { path + "/accuracy.svg" }

    /// Writes loss.svg and accuracy.svg: train against test, per epoch.
    public func writePlots(_ records: [EpochRecord], name: String) throws {
        let epochs = records.map { Double($0.epoch) }
        let loss = LinePlot(title: "\(name): loss per epoch", xLabel: "epoch", yLabel: "mean cross-entropy",
                            series: [.init(name: "train", points: Array(zip(epochs, records.map(\.trainLoss)))),
                                     .init(name: "test", points: Array(zip(epochs, records.map(\.testLoss))))])
        let accuracy = LinePlot(title: "\(name): accuracy per epoch", xLabel: "epoch", yLabel: "accuracy (%)",
                                series: [.init(name: "train", points: Array(zip(epochs, records.map { $0.trainAccuracy * 100 }))),
                                         .init(name: "test", points: Array(zip(epochs, records.map { $0.testAccuracy * 100 })))])
        try AtomicFile.write(loss.svg(), to: lossPlotPath)
        try AtomicFile.write(accuracy.svg(), to: accuracyPlotPath)
    }
}
