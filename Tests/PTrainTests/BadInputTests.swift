// The catalogue of bad input, run through the built `ptrain` binary: broken IDX files (raw and gzip),
// broken or foreign checkpoints (train --resume, eval, predict), checkpoint folders that cannot be
// written, a disk that fills up while a checkpoint is saved, and bad configs. Each case must end with
// exit status 1, exactly one line on standard error naming the file, key or layer, no partial output,
// and every earlier checkpoint byte-for-byte intact.
import Foundation
import XCTest
import PTrain

final class BadInputTests: XCTestCase {
    // MARK: - Helpers

    /// Every regular file under `url` (relative path -> contents), hidden ones included.
    func snapshot(_ url: URL) -> [String: Data] {
        var out: [String: Data] = [:]
        guard let walker = FileManager.default.enumerator(atPath: url.path) else { return out }
        while let relative = walker.nextObject() as? String {
            let full = url.appendingPathComponent(relative)
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: full.path, isDirectory: &isDir), !isDir.boolValue {
                out[relative] = (try? Data(contentsOf: full)) ?? Data()
            }
        }
        return out
    }

    /// Runs ptrain expecting exit 1 and one stderr line holding every string in `expected`; the
    /// folders in `unchanged` must be byte-for-byte the same afterwards and the paths in `absent` must
    /// not exist.
    @discardableResult
    func expectFailure(_ args: [String], _ expected: [String], environment: [String: String]? = nil,
                       unchanged: [URL] = [], absent: [URL] = [],
                       file: StaticString = #filePath, line: UInt = #line) throws -> TestSupport.Result {
        let before = unchanged.map(snapshot)
        let run = try TestSupport.ptrain(args, environment: environment)
        let context = "ptrain \(args.joined(separator: " "))"
        if ProcessInfo.processInfo.environment["PTRAIN_TEST_VERBOSE"] != nil { print("bad input: \(context) => \(run.stderr)", terminator: "") }
        XCTAssertEqual(run.status, 1, "\(context): exit status; stderr: \(run.stderr)", file: file, line: line)
        let lines = run.stderr.split(separator: "\n", omittingEmptySubsequences: false).filter { !$0.isEmpty }
        XCTAssertEqual(lines.count, 1, "\(context): expected one line, got: \(run.stderr)", file: file, line: line)
        XCTAssertTrue(run.stderr.hasPrefix("ptrain: error: "), "\(context): \(run.stderr)", file: file, line: line)
        for e in expected {
            XCTAssertTrue(run.stderr.contains(e), "\(context): expected '\(e)' in: \(run.stderr)", file: file, line: line)
        }
        for (url, old) in zip(unchanged, before) {
            XCTAssertEqual(snapshot(url), old, "\(context): \(url.path) changed", file: file, line: line)
        }
        for url in absent {
            XCTAssertFalse(FileManager.default.fileExists(atPath: url.path), "\(context): \(url.path) was left behind", file: file, line: line)
        }
        return run
    }

    func idx(_ dims: [Int], _ body: [UInt8]) -> [UInt8] {
        var bytes: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
        for d in dims { bytes += [UInt8((d >> 24) & 255), UInt8((d >> 16) & 255), UInt8((d >> 8) & 255), UInt8(d & 255)] }
        return bytes + body
    }

    /// A gzip member holding `bytes` in stored deflate blocks.
    func gzip(_ bytes: [UInt8]) -> [UInt8] {
        func le16(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255)] }
        func le32(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * UInt32($0))) } }
        var out: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]
        var start = 0
        repeat {
            let n = min(65535, bytes.count - start)
            out.append(start + n == bytes.count ? 1 : 0)
            out += le16(n) + le16(~n & 0xFFFF)
            out += bytes[start..<(start + n)]
            start += n
        } while start < bytes.count
        return out + le32(crc32(bytes)) + le32(UInt32(truncatingIfNeeded: bytes.count))
    }

    static let mnistNames = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]

    /// The four files of a tiny MNIST folder (20 train and 10 test images of 28x28), by name.
    func mnistFiles() -> [String: [UInt8]] {
        func images(_ n: Int) -> [UInt8] { (0..<(n * 784)).map { UInt8(($0 * 7 + $0 / 784) % 256) } }
        func labels(_ n: Int) -> [UInt8] { (0..<n).map { UInt8($0 % 10) } }
        return ["train-images-idx3-ubyte": idx([20, 28, 28], images(20)), "train-labels-idx1-ubyte": idx([20], labels(20)),
                "t10k-images-idx3-ubyte": idx([10, 28, 28], images(10)), "t10k-labels-idx1-ubyte": idx([10], labels(10))]
    }

    func writeMNIST(_ dir: URL, _ files: [String: [UInt8]], gzip compress: Bool) throws {
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        for (name, bytes) in files {
            try Data(compress ? gzip(bytes) : bytes).write(to: dir.appendingPathComponent(compress ? name + ".gz" : name))
        }
    }

    /// A small IDX job: 20 training images in batches of 8 (3 steps per epoch), 2 epochs.
    func tinyConfig(_ dir: URL, features: Int = 2) throws -> String {
        let text = """
            name: tiny
            data: {source: idx}
            model:
              input: {channels: 1, height: 28, width: 28}
              layers:
                - {type: conv, features: \(features), size: 5, stride: 2}
                - {type: relu}
                - {type: maxpool, window: 2}
                - {type: flatten}
                - {type: dense, neurons: 10}
            optimizer: {type: sgd, lr: 0.01}
            training: {epochs: 2, batch_size: 8, shards: 2, seed: 3}

            """
        let url = dir.appendingPathComponent("tiny-\(features).yaml")
        try Data(text.utf8).write(to: url)
        return url.path
    }

    /// The small X/O job of these tests: 200 samples, batch 32 (7 steps per epoch), 2 epochs.
    func smallXO(_ dir: URL, _ edit: (String) -> String = { $0 }) throws -> String {
        try TestSupport.smallXOConfig(dir, train: 200, test: 50, epochs: 2, edit: edit)
    }

    /// Rewrites a checkpoint manifest's size and CRC-32 of `name` to match the file as it is now,
    /// the way a careless copy or a bad tool could produce a consistent-looking checkpoint.
    func refreshSum(_ folder: URL, _ name: String) throws {
        let manifestURL = folder.appendingPathComponent("manifest.json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: manifestURL)) as! [String: Any]
        var files = manifest["files"] as! [String: Any]
        let bytes = [UInt8](try Data(contentsOf: folder.appendingPathComponent(name)))
        files[name] = ["bytes": bytes.count, "crc32": crc32(bytes)]
        manifest["files"] = files
        try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys]).write(to: manifestURL)
    }

    func editManifest(_ folder: URL, _ edit: (inout [String: Any]) -> Void) throws {
        let url = folder.appendingPathComponent("manifest.json")
        var manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
        edit(&manifest)
        try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys]).write(to: url)
    }

    // MARK: - Data files

    func testBrokenIDXFilesRawAndGzip() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try tinyConfig(dir)
        let out = dir.appendingPathComponent("out")
        let good = mnistFiles()
        let trainImages = good["train-images-idx3-ubyte"]!
        // (case, files changed, strings the message must hold)
        let cases: [(String, [String: [UInt8]], [String])] = [
            ("truncated", ["train-images-idx3-ubyte": Array(trainImages.dropLast(100))],
             ["train-images-idx3-ubyte", "truncated", "20 x 28 x 28"]),
            ("magic", ["train-images-idx3-ubyte": [0, 0, 9, 3] + Array(trainImages[4...])],
             ["train-images-idx3-ubyte", "not an IDX file", "00000903"]),
            ("text", ["t10k-labels-idx1-ubyte": Array("<html>404 not found</html>".utf8)], ["t10k-labels-idx1-ubyte", "not an IDX file"]),
            ("rank", ["train-images-idx3-ubyte": idx([20, 784], Array(trainImages[16...]))],
             ["train-images-idx3-ubyte", "expected 3 dimensions", "found 2"]),
            ("labelrank", ["train-labels-idx1-ubyte": idx([20, 1], (0..<20).map { UInt8($0 % 10) })],
             ["train-labels-idx1-ubyte", "expected 1 dimension"]),
            ("dimsbig", ["train-images-idx3-ubyte": idx([20, 28, 29], Array(trainImages[16...]))],
             ["train-images-idx3-ubyte", "truncated", "20 x 28 x 29"]),
            ("dimssmall", ["train-images-idx3-ubyte": idx([20, 27, 28], Array(trainImages[16...]))],
             ["train-images-idx3-ubyte", "trailing bytes"]),
            ("dimsoverflow", ["train-images-idx3-ubyte": idx([0xFFFF_FFFF, 0xFFFF_FFFF, 0xFFFF_FFFF], [])],
             ["train-images-idx3-ubyte", "overflow"]),
            ("zerosize", ["train-images-idx3-ubyte": idx([20, 0, 28], [])], ["train-images-idx3-ubyte", "images of size 0 x 28"]),
            ("counts", ["train-labels-idx1-ubyte": idx([19], (0..<19).map { UInt8($0 % 10) })],
             ["train-images-idx3-ubyte", "20 images", "train-labels-idx1-ubyte", "19 labels"]),
            ("label", ["train-labels-idx1-ubyte": idx([20], (0..<20).map { $0 == 13 ? 10 : UInt8($0 % 10) })],
             ["train-labels-idx1-ubyte", "label 10 at index 13", "0..<10"]),
            ("empty", ["train-images-idx3-ubyte": idx([0, 28, 28], []), "train-labels-idx1-ubyte": idx([0], [])],
             ["train-images-idx3-ubyte", "empty set (0 images)"]),
            ("testshape", ["t10k-images-idx3-ubyte": idx([10, 20, 20], [UInt8](repeating: 3, count: 4000))],
             ["t10k-images-idx3-ubyte", "20 x 20", "train-images-idx3-ubyte", "28 x 28"]),
        ]
        for compress in [false, true] {
            for (name, changed, expected) in cases {
                let data = dir.appendingPathComponent("\(name)-\(compress ? "gz" : "raw")")
                try writeMNIST(data, good.merging(changed) { $1 }, gzip: compress)
                let parts = compress ? expected.map { $0.hasSuffix("-ubyte") ? $0 + ".gz" : $0 } : expected
                try expectFailure(["train", "--config", config, "--data", data.path, "--output", out.path, "-q"], parts,
                                  unchanged: [data], absent: [out])
            }
        }
        // Damage at the gzip level.
        let gz = gzip(trainImages)
        var corrupt = gz
        corrupt[gz.count / 2] ^= 0xFF
        corrupt[gz.count / 2 + 1] ^= 0xFF
        let gzipCases: [(String, [UInt8], [String])] = [
            ("gzip-truncated", Array(gz.prefix(gz.count / 2)), ["truncated gzip data"]),
            ("gzip-corrupt", corrupt, ["corrupt gzip data"]),
            ("gzip-trailing", gz + [1, 2, 3], ["3 trailing bytes after the gzip data"]),
            ("gzip-header", [0x1f, 0x8b, 8, 0xFF] + Array(gz[4...]), ["gzip"]),
        ]
        for (name, bytes, expected) in gzipCases {
            let data = dir.appendingPathComponent(name)
            try writeMNIST(data, good, gzip: true)
            try Data(bytes).write(to: data.appendingPathComponent("train-images-idx3-ubyte.gz"))
            try expectFailure(["train", "--config", config, "--data", data.path, "--output", out.path, "-q"],
                              ["train-images-idx3-ubyte.gz"] + expected, unchanged: [data], absent: [out])
        }
        // Resuming a run on broken data leaves the run and its checkpoints as they were.
        let goodData = dir.appendingPathComponent("good")
        try writeMNIST(goodData, good, gzip: false)
        let run = dir.appendingPathComponent("run")
        let trained = try TestSupport.ptrain(["train", "--config", config, "--data", goodData.path, "--output", run.path,
                                              "--checkpoint-every", "2", "-q"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        try expectFailure(["train", "--resume", run.appendingPathComponent("checkpoints/step-000000004").path,
                           "--data", dir.appendingPathComponent("counts-gz").path, "-q"],
                          ["train-labels-idx1-ubyte.gz", "19 labels"], unchanged: [run])
        try expectFailure(["eval", "--checkpoint", run.path, "--data", dir.appendingPathComponent("label-raw").path],
                          ["train-labels-idx1-ubyte", "label 10"], unchanged: [run])
    }

    // MARK: - Checkpoints

    func testBrokenAndForeignCheckpoints() throws {
        let dir = TestSupport.temporaryDirectory()
        let data = dir.appendingPathComponent("data")
        try writeMNIST(data, mnistFiles(), gzip: false)
        let run = dir.appendingPathComponent("run"), other = dir.appendingPathComponent("other")
        for (folder, features) in [(run, 2), (other, 3)] {
            let trained = try TestSupport.ptrain(["train", "--config", try tinyConfig(dir, features: features), "--data", data.path,
                                                  "--output", folder.path, "--checkpoint-every", "2", "-q"])
            XCTAssertEqual(trained.status, 0, trained.stderr)
        }
        let original = run.appendingPathComponent("checkpoints/step-000000004")
        let foreign = other.appendingPathComponent("checkpoints/step-000000004")
        let input = dir.appendingPathComponent("samples.idx")
        try Data(idx([3, 28, 28], [UInt8](repeating: 100, count: 3 * 784))).write(to: input)
        let out = dir.appendingPathComponent("out")

        enum Command: CaseIterable { case resume, eval, predict }
        // (case, damage done to a copy of the checkpoint, commands it applies to, strings the message must hold)
        let cases: [(String, (URL) throws -> Void, [Command], [String])] = [
            ("weights truncated", { c in
                let f = c.appendingPathComponent("model.safetensors")
                try Data(try Data(contentsOf: f).prefix(100)).write(to: f)
            }, Command.allCases, ["model.safetensors", "has 100 bytes, the manifest says", "truncated or replaced"]),
            ("weights truncated, sums rewritten", { c in
                let f = c.appendingPathComponent("model.safetensors")
                try Data(try Data(contentsOf: f).prefix(100)).write(to: f)
                try self.refreshSum(c, "model.safetensors")
            }, Command.allCases, ["model.safetensors", "truncated safetensors file"]),
            ("weights bit flip", { c in
                let f = c.appendingPathComponent("model.safetensors")
                var bytes = try Data(contentsOf: f)
                bytes[bytes.count - 5] ^= 0x10
                try bytes.write(to: f)
            }, Command.allCases, ["model.safetensors", "checksum mismatch"]),
            ("weights header garbled, sums rewritten", { c in
                let f = c.appendingPathComponent("model.safetensors")
                var bytes = try Data(contentsOf: f)
                bytes[8] = UInt8(ascii: "x")
                try bytes.write(to: f)
                try self.refreshSum(c, "model.safetensors")
            }, Command.allCases, ["model.safetensors", "header is not a JSON object"]),
            ("weights of another model, sums rewritten", { c in
                try FileManager.default.removeItem(at: c.appendingPathComponent("model.safetensors"))
                try FileManager.default.copyItem(at: foreign.appendingPathComponent("model.safetensors"),
                                                  to: c.appendingPathComponent("model.safetensors"))
                try self.refreshSum(c, "model.safetensors")
            }, Command.allCases, ["model.safetensors", "conv1.weight", "[3, 1, 5, 5]", "different model"]),
            ("optimizer state of another model, sums rewritten", { c in
                try FileManager.default.removeItem(at: c.appendingPathComponent("optimizer.safetensors"))
                try FileManager.default.copyItem(at: foreign.appendingPathComponent("optimizer.safetensors"),
                                                  to: c.appendingPathComponent("optimizer.safetensors"))
                try self.refreshSum(c, "optimizer.safetensors")
            }, [.resume], ["optimizer.safetensors", "conv1.weight", "missing or has the wrong shape"]),
            ("weights missing", { c in
                try FileManager.default.removeItem(at: c.appendingPathComponent("model.safetensors"))
            }, Command.allCases, ["model.safetensors", "missing from the checkpoint"]),
            ("manifest truncated", { c in
                let f = c.appendingPathComponent("manifest.json")
                try Data(try Data(contentsOf: f).prefix(60)).write(to: f)
            }, Command.allCases, ["manifest.json", "not a valid ptrain checkpoint manifest"]),
            ("manifest garbage", { c in
                try Data([UInt8](repeating: 0xA5, count: 300)).write(to: c.appendingPathComponent("manifest.json"))
            }, Command.allCases, ["manifest.json", "not a valid ptrain checkpoint manifest"]),
            ("manifest of another format", { c in
                try self.editManifest(c) { $0["version"] = 7 }
            }, Command.allCases, ["manifest.json", "unsupported checkpoint format", "version 7"]),
            ("manifest position negative", { c in
                try self.editManifest(c) { m in
                    var p = m["progress"] as! [String: Any]
                    p["epoch"] = -1; p["globalStep"] = -2
                    m["progress"] = p
                }
            }, Command.allCases, ["manifest.json", "inconsistent position"]),
            ("manifest records missing", { c in
                try self.editManifest(c) { m in
                    var p = m["progress"] as! [String: Any]
                    p["records"] = [Any]()
                    m["progress"] = p
                }
            }, Command.allCases, ["manifest.json", "inconsistent position", "0 epoch records"]),
            ("manifest lists no weights", { c in
                try self.editManifest(c) { m in
                    var files = m["files"] as! [String: Any]
                    files["model.safetensors"] = nil
                    m["files"] = files
                }
            }, Command.allCases, ["manifest.json", "does not list model.safetensors"]),
            ("manifest config of another model", { c in
                try self.editManifest(c) { m in
                    m["config"] = (m["config"] as! String).replacingOccurrences(of: "features: 2,", with: "features: 5,")
                }
            }, Command.allCases, ["model.safetensors", "conv1.weight", "[2, 1, 5, 5]", "[5, 1, 5, 5]", "different model"]),
            ("manifest config broken", { c in
                try self.editManifest(c) { m in
                    m["config"] = (m["config"] as! String).replacingOccurrences(of: "lr: 0.01", with: "lr: .nan")
                }
            }, Command.allCases, ["manifest.json (config)", "optimizer.lr", "finite"]),
            ("manifest position past the run", { c in
                try self.editManifest(c) { m in
                    var p = m["progress"] as! [String: Any]
                    p["stepInEpoch"] = 9; p["globalStep"] = 12
                    m["progress"] = p
                }
            }, [.resume], ["manifest.json", "checkpoint position", "does not fit this run"]),
            ("manifest missing", { c in
                try FileManager.default.removeItem(at: c.appendingPathComponent("manifest.json"))
            }, Command.allCases, ["no checkpoint here"]),
        ]
        for (index, (name, damage, commands, expected)) in cases.enumerated() {
            let copy = dir.appendingPathComponent("case-\(index)")
            try FileManager.default.copyItem(at: original, to: copy)
            try damage(copy)
            for command in commands {
                let args: [String]
                switch command {
                case .resume: args = ["train", "--resume", copy.path, "--data", data.path, "--output", out.path, "-q"]
                case .eval: args = ["eval", "--checkpoint", copy.path, "--data", data.path]
                case .predict: args = ["predict", "--checkpoint", copy.path, "--input", input.path]
                }
                let result = try expectFailure(args, expected, unchanged: [copy, run], absent: [out])
                XCTAssertEqual(result.stdout, "", "\(name): \(command) printed \(result.stdout)")
            }
        }
        // The undamaged checkpoint still works with every command.
        XCTAssertEqual(try TestSupport.ptrain(["eval", "--checkpoint", original.path, "--data", data.path]).status, 0)
        XCTAssertEqual(try TestSupport.ptrain(["predict", "--checkpoint", original.path, "--input", input.path]).status, 0)
        XCTAssertEqual(try TestSupport.ptrain(["train", "--resume", original.path, "--data", data.path, "--output", out.path, "-q"]).status, 0)
        // A path that is no checkpoint at all.
        let file = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        try expectFailure(["eval", "--checkpoint", file.path], [file.path, "is a file"])
        try expectFailure(["predict", "--checkpoint", dir.appendingPathComponent("nowhere").path, "--input", input.path],
                          ["nowhere", "checkpoint folder not found"])
        try expectFailure(["train", "--resume", data.path, "-q"], [data.path, "no checkpoint here"], unchanged: [data])
    }

    // MARK: - Checkpoint and output folders

    /// Root ignores permission bits, so folders that cannot be created are made with a path under a
    /// regular file (`file/sub`) and a path under /proc, where nothing can be created.
    func testUnwritableOrMissingCheckpointFolder() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try smallXO(dir)
        let file = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: file)
        let blocked = file.appendingPathComponent("sub").path
        let out = dir.appendingPathComponent("out")
        func leftovers() -> [String] { snapshot(dir).keys.filter { $0.contains(".tmp-") || $0.contains("step-") } }

        try expectFailure(["train", "--config", config, "--output", out.path, "--checkpoint-dir", blocked, "--checkpoint-every", "3", "-q"],
                          [blocked, "cannot create folder", "is a file, not a folder"], unchanged: [file])
        try expectFailure(["train", "--config", config, "--output", out.path, "--checkpoint-dir", file.path, "--checkpoint-every", "3", "-q"],
                          [file.path, "exists and is not a folder"], unchanged: [file])
        if FileManager.default.fileExists(atPath: "/proc/self") {
            let proc = "/proc/ptrain-test-\(getpid())/checkpoints"
            try expectFailure(["train", "--config", config, "--output", out.path, "--checkpoint-dir", proc, "--checkpoint-every", "3", "-q"],
                              ["/proc/ptrain-test-", "cannot create folder"])
        }
        XCTAssertEqual(leftovers(), [], "no checkpoint or temporary folder may be left")
        XCTAssertFalse(FileManager.default.fileExists(atPath: out.appendingPathComponent("model.safetensors").path))
        // Run folder and metrics file in impossible places fail before training.
        try expectFailure(["train", "--config", config, "--output", blocked, "-q"], [blocked, "is a file, not a folder"], unchanged: [file])
        try expectFailure(["train", "--config", config, "--output", dir.appendingPathComponent("out2").path,
                           "--metrics", blocked + "/metrics.jsonl", "-q"], [file.path, "not a folder"], unchanged: [file])
        // SIGTERM-free runs that never checkpoint do not touch the checkpoint folder.
        XCTAssertFalse(FileManager.default.fileExists(atPath: blocked))
    }

    // MARK: - Full disk

    /// The disk fills up (test hook PTRAIN_TEST_FAIL_WRITES_AFTER_BYTES, see Sources/PTFiles/AtomicFile.swift)
    /// while the second checkpoint is written: exit 1 with one line, the first checkpoint intact and
    /// identical to an undisturbed run's, no temporary folder, no final weights; resuming from the
    /// surviving checkpoint ends with the undisturbed run's weights.
    func testFullDiskWhileSavingKeepsThePreviousCheckpoint() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try smallXO(dir)
        let reference = dir.appendingPathComponent("reference"), full = dir.appendingPathComponent("full")
        let common = ["train", "--config", config, "--checkpoint-every", "3", "--keep-checkpoints", "0", "--threads", "2", "-q"]
        let ok = try TestSupport.ptrain(common + ["--output", reference.path])
        XCTAssertEqual(ok.status, 0, ok.stderr)
        // config.yaml (~1 KB) + the step-3 checkpoint (~80 KB) fit in 100,000 bytes; the step-6 one does not.
        try expectFailure(common + ["--output", full.path], ["step-000000006", "cannot save the checkpoint", "No space left on device",
                                                              "step-000000003", "intact"],
                          environment: ["PTRAIN_TEST_FAIL_WRITES_AFTER_BYTES": "100000"],
                          absent: [full.appendingPathComponent("model.safetensors")])
        let checkpoints = full.appendingPathComponent("checkpoints")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: checkpoints.path), ["step-000000003"],
                       "only the complete checkpoint may remain (no staging folder)")
        let step3 = "checkpoints/step-000000003"
        for file in ["model.safetensors", "optimizer.safetensors"] {   // the manifest also holds timings
            XCTAssertEqual(try Data(contentsOf: full.appendingPathComponent("\(step3)/\(file)")),
                           try Data(contentsOf: reference.appendingPathComponent("\(step3)/\(file)")), file)
        }
        XCTAssertNoThrow(try Checkpoint.readManifest(checkpoints.appendingPathComponent("step-000000003").path))
        let resumed = try TestSupport.ptrain(["train", "--resume", full.path, "--threads", "1", "-q"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertEqual(try Data(contentsOf: full.appendingPathComponent("model.safetensors")),
                       try Data(contentsOf: reference.appendingPathComponent("model.safetensors")))
    }

    /// The same with a real full file system: a 128 KiB tmpfs, when this process may mount one (root
    /// outside a restricted container); skipped otherwise.
    func testFullTmpfsWhileSavingKeepsThePreviousCheckpoint() throws {
        guard getuid() == 0, FileManager.default.isExecutableFile(atPath: "/bin/mount") || FileManager.default.isExecutableFile(atPath: "/usr/bin/mount") else {
            throw XCTSkip("needs root and mount")
        }
        let dir = TestSupport.temporaryDirectory()
        let mountPoint = dir.appendingPathComponent("tmpfs")
        try FileManager.default.createDirectory(at: mountPoint, withIntermediateDirectories: true)
        let mount = FileManager.default.isExecutableFile(atPath: "/bin/mount") ? "/bin/mount" : "/usr/bin/mount"
        let mounted = try TestSupport.run(mount, ["-t", "tmpfs", "-o", "size=128k", "tmpfs", mountPoint.path])
        guard mounted.status == 0 else { throw XCTSkip("cannot mount a tmpfs here: \(mounted.stderr)") }
        defer { _ = try? TestSupport.run(mount.replacingOccurrences(of: "mount", with: "umount"), [mountPoint.path]) }
        let config = try smallXO(dir)
        let out = dir.appendingPathComponent("out"), checkpoints = mountPoint.appendingPathComponent("checkpoints")
        try expectFailure(["train", "--config", config, "--output", out.path, "--checkpoint-dir", checkpoints.path,
                           "--checkpoint-every", "3", "--keep-checkpoints", "0", "-q"],
                          ["cannot save the checkpoint", "No space left on device", "intact"],
                          absent: [out.appendingPathComponent("model.safetensors")])
        let left = try FileManager.default.contentsOfDirectory(atPath: checkpoints.path).sorted()
        XCTAssertFalse(left.isEmpty, "the first checkpoint fits and must survive")
        XCTAssertTrue(left.allSatisfy { $0.hasPrefix("step-") }, "a staging folder was left: \(left)")
        for name in left { XCTAssertNoThrow(try Checkpoint.readManifest(checkpoints.appendingPathComponent(name).path), name) }
    }

    // MARK: - Configs

    /// Config errors through the binary (ConfigTests covers the parser's messages in detail): each
    /// edit of the small X/O config must fail before anything is written.
    func testBadConfigs() throws {
        let dir = TestSupport.temporaryDirectory()
        let cases: [(String, String, [String])] = [
            ("  batch_size: 32", "  batch_size: 32\n  colour: blue", ["unknown key 'training.colour'"]),
            ("  lr: 0.05", "  lr: .inf", ["optimizer.lr", "finite"]),
            ("  lr: 0.05", "  lr: -.inf", ["optimizer.lr", "finite"]),
            ("  lr: 0.05", "  lr: .NaN", ["optimizer.lr", "finite"]),
            ("  lr: 0.05", "  lr: 1e300", ["optimizer.lr", "finite"]),
            ("  lr: 0.05", "  lr: [0.1]", ["optimizer.lr", "expected a single value"]),
            ("  lr: 0.05", "  lr: fast", ["optimizer.lr", "expected a number, got 'fast'"]),
            ("  momentum: 0.9", "  momentum: .nan", ["optimizer.momentum", "finite"]),
            ("  momentum: 0.9", "  momentum: 1", ["optimizer.momentum", "[0, 1)"]),
            ("  weight_decay: 0.0005", "  weight_decay: -1", ["optimizer.weight_decay", ">= 0"]),
            ("  epochs: 2", "  epochs: 2.5", ["training.epochs", "expected an integer, got '2.5'"]),
            ("  epochs: 2", "  epochs: 0", ["training.epochs", "must be in 1..."]),
            ("  batch_size: 32", "  batch_size: -4", ["training.batch_size", "must be in 1..."]),
            ("  shards: 4", "  shards: 0", ["training.shards", "at least 1"]),
            ("  seed: 1", "  seed: -1", ["training.seed", ">= 0"]),
            ("  seed: 1", "  seed: yes", ["training.seed", "expected an integer"]),
            ("type: cosine", "type: cosine\n  gamma: .inf", ["schedule.gamma", "finite"]),
            ("type: cosine", "type: cosine\n  warmup_epochs: -1", ["schedule.warmup_epochs", ">= 0"]),
            ("type: cosine", "type: linear", ["schedule.type", "unknown schedule 'linear'"]),
            ("  size: 16 ", "  size: 4 ", ["data.size", "8...64"]),
            ("  train: 200", "  train: 0", ["data.train", "at least 1"]),
            ("source: xo", "source: tape", ["data.source", "unknown data source 'tape'"]),
            ("source: xo", "source: xo\n  order: random", ["data.order", "unknown image order 'random' (known: class, name)"]),
            ("features: 8, size: 3", "features: 0, size: 3", ["model.layers[1].features", "must be in 1..."]),
            ("features: 8, size: 3", "features: -8, size: 3", ["model.layers[1].features", "must be in 1..."]),
            ("features: 8, size: 3", "features: 8, size: 0", ["model.layers[1].size", "must be in 1..."]),
            ("features: 8, size: 3, padding: 1", "features: 8, size: 3, padding: -1", ["model.layers[1].padding", ">= 0"]),
            ("features: 8, size: 3, padding: 1", "features: 8, size: 3, padding: 1, stride: 0", ["model.layers[1].stride", "at least 1"]),
            ("{type: maxpool, window: 2, stride: 2}              # pooling", "{type: maxpool, window: 0}  # pooling",
             ["model.layers[3].window", "must be in 1..."]),
            ("{type: dense, neurons: 32}", "{type: dense, neurons: 0}", ["model.layers[8].neurons", "must be in 1..."]),
            ("{type: dense, neurons: 32}", "{type: dense, neurons: many}", ["model.layers[8].neurons", "expected an integer"]),
            ("{type: dense, neurons: 32}", "{type: dense, neurons: 32, dropout: 0.5}", ["unknown key 'model.layers[8].dropout'"]),
            ("{channels: 1, height: 16, width: 16}", "{channels: 1, height: 0, width: 16}", ["model.input", "positive"]),
            // Shapes that do not fit.
            ("{channels: 1, height: 16, width: 16}", "{channels: 3, height: 16, width: 16}", ["model.input", "3x16x16", "1x16x16"]),
            ("features: 8, size: 3, padding: 1", "features: 8, size: 17, padding: 0", ["conv1", "output would be empty"]),
            ("{type: dense, neurons: 2}", "{type: dense, neurons: 1}", ["dense2", "1 outputs", "2 classes"]),
            ("  epochs: 2", "  epochs: [", ["not valid YAML"]),
        ]
        for (index, (from, to, expected)) in cases.enumerated() {
            let config = try smallXO(dir) { text in
                XCTAssertTrue(text.contains(from), "case \(index): '\(from)' not in the config")
                return text.replacingOccurrences(of: from, with: to)
            }
            let out = dir.appendingPathComponent("out-\(index)")
            try expectFailure(["train", "--config", config, "--output", out.path, "-q"], expected, absent: [out])
        }
    }

    /// Values and keys with line breaks, and sizes too large to allocate, give one line and exit 1
    /// (they used to give a multi-line message, or abort with a backtrace).
    func testLineBreaksAndHugeSizesGiveOneLine() throws {
        let dir = TestSupport.temporaryDirectory()
        let out = dir.appendingPathComponent("out")
        var pending: [String] = []
        // Values and keys with line breaks used to be quoted as they are: a multi-line message.
        // Sizes too large to allocate used to abort (a crash with a backtrace) instead of a one-line error.
        let cases: [(String, String, [String], String)] = [
            ("  lr: 0.05", "  lr: |\n    0.05\n    0.06", ["optimizer.lr"], "Config.swift: a block-scalar value gives a multi-line message"),
            ("  seed: 1", "  \"se\\ned\": 1", ["training.se"], "Config.swift: a key with a line break gives a multi-line message"),
            ("  batch_size: 32", "  batch_size: 1000000000000", ["batch_size"], "a huge batch size aborts instead of failing with one line"),
            ("{type: dense, neurons: 32}", "{type: dense, neurons: 100000000000}", ["neurons"], "a huge layer aborts instead of failing with one line"),
        ]
        for (from, to, expected, problem) in cases {
            let config = try smallXO(dir) { $0.replacingOccurrences(of: from, with: to) }
            let run = try TestSupport.ptrain(["train", "--config", config, "--output", out.path, "-q"])
            let oneLine = run.stderr.split(separator: "\n").count == 1
            if run.status != 1 || !oneLine {
                pending.append("\(problem) (status \(run.status), \(run.stderr.split(separator: "\n").count) lines)")
                continue
            }
            for e in expected { XCTAssertTrue(run.stderr.contains(e), "expected '\(e)' in \(run.stderr)") }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out.path))
        }
        XCTAssertTrue(pending.isEmpty, pending.joined(separator: "; "))
    }
}
