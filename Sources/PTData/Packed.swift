// The packed format: one file holding a train and a test set as stored (uint8 / int16 / float32),
// with labels, a sample index and CRC-32 checksums; read by memory-mapping it. See docs/PACKED.md.
import CPTSupport
import CZlib
import Foundation
import PTFiles
import PTTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reading and writing packed data sets (docs/PACKED.md has the byte layout).
public enum Packed {
    /// First 8 bytes of every packed file.
    public static let magic: [UInt8] = Array("PTRNPACK".utf8)
    public static let version: UInt32 = 1
    /// Bytes reserved for the header; the samples start here (page aligned).
    public static let headerRegion = 4096
    /// Regions after the samples start on multiples of this.
    public static let regionAlignment = 64
    /// Target bytes per checksum block.
    public static let blockBytes = 1 << 20
    /// Files whose sample region is at most this many bytes have every block checked when opened;
    /// larger ones check each block the first time one of its samples is read.
    public static let verifyAtOpenLimit = 1 << 30

    /// The header fields.
    public struct Header: Equatable, Sendable {
        public var elementType: ElementType
        public var shape: Shape
        public var classes: Int
        public var classNames: [String]
        public var blockSamples: Int
        public var divisor: Float
        /// Flag bit 1: a clip table follows the checksum table (one `ClipWindow` per sample).
        public var hasClips: Bool
        public var trainCount: Int
        public var testCount: Int
        public var samplesOffset: Int
        public var labelsOffset: Int
        public var indexOffset: Int
        public var checksumsOffset: Int
        public var fileSize: Int
        public var labelsCRC: UInt32
        public var indexCRC: UInt32
        public var checksumsCRC: UInt32
        /// CRC-32 of the clip table (0 without one).
        public var clipsCRC: UInt32
        /// Where the clip table starts (nil without one).
        public var clipsOffset: Int? { hasClips ? Packed.align(checksumsOffset + 4 * blocks) : nil }

        public var total: Int { trainCount + testCount }
        public var sampleBytes: Int { shape.count * elementType.size }
        public var blocks: Int { (total + blockSamples - 1) / blockSamples }
    }

    // MARK: - Layout

    static func align(_ n: Int) -> Int { (n + regionAlignment - 1) / regionAlignment * regionAlignment }

    /// Bytes of one clip table entry: first, count (uint32) and centre (float32).
    static let clipEntryBytes = 12

    /// Region offsets for the given sizes (`clips`: with a clip table after the checksums).
    static func layout(sampleBytes: Int, total: Int, blockSamples: Int, clips: Bool = false)
        -> (samples: Int, labels: Int, index: Int, checksums: Int, end: Int)
    {
        let samples = headerRegion
        let labels = align(samples + sampleBytes * total)
        let index = align(labels + 4 * total)
        let checksums = align(index + 8 * total)
        let blocks = (total + blockSamples - 1) / blockSamples
        let end = checksums + 4 * blocks
        return (samples, labels, index, checksums, clips ? align(end) + clipEntryBytes * total : end)
    }

    static func crc(_ p: UnsafeRawPointer, _ n: Int) -> UInt32 {
        var c: UInt = crc32(0, nil, 0)
        var done = 0
        while done < n {
            let piece = min(n - done, 1 << 30)
            c = crc32(c, p.assumingMemoryBound(to: UInt8.self) + done, UInt32(piece))
            done += piece
        }
        return UInt32(truncatingIfNeeded: c)
    }

    // MARK: - Writing

