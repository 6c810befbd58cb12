// Atomic file writing: temporary file in the same folder, fsync, rename, fsync of the folder.
// A reader never sees a partial file; an earlier file of the same name stays intact on failure.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A file-system error: one line naming the path and the cause.
public struct FileError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

enum AtomicFile {
    /// Test hook (docs/FUZZING.md, Tests/PTrainTests/BadInputTests.swift): when the environment
    /// variable PTRAIN_TEST_FAIL_WRITES_AFTER_BYTES is set to N, the process behaves as if the disk
    /// filled up after N bytes written through `AtomicFile` in all: the write that crosses N writes
    /// what fits and then fails with ENOSPC, like a real full disk. Unset (always, outside tests): no effect.
    static let failAfterBytes: Int? = ProcessInfo.processInfo.environment["PTRAIN_TEST_FAIL_WRITES_AFTER_BYTES"].flatMap { Int($0) }
    /// Bytes written through `AtomicFile` so far (only counted while the hook is set).
    nonisolated(unsafe) static var bytesWritten = 0
    static let lock = NSLock()

    /// How many of `count` bytes the test hook lets through, and whether it then reports a full disk.
    static func hookAllowance(_ count: Int) -> (allowed: Int, full: Bool) {
        guard let limit = failAfterBytes else { return (count, false) }
        lock.lock(); defer { lock.unlock() }
        let allowed = max(0, min(count, limit - bytesWritten))
        bytesWritten += allowed
        return (allowed, allowed < count)
    }

    /// Writes `bytes` to `path` atomically.
    static func write(_ bytes: [UInt8], to path: String) throws {
        let dir = (path as NSString).deletingLastPathComponent
        let folder = dir.isEmpty ? "." : dir
        let name = (path as NSString).lastPathComponent
        let tmp = "\(folder)/.\(name).tmp-\(getpid())"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw FileError("\(path): cannot write: \(String(cString: strerror(errno)))") }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        var written = 0
        let failure: String? = bytes.withUnsafeBytes { raw -> String? in
            let (allowed, full) = hookAllowance(raw.count)
            while written < allowed {
                let n = Glibc.write(fd, raw.baseAddress! + written, allowed - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                written += n
            }
            return full ? String(cString: strerror(ENOSPC)) : nil
        }
        if let failure {
            close(fd)
            throw FileError("\(path): write failed after \(written) of \(bytes.count) bytes: \(failure)")
        }
        if fsync(fd) != 0 {
            let why = String(cString: strerror(errno))
            close(fd)
            throw FileError("\(path): fsync failed: \(why)")
        }
        // close can report a delayed write error (NFS, quotas).
        if close(fd) != 0 { throw FileError("\(path): close failed: \(String(cString: strerror(errno)))") }
        guard rename(tmp, path) == 0 else { throw FileError("\(path): cannot rename into place: \(String(cString: strerror(errno)))") }
        ok = true
        let dfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    static func write(_ text: String, to path: String) throws { try write(Array(text.utf8), to: path) }
}

/// Writes `bytes` to `path` atomically (temporary file in the same folder, fsync, rename, fsync of
/// the folder), for file formats written outside this module (ONNX export).
public func writeFileAtomically(_ bytes: [UInt8], to path: String) throws {
    try AtomicFile.write(bytes, to: path)
}

/// Creates `path` and its parents; one-line error naming the part of the path that is in the way.
func makeDirectory(_ path: String) throws {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
        guard isDir.boolValue else { throw FileError("\(path): exists and is not a folder") }
        guard access(path, W_OK) == 0 else { throw FileError("\(path): folder is not writable") }
        return
    }
    // mkdir each missing component in turn, so that the error names the one that failed and why.
    var prefix = path.hasPrefix("/") ? "/" : ""
    for component in path.split(separator: "/", omittingEmptySubsequences: true) {
        prefix += (prefix.isEmpty || prefix.hasSuffix("/") ? "" : "/") + component
        if FileManager.default.fileExists(atPath: prefix, isDirectory: &isDir) {
            guard isDir.boolValue else {
                throw FileError("\(path): cannot create folder: \(prefix) is a file, not a folder")
            }
            continue
        }
        if mkdir(prefix, 0o777) != 0 && errno != EEXIST {
            let why = String(cString: strerror(errno))
            throw FileError(prefix == path ? "\(path): cannot create folder: \(why)"
                                           : "\(path): cannot create folder \(prefix): \(why)")
        }
    }
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), isDir.boolValue else {
        throw FileError("\(path): cannot create folder")
    }
}
