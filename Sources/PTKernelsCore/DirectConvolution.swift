// Direct forward convolution for stride 1 (the `direct` forward entry): few output channels (LeNet:
// oc = 6, 16), where an unfolded (im2col) matrix would cost more to write than the GEMM on it saves, and
// the layers whose output rows are whole 16-pixel vectors (CIFAR 32x32 and 16x16, forward and the
// transposed forward of backward data; `outputRowsAreWholeVectors`).
//
// The input planes are read as zero-padded planes (Hp x Wp): copied once per sample into scratch, or,
// without padding, read in place (a sample's planes already are the padded planes). Output pixel
// [y][x] of tap (c, i, j) reads pad[c][(y+i)*Wp + x + j], so W consecutive outputs of a row are one
// contiguous vector load per tap: the B operand of a GEMM read straight from the planes (implicit
// im2col: no unfolded matrix, no packed B panel). The weights are packed once per call into MR-row
// panels. A register tile (`ConvTile`, the level's shapes) is MR output channels x NV vectors; vector
// v reads at inPos[v] and is stored at outPos[v], two tables of the geometry and the level written
// once per call, so a tile needs no bookkeeping beyond its table slice. Two layouts:
// - rows: each output row is ceil(ow/W) vectors, the last one shifted back to end at ow (it overlaps
//   its neighbour and rewrites equal values); tiles store straight into the output, bias preloaded.
//   Used when its extra vectors cost less than the copy-out (`directRowVectors`; LeNet conv1 forward:
//   28 x 2 vectors against 53 at AVX-512), always when ow is a multiple of W.
// - padded width: the output is computed on the padded width, q = y*Wp + x, so a vector may span
//   rows (LeNet conv2's 10-wide rows at AVX-512: 9 vectors instead of 10 x 1); columns x >= ow are
//   computed and dropped when the rows are copied out. Read in place, the last vectors of a plane read
//   up to W + kw - 2 floats past the sample, so the call's last sample (and any sample shorter than
//   16 + kw floats) is copied, with a zero tail.
// Each output value is bias (or 0) then one chain of fused multiply-adds over p = (c, i, j) in
// increasing order, in both layouts: a function of the geometry only.

/// Row pitch of the padded planes. Rows share their zero padding: row y's right padding is row y+1's
/// left padding, so a pitch of iw + pw suffices when pw <= kw - 1 (an output column reading left of
/// its row lands in the previous row's zero tail, one reading right in its own). LeNet conv1 32 -> 30,
/// the transposed LeNet conv2 (backward data, pw' = 4) 18 -> 14, CIFAR 3x3 34 -> 33: fewer wasted FMAs
/// on the columns x >= ow.
@inline(__always)
func directPaddedWidth(_ g: ConvGeometry) -> Int { g.pw <= g.kw - 1 ? g.iw + g.pw : g.iw + 2 * g.pw }

extension ConvKernel {
    /// Whether the direct forward reads the input samples in place (no padding: wp = iw, hp = ih).
    @inline(__always)
    static func directInPlace(_ g: ConvGeometry) -> Bool { g.ph == 0 && g.pw == 0 }

    /// Floats between padded planes: the plane itself in place, else the plane and a zero tail that the
    /// padded-width layout's last vectors read.
    @inline(__always)
    static func directPlaneStride(_ g: ConvGeometry) -> Int {
        directInPlace(g) ? g.ih * g.iw : roundUp((g.ih + 2 * g.ph) * directPaddedWidth(g) + 32 + g.kw, 16)
    }

    /// Vectors of `w` outputs per output row in the rows layout, or nil for the padded-width layout: rows
    /// when their extra vectors cost (k multiply-adds each) at most what copying the padded rows out costs
    /// (taken as 3 multiply-adds a vector). LeNet conv1 forward (k = 25): rows at AVX-512 (56 vectors
    /// against 53) and AVX2; LeNet conv2 backward data (k = 400) at AVX2: padded width (25 against 28).
    @inline(__always)
    static func directRowVectors(_ g: ConvGeometry, width w: Int) -> Int? {
        guard g.ow >= w else { return nil }
        let perRow = (g.ow + w - 1) / w
        let paddedVectors = (g.oh * directPaddedWidth(g) + w - 1) / w
        return (perRow * g.oh - paddedVectors) * g.reduction <= 3 * paddedVectors ? perRow : nil
    }

