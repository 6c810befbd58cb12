// Pooling (the slides' example, edge windows, ties), ReLU and softmax cross-entropy against references.
import XCTest
import PTKernels

final class ElementwiseTests: XCTestCase {
    /// The slides' first feature map (values k/9) pooled with window 2 stride 2, keeping the partial edge.
    func testSlidesPooledMap() {
        let ninths: [[Int]] = [
            [7, -1, 1, 3, 5, -1, 3],
            [-1, 9, -1, 3, -1, 1, -1],
            [1, -1, 9, -3, 1, -1, 5],
            [3, 3, -3, 5, -3, 3, 3],
            [5, -1, 1, -3, 9, -1, 1],
            [-1, 1, -1, 3, -1, 9, -1],
            [3, -1, 5, 3, 1, -1, 7],
        ]
        let expected: [[Int]] = [[9, 3, 5, 3], [3, 9, 3, 5], [5, 3, 9, 1], [3, 5, 1, 7]]
        let g = PoolGeometry(planes: 1, ih: 7, iw: 7, kh: 2, kw: 2, sh: 2, sw: 2, keepPartial: true)
        XCTAssertEqual(g.oh, 4); XCTAssertEqual(g.ow, 4)
        let x = Buffer(49)
        for i in 0..<7 { for j in 0..<7 { x.pointer[i * 7 + j] = Float(ninths[i][j]) / 9 } }
        let y = Buffer(16), arg = UnsafeMutablePointer<Int32>.allocate(capacity: 16)
        defer { arg.deallocate() }
        maxPoolForward(g, input: x.pointer, output: y.pointer, argmax: arg)
        for i in 0..<4 {
            for j in 0..<4 {
                XCTAssertEqual(y.pointer[i * 4 + j], Float(expected[i][j]) / 9, "pooled[\(i)][\(j)]")
            }
        }
        // Truncated to two decimals, as the slides print them (5/9 shows as 0.55, 7/9 as 0.77).
        let rounded = (0..<16).map { (y.pointer[$0] * 100 + 1e-3).rounded(.down) / 100 }
        XCTAssertEqual(rounded, [1.00, 0.33, 0.55, 0.33, 0.33, 1.00, 0.33, 0.55, 0.55, 0.33, 1.00, 0.11, 0.33, 0.55, 0.11, 0.77].map { Float($0) })
    }

    func testMaxPoolMatchesReference() {
        let shapes: [(Int, Int, Int, Int, Int, Int, Bool)] = [
            (7, 7, 2, 2, 2, 2, true), (7, 7, 2, 2, 2, 2, false), (28, 28, 2, 2, 2, 2, true), (32, 32, 2, 2, 2, 2, true),
            (33, 67, 2, 2, 2, 2, true), (66, 35, 2, 2, 2, 2, false), (1, 40, 2, 2, 2, 2, true), (9, 9, 3, 3, 2, 2, true),
            (10, 13, 3, 2, 3, 1, false), (5, 5, 5, 5, 5, 5, true), (1, 37, 1, 3, 1, 2, true),
            // Narrow rows through the vector step (LeNet's 28 -> 14 and 10 -> 5), odd sizes, one column.
            (10, 10, 2, 2, 2, 2, true), (14, 14, 2, 2, 2, 2, true), (11, 11, 2, 2, 2, 2, true), (11, 11, 2, 2, 2, 2, false),
            (6, 30, 2, 2, 2, 2, true), (3, 9, 2, 2, 2, 2, false), (4, 2, 2, 2, 2, 2, true), (2, 64, 2, 2, 2, 2, true),
        ]
        for (ih, iw, kh, kw, sh, sw, keep) in shapes {
            let g = PoolGeometry(planes: 3, ih: ih, iw: iw, kh: kh, kw: kw, sh: sh, sw: sw, keepPartial: keep)
            guard g.isValid else { continue }
            // Few distinct levels: plenty of ties, which must resolve to the first maximum.
            let x = Buffer(random: g.planes * ih * iw, seed: UInt64(ih * 100 + iw), levels: 4)
            let n = g.planes * g.oh * g.ow
            let y = Buffer(n), yRef = Buffer(n)
            let a = UnsafeMutablePointer<Int32>.allocate(capacity: n), aRef = UnsafeMutablePointer<Int32>.allocate(capacity: n)
            defer { a.deallocate(); aRef.deallocate() }
            maxPoolForward(g, input: x.pointer, output: y.pointer, argmax: a)
            maxPoolForwardReference(g, input: x.pointer, output: yRef.pointer, argmax: aRef)
            assertIdentical(y, yRef, "maxpool forward \(g)")
            XCTAssertTrue((0..<n).allSatisfy { a[$0] == aRef[$0] }, "maxpool argmax \(g)")
            let dy = Buffer(random: n, seed: 5)
            let dx = Buffer(g.planes * ih * iw, fill: .nan), dxRef = Buffer(g.planes * ih * iw)
            maxPoolBackward(g, outputGrad: dy.pointer, argmax: a, inputGrad: dx.pointer)
            maxPoolBackwardReference(g, outputGrad: dy.pointer, argmax: aRef, inputGrad: dxRef.pointer)
            assertIdentical(dx, dxRef, "maxpool backward \(g)")

            // A ReLU folded in: the bits of ReLU's layer then the pooling's, forward and backward.
            let r = Buffer(g.planes * ih * iw), dr = Buffer(g.planes * ih * iw)
            reluForwardReference(count: g.planes * ih * iw, input: x.pointer, output: r.pointer)
            let yr = Buffer(n), yrRef = Buffer(n)
            maxPoolForward(g, input: x.pointer, output: yr.pointer, argmax: a, reluFirst: true)
            maxPoolForwardReference(g, input: r.pointer, output: yrRef.pointer, argmax: aRef)
            assertIdentical(yr, yrRef, "maxpool over relu forward \(g)")
            XCTAssertTrue((0..<n).allSatisfy { a[$0] == aRef[$0] }, "maxpool over relu argmax \(g)")
            let dxr = Buffer(g.planes * ih * iw, fill: .nan), dxrRef = Buffer(g.planes * ih * iw)
            maxPoolBackward(g, outputGrad: dy.pointer, argmax: a, inputGrad: dxr.pointer, reluOutput: yr.pointer)
            maxPoolBackwardReference(g, outputGrad: dy.pointer, argmax: aRef, inputGrad: dr.pointer)
            reluBackwardReference(count: g.planes * ih * iw, output: r.pointer, outputGrad: dr.pointer, inputGrad: dxrRef.pointer)
            assertIdentical(dxr, dxrRef, "maxpool over relu backward \(g)")
        }
    }

