// Helpers for the kernel tests: deterministic random buffers and tolerance-aware comparison.
import XCTest
import PTKernels

/// A heap buffer of floats freed at deinit (tests only), 64-byte aligned as the workspace's buffers are (so a
/// test can place rows on or off a cache line on purpose).
final class Buffer {
    let count: Int
    let pointer: UnsafeMutablePointer<Float>
    init(_ count: Int, fill: Float = 0) {
        self.count = count
        pointer = UnsafeMutableRawPointer.allocate(byteCount: 4 * max(count, 1), alignment: 64)
            .bindMemory(to: Float.self, capacity: max(count, 1))
        pointer.initialize(repeating: fill, count: max(count, 1))
    }
    convenience init(random count: Int, seed: UInt64, levels: Int = 0) {
        self.init(count)
        var s = seed &* 0x9E37_79B9_7F4A_7C15 &+ 1
        for i in 0..<count {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            let u = Float(s >> 40) / Float(1 << 24)          // [0, 1)
            pointer[i] = levels > 0 ? Float(Int(u * Float(levels))) / Float(levels) : 2 * u - 1
        }
    }
    func copy() -> Buffer { let b = Buffer(count); b.pointer.update(from: pointer, count: count); return b }
    var maxAbs: Float { (0..<count).reduce(0) { max($0, abs(pointer[$1])) } }
    deinit { UnsafeMutableRawPointer(pointer).deallocate() }
}

/// Max |a - b| (NaN counts as infinite).
func maxDifference(_ a: Buffer, _ b: Buffer) -> Float {
    var d: Float = 0
    for i in 0..<a.count {
        let e = abs(a.pointer[i] - b.pointer[i])
        if e.isNaN { return .infinity }
        d = max(d, e)
    }
    return d
}

/// Tolerance for sums of `reduction` products of values in [-1, 1].
///
/// Both the reference (one sequential chain) and the fast kernels (k-blocked FMA chains) round at
/// every step; with partial sums of size ~sqrt(K) * |x| the rounding errors random-walk to about
/// eps * K * |x|^2 / 3 and are bounded by eps * K * sum|terms|. Allowing 1e-5 * sqrt(K) * scale, where
/// scale = max(1, max |result|) ~ sqrt(K)/3 for random data, sits ~10-100x above the typical error
/// and ~10^3 below what a wrong index or a missing term produces (an O(1) error).
func tolerance(reduction: Int, scale: Float) -> Float {
    1e-5 * Float(max(reduction, 1)).squareRoot() * max(1, scale)
}

func assertClose(_ got: Buffer, _ want: Buffer, reduction: Int, _ label: String,
                 file: StaticString = #filePath, line: UInt = #line) {
    let diff = maxDifference(got, want)
    let tol = tolerance(reduction: reduction, scale: want.maxAbs)
    XCTAssert(diff <= tol, "\(label): max |difference| \(diff) > tolerance \(tol)", file: file, line: line)
}

func assertIdentical(_ a: Buffer, _ b: Buffer, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    let same = memcmp(a.pointer, b.pointer, a.count * 4) == 0
    XCTAssert(same, "\(label): outputs differ between identical runs (max diff \(maxDifference(a, b)))", file: file, line: line)
}
