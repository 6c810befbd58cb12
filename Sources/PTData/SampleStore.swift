// Sample values as stored (uint8 pixels, int16 audio, float32), in heap memory or a read-only
// memory-mapped packed file. Conversion to Float happens when a shard is gathered (SampleConverter).
import PTTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The element type samples are stored in.
public enum ElementType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    /// Unsigned bytes (image pixels).
    case uint8 = 1
    /// Little-endian signed 16-bit integers (PCM audio).
    case int16 = 2
    /// Little-endian IEEE single precision.
    case float32 = 3

    /// Bytes per element.
    public var size: Int {
        switch self {
        case .uint8: return 1
        case .int16: return 2
        case .float32: return 4
        }
    }

    public var description: String {
        switch self {
        case .uint8: return "uint8"
        case .int16: return "int16"
        case .float32: return "float32"
        }
    }
}

/// A read-only memory mapping of a whole file (PROT_READ, MAP_SHARED): pages come from the page
/// cache on first touch and are shared by every process mapping the same file.
public final class MappedFile: @unchecked Sendable {
    public let path: String
    public let base: UnsafeRawPointer
    public let size: Int

    /// Maps `path`. Throws a one-line `DataError` naming the file.
    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            let cause = errno == ENOENT ? "file not found" : "cannot open (\(String(cString: strerror(errno))))"
            throw DataError("\(path): \(cause)")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw DataError("\(path): cannot read the file size") }
        guard (info.st_mode & S_IFMT) == S_IFREG else { throw DataError("\(path): not a regular file") }
        size = Int(info.st_size)
        guard size > 0 else { throw DataError("\(path): empty file") }
        let p = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0)
        guard let p, p != MAP_FAILED else {
            throw DataError("\(path): cannot memory-map \(size) bytes (\(String(cString: strerror(errno))))")
        }
        base = UnsafeRawPointer(p)
    }

    /// madvise(MADV_RANDOM): no read-ahead around page faults (the samples are read in shuffled order).
    public func adviseRandomAccess() { _ = madvise(UnsafeMutableRawPointer(mutating: base), size, MADV_RANDOM) }

    deinit { munmap(UnsafeMutableRawPointer(mutating: base), size) }
}

/// `count` samples of `sampleElements` elements each, stored contiguously (sample-major) as
/// `elementType`, starting `byteOffset` bytes into their memory. The memory is one of: an aligned
/// Float buffer (values as used), a byte array read from a file (e.g. an IDX body), or a mapping.
public final class SampleStore: @unchecked Sendable {
    enum Memory {
        case floats(AlignedBuffer)
        case bytes([UInt8])
        case mapped(MappedFile)
    }

    let memory: Memory
    public let elementType: ElementType
    public let byteOffset: Int
    public let count: Int
    public let sampleElements: Int
    /// Called with the sample index before a mapped sample is read (lazy block checksums); nil: none.
    let check: (@Sendable (Int) -> Void)?

    /// Bytes per sample.
    public var sampleBytes: Int { sampleElements * elementType.size }

    private init(memory: Memory, elementType: ElementType, byteOffset: Int, count: Int, sampleElements: Int,
         check: (@Sendable (Int) -> Void)?) {
        self.memory = memory
        self.elementType = elementType
        self.byteOffset = byteOffset
        self.count = count
        self.sampleElements = sampleElements
        self.check = check
    }

    /// Float samples in an aligned buffer (count * sampleElements values).
    public convenience init(floats: AlignedBuffer, sampleElements: Int) {
        precondition(sampleElements > 0 && floats.count % sampleElements == 0, "SampleStore: buffer is not whole samples")
        self.init(memory: .floats(floats), elementType: .float32, byteOffset: 0, count: floats.count / sampleElements,
                  sampleElements: sampleElements, check: nil)
    }

    /// Samples held in `bytes` from `byteOffset` on (exactly count * sample bytes must fit).
    public convenience init(bytes: [UInt8], byteOffset: Int = 0, elementType: ElementType, count: Int, sampleElements: Int) {
        precondition(byteOffset >= 0 && byteOffset + count * sampleElements * elementType.size <= bytes.count,
                     "SampleStore: samples outside the byte array")
        self.init(memory: .bytes(bytes), elementType: elementType, byteOffset: byteOffset, count: count,
                  sampleElements: sampleElements, check: nil)
    }

    /// Samples inside a mapped file, from `byteOffset` on. `check(i)` runs before sample i is read.
    public convenience init(mapped file: MappedFile, byteOffset: Int, elementType: ElementType, count: Int, sampleElements: Int,
                            check: (@Sendable (Int) -> Void)? = nil) {
        precondition(byteOffset >= 0 && byteOffset + count * sampleElements * elementType.size <= file.size,
                     "SampleStore: samples outside the mapped file")
        self.init(memory: .mapped(file), elementType: elementType, byteOffset: byteOffset, count: count,
                  sampleElements: sampleElements, check: check)
    }

    /// True when the samples live in a memory-mapped file.
    public var isMapped: Bool { if case .mapped = memory { return true } else { return false } }

    /// The Float buffer when the store holds floats in heap memory (writable); nil otherwise.
    public var floatBuffer: AlignedBuffer? { if case .floats(let b) = memory { return b } else { return nil } }

    /// Calls `body` with the address of sample 0. Allocates nothing.
    @inline(__always)
    public func withBase<R>(_ body: (UnsafeRawPointer) -> R) -> R {
        switch memory {
        case .floats(let buffer): return body(UnsafeRawPointer(buffer.pointer))
        case .bytes(let array): return array.withUnsafeBytes { body($0.baseAddress! + byteOffset) }
        case .mapped(let file): return body(file.base + byteOffset)
        }
    }

    /// Asks the kernel to start reading the pages of samples `indices[0..<count]` in the background
    /// (madvise MADV_WILLNEED) when they live in a mapped file; nothing for heap stores. Call it for
    /// the next step's samples while the current step runs. Allocates nothing; does not wait.
    public func prefetch(indices: UnsafePointer<Int32>, count: Int) {
        guard case .mapped(let file) = memory else { return }
        let page = 4096
        let bytes = sampleBytes
        for k in 0..<count {
            let start = byteOffset + Int(indices[k]) * bytes
            let first = start / page * page
            let end = min(file.size, start + bytes)
            _ = madvise(UnsafeMutableRawPointer(mutating: file.base + first), end - first, MADV_WILLNEED)
        }
    }

    /// Runs the lazy checksum hook (if any) for sample `index`.
    @inline(__always) func willRead(_ index: Int) { if let check { check(index) } }

    /// The stored bytes of sample `index` (a copy; for tests and `pack`).
    public func storedBytes(_ index: Int) -> [UInt8] {
        precondition(index >= 0 && index < count, "SampleStore: sample \(index) outside 0..<\(count)")
        willRead(index)
        return withBase { base in
            Array(UnsafeRawBufferPointer(start: base + index * sampleBytes, count: sampleBytes))
        }
    }
}