    func testReLUMatchesReference() {
        for count in [0, 1, 15, 16, 17, 100, 1000] {
            let x = Buffer(random: count, seed: UInt64(count))
            if count > 3 { x.pointer[0] = .nan; x.pointer[1] = -0.0; x.pointer[2] = 0 }
            let y = Buffer(count), yRef = Buffer(count)
            reluForward(count: count, input: x.pointer, output: y.pointer)
            reluForwardReference(count: count, input: x.pointer, output: yRef.pointer)
            assertIdentical(y, yRef, "relu forward \(count)")
            let dy = Buffer(random: count, seed: 9)
            let dx = Buffer(count), dxRef = Buffer(count)
            reluBackward(count: count, output: y.pointer, outputGrad: dy.pointer, inputGrad: dx.pointer)
            reluBackwardReference(count: count, output: yRef.pointer, outputGrad: dy.pointer, inputGrad: dxRef.pointer)
            assertIdentical(dx, dxRef, "relu backward \(count)")
        }
    }

    func testSoftmaxCrossEntropyMatchesReference() {
        for (rows, classes) in [(1, 1), (3, 10), (64, 10), (5, 1000)] {
            let logits = Buffer(random: rows * classes, seed: UInt64(rows))
            for i in 0..<(rows * classes) { logits.pointer[i] *= 8 }
            let labels = (0..<rows).map { Int32(($0 * 7) % classes) }
            let g = Buffer(rows * classes), gRef = Buffer(rows * classes)
            let r = labels.withUnsafeBufferPointer {
                softmaxCrossEntropy(rows: rows, classes: classes, logits: logits.pointer, labels: $0.baseAddress!,
                                    gradScale: 0.25, logitsGrad: g.pointer)
            }
            let rRef = labels.withUnsafeBufferPointer {
                softmaxCrossEntropyReference(rows: rows, classes: classes, logits: logits.pointer, labels: $0.baseAddress!,
                                             gradScale: 0.25, logitsGrad: gRef.pointer)
            }
            XCTAssertEqual(r.loss, rRef.loss, "loss \(rows)x\(classes)")
            XCTAssertEqual(r.correct, rRef.correct)
            assertIdentical(g, gRef, "softmax gradient \(rows)x\(classes)")
        }
    }

