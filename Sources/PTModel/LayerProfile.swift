// Per-layer time of one worker's forward and backward passes, for `ptrain bench train --profile`.
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Nanoseconds each layer of a model spent in forward and in backward (the branch-gradient sums
/// after a layer's backward included), summed over the calls since the last `reset`: wall time
/// (CLOCK_MONOTONIC, the clock of the step's phase times) and the worker thread's CPU time
/// (CLOCK_THREAD_CPUTIME_ID: time the scheduler gave to other processes does not count, as in
/// `bench kernels`). One per workspace (`Workspace.profile`), written only by its worker: plain
/// adds into storage allocated here, so a profiled step allocates nothing either.
public final class LayerProfile: @unchecked Sendable {
    /// The clocks when a layer call began.
    public struct Stamp {
        public var wall: UInt64 = 0
        public var cpu: UInt64 = 0
        public init() {}
    }

    public let layerCount: Int
    /// Four rows of `layerCount`: forward wall, backward wall, forward CPU, backward CPU. 64-byte aligned.
    let times: UnsafeMutablePointer<UInt64>

    public init(layers: Int) {
        layerCount = layers
        let count = max(8, (4 * layers + 7) / 8 * 8)
        times = UnsafeMutableRawPointer.allocate(byteCount: count * 8, alignment: 64).bindMemory(to: UInt64.self, capacity: count)
        times.initialize(repeating: 0, count: count)
    }

    deinit { UnsafeMutableRawPointer(times).deallocate() }

    public func forwardNanoseconds(_ layer: Int) -> UInt64 { times[layer] }
    public func backwardNanoseconds(_ layer: Int) -> UInt64 { times[layerCount + layer] }
    public func forwardCPUNanoseconds(_ layer: Int) -> UInt64 { times[2 * layerCount + layer] }
    public func backwardCPUNanoseconds(_ layer: Int) -> UInt64 { times[3 * layerCount + layer] }
    public func reset() { times.update(repeating: 0, count: 4 * layerCount) }

    /// Both clocks now.
    @inline(__always) public func start() -> Stamp {
        var s = Stamp()
        s.wall = Self.read(CLOCK_MONOTONIC)
        s.cpu = Self.read(CLOCK_THREAD_CPUTIME_ID)
        return s
    }

    @inline(__always) func addForward(_ layer: Int, since start: Stamp) { add(layer, since: start) }
    @inline(__always) func addBackward(_ layer: Int, since start: Stamp) { add(layerCount + layer, since: start) }

    @inline(__always) private func add(_ slot: Int, since start: Stamp) {
        let cpu = Self.read(CLOCK_THREAD_CPUTIME_ID), wall = Self.read(CLOCK_MONOTONIC)
        times[slot] &+= wall &- start.wall
        times[2 * layerCount + slot] &+= cpu &- start.cpu
    }

    @inline(__always) static func read(_ clock: clockid_t) -> UInt64 {
        var ts = timespec()
        clock_gettime(clock, &ts)
        return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
    }
}
