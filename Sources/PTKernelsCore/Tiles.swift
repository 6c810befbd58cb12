// Register tiles, each written once, generic over the level and the tile shape. A level module
// instantiates the shapes that fit its registers (`KernelLevel.gemmMicro`, `convTiles`, ...); after
// specialisation the shape is a constant, the loops over it unroll fully and every accumulator of the
// `InlineArray` lives in a register (checked by the peak share `bench kernels` reports).
//
// Summation order, per output: one chain of multiply-adds in a fixed order that does not depend on the
// shape, so every shape of every level gives the same bits (levels with a fused multiply-add).

/// GEMM microkernel, BLIS style: C[MR][NV*W] (+)= Apanel[kc][MR] x Bpanel[kc][NV*W], W = L.width.
/// `accumulate` loads C first, otherwise the tile starts at zero. Every C element sees the fused
/// multiply-adds p = 0, 1, ..., kc-1 in order.
public enum GemmTile<L: KernelLevel, let MR: Int, let NV: Int> {
    @inline(never)
    public static func run(kc: Int, a: UnsafePointer<Float>, b: UnsafePointer<Float>, c: UnsafeMutablePointer<Float>,
                    ldc: Int, accumulate: Bool) {
        typealias V = L.V
        let vs = MemoryLayout<V>.size
        var acc = InlineArray<MR, InlineArray<NV, V>>(repeating: InlineArray<NV, V>(repeating: V()))
        if accumulate {
            for r in 0..<MR {
                let row = UnsafeRawPointer(c + r * ldc)
                for j in 0..<NV { acc[r][j] = row.loadUnaligned(fromByteOffset: j * vs, as: V.self) }
            }
        }
        var pa = a, pb = UnsafeRawPointer(b)
        for _ in 0..<kc {
            let bv = InlineArray<NV, V> { j in pb.load(fromByteOffset: j * vs, as: V.self) }
            for r in 0..<MR {
                let x = V(repeating: pa[r])
                for j in 0..<NV { acc[r][j] = L.madd(acc[r][j], x, bv[j]) }
            }
            pa += MR; pb += NV * vs
        }
        for r in 0..<MR {
            let row = UnsafeMutableRawPointer(c + r * ldc)
            for j in 0..<NV { row.storeBytes(of: acc[r][j], toByteOffset: j * vs, as: V.self) }
        }
    }
}

/// The reduction steps a convolution tile runs: all `reduction` steps p = (c, i, j) in order, or, for each
/// input channel c, only p in c*perChannel + first ..< c*perChannel + first + count (the kernel rows whose
/// input rows are not all padding for every vector of the tile; see `_runConvTiles`).
public struct TapSpan: Sendable, Equatable {
    public var reduction: Int
    public var perChannel: Int
    public var first: Int
    public var count: Int

    /// Every step.
    @inline(__always)
    public init(reduction: Int) { self.reduction = reduction; perChannel = reduction; first = 0; count = reduction }

    @inline(__always)
    public init(reduction: Int, perChannel: Int, first: Int, count: Int) {
        self.reduction = reduction; self.perChannel = perChannel; self.first = first; self.count = count
    }

    /// Whether every step runs.
    @inline(__always)
    public var isFull: Bool { count == perChannel }
}

