// Per-layer time of one worker's forward and backward passes, for `ptrain bench train --profile`.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Nanoseconds each layer of a model spent in forward and in backward (the branch-gradient sums
/// after a layer's backward included), summed over the calls since the last `reset`. One per
/// workspace (`Workspace.profile`), written only by its worker: plain adds into storage allocated
/// here, so a profiled step allocates nothing either.
public final class LayerProfile: @unchecked Sendable {
    public let layerCount: Int
    /// [0, layerCount): forward; [layerCount, 2 * layerCount): backward. 64-byte aligned.
    let times: UnsafeMutablePointer<UInt64>

    public init(layers: Int) {
        layerCount = layers
        let count = max(8, (2 * layers + 7) / 8 * 8)
        times = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 64).bindMemory(to: UInt64.self, capacity: count)
        times.initialize(repeating: 0, count: count)
    }

    deinit { UnsafeMutableRawPointer(times).deallocate() }

    public func forwardNanoseconds(_ layer: Int) -> UInt64 { times[layer] }
    public func backwardNanoseconds(_ layer: Int) -> UInt64 { times[layerCount + layer] }
    public func reset() { times.update(repeating: 0, count: 2 * layerCount) }

    @inline(__always) func addForward(_ layer: Int, since start: UInt64) { times[layer] &+= Self.now() &- start }
    @inline(__always) func addBackward(_ layer: Int, since start: UInt64) { times[layerCount + layer] &+= Self.now() &- start }

    /// CLOCK_MONOTONIC in nanoseconds (the clock the step's phase times use).
    @inline(__always) public static func now() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
