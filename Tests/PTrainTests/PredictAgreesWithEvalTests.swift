// One preprocessing and one evaluation path: for each gallery config with real data (the cuts in
// Tests/Fixtures), `ptrain predict` over the test split classifies exactly as `ptrain eval` does, and `eval` reproduces the
// last epoch's test loss and accuracy of training. A uint8 NPY data set with data.mean / data.std
// checks that training, eval and predict feed the model the same values.
import Foundation
import XCTest
import PTData
import PTTensor
import PTrain

final class PredictAgreesWithEvalTests: XCTestCase {
    /// The real-data fixture folder NAME (Tests/Fixtures/NAME).
    func fixture(_ name: String) -> String {
        TestSupport.repositoryRoot.appendingPathComponent("Tests/Fixtures/\(name)").path
    }

    func json(_ line: Substring) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
    }

    /// Trains `config` (with `arguments`), then checks eval against the last epoch and predict over
    /// `input` (the test split, labelled `labels`) against eval's confusion matrix.
    func checkAgreement(config: String, arguments: [String], input: String, labels: [Int32],
                        file: StaticString = #filePath, line: UInt = #line) throws {
        let run = TestSupport.temporaryDirectory("run").path
        let train = try TestSupport.ptrain(["train", "--config", config, "--output", run, "--threads", "2", "-q"] + arguments)
        XCTAssertEqual(train.status, 0, train.stderr, file: file, line: line)
        let metrics = try String(contentsOfFile: run + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        let last = try json(try XCTUnwrap(metrics.last { $0.contains("\"event\":\"epoch\"") }))

        let eval = try TestSupport.ptrain(["eval", "--checkpoint", run, "--format", "json", "--threads", "1"])
        XCTAssertEqual(eval.status, 0, eval.stderr, file: file, line: line)
        let evaluated = try json(Substring(eval.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
        XCTAssertEqual(evaluated["samples"] as? Int, labels.count, file: file, line: line)
        XCTAssertEqual(evaluated["accuracy"] as? Double, last["test_accuracy"] as? Double, "eval differs from training's test accuracy", file: file, line: line)
        XCTAssertEqual(evaluated["loss"] as? Double, last["test_loss"] as? Double, "eval differs from training's test loss", file: file, line: line)
        let confusion = try XCTUnwrap(evaluated["confusion"] as? [[Int]])

        let predict = try TestSupport.ptrain(["predict", "--checkpoint", run, "--input", input, "--format", "json"])
        XCTAssertEqual(predict.status, 0, predict.stderr, file: file, line: line)
        let rows = predict.stdout.split(separator: "\n")
        XCTAssertEqual(rows.count, labels.count, file: file, line: line)
        var predicted = Array(repeating: Array(repeating: 0, count: confusion.count), count: confusion.count)
        for (row, label) in zip(rows, labels) {
            let object = try json(row)
            let k = try XCTUnwrap(object["class"] as? Int)
            predicted[Int(label)][k] += 1
        }
        XCTAssertEqual(predicted, confusion, "predict classifies the test split differently from eval", file: file, line: line)
        let correct = (0..<confusion.count).reduce(0) { $0 + predicted[$1][$1] }
        // (JSONSerialization may parse the last digit differently from Swift's division: compare counts.)
        let evalCorrect = try XCTUnwrap(evaluated["accuracy"] as? Double) * Double(labels.count)
        XCTAssertEqual(correct, Int(evalCorrect.rounded()), file: file, line: line)
    }

    /// The test split as its reader decodes it (before preprocessing), as float32 NPY.
    func writeTestSplit(_ config: TrainConfig, to url: URL, flat: Bool = false) throws -> [Int32] {
        let test = try loadUnprocessedData(config).test
        let values = test.converted()
        let dims = flat ? [test.count, test.shape.count] : [test.count, test.shape.channels, test.shape.height, test.shape.width]
        try TestSupport.writeNPY(url, floats: UnsafeBufferPointer(start: values.pointer, count: values.count), shape: dims)
        return test.labels
    }

    func testXO() throws {
        let dir = TestSupport.temporaryDirectory()
        let path = try TestSupport.smallXOConfig(dir, train: 800, test: 200, epochs: 1)
        let input = dir.appendingPathComponent("test.npy")
        let labels = try writeTestSplit(try TrainConfig.load(path: path), to: input)
        try checkAgreement(config: path, arguments: [], input: input.path, labels: labels)
    }

    func testLeNet5MNIST() throws {
        let data = fixture("mnist")
        // The test images as they are distributed: IDX bytes (gzipped), scaled and normalised by predict.
        let labels = try IDX.load(path: data + "/t10k-labels-idx1-ubyte.gz").bytes.map { Int32($0) }
        try checkAgreement(config: "configs/lenet5-mnist.yaml", arguments: ["--data", data, "--epochs", "1"],
                           input: data + "/t10k-images-idx3-ubyte.gz", labels: labels)
    }

    func testGunPoint1D() throws {
        let data = fixture("ucr/GunPoint")
        var config = try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/gunpoint-1d.yaml").path)
        config.data.path = data
        let input = TestSupport.temporaryDirectory().appendingPathComponent("test.npy")
        let labels = try writeTestSplit(config, to: input, flat: true)   // raw series; predict z-normalises them
        try checkAgreement(config: "configs/gunpoint-1d.yaml", arguments: ["--data", data, "--epochs", "5"], input: input.path, labels: labels)
    }

    func testSpokenDigits1D() throws {
        let data = fixture("fsdd")
        var config = try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/fsdd-1d.yaml").path)
        config.data.path = data
        let input = TestSupport.temporaryDirectory().appendingPathComponent("test.npy")
        let labels = try writeTestSplit(config, to: input)
        try checkAgreement(config: "configs/fsdd-1d.yaml", arguments: ["--data", data, "--epochs", "1"], input: input.path, labels: labels)
    }

    /// X/O images stored as uint8 NPY, with data.mean and data.std in the config: the values the
    /// trainer, eval and predict give the model are (byte / 255 - mean) / std, all three alike.
    func testUInt8NPYWithMeanAndStd() throws {
        let dir = TestSupport.temporaryDirectory()
        var xo = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        xo.data.trainCount = 600
        xo.data.testCount = 200
        let sets = try loadUnprocessedData(xo)
        var testBytes: [UInt8] = []
        for (name, set) in [("train", sets.train), ("test", sets.test)] {
            // Pixels in [-1, 1] -> bytes.
            let values = set.converted()
            let bytes = (0..<values.count).map { UInt8(((values[$0] + 1) * 127.5).rounded()) }
            if name == "test" { testBytes = bytes }
            try TestSupport.writeNPY(dir.appendingPathComponent("\(name)_images.npy"), descr: "|u1", shape: [set.count, 16, 16], body: bytes)
            try TestSupport.writeNPY(dir.appendingPathComponent("\(name)_labels.npy"), descr: "|u1", shape: [set.count],
                                     body: set.labels.map { UInt8($0) })
        }
        let yaml = defaultConfigYAML.replacingOccurrences(of: "  source: xo\n", with: "  source: npy\n  mean: 0.4\n  std: 0.45\n")
            .replacingOccurrences(of: "  epochs: 8", with: "  epochs: 1")
        let configPath = dir.appendingPathComponent("npy.yaml")
        try Data(yaml.utf8).write(to: configPath)
        var config = try TrainConfig.load(path: configPath.path)
        config.data.path = dir.path

        // Training's (and eval's) values.
        let loaded = try loadData(config).test
        let loadedValues = loaded.converted()
        let mean: Float = 0.4, std: Float = 0.45
        for i in 0..<loadedValues.count {
            XCTAssertEqual(loadedValues[i], (Float(testBytes[i]) / 255 - mean) / std, "sample value \(i)")
            if loadedValues[i] != (Float(testBytes[i]) / 255 - mean) / std { break }
        }
        // Predict's values, from the same file ('|u1') and from a '<u1' copy.
        let littleEndian = dir.appendingPathComponent("test_images_le.npy")
        try TestSupport.writeNPY(littleEndian, descr: "<u1", shape: [sets.test.count, 16, 16], body: testBytes)
        for file in ["test_images.npy", "test_images_le.npy"] {
            let samples = try loadSamples(dir.appendingPathComponent(file).path, preprocessing: Preprocessing(config.data))
            XCTAssertEqual(samples.shape, loaded.shape)
            XCTAssertEqual(samples.converted().array, loadedValues.array, "\(file): predict's input differs from training's")
        }
        try checkAgreement(config: configPath.path, arguments: ["--data", dir.path], input: dir.appendingPathComponent("test_images.npy").path,
                           labels: sets.test.labels)
    }
}
