// WAV / spoken-digit and UCR .ts tests: small files written here, plus the real FSDD and UCR sets when present.
import Foundation
import PTData
import PTTensor
import XCTest

final class WAVTests: XCTestCase {
    func testReadSkipsUnknownChunks() throws {
        let dir = try makeTempFolder(self)
        try write(wavBytes(samples: [0, 16384, -32768, 32767], rate: 16000), to: dir + "/a.wav")
        let (rate, samples) = try WAV.read(path: dir + "/a.wav")
        XCTAssertEqual(rate, 16000)
        XCTAssertEqual(samples, [0, 16384, -32768, 32767])  // as stored
    }

    func testErrorsNameTheFile() throws {
        let dir = try makeTempFolder(self)
        let cases: [(String, [UInt8], [String])] = [
            ("stereo", wavBytes(samples: [1, 2, 3, 4], channels: 2), ["2 channels", "mono"]),
            ("eightbit", wavBytes(samples: [1, 2], bits: 8), ["8 bits"]),
            ("float", wavBytes(samples: [1, 2], bits: 32, format: 3), ["not PCM", "format tag 3"]),
            ("truncated", Array(wavBytes(samples: [1, 2, 3, 4]).dropLast(3)), ["truncated"]),
            ("notwav", Array("ID3 this is an mp3, honest".utf8), ["not a WAV file"]),
            ("nodata", Array(wavBytes(samples: []).dropLast(8)), ["no data chunk"]),
        ]
        for (name, bytes, parts) in cases {
            let path = dir + "/" + name + ".wav"
            try write(bytes, to: path)
            assertDataError([path] + parts) { try WAV.read(path: path) }
        }
    }

    func testSpokenDigitsSplitPadCropAndCentre() throws {
        let dir = try makeTempFolder(self)
        let rec = dir + "/recordings"
        try FileManager.default.createDirectory(atPath: rec, withIntermediateDirectories: true)
        // 3_bob_0: short, constant offset 100 plus a spike -> centred and padded in the middle.
        try write(wavBytes(samples: [100, 100, 900, 100]), to: rec + "/3_bob_0.wav")
        // 7_bob_12: longer than length -> centre crop.
        try write(wavBytes(samples: (0..<10).map { Int16($0 * 100) }), to: rec + "/7_bob_12.wav")
        try write(wavBytes(samples: [5, -5]), to: rec + "/1_amy_6.wav")
        try write(Array("not audio".utf8), to: dir + "/README.md")
        let (train, test) = try SpokenDigits.load(directory: dir, length: 6)
        XCTAssertEqual(test.count, 1)
        XCTAssertEqual(train.count, 2)
        XCTAssertEqual(test.labels, [3])
        XCTAssertEqual(train.labels, [1, 7])  // sorted by file name
        XCTAssertEqual(train.shape, Shape(channels: 1, height: 1, width: 6))
        let s = Float(32768)
        XCTAssertEqual(test.images.array, [0, -200 / s, -200 / s, 600 / s, -200 / s, 0].map { $0 }, accuracy: 1e-7)
        // 0..900 step 100, mean 450, crop drops 2 from each end.
        XCTAssertEqual(Array(train.images.array[6..<12]), [-250, -150, -50, 50, 150, 250].map { $0 / s }, accuracy: 1e-7)
        // Held as recorded: int16, 2 bytes a sample, with each clip's window and mean.
        XCTAssertEqual(test.store.elementType, .int16)
        XCTAssertEqual(test.store.sampleBytes, 12)
        XCTAssertEqual(test.store.storedBytes(0), bytesOf([Int16(0), 100, 100, 900, 100, 0]))
        XCTAssertEqual(test.clips, [ClipWindow(first: 1, count: 4, centre: 300 / s)])
        XCTAssertEqual(train.store.storedBytes(1), bytesOf([Int16(200), 300, 400, 500, 600, 700]))
        XCTAssertEqual(train.clips?[1], ClipWindow(first: 0, count: 6, centre: 450 / s))
        // The values are exactly what centring the float clip gives: x / 32768 - mean, padding 0.
        let mean = Float((100.0 + 100 + 900 + 100) / 4 / 32768)
        XCTAssertEqual(test.values(0), [0] + [100, 100, 900, 100].map { Float($0) / s - mean } + [0])

        try write(wavBytes(samples: [1, 2], channels: 2), to: rec + "/2_amy_9.wav")
        assertDataError([rec + "/2_amy_9.wav", "2 channels"]) { try SpokenDigits.load(directory: dir) }
        try FileManager.default.removeItem(atPath: rec + "/2_amy_9.wav")
        try write(wavBytes(samples: [1, 2]), to: rec + "/x_amy_9.wav")
        assertDataError([rec + "/x_amy_9.wav", "{digit}_{speaker}_{index}.wav"]) { try SpokenDigits.load(directory: dir) }
        assertDataError([dir + "/absent", "not found"]) { try SpokenDigits.load(directory: dir + "/absent") }
    }

