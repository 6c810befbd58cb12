// ONNX export: every gallery config and the pooling edge rules, trained briefly on generated data,
// exported, and run by ONNX Runtime (scripts/onnx-check.py) against `ptrain predict`: probabilities
// within 1e-4 and the same predicted class on every sample; onnx's full checker accepts each file.
// The structural tests (names, pads, metadata) and the bad-input tests need no Python.
import Foundation
import PTData
import PTModel
import PTTensor
import PTrain
@testable import PTExport
import XCTest

final class ONNXExportTests: XCTestCase {
    /// A Python with onnx and onnxruntime: PTRAIN_ONNX_PYTHON, or the repository's .venv-onnx
    /// (.ci/run creates it from scripts/onnx-requirements.txt). Missing: a failure under CI (CI=true
    /// or PTRAIN_REQUIRE_ONNX=1), a skip with the reason elsewhere.
    static func python() throws -> String {
        let environment = ProcessInfo.processInfo.environment
        let required = environment["CI"] == "true" || environment["PTRAIN_REQUIRE_ONNX"] == "1"
        let path = environment["PTRAIN_ONNX_PYTHON"] ?? TestSupport.repositoryRoot.appendingPathComponent(".venv-onnx/bin/python").path
        if FileManager.default.isExecutableFile(atPath: path) { return path }
        let why = "\(path) not found: the ONNX checks need Python with onnx and onnxruntime "
            + "(python3 -m venv .venv-onnx && .venv-onnx/bin/pip install -r scripts/onnx-requirements.txt)"
        if required { throw MissingPython(message: why) }
        throw XCTSkip(why)
    }

    struct MissingPython: Error, CustomStringConvertible { var message: String; var description: String { message } }
    struct StepFailed: Error, CustomStringConvertible { var message: String; var description: String { message } }

    /// `result` of `step`, or an error (the test's failure) with its output.
    @discardableResult
    func require(_ result: TestSupport.Result, _ step: String) throws -> TestSupport.Result {
        guard result.status == 0 else { throw StepFailed(message: "\(step) exited \(result.status): \(result.stdout) \(result.stderr)") }
        return result
    }

    /// Samples of `shape` for `classes` classes: a class-dependent pattern plus noise, as bytes
    /// (`bytes`) or floats, written as N x C x H x W .npy files with uint8 labels.
    func writeData(_ dir: URL, shape: Shape, classes: Int, train: Int, test: Int, bytes: Bool, seed: UInt64 = 7) throws {
        var rng = Xoshiro256(seed: seed, stream: 3)
        for (split, count) in [("train", train), ("test", test)] {
            let labels = (0..<count).map { UInt8($0 % classes) }
            let n = shape.count
            if bytes {
                var body = [UInt8](repeating: 0, count: count * n)
                for s in 0..<count {
                    for i in 0..<n {
                        let on = (i / max(1, n / (2 * classes))) % classes == Int(labels[s])
                        body[s * n + i] = UInt8(min(255, Int(rng.nextUnitFloat() * 120) + (on ? 110 : 0)))
                    }
                }
                try TestSupport.writeNPY(dir.appendingPathComponent("\(split)_images.npy"), descr: "|u1",
                                         shape: [count, shape.channels, shape.height, shape.width], body: body)
            } else {
                var values = [Float](repeating: 0, count: count * n)
                for s in 0..<count {
                    let k = Float(Int(labels[s]) + 1)
                    for i in 0..<n { values[s * n + i] = 0.3 * sin(Float(i) * k * 0.05) + 0.2 * (rng.nextUnitFloat() - 0.5) }
                }
                try values.withUnsafeBufferPointer {
                    try TestSupport.writeNPY(dir.appendingPathComponent("\(split)_images.npy"), floats: $0,
                                             shape: [count, shape.channels, shape.height, shape.width])
                }
            }
            try TestSupport.writeNPY(dir.appendingPathComponent("\(split)_labels.npy"), descr: "|u1", shape: [count], body: labels)
        }
    }

