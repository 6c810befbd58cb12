// Winograd F(2x2, 3x3) forward convolution (the `winograd` forward entry) for 3x3 stride-1 layers.
//
// The output is cut into 2x2 tiles (th x tw per sample, partial at odd oh / ow); tile (ty, tx) reads the
// 4x4 input patch d at rows 2ty - ph ..< 2ty - ph + 4, columns 2tx - pw ..< 2tx - pw + 4 (0 outside).
//     V = B^T d B        per input channel and tile (16 positions; additions only)
//     U = G g G^T        per (output, input) channel, once per call (additions and halvings)
//     M[pos][o][t] = sum over c of U[pos][o][c] * V[pos][c][t]      (16 independent products)
//     y = A^T M A + bias (2x2; additions only)
// with B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; 1/2 1/2 1/2; 1/2 -1/2 1/2; 0 0 1],
// A^T = [1 1 1 0; 0 1 -1 -1]. 16 multiplies per tile and channel pair instead of 36: 2.25x fewer.
//
// The tiles of a group (whole samples, or a sample's tile rows in chunks when one sample alone has more
// than `winogradGroupFloats` of V and M) are the columns of the products: V is written straight into the
// GEMM's packed-B panel layout (V[pos][panel][c][NR]) and U packed once per call as the GEMM's A panels
// (`_packWholeA`), so each product is the level's GEMM register tile (`gemmMicro`) without packing.
//
// Determinism: the transforms are fixed sequences of additions, subtractions and exact halvings (the
// same code, so the same bits, on every level); each M element is one chain of multiply-adds over c in
// increasing order, in k-blocks fixed by ic alone (as the GEMM: `GemmBlocking.kc`), so AVX2 and AVX-512
// give the same bits and the baseline its own (no fused multiply-add), as for every other entry. Tiles
// never mix: a tile's column does not depend on the group it is in, so neither the call's mb nor the
// threads change any bit.

extension ConvKernel {
    /// The `winograd` forward entry's predicate: 3x3, stride 1, padding <= 2, ic and oc >= 32 and at least
    /// 256 output pixels a sample, or the 8x8 planes of `winograd8x8` (which comes first in the list; this
    /// entry forced there gives the same bits, tested). Per layer, CPU ms per step of `ptrain bench train
    /// --profile` (batch 128, one thread, AVX-512, AMD EPYC Zen 4 shared with other jobs), direct/tapPlanes -> winograd:
    /// cifar-small 32->64 16x16 forward 11.5 -> 8.4, 64->64 16x16 forward 22.8 -> 14.9, backward 46.5 -> 38.5,
    /// 32->32 32x32 forward 22.2 -> 21.7; ResNet-20's 32-channel 16x16 stage forward 32.7 -> 30.3 (6 layers),
    /// but its 16-channel 32x32 stage 34.1 -> 36.1 (k = 16 keeps the register tiles' stores and the
    /// transforms' traffic too large a share: it keeps `direct`) and its 64-channel 8x8 stage 35.1 -> 35.4
    /// (tw = 4 leaves half of the 8-tile transform vectors empty: `winograd8x8` takes those planes).
    static func winogradApplies(_ g: ConvGeometry) -> Bool {
        g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.ph <= 2 && g.pw <= 2
            && g.ic >= winogradMinChannels && g.oc >= winogradMinChannels
            && (g.oh * g.ow >= winogradMinPixels || winograd8x8Applies(g))
    }

