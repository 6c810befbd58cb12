// Checkpoints: a folder per saved step with the weights and the optimizer state (safetensors) and
// a JSON manifest (resolved config, position, records, a checksum per file). The folder is built
// under a temporary name and renamed into place, so a checkpoint is either whole or absent.
import CZlib
import Foundation
import PTFiles
import PTKernels
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
    /// The bf16 unit of a bf16 run ("avx512bf16", "amx"; absent for fp32 and older checkpoints): the
    /// two units add in different orders, so a resume on the other one leaves these bits.
    public var bf16Unit: String? = nil

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
    /// `keep` checkpoints (0 keeps all). Returns the new checkpoint's path. The checkpoint is built in a
    /// hidden staging folder and renamed into place: on failure (a full disk, say) the staging folder
    /// is removed, the earlier checkpoints are untouched, and the one-line error names the checkpoint.
    @discardableResult
    public static func save(_ trainer: Trainer, to directory: String, keep: Int) throws -> String {
        guard trainer.optimizerStateIsComplete else {
            throw FileError("\(directory): the optimizer state is spread over the ranks (sharded exchange); every rank calls Trainer.gatherOptimizerState() before a checkpoint is saved")
        }
        try makeDirectory(directory)
        let name = folderName(step: trainer.progress.globalStep)
        let final = "\(directory)/\(name)"
        let staging = "\(directory)/.\(name).tmp-\(getpid())"
        try? FileManager.default.removeItem(atPath: staging)
        do {
            try makeDirectory(staging)
            let model = trainer.model
            let weights = Safetensors.encode(Safetensors.modelTensors(model, parameters: trainer.parameters, state: trainer.state),
                                             metadata: ["format": "pt", "producer": "ptrain"])
            // Optimizer state, one tensor per parameter and state buffer: "conv1.weight.momentum_buffer"
            // (SGD), "conv1.weight.exp_avg" and "conv1.weight.exp_avg_sq" (Adam).
            let optimizer = Safetensors.encode(trainer.optimizerState.buffers.flatMap { state in
                model.parameterTensors.map {
                    (name: "\($0.name).\(state.name)", shape: $0.shape, data: UnsafePointer(state.buffer.pointer + $0.offset)) }
            }, metadata: ["optimizer": trainer.config.optimizer.rawValue])
            try AtomicFile.write(weights, to: "\(staging)/\(weightsFile)")
            try AtomicFile.write(optimizer, to: "\(staging)/\(optimizerFile)")
            let manifest = CheckpointManifest(
                config: trainer.config.yaml, progress: trainer.progress,
                rng: .init(seed: trainer.config.seed, shuffleStream: "epochPermutation(seed, epoch)"),
                files: [weightsFile: .init(bytes: weights.count, crc32: crc32(weights)),
                        optimizerFile: .init(bytes: optimizer.count, crc32: crc32(optimizer))],
                bf16Unit: trainer.config.precision == .bf16 ? InstructionSet.bf16Unit?.rawValue : nil)
            try AtomicFile.write(try JSON.bytes(manifest, pretty: true), to: "\(staging)/\(manifestFile)")
            // A checkpoint of the same step (a rerun) is moved aside, not deleted, until the new one is in place.
            let aside = "\(directory)/.\(name).old-\(getpid())"
            var movedAside = false
            if FileManager.default.fileExists(atPath: final) {
                try? FileManager.default.removeItem(atPath: aside)
                guard rename(final, aside) == 0 else {
                    throw FileError("cannot move the earlier \(name) aside: \(String(cString: strerror(errno)))")
                }
                movedAside = true
            }
            guard rename(staging, final) == 0 else {
                let why = String(cString: strerror(errno))
                if movedAside { rename(aside, final) }
                throw FileError("cannot move the checkpoint into place: \(why)")
            }
            syncDirectory(directory)
            if movedAside { try? FileManager.default.removeItem(atPath: aside) }
        } catch {
            try? FileManager.default.removeItem(atPath: staging)
            let kept = list(directory).last.map { "; the newest complete checkpoint, \(directory)/\($0), is intact" } ?? ""
            let cause = "\(error)".replacingOccurrences(of: "\(staging)/", with: "")
            throw FileError("\(final): cannot save the checkpoint: \(cause)\(kept)")
        }
        if keep > 0 {
            let all = list(directory)
            for old in all.dropLast(keep) { try? FileManager.default.removeItem(atPath: "\(directory)/\(old)") }
        }
        return final
    }

    /// Creates the checkpoint folder `directory` (and its parents) if needed and checks that it is a
    /// writable folder, so that a run can fail at start-up, before training, with a one-line error.
    public static func prepareDirectory(_ directory: String) throws {
        try makeDirectory(directory)
    }

    /// Checkpoint folder names in `directory`, oldest first.
    public static func list(_ directory: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("step-") }.sorted()
    }

    /// A checkpoint folder, or a folder of checkpoints (the newest complete one is taken).
    public static func resolve(_ path: String) throws -> String {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FileError("\(path): checkpoint folder not found")
        }
        guard isDir.boolValue else { throw FileError("\(path): is a file; expected a checkpoint folder (or a run folder)") }
        if FileManager.default.fileExists(atPath: "\(path)/\(manifestFile)") { return path }
        for candidate in [path, "\(path)/checkpoints"] {
            if let newest = list(candidate).last { return "\(candidate)/\(newest)" }
        }
        throw FileError("\(path): no checkpoint here (no \(manifestFile) and no step-* folders)")
    }

    /// Reads and verifies a checkpoint's manifest and files (sizes and CRC-32): the format, a
    /// consistent position (no negative counts, one record per finished epoch), and both data files
    /// listed. One-line errors name the file.
    public static func readManifest(_ folder: String) throws -> CheckpointManifest {
        let path = "\(folder)/\(manifestFile)"
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue else {
            throw FileError("\(path): missing (not a checkpoint folder?)")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw FileError("\(path): cannot read the manifest") }
        let manifest: CheckpointManifest
        do {
            manifest = try JSONDecoder().decode(CheckpointManifest.self, from: data)
        } catch {
            throw FileError("\(path): not a valid ptrain checkpoint manifest (truncated or corrupted?)")
        }
        guard manifest.format == "ptrain-checkpoint", manifest.version == 1 else {
            throw FileError("\(path): unsupported checkpoint format \(JSON.string(manifest.format)) version \(manifest.version)")
        }
        let p = manifest.progress
        guard p.epoch >= 0, p.stepInEpoch >= 0, p.globalStep >= 0, p.epochCorrect >= 0, p.epochLoss.isFinite, p.epochLoss >= 0,
              p.records.count == p.epoch, p.records.enumerated().allSatisfy({ $0.element.epoch == $0.offset + 1 }) else {
            throw FileError("\(path): inconsistent position (epoch \(p.epoch), step \(p.stepInEpoch), global step \(p.globalStep), "
                + "\(p.records.count) epoch records; corrupted?)")
        }
        for required in [weightsFile, optimizerFile] where manifest.files[required] == nil {
            throw FileError("\(path): does not list \(required) (corrupted?)")
        }
        for (name, sum) in manifest.files.sorted(by: { $0.key < $1.key }) {
            guard [weightsFile, optimizerFile].contains(name) else {
                throw FileError("\(path): lists an unexpected file \(JSON.string(name)) (corrupted?)")
            }
            let file = "\(folder)/\(name)"
            guard let bytes = FileManager.default.contents(atPath: file) else { throw FileError("\(file): missing from the checkpoint") }
            guard bytes.count == sum.bytes else {
                throw FileError("\(file): has \(bytes.count) bytes, the manifest says \(sum.bytes) (truncated or replaced?)")
            }
            guard crc32([UInt8](bytes)) == sum.crc32 else { throw FileError("\(file): checksum mismatch (corrupted)") }
        }
        return manifest
    }

    /// The config of the checkpoint that `resolve(path)` finds, read without verifying its files
    /// (`readManifest` does that when the run is restored); nil when there is none to read.
    public static func peekConfig(_ path: String) -> TrainConfig? {
        guard let folder = try? resolve(path),
              let data = FileManager.default.contents(atPath: "\(folder)/\(manifestFile)"),
              let manifest = try? JSONDecoder().decode(CheckpointManifest.self, from: data) else { return nil }
        return try? config(of: manifest, folder: folder)
    }

    /// The newest checkpoint under `path` (a run folder, a folder of checkpoints or a checkpoint),
    /// or nil when there is none: what a resumable job passes as `TrainingSession.Options.resume`.
    public static func newest(in path: String) -> String? {
        try? resolve(path)
    }

    /// The config stored in a checkpoint.
    public static func config(of manifest: CheckpointManifest, folder: String) throws -> TrainConfig {
        try TrainConfig.parse(yaml: manifest.config, file: "\(folder)/\(manifestFile) (config)")
    }

    /// Loads weights, optimizer state and position into a trainer built from the checkpoint's config.
    public static func restore(_ trainer: Trainer, from folder: String, manifest: CheckpointManifest) throws {
        try Safetensors.load(model: trainer.model, into: trainer.parameters, state: trainer.state, from: "\(folder)/\(weightsFile)")
        let path = "\(folder)/\(optimizerFile)"
        let (tensors, _) = try Safetensors.decode(try Safetensors.readFile(path), file: path)
        let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        for state in trainer.optimizerState.buffers {
            for p in trainer.model.parameterTensors {
                guard let t = byName["\(p.name).\(state.name)"], t.shape == p.shape else {
                    throw FileError("\(path): optimizer state '\(p.name).\(state.name)' is missing or has the wrong shape")
                }
                t.values.withUnsafeBufferPointer { (state.buffer.pointer + p.offset).update(from: $0.baseAddress!, count: p.count) }
            }
        }
        do { try trainer.restore(manifest.progress) } catch {
            throw FileError("\(folder)/\(manifestFile): \(error)")
        }
    }
}
