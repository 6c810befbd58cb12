// Multi-process training through MPI on loopback. Needs a ptrain built with the trait MPI, named by
// PTRAIN_MPI_BINARY (.ci/run builds one into .build-mpi), and mpirun; skipped otherwise.
import XCTest
import PTrain

final class MPITests: XCTestCase {
    var launcher: MPILauncher!
    var binary: String { launcher.binary }
    var mpirun: String { launcher.mpirun }
    let environment = MPILauncher.environment

    override func setUpWithError() throws {
        launcher = try MPILauncher.find()
    }

    func smallConfig(_ dir: URL, train: Int = 600, epochs: Int = 2, edit: (String) -> String = { $0 }) throws -> String {
        try TestSupport.smallXOConfig(dir, train: train, test: 100, epochs: epochs, edit: edit)
    }

    /// The epoch records without timings.
    func records(_ folder: URL) throws -> [[String: String]] {
        try String(contentsOf: folder.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n").compactMap { line in
            let object = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            guard object["event"] as? String == "epoch" else { return nil }
            return object.filter { !["images_per_sec", "seconds"].contains($0.key) }.mapValues { "\($0)" }
        }
    }

    /// `--threads 2`, `mpirun -np 2 … --threads 1` and `mpirun -np 2 … --threads 2` give the same weights
    /// (with batch normalisation and dropout, whose statistics and noise also cross processes).
    func testSameWeightsInOneProcessAndAcrossRanks() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try smallConfig(dir) {
            $0.replacingOccurrences(of: "    - {type: relu}\n", with: "    - {type: batchnorm}\n    - {type: relu}\n")
              .replacingOccurrences(of: "    - {type: dense, neurons: 2}", with: "    - {type: dropout, rate: 0.2}\n    - {type: dense, neurons: 2}")
        }
        XCTAssertTrue(try String(contentsOfFile: config, encoding: .utf8).contains("batchnorm"))
        let single = dir.appendingPathComponent("single"), ranks = dir.appendingPathComponent("ranks")
        let ranksThreads = dir.appendingPathComponent("ranks-threads")
        let a = try TestSupport.run(binary, ["train", "--config", config, "--threads", "2", "--output", single.path, "-q"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try TestSupport.run(mpirun, ["-np", "2", binary, "train", "--config", config, "--threads", "1", "--output", ranks.path, "-q"],
                                    environment: environment)
        XCTAssertEqual(b.status, 0, b.stderr)
        let c = try TestSupport.run(mpirun, ["-np", "2", "--bind-to", "none", binary, "train", "--config", config, "--threads", "2",
                                             "--output", ranksThreads.path, "-q"], environment: environment)
        XCTAssertEqual(c.status, 0, c.stderr)
        let reference = try Data(contentsOf: single.appendingPathComponent("model.safetensors"))
        XCTAssertEqual(try Data(contentsOf: ranks.appendingPathComponent("model.safetensors")), reference, "2 ranks x 1 thread differ")
        XCTAssertEqual(try Data(contentsOf: ranksThreads.appendingPathComponent("model.safetensors")), reference, "2 ranks x 2 threads differ")
        XCTAssertEqual(try records(ranks), try records(single))
        XCTAssertEqual(try records(ranks).count, 2)
        // Only rank 0 printed its summary line.
        XCTAssertEqual(b.stdout.components(separatedBy: "ptrain: done").count - 1, 1, b.stdout)
    }

    /// SIGKILL of one rank ends the whole job within 10 seconds; nothing hangs.
    func testKillingOneRankEndsTheJob() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try smallConfig(dir, train: 8000, epochs: 200)
        let (seconds, status) = try launcher.killOneRankMidRun(config: config, dir: dir, settle: 300_000)
        XCTAssertLessThan(seconds, 10, "the job took \(seconds) s to end after one rank was killed")
        XCTAssertNotEqual(status, 0)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("run/model.safetensors").path))
    }

    /// A rank that fails (here: unreadable data) ends every rank with a message naming the rank.
    func testAFailingRankNamesItselfAndEndsTheJob() throws {
        let dir = TestSupport.temporaryDirectory()
        let start = Date()
        let run = try TestSupport.run(mpirun, ["-np", "2", binary, "train", "--config", "configs/lenet5-mnist.yaml",
                                               "--data", dir.appendingPathComponent("missing").path, "-q"], environment: environment)
        XCTAssertNotEqual(run.status, 0)
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        XCTAssertTrue(run.stderr.contains("ptrain: error: rank ") && run.stderr.contains("missing"), run.stderr)
    }

    /// `mpirun --bind-to none`: the ranks on this node pin their workers to different CPUs.
    func testUnboundRanksOnOneNodeUseDifferentCPUs() throws {
        guard ProcessInfo.processInfo.activeProcessorCount >= 2 else { throw XCTSkip("needs 2 CPUs") }
        let run = try TestSupport.run(mpirun, ["-np", "2", "--bind-to", "none", binary, "topo", "--threads", "1", "--format", "json"],
                                      environment: environment)
        XCTAssertEqual(run.status, 0, run.stderr)
        let cpus = run.stdout.split(separator: "\n").compactMap { line -> Int? in
            guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
                  let workers = object["workers"] as? [[String: Int]] else { return nil }
            return workers.first?["os_cpu"]
        }
        XCTAssertEqual(cpus.count, 2, run.stdout)
        XCTAssertEqual(Set(cpus).count, 2, "both ranks planned the same CPU: \(run.stdout)")
    }
}