    /// The `winograd8x8` forward entry's predicate: 3x3, stride 1, 8x8 input planes with padding 1 (so 8x8
    /// outputs, 4 x 4 tiles a plane), ic and oc >= 32, ic + oc <= 768 (a whole sample's 16 tiles within one
    /// group's target). Its transforms (`winograd8x8Input`, `winograd8x8Output`) take the plane's 16 tiles
    /// as the lanes of one vector and do per element the operations of `winograd`'s, in the same order:
    /// the same bits. `ptrain bench kernels --filter 64to64-8x8` (AMD EPYC Zen 4, AVX-512, 1 thread),
    /// GFLOP/s of direct-conv FLOPs: forward `tapPlanes` 100.6, `winograd` 93.5-99.2 (its transforms of
    /// 4-tile rows took more time than its products), `winograd8x8` 150.8-150.9; backward data through
    /// the transposed forward 99.1 -> 148.5-149.4. The same form for 16x16 planes (two tile rows a vector)
    /// was tried: cifar 32->64 backward data 127.5 -> 148, but no change in ResNet-20's or cifar-small's
    /// step (`bench train`, 3 interleaved rounds), so 16x16 planes keep `winograd`.
    static func winograd8x8Applies(_ g: ConvGeometry) -> Bool {
        g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.ih == 8 && g.iw == 8 && g.ph == 1 && g.pw == 1
            && g.ic >= winogradMinChannels && g.oc >= winogradMinChannels && winogradTargetTiles(g) >= 16
    }

    /// Fewest input and output channels for `winograd`.
    static let winogradMinChannels = 32
    /// Fewest output pixels a sample for `winograd`.
    static let winogradMinPixels = 256

    /// Output tiles per sample (rows, columns).
    @inline(__always)
    static func winogradTiles(_ g: ConvGeometry) -> (th: Int, tw: Int) { ((g.oh + 1) / 2, (g.ow + 1) / 2) }

    /// Floats of V and M (16 x (ic + oc) a tile) aimed at for one group of tiles: 768 KiB, within the 1 MiB
    /// L2. `bench kernels` (AMD EPYC Zen 4, AVX-512, 1 thread, shared machine): cifar 64->64 16x16 forward
    /// 162 GFLOP/s (direct-conv FLOPs) against 118 with 384 KiB (48-tile chunks of a sample, panels padded to
    /// 64 columns), cifar 32->32 32x32 110 against 101 with whole 1 MiB samples.
    static let winogradGroupFloats = 196_608

    /// Tiles of V and M aimed at for one group.
    @inline(__always)
    static func winogradTargetTiles(_ g: ConvGeometry) -> Int { max(1, winogradGroupFloats / (16 * (g.ic + g.oc))) }

    /// Samples whose tiles are transformed and multiplied together (1 where a sample alone is over the target).
    var winogradGroup: Int {
        let g = geometry
        let (th, tw) = Self.winogradTiles(g)
        return max(1, min(max(g.mb, 1), Self.winogradTargetTiles(g) / (th * tw)))
    }

    /// Tile rows of a sample taken at a time: all of them, or (a sample over the target) as many as fit it.
    var winogradChunkRows: Int {
        let g = geometry
        let (th, tw) = Self.winogradTiles(g)
        return min(th, max(1, Self.winogradTargetTiles(g) / tw))
    }

    /// Rows of M and of the packed U at any level (oc rounded up to the largest register-tile rows).
    static func winogradPaddedRows(_ oc: Int) -> Int {
        var rows = 0
        for bl in GemmBlocking.allLevels { rows = max(rows, roundUp(oc, bl.mr)) }
        return rows
    }

    /// Columns of a group's products at any level (its tiles rounded up to whole NR panels).
    static func winogradPaddedColumns(_ tiles: Int) -> Int {
        var cols = 0
        for bl in GemmBlocking.allLevels { cols = max(cols, roundUp(tiles, bl.nr)) }
        return cols
    }

    /// Scratch floats of `winogradForward` (any mb <= geometry.mb, any level).
    var winogradScratchCount: Int {
        let g = geometry
        let tw = Self.winogradTiles(g).tw
        let rows = Self.winogradPaddedRows(g.oc), cols = Self.winogradPaddedColumns(winogradGroup * winogradChunkRows * tw)
        let packedU = 16 * roundUp(_packedACount(m: g.oc, n: 1, k: g.ic), 16)
        let plainU = 25 * roundUp(g.oc * g.ic, 16)   // and the transposed taps
        let v = 16 * g.ic * cols, m = 16 * rows * cols
        let rowsPadded = 2 * winogradChunkRows + 2
        let h = rowsPadded * 4 * roundUp(tw, 8) + rowsPadded * Self.winogradPaddedWidth(tw)
        return 64 + packedU + plainU + v + m + 16 + h
    }

