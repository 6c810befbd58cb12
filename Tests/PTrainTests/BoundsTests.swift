// Sizes that come from the user or from a file, run through the built `ptrain` binary: absurd
// --threads / --shards values, a thread the system will not start, launcher variables that would
// overflow, and a gzip file that inflates far past what its trailer promises. Each must end in one
// line and a non-zero exit, quickly, never a hang, a crash or an allocation without limit.
import Foundation
import XCTest

final class BoundsTests: XCTestCase {
    /// Runs ptrain, expecting exit `status` and exactly one stderr line that is an error containing
    /// every string in `expected`, within `seconds`.
    func expectError(_ args: [String], status: Int32, _ expected: [String], within seconds: Double = 1,
                     file: StaticString = #filePath, line: UInt = #line) throws {
        let start = Date()
        let run = try TestSupport.ptrain(args)
        let elapsed = Date().timeIntervalSince(start)
        XCTAssertEqual(run.status, status, "exit status; stderr: \(run.stderr)", file: file, line: line)
        let lines = run.stderr.split(separator: "\n")
        XCTAssertEqual(lines.count, 1, "expected one line, got: \(run.stderr)", file: file, line: line)
        XCTAssertTrue(run.stderr.hasPrefix("ptrain: error: "), run.stderr, file: file, line: line)
        for e in expected { XCTAssertTrue(run.stderr.contains(e), "expected '\(e)' in: \(run.stderr)", file: file, line: line) }
        XCTAssertLessThan(elapsed, seconds, "took \(elapsed) s: \(args)", file: file, line: line)
    }

    func testThreadAndShardCountsAreBounded() throws {
        try expectError(["--threads", "100000"], status: 64, ["--threads", "4096", "100000"])
        try expectError(["train", "--threads", "0"], status: 64, ["--threads"])
        try expectError(["topo", "--threads", "1000000000"], status: 64, ["--threads", "1000000000"])
        try expectError(["train", "--shards", "100000000"], status: 64, ["--shards", "65536"])
        try expectError(["bench", "train", "--threads", "5000"], status: 64, ["--threads", "5000"])
        try expectError(["bench", "scaling", "--threads", "1,100000"], status: 64, ["--threads", "100000"])
        try expectError(["bench", "train", "--shards", "-1"], status: 64, ["--shards"])
        // The largest allowed count is planned, not refused.
        let topo = try TestSupport.ptrain(["topo", "--threads", "4096", "--format", "json"])
        XCTAssertEqual(topo.status, 0, topo.stderr)
        XCTAssertTrue(topo.stdout.contains("\"worker\" : 4095") || topo.stdout.contains("\"worker\":4095"), String(topo.stdout.suffix(300)))
        // A shards count past the bound in a config file names the key.
        let dir = TestSupport.temporaryDirectory()
        let config = dir.appendingPathComponent("shards.yaml")
        try Data(try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("configs/xo.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "  batch_size: 32\n  shards: 4", with: "  batch_size: 1000000\n  shards: 1000000").utf8)
            .write(to: config)
        try expectError(["train", "--config", config.path], status: 1, ["training.shards", "65536"])
    }

    /// A thread the system will not start (here: too little address space for 4000 thread stacks)
    /// is an error naming the worker, not a hang in start-up, and no run folder is left behind.
    func testThreadCreationFailureIsAnError() throws {
        let binary = TestSupport.productsDirectory.appendingPathComponent("ptrain").path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("no ptrain binary") }
        let output = TestSupport.temporaryDirectory().appendingPathComponent("run")
        let start = Date()
        let run = try TestSupport.run("/bin/sh", ["-c", "ulimit -v 2000000 && exec \"$0\" \"$@\"", binary,
                                                  "--threads", "4000", "--epochs", "1", "-q", "--output", output.path])
        XCTAssertLessThan(Date().timeIntervalSince(start), 10)
        XCTAssertEqual(run.status, 1, run.stderr)
        let errors = run.stderr.split(separator: "\n").filter { $0.hasPrefix("ptrain: error:") }
        XCTAssertEqual(errors.count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("cannot start worker thread") && run.stderr.contains("pthread_create"), run.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: output.path), "a run folder was left behind")
    }

