// IDX and MNIST folder tests: raw vs gzip, each error case, and the real MNIST files when present.
import Foundation
import PTData
import PTTensor
import XCTest

final class IDXTests: XCTestCase {
    let imageBody: [UInt8] = (0..<(3 * 2 * 2)).map { UInt8($0 * 20) }
    let labelBody: [UInt8] = [2, 0, 9]

    func testRawAndGzipGiveIdenticalData() throws {
        let dir = try makeTempFolder(self)
        let raw = idxBytes(dims: [3, 2, 2], body: imageBody)
        try write(raw, to: dir + "/raw")
        try write(gzipStored(raw), to: dir + "/stored.gz")
        // Two gzip members back to back (as `cat a.gz b.gz` makes) inflate to their concatenation.
        let half = raw.count / 2
        try write(gzipStored(Array(raw[..<half])) + gzipStored(Array(raw[half...])), to: dir + "/members.gz")
        let a = try IDX.load(path: dir + "/raw")
        XCTAssertEqual(a.dims, [3, 2, 2])
        XCTAssertEqual(a.bytes, imageBody)
        for name in ["stored.gz", "members.gz"] {
            let b = try IDX.load(path: dir + "/" + name)
            XCTAssertEqual(b.dims, a.dims, name)
            XCTAssertEqual(b.bytes, a.bytes, name)
        }
        if let compressed = systemGzip(raw) {
            try write(compressed, to: dir + "/system.gz")
            let c = try IDX.load(path: dir + "/system.gz")
            XCTAssertEqual(c.dims, a.dims)
            XCTAssertEqual(c.bytes, a.bytes)
        }
    }

    func testLargeGzipGrowsItsBuffer() throws {
        // ISIZE lies (says 1 byte) so the output buffer must grow many times.
        let dir = try makeTempFolder(self)
        let body = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
        let raw = idxBytes(dims: [300_000], body: body)
        var gz = systemGzip(raw) ?? gzipStored(raw)
        let n = gz.count
        gz[n - 4] = 1; gz[n - 3] = 0; gz[n - 2] = 0; gz[n - 1] = 0
        // zlib checks ISIZE, so a lying trailer is corrupt data: expect a clear error, not a crash.
        try write(gz, to: dir + "/lying.gz")
        assertDataError([dir + "/lying.gz", "gzip"]) { try IDX.load(path: dir + "/lying.gz") }
        try write(gzipStored(raw), to: dir + "/ok.gz")
        XCTAssertEqual(try IDX.load(path: dir + "/ok.gz").bytes, body)
        // A big member then a 10-byte one: the size guess (last ISIZE) is tiny, so the buffer doubles.
        let split = raw.count - 10
        try write(gzipStored(Array(raw[..<split])) + gzipStored(Array(raw[split...])), to: dir + "/grow.gz")
        XCTAssertEqual(try IDX.load(path: dir + "/grow.gz").bytes, body)
    }

    func testIDXErrorsNameTheFile() throws {
        let dir = try makeTempFolder(self)
        let good = idxBytes(dims: [3, 2, 2], body: imageBody)
        let cases: [(String, [UInt8], [String])] = [
            ("badmagic", [0, 0, 9, 3] + Array(good[4...]), ["not an IDX file", "00000903"]),
            ("text", Array("hello world, not idx".utf8), ["not an IDX file"]),
            ("tiny", [0, 0], ["not an IDX file"]),
            ("rank0", [0, 0, 8, 0], ["not an IDX file"]),
            ("shortheader", [0, 0, 8, 3, 0, 0, 0, 3], ["truncated"]),
            ("truncated", Array(good.dropLast()), ["truncated", "3 x 2 x 2"]),
            ("trailing", good + [7, 7], ["2 trailing bytes"]),
            ("gztruncated", Array(gzipStored(good).dropLast(12)), ["truncated gzip"]),
            ("gztrailing", gzipStored(good) + [1, 2, 3], ["trailing bytes after the gzip"]),
            ("gzcorrupt", [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255, 0xFF, 0xFF, 0xFF, 0xFF], ["gzip"]),
        ]
        for (name, bytes, parts) in cases {
            let path = dir + "/" + name
            try write(bytes, to: path)
            assertDataError([path] + parts) { try IDX.load(path: path) }
        }
        assertDataError([dir + "/absent", "not found"]) { try IDX.load(path: dir + "/absent") }
        assertDataError([dir, "folder"]) { try IDX.load(path: dir) }
    }

    /// Writes an MNIST-style folder with `names` for (train images, train labels, test images, test labels).
    func writeMNIST(_ dir: String, names: [String], gzip: Bool, images: Int = 3, labels: [UInt8]? = nil) throws {
        let img = idxBytes(dims: [images, 2, 2], body: (0..<(images * 4)).map { UInt8($0 * 20 % 256) })
        let lbl = idxBytes(dims: [labels?.count ?? images], body: labels ?? (0..<images).map { UInt8($0 % 10) })
        for (i, name) in names.enumerated() {
            let bytes = i % 2 == 0 ? img : lbl
            try write(gzip ? gzipStored(bytes) : bytes, to: dir + "/" + name + (gzip ? ".gz" : ""))
        }
    }