/// Convolution tile (implicit im2col, see DirectConvolution.swift): MR output channels x NV vectors of
/// W outputs. Vector t reads `input + inPos[t] + offsets[p]` for reduction step p and is stored at
/// `out + r*ldo + outPos[t]`. Each output: bias (or 0), then one chain over the steps p of `span` in
/// increasing order (the steps left out read only zero padding, adding nothing). Rows past `rows`
/// re-read the last valid bias and are not stored.
public enum ConvTile<L: KernelLevel, let MR: Int, let NV: Int> {
    @inline(never)
    public static func run(span: TapSpan, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>, input: UnsafePointer<Float>,
                    inPos: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>, outPos: UnsafePointer<Int>, ldo: Int,
                    bias: UnsafePointer<Float>?, rows: Int) {
        typealias V = L.V
        var acc = InlineArray<MR, InlineArray<NV, V>>(repeating: InlineArray<NV, V>(repeating: V()))
        if let bias {
            for r in 0..<MR {
                let x = V(repeating: bias[min(r, rows - 1)])
                for j in 0..<NV { acc[r][j] = x }
            }
        }
        let ins = InlineArray<NV, UnsafeRawPointer> { j in UnsafeRawPointer(input + inPos[j]) }
        @inline(__always) func step(_ p: Int, _ pa: UnsafePointer<Float>) {
            let off = Int(offsets[p]) &* 4
            let bv = InlineArray<NV, V> { j in ins[j].loadUnaligned(fromByteOffset: off, as: V.self) }
            for r in 0..<MR {
                let x = V(repeating: pa[r])
                for j in 0..<NV { acc[r][j] = L.madd(acc[r][j], x, bv[j]) }
            }
        }
        // Two steps per iteration (same order per output), as LLVM unrolled the hand-written tiles of the
        // build before the levels (-target-cpu native, Zen 5): CIFAR 3->32 forward (k = 27) 0.98x -> 1.04x of it.
        @inline(__always) func steps(from p0: Int, count k: Int) {
            var pa = a + p0 &* MR, p = p0
            let end = p0 + k
            while p + 2 <= end {
                step(p, pa); step(p + 1, pa + MR)
                p += 2; pa += 2 * MR
            }
            if p < end { step(p, pa) }
        }
        if span.isFull {
            steps(from: 0, count: span.reduction)
        } else {
            var c0 = span.first
            while c0 < span.reduction {
                steps(from: c0, count: span.count)
                c0 += span.perChannel
            }
        }
        let outs = InlineArray<NV, Int> { j in outPos[j] &* 4 }
        for r in 0..<MR where r < rows {
            let o = UnsafeMutableRawPointer(out + r * ldo)
            for j in 0..<NV { o.storeBytes(of: acc[r][j], toByteOffset: outs[j], as: V.self) }
        }
    }
}

extension ConvTile {
    /// `count` tiles side by side, tile t on table entries t*NV ..< (t+1)*NV (a row block's whole tiles,
    /// run from the level's specialisation, so a tile costs a direct call, not a dispatch).
    @inline(__always)
    public static func runTiles(count: Int, span: TapSpan, a: UnsafePointer<Float>, offsets: UnsafePointer<Int32>,
                                input: UnsafePointer<Float>, inPos: UnsafePointer<Int>, out: UnsafeMutablePointer<Float>,
                                outPos: UnsafePointer<Int>, ldo: Int, bias: UnsafePointer<Float>?, rows: Int) {
        var t = 0
        while t < count {
            run(span: span, a: a, offsets: offsets, input: input, inPos: inPos + t &* NV, out: out, outPos: outPos + t &* NV, ldo: ldo,
                bias: bias, rows: rows)
            t += 1
        }
    }
}

/// Backward-weights tile of KW-wide kernels (WeightsTileConvolution.swift): G (channel, kernel row) groups
/// x KW kernel columns x NV vectors of W output channels. Per (tap, channel): one chain over the output
/// pixels in row-major order, then added into acc[tap][o].
public enum WeightsTile<L: KernelLevel, let G: Int, let KW: Int, let NV: Int> {
    @inline(never)
    public static func run(img: UnsafePointer<Float>, groupOffsets: UnsafePointer<Int>, dyT: UnsafePointer<Float>, ldy: Int,
                    oh: Int, ow: Int, rowStep: Int, colStep: Int, acc: UnsafeMutablePointer<Float>, ldacc: Int, groups: Int) {
        typealias V = L.V
        let vs = MemoryLayout<V>.size
        var sums = InlineArray<G, InlineArray<KW, InlineArray<NV, V>>>(
            repeating: InlineArray<KW, InlineArray<NV, V>>(repeating: InlineArray<NV, V>(repeating: V())))
        let offs = InlineArray<G, Int> { t in groupOffsets[t] }
        for y in 0..<oh {
            var pb = img + y * rowStep
            var pd = UnsafeRawPointer(dyT + y * ow * ldy)
            for _ in 0..<ow {
                let d = InlineArray<NV, V> { j in pd.loadUnaligned(fromByteOffset: j * vs, as: V.self) }
                for t in 0..<G {
                    let p = pb + offs[t]
                    for j in 0..<KW {
                        let x = V(repeating: p[j])
                        for v in 0..<NV { sums[t][j][v] = L.madd(sums[t][j][v], x, d[v]) }
                    }
                }
                pb += colStep; pd += ldy &* 4
            }
        }
        for t in 0..<G where t < groups {
            for j in 0..<KW {
                for v in 0..<NV {
                    let r = UnsafeMutableRawPointer(acc + (KW * t + j) * ldacc + v * L.width)
                    r.storeBytes(of: r.loadUnaligned(as: V.self) + sums[t][j][v], as: V.self)
                }
            }
        }
    }
}

