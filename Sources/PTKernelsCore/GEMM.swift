// SGEMM, BLIS style: pack panels of A and B into aligned workspace, then sweep a register-tile
// microkernel (Microkernels.swift) over them. Also the driver that convolutions reuse with their own
// packers (implicit im2col). No threads in here: callers split work outside.

// MARK: Block sizes

/// Tile and cache-block sizes of one GEMM register tile (BLIS's MR, NR, MC, KC, NC).
///
/// AVX-512 tiles chosen on the 2-core AMD EPYC (Zen 4, family 25 model 17: AVX-512 at one 512-bit FMA
/// per cycle, 32 KiB L1d, 1 MiB L2) with SGEMM 1024^3 single-threaded, best of 15 runs each while other
/// builds shared the machine: 14x32 KC256 105%*, KC128 92%*, KC384 117%*; 8x48 KC256 107%*,
/// KC128 91%*; 6x64 KC256 112%* (* of a peak meter that then undercounted). KC 128 lost everywhere,
/// 384 won; the tiles were within noise of each other, so m picks the tile (`forShape`).
/// MC keeps the packed A block (MC x KC) within ~1/4 of L2, NC keeps the packed B block within L3.
/// KC is the same for every tile and level on purpose: the per-element summation order depends only
/// on KC (the k-blocking), so every tile of every level computes the same GEMM bits.
public struct GemmBlocking: Sendable, Equatable {
    /// Rows, vectors per row, floats per vector; NR = nv * width.
    public let mr: Int, nv: Int, width: Int
    public let mc: Int, kc: Int, nc: Int
    public let name: String
    public var nr: Int { nv * width }

    /// MC and NC are rounded down to whole tiles (packing works in whole MR / NR panels).
    public init(level: String, mr: Int, nv: Int, width: Int, mc: Int, kc: Int = GemmBlocking.kc, nc: Int = 4096) {
        self.mr = mr; self.nv = nv; self.width = width; self.kc = kc
        self.name = "\(level)-\(mr)x\(nv * width)"
        self.mc = max(mr, mc / mr * mr)
        self.nc = max(nv * width, nc / (nv * width) * (nv * width))
    }

    /// Same tile with other cache blocks (tuning).
    public func with(mc: Int? = nil, kc: Int? = nil, nc: Int? = nil) -> GemmBlocking {
        var b = GemmBlocking(level: "", mr: mr, nv: nv, width: width, mc: mc ?? self.mc, kc: kc ?? self.kc, nc: nc ?? self.nc)
        b = GemmBlocking(copying: b, name: name)
        return b
    }

    private init(copying b: GemmBlocking, name: String) {
        mr = b.mr; nv = b.nv; width = b.width; mc = b.mc; kc = b.kc; nc = b.nc; self.name = name
    }

    /// The k-block length shared by every tile and level (see above).
    public static let kc = 384

    // Every tile of every level: `allLevels`, generated with the levels (LevelShapes.swift).

    /// The tile of level L for an m x n problem: the least padded area (rows and columns), ties to the
    /// least padded rows, then to the first (the level's default). Results do not depend on it (same KC,
    /// same FMA chain per element). Narrow n matters for per-sample convolution GEMMs (n = oh*ow = 256:
    /// 8x48 pads to 288 columns, 6x64 to none). CIFAR-small b128, 1 thread: 470 images/s against 449
    /// with an m-only choice.
    @inline(__always)
    static func forShape<L: KernelLevel>(_: L.Type, m: Int, n: Int) -> GemmBlocking { choose(from: L.gemmShapes, m: m, n: n) }

    /// `forShape` over any list of tiles.
    public static func choose(from shapes: [GemmBlocking], m: Int, n: Int) -> GemmBlocking {
        var best = shapes[0]
        for bl in shapes.dropFirst() where roundUp(m, bl.mr) < roundUp(m, best.mr) { best = bl }
        for bl in shapes
        where roundUp(m, bl.mr) * roundUp(n, bl.nr) < roundUp(m, best.mr) * roundUp(n, best.nr) { best = bl }
        return best
    }
}

// MARK: Workspace

/// Floats of workspace `sgemm(..., workspace:)` needs for an m x n x k product (any transposes), at any
/// level. The same value serves every smaller problem.
public func sgemmWorkspaceCount(m: Int, n: Int, k: Int) -> Int {
    var most = 0
    for bl in GemmBlocking.allLevels {
        let kc = min(max(k, 1), bl.kc)
        let mc = min(roundUp(max(m, 1), bl.mr), bl.mc)
        let nc = min(roundUp(max(n, 1), bl.nr), bl.nc)
        most = max(most, mc * kc + kc * nc + bl.mr * bl.nr + 3 * 16)
    }
    return most
}