    func winogradForward<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                         bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                         scratch: UnsafeMutablePointer<Float>, planes8x8: Bool = false) {
        let g = geometry
        let (ic, oc) = (g.ic, g.oc)
        let (th, tw) = Self.winogradTiles(g)
        let group = winogradGroup, chunkRows = winogradChunkRows
        let groupTiles = min(group, mb) * chunkRows * tw
        let bl = GemmBlocking.forShape(L.self, m: oc, n: groupTiles)
        let (mr, nr) = (bl.mr, bl.nr)
        let mPad = roundUp(oc, mr)
        let maxCols = roundUp(groupTiles, nr)
        let packedStride = roundUp(_packedACount(m: oc, n: 1, k: ic), 16)

        // Scratch: packed U (16 positions), plain U, the transposed taps, V, M, the row transforms of one
        // plane's chunk and its zero-padded copy.
        let packedU = align64(scratch)
        let plainU = packedU + 16 * packedStride
        let wT = plainU + 16 * roundUp(oc * ic, 16)
        let vBase = wT + 9 * roundUp(oc * ic, 16)
        let vPosStride = ic * maxCols
        let mBase = vBase + 16 * vPosStride
        let mPosStride = mPad * maxCols
        let hBase = mBase + 16 * mPosStride + 16   // 16: the output transform's last vector reads past M
        let rowsPadded = 2 * chunkRows + 2
        let tw8 = roundUp(tw, 8), wp = Self.winogradPaddedWidth(tw)
        let padded = hBase + rowsPadded * 4 * tw8
        // The side padding of the plane copy stays zero: each plane writes only the input's columns (and
        // zeroes whole rows above or below the input).
        padded.update(repeating: 0, count: rowsPadded * wp)

        // U = G g G^T for every pair q = o * ic + c, as plainU[pos][q] (rows of pairs qPad apart), 16 pairs
        // at a time from the taps transposed to wT[tap][q] (zero past the last pair).
        let pairs = oc * ic, qPad = roundUp(pairs, 16)
        for tap in 0..<9 {
            let row = wT + tap * qPad
            for q in 0..<pairs { row[q] = weight[q * 9 + tap] }
            for q in pairs..<qPad { row[q] = 0 }
        }
        Self.winogradWeightTransform(wT, pairs: qPad, u: plainU)
        for pos in 0..<16 {
            _packWholeA(L.self, m: oc, n: groupTiles, k: ic, a: plainU + pos * qPad, lda: ic, dest: packedU + pos * packedStride)
        }

        let kBlocks = (ic + bl.kc - 1) / bl.kc
        let kcEven = (ic + kBlocks - 1) / kBlocks
        let inPlane = g.ih * g.iw, outPlane = g.oh * g.ow
        var s0 = 0
        while s0 < mb {
            let count = min(group, mb - s0)
            var ty0 = 0
            while ty0 < th {
                // This group: samples s0 ..< s0 + count, tile rows ty0 ..< ty1 of each.
                let ty1 = min(th, ty0 + chunkRows)
                let unitTiles = (ty1 - ty0) * tw
                let tiles = count * unitTiles
                let cols = roundUp(tiles, nr)
                let rows = 2 * (ty1 - ty0) + 2
                // Input transform, plane by plane, into the packed-B panels of V.
                for t in 0..<count {
                    if planes8x8 {
                        // winograd8x8: the plane's 16 tiles are columns t * 16 ..< t * 16 + 16 (8 + 8, each half
                        // within one panel: nr is a multiple of 8 at every level).
                        let n0 = t * 16
                        let at0 = (n0 / nr) * (ic * nr) + n0 % nr, at1 = ((n0 + 8) / nr) * (ic * nr) + (n0 + 8) % nr
                        for c in 0..<ic {
                            Self.winograd8x8Input(input + ((s0 + t) * ic + c) * 64, dst: vBase + at0 + c * nr,
                                                  secondHalf: at1 - at0, posStride: vPosStride)
                        }
                        continue
                    }
                    for c in 0..<ic {
                        let plane = input + ((s0 + t) * ic + c) * inPlane
                        for r in 0..<rows {
                            let y = 2 * ty0 + r - g.ph
                            if y >= 0 && y < g.ih {
                                copyFloats(padded + r * wp + g.pw, plane + y * g.iw, g.iw)
                            } else {
                                (padded + r * wp).update(repeating: 0, count: wp)
                            }
                        }
                        Self.winogradRowTransforms(padded, rows: rows, tw: tw, h: hBase)
                        for ty in ty0..<ty1 {
                            let n0 = t * unitTiles + (ty - ty0) * tw
                            let h0 = hBase + (2 * (ty - ty0)) * 4 * tw8
                            var kb = 0
                            while kb < tw {
                                let n = n0 + kb
                                let lane = n % nr
                                let dst = vBase + (n / nr) * (ic * nr) + c * nr + lane
                                if kb + 8 <= tw && lane + 8 <= nr {
                                    Self.winogradColumnTransform(SIMD8<Float>.self, h0 + kb, tw8: tw8, dst: dst, posStride: vPosStride)
                                    kb += 8
                                } else if kb + 4 <= tw && lane + 4 <= nr {
                                    Self.winogradColumnTransform(SIMD4<Float>.self, h0 + kb, tw8: tw8, dst: dst, posStride: vPosStride)
                                    kb += 4
                                } else {
                                    for j in 0..<4 {
                                        let r0 = h0[j * tw8 + kb], r1 = h0[(4 + j) * tw8 + kb]
                                        let r2 = h0[(8 + j) * tw8 + kb], r3 = h0[(12 + j) * tw8 + kb]
                                        dst[j * vPosStride] = r0 - r2
                                        dst[(4 + j) * vPosStride] = r1 + r2
                                        dst[(8 + j) * vPosStride] = r2 - r1
                                        dst[(12 + j) * vPosStride] = r1 - r3
                                    }
                                    kb += 1
                                }
                            }
                        }
                    }
                }
                // Zero columns up to the last whole panel (read by the tiles, never stored).
                if cols > tiles {
                    for pos in 0..<16 {
                        let panel = vBase + pos * vPosStride + (tiles / nr) * (ic * nr)
                        let lane = tiles % nr
                        for c in 0..<ic { (panel + c * nr + lane).update(repeating: 0, count: nr - lane) }
                    }
                }
                // The 16 products M[pos] = U[pos] V[pos] (oc x tiles, k = ic).
                for pos in 0..<16 {
                    let a = packedU + pos * packedStride
                    let b = vBase + pos * vPosStride
                    let m = mBase + pos * mPosStride
                    var jr = 0
                    while jr < cols {
                        let bp = b + (jr / nr) * (ic * nr)
                        var ir = 0
                        while ir < oc {
                            var pc = 0
                            while pc < ic {
                                let kc = min(kcEven, ic - pc)
                                L.gemmMicro(bl, kc: kc, a: a + pc * mPad + ir * kc, b: bp + pc * nr, c: m + ir * cols + jr, ldc: cols,
                                            accumulate: pc > 0)
                                pc += kc
                            }
                            ir += mr
                        }
                        jr += nr
                    }
                }
                // Output transform y = A^T M A + bias, tile row by tile row.
                for t in 0..<count {
                    let out = output + (s0 + t) * oc * outPlane
                    if planes8x8 {
                        for o in 0..<oc {
                            winograd8x8Output(mBase + o * cols + t * 16, posStride: mPosStride, bias: bias?[o] ?? 0, plane: out + o * 64)
                        }
                        continue
                    }
                    for o in 0..<oc {
                        let b: Float = bias?[o] ?? 0
                        let plane = out + o * outPlane
                        let mo = mBase + o * cols + t * unitTiles
                        for ty in ty0..<ty1 {
                            winogradOutputRow(mo + (ty - ty0) * tw, posStride: mPosStride, tw: tw, bias: b,
                                              row0: plane + 2 * ty * g.ow, row1: 2 * ty + 1 < g.oh ? plane + (2 * ty + 1) * g.ow : nil,
                                              ow: g.ow)
                        }
                    }
                }
                ty0 = ty1
            }
            s0 += count
        }
    }

    /// The vertical half of B^T d B for V.scalarCount tiles of one tile row: `h` points at the row
    /// transforms of the tile row's first padded row (rows 4 * tw8 floats apart), `dst` at V[0][c][tile].
    @inline(__always)
    static func winogradColumnTransform<V: SIMD>(_: V.Type, _ h: UnsafePointer<Float>, tw8: Int, dst: UnsafeMutablePointer<Float>,
                                                   posStride: Int) where V.Scalar == Float {
        let src = UnsafeRawPointer(h), d = UnsafeMutableRawPointer(dst)
        let rowBytes = 16 * tw8, ps = 4 * posStride
        for j in 0..<4 {
            let o = 4 * j * tw8
            let r0 = src.loadUnaligned(fromByteOffset: o, as: V.self)
            let r1 = src.loadUnaligned(fromByteOffset: o + rowBytes, as: V.self)
            let r2 = src.loadUnaligned(fromByteOffset: o + 2 * rowBytes, as: V.self)
            let r3 = src.loadUnaligned(fromByteOffset: o + 3 * rowBytes, as: V.self)
            d.storeBytes(of: r0 - r2, toByteOffset: j * ps, as: V.self)
            d.storeBytes(of: r1 + r2, toByteOffset: (4 + j) * ps, as: V.self)
            d.storeBytes(of: r2 - r1, toByteOffset: (8 + j) * ps, as: V.self)
            d.storeBytes(of: r1 - r3, toByteOffset: (12 + j) * ps, as: V.self)
        }
    }

    /// U = G g G^T for `pairs` (a multiple of 16) weight pairs: `w` holds the 9 taps as rows w[tap][q], `u`
    /// gets the 16 positions as rows u[pos][q], both rows `pairs` floats apart. Halvings are exact.
    @inline(__always)
    static func winogradWeightTransform(_ w: UnsafePointer<Float>, pairs: Int, u: UnsafeMutablePointer<Float>) {
        typealias V = SIMD16<Float>
        let src = UnsafeRawPointer(w), dst = UnsafeMutableRawPointer(u)
        let half = V(repeating: 0.5), rb = 4 * pairs
        var q = 0
        while q < pairs {
            @inline(__always) func ld(_ tap: Int) -> V { src.loadUnaligned(fromByteOffset: tap * rb + 4 * q, as: V.self) }
            @inline(__always) func st(_ pos: Int, _ v: V) { dst.storeBytes(of: v, toByteOffset: pos * rb + 4 * q, as: V.self) }
            // G g (4 x 3), column by column.
            var t = InlineArray<12, V>(repeating: V())
            for j in 0..<3 {
                let (g0, g1, g2) = (ld(j), ld(3 + j), ld(6 + j))
                t[j] = g0
                t[3 + j] = ((g0 + g1) + g2) * half
                t[6 + j] = ((g0 - g1) + g2) * half
                t[9 + j] = g2
            }
            // (G g) G^T, row by row.
            for i in 0..<4 {
                let (a0, a1, a2) = (t[3 * i], t[3 * i + 1], t[3 * i + 2])
                st(4 * i, a0)
                st(4 * i + 1, ((a0 + a1) + a2) * half)
                st(4 * i + 2, ((a0 - a1) + a2) * half)
                st(4 * i + 3, a2)
            }
            q += 16
        }
    }

    /// Floats of a row of the zero-padded plane copy: 2 * tw + 2 columns read, and the vectors of the
    /// last block of 8 tiles reading up to 2 * (tw + 7) + 18.
    @inline(__always)
    static func winogradPaddedWidth(_ tw: Int) -> Int { roundUp(2 * tw + 32, 16) }

    /// The horizontal half of B^T d B for every padded row of one channel plane, from its zero-padded copy
    /// `padded` (rows of `winogradPaddedWidth`; row r is input row r - ph, column x input column x - pw):
    /// row r of h holds 4 arrays of roundUp(tw, 8) values, h[r][j][tx] = (d B)[j] of columns 2tx ..< 2tx + 4.
    @inline(__always)
    static func winogradRowTransforms(_ padded: UnsafePointer<Float>, rows: Int, tw: Int, h: UnsafeMutablePointer<Float>) {
        let wp = winogradPaddedWidth(tw), tw8 = roundUp(tw, 8)
        for r in 0..<rows {
            let src = UnsafeRawPointer(padded + r * wp)
            let hr = UnsafeMutableRawPointer(h + r * 4 * tw8)
            var kb = 0
            while kb < tw {
                let a = src.loadUnaligned(fromByteOffset: 8 * kb, as: SIMD16<Float>.self)
                let b = src.loadUnaligned(fromByteOffset: 8 * kb + 8, as: SIMD16<Float>.self)
                let (e0, o0, e1, o1) = (a.evenHalf, a.oddHalf, b.evenHalf, b.oddHalf)
                hr.storeBytes(of: e0 - e1, toByteOffset: 4 * kb, as: SIMD8<Float>.self)
                hr.storeBytes(of: o0 + e1, toByteOffset: 4 * (tw8 + kb), as: SIMD8<Float>.self)
                hr.storeBytes(of: e1 - o0, toByteOffset: 4 * (2 * tw8 + kb), as: SIMD8<Float>.self)
                hr.storeBytes(of: o0 - o1, toByteOffset: 4 * (3 * tw8 + kb), as: SIMD8<Float>.self)
                kb += 8
            }
        }
    }
}