/// 16-lane dot products: c[r][q] += sum_p a[r][p] * b[q][p] for R rows of A x C rows of B, both
/// p-contiguous. Per element: 16 lane-chains over p (lane l takes p = l, l+16, ...), a fixed-order lane
/// sum, then the scalar tail p >= k/16*16, then one add into c. Missing rows/columns re-read the last
/// valid one and are not stored. (16 lanes on every level, whatever its register width.)
public enum DotTile<L: KernelLevel, let R: Int, let C: Int> {
    public typealias V16 = SIMD16<Float>

    /// One 16-lane step: acc[r][q] += A row r x B row q. The smaller side is loaded first and the other
    /// one vector at a time, so a 4x6 tile needs 24 + 4 + 1 registers (with the six B rows loaded first,
    /// LLVM spilled accumulators of the AVX-512 4x6 tile).
    @inline(__always)
    static func step(_ acc: inout InlineArray<R, InlineArray<C, V16>>, _ ap: InlineArray<R, UnsafeRawPointer>, _ aOffset: Int,
                     _ bp: InlineArray<C, UnsafeRawPointer>, _ bOffset: Int) {
        if R <= C {
            let y = InlineArray<R, V16> { r in ap[r].loadUnaligned(fromByteOffset: aOffset, as: V16.self) }
            for q in 0..<C {
                let x = bp[q].loadUnaligned(fromByteOffset: bOffset, as: V16.self)
                for r in 0..<R { acc[r][q] = L.madd(acc[r][q], y[r], x) }
            }
        } else {
            let x = InlineArray<C, V16> { q in bp[q].loadUnaligned(fromByteOffset: bOffset, as: V16.self) }
            for r in 0..<R {
                let y = ap[r].loadUnaligned(fromByteOffset: aOffset, as: V16.self)
                for q in 0..<C { acc[r][q] = L.madd(acc[r][q], y, x[q]) }
            }
        }
    }

    @inline(never)
    public static func run(k: Int, a: UnsafePointer<Float>, lda: Int, rows: Int, b: UnsafePointer<Float>, ldb: Int, cols: Int,
                    c: UnsafeMutablePointer<Float>, ldc: Int) {
        let ap = InlineArray<R, UnsafeRawPointer> { r in UnsafeRawPointer(a + min(r, rows - 1) * lda) }
        let bp = InlineArray<C, UnsafeRawPointer> { q in UnsafeRawPointer(b + min(q, cols - 1) * ldb) }
        var acc = InlineArray<R, InlineArray<C, V16>>(repeating: InlineArray<C, V16>(repeating: V16()))
        let kv = k / 16 * 16
        var o = 0
        while o < kv * 4 {
            step(&acc, ap, o, bp, o)
            o += 64
        }
        var s = laneSums(acc)
        // The scalar tail, all R x C chains side by side (missing rows/columns re-read the last valid one).
        var p = kv
        while p < k {
            let x = InlineArray<R, Float> { r in ap[r].load(fromByteOffset: p &* 4, as: Float.self) }
            let y = InlineArray<C, Float> { q in bp[q].load(fromByteOffset: p &* 4, as: Float.self) }
            for r in 0..<R {
                for q in 0..<C { s[r][q] = L.madd(s[r][q], x[r], y[q]) }
            }
            p += 1
        }
        store(s, rows: rows, cols: cols, c: c, ldc: ldc)
    }