    /// `config` on generated data in `dir`: 1 epoch of a few steps, then predict on the test
    /// samples, export, and the checker. Returns the run folder.
    @discardableResult
    func trainExportAndCheck(_ config: TrainConfig, bytes: Bool, train: Int = 64, test: Int = 40, batchSize: Int = 16,
                             file: StaticString = #filePath, line: UInt = #line) throws -> URL {
        let python = try Self.python()
        let dir = TestSupport.temporaryDirectory("onnx-\(config.name)")
        let input = try XCTUnwrap(config.input, "config \(config.name) has no model.input", file: file, line: line)
        let classes = try Model(input: input, layers: config.layers, maxBatch: 1).classes
        try writeData(dir, shape: input, classes: classes, train: train, test: test, bytes: bytes)
        var c = config
        c.data.source = .npy
        c.data.path = dir.path
        c.epochs = 1
        c.batchSize = batchSize
        c.warmupEpochs = min(c.warmupEpochs, 0.5)
        let configPath = dir.appendingPathComponent("config.yaml").path
        try Data(c.yaml.utf8).write(to: URL(fileURLWithPath: configPath))
        let run = dir.appendingPathComponent("run")
        try require(try TestSupport.ptrain(["train", "--config", configPath, "--output", run.path, "--threads", "2", "-q"]), "train")

        let samples = dir.appendingPathComponent("test_images.npy").path
        let predict = try require(try TestSupport.ptrain(["predict", "--checkpoint", run.path, "--input", samples, "--format", "json"]),
                                  "predict")
        let predictions = dir.appendingPathComponent("predictions.jsonl")
        try Data(predict.stdout.utf8).write(to: predictions)

        let onnx = dir.appendingPathComponent("\(config.name).onnx").path
        let export = try require(try TestSupport.ptrain(["export", "--checkpoint", run.path, "--output", onnx]), "export")
        XCTAssertTrue(export.stdout.contains("opset \(ONNXExport.opset)"), export.stdout, file: file, line: line)

        let check = try TestSupport.run(python, ["scripts/onnx-check.py", onnx, "--samples", samples,
                                                 "--predictions", predictions.path, "--tolerance", "1e-4"])
        XCTAssertEqual(check.status, 0, "onnx-check failed for \(config.name): \(check.stdout) \(check.stderr)", file: file, line: line)
        XCTAssertTrue(check.stdout.contains("argmax identical on \(test)/\(test)"), check.stdout + check.stderr, file: file, line: line)
        return run
    }

    /// The running statistics of every batch-norm layer in the run's weights moved away from their
    /// initial 0 and 1 (so the export's use of them is tested).
    func assertBatchNormStatisticsTrained(_ run: URL, file: StaticString = #filePath, line: UInt = #line) throws {
        let weights = try Safetensors.decode(Array(try Data(contentsOf: run.appendingPathComponent("model.safetensors"))),
                                             file: "model.safetensors").tensors
        let means = weights.filter { $0.name.hasSuffix(".running_mean") }
        let variances = weights.filter { $0.name.hasSuffix(".running_var") }
        XCTAssertFalse(means.isEmpty, "no batch norm in the model", file: file, line: line)
        for t in means { XCTAssertTrue(t.values.contains { abs($0) > 1e-3 }, "\(t.name) is still 0", file: file, line: line) }
        for t in variances { XCTAssertTrue(t.values.contains { abs($0 - 1) > 1e-3 }, "\(t.name) is still 1", file: file, line: line) }
    }

    func gallery(_ name: String) throws -> TrainConfig {
        try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/\(name).yaml").path)
    }

    // MARK: The gallery, each config (ONNX Runtime against predict)

    func testXO() throws { try trainExportAndCheck(try gallery("xo"), bytes: true) }
    func testLeNet5MNIST() throws { try trainExportAndCheck(try gallery("lenet5-mnist"), bytes: true) }
    func testCIFARSmall() throws { try trainExportAndCheck(try gallery("cifar-small"), bytes: true) }
    func testFSDD1D() throws { try trainExportAndCheck(try gallery("fsdd-1d"), bytes: false) }
    func testGunPoint1D() throws { try trainExportAndCheck(try gallery("gunpoint-1d"), bytes: false, train: 20, test: 20, batchSize: 10) }
    func testMNISTFast() throws {
        try assertBatchNormStatisticsTrained(try trainExportAndCheck(try gallery("mnist-fast"), bytes: true))
    }
    func testResNetMNIST() throws {
        try assertBatchNormStatisticsTrained(try trainExportAndCheck(try gallery("resnet-mnist"), bytes: true))
    }
    func testResNet20CIFAR() throws {
        try assertBatchNormStatisticsTrained(try trainExportAndCheck(try gallery("resnet20-cifar"), bytes: true, train: 32, test: 24))
    }
    func testResNetFSDD1D() throws {
        try assertBatchNormStatisticsTrained(try trainExportAndCheck(try gallery("resnet-fsdd-1d"), bytes: false, train: 32, test: 24))
    }

    // MARK: Pooling edge rules

