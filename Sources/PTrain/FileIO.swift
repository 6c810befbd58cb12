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
            while written < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + written, raw.count - written)
                if n < 0 {
                    if errno == EINTR { continue }
                    return String(cString: strerror(errno))
                }
                written += n
            }
            return nil
        }
        if let failure {
            close(fd)
            throw FileError("\(path): write failed: \(failure)")
        }
        if fsync(fd) != 0 {
            let why = String(cString: strerror(errno))
            close(fd)
            throw FileError("\(path): fsync failed: \(why)")
        }
        close(fd)
        guard rename(tmp, path) == 0 else { throw FileError("\(path): cannot rename into place: \(String(cString: strerror(errno)))") }
        ok = true
        let dfd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dfd >= 0 { fsync(dfd); close(dfd) }
    }

    static func write(_ text: String, to path: String) throws { try write(Array(text.utf8), to: path) }
}

/// Creates `path` and its parents; one-line error when that is impossible.
func makeDirectory(_ path: String) throws {
    var isDir: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDir) {
        guard isDir.boolValue else { throw FileError("\(path): exists and is not a folder") }
        guard access(path, W_OK) == 0 else { throw FileError("\(path): folder is not writable") }
        return
    }
    do {
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
        throw FileError("\(path): cannot create folder: \((error as NSError).localizedDescription)")
    }
}