@inline(__always) func roundUp(_ x: Int, _ to: Int) -> Int { (x + to - 1) / to * to }
@inline(__always) func align64(_ p: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
    UnsafeMutablePointer(bitPattern: (Int(bitPattern: p) + 63) & ~63)!
}

// MARK: Entry point

/// C[m][n] = alpha * op(A) op(B) + beta * C (row-major; see `sgemmReference`), with tile `shape` or the
/// level's choice for the shape. `workspace`: `sgemmWorkspaceCount(m:n:k:)` floats.
///
/// Deterministic: every element is `beta*C` then, per k-block of `GemmBlocking.kc`, a chain of fused
/// multiply-adds in increasing k, whatever the threads, the tile or the alignment of the caller's
/// pointers. alpha is folded into the packed A panel.
func _sgemm<L: KernelLevel>(_ level: L.Type, shape: GemmBlocking?, transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
                            alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                            beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, workspace ws: UnsafeMutablePointer<Float>) {
    if m <= 0 || n <= 0 { return }
    _gemmDriver(L.self, shape ?? GemmBlocking.forShape(L.self, m: m, n: n), m: m, n: n, k: k, beta: beta, c: c, ldc: ldc,
        workspace: ws,
        packA: { i0, mc, p0, kc, mr, dest in
            packPanelsA(L.self, trans: transA, a: a, lda: lda, alpha: alpha, m: m, i0: i0, mc: mc, p0: p0, kc: kc, mr: mr, dest: dest)
        },
        packB: { p0, kc, j0, nc, nr, dest in
            packPanelsB(L.self, trans: transB, b: b, ldb: ldb, n: n, p0: p0, kc: kc, j0: j0, nc: nc, nr: nr, dest: dest)
        })
}

// MARK: A packed once, many products

/// Floats `_packWholeA` writes for an m x k operand of m x n products, at any level.
/// Runs inside the training step (convolution scratch layout), so it must not allocate: a plain loop,
/// not `map` (which built an array on every call).
func _packedACount(m: Int, n: Int, k: Int) -> Int {
    var rows = 0
    for blocking in GemmBlocking.allLevels { rows = max(rows, roundUp(max(m, 1), blocking.mr)) }
    return rows * max(k, 0)
}

/// Packs all of A (m x k, row-major, not transposed) the way the driver would for m x n products, so a
/// loop of GEMMs with the same A (one per sample) packs it once. `dest`: `_packedACount` floats.
@inline(__always)
func _packWholeA<L: KernelLevel>(_ level: L.Type, m: Int, n: Int, k: Int, a: UnsafePointer<Float>, lda: Int,
                                 dest: UnsafeMutablePointer<Float>) {
    let bl = GemmBlocking.forShape(L.self, m: m, n: n)
    let mPad = roundUp(m, bl.mr)
    let kBlocks = (k + bl.kc - 1) / bl.kc
    let kcEven = (k + max(kBlocks, 1) - 1) / max(kBlocks, 1)
    var pc = 0
    while pc < k {
        let kc = min(kcEven, k - pc)
        packPanelsA(L.self, trans: false, a: a, lda: lda, alpha: 1, m: m, i0: 0, mc: m, p0: pc, kc: kc, mr: bl.mr, dest: dest + pc * mPad)
        pc += kc
    }
}

/// C = A B + beta C with A from `_packWholeA(m:n: packedN, k:)` (same m and k; n <= packedN picks nothing:
/// the tile is the one A was packed for). Same sums as `sgemm`.
@inline(__always)
func _sgemmPrepackedA<L: KernelLevel>(_ level: L.Type, m: Int, n: Int, k: Int, packedN: Int, packedA: UnsafePointer<Float>,
                                      b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int,
                                      workspace: UnsafeMutablePointer<Float>) {
    if m <= 0 || n <= 0 { return }
    _gemmDriver(L.self, GemmBlocking.forShape(L.self, m: m, n: packedN), m: m, n: n, k: k, beta: beta, c: c, ldc: ldc,
        workspace: workspace,
        packA: { _, _, _, _, _, _ in },
        prepackedA: packedA,
        packB: { p0, kc, j0, nc, nr, dest in
            packPanelsB(L.self, trans: false, b: b, ldb: ldb, n: n, p0: p0, kc: kc, j0: j0, nc: nc, nr: nr, dest: dest)
        })
}

// MARK: Driver

