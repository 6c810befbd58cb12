// The command-line tool as a user runs it: the default job, summary, help, and bad input that
// must end in one line naming the file, key or layer and a non-zero exit.
import XCTest

final class CommandLineTests: XCTestCase {
    /// Acceptance of the core issue: `ptrain --output DIR` trains X/O to 100% test accuracy and leaves
    /// the run folder (config, metrics, weights).
    func testDefaultJobReachesFullAccuracyAndWritesTheRunFolder() throws {
        let dir = TestSupport.temporaryDirectory()
        let run = try TestSupport.ptrain(["--output", dir.path, "--threads", "1"])
        XCTAssertEqual(run.status, 0, run.stderr)
        for file in ["config.yaml", "metrics.jsonl", "model.safetensors"] {
            XCTAssertTrue(FileManager.default.fileExists(atPath: dir.appendingPathComponent(file).path), "\(file) missing")
        }
        let lines = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8)
            .split(separator: "\n").map { try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any] }
        XCTAssertEqual(lines.first?["event"] as? String, "start")
        let epochs = lines.filter { $0["event"] as? String == "epoch" }
        XCTAssertEqual(epochs.count, 8)
        for key in ["epoch", "train_loss", "test_loss", "test_accuracy", "images_per_sec", "seconds"] {
            XCTAssertNotNil(epochs[0][key], "epoch record lacks \(key)")
        }
        let done = try XCTUnwrap(lines.last)
        XCTAssertEqual(done["event"] as? String, "done")
        XCTAssertEqual(done["test_accuracy"] as? Double, 1.0, "the X/O job must end at 100% test accuracy")
    }

    /// More threads than shards: one warning line saying how many stay idle and how to fix it;
    /// without --threads, the pool has one worker per shard at most.
    func testMoreThreadsThanShardsSaysSoInOneLine() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try TestSupport.smallXOConfig(dir, train: 200, test: 50, epochs: 1)   // 4 shards
        let run = try TestSupport.ptrain(["train", "--config", config, "--threads", "6", "--output", dir.appendingPathComponent("six").path, "-q"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let lines = run.stderr.split(separator: "\n").filter { $0.contains("shard") }
        XCTAssertEqual(lines.count, 1, run.stderr)
        XCTAssertTrue(lines[0].contains("6 threads but only 4 shards") && lines[0].contains("2 threads stay idle")
                      && lines[0].contains("--threads 4"), run.stderr)
        let plain = try TestSupport.ptrain(["train", "--config", config, "--output", dir.appendingPathComponent("default").path, "-q"])
        XCTAssertEqual(plain.status, 0, plain.stderr)
        XCTAssertFalse(plain.stderr.contains("shard"), plain.stderr)
        let start = try String(contentsOf: dir.appendingPathComponent("default/metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        let threads = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(start.utf8)) as? [String: Any])?["threads"] as? Int)
        XCTAssertLessThanOrEqual(threads, 4)
    }

    func testSummaryPrintsLayersAndTotals() throws {
        let run = try TestSupport.ptrain(["summary", "--config", "configs/lenet5-mnist.yaml"])
        XCTAssertEqual(run.status, 0, run.stderr)
        XCTAssertTrue(run.stdout.contains("conv1"), run.stdout)
        XCTAssertTrue(run.stdout.contains("16x5x5"), run.stdout)
        let total = run.stdout.split(separator: "\n").last!.split(separator: " ").map(String.init)
        XCTAssertEqual(total, ["total", "61706", "845852"], run.stdout)
    }

    func testHelpShowsExamplesAndExitCodes() throws {
        let run = try TestSupport.ptrain(["--help"])
        XCTAssertEqual(run.status, 0)
        XCTAssertTrue(run.stdout.contains("Exit codes"), run.stdout)
        let train = try TestSupport.ptrain(["train", "--help"])
        XCTAssertTrue(train.stdout.contains("--batch-size") && train.stdout.contains("Examples"), train.stdout)
    }

    /// Runs ptrain expecting failure: exit 1, nothing on stdout that looks like a crash, exactly one
    /// stderr line containing every string in `expected`.
    func expectFailure(_ args: [String], _ expected: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try TestSupport.ptrain(args)
        XCTAssertEqual(run.status, 1, "exit status; stderr: \(run.stderr)", file: file, line: line)
        let lines = run.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one line, got: \(run.stderr)", file: file, line: line)
        for e in expected { XCTAssertTrue(run.stderr.contains(e), "expected '\(e)' in: \(run.stderr)", file: file, line: line) }
    }

    func testBadInputGetsOneLineAndExitOne() throws {
        let lenet = "configs/lenet5-mnist.yaml"
        try expectFailure(["train", "--config", lenet, "--data", "/nonexistent/mnist"], ["/nonexistent/mnist"])
        try expectFailure(["train", "--config", "/nonexistent.yaml"], ["/nonexistent.yaml", "not found"])

        let dir = TestSupport.temporaryDirectory()
        // Not an IDX file.
        let notIDX = dir.appendingPathComponent("notidx")
        try FileManager.default.createDirectory(at: notIDX, withIntermediateDirectories: true)
        try TestSupport.writeTinyMNIST(notIDX)
        try Data("hello, this is text".utf8).write(to: notIDX.appendingPathComponent("train-images-idx3-ubyte"))
        try expectFailure(["train", "--config", lenet, "--data", notIDX.path], ["train-images-idx3-ubyte"])
        // Image and label counts differ.
        let counts = dir.appendingPathComponent("counts")
        try FileManager.default.createDirectory(at: counts, withIntermediateDirectories: true)
        try TestSupport.writeTinyMNIST(counts, train: 20, labelCount: 19)
        try expectFailure(["train", "--config", lenet, "--data", counts.path], ["train-labels-idx1-ubyte", "20", "19"])
        // A label outside the class count.
        let labels = dir.appendingPathComponent("labels")
        try FileManager.default.createDirectory(at: labels, withIntermediateDirectories: true)
        try TestSupport.writeTinyMNIST(labels, badLabel: 12)
        try expectFailure(["train", "--config", lenet, "--data", labels.path], ["train-labels-idx1-ubyte", "12"])
        // An unknown config key.
        let unknown = dir.appendingPathComponent("unknown.yaml")
        try Data(try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("configs/xo.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "  batch_size: 32", with: "  batch_sise: 32").utf8).write(to: unknown)
        try expectFailure(["train", "--config", unknown.path], [unknown.path, "training.batch_sise"])
        // A layer whose output would be empty.
        let empty = dir.appendingPathComponent("empty.yaml")
        try Data(try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("configs/xo.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "features: 16, size: 3, padding: 1", with: "features: 16, size: 9, padding: 0").utf8).write(to: empty)
        try expectFailure(["train", "--config", empty.path], ["conv2", "output would be empty"])
        // An output folder that cannot be created.
        let blocker = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: blocker)
        try expectFailure(["train", "--epochs", "1", "--output", blocker.path], [blocker.path, "not a folder"])
    }

    func testUsageErrorsExitWithUsageCode() throws {
        let run = try TestSupport.ptrain(["train", "--batch-size", "0"])
        XCTAssertEqual(run.status, 64, run.stderr)
        XCTAssertTrue(run.stderr.contains("--batch-size"), run.stderr)
    }

    /// `--format` is one checked word for every command that has it (text or json): anything else is
    /// a usage error naming the option and both words.
    func testFormatIsTextOrJSONEverywhere() throws {
        for command in [["eval", "--checkpoint", "x"], ["predict", "--checkpoint", "x", "--input", "y"], ["topo"], ["bench", "kernels"],
                        ["bench", "train"], ["bench", "scaling"]] {
            let run = try TestSupport.ptrain(command + ["--format", "xml"])
            XCTAssertEqual(run.status, 64, "\(command): \(run.stderr)")
            XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
            for part in ["--format", "xml", "text", "json"] { XCTAssertTrue(run.stderr.contains(part), "\(command): \(run.stderr)") }
        }
    }

    /// `taskset -c 1 ptrain train --threads 1` pins its worker to CPU 1 (the metrics' start record
    /// says where the worker ran); asking for more threads than allowed cores warns.
    func testTasksetBindsTheWorkerAndOversubscriptionWarns() throws {
        guard ProcessInfo.processInfo.activeProcessorCount >= 2,
              FileManager.default.isExecutableFile(atPath: "/usr/bin/taskset") else {
            throw XCTSkip("needs CPU 1 and taskset")
        }
        let dir = TestSupport.temporaryDirectory()
        let binary = TestSupport.productsDirectory.appendingPathComponent("ptrain").path
        let run = try TestSupport.run("/usr/bin/taskset", ["-c", "1", binary, "train", "--epochs", "1", "--threads", "1",
                                                           "--output", dir.path, "-q"])
        XCTAssertEqual(run.status, 0, run.stderr)
        let start = try String(contentsOf: dir.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        let object = try JSONSerialization.jsonObject(with: Data(start.utf8)) as! [String: Any]
        let placement = try XCTUnwrap(object["placement"] as? [[String: Int]])
        XCTAssertEqual(placement, [["worker": 0, "os_cpu": 1]])
        XCTAssertFalse(run.stderr.contains("warning"), run.stderr)

        let over = try TestSupport.run("/usr/bin/taskset", ["-c", "1", binary, "train", "--epochs", "1", "--threads", "2",
                                                            "--output", dir.appendingPathComponent("over").path, "-q"])
        XCTAssertEqual(over.status, 0, over.stderr)
        XCTAssertTrue(over.stderr.contains("warning") && over.stderr.contains("2 workers"), over.stderr)
    }

    func testEvalAndPredictUseACheckpoint() throws {
        let dir = TestSupport.temporaryDirectory()
        XCTAssertEqual(try TestSupport.ptrain(["train", "--epochs", "1", "--output", dir.path, "--checkpoint-every", "epoch", "-q"]).status, 0)
        let eval = try TestSupport.ptrain(["eval", "--checkpoint", dir.path])
        XCTAssertEqual(eval.status, 0, eval.stderr)
        XCTAssertTrue(eval.stdout.contains("accuracy") && eval.stdout.contains("confusion matrix"), eval.stdout)
        // A 2-sample IDX file of 16x16 bytes.
        let input = dir.appendingPathComponent("two.idx")
        try TestSupport.writeIDX(input, dims: [2, 16, 16], body: (0..<512).map { UInt8($0 % 256) })
        let predict = try TestSupport.ptrain(["predict", "--checkpoint", dir.path, "--input", input.path, "--format", "json"])
        XCTAssertEqual(predict.status, 0, predict.stderr)
        let lines = predict.stdout.split(separator: "\n")
        XCTAssertEqual(lines.count, 2, predict.stdout)
        let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
        let probabilities = try XCTUnwrap(first["probabilities"] as? [Double])
        XCTAssertEqual(probabilities.count, 2)
        XCTAssertEqual(probabilities.reduce(0, +), 1, accuracy: 1e-5)
        // A finished run without checkpoints: its final weights.
        let plain = dir.appendingPathComponent("plain")
        XCTAssertEqual(try TestSupport.ptrain(["train", "--epochs", "1", "--output", plain.path, "-q"]).status, 0)
        let final = try TestSupport.ptrain(["eval", "--checkpoint", plain.path])
        XCTAssertEqual(final.status, 0, final.stderr)
        XCTAssertTrue(final.stdout.contains("final weights") && final.stdout.contains("accuracy"), final.stdout)
        // Input of the wrong shape: one line.
        try TestSupport.writeIDX(input, dims: [2, 28, 28], body: [UInt8](repeating: 0, count: 2 * 784))
        try expectFailure(["predict", "--checkpoint", dir.path, "--input", input.path], ["1x28x28"])
    }
}
