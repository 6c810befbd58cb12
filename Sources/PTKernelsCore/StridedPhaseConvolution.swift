// Backward data of 3x3 stride-2 convolutions with padding 1 on even planes (ResNet's strided 3x3 layers:
// the `stridedPhases` backward-data entry), by the four phases of the input gradient instead of GEMM +
// col2im.
//
// With iy = 2 oy - 1 + ky and ix = 2 ox - 1 + kx, an input-gradient pixel of each parity takes its own
// taps: (2m, 2n) tap (1, 1) at dOut (m, n); (2m, 2n + 1) taps (1, 0) at (m, n + 1) and (1, 2) at (m, n);
// (2m + 1, 2n) taps (0, 1) at (m + 1, n) and (2, 1) at (m, n); (2m + 1, 2n + 1) taps (0, 0), (0, 2), (2, 0),
// (2, 2) at (m + 1, n + 1), (m + 1, n), (m, n + 1), (m, n). So one vector of W phase positions (m, n),
// flattened over the dOut plane, needs four loads per output channel o (dOut at (m, n), (m, n + 1),
// (m + 1, n), (m + 1, n + 1): a zero row past the plane, and lanes with n + 1 = ow masked to zero) and
// gives four vectors of the input gradient (the phases), with 9 multiply-adds per input channel: no
// multiply by a structural zero, and no scatter. The phases are interleaved into the input-gradient
// rows at the end (even and odd columns side by side).
//
// Summation order: each input-gradient value is one chain of multiply-adds over o in increasing order,
// and for one o its taps in the order listed above (fused on AVX2 and AVX-512, which give the same bits).
// The vector width and the tile's channel count do not enter, and samples never mix.

extension ConvKernel {
    /// The `stridedPhases` predicate: 3x3, stride 2, padding 1, input planes exactly twice the output
    /// (ih = 2 oh, iw = 2 ow), output rows a multiple of 8 wide and planes a multiple of 16 pixels
    /// (ResNet-20's 16 -> 32 on 32x32 and 32 -> 64 on 16x16; resnet-mnist's 7-wide rows keep im2colGemm).
    static func stridedPhasesApply(_ g: ConvGeometry) -> Bool {
        g.kh == 3 && g.kw == 3 && g.sh == 2 && g.sw == 2 && g.ph == 1 && g.pw == 1 && g.ih == 2 * g.oh && g.iw == 2 * g.ow
            && g.ow % 8 == 0 && (g.oh * g.ow) % 16 == 0
    }

    /// Floats between the padded output-gradient planes: the plane, a zero row, and a vector of zeros.
    @inline(__always)
    static func stridedPhasesPlaneStride(_ g: ConvGeometry) -> Int { roundUp((g.oh + 1) * g.ow + 16, 16) }

    /// Scratch floats of `stridedPhasesBackwardData`: one sample's padded output gradient.
    var stridedPhasesScratchCount: Int { 16 + geometry.oc * Self.stridedPhasesPlaneStride(geometry) }

    func stridedPhasesBackwardData<L: KernelLevel>(_ level: L.Type, mb: Int, outputGrad: UnsafePointer<Float>,
                                                   weight: UnsafePointer<Float>, inputGrad: UnsafeMutablePointer<Float>,
                                                   scratch: UnsafeMutablePointer<Float>) {
        let g = geometry
        let plane = g.oh * g.ow, stride = Self.stridedPhasesPlaneStride(g)
        let padded = align64(scratch)
        padded.update(repeating: 0, count: g.oc * stride)   // the rows past each plane stay zero
        let inSize = g.ic * g.ih * g.iw, outSize = g.oc * plane
        let mr = L.width >= 16 ? 6 : 3   // AVX2 (16 ymm): 12 accumulators; 2 ran 16 -> 32 at 61, 3 at 73, 4 at 71 GFLOP/s
        for s in 0..<mb {
            let dy = outputGrad + s * outSize
            for o in 0..<g.oc { copyFloats(padded + o * stride, dy + o * plane, plane) }
            let dx = inputGrad + s * inSize
            var c0 = 0
            while c0 < g.ic {
                let rows = min(mr, g.ic - c0)
                switch rows {
                case 6: StridedPhaseTile<L, 6>.run(g, padded: padded, planeStride: stride, weight: weight, c0: c0, inputGrad: dx)
                case 5: StridedPhaseTile<L, 5>.run(g, padded: padded, planeStride: stride, weight: weight, c0: c0, inputGrad: dx)
                case 4: StridedPhaseTile<L, 4>.run(g, padded: padded, planeStride: stride, weight: weight, c0: c0, inputGrad: dx)
                case 3: StridedPhaseTile<L, 3>.run(g, padded: padded, planeStride: stride, weight: weight, c0: c0, inputGrad: dx)
                case 2: StridedPhaseTile<L, 2>.run(g, padded: padded, planeStride: stride, weight: weight, c0: c0, inputGrad: dx)
                default: StridedPhaseTile<L, 1>.run(g, padded: padded, planeStride: stride, weight: weight, c0: c0, inputGrad: dx)
                }
                c0 += rows
            }
        }
    }
}

