// libFuzzer harness for the packed data reader (`PackedFile`, docs/PACKED.md). Every input is tried
// twice: as given (the CRCs catch nearly every mutation) and with its CRCs repaired wherever the
// header's offsets lie inside the input, so that the checks behind the CRCs (shape, counts, offsets,
// labels, index, clip windows, conversion) see mutated values too.
// Not part of Package.swift: build and run it as docs/FUZZING.md describes (Tests/Fuzz/build.sh).
// `PTRAIN_FUZZ_SEEDS=DIR packed-fuzzer -runs=0` writes a small seed corpus (packed files of each
// element type, with and without a clip table) to DIR.
import CZlib
import Foundation
import Glibc
import PTData
import PTTensor

let scratch = NSTemporaryDirectory() + "ptrain-packed-fuzz-\(getpid()).ptpack"

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>>>) -> CInt {
    if let dir = ProcessInfo.processInfo.environment["PTRAIN_FUZZ_SEEDS"] { writeSeeds(dir) }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    var bytes = Array(UnsafeBufferPointer(start: data, count: size))
    open(bytes)
    if repairCRCs(&bytes) { open(bytes) }
    return 0
}

/// Opens `bytes` as a packed file: either consistent sets or a one-line error naming the file.
func open(_ bytes: [UInt8]) {
    writeFile(scratch, bytes)
    do {
        let file = try PackedFile(path: scratch)
        let h = file.header
        precondition(file.train.count == h.trainCount && file.test.count == h.testCount, "set sizes differ from the header")
        precondition(h.fileSize == bytes.count, "header file size \(h.fileSize) accepted for \(bytes.count) bytes")
        for set in [file.train, file.test] {
            precondition(set.shape == h.shape && set.labels.count == set.count, "inconsistent set")
            precondition(set.labels.allSatisfy { $0 >= 0 && Int($0) < h.classes }, "label outside 0..<classes")
            // Gather a few samples through the conversion (clip windows included).
            for i in Set([0, set.count / 2, set.count - 1]) {
                let values = set.values(i)
                precondition(values.count == h.shape.count, "sample \(i) has \(values.count) values")
            }
        }
    } catch let error as DataError {
        precondition(!error.message.isEmpty && !error.message.contains("\n"), "bad message: \(error.message)")
        precondition(error.message.hasPrefix(scratch), "message does not name the file: \(error.message)")
    } catch {
        preconditionFailure("unexpected error \(error)")
    }
}

/// Writes `bytes` to `path` in place (FileManager's atomic write syncs and renames: 50x slower).
func writeFile(_ path: String, _ bytes: [UInt8]) {
    let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    precondition(fd >= 0, "cannot write \(path)")
    bytes.withUnsafeBytes { precondition(bytes.isEmpty || Glibc.write(fd, $0.baseAddress!, $0.count) == $0.count) }
    close(fd)
}

/// Recomputes every CRC the header locates inside `bytes` (block checksums, the four table CRCs,
/// then the header's own). Returns false when nothing could be located (too short, no header size).
func repairCRCs(_ bytes: inout [UInt8]) -> Bool {
    guard bytes.count >= 124 else { return false }
    func u32(_ o: Int) -> Int { (0..<4).reduce(0) { $0 | Int(bytes[o + $1]) << (8 * $1) } }
    func u64(_ o: Int) -> Int { (0..<8).reduce(0) { $0 | Int(bytes[o + $1]) << (8 * $1) } }
    func put32(_ v: UInt32, _ o: Int) { for k in 0..<4 { bytes[o + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) } }
    func crc(_ offset: Int, _ count: Int) -> UInt32? {
        guard offset >= 0, count >= 0, offset <= bytes.count, count <= bytes.count - offset else { return nil }
        return bytes.withUnsafeBufferPointer { UInt32(truncatingIfNeeded: crc32(0, $0.baseAddress! + offset, UInt32(count))) }
    }
    let headerSize = u32(12)
    guard headerSize >= 124, headerSize <= min(4096, bytes.count) else { return false }
    let dims = [u32(20), u32(24), u32(28)]
    let elementSize = [1: 1, 2: 2, 3: 4][Int(bytes[16])] ?? 1
    let train = u64(48), test = u64(56)
    // Only sizes the reader could accept are worth repairing (and keep these products small).
    if dims.allSatisfy({ $0 > 0 && $0 < 1 << 20 }), train > 0, test > 0, train < 1 << 20, test < 1 << 20,
       dims[0] * dims[1] * dims[2] < 1 << 20
    {
        let sampleBytes = dims[0] * dims[1] * dims[2] * elementSize, total = train + test, block = max(1, u32(36))
        let samples = u64(64), labels = u64(72), index = u64(80), checksums = u64(88)
        let blocks = (total + block - 1) / block
        if checksums >= 0, checksums <= bytes.count, blocks <= (bytes.count - checksums) / 4 {
            for b in 0..<blocks {
                let n = min(block, total - b * block)
                if let c = crc(samples + b * block * sampleBytes, n * sampleBytes) { put32(c, checksums + 4 * b) }
            }
        }
        if let c = crc(labels, 4 * total) { put32(c, 104) }
        if let c = crc(index, 8 * total) { put32(c, 108) }
        if let c = crc(checksums, 4 * blocks) { put32(c, 112) }
        if u32(44) & 2 != 0, let c = crc((checksums + 4 * blocks + 63) / 64 * 64, 12 * total) { put32(c, 116) }
    }
    if let c = crc(0, headerSize - 4) { put32(c, headerSize - 4) }
    return true
}

/// Small packed files of each element type (uint8 images, int16 clips with a clip table, float32).
func writeSeeds(_ dir: String) {
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    func set(_ type: ElementType, _ shape: Shape, count: Int, classes: Int, clips: Bool) throws -> Dataset {
        // Bytes that are finite numbers for every element type (float32 exponents stay small).
        let bytes = (0..<(shape.count * count * type.size)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 11) & 0x3F }
        let store = SampleStore(bytes: bytes, elementType: type, count: count, sampleElements: shape.count)
        let windows = clips ? (0..<count).map { ClipWindow(first: Int32($0 % 3), count: Int32(shape.count - 3), centre: 0.01) } : nil
        return try Dataset(name: "seed", shape: shape, classes: classes, store: store, conversion: .natural(type),
                           labels: (0..<count).map { Int32($0 % classes) }, clips: windows)
    }
    let cases: [(String, ElementType, Shape, Bool)] = [
        ("u8", .uint8, Shape(channels: 1, height: 4, width: 4), false),
        ("i16-clips", .int16, Shape(channels: 1, height: 1, width: 16), true),
        ("f32", .float32, Shape(channels: 2, height: 1, width: 5), false),
    ]
    for (name, type, shape, clips) in cases {
        do {
            try Packed.write(train: set(type, shape, count: 5, classes: 3, clips: clips),
                             test: set(type, shape, count: 2, classes: 3, clips: clips),
                             divisor: type == .uint8 ? 255 : type == .int16 ? 32768 : 1, to: dir + "/" + name + ".ptpack")
        } catch { print("seed \(name): \(error)") }
    }
}
