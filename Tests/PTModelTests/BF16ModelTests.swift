// bf16 logits against an fp32 run of the same model and weights, within a bound derived from bf16's
// rounding (not a fitted tolerance): see `testLogitsWithinBF16Bound`.
import XCTest
import PTKernels
import PTModel
import PTTensor

final class BF16ModelTests: XCTestCase {
    /// The bound, element by element, propagated layer by layer in Double. With u = 2^-8 (bf16 keeps 8
    /// significant bits, so rounding to nearest moves a value by at most 2^-8 of itself) and the fp32
    /// activations x, the bf16 run's x' with |x' - x| <= E:
    /// - a bf16 product term: |bf(w) bf(x') - w x| <= |bf(w)| (u |x'| + E) + u |w| |x|;
    /// - an fp32 product term (a layer left in fp32): |w x' - w x| <= |w| E;
    /// - each run's fp32 chain of K adds errs by at most K 2^-24 (1 + 2^-20) times the sum of |terms|;
    /// - ReLU and flatten do not grow the bound (1-Lipschitz, elementwise).
    /// The bf16 logits must lie within the bound of the fp32 logits; and they must differ from them
    /// somewhere (else the bf16 path did not run).
    func testLogitsWithinBF16Bound() throws {
        guard InstructionSet.bf16Unit != nil else {
            throw XCTSkip("needs AVX512_BF16 (vdpbf16ps) on the avx512 level: this CPU or PTRAIN_ISA=\(InstructionSet.current.name) lacks it")
        }
        let input = Shape(channels: 3, height: 8, width: 8)
        let specs: [LayerSpec] = [
            .conv(features: 16, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, initializer: .he), .relu,
            .conv(features: 32, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, initializer: .he), .relu,
            .flatten, .dense(neurons: 24, initializer: .he), .relu, .dense(neurons: 10, initializer: .he),
        ]
        let batch = 5
        let model = try Model(input: input, layers: specs, maxBatch: batch)
        let parameters = AlignedBuffer(count: model.parameterCount)
        model.initialize(parameters, seed: 3)
        let fp32 = Workspace(model: model), bf16 = Workspace(model: model, precision: .bf16)
        var rng = Xoshiro256(seed: 11)
        for i in 0..<batch * input.count {
            let v = rng.nextUnitFloat() * 2 - 1
            fp32.input[i] = v; bf16.input[i] = v
        }
        fp32.forward(batch: batch, parameters: parameters.pointer)
        bf16.forward(batch: batch, parameters: parameters.pointer)

        let u = 1.0 / 256, gamma = { (k: Int) in Double(k) * 0x1p-24 * (1 + 0x1p-20) }
        func bf(_ x: Float) -> Double { Double(bf16ValueReference(x)) }
        var bound = [Double](repeating: 0, count: batch * input.count)   // the input is the same
        var shape = input
        for (index, layer) in model.layers.enumerated() {
            let x = fp32.activations[index].pointer, xb = bf16.activations[index].pointer
            let outCount = layer.outputShape.count
            var next = [Double](repeating: 0, count: batch * outCount)
            // One output element: the terms (w, input index) of its sum.
            func linear(_ terms: (Int, (Int, Int) -> Void) -> Void, bf16Run: Bool, k: Int) {
                for s in 0..<batch {
                    for o in 0..<outCount {
                        var products = 0.0, sumExact = 0.0, sumBF = 0.0
                        terms(o) { w, i in
                            let wv = parameters.pointer[w], xi = s * shape.count + i
                            let e = bound[xi]
                            if bf16Run {
                                products += abs(bf(wv)) * (u * abs(Double(xb[xi])) + e) + u * abs(Double(wv)) * abs(Double(x[xi]))
                                sumBF += abs(bf(wv) * bf(xb[xi]))
                            } else {
                                products += abs(Double(wv)) * e
                                sumBF += abs(Double(wv) * Double(xb[xi]))
                            }
                            sumExact += abs(Double(wv) * Double(x[xi]))
                        }
                        next[s * outCount + o] = products + gamma(k + 1) * (sumExact + sumBF)
                    }
                }
            }
            if let conv = layer as? Conv2D {
                let g = conv.geometry, w0 = conv.parameters[0].offset, khw = g.kh * g.kw, p = g.oh * g.ow
                linear({ out, add in
                    let o = out / p, y = (out % p) / g.ow, xx = out % g.ow
                    for c in 0..<g.ic { for i in 0..<g.kh { for j in 0..<g.kw {
                        let iy = y * g.sh - g.ph + i, ix = xx * g.sw - g.pw + j
                        if iy >= 0 && iy < g.ih && ix >= 0 && ix < g.iw { add(w0 + (o * g.ic + c) * khw + i * g.kw + j, (c * g.ih + iy) * g.iw + ix) }
                    } } }
                }, bf16Run: conv.kernel.bf16Passes.forward, k: g.reduction)
            } else if let dense = layer as? Dense {
                let w0 = dense.parameters[0].offset
                linear({ o, add in for i in 0..<dense.inputs { add(w0 + o * dense.inputs + i, i) } },
                       bf16Run: dense.bf16Applies, k: dense.inputs)
            } else {
                next = bound   // relu, flatten
            }
            bound = next
            shape = layer.outputShape
        }
        var worst = 0.0, differs = false
        for i in 0..<batch * model.classes {
            let d = abs(Double(bf16.logits[i]) - Double(fp32.logits[i]))
            if d > 0 { differs = true }
            XCTAssertLessThanOrEqual(d, bound[i], "logit \(i): bf16 \(bf16.logits[i]), fp32 \(fp32.logits[i]), bound \(bound[i])")
            worst = max(worst, d / bound[i])
        }
        XCTAssertTrue(differs, "bf16 logits equal the fp32 ones: the bf16 path did not run")
        print("bf16 logits: largest difference / bound = \(worst)")
    }

