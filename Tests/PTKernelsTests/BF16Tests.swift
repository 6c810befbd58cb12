// The bf16 kernels (CPTKernelsBF16) against their reference twins (BF16Reference.swift), bit for bit:
// rounding, the DAZ / FTZ / NaN edge cases of one vdpbf16ps step, every convolution geometry of
// ConvolutionTests in all three passes, and dense shapes with odd and tail sizes. On a CPU (or a
// PTRAIN_ISA level) without AVX512_BF16 the kernel tests are skipped, naming the missing feature.
import XCTest
import PTKernels

final class BF16Tests: XCTestCase {
    func requireUnit() throws {
        guard InstructionSet.bf16Unit != nil else {
            throw XCTSkip("needs AVX512_BF16 (vdpbf16ps) on the avx512 level: this CPU or PTRAIN_ISA=\(InstructionSet.current.name) lacks it")
        }
    }

    /// The start-up choice: a unit only on the avx512 level of a CPU with avx512bf16.
    func testUnitChoice() {
        let avx512 = ["avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"]
        XCTAssertEqual(InstructionSet.bf16Unit(level: .avx512, available: avx512 + ["avx512bf16"]), .avx512bf16)
        XCTAssertEqual(InstructionSet.bf16Unit(level: .avx512, available: avx512 + ["avx512bf16", "amxtile", "amxbf16"]), .amx)
        XCTAssertEqual(InstructionSet.bf16Unit(level: .avx512, available: avx512 + ["avx512bf16", "amxtile"]), .avx512bf16)
        XCTAssertNil(InstructionSet.bf16Unit(level: .avx2, available: avx512 + ["avx512bf16", "amxtile", "amxbf16"]))
        XCTAssertNil(InstructionSet.bf16Unit(level: .avx512, available: avx512))
        XCTAssertNil(InstructionSet.bf16Unit(level: .avx2, available: avx512 + ["avx512bf16"]))
        XCTAssertNil(InstructionSet.bf16Unit(level: .baseline, available: avx512 + ["avx512bf16"]))
        XCTAssertEqual(InstructionSet.bf16Unit != nil, Precision.bf16.unavailableReason == nil)
        XCTAssertNil(Precision.fp32.unavailableReason)
    }

