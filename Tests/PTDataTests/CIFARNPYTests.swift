// CIFAR-10 binary batch and NPY tests on small files written here in the real formats.
import Foundation
import PTData
import PTTensor
import XCTest

final class CIFAR10Tests: XCTestCase {
    func record(label: UInt8, seed: Int) -> [UInt8] {
        [label] + (0..<3072).map { UInt8(($0 * 7 + seed * 13) % 256) }
    }

    func writeFolder(_ dir: String) throws {
        for b in 1...5 { try write(record(label: UInt8(b), seed: b) + record(label: 0, seed: b + 10), to: dir + "/data_batch_\(b).bin") }
        try write(record(label: 9, seed: 99), to: dir + "/test_batch.bin")
    }

    func testLoadsBatchesInOrder() throws {
        let dir = try makeTempFolder(self)
        try writeFolder(dir)
        let (train, test) = try CIFAR10Folder.load(directory: dir)
        XCTAssertEqual(train.count, 10)
        XCTAssertEqual(test.count, 1)
        XCTAssertEqual(train.shape, Shape(channels: 3, height: 32, width: 32))
        XCTAssertEqual(train.labels, [1, 0, 2, 0, 3, 0, 4, 0, 5, 0])
        XCTAssertEqual(test.labels, [9])
        let expected = record(label: 0, seed: 12)
        for j in [0, 1023, 1024, 2047, 3071] { XCTAssertEqual(train.values(3)[j], Float(expected[1 + j]) / 255) }
        // A conversion with one mean and std per channel (the config gives one for all; PTrainTests'
        // PreprocessingTests check that path).
        let normalized = try test.with(conversion: SampleConversion(divisor: 255, mean: [0.1, 0.2, 0.3], std: [0.5, 0.25, 2]))
        let raw = record(label: 9, seed: 99)
        for (j, c) in [(5, 0), (1030, 1), (3000, 2)] {
            XCTAssertEqual(normalized.values(0)[j], (Float(raw[1 + j]) / 255 - [0.1, 0.2, 0.3][c]) / [0.5, 0.25, 2][c], accuracy: 1e-6)
        }
    }

    func testErrorsNameTheFile() throws {
        let dir = try makeTempFolder(self)
        assertDataError([dir + "/none", "not found"]) { try CIFAR10Folder.load(directory: dir + "/none") }
        try writeFolder(dir)
        try FileManager.default.removeItem(atPath: dir + "/data_batch_4.bin")
        assertDataError([dir, "data_batch_4.bin"]) { try CIFAR10Folder.load(directory: dir) }
        try write(record(label: 1, seed: 0) + [1, 2, 3], to: dir + "/data_batch_4.bin")
        assertDataError([dir + "/data_batch_4.bin", "3073-byte records"]) { try CIFAR10Folder.load(directory: dir) }
        try write(record(label: 1, seed: 0) + record(label: 10, seed: 0), to: dir + "/data_batch_4.bin")
        assertDataError([dir + "/data_batch_4.bin", "label 10", "record 1"]) { try CIFAR10Folder.load(directory: dir) }
        try write(record(label: 1, seed: 0), to: dir + "/data_batch_4.bin")
        assertDataError(["std must be a finite number > 0"]) {
            try CIFAR10Folder.load(directory: dir).test.with(conversion: SampleConversion(divisor: 255, std: [1, 0, 1]))
        }
    }
}

final class NPYTests: XCTestCase {
    func testDTypes() throws {
        let dir = try makeTempFolder(self)
        let expected: [Float] = [0, 1, 2, 3, 250, 5]
        let files: [(String, [UInt8])] = [
            ("<f4", bytesOf(expected)),
            ("<f8", bytesOf(expected.map(Double.init))),
            ("|u1", expected.map { UInt8($0) }),
            ("<i4", bytesOf(expected.map { Int32($0) })),
            ("<i8", bytesOf(expected.map { Int64($0) })),
        ]
        for (descr, data) in files {
            let path = dir + "/a.npy"
            try write(npyBytes(descr: descr, shape: [2, 3], data: data), to: path)
            let (shape, values) = try NPY.load(path: path)
            XCTAssertEqual(shape, [2, 3], descr)
            XCTAssertEqual(values, expected, descr)
        }
        try write(npyBytes(descr: "<i4", shape: [], data: bytesOf([Int32(-7)])), to: dir + "/scalar.npy")
        XCTAssertEqual(try NPY.load(path: dir + "/scalar.npy").values, [-7])
    }

