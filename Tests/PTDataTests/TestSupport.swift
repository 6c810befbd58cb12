// Helpers for the PTData tests: temporary folders, file writers for each format, a stored-block gzip encoder.
import Foundation
import PTData
import PTTensor
import XCTest

/// A fresh temporary folder, removed when the test ends.
func makeTempFolder(_ test: XCTestCase) throws -> String {
    let path = NSTemporaryDirectory() + "ptdata-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    test.addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
    return path
}

func write(_ bytes: [UInt8], to path: String) throws {
    try Data(bytes).write(to: URL(fileURLWithPath: path))
}

func write(_ text: String, to path: String) throws {
    try write(Array(text.utf8), to: path)
}

/// The real-data fixture folder `name` in the repository (Tests/Fixtures/name; its README says what
/// it holds and where it comes from). The repository root is two levels above this file.
func fixture(_ name: String, file: String = #filePath) -> String {
    let here = URL(fileURLWithPath: file).resolvingSymlinksInPath()
    return here.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures/\(name)").path
}

/// Runs `body`, requiring it to throw a DataError whose message contains every string in `parts`.
func assertDataError<T>(_ parts: [String], file: StaticString = #filePath, line: UInt = #line,
                        _ body: () throws -> T) {
    do {
        _ = try body()
        XCTFail("expected a DataError containing \(parts)", file: file, line: line)
    } catch let error as DataError {
        for part in parts where !error.message.contains(part) {
            XCTFail("DataError '\(error.message)' does not contain '\(part)'", file: file, line: line)
        }
        XCTAssertFalse(error.message.contains("\n"), "DataError must be one line: \(error.message)", file: file, line: line)
    } catch {
        XCTFail("expected a DataError, got \(error)", file: file, line: line)
    }
}

// MARK: - Format writers

func bigEndian32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
func littleEndian16(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255)] }
func littleEndian32(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255), UInt8(v >> 16 & 255), UInt8(v >> 24 & 255)] }

/// IDX file bytes: magic 0x0000 08 rank, big-endian dimensions, body.
func idxBytes(dims: [Int], body: [UInt8]) -> [UInt8] {
    [0, 0, 8, UInt8(dims.count)] + dims.flatMap(bigEndian32) + body
}

/// IEEE CRC-32 (the gzip trailer's checksum).
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var table = [UInt32](repeating: 0, count: 256)
    for i in 0..<256 {
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        table[i] = c
    }
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 255)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

/// A valid gzip member holding `bytes` in uncompressed ("stored") deflate blocks.
func gzipStored(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]
    var start = 0
    repeat {
        let n = min(65535, bytes.count - start)
        let last: UInt8 = start + n == bytes.count ? 1 : 0
        out.append(last)
        out += littleEndian16(n) + littleEndian16(~n & 0xFFFF)
        out += bytes[start..<(start + n)]
        start += n
    } while start < bytes.count
    out += littleEndian32(Int(crc32(bytes))) + littleEndian32(bytes.count & 0xFFFF_FFFF)
    return out
}

/// `bytes` compressed by the system's gzip, or nil when it cannot be run.
func systemGzip(_ bytes: [UInt8]) -> [UInt8]? {
    for tool in ["/usr/bin/gzip", "/bin/gzip"] where FileManager.default.isExecutableFile(atPath: tool) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-c", "-9"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        do { try process.run() } catch { return nil }
        let writer = Thread {
            input.fileHandleForWriting.write(Data(bytes))
            try? input.fileHandleForWriting.close()
        }
        writer.start()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return process.terminationStatus == 0 ? Array(data) : nil
    }
    return nil
}

/// A .npy (version 1.0) file: header dict padded with spaces so the data starts at a multiple of 64.
func npyBytes(descr: String, shape: [Int], data: [UInt8], fortran: Bool = false) -> [UInt8] {
    let shapeText = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
    var dict = "{'descr': '\(descr)', 'fortran_order': \(fortran ? "True" : "False"), 'shape': \(shapeText), }"
    while (10 + dict.utf8.count + 1) % 64 != 0 { dict += " " }
    dict += "\n"
    return [0x93] + Array("NUMPY".utf8) + [1, 0] + littleEndian16(dict.utf8.count) + Array(dict.utf8) + data
}

func bytesOf<T>(_ values: [T]) -> [UInt8] { values.withUnsafeBytes { Array($0) } }

/// A WAV file: RIFF/WAVE, a LIST chunk to skip, fmt, data.
func wavBytes(samples: [Int16], rate: Int = 8000, channels: Int = 1, bits: Int = 16, format: Int = 1,
              extraChunk: Bool = true) -> [UInt8] {
    let blockAlign = channels * bits / 8
    var fmt: [UInt8] = littleEndian16(format) + littleEndian16(channels) + littleEndian32(rate)
    fmt += littleEndian32(rate * blockAlign) + littleEndian16(blockAlign) + littleEndian16(bits)
    let data = bytesOf(samples)
    var body: [UInt8] = Array("WAVE".utf8)
    if extraChunk { body += Array("LIST".utf8) + littleEndian32(3) + [1, 2, 3, 0] }  // odd size: padded
    body += Array("fmt ".utf8) + littleEndian32(fmt.count) + fmt
    body += Array("data".utf8) + littleEndian32(data.count) + data
    return Array("RIFF".utf8) + littleEndian32(body.count) + body
}

extension Dataset {
    /// Every sample converted (a new buffer each call; hoist it out of loops).
    var images: AlignedBuffer { converted() }
}

/// CRC-32 (IEEE, as zlib's crc32 and PNG's chunks), bit by bit: the tests' own, to re-seal edited
/// regions of packed files and PNG chunks.
func crc32(_ bytes: some Collection<UInt8>) -> UInt32 {
    var c: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
        c ^= UInt32(byte)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0xEDB8_8320 : c >> 1 }
    }
    return ~c
}
