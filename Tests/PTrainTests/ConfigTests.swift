// Config parsing: the shipped configs, round-trips, and one-line errors naming file, line and key.
import XCTest
import PTModel
import PTrain

final class ConfigTests: XCTestCase {
    func testShippedConfigsParseAndTheDefaultMatchesConfigsXO() throws {
        let root = TestSupport.repositoryRoot
        let xoText = try String(contentsOf: root.appendingPathComponent("configs/xo.yaml"), encoding: .utf8)
        XCTAssertEqual(xoText, defaultConfigYAML, "configs/xo.yaml and the built-in default job must stay identical")
        let lenet = try TrainConfig.load(path: root.appendingPathComponent("configs/lenet5-mnist.yaml").path)
        XCTAssertEqual(lenet.layers.count, 12)
        XCTAssertEqual(lenet.batchSize, 64)
        XCTAssertEqual(lenet.schedule, .cosine)
        XCTAssertEqual(lenet.data.source, .idx)
        let configs = try FileManager.default.contentsOfDirectory(atPath: root.appendingPathComponent("configs").path)
        for name in configs where name.hasSuffix(".yaml") {
            XCTAssertNoThrow(try TrainConfig.load(path: root.appendingPathComponent("configs/\(name)").path), name)
        }
    }

    func testResolvedYAMLRoundTrips() throws {
        var config = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        config.learningRate = 0.125
        config.data.path = "some dir/with 'quotes'"
        config.nesterov = true
        config.data.order = .name
        let again = try TrainConfig.parse(yaml: config.yaml, file: "resolved")
        XCTAssertEqual(again, config)
        let lenet = try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/lenet5-mnist.yaml").path)
        XCTAssertEqual(try TrainConfig.parse(yaml: lenet.yaml, file: "resolved"), lenet)
        // Every layer kind and the Adam family survive the round trip.
        var more = config
        more.optimizer = .adamw
        more.nesterov = false   // an SGD setting: not written for Adam
        more.beta2 = 0.98
        more.layers = [.conv(features: 4, kernelHeight: 1, kernelWidth: 5, stride: 2, padding: 2, initializer: .glorot), .relu,
                       .avgPool(windowHeight: 1, windowWidth: 3, stride: 2, keepPartial: false), .dropout(rate: 0.125),
                       .batchNorm(momentum: 0.25, epsilon: 0.001),
                       .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true), .globalAvgPool, .flatten,
                       .dense(neurons: 3, initializer: .he)]
        XCTAssertEqual(try TrainConfig.parse(yaml: more.yaml, file: "resolved"), more)
    }

    func expectError(_ yaml: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try TrainConfig.parse(yaml: yaml, file: "my.yaml"), file: file, line: line) { error in
            let text = "\(error)"
            XCTAssertFalse(text.contains("\n"), "error spans several lines: \(text)", file: file, line: line)
            XCTAssertTrue(text.contains(expected), "expected '\(expected)' in: \(text)", file: file, line: line)
            XCTAssertTrue(text.hasPrefix("my.yaml"), "error does not name the file: \(text)", file: file, line: line)
        }
    }

    let layers = "model:\n  layers:\n    - {type: dense, neurons: 2}\n"

    func testErrorsNameFileLineAndKey() {
        expectError("name: x\nbogus: 1\n" + layers, "my.yaml:2: unknown key 'bogus'")
        expectError(layers + "training:\n  batchsize: 3\n", "unknown key 'training.batchsize'")
        expectError(layers + "training:\n  batch_size: many\n", "training.batch_size: expected an integer, got 'many'")
        expectError(layers + "training:\n  batch_size: 0\n", "training.batch_size: must be in 1...1048576, got 0")
        expectError(layers + "training:\n  epochs: -2\n", "training.epochs: must be in 1...1000000, got -2")
        expectError(layers + "optimizer:\n  lr: .nan\n", "optimizer.lr: must be a finite number")
        expectError(layers + "optimizer:\n  lr: -1\n", "optimizer.lr: must be a finite number > 0")
        expectError(layers + "optimizer:\n  type: rmsprop\n", "unknown optimizer 'rmsprop'")
        expectError("model:\n  layers:\n    - {type: conv, features: 0, size: 3}\n", "model.layers[1].features: must be in 1...65536, got 0")
        expectError("model:\n  layers:\n    - {type: conv, featurs: 4, size: 3}\n", "unknown key 'model.layers[1].featurs'")
        expectError("model:\n  layers:\n    - {type: convolution}\n", "unknown layer type 'convolution'")
        expectError("model:\n  layers:\n    - relu\n    - {type: pool, window: 2, edge: wrap}\n", "model.layers[2].edge: must be keep or drop")
        expectError("data: [1, 2]\n" + layers, "data: expected a mapping")
        expectError("name: [unclosed\n", "not valid YAML")
        expectError("", "the config file is empty")
        expectError("name: x\n", "model: missing")
        expectError(layers + "training:\n  shards: 9\n  batch_size: 4\n", "9 shards cannot split a batch of 4")
    }

    func testMissingConfigFile() {
        XCTAssertThrowsError(try TrainConfig.load(path: "/nonexistent/ptrain.yaml")) { error in
            XCTAssertEqual("\(error)", "/nonexistent/ptrain.yaml: config file not found")
        }
    }
}
