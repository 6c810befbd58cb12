// Every layer's backward against central finite differences of a Double forward pass.
import XCTest
import PTKernels
import PTModel
import PTTensor

final class GradientCheckTests: XCTestCase {
    /// Checks d(sum r * layer(x))/dx and /dparams: Float backward versus Double central differences.
    /// Tolerance: |analytic - numeric| <= 1e-6 * sqrt(K) * (1 + |numeric|), K = the layer's outputs for
    /// the batch. By the chain rule each gradient entry sums at most one term per output; the Float
    /// backward rounds each add by up to 6e-8 relative, and rounding errors that are as often up as
    /// down grow like sqrt(K) (the terms here are of order 1: |x| <= 2, |w|, |r| <= 1). The Double
    /// central differences are good to ~1e-9. Prints the worst difference and its share of the bound.
    func check(_ spec: [LayerSpec], input: Shape, batch: Int, seed: UInt64, training: Bool = false,
               file: StaticString = #filePath, line: UInt = #line) throws {
        let model = try Model(input: input, layers: spec, maxBatch: batch, requireClassifier: false)
        let layer = model.layers.last!
        var rng = Xoshiro256(seed: seed)
        let params = AlignedBuffer(count: max(1, model.parameterCount))
        for i in 0..<model.parameterCount { params[i] = rng.nextUnitFloat() * 2 - 1 }
        let x = AlignedBuffer(count: batch * input.count)
        for i in 0..<x.count { x[i] = rng.nextUnitFloat() * 4 - 2 }
        let r = AlignedBuffer(count: batch * layer.outputShape.count)
        for i in 0..<r.count { r[i] = rng.nextUnitFloat() * 2 - 1 }
        let out = AlignedBuffer(count: r.count)
        let dIn = AlignedBuffer(count: x.count)
        let grads = AlignedBuffer(count: max(1, model.parameterCount))
        let scratch = AlignedBuffer(count: max(1, layer.scratchCount(maxBatch: batch)))
        let indices = UnsafeMutablePointer<Int32>.allocate(capacity: max(1, layer.indexCount(batch: batch)))
        defer { indices.deallocate() }
        var call = LayerCall(batch: batch, input: x.pointer, output: out.pointer, parameters: params.pointer,
                             gradients: grads.pointer, outputGrad: r.pointer, inputGrad: dIn.pointer,
                             scratch: scratch.pointer, indices: indices)
        call.training = training
        call.noiseSeed = seed &* 31
        layer.forward(call)
        layer.backward(call)

        let xd = x.array.map(Double.init), pd = params.array.map(Double.init), rd = r.array.map(Double.init)
        // Forward agreement first: the Double reference computes the same function.
        let yd = forwardDouble(layer, batch: batch, input: xd, parameters: pd, training: training, noiseSeed: call.noiseSeed)
        for i in 0..<yd.count {
            XCTAssertEqual(Double(out[i]), yd[i], accuracy: 1e-4 * (1 + abs(yd[i])), "\(layer.name) forward[\(i)]", file: file, line: line)
        }
        func objective(_ xv: [Double], _ pv: [Double]) -> Double {
            zip(forwardDouble(layer, batch: batch, input: xv, parameters: pv, training: training, noiseSeed: call.noiseSeed), rd)
                .reduce(0) { $0 + $1.0 * $1.1 }
        }
        let eps = 1e-6
        let rounding = 1e-6 * Double(r.count).squareRoot()
        var worst = (share: 0.0, diff: 0.0, what: "")
        func compare(_ analytic: Float, _ numeric: Double, _ what: String) {
            let diff = abs(Double(analytic) - numeric), bound = rounding * (1 + abs(numeric))
            if diff / bound >= worst.share { worst = (diff / bound, diff, what) }
            XCTAssertLessThanOrEqual(diff, bound,
                                     "\(layer.name) \(layer.summary) in \(input) batch \(batch): \(what) analytic \(analytic) numeric \(numeric)",
                                     file: file, line: line)
        }
        for i in 0..<xd.count {
            var plus = xd, minus = xd
            plus[i] += eps; minus[i] -= eps
            compare(dIn[i], (objective(plus, pd) - objective(minus, pd)) / (2 * eps), "dInput[\(i)]")
        }
        for t in layer.parameters {
            for k in 0..<t.count {
                let i = t.offset + k
                var plus = pd, minus = pd
                plus[i] += eps; minus[i] -= eps
                compare(grads[i], (objective(xd, plus) - objective(xd, minus)) / (2 * eps), "\(t.name)[\(k)]")
            }
        }
        print("gradient check \(layer.name) \(layer.summary) in \(input) batch \(batch): worst |analytic - numeric| "
            + "\(String(format: "%.2e", worst.diff)) at \(worst.what), \(String(format: "%.1f", 100 * worst.share))% of its bound")
    }