    func testRoundingMatchesReference() throws {
        try requireUnit()
        var values: [Float] = [0, -0, 1, -1, 1e-39, -1e-39, Float.leastNormalMagnitude, -Float.leastNonzeroMagnitude,
                               .infinity, -.infinity, .nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFC1_2345),
                               Float.greatestFiniteMagnitude, 3.3895314e38, 1.00390625, 1.01171875, 1.0078125 + 1.0 / 512]
        // Ties: 1 + 2^-8 (even: down), 1 + 3 * 2^-8 (odd: up).
        values += [Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0xBF80_8000)]
        var s: UInt64 = 0x1234_5678
        for _ in 0..<200_000 {
            s = s &* 6364136223846793005 &+ 1442695040888963407
            values.append(Float(bitPattern: UInt32(truncatingIfNeeded: s >> 32)))
        }
        var out = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBufferPointer { v in out.withUnsafeMutableBufferPointer { bf16Round(v.baseAddress!, $0.baseAddress!, count: v.count) } }
        var mismatches = 0
        for (i, x) in values.enumerated() where out[i] != bf16RoundReference(x) {
            if mismatches < 5 {
                XCTFail("round \(String(x.bitPattern, radix: 16)): kernel \(String(out[i], radix: 16)), reference \(String(bf16RoundReference(x), radix: 16))")
            }
            mismatches += 1
        }
        XCTAssertEqual(mismatches, 0)
        XCTAssertEqual(bf16RoundReference(Float(bitPattern: 0x3F80_8000)), 0x3F80)
        XCTAssertEqual(bf16RoundReference(Float(bitPattern: 0x3F81_8000)), 0x3F82)
        XCTAssertEqual(bf16RoundReference(1e-39), 0)
        XCTAssertEqual(bf16RoundReference(-1e-39), 0x8000)
    }

    /// One product step's DAZ (denormal accumulator read as 0), FTZ (denormal result written as 0) and
    /// exact-product rounding, through the dense kernel (weight-gradient pass: it starts from dW).
    func testStepEdgeCases() throws {
        try requireUnit()
        // (dW start, dy, x): dW += dy * x.
        let cases: [(Float, Float, Float)] = [
            (0, 1e-20, 1e-20), (1e-39, 1, 0), (1e-38, -1e-20, 1e-19), (1, 1e-20, 1e-20), (-0.0, 0, 0),
            (1, 1.0 / 256, 1.0 / 2), (16_777_216, 1, 1), (3, .infinity, 0), (1, .nan, 2), (.greatestFiniteMagnitude, 2, 2),
            (1e-30, 1e-10, 1e-10),
        ]
        for (start, a, b) in cases {
            let x = Buffer(1, fill: b), dy = Buffer(1, fill: a), dw = Buffer(1, fill: start), want = Buffer(1, fill: start)
            let scratch = Buffer(bf16DenseScratchCount(batch: 1, inputs: 1, neurons: 1))
            bf16DenseBackwardWeights(batch: 1, inputs: 1, neurons: 1, x: x.pointer, outputGrad: dy.pointer, weightGrad: dw.pointer,
                                     scratch: scratch.pointer)
            bf16DenseBackwardWeightsReference(batch: 1, inputs: 1, neurons: 1, x: x.pointer, outputGrad: dy.pointer,
                                              weightGrad: want.pointer)
            XCTAssertEqual(dw.pointer[0].bitPattern, want.pointer[0].bitPattern, "\(start) + \(a) * \(b): kernel \(dw.pointer[0]), reference \(want.pointer[0])")
        }
    }

    func assertSame(_ got: Buffer, _ want: Buffer, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        for i in 0..<want.count where got.pointer[i].bitPattern != want.pointer[i].bitPattern {
            XCTFail("\(label): element \(i) of \(want.count): kernel \(got.pointer[i]), reference \(want.pointer[i])", file: file, line: line)
            return
        }
    }

    func testConvolutionMatchesReference() throws {
        try requireUnit()
        var cases = ConvolutionTests.cases
        cases += [
            ("resnet 16ch 32x32", ConvGeometry(mb: 2, ic: 16, oc: 16, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1), 2),
            ("resnet 16->32 stride 2", ConvGeometry(mb: 2, ic: 16, oc: 32, ih: 16, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 2),
            ("resnet 64ch 8x8", ConvGeometry(mb: 2, ic: 64, oc: 64, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1), 1),
            // The direct weight gradient over blocks of 4 samples (32 pixel pairs each): a whole block and a part one.
            ("resnet 64ch 8x8, blocks 4 + 2", ConvGeometry(mb: 6, ic: 64, oc: 64, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1), 6),
            ("odd K odd P", ConvGeometry(mb: 3, ic: 3, oc: 9, ih: 7, iw: 7, kh: 3, kw: 3), 3),
            // Stride 2 to 8-wide output rows (packed halves, col2im in registers), the 1x1 stride-2
            // shortcut (direct backward weights), and stride 2 to rows wider than 16 (col2im's vector scatter).
            ("resnet 32->64 stride 2", ConvGeometry(mb: 2, ic: 32, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 2),
            ("resnet 1x1 stride 2 shortcut", ConvGeometry(mb: 2, ic: 16, oc: 32, ih: 16, iw: 16, kh: 1, kw: 1, sh: 2, sw: 2), 2),
            ("stride 2 wide rows", ConvGeometry(mb: 2, ic: 16, oc: 16, ih: 6, iw: 40, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 1),
            // The planar input gradient (lenet-conv2 above too): three channel blocks, one partial, full
            // 16-pixel rows, kh != kw with padding; and a single channel, rows that take few tap rows.
            ("planar 13ch pad", ConvGeometry(mb: 2, ic: 13, oc: 6, ih: 9, iw: 16, kh: 3, kw: 5, ph: 1, pw: 2), 2),
            ("planar ic 1 tall kernel", ConvGeometry(mb: 1, ic: 1, oc: 2, ih: 3, iw: 7, kh: 4, kw: 3, ph: 3), 1),
            // Backward weights with output channels on the lanes (lenet-conv2 above too): a CIFAR first
            // layer (two blocks of 16 output channels, 16-pair transposes), stride 2 with 3 + 2 channels.
            ("cifar first layer 3->32", ConvGeometry(mb: 2, ic: 3, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1), 2),
            ("lanes stride 2, 5 channels", ConvGeometry(mb: 2, ic: 5, oc: 16, ih: 11, iw: 12, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 2),
            // The forward with output channels on the lanes (lenet-conv2 above too: 10 wide): 12 wide with an
            // odd number of rows (a one-row tile last) and two blocks of 16 channels; 8 wide.
            ("lanes forward 12 wide odd rows", ConvGeometry(mb: 2, ic: 5, oc: 32, ih: 9, iw: 14, kh: 3, kw: 3, ph: 1), 2),
            ("lanes forward 8 wide", ConvGeometry(mb: 1, ic: 2, oc: 16, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1), 1),
            // The direct weight gradient's column tiles: 4 groups of 16 columns run as 2 + 2 (3 + 3 + 3 and
            // 3 x 15 + 3 + 2 above).
            ("1x1 64->16, 4 column groups", ConvGeometry(mb: 2, ic: 64, oc: 16, ih: 6, iw: 8, kh: 1, kw: 1), 2),
            // The stride-2 forward over column-parity pair images: a ResNet shortcut (no padding), a row of
            // 15 (a part chunk, odd padding), 5x5 with no padding (rows of 35), 7x7 with padding 3.
            ("phase images 1x1 stride 2 shortcut", ConvGeometry(mb: 2, ic: 16, oc: 32, ih: 32, iw: 32, kh: 1, kw: 1, sh: 2, sw: 2), 2),
            ("phase images 15 wide", ConvGeometry(mb: 2, ic: 4, oc: 16, ih: 15, iw: 15, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 2),
            ("phase images 5x5 no pad", ConvGeometry(mb: 1, ic: 6, oc: 8, ih: 35, iw: 35, kh: 5, kw: 5, sh: 2, sw: 2), 1),
            ("phase images 7x7 pad 3", ConvGeometry(mb: 1, ic: 2, oc: 8, ih: 20, iw: 32, kh: 7, kw: 7, sh: 2, sw: 2, ph: 3, pw: 3), 1),
        ]
        var addedIn = 0
        defer {
            // On the vector unit the even-channel stride-1 cases add in place (the tile unit never does), and on
            // either unit the strided cases whose col2im runs in registers.
            if InstructionSet.bf16Unit == .avx512bf16 { XCTAssertGreaterThan(addedIn, 3, "cases that add into the input gradient") }
        }
        for (label, g0, mb) in cases {
            let g = g0.with(mb: mb)
            let kernel = ConvKernel(geometry: g0)
            let x = Buffer(random: g.inputCount, seed: 1), w = Buffer(random: g.weightCount, seed: 2), b = Buffer(random: g.oc, seed: 3)
            let dy = Buffer(random: g.outputCount, seed: 4)
            let scratch = Buffer(kernel.bf16ScratchCount)
            let y = Buffer(g.outputCount), yRef = Buffer(g.outputCount)
            kernel.bf16Forward(mb: mb, input: x.pointer, weight: w.pointer, bias: b.pointer, output: y.pointer, scratch: scratch.pointer)
            bf16ConvForwardReference(g, input: x.pointer, weight: w.pointer, bias: b.pointer, output: yRef.pointer)
            assertSame(y, yRef, "\(label) forward")
            let dx = Buffer(g.inputCount, fill: .nan), dxRef = Buffer(g.inputCount)
            kernel.bf16BackwardData(mb: mb, outputGrad: dy.pointer, weight: w.pointer, inputGrad: dx.pointer, scratch: scratch.pointer)
            bf16ConvBackwardDataReference(g, outputGrad: dy.pointer, weight: w.pointer, inputGrad: dxRef.pointer)
            let form = bf16BackwardDataIsPlanar(g) ? "planar" : bf16BackwardDataIsTransposed(g) ? "transposed" : "col2im"
            assertSame(dx, dxRef, "\(label) backward data (\(form))")
            // Adding into the input gradient (where the kernels can): each element is what it held plus
            // the reference's gradient, one fp32 addition, the bits of a spare buffer added in.
            var addsChecked = false
            if kernel.bf16BackwardDataAdds {
                let held = Buffer(random: g.inputCount, seed: 7), dxAdd = held.copy(), expected = Buffer(g.inputCount)
                for e in 0..<g.inputCount { expected.pointer[e] = held.pointer[e] + dxRef.pointer[e] }
                kernel.bf16BackwardData(mb: mb, outputGrad: dy.pointer, weight: w.pointer, inputGrad: dxAdd.pointer, add: true,
                                        scratch: scratch.pointer)
                assertSame(dxAdd, expected, "\(label) backward data added in")
                addsChecked = true
                addedIn += 1
            }
            // The ReLU folded in (`FusedStep.convReLU` / `convAfterReLU`): the forward's outputs through ReLU, and the
            // input gradient masked by the input (a ReLU's output there) > 0, every form above; x in [-1, 1) so the masks cut.
            let reluRef = Buffer(g.outputCount), gatedRef = Buffer(g.inputCount)
            for e in 0..<g.outputCount { reluRef.pointer[e] = yRef.pointer[e] > 0 ? yRef.pointer[e] : 0 }
            for e in 0..<g.inputCount { gatedRef.pointer[e] = x.pointer[e] > 0 ? dxRef.pointer[e] : 0 }
            func checkFolded(_ prepared: UnsafePointer<Float>?, _ how: String) {
                let yr = Buffer(g.outputCount, fill: .nan), dxg = Buffer(g.inputCount, fill: .nan)
                kernel.bf16ForwardReLU(mb: mb, input: x.pointer, weight: w.pointer, prepared: prepared, bias: b.pointer, output: yr.pointer,
                                       scratch: scratch.pointer)
                assertSame(yr, reluRef, "\(label) forward + ReLU\(how)")
                kernel.bf16BackwardDataGated(mb: mb, outputGrad: dy.pointer, weight: w.pointer, prepared: prepared, gate: x.pointer,
                                             inputGrad: dxg.pointer, scratch: scratch.pointer)
                assertSame(dxg, gatedRef, "\(label) backward data through ReLU\(how)")
            }
            checkFolded(nil, "")
            if kernel.bf16PreparedCount > 0 {
                let prepared = Buffer(kernel.bf16PreparedCount, fill: .nan)
                kernel.bf16Prepare(weight: w.pointer, prepared: prepared.pointer, scratch: scratch.pointer)
                checkFolded(UnsafePointer(prepared.pointer), ", prepared weights")
            }
            let dw = Buffer(random: g.weightCount, seed: 5), db = Buffer(random: g.oc, seed: 6)
            let dwRef = dw.copy(), dbRef = db.copy()
            kernel.bf16BackwardWeights(mb: mb, input: x.pointer, outputGrad: dy.pointer, weightGrad: dw.pointer, biasGrad: db.pointer,
                                       scratch: scratch.pointer)
            bf16ConvBackwardWeightsReference(g, input: x.pointer, outputGrad: dy.pointer, weightGrad: dwRef.pointer, biasGrad: dbRef.pointer)
            assertSame(dw, dwRef, "\(label) backward weights")
            assertSame(db, dbRef, "\(label) bias gradient")
            // The same call again gives the same bits (no state in the scratch).
            let y2 = Buffer(g.outputCount)
            kernel.bf16Forward(mb: mb, input: x.pointer, weight: w.pointer, bias: b.pointer, output: y2.pointer, scratch: scratch.pointer)
            assertIdentical(y, y2, "\(label) forward twice")
            // From the prepared weights (the vector unit keeps them; the tile unit has none): the same bits,
            // call after call (the prepared weights are only read).
            guard kernel.bf16PreparedCount > 0 else { continue }
            let prepared = Buffer(kernel.bf16PreparedCount, fill: .nan)
            kernel.bf16Prepare(weight: w.pointer, prepared: prepared.pointer, scratch: scratch.pointer)
            for call in 0..<2 {
                let yp = Buffer(g.outputCount, fill: .nan), dxp = Buffer(g.inputCount, fill: .nan)
                kernel.bf16Forward(mb: mb, input: x.pointer, prepared: prepared.pointer, bias: b.pointer, output: yp.pointer,
                                   scratch: scratch.pointer)
                assertSame(yp, yRef, "\(label) forward, prepared weights (call \(call))")
                kernel.bf16BackwardData(mb: mb, outputGrad: dy.pointer, prepared: prepared.pointer, inputGrad: dxp.pointer,
                                        scratch: scratch.pointer)
                assertSame(dxp, dxRef, "\(label) backward data, prepared weights (call \(call))")
                guard addsChecked else { continue }
                let held = Buffer(random: g.inputCount, seed: 8), dxAdd = held.copy(), expected = Buffer(g.inputCount)
                for e in 0..<g.inputCount { expected.pointer[e] = held.pointer[e] + dxRef.pointer[e] }
                kernel.bf16BackwardData(mb: mb, outputGrad: dy.pointer, prepared: prepared.pointer, inputGrad: dxAdd.pointer, add: true,
                                        scratch: scratch.pointer)
                assertSame(dxAdd, expected, "\(label) backward data added in, prepared weights (call \(call))")
            }
        }
    }

    /// The kernels' planar choice and the reference's rule (`bf16BackwardDataIsPlanar`) agree on every
    /// geometry of a sweep around the rule's edges (channels, row width, padding, kernel, stride).
    func testPlanarChoiceMatchesReference() throws {
        try requireUnit()
        var checked = 0, planar = 0
        for ic in [1, 6, 15, 16] {
            for oc in [1, 2, 16, 17] {
                for iw in [1, 5, 16, 17, 30] {
                    for (kh, kw) in [(1, 1), (3, 3), (4, 3), (5, 5), (3, 17), (3, 18)] {
                        for (ph, pw) in [(0, 0), (1, 2), (2, 16), (3, 3)] {
                            for s in [1, 2] {
                                let g = ConvGeometry(mb: 1, ic: ic, oc: oc, ih: 7, iw: iw, kh: kh, kw: kw, sh: s, sw: s, ph: ph, pw: pw)
                                guard g.isValid else { continue }
                                let kernels = ConvKernel(geometry: g).bf16BackwardDataPlanar
                                XCTAssertEqual(kernels, bf16BackwardDataIsPlanar(g), "\(g)")
                                checked += 1
                                if kernels { planar += 1 }
                            }
                        }
                    }
                }
            }
        }
        XCTAssertGreaterThan(planar, 0)
        XCTAssertGreaterThan(checked - planar, 0)
    }

    func testDenseMatchesReference() throws {
        try requireUnit()
        let shapes: [(batch: Int, inputs: Int, neurons: Int)] = [
            (1, 1, 1), (1, 7, 3), (2, 2, 2), (3, 17, 5), (8, 400, 120), (8, 120, 84), (8, 84, 10), (9, 33, 31), (16, 256, 10),
            (13, 65, 47), (16, 1024, 256), (5, 31, 129),
        ]
        for s in shapes {
            let label = "dense \(s.batch)x\(s.inputs)->\(s.neurons)"
            let x = Buffer(random: s.batch * s.inputs, seed: 1), w = Buffer(random: s.neurons * s.inputs, seed: 2)
            let b = Buffer(random: s.neurons, seed: 3), dy = Buffer(random: s.batch * s.neurons, seed: 4)
            let scratch = Buffer(bf16DenseScratchCount(batch: s.batch, inputs: s.inputs, neurons: s.neurons))
            let y = Buffer(s.batch * s.neurons), yRef = Buffer(s.batch * s.neurons)
            bf16DenseForward(batch: s.batch, inputs: s.inputs, neurons: s.neurons, x: x.pointer, weight: w.pointer, bias: b.pointer,
                             y: y.pointer, scratch: scratch.pointer)
            bf16DenseForwardReference(batch: s.batch, inputs: s.inputs, neurons: s.neurons, x: x.pointer, weight: w.pointer,
                                      bias: b.pointer, y: yRef.pointer)
            assertSame(y, yRef, "\(label) forward")
            let dw = Buffer(random: s.neurons * s.inputs, seed: 5), dwRef = dw.copy()
            bf16DenseBackwardWeights(batch: s.batch, inputs: s.inputs, neurons: s.neurons, x: x.pointer, outputGrad: dy.pointer,
                                     weightGrad: dw.pointer, scratch: scratch.pointer)
            bf16DenseBackwardWeightsReference(batch: s.batch, inputs: s.inputs, neurons: s.neurons, x: x.pointer,
                                              outputGrad: dy.pointer, weightGrad: dwRef.pointer)
            assertSame(dw, dwRef, "\(label) backward weights")
            // Stored (add: false): dw is not read (NaN there would show), the chains start from 0, so the bits of adding into zeros.
            let stored = Buffer(s.neurons * s.inputs, fill: .nan), fromZero = Buffer(s.neurons * s.inputs)
            bf16DenseBackwardWeights(batch: s.batch, inputs: s.inputs, neurons: s.neurons, x: x.pointer, outputGrad: dy.pointer,
                                     weightGrad: stored.pointer, add: false, scratch: scratch.pointer)
            bf16DenseBackwardWeightsReference(batch: s.batch, inputs: s.inputs, neurons: s.neurons, x: x.pointer,
                                              outputGrad: dy.pointer, weightGrad: fromZero.pointer)
            assertSame(stored, fromZero, "\(label) backward weights, stored")
            let dx = Buffer(s.batch * s.inputs, fill: .nan), dxRef = Buffer(s.batch * s.inputs)
            bf16DenseBackwardData(batch: s.batch, inputs: s.inputs, neurons: s.neurons, outputGrad: dy.pointer, weight: w.pointer,
                                  inputGrad: dx.pointer, scratch: scratch.pointer)
            bf16DenseBackwardDataReference(batch: s.batch, inputs: s.inputs, neurons: s.neurons, outputGrad: dy.pointer,
                                           weight: w.pointer, inputGrad: dxRef.pointer)
            assertSame(dx, dxRef, "\(label) backward data")
            // From the prepared weights (the vector unit keeps them; the tile unit has none): the same bits.
            let preparedCount = bf16DensePreparedCount(inputs: s.inputs, neurons: s.neurons)
            guard preparedCount > 0 else { continue }
            let prepared = Buffer(preparedCount, fill: .nan)
            bf16DensePrepare(inputs: s.inputs, neurons: s.neurons, weight: w.pointer, prepared: prepared.pointer, scratch: scratch.pointer)
            for round in 0..<2 {
                let yp = Buffer(s.batch * s.neurons, fill: .nan), dxp = Buffer(s.batch * s.inputs, fill: .nan)
                bf16DenseForward(batch: s.batch, inputs: s.inputs, neurons: s.neurons, x: x.pointer, prepared: prepared.pointer,
                                 bias: b.pointer, y: yp.pointer, scratch: scratch.pointer)
                assertSame(yp, yRef, "\(label) forward, prepared weights (call \(round))")
                bf16DenseBackwardData(batch: s.batch, inputs: s.inputs, neurons: s.neurons, outputGrad: dy.pointer,
                                      prepared: prepared.pointer, inputGrad: dxp.pointer, scratch: scratch.pointer)
                assertSame(dxp, dxRef, "\(label) backward data, prepared weights (call \(round))")
            }
        }
    }

    /// The deferred weight gradient: each shard's operands kept in its own gradient range, the reduction over any
    /// part of the gradient from them, against each shard's stored product reduced by `pairwiseSumInPlace`, bit for
    /// bit. Shards of uneven and odd sizes, an empty shard (its buffer zeroed, as the engine skips it), trees of 1 to 8
    /// leaves, shapes with partial register tiles, and parts that cut rows and tiles.
    func testDenseDeferredReductionMatchesStoredTree() throws {
        try requireUnit()
        let shapes: [(inputs: Int, neurons: Int)] = [(1024, 256), (400, 120), (65, 47), (48, 24), (294, 256)]
        let shardSets: [[Int]] = [[16, 16, 16, 16, 16, 16, 16, 16], [7, 0, 5, 1, 3], [17, 17, 17, 17, 16, 16], [3], [2, 9, 4]]
        for shape in shapes {
            let count = shape.neurons * shape.inputs
            for batches in shardSets {
                let label = "dense \(shape.inputs)->\(shape.neurons), shards \(batches)"
                let maxBatch = batches.max()!
                let deferredCount = bf16DenseDeferredCount(batch: maxBatch, inputs: shape.inputs, neurons: shape.neurons)
                guard deferredCount > 0 else { continue }   // the tile unit keeps none
                // The operands fit in the gradient range for these shapes (`Dense` defers only where they do).
                guard deferredCount <= count else { XCTFail("\(label): \(deferredCount) floats of operands"); continue }
                let scratch = Buffer(bf16DenseScratchCount(batch: maxBatch, inputs: shape.inputs, neurons: shape.neurons))
                var stored: [Buffer] = [], deferred: [Buffer] = []
                for (s, batch) in batches.enumerated() {
                    let x = Buffer(random: batch * shape.inputs, seed: UInt64(10 + s)), dy = Buffer(random: batch * shape.neurons, seed: UInt64(50 + s))
                    let product = Buffer(count), operands = Buffer(count, fill: .nan)
                    if batch == 0 {
                        operands.pointer.update(repeating: 0, count: count)
                    } else {
                        bf16DenseBackwardWeights(batch: batch, inputs: shape.inputs, neurons: shape.neurons, x: x.pointer,
                                                 outputGrad: dy.pointer, weightGrad: product.pointer, add: false, scratch: scratch.pointer)
                        bf16DenseDeferWeights(batch: batch, inputs: shape.inputs, neurons: shape.neurons, x: x.pointer,
                                              outputGrad: dy.pointer, deferred: operands.pointer, scratch: scratch.pointer)
                    }
                    stored.append(product); deferred.append(operands)
                }
                var storedLeaves = stored.map(\.pointer), deferredLeaves = deferred.map(\.pointer)
                pairwiseSumInPlace(&storedLeaves, n: batches.count, range: 0..<count)
                // The whole gradient at once, and in parts cut inside rows and tiles (as workers' slices cut it).
                let cuts = [0, min(count, 16 * 37), min(count, 3 * shape.inputs + 5), min(count, count / 2 + 1), count]
                for parts in [[0, count], cuts.sorted()] {
                    let got = Buffer(count, fill: .nan)
                    for k in 0..<(parts.count - 1) where parts[k] < parts[k + 1] {
                        bf16DenseReduceDeferred(&deferredLeaves, n: batches.count, offset: 0, inputs: shape.inputs,
                                                neurons: shape.neurons, range: parts[k]..<parts[k + 1], weightGrad: got.pointer)
                    }
                    let want = Buffer(count)
                    want.pointer.update(from: storedLeaves[0], count: count)
                    assertSame(got, want, "\(label), parts \(parts)")
                }
            }
        }
    }

    func testPeakMeasured() throws {
        try requireUnit()
        let peak = try XCTUnwrap(measureBF16Peak(seconds: 0.02))
        XCTAssert(peak > 0 && peak.isFinite)
    }
}
