// safetensors: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
// shape and byte range, then the raw little-endian data. Readable by the Python safetensors package.
import Foundation
import PTFiles
import PTModel
import PTTensor

/// Reads and writes F32 tensors in the safetensors format.
public enum Safetensors {
    public struct Tensor: Equatable {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public init(name: String, shape: [Int], values: [Float]) { self.name = name; self.shape = shape; self.values = values }
    }

    /// One entry of a safetensors header: a tensor's dtype, shape and byte range, or the metadata.
    enum HeaderEntry: Encodable {
        case tensor(shape: [Int], offsets: [Int])
        case metadata([String: String])

        enum Keys: String, CodingKey { case dtype, shape, data_offsets }

        func encode(to encoder: Encoder) throws {
            switch self {
            case let .tensor(shape, offsets):
                var c = encoder.container(keyedBy: Keys.self)
                try c.encode("F32", forKey: .dtype)
                try c.encode(shape, forKey: .shape)
                try c.encode(offsets, forKey: .data_offsets)
            case let .metadata(values):
                var c = encoder.singleValueContainer()
                try c.encode(values)
            }
        }
    }

    /// Serialises tensors (data in the given order) with optional string metadata. The JSON header
    /// is written through `Codable`, keys sorted.
    public static func encode(_ tensors: [(name: String, shape: [Int], data: UnsafePointer<Float>)],
                              metadata: [String: String] = [:]) -> [UInt8] {
        var entries: [String: HeaderEntry] = metadata.isEmpty ? [:] : ["__metadata__": .metadata(metadata)]
        var offset = 0
        for t in tensors {
            let bytes = t.shape.reduce(1, *) * 4
            entries[t.name] = .tensor(shape: t.shape, offsets: [offset, offset + bytes])
            offset += bytes
        }
        // Encoding strings, integers and arrays of them cannot fail.
        var header = (try? JSON.bytes(entries)) ?? Array("{}".utf8)
        while header.count % 8 != 0 { header.append(0x20) }
        var out: [UInt8] = []
        out.reserveCapacity(8 + header.count + offset)
        var n = UInt64(header.count).littleEndian
        withUnsafeBytes(of: &n) { out.append(contentsOf: $0) }
        out.append(contentsOf: header)
        for t in tensors {
            let count = t.shape.reduce(1, *)
            let raw = UnsafeRawBufferPointer(start: UnsafeRawPointer(t.data), count: count * 4)
            out.append(contentsOf: raw)   // x86-64 and arm64 are little-endian
        }
        return out
    }

    /// Parses a safetensors file's bytes (F32 tensors only). `file` names it in errors, which are one
    /// line each: names taken from the file are quoted with control characters escaped.
    public static func decode(_ bytes: [UInt8], file: String) throws -> (tensors: [Tensor], metadata: [String: String]) {
        guard bytes.count >= 8 else { throw FileError("\(file): not a safetensors file (shorter than its 8-byte header length)") }
        var headerLength: UInt64 = 0
        for i in 0..<8 { headerLength |= UInt64(bytes[i]) << (8 * UInt64(i)) }
        guard headerLength <= UInt64(bytes.count - 8) else {
            throw FileError("\(file): truncated safetensors file (header of \(headerLength) bytes, file of \(bytes.count))")
        }
        guard headerLength >= 2 else { throw FileError("\(file): not a safetensors file (header of \(headerLength) bytes)") }
        let headerData = Data(bytes[8..<(8 + Int(headerLength))])
        guard let object = try? JSONSerialization.jsonObject(with: headerData), let json = object as? [String: Any] else {
            throw FileError("\(file): safetensors header is not a JSON object (truncated or not a safetensors file?)")
        }
        let dataStart = 8 + Int(headerLength)
        let dataBytes = bytes.count - dataStart
        var metadata: [String: String] = [:]
        var tensors: [(Int, Tensor)] = []
        // Sorted names: the same file always gives the same error first.
        for name in json.keys.sorted() {
            let value = json[name]!
            if name == "__metadata__" {
                metadata = (value as? [String: String]) ?? [:]
                continue
            }
            let quoted = JSON.string(name)
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = integers(entry["shape"]), let offsets = integers(entry["data_offsets"]), offsets.count == 2 else {
                throw FileError("\(file): tensor \(quoted) has a malformed header entry")
            }
            guard dtype == "F32" else { throw FileError("\(file): tensor \(quoted) has dtype \(JSON.string(dtype)); only F32 is supported") }
            // Element count and byte range without overflow: every size is bounded by the file's.
            var count = 1
            for n in shape {
                let (product, overflow) = count.multipliedReportingOverflow(by: n)
                guard n >= 0, !overflow, product <= dataBytes else {
                    throw FileError("\(file): tensor \(quoted) has shape \(shape), larger than the file (truncated or corrupted?)")
                }
                count = product
            }
            guard offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= dataBytes, offsets[1] - offsets[0] == count * 4 else {
                throw FileError("\(file): tensor \(quoted) data range \(offsets) does not fit its shape \(shape) or the file (truncated?)")
            }
            var values = [Float](repeating: 0, count: count)
            if count > 0 {
                values.withUnsafeMutableBytes { dst in
                    bytes.withUnsafeBytes { src in
                        dst.copyMemory(from: UnsafeRawBufferPointer(rebasing: src[(dataStart + offsets[0])..<(dataStart + offsets[1])]))
                    }
                }
            }
            tensors.append((offsets[0], Tensor(name: name, shape: shape, values: values)))
        }
        return (tensors.sorted { ($0.0, $0.1.name) < ($1.0, $1.1.name) }.map(\.1), metadata)
    }