    func testMNISTFolderNamesAndPixels() throws {
        let dashed = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        let dotted = ["train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte", "t10k-labels.idx1-ubyte"]
        for names in [dashed, dotted] {
            for gzip in [false, true] {
                let dir = try makeTempFolder(self)
                try writeMNIST(dir, names: names, gzip: gzip)
                let (train, test) = try MNISTFolder.load(directory: dir)
                XCTAssertEqual(train.count, 3)
                XCTAssertEqual(test.count, 3)
                XCTAssertEqual(train.shape, Shape(channels: 1, height: 2, width: 2))
                XCTAssertEqual(train.labels, [0, 1, 2])
                XCTAssertEqual(train.images.array, (0..<12).map { Float($0 * 20 % 256) / 255 })
            }
        }
    }

    func testMNISTFolderErrors() throws {
        let names = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]
        let base = try makeTempFolder(self)

        assertDataError([base + "/nowhere", "not found"]) { try MNISTFolder.load(directory: base + "/nowhere") }

        let empty = base + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        assertDataError([empty, "train-images-idx3-ubyte", "train-images.idx3-ubyte", ".gz"]) {
            try MNISTFolder.load(directory: empty)
        }

        let mismatch = base + "/mismatch"
        try FileManager.default.createDirectory(atPath: mismatch, withIntermediateDirectories: true)
        try writeMNIST(mismatch, names: names, gzip: false, images: 3, labels: [1, 2])
        assertDataError([mismatch + "/train-images-idx3-ubyte", mismatch + "/train-labels-idx1-ubyte", "3 images", "2 labels"]) {
            try MNISTFolder.load(directory: mismatch)
        }

        let badLabel = base + "/badlabel"
        try FileManager.default.createDirectory(atPath: badLabel, withIntermediateDirectories: true)
        try writeMNIST(badLabel, names: names, gzip: true, images: 3, labels: [1, 12, 2])
        assertDataError([badLabel + "/train-labels-idx1-ubyte.gz", "label 12", "index 1", "0..<10"]) {
            try MNISTFolder.load(directory: badLabel)
        }
        XCTAssertEqual(try MNISTFolder.load(directory: badLabel, classes: 13).train.labels, [1, 12, 2])

        let zero = base + "/zero"
        try FileManager.default.createDirectory(atPath: zero, withIntermediateDirectories: true)
        try writeMNIST(zero, names: names, gzip: false, images: 0, labels: [])
        assertDataError([zero + "/train-images-idx3-ubyte", "empty set", "0 images"]) { try MNISTFolder.load(directory: zero) }

        let notIDX = base + "/notidx"
        try FileManager.default.createDirectory(atPath: notIDX, withIntermediateDirectories: true)
        try writeMNIST(notIDX, names: names, gzip: false)
        try write(Array("<html>404</html>".utf8), to: notIDX + "/t10k-images-idx3-ubyte")
        assertDataError([notIDX + "/t10k-images-idx3-ubyte", "not an IDX file"]) { try MNISTFolder.load(directory: notIDX) }

        let truncated = base + "/truncated"
        try FileManager.default.createDirectory(atPath: truncated, withIntermediateDirectories: true)
        try writeMNIST(truncated, names: names, gzip: false)
        let path = truncated + "/train-images-idx3-ubyte"
        try write(Array(try Data(contentsOf: URL(fileURLWithPath: path)).dropLast(3)), to: path)
        assertDataError([path, "truncated"]) { try MNISTFolder.load(directory: truncated) }

        let swapped = base + "/swapped"
        try FileManager.default.createDirectory(atPath: swapped, withIntermediateDirectories: true)
        try writeMNIST(swapped, names: [names[1], names[0], names[2], names[3]], gzip: false)
        assertDataError([swapped + "/train-images-idx3-ubyte", "expected 3 dimensions"]) { try MNISTFolder.load(directory: swapped) }
    }

    /// The fixture's real MNIST files (gzipped IDX, the first 1,000 training and test images).
    func testRealMNIST() throws {
        let (train, test) = try MNISTFolder.load(directory: fixture("mnist"))
        XCTAssertEqual(train.count, 1000)
        XCTAssertEqual(test.count, 1000)
        XCTAssertEqual(train.shape, Shape(channels: 1, height: 28, width: 28))
        XCTAssertEqual(Array(train.labels.prefix(10)), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4])
        XCTAssertEqual(Array(test.labels.prefix(10)), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
        var trainHistogram = [Int](repeating: 0, count: 10), testHistogram = [Int](repeating: 0, count: 10)
        for l in train.labels { trainHistogram[Int(l)] += 1 }
        for l in test.labels { testHistogram[Int(l)] += 1 }
        XCTAssertEqual(trainHistogram, [97, 116, 99, 93, 105, 92, 94, 117, 87, 100])
        XCTAssertEqual(testHistogram, [85, 126, 116, 107, 110, 87, 87, 99, 89, 94])
        // The pixel bytes (their sum is the fixture's: 25,637,533 over 784,000 pixels, mean 32.70 as
        // the full set's 33.32), and with MNIST's usual mean and std a mean near 0 and a std near 1.
        let bytes = (0..<train.count).reduce(0) { $0 + train.store.storedBytes($1).reduce(0) { $0 + Int($1) } }
        XCTAssertEqual(bytes, 25_637_533)
        var sum = 0.0, squares = 0.0
        let values = try train.with(conversion: SampleConversion(divisor: 255, mean: [0.1307], std: [0.3081])).converted()
        for i in 0..<values.count { let v = Double(values[i]); sum += v; squares += v * v }
        let mean = sum / Double(values.count)
        XCTAssertEqual(mean, (Double(bytes) / 784_000 / 255 - 0.1307) / 0.3081, accuracy: 1e-6)
        XCTAssertEqual((squares / Double(values.count) - mean * mean).squareRoot(), 1, accuracy: 0.02)
    }
}
