// bf16 training end to end: the same weights for any thread count, resume point and (with MPI) rank
// layout; the config and checkpoints keep the precision; a CPU without AVX512_BF16 (or PTRAIN_ISA
// below avx512) gets one line and exit code 2.
import XCTest
import PTKernels
import PTrain

final class BF16TrainingTests: XCTestCase {
    func requireUnit() throws {
        guard InstructionSet.bf16Unit != nil else {
            throw XCTSkip("needs AVX512_BF16 (vdpbf16ps) on the avx512 level: this CPU or PTRAIN_ISA=\(InstructionSet.current.name) lacks it")
        }
    }

    /// X/O with layers wide enough that every bf16 pass runs (oc >= 16, ic >= 16, a stride-2 conv whose
    /// backward data unfolds, batch norm, dense 32 in bf16 and the 2-way classifier in fp32).
    static func config(_ dir: URL, precision: String = "bf16", epochs: Int = 2) throws -> String {
        let text = """
            name: xo-bf16
            data: {source: xo, size: 16, train: 600, test: 100}
            model:
              input: {channels: 1, height: 16, width: 16}
              layers:
                - {type: conv, features: 16, size: 3, padding: 1}
                - {type: batchnorm}
                - {type: relu}
                - {type: conv, features: 32, size: 3, stride: 2, padding: 1}
                - {type: relu}
                - {type: conv, features: 32, size: 3, padding: 1}
                - {type: relu}
                - {type: maxpool, window: 2, stride: 2}
                - {type: flatten}
                - {type: dense, neurons: 32}
                - {type: relu}
                - {type: dense, neurons: 2}
            optimizer: {type: sgd, lr: 0.05, momentum: 0.9, weight_decay: 0.0005}
            schedule: {type: cosine}
            training: {epochs: \(epochs), batch_size: 32, shards: 4, seed: 1, precision: \(precision)}

            """
        let url = dir.appendingPathComponent("xo-\(precision)-\(UUID().uuidString.prefix(6)).yaml")
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func weights(_ folder: URL) throws -> Data { try Data(contentsOf: folder.appendingPathComponent("model.safetensors")) }

    func testSameWeightsForThreadCountsAndResume() throws {
        try requireUnit()
        let dir = TestSupport.temporaryDirectory("bf16")
        let config = try Self.config(dir)
        let one = dir.appendingPathComponent("t1")
        let a = try TestSupport.ptrain(["train", "--config", config, "--threads", "1", "--output", one.path, "-q",
                                        "--checkpoint-every", "5", "--keep-checkpoints", "0"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let reference = try weights(one)
        for threads in [2, 3] {
            let out = dir.appendingPathComponent("t\(threads)")
            let run = try TestSupport.ptrain(["train", "--config", config, "--threads", String(threads), "--output", out.path, "-q"])
            XCTAssertEqual(run.status, 0, run.stderr)
            XCTAssertEqual(try weights(out), reference, "bf16 weights differ with --threads \(threads)")
        }
        // The resolved config, the start record and the checkpoint keep the precision; resuming keeps it.
        XCTAssertTrue(try String(contentsOf: one.appendingPathComponent("config.yaml"), encoding: .utf8).contains("  precision: bf16"))
        let start = try String(contentsOf: one.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        XCTAssertTrue(start.contains("\"precision\":\"bf16\"") && start.contains("\"bf16_unit\":\"\(InstructionSet.bf16Unit!.rawValue)\""), String(start))
        let checkpoint = one.appendingPathComponent("checkpoints/" + Checkpoint.folderName(step: 15))
        XCTAssertEqual(Checkpoint.peekConfig(checkpoint.path)?.precision, .bf16)
        let resumed = dir.appendingPathComponent("resumed")
        let r = try TestSupport.ptrain(["train", "--resume", checkpoint.path, "--threads", "3", "--output", resumed.path, "-q"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertFalse(r.stderr.contains("written with the bf16 unit"), "no unit warning on the same unit: \(r.stderr)")
        XCTAssertEqual(try weights(resumed), reference, "bf16 weights differ after resuming at step 15 with 3 threads")
        // --precision cannot change a resumed run.
        let change = try TestSupport.ptrain(["train", "--resume", checkpoint.path, "--precision", "fp32", "-q"])
        XCTAssertNotEqual(change.status, 0)
        // And bf16 really ran: fp32 gives other weights.
        let fp32 = dir.appendingPathComponent("fp32")
        let f = try TestSupport.ptrain(["train", "--config", config, "--precision", "fp32", "--threads", "2", "--output", fp32.path, "-q"])
        XCTAssertEqual(f.status, 0, f.stderr)
        XCTAssertNotEqual(try weights(fp32), reference)
        // eval and predict run at the checkpoint's precision, or at --precision.
        for precision in ["bf16", "fp32"] {
            let e = try TestSupport.ptrain(["eval", "--checkpoint", one.path, "--precision", precision, "--format", "json"])
            XCTAssertEqual(e.status, 0, e.stderr)
        }
    }

    func testUnavailablePrecisionIsOneLineAndExitTwo() throws {
        guard InstructionSet.supported.contains(.avx2) else { throw XCTSkip("needs a CPU with the avx2 level to force PTRAIN_ISA=avx2") }
        let dir = TestSupport.temporaryDirectory("bf16-unavailable")
        let config = try Self.config(dir)
        let env = ["PTRAIN_ISA": "avx2"]
        for arguments in [["train", "--config", config, "-q", "--output", dir.appendingPathComponent("run").path],
                          ["train", "--config", try Self.config(dir, precision: "fp32"), "--precision", "bf16", "-q"],
                          ["bench", "train", "--config", config, "--windows", "1", "--warmup", "0"]] {
            let run = try TestSupport.ptrain(arguments, environment: env)
            XCTAssertEqual(run.status, 2, "\(arguments): \(run.stderr)")
            let lines = run.stderr.split(separator: "\n")
            XCTAssertEqual(lines.count, 1, run.stderr)
            XCTAssertTrue(run.stderr.contains("training.precision: bf16 needs") && run.stderr.contains("AVX512_BF16"), run.stderr)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("run").path), "no run folder for a run that cannot start")
        // fp32 at the same level trains.
        let ok = try TestSupport.ptrain(["train", "--config", config, "--precision", "fp32", "--epochs", "1", "-q",
                                         "--output", dir.appendingPathComponent("fp32").path], environment: env)
        XCTAssertEqual(ok.status, 0, ok.stderr)
        // An unknown precision names the key.
        let bad = try TestSupport.ptrain(["train", "--config", try Self.config(dir, precision: "fp16"), "-q"])
        XCTAssertEqual(bad.status, 1)
        XCTAssertTrue(bad.stderr.contains("training.precision") && bad.stderr.contains("fp16"), bad.stderr)
    }

    /// PTRAIN_BF16_UNIT (read where the level has a bf16 unit): a name that is not a unit, or a unit this
    /// CPU lacks, is one line and exit 2 before anything runs; on an AMX CPU the vector unit can be asked
    /// for and is what runs (topo and the start record name it) and gives other bits than the tiles.
    func testBF16UnitOverride() throws {
        let best = InstructionSet.bf16Unit(level: InstructionSet.current, available: InstructionSet.cpuFeatures)
        guard best != nil else { throw XCTSkip("PTRAIN_BF16_UNIT is read only where the level has a bf16 unit; this CPU or PTRAIN_ISA has none") }
        let bogus = try TestSupport.ptrain(["topo"], environment: ["PTRAIN_BF16_UNIT": "tpu"])
        XCTAssertEqual(bogus.status, 2, bogus.stderr)
        XCTAssertEqual(bogus.stderr.split(separator: "\n").count, 1, bogus.stderr)
        XCTAssertTrue(bogus.stderr.contains("PTRAIN_BF16_UNIT=tpu is not a bf16 unit"), bogus.stderr)
        if best != .amx {
            let amx = try TestSupport.ptrain(["topo"], environment: ["PTRAIN_BF16_UNIT": "amx"])
            XCTAssertEqual(amx.status, 2, amx.stderr)
            XCTAssertTrue(amx.stderr.contains("PTRAIN_BF16_UNIT=amx, but this CPU and level do not have it"), amx.stderr)
        }
        guard best == .amx, InstructionSet.bf16Unit == .amx else {
            throw XCTSkip("the vector-unit override of an AMX CPU needs AMX tiles (this CPU's best bf16 unit: \(best?.rawValue ?? "none"))")
        }
        let dir = TestSupport.temporaryDirectory("bf16-unit")
        let config = try Self.config(dir, epochs: 1)
        let topo = try TestSupport.ptrain(["topo", "--format", "json"], environment: ["PTRAIN_BF16_UNIT": "avx512bf16"])
        XCTAssertEqual(topo.status, 0, topo.stderr)
        XCTAssertTrue(topo.stdout.contains("\"bf16_unit\":\"avx512bf16\""), topo.stdout)
        let vector = dir.appendingPathComponent("vector"), tiles = dir.appendingPathComponent("tiles")
        let v = try TestSupport.ptrain(["train", "--config", config, "--output", vector.path, "-q"], environment: ["PTRAIN_BF16_UNIT": "avx512bf16"])
        XCTAssertEqual(v.status, 0, v.stderr)
        let t = try TestSupport.ptrain(["train", "--config", config, "--output", tiles.path, "-q",
                                        "--checkpoint-every", "5", "--keep-checkpoints", "0"])
        XCTAssertEqual(t.status, 0, t.stderr)
        // A tile-unit checkpoint records its unit; resumed on the vector unit it trains on, with one warning line.
        let checkpoint = tiles.appendingPathComponent("checkpoints/" + Checkpoint.folderName(step: 15))
        XCTAssertEqual(try Checkpoint.readManifest(checkpoint.path).bf16Unit, "amx")
        let other = try TestSupport.ptrain(["train", "--resume", checkpoint.path, "--output", dir.appendingPathComponent("other").path, "-q"],
                                           environment: ["PTRAIN_BF16_UNIT": "avx512bf16"])
        XCTAssertEqual(other.status, 0, other.stderr)
        XCTAssertTrue(other.stderr.contains("written with the bf16 unit amx, resumed with avx512bf16"), other.stderr)
        let start = try String(contentsOf: vector.appendingPathComponent("metrics.jsonl"), encoding: .utf8).split(separator: "\n")[0]
        XCTAssertTrue(start.contains("\"bf16_unit\":\"avx512bf16\""), String(start))
        XCTAssertNotEqual(try weights(vector), try weights(tiles), "the two units add in different orders: their weights should differ")
    }

    /// 2 ranks x 1 thread give the weights of one process with 2 threads (needs the MPI build).
    func testSameWeightsAcrossRanks() throws {
        try requireUnit()
        let launcher = try MPILauncher.find()
        let dir = TestSupport.temporaryDirectory("bf16-mpi")
        let config = try Self.config(dir)
        let single = dir.appendingPathComponent("single"), ranks = dir.appendingPathComponent("ranks")
        let a = try TestSupport.run(launcher.binary, ["train", "--config", config, "--threads", "2", "--output", single.path, "-q"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let b = try TestSupport.run(launcher.mpirun, ["-np", "2", launcher.binary, "train", "--config", config, "--threads", "1",
                                                      "--output", ranks.path, "-q"], environment: MPILauncher.environment)
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertEqual(try weights(ranks), try weights(single), "bf16 weights differ between 1 process and 2 ranks")
    }
}
