// Helpers for the trainer and command-line tests: the repository root, temporary folders, running
// the built `ptrain` binary, writing small IDX files and MNIST as PNG folders.
import Foundation
import PTData
import PTrain
import XCTest

enum TestSupport {
    /// The repository root (two levels above this file's folder).
    static let repositoryRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The folder holding the test bundle, where SwiftPM also puts the `ptrain` executable.
    static let productsDirectory: URL = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()

    /// A new empty temporary folder, removed with its contents when the test process exits (set
    /// PTRAIN_KEEP_TEST_FOLDERS=1 to keep them, e.g. to look into a failure).
    static func temporaryDirectory(_ name: String = #function) -> URL {
        let safe = name.filter { $0.isLetter || $0.isNumber }
        let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("ptrain-test-\(safe)-\(UUID().uuidString.prefix(8))")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        TemporaryFolders.shared.add(url)
        return url
    }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs the built `ptrain` with `arguments` in the repository root.
    static func ptrain(_ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let binary = productsDirectory.appendingPathComponent("ptrain")
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw XCTSkip("ptrain binary not found next to the test bundle at \(binary.path)")
        }
        return try run(binary.path, arguments, environment: environment)
    }

    /// Runs `executable` with `arguments` in the repository root, capturing its output.
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = repositoryRoot
        if let environment { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        // Output goes to files, so a chatty child can never block on a full pipe.
        let dir = temporaryDirectory("run")
        let outURL = dir.appendingPathComponent("stdout"), errURL = dir.appendingPathComponent("stderr")
        FileManager.default.createFile(atPath: outURL.path, contents: nil)
        FileManager.default.createFile(atPath: errURL.path, contents: nil)
        let out = try FileHandle(forWritingTo: outURL), err = try FileHandle(forWritingTo: errURL)
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try out.close(); try err.close()
        let outData = try Data(contentsOf: outURL), errData = try Data(contentsOf: errURL)
        try? FileManager.default.removeItem(at: dir)
        return Result(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                      stderr: String(decoding: errData, as: UTF8.self))
    }

    /// Writes an unsigned-byte IDX file with the given dimensions and body.
    static func writeIDX(_ url: URL, dims: [Int], body: [UInt8]) throws {
        var bytes: [UInt8] = [0, 0, 0x08, UInt8(dims.count)]
        for d in dims { bytes += [UInt8((d >> 24) & 255), UInt8((d >> 16) & 255), UInt8((d >> 8) & 255), UInt8(d & 255)] }
        try Data(bytes + body).write(to: url)
    }

    /// Writes a version-1 .npy file: `descr` ('<f4' or '|u1', '<u1', '<i8'), C order, `shape`, raw little-endian `body`.
    static func writeNPY(_ url: URL, descr: String, shape: [Int], body: [UInt8]) throws {
        let dims = shape.count == 1 ? "(\(shape[0]),)" : "(" + shape.map(String.init).joined(separator: ", ") + ")"
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(dims), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let n = header.utf8.count
        try Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 255), UInt8(n >> 8)] + Array(header.utf8) + body).write(to: url)
    }

    /// Float32 samples as a .npy file of shape [count] + sample shape.
    static func writeNPY(_ url: URL, floats: UnsafeBufferPointer<Float>, shape: [Int]) throws {
        try writeNPY(url, descr: "<f4", shape: shape, body: Array(UnsafeRawBufferPointer(floats)))
    }

    /// A tiny MNIST-format folder: `train` and `test` images of 28x28 with labels cycling 0..9.
    static func writeTinyMNIST(_ dir: URL, train: Int = 20, test: Int = 10, labelCount: Int? = nil, badLabel: UInt8? = nil) throws {
        func images(_ n: Int) -> [UInt8] { (0..<(n * 784)).map { UInt8(($0 * 7) % 256) } }
        func labels(_ n: Int) -> [UInt8] { (0..<n).map { UInt8($0 % 10) } }
        try writeIDX(dir.appendingPathComponent("train-images-idx3-ubyte"), dims: [train, 28, 28], body: images(train))
        var trainLabels = labels(labelCount ?? train)
        if let badLabel { trainLabels[3] = badLabel }
        try writeIDX(dir.appendingPathComponent("train-labels-idx1-ubyte"), dims: [trainLabels.count], body: trainLabels)
        try writeIDX(dir.appendingPathComponent("t10k-images-idx3-ubyte"), dims: [test, 28, 28], body: images(test))
        try writeIDX(dir.appendingPathComponent("t10k-labels-idx1-ubyte"), dims: [test], body: labels(test))
    }

    /// The first `train` and `test` images of the MNIST IDX files in `source` (the four files,
    /// gzipped, as in Tests/Fixtures/mnist) written as raw IDX files into `idx`.
    static func writeMNISTSubset(from source: String, to idx: URL, train: Int, test: Int) throws {
        let names = [("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte", "train-labels-idx1-ubyte", train),
                     ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", test)]
        try FileManager.default.createDirectory(at: idx, withIntermediateDirectories: true)
        for (images, labels, imagesOut, labelsOut, n) in names {
            let i = try IDX.load(path: source + "/" + images), l = try IDX.load(path: source + "/" + labels)
            let size = i.dims[1] * i.dims[2]
            try writeIDX(idx.appendingPathComponent(imagesOut), dims: [n, i.dims[1], i.dims[2]], body: Array(i.bytes.prefix(n * size)))
            try writeIDX(idx.appendingPathComponent(labelsOut), dims: [n], body: Array(l.bytes.prefix(n)))
        }
    }

    /// The MNIST IDX files in `idx` (train-/t10k- images and labels) as image folders, as
    /// scripts/mnist-to-png.py writes the whole set: root/{train,test}/<label>/<index>.png, the index
    /// in the IDX file zero-padded to 5 digits, 8-bit grey PNG.
    static func writeIDXAsPNGFolders(_ idx: URL, root: URL) throws {
        for (split, prefix) in [("train", "train"), ("test", "t10k")] {
            let images = try IDX.load(path: idx.appendingPathComponent("\(prefix)-images-idx3-ubyte").path)
            let labels = try IDX.load(path: idx.appendingPathComponent("\(prefix)-labels-idx1-ubyte").path).bytes
            let (rows, cols) = (images.dims[1], images.dims[2])
            for (i, label) in labels.enumerated() {
                let folder = root.appendingPathComponent("\(split)/\(label)")
                try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
                let pixels = Array(images.bytes[(i * rows * cols)..<((i + 1) * rows * cols)])
                let png = try ImageCodec.encodePNG(DecodedImage(width: cols, height: rows, channels: 1, pixels: pixels))
                try Data(png).write(to: folder.appendingPathComponent(String(format: "%05d.png", i)))
            }
        }
    }

    /// A small X/O job (the default config with fewer samples and epochs) written into `dir`;
    /// `edit` may change the YAML text further. Returns the file's path.
    static func smallXOConfig(_ dir: URL, train: Int, test: Int, epochs: Int, batchSize: Int = 32,
                              edit: (String) -> String = { $0 }) throws -> String {
        let text = defaultConfigYAML
            .replacingOccurrences(of: "  train: 8000", with: "  train: \(train)")
            .replacingOccurrences(of: "  test: 500", with: "  test: \(test)")
            .replacingOccurrences(of: "  epochs: 8", with: "  epochs: \(epochs)")
            .replacingOccurrences(of: "  batch_size: 32", with: "  batch_size: \(batchSize)")
        let url = dir.appendingPathComponent("xo-\(UUID().uuidString.prefix(6)).yaml")
        try Data(edit(text).utf8).write(to: url)
        return url.path
    }
}

