// Packed files: round trips from every source, checksums, truncation, atomic writing, lazy checks.
import Foundation
import PTData
import PTTensor
import XCTest

final class PackedTests: XCTestCase {
    /// Packs `sets`, opens the file and checks that it holds the same stored samples, labels, classes
    /// and (with the same conversion) the same converted values.
    @discardableResult
    func roundTrip(_ sets: (train: Dataset, test: Dataset), _ dir: String, name: String,
                   file: StaticString = #filePath, line: UInt = #line) throws -> PackedFile {
        let path = dir + "/" + name + ".ptpack"
        try Packed.write(train: sets.train, test: sets.test, divisor: sets.train.conversion.divisor, to: path)
        let packed = try PackedFile(path: path)
        XCTAssertEqual(packed.header.elementType, sets.train.store.elementType, file: file, line: line)
        for (original, loaded) in [(sets.train, packed.train), (sets.test, packed.test)] {
            XCTAssertEqual(loaded.count, original.count, file: file, line: line)
            XCTAssertEqual(loaded.shape, original.shape, file: file, line: line)
            XCTAssertEqual(loaded.labels, original.labels, file: file, line: line)
            XCTAssertTrue(loaded.store.isMapped, file: file, line: line)
            XCTAssertEqual(loaded.conversion.divisor, original.conversion.divisor, file: file, line: line)
            for i in 0..<original.count {
                XCTAssertEqual(loaded.store.storedBytes(i), original.store.storedBytes(i), "\(name) sample \(i)", file: file, line: line)
            }
            let same = try loaded.with(conversion: original.conversion)
            XCTAssertEqual(same.converted().array, original.converted().array, "\(name) converted values", file: file, line: line)
        }
        XCTAssertEqual(packed.train.classNames, sets.train.classNames, file: file, line: line)
        // Prefetching the pages of some samples is only advice: the values stay the same.
        let picks: [Int32] = [Int32(sets.train.count - 1), 0]
        picks.withUnsafeBufferPointer { packed.train.store.prefetch(indices: $0.baseAddress!, count: 2) }
        XCTAssertEqual(packed.train.store.storedBytes(0), sets.train.store.storedBytes(0), file: file, line: line)
        // Nothing but the file itself is left in the folder (the temporary file was renamed).
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix(name + ".") || $0.hasPrefix("." + name) }, [name + ".ptpack"],
                       file: file, line: line)
        return packed
    }

    func testRoundTripIDX() throws {
        let dir = try makeTempFolder(self)
        let images = idxBytes(dims: [5, 3, 4], body: (0..<60).map { UInt8($0 * 17 % 256) })
        try write(images, to: dir + "/train-images-idx3-ubyte")
        try write(idxBytes(dims: [5], body: [0, 1, 2, 1, 0]), to: dir + "/train-labels-idx1-ubyte")
        try write(idxBytes(dims: [2, 3, 4], body: (0..<24).map { UInt8($0 * 5) }), to: dir + "/t10k-images-idx3-ubyte")
        try write(idxBytes(dims: [2], body: [2, 0]), to: dir + "/t10k-labels-idx1-ubyte")
        let stored = try MNISTFolder.load(directory: dir, classes: 3)
        let conversion = SampleConversion(divisor: 255, mean: [0.1307], std: [0.3081])
        let sets = (try stored.train.with(conversion: conversion), try stored.test.with(conversion: conversion))
        let packed = try roundTrip(sets, dir, name: "idx")
        XCTAssertEqual(packed.header.elementType, .uint8)
        XCTAssertEqual(packed.header.divisor, 255)
        // 4 bytes per sample on disk are 1 byte each: the file holds the bytes, not floats.
        XCTAssertEqual(packed.train.store.sampleBytes, 12)
    }

    func testRoundTripCIFARAndNPY() throws {
        let dir = try makeTempFolder(self)
        func record(_ label: UInt8, _ seed: Int) -> [UInt8] { [label] + (0..<3072).map { UInt8(($0 * 7 + seed * 13) % 256) } }
        for b in 1...5 { try write(record(UInt8(b), b) + record(0, b + 10), to: dir + "/data_batch_\(b).bin") }
        try write(record(9, 99), to: dir + "/test_batch.bin")
        let cifar = try CIFAR10Folder.load(directory: dir)
        let perChannel = SampleConversion(divisor: 255, mean: [0.4914, 0.4822, 0.4465], std: [0.2470, 0.2435, 0.2616])
        try roundTrip((try cifar.train.with(conversion: perChannel), try cifar.test.with(conversion: perChannel)), dir, name: "cifar")

        // NPY: uint8 images stay bytes; float32 images stay float32.
        let npy = dir + "/npy"
        try FileManager.default.createDirectory(atPath: npy, withIntermediateDirectories: true)
        try write(npyBytes(descr: "|u1", shape: [3, 2, 2], data: (0..<12).map { UInt8($0 * 20) }), to: npy + "/train_images.npy")
        try write(npyBytes(descr: "<i8", shape: [3], data: bytesOf([Int64(0), 1, 1])), to: npy + "/train_labels.npy")
        try write(npyBytes(descr: "<f4", shape: [2, 4], data: bytesOf([Float(1.5), -2, 3, 4, 5, 6, 7, 8e-20])), to: npy + "/f_images.npy")
        try write(npyBytes(descr: "<i8", shape: [2], data: bytesOf([Int64(1), 0])), to: npy + "/f_labels.npy")
        let bytes = try NPYPair.load(images: npy + "/train_images.npy", labels: npy + "/train_labels.npy")
        XCTAssertEqual(bytes.store.elementType, .uint8)
        try roundTrip((bytes, bytes), dir, name: "npy-u8")
        let floats = try NPYPair.load(images: npy + "/f_images.npy", labels: npy + "/f_labels.npy")
        let packed = try roundTrip((floats, floats), dir, name: "npy-f32")
        XCTAssertEqual(packed.header.elementType, .float32)
        XCTAssertEqual(packed.train.values(0), [1.5, -2, 3, 4])
    }

    func testRoundTripWAVAndUCR() throws {
        let dir = try makeTempFolder(self)
        let rec = dir + "/recordings"
        try FileManager.default.createDirectory(atPath: rec, withIntermediateDirectories: true)
        try write(wavBytes(samples: [100, 100, 900, 100]), to: rec + "/3_bob_0.wav")
        try write(wavBytes(samples: (0..<10).map { Int16($0 * 100) }), to: rec + "/7_bob_12.wav")
        try write(wavBytes(samples: [5, -5]), to: rec + "/1_amy_6.wav")
        let fsdd = try SpokenDigits.load(directory: dir, length: 6)
        let packed = try roundTrip(fsdd, dir, name: "fsdd")
        // Audio stays int16 (2 bytes a sample) and the clip table brings back each clip's window and mean.
        XCTAssertEqual(packed.header.elementType, .int16)
        XCTAssertTrue(packed.header.hasClips)
        XCTAssertEqual(packed.train.store.sampleBytes, 12)
        XCTAssertEqual(packed.train.clips, fsdd.train.clips)
        XCTAssertEqual(packed.test.clips, fsdd.test.clips)
        XCTAssertEqual(packed.test.values(0), fsdd.test.values(0))

        let ucr = dir + "/ucr"
        try FileManager.default.createDirectory(atPath: ucr, withIntermediateDirectories: true)
        let header = "@problemName Toy\n@univariate true\n@classLabel true a b\n@data\n"
        try write(header + "1,2,3,4:a\n4,3,2,1:b\n", to: ucr + "/Toy_TRAIN.ts")
        try write(header + "1,1,2,2:b\n", to: ucr + "/Toy_TEST.ts")
        let series = try UCRFolder.load(directory: ucr)
        let z = SampleConversion(divisor: 1, zNormalize: true)
        try roundTrip((try series.train.with(conversion: z), try series.test.with(conversion: z)), dir, name: "ucr")
    }

    func testRoundTripImageFolder() throws {
        let dir = try makeTempFolder(self)
        for (split, count) in [("train", 3), ("test", 1)] {
            for cls in ["cat", "dog"] {
                let folder = "\(dir)/img/\(split)/\(cls)"
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                for i in 0..<count {
                    let image = DecodedImage(width: 5, height: 4, channels: 3, pixels: (0..<60).map { UInt8(($0 * 11 + i * 3) % 256) })
                    try write(try ImageCodec.encodePNG(image), to: "\(folder)/\(i).png")
                }
            }
        }
        let sets = try ImageFolder.load(root: dir + "/img", shape: Shape(channels: 3, height: 4, width: 5), resize: false)
        let packed = try roundTrip(sets, dir, name: "images")
        XCTAssertEqual(packed.header.classNames, ["cat", "dog"])
    }

    /// A small packed MNIST-like file with several checksum blocks (samples of 64 KiB).
    func makeFile(_ dir: String) throws -> (path: String, header: Packed.Header) {
        let shape = Shape(channels: 1, height: 256, width: 256)
        let count = 40
        var bytes = [UInt8](repeating: 0, count: count * shape.count)
        var rng = Xoshiro256(seed: 5, stream: 1)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: rng.next()) }
        let store = SampleStore(bytes: bytes, elementType: .uint8, count: count, sampleElements: shape.count)
        let set = try Dataset(name: "big", shape: shape, classes: 4, store: store, labels: (0..<count).map { Int32($0 % 4) })
        let path = dir + "/big.ptpack"
        try Packed.write(train: set, test: set, divisor: 255, to: path)
        let header = try PackedFile(path: path).header
        XCTAssertGreaterThan(header.blocks, 2)
        return (path, header)
    }

    func corrupt(_ path: String, at offset: Int) throws {
        var data = try Data(contentsOf: URL(fileURLWithPath: path))
        data[offset] ^= 0x40
        try data.write(to: URL(fileURLWithPath: path))
    }

    func testBadChecksumsAreOneLineErrorsNamingTheFile() throws {
        let dir = try makeTempFolder(self)
        let (path, h) = try makeFile(dir)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        func restore() throws { try original.write(to: URL(fileURLWithPath: path)) }

        // A sample byte in the third block.
        try corrupt(path, at: h.samplesOffset + 2 * h.blockSamples * h.sampleBytes + 7)
        let first = 2 * h.blockSamples
        assertDataError([path, "samples \(first)..<\(first + h.blockSamples) (block 2) checksum mismatch"]) { try PackedFile(path: path) }
        // Lazily checked (as large files are): opening succeeds; the block check finds it.
        let lazy = try PackedFile(path: path, verifyAtOpenLimit: 0)
        XCTAssertTrue(lazy.lazy)
        XCTAssertEqual(lazy.train.values(0).count, h.shape.count)  // block 0 is fine
        assertDataError([path, "(block 2) checksum mismatch"]) { try lazy.verifyAllBlocks() }
        try restore()

        try corrupt(path, at: 60)  // header field
        assertDataError([path, "header checksum mismatch"]) { try PackedFile(path: path) }
        try restore()
        try corrupt(path, at: h.labelsOffset + 5)
        assertDataError([path, "labels checksum mismatch"]) { try PackedFile(path: path) }
        try restore()
        try corrupt(path, at: h.indexOffset + 9)
        assertDataError([path, "index checksum mismatch"]) { try PackedFile(path: path) }
        try restore()
        try corrupt(path, at: h.checksumsOffset + 1)
        assertDataError([path, "checksum table checksum mismatch"]) { try PackedFile(path: path) }
        try restore()
        try corrupt(path, at: 0)
        assertDataError([path, "not a packed data file"]) { try PackedFile(path: path) }
        try restore()
        XCTAssertNoThrow(try PackedFile(path: path))
    }

    func testClipTableDamageIsAnErrorNamingTheFile() throws {
        let dir = try makeTempFolder(self)
        let rec = dir + "/recordings"
        try FileManager.default.createDirectory(atPath: rec, withIntermediateDirectories: true)
        try write(wavBytes(samples: [100, 100, 900, 100]), to: rec + "/3_bob_0.wav")
        try write(wavBytes(samples: (0..<10).map { Int16($0 * 100) }), to: rec + "/7_bob_12.wav")
        let sets = try SpokenDigits.load(directory: dir, length: 6)
        let path = dir + "/clips.ptpack"
        try Packed.write(train: sets.train, test: sets.test, divisor: 32768, to: path)
        let h = try PackedFile(path: path).header
        let table = try XCTUnwrap(h.clipsOffset)
        XCTAssertEqual(h.fileSize, table + 12 * 2)
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: path)))

        // A flipped bit in the table: its checksum.
        var bytes = original
        bytes[table + 13] ^= 4
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        assertDataError([path, "clip table checksum mismatch"]) { try PackedFile(path: path) }

        // A window past the sample's end, with every checksum made to match: the window is checked.
        func reseal(_ edit: (inout [UInt8]) -> Void) throws {
            var b = original
            edit(&b)
            let crc = crc32(b[table..<(table + 24)])
            for k in 0..<4 { b[116 + k] = UInt8(truncatingIfNeeded: crc >> (8 * UInt32(k))) }
            let headerSize = Int(b[12]) | Int(b[13]) << 8
            let headerCRC = crc32(b[0..<(headerSize - 4)])
            for k in 0..<4 { b[headerSize - 4 + k] = UInt8(truncatingIfNeeded: headerCRC >> (8 * UInt32(k))) }
            try Data(b).write(to: URL(fileURLWithPath: path))
        }
        try reseal { $0[table] = 1 }  // sample 0 (the cropped clip): first 0 -> 1, count 6: 1..<7 of 6 values
        assertDataError([path, "sample 0", "clip window 1..<7 is outside the sample's 6 values"]) { try PackedFile(path: path) }
        try reseal { $0[table + 12 + 11] = 0x7F; $0[table + 12 + 10] = 0xC0 }  // sample 1's centre: NaN
        assertDataError([path, "sample 1", "clip centre nan is not a finite number"]) { try PackedFile(path: path) }
        try reseal { _ in }
        XCTAssertEqual(try PackedFile(path: path).train.values(0), sets.train.values(0))
        // A flag bit this reader does not know (as flag bit 1 is to an older one): refused, not ignored.
        try reseal { $0[44] |= 4 }
        assertDataError([path, "unknown flags 0x6"]) { try PackedFile(path: path) }
        // The retired bit 0 (values stored already standardised): refused, naming the flag.
        try reseal { $0[44] |= 1 }
        assertDataError([path, "flag bit 0", "pack the source again"]) { try PackedFile(path: path) }
    }

    func testTruncatedFiles() throws {
        let dir = try makeTempFolder(self)
        let (path, h) = try makeFile(dir)
        let original = try Data(contentsOf: URL(fileURLWithPath: path))
        // Cut in the middle of sample 17.
        try original.prefix(h.samplesOffset + 17 * h.sampleBytes + h.sampleBytes / 2).write(to: URL(fileURLWithPath: path))
        assertDataError([path, "truncated", "cut inside sample 17 of 80"]) { try PackedFile(path: path) }
        // Cut in the checksum table.
        try original.prefix(original.count - 2).write(to: URL(fileURLWithPath: path))
        assertDataError([path, "truncated", "labels, index or checksums are cut"]) { try PackedFile(path: path) }
        // Cut inside the header.
        try original.prefix(100).write(to: URL(fileURLWithPath: path))
        assertDataError([path, "not a packed data file"]) { try PackedFile(path: path) }
        // Trailing bytes.
        try (original + Data([1, 2, 3])).write(to: URL(fileURLWithPath: path))
        assertDataError([path, "3 trailing bytes"]) { try PackedFile(path: path) }
        assertDataError([dir + "/none.ptpack", "file not found"]) { try PackedFile(path: dir + "/none.ptpack") }
    }

    func testRandomDamageIsAlwaysAnErrorOrTheSameData() throws {
        // Flipped bytes and cut files: opening either throws a one-line DataError naming the file or
        // (never, with CRCs everywhere, but allowed) yields the original samples; it never crashes.
        let dir = try makeTempFolder(self)
        let set = XOData.make(count: 30, size: 8, seed: 4)
        let path = dir + "/f.ptpack"
        try Packed.write(train: set, test: set, divisor: 1, to: path)
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        var rng = Xoshiro256(seed: 9, stream: 2)
        var rejected = 0
        for trial in 0..<400 {
            var bytes = original
            if trial % 4 == 3 {
                bytes = Array(bytes.prefix(rng.nextInt(below: bytes.count)))
            } else {
                for _ in 0...(trial % 3) { bytes[rng.nextInt(below: bytes.count)] ^= UInt8(1 << rng.nextInt(below: 8)) }
            }
            if bytes == original { continue }
            try Data(bytes).write(to: URL(fileURLWithPath: path))
            do {
                let file = try PackedFile(path: path)
                XCTAssertEqual(file.train.converted().array, set.converted().array, "trial \(trial) opened with other data")
            } catch let error as DataError {
                XCTAssertTrue(error.message.hasPrefix(path + ": "), error.message)
                XCTAssertFalse(error.message.contains("\n"))
                rejected += 1
            }
        }
        XCTAssertGreaterThan(rejected, 350)
    }

    func testWriteIsAtomic() throws {
        let dir = try makeTempFolder(self)
        let set = XOData.make(count: 4, size: 8, seed: 1)
        // A folder that does not exist: an error, no file anywhere.
        assertDataError([dir + "/missing/x.ptpack", "cannot create a temporary file"]) {
            try Packed.write(train: set, test: set, divisor: 1, to: dir + "/missing/x.ptpack")
        }
        // Train and test that disagree: an error before anything is written.
        let other = XOData.make(count: 4, size: 9, seed: 1)
        assertDataError([dir + "/x.ptpack", "train samples are 1x8x8 but test samples are 1x9x9"]) {
            try Packed.write(train: set, test: other, divisor: 1, to: dir + "/x.ptpack")
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), [])
        // Replacing an existing file: readers of the old file keep their mapping; the new one is whole.
        try Packed.write(train: set, test: set, divisor: 1, to: dir + "/x.ptpack")
        let old = try PackedFile(path: dir + "/x.ptpack")
        let bigger = XOData.make(count: 6, size: 8, seed: 2)
        try Packed.write(train: bigger, test: bigger, divisor: 1, to: dir + "/x.ptpack")
        XCTAssertEqual(old.train.values(3), set.values(3))
        XCTAssertEqual(try PackedFile(path: dir + "/x.ptpack").train.count, 6)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["x.ptpack"])
    }

    func testConversionMatchesTheReaders() throws {
        // The uint8 table gives exactly what the readers computed before: (b / 255 - mean) / std.
        let store = SampleStore(bytes: (0..<256).map(UInt8.init), elementType: .uint8, count: 1, sampleElements: 256)
        let set = try Dataset(name: "t", shape: Shape(channels: 1, height: 16, width: 16), classes: 1, store: store,
                              conversion: SampleConversion(divisor: 255, mean: [0.1307], std: [0.3081]), labels: [0])
        XCTAssertEqual(set.values(0), (0..<256).map { (Float($0) / 255 - 0.1307) / 0.3081 })
        // z-normalisation: zero mean, unit variance, computed in Double.
        let z = try set.with(conversion: SampleConversion(divisor: 255, zNormalize: true)).values(0)
        let mean = z.reduce(0.0) { $0 + Double($1) } / 256
        let variance = z.reduce(0.0) { $0 + (Double($1) - mean) * (Double($1) - mean) } / 256
        XCTAssertEqual(mean, 0, accuracy: 1e-6)
        XCTAssertEqual(variance, 1, accuracy: 1e-5)
        // int16: / 32768.
        let audio = SampleStore(bytes: bytesOf([Int16(-32768), 16384, 1, 0]), elementType: .int16, count: 1, sampleElements: 4)
        let a = try Dataset(name: "a", shape: Shape(channels: 1, height: 1, width: 4), classes: 1, store: audio, labels: [0])
        XCTAssertEqual(a.values(0), [-1, 0.5, 1 / 32768, 0])
        // Wrong per-channel counts are errors.
        assertDataError(["mean needs 1 or 1 values"]) { try set.with(conversion: SampleConversion(divisor: 255, mean: [0, 1])) }
    }
}
