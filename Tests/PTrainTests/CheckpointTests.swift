// Kill-and-resume: a run resumed from a checkpoint at any step, with the same or another thread
// count, ends with the same weights and metrics (timings aside) as the uninterrupted run.
import XCTest
import PTrain

final class CheckpointTests: XCTestCase {
    /// A small X/O job: 600 samples, batch 40 (15 steps per epoch), 3 epochs = 45 steps.
    func writeConfig(_ dir: URL, train: Int = 600, epochs: Int = 3) throws -> String {
        try TestSupport.smallXOConfig(dir, train: train, test: 100, epochs: epochs, batchSize: 40)
    }

    /// The metrics records without timings.
    func records(_ runFolder: URL) throws -> [[String: String]] {
        try String(contentsOf: runFolder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap { line in
            let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
            guard let event = object["event"] as? String, event == "epoch" || event == "done" else { return nil }
            return object.filter { !["images_per_sec", "seconds"].contains($0.key) }.mapValues { "\($0)" }
        }
    }

    func weights(_ runFolder: URL) throws -> Data { try Data(contentsOf: runFolder.appendingPathComponent("model.safetensors")) }

    func testResumeAtThreeStepsWithSameAndOtherThreadCounts() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try writeConfig(dir)
        let full = dir.appendingPathComponent("full")
        let run = try TestSupport.ptrain(["train", "--config", config, "--output", full.path, "--threads", "2",
                                          "--checkpoint-every", "1", "--keep-checkpoints", "0", "-q"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let reference = try weights(full), referenceRecords = try records(full)
        XCTAssertEqual(referenceRecords.count, 4)
        for step in [7, 15, 31] {
            for threads in [2, 1, 3] {
                let out = dir.appendingPathComponent("resume-\(step)-\(threads)")
                let checkpoint = full.appendingPathComponent("checkpoints/" + Checkpoint.folderName(step: step))
                let resumed = try TestSupport.ptrain(["train", "--resume", checkpoint.path, "--output", out.path,
                                                      "--threads", String(threads), "-q"])
                XCTAssertEqual(resumed.status, 0, resumed.stderr)
                XCTAssertEqual(try weights(out), reference, "weights differ after resuming at step \(step) with \(threads) threads")
                XCTAssertEqual(try records(out), referenceRecords, "metrics differ after resuming at step \(step) with \(threads) threads")
            }
        }
    }

    /// Starts a run in the background, waits until it has written a checkpoint, signals it, and
    /// resumes it; the result must equal an uninterrupted run.
    func interruptAndResume(signal: Int32, expectedStatus: Int32) throws {
        let dir = TestSupport.temporaryDirectory("signal\(signal)")
        let config = try writeConfig(dir, train: 4000, epochs: 2)
        let reference = dir.appendingPathComponent("reference")
        XCTAssertEqual(try TestSupport.ptrain(["train", "--config", config, "--output", reference.path, "--threads", "2", "-q"]).status, 0)

        let out = dir.appendingPathComponent("interrupted")
        let process = Process()
        process.executableURL = TestSupport.productsDirectory.appendingPathComponent("ptrain")
        process.arguments = ["train", "--config", config, "--output", out.path, "--threads", "2", "-q",
                             "--checkpoint-every", "10", "--keep-checkpoints", "2"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let checkpoints = out.appendingPathComponent("checkpoints")
        let deadline = Date().addingTimeInterval(60)
        while Checkpoint.list(checkpoints.path).isEmpty && process.isRunning && Date() < deadline { usleep(2_000) }
        XCTAssertTrue(process.isRunning, "the run finished before it could be interrupted; make it longer")
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        XCTAssertEqual(process.terminationReason == .uncaughtSignal ? -process.terminationStatus : process.terminationStatus, expectedStatus)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path),
                       "an interrupted run must not leave final weights")
        let resumed = try TestSupport.ptrain(["train", "--resume", out.path, "--threads", "1", "-q"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try weights(out), try weights(reference), "resumed weights differ from the uninterrupted run")
        XCTAssertEqual(try records(out), try records(reference))
    }

    func testSIGKILLThenResume() throws {
        try interruptAndResume(signal: SIGKILL, expectedStatus: -SIGKILL)
    }

    /// SIGTERM mid-epoch: the run finishes its step, writes a checkpoint and exits with status 3.
    func testSIGTERMWritesACheckpointThatResumesExactly() throws {
        try interruptAndResume(signal: SIGTERM, expectedStatus: 3)
    }

    func testCorruptedCheckpointIsRejectedWithOneLine() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try writeConfig(dir, epochs: 1)
        let out = dir.appendingPathComponent("run")
        XCTAssertEqual(try TestSupport.ptrain(["train", "--config", config, "--output", out.path, "--checkpoint-every", "epoch", "-q"]).status, 0)
        let folder = out.appendingPathComponent("checkpoints/" + Checkpoint.folderName(step: 15))
        let weightsFile = folder.appendingPathComponent("model.safetensors")
        var bytes = try Data(contentsOf: weightsFile)
        bytes[bytes.count - 3] ^= 0x40
        try bytes.write(to: weightsFile)
        let run = try TestSupport.ptrain(["train", "--resume", folder.path, "-q"])
        XCTAssertEqual(run.status, 1)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("model.safetensors") && run.stderr.contains("checksum"), run.stderr)
        try Data(bytes.prefix(100)).write(to: weightsFile)
        let truncated = try TestSupport.ptrain(["train", "--resume", folder.path, "-q"])
        XCTAssertTrue(truncated.stderr.contains("truncated"), truncated.stderr)
        let manifest = folder.appendingPathComponent("manifest.json")
        try Data("{\"format\": ".utf8).write(to: manifest)
        let broken = try TestSupport.ptrain(["train", "--resume", folder.path, "-q"])
        XCTAssertEqual(broken.status, 1)
        XCTAssertTrue(broken.stderr.contains("manifest.json"), broken.stderr)
    }