/// A ptrain built with the trait MPI (PTRAIN_MPI_BINARY; .ci/run builds one into .build-mpi) and
/// mpirun, for the multi-process tests; `find()` skips the test when either is missing.
struct MPILauncher {
    struct NoRankToKill: Error {}
    let binary: String
    let mpirun: String
    /// Open MPI settings for tests as root in a container: allow root, allow more ranks than cores,
    /// no cross-memory-attach (ptrace is often forbidden).
    static let environment = ["OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                              "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl_vader_single_copy_mechanism": "none"]

    static func find() throws -> MPILauncher {
        guard let path = ProcessInfo.processInfo.environment["PTRAIN_MPI_BINARY"] else {
            throw XCTSkip("set PTRAIN_MPI_BINARY to a ptrain built with --traits MPI (see .ci/run)")
        }
        let binary = path.hasPrefix("/") ? path : TestSupport.repositoryRoot.appendingPathComponent(path).path
        guard FileManager.default.isExecutableFile(atPath: binary) else { throw XCTSkip("\(binary) is not an executable") }
        guard let mpirun = ["/usr/bin/mpirun", "/usr/local/bin/mpirun"].first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
            throw XCTSkip("mpirun not found")
        }
        return MPILauncher(binary: binary, mpirun: mpirun)
    }

