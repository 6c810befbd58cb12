// Direct forward convolution for stride 1 and few output channels (LeNet: oc = 6, 16), where an
// unfolded (im2col) matrix would cost more to write than the GEMM on it saves.
//
// The trick: pad each input plane once into scratch (Hp x Wp) and compute the output on the padded
// width: out'[o][q] with q = y*Wp + x reads pad[c][q + i*Wp + j] for every tap, so each tap is one
// contiguous vector load for consecutive q, whatever row they fall in. Columns x >= ow are computed
// and dropped. Register tiles: `ConvTile` (the level's shapes) with the tap offsets as the implicit
// im2col, as `directTilesForward`; a single output channel (LeNet conv1's backward data, run as the
// transposed convolution with oc = 1) takes one row of many vectors.

/// Row pitch of the padded planes. Rows share their zero padding: row y's right padding is row y+1's
/// left padding, so a pitch of iw + pw suffices when pw <= kw - 1 (an output column reading left of
/// its row lands in the previous row's zero tail, one reading right in its own). LeNet conv1 32 -> 30,
/// the transposed LeNet conv2 (backward data, pw' = 4) 18 -> 14, CIFAR 3x3 34 -> 33: fewer wasted FMAs
/// on the columns x >= ow.
@inline(__always)
func directPaddedWidth(_ g: ConvGeometry) -> Int { g.pw <= g.kw - 1 ? g.iw + g.pw : g.iw + 2 * g.pw }

extension ConvKernel {
    /// Scratch floats for `directForward`: the padded sample (plus a tail a whole tile may read past the
    /// last plane), the padded-width output of one sample, the packed weights and the tap offsets.
    static func directScratchCount(_ g: ConvGeometry) -> Int {
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let q = roundUp(g.oh * wp, 16)
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        return g.ic * planeStride + 16 * maxTileVectors + g.oc * q + 32 + roundUp(packedTileRows(g.oc) * g.reduction, 16)
            + roundUp(g.reduction, 16) + 16
    }

    func directForward<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                       bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                       scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let (oh, ow) = (g.oh, g.ow)
        let w = L.width
        // Whole vectors of the level (<= the 16-rounded count the scratch holds): fewer wasted FMAs at AVX2.
        let qCount = roundUp(oh * wp, w)
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let padded = align64(scratch)
        let full = padded + g.ic * planeStride + 16 * Self.maxTileVectors
        let vectors = qCount / w
        let (mr, nv) = Self.convTileShape(L.self, oc: g.oc, vectors: vectors)
        let packed = align64(full + g.oc * qCount)
        let packedCount = roundUp(roundUp(g.oc, mr) * g.reduction, 16)
        let offsets = UnsafeMutableRawPointer(packed + packedCount).assumingMemoryBound(to: Int32.self)
        _prepareConvTiles(L.self, g, wp: wp, planeStride: planeStride, mr: mr, weight: weight, packed: packed, offsets: offsets)
        // Borders stay zero; interiors are rewritten.
        padded.update(repeating: 0, count: g.ic * planeStride + 16 * Self.maxTileVectors)
        for s in 0..<mb {
            let x = input + s * g.ic * g.ih * g.iw
            for c in 0..<g.ic {
                for y in 0..<g.ih {
                    copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                }
            }
            _runConvTiles(L.self, mr: mr, nv: nv, k: g.reduction, oc: g.oc, packed: packed, offsets: offsets, vectors: vectors,
                          input: padded, inPos: { v in v * L.width }, out: full, ldo: qCount, outPos: { v in v * L.width }, bias: nil)
            let out = output + s * g.oc * oh * ow
            for o in 0..<g.oc {
                let b = bias?[o] ?? 0
                for y in 0..<oh { copyAddingConstant(out + (o * oh + y) * ow, full + o * qCount + y * wp, b, ow) }
            }
        }
    }
}

// MARK: Backward weights without unfolding

// dW[o][c][i][j] = sum over samples and output pixels of dOut[o][y][x] * pad[c][y+i][x+j]. On the padded
// width (q = y*Wp + x, with dOut' zero for x >= ow) that is a dot product of two contiguous vectors:
// dOut'[o][0..<L] . pad[c][i*Wp + j + 0..<L]. So each tap is a shifted view of the padded plane and
// nothing is unfolded (LeNet: im2col + the inner-product GEMM were ~30% of a step).

