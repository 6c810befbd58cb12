// The slides' X/O toy problem: the exact 9x9 X, and a seeded generator of jittered, anti-aliased Xs and Os.
import PTTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// X versus O images in [-1, 1] (background -1, stroke +1). Class 0 is X, class 1 is O.
public enum XOData {
    /// The 9x9 X from the slides, row-major, -1 background and 1 stroke.
    public static let slideX: [Float] = [
        -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, 1, -1, -1, -1, -1, -1, 1, -1,
        -1, -1, 1, -1, -1, -1, 1, -1, -1,
        -1, -1, -1, 1, -1, 1, -1, -1, -1,
        -1, -1, -1, -1, 1, -1, -1, -1, -1,
        -1, -1, -1, 1, -1, 1, -1, -1, -1,
        -1, -1, 1, -1, -1, -1, 1, -1, -1,
        -1, 1, -1, -1, -1, -1, -1, 1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1,
    ]

    /// Class index of X.
    public static let classX: Int32 = 0
    /// Class index of O.
    public static let classO: Int32 = 1

    /// `count` images of shape 1 x size x size (size 8...64, 12...28 recommended, 16 usual), half X and half O
    /// (the extra one is an X when count is odd) in a seeded random order. Each shape gets a random size
    /// (half-extent 0.24-0.40 of the canvas), aspect, rotation (±25°), stroke weight and position, always
    /// fully inside the canvas. The same (count, size, seed) always gives the same data; use different seeds
    /// for the training and the test set (or `makeSplit`).
    public static func make(count: Int, size: Int = 16, seed: UInt64) -> Dataset {
        precondition(count >= 0, "XOData.make: count must be non-negative")
        precondition((8...64).contains(size), "XOData.make: size must be in 8...64")
        let shape = Shape(channels: 1, height: size, width: size)
        let images = AlignedBuffer(count: count * shape.count)

        var labels = [Int32](repeating: 0, count: count)
        for i in 0..<count { labels[i] = i < (count + 1) / 2 ? classX : classO }
        var order = Xoshiro256(seed: seed, stream: 0x584F_4C41)  // "XOLA"
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) { labels.swapAt(i, order.nextInt(below: i + 1)) }
        }
        for i in 0..<count {
            // One stream per sample: sample i does not depend on how many samples came before it.
            var rng = Xoshiro256(seed: seed, stream: 0x584F_0000 &+ UInt64(i))
            render(isX: labels[i] == classX, size: size, rng: &rng, into: images.pointer + i * shape.count)
        }
        return Dataset(name: "xo-\(size)-seed\(seed)", shape: shape, classes: 2, images: images, labels: labels)
    }

    /// A training set and a test set whose seeds differ (the test seed is derived from `seed`).
    public static func makeSplit(trainCount: Int, testCount: Int, size: Int = 16, seed: UInt64)
        -> (train: Dataset, test: Dataset)
    {
        (make(count: trainCount, size: size, seed: seed),
         make(count: testCount, size: size, seed: seed ^ 0x7E57_7E57_7E57_7E57))
    }

    /// Draws one X or O into `out` (size x size). Distances are in pixels; pixel (r, c) has its centre at
    /// (c + 0.5, r + 0.5). Coverage = clamp(halfWidth + 0.5 - distance, 0, 1) gives a one-pixel soft edge.
    static func render(isX: Bool, size: Int, rng: inout Xoshiro256, into out: UnsafeMutablePointer<Float>) {
        let s = Double(size)
        func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * rng.nextUnitDouble() }

        let angle = uniform(-25, 25) * Double.pi / 180
        let cosA = cos(angle), sinA = sin(angle)
        var halfWidth = max(0.6, uniform(0.045, 0.075) * s)  // stroke half-width: 1.2 to 2.4 px at size 16
        var a = uniform(0.24, 0.40) * s
        // X: arm half-extents (ax, ay); O: radii (ax, ay).
        var ax = a * (isX ? uniform(0.85, 1.0) : uniform(0.8, 1.0))
        var ay = a * (isX ? uniform(0.85, 1.0) : uniform(0.8, 1.0))

        // Half-extents of the rotated shape's bounding box, stroke included.
        func extent() -> (Double, Double) {
            if isX {
                // Endpoints (±ax, ±ay), rotated: |x'| = |ax cos ∓ ay sin| at most ax|cos| + ay|sin|.
                return (ax * abs(cosA) + ay * abs(sinA) + halfWidth, ax * abs(sinA) + ay * abs(cosA) + halfWidth)
            } else {
                return ((ax * ax * cosA * cosA + ay * ay * sinA * sinA).squareRoot() + halfWidth,
                        (ax * ax * sinA * sinA + ay * ay * cosA * cosA).squareRoot() + halfWidth)
            }
        }
        // Keep a half-pixel margin: shrink the shape until it fits (only the largest draws need it).
        let limit = s / 2 - 0.5
        var (ex, ey) = extent()
        if max(ex, ey) > limit {
            let k = (limit - halfWidth) / (max(ex, ey) - halfWidth)
            ax *= k; ay *= k; a *= k
            (ex, ey) = extent()
        }
        if halfWidth > a / 2 { halfWidth = max(0.5, a / 2) }
        let cx = uniform(ex + 0.5, s - ex - 0.5)
        let cy = uniform(ey + 0.5, s - ey - 0.5)

        for r in 0..<size {
            for c in 0..<size {
                // Into the shape's frame: translate, then rotate by -angle.
                let dx = Double(c) + 0.5 - cx, dy = Double(r) + 0.5 - cy
                let u = cosA * dx + sinA * dy
                let v = -sinA * dx + cosA * dy
                let d: Double
                if isX {
                    d = min(segmentDistance(u, v, ax, ay), segmentDistance(u, v, ax, -ay))
                } else {
                    d = ellipseDistance(u, v, ax, ay)
                }
                let coverage = min(1, max(0, halfWidth + 0.5 - d))
                out[r * size + c] = Float(2 * coverage - 1)
            }
        }
    }

    /// Distance from (u, v) to the segment from (-ex, -ey) to (ex, ey).
    @inline(__always) static func segmentDistance(_ u: Double, _ v: Double, _ ex: Double, _ ey: Double) -> Double {
        let t = max(-1, min(1, (u * ex + v * ey) / (ex * ex + ey * ey)))
        let du = u - t * ex, dv = v - t * ey
        return (du * du + dv * dv).squareRoot()
    }

    /// Approximate distance from (u, v) to the ellipse with radii (rx, ry): |f| / |∇f| with
    /// f = sqrt((u/rx)² + (v/ry)²) - 1 (exact for a circle).
    @inline(__always) static func ellipseDistance(_ u: Double, _ v: Double, _ rx: Double, _ ry: Double) -> Double {
        let p = u / rx, q = v / ry
        let rho = (p * p + q * q).squareRoot()
        if rho < 1e-9 { return min(rx, ry) }
        let gx = p / rx / rho, gy = q / ry / rho
        return abs(rho - 1) / (gx * gx + gy * gy).squareRoot()
    }
}
