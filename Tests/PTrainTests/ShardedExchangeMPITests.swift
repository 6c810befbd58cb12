// The sharded exchange (distributed.exchange: reduce_scatter, the default) across real MPI ranks:
// identical weights for every ranks x threads layout, the bytes each rank sends, checkpoints of
// the sharded optimizer state, and a rank killed in the middle of an exchange. Needs a ptrain
// built with the trait MPI in PTRAIN_MPI_BINARY (see MPITests) and mpirun; skipped otherwise.
import XCTest
import PTrain

final class ShardedExchangeMPITests: XCTestCase {
    var launcher: MPILauncher!

    override func setUpWithError() throws {
        launcher = try MPILauncher.find()
    }

    /// The small X/O model with batch normalisation and dropout, 8 shards (1, 2 or 4 per rank for 8,
    /// 4, 2 ranks), small buckets so that every layout runs several of them.
    func config(_ dir: URL, epochs: Int = 2, optimizer: String? = nil) throws -> String {
        try TestSupport.smallXOConfig(dir, train: 640, test: 100, epochs: epochs) {
            var text = $0.replacingOccurrences(of: "    - {type: relu}\n", with: "    - {type: batchnorm}\n    - {type: relu}\n")
                .replacingOccurrences(of: "    - {type: dense, neurons: 2}", with: "    - {type: dropout, rate: 0.2}\n    - {type: dense, neurons: 2}")
                .replacingOccurrences(of: "  shards: 4", with: "  shards: 8")
            if let optimizer { text = text.replacingOccurrences(of: "  type: sgd\n", with: "  type: \(optimizer)\n") }
            return text + "distributed:\n  exchange: reduce_scatter\n  bucket_kb: 4\n"
        }
    }

    func mpi(_ ranks: Int, _ arguments: [String], threads: Int = 1) throws -> TestSupport.Result {
        var options = ["-np", String(ranks)]
        if threads > 1 || ranks > 2 { options += ["--bind-to", "none"] }
        return try launcher.run(options, arguments + ["--threads", String(threads)])
    }