extension ConvKernel {
    /// V = B^T d B of the 16 tiles of one 8x8 input plane (padding 1), tile (ty, tx) in lane 4 ty + tx: lane l
    /// of position p goes to dst[p * posStride + l] for l < 8 and to dst[p * posStride + secondHalf + l - 8]
    /// for l >= 8. Per element the operations of `winogradRowTransforms` then `winogradColumnTransform`:
    /// row transform h_i[j] of padded row 2 ty + i from its columns 2 tx + 0 ..< 4 (d0..d3: d0 - d2,
    /// d1 + d2, d2 - d1, d1 - d3), then the column transform of h_0..h_3 (h0 - h2, h1 + h2, h2 - h1,
    /// h1 - h3), zero lanes standing for the padding as zeros do in `winograd`'s padded copy.
    @inline(__always)
    static func winograd8x8Input(_ plane: UnsafePointer<Float>, dst: UnsafeMutablePointer<Float>, secondHalf: Int,
                                 posStride: Int) {
        typealias V16 = SIMD16<Float>
        typealias V8 = SIMD8<Float>
        typealias V4 = SIMD4<Float>
        typealias H = (V16, V16, V16, V16)
        let raw = UnsafeRawPointer(plane)
        let x0 = raw.loadUnaligned(fromByteOffset: 0, as: V16.self), x1 = raw.loadUnaligned(fromByteOffset: 64, as: V16.self)
        let x2 = raw.loadUnaligned(fromByteOffset: 128, as: V16.self), x3 = raw.loadUnaligned(fromByteOffset: 192, as: V16.self)
        /// Columns 2 tx + jj - 1 (tx = 0 ..< 4) of a row, 0 outside.
        @inline(__always) func columns(_ v: V8, _ jj: Int) -> V4 {
            switch jj {
            case 0: return V4(0, v[1], v[3], v[5])
            case 1: return v.evenHalf
            case 2: return v.oddHalf
            default: return V4(v[2], v[4], v[6], 0)
            }
        }
        /// The row transform (d0 - d2, d1 + d2, d2 - d1, d1 - d3) of padded rows 2 ty + i, whose input rows
        /// 2 ty + i - 1 for ty = 0 ..< 4 are a, b, c, e: d(jj)[lane (ty, tx)] = padded[2 ty + i][2 tx + jj].
        @inline(__always) func rowTransform(_ a: V8, _ b: V8, _ c: V8, _ e: V8) -> H {
            @inline(__always) func d(_ jj: Int) -> V16 {
                V16(lowHalf: V8(lowHalf: columns(a, jj), highHalf: columns(b, jj)),
                    highHalf: V8(lowHalf: columns(c, jj), highHalf: columns(e, jj)))
            }
            let d0 = d(0), d1 = d(1), d2 = d(2), d3 = d(3)
            return (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
        }
        let zero = V8()
        let h0 = rowTransform(zero, x0.highHalf, x1.highHalf, x2.highHalf)     // input rows -1, 1, 3, 5
        let h1 = rowTransform(x0.lowHalf, x1.lowHalf, x2.lowHalf, x3.lowHalf)  // 0, 2, 4, 6
        let h2 = rowTransform(x0.highHalf, x1.highHalf, x2.highHalf, x3.highHalf)
        let h3 = rowTransform(x1.lowHalf, x2.lowHalf, x3.lowHalf, zero)
        let out = UnsafeMutableRawPointer(dst)
        let ps = 4 * posStride, second = 4 * secondHalf
        @inline(__always) func store(_ pos: Int, _ v: V16) {
            out.storeBytes(of: v.lowHalf, toByteOffset: pos * ps, as: V8.self)
            out.storeBytes(of: v.highHalf, toByteOffset: pos * ps + second, as: V8.self)
        }
        @inline(__always) func column(_ j: Int, _ r0: V16, _ r1: V16, _ r2: V16, _ r3: V16) {
            store(j, r0 - r2)
            store(4 + j, r1 + r2)
            store(8 + j, r2 - r1)
            store(12 + j, r1 - r3)
        }
        column(0, h0.0, h1.0, h2.0, h3.0)
        column(1, h0.1, h1.1, h2.1, h3.1)
        column(2, h0.2, h1.2, h2.2, h3.2)
        column(3, h0.3, h1.3, h2.3, h3.3)
    }
}

/// y = A^T M A + bias of the 16 tiles of one 8x8 output plane (lanes 4 ty + tx, as `winograd8x8Input`):
/// `m` points at M[0][o][the plane's first tile] (positions `posStride` apart), `plane` at its 64 outputs.
/// Per element the operations of `winogradOutputRow`.
@inline(__always)
func winograd8x8Output(_ m: UnsafePointer<Float>, posStride: Int, bias: Float, plane: UnsafeMutablePointer<Float>) {
    typealias V = SIMD16<Float>
    let p = UnsafeRawPointer(m)
    @inline(__always) func ld(_ pos: Int) -> V { p.loadUnaligned(fromByteOffset: pos * posStride * 4, as: V.self) }
    let vb = V(repeating: bias)
    let m0 = ld(0), m1 = ld(1), m2 = ld(2), m3 = ld(3), m4 = ld(4), m5 = ld(5), m6 = ld(6), m7 = ld(7)
    let m8 = ld(8), m9 = ld(9), m10 = ld(10), m11 = ld(11), m12 = ld(12), m13 = ld(13), m14 = ld(14), m15 = ld(15)
    let a0 = (m0 + m4) + m8, a1 = (m1 + m5) + m9
    let a2 = (m2 + m6) + m10, a3 = (m3 + m7) + m11
    let y00 = ((a0 + a1) + a2) + vb, y01 = ((a1 - a2) - a3) + vb
    let b0 = (m4 - m8) - m12, b1 = (m5 - m9) - m13
    let b2 = (m6 - m10) - m14, b3 = (m7 - m11) - m15
    let y10 = ((b0 + b1) + b2) + vb, y11 = ((b1 - b2) - b3) + vb
    // Output rows 2 ty and 2 ty + 1 (one vector, lanes 4 ty ..< 4 ty + 4): each tile's two columns side by side.
    let out = UnsafeMutableRawPointer(plane)
    @inline(__always) func rows(_ ty: Int) -> V {
        let l = 4 * ty
        return V(y00[l], y01[l], y00[l + 1], y01[l + 1], y00[l + 2], y01[l + 2], y00[l + 3], y01[l + 3],
                 y10[l], y11[l], y10[l + 1], y11[l + 1], y10[l + 2], y11[l + 2], y10[l + 3], y11[l + 3])
    }
    out.storeBytes(of: rows(0), toByteOffset: 0, as: V.self)
    out.storeBytes(of: rows(1), toByteOffset: 64, as: V.self)
    out.storeBytes(of: rows(2), toByteOffset: 128, as: V.self)
    out.storeBytes(of: rows(3), toByteOffset: 192, as: V.self)
}

/// One tile row of y = A^T M A + bias, 8 tiles at a time: `m` points at M[0][o][first tile of the row];
/// positions are `posStride` apart (the last block may read up to 7 values past the row: unused).
/// Writes output row 2ty (row0) and, unless it is past the last row, 2ty + 1 (row1): 2 * tw columns
/// cut to ow (odd ow: the last tile's second column is dropped).
@inline(__always)
func winogradOutputRow(_ m: UnsafePointer<Float>, posStride: Int, tw: Int, bias: Float,
                       row0: UnsafeMutablePointer<Float>, row1: UnsafeMutablePointer<Float>?, ow: Int) {
    typealias V = SIMD8<Float>
    let vb = V(repeating: bias)
    var kb = 0
    while kb < tw {
        let p = UnsafeRawPointer(m + kb)
        @inline(__always) func ld(_ pos: Int) -> V { p.loadUnaligned(fromByteOffset: pos * posStride * 4, as: V.self) }
        let m0 = ld(0), m1 = ld(1), m2 = ld(2), m3 = ld(3), m4 = ld(4), m5 = ld(5), m6 = ld(6), m7 = ld(7)
        let m8 = ld(8), m9 = ld(9), m10 = ld(10), m11 = ld(11)
        // A^T M (rows 0 and 1, 4 columns each), then times A.
        let a0 = (m0 + m4) + m8, a1 = (m1 + m5) + m9
        let a2 = (m2 + m6) + m10, a3 = (m3 + m7) + m11
        let count = min(16, ow - 2 * kb)
        winogradStoreRow(winogradZip(((a0 + a1) + a2) + vb, ((a1 - a2) - a3) + vb), row0 + 2 * kb, count: count)
        if let row1 {
            let m12 = ld(12), m13 = ld(13), m14 = ld(14), m15 = ld(15)
            let b0 = (m4 - m8) - m12, b1 = (m5 - m9) - m13
            let b2 = (m6 - m10) - m14, b3 = (m7 - m11) - m15
            winogradStoreRow(winogradZip(((b0 + b1) + b2) + vb, ((b1 - b2) - b3) + vb), row1 + 2 * kb, count: count)
        }
        kb += 8
    }
}

/// (a0, b0, a1, b1, ...): written element by element, which LLVM turns into shuffles (through the
/// `evenHalf` / `oddHalf` setters it made gathers of the loads feeding them).
@inline(__always)
func winogradZip(_ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD16<Float> {
    SIMD16(a[0], b[0], a[1], b[1], a[2], b[2], a[3], b[3], a[4], b[4], a[5], b[5], a[6], b[6], a[7], b[7])
}

/// Stores the first `count` (1...16) values of v.
@inline(__always)
func winogradStoreRow(_ v: SIMD16<Float>, _ dst: UnsafeMutablePointer<Float>, count: Int) {
    let d = UnsafeMutableRawPointer(dst)
    if count == 16 {
        d.storeBytes(of: v, as: SIMD16<Float>.self)
        return
    }
    var i = 0
    if count >= 8 { d.storeBytes(of: v.lowHalf, as: SIMD8<Float>.self); i = 8 }
    while i < count { dst[i] = v[i]; i += 1 }
}