    /// Writes `train` and `test` (same shape, element type and classes; their stored values, not
    /// converted) to `path` atomically (`AtomicFile`: a temporary file in the same folder, fsynced, then renamed).
    /// `divisor` is recorded as the natural scale (e.g. 255 for bytes). `progress` is called now and
    /// then with the samples written so far.
    public static func write(train: Dataset, test: Dataset, divisor: Float, to path: String,
                             progress: ((Int, Int) -> Void)? = nil) throws {
        guard train.shape == test.shape else {
            throw DataError("\(path): train samples are \(train.shape) but test samples are \(test.shape)")
        }
        guard train.store.elementType == test.store.elementType else {
            throw DataError("\(path): train is stored as \(train.store.elementType) but test as \(test.store.elementType)")
        }
        let classes = max(train.classes, test.classes)
        let names = train.classNames.count == classes ? train.classNames : (0..<classes).map(String.init)
        let type = train.store.elementType
        let sampleBytes = train.shape.count * type.size
        let total = train.count + test.count
        let blockSamples = max(1, blockBytes / max(1, sampleBytes))
        // Clip windows (padded or cropped recordings): a set without them is whole samples, centre 0.
        let hasClips = train.clips != nil || test.clips != nil
        let l = layout(sampleBytes: sampleBytes, total: total, blockSamples: blockSamples, clips: hasClips)

        var nameBytes: [UInt8] = []
        for name in names {
            let utf8 = Array(name.utf8)
            guard utf8.count <= 65535 else { throw DataError("\(path): class name longer than 65535 bytes") }
            nameBytes += le16(utf8.count) + utf8
        }
        let headerSize = 120 + nameBytes.count + 4
        guard headerSize <= headerRegion else {
            throw DataError("\(path): \(classes) class names need \(headerSize) header bytes (at most \(headerRegion))")
        }

        let file: AtomicFile
        do { file = try AtomicFile(path: path) } catch let error as FileError { throw DataError(error.message) }
        func put(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws { try file.write(bytes, at: offset) }

        // Samples, block by block, with their checksums.
        var checksums = [UInt32]()
        var block = [UInt8](repeating: 0, count: blockSamples * sampleBytes)
        var labels = [UInt32]()
        labels.reserveCapacity(total)
        var written = 0
        let sets = [train, test]
        var s = 0, i = 0  // set and sample within it
        while written < total {
            let n = min(blockSamples, total - written)
            block.withUnsafeMutableBytes { out in
                for k in 0..<n {
                    while i >= sets[s].count { s += 1; i = 0 }
                    let set = sets[s]
                    set.store.willRead(i)
                    set.store.withBase { base in
                        (out.baseAddress! + k * sampleBytes).copyMemory(from: base + i * sampleBytes, byteCount: sampleBytes)
                    }
                    labels.append(UInt32(set.labels[i]))
                    i += 1
                }
            }
            try block.withUnsafeBytes { raw in
                let piece = UnsafeRawBufferPointer(rebasing: raw[0..<(n * sampleBytes)])
                checksums.append(crc(piece.baseAddress!, piece.count))
                try put(piece, at: l.samples + written * sampleBytes)
            }
            written += n
            progress?(written, total)
        }
        let index = (0..<total).map { UInt64($0 * sampleBytes).littleEndian }
        let labelsLE = labels.map(\.littleEndian)
        let checksumsLE = checksums.map(\.littleEndian)
        let labelsCRC = labelsLE.withUnsafeBytes { crc($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, $0.count) }
        let indexCRC = index.withUnsafeBytes { crc($0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, $0.count) }
        let checksumsCRC = checksumsLE.withUnsafeBytes { crc($0.baseAddress!, $0.count) }
        try labelsLE.withUnsafeBytes { try put($0, at: l.labels) }
        try index.withUnsafeBytes { try put($0, at: l.index) }
        try checksumsLE.withUnsafeBytes { try put($0, at: l.checksums) }
        var clipsCRC: UInt32 = 0
        if hasClips {
            var table: [UInt8] = []
            table.reserveCapacity(clipEntryBytes * total)
            for set in sets {
                let whole = ClipWindow(first: 0, count: Int32(clamping: set.shape.count), centre: 0)
                for i in 0..<set.count {
                    let clip = set.clips?[i] ?? whole
                    table += le32(Int(clip.first)) + le32(Int(clip.count)) + le32(Int(clip.centre.bitPattern))
                }
            }
            clipsCRC = table.withUnsafeBytes { crc($0.baseAddress!, $0.count) }
            try table.withUnsafeBytes { try put($0, at: align(l.checksums + 4 * checksums.count)) }
        }

        var h: [UInt8] = magic + le32(Int(version)) + le32(headerSize)
        h += [type.rawValue, 0, 0, 0]
        h += le32(train.shape.channels) + le32(train.shape.height) + le32(train.shape.width)
        h += le32(classes) + le32(blockSamples) + le32(Int(divisor.bitPattern)) + le32(hasClips ? 2 : 0)
        h += le64(train.count) + le64(test.count)
        h += le64(l.samples) + le64(l.labels) + le64(l.index) + le64(l.checksums) + le64(l.end)
        h += le32(Int(labelsCRC)) + le32(Int(indexCRC)) + le32(Int(checksumsCRC)) + le32(Int(clipsCRC))
        precondition(h.count == 120)
        h += nameBytes
        h += le32(Int(h.withUnsafeBytes { crc($0.baseAddress!, $0.count) }))
        h += [UInt8](repeating: 0, count: headerRegion - h.count)
        try h.withUnsafeBytes { try put($0, at: 0) }
        try file.commit(size: l.end)
    }

    static func le16(_ v: Int) -> [UInt8] { [UInt8(v & 255), UInt8(v >> 8 & 255)] }
    static func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
    static func le64(_ v: Int) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
}

/// An opened packed file: header, index and labels checked; the samples memory-mapped.
public final class PackedFile: @unchecked Sendable {
    public let path: String
    public let header: Packed.Header
    public let file: MappedFile
    public let train: Dataset
    public let test: Dataset
    /// Whether sample blocks are checked when first read (large files) rather than at open.
    public let lazy: Bool