/// The input gradient of MR input channels from c0 on, one sample (see the file comment): for each vector
/// of phase positions, 4 x MR accumulators over every output channel, then interleaved into the rows.
enum StridedPhaseTile<L: KernelLevel, let MR: Int> {
    @inline(never)
    static func run(_ g: ConvGeometry, padded: UnsafePointer<Float>, planeStride: Int, weight: UnsafePointer<Float>, c0: Int,
                    inputGrad: UnsafeMutablePointer<Float>) {
        typealias V = L.V
        let w = L.width, ow = g.ow, iw = g.iw
        let plane = g.oh * ow
        let one = V(repeating: 1)
        var q0 = 0
        while q0 < plane {
            // 1 where n + 1 < ow, else 0 (the lanes whose (m, n + 1) is past the row).
            var keep = one
            for l in 0..<w where (q0 + l) % ow == ow - 1 { keep[l] = 0 }
            var e0 = InlineArray<MR, V>(repeating: V()), o0 = e0, e1 = e0, o1 = e0
            for o in 0..<g.oc {
                let p = UnsafeRawPointer(padded + o * planeStride + q0)
                let a0 = p.loadUnaligned(as: V.self), a1 = p.loadUnaligned(fromByteOffset: 4, as: V.self) * keep
                let b0 = p.loadUnaligned(fromByteOffset: 4 * ow, as: V.self)
                let b1 = p.loadUnaligned(fromByteOffset: 4 * (ow + 1), as: V.self) * keep
                let wo = weight + (o * g.ic + c0) * 9
                for r in 0..<MR {
                    let k = wo + r * 9
                    e0[r] = L.madd(e0[r], V(repeating: k[4]), a0)
                    o0[r] = L.madd(o0[r], V(repeating: k[3]), a1)
                    o0[r] = L.madd(o0[r], V(repeating: k[5]), a0)
                    e1[r] = L.madd(e1[r], V(repeating: k[1]), b0)
                    e1[r] = L.madd(e1[r], V(repeating: k[7]), a0)
                    o1[r] = L.madd(o1[r], V(repeating: k[0]), b1)
                    o1[r] = L.madd(o1[r], V(repeating: k[2]), b0)
                    o1[r] = L.madd(o1[r], V(repeating: k[6]), a1)
                    o1[r] = L.madd(o1[r], V(repeating: k[8]), a0)
                }
            }
            // Lanes in runs of up to 8 positions of one phase row (ow is a multiple of 8): even and odd
            // columns side by side into input-gradient rows 2m (e0, o0) and 2m + 1 (e1, o1).
            for r in 0..<MR {
                let dc = inputGrad + (c0 + r) * g.ih * iw
                var l = 0
                while l < w {
                    let q = q0 + l, m = q / ow, n = q % ow
                    let run = min(8, w - l)
                    let even = dc + 2 * m * iw + 2 * n, odd = even + iw
                    stridedPhaseZip(L.self, e0[r], o0[r], from: l, count: run, to: even)
                    stridedPhaseZip(L.self, e1[r], o1[r], from: l, count: run, to: odd)
                    l += run
                }
            }
            q0 += w
        }
    }
}

/// dst[2 i] = a[from + i], dst[2 i + 1] = b[from + i] for i < count (8 lanes at a time as one 16-float
/// interleave where the vector has them).
@inline(__always)
func stridedPhaseZip<L: KernelLevel>(_: L.Type, _ a: L.V, _ b: L.V, from: Int, count: Int, to dst: UnsafeMutablePointer<Float>) {
    if L.width == 16 && count == 8 {
        let a16 = unsafeBitCast(a, to: SIMD16<Float>.self), b16 = unsafeBitCast(b, to: SIMD16<Float>.self)
        let v = from == 0 ? winogradZip(a16.lowHalf, b16.lowHalf) : winogradZip(a16.highHalf, b16.highHalf)
        UnsafeMutableRawPointer(dst).storeBytes(of: v, as: SIMD16<Float>.self)
    } else if L.width == 8 && count == 8 {
        let v = winogradZip(unsafeBitCast(a, to: SIMD8<Float>.self), unsafeBitCast(b, to: SIMD8<Float>.self))
        UnsafeMutableRawPointer(dst).storeBytes(of: v, as: SIMD16<Float>.self)
    } else {
        for i in 0..<count {
            dst[2 * i] = a[from + i]
            dst[2 * i + 1] = b[from + i]
        }
    }
}
