// Checkpoints: a folder per saved step with the weights and the optimizer state (safetensors) and
// a JSON manifest (resolved config, position, records, a checksum per file). The folder is built
// under a temporary name and renamed into place, so a checkpoint is either whole or absent.
import CZlib
import Foundation
import PTModel
import PTTensor

/// What a checkpoint's manifest.json holds.
public struct CheckpointManifest: Codable, Equatable {
    public var format = "ptrain-checkpoint"
    public var version = 1
    /// The resolved config as YAML (the same text as the run folder's config.yaml).
    public var config: String
    public var progress: TrainingProgress
    /// Random state: data order and initialisation are pure functions of (seed, epoch), so the seed
    /// and the position are the whole generator state.
    public var rng: RNGState
    /// File name -> size and CRC-32 of each data file in the checkpoint.
    public var files: [String: FileSum]

    public struct RNGState: Codable, Equatable {
        public var generator = "xoshiro256** seeded by splitmix64(seed ^ stream)"
        public var seed: UInt64
        public var shuffleStream: String
    }

    public struct FileSum: Codable, Equatable {
        public var bytes: Int
        public var crc32: UInt32
    }
}

public enum Checkpoint {
    public static let weightsFile = "model.safetensors"
    public static let optimizerFile = "optimizer.safetensors"
    public static let manifestFile = "manifest.json"

    static func crc32(_ bytes: [UInt8]) -> UInt32 {
        bytes.withUnsafeBufferPointer { buffer -> UInt32 in
            var crc: uLong = CZlib.crc32(0, nil, 0)
            var offset = 0
            while offset < buffer.count {
                let n = min(1 << 30, buffer.count - offset)
                crc = CZlib.crc32(crc, buffer.baseAddress! + offset, uInt(n))
                offset += n
            }
            return UInt32(truncatingIfNeeded: crc)
        }
    }

    /// The folder name of the checkpoint at `globalStep`.
    public static func folderName(step: Int) -> String { String(format: "step-%09d", step) }

    /// Saves the trainer's state under `directory/step-NNNNNNNNN`, then deletes all but the newest
    /// `keep` checkpoints (0 keeps all). Returns the new checkpoint's path.
    @discardableResult
    public static func save(_ trainer: Trainer, to directory: String, keep: Int) throws -> String {
        try makeDirectory(directory)
        let name = folderName(step: trainer.progress.globalStep)
        let final = "\(directory)/\(name)"
        let staging = "\(directory)/.\(name).tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: staging)
        try makeDirectory(staging)
        do {
            let model = trainer.model
            let weights = Safetensors.encode(model.parameterTensors.map {
                (name: $0.name, shape: $0.shape, data: UnsafePointer(trainer.parameters.pointer + $0.offset)) },
                metadata: ["format": "pt", "producer": "ptrain"])
            let optimizer = Safetensors.encode(model.parameterTensors.map {
                (name: "\($0.name).momentum_buffer", shape: $0.shape, data: UnsafePointer(trainer.velocity.pointer + $0.offset)) },
                metadata: ["optimizer": "sgd"])
            try AtomicFile.write(weights, to: "\(staging)/\(weightsFile)")
            try AtomicFile.write(optimizer, to: "\(staging)/\(optimizerFile)")
            let manifest = CheckpointManifest(
                config: trainer.config.yaml, progress: trainer.progress,
                rng: .init(seed: trainer.config.seed, shuffleStream: "epochPermutation(seed, epoch)"),
                files: [weightsFile: .init(bytes: weights.count, crc32: crc32(weights)),
                        optimizerFile: .init(bytes: optimizer.count, crc32: crc32(optimizer))])
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try AtomicFile.write([UInt8](try encoder.encode(manifest)), to: "\(staging)/\(manifestFile)")
            if FileManager.default.fileExists(atPath: final) { try FileManager.default.removeItem(atPath: final) }
            guard rename(staging, final) == 0 else {
                throw FileError("\(final): cannot move the checkpoint into place: \(String(cString: strerror(errno)))")
            }
            syncDirectory(directory)
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            throw error
        }
        if keep > 0 {
            let all = list(directory)
            for old in all.dropLast(keep) { try? FileManager.default.removeItem(atPath: "\(directory)/\(old)") }
        }
        return final
    }

    /// Checkpoint folder names in `directory`, oldest first.
    public static func list(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("step-") }.sorted()
    }

    /// A checkpoint folder, or a folder of checkpoints (the newest complete one is taken).
    public static func resolve(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
            throw FileError("\(path): checkpoint folder not found")
        }
        if FileManager.default.fileExists(atPath: "\(path)/\(manifestFile)") { return path }
        for candidate in [path, "\(path)/checkpoints"] {
            if let newest = list(candidate).last { return "\(candidate)/\(newest)" }
        }
        throw FileError("\(path): no checkpoint here (no \(manifestFile) and no step-* folders)")
    }

    /// Reads and verifies a checkpoint's manifest and files (sizes and CRC-32).
    public static func readManifest(_ folder: String) throws -> CheckpointManifest {
        let path = "\(folder)/\(manifestFile)"
        guard let data = FileManager.default.contents(atPath: path) else { throw FileError("\(path): cannot read the manifest") }
        let manifest: CheckpointManifest
        do {
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: data)
        } catch {
            throw FileError("\(path): not a valid ptrain checkpoint manifest (truncated or corrupted?)")
        }
        guard manifest.format == "ptrain-checkpoint", manifest.version == 1 else {
            throw FileError("\(path): unsupported checkpoint format \(manifest.format) version \(manifest.version)")
        }
        for (name, sum) in manifest.files.sorted(by: { $0.key < $1.key }) {
            let file = "\(folder)/\(name)"
            guard let bytes = FileManager.default.contents(atPath: file) else { throw FileError("\(file): missing from the checkpoint") }
            guard bytes.count == sum.bytes else {
                throw FileError("\(file): has \(bytes.count) bytes, the manifest says \(sum.bytes) (truncated or replaced?)")
            }
            guard crc32([UInt8](bytes)) == sum.crc32 else { throw FileError("\(file): checksum mismatch (corrupted)") }
        }
        return manifest
    }

    /// The config stored in a checkpoint.
    public static func config(of manifest: CheckpointManifest, folder: String) throws -> TrainConfig {
        try TrainConfig.parse(yaml: manifest.config, file: "\(folder)/\(manifestFile) (config)")
    }

    /// Loads weights, optimizer state and position into a trainer built from the checkpoint's config.
    public static func restore(_ trainer: Trainer, from folder: String, manifest: CheckpointManifest) throws {
        try Safetensors.load(model: trainer.model, into: trainer.parameters, from: "\(folder)/\(weightsFile)")
        let path = "\(folder)/\(optimizerFile)"
        guard let data = FileManager.default.contents(atPath: path) else { throw FileError("\(path): cannot read file") }
        let (tensors, _) = try Safetensors.decode([UInt8](data), file: path)
        let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for p in trainer.model.parameterTensors {
            guard let t = byName["\(p.name).momentum_buffer"], t.shape == p.shape else {
                throw FileError("\(path): momentum buffer of '\(p.name)' is missing or has the wrong shape")
            }
            t.values.withUnsafeBufferPointer { (trainer.velocity.pointer + p.offset).update(from: $0.baseAddress!, count: p.count) }
        }
        try trainer.restore(manifest.progress)
    }
}

/// fsync of a folder, so that a rename inside it survives a crash.
func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 { fsync(fd); close(fd) }
}