    /// c[r][q] += sum over samples t and p < length of a[t*aStride + r*lda + p] * b[t*bStride + offsets[q] + p]
    /// (length a multiple of 16): 16 lane-chains over (t, p), a fixed-order lane sum, one add into c.
    /// Missing rows re-read the last valid one and are not stored (offsets repeat the last valid column).
    @inline(never)
    public static func runStrided(samples: Int, length: Int, a: UnsafePointer<Float>, lda: Int, aStride: Int, rows: Int,
                           b: UnsafePointer<Float>, bStride: Int, offsets: UnsafePointer<Int>, cols: Int,
                           c: UnsafeMutablePointer<Float>, ldc: Int) {
        var acc = InlineArray<R, InlineArray<C, V16>>(repeating: InlineArray<C, V16>(repeating: V16()))
        let ap = InlineArray<R, UnsafeRawPointer> { r in UnsafeRawPointer(a + min(r, rows - 1) * lda) }
        let bp = InlineArray<C, UnsafeRawPointer> { q in UnsafeRawPointer(b + offsets[min(q, cols - 1)]) }
        // One loop over (sample, position), so the accumulators stay in registers (with a loop per
        // sample LLVM kept them in memory between samples: LeNet conv2 backward weights 0.85x).
        let end = length * 4
        var t = 0, o = 0, aOff = 0, bOff = 0
        while t < samples && end > 0 {
            step(&acc, ap, aOff + o, bp, bOff + o)
            o += 64
            if o == end { o = 0; t += 1; aOff += aStride * 4; bOff += bStride * 4 }
        }
        store(laneSums(acc), rows: rows, cols: cols, c: c, ldc: ldc)
    }

    /// `_laneSum` of every accumulator (lane 0 + lane 1 + ... + lane 15, the same bits), computed from
    /// memory with the R x C elements as the inner loop: R*C independent chains of scalar adds instead of
    /// one 15-add chain after another (with the sums taken element by element, LLVM kept the tile in
    /// memory and ran the chains one at a time: the epilogue cost as much as a short tile's FMAs).
    @inline(__always)
    static func laneSums(_ acc: InlineArray<R, InlineArray<C, V16>>) -> InlineArray<R, InlineArray<C, Float>> {
        withUnsafeBytes(of: acc) { raw in
            let f = raw.baseAddress!.assumingMemoryBound(to: Float.self)
            var s = InlineArray<R, InlineArray<C, Float>> { r in InlineArray<C, Float> { q in f[(r &* C &+ q) &* 16] } }
            for l in 1..<16 {
                for r in 0..<R {
                    for q in 0..<C { s[r][q] += f[(r &* C &+ q) &* 16 &+ l] }
                }
            }
            return s
        }
    }

    /// c[r][q] += s[r][q] for the valid rows and columns.
    @inline(__always)
    static func store(_ s: InlineArray<R, InlineArray<C, Float>>, rows: Int, cols: Int, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for r in 0..<R where r < rows {
            for q in 0..<C where q < cols { c[r * ldc + q] += s[r][q] }
        }
    }
}

/// The peak loop: 2N independent chains. With a fused multiply-add, N chains of `acc + acc * x` and N of
/// `acc + acc * y` (so no two chains can be merged). Without one (the baseline), a multiply-add is two
/// instructions on two kinds of pipes, so the loop keeps both busy: N chains of multiplies and N of
/// adds, counted as N multiply-adds (a chain `acc + acc * x` would measure the multiply's latency).
public enum PeakTile<L: KernelLevel, let N: Int> {
    @inline(never)
    public static func run(_ iterations: Int) -> Float {
        typealias V = L.V
        var a = InlineArray<N, V> { i in V(repeating: 0.1 * Float(i + 1)) }
        var b = a
        if L.hasFusedMultiplyAdd {
            let x = V(repeating: 0.999_999), y = V(repeating: 1e-7)
            for _ in 0..<iterations {
                for i in 0..<N { a[i] = L.madd(a[i], a[i], x) }
                for i in 0..<N { b[i] = L.madd(b[i], b[i], y) }
            }
        } else {
            // Each call starts afresh: 1 + 1e-7 to the power of a slice's iterations stays near 1.
            let x = V(repeating: 1 + 1e-7), y = V(repeating: 1e-7)
            for _ in 0..<iterations {
                for i in 0..<N { a[i] = a[i] * x }
                for i in 0..<N { b[i] = b[i] + y }
            }
        }
        var s = V()
        for i in 0..<N { s += a[i] + b[i] }
        return s.sum()
    }
}

/// `v.sum()` inlined: the same left-to-right order (lane 0 + lane 1 + ... + lane 15), so the same bits.
/// The standard library's generic `sum()` was an out-of-line call: 3% of a LeNet step.
@inline(__always)
func _laneSum(_ v: SIMD16<Float>) -> Float {
    var r = v[0]
    r += v[1]; r += v[2]; r += v[3]; r += v[4]; r += v[5]; r += v[6]; r += v[7]
    r += v[8]; r += v[9]; r += v[10]; r += v[11]; r += v[12]; r += v[13]; r += v[14]; r += v[15]
    return r
}