    /// `mpirun MPIOPTIONS ptrain ARGUMENTS`, waited for; `extra` adds to the environment.
    func run(_ mpiOptions: [String], _ arguments: [String], extra: [String: String] = [:]) throws -> TestSupport.Result {
        try TestSupport.run(mpirun, mpiOptions + [binary] + arguments, environment: Self.environment.merging(extra) { $1 })
    }

    /// Starts `mpirun -np 2 ptrain train --config CONFIG --threads 1` into DIR/run, waits until rank 0
    /// wrote its metrics file and `settle` more microseconds, SIGKILLs the second rank and returns
    /// how many seconds the whole job took to end after that (the job is terminated after 30 s).
    func killOneRankMidRun(config: String, dir: URL, settle: useconds_t) throws -> (seconds: Double, status: Int32) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: mpirun)
        process.arguments = ["-np", "2", binary, "train", "--config", config, "--threads", "1", "--output", dir.appendingPathComponent("run").path, "-q"]
        process.environment = ProcessInfo.processInfo.environment.merging(Self.environment) { $1 }
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let metrics = dir.appendingPathComponent("run/metrics.jsonl").path
        let ready = Date().addingTimeInterval(60)
        while !FileManager.default.fileExists(atPath: metrics) && Date() < ready && process.isRunning { usleep(20_000) }
        usleep(settle)
        XCTAssertTrue(process.isRunning, "the job ended before it could be killed")
        let ranks = try TestSupport.run("/usr/bin/pgrep", ["-P", String(process.processIdentifier), "-f", "ptrain"])
        let pids = ranks.stdout.split(separator: "\n").compactMap { Int32($0) }
        XCTAssertEqual(pids.count, 2, "expected two rank processes under mpirun: \(ranks.stdout)")
        guard let victim = pids.last else {
            process.terminate()
            process.waitUntilExit()
            throw NoRankToKill()
        }
        let killed = Date()
        kill(victim, SIGKILL)
        while process.isRunning && Date().timeIntervalSince(killed) < 30 { usleep(20_000) }
        let seconds = Date().timeIntervalSince(killed)
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
        return (seconds, process.terminationStatus)
    }
}

/// The folders `TestSupport.temporaryDirectory` made, removed at exit (every test run left ~100 behind).
private final class TemporaryFolders: @unchecked Sendable {
    static let shared = TemporaryFolders()
    private let lock = NSLock()
    private var urls: [URL] = []

    private init() { atexit { TemporaryFolders.shared.removeAll() } }

    func add(_ url: URL) {
        lock.lock()
        urls.append(url)
        lock.unlock()
    }

    func removeAll() {
        guard ProcessInfo.processInfo.environment["PTRAIN_KEEP_TEST_FOLDERS"] == nil else { return }
        lock.lock()
        defer { lock.unlock() }
        for url in urls { try? FileManager.default.removeItem(at: url) }
        urls.removeAll()
    }
}
