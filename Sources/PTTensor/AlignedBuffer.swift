// 64-byte aligned Float storage: one allocation, raw pointer access, no copy-on-write.
#if os(Linux)
import Glibc
#endif

/// A fixed-size, 64-byte aligned, zero-initialised array of `Float`.
///
/// Owned by reference so that workers can share a buffer without copies; all element access
/// goes through `pointer`. The steady-state training step only ever reads and writes existing
/// buffers; it never creates one.
public final class AlignedBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>
    /// The buffer this one is a view of (`init(in:offset:count:)`), kept alive by the view; nil when it owns its storage.
    public let arena: AlignedBuffer?

    public static let alignment = 64

    /// Storage of at least this many bytes is allocated in whole 2 MiB pages, 2 MiB aligned, and the kernel is asked
    /// to back it with transparent huge pages (`madvise(MADV_HUGEPAGE)`; Linux, where THP is `madvise` or
    /// `always`). With 4 KiB pages, a training step's passes over memory (batch norm, the residual add, a
    /// convolution's first read of its input) miss the TLB at every page: on Zen 4 2 MiB pages made
    /// ResNet-20's step 3% (bf16) and 6% (fp32) faster and cifar-small's (bf16) 2% (`docs/BENCHMARKS.md`). At
    /// most one page is allocated beyond the request.
    public static let hugePageThreshold = 2 << 20

    /// `bytes` (> 0) of storage, 64-byte aligned; whole huge pages from `hugePageThreshold` on.
    private static func allocate(bytes: Int) -> UnsafeMutableRawPointer {
        guard bytes >= hugePageThreshold else { return UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: alignment) }
        let page = 2 << 20, rounded = (bytes + page - 1) / page * page
        let raw = UnsafeMutableRawPointer.allocate(byteCount: rounded, alignment: page)
        #if os(Linux)
        _ = madvise(raw, rounded, MADV_HUGEPAGE)   // a hint: where it is refused, 4 KiB pages as before
        #endif
        return raw
    }

    public init(count: Int) {
        precondition(count >= 0, "AlignedBuffer count must be non-negative")
        self.count = count
        let raw = Self.allocate(bytes: max(1, count) * MemoryLayout<Float>.stride)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(1, count))
        pointer = raw.assumingMemoryBound(to: Float.self)
        arena = nil
    }

    /// A view of `count` floats at `offset` floats into `arena`: many buffers in one allocation (one run of huge
    /// pages). It holds what the arena held there (zeros for a new arena).
    public init(in arena: AlignedBuffer, offset: Int, count: Int) {
        precondition(offset >= 0 && count >= 0 && offset + count <= arena.count, "AlignedBuffer view out of its arena")
        self.count = count
        pointer = arena.pointer + offset
        self.arena = arena
    }

    /// Storage whose elements are not written here, so no page is touched until a thread writes
    /// it: on a multi-socket machine the first writer decides the page's NUMA node. Every element
    /// must be written before it is read.
    public init(uninitializedCount count: Int) {
        precondition(count >= 0, "AlignedBuffer count must be non-negative")
        self.count = count
        let raw = Self.allocate(bytes: max(1, count) * MemoryLayout<Float>.stride)
        pointer = raw.bindMemory(to: Float.self, capacity: max(1, count))
        arena = nil
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { if arena == nil { UnsafeMutableRawPointer(pointer).deallocate() } }

    public var buffer: UnsafeMutableBufferPointer<Float> { UnsafeMutableBufferPointer(start: pointer, count: count) }

    public func zero() { pointer.update(repeating: 0, count: count) }

    public func copy(from other: AlignedBuffer) {
        precondition(other.count == count, "AlignedBuffer.copy: sizes differ")
        pointer.update(from: other.pointer, count: count)
    }

    public var array: [Float] { Array(buffer) }

    public subscript(i: Int) -> Float {
        get { pointer[i] }
        set { pointer[i] = newValue }
    }
}