    func testErrorsNameTheFile() throws {
        let dir = try makeTempFolder(self)
        let four = bytesOf([Float](repeating: 1, count: 4))
        let cases: [(String, [UInt8], [String])] = [
            ("fortran", npyBytes(descr: "<f4", shape: [2, 2], data: four, fortran: true), ["fortran_order"]),
            ("truncated", npyBytes(descr: "<f4", shape: [2, 2], data: Array(four.dropLast())), ["truncated"]),
            ("trailing", npyBytes(descr: "<f4", shape: [2, 2], data: four + [0]), ["trailing"]),
            ("bigendian", npyBytes(descr: ">f4", shape: [2, 2], data: four), ["unsupported dtype", ">f4"]),
            ("complex", npyBytes(descr: "<c8", shape: [2], data: four + four), ["unsupported dtype"]),
            ("magic", Array("PK\u{3}\u{4} not npy at all".utf8), ["not a .npy file"]),
            ("shortheader", Array(npyBytes(descr: "<f4", shape: [2, 2], data: four).prefix(30)), ["truncated"]),
        ]
        for (name, bytes, parts) in cases {
            let path = dir + "/" + name + ".npy"
            try write(bytes, to: path)
            assertDataError([path] + parts) { try NPY.load(path: path) }
        }
    }

    func testPairs() throws {
        let dir = try makeTempFolder(self)
        // N x H x W bytes: one channel, /255.
        try write(npyBytes(descr: "|u1", shape: [3, 2, 2], data: (0..<12).map { UInt8($0 * 10) }), to: dir + "/x.npy")
        try write(npyBytes(descr: "<i8", shape: [3], data: bytesOf([Int64(2), 0, 1])), to: dir + "/y.npy")
        let a = try NPYPair.load(images: dir + "/x.npy", labels: dir + "/y.npy")
        XCTAssertEqual(a.shape, Shape(channels: 1, height: 2, width: 2))
        XCTAssertEqual(a.classes, 3)
        XCTAssertEqual(a.labels, [2, 0, 1])
        XCTAssertEqual(a.images.array, (0..<12).map { Float($0 * 10) / 255 })
        // N x C x H x W floats, kept as stored.
        try write(npyBytes(descr: "<f4", shape: [3, 2, 1, 2], data: bytesOf((0..<12).map { Float($0) - 5 })), to: dir + "/x4.npy")
        let b = try NPYPair.load(images: dir + "/x4.npy", labels: dir + "/y.npy", classes: 10)
        XCTAssertEqual(b.shape, Shape(channels: 2, height: 1, width: 2))
        XCTAssertEqual(b.classes, 10)
        XCTAssertEqual(b.images.array, (0..<12).map { Float($0) - 5 })
        // N x L signals.
        try write(npyBytes(descr: "<f8", shape: [3, 4], data: bytesOf((0..<12).map(Double.init))), to: dir + "/x2.npy")
        XCTAssertEqual(try NPYPair.load(images: dir + "/x2.npy", labels: dir + "/y.npy").shape, Shape(channels: 1, height: 1, width: 4))

        try write(npyBytes(descr: "<i4", shape: [2], data: bytesOf([Int32(1), 0])), to: dir + "/y2.npy")
        assertDataError([dir + "/x.npy", dir + "/y2.npy", "3 samples", "2 labels"]) {
            try NPYPair.load(images: dir + "/x.npy", labels: dir + "/y2.npy")
        }
        assertDataError([dir + "/y.npy", "label 2", "index 0", "0..<2"]) {
            try NPYPair.load(images: dir + "/x.npy", labels: dir + "/y.npy", classes: 2)
        }
        try write(npyBytes(descr: "<f4", shape: [3], data: bytesOf([Float(1), 0.5, 0])), to: dir + "/yf.npy")
        assertDataError([dir + "/yf.npy", "0.5", "index 1"]) { try NPYPair.load(images: dir + "/x.npy", labels: dir + "/yf.npy") }
        try write(npyBytes(descr: "<f4", shape: [12], data: bytesOf([Float](repeating: 0, count: 12))), to: dir + "/flat.npy")
        assertDataError([dir + "/flat.npy", "N x C x H x W"]) { try NPYPair.load(images: dir + "/flat.npy", labels: dir + "/y.npy") }
    }
}