    /// The fixture's 60 real FSDD clips (2 speakers, indices 0, 5 and 6 of each digit).
    func testRealSpokenDigits() throws {
        let (train, test) = try SpokenDigits.load(directory: fixture("fsdd"))
        XCTAssertEqual(train.count, 40)
        XCTAssertEqual(test.count, 20)
        XCTAssertEqual(train.shape, Shape(channels: 1, height: 1, width: 8000))
        var histogram = [Int](repeating: 0, count: 10)
        for l in test.labels { histogram[Int(l)] += 1 }
        XCTAssertEqual(histogram, [Int](repeating: 2, count: 10))
        for l in train.labels { histogram[Int(l)] += 1 }
        XCTAssertEqual(histogram, [Int](repeating: 6, count: 10))
        var peak: Float = 0
        let values = train.converted()
        for i in 0..<values.count { peak = max(peak, abs(values[i])) }
        XCTAssertLessThanOrEqual(peak, 2)
        XCTAssertGreaterThan(peak, 0.05)
    }
}

final class UCRTests: XCTestCase {
    let header = """
        # A comment, with : and , in it
        @problemName Toy
        @timeStamps false
        @missing true
        @univariate false
        @dimensions 2
        @equalLength false
        @classLabel true walk run sit
        @data

        """

    func testParsesChannelsPaddingMissingAndLabels() throws {
        let dir = try makeTempFolder(self)
        try write(header + "1,2,3:4,5,6:run\n7,?,9,10:1,1,1,1:sit\r\n-1.5e1,2:3,4:walk\n", to: dir + "/Toy_TRAIN.ts")
        try write(header + "1,2,3,4,5:1,2,3,4,5:walk\n", to: dir + "/Toy_TEST.ts")
        let one = try UCRFile.load(path: dir + "/Toy_TRAIN.ts")
        XCTAssertEqual(one.shape, Shape(channels: 2, height: 1, width: 4))
        XCTAssertEqual(one.labels, [1, 2, 0])
        XCTAssertEqual(one.classes, 3)
        XCTAssertEqual(one.images.array, [1, 2, 3, 0, 4, 5, 6, 0, 7, 0, 9, 10, 1, 1, 1, 1, -15, 2, 0, 0, 3, 4, 0, 0])
        let relabelled = try UCRFile.load(path: dir + "/Toy_TRAIN.ts", classLabels: ["sit", "run", "walk"])
        XCTAssertEqual(relabelled.labels, [1, 0, 2])

        let (train, test) = try UCRFolder.load(directory: dir)
        XCTAssertEqual(train.shape, Shape(channels: 2, height: 1, width: 5))  // longest of both files
        XCTAssertEqual(test.shape, train.shape)
        XCTAssertEqual(test.labels, [0])
    }

    func testErrorsNameTheFile() throws {
        let dir = try makeTempFolder(self)
        let cases: [(String, String, [String])] = [
            ("unknown", header + "1,2:3,4:fly\n", ["label 'fly'"]),
            ("channels", header + "1,2:3,4:run\n1,2:run\n", ["1 channels", "earlier cases have 2"]),
            ("number", header + "1,x:3,4:run\n", ["'x' is not a number"]),
            ("nolabel", header + "1,2\n", ["no class label"]),
            ("nodata", "@problemName Toy\n", ["no @data"]),
            ("empty", header, ["empty set"]),
        ]
        for (name, text, parts) in cases {
            let path = dir + "/" + name + ".ts"
            try write(text, to: path)
            assertDataError([path] + parts) { try UCRFile.load(path: path) }
        }
        assertDataError([dir, "no Name_TRAIN.ts"]) { try UCRFolder.load(directory: dir) }
        try write(header + "1:2:run\n", to: dir + "/Toy_TRAIN.ts")
        assertDataError([dir, "Toy_TEST.ts"]) { try UCRFolder.load(directory: dir) }
    }

    /// The fixture's real UCR problem (GunPoint, unchanged).
    func testRealUCR() throws {
        let root = fixture("ucr")
        let expected: [(String, Int, Int, Int, Int, Int)] = [("GunPoint", 50, 150, 1, 150, 2)]  // name, train, test, channels, length, classes
        for (name, trainCount, testCount, channels, length, classes) in expected {
            let (train, test) = try UCRFolder.load(directory: root + "/" + name)
            XCTAssertEqual(train.count, trainCount, name)
            XCTAssertEqual(test.count, testCount, name)
            XCTAssertEqual(train.shape, Shape(channels: channels, height: 1, width: length), name)
            XCTAssertEqual(test.shape, train.shape, name)
            XCTAssertEqual(train.classes, classes, name)
            XCTAssertEqual(Set(train.labels), Set((0..<classes).map(Int32.init)), name)
        }
    }
}

func XCTAssertEqual(_ a: [Float], _ b: [Float], accuracy: Float, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (i, (x, y)) in zip(a, b).enumerated() where abs(x - y) > accuracy {
        XCTFail("element \(i): \(x) vs \(y)", file: file, line: line)
    }
}