/// The BLIS loop nest. `packA(i0, mc, p0, kc, MR, dest)` writes rows i0..<i0+mc, columns p0..<p0+kc of
/// op(A) as MR-row panels `dest[panel][p][r]` (zero rows past m); `packB(p0, kc, j0, nc, NR, dest)`
/// writes op(B) as NR-column panels `dest[panel][p][j]` (zero columns past n).
func _gemmDriver<L: KernelLevel>(_ level: L.Type, _ bl: GemmBlocking, m: Int, n: Int, k: Int, beta: Float,
                 c: UnsafeMutablePointer<Float>, ldc: Int, workspace: UnsafeMutablePointer<Float>,
                 packA: (Int, Int, Int, Int, Int, UnsafeMutablePointer<Float>) -> Void,
                 prepackedA: UnsafePointer<Float>? = nil,
                 packB: (Int, Int, Int, Int, Int, UnsafeMutablePointer<Float>) -> Void) {
    if m <= 0 || n <= 0 { return }
    if k <= 0 || (beta != 0 && beta != 1) {
        for i in 0..<m {
            let row = c + i * ldc
            if beta == 0 { row.update(repeating: 0, count: n) } else if beta != 1 { for j in 0..<n { row[j] *= beta } }
        }
        if k <= 0 { return }
    }
    let (mr, nr) = (bl.mr, bl.nr)
    let kcMax = min(k, bl.kc)
    let mcMax = min(roundUp(m, mr), bl.mc)
    let ncMax = min(roundUp(n, nr), bl.nc)
    let packedA = align64(workspace)
    let packedB = align64(packedA + mcMax * kcMax)
    let edge = align64(packedB + kcMax * ncMax)
    // n and k are split into equal blocks (k: the per-element summation order then depends on k only).
    let nBlocks = (n + bl.nc - 1) / bl.nc
    let ncEven = min(bl.nc, roundUp((n + nBlocks - 1) / nBlocks, nr))
    var jc = 0
    while jc < n {
        let nc = min(ncEven, n - jc)
        let kBlocks = (k + bl.kc - 1) / bl.kc
        let kcEven = (k + kBlocks - 1) / kBlocks
        var pc = 0
        while pc < k {
            let kc = min(kcEven, k - pc)
            let accumulate = pc > 0 || beta != 0
            packB(pc, kc, jc, nc, nr, packedB)
            var ic = 0
            while ic < m {
                let mc = min(bl.mc, m - ic)
                // A packed once for many products (`_packWholeA`): k-block pc starts at pc*roundUp(m, MR),
                // row block ic at ic*kc inside it.
                let aBlock: UnsafePointer<Float>
                if let prepackedA {
                    aBlock = prepackedA + pc * roundUp(m, mr) + ic * kc
                } else {
                    packA(ic, mc, pc, kc, mr, packedA)
                    aBlock = UnsafePointer(packedA)
                }
                var jr = 0
                while jr < nc {
                    let cols = min(nr, nc - jr)
                    let bp = packedB + jr * kc
                    var ir = 0
                    while ir < mc {
                        let rows = min(mr, mc - ir)
                        let ap = aBlock + ir * kc
                        let ct = c + (ic + ir) * ldc + jc + jr
                        if rows == mr && cols == nr {
                            L.gemmMicro(bl, kc: kc, a: ap, b: bp, c: ct, ldc: ldc, accumulate: accumulate)
                        } else {
                            // Partial tile: run the full tile on a copy, write back the part inside C.
                            if accumulate {
                                for r in 0..<rows { (edge + r * nr).update(from: ct + r * ldc, count: cols) }
                            }
                            L.gemmMicro(bl, kc: kc, a: ap, b: bp, c: edge, ldc: nr, accumulate: accumulate)
                            for r in 0..<rows { (ct + r * ldc).update(from: edge + r * nr, count: cols) }
                        }
                        ir += mr
                    }
                    jr += nr
                }
                ic += mc
            }
            pc += kc
        }
        jc += nc
    }
}

// MARK: Packing for plain matrices

/// op(A) rows i0..<i0+mc, columns p0..<p0+kc into MR-row panels, times alpha.
@inline(__always)
func packPanelsA<L: KernelLevel>(_ level: L.Type, trans: Bool, a: UnsafePointer<Float>, lda: Int, alpha: Float, m: Int, i0: Int, mc: Int,
                 p0: Int, kc: Int, mr: Int, dest: UnsafeMutablePointer<Float>) {
    var d = dest
    var ir = 0
    while ir < mc {
        let rows = min(mr, mc - ir)
        if rows < mr { d.update(repeating: 0, count: mr * kc) }
        if trans {
            // A stored k x m: each k step is a contiguous run of `rows` values.
            for p in 0..<kc {
                let src = a + (p0 + p) * lda + i0 + ir
                let dp = d + p * mr
                if alpha == 1 { for r in 0..<rows { dp[r] = src[r] } } else { for r in 0..<rows { dp[r] = alpha * src[r] } }
            }
        } else {
            for r in 0..<rows {
                let src = a + (i0 + ir + r) * lda + p0
                if alpha == 1 { for p in 0..<kc { d[p * mr + r] = src[p] } } else { for p in 0..<kc { d[p * mr + r] = alpha * src[p] } }
            }
        }
        d += mr * kc
        ir += mr
    }
}