extension ConvKernel {
    /// Padded-width length of one sample's output gradient row block, rounded to whole vectors.
    static func directWeightsLength(_ g: ConvGeometry) -> Int { roundUp(g.oh * directPaddedWidth(g), 16) }

    /// Samples handled per pass of `directBackwardWeights`: as many as keep the group's padded inputs and
    /// output gradients within ~768 KiB (L2 is 1 MiB), so each tile's lane sums are amortised over
    /// several samples. Fixed by the geometry (its mb), so the summation order depends only on the shard size.
    var directWeightsGroup: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let perSample = g.ic * roundUp(hp * wp + 32 + g.kw, 16) + g.oc * Self.directWeightsLength(g)
        return max(1, min(max(g.mb, 1), 196_608 / perSample))
    }

    /// Whether backward weights runs `directBackwardWeights`: stride 1, and for `im2colGemm` layers only
    /// when the padded width wastes at most 1/8 of the FMAs. CIFAR-small b128 (shards of 16, 1 thread):
    /// 436 -> 468 and 417 -> 450 images/s against im2col + `sgemmDotNT` for all four 3x3 layers; 32x32
    /// layers only: 455 / 437.
    var backwardWeightsDirect: Bool {
        let g = geometry
        guard g.sh == 1 && g.sw == 1, implementation == .directSmall || implementation == .im2colGemm else { return false }
        if implementation == .directSmall { return true }
        return 8 * Self.directWeightsLength(g) <= 9 * g.oh * g.ow
    }

    /// Most columns (taps) of a dot-product tile on any level.
    static let maxDotColumns = 8

    var directWeightsScratchCount: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        return directWeightsGroup * (g.ic * planeStride + g.oc * Self.directWeightsLength(g)) + 32 + 2 * Self.maxDotColumns
    }

    func directBackwardWeights<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                               weightGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let (oh, ow) = (g.oh, g.ow)
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let length = Self.directWeightsLength(g)
        let group = directWeightsGroup
        let inStride = g.ic * planeStride, gradStride = g.oc * length
        let padded = align64(scratch)
        let grads = padded + group * inStride
        // Borders, the columns x >= ow and the tails stay zero; interiors are rewritten per group.
        padded.update(repeating: 0, count: group * (inStride + gradStride))
        let tapOffsets = UnsafeMutableRawPointer(grads + group * gradStride).assumingMemoryBound(to: Int.self)
        let taps = g.kh * g.kw, reduction = g.ic * taps
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * oh * ow
        var s0 = 0
        while s0 < mb {
            let count = min(group, mb - s0)
            for t in 0..<count {
                let x = input + (s0 + t) * inSize, dy = outputGrad + (s0 + t) * outSize
                for c in 0..<g.ic {
                    for y in 0..<g.ih {
                        copyFloats(padded + t * inStride + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                    }
                }
                for o in 0..<g.oc {
                    for y in 0..<oh { copyFloats(grads + t * gradStride + o * length + y * wp, dy + (o * oh + y) * ow, ow) }
                }
            }
            // Tile: the level's R channels x C taps, or C x R when that pads less (LeNet conv1 on AVX-512:
            // 6 channels x 25 taps computes 6 x 28 instead of 8 x 30).
            let (dr, dc) = L.dotShape
            let wide = roundUp(g.oc, dc) * roundUp(reduction, dr) < roundUp(g.oc, dr) * roundUp(reduction, dc)
            let tileRows = wide ? dc : dr, tileCols = wide ? dr : dc
            var tap = 0
            while tap < reduction {
                let cols = min(tileCols, reduction - tap)
                for k in 0..<cols {
                    let r = tap + k
                    let c = r / taps, i = (r % taps) / g.kw, j = r % g.kw
                    tapOffsets[k] = c * planeStride + i * wp + j
                }
                var o0 = 0
                while o0 < g.oc {
                    let rows = min(tileRows, g.oc - o0)
                    L.directWeightsTile(transposed: wide, samples: count, length: length, a: grads + o0 * length, lda: length,
                                        aStride: gradStride, rows: rows, b: padded, bStride: inStride, offsets: tapOffsets,
                                        cols: cols, c: weightGrad + o0 * reduction + tap, ldc: reduction)
                    o0 += tileRows
                }
                tap += tileCols
            }
            s0 += count
        }
    }
}