    /// A JSON array of whole numbers as [Int]; nil for anything else (fractions, strings, huge values).
    static func integers(_ value: Any?) -> [Int]? {
        guard let array = value as? [Any] else { return nil }
        var out: [Int] = []
        out.reserveCapacity(array.count)
        for element in array {
            guard let number = element as? NSNumber else { return nil }
            let d = number.doubleValue
            guard d.isFinite, d == d.rounded(), abs(d) < 9.0e15, let i = Int(exactly: d) else { return nil }
            out.append(i)
        }
        return out
    }

    /// Reads the file at `path`, naming it in a one-line error when that is impossible.
    static func readFile(_ path: String) throws -> [UInt8] {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { throw FileError("\(path): file not found") }
        guard !isDir.boolValue else { throw FileError("\(path): is a folder, expected a file") }
        guard let data = FileManager.default.contents(atPath: path) else { throw FileError("\(path): cannot read file") }
        return [UInt8](data)
    }

    /// The model's tensors for a weights file: parameters ("conv1.weight", …), then state
    /// ("bn1.running_mean", …) when the model has any.
    static func modelTensors(_ model: Model, parameters: AlignedBuffer, state: AlignedBuffer?)
        -> [(name: String, shape: [Int], data: UnsafePointer<Float>)] {
        model.parameterTensors.map { (name: $0.name, shape: $0.shape, data: UnsafePointer(parameters.pointer + $0.offset)) }
            + (state.map { buffer in
                model.stateTensors.map { (name: $0.name, shape: $0.shape, data: UnsafePointer(buffer.pointer + $0.offset)) }
            } ?? [])
    }

    /// Writes the model's parameters and state (tensor names such as "conv1.weight",
    /// "bn1.running_mean") atomically.
    public static func save(model: Model, parameters: AlignedBuffer, state: AlignedBuffer? = nil, to path: String,
                            metadata: [String: String] = [:]) throws {
        try AtomicFile.write(encode(modelTensors(model, parameters: parameters, state: state), metadata: metadata), to: path)
    }

    /// Reads a file written by `save` into `parameters` (and `state`), checking every tensor name and shape.
    public static func load(model: Model, into parameters: AlignedBuffer, state: AlignedBuffer? = nil, from path: String) throws {
        let (tensors, _) = try decode(try readFile(path), file: path)
        let byName = Dictionary(tensors.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        let wanted = model.parameterTensors.map { ($0, parameters) } + model.stateTensors.compactMap { t in state.map { (t, $0) } }
        for (p, buffer) in wanted {
            guard let t = byName[p.name] else { throw FileError("\(path): tensor '\(p.name)' is missing (weights from a different model?)") }
            guard t.shape == p.shape else {
                throw FileError("\(path): tensor '\(p.name)' has shape \(t.shape), the model expects \(p.shape) (weights from a different model?)")
            }
            t.values.withUnsafeBufferPointer { (buffer.pointer + p.offset).update(from: $0.baseAddress!, count: p.count) }
        }
        let expected = model.parameterTensors.count + (state == nil ? 0 : model.stateTensors.count)
        if tensors.count != expected {
            throw FileError("\(path): has \(tensors.count) tensors, the model has \(expected) (weights from a different model?)")
        }
    }
}