    /// Opens and checks `path`: magic, version, header checksum, sizes against the file length,
    /// labels, index and checksum table (each with its CRC-32), label range; and every sample block's
    /// CRC-32 now when the samples take at most `verifyAtOpenLimit` bytes (else lazily, block by block,
    /// when first read: a mismatch then ends the process with a one-line message). Errors are one
    /// line naming the file. `conversion` picks the sets' conversion from the header; nil: the
    /// file's natural one (stored / divisor).
    public init(path: String, verifyAtOpenLimit: Int = Packed.verifyAtOpenLimit,
                conversion: ((Packed.Header) -> SampleConversion)? = nil) throws {
        self.path = path
        let mapped = try MappedFile(path: path)
        file = mapped
        let h = try PackedFile.readHeader(mapped, path: path)
        header = h
        let base = mapped.base
        let total = h.total
        func check(_ offset: Int, _ count: Int, _ expected: UInt32, _ what: String) throws {
            let got = Packed.crc(base + offset, count)
            guard got == expected else {
                throw DataError("\(path): \(what) checksum mismatch (stored \(PackedFile.hex(expected)), computed \(PackedFile.hex(got))): file corrupted")
            }
        }
        try check(h.labelsOffset, 4 * total, h.labelsCRC, "labels")
        try check(h.indexOffset, 8 * total, h.indexCRC, "index")
        try check(h.checksumsOffset, 4 * h.blocks, h.checksumsCRC, "checksum table")
        var clips: [ClipWindow]? = nil
        if let offset = h.clipsOffset {
            try check(offset, Packed.clipEntryBytes * total, h.clipsCRC, "clip table")
            var table = [ClipWindow]()
            table.reserveCapacity(total)
            for i in 0..<total {
                func u32(_ k: Int) -> UInt32 {
                    UInt32(littleEndian: base.loadUnaligned(fromByteOffset: offset + Packed.clipEntryBytes * i + 4 * k, as: UInt32.self))
                }
                let first = u32(0), count = u32(1)
                guard first <= UInt32(Int32.max), count <= UInt32(Int32.max) else {
                    throw DataError("\(path): clip window \(first)+\(count) of sample \(i) is outside the sample's \(h.shape.count) values")
                }
                let clip = ClipWindow(first: Int32(first), count: Int32(count), centre: Float(bitPattern: u32(2)))
                try clip.validate(elements: h.shape.count, context: "\(path): sample \(i)")
                table.append(clip)
            }
            clips = table
        }
        var labels = [Int32](repeating: 0, count: total)
        for i in 0..<total {
            let v = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: h.labelsOffset + 4 * i, as: UInt32.self))
            guard v < UInt32(h.classes) else {
                throw DataError("\(path): label \(v) of sample \(i) is outside 0..<\(h.classes)")
            }
            labels[i] = Int32(v)
            let offset = UInt64(littleEndian: base.loadUnaligned(fromByteOffset: h.indexOffset + 8 * i, as: UInt64.self))
            guard offset == UInt64(i * h.sampleBytes) else {
                throw DataError("\(path): index entry \(i) is \(offset), expected \(i * h.sampleBytes) (fixed-size samples)")
            }
        }
        lazy = h.sampleBytes * total > verifyAtOpenLimit
        if !lazy {
            for b in 0..<h.blocks { try PackedFile.verifyBlock(b, header: h, base: base, path: path) }
        }
        // Training reads samples in a shuffled order: tell the kernel not to read ahead around each
        // fault (the default window would fill the page cache with neighbours nobody asked for,
        // which is what evicts the pages in use when the file is larger than the memory allowed).
        mapped.adviseRandomAccess()
        let checker: (@Sendable (Int) -> Void)?
        let conversion0 = SampleConversion.natural(h.elementType).with(divisor: h.divisor)
        let chosen = conversion?(h) ?? conversion0
        let shape = h.shape
        // Lazy checks: the closure captures what it needs (not self), so the sets do not keep a cycle.
        if lazy {
            let flags = BlockFlags(count: h.blocks), header = h, p = path, fileRef = mapped
            checker = { [flags, header, p, fileRef] global in
                let b = global / header.blockSamples
                if pt_atomic_load_acquire_u32(flags.pointer + b) != 0 { return }
                do {
                    try PackedFile.verifyBlock(b, header: header, base: fileRef.base, path: p)
                } catch {
                    let line = "ptrain: \(error)\n"
                    _ = line.withCString { write(2, $0, strlen($0)) }
                    exit(1)
                }
                // Two workers may check the same block at once: harmless, both store 1.
                pt_atomic_store_release_u32(flags.pointer + b, 1)
            }
        } else {
            checker = nil
        }
        func set(_ first: Int, _ count: Int, _ name: String) throws -> Dataset {
            let store = SampleStore(mapped: mapped, byteOffset: h.samplesOffset + first * h.sampleBytes, elementType: h.elementType,
                                    count: count, sampleElements: shape.count,
                                    check: checker.map { c in { @Sendable i in c(first + i) } })
            return try Dataset(name: name, shape: shape, classes: h.classes, store: store, conversion: chosen,
                               labels: Array(labels[first..<(first + count)]), classNames: h.classNames,
                               clips: clips.map { Array($0[first..<(first + count)]) })
        }
        let stem = ((path as NSString).lastPathComponent as NSString).deletingPathExtension
        do {
            train = try set(0, h.trainCount, stem + "-train")
            test = try set(h.trainCount, h.testCount, stem + "-test")
        } catch let error as DataError {
            throw DataError("\(path): \(error.message)")
        }
    }

    /// Checks every sample block's CRC-32 now (what opening does for files up to the limit).
    public func verifyAllBlocks() throws {
        for b in 0..<header.blocks { try PackedFile.verifyBlock(b, header: header, base: file.base, path: path) }
    }

    static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: 8 - s.count) + s
    }

    static func verifyBlock(_ b: Int, header h: Packed.Header, base: UnsafeRawPointer, path: String) throws {
        let first = b * h.blockSamples
        let n = min(h.blockSamples, h.total - first)
        let stored = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: h.checksumsOffset + 4 * b, as: UInt32.self))
        let got = Packed.crc(base + h.samplesOffset + first * h.sampleBytes, n * h.sampleBytes)
        guard got == stored else {
            throw DataError("\(path): samples \(first)..<\(first + n) (block \(b)) checksum mismatch "
                + "(stored \(hex(stored)), computed \(hex(got))): file corrupted")
        }
    }

    /// Parses and checks the header against the file size.
    static func readHeader(_ file: MappedFile, path: String) throws -> Packed.Header {
        let b = file.base
        let size = file.size
        guard size >= 124 else { throw DataError("\(path): not a packed data file (only \(size) bytes)") }
        guard Array(UnsafeRawBufferPointer(start: b, count: 8)) == Packed.magic else {
            throw DataError("\(path): not a packed data file (no PTRNPACK magic; make one with `ptrain pack`)")
        }
        func u32(_ o: Int) -> Int { Int(UInt32(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self))) }
        func u64(_ o: Int) -> Int { Int(truncatingIfNeeded: UInt64(littleEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self))) }
        let version = u32(8)
        guard version == Int(Packed.version) else {
            throw DataError("\(path): packed format version \(version) (this ptrain reads version \(Packed.version))")
        }
        let headerSize = u32(12)
        guard headerSize >= 124, headerSize <= Packed.headerRegion, headerSize <= size else {
            throw DataError("\(path): header size \(headerSize) is impossible (truncated or corrupted)")
        }
        let stored = UInt32(u32(headerSize - 4))
        let computed = Packed.crc(b, headerSize - 4)
        guard stored == computed else {
            throw DataError("\(path): header checksum mismatch (stored \(hex(stored)), computed \(hex(computed))): file corrupted")
        }
        guard let type = ElementType(rawValue: b.load(fromByteOffset: 16, as: UInt8.self)) else {
            throw DataError("\(path): unknown element type \(b.load(fromByteOffset: 16, as: UInt8.self))")
        }
        let dims = [u32(20), u32(24), u32(28)]
        guard dims.allSatisfy({ $0 > 0 && $0 <= 1 << 24 }), dims[0] * dims[1] <= 1 << 28, dims[0] * dims[1] * dims[2] <= 1 << 28 else {
            throw DataError("\(path): impossible sample shape \(dims[0])x\(dims[1])x\(dims[2])")
        }
        let shape = Shape(channels: dims[0], height: dims[1], width: dims[2])
        let classes = u32(32), blockSamples = u32(36)
        let divisor = Float(bitPattern: UInt32(u32(40)))
        let flags = u32(44)
        // Bit 0 (values stored already standardised) was written only by development builds of
        // `ptrain pack`, for UCR with z_normalize; values are now stored as read and standardised
        // when gathered. Refused rather than read with the wrong conversion.
        guard flags & 1 == 0 else {
            throw DataError("\(path): flag bit 0 (values stored already standardised) is no longer read; pack the source again")
        }
        guard flags & ~2 == 0 else { throw DataError("\(path): unknown flags 0x\(String(flags, radix: 16)) (written by a newer ptrain?)") }
        let trainCount = u64(48), testCount = u64(56)
        guard classes > 0, blockSamples > 0, trainCount > 0, testCount > 0, divisor.isFinite, divisor > 0,
              trainCount < 1 << 40, testCount < 1 << 40 else {
            throw DataError("\(path): impossible header values (classes \(classes), block \(blockSamples), train \(trainCount), "
                + "test \(testCount), divisor \(divisor))")
        }
        var names: [String] = []
        var at = 120
        for _ in 0..<classes {
            guard at + 2 <= headerSize - 4 else { throw DataError("\(path): class names run past the header") }
            let n = Int(b.load(fromByteOffset: at, as: UInt8.self)) | Int(b.load(fromByteOffset: at + 1, as: UInt8.self)) << 8
            guard at + 2 + n <= headerSize - 4 else { throw DataError("\(path): class names run past the header") }
            names.append(String(decoding: UnsafeRawBufferPointer(start: b + at + 2, count: n), as: UTF8.self))
            at += 2 + n
        }
        let sampleBytes = shape.count * type.size
        let (regionBytes, overflow) = sampleBytes.multipliedReportingOverflow(by: trainCount + testCount)
        guard !overflow, regionBytes < 1 << 56 else {
            throw DataError("\(path): impossible header values (\(trainCount + testCount) samples of \(sampleBytes) bytes)")
        }
        let l = Packed.layout(sampleBytes: sampleBytes, total: trainCount + testCount, blockSamples: blockSamples, clips: flags & 2 != 0)
        let h = Packed.Header(elementType: type, shape: shape, classes: classes, classNames: names, blockSamples: blockSamples,
                              divisor: divisor, hasClips: flags & 2 != 0,
                              trainCount: trainCount, testCount: testCount,
                              samplesOffset: u64(64), labelsOffset: u64(72), indexOffset: u64(80), checksumsOffset: u64(88),
                              fileSize: u64(96), labelsCRC: UInt32(u32(104)), indexCRC: UInt32(u32(108)),
                              checksumsCRC: UInt32(u32(112)), clipsCRC: UInt32(u32(116)))
        guard h.samplesOffset == l.samples, h.labelsOffset == l.labels, h.indexOffset == l.index,
              h.checksumsOffset == l.checksums, h.fileSize == l.end else {
            throw DataError("\(path): header region offsets do not match its counts and shape (corrupted)")
        }
        if size < h.fileSize {
            let samplesPresent = max(0, size - h.samplesOffset) / sampleBytes
            let where_ = samplesPresent < h.total
                ? "cut inside sample \(samplesPresent) of \(h.total)"
                : h.hasClips ? "the labels, index, checksums or clip table are cut" : "the labels, index or checksums are cut"
            throw DataError("\(path): truncated: header says \(h.fileSize) bytes, file has \(size) (\(where_))")
        }
        if size > h.fileSize {
            throw DataError("\(path): \(size - h.fileSize) trailing bytes after the \(h.fileSize) bytes the header describes")
        }
        return h
    }
}

/// One flag per checksum block (atomic loads and stores): 1 once the block's checksum matched.
final class BlockFlags: @unchecked Sendable {
    let pointer: UnsafeMutablePointer<UInt32>
    init(count: Int) {
        pointer = .allocate(capacity: max(1, count))
        pointer.initialize(repeating: 0, count: max(1, count))
    }
    deinit { pointer.deallocate() }
}

extension SampleConversion {
    /// This conversion with another divisor.
    public func with(divisor: Float) -> SampleConversion {
        var c = self
        c.divisor = divisor
        return c
    }
}
