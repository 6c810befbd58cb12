// The machine's single-thread FMA peak, measured: the yardstick kernel speeds are reported against.

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU seconds consumed by the calling thread (CLOCK_THREAD_CPUTIME_ID): time the scheduler gives
/// to other processes does not count, so kernel speeds and the peak read the same on a busy machine.
public func threadCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// Monotonic seconds, for benchmarks.
public func monotonicSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
}

/// GFLOP/s of the level's FMA peak loop on the calling thread (2 flops per lane per multiply-add; on the
/// baseline, without FMA, a multiply and an add on separate chains count as one multiply-add):
/// `table.peakChains` independent vector chains, enough to fill every FMA pipe (AVX2 needs ~12 ymm
/// chains: 8 reached 84% of the 12-chain rate on Zen 5, 16 no more than 12; AVX-512 24 zmm).
/// Timed in thread CPU seconds (`threadCPUSeconds`, as `bench kernels` times the kernels), the best of
/// many ~1 ms slices over about `seconds` of CPU time.
public func measureFMAPeak(_ table: KernelTable, seconds: Double = 0.2) -> Double {
    let sliceSeconds = 0.001
    var best = 0.0
    var sink: Float = 0
    var iterations = 1 << 10
    let flopsPerIteration = Double(table.peakFlopsPerIteration)
    // Calibrate so one slice takes about a millisecond.
    while true {
        let t0 = threadCPUSeconds()
        sink += table.peakLoop(iterations)
        let dt = threadCPUSeconds() - t0
        if dt > sliceSeconds / 4 || iterations > 1 << 30 { iterations = max(1 << 8, Int(Double(iterations) * sliceSeconds / max(dt, 1e-9))); break }
        iterations *= 4
    }
    let start = threadCPUSeconds()
    var slices = 0
    while slices < 20 || threadCPUSeconds() - start < seconds {
        let t0 = threadCPUSeconds()
        sink += table.peakLoop(iterations)
        let dt = threadCPUSeconds() - t0
        best = max(best, Double(iterations) * flopsPerIteration / dt / 1e9)
        slices += 1
    }
    _peakSink = sink
    return best
}

/// Written by the loop so the optimiser cannot treat it as pure and move it across the clock reads.
nonisolated(unsafe) var _peakSink: Float = 0