    /// 2-D: keep with a clipped last window (max 11 -> 6, avg 6 -> 3 with a 2-wide last window),
    /// drop with a partial window left out (max 3 s3 and avg 4 s3 on 11 -> 3), keep on a map
    /// smaller than the window (3x3, window 5 -> 1x1), strided padded convolution, batch norm,
    /// concat, global average pooling, batch norm and add of flat vectors, dropout, dense.
    static let pooling2D = """
        name: pool-edges-2d
        data: {source: npy, mean: 0.5, std: 0.25}
        model:
          input: {channels: 2, height: 11, width: 11}
          layers:
            - {name: conv1, type: conv, features: 6, size: 3, padding: 1}
            - {name: bn1, type: batchnorm}
            - {name: relu1, type: relu}
            - {name: maxkeep, type: maxpool, window: 2, stride: 2, edge: keep}
            - {name: avgkeep, type: avgpool, window: 3, stride: 2, edge: keep}
            - {name: maxdrop, type: maxpool, from: [relu1], window: 3, stride: 3, edge: drop}
            - {name: avgdrop, type: avgpool, from: [relu1], window: 4, stride: 3, edge: drop}
            - {name: joined, type: concat, from: [avgkeep, maxdrop, avgdrop]}
            - {name: conv2, type: conv, features: 8, size: 3, stride: 2, padding: 2}
            - {name: small, type: maxpool, window: 5, stride: 5, edge: keep}
            - {name: flat, type: flatten}
            - {name: gap, type: global_avgpool, from: [joined]}
            - {name: gapdense, type: dense, neurons: 8}
            - {name: gapbn, type: batchnorm}
            - {name: sum, type: add, from: [flat, gapbn]}
            - {name: drop, type: dropout, rate: 0.3}
            - {name: out, type: dense, neurons: 5}
        optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
        training: {epochs: 1, batch_size: 16, shards: 4, seed: 3}
        """

    /// 1-D: the same rules along the width (max keep 25 -> 13, avg keep 13 -> 5 with a 1-wide last
    /// window, max and avg drop 25 -> 5 leaving a partial window out), on two channels.
    static let pooling1D = """
        name: pool-edges-1d
        data: {source: npy, z_normalize: true}
        model:
          input: {channels: 2, height: 1, width: 50}
          layers:
            - {name: conv1, type: conv1d, features: 4, size: 5, stride: 2, padding: 2}
            - {name: bn1, type: batchnorm}
            - {name: relu1, type: relu}
            - {name: maxkeep, type: maxpool1d, window: 2, stride: 2, edge: keep}
            - {name: avgkeep, type: avgpool1d, window: 3, stride: 3, edge: keep}
            - {name: maxdrop, type: maxpool1d, from: [relu1], window: 6, stride: 4, edge: drop}
            - {name: avgdrop, type: avgpool1d, from: [relu1], window: 6, stride: 4, edge: drop}
            - {name: joined, type: concat, from: [avgkeep, maxdrop, avgdrop]}
            - {name: gap, type: global_avgpool}
            - {name: out, type: dense, neurons: 3}
        optimizer: {type: sgd, lr: 0.05, momentum: 0.9}
        training: {epochs: 1, batch_size: 16, shards: 4, seed: 3}
        """

    func parse(_ yaml: String, _ name: String) throws -> TrainConfig { try TrainConfig.parse(yaml: yaml, file: name) }

    /// The layers' output shapes of `config` (the pooling rules give what the comments say), then the
    /// whole check through ONNX Runtime.
    func checkPoolingRules(_ config: TrainConfig, expected: [String: Shape], bytes: Bool,
                           file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(input: try XCTUnwrap(config.input), layers: config.layers, maxBatch: 1)
        let shapes = Dictionary(uniqueKeysWithValues: model.layers.map { ($0.name, $0.outputShape) })
        for (name, shape) in expected { XCTAssertEqual(shapes[name], shape, name, file: file, line: line) }
        try trainExportAndCheck(config, bytes: bytes, file: file, line: line)
    }

    func testPoolingEdgeRules2D() throws {
        try checkPoolingRules(try parse(Self.pooling2D, "pool-edges-2d.yaml"),
                              expected: ["maxkeep": Shape(channels: 6, height: 6, width: 6), "avgkeep": Shape(channels: 6, height: 3, width: 3),
                                         "maxdrop": Shape(channels: 6, height: 3, width: 3), "avgdrop": Shape(channels: 6, height: 3, width: 3),
                                         "small": Shape(channels: 8, height: 1, width: 1)], bytes: true)
    }

    func testPoolingEdgeRules1D() throws {
        try checkPoolingRules(try parse(Self.pooling1D, "pool-edges-1d.yaml"),
                              expected: ["maxkeep": Shape(channels: 4, height: 1, width: 13), "avgkeep": Shape(channels: 4, height: 1, width: 5),
                                         "maxdrop": Shape(channels: 4, height: 1, width: 5), "avgdrop": Shape(channels: 4, height: 1, width: 5)],
                              bytes: false)
    }

