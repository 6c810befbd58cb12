// The step's meter: FLOPs per training image counted from the layer geometry, against hand counts,
// and the share-of-peak arithmetic.
import XCTest
import PTModel
import PTTensor

final class TrainingFlopsTests: XCTestCase {
    func testLeNet5CountsConvAndDenseOnly() throws {
        let specs: [LayerSpec] = [
            .conv(features: 6, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 2, initializer: .he), .relu,
            .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true),
            .conv(features: 16, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 0, initializer: .he), .relu,
            .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true), .flatten,
            .dense(neurons: 120, initializer: .he), .relu, .dense(neurons: 84, initializer: .he), .relu,
            .dense(neurons: 10, initializer: .he),
        ]
        let flops = try Model(input: Shape(channels: 1, height: 28, width: 28), layers: specs, maxBatch: 4).trainingFlops
        // By hand: conv1 6 x 28x28 outputs x 1 x 5x5; conv2 16 x 10x10 x 6 x 5x5; dense 400x120, 120x84, 84x10.
        let byHand = [6 * 28 * 28 * 25, 16 * 10 * 10 * 6 * 25, 400 * 120, 120 * 84, 84 * 10]
        XCTAssertEqual(flops.layers.map(\.multiplyAdds), byHand)
        XCTAssertEqual(flops.layers.map(\.name), ["conv1", "conv2", "dense1", "dense2", "dense3"])
        XCTAssertEqual(flops.forwardMultiplyAdds, 416_520)
        XCTAssertEqual(flops.forwardPerImage, 833_040)
        XCTAssertEqual(flops.perImage, 2_499_120)
        // Left out of the headline: ReLU (one op per value), max pooling (one per window element).
        let relus = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84
        let pools = 6 * 14 * 14 * 4 + 16 * 5 * 5 * 4
        XCTAssertEqual(flops.otherForwardFlops, relus + pools)
    }

    func testConv1DUsesItsOneDimensionalGeometry() throws {
        // 2 channels x 50 samples; conv1d 4 features, size 5, stride 2, padding 2: (50 + 4 - 5) / 2 + 1 = 25 outputs.
        let specs: [LayerSpec] = [
            .conv(features: 4, kernelHeight: 5, kernelWidth: 5, stride: 2, padding: 2, initializer: .he),
            .batchNorm(momentum: 0.1, epsilon: 1e-5), .relu, .globalAvgPool, .dense(neurons: 3, initializer: .he),
        ]
        let model = try Model(input: Shape(channels: 2, height: 1, width: 50), layers: specs, maxBatch: 4)
        XCTAssertEqual(model.layers[0].outputShape.description, "4x25")
        let flops = model.trainingFlops
        // The kernel is 1 x 5 on 1-D data (not 5 x 5): 4 x 25 outputs x 2 channels x 5 taps; dense 4 x 3.
        XCTAssertEqual(flops.layers.map(\.multiplyAdds), [4 * 25 * 2 * 5, 4 * 3])
        XCTAssertEqual(flops.perImage, 6 * (1_000 + 12))
        // Batch norm (2 per value), ReLU (1), global average pool (1 per input value).
        XCTAssertEqual(flops.otherForwardFlops, 2 * 100 + 100 + 100)
    }

    func testBranchesCountEveryConvOnce() throws {
        // A residual block with a 1x1 strided projection: 8x8x4 input.
        let nodes: [LayerNode] = [
            LayerNode(.conv(features: 8, kernelHeight: 3, kernelWidth: 3, stride: 2, padding: 1, initializer: .he), name: "a"),
            LayerNode(.conv(features: 8, kernelHeight: 1, kernelWidth: 1, stride: 2, padding: 0, initializer: .he), name: "proj",
                      from: [.input]),
            LayerNode(.add, from: [.name("a"), .name("proj")]),
            LayerNode(.flatten), LayerNode(.dense(neurons: 2, initializer: .he)),
        ]
        let flops = try Model(input: Shape(channels: 4, height: 8, width: 8), layers: nodes, maxBatch: 2).trainingFlops
        XCTAssertEqual(flops.layers.map(\.multiplyAdds), [8 * 4 * 4 * 4 * 9, 8 * 4 * 4 * 4, 128 * 2])
        XCTAssertEqual(flops.otherForwardFlops, 128)   // the add: one per value
    }

    func testShareOfPeakArithmetic() {
        // ResNet-20's 244.6 MFLOP per image at 300 images/s on one 117 GFLOP/s core: 62.7%.
        XCTAssertEqual(shareOfPeak(flopsPerImage: 244.6e6, imagesPerSecond: 300, peakGFLOPSPerCore: 117, cores: 1),
                       244.6e6 * 300 / 117e9, accuracy: 1e-12)
        XCTAssertEqual(shareOfPeak(flopsPerImage: 244.6e6, imagesPerSecond: 300, peakGFLOPSPerCore: 117, cores: 1), 0.6272, accuracy: 1e-4)
        // Twice the cores at the same rate: half the share.
        XCTAssertEqual(shareOfPeak(flopsPerImage: 1e9, imagesPerSecond: 50, peakGFLOPSPerCore: 100, cores: 2), 0.25, accuracy: 1e-12)
        XCTAssertEqual(shareOfPeak(flopsPerImage: 1e9, imagesPerSecond: 50, peakGFLOPSPerCore: 0, cores: 2), 0)
    }
}
