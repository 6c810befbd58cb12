// Backward weights of 3-wide kernels with 16n output channels (16 only from 16 input channels), and of 5x5 kernels with
// 16n output channels: register tiles over (taps x output channels), the sum over output pixels as one
// fused multiply-add chain per accumulator.
//
// dW[o][c][i][j] = sum over samples and pixels (y, x) of dy[o][y][x] * in[c][y*sh - ph + i][x*sw - pw + j].
// Per sample the input is copied into padded planes (as `directTilesForward`) and dy is transposed to
// dyT[pixel][o], so for one pixel the output channels are whole vectors (loaded) and each tap is one
// scalar of the padded image (broadcast): a tile of G (c, i) groups x kw columns j x NV vectors of
// channels (`WeightsTile`, the level's shape) keeps 24-27 zmm or 10-12 ymm accumulators, with NV vector
// loads and kw*G broadcasts per kw*G*NV FMAs (as the GEMM
// microkernel), no horizontal sums and no padded-width waste. Tile sums of one sample are added into
// acc[tap][o] (scratch); after the last sample dW[o][tap] += acc[tap][o].
// Summation order: per (sample, tap, o) one chain over the pixels in row-major order, samples added in
// order: a function of the geometry and the call's mb only.
// Measured (`bench kernels`, 1 thread, % of FMA peak, `directBackwardWeights` before -> these tiles):
// CIFAR 32->32 72 -> 74-76, 32->64 66 -> 78-80, 64->64 65 -> 85. CIFAR-small b128: ~555 -> ~595 images/s.

extension ConvKernel {
    /// The `weightsTiles` entry's predicate (every level has a tile for these oc: `weightsTileShape`).
    static func weightsTilesApply(_ g: ConvGeometry) -> Bool {
        // 5x5 kernels, oc a multiple of 16 (LeNet conv2 and mnist-fast's: 6 or 8 -> 16 channels): 5 groups x
        // 5 columns x 1 zmm = 25 accumulators at AVX-512, one dyT vector load per 25 FMAs. LeNet conv2
        // (`bench kernels`, 1 thread, AMD EPYC Zen 4, shared machine), against `shiftedPlanes`' 16-lane dot
        // products: mb 64 75.1 -> 94.8 GFLOP/s (64% -> 80% of peak), shards of 8 68.3 -> 91.7; LeNet-5 b64,
        // 1 thread: 25.9k -> 28.2k images/s by CPU time (with the vectorised finite check, medians of 3).
        if g.kw == 5 && g.kh == 5 { return g.oc % 16 == 0 && g.ic >= 6 }
        // ic >= 8: with fewer input channels (the RGB layer) transposing dy costs more than the tiles gain
        // (CIFAR 3->32: 47% of peak with `directBackwardWeights`, 27% here).
        guard g.kw == 3, g.oc % 16 == 0, g.ic >= 8 else { return false }
        let v = g.oc / 16
        // One vector of output channels (ResNet-20's first stage, 16 -> 16): 8 groups x 3 columns x 1 zmm at
        // AVX-512, 2 x 3 x 2 ymm at AVX2. `bench kernels --filter 16to16` (AMD EPYC Zen 4, 1 thread), against
        // `direct`: AVX2 level 74.9 -> 90.9 GFLOP/s, ResNet-20 b128 fp32 step 88.8 -> 91.5 GFLOP/s (medians
        // of 3 interleaved rounds); AVX-512 level 94.4-95.6 -> 86.7-95.0, step unchanged within noise. Not for
        // ic < 16 (the X/O net's 8 -> 16 layer keeps `direct`).
        if v == 1 { return g.ic >= 16 }
        return v % 4 == 0 || v % 3 == 0 || v % 2 == 0
    }

    var weightsTilesScratchCount: Int {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        return 16 + g.ic * planeStride + roundUp(g.oh * g.ow * g.oc, 16) + g.reduction * g.oc + 16 + 16 + 16
    }

    func tilesBackwardWeights<L: KernelLevel>(_ level: L.Type, mb: Int, input: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                              weightGrad: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let (hp, wp) = (g.ih + 2 * g.ph, directPaddedWidth(g))
        let planeStride = roundUp(hp * wp + 32 + g.kw, 16)
        let (oh, ow, oc) = (g.oh, g.ow, g.oc)
        let p = oh * ow
        let k = g.reduction
        let groupsTotal = g.ic * g.kh
        let (tg, nv) = L.weightsTileShape(oc: oc, kw: g.kw)
        let padded = align64(scratch)
        let dyT = padded + g.ic * planeStride
        let acc = dyT + roundUp(p * oc, 16)
        let offsets = UnsafeMutableRawPointer(acc + k * oc).assumingMemoryBound(to: Int.self)   // up to 8 Ints (16 floats)
        padded.update(repeating: 0, count: g.ic * planeStride)
        acc.update(repeating: 0, count: k * oc)
        let inSize = g.ic * g.ih * g.iw, outSize = oc * p
        // Tile calls per sample, among which the next sample's lines are spread.
        let calls = (groupsTotal + tg - 1) / tg * ((oc + L.width * nv - 1) / (L.width * nv))
        for s in 0..<mb {
            let x = input + s * inSize, dy = outputGrad + s * outSize
            var next = s + 1 < mb ? NextSampleLines(x + inSize, count: inSize, dy + outSize, count2: outSize) : .none
            let linesPerCall = (next.lines + calls - 1) / calls
            for c in 0..<g.ic {
                for y in 0..<g.ih {
                    copyFloats(padded + c * planeStride + (y + g.ph) * wp + g.pw, x + (c * g.ih + y) * g.iw, g.iw)
                }
            }
            // Transposed in 16 x 16 blocks (both sides stay within 16 cache lines).
            var q0 = 0
            while q0 < p {
                let qn = min(16, p - q0)
                var o0 = 0
                while o0 < oc {
                    for o in o0..<(o0 + 16) {
                        let src = dy + o * p + q0
                        let d = dyT + q0 * oc + o
                        for q in 0..<qn { d[q * oc] = src[q] }
                    }
                    o0 += 16
                }
                q0 += 16
            }
            var g0 = 0
            while g0 < groupsTotal {
                let groups = min(tg, groupsTotal - g0)
                for t in 0..<tg {
                    let gi = g0 + min(t, groups - 1)
                    let c = gi / g.kh, i = gi % g.kh
                    offsets[t] = c * planeStride + i * wp
                }
                var ob = 0
                while ob < oc {
                    next.fetch(lines: linesPerCall)
                    L.weightsTile(kw: g.kw, groups: tg, nv: nv, img: padded, groupOffsets: offsets, dyT: dyT + ob, ldy: oc, oh: oh,
                                  ow: ow, rowStep: g.sh * wp, colStep: g.sw, acc: acc + g0 * g.kw * oc + ob, ldacc: oc, groups: groups)
                    ob += L.width * nv
                }
                g0 += tg
            }
        }
        for o in 0..<oc {
            let w = weightGrad + o * k
            for q in 0..<k { w[q] += acc[q * oc + o] }
        }
    }
}
