// `ptrain pack` and `source: packed` / `source: images` through the built binary: training from a
// packed file gives the same weights as from the IDX files; bad packed files and image folders end
// with one line and exit status 1, and pack never leaves a partial file.
import Foundation
import PTData
import PTrain
import PTTensor
import XCTest

final class PackCommandTests: XCTestCase {
    let tinyConfig = """
        name: tiny
        data: {source: idx, mean: 0.1307, std: 0.3081}
        model:
          input: {channels: 1, height: 28, width: 28}
          layers:
            - {type: conv, features: 4, size: 5, padding: 2}
            - {type: relu}
            - {type: maxpool, window: 2, stride: 2}
            - {type: flatten}
            - {type: dense, neurons: 10}
        optimizer: {type: sgd, lr: 0.02, momentum: 0.9}
        training: {epochs: 2, batch_size: 8, shards: 4, seed: 3}
        """

    func expectOneLineFailure(_ args: [String], _ parts: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let run = try TestSupport.ptrain(args)
        XCTAssertEqual(run.status, 1, "stderr: \(run.stderr)", file: file, line: line)
        let lines = run.stderr.split(separator: "\n").filter { !$0.isEmpty }
        XCTAssertEqual(lines.count, 1, "expected one line: \(run.stderr)", file: file, line: line)
        for part in parts { XCTAssertTrue(run.stderr.contains(part), "'\(run.stderr)' lacks '\(part)'", file: file, line: line) }
    }

    func testPackedFileTrainsBitIdenticallyToIDX() throws {
        let dir = TestSupport.temporaryDirectory()
        let data = dir.appendingPathComponent("mnist")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try TestSupport.writeTinyMNIST(data, train: 40, test: 10)
        let config = dir.appendingPathComponent("tiny.yaml")
        try Data(tinyConfig.utf8).write(to: config)
        let packedConfig = dir.appendingPathComponent("tiny-packed.yaml")
        try Data(tinyConfig.replacingOccurrences(of: "source: idx", with: "source: packed").utf8).write(to: packedConfig)
        let packed = dir.appendingPathComponent("tiny.ptpack").path

        let pack = try TestSupport.ptrain(["pack", "--config", config.path, "--data", data.path, "--output", packed])
        XCTAssertEqual(pack.status, 0, pack.stderr)
        XCTAssertTrue(pack.stdout.contains("packed 40 train + 10 test samples (1x28x28, uint8, 10 classes)"), pack.stdout)
        for (cfg, source, out) in [(config.path, data.path, "run-idx"), (packedConfig.path, packed, "run-packed")] {
            let run = try TestSupport.ptrain(["train", "--config", cfg, "--data", source, "--threads", "2", "--quiet",
                                              "--output", dir.appendingPathComponent(out).path])
            XCTAssertEqual(run.status, 0, run.stderr)
        }
        let a = try Data(contentsOf: dir.appendingPathComponent("run-idx/model.safetensors"))
        let b = try Data(contentsOf: dir.appendingPathComponent("run-packed/model.safetensors"))
        XCTAssertEqual(a, b, "training from the packed file must give the IDX run's weights bit for bit")

        // The conversion each loaded set carries is the one the config describes (what evaluation and
        // prediction must apply to stored samples), written out here rather than derived again.
        for (cfg, source) in [(config.path, data.path), (packedConfig.path, packed)] {
            var c = try TrainConfig.load(path: cfg)
            c.data.path = source
            let sets = try loadData(c)
            XCTAssertEqual(sets.train.conversion, SampleConversion(divisor: 255, mean: [0.1307], std: [0.3081]), source)
            XCTAssertEqual(sets.test.conversion, SampleConversion(divisor: 255, mean: [0.1307], std: [0.3081]), source)
            c.data.mean = nil
            c.data.std = nil
            c.data.zNormalize = true
            let standardised = try loadData(c)
            XCTAssertEqual(standardised.train.conversion, SampleConversion(divisor: 255, zNormalize: true), source)
            XCTAssertEqual(standardised.test.conversion, SampleConversion(divisor: 255, zNormalize: true), source)
        }

        // Damaged copies: one line, exit 1, before training (no run folder).
        let original = try Data(contentsOf: URL(fileURLWithPath: packed))
        let cut = dir.appendingPathComponent("cut.ptpack").path
        try original.prefix(4096 + 784 * 7 + 100).write(to: URL(fileURLWithPath: cut))
        try expectOneLineFailure(["train", "--config", packedConfig.path, "--data", cut, "--output", dir.appendingPathComponent("r1").path],
                                 [cut, "truncated", "cut inside sample 7 of 50"])
        var flipped = original
        flipped[4096 + 784 * 3 + 5] ^= 1
        let bad = dir.appendingPathComponent("bad.ptpack").path
        try flipped.write(to: URL(fileURLWithPath: bad))
        try expectOneLineFailure(["train", "--config", packedConfig.path, "--data", bad, "--output", dir.appendingPathComponent("r2").path],
                                 [bad, "checksum mismatch", "file corrupted"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r1").path))
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir.appendingPathComponent("r2").path))
    }

