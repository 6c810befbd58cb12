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

    /// Inflates gzip data (one or more concatenated members, as `cat a.gz b.gz` makes).
    ///
    /// The output never exceeds what the trailers promise. The last member's trailer (the file's
    /// last 4 bytes, ISIZE) gives its size: a single-member file is inflated into a buffer of
    /// exactly that size, and data that would run past it is an error, not gigabytes of memory. An
    /// earlier member larger than that (only possible with several members) is first measured
    /// without keeping its bytes (zlib checks its own trailer), then inflated into exactly that
    /// room. ISIZE holds the size mod 2^32, so members of 4 GiB or more are refused.
    static func gunzip(_ input: [UInt8], name: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, 16 + MAX_WBITS, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw DataError("\(name): cannot start zlib")
        }
        defer { inflateEnd(&stream) }
        let n = input.count
        // Too short for a header and a trailer: zlib reports it as truncated or corrupt below.
        let promised = n >= 18
            ? Int(input[n - 4]) | Int(input[n - 3]) << 8 | Int(input[n - 2]) << 16 | Int(input[n - 1]) << 24 : 0
        let output = GrowingBytes()
        try input.withUnsafeBufferPointer { inBuffer in
            guard inBuffer.baseAddress != nil else { throw DataError("\(name): empty gzip file") }
            var offset = 0
            while true {
                var member = try inflateMember(&stream, inBuffer, at: offset, into: output, limit: promised, name: name)
                if member == nil {
                    // Larger than the last member's promise: measure it, then inflate it into that room.
                    guard let size = try inflateMember(&stream, inBuffer, at: offset, into: nil, limit: Int(UInt32.max),
                                                       name: name)?.produced else {
                        throw DataError("\(name): a gzip member inflates to 4 GiB or more; uncompress the file first")
                    }
                    member = try inflateMember(&stream, inBuffer, at: offset, into: output, limit: size, name: name)
                }
                guard let member else { throw DataError("\(name): gzip data changed while it was read") }
                offset += member.consumed
                let remaining = n - offset
                if remaining == 0 { return }
                // Another gzip member may follow; anything else is junk.
                guard remaining >= 2, inBuffer[offset] == 0x1f, inBuffer[offset + 1] == 0x8b else {
                    throw DataError("\(name): \(remaining) trailing bytes after the gzip data")
                }
            }
        }
        return output.array()
    }

    /// Inflates the gzip member that starts at `input[offset]`, appending at most `limit` bytes to
    /// `output` (or counting and discarding them when `output` is nil). Returns the input bytes the
    /// member took and the bytes it produced, or nil (and `output` as it was) when it would produce
    /// more than `limit`.
    private static func inflateMember(_ stream: inout z_stream, _ input: UnsafeBufferPointer<UInt8>, at offset: Int,
                                      into output: GrowingBytes?, limit: Int,
                                      name: String) throws -> (consumed: Int, produced: Int)? {
        guard inflateReset(&stream) == Z_OK else { throw DataError("\(name): cannot restart zlib") }
        let inBase = input.baseAddress!
        var fed = offset  // input handed to zlib so far (avail_in is 32-bit, so feed in pieces)
        stream.avail_in = 0
        var produced = 0
        let start = output?.count ?? 0
        let scratchSize = 1 << 16
        let scratch = UnsafeMutablePointer<UInt8>.allocate(capacity: scratchSize)
        defer { scratch.deallocate() }
        // The first guess at the room: the limit, but no more than deflate can expand the rest of the
        // input (at most ~1032:1), so that a corrupt trailer cannot reserve gigabytes up front.
        output?.reserve(extra: min(limit, (input.count - offset) * 1032 + scratchSize))
        while true {
            if stream.avail_in == 0 && fed < input.count {
                let piece = min(input.count - fed, Int(UInt32.max))
                stream.next_in = UnsafeMutablePointer(mutating: inBase + fed)
                stream.avail_in = UInt32(piece)
                fed += piece
            }
            let probing = produced == limit  // no room left: any further byte means "too large"
            var room: Int
            if probing {
                stream.next_out = scratch
                room = 1
            } else if let output {
                if output.free == 0 { output.reserve(extra: min(limit - produced, max(output.count, scratchSize))) }
                stream.next_out = output.end
                room = min(output.free, limit - produced, Int(UInt32.max))
            } else {
                stream.next_out = scratch
                room = min(scratchSize, limit - produced)
            }
            stream.avail_out = UInt32(room)
            let status = inflate(&stream, Z_NO_FLUSH)
            let wrote = room - Int(stream.avail_out)
            if probing && wrote > 0 {
                output?.count = start
                return nil
            }
            produced += wrote
            output?.count += wrote
            let remaining = input.count - fed + Int(stream.avail_in)
            if status == Z_STREAM_END { return (input.count - remaining - offset, produced) }
            guard status == Z_OK || status == Z_BUF_ERROR else {
                let detail = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
                throw DataError("\(name): corrupt gzip data (\(detail))")
            }
            if remaining == 0 && stream.avail_out > 0 {
                let total = (output?.count ?? produced)
                throw DataError("\(name): truncated gzip data (ends after \(total) uncompressed bytes)")
            }
        }
    }
}

/// An output buffer that grows only when asked to (`reserve`), so its size follows the limits above.
private final class GrowingBytes {
    private(set) var base = UnsafeMutablePointer<UInt8>.allocate(capacity: 0)
    private(set) var capacity = 0
    var count = 0

    deinit { base.deallocate() }

    var free: Int { capacity - count }
    var end: UnsafeMutablePointer<UInt8> { base + count }

    /// Makes room for `extra` more bytes after the current ones.
    func reserve(extra: Int) {
        guard count + extra > capacity else { return }
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: count + extra)
        bigger.update(from: base, count: count)
        base.deallocate()
        base = bigger
        capacity = count + extra
    }

    func array() -> [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }
}
