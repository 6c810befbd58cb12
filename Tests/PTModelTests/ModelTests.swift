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

    /// A workspace's activations and gradients are views of one arena: each starts on its own 4 KiB boundary
    /// (relative to the arena), none overlaps another, all start zeroed; a view keeps its arena alive; storage of
    /// 2 MiB or more starts on a 2 MiB boundary (the huge pages' alignment).
    func testWorkspaceBuffersShareOneArena() throws {
        let model = try Model(input: Shape(channels: 1, height: 28, width: 28), layers: lenet, maxBatch: 64)
        let ws = Workspace(model: model)
        let buffers = ws.activations + ws.activationGrads.dropFirst()
        let arena = try XCTUnwrap(buffers[0].arena)
        XCTAssertGreaterThanOrEqual(arena.count * 4, AlignedBuffer.hugePageThreshold, "LeNet at batch 64 fills a huge page")
        XCTAssertEqual(Int(bitPattern: arena.pointer) % AlignedBuffer.hugePageThreshold, 0)
        var ranges: [Range<Int>] = []
        for b in buffers {
            XCTAssertTrue(b.arena === arena)
            let start = arena.pointer.distance(to: b.pointer)
            XCTAssertEqual(start % 1024, 0, "4 KiB boundary")
            XCTAssertLessThanOrEqual(start + b.count, arena.count)
            XCTAssertTrue(b.buffer.allSatisfy { $0 == 0 })
            ranges.append(start..<(start + b.count))
        }
        ranges.sort { $0.lowerBound < $1.lowerBound }
        for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertLessThanOrEqual(a.upperBound, b.lowerBound, "views overlap") }
        XCTAssertEqual(ranges.map(\.count).reduce(0, +), ws.activations.map(\.count).reduce(0, +) * 2 - ws.activations[0].count)

        var owner: AlignedBuffer? = AlignedBuffer(count: 100)
        let view = AlignedBuffer(in: owner!, offset: 40, count: 60)
        owner![40] = 3
        owner = nil
        XCTAssertEqual(view[0], 3)
        view[59] = 5
        XCTAssertEqual(view.arena?[99], 5)
        let small = AlignedBuffer(count: 1000)
        XCTAssertEqual(Int(bitPattern: small.pointer) % AlignedBuffer.alignment, 0)
        XCTAssertNil(small.arena)
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