    /// Launcher variables whose product with --threads would overflow leave the topology alone.
    func testHugeLocalRankCountsDoNotOverflow() throws {
        for size in ["4611686018427387904", "9223372036854775807", "-3"] {
            let run = try TestSupport.ptrain(["topo", "--threads", "4", "--format", "json"],
                                             environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": size, "OMPI_COMM_WORLD_LOCAL_RANK": "2"])
            XCTAssertEqual(run.status, 0, "\(size): \(run.stderr)")
            XCTAssertTrue(run.stdout.contains("\"worker\""), run.stdout)
        }
    }

    /// A single gzip member whose data inflates to 512 MiB of zeros while its trailer promises 47,056
    /// bytes: under a 600 MB address-space limit the reader must stop at the promise with one line
    /// (growing a buffer to hold all of it, as before, fails to allocate and crashes).
    func testGzipOutputIsCappedByItsTrailer() throws {
        let binary = TestSupport.productsDirectory.appendingPathComponent("ptrain").path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("no ptrain binary") }
        let data = TestSupport.temporaryDirectory()
        try TestSupport.writeTinyMNIST(data, train: 60, test: 10)
        let images = data.appendingPathComponent("train-images-idx3-ubyte")
        try FileManager.default.removeItem(at: images)
        try Data(gzipBomb(zeros: 1 << 29, promising: 16 + 60 * 28 * 28)).write(to: images.appendingPathExtension("gz"))
        let start = Date()
        let run = try TestSupport.run("/bin/sh", ["-c", "ulimit -v 600000 && exec \"$0\" \"$@\"", binary, "train",
                                                  "--config", "configs/lenet5-mnist.yaml", "--data", data.path, "-q",
                                                  "--output", data.appendingPathComponent("run").path])
        XCTAssertLessThan(Date().timeIntervalSince(start), 30)
        XCTAssertEqual(run.status, 1, run.stderr)
        XCTAssertEqual(run.stderr.split(separator: "\n").count, 1, run.stderr)
        XCTAssertTrue(run.stderr.contains("train-images-idx3-ubyte.gz") && run.stderr.contains("gzip"), run.stderr)
    }

    /// One gzip member of `zeros` zero bytes (rounded up to a whole number of 258-byte matches) in a
    /// fixed-Huffman deflate block: a literal 0, then (length 258, distance 1) pairs of 13 bits.
    /// The trailer's CRC is left 0 and its ISIZE says `promising`.
    func gzipBomb(zeros: Int, promising: Int) -> [UInt8] {
        var out: [UInt8] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]
        out.reserveCapacity(10 + zeros / 258 * 13 / 8 + 16)
        var accumulator: UInt64 = 0, bits = 0
        func put(_ value: UInt64, _ count: Int) {  // deflate packs bits from the least significant end
            accumulator |= value << UInt64(bits)
            bits += count
            while bits >= 8 {
                out.append(UInt8(truncatingIfNeeded: accumulator))
                accumulator >>= 8
                bits -= 8
            }
        }
        func huffman(_ code: UInt64, _ count: Int) {  // Huffman codes go most significant bit first
            var reversed: UInt64 = 0
            for i in 0..<count { reversed = reversed << 1 | (code >> UInt64(i) & 1) }
            put(reversed, count)
        }
        put(1, 1); put(1, 2)          // last block, fixed Huffman codes
        huffman(0x30, 8)              // literal 0
        for _ in 0..<(zeros - 1 + 257) / 258 {
            huffman(0b1100_0101, 8)   // length 258 (code 285)
            huffman(0, 5)             // distance 1
        }
        huffman(0, 7)                 // end of block (code 256)
        if bits > 0 { put(0, 8 - bits) }
        out += [0, 0, 0, 0]
        out += (0..<4).map { UInt8(truncatingIfNeeded: promising >> (8 * $0)) }
        return out
    }
}