    /// A bf16 workspace keeps conv and dense layers' prepared weights while `weightsVersion` stays the same:
    /// the same bits as preparing them in every call (version nil), made again under a new version,
    /// and really kept (changed weights under the old version still give the old weights' result).
    func testPreparedWeightsFollowTheVersion() throws {
        guard InstructionSet.bf16Unit != nil else {
            throw XCTSkip("needs AVX512_BF16 (vdpbf16ps) on the avx512 level: this CPU or PTRAIN_ISA=\(InstructionSet.current.name) lacks it")
        }
        let input = Shape(channels: 16, height: 6, width: 6), batch = 4
        // Every conv and dense pass that reads the weights in bf16 (>= 16 channels and neurons).
        let specs: [LayerSpec] = [.conv(features: 16, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, initializer: .he), .relu,
                                  .conv(features: 16, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, initializer: .he), .relu,
                                  .flatten, .dense(neurons: 40, initializer: .he), .relu, .dense(neurons: 24, initializer: .he), .relu,
                                  .dense(neurons: 16, initializer: .he)]
        let model = try Model(input: input, layers: specs, maxBatch: batch)
        let kept = model.layers.map { $0.preparedWeightsCount(precision: .bf16) }
        guard kept.contains(where: { $0 > 0 }) else { throw XCTSkip("this bf16 unit (\(InstructionSet.bf16Unit!)) keeps no prepared weights") }
        XCTAssertEqual(model.layers.map { $0.preparedWeightsCount(precision: .fp32) }, [Int](repeating: 0, count: model.layers.count))
        let a = AlignedBuffer(count: model.parameterCount), b = AlignedBuffer(count: model.parameterCount)
        model.initialize(a, seed: 1)
        model.initialize(b, seed: 2)
        var rng = Xoshiro256(seed: 5)
        let x = (0..<(batch * input.count)).map { _ in rng.nextUnitFloat() * 2 - 1 }
        let labels = (0..<batch).map { Int32($0 * 5 % 16) }
        func step(_ ws: Workspace, _ params: AlignedBuffer) -> [UInt32] { trainingStepBits(ws, params, x: x, labels: labels, batch: batch) }
        let plain = Workspace(model: model, precision: .bf16)
        let fromA = step(plain, a), fromB = step(plain, b)
        XCTAssertNotEqual(fromA, fromB)
        let ws = Workspace(model: model, precision: .bf16)
        ws.weightsVersion = 1
        XCTAssertEqual(step(ws, a), fromA, "first call of a version")
        XCTAssertEqual(step(ws, a), fromA, "kept weights, same version")
        XCTAssertEqual(kept.map { $0 > 0 }, model.layers.map { $0 is Dense || $0 is Conv2D })
        // Logits from the kept (a) weights (the biases, read as they are, are zero in both); the weight
        // gradients read no prepared weights.
        let stale = step(ws, b)
        XCTAssertEqual(Array(stale.prefix(batch * model.classes)), Array(fromA.prefix(batch * model.classes)),
                       "weights changed under one version: the kept ones are used")
        ws.weightsVersion = 2
        XCTAssertEqual(step(ws, b), fromB, "a new version prepares again")
        ws.weightsVersion = nil
        XCTAssertEqual(step(ws, a), fromA, "no version: prepared in every call")
        ws.weightsVersion = 2
        XCTAssertEqual(step(ws, a), fromA, "a call without a version leaves nothing current")
    }