/// op(B) rows p0..<p0+kc, columns j0..<j0+nc into NR-column panels.
@inline(__always)
func packPanelsB<L: KernelLevel>(_ level: L.Type, trans: Bool, b: UnsafePointer<Float>, ldb: Int, n: Int, p0: Int, kc: Int, j0: Int, nc: Int,
                 nr: Int, dest: UnsafeMutablePointer<Float>) {
    var d = dest
    var jr = 0
    while jr < nc {
        let cols = min(nr, nc - jr)
        if trans {
            if cols < nr { d.update(repeating: 0, count: nr * kc) }
            for j in 0..<cols {
                let src = b + (j0 + jr + j) * ldb + p0
                for p in 0..<kc { d[p * nr + j] = src[p] }
            }
        } else if cols == nr {
            for p in 0..<kc { copyFloats(d + p * nr, b + (p0 + p) * ldb + j0 + jr, nr) }
        } else {
            for p in 0..<kc {
                let dp = d + p * nr
                copyFloats(dp, b + (p0 + p) * ldb + j0 + jr, cols)
                (dp + cols).update(repeating: 0, count: nr - cols)
            }
        }
        d += nr * kc
        jr += nr
    }
}

/// dst[0..<count] = src[0..<count] with 16-wide unaligned vector moves.
@inline(__always)
func copyFloats(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    var i = 0
    let s = UnsafeRawPointer(src), d = UnsafeMutableRawPointer(dst)
    while i + 16 <= count {
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: i * 4, as: SIMD16<Float>.self), toByteOffset: i * 4, as: SIMD16<Float>.self)
        i += 16
    }
    if i < count && count >= 16 {
        // Tail: one more vector ending at count, overlapping what was copied (same values).
        let t = (count - 16) * 4
        d.storeBytes(of: s.loadUnaligned(fromByteOffset: t, as: SIMD16<Float>.self), toByteOffset: t, as: SIMD16<Float>.self)
        return
    }
    // Short rows (LeNet's 10- and 14-wide planes): two overlapping 8- or 4-wide moves.
    if count >= 8 {
        let t = (count - 8) * 4
        let head = s.loadUnaligned(as: SIMD8<Float>.self), tail = s.loadUnaligned(fromByteOffset: t, as: SIMD8<Float>.self)
        d.storeBytes(of: head, as: SIMD8<Float>.self); d.storeBytes(of: tail, toByteOffset: t, as: SIMD8<Float>.self)
        return
    }
    if count >= 4 {
        let t = (count - 4) * 4
        let head = s.loadUnaligned(as: SIMD4<Float>.self), tail = s.loadUnaligned(fromByteOffset: t, as: SIMD4<Float>.self)
        d.storeBytes(of: head, as: SIMD4<Float>.self); d.storeBytes(of: tail, toByteOffset: t, as: SIMD4<Float>.self)
        return
    }
    while i < count { dst[i] = src[i]; i += 1 }
}

// MARK: Per-thread fallback workspace

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A per-thread buffer for `sgemm` calls without a workspace: allocated on first use, grown when a
/// larger problem comes, freed when the thread exits. Steady state: no allocation.
public func _threadWorkspace(_ count: Int) -> UnsafeMutablePointer<Float> {
    let key = _workspaceKey
    if let raw = pthread_getspecific(key) {
        let header = raw.assumingMemoryBound(to: Int.self)
        if header[0] >= count { return UnsafeMutableRawPointer(raw + 64).assumingMemoryBound(to: Float.self) }
        free(raw)
    }
    let capacity = max(count, 1 << 16)
    var raw: UnsafeMutableRawPointer? = nil
    _ = posix_memalign(&raw, 64, 64 + capacity * 4)
    raw!.assumingMemoryBound(to: Int.self)[0] = capacity
    pthread_setspecific(key, raw)
    return (raw! + 64).assumingMemoryBound(to: Float.self)
}

let _workspaceKey: pthread_key_t = {
    var key = pthread_key_t()
    pthread_key_create(&key) { free($0) }
    return key
}()
