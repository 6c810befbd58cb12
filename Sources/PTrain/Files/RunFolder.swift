// The run folder: config.yaml (resolved), metrics.jsonl (one JSON object per line), model.safetensors.
import Foundation
import PTFiles
import PTModel
import PTTensor

/// The metrics file: one JSON object per line. It is created (or, on resume, rewritten with the
/// records of the finished epochs) under a temporary name and renamed into place; after that each
/// new line is appended and fsynced, so a killed run keeps every finished record.
public final class MetricsWriter {
    let path: String
    let handle: FileHandle

    /// Creates (replaces) the file with `lines`, one JSON object each.
    public init(path: String, lines: [String] = []) throws {
        let dir = (path as NSString).deletingLastPathComponent
        if !dir.isEmpty { try makeDirectory(dir) }
        do {
            try AtomicFile.write(lines.map { $0 + "\n" }.joined(), to: path)
        } catch {
            throw FileError("\(path): cannot create the metrics file: \(error)")
        }
        guard let h = FileHandle(forWritingAtPath: path) else { throw FileError("\(path): cannot open the metrics file") }
        h.seekToEndOfFile()
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

/// The lines of metrics.jsonl, written through `Codable`.
public enum MetricsLine {
    public struct Placement: Codable, Equatable, Sendable {
        public var worker: Int
        public var os_cpu: Int
    }

    /// The first line of a run.
    public struct Start: Codable, Equatable, Sendable {
        public var event = "start"
        public var config: String
        public var processes: Int
        public var threads: Int
        public var shards: Int
        public var batch_size: Int
        public var parameters: Int
        public var train_samples: Int
        public var test_samples: Int
        public var resumed_at_step: Int
        /// The kernels' instruction-set level (`avx512`, `avx2`, `baseline`).
        public var instruction_set: String
        /// The bf16 unit of this process (`avx512bf16`), or nil when it has none.
        public var bf16_unit: String?
        /// The precision of the convolution and dense products (`fp32`, `bf16`).
        public var precision: String
        public var placement: [Placement]
    }

    /// One line per epoch ("epoch") and the last line ("done").
    public struct Epoch: Codable, Equatable, Sendable {
        public var event: String
        public var epoch: Int
        public var train_loss: Double
        public var train_accuracy: Double
        public var test_loss: Double
        public var test_accuracy: Double
        public var images_per_sec: Double
        public var seconds: Double

        public init(_ r: EpochRecord, event: String) {
            self.event = event
            epoch = r.epoch
            train_loss = r.trainLoss
            train_accuracy = r.trainAccuracy
            test_loss = r.testLoss
            test_accuracy = r.testAccuracy
            images_per_sec = (r.imagesPerSecond * 10).rounded() / 10
            seconds = (r.seconds * 1000).rounded() / 1000
        }
    }

    /// One line of the metrics file (`JSON.line`): keys sorted, so the same record always gives the
    /// same text; non-finite numbers (a test loss that overflowed) as the strings "inf", "-inf", "nan".
    public static func json<T: Encodable>(_ value: T) -> String { JSON.line(value) }
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
    public var errorPlotPath: String { path + "/error.svg" }

    /// Writes loss.svg and error.svg: train against test, per epoch. The error rate (100% minus
    /// the accuracy) is plotted on a log scale, so 98% against 99.5% is as visible as 50% against 90%.
    public func writePlots(_ records: [EpochRecord], name: String) throws {
        let epochs = records.map { Double($0.epoch) }
        let loss = LinePlot(title: "\(name): loss per epoch", xLabel: "epoch", yLabel: "mean cross-entropy",
                            series: [.init(name: "train", points: Array(zip(epochs, records.map(\.trainLoss)))),
                                     .init(name: "test", points: Array(zip(epochs, records.map(\.testLoss))))])
        var error = LinePlot(title: "\(name): error rate per epoch", xLabel: "epoch", yLabel: "error rate (%, log scale)",
                             series: [.init(name: "train", points: Array(zip(epochs, records.map { (1 - $0.trainAccuracy) * 100 }))),
                                      .init(name: "test", points: Array(zip(epochs, records.map { (1 - $0.testAccuracy) * 100 })))])
        error.logarithmicY = true
        try AtomicFile.write(loss.svg(), to: lossPlotPath)
        try AtomicFile.write(error.svg(), to: errorPlotPath)
    }
}