    // MARK: The file's structure (no Python needed)

    /// The model of `config` with initialised weights, exported and decoded again.
    func exported(_ config: TrainConfig) throws -> Onnx_ModelProto {
        let model = try Model(input: try ONNXExport.inputShape(config), layers: config.layers, maxBatch: 1)
        let parameters = AlignedBuffer(count: model.parameterCount), state = AlignedBuffer(count: max(1, model.stateCount))
        model.initialize(parameters, seed: 1)
        model.initializeState(state)
        let bytes = try ONNXExport.encode(model: model, parameters: parameters, state: state, config: config).bytes
        return try Onnx_ModelProto(serializedBytes: bytes)
    }

    func ints(_ node: Onnx_NodeProto, _ name: String) -> [Int64]? { node.attribute.first { $0.name == name }?.ints }

    func testPoolingPadsExpressPartialWindows() throws {
        let file = try exported(try parse(Self.pooling2D, "pool-edges-2d.yaml"))
        let nodes = Dictionary(uniqueKeysWithValues: file.graph.node.map { ($0.name, $0) })
        // keep: (outputs - 1) * stride + window - input of end padding; drop: none.
        XCTAssertEqual(ints(try XCTUnwrap(nodes["maxkeep"]), "pads"), [0, 0, 1, 1])     // 5 * 2 + 2 - 11
        XCTAssertEqual(ints(try XCTUnwrap(nodes["avgkeep"]), "pads"), [0, 0, 1, 1])     // 2 * 2 + 3 - 6
        XCTAssertEqual(ints(try XCTUnwrap(nodes["maxdrop"]), "pads"), [0, 0, 0, 0])
        XCTAssertEqual(ints(try XCTUnwrap(nodes["avgdrop"]), "pads"), [0, 0, 0, 0])
        XCTAssertEqual(ints(try XCTUnwrap(nodes["small"]), "pads"), [0, 0, 2, 2])       // 5 - 3
        XCTAssertEqual(try XCTUnwrap(nodes["avgkeep"]).attribute.first { $0.name == "count_include_pad" }?.i, 0)
        XCTAssertEqual(try XCTUnwrap(nodes["maxkeep"]).opType, "MaxPool")
        XCTAssertNil(nodes["drop"], "dropout has no node")
        XCTAssertEqual(try XCTUnwrap(nodes["conv2"]).attribute.first { $0.name == "pads" }?.ints, [2, 2, 2, 2])

        let oneD = try exported(try parse(Self.pooling1D, "pool-edges-1d.yaml"))
        let nodes1 = Dictionary(uniqueKeysWithValues: oneD.graph.node.map { ($0.name, $0) })
        XCTAssertEqual(ints(try XCTUnwrap(nodes1["maxkeep"]), "pads"), [0, 1])          // 12 * 2 + 2 - 25
        XCTAssertEqual(ints(try XCTUnwrap(nodes1["avgkeep"]), "pads"), [0, 2])          // 4 * 3 + 3 - 13
        XCTAssertEqual(ints(try XCTUnwrap(nodes1["maxdrop"]), "pads"), [0, 0])
        XCTAssertEqual(ints(try XCTUnwrap(nodes1["conv1"]), "kernel_shape"), [5])
        XCTAssertEqual(oneD.graph.input[0].type.tensorType.shape.dim.map(\.dimValue), [0, 2, 50])
    }