    /// The optimizer updates (vectors of the level plus a scalar tail) give the bits of the plain
    /// per-element formulas of PTModel's SGD and Adam, on every level.
    func testOptimizerUpdatesMatchScalarFormulasBitForBit() {
        let n = 1000 + 13
        for (mu, nesterov, wd) in [(Float(0), false, Float(0.01)), (0.9, false, 0), (0.9, true, 5e-4)] {
            let w = Buffer(random: n, seed: 1), g = Buffer(random: n, seed: 2), v = Buffer(random: n, seed: 3)
            let wRef = w.copy(), vRef = v.copy()
            let lr: Float = 0.05
            sgdUpdate(lr: lr, momentum: mu, nesterov: nesterov, weightDecay: wd, weights: w.pointer + 1, gradients: g.pointer + 1,
                      velocity: v.pointer + 1, count: n - 1)
            for i in 1..<n {
                if mu == 0 { wRef.pointer[i] -= lr * (g.pointer[i] + wd * wRef.pointer[i]); continue }
                let gi = g.pointer[i] + wd * wRef.pointer[i]
                let vi = mu * vRef.pointer[i] + gi
                vRef.pointer[i] = vi
                wRef.pointer[i] -= lr * (nesterov ? gi + mu * vi : vi)
            }
            assertIdentical(w, wRef, "SGD weights mu=\(mu) nesterov=\(nesterov)")
            assertIdentical(v, vRef, "SGD velocity mu=\(mu) nesterov=\(nesterov)")
        }
        let w = Buffer(random: n, seed: 4), g = Buffer(random: n, seed: 5)
        let m = Buffer(random: n, seed: 6), v = Buffer(random: n, seed: 7, levels: 100)
        let wRef = w.copy(), mRef = m.copy(), vRef = v.copy()
        let (b1, b2, eps, coupled, shrink, stepSize, rc2): (Float, Float, Float, Float, Float, Float, Float) =
            (0.9, 0.999, 1e-8, 1e-4, 1, 0.001 / 0.1, 1 / Float(0.001).squareRoot())
        adamUpdate(beta1: b1, beta2: b2, epsilon: eps, coupledDecay: coupled, shrink: shrink, stepSize: stepSize, rc2: rc2,
                   weights: w.pointer, gradients: g.pointer, m: m.pointer, v: v.pointer, count: n)
        for i in 0..<n {
            let gi = g.pointer[i] + coupled * wRef.pointer[i]
            let mi = b1 * mRef.pointer[i] + (1 - b1) * gi
            let vi = b2 * vRef.pointer[i] + (1 - b2) * gi * gi
            mRef.pointer[i] = mi
            vRef.pointer[i] = vi
            wRef.pointer[i] = wRef.pointer[i] * shrink - stepSize * mi / (vi.squareRoot() * rc2 + eps)
        }
        assertIdentical(w, wRef, "Adam weights")
        assertIdentical(m, mRef, "Adam m")
        assertIdentical(v, vRef, "Adam v")
    }

    func testAddFloatsIsThePlainSum() {
        for n in [0, 1, 7, 8, 63, 64, 65, 1000] {
            let a = Buffer(random: n + 1, seed: 8), b = Buffer(random: n + 1, seed: 9)
            let ref = a.copy()
            for i in 1..<(n + 1) { ref.pointer[i] += b.pointer[i] }
            addFloats(a.pointer + 1, b.pointer + 1, count: n)
            assertIdentical(a, ref, "addFloats n=\(n)")
        }
    }

    /// `allFinite` (16 lanes) against the plain test of every element: all finite (huge values included,
    /// whose sum would overflow), then one NaN, +inf or -inf at every position of awkward lengths
    /// (the vector part, the tail) from an unaligned start.
    func testAllFiniteMatchesElementwiseTest() {
        for n in [0, 1, 15, 16, 17, 33, 100] {
            let x = Buffer(random: n + 1, seed: 10)
            for i in 0..<(n + 1) where i % 3 == 0 { x.pointer[i] = i % 2 == 0 ? .greatestFiniteMagnitude : -.greatestFiniteMagnitude }
            func plain() -> Bool { (0..<n).allSatisfy { x.pointer[1 + $0].isFinite } }
            XCTAssertTrue(plain())
            XCTAssertEqual(allFinite(x.pointer + 1, count: n), plain(), "finite n=\(n)")
            for bad: Float in [.nan, .infinity, -.infinity] {
                for i in 0..<n {
                    let kept = x.pointer[1 + i]
                    x.pointer[1 + i] = bad
                    XCTAssertFalse(plain())
                    XCTAssertEqual(allFinite(x.pointer + 1, count: n), plain(), "\(bad) at \(i) of \(n)")
                    x.pointer[1 + i] = kept
                }
            }
            // A bad value just outside the range is not looked at.
            x.pointer[0] = .nan
            XCTAssertTrue(allFinite(x.pointer + 1, count: n))
        }
    }

