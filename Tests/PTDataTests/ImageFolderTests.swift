// Image folders: PNG and JPEG decoding (files made here), grey/RGB conversion, resizing, and the
// layout's errors (corrupt, truncated, empty class, test class missing from train, mixed sizes).
import Foundation
import PTData
import PTTensor
import XCTest

final class ImageFolderTests: XCTestCase {
    func pattern(width: Int, height: Int, channels: Int, seed: Int) -> DecodedImage {
        // Smooth ramps (JPEG's error on them is small), different per channel; values stay in 20...250.
        let pixels = (0..<(width * height * channels)).map { i -> UInt8 in
            let p = i / channels, c = i % channels
            let x = p % width, y = p / width
            return UInt8(min(250, 20 + x * 6 + y * 4 + c * 30 + seed * 7))
        }
        return DecodedImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    func makeTree(_ root: String, files: [String: [UInt8]]) throws {
        for (relative, bytes) in files {
            let path = root + "/" + relative
            try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try write(bytes, to: path)
        }
    }

    func testPNGRoundTripAndChannelConversion() throws {
        let rgb = pattern(width: 7, height: 5, channels: 3, seed: 1)
        let png = try ImageCodec.encodePNG(rgb)
        XCTAssertEqual(try ImageCodec.decode(png, channels: 3, name: "x.png"), rgb)
        // RGB to grey: one channel, every value between the pixel's smallest and largest component.
        let grey = try ImageCodec.decode(png, channels: 1, name: "x.png")
        XCTAssertEqual(grey.channels, 1)
        for p in 0..<35 {
            let c = rgb.pixels[(3 * p)..<(3 * p + 3)]
            XCTAssertGreaterThanOrEqual(Int(grey.pixels[p]) + 1, Int(c.min()!))
            XCTAssertLessThanOrEqual(Int(grey.pixels[p]), Int(c.max()!) + 1)
        }
        // Grey to RGB: the value in all three channels.
        let g = pattern(width: 4, height: 3, channels: 1, seed: 2)
        let widened = try ImageCodec.decode(try ImageCodec.encodePNG(g), channels: 3, name: "g.png")
        XCTAssertEqual(widened.pixels, g.pixels.flatMap { [$0, $0, $0] })
    }

    func testJPEGDecodesWithinJPEGTolerance() throws {
        for channels in [1, 3] {
            let source = pattern(width: 16, height: 16, channels: channels, seed: 3)
            let jpeg = try ImageCodec.encodeJPEG(source, quality: 95)
            XCTAssertTrue(ImageCodec.isJPEG(jpeg))
            let decoded = try ImageCodec.decode(jpeg, channels: channels, name: "x.jpg")
            XCTAssertEqual(decoded.width, 16)
            var worst = 0, total = 0
            for (a, b) in zip(decoded.pixels, source.pixels) {
                worst = max(worst, abs(Int(a) - Int(b)))
                total += abs(Int(a) - Int(b))
            }
            // Quality 95, 4:4:4, smooth content: a few levels at most, about one on average.
            XCTAssertLessThanOrEqual(worst, 8, "channels \(channels)")
            XCTAssertLessThanOrEqual(Double(total) / Double(source.pixels.count), 2.0, "channels \(channels)")
        }
    }

    func testFolderLayoutLabelsAndPlanes() throws {
        let root = try makeTempFolder(self)
        var files: [String: [UInt8]] = [:]
        let a = pattern(width: 3, height: 2, channels: 3, seed: 1), b = pattern(width: 3, height: 2, channels: 3, seed: 2)
        files["train/zebra/1.png"] = try ImageCodec.encodePNG(a)
        files["train/ant/1.PNG"] = try ImageCodec.encodePNG(b)
        files["train/ant/notes.txt"] = Array("ignored".utf8)
        files["test/zebra/x.png"] = try ImageCodec.encodePNG(b)
        try makeTree(root, files: files)
        let (train, test) = try ImageFolder.load(root: root, shape: Shape(channels: 3, height: 2, width: 3), resize: false)
        XCTAssertEqual(train.classNames, ["ant", "zebra"])
        XCTAssertEqual(train.labels, [0, 1])
        XCTAssertEqual(test.labels, [1])
        XCTAssertEqual(train.store.elementType, .uint8)
        // CHW planes: channel c of pixel p.
        let stored = train.store.storedBytes(1)
        for p in 0..<6 { for c in 0..<3 { XCTAssertEqual(stored[c * 6 + p], a.pixels[p * 3 + c]) } }
        XCTAssertEqual(train.values(1)[0], Float(a.pixels[0]) / 255)
    }

    func testOrderClassOrName() throws {
        // Files named by an index, spread over the classes; one name in two classes.
        let root = try makeTempFolder(self)
        var files: [String: [UInt8]] = [:]
        let layout: [(String, String, Int)] = [("b", "003.png", 1), ("a", "001.png", 2), ("b", "000.png", 3), ("a", "002.png", 4),
                                               ("c", "001.png", 5), ("a", "010.png", 6)]
        for (cls, name, seed) in layout {
            files["train/\(cls)/\(name)"] = try ImageCodec.encodePNG(pattern(width: 2, height: 2, channels: 1, seed: seed))
        }
        files["test/c/5.png"] = try ImageCodec.encodePNG(pattern(width: 2, height: 2, channels: 1, seed: 9))
        try makeTree(root, files: files)
        let shape = Shape(channels: 1, height: 2, width: 2)
        func seeds(_ set: Dataset) -> [UInt8] { (0..<set.count).map { set.store.storedBytes($0)[0] } }
        func seedsOf(_ order: [Int]) -> [UInt8] { order.map { pattern(width: 2, height: 2, channels: 1, seed: $0).pixels[0] } }

        // class: ImageFolder's order, class by class, names sorted within each class.
        let byClass = try ImageFolder.load(root: root, shape: shape, resize: false).train
        XCTAssertEqual(byClass.labels, [0, 0, 0, 1, 1, 2])
        XCTAssertEqual(seeds(byClass), seedsOf([2, 4, 6, 3, 1, 5]))
        XCTAssertEqual(try ImageFolder.list(root: root).train.map { ($0.path as NSString).lastPathComponent },
                       ["001.png", "002.png", "010.png", "000.png", "003.png", "001.png"])
        // name: all files by name across the classes; 001.png of a (label 0) before 001.png of c (label 2).
        let byName = try ImageFolder.load(root: root, shape: shape, resize: false, order: .name).train
        XCTAssertEqual(byName.labels, [1, 0, 2, 0, 1, 0])
        XCTAssertEqual(seeds(byName), seedsOf([3, 2, 5, 4, 1, 6]))
        XCTAssertEqual(ImageFolder.Order.allCases.map(\.rawValue), ["class", "name"])
    }

    func testResizeAndCentreCrop() throws {
        // A 8x4 grey image whose left half is 0 and right half 200, to 2x2: the shorter side (4) is
        // scaled to 2, the width to 4, then the middle 2 columns are kept: one of each half.
        let pixels = (0..<32).map { UInt8($0 % 8 < 4 ? 0 : 200) }
        let image = DecodedImage(width: 8, height: 4, channels: 1, pixels: pixels)
        var out = [UInt8](repeating: 0, count: 4)
        out.withUnsafeMutableBufferPointer { ImageCodec.resizeAndCrop(image, width: 2, height: 2, into: $0.baseAddress!) }
        XCTAssertEqual(out, [0, 200, 0, 200])
        // Up-scaling a constant image keeps it constant.
        let flat = DecodedImage(width: 2, height: 3, channels: 1, pixels: [77, 77, 77, 77, 77, 77])
        var up = [UInt8](repeating: 0, count: 25)
        up.withUnsafeMutableBufferPointer { ImageCodec.resizeAndCrop(flat, width: 5, height: 5, into: $0.baseAddress!) }
        XCTAssertEqual(up, [UInt8](repeating: 77, count: 25))
    }

    /// A small file whose header claims a huge image is refused before anything is allocated
    /// (regression: a 319-byte JPEG claiming 29697 x 18798 pixels, found by Tests/Fuzz/ImageFuzzer.swift,
    /// made the decoder allocate 1.7 GB for RGB; a few such files decoded in parallel exhaust memory).
    func testHugeImageHeadersAreRefused() throws {
        let name = "dir/huge"
        func be16(_ v: Int) -> [UInt8] { [UInt8(v >> 8 & 255), UInt8(v & 255)] }
        func be32(_ v: Int) -> [UInt8] { be16(v >> 16) + be16(v & 0xFFFF) }
        // JPEG: the baseline frame header (SOF0: FF C0, length, precision, height, width) edited.
        var jpeg = try ImageCodec.encodeJPEG(pattern(width: 4, height: 4, channels: 1, seed: 1))
        let sof = try XCTUnwrap((0..<(jpeg.count - 1)).first { jpeg[$0] == 0xFF && jpeg[$0 + 1] == 0xC0 })
        jpeg.replaceSubrange((sof + 5)..<(sof + 9), with: be16(18798) + be16(29697))
        for channels in [1, 3] {
            assertDataError([name, "JPEG of 29697 x 18798 pixels", "at most 32768 a side and 67108864 pixels"]) {
                try ImageCodec.decode(jpeg, channels: channels, name: name)
            }
        }
        // PNG: the IHDR chunk's width and height edited, its CRC made to match.
        var png = try ImageCodec.encodePNG(pattern(width: 4, height: 4, channels: 3, seed: 1))
        XCTAssertEqual(Array(png[12..<16]), Array("IHDR".utf8))
        for (width, height, accepted) in [(8193, 8192, false), (32769, 1, false), (8192, 8192, true)] {
            png.replaceSubrange(16..<24, with: be32(width) + be32(height))
            png.replaceSubrange(29..<33, with: be32(Int(crc32(png[12..<29]))))
            if accepted {
                // The size passes; the 4 x 4 pixel data then does not fill it.
                assertDataError([name, "corrupt or unreadable PNG"]) { try ImageCodec.decode(png, channels: 1, name: name) }
            } else {
                assertDataError([name, "PNG of \(width) x \(height) pixels", "at most"]) { try ImageCodec.decode(png, channels: 1, name: name) }
            }
        }
    }

    func testErrorsNameTheFile() throws {
        let root = try makeTempFolder(self)
        let good = try ImageCodec.encodePNG(pattern(width: 4, height: 4, channels: 1, seed: 1))
        let jpeg = try ImageCodec.encodeJPEG(pattern(width: 4, height: 4, channels: 1, seed: 1))
        let shape = Shape(channels: 1, height: 4, width: 4)
        try makeTree(root, files: ["train/a/1.png": good, "train/b/1.jpg": jpeg, "test/a/1.png": good])
        XCTAssertNoThrow(try ImageFolder.load(root: root, shape: shape, resize: false))

        // Corrupt PNG: a damaged data chunk.
        var corrupt = good
        corrupt[corrupt.count - 20] ^= 0xFF
        try write(corrupt, to: root + "/train/a/2.png")
        assertDataError([root + "/train/a/2.png", "corrupt or unreadable PNG"]) { try ImageFolder.load(root: root, shape: shape, resize: false) }
        // --skip-bad leaves it out and reports it.
        var report = ImageFolder.Report()
        let (train, _) = try ImageFolder.load(root: root, shape: shape, resize: false, skipBad: true, report: &report)
        XCTAssertEqual(train.count, 2)
        XCTAssertEqual(report.skipped, [root + "/train/a/2.png"])
        try FileManager.default.removeItem(atPath: root + "/train/a/2.png")

        // Truncated JPEG.
        try write(Array(jpeg.prefix(jpeg.count / 2)), to: root + "/train/b/2.jpg")
        assertDataError([root + "/train/b/2.jpg", "corrupt or unreadable JPEG"]) { try ImageFolder.load(root: root, shape: shape, resize: false) }
        try FileManager.default.removeItem(atPath: root + "/train/b/2.jpg")

        // Not an image at all.
        try write(Array("hello".utf8), to: root + "/train/b/3.png")
        assertDataError([root + "/train/b/3.png", "not a PNG or JPEG file"]) { try ImageFolder.load(root: root, shape: shape, resize: false) }
        try FileManager.default.removeItem(atPath: root + "/train/b/3.png")

        // Mixed sizes without resize.
        try write(try ImageCodec.encodePNG(pattern(width: 5, height: 4, channels: 1, seed: 1)), to: root + "/train/b/4.png")
        assertDataError([root + "/train/b/4.png", "image is 5x4 but the model input is 4x4", "data.resize: true"]) {
            try ImageFolder.load(root: root, shape: shape, resize: false)
        }
        XCTAssertEqual(try ImageFolder.load(root: root, shape: shape, resize: true).train.count, 3)
        try FileManager.default.removeItem(atPath: root + "/train/b/4.png")

        // Empty class folder.
        try FileManager.default.createDirectory(atPath: root + "/train/c", withIntermediateDirectories: true)
        assertDataError([root + "/train/c", "empty class folder"]) { try ImageFolder.load(root: root, shape: shape, resize: false) }
        try FileManager.default.removeItem(atPath: root + "/train/c")

        // A test class that train lacks.
        try makeTree(root, files: ["test/zz/1.png": good])
        assertDataError([root + "/test/zz", "class 'zz' has no folder in"]) { try ImageFolder.load(root: root, shape: shape, resize: false) }
        try FileManager.default.removeItem(atPath: root + "/test/zz")

        try FileManager.default.removeItem(atPath: root + "/test")
        assertDataError([root, "no test/ folder"]) { try ImageFolder.load(root: root, shape: shape, resize: false) }
    }
}
