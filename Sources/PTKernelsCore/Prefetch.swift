// Fetching the next sample's operands into L2 while the current sample computes. In training the
// backward passes read what the forward wrote long before (out of cache); the kernels copy each sample
// into their own layout first, so a sample's copy waits on memory unless its lines were asked for
// during the previous sample's tiles. Prefetches change no result.
import CPTPrefetch

/// Up to two ranges of floats whose cache lines are fetched a few at a time (`fetch(lines:)`).
@usableFromInline struct NextSampleLines {
    var p: UnsafeRawPointer, end: UnsafeRawPointer, p2: UnsafeRawPointer, end2: UnsafeRawPointer

    /// The lines of `a[0..<count]`, then of `b[0..<count2]`.
    @inline(__always) init(_ a: UnsafePointer<Float>, count: Int, _ b: UnsafePointer<Float>, count2: Int) {
        (p, end) = (UnsafeRawPointer(a), UnsafeRawPointer(a + count))
        (p2, end2) = (UnsafeRawPointer(b), UnsafeRawPointer(b + count2))
    }

    /// No lines (no next sample).
    @usableFromInline static var none: NextSampleLines {
        let z = UnsafeRawPointer(bitPattern: 64)!
        return NextSampleLines(p: z, end: z, p2: z, end2: z)
    }

    @inline(__always) init(p: UnsafeRawPointer, end: UnsafeRawPointer, p2: UnsafeRawPointer, end2: UnsafeRawPointer) {
        (self.p, self.end, self.p2, self.end2) = (p, end, p2, end2)
    }

    /// Lines left to fetch.
    @inline(__always) var lines: Int { (max(0, end - p) + max(0, end2 - p2) + 63) / 64 }

    /// Fetches the next `lines` lines (fewer at the end).
    @inline(__always) mutating func fetch(lines: Int) {
        for _ in 0..<lines {
            if p < end { pt_prefetch_l2(p); p += 64 } else if p2 < end2 { pt_prefetch_l2(p2); p2 += 64 } else { return }
        }
    }
}
