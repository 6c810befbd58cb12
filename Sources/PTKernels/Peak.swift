// The machine's single-thread FMA peak, measured: the yardstick kernel speeds are reported against.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Monotonic seconds, for benchmarks.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// GFLOP/s of a pure `SIMD16<Float>` fused multiply-add loop on the calling thread (2 flops per lane
/// per FMA). 24 independent accumulators cover FMA latency x throughput (4 cycles x 2 pipes = 8 needed)
/// with room to spare. Runs for about `seconds` (at least a few ms) and returns the best of 5 slices,
/// so a moment of interference from the other core does not lower the yardstick.
public func measureFMAPeak(seconds: Double = 0.2) -> Double {
    let slices = 5
    var best = 0.0
    var sink: Float = 0
    var iterations = 1 << 16
    // Calibrate so one slice takes about seconds / slices.
    while true {
        let t0 = monotonicSeconds()
        sink += _fmaLoop(iterations)
        let dt = monotonicSeconds() - t0
        if dt > seconds / Double(slices) / 4 || iterations > 1 << 30 { iterations = Int(Double(iterations) * (seconds / Double(slices)) / max(dt, 1e-9)); break }
        iterations *= 4
    }
    iterations = max(iterations, 1 << 12)
    for _ in 0..<slices {
        let t0 = monotonicSeconds()
        sink += _fmaLoop(iterations)
        let dt = monotonicSeconds() - t0
        best = max(best, Double(iterations) * 24 * 16 * 2 / dt / 1e9)
    }
    _peakSink = sink
    return best
}

/// Written by the loop so the optimiser cannot treat it as pure and move it across the clock reads.
nonisolated(unsafe) var _peakSink: Float = 0

@inline(never)
func _fmaLoop(_ iterations: Int) -> Float {
    typealias V = SIMD16<Float>
    let x = V(repeating: 0.999_999), y = V(repeating: 1e-7)
    var a0 = V(repeating: 0.1), a1 = V(repeating: 0.2), a2 = V(repeating: 0.3), a3 = V(repeating: 0.4)
    var a4 = V(repeating: 0.5), a5 = V(repeating: 0.6), a6 = V(repeating: 0.7), a7 = V(repeating: 0.8)
    var a8 = V(repeating: 0.9), a9 = V(repeating: 1.0), a10 = V(repeating: 1.1), a11 = V(repeating: 1.2)
    var b0 = a0, b1 = a1, b2 = a2, b3 = a3, b4 = a4, b5 = a5, b6 = a6, b7 = a7, b8 = a8, b9 = a9, b10 = a10, b11 = a11
    for _ in 0..<iterations {
        a0 = a0.addingProduct(a0, x); a1 = a1.addingProduct(a1, x); a2 = a2.addingProduct(a2, x); a3 = a3.addingProduct(a3, x)
        a4 = a4.addingProduct(a4, x); a5 = a5.addingProduct(a5, x); a6 = a6.addingProduct(a6, x); a7 = a7.addingProduct(a7, x)
        a8 = a8.addingProduct(a8, x); a9 = a9.addingProduct(a9, x); a10 = a10.addingProduct(a10, x); a11 = a11.addingProduct(a11, x)
        b0 = b0.addingProduct(b0, y); b1 = b1.addingProduct(b1, y); b2 = b2.addingProduct(b2, y); b3 = b3.addingProduct(b3, y)
        b4 = b4.addingProduct(b4, y); b5 = b5.addingProduct(b5, y); b6 = b6.addingProduct(b6, y); b7 = b7.addingProduct(b7, y)
        b8 = b8.addingProduct(b8, y); b9 = b9.addingProduct(b9, y); b10 = b10.addingProduct(b10, y); b11 = b11.addingProduct(b11, y)
    }
    let s = (a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7 + a8 + a9 + a10 + a11) + (b0 + b1 + b2 + b3 + b4 + b5 + b6 + b7 + b8 + b9 + b10 + b11)
    _peakSink += s.sum()
    return s.sum()
}