    func conv(_ f: Int, _ k: Int, stride: Int = 1, padding: Int = 0, oneD: Bool = false) -> LayerSpec {
        .conv(features: f, kernelHeight: oneD ? 1 : k, kernelWidth: k, stride: stride, padding: padding, initializer: .he)
    }

    func testConvolutionBackward() throws {
        try check([conv(3, 3, padding: 1)], input: Shape(channels: 2, height: 5, width: 5), batch: 2, seed: 1)
        try check([conv(2, 3, stride: 2)], input: Shape(channels: 3, height: 7, width: 6), batch: 3, seed: 2)
        try check([conv(4, 1)], input: Shape(channels: 5, height: 3, width: 3), batch: 2, seed: 3)          // 1x1
        try check([conv(2, 5, padding: 2)], input: Shape(channels: 1, height: 6, width: 5), batch: 1, seed: 4) // LeNet-like
        try check([conv(3, 2, stride: 3, padding: 1)], input: Shape(channels: 2, height: 5, width: 7), batch: 2, seed: 5)
        try check([conv(2, 3, padding: 3)], input: Shape(channels: 1, height: 2, width: 3), batch: 2, seed: 6) // padding > overhang
    }

    func testConvolution1DBackward() throws {
        try check([conv(3, 5, padding: 2, oneD: true)], input: Shape(channels: 2, height: 1, width: 11), batch: 2, seed: 7)
        try check([conv(2, 3, stride: 2, oneD: true)], input: Shape(channels: 3, height: 1, width: 9), batch: 3, seed: 8)
    }

