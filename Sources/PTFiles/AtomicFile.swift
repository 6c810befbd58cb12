// The one way ptrain writes a file: a temporary file beside the final path, fsync, rename, fsync
// of the folder. A reader never sees a partial file, and an earlier file of the same name stays
// intact when anything fails. Checkpoints, safetensors, run-folder files, plots, bench output and
// `ptrain pack`'s packed files all go through `AtomicFile`.
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

/// A file being written under a temporary name in its folder; `commit` renames it into place,
/// and a writer dropped before that removes the temporary file.
public final class AtomicFile {
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

    /// The final path.
    public let path: String
    let folder: String
    let temporaryPath: String
    var fd: Int32
    var committed = false

    /// Creates an empty temporary file beside `path` (`.NAME.tmp-XXXXXX`, the usual permissions).
    public init(path: String) throws {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        folder = dir.isEmpty ? "." : dir
        var template = Array("\(folder)/.\((path as NSString).lastPathComponent).tmp-XXXXXX".utf8CString)
        fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw FileError("\(path): cannot create a temporary file beside it: \(String(cString: strerror(errno)))") }
        temporaryPath = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let mask = umask(0)
        umask(mask)
        fchmod(fd, 0o666 & ~mask)  // mkstemp makes it 0600
    }

    deinit {
        if !committed {
            if fd >= 0 { close(fd) }
            unlink(temporaryPath)
        }
    }

    /// Writes all of `bytes` at `offset`.
    public func write(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws {
        let (allowed, full) = Self.hookAllowance(bytes.count)
        var written = 0
        while written < allowed {
            let n = pwrite(fd, bytes.baseAddress! + written, allowed - written, off_t(offset + written))
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError("\(path): write failed after \(written) of \(bytes.count) bytes: \(String(cString: strerror(errno)))")
            }
            written += n
        }
        if full { throw FileError("\(path): write failed after \(written) of \(bytes.count) bytes: \(String(cString: strerror(ENOSPC)))") }
    }

    public func write(_ bytes: [UInt8], at offset: Int) throws {
        try bytes.withUnsafeBytes { try write($0, at: offset) }
    }

    /// Ends the file at `size` bytes when given, makes it durable and renames it into place; then
    /// makes the rename durable (fsync of the folder).
    public func commit(size: Int? = nil) throws {
        if let size, ftruncate(fd, off_t(size)) != 0 {
            throw FileError("\(path): cannot set the file's size: \(String(cString: strerror(errno)))")
        }
        if fsync(fd) != 0 { throw FileError("\(path): fsync failed: \(String(cString: strerror(errno)))") }
        // close can report a delayed write error (NFS, quotas).
        let closed = close(fd)
        fd = -1
        if closed != 0 { throw FileError("\(path): close failed: \(String(cString: strerror(errno)))") }
        guard rename(temporaryPath, path) == 0 else {
            throw FileError("\(path): cannot rename into place: \(String(cString: strerror(errno)))")
        }
        committed = true
        syncDirectory(folder)
    }

    /// Writes `bytes` to `path` atomically.
    public static func write(_ bytes: [UInt8], to path: String) throws {
        let file = try AtomicFile(path: path)
        try file.write(bytes, at: 0)
        try file.commit()
    }

    /// Writes `text` (UTF-8) to `path` atomically.
    public static func write(_ text: String, to path: String) throws { try write(Array(text.utf8), to: path) }
}

/// fsync of a folder, so that a rename inside it survives a crash.
public func syncDirectory(_ path: String) {
    let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    if fd >= 0 { fsync(fd); close(fd) }
}

/// Creates `path` and its parents; one-line error naming the part of the path that is in the way.
public func makeDirectory(_ path: String) throws {
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
