// Graphs: add, concat, residual blocks (with a strided projection and batch norm) against central
// finite differences of a Double forward of the whole graph; shapes, names and one-line errors.
import XCTest
import PTKernels
import PTModel
import PTTensor

/// The Double forward of a whole graph: every activation, [0] the input.
func graphForwardDouble(_ model: Model, batch: Int, input: [Double], parameters: [Double], training: Bool) -> [[Double]] {
    var acts = [input]
    for (i, layer) in model.layers.enumerated() {
        let ins = model.inputs[i].map { acts[$0] }
        switch layer {
        case is Add:
            var out = ins[0]
            for k in 1..<ins.count { for j in 0..<out.count { out[j] += ins[k][j] } }
            acts.append(out)
        case let concat as Concat:
            var out: [Double] = []
            for n in 0..<batch {
                for (k, s) in concat.inputShapes.enumerated() { out += ins[k][(n * s.count)..<((n + 1) * s.count)] }
            }
            acts.append(out)
        default:
            acts.append(forwardDouble(layer, batch: batch, input: ins[0], parameters: parameters, training: training))
        }
    }
    return acts
}

final class GraphTests: XCTestCase {
    func conv(_ f: Int, _ k: Int, stride: Int = 1, padding: Int = 0, name: String? = nil, from: [LayerRef]? = nil) -> LayerNode {
        LayerNode(.conv(features: f, kernelHeight: k, kernelWidth: k, stride: stride, padding: padding, initializer: .he), name: name, from: from)
    }
    let bn = LayerSpec.batchNorm(momentum: 0.1, epsilon: 1e-3)