    /// Most vectors of one sample on any level, either layout (the narrowest level's vectors).
    static func directMaxVectors(_ g: ConvGeometry) -> Int {
        let w = AllLevels.narrowestWidth
        return g.oh * (directPaddedWidth(g) + w - 1) / w + 2
    }

    /// Scratch floats of `directForward` (any mb, any level): the padded sample with a zero tail, the
    /// padded-width output of one sample (unless every level uses the rows layout), the packed weights,
    /// the tap offsets and the two position tables.
    static func directScratchCount(_ g: ConvGeometry) -> Int {
        let planes = g.ic * directPlaneStride(g) + roundUp(16 + g.kw, 16)
        let full = g.ow % 16 == 0 ? 0 : g.oc * roundUp(g.oh * directPaddedWidth(g), 16)
        let packed = roundUp(packedTileRows(g.oc) * g.reduction, 16)
        return 16 + roundUp(planes, 16) + 16 + full + 16 + packed + roundUp(g.reduction, 16) + 16 + 4 * directMaxVectors(g)
    }

    func directForward<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                       bias: UnsafePointer<Float>?, output: UnsafeMutablePointer<Float>,
                                       scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let wp = directPaddedWidth(g)
        let (oh, ow) = (g.oh, g.ow)
        let w = L.width
        let inPlace = Self.directInPlace(g)
        let planeStride = Self.directPlaneStride(g)
        let rowVectors = Self.directRowVectors(g, width: w)
        // Padded width: whole vectors of the level (<= the 16-rounded count the scratch holds).
        let qCount = roundUp(oh * wp, w)
        let vectors = rowVectors.map { $0 * oh } ?? qCount / w
        let (mr, nv) = Self.convTileShape(L.self, oc: g.oc, vectors: vectors)
        let planesCount = roundUp(g.ic * planeStride + roundUp(16 + g.kw, 16), 16)
        let padded = align64(scratch)
        let full = align64(padded + planesCount)
        let packed = align64(full + (rowVectors == nil ? g.oc * qCount : 0))
        let packedCount = roundUp(roundUp(g.oc, mr) * g.reduction, 16)
        let offsets = UnsafeMutableRawPointer(packed + packedCount).assumingMemoryBound(to: Int32.self)
        let inPos = UnsafeMutableRawPointer(align64(packed + packedCount + roundUp(g.reduction, 16))).assumingMemoryBound(to: Int.self)
        let outPos = inPos + vectors
        _prepareConvTiles(L.self, g, wp: wp, planeStride: planeStride, mr: mr, weight: weight, packed: packed, offsets: offsets)
        if let perRow = rowVectors {
            var v = 0
            for y in 0..<oh {
                for t in 0..<perRow {
                    let x0 = min(t * w, ow - w)
                    inPos[v] = y * wp + x0; outPos[v] = y * ow + x0
                    v += 1
                }
            }
        } else {
            for v in 0..<vectors { inPos[v] = v * w; outPos[v] = v * w }
        }
        // Samples read in place: the rows layout never reads past a sample (its vectors end at ow); the
        // padded width reads up to W + kw - 2 floats into the next sample, so not for the call's last one
        // (nor for samples too small to hold that).
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * oh * ow
        let readInPlace = !inPlace ? 0 : rowVectors != nil ? mb : inSize >= 16 + g.kw ? mb - 1 : 0
        let rowSpans = DirectRowSpans.pay(g) ? DirectRowSpans(g: g, wp: wp, width: w) : nil
        if readInPlace < mb { padded.update(repeating: 0, count: planesCount) }   // borders and tails stay zero
        for s in 0..<mb {
            let x = input + s * inSize
            let planes: UnsafePointer<Float>
            if s < readInPlace {
                planes = x
            } else if inPlace {
                copyFloats(padded, x, inSize)
                planes = UnsafePointer(padded)
            } else {
                for c in 0..<g.ic {
                    for y in 0..<g.ih {
                        copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                    }
                }
                planes = UnsafePointer(padded)
            }
            let out = output + s * outSize
            if rowVectors != nil {
                _runConvTiles(L.self, mr: mr, nv: nv, k: g.reduction, oc: g.oc, packed: packed, offsets: offsets, vectors: vectors,
                              input: planes, inPos: inPos, out: out, ldo: oh * ow, outPos: outPos, bias: bias, rowSpans: rowSpans)
            } else {
                _runConvTiles(L.self, mr: mr, nv: nv, k: g.reduction, oc: g.oc, packed: packed, offsets: offsets, vectors: vectors,
                              input: planes, inPos: inPos, out: full, ldo: qCount, outPos: outPos, bias: bias, rowSpans: rowSpans)
                for o in 0..<g.oc {
                    for y in 0..<oh { copyFloats(out + (o * oh + y) * ow, full + o * qCount + y * wp, ow) }
                }
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

    /// The `direct` backward-weights entry's predicate: stride 1, and few output channels (oc <= 16,
    /// LeNet) or a padded width that wastes at most 1/8 of the FMAs. CIFAR-small b128 (shards of 16,
    /// 1 thread): 436 -> 468 and 417 -> 450 images/s against im2col + `sgemmDotNT` for all four 3x3
    /// layers; 32x32 layers only: 455 / 437.
    static func backwardWeightsDirect(_ g: ConvGeometry) -> Bool {
        guard g.sh == 1 && g.sw == 1 else { return false }
        return g.oc <= 16 || 8 * directWeightsLength(g) <= 9 * g.oh * g.ow
    }

    var directWeightsScratchCount: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        return directWeightsGroup * (g.ic * planeStride + g.oc * Self.directWeightsLength(g)) + 32 + 2 * AllLevels.maxDotColumns
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
            _weightsDotTiles(L.self, oc: g.oc, reduction: reduction, samples: count, length: length, grads: grads,
                             gradStride: gradStride, planes: padded, planeStride: inStride, tapOffsets: tapOffsets,
                             weightGrad: weightGrad) { r in
                let c = r / taps, i = (r % taps) / g.kw, j = r % g.kw
                return c * planeStride + i * wp + j
            }
            s0 += count
        }
    }
}

