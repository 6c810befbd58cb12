// 64-byte aligned Float storage: one allocation, raw pointer access, no copy-on-write.

/// A fixed-size, 64-byte aligned, zero-initialised array of `Float`.
///
/// Owned by reference so that workers can share a buffer without copies; all element access
/// goes through `pointer`. The steady-state training step only ever reads and writes existing
/// buffers; it never creates one.
public final class AlignedBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    public static let alignment = 64

    public init(count: Int) {
        precondition(count >= 0, "AlignedBuffer count must be non-negative")
        self.count = count
        let bytes = max(1, count) * MemoryLayout<Float>.stride
        let raw = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: Self.alignment)
        raw.initializeMemory(as: Float.self, repeating: 0, count: max(1, count))
        pointer = raw.assumingMemoryBound(to: Float.self)
    }

    /// Storage whose elements are not written here, so no page is touched until a thread writes
    /// it: on a multi-socket machine the first writer decides the page's NUMA node. Every element
    /// must be written before it is read.
    public init(uninitializedCount count: Int) {
        precondition(count >= 0, "AlignedBuffer count must be non-negative")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(1, count) * MemoryLayout<Float>.stride, alignment: Self.alignment)
        pointer = raw.bindMemory(to: Float.self, capacity: max(1, count))
    }

    public convenience init(_ values: [Float]) {
        self.init(count: values.count)
        values.withUnsafeBufferPointer { src in
            if let base = src.baseAddress { pointer.update(from: base, count: values.count) }
        }
    }

    deinit { UnsafeMutableRawPointer(pointer).deallocate() }

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
