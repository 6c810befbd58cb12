// Model construction: shapes, names, parameter layout, initialisation, and one-line errors.
import XCTest
import PTModel
import PTTensor

final class ModelTests: XCTestCase {
    let lenet: [LayerSpec] = [
        .conv(features: 6, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 2, initializer: .he), .relu,
        .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true),
        .conv(features: 16, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 0, initializer: .he), .relu,
        .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: true), .flatten,
        .dense(neurons: 120, initializer: .he), .relu, .dense(neurons: 84, initializer: .he), .relu, .dense(neurons: 10, initializer: .he),
    ]

    func testLeNetShapesNamesAndParameters() throws {
        let model = try Model(input: Shape(channels: 1, height: 28, width: 28), layers: lenet, maxBatch: 8)
        XCTAssertEqual(model.layers.map(\.outputShape.description),
                       ["6x28x28", "6x28x28", "6x14x14", "16x10x10", "16x10x10", "16x5x5", "400", "120", "120", "84", "84", "10"])
        XCTAssertEqual(model.trainableCount, 61_706)   // LeNet-5 as in PyTorch
        XCTAssertEqual(model.parameterTensors.map(\.name),
                       ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "dense1.weight", "dense1.bias",
                        "dense2.weight", "dense2.bias", "dense3.weight", "dense3.bias"])
        for t in model.parameterTensors { XCTAssertEqual(t.offset % 16, 0, "\(t.name) is not 64-byte aligned") }
        XCTAssertEqual(model.classes, 10)
    }

    func testInitialisationIsSeededAndBounded() throws {
        let model = try Model(input: Shape(channels: 1, height: 28, width: 28), layers: lenet, maxBatch: 8)
        let a = AlignedBuffer(count: model.parameterCount), b = AlignedBuffer(count: model.parameterCount)
        let c = AlignedBuffer(count: model.parameterCount)
        model.initialize(a, seed: 7); model.initialize(b, seed: 7); model.initialize(c, seed: 8)
        XCTAssertEqual(a.array, b.array)
        XCTAssertNotEqual(a.array, c.array)
        let w = model.parameterTensors[0]   // conv1.weight: He bound sqrt(6/25)
        let bound = (6.0 / 25.0).squareRoot()
        let values = (0..<w.count).map { a[w.offset + $0] }
        XCTAssertLessThanOrEqual(values.map { abs(Double($0)) }.max()!, bound)
        XCTAssertGreaterThan(values.map { abs(Double($0)) }.max()!, bound * 0.8)
        let bias = model.parameterTensors[1]
        XCTAssertTrue((0..<bias.count).allSatisfy { a[bias.offset + $0] == 0 })
    }

    func testErrorsNameTheLayer() {
        XCTAssertThrowsError(try Model(input: Shape(channels: 1, height: 4, width: 4),
                                       layers: [.conv(features: 2, kernelHeight: 5, kernelWidth: 5, stride: 1, padding: 0, initializer: .he),
                                                .dense(neurons: 2, initializer: .he)], maxBatch: 1)) { error in
            XCTAssertEqual("\(error)", "layer 1 (conv1): output would be empty: input 1x4x4 is smaller than the 5x5 kernel with padding 0")
        }
        XCTAssertThrowsError(try Model(input: Shape(channels: 1, height: 3, width: 3),
                                       layers: [.maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: false),
                                                .maxPool(windowHeight: 2, windowWidth: 2, stride: 2, keepPartial: false),
                                                .dense(neurons: 2, initializer: .he)], maxBatch: 1)) { error in
            XCTAssertTrue("\(error)".hasPrefix("layer 2 (pool2): output would be empty"), "\(error)")
        }
        XCTAssertThrowsError(try Model(input: Shape(channels: 1, height: 8, width: 8),
                                       layers: [.conv(features: 2, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 0, initializer: .he)],
                                       maxBatch: 1)) { error in
            XCTAssertTrue("\(error)".contains("conv1") && "\(error)".contains("must be dense"), "\(error)")
        }
    }
}