    func testSameWeightsForEveryRanksAndThreadsLayout() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try config(dir)
        XCTAssertTrue(try String(contentsOfFile: config, encoding: .utf8).contains("batchnorm"))
        let single = dir.appendingPathComponent("single")
        let one = try TestSupport.run(launcher.binary, ["train", "--config", config, "--threads", "2", "--output", single.path, "-q"])
        XCTAssertEqual(one.status, 0, one.stderr)
        let reference = try Data(contentsOf: single.appendingPathComponent("model.safetensors"))
        // (The exchange runs on into the next forward by default; once without that.)
        let backwardOnly = dir.appendingPathComponent("backward-only.yaml").path
        try (String(contentsOfFile: config, encoding: .utf8) + "  overlap_forward: false\n").write(toFile: backwardOnly, atomically: true, encoding: .utf8)
        for (ranks, threads, file) in [(2, 1, config), (2, 2, config), (4, 1, config), (8, 1, config), (2, 1, backwardOnly)] {
            let out = dir.appendingPathComponent("r\(ranks)x\(threads)-\(file == config ? "overlap" : "backward-only")")
            let run = try mpi(ranks, ["train", "--config", file, "--output", out.path, "-q"], threads: threads)
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(try Data(contentsOf: out.appendingPathComponent("model.safetensors")), reference,
                           "\(ranks) ranks x \(threads) threads (\(file == config ? "overlap into forward" : "backward only")) differ from one process")
        }
    }

    /// Each rank sends 2 (R-1)/R P floats per step (reduce-scatter, then all-gather), within 5%.
    func testBytesPerRankAreTwoRMinusOneOverRTimesTheParameters() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try config(dir)
        for ranks in [2, 4, 8] {
            let run = try mpi(ranks, ["bench", "train", "--config", config, "--steps", "2", "--windows", "1", "--warmup", "0",
                                      "--format", "json"])
            XCTAssertEqual(run.status, 0, run.stderr)
            guard let line = run.stdout.split(separator: "\n").first(where: { $0.hasPrefix("{") }),
                  let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let bytes = object["bytes_per_rank"] as? Double, let parameters = object["parameters"] as? Int else {
                return XCTFail("no bench result: \(run.stdout)")
            }
            let ideal = 2 * Double(ranks - 1) / Double(ranks) * Double(parameters) * 4
            XCTAssertEqual(object["processes"] as? Int, ranks)
            XCTAssertEqual(object["overlap_forward"] as? Bool, true, "Open MPI grants MPI_THREAD_MULTIPLE: the overlap into the forward is on")
            XCTAssertGreaterThan(object["buckets"] as? Int ?? 0, 1)
            XCTAssertLessThan(abs(bytes - ideal) / ideal, 0.05, "\(ranks) ranks: \(bytes) bytes per step, expected about \(ideal)")
        }
    }

    /// Checkpoints hold the whole optimizer state (gathered from the owners of its pieces), the same
    /// bytes as one process writes; resuming from one with 2 ranks ends with the same weights.
    func testCheckpointsGatherAndResumeScattersTheOptimizerState() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try config(dir, optimizer: "adam")
        let single = dir.appendingPathComponent("single"), ranks = dir.appendingPathComponent("ranks")
        let a = try TestSupport.run(launcher.binary, ["train", "--config", config, "--threads", "1", "--output", single.path, "-q",
                                             "--checkpoint-every", "epoch"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try mpi(2, ["train", "--config", config, "--output", ranks.path, "-q", "--checkpoint-every", "epoch"])
        XCTAssertEqual(b.status, 0, b.stderr)
        let names = try FileManager.default.contentsOfDirectory(atPath: single.appendingPathComponent("checkpoints").path)
            .filter { $0.hasPrefix("step-") }.sorted()
        XCTAssertEqual(names.count, 2)
        for name in names {
            for file in ["optimizer.safetensors", "model.safetensors"] {
                XCTAssertEqual(try Data(contentsOf: ranks.appendingPathComponent("checkpoints/\(name)/\(file)")),
                               try Data(contentsOf: single.appendingPathComponent("checkpoints/\(name)/\(file)")), "\(name)/\(file)")
            }
        }
        let resumed = dir.appendingPathComponent("resumed")
        let c = try mpi(2, ["train", "--resume", ranks.appendingPathComponent("checkpoints/\(names[0])").path, "--output", resumed.path, "-q"])
        XCTAssertEqual(c.status, 0, c.stderr)
        XCTAssertEqual(try Data(contentsOf: resumed.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: single.appendingPathComponent("model.safetensors")))
    }

    /// Gradients that stop being finite end the job with the same message as one process (the same
    /// layer, step and loss), although the ranks agree on a step's gradients only after the next
    /// step or at a drain; no weights are written.
    func testNonFiniteGradientsStopAtTheSameStepAsOneProcess() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try self.config(dir, epochs: 1)
        let text = try String(contentsOfFile: config, encoding: .utf8).replacingOccurrences(of: "  lr: 0.05", with: "  lr: 1e30")
        XCTAssertTrue(text.contains("lr: 1e30"))
        try Data(text.utf8).write(to: URL(fileURLWithPath: config))
        func message(_ stderr: String) -> String? {
            guard let start = stderr.range(of: "training stopped: ") else { return nil }
            return String(stderr[start.lowerBound...].prefix { $0 != "\n" })
        }
        let single = try TestSupport.run(launcher.binary, ["train", "--config", config, "--threads", "2", "--output",
                                                           dir.appendingPathComponent("single").path, "-q"])
        XCTAssertNotEqual(single.status, 0)
        let expected = try XCTUnwrap(message(single.stderr), single.stderr)
        XCTAssertTrue(expected.contains("non-finite") && expected.contains("global step"), expected)
        let out = dir.appendingPathComponent("ranks")
        let run = try mpi(2, ["train", "--config", config, "--output", out.path, "-q"])
        XCTAssertNotEqual(run.status, 0)
        XCTAssertEqual(message(run.stderr), expected, run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
    }

    /// SIGKILL of one rank while the exchange runs ends the whole job within 10 seconds. The model is
    /// mostly one large dense layer, the batch small and the buckets one layer each (1 KiB), so the
    /// exchange runs for nearly the whole step (`bench train` on this config: about 1 ms of exchange
    /// per 1 ms step) and the kill lands in the middle of one.
    func testKillingOneRankInTheMiddleOfAnExchangeEndsTheJob() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try TestSupport.smallXOConfig(dir, train: 8000, test: 100, epochs: 200, batchSize: 8) {
            $0.replacingOccurrences(of: "    - {type: dense, neurons: 32}", with: "    - {type: dense, neurons: 512}")
                .replacingOccurrences(of: "  shards: 4", with: "  shards: 2")
                + "distributed:\n  exchange: reduce_scatter\n  bucket_kb: 1\n"
        }
        let (seconds, status) = try launcher.killOneRankMidRun(config: config, dir: dir, settle: 500_000)
        XCTAssertLessThan(seconds, 10, "the job took \(seconds) s to end after one rank was killed")
        XCTAssertNotEqual(status, 0)
    }
}
