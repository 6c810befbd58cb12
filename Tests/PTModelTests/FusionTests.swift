import PTKernels
import PTModel
import PTTensor
import XCTest

/// Layer fusion (batch norm, the residual add and ReLU in one pass) changes no bit: a workspace
/// with fusion on and one with it off give the same logits, kept activations, parameter gradients
/// and batch statistics, in training and in evaluation.
final class FusionTests: XCTestCase {
    func conv(_ f: Int, _ k: Int, stride: Int = 1, padding: Int = 0, name: String? = nil, from: [LayerRef]? = nil) -> LayerNode {
        LayerNode(.conv(features: f, kernelHeight: k, kernelWidth: k, stride: stride, padding: padding, initializer: .he), name: name, from: from)
    }
    let bn = LayerSpec.batchNorm(momentum: 0.1, epsilon: 1e-3)

    /// Every case the plan knows: batch norm then ReLU; an add of two folded batch norms (projection
    /// shortcut), of one folded batch norm and the block input (identity shortcut), of two plain
    /// inputs; a ReLU then max pooling; and cases it must leave alone: a batch norm feeding a convolution, a batch norm whose
    /// output also feeds a second layer, an add followed by something other than ReLU, an add of three.
    var nodes: [LayerNode] {
        [
            conv(3, 3, padding: 1, name: "stem"), LayerNode(bn, name: "stem.bn"), LayerNode(.relu, name: "stem.relu"),
            conv(4, 3, stride: 2, padding: 1, name: "b1.conv1"), LayerNode(bn), .relu, conv(4, 3, padding: 1), LayerNode(bn, name: "b1.bn2"),
            conv(4, 1, stride: 2, name: "b1.shortcut.0", from: [.name("stem.relu")]), LayerNode(bn, name: "b1.shortcut.1"),
            LayerNode(.add, name: "b1.add", from: [.name("b1.bn2"), .name("b1.shortcut.1")]), LayerNode(.relu, name: "b1.out"),
            conv(4, 3, padding: 1), LayerNode(bn), .relu, conv(4, 3, padding: 1), LayerNode(bn, name: "b2.bn2"),
            LayerNode(.add, name: "b2.add", from: [.name("b1.out"), .name("b2.bn2")]), LayerNode(.relu, name: "b2.out"),
            conv(4, 3, padding: 1, name: "p.a"), conv(4, 1, name: "p.b", from: [.name("b2.out")]),
            LayerNode(.add, name: "p.add", from: [.name("p.a"), .name("p.b")]), LayerNode(.relu, name: "p.out"),
            LayerNode(bn, name: "lone.bn"), conv(4, 1, name: "after.bn"),
            LayerNode(bn, name: "shared.bn"), LayerNode(.relu, name: "shared.relu"),
            LayerNode(.add, name: "shared.add", from: [.name("shared.relu"), .name("shared.bn")]),
            LayerNode(bn, name: "tail.bn"), LayerNode(.add, name: "tail.add", from: [.name("tail.bn"), .name("shared.add"), .name("p.out")]),
            LayerNode(.relu, name: "tail.relu"),
            // ReLU then max pooling (overlapping windows: gradients of one position summed).
            conv(4, 1, name: "pool.conv"), LayerNode(.relu, name: "pool.relu"),
            LayerNode(.maxPool(windowHeight: 2, windowWidth: 2, stride: 1, keepPartial: false), name: "pool.max"),
            .globalAvgPool, .dense(neurons: 3, initializer: .he),
        ]
    }

    /// Each layer's index, and its step in the fusion plan, by name.
    func plan(_ model: Model) -> (index: [String: Int], step: (String) -> FusedStep) {
        let index = Dictionary(uniqueKeysWithValues: model.layers.enumerated().map { ($0.element.name, $0.offset) })
        let plan = model.fusionPlan
        return (index, { plan[index[$0]!] })
    }