    /// d(sum r * output)/dparameters of the whole graph: Workspace backward (Float) against central
    /// differences of the Double forward. Same tolerance as the single-layer checks.
    func checkGraph(_ nodes: [LayerNode], input: Shape, batch: Int, seed: UInt64, training: Bool = true,
                    file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(input: input, layers: nodes, maxBatch: batch, requireClassifier: false)
        var rng = Xoshiro256(seed: seed)
        let params = AlignedBuffer(count: max(1, model.parameterCount))
        for i in 0..<model.parameterCount { params[i] = rng.nextUnitFloat() * 2 - 1 }
        // Batch norm's scale near 1 keeps the objective well conditioned.
        for layer in model.layers where layer is BatchNorm {
            for k in 0..<layer.parameters[0].count { params[layer.parameters[0].offset + k] = 0.5 + rng.nextUnitFloat() }
        }
        let ws = Workspace(model: model)
        ws.training = training
        var xd: [Double] = []
        for i in 0..<(batch * input.count) { ws.input[i] = rng.nextUnitFloat() * 4 - 2; xd.append(Double(ws.input[i])) }
        let outCount = batch * model.layers.last!.outputShape.count
        var rd: [Double] = []
        for i in 0..<outCount { let v = rng.nextUnitFloat() * 2 - 1; rd.append(Double(v)); ws.activationGrads[model.layers.count][i] = v }
        ws.forward(batch: batch, parameters: params.pointer)
        let grads = AlignedBuffer(count: max(1, model.parameterCount))
        ws.backward(batch: batch, parameters: params.pointer, gradients: grads.pointer)

        let pd = params.array.map(Double.init)
        let acts = graphForwardDouble(model, batch: batch, input: xd, parameters: pd, training: training)
        // Outputs that fusion folds into the ReLU after them are not written (see `FusedStep`).
        for (i, layer) in model.layers.enumerated() where ws.holdsOutput(ofLayer: i) {
            let a = acts[i + 1]
            for j in 0..<a.count {
                XCTAssertEqual(Double(ws.activations[i + 1][j]), a[j], accuracy: 1e-4 * (1 + abs(a[j])), "\(layer.name) forward[\(j)]",
                               file: file, line: line)
            }
        }
        func objective(_ p: [Double]) -> Double {
            zip(graphForwardDouble(model, batch: batch, input: xd, parameters: p, training: training).last!, rd).reduce(0) { $0 + $1.0 * $1.1 }
        }
        let eps = 1e-6
        var checked = 0
        for t in model.parameterTensors {
            for k in 0..<t.count {
                var plus = pd, minus = pd
                plus[t.offset + k] += eps; minus[t.offset + k] -= eps
                let numeric = (objective(plus) - objective(minus)) / (2 * eps)
                XCTAssertEqual(Double(grads[t.offset + k]), numeric, accuracy: 2e-4 * (1 + abs(numeric)), "\(t.name)[\(k)]",
                               file: file, line: line)
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 0, file: file, line: line)
    }

    /// y = conv_b(x) + conv_c(conv_a(x)): x (conv_a's output) feeds two layers, so its gradient is a sum.
    func testAddBackward() throws {
        try checkGraph([conv(3, 3, padding: 1, name: "a"), conv(3, 3, padding: 1, name: "b"), conv(3, 1, name: "c", from: [.name("a")]),
                        LayerNode(.add, from: [.name("b"), .name("c")])],
                       input: Shape(channels: 2, height: 5, width: 4), batch: 2, seed: 1, training: false)
        // Three inputs, one of them twice.
        try checkGraph([conv(2, 3, padding: 1, name: "a"), conv(2, 1, name: "b"),
                        LayerNode(.add, from: [.relative(-1), .name("a"), .name("a")])],
                       input: Shape(channels: 1, height: 4, width: 4), batch: 2, seed: 2, training: false)
    }

    func testConcatBackward() throws {
        try checkGraph([conv(2, 3, padding: 1, name: "a"), conv(3, 1, name: "b"), conv(1, 3, padding: 1, from: [.name("a")]),
                        LayerNode(.concat, from: [.name("b"), .relative(-1), .name("a")]), conv(2, 1)],
                       input: Shape(channels: 2, height: 4, width: 3), batch: 2, seed: 3, training: false)
        // 1-D signals: concat along channels of length-9 series.
        try checkGraph([LayerNode(.conv(features: 2, kernelHeight: 1, kernelWidth: 3, stride: 1, padding: 1, initializer: .he), name: "a"),
                        LayerNode(.relu),
                        LayerNode(.concat, from: [.name("a"), .relative(-1)])],
                       input: Shape(channels: 1, height: 1, width: 9), batch: 3, seed: 4, training: false)
    }

    /// He et al.'s basic block with a strided 1x1 projection shortcut, batch norm inside (training
    /// statistics), and a second identity block after it.
    func testResidualBlockWithProjectionAndBatchNorm() throws {
        let nodes: [LayerNode] = [
            conv(3, 3, padding: 1, name: "stem"), LayerNode(bn), .relu,
            conv(4, 3, stride: 2, padding: 1, name: "b1.conv1"), LayerNode(bn), .relu, conv(4, 3, padding: 1), LayerNode(bn, name: "b1.bn2"),
            conv(4, 1, stride: 2, name: "b1.shortcut.0", from: [.name("relu1")]), LayerNode(bn, name: "b1.shortcut.1"),
            LayerNode(.add, name: "b1.add", from: [.name("b1.bn2"), .name("b1.shortcut.1")]), LayerNode(.relu, name: "b1.out"),
            conv(4, 3, padding: 1), LayerNode(bn), .relu, conv(4, 3, padding: 1), LayerNode(bn),
            LayerNode(.add, from: [.relative(-1), .name("b1.out")]), .relu,
            .globalAvgPool, .dense(neurons: 3, initializer: .he),
        ]
        try checkGraph(nodes, input: Shape(channels: 2, height: 6, width: 5), batch: 3, seed: 5, training: true)
    }

    func testShapesNamesAndLayout() throws {
        let model = try Model(input: Shape(channels: 3, height: 8, width: 8), layers: [
            conv(4, 3, padding: 1), LayerNode(bn, name: "x.bn"), conv(4, 1, from: [.input]),
            LayerNode(.add, from: [.name("x.bn"), .relative(-1)]), LayerNode(.concat, from: [.relative(-1), .name("conv1")]),
            .globalAvgPool, .dense(neurons: 2, initializer: .he)], maxBatch: 2)
        XCTAssertEqual(model.layers.map(\.name), ["conv1", "x.bn", "conv2", "add1", "concat1", "gap1", "dense1"])
        XCTAssertEqual(model.inputs, [[0], [1], [0], [2, 3], [4, 1], [5], [6]])
        XCTAssertEqual(model.layers[4].outputShape, Shape(channels: 8, height: 8, width: 8))
        XCTAssertEqual(model.inputNames(3), ["x.bn", "conv2"])
        XCTAssertFalse(model.isChain)
        XCTAssertEqual(model.parameterTensors.map(\.name),
                       ["conv1.weight", "conv1.bias", "x.bn.weight", "x.bn.bias", "conv2.weight", "conv2.bias", "dense1.weight", "dense1.bias"])
        for t in model.parameterTensors { XCTAssertEqual(t.offset % 16, 0) }
    }

    func testGraphErrorsNameTheLayerAndLine() {
        let shape = Shape(channels: 1, height: 6, width: 6)
        func expect(_ nodes: [LayerNode], _ message: String, line: UInt = #line) {
            XCTAssertThrowsError(try Model(input: shape, layers: nodes, maxBatch: 1, requireClassifier: false), line: line) { error in
                XCTAssertEqual("\(error)", message, line: line)
            }
        }
        var add = LayerNode(.add, from: [.relative(-1), .input])
        add.location = "net.yaml:7"
        expect([conv(2, 3), add], "net.yaml:7: layer 2 (add1): add needs inputs of one shape: conv1 gives 2x4x4, input gives 1x6x6")
        expect([conv(2, 3, from: [.name("later")]), conv(2, 1, name: "later")],
               "layer 1 (conv1): from 'later': forward reference to layer 2; inputs must come from earlier layers")
        expect([conv(2, 3, name: "me", from: [.name("me")])], "layer 1 (me): from 'me': a layer cannot take its own output (cycle)")
        expect([conv(2, 3, from: [.name("nobody")])], "layer 1 (conv1): from 'nobody': no layer has that name")
        expect([conv(2, 3), conv(2, 3, from: [.relative(-3)])],
               "layer 2 (conv2): from -3: reaches before the model input (this is layer 2; -2 is the input)")
        expect([conv(2, 3), LayerNode(.add)], "layer 2 (add1): add needs at least two inputs ('from' lists them), got 1")
        expect([conv(2, 3), conv(2, 3, from: [.input])],
               "layer 1 (conv1): its output is never used (only the last layer may end the graph)")
        expect([conv(2, 3, name: "a"), conv(2, 3, name: "a")], "layer 2 (a): the name is already used by layer 1")
        expect([conv(2, 1, name: "a"), conv(3, 3, padding: 1, from: [.input]), LayerNode(.concat, from: [.name("a"), .relative(-1)]),
                conv(2, 3, from: [.name("a")]), LayerNode(.concat, from: [.relative(-1), .relative(-2)])],
               "layer 5 (concat2): concat needs inputs of one height and width: conv2 gives 2x4x4, concat1 gives 5x6x6")
    }
}
