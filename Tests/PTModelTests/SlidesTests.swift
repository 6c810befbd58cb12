// The slides' worked example as exact test cases: the 9x9 X, three 3x3 features, the 7x7 filtered
// maps ("multiply, add up, divide by the number of pixels"), the 4x4 pooled maps and the ReLU maps.
// The slides cut rather than round (7/9 shows as 0.77), so values are truncated to two decimals.
import XCTest
import PTKernels
import PTModel
import PTTensor

final class SlidesTests: XCTestCase {
    static let x: [Float] = [
        -1, -1, -1, -1, -1, -1, -1, -1, -1,
        -1, 1, -1, -1, -1, -1, -1, 1, -1,
        -1, -1, 1, -1, -1, -1, 1, -1, -1,
        -1, -1, -1, 1, -1, 1, -1, -1, -1,
        -1, -1, -1, -1, 1, -1, -1, -1, -1,
        -1, -1, -1, 1, -1, 1, -1, -1, -1,
        -1, -1, 1, -1, -1, -1, 1, -1, -1,
        -1, 1, -1, -1, -1, -1, -1, 1, -1,
        -1, -1, -1, -1, -1, -1, -1, -1, -1,
    ]
    static let features: [[Float]] = [
        [1, -1, -1, -1, 1, -1, -1, -1, 1],   // "\" diagonal
        [1, -1, 1, -1, 1, -1, 1, -1, 1],     // "x" centre
        [-1, -1, 1, -1, 1, -1, 1, -1, -1],   // "/" diagonal
    ]
    static let maps: [[Double]] = [
        [0.77, -0.11, 0.11, 0.33, 0.55, -0.11, 0.33,
         -0.11, 1.00, -0.11, 0.33, -0.11, 0.11, -0.11,
         0.11, -0.11, 1.00, -0.33, 0.11, -0.11, 0.55,
         0.33, 0.33, -0.33, 0.55, -0.33, 0.33, 0.33,
         0.55, -0.11, 0.11, -0.33, 1.00, -0.11, 0.11,
         -0.11, 0.11, -0.11, 0.33, -0.11, 1.00, -0.11,
         0.33, -0.11, 0.55, 0.33, 0.11, -0.11, 0.77],
        [0.33, -0.55, 0.11, -0.11, 0.11, -0.55, 0.33,
         -0.55, 0.55, -0.55, 0.33, -0.55, 0.55, -0.55,
         0.11, -0.55, 0.55, -0.77, 0.55, -0.55, 0.11,
         -0.11, 0.33, -0.77, 1.00, -0.77, 0.33, -0.11,
         0.11, -0.55, 0.55, -0.77, 0.55, -0.55, 0.11,
         -0.55, 0.55, -0.55, 0.33, -0.55, 0.55, -0.55,
         0.33, -0.55, 0.11, -0.11, 0.11, -0.55, 0.33],
        [0.33, -0.11, 0.55, 0.33, 0.11, -0.11, 0.77,
         -0.11, 0.11, -0.11, 0.33, -0.11, 1.00, -0.11,
         0.55, -0.11, 0.11, -0.33, 1.00, -0.11, 0.11,
         0.33, 0.33, -0.33, 0.55, -0.33, 0.33, 0.33,
         0.11, -0.11, 1.00, -0.33, 0.11, -0.11, 0.55,
         -0.11, 1.00, -0.11, 0.33, -0.11, 0.11, -0.11,
         0.77, -0.11, 0.11, 0.33, 0.55, -0.11, 0.33],
    ]
    static let pooled: [[Double]] = [
        [1.00, 0.33, 0.55, 0.33, 0.33, 1.00, 0.33, 0.55, 0.55, 0.33, 1.00, 0.11, 0.33, 0.55, 0.11, 0.77],
        [0.55, 0.33, 0.55, 0.33, 0.33, 1.00, 0.55, 0.11, 0.55, 0.55, 0.55, 0.11, 0.33, 0.11, 0.11, 0.33],
        [0.33, 0.55, 1.00, 0.77, 0.55, 0.55, 1.00, 0.33, 1.00, 1.00, 0.11, 0.55, 0.77, 0.33, 0.55, 0.33],
    ]
    /// The slides' rectified first map: negatives become 0.
    static let rectifiedFirst: [Double] = maps[0].map { max(0, $0) }

