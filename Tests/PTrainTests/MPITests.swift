// Multi-process training through MPI on loopback. Needs a ptrain built with the trait MPI, named by
// PTRAIN_MPI_BINARY (.ci/run builds one into .build-mpi), and mpirun; skipped otherwise.
import XCTest
import PTrain

final class MPITests: XCTestCase {
    var binary: String = ""
    var mpirun: String = ""

    /// Open MPI settings for tests as root in a container: allow root, allow more ranks than cores,
    /// no cross-memory-attach (ptrace is often forbidden).
    let environment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                       "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"]

    override func setUpWithError() throws {
        guard let path = ProcessInfo.processInfo.environment["PTRAIN_MPI_BINARY"] else {
            throw XCTSkip("set PTRAIN_MPI_BINARY to a ptrain built with --traits MPI (see .ci/run)")
        }
        binary = path.hasPrefix("/") ? path : TestSupport.repositoryRoot.appendingPathComponent(path).path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) is not an executable") }
        mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first { FileManager.default.isExecutableFile(atPath: $0) } ?? ""
        guard !mpirun.isEmpty else { throw XCTSkip("mpirun not found") }
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
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["-np", "2", binary, "train", "--config", config, "--threads", "1", "--output", dir.appendingPathComponent("run").path, "-q"]
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        // Wait until training runs (rank 0 wrote its start record), then kill the other rank.
        let metrics = dir.appendingPathComponent("run/metrics.jsonl").path
        let ready = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: metrics) && Date() < ready && process.isRunning { usleep(20_000) }
        usleep(300_000)
        XCTAssertTrue(process.isRunning, "the job ended before it could be killed")
        let ranks = try TestSupport.run("/usr/bin/pgrep", ["-P", String(process.processIdentifier), "-f", "ptrain"])
        let pids = ranks.stdout.split(separator: "\n").compactMap { Int32($0) }
        XCTAssertEqual(pids.count, 2, "expected two rank processes under mpirun: \(ranks.stdout)")
        guard let victim = pids.last else { return }
        let killed = Date()
        kill(victim, SIGKILL)
        while process.isRunning && Date().timeIntervalSince(killed) < 30 { usleep(20_000) }
        let seconds = Date().timeIntervalSince(killed)
        if process.isRunning { process.terminate() }
        XCTAssertLessThan(seconds, 10, "the job took \(seconds) s to end after one rank was killed")
        XCTAssertNotEqual(process.terminationStatus, 0)
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