    func testPlanFollowsTheGraph() throws {
        let model = try Model(input: Shape(channels: 2, height: 6, width: 5), layers: nodes, maxBatch: 3)
        let (index, step) = plan(model)
        XCTAssertEqual(step("stem.bn"), .bnReLU(relu: index["stem.relu"]!))
        XCTAssertEqual(step("stem.relu"), .doneBefore)
        XCTAssertEqual(step("b1.bn2"), .bnIntoAdd(relu: index["b1.out"]!))
        XCTAssertEqual(step("b1.shortcut.1"), .bnIntoAdd(relu: index["b1.out"]!))
        XCTAssertEqual(step("b1.add"), .addReLU(relu: index["b1.out"]!, batchNorms: [index["b1.bn2"]!, index["b1.shortcut.1"]!]))
        XCTAssertEqual(step("b1.out"), .doneBefore)
        XCTAssertEqual(step("b2.add"), .addReLU(relu: index["b2.out"]!, batchNorms: [nil, index["b2.bn2"]!]))
        XCTAssertEqual(step("p.add"), .addReLU(relu: index["p.out"]!, batchNorms: [nil, nil]))
        XCTAssertEqual(step("lone.bn"), .alone)
        XCTAssertEqual(step("shared.bn"), .alone)
        XCTAssertEqual(step("shared.relu"), .alone)
        XCTAssertEqual(step("shared.add"), .alone)
        XCTAssertEqual(step("tail.bn"), .alone)
        XCTAssertEqual(step("tail.add"), .alone)
        XCTAssertEqual(step("tail.relu"), .alone)
        XCTAssertEqual(step("pool.relu"), .doneAfter)
        XCTAssertEqual(step("pool.conv"), .convIntoPool(pool: index["pool.max"]!, afterReLU: nil))
        XCTAssertEqual(step("pool.max"), .poolInConv(relu: index["pool.relu"]!))
        XCTAssertEqual(model.fusionPlan.filter { $0 != .alone }.count, 18)
    }

    func testFusedAndUnfusedGiveIdenticalBits() throws {
        let batch = 3, input = Shape(channels: 2, height: 6, width: 5)
        let model = try Model(input: input, layers: nodes, maxBatch: batch)
        var rng = Xoshiro256(seed: 9)
        let params = AlignedBuffer(count: model.parameterCount)
        model.initialize(params, seed: 4)
        // Batch norm's scale and shift away from 1 and 0, signs mixed, so the ReLU masks cut through.
        for layer in model.layers where layer is BatchNorm {
            for k in 0..<layer.parameters[0].count {
                params[layer.parameters[0].offset + k] = rng.nextUnitFloat() * 2 - 0.5
                params[layer.parameters[1].offset + k] = rng.nextUnitFloat() - 0.5
            }
        }
        let x = (0..<(batch * input.count)).map { _ in rng.nextUnitFloat() * 4 - 2 }
        let labels = (0..<batch).map { _ in Int32(rng.next() % 3) }
        let state = AlignedBuffer(count: max(1, model.stateCount))
        model.initializeState(state)
        for i in 0..<model.stateCount { state[i] = abs(state[i] + rng.nextUnitFloat() - 0.5) }

        struct Run { var logits: [Float]; var activations: [[Float]]; var gradients: [Float]; var stats: [Float]; var evaluation: [Float] }
        func run(fused: Bool) -> Run {
            let ws = Workspace(model: model)
            ws.fusesLayers = fused
            let stats = AlignedBuffer(count: max(1, model.statsPerShard))
            let grads = AlignedBuffer(count: model.parameterCount)
            ws.input.update(from: x, count: x.count)
            ws.labels.update(from: labels, count: batch)
            ws.training = true
            ws.state = state.pointer
            ws.shardStats = stats.pointer
            // Twice: the second step must not depend on what the first left behind.
            for _ in 0..<2 {
                grads.zero()
                ws.forward(batch: batch, parameters: params.pointer)
                _ = ws.loss(batch: batch, gradScale: 1 / Float(batch))
                ws.backward(batch: batch, parameters: params.pointer, gradients: grads.pointer)
            }
            let logits = Array(UnsafeBufferPointer(start: ws.logits, count: batch * model.classes))
            let acts = model.layers.indices.map { i in
                ws.holdsOutput(ofLayer: i) ? Array(UnsafeBufferPointer(start: ws.activations[i + 1].pointer, count: batch * model.layers[i].outputShape.count)) : []
            }
            ws.training = false
            ws.shardStats = nil
            ws.forward(batch: batch, parameters: params.pointer)
            let evaluation = Array(UnsafeBufferPointer(start: ws.logits, count: batch * model.classes))
            return Run(logits: logits, activations: acts, gradients: grads.array, stats: stats.array, evaluation: evaluation)
        }
        let fused = run(fused: true), plain = run(fused: false)
        func bits(_ a: [Float]) -> [UInt32] { a.map(\.bitPattern) }
        XCTAssertEqual(bits(fused.logits), bits(plain.logits), "logits")
        XCTAssertEqual(bits(fused.gradients), bits(plain.gradients), "parameter gradients")
        XCTAssertEqual(bits(fused.stats), bits(plain.stats), "batch statistics")
        XCTAssertEqual(bits(fused.evaluation), bits(plain.evaluation), "evaluation logits (running statistics)")
        var compared = 0
        for (i, layer) in model.layers.enumerated() where !fused.activations[i].isEmpty {
            XCTAssertEqual(bits(fused.activations[i]), bits(plain.activations[i]), "\(layer.name) output")
            compared += 1
        }
        XCTAssertEqual(compared, model.layers.count - 11, "outputs kept with fusion on (pool.conv's, in `convIntoPool`, not written)")
        XCTAssertTrue(fused.gradients.contains { $0 != 0 })
    }

