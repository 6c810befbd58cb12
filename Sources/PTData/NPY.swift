// NumPy .npy files (format versions 1-3, C order, little-endian numbers) and image/label .npy pairs.
import PTTensor

/// NumPy `.npy` reader. Layout: "\x93NUMPY", major and minor version bytes, header length (UInt16 LE
/// for version 1, UInt32 LE for 2 and 3), a Python dict literal
/// `{'descr': '<f4', 'fortran_order': False, 'shape': (N, ...), }`, then the C-order data.
public enum NPY {
    /// Element types this reader accepts.
    public enum DType: String, Sendable, CaseIterable {
        case float32 = "<f4", float64 = "<f8", uint8 = "|u1", int32 = "<i4", int64 = "<i8"

        /// Bytes per element.
        public var size: Int {
            switch self {
            case .uint8: return 1
            case .float32, .int32: return 4
            case .float64, .int64: return 8
            }
        }
    }

    /// Shape and values (converted to Float) of the .npy file at `path`.
    public static func load(path: String) throws -> (shape: [Int], values: [Float]) {
        let file = try loadTyped(path: path)
        return (file.shape, file.values)
    }

    /// Shape, stored element type and values (converted to Float, not scaled) of the .npy file at `path`.
    public static func loadTyped(path: String) throws -> (shape: [Int], dtype: DType, values: [Float]) {
        let file = try FileIO.readMaybeGzip(path)
        let (shape, dtype, offset) = try header(file, name: path)
        let count = shape.reduce(1, *)
        let values = [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if let base = buffer.baseAddress { convert(file, from: offset, count: count, dtype: dtype, into: base) }
            initialized = count
        }
        return (shape, dtype, values)
    }

    /// Shape, element type and data offset, checking magic, dict fields and exact data length.
    static func header(_ file: [UInt8], name: String) throws -> (shape: [Int], dtype: DType, offset: Int) {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59]  // \x93NUMPY
        guard file.count >= 10, Array(file[0..<6]) == magic else {
            throw DataError("\(name): not a .npy file (no \\x93NUMPY magic)")
        }
        let major = file[6]
        let headerLength: Int
        let start: Int
        switch major {
        case 1:
            headerLength = Int(file[8]) | Int(file[9]) << 8
            start = 10
        case 2, 3:
            guard file.count >= 12 else { throw DataError("\(name): truncated .npy header") }
            headerLength = Int(file[8]) | Int(file[9]) << 8 | Int(file[10]) << 16 | Int(file[11]) << 24
            start = 12
        default:
            throw DataError("\(name): unsupported .npy format version \(major)")
        }
        guard file.count >= start + headerLength else {
            throw DataError("\(name): truncated .npy header (needs \(start + headerLength) bytes, file has \(file.count))")
        }
        let dict = String(decoding: file[start..<(start + headerLength)], as: UTF8.self)

        guard let descr = quotedValue(dict, key: "descr") else { throw DataError("\(name): .npy header has no 'descr'") }
        guard let dtype = DType(rawValue: descr == "<u1" ? "|u1" : descr) else {
            throw DataError("\(name): unsupported dtype '\(printable(descr))' (supported: "
                + DType.allCases.map(\.rawValue).joined(separator: ", ") + ")")
        }
        guard let fortran = rawValue(dict, key: "fortran_order") else {
            throw DataError("\(name): .npy header has no 'fortran_order'")
        }
        if fortran.hasPrefix("True") { throw DataError("\(name): fortran_order True is not supported (save in C order)") }
        guard fortran.hasPrefix("False") else { throw DataError("\(name): bad fortran_order '\(printable(fortran.prefix(12)))'") }