    /// The batch-normalisation row kernels of the level in use give the bits of their plain twins
    /// (16 Float lanes, then Double; products fused exactly on levels with FMA), over awkward row
    /// lengths and an unaligned start.
    func testBatchNormRowKernelsMatchTwinsBitForBit() {
        let fused = InstructionSet.current != .baseline
        for n in [0, 1, 3, 15, 16, 17, 31, 33, 47, 64, 100, 255, 256, 257, 1024, 1031] {
            let x = Buffer(random: n + 1, seed: 11), dy = Buffer(random: n + 1, seed: 12)
            for i in 0..<(n + 1) { x.pointer[i] = 3 * x.pointer[i] + 0.37 }
            let px = UnsafePointer(x.pointer + 1), pdy = UnsafePointer(dy.pointer + 1)
            let mean: Float = 0.3125
            XCTAssertEqual(bnRowSum(px, count: n).bitPattern, bnRowSumReference(px, count: n).bitPattern, "bnRowSum n=\(n)")
            XCTAssertEqual(bnRowSquares(px, count: n, mean: mean).bitPattern,
                           bnRowSquaresReference(px, count: n, mean: mean, fused: fused).bitPattern, "bnRowSquares n=\(n)")
            let (a, b) = bnRowGradientSums(px, outputGrad: pdy, count: n, mean: mean)
            let (ra, rb) = bnRowGradientSumsReference(px, outputGrad: pdy, count: n, mean: mean, fused: fused)
            XCTAssertEqual(a.bitPattern, ra.bitPattern, "bnRowGradientSums dy n=\(n)")
            XCTAssertEqual(b.bitPattern, rb.bitPattern, "bnRowGradientSums centred n=\(n)")
            let y = Buffer(random: n + 1, seed: 13), yRef = y.copy()
            bnAffine(px, count: n, scale: 1.7, shift: -0.23, output: y.pointer + 1)
            bnAffineReference(px, count: n, scale: 1.7, shift: -0.23, output: yRef.pointer + 1)
            assertIdentical(y, yRef, "bnAffine n=\(n)")
            let dx = Buffer(random: n + 1, seed: 14), dxRef = dx.copy()
            bnInputGradient(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, inputGrad: dx.pointer + 1)
            bnInputGradientReference(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, inputGrad: dxRef.pointer + 1)
            assertIdentical(dx, dxRef, "bnInputGradient n=\(n)")
        }
    }