    /// A bf16 convolution whose input feeds a branch adds its input gradient in place (the transposed
    /// forward over channel pairs) instead of through a spare buffer: the same logits and gradients,
    /// bit for bit, as a workspace that routes it through the spare buffer.
    func testInPlaceInputGradientIsTheSpareBuffersBits() throws {
        guard InstructionSet.bf16Unit == .avx512bf16 else {
            throw XCTSkip("adding in place is the vector unit's transposed forward (this CPU: \(InstructionSet.bf16Unit.map { "\($0)" } ?? "no bf16 unit"))")
        }
        func conv(_ f: Int, _ k: Int, padding: Int = 0, name: String? = nil, from: [LayerRef]? = nil) -> LayerNode {
            LayerNode(.conv(features: f, kernelHeight: k, kernelWidth: k, stride: 1, padding: padding, initializer: .he), name: name, from: from)
        }
        let bn = LayerSpec.batchNorm(momentum: 0.1, epsilon: 1e-3)
        // An identity block (its first conv's input also feeds the add), then two convolutions of one
        // input (the 3x3 runs backward after the 1x1 and adds into what that wrote); 16 channels, 16 wide.
        let nodes: [LayerNode] = [
            conv(16, 3, padding: 1, name: "stem"), LayerNode(bn), LayerNode(.relu, name: "stem.relu"),
            conv(16, 3, padding: 1), LayerNode(bn), .relu, conv(16, 3, padding: 1), LayerNode(bn, name: "b.bn2"),
            LayerNode(.add, name: "b.add", from: [.name("b.bn2"), .name("stem.relu")]), LayerNode(.relu, name: "b.out"),
            conv(16, 3, padding: 1, name: "p.a"), conv(16, 1, name: "p.b", from: [.name("b.out")]),
            LayerNode(.add, name: "p.add", from: [.name("p.a"), .name("p.b")]), .relu,
            .globalAvgPool, .dense(neurons: 10, initializer: .he),
        ]
        let batch = 3
        let (model, params, x) = try seededModel(nodes, input: Shape(channels: 4, height: 16, width: 16), batch: batch, seed: 3,
                                                 dataSeed: 9)
        func step(_ ws: Workspace) -> [UInt32] {
            trainingStepBits(ws, params, x: x, labels: (0..<batch).map { Int32($0 * 3) }, batch: batch)
        }
        let inPlace = Workspace(model: model, precision: .bf16), spare = Workspace(model: model, precision: .bf16, addInPlace: false)
        let names = model.layers.enumerated().filter { inPlace.addsInPlace[$0.offset] }.map { $0.element.name }
        XCTAssertEqual(names.count, 2, "layers adding in place: \(names)")
        XCTAssertFalse(spare.addsInPlace.contains(true))
        let a = step(inPlace), b = step(spare)
        XCTAssertEqual(a.count, b.count)
        let first = a.indices.first { a[$0] != b[$0] }
        XCTAssertNil(first, "logits and gradients differ first at element \(first ?? 0) of \(a.count)")
    }

    /// `Workspace.backward(...clearing:)` into a gradient buffer full of NaN gives the bits of zeroing it and
    /// running the plain backward (the dense weight gradients stored, not added: they are never read), in fp32
    /// and bf16; and a clearing range that cuts a dense weight gradient leaves that layer adding (its part
    /// outside the range, zeroed by the caller, stays read).
    func testClearingBackwardIsZeroingBits() throws {
        let nodes: [LayerNode] = [
            LayerNode(.conv(features: 4, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, initializer: .he)), .relu, .flatten,
            .dense(neurons: 40, initializer: .he), .relu, .dense(neurons: 10, initializer: .he),
        ]
        let batch = 5
        let (model, params, x) = try seededModel(nodes, input: Shape(channels: 2, height: 8, width: 8), batch: batch, seed: 4,
                                                 dataSeed: 11)
        let all = 0..<model.parameterCount
        let dense1 = model.parameterTensors.first { $0.name == "dense1.weight" }!
        let cut = (dense1.offset + 7)..<model.parameterCount
        for precision in [Precision.fp32] + (Precision.bf16.unavailableReason == nil ? [.bf16] : []) {
            let ws = Workspace(model: model, precision: precision)
            XCTAssertEqual(ws.storedGradients.compactMap { $0 }.count, 2, "\(precision): the dense layers store")
            func gradients(_ fill: Float, clearing: Range<Int>?) -> [UInt32] {
                trainingStepBits(ws, params, x: x, labels: (0..<batch).map { Int32($0 * 2) }, batch: batch, fill: fill, clearing: clearing)
            }
            let zeroed = gradients(0, clearing: nil)
            for (label, got) in [("cleared from NaN", gradients(.nan, clearing: all)),
                                 ("a range cutting dense1's weights", gradients(0, clearing: cut))] {
                let first = zeroed.indices.first { got[$0] != zeroed[$0] }
                XCTAssertNil(first, "\(precision), \(label): element \(first ?? 0) of \(zeroed.count) (logits, then gradients) differs")
            }
        }
    }
}