    func testNamesOpsetInputOutputAndMetadata() throws {
        let file = try exported(try gallery("resnet20-cifar"))
        XCTAssertEqual(file.opsetImport.map(\.version), [Int64(ONNXExport.opset)])
        XCTAssertGreaterThanOrEqual(ONNXExport.opset, 17)
        XCTAssertEqual(file.graph.input.map(\.name), ["input"])
        XCTAssertEqual(file.graph.output.map(\.name), ["logits"])
        let dims = file.graph.input[0].type.tensorType.shape.dim
        XCTAssertEqual(dims[0].dimParam, "N")
        XCTAssertEqual(dims.dropFirst().map(\.dimValue), [3, 32, 32])
        XCTAssertEqual(file.graph.output[0].type.tensorType.shape.dim.map(\.dimValue), [0, 10])
        let names = Set(file.graph.initializer.map(\.name))
        for name in ["conv1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer2.0.shortcut.0.weight",
                     "layer3.2.bn2.running_mean", "linear.weight", "linear.bias"] {
            XCTAssertTrue(names.contains(name), "\(name) missing from \(names.sorted())")
        }
        XCTAssertEqual(file.graph.node.filter { $0.opType == "Add" }.count, 9)
        let metadata = Dictionary(uniqueKeysWithValues: file.metadataProps.map { ($0.key, $0.value) })
        XCTAssertEqual(metadata["ptrain.config"], "resnet20-cifar")
        XCTAssertEqual(metadata["ptrain.classes"], "10")
        XCTAssertEqual(metadata["ptrain.version"], PTrainVersion.current)
        XCTAssertEqual(metadata["ptrain.input_shape"], "3,32,32")
        XCTAssertEqual(metadata["ptrain.preprocessing.mean"], "0.4734")
        XCTAssertEqual(metadata["ptrain.preprocessing.std"], "0.2516")
        XCTAssertEqual(metadata["ptrain.preprocessing.divisor"], "255")
        XCTAssertEqual(metadata["ptrain.preprocessing.z_normalize"], "false")

        let audio = Dictionary(uniqueKeysWithValues: try exported(try gallery("fsdd-1d")).metadataProps.map { ($0.key, $0.value) })
        XCTAssertEqual(audio["ptrain.preprocessing.z_normalize"], "true")
        XCTAssertEqual(audio["ptrain.preprocessing.divisor"], "32768")
        XCTAssertEqual(audio["ptrain.input_layout"], "NCW")
    }

    // MARK: Bad input

    func testBadCheckpointIsOneLineAndNoFile() throws {
        let dir = TestSupport.temporaryDirectory()
        let output = dir.appendingPathComponent("model.onnx").path
        let missing = try TestSupport.ptrain(["export", "--checkpoint", dir.appendingPathComponent("nothing").path, "--output", output])
        XCTAssertEqual(missing.status, 1)
        XCTAssertEqual(missing.stderr.split(separator: "\n").count, 1, missing.stderr)
        XCTAssertTrue(missing.stderr.hasPrefix("ptrain: error: "), missing.stderr)

        // A run folder whose weights are cut short.
        let config = try TestSupport.smallXOConfig(dir, train: 64, test: 16, epochs: 1)
        let run = dir.appendingPathComponent("run").path
        XCTAssertEqual(try TestSupport.ptrain(["train", "--config", config, "--output", run, "-q", "--threads", "1"]).status, 0)
        let weights = run + "/model.safetensors"
        let whole = try Data(contentsOf: URL(fileURLWithPath: weights))
        try whole.prefix(whole.count / 2).write(to: URL(fileURLWithPath: weights))
        let cut = try TestSupport.ptrain(["export", "--checkpoint", run, "--output", output])
        XCTAssertEqual(cut.status, 1)
        XCTAssertEqual(cut.stderr.split(separator: "\n").count, 1, cut.stderr)
        XCTAssertTrue(cut.stderr.contains("model.safetensors"), cut.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }, [])
    }

    func testFailedWriteLeavesEarlierFileWhole() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try TestSupport.smallXOConfig(dir, train: 64, test: 16, epochs: 1)
        let run = dir.appendingPathComponent("run").path
        XCTAssertEqual(try TestSupport.ptrain(["train", "--config", config, "--output", run, "-q", "--threads", "1"]).status, 0)
        let output = dir.appendingPathComponent("model.onnx").path
        XCTAssertEqual(try TestSupport.ptrain(["export", "--checkpoint", run, "--output", output, "--quiet"]).status, 0)
        let before = try Data(contentsOf: URL(fileURLWithPath: output))
        XCTAssertGreaterThan(before.count, 1000)
        // The disk "fills up" after 1000 bytes: one line, exit 1, the earlier file untouched, no temporary file.
        let full = try TestSupport.ptrain(["export", "--checkpoint", run, "--output", output],
                                          environment: ["PTRAIN_TEST_FAIL_WRITES_AFTER_BYTES": "1000"])
        XCTAssertEqual(full.status, 1)
        XCTAssertEqual(full.stderr.split(separator: "\n").count, 1, full.stderr)
        XCTAssertTrue(full.stderr.contains("model.onnx"), full.stderr)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: output)), before)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains(".tmp") }, [])
    }

    func testConfigWithoutInputNeedsInputShape() throws {
        var config = try gallery("lenet5-mnist")
        config.input = nil
        XCTAssertThrowsError(try ONNXExport.inputShape(config)) { error in
            XCTAssertTrue("\(error)".contains("--input-shape"), "\(error)")
        }
        XCTAssertEqual(try ONNXExport.inputShape(config, given: Shape(channels: 1, height: 28, width: 28)),
                       Shape(channels: 1, height: 28, width: 28))
    }
}