    /// ReLU between two convolutions (`convReLU`, `doneAround`, `convAfterReLU`): the plan takes each
    /// conv -> ReLU -> conv where every layer is its neighbour's only consumer and leaves the others; a fused and an
    /// unfused workspace give the same bits in fp32 and, with the unit, in bf16 (16 and 32 channels: the bf16
    /// kernels' folded epilogues, the stride-1 transposed input gradient; 3 input channels: fp32 passes inside bf16).
    func testConvReLUConvGivesIdenticalBits() throws {
        let nodes: [LayerNode] = [
            conv(16, 3, padding: 1, name: "c1"), LayerNode(.relu, name: "r1"), conv(16, 3, padding: 1, name: "c2"),
            LayerNode(.relu, name: "r2"), LayerNode(.maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: false), name: "pool"),
            conv(32, 3, padding: 1, name: "c3"), LayerNode(.relu, name: "r3"), conv(32, 3, padding: 1, name: "c4"),
            LayerNode(.relu, name: "r4"), conv(32, 3, padding: 1, name: "c5"),
            // A ReLU whose output feeds two layers, and one whose convolution feeds two: left alone.
            LayerNode(.relu, name: "shared.r"), conv(32, 1, name: "shared.a"),
            LayerNode(.add, name: "shared.add", from: [.name("shared.a"), .name("shared.r")]),
            conv(32, 1, name: "fork.c"), LayerNode(.relu, name: "fork.r"), conv(32, 1, name: "fork.d"),
            LayerNode(.add, name: "fork.add", from: [.name("fork.d"), .name("fork.c")]),
            .globalAvgPool, .dense(neurons: 3, initializer: .he),
        ]
        let batch = 3
        let (model, params, x) = try seededModel(nodes, input: Shape(channels: 3, height: 8, width: 8), batch: batch, seed: 3,
                                                 dataSeed: 6)
        let (index, step) = plan(model)
        XCTAssertEqual(step("c1"), .convReLU(relu: index["r1"]!))
        XCTAssertEqual(step("r1"), .doneAround)
        XCTAssertEqual(step("c2"), .convIntoPool(pool: index["pool"]!, afterReLU: index["r1"]!))
        XCTAssertEqual(step("r2"), .doneAfter)
        XCTAssertEqual(step("pool"), .poolInConv(relu: index["r2"]!))
        XCTAssertEqual(step("c3"), .convReLU(relu: index["r3"]!))
        XCTAssertEqual(step("c4"), .convAfterReLU(relu: index["r3"]!))
        XCTAssertEqual(step("r4"), .alone, "c4 already takes r3's backward")
        XCTAssertEqual(step("c5"), .alone)
        XCTAssertEqual(step("shared.r"), .alone)
        XCTAssertEqual(step("fork.c"), .alone)
        XCTAssertEqual(step("fork.r"), .alone)
        XCTAssertEqual(step("fork.d"), .alone)