    func testMaxPoolBackward() throws {
        try check([.maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true)], input: Shape(channels: 2, height: 7, width: 7), batch: 2, seed: 9)
        try check([.maxPool(windowHeight: 3, windowWidth: 3, stride: 2, keepPartial: true)], input: Shape(channels: 3, height: 6, width: 5), batch: 1, seed: 10)
        try check([.maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: false)], input: Shape(channels: 1, height: 5, width: 6), batch: 2, seed: 11)
        try check([.maxPool(windowHeight: 1, windowWidth: 3, stride: 2, keepPartial: true)], input: Shape(channels: 2, height: 1, width: 10), batch: 2, seed: 12)
    }

    func testAveragePoolingAndDropoutBackward() throws {
        try check([.avgPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true)], input: Shape(channels: 2, height: 7, width: 5), batch: 2, seed: 18)
        try check([.avgPool(windowHeight: 3, windowWidth: 3, stride: 1, keepPartial: false)], input: Shape(channels: 1, height: 5, width: 6), batch: 2, seed: 19)
        try check([.avgPool(windowHeight: 1, windowWidth: 4, stride: 3, keepPartial: true)], input: Shape(channels: 3, height: 1, width: 11), batch: 1, seed: 20)
        try check([.globalAvgPool], input: Shape(channels: 4, height: 3, width: 5), batch: 3, seed: 21)
        try check([.dropout(rate: 0.3)], input: Shape(channels: 3, height: 4, width: 4), batch: 2, seed: 22, training: true)
        try check([.dropout(rate: 0.3)], input: .flat(17), batch: 2, seed: 23, training: false)
    }

    func testBatchNormBackward() throws {
        try check([.batchNorm(momentum: 0.1, epsilon: 1e-5)], input: Shape(channels: 3, height: 4, width: 5), batch: 3, seed: 24, training: true)
        try check([.batchNorm(momentum: 0.1, epsilon: 1e-3)], input: .flat(7), batch: 5, seed: 25, training: true)
        try check([.batchNorm(momentum: 0.1, epsilon: 1e-5)], input: Shape(channels: 2, height: 1, width: 9), batch: 2, seed: 26, training: true)
    }

    /// Running statistics: shard statistics folded in shard order, variance unbiased over the batch.
    func testBatchNormRunningStatistics() throws {
        let bn = BatchNorm(name: "bn1", input: .flat(1), momentum: 0.5, parameterOffset: 0, stateOffset: 0)
        let state = AlignedBuffer(count: 32)
        bn.initializeState(state.pointer)
        // Shard 0: samples {1, 3} (mean 2, var 1); shard 1: samples {5, 7, 9} (mean 7, var 8/3).
        let stats: [[Float]] = [[2, 1], [7, 8.0 / 3]]
        let pointers = stats.map { row -> UnsafeMutablePointer<Float> in
            let p = UnsafeMutablePointer<Float>.allocate(capacity: 2)
            p.initialize(from: row, count: 2)
            return p
        }
        defer { pointers.forEach { $0.deallocate() } }
        bn.updateRunningStatistics(state.pointer, shards: 2, stats: { UnsafePointer(pointers[$0]) }, samples: { [2, 3][$0] })
        // Batch {1, 3, 5, 7, 9}: mean 5, unbiased variance 10. Running: 0.5 * 0 + 0.5 * 5, 0.5 * 1 + 0.5 * 10.
        XCTAssertEqual(state[bn.state[0].offset], 2.5, accuracy: 1e-6)
        XCTAssertEqual(state[bn.state[1].offset], 5.5, accuracy: 1e-5)
    }

    /// Dropout keeps about 1 - rate of the values while training, the same ones for the same seed.
    func testDropoutMaskRateAndDeterminism() throws {
        let layer = Dropout(name: "d", input: .flat(10_000), rate: 0.25)
        let x = AlignedBuffer([Float](repeating: 1, count: 10_000))
        func run(seed: UInt64) -> [Float] {
            let out = AlignedBuffer(count: 10_000)
            let idx = UnsafeMutablePointer<Int32>.allocate(capacity: 10_000)
            defer { idx.deallocate() }
            var c = LayerCall(batch: 1, input: x.pointer, output: out.pointer, parameters: x.pointer, gradients: x.pointer,
                              outputGrad: x.pointer, inputGrad: nil, scratch: x.pointer, indices: idx)
            c.training = true
            c.noiseSeed = seed
            layer.forward(c)
            return out.array
        }
        let a = run(seed: 5), b = run(seed: 5), c = run(seed: 6)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, c)
        let kept = a.filter { $0 != 0 }.count
        XCTAssertEqual(Double(kept) / 10_000, 0.75, accuracy: 0.02)
        XCTAssertTrue(a.allSatisfy { $0 == 0 || abs($0 - 1 / 0.75) < 1e-6 })
    }

    func testReLUFlattenDenseBackward() throws {
        try check([.relu], input: Shape(channels: 3, height: 4, width: 5), batch: 2, seed: 13)
        try check([.flatten], input: Shape(channels: 2, height: 3, width: 3), batch: 2, seed: 14)
        try check([.dense(neurons: 7, initializer: .he)], input: .flat(13), batch: 3, seed: 15)
        try check([.dense(neurons: 3, initializer: .glorot)], input: Shape(channels: 2, height: 3, width: 2), batch: 5, seed: 16)
        try check([.dense(neurons: 1, initializer: .he)], input: .flat(1), batch: 1, seed: 17)
    }

    /// The whole stack with softmax cross-entropy: Workspace backward versus finite differences of
    /// the Double forward of every layer and the mean loss.
    func testWholeModelWithLoss() throws {
        let specs: [LayerSpec] = [conv(3, 3, padding: 1), .relu, .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true),
                                  conv(4, 3, stride: 1), .relu, .flatten, .dense(neurons: 6, initializer: .he), .relu,
                                  .dense(neurons: 3, initializer: .glorot)]
        let batch = 4
        let model = try Model(input: Shape(channels: 2, height: 7, width: 7), layers: specs, maxBatch: batch)
        let params = AlignedBuffer(count: model.parameterCount)
        model.initialize(params, seed: 3)
        let ws = Workspace(model: model)
        var rng = Xoshiro256(seed: 99)
        var xd: [Double] = []
        for i in 0..<(batch * model.inputShape.count) { ws.input[i] = rng.nextUnitFloat() * 2 - 1; xd.append(Double(ws.input[i])) }
        let labels = [0, 2, 1, 2]
        for n in 0..<batch { ws.labels[n] = Int32(labels[n]) }
        ws.forward(batch: batch, parameters: params.pointer)
        let (loss, _) = ws.loss(batch: batch, gradScale: 1 / Float(batch))
        let grads = AlignedBuffer(count: model.parameterCount)
        ws.backward(batch: batch, parameters: params.pointer, gradients: grads.pointer)

        func lossDouble(_ p: [Double]) -> Double {
            var a = xd
            for layer in model.layers { a = forwardDouble(layer, batch: batch, input: a, parameters: p) }
            return softmaxCrossEntropyDouble(a, labels: labels, classes: 3)
        }
        let pd = params.array.map(Double.init)
        XCTAssertEqual(loss / Double(batch), lossDouble(pd), accuracy: 1e-5)
        let eps = 1e-6
        for t in model.parameterTensors {
            for k in 0..<t.count {
                var plus = pd, minus = pd
                plus[t.offset + k] += eps; minus[t.offset + k] -= eps
                let numeric = (lossDouble(plus) - lossDouble(minus)) / (2 * eps)
                XCTAssertEqual(Double(grads[t.offset + k]), numeric, accuracy: 2e-4 * (1 + abs(numeric)), "\(t.name)[\(k)]")
            }
        }
    }
}