        guard let shapeText = rawValue(dict, key: "shape"), shapeText.hasPrefix("("),
              let close = shapeText.firstIndex(of: ")") else {
            throw DataError("\(name): .npy header has no 'shape' tuple")
        }
        var shape: [Int] = []
        for part in shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",") {
            let token = part.trimmingSpaces()
            if token.isEmpty { continue }
            guard let n = Int(token), n >= 0 else { throw DataError("\(name): bad shape entry '\(printable(token))'") }
            shape.append(n)
        }
        var count = 1
        for n in shape {
            let (p, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw DataError("\(name): shape \(shape) overflows") }
            count = p
        }
        let offset = start + headerLength
        let body = file.count - offset
        let (expected, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw DataError("\(name): shape \(shape) overflows") }
        if body < expected {
            throw DataError("\(name): truncated: shape \(shape) of \(printable(descr)) needs \(expected) bytes of data, file has \(body)")
        }
        if body > expected {
            throw DataError("\(name): \(body - expected) trailing bytes after the \(expected) bytes of data")
        }
        return (shape, dtype, offset)
    }

    /// The text after `'key':` up to the end of the dict (callers read a prefix of it).
    static func rawValue(_ dict: String, key: String) -> Substring? {
        for quote in ["'", "\""] {
            if let range = dict.range(of: quote + key + quote) {
                var rest = dict[range.upperBound...].trimmingSpaces()
                guard rest.hasPrefix(":") else { return nil }
                rest = rest.dropFirst().trimmingSpaces()
                return rest
            }
        }
        return nil
    }

    /// The quoted string value of `key`.
    static func quotedValue(_ dict: String, key: String) -> String? {
        guard let rest = rawValue(dict, key: key), let quote = rest.first, quote == "'" || quote == "\"" else { return nil }
        let inner = rest.dropFirst()
        guard let end = inner.firstIndex(of: quote) else { return nil }
        return String(inner[..<end])
    }

    /// Converts `count` little-endian elements starting at byte `offset` to Float.
    static func convert(_ file: [UInt8], from offset: Int, count: Int, dtype: DType, into out: UnsafeMutablePointer<Float>) {
        file.withUnsafeBytes { raw in
            let p = raw.baseAddress.map { $0 + offset }
            guard let p else { return }
            switch dtype {
            case .uint8:
                let b = p.assumingMemoryBound(to: UInt8.self)
                for i in 0..<count { out[i] = Float(b[i]) }
            case .float32:
                for i in 0..<count { out[i] = Float(bitPattern: UInt32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) }
            case .float64:
                for i in 0..<count { out[i] = Float(Double(bitPattern: UInt64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))) }
            case .int32:
                for i in 0..<count { out[i] = Float(Int32(littleEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: Int32.self))) }
            case .int64:
                for i in 0..<count { out[i] = Float(Int64(littleEndian: p.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))) }
            }
        }
    }
}

/// A data set stored as two .npy files: images and integer labels.
public enum NPYPair {
    /// Loads images shaped N x C x H x W, N x H x W (one channel) or N x L (1 x 1 x L), and N labels.
    /// Values are kept as stored, except that uint8 images are divided by 255. Labels must be whole
    /// numbers in 0..<classes; `classes` nil means the largest label + 1.
    public static func load(images imagePath: String, labels labelPath: String, classes: Int? = nil) throws -> Dataset {
        let imageFile = try FileIO.readMaybeGzip(imagePath)
        let (dims, dtype, offset) = try NPY.header(imageFile, name: imagePath)
        let shape: Shape
        switch dims.count {
        case 4: shape = Shape(channels: dims[1], height: dims[2], width: dims[3])
        case 3: shape = Shape(channels: 1, height: dims[1], width: dims[2])
        case 2: shape = Shape(channels: 1, height: 1, width: dims[1])
        default:
            throw DataError("\(imagePath): images must be N x C x H x W, N x H x W or N x L; shape is \(dims)")
        }
        let count = dims[0]
        guard count > 0 else { throw DataError("\(imagePath): empty set (0 samples)") }
        guard shape.count > 0 else { throw DataError("\(imagePath): samples of shape \(dims.dropFirst()) are empty") }

        let (labelDims, labelValues) = try NPY.load(path: labelPath)
        guard labelDims.count == 1 || (labelDims.count == 2 && labelDims[1] == 1) else {
            throw DataError("\(labelPath): labels must be one-dimensional; shape is \(labelDims)")
        }
        guard labelValues.count == count else {
            throw DataError("\(imagePath) has \(count) samples but \(labelPath) has \(labelValues.count) labels")
        }
        var labels = [Int32](repeating: 0, count: count)
        var largest = 0
        for (i, value) in labelValues.enumerated() {
            guard value >= 0, value == value.rounded(), value < 2_147_483_648 else {
                throw DataError("\(labelPath): label \(value) at index \(i) is not a class index")
            }
            labels[i] = Int32(value)
            largest = max(largest, Int(value))
        }
        let classCount = classes ?? largest + 1
        if let i = labels.firstIndex(where: { Int($0) >= classCount }) {
            throw DataError("\(labelPath): label \(labels[i]) at index \(i) is outside 0..<\(classCount)")
        }

        let base = imagePath.split(separator: "/").last.map(String.init) ?? imagePath
        if dtype == .uint8 {
            // Bytes stay bytes (divided by 255 when gathered).
            let store = SampleStore(bytes: imageFile, byteOffset: offset, elementType: .uint8, count: count,
                                    sampleElements: shape.count)
            return Dataset(name: base, shape: shape, classes: classCount, store: store, labels: labels)
        }
        let images = AlignedBuffer(count: count * shape.count)
        NPY.convert(imageFile, from: offset, count: images.count, dtype: dtype, into: images.pointer)
        return Dataset(name: base, shape: shape, classes: classCount, images: images, labels: labels)
    }
}

extension StringProtocol {
    /// Self without leading and trailing spaces, tabs, carriage returns and newlines.
    func trimmingSpaces() -> SubSequence {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }) else { return self[endIndex...] }
        let last = lastIndex(where: { !isSpace($0) }) ?? first
        return self[first...last]
    }
}
