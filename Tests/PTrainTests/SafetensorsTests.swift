// safetensors: round trip, header layout, and errors on truncated or foreign files.
import XCTest
import PTModel
import PTTensor
import PTrain

final class SafetensorsTests: XCTestCase {
    func testRoundTripAndHeader() throws {
        let model = try Model(input: Shape(channels: 1, height: 8, width: 8),
                              layers: [.conv(features: 3, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, initializer: .he),
                                       .flatten, .dense(neurons: 5, initializer: .he)], maxBatch: 1)
        let params = AlignedBuffer(count: model.parameterCount)
        model.initialize(params, seed: 5)
        let dir = TestSupport.temporaryDirectory()
        let path = dir.appendingPathComponent("m.safetensors").path
        try Safetensors.save(model: model, parameters: params, to: path)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var headerLength = 0
        for i in 0..<8 { headerLength |= Int(bytes[i]) << (8 * i) }
        XCTAssertEqual(headerLength % 8, 0)
        XCTAssertEqual(bytes.count, 8 + headerLength + model.trainableCount * 4)
        let header = String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self)
        let entries = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(header.utf8)) as? [String: Any])
        let conv1 = try XCTUnwrap(entries["conv1.weight"] as? [String: Any], header)
        XCTAssertEqual(conv1["dtype"] as? String, "F32")
        XCTAssertEqual(conv1["shape"] as? [Int], [3, 1, 3, 3])
        XCTAssertEqual(conv1["data_offsets"] as? [Int], [0, 27 * 4])
        let loaded = AlignedBuffer(count: model.parameterCount)
        try Safetensors.load(model: model, into: loaded, from: path)
        XCTAssertEqual(loaded.array, params.array)

        // Truncated file: one line naming the file.
        let truncated = dir.appendingPathComponent("t.safetensors").path
        try Data(bytes.prefix(bytes.count - 10)).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try Safetensors.load(model: model, into: loaded, from: truncated)) { error in
            XCTAssertTrue("\(error)".hasPrefix(truncated) && "\(error)".contains("truncated"), "\(error)")
        }
        // Weights of a different model.
        let other = try Model(input: Shape(channels: 1, height: 8, width: 8),
                              layers: [.conv(features: 4, kernelHeight: 3, kernelWidth: 3, stride: 1, padding: 1, initializer: .he),
                                       .flatten, .dense(neurons: 5, initializer: .he)], maxBatch: 1)
        XCTAssertThrowsError(try Safetensors.load(model: other, into: AlignedBuffer(count: other.parameterCount), from: path)) { error in
            XCTAssertTrue("\(error)".contains("conv1.weight") && "\(error)".contains("different model"), "\(error)")
        }
    }
}
