// Deterministic fuzzing of the binary readers: IDX (raw and gzip), MNIST image/label pairs, NPY and WAV.
// A seeded generator mutates valid files (bit flips, truncations, inserted and deleted bytes, header
// field edits); every reader must either succeed with consistent output or throw a DataError whose
// message is one non-empty line naming the file. Never a crash.
//
// Budget: a few thousand inputs, about a second in release. PTRAIN_FUZZ_ITERATIONS=N multiplies
// nothing and sets the iterations of each target to N; PTRAIN_FUZZ_SEED=S changes the seed.
// See docs/FUZZING.md for long campaigns (debug builds keep bounds and overflow checks).
import Foundation
import PTData
import XCTest

/// SplitMix64: small, seedable, the same sequence everywhere.
struct FuzzRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// Uniform in 0..<n (n > 0).
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
}

/// Fuzz settings from the environment.
enum FuzzBudget {
    static let environment = ProcessInfo.processInfo.environment
    /// Iterations per target: PTRAIN_FUZZ_ITERATIONS, else `ci`.
    static func iterations(_ ci: Int) -> Int { environment["PTRAIN_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? ci }
    static let seed: UInt64 = environment["PTRAIN_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5EED_F022
}

/// Byte-level mutations shared by the binary targets. `fields` are offsets of 4-byte header fields
/// (sizes, counts) that are edited with interesting values, big- or little-endian.
func mutate(_ input: [UInt8], _ rng: inout FuzzRandom, fields: [Int] = [], bigEndian: Bool = true) -> [UInt8] {
    var b = input
    let interesting: [UInt32] = [0, 1, 2, 3, 4, 7, 8, 255, 256, 0x7FFF, 0xFFFF, 0x10000, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFE, 0xFFFF_FFFF]
    for _ in 0...rng.below(3) {
        switch rng.below(9) {
        case 0 where !b.isEmpty:  // bit flip
            let i = rng.below(b.count)
            b[i] ^= 1 << UInt8(rng.below(8))
        case 1 where !b.isEmpty:  // random or interesting byte
            let i = rng.below(min(b.count, rng.chance(70) ? 32 : b.count))
            b[i] = rng.chance(50) ? rng.byte() : [0, 1, 0x7F, 0x80, 0xFF][rng.below(5)]
        case 2:  // truncate
            b = Array(b.prefix(rng.below(b.count + 1)))
        case 3:  // insert bytes
            let at = rng.below(b.count + 1)
            b.insert(contentsOf: (0..<(1 + rng.below(16))).map { _ in rng.byte() }, at: at)
        case 4 where !b.isEmpty:  // delete a range
            let at = rng.below(b.count)
            b.removeSubrange(at..<min(b.count, at + 1 + rng.below(16)))
        case 5 where !b.isEmpty:  // duplicate a range
            let at = rng.below(b.count)
            let piece = Array(b[at..<min(b.count, at + 1 + rng.below(32))])
            b.insert(contentsOf: piece, at: rng.below(b.count + 1))
        case 6, 7:  // header field edit
            guard let field = fields.isEmpty ? nil : fields[rng.below(fields.count)], field + 4 <= b.count else { continue }
            let old = bigEndian ? UInt32(b[field]) << 24 | UInt32(b[field + 1]) << 16 | UInt32(b[field + 2]) << 8 | UInt32(b[field + 3])
                                : UInt32(b[field]) | UInt32(b[field + 1]) << 8 | UInt32(b[field + 2]) << 16 | UInt32(b[field + 3]) << 24
            let value: UInt32 = rng.chance(50) ? interesting[rng.below(interesting.count)] : old &+ UInt32(bitPattern: Int32(rng.below(5) - 2))
            for k in 0..<4 {
                b[field + k] = UInt8(truncatingIfNeeded: bigEndian ? value >> (24 - 8 * UInt32(k)) : value >> (8 * UInt32(k)))
            }
        default:  // append junk
            b += (0..<(1 + rng.below(8))).map { _ in rng.byte() }
        }
    }
    return b
}

final class FuzzTests: XCTestCase {
    /// Checks the outcome of one reader call: success passes `check`; failure must be a one-line DataError naming `path`.
    func expectCleanOutcome<T>(_ path: String, _ input: [UInt8], _ stats: inout (ok: Int, rejected: Int),
                               file: StaticString = #filePath, line: UInt = #line,
                               _ body: () throws -> T, check: (T) -> Bool = { _ in true }) {
        do {
            let value = try body()
            stats.ok += 1
            if !check(value) {
                XCTFail("inconsistent result for input \(input.prefix(64).map { String($0, radix: 16) })", file: file, line: line)
            }
        } catch let error as DataError {
            stats.rejected += 1
            let m = error.message
            if m.isEmpty || m.contains("\n") || m.contains("\r") || !m.contains(path) {
                XCTFail("bad error message '\(m)' for input \(input.prefix(64).map { String($0, radix: 16) })", file: file, line: line)
            }
        } catch {
            XCTFail("unexpected error type \(type(of: error)): \(error)", file: file, line: line)
        }
    }

    func idxSeeds() -> [[UInt8]] {
        [idxBytes(dims: [3, 2, 2], body: (0..<12).map { UInt8($0 * 20) }),
         idxBytes(dims: [5], body: [0, 1, 2, 9, 7]),
         idxBytes(dims: [2, 3], body: [1, 2, 3, 4, 5, 6]),
         idxBytes(dims: [1, 1, 2, 2], body: [9, 8, 7, 6]),
         idxBytes(dims: [0, 28, 28], body: [])]
    }

    func testFuzzIDXRaw() throws {
        let dir = try makeTempFolder(self)
        let path = dir + "/fuzz-idx"
        var rng = FuzzRandom(seed: FuzzBudget.seed)
        let seeds = idxSeeds()
        var stats = (ok: 0, rejected: 0)
        let start = Date()
        for _ in 0..<FuzzBudget.iterations(3000) {
            let input = mutate(seeds[rng.below(seeds.count)], &rng, fields: [0, 4, 8, 12, 16])
            try write(input, to: path)
            expectCleanOutcome(path, input, &stats, { try IDX.load(path: path) }) { r in
                r.bytes.count == r.dims.reduce(1, *) && (1...4).contains(r.dims.count)
            }
        }
        print("fuzz IDX raw: \(stats.ok) accepted, \(stats.rejected) rejected, \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        XCTAssertGreaterThan(stats.rejected, 0)
    }

    func testFuzzIDXGzip() throws {
        let dir = try makeTempFolder(self)
        let path = dir + "/fuzz-idx.gz"
        var rng = FuzzRandom(seed: FuzzBudget.seed ^ 0x67A1)
        let seeds = idxSeeds()
        let compressed = seeds.map { systemGzip($0) ?? gzipStored($0) } + seeds.map(gzipStored)
        var stats = (ok: 0, rejected: 0)
        let start = Date()
        for _ in 0..<FuzzBudget.iterations(2000) {
            let input: [UInt8]
            switch rng.below(3) {
            case 0:  // valid gzip around a mutated IDX file: the IDX checks run behind zlib
                input = gzipStored(mutate(seeds[rng.below(seeds.count)], &rng, fields: [0, 4, 8, 12, 16]))
            case 1:  // mutated gzip: zlib's errors, and the size guess from the ISIZE trailer
                let gz = compressed[rng.below(compressed.count)]
                input = mutate(gz, &rng, fields: [gz.count - 4, gz.count - 8, 4], bigEndian: false)
            default:  // two members, the second mutated
                input = gzipStored(seeds[rng.below(seeds.count)]) + mutate(compressed[rng.below(compressed.count)], &rng)
            }
            try write(input, to: path)
            expectCleanOutcome(path, input, &stats, { try IDX.load(path: path) }) { r in
                r.bytes.count == r.dims.reduce(1, *)
            }
        }
        print("fuzz IDX gzip: \(stats.ok) accepted, \(stats.rejected) rejected, \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        XCTAssertGreaterThan(stats.rejected, 0)
    }

    /// Image and label files mutated together: counts, ranks and labels that disagree.
    func testFuzzMNISTPairs() throws {
        let dir = try makeTempFolder(self)
        let images = dir + "/images", labels = dir + "/labels"
        var rng = FuzzRandom(seed: FuzzBudget.seed ^ 0x3A15)
        let goodImages = idxBytes(dims: [4, 3, 3], body: (0..<36).map { UInt8($0 * 7) })
        let goodLabels = idxBytes(dims: [4], body: [0, 9, 3, 1])
        var stats = (ok: 0, rejected: 0)
        for _ in 0..<FuzzBudget.iterations(1000) {
            let a = rng.chance(60) ? mutate(goodImages, &rng, fields: [4, 8, 12]) : goodImages
            let b = rng.chance(60) ? mutate(goodLabels, &rng, fields: [4]) : goodLabels
            try write(a, to: images)
            try write(b, to: labels)
            let classes = 1 + rng.below(12)
            do {
                let set = try MNISTFolder.loadPair(images: images, labels: labels, classes: classes)
                stats.ok += 1
                XCTAssertEqual(set.images.count, set.count * set.shape.count)
                XCTAssertTrue(set.labels.allSatisfy { $0 >= 0 && Int($0) < classes })
            } catch let error as DataError {
                stats.rejected += 1
                let m = error.message
                XCTAssertTrue(!m.isEmpty && !m.contains("\n") && (m.contains(images) || m.contains(labels)), m)
            }
        }
        print("fuzz MNIST pairs: \(stats.ok) accepted, \(stats.rejected) rejected")
        // Both outcomes occur: the mutations reach the reader's checks, and the checks on accepted
        // inputs run.
        XCTAssertGreaterThan(stats.rejected, 0)
        XCTAssertGreaterThan(stats.ok, 0)
    }

    func testFuzzNPY() throws {
        let dir = try makeTempFolder(self)
        let path = dir + "/fuzz.npy"
        var rng = FuzzRandom(seed: FuzzBudget.seed ^ 0x4E50)
        let seeds = [npyBytes(descr: "<f4", shape: [2, 3], data: bytesOf([Float](repeating: 1.5, count: 6))),
                     npyBytes(descr: "|u1", shape: [4], data: [1, 2, 3, 4]),
                     npyBytes(descr: "<i8", shape: [1, 1, 2], data: bytesOf([Int64(3), -4]))]
        var stats = (ok: 0, rejected: 0)
        for _ in 0..<FuzzBudget.iterations(1000) {
            var input = seeds[rng.below(seeds.count)]
            if rng.chance(40), let open = input.firstIndex(of: UInt8(ascii: "(")) {
                // Edit the shape tuple's text.
                let texts = ["(", "(-1,", "(99999999999,", "(0,", "(3,3,", "(2**", "(1,)", "((", "(9223372036854775807, 2,"]
                input.replaceSubrange(open...open, with: Array(texts[rng.below(texts.count)].utf8))
            }
            input = mutate(input, &rng, fields: [8], bigEndian: false)
            try write(input, to: path)
            expectCleanOutcome(path, input, &stats, { try NPY.load(path: path) }) { r in
                r.values.count == r.shape.reduce(1, *)
            }
        }
        print("fuzz NPY: \(stats.ok) accepted, \(stats.rejected) rejected")
        // Both outcomes occur: the mutations reach the reader's checks, and the checks on accepted
        // inputs run.
        XCTAssertGreaterThan(stats.rejected, 0)
        XCTAssertGreaterThan(stats.ok, 0)
    }

    func testFuzzWAV() throws {
        let dir = try makeTempFolder(self)
        let path = dir + "/fuzz.wav"
        var rng = FuzzRandom(seed: FuzzBudget.seed ^ 0x3A7)
        let seeds = [wavBytes(samples: [0, 1000, -1000, 32767]), wavBytes(samples: [5], extraChunk: false)]
        var stats = (ok: 0, rejected: 0)
        for _ in 0..<FuzzBudget.iterations(1000) {
            // Chunk sizes live at 4, 16 and 40-ish; fmt fields after them.
            let input = mutate(seeds[rng.below(seeds.count)], &rng, fields: [4, 16, 24, 28, 36, 40, 44, 48], bigEndian: false)
            try write(input, to: path)
            expectCleanOutcome(path, input, &stats, { try WAV.read(path: path) }) { r in r.sampleRate > 0 }
        }
        print("fuzz WAV: \(stats.ok) accepted, \(stats.rejected) rejected")
        // Both outcomes occur: the mutations reach the reader's checks, and the checks on accepted
        // inputs run.
        XCTAssertGreaterThan(stats.rejected, 0)
        XCTAssertGreaterThan(stats.ok, 0)
    }
}