        for relu in fusedMatchesPlain(model, params, x: x, batch: batch, seed: 5, kept: index["r3"]!) {
            XCTAssertTrue(relu.contains(0) && relu.contains { $0 != 0 }, "the mask cuts through")
        }
    }

    /// With biases away from 0 and signs mixed (so the ReLU masks cut through), a fused and an unfused workspace in
    /// fp32 and, with the unit, bf16 give the same bits: two training steps (the second must not depend on what the
    /// first left behind), layer `kept`'s output and the evaluation logits. Returns the fused runs' kept outputs.
    func fusedMatchesPlain(_ model: Model, _ params: AlignedBuffer, x: [Float], batch: Int, seed: UInt64, kept: Int,
                           file: StaticString = #filePath, line: UInt = #line) -> [[UInt32]] {
        var rng = Xoshiro256(seed: seed)
        for layer in model.layers where layer is Conv2D {
            for k in 0..<layer.parameters[1].count { params[layer.parameters[1].offset + k] = rng.nextUnitFloat() - 0.5 }
        }
        let labels = (0..<batch).map { _ in Int32(rng.next() % 3) }
        let logits = batch * model.classes
        var keptOutputs: [[UInt32]] = []
        for precision in [Precision.fp32] + (Precision.bf16.unavailableReason == nil ? [.bf16] : []) {
            func run(fused: Bool) -> (step: [UInt32], kept: [UInt32], evaluation: [UInt32]) {
                let ws = Workspace(model: model, precision: precision)
                ws.fusesLayers = fused
                _ = trainingStepBits(ws, params, x: x, labels: labels, batch: batch)
                let step = trainingStepBits(ws, params, x: x, labels: labels, batch: batch)
                let out = UnsafeBufferPointer(start: ws.activations[kept + 1].pointer, count: batch * model.layers[kept].outputShape.count)
                ws.training = false
                ws.forward(batch: batch, parameters: params.pointer)
                return (step, out.map(\.bitPattern), UnsafeBufferPointer(start: ws.logits, count: logits).map(\.bitPattern))
            }
            let fused = run(fused: true), plain = run(fused: false)
            XCTAssertEqual(fused.step.prefix(logits), plain.step.prefix(logits), "\(precision) logits", file: file, line: line)
            XCTAssertEqual(fused.step.dropFirst(logits), plain.step.dropFirst(logits), "\(precision) parameter gradients",
                           file: file, line: line)
            XCTAssertEqual(fused.kept, plain.kept, "\(precision) \(model.layers[kept].name)'s output", file: file, line: line)
            XCTAssertEqual(fused.evaluation, plain.evaluation, "\(precision) evaluation logits", file: file, line: line)
            XCTAssertTrue(plain.step.dropFirst(logits).contains { $0 != 0 }, file: file, line: line)
            keptOutputs.append(fused.kept)
        }
        return keptOutputs
    }

    /// Convolution -> ReLU -> max pooling (`convIntoPool`, `poolInConv`) with the shard split into groups of samples:
    /// one sample a group (100,352 outputs a sample), and two (25,088: groups of 2 and 1 out of 3); a fused and an
    /// unfused workspace give the same bits in a training step and in evaluation, in fp32 and, with the unit, bf16.
    func testConvIntoPoolGivesIdenticalBits() throws {
        let nodes: [LayerNode] = [
            conv(8, 3, padding: 1, name: "c1"), LayerNode(.relu, name: "r1"),
            LayerNode(.maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: false), name: "p1"),
            conv(8, 3, padding: 1, name: "c2"), LayerNode(.relu, name: "r2"),
            LayerNode(.maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: false), name: "p2"),
            .flatten, .dense(neurons: 3, initializer: .he),
        ]
        let batch = 3
        let (model, params, x) = try seededModel(nodes, input: Shape(channels: 1, height: 112, width: 112), batch: batch, seed: 4,
                                                 dataSeed: 7)
        let (index, step) = plan(model)
        XCTAssertEqual(step("c1"), .convIntoPool(pool: index["p1"]!, afterReLU: nil))
        XCTAssertEqual(step("p1"), .poolInConv(relu: index["r1"]!))
        XCTAssertEqual(step("c2"), .convIntoPool(pool: index["p2"]!, afterReLU: nil))
        _ = fusedMatchesPlain(model, params, x: x, batch: batch, seed: 8, kept: index["p1"]!)
    }
}
