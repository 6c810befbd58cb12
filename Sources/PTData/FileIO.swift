// Shared by the readers: whole-file reads, gzip inflation through zlib, folder checks and listings.
import CZlib
import Foundation

/// File helpers for the readers. Every failure is a `DataError` naming the path.
enum FileIO {
    /// True when `path` exists and is a directory.
    static func isDirectory(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
    }

    /// True when `path` exists and is not a directory.
    static func isFile(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && !isDir.boolValue
    }

    /// Throws unless `path` is an existing folder.
    static func requireDirectory(_ path: String) throws {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw DataError("\(path): folder not found")
        }
        guard isDir.boolValue else { throw DataError("\(path): not a folder") }
    }

    /// Names of the entries of folder `path`, sorted bytewise so that the order is the same everywhere.
    static func list(_ path: String) throws -> [String] {
        try requireDirectory(path)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: path) else {
            throw DataError("\(path): cannot list folder")
        }
        return names.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) }
    }

    /// `folder/name`, without doubling a trailing slash.
    static func join(_ folder: String, _ name: String) -> String {
        folder.hasSuffix("/") ? folder + name : folder + "/" + name
    }

    /// All bytes of the file at `path`, in one read into a buffer of the file's size.
    static func readAll(_ path: String) throws -> [UInt8] {
        if isDirectory(path) { throw DataError("\(path): is a folder, expected a file") }
        guard let file = fopen(path, "rb") else {
            let cause = errno == ENOENT ? "file not found" : "cannot open (\(String(cString: strerror(errno))))"
            throw DataError("\(path): \(cause)")
        }
        defer { fclose(file) }
        guard fseeko(file, 0, SEEK_END) == 0 else { throw DataError("\(path): cannot seek") }
        let size = Int(ftello(file))
        guard size >= 0, fseeko(file, 0, SEEK_SET) == 0 else { throw DataError("\(path): cannot find the file size") }
        let bytes = [UInt8](unsafeUninitializedCapacity: size) { buffer, initialized in
            initialized = size == 0 ? 0 : fread(buffer.baseAddress, 1, size, file)
        }
        guard bytes.count == size else { throw DataError("\(path): read \(bytes.count) of \(size) bytes") }
        return bytes
    }

    /// True when `bytes` start with the gzip magic 1f 8b.
    static func isGzip(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b
    }

    /// The file's bytes, inflated first when they start with the gzip magic.
    static func readMaybeGzip(_ path: String) throws -> [UInt8] {
        let raw = try readAll(path)
        return isGzip(raw) ? try gunzip(raw, name: path) : raw
    }

    /// Inflates gzip data (one or more concatenated members) into a buffer that grows by doubling.
    /// The first guess at the size is the last member's ISIZE field (the uncompressed size mod 2^32).
    static func gunzip(_ input: [UInt8], name: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataError("\(name): cannot start zlib")
        }
        defer { inflateEnd(&stream) }

        var capacity = 1 << 16
        if input.count >= 18 {
            let n = input.count
            let isize = Int(input[n - 4]) | Int(input[n - 3]) << 8 | Int(input[n - 2]) << 16 | Int(input[n - 1]) << 24
            // ISIZE comes from the file: trust it only as far as deflate can expand (at most ~1032:1),
            // so that a corrupted trailer cannot ask for gigabytes up front.
            capacity = max(capacity, min(isize + 1, input.count * 1032 + (1 << 16)))
        }
        var out = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        defer { out.deallocate() }
        var produced = 0

        try input.withUnsafeBufferPointer { inBuffer in
            guard let inBase = inBuffer.baseAddress else { throw DataError("\(name): empty gzip file") }
            var fed = 0  // bytes of input handed to zlib so far (avail_in is 32-bit, so feed in pieces)
            while true {
                if stream.avail_in == 0 && fed < inBuffer.count {
                    let piece = min(inBuffer.count - fed, Int(UInt32.max))
                    stream.next_in = UnsafeMutablePointer(mutating: inBase + fed)
                    stream.avail_in = UInt32(piece)
                    fed += piece
                }
                if produced == capacity {
                    let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity * 2)
                    bigger.update(from: out, count: produced)
                    out.deallocate()
                    out = bigger
                    capacity *= 2
                }
                let room = min(capacity - produced, Int(UInt32.max))
                stream.next_out = out + produced
                stream.avail_out = UInt32(room)
                let status = inflate(&stream, Z_NO_FLUSH)
                produced += room - Int(stream.avail_out)

                let remaining = inBuffer.count - fed + Int(stream.avail_in)
                if status == Z_STREAM_END {
                    if remaining == 0 { return }
                    // Another gzip member may follow (as `cat a.gz b.gz` makes); anything else is junk.
                    let at = inBuffer.count - remaining
                    guard remaining >= 2, inBase[at] == 0x1f, inBase[at + 1] == 0x8b else {
                        throw DataError("\(name): \(remaining) trailing bytes after the gzip data")
                    }
                    guard inflateReset(&stream) == Z_OK else { throw DataError("\(name): cannot restart zlib") }
                    continue
                }
                guard status == Z_OK || status == Z_BUF_ERROR else {
                    let detail = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                    throw DataError("\(name): corrupt gzip data (\(detail))")
                }
                if remaining == 0 && stream.avail_out > 0 {
                    throw DataError("\(name): truncated gzip data (ends after \(produced) uncompressed bytes)")
                }
            }
        }
        return Array(UnsafeBufferPointer(start: out, count: produced))
    }
}
