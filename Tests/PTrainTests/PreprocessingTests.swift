// The config's mean, std and z_normalize reach the samples through `Preprocessing` (the readers keep
// samples as stored): what each source's values become, written out here from the stored bytes.
import Foundation
import PTData
import PTrain
import XCTest

final class PreprocessingTests: XCTestCase {
    /// The default config with `data` replaced by `data` (a flow mapping) and its path set.
    func config(_ data: String, path: String) throws -> TrainConfig {
        let model = try XCTUnwrap(defaultConfigYAML.range(of: "model:"))
        let yaml = "name: t\ndata: \(data)\n" + defaultConfigYAML[model.lowerBound...]
        var c = try TrainConfig.parse(yaml: yaml, file: "test.yaml")
        c.data.path = path
        return c
    }

    /// MNIST (IDX) and CIFAR-10 with `data.mean` and `data.std`: (byte / 255 - mean) / std for every
    /// stored byte, in training and test sets; without them byte / 255.
    func testMeanAndStdApplyToEveryStoredByte() throws {
        let dir = TestSupport.temporaryDirectory()
        let mnist = dir.appendingPathComponent("mnist"), cifar = dir.appendingPathComponent("cifar")
        try FileManager.default.createDirectory(at: mnist, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: cifar, withIntermediateDirectories: true)
        try TestSupport.writeTinyMNIST(mnist, train: 3, test: 2)
        func record(_ label: UInt8, _ seed: Int) -> [UInt8] { [label] + (0..<3072).map { UInt8(($0 * 7 + seed * 13) % 256) } }
        for b in 1...5 { try Data(record(UInt8(b), b)).write(to: cifar.appendingPathComponent("data_batch_\(b).bin")) }
        try Data(record(9, 99)).write(to: cifar.appendingPathComponent("test_batch.bin"))

        for (source, path) in [("idx", mnist.path), ("cifar10", cifar.path)] {
            for (settings, mean, std) in [(", mean: 0.5, std: 0.25", Float(0.5), Float(0.25)), ("", Float(0), Float(1))] {
                let sets = try loadData(try config("{source: \(source)\(settings)}", path: path))
                for set in [sets.train, sets.test] {
                    for i in 0..<set.count {
                        let expected = set.store.storedBytes(i).map { (Float($0) / 255 - mean) / std }
                        XCTAssertEqual(set.values(i), expected, "\(source)\(settings): \(set.name) sample \(i)")
                    }
                }
            }
        }
    }

    /// UCR with `z_normalize`: each channel of each sample, over its whole padded length, to zero
    /// mean and unit variance (the reader pads with zeros and keeps the values as read).
    func testZNormalizeStandardisesEachPaddedChannel() throws {
        let dir = TestSupport.temporaryDirectory()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let head = "@problemName Toy\n@univariate false\n@dimensions 2\n@classLabel true a b\n@data\n"
        try Data((head + "1,2,3,4,5:10,10,20,20,10:a\n7,8:1,2:b\n").utf8).write(to: dir.appendingPathComponent("Toy_TRAIN.ts"))
        try Data((head + "3,1,2:5,5,5:b\n").utf8).write(to: dir.appendingPathComponent("Toy_TEST.ts"))
        let raw = try loadData(try config("{source: ucr}", path: dir.path))
        XCTAssertEqual(raw.train.values(1), [7, 8, 0, 0, 0, 1, 2, 0, 0, 0], "values as read, zero-padded to 5")
        let sets = try loadData(try config("{source: ucr, z_normalize: true}", path: dir.path))
        for (set, rawSet) in [(sets.train, raw.train), (sets.test, raw.test)] {
            for i in 0..<set.count {
                let values = set.values(i), before = rawSet.values(i)
                for c in 0..<2 {
                    let channel = Array(before[(c * 5)..<(c * 5 + 5)]).map(Double.init)
                    let mean = channel.reduce(0, +) / 5
                    let variance = channel.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 5
                    for t in 0..<5 {
                        // A constant channel (test sample, channel 1) becomes 0.
                        let expected = variance > 0 ? (channel[t] - mean) / variance.squareRoot() : 0
                        XCTAssertEqual(Double(values[c * 5 + t]), expected, accuracy: 1e-6, "\(set.name) sample \(i) channel \(c) t \(t)")
                    }
                }
            }
        }
    }

    /// A std that is not a positive number is refused in one line (the config refuses it too; the
    /// library's `Preprocessing` does not rely on that).
    func testNonPositiveStdIsAnError() throws {
        let dir = TestSupport.temporaryDirectory()
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try TestSupport.writeTinyMNIST(dir, train: 2, test: 1)
        let sets = try loadUnprocessedData(try config("{source: idx}", path: dir.path))
        for std: Float in [0, -1, .nan] {
            var preprocessing = Preprocessing(try config("{source: idx}", path: dir.path).data)
            preprocessing.std = std
            XCTAssertThrowsError(try preprocessing.prepare(sets.train)) { error in
                XCTAssertTrue("\(error)".contains("std must be a finite number > 0"), "\(error)")
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
    }
}