    /// Pack writes through the one atomic writer: on a disk that fills up (test hook
    /// PTRAIN_TEST_FAIL_WRITES_AFTER_BYTES) it fails with one line, leaves the earlier packed file as
    /// it was, and no temporary file.
    func testPackOnAFullDiskKeepsTheEarlierFile() throws {
        let dir = TestSupport.temporaryDirectory()
        let data = dir.appendingPathComponent("mnist")
        try FileManager.default.createDirectory(at: data, withIntermediateDirectories: true)
        try TestSupport.writeTinyMNIST(data, train: 40, test: 10)
        let config = dir.appendingPathComponent("tiny.yaml")
        try Data(tinyConfig.utf8).write(to: config)
        let out = dir.appendingPathComponent("tiny.ptpack").path
        let args = ["pack", "--config", config.path, "--data", data.path, "--output", out, "--quiet"]
        XCTAssertEqual(try TestSupport.ptrain(args).status, 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: out))
        XCTAssertGreaterThan(before.count, 20_000)
        let full = try TestSupport.ptrain(args, environment: ["PTRAIN_TEST_FAIL_WRITES_AFTER_BYTES": "20000"])
        XCTAssertEqual(full.status, 1, full.stderr)
        XCTAssertEqual(full.stderr.split(separator: "\n").count, 1, full.stderr)
        XCTAssertTrue(full.stderr.contains(out) && full.stderr.contains("write failed") && full.stderr.contains("No space left on device"),
                      full.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }, [])
    }

    func testSeriesSourcesPackedWithZNormalizeTrainIdentically() throws {
        // Both are packed as read and standardised when gathered, from the source or from the packed file.
        let dir = TestSupport.temporaryDirectory()
        let ucr = dir.appendingPathComponent("ucr")
        let rec = dir.appendingPathComponent("fsdd/recordings")
        try FileManager.default.createDirectory(at: ucr, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: rec, withIntermediateDirectories: true)
        func series(_ i: Int) -> String { (0..<16).map { String(format: "%.3f", sin(Double($0 * (i % 3 + 1)) / 3) * Double(i + 1)) }.joined(separator: ",") }
        let head = "@problemName Toy\n@univariate true\n@classLabel true a b\n@data\n"
        try Data((head + (0..<8).map { series($0) + ($0 % 2 == 0 ? ":a" : ":b") }.joined(separator: "\n")).utf8)
            .write(to: ucr.appendingPathComponent("Toy_TRAIN.ts"))
        try Data((head + (8..<12).map { series($0) + ($0 % 2 == 0 ? ":a" : ":b") }.joined(separator: "\n")).utf8)
            .write(to: ucr.appendingPathComponent("Toy_TEST.ts"))
        for digit in 0..<2 {
            for index in [1, 7, 8] {
                let samples = (0..<(10 + index)).map { Int16(truncatingIfNeeded: ($0 * 977 + digit * 3001 + index * 55) % 4000 - 2000) }
                var body = Array("WAVE".utf8) + Array("fmt ".utf8) + le32(16) + le16(1) + le16(1) + le32(8000) + le32(16000) + le16(2) + le16(16)
                body += Array("data".utf8) + le32(2 * samples.count) + samples.flatMap { le16(Int(UInt16(bitPattern: $0))) }
                try Data(Array("RIFF".utf8) + le32(body.count) + body).write(to: rec.appendingPathComponent("\(digit)_x_\(index).wav"))
            }
        }
        for (source, data, extra) in [("ucr", ucr.path, ""), ("fsdd", dir.appendingPathComponent("fsdd").path, "\n  length: 16")] {
            let yaml = """
                name: \(source)
                data:
                  source: \(source)
                  z_normalize: true\(extra)
                model:
                  input: {channels: 1, height: 1, width: 16}
                  layers:
                    - {type: conv1d, features: 3, size: 3, padding: 1}
                    - {type: relu}
                    - {type: flatten}
                    - {type: dense, neurons: \(source == "ucr" ? 2 : 10)}
                optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
                training: {epochs: 3, batch_size: 4, shards: 2, seed: 5}
                """
            let config = dir.appendingPathComponent("\(source).yaml"), packedConfig = dir.appendingPathComponent("\(source)-packed.yaml")
            try Data(yaml.utf8).write(to: config)
            try Data(yaml.replacingOccurrences(of: "source: \(source)", with: "source: packed").utf8).write(to: packedConfig)
            let file = dir.appendingPathComponent("\(source).ptpack").path
            let pack = try TestSupport.ptrain(["pack", "--config", config.path, "--data", data, "--output", file, "--quiet"])
            XCTAssertEqual(pack.status, 0, pack.stderr)
            for (cfg, input, out) in [(config.path, data, "\(source)-a"), (packedConfig.path, file, "\(source)-b")] {
                let run = try TestSupport.ptrain(["train", "--config", cfg, "--data", input, "--quiet", "--threads", "1",
                                                  "--output", dir.appendingPathComponent(out).path])
                XCTAssertEqual(run.status, 0, run.stderr)
            }
            XCTAssertEqual(try Data(contentsOf: dir.appendingPathComponent("\(source)-a/model.safetensors")),
                           try Data(contentsOf: dir.appendingPathComponent("\(source)-b/model.safetensors")), source)
        }
    }

    func le16(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255)] }
    func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }

    /// Image folders in name order hold the IDX files' samples in the IDX order: MNIST (the first
    /// images of the fixture's real files) written as
    /// train/<digit>/<index>.png packs to the IDX files' packed file byte for byte, and trains to
    /// the IDX run's weights bit for bit with the same seed. Class order would not.
    func testImageFoldersInNameOrderMatchTheIDXFiles() throws {
        let dir = TestSupport.temporaryDirectory()
        let idx = dir.appendingPathComponent("idx"), png = dir.appendingPathComponent("png")
        try TestSupport.writeMNISTSubset(from: TestSupport.repositoryRoot.appendingPathComponent("Tests/Fixtures/mnist").path,
                                          to: idx, train: 240, test: 60)
        try TestSupport.writeIDXAsPNGFolders(idx, root: png)
        let config = dir.appendingPathComponent("tiny.yaml"), images = dir.appendingPathComponent("tiny-images.yaml")
        let packedConfig = dir.appendingPathComponent("tiny-packed.yaml")
        try Data(tinyConfig.utf8).write(to: config)
        try Data(tinyConfig.replacingOccurrences(of: "source: idx", with: "source: images, order: name").utf8).write(to: images)
        try Data(tinyConfig.replacingOccurrences(of: "source: idx", with: "source: packed").utf8).write(to: packedConfig)
        let fromIDX = dir.appendingPathComponent("idx.ptpack").path
        let byName = dir.appendingPathComponent("name.ptpack").path, byClass = dir.appendingPathComponent("class.ptpack").path
        for (cfg, data, out, extra) in [(config.path, idx.path, fromIDX, [String]()), (images.path, png.path, byClass, ["--order", "class"]),
                                        (images.path, png.path, byName, [])] {
            let pack = try TestSupport.ptrain(["pack", "--config", cfg, "--data", data, "--output", out, "--quiet", "--threads", "2"] + extra)
            XCTAssertEqual(pack.status, 0, pack.stderr)
        }
        // Same samples and labels in the same order (and so the same file); class order differs.
        let a = try PackedFile(path: fromIDX), b = try PackedFile(path: byName), c = try PackedFile(path: byClass)
        for (x, y) in [(a.train, b.train), (a.test, b.test)] {
            XCTAssertEqual(x.labels, y.labels)
            for i in 0..<x.count where x.store.storedBytes(i) != y.store.storedBytes(i) {
                XCTFail("sample \(i) of \(x.name) differs")
                break
            }
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: fromIDX)), try Data(contentsOf: URL(fileURLWithPath: byName)))
        XCTAssertNotEqual(a.train.labels, c.train.labels)
        XCTAssertEqual(a.train.labels.sorted(), c.train.labels)

        // Training: the IDX files, the name-ordered packed file and the folders themselves (order: name).
        for (cfg, data, out) in [(config.path, idx.path, "run-idx"), (packedConfig.path, byName, "run-packed"), (images.path, png.path, "run-png")] {
            let run = try TestSupport.ptrain(["train", "--config", cfg, "--data", data, "--threads", "2", "--quiet", "--epochs", "1",
                                              "--output", dir.appendingPathComponent(out).path])
            XCTAssertEqual(run.status, 0, run.stderr)
        }
        let weights = try ["run-idx", "run-packed", "run-png"].map { try Data(contentsOf: dir.appendingPathComponent("\($0)/model.safetensors")) }
        XCTAssertEqual(weights[0], weights[1], "the name-ordered packed file must train to the IDX run's weights")
        XCTAssertEqual(weights[0], weights[2], "the image folders in name order must train to the IDX run's weights")

        // A bad order: one line naming the flag or the key; an order for a source without one.
        try expectOneLineFailure(["pack", "--config", images.path, "--data", png.path, "--output", byName, "--order", "random"],
                                 ["--order", "unknown image order 'random'", "class, name"])
        try expectOneLineFailure(["pack", "--config", config.path, "--data", idx.path, "--output", fromIDX, "--order", "name"],
                                 ["--order", "only image folders", "idx"])
        let bad = dir.appendingPathComponent("bad-order.yaml")
        try Data(tinyConfig.replacingOccurrences(of: "source: idx", with: "source: images, order: shuffled").utf8).write(to: bad)
        try expectOneLineFailure(["pack", "--config", bad.path, "--data", png.path, "--output", byName],
                                 [bad.path, "data.order", "unknown image order 'shuffled' (known: class, name)"])
    }

    func testImageFoldersPackAndFailCleanly() throws {
        let dir = TestSupport.temporaryDirectory()
        let root = dir.appendingPathComponent("img").path
        func image(_ seed: Int, width: Int = 28) throws -> [UInt8] {
            try ImageCodec.encodePNG(DecodedImage(width: width, height: 28, channels: 1,
                                                  pixels: (0..<(width * 28)).map { UInt8(($0 * 3 + seed * 29) % 256) }))
        }
        for (split, n) in [("train", 4), ("test", 2)] {
            for cls in ["a", "b"] {
                try FileManager.default.createDirectory(atPath: "\(root)/\(split)/\(cls)", withIntermediateDirectories: true)
                for i in 0..<n { try Data(try image(i)).write(to: URL(fileURLWithPath: "\(root)/\(split)/\(cls)/\(i).png")) }
            }
        }
        let config = dir.appendingPathComponent("img.yaml")
        try Data(tinyConfig.replacingOccurrences(of: "source: idx", with: "source: images")
            .replacingOccurrences(of: "neurons: 10", with: "neurons: 2").utf8).write(to: config)
        let out = dir.appendingPathComponent("img.ptpack").path
        let pack = try TestSupport.ptrain(["pack", "--config", config.path, "--data", root, "--output", out, "--threads", "2"])
        XCTAssertEqual(pack.status, 0, pack.stderr)
        XCTAssertTrue(pack.stdout.contains("packed 8 train + 4 test samples (1x28x28, uint8, 2 classes)"), pack.stdout)
        XCTAssertTrue(pack.stdout.contains("images/s decoding with 2 threads"), pack.stdout)
        // Training straight from the folders works too.
        let train = try TestSupport.ptrain(["train", "--config", config.path, "--data", root, "--quiet",
                                            "--output", dir.appendingPathComponent("run").path])
        XCTAssertEqual(train.status, 0, train.stderr)

        // A corrupt PNG: one line naming it, and the earlier packed file is untouched.
        let before = try Data(contentsOf: URL(fileURLWithPath: out))
        var broken = try image(9)
        broken[broken.count - 20] ^= 0xFF
        try Data(broken).write(to: URL(fileURLWithPath: "\(root)/train/b/9.png"))
        try expectOneLineFailure(["pack", "--config", config.path, "--data", root, "--output", out, "--quiet"],
                                 ["\(root)/train/b/9.png", "corrupt or unreadable PNG"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }, [])
        let skip = try TestSupport.ptrain(["pack", "--config", config.path, "--data", root, "--output", out, "--quiet", "--skip-bad"])
        XCTAssertEqual(skip.status, 0, skip.stderr)
        XCTAssertTrue(skip.stdout.contains("skipped 1 unreadable image"), skip.stdout)
        try FileManager.default.removeItem(atPath: "\(root)/train/b/9.png")

        // Mixed sizes without resize; an empty class folder.
        try Data(try image(1, width: 30)).write(to: URL(fileURLWithPath: "\(root)/train/a/wide.png"))
        try expectOneLineFailure(["pack", "--config", config.path, "--data", root, "--output", out, "--quiet"],
                                 ["\(root)/train/a/wide.png", "image is 30x28 but the model input is 28x28"])
        try FileManager.default.removeItem(atPath: "\(root)/train/a/wide.png")
        try FileManager.default.createDirectory(atPath: "\(root)/train/c", withIntermediateDirectories: true)
        try expectOneLineFailure(["pack", "--config", config.path, "--data", root, "--output", out, "--quiet"],
                                 ["\(root)/train/c", "empty class folder"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: out)), before)
    }
}