/// weightGrad[o][r] += sum over `samples` samples t and q < length of grads[t*gradStride + o*length + q] *
/// planes[t*planeStride + tapOffset(r) + q], as 16-lane dot-product tiles (`DotTile.runStrided`) of the
/// level's R channels x C taps, or C x R when that pads less (LeNet conv1 on AVX-512: 6 channels x 25
/// taps computes 6 x 28 instead of 8 x 30). `tapOffsets` holds one tile's columns of offsets.
@inline(__always)
func _weightsDotTiles<L: KernelLevel>(_ level: L.Type, oc: Int, reduction: Int, samples: Int, length: Int,
                                      grads: UnsafePointer<Float>, gradStride: Int, planes: UnsafePointer<Float>,
                                      planeStride: Int, tapOffsets: UnsafeMutablePointer<Int>,
                                      weightGrad: UnsafeMutablePointer<Float>, tapOffset: (Int) -> Int) {
    let (dr, dc) = L.dotShape
    let wide = roundUp(oc, dc) * roundUp(reduction, dr) < roundUp(oc, dr) * roundUp(reduction, dc)
    let tileRows = wide ? dc : dr, tileCols = wide ? dr : dc
    var tap = 0
    while tap < reduction {
        let cols = min(tileCols, reduction - tap)
        for k in 0..<cols { tapOffsets[k] = tapOffset(tap + k) }
        var o0 = 0
        while o0 < oc {
            let rows = min(tileRows, oc - o0)
            L.directWeightsTile(transposed: wide, samples: samples, length: length, a: grads + o0 * length, lda: length,
                                aStride: gradStride, rows: rows, b: planes, bStride: planeStride, offsets: tapOffsets,
                                cols: cols, c: weightGrad + o0 * reduction + tap, ldc: reduction)
            o0 += tileRows
        }
        tap += tileCols
    }
}