    /// The batch-normalisation kernels over a whole channel (`rows` rows `rowStride` apart, as a channel's
    /// planes lie in an NCHW batch) give the bits of their twins, and leave the gaps between rows alone.
    func testBatchNormChannelKernelsMatchTwinsBitForBit() {
        let fused = InstructionSet.current != .baseline
        let scale: Float = 1.7, shift: Float = -0.23, scale2: Float = 0.6, shift2: Float = 0.11, mean: Float = 0.3125
        // `at`: where the outputs start. 1 leaves every row off 64-byte alignment (normal stores); 16 with strides
        // of whole 64-byte lines puts every row on it, where the passes that write store around the caches.
        let cases = [(1, 17, 0, 1), (3, 64, 5, 1), (7, 33, 16, 1), (5, 256, 1, 1), (2, 1031, 9, 1), (4, 0, 3, 1), (9, 16, 48, 1),
                     (0, 8, 2, 1), (3, 64, 0, 16), (4, 40, 8, 16), (2, 1024, 16, 16)]
        for (rows, n, gap, at) in cases {
            let stride = n + gap, total = at + max(rows, 1) * stride
            let x = Buffer(random: total, seed: 31), x2 = Buffer(random: total, seed: 32), dy = Buffer(random: total, seed: 33)
            for i in 0..<total { x.pointer[i] = 3 * x.pointer[i] + 0.37 }
            if n > 8 { x.pointer[2] = shift / -scale; x.pointer[4] = .nan }
            let px = UnsafePointer(x.pointer + 1), px2 = UnsafePointer(x2.pointer + 1), pdy = UnsafePointer(dy.pointer + 1)
            let label = "rows=\(rows) n=\(n) stride=\(stride) at=\(at)"
            if n > 8 { x.pointer[4] = 0.5 }  // no NaN in the sums
            XCTAssertEqual(bnRowSum(px, count: n, rows: rows, rowStride: stride).bitPattern,
                           bnRowSumReference(px, count: n, rows: rows, rowStride: stride).bitPattern, "bnRowSum \(label)")
            XCTAssertEqual(bnRowSquares(px, count: n, mean: mean, rows: rows, rowStride: stride).bitPattern,
                           bnRowSquaresReference(px, count: n, mean: mean, fused: fused, rows: rows, rowStride: stride).bitPattern,
                           "bnRowSquares \(label)")
            let sums = bnRowGradientSums(px, outputGrad: pdy, count: n, mean: mean, rows: rows, rowStride: stride)
            let sumsRef = bnRowGradientSumsReference(px, outputGrad: pdy, count: n, mean: mean, fused: fused, rows: rows, rowStride: stride)
            XCTAssertEqual(sums.0.bitPattern, sumsRef.0.bitPattern, "bnRowGradientSums dy \(label)")
            XCTAssertEqual(sums.1.bitPattern, sumsRef.1.bitPattern, "bnRowGradientSums centred \(label)")
            let masked = bnRowGradientSumsReLU(px, outputGrad: pdy, count: n, mean: mean, scale: scale, shift: shift, rows: rows,
                                               rowStride: stride)
            let maskedRef = bnRowGradientSumsReLUReference(px, outputGrad: pdy, count: n, mean: mean, scale: scale, shift: shift,
                                                           fused: fused, rows: rows, rowStride: stride)
            XCTAssertEqual(masked.0.bitPattern, maskedRef.0.bitPattern, "bnRowGradientSumsReLU dy \(label)")
            XCTAssertEqual(masked.1.bitPattern, maskedRef.1.bitPattern, "bnRowGradientSumsReLU centred \(label)")
            // Masked by another tensor (the ReLU's output after an add), against the twin and against ReLU's
            // backward followed by the plain passes.
            let z = Buffer(random: total, seed: 36)
            if n > 8 { z.pointer[3] = 0; z.pointer[5] = -0.0; z.pointer[6] = .nan }
            let pz = UnsafePointer(z.pointer + 1)
            let maskedDy = Buffer(total)
            reluBackward(count: total - 1, output: pz, outputGrad: pdy, inputGrad: maskedDy.pointer + 1)
            let byMask = bnRowGradientSumsMasked(px, outputGrad: pdy, mask: pz, count: n, mean: mean, rows: rows, rowStride: stride)
            let byMaskRef = bnRowGradientSumsMaskedReference(px, outputGrad: pdy, mask: pz, count: n, mean: mean, fused: fused, rows: rows,
                                                             rowStride: stride)
            let byMaskChain = bnRowGradientSums(px, outputGrad: maskedDy.pointer + 1, count: n, mean: mean, rows: rows, rowStride: stride)
            XCTAssertEqual(byMask.0.bitPattern, byMaskRef.0.bitPattern, "bnRowGradientSumsMasked dy \(label)")
            XCTAssertEqual(byMask.1.bitPattern, byMaskRef.1.bitPattern, "bnRowGradientSumsMasked centred \(label)")
            XCTAssertEqual(byMask.0.bitPattern, byMaskChain.0.bitPattern, "bnRowGradientSumsMasked against the unfused passes \(label)")
            XCTAssertEqual(byMask.1.bitPattern, byMaskChain.1.bitPattern, "bnRowGradientSumsMasked against the unfused passes \(label)")
            if n > 8 { x.pointer[4] = .nan }

            func pair() -> (Buffer, Buffer) { let b = Buffer(random: total, seed: 34); return (b, b.copy()) }
            var (got, ref) = pair()
            bnAffine(px, count: n, scale: scale, shift: shift, output: got.pointer + at, rows: rows, rowStride: stride)
            bnAffineReference(px, count: n, scale: scale, shift: shift, output: ref.pointer + at, rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnAffine \(label)")
            (got, ref) = pair()
            bnAffineReLU(px, count: n, scale: scale, shift: shift, output: got.pointer + at, rows: rows, rowStride: stride)
            bnAffineReLUReference(px, count: n, scale: scale, shift: shift, output: ref.pointer + at, rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnAffineReLU \(label)")
            (got, ref) = pair()
            // The whole-tensor passes, one row (1 x 1 plane) a call.
            let map = Buffer(2), map2 = Buffer(2)
            (map.pointer[0], map.pointer[1], map2.pointer[0], map2.pointer[1]) = (scale, shift, scale2, shift2)
            for r in 0..<rows {
                bnAffineAddReLU(px + r * stride, map: map.pointer, other: px2 + r * stride, samples: 1, channels: 1, count: n,
                                output: got.pointer + at + r * stride)
            }
            bnAffineAddReLUReference(px, count: n, scale: scale, shift: shift, other: px2, output: ref.pointer + at, rows: rows,
                                     rowStride: stride)
            assertIdentical(got, ref, "bnAffineAddReLU \(label)")
            (got, ref) = pair()
            for r in 0..<rows {
                bnAffine2AddReLU(px + r * stride, map: map.pointer, px2 + r * stride, map2: map2.pointer, samples: 1, channels: 1, count: n,
                                 output: got.pointer + at + r * stride)
            }
            bnAffine2AddReLUReference(px, count: n, scale: scale, shift: shift, px2, scale2: scale2, shift2: shift2,
                                      output: ref.pointer + at, rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnAffine2AddReLU \(label)")
            (got, ref) = pair()
            bnInputGradient(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, inputGrad: got.pointer + at,
                            rows: rows, rowStride: stride)
            bnInputGradientReference(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, inputGrad: ref.pointer + at,
                                     rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnInputGradient \(label)")
            (got, ref) = pair()
            bnInputGradientReLU(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, scale: scale, shift: shift,
                                inputGrad: got.pointer + at, rows: rows, rowStride: stride)
            bnInputGradientReLUReference(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, scale: scale,
                                         shift: shift, inputGrad: ref.pointer + at, rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnInputGradientReLU \(label)")
            (got, ref) = pair()
            let chain = got.copy()
            bnInputGradientMasked(px, outputGrad: pdy, mask: pz, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, inputGrad: got.pointer + at,
                                  rows: rows, rowStride: stride)
            bnInputGradientMaskedReference(px, outputGrad: pdy, mask: pz, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013,
                                           inputGrad: ref.pointer + at, rows: rows, rowStride: stride)
            bnInputGradient(px, outputGrad: maskedDy.pointer + 1, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013,
                            inputGrad: chain.pointer + at, rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnInputGradientMasked \(label)")
            assertIdentical(got, chain, "bnInputGradientMasked against the unfused passes \(label)")

            // The input-gradient passes walked last plane first (a negative stride, as BatchNorm's backward runs
            // them) write the same values as the twins walking first plane first.
            guard rows > 0 else { continue }
            let last = (rows - 1) * stride
            (got, ref) = pair()
            bnInputGradient(px + last, outputGrad: pdy + last, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013,
                            inputGrad: got.pointer + at + last, rows: rows, rowStride: -stride)
            bnInputGradientReference(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, inputGrad: ref.pointer + at,
                                     rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnInputGradient last plane first \(label)")
            (got, ref) = pair()
            bnInputGradientReLU(px + last, outputGrad: pdy + last, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, scale: scale,
                                shift: shift, inputGrad: got.pointer + at + last, rows: rows, rowStride: -stride)
            bnInputGradientReLUReference(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, scale: scale,
                                         shift: shift, inputGrad: ref.pointer + at, rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnInputGradientReLU last plane first \(label)")
            (got, ref) = pair()
            bnInputGradientMasked(px + last, outputGrad: pdy + last, mask: pz + last, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013,
                                  inputGrad: got.pointer + at + last, rows: rows, rowStride: -stride)
            bnInputGradientMaskedReference(px, outputGrad: pdy, mask: pz, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013,
                                           inputGrad: ref.pointer + at, rows: rows, rowStride: stride)
            assertIdentical(got, ref, "bnInputGradientMasked last plane first \(label)")
        }
    }

    /// The whole-tensor add + ReLU passes (one call for all planes, per-channel maps) against their
    /// plane-by-plane twins, over planes on and off a cache line, and writing nothing outside the tensor.
    func testWholeTensorAddReLUMatchesPlaneByPlaneTwinsBitForBit() {
        for (samples, channels, count) in [(1, 1, 1), (2, 3, 1), (3, 5, 17), (2, 4, 64), (1, 3, 100), (2, 2, 1031)] {
            for offset in [0, 1] {
                let total = samples * channels * count, size = total + offset + 3
                let x = Buffer(random: size, seed: 41), x2 = Buffer(random: size, seed: 42), other = Buffer(random: size, seed: 43)
                let map = Buffer(random: 2 * channels, seed: 44), map2 = Buffer(random: 2 * channels, seed: 45)
                let px = UnsafePointer(x.pointer + offset), px2 = UnsafePointer(x2.pointer + offset)
                let po = UnsafePointer(other.pointer + offset)
                let label = "\(samples)x\(channels)x\(count) at +\(offset)"
                func pair() -> (Buffer, Buffer) { let b = Buffer(random: size, seed: 46); return (b, b.copy()) }

                var (got, ref) = pair()
                bnAffineAddReLU(px, map: map.pointer, other: po, samples: samples, channels: channels, count: count,
                                output: got.pointer + offset)
                for n in 0..<samples {
                    for c in 0..<channels {
                        let at = (n * channels + c) * count
                        bnAffineAddReLUReference(px + at, count: count, scale: map.pointer[c], shift: map.pointer[channels + c],
                                                 other: po + at, output: ref.pointer + offset + at)
                    }
                }
                assertIdentical(got, ref, "bnAffineAddReLU whole tensor \(label)")

                (got, ref) = pair()
                bnAffine2AddReLU(px, map: map.pointer, px2, map2: map2.pointer, samples: samples, channels: channels, count: count,
                                 output: got.pointer + offset)
                for n in 0..<samples {
                    for c in 0..<channels {
                        let at = (n * channels + c) * count
                        bnAffine2AddReLUReference(px + at, count: count, scale: map.pointer[c], shift: map.pointer[channels + c],
                                                  px2 + at, scale2: map2.pointer[c], shift2: map2.pointer[channels + c],
                                                  output: ref.pointer + offset + at)
                    }
                }
                assertIdentical(got, ref, "bnAffine2AddReLU whole tensor \(label)")
            }
        }
    }

    /// The reference twins' channel sums are the rows' own sums combined as documented: per row 16 Float
    /// lanes, the rows' lanes added lane by lane in Double, then the lanes in order and the tails.
    func testBatchNormChannelSumTwinCombinesRows() {
        let rows = 3, n = 40, stride = 50
        let x = Buffer(random: rows * stride, seed: 35)
        var lanes = [Double](repeating: 0, count: 16), tail = 0.0
        for r in 0..<rows {
            var f = [Float](repeating: 0, count: 16)
            for i in 0..<32 { f[i % 16] += x.pointer[r * stride + i] }
            for l in 0..<16 { lanes[l] += Double(f[l]) }
            for i in 32..<n { tail += Double(x.pointer[r * stride + i]) }
        }
        var expected = 0.0
        for l in 0..<16 { expected += lanes[l] }
        expected += tail
        XCTAssertEqual(bnRowSumReference(x.pointer, count: n, rows: rows, rowStride: stride).bitPattern, expected.bitPattern)
        XCTAssertEqual(bnRowSum(x.pointer, count: n, rows: rows, rowStride: stride).bitPattern, expected.bitPattern)
    }

    /// The fused batch-norm / residual add / ReLU passes give the bits of their twins and of the
    /// unfused passes run one after another (affine, add, ReLU; ReLU's backward, then batch norm's),
    /// over awkward lengths, an unaligned start, and values at the ReLU's edge (0, -0, NaN).
    func testFusedBatchNormAddReLUMatchUnfusedBitForBit() {
        let fused = InstructionSet.current != .baseline
        let scale: Float = 1.7, shift: Float = -0.23, scale2: Float = 0.6, shift2: Float = 0.11, mean: Float = 0.3125
        for n in [0, 1, 3, 15, 16, 17, 31, 33, 64, 100, 257, 1031] {
            let x = Buffer(random: n + 1, seed: 21), x2 = Buffer(random: n + 1, seed: 22), other = Buffer(random: n + 1, seed: 23)
            let dy = Buffer(random: n + 1, seed: 24)
            if n > 8 {
                x.pointer[2] = shift / -scale           // pre-activation near 0
                x.pointer[3] = -shift / scale; x.pointer[4] = .nan
                other.pointer[5] = -0.0; x.pointer[5] = 0.23 / 1.7
            }
            let px = UnsafePointer(x.pointer + 1), px2 = UnsafePointer(x2.pointer + 1), po = UnsafePointer(other.pointer + 1)
            let pdy = UnsafePointer(dy.pointer + 1)
            func three() -> (Buffer, Buffer, Buffer) { let b = Buffer(random: n + 1, seed: 25); return (b, b.copy(), b.copy()) }

            // Forward: affine + ReLU.
            var (got, ref, chain) = three()
            bnAffineReLU(px, count: n, scale: scale, shift: shift, output: got.pointer + 1)
            bnAffineReLUReference(px, count: n, scale: scale, shift: shift, output: ref.pointer + 1)
            bnAffine(px, count: n, scale: scale, shift: shift, output: chain.pointer + 1)
            reluForward(count: n, input: chain.pointer + 1, output: chain.pointer + 1)
            assertIdentical(got, ref, "bnAffineReLU n=\(n)")
            assertIdentical(got, chain, "bnAffineReLU against the unfused passes n=\(n)")

            // Forward: affine + add + ReLU (the batch norm on either side of the add).
            (got, ref, chain) = three()
            let map = Buffer(2), map2 = Buffer(2)
            (map.pointer[0], map.pointer[1], map2.pointer[0], map2.pointer[1]) = (scale, shift, scale2, shift2)
            bnAffineAddReLU(px, map: map.pointer, other: po, samples: 1, channels: 1, count: n, output: got.pointer + 1)
            bnAffineAddReLUReference(px, count: n, scale: scale, shift: shift, other: po, output: ref.pointer + 1)
            bnAffine(px, count: n, scale: scale, shift: shift, output: chain.pointer + 1)
            for i in 1..<(n + 1) { chain.pointer[i] = chain.pointer[i] + other.pointer[i] }
            reluForward(count: n, input: chain.pointer + 1, output: chain.pointer + 1)
            assertIdentical(got, ref, "bnAffineAddReLU n=\(n)")
            assertIdentical(got, chain, "bnAffineAddReLU against the unfused passes n=\(n)")

            // Forward: two affine maps + add + ReLU.
            (got, ref, chain) = three()
            let y2 = Buffer(n + 1)
            bnAffine2AddReLU(px, map: map.pointer, px2, map2: map2.pointer, samples: 1, channels: 1, count: n, output: got.pointer + 1)
            bnAffine2AddReLUReference(px, count: n, scale: scale, shift: shift, px2, scale2: scale2, shift2: shift2, output: ref.pointer + 1)
            bnAffine(px, count: n, scale: scale, shift: shift, output: chain.pointer + 1)
            bnAffine(px2, count: n, scale: scale2, shift: shift2, output: y2.pointer + 1)
            addFloats(chain.pointer + 1, y2.pointer + 1, count: n)
            reluForward(count: n, input: chain.pointer + 1, output: chain.pointer + 1)
            assertIdentical(got, ref, "bnAffine2AddReLU n=\(n)")
            assertIdentical(got, chain, "bnAffine2AddReLU against the unfused passes n=\(n)")

            // Forward: add + ReLU.
            (got, ref, chain) = three()
            addReLU(count: n, px, po, output: got.pointer + 1)
            addReLUReference(count: n, px, po, output: ref.pointer + 1)
            (chain.pointer + 1).update(from: px, count: n)
            addFloats(chain.pointer + 1, po, count: n)
            reluForward(count: n, input: chain.pointer + 1, output: chain.pointer + 1)
            assertIdentical(got, ref, "addReLU n=\(n)")
            assertIdentical(got, chain, "addReLU against the unfused passes n=\(n)")

            // Backward: batch norm's two passes with ReLU's mask recomputed from the input, against
            // ReLU's backward on the forward's output, then the plain passes.
            let z = Buffer(n + 1), masked = Buffer(n + 1)
            bnAffineReLU(px, count: n, scale: scale, shift: shift, output: z.pointer + 1)
            reluBackward(count: n, output: z.pointer + 1, outputGrad: pdy, inputGrad: masked.pointer + 1)
            let sums = bnRowGradientSumsReLU(px, outputGrad: pdy, count: n, mean: mean, scale: scale, shift: shift)
            let sumsRef = bnRowGradientSumsReLUReference(px, outputGrad: pdy, count: n, mean: mean, scale: scale, shift: shift, fused: fused)
            let sumsChain = bnRowGradientSums(px, outputGrad: masked.pointer + 1, count: n, mean: mean)
            XCTAssertEqual(sums.0.bitPattern, sumsRef.0.bitPattern, "bnRowGradientSumsReLU dy n=\(n)")
            XCTAssertEqual(sums.1.bitPattern, sumsRef.1.bitPattern, "bnRowGradientSumsReLU centred n=\(n)")
            XCTAssertEqual(sums.0.bitPattern, sumsChain.0.bitPattern, "bnRowGradientSumsReLU against the unfused passes n=\(n)")
            XCTAssertEqual(sums.1.bitPattern, sumsChain.1.bitPattern, "bnRowGradientSumsReLU against the unfused passes n=\(n)")
            (got, ref, chain) = three()
            bnInputGradientReLU(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, scale: scale, shift: shift,
                                inputGrad: got.pointer + 1)
            bnInputGradientReLUReference(px, outputGrad: pdy, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, scale: scale, shift: shift,
                                         inputGrad: ref.pointer + 1)
            bnInputGradient(px, outputGrad: masked.pointer + 1, count: n, mean: mean, a: 0.9, b: -0.041, k: 0.0013, inputGrad: chain.pointer + 1)
            assertIdentical(got, ref, "bnInputGradientReLU n=\(n)")
            assertIdentical(got, chain, "bnInputGradientReLU against the unfused passes n=\(n)")

            // Backward: ReLU's mask fanned out to both inputs of the add (or one, the other being nil).
            let g1 = Buffer(random: n + 1, seed: 26), g2 = g1.copy(), r1 = g1.copy(), r2 = g1.copy(), plain = g1.copy()
            reluBackwardFanOut(count: n, output: z.pointer + 1, outputGrad: pdy, first: g1.pointer + 1, second: g2.pointer + 1)
            reluBackwardFanOutReference(count: n, output: z.pointer + 1, outputGrad: pdy, first: r1.pointer + 1, second: r2.pointer + 1)
            reluBackward(count: n, output: z.pointer + 1, outputGrad: pdy, inputGrad: plain.pointer + 1)
            assertIdentical(g1, r1, "reluBackwardFanOut first n=\(n)")
            assertIdentical(g2, r2, "reluBackwardFanOut second n=\(n)")
            assertIdentical(g1, plain, "reluBackwardFanOut against reluBackward n=\(n)")
            let only = Buffer(random: n + 1, seed: 26)
            reluBackwardFanOut(count: n, output: z.pointer + 1, outputGrad: pdy, first: nil, second: only.pointer + 1)
            assertIdentical(only, plain, "reluBackwardFanOut second only n=\(n)")
        }
    }
}
