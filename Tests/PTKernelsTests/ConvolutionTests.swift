// Every convolution implementation against the references over awkward geometries, all three passes;
// determinism; Conv1D through the same machinery.
import XCTest
import PTKernels

final class ConvolutionTests: XCTestCase {
    /// (label, geometry, mb of the call <= geometry.mb)
    static let cases: [(String, ConvGeometry, Int)] = [
        ("lenet-conv1 ic=1 pad2", ConvGeometry(mb: 3, ic: 1, oc: 6, ih: 28, iw: 28, kh: 5, kw: 5, ph: 2, pw: 2), 3),
        ("lenet-conv2", ConvGeometry(mb: 20, ic: 6, oc: 16, ih: 14, iw: 14, kh: 5, kw: 5), 20),
        ("3x3 pad1 odd sizes", ConvGeometry(mb: 2, ic: 3, oc: 5, ih: 7, iw: 9, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("3x3 pad1 17ch several groups", ConvGeometry(mb: 7, ic: 17, oc: 33, ih: 12, iw: 13, kh: 3, kw: 3, ph: 1, pw: 1), 5),
        // oc*ih*iw <= ic*oh*ow: backward data as the transposed convolution (the others use col2im).
        ("3x3 pad1 channel reduction", ConvGeometry(mb: 3, ic: 9, oc: 4, ih: 8, iw: 10, kh: 3, kw: 3, ph: 1, pw: 1), 3),
        ("5x5 pad2 32->16 several groups", ConvGeometry(mb: 40, ic: 32, oc: 16, ih: 9, iw: 7, kh: 5, kw: 5, ph: 2, pw: 2), 37),
        ("stride 2 pad 1", ConvGeometry(mb: 2, ic: 4, oc: 7, ih: 9, iw: 11, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 2),
        ("stride 2x3 no pad", ConvGeometry(mb: 2, ic: 3, oc: 4, ih: 10, iw: 13, kh: 2, kw: 4, sh: 2, sw: 3), 1),
        ("pad larger than overhang", ConvGeometry(mb: 2, ic: 2, oc: 3, ih: 5, iw: 4, kh: 3, kw: 3, ph: 3, pw: 4), 2),
        ("kernel bigger than input", ConvGeometry(mb: 2, ic: 2, oc: 3, ih: 2, iw: 3, kh: 3, kw: 5, ph: 1, pw: 2), 2),
        ("1x1", ConvGeometry(mb: 3, ic: 17, oc: 19, ih: 6, iw: 7, kh: 1, kw: 1), 3),
        ("1x1 stride 2", ConvGeometry(mb: 2, ic: 5, oc: 6, ih: 7, iw: 7, kh: 1, kw: 1, sh: 2, sw: 2), 2),
        ("1x1 stride 3x2 odd sizes", ConvGeometry(mb: 3, ic: 7, oc: 5, ih: 10, iw: 35, kh: 1, kw: 1, sh: 3, sw: 2), 3),
        ("1x1 pad 1", ConvGeometry(mb: 2, ic: 3, oc: 4, ih: 4, iw: 5, kh: 1, kw: 1, ph: 1, pw: 1), 2),
        ("ic=1 oc=1", ConvGeometry(mb: 1, ic: 1, oc: 1, ih: 5, iw: 6, kh: 2, kw: 3), 1),
        ("oc=1 wide planes (single-channel tiles)", ConvGeometry(mb: 2, ic: 3, oc: 1, ih: 20, iw: 21, kh: 3, kw: 3, ph: 1, pw: 1), 1),
        ("per-sample GEMM, two k-blocks", ConvGeometry(mb: 3, ic: 20, oc: 21, ih: 17, iw: 16, kh: 5, kw: 5, ph: 2, pw: 2), 2),
        ("per-sample GEMM, row chunks", ConvGeometry(mb: 2, ic: 32, oc: 20, ih: 33, iw: 31, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("per-sample GEMM, stride 2 row chunks", ConvGeometry(mb: 1, ic: 48, oc: 8, ih: 40, iw: 40, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 1),
        ("big plane, one sample per group", ConvGeometry(mb: 3, ic: 2, oc: 9, ih: 50, iw: 47, kh: 3, kw: 3, ph: 1, pw: 1), 3),
        ("rect kernel pad w only", ConvGeometry(mb: 2, ic: 3, oc: 4, ih: 6, iw: 5, kh: 2, kw: 4, ph: 0, pw: 3), 2),
        ("conv1d k5 pad2", ConvGeometry(mb: 3, ic: 5, oc: 6, ih: 1, iw: 37, kh: 1, kw: 5, pw: 2), 3),
        ("conv1d stride 2", ConvGeometry(mb: 2, ic: 4, oc: 3, ih: 1, iw: 40, kh: 1, kw: 3, sw: 2, pw: 1), 2),
        // Output width a multiple of 16, stride 1: forward (and transposed backward data) as direct register tiles.
        ("direct tiles 8x3 partial rows", ConvGeometry(mb: 3, ic: 5, oc: 13, ih: 6, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("direct tiles vector tail", ConvGeometry(mb: 2, ic: 7, oc: 20, ih: 5, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("direct tiles 6x4 oc64", ConvGeometry(mb: 2, ic: 33, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("direct tiles pad larger than overhang", ConvGeometry(mb: 2, ic: 2, oc: 9, ih: 3, iw: 10, kh: 3, kw: 3, ph: 3, pw: 4), 2),
        ("direct tiles backward data only", ConvGeometry(mb: 2, ic: 6, oc: 17, ih: 9, iw: 16, kh: 3, kw: 3), 2),
        ("direct tiles rect 5x3 oc 7", ConvGeometry(mb: 1, ic: 3, oc: 7, ih: 8, iw: 32, kh: 5, kw: 3, ph: 2, pw: 1), 1),
        ("direct tiles conv1d", ConvGeometry(mb: 3, ic: 4, oc: 10, ih: 1, iw: 48, kh: 1, kw: 5, pw: 2), 3),
        // Direct forward layouts (DirectConvolution.swift): rows stored straight into the output, read in
        // place (no padding) for every sample; rows whose last vector overlaps its neighbour (ow 28); the
        // padded width read in place with the call's last sample copied (ow 7 < 8 on AVX2 and AVX-512).
        ("direct rows in place", ConvGeometry(mb: 3, ic: 2, oc: 5, ih: 18, iw: 35, kh: 3, kw: 4), 3),
        ("direct rows overlapping vectors", ConvGeometry(mb: 2, ic: 2, oc: 7, ih: 28, iw: 30, kh: 3, kw: 3, ph: 1), 2),
        ("direct padded width in place", ConvGeometry(mb: 4, ic: 3, oc: 9, ih: 9, iw: 9, kh: 3, kw: 3), 4),
        ("direct tiles in place", ConvGeometry(mb: 3, ic: 3, oc: 20, ih: 10, iw: 18, kh: 3, kw: 3), 3),
        ("direct padded width, samples too small to read in place", ConvGeometry(mb: 4, ic: 1, oc: 3, ih: 1, iw: 6, kh: 1, kw: 3), 4),
        // 3-wide kernels, oc a multiple of 16 (>= 32), ic >= 8: backward weights as (taps x channels) tiles.
        ("weights tiles 4x3x2 group tail", ConvGeometry(mb: 2, ic: 9, oc: 32, ih: 7, iw: 11, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("weights tiles 4x3x2 pixel pairs even width", ConvGeometry(mb: 2, ic: 8, oc: 32, ih: 6, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("weights tiles 3x3x3 stride 2", ConvGeometry(mb: 3, ic: 8, oc: 48, ih: 5, iw: 6, kh: 2, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 3),
        ("weights tiles 2x3x4 pad larger than overhang", ConvGeometry(mb: 2, ic: 10, oc: 64, ih: 6, iw: 9, kh: 1, kw: 3, pw: 4), 1),
        ("weights tiles oc 128", ConvGeometry(mb: 1, ic: 8, oc: 128, ih: 4, iw: 4, kh: 3, kw: 3, ph: 1, pw: 1), 1),
        // One vector of output channels (ResNet-20's first stage; 8 groups a tile at AVX-512, a partial last tile).
        ("weights tiles oc 16", ConvGeometry(mb: 3, ic: 16, oc: 16, ih: 9, iw: 12, kh: 3, kw: 3, ph: 1, pw: 1), 3),
        ("weights tiles oc 16 conv1d group tail", ConvGeometry(mb: 2, ic: 17, oc: 16, ih: 1, iw: 20, kh: 1, kw: 3, pw: 1), 2),
        ("weights tiles conv1d stride 2", ConvGeometry(mb: 2, ic: 8, oc: 32, ih: 1, iw: 20, kh: 1, kw: 3, sw: 2, pw: 1), 2),
        // 5x5 kernels, oc a multiple of 16, ic >= 6: the 5-wide weights tiles (LeNet conv2; oc 32 runs two
        // vector blocks of channels, padding and stride the image's row and column steps).
        ("weights tiles 5x5 mnist-fast conv2", ConvGeometry(mb: 3, ic: 8, oc: 16, ih: 14, iw: 14, kh: 5, kw: 5), 2),
        ("weights tiles 5x5 oc 32 pad 2 stride 2", ConvGeometry(mb: 2, ic: 7, oc: 32, ih: 9, iw: 11, kh: 5, kw: 5, sh: 2, sw: 2, ph: 2, pw: 2), 2),
        // 2-D, rows not whole 16-pixel vectors or strided: forward on tap planes (TapPlanesConvolution.swift),
        // vectors spanning output rows and samples, the last vector of a sample shifted back.
        ("tap planes 8x8 several groups", ConvGeometry(mb: 14, ic: 64, oc: 20, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1), 13),
        ("tap planes 7x7 vector tail", ConvGeometry(mb: 3, ic: 5, oc: 24, ih: 7, iw: 7, kh: 3, kw: 3, ph: 1, pw: 1), 3),
        ("tap planes stride 2 wide rows", ConvGeometry(mb: 2, ic: 3, oc: 9, ih: 12, iw: 41, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 2),
        ("tap planes stride 3x2 rect", ConvGeometry(mb: 2, ic: 2, oc: 5, ih: 17, iw: 36, kh: 4, kw: 3, sh: 3, sw: 2, ph: 2, pw: 0), 2),
        // Narrow rows (ow < 16) with enough dropped columns: forward and backward weights on shifted planes
        // (padded; the forward in two groups of samples, backward weights in one).
        ("shifted planes pad 1", ConvGeometry(mb: 40, ic: 3, oc: 12, ih: 12, iw: 11, kh: 5, kw: 5, ph: 1, pw: 1), 37),
        ("conv1d 1 channel long", ConvGeometry(mb: 2, ic: 1, oc: 8, ih: 1, iw: 1000, kh: 1, kw: 7), 2),
        // 3x3 stride 1, >= 32 channels, >= 256 output pixels: forward (and backward data through the
        // transposed forward) as Winograd F(2x2, 3x3) (WinogradConvolution.swift): ResNet-20 / cifar-small
        // shapes, groups of samples with a partial last group, a sample in chunks of tile rows, partial tiles
        // (odd oh, ow), padding 0, 2 and 1x0, oc not a multiple of any tile's rows, two k-blocks (ic > 384).
        ("winograd resnet20 32ch 16x16", ConvGeometry(mb: 3, ic: 32, oc: 32, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1), 3),
        ("winograd cifar-small 32->64 16x16 partial group", ConvGeometry(mb: 5, ic: 32, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1), 5),
        ("winograd 32x32 row chunks", ConvGeometry(mb: 2, ic: 32, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("winograd odd 17x19 oc 33", ConvGeometry(mb: 2, ic: 32, oc: 33, ih: 17, iw: 19, kh: 3, kw: 3, ph: 1, pw: 1), 2),
        ("winograd pad 0 odd output", ConvGeometry(mb: 2, ic: 33, oc: 32, ih: 18, iw: 21, kh: 3, kw: 3), 2),
        ("winograd pad 2", ConvGeometry(mb: 2, ic: 32, oc: 40, ih: 15, iw: 16, kh: 3, kw: 3, ph: 2, pw: 2), 1),
        ("winograd pad 1x0", ConvGeometry(mb: 2, ic: 32, oc: 32, ih: 16, iw: 20, kh: 3, kw: 3, ph: 1, pw: 0), 2),
        ("winograd two k-blocks", ConvGeometry(mb: 1, ic: 400, oc: 32, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1), 1),
        // 3x3 stride 2 padding 1 on planes twice the output: backward data by phases (StridedPhaseConvolution.swift):
        // ResNet-20's 16 -> 32 layer (16-wide rows), 8-wide rows with channel counts that leave partial tiles,
        // and an output of 6 rows (48 positions: vectors spanning rows at AVX-512).
        ("strided phases resnet20 16->32", ConvGeometry(mb: 3, ic: 16, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 3),
        ("strided phases 8-wide rows odd channels", ConvGeometry(mb: 2, ic: 7, oc: 5, ih: 16, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 2),
        ("strided phases 6 rows", ConvGeometry(mb: 2, ic: 3, oc: 9, ih: 12, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1), 1),
        // 8x8 planes, padding 1: winograd8x8 (a plane's 16 tiles as the lanes of a vector), and `winograd` forced
        // on the same geometry. ResNet-20's stage with a partial last group (6 samples a group at AVX-512; at
        // AVX2 24-tile panels, so a plane's tiles straddle two panels); odd channel counts.
        ("winograd8x8 resnet20 64ch partial group", ConvGeometry(mb: 8, ic: 64, oc: 64, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1), 7),
        ("winograd8x8 odd channels", ConvGeometry(mb: 3, ic: 33, oc: 37, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1), 3),
    ]

    /// Every applicable entry of every pass's list, forced one at a time (the other passes keep their
    /// choice), against the reference twin over the sweep; and every entry of every list runs somewhere.
    func testEveryImplementationMatchesReference() {
        var checked = 0
        var covered: Set<String> = []
        for (label, geometry, mb) in Self.cases {
            XCTAssertTrue(geometry.isValid, label)
            let g = geometry.with(mb: mb)
            let x = Buffer(random: g.inputCount, seed: 1), w = Buffer(random: g.weightCount, seed: 2)
            let bias = Buffer(random: g.oc, seed: 3), dy = Buffer(random: g.outputCount, seed: 4)
            let dw0 = Buffer(random: g.weightCount, seed: 5), db0 = Buffer(random: g.oc, seed: 6)

            let yRef = Buffer(g.outputCount), dxRef = Buffer(g.inputCount, fill: 7), dwRef = dw0.copy(), dbRef = db0.copy()
            convForwardReference(g, input: x.pointer, weight: w.pointer, bias: bias.pointer, output: yRef.pointer)
            convBackwardDataReference(g, outputGrad: dy.pointer, weight: w.pointer, inputGrad: dxRef.pointer)
            convBackwardWeightsReference(g, input: x.pointer, outputGrad: dy.pointer, weightGrad: dwRef.pointer, biasGrad: dbRef.pointer)
            let yRefNoBias = Buffer(g.outputCount)
            convForwardReference(g, input: x.pointer, weight: w.pointer, bias: nil, output: yRefNoBias.pointer)
            func scratch(_ kernel: ConvKernel) -> Buffer { Buffer(kernel.scratchCount + 1, fill: .nan) }

            for entry in ConvKernel.Forward.applicable(to: geometry) {
                let kernel = ConvKernel(geometry: geometry, forward: entry)
                let s = scratch(kernel)
                let name = "forward \(entry) (\(kernel.implementationName(.forward))) \(label) [\(geometry) mb=\(mb)]"
                let y = Buffer(g.outputCount, fill: .nan), y2 = Buffer(g.outputCount, fill: .nan)
                kernel.forward(mb: mb, input: x.pointer, weight: w.pointer, bias: bias.pointer, output: y.pointer, scratch: s.pointer)
                assertClose(y, yRef, reduction: g.reduction, name)
                kernel.forward(mb: mb, input: x.pointer, weight: w.pointer, bias: nil, output: y2.pointer, scratch: s.pointer)
                assertClose(y2, yRefNoBias, reduction: g.reduction, "\(name) no bias")
                covered.insert("forward.\(entry)")
                checked += 1
            }
            for entry in ConvKernel.BackwardData.applicable(to: geometry) {
                let kernel = ConvKernel(geometry: geometry, backwardData: entry)
                let s = scratch(kernel)
                let name = "backwardData \(entry) (\(kernel.implementationName(.backwardData))) \(label) [\(geometry) mb=\(mb)]"
                let dx = Buffer(g.inputCount, fill: .nan)
                kernel.backwardData(mb: mb, outputGrad: dy.pointer, weight: w.pointer, inputGrad: dx.pointer, scratch: s.pointer)
                assertClose(dx, dxRef, reduction: g.oc * g.kh * g.kw, name)
                covered.insert("backwardData.\(entry)")
                checked += 1
            }
            for entry in ConvKernel.BackwardWeights.applicable(to: geometry) {
                let kernel = ConvKernel(geometry: geometry, backwardWeights: entry)
                let s = scratch(kernel)
                let name = "backwardWeights \(entry) \(label) [\(geometry) mb=\(mb)]"
                let dw = dw0.copy(), db = db0.copy()
                kernel.backwardWeights(mb: mb, input: x.pointer, outputGrad: dy.pointer, weightGrad: dw.pointer,
                                       biasGrad: db.pointer, scratch: s.pointer)
                assertClose(dw, dwRef, reduction: mb * g.oh * g.ow, name)
                assertClose(db, dbRef, reduction: mb * g.oh * g.ow, "\(name) bias")
                let dwNoBias = dw0.copy()
                kernel.backwardWeights(mb: mb, input: x.pointer, outputGrad: dy.pointer, weightGrad: dwNoBias.pointer,
                                       biasGrad: nil, scratch: s.pointer)
                assertClose(dwNoBias, dwRef, reduction: mb * g.oh * g.ow, "\(name) no bias")
                covered.insert("backwardWeights.\(entry)")
                checked += 1
            }
        }
        let all = ConvKernel.Forward.allCases.map { "forward.\($0)" } + ConvKernel.BackwardData.allCases.map { "backwardData.\($0)" }
            + ConvKernel.BackwardWeights.allCases.map { "backwardWeights.\($0)" }
        XCTAssertEqual(Set(all).subtracting(covered), [], "entries no geometry of the sweep runs")
        XCTAssertGreaterThanOrEqual(checked, 3 * 2 * Self.cases.count)
    }

    /// The default is the first applicable entry of each list, and every list ends in the reference,
    /// which applies to every geometry.
    func testDefaultIsTheFirstApplicableEntryAndReferenceIsLast() {
        for (label, geometry, _) in Self.cases {
            let kernel = ConvKernel(geometry: geometry)
            XCTAssertEqual(kernel.forwardImplementation, ConvKernel.Forward.applicable(to: geometry).first, label)
            XCTAssertEqual(kernel.backwardDataImplementation, ConvKernel.BackwardData.applicable(to: geometry).first, label)
            XCTAssertEqual(kernel.backwardWeightsImplementation, ConvKernel.BackwardWeights.applicable(to: geometry).first, label)
            XCTAssertEqual(ConvKernel.Forward.applicable(to: geometry).last, .reference, label)
            XCTAssertEqual(ConvKernel.BackwardData.applicable(to: geometry).last, .reference, label)
            XCTAssertEqual(ConvKernel.BackwardWeights.applicable(to: geometry).last, .reference, label)
        }
    }

    /// The entries of the benchmarked layers (`ptrain bench kernels`), pinned: a change of choice
    /// changes the sums (and so the trained bits), so it must show up here first.
    func testChoiceOfTheBenchmarkedLayers() {
        let layers: [(String, ConvGeometry, ConvKernel.Forward, ConvKernel.BackwardData, ConvKernel.BackwardWeights)] = [
            ("lenet-conv1", ConvGeometry(mb: 64, ic: 1, oc: 6, ih: 28, iw: 28, kh: 5, kw: 5, ph: 2, pw: 2),
             .direct, .transposedForward, .direct),
            ("lenet-conv2", ConvGeometry(mb: 64, ic: 6, oc: 16, ih: 14, iw: 14, kh: 5, kw: 5),
             .shiftedPlanes, .transposedForward, .weightsTiles),
            ("cifar-3to32-32x32", ConvGeometry(mb: 128, ic: 3, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1),
             .direct, .transposedForward, .direct),
            ("cifar-32to32-32x32", ConvGeometry(mb: 128, ic: 32, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1),
             .winograd, .transposedForward, .weightsTiles),
            ("cifar-32to64-16x16", ConvGeometry(mb: 128, ic: 32, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1),
             .winograd, .transposedForward, .weightsTiles),
            ("resnet-64to64-56x56", ConvGeometry(mb: 8, ic: 64, oc: 64, ih: 56, iw: 56, kh: 3, kw: 3, ph: 1, pw: 1),
             .winograd, .transposedForward, .weightsTiles),
            ("resnet20-16to16-32x32", ConvGeometry(mb: 16, ic: 16, oc: 16, ih: 32, iw: 32, kh: 3, kw: 3, ph: 1, pw: 1),
             .direct, .transposedForward, .weightsTiles),
            ("xo-8to16-8x8", ConvGeometry(mb: 16, ic: 8, oc: 16, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1),
             .direct, .transposedForward, .direct),
            ("resnet20-32to32-16x16", ConvGeometry(mb: 16, ic: 32, oc: 32, ih: 16, iw: 16, kh: 3, kw: 3, ph: 1, pw: 1),
             .winograd, .transposedForward, .weightsTiles),
            ("pointwise-256to64-56x56", ConvGeometry(mb: 8, ic: 256, oc: 64, ih: 56, iw: 56, kh: 1, kw: 1),
             .pointwiseGemm, .pointwiseGemm, .pointwiseGemm),
            ("stride 2", ConvGeometry(mb: 8, ic: 16, oc: 32, ih: 16, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1),
             .tapPlanes, .stridedPhases, .weightsTiles),
            ("stride 2, few input channels", ConvGeometry(mb: 8, ic: 4, oc: 32, ih: 16, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1),
             .tapPlanes, .stridedPhases, .im2colGemm),
            ("resnet20-64to64-8x8", ConvGeometry(mb: 16, ic: 64, oc: 64, ih: 8, iw: 8, kh: 3, kw: 3, ph: 1, pw: 1),
             .winograd8x8, .transposedForward, .weightsTiles),
            ("resnet20-16to32-s2", ConvGeometry(mb: 16, ic: 16, oc: 32, ih: 32, iw: 32, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1),
             .tapPlanes, .stridedPhases, .weightsTiles),
            ("resnet20-32to64-s2", ConvGeometry(mb: 16, ic: 32, oc: 64, ih: 16, iw: 16, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1),
             .tapPlanes, .stridedPhases, .weightsTiles),
            ("resnet20-shortcut-16to32-s2", ConvGeometry(mb: 16, ic: 16, oc: 32, ih: 32, iw: 32, kh: 1, kw: 1, sh: 2, sw: 2),
             .im2colGemmPerSample, .stridedPointwise, .stridedPointwise),
        ]
        for (label, g, forward, data, weights) in layers {
            let kernel = ConvKernel(geometry: g)
            XCTAssertEqual(kernel.forwardImplementation, forward, label)
            XCTAssertEqual(kernel.backwardDataImplementation, data, label)
            XCTAssertEqual(kernel.backwardWeightsImplementation, weights, label)
        }
        let lenet1 = ConvKernel(geometry: layers[0].1), resnet = ConvKernel(geometry: layers[5].1)
        XCTAssertEqual(lenet1.implementationName(.forward, vectorWidth: 16), "direct.rows")
        XCTAssertEqual(lenet1.implementationName(.backwardData, vectorWidth: 16), "transposedForward(direct.paddedWidth)")
        XCTAssertEqual(ConvKernel(geometry: layers[1].1).implementationName(.forward, vectorWidth: 16), "shiftedPlanes")
        XCTAssertEqual(ConvKernel(geometry: layers[1].1).implementationName(.backwardData, vectorWidth: 16),
                       "transposedForward(direct.paddedWidth)")
        XCTAssertEqual(resnet.implementationName(.backwardData, vectorWidth: 8), "transposedForward(winograd)")
        XCTAssertEqual(layers[12].0, "resnet20-64to64-8x8")
        XCTAssertEqual(ConvKernel(geometry: layers[12].1).implementationName(.backwardData, vectorWidth: 16), "transposedForward(winograd8x8)")
    }

    /// winograd8x8 is `winograd` with other loops: the same bits on every geometry it takes (whole and
    /// partial groups, odd channel counts), with and without bias (a mutation of any one transform
    /// step shows here, and not only as an error within the sweep's tolerance).
    func testWinograd8x8GivesWinogradsBits() {
        var labels: [String] = []
        for (label, geometry, mb) in Self.cases where ConvKernel.Forward.winograd8x8.isApplicable(geometry) {
            XCTAssertTrue(ConvKernel.Forward.winograd.isApplicable(geometry), label)
            let g = geometry.with(mb: mb)
            let x = Buffer(random: g.inputCount, seed: 31), w = Buffer(random: g.weightCount, seed: 32)
            let bias = Buffer(random: g.oc, seed: 33)
            for b in [bias.pointer, nil] as [UnsafeMutablePointer<Float>?] {
                var outs: [Buffer] = []
                for entry in [ConvKernel.Forward.winograd8x8, .winograd] {
                    let kernel = ConvKernel(geometry: geometry, forward: entry)
                    let scratch = Buffer(kernel.scratchCount + 1, fill: .nan), y = Buffer(g.outputCount, fill: .nan)
                    kernel.forward(mb: mb, input: x.pointer, weight: w.pointer, bias: b, output: y.pointer, scratch: scratch.pointer)
                    outs.append(y)
                }
                assertIdentical(outs[0], outs[1], "\(label) bias \(b != nil)")
            }
            labels.append(label)
        }
        XCTAssertEqual(labels, ["winograd8x8 resnet20 64ch partial group", "winograd8x8 odd channels"])
    }

    /// Winograd F(2x2, 3x3) against its own error bound, per output, in Double: with the absolute-value
    /// algorithm W = sum over c of |A^T| (|G| |g| |G^T| .* |B^T| |d| |B|) |A| (the sum of |terms| that the
    /// transforms and products add up), each output's error is at most about (ic + 12) eps W to first order:
    /// ic - 1 roundings of the chain over channels, 1 of each product, <= 4 of the input transform, <= 4 of
    /// the weight transform's sums and halvings, 4 of the output transform, 1 of the bias (which adds eps |y|).
    /// The sweep above holds it to the tolerance shared with the other entries; this bound is the one that
    /// follows from the algorithm (a missing term or wrong index gives an error of order W itself).
    func testWinogradErrorWithinItsBound() {
        let eps = Double(Float.ulpOfOne) / 2
        for (label, geometry, mb) in Self.cases where ConvKernel.Forward.winograd.isApplicable(geometry) {
            let g = geometry.with(mb: mb)
            let x = Buffer(random: g.inputCount, seed: 21), w = Buffer(random: g.weightCount, seed: 22)
            let bias = Buffer(random: g.oc, seed: 23)
            let kernel = ConvKernel(geometry: geometry, forward: .winograd)
            let scratch = Buffer(kernel.scratchCount + 1, fill: .nan), y = Buffer(g.outputCount, fill: .nan)
            kernel.forward(mb: mb, input: x.pointer, weight: w.pointer, bias: bias.pointer, output: y.pointer, scratch: scratch.pointer)
            let (bt, gm, at): ([[Double]], [[Double]], [[Double]]) = (
                [[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]],
                [[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]],
                [[1, 1, 1, 0], [0, 1, -1, -1]])
            // |G| |g| |G^T| per (o, c): 16 values.
            var uAbs = [Double](repeating: 0, count: g.oc * g.ic * 16)
            for o in 0..<g.oc {
                for c in 0..<g.ic {
                    for i in 0..<4 {
                        for j in 0..<4 {
                            var sum = 0.0
                            for p in 0..<3 {
                                for q in 0..<3 { sum += abs(gm[i][p]) * abs(Double(w.pointer[((o * g.ic + c) * 3 + p) * 3 + q])) * abs(gm[j][q]) }
                            }
                            uAbs[(o * g.ic + c) * 16 + i * 4 + j] = sum
                        }
                    }
                }
            }
            var worst = 0.0
            for s in 0..<mb {
                for ty in 0..<(g.oh + 1) / 2 {
                    for tx in 0..<(g.ow + 1) / 2 {
                        // |B^T| |d| |B| and B^T d B per channel, and the exact (Double) products.
                        var vAbs = [Double](repeating: 0, count: g.ic * 16), d = [Double](repeating: 0, count: 16)
                        var exact = [Double](repeating: 0, count: g.oc * 4)
                        for c in 0..<g.ic {
                            for i in 0..<4 {
                                for j in 0..<4 {
                                    let yy = 2 * ty - g.ph + i, xx = 2 * tx - g.pw + j
                                    let inside = yy >= 0 && yy < g.ih && xx >= 0 && xx < g.iw
                                    d[i * 4 + j] = inside ? Double(x.pointer[((s * g.ic + c) * g.ih + yy) * g.iw + xx]) : 0
                                }
                            }
                            for i in 0..<4 {
                                for j in 0..<4 {
                                    var sum = 0.0
                                    for p in 0..<4 { for q in 0..<4 { sum += abs(bt[i][p]) * abs(d[p * 4 + q]) * abs(bt[j][q]) } }
                                    vAbs[c * 16 + i * 4 + j] = sum
                                }
                            }
                            for o in 0..<g.oc {
                                for a in 0..<2 {
                                    for b in 0..<2 {
                                        var sum = 0.0
                                        for p in 0..<3 {
                                            for q in 0..<3 { sum += Double(w.pointer[((o * g.ic + c) * 3 + p) * 3 + q]) * d[(a + p) * 4 + b + q] }
                                        }
                                        exact[o * 4 + a * 2 + b] += sum
                                    }
                                }
                            }
                        }
                        for o in 0..<g.oc {
                            var m = [Double](repeating: 0, count: 16)
                            for c in 0..<g.ic { for k in 0..<16 { m[k] += uAbs[(o * g.ic + c) * 16 + k] * vAbs[c * 16 + k] } }
                            for a in 0..<2 {
                                for b in 0..<2 {
                                    let yy = 2 * ty + a, xx = 2 * tx + b
                                    guard yy < g.oh && xx < g.ow else { continue }
                                    var bound = 0.0
                                    for p in 0..<4 { for q in 0..<4 { bound += abs(at[a][p]) * m[p * 4 + q] * abs(at[b][q]) } }
                                    let want = exact[o * 4 + a * 2 + b] + Double(bias.pointer[o])
                                    let got = Double(y.pointer[((s * g.oc + o) * g.oh + yy) * g.ow + xx])
                                    let allowed = Double(g.ic + 12) * eps * bound + eps * (abs(want) + abs(Double(bias.pointer[o])))
                                    XCTAssertFalse(got.isNaN, label)
                                    worst = max(worst, abs(got - want) / allowed)
                                }
                            }
                        }
                    }
                }
            }
            XCTAssertLessThanOrEqual(worst, 1, "\(label): error / bound \(worst)")
        }
    }

    func testBitIdenticalRepeats() {
        for (label, geometry, mb) in Self.cases {
            let g = geometry.with(mb: mb)
            let kernel = ConvKernel(geometry: geometry)
            let x = Buffer(random: g.inputCount, seed: 11), w = Buffer(random: g.weightCount, seed: 12)
            let dy = Buffer(random: g.outputCount, seed: 13)
            var outs: [[Buffer]] = []
            for _ in 0..<2 {
                let scratch = Buffer(kernel.scratchCount + 1)
                let y = Buffer(g.outputCount), dx = Buffer(g.inputCount), dw = Buffer(g.weightCount), db = Buffer(g.oc)
                kernel.forward(mb: mb, input: x.pointer, weight: w.pointer, bias: nil, output: y.pointer, scratch: scratch.pointer)
                kernel.backwardData(mb: mb, outputGrad: dy.pointer, weight: w.pointer, inputGrad: dx.pointer, scratch: scratch.pointer)
                kernel.backwardWeights(mb: mb, input: x.pointer, outputGrad: dy.pointer, weightGrad: dw.pointer, biasGrad: db.pointer,
                                       scratch: scratch.pointer)
                outs.append([y, dx, dw, db])
            }
            for (i, pass) in ["forward", "backwardData", "backwardWeights", "bias"].enumerated() {
                assertIdentical(outs[0][i], outs[1][i], "\(label) \(pass)")
            }
        }
    }
}