    /// A loss that stops being finite ends training with one line naming the step and where the
    /// NaN or infinity appeared; the checkpoints written before stay intact and loadable.
    func testNonFiniteLossStopsWithStepAndLayerAndKeepsCheckpoints() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try writeConfig(dir, epochs: 1)
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "  lr: 0.05", with: "  lr: 1e30")
        XCTAssertTrue(text.contains("lr: 1e30"))
        try Data(text.utf8).write(to: URL(fileURLWithPath: config))
        let out = dir.appendingPathComponent("run")
        let run = try TestSupport.ptrain(["train", "--config", config, "--output", out.path, "--checkpoint-every", "1",
                                          "--keep-checkpoints", "0", "-q"])
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("non-finite") && run.stderr.contains("global step"), run.stderr)
        XCTAssertTrue(run.stderr.contains(".weight") || run.stderr.contains(".bias") || run.stderr.contains("the loss"), run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        let saved = Checkpoint.list(out.appendingPathComponent("checkpoints").path)
        XCTAssertFalse(saved.isEmpty, "the checkpoints before the failure must remain")
        for name in saved {
            XCTAssertNoThrow(try Checkpoint.readManifest(out.appendingPathComponent("checkpoints/\(name)").path))
        }
    }

    /// Manifests written before the epoch's wall time was kept still load (it counts from 0).
    func testPositionWithoutWallTimeStillDecodes() throws {
        let old = #"{"epoch":1,"stepInEpoch":3,"globalStep":18,"epochLoss":1.5,"epochCorrect":40,"trainingNanoseconds":1000,"records":[]}"#
        let progress = try JSONDecoder().decode(TrainingProgress.self, from: Data(old.utf8))
        XCTAssertEqual(progress.globalStep, 18)
        XCTAssertEqual(progress.wallNanoseconds, 0)
        var current = progress
        current.wallNanoseconds = 7
        XCTAssertEqual(try JSONDecoder().decode(TrainingProgress.self, from: try JSONEncoder().encode(current)), current)
    }
}