    /// Truncation to two decimals, as the slides print them.
    static func cut(_ v: Float) -> Double { (Double(v) * 100).rounded(.towardZero) / 100 }

    /// The slides' stack: conv (3 features of 3x3, weights feature/9, no bias), ReLU, pool 2/2 keeping
    /// the partial edge window, run through the model's layers with every convolution implementation.
    func testFilterPoolAndRectifyTheX() throws {
        let slideGeometry = ConvGeometry(mb: 1, ic: 1, oc: 3, ih: 9, iw: 9, kh: 3, kw: 3)
        for implementation in ConvKernel.Forward.applicable(to: slideGeometry) {
            let model = try Model(input: Shape(channels: 1, height: 9, width: 9),
                                  layers: [.conv(features: 3, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0, initializer: .he),
                                           .relu, .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true)],
                                  maxBatch: 1, requireClassifier: false)
            let conv = model.layers[0] as! Conv2D
            XCTAssertEqual(conv.outputShape, Shape(channels: 3, height: 7, width: 7))
            let forcedKernel = ConvKernel(geometry: conv.geometry, forward: implementation)
            let params = AlignedBuffer(count: model.parameterCount)
            for (f, feature) in Self.features.enumerated() {
                for k in 0..<9 { params[conv.parameters[0].offset + f * 9 + k] = feature[k] / 9 }
            }
            let input = AlignedBuffer(Self.x)
            let filtered = AlignedBuffer(count: 3 * 49)
            let scratch = AlignedBuffer(count: max(1, forcedKernel.scratchCount))
            forcedKernel.forward(mb: 1, input: input.pointer, weight: params.pointer + conv.parameters[0].offset,
                                 bias: params.pointer + conv.parameters[1].offset, output: filtered.pointer, scratch: scratch.pointer)
            for f in 0..<3 {
                for i in 0..<49 {
                    XCTAssertEqual(Self.cut(filtered[f * 49 + i]), Self.maps[f][i], accuracy: 1e-9,
                                   "\(implementation): map \(f + 1) at row \(i / 7 + 1), column \(i % 7 + 1)")
                }
            }
            // The model's own forward (default implementation) gives the same maps, then ReLU and pooling.
            let ws = Workspace(model: model)
            ws.fusesLayers = false   // with fusion the ReLU runs inside the pooling and its map is not written
            ws.input.update(from: input.pointer, count: 81)
            ws.forward(batch: 1, parameters: params.pointer)
            let relu = ws.activations[2], pooled = ws.activations[3]
            for i in 0..<49 { XCTAssertEqual(Self.cut(relu[i]), Self.rectifiedFirst[i], accuracy: 1e-9, "ReLU map 1 [\(i)]") }
            XCTAssertEqual(model.layers[2].outputShape, Shape(channels: 3, height: 4, width: 4))
            for f in 0..<3 {
                for i in 0..<16 {
                    // Pooling the raw maps (all pooled values are positive, so ReLU does not change them).
                    XCTAssertEqual(Self.cut(pooled[f * 16 + i]), Self.pooled[f][i], accuracy: 1e-9,
                                   "pooled map \(f + 1) at row \(i / 4 + 1), column \(i % 4 + 1)")
                }
            }
        }
    }

    /// The slides' pooling of a 7x7 map with window 2 and stride 2 gives 4x4, with and without the
    /// ReLU in between; dropping the partial window ("drop" edge) gives 3x3.
    func testPoolingEdgeHandling() throws {
        let keep = MaxPool2D(name: "p", input: Shape(channels: 1, height: 7, width: 7), window: (2, 2), stride: (2, 2), keepPartial: true)
        let drop = MaxPool2D(name: "p", input: Shape(channels: 1, height: 7, width: 7), window: (2, 2), stride: (2, 2), keepPartial: false)
        XCTAssertEqual(keep.outputShape, Shape(channels: 1, height: 4, width: 4))
        XCTAssertEqual(drop.outputShape, Shape(channels: 1, height: 3, width: 3))
    }
}
