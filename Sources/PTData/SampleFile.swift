// Unlabelled sample files (IDX or NPY, e.g. the input of `predict`) as stored, for the same
// conversion code as training: a SampleStore and the per-sample shape.
import PTTensor

public enum SampleFile {
    /// The samples of an IDX file (unsigned bytes: N x L, N x H x W or N x C x H x W) or an NPY file
    /// (uint8 stays bytes; other types become float32), as stored, with their per-sample shape.
    public static func load(path: String) throws -> (store: SampleStore, shape: Shape) {
        let file = try FileIO.readMaybeGzip(path)
        if path.hasSuffix(".npy") || (file.count >= 6 && file[0] == 0x93 && file[1] == 0x4E) {
            let (dims, dtype, offset) = try NPY.header(file, name: path)
            let shape = try sampleShape(dims, path: path)
            if dtype == .uint8 {
                return (SampleStore(bytes: file, byteOffset: offset, elementType: .uint8, count: dims[0], sampleElements: shape.count), shape)
            }
            let values = AlignedBuffer(count: dims[0] * shape.count)
            NPY.convert(file, from: offset, count: values.count, dtype: dtype, into: values.pointer)
            return (SampleStore(floats: values, sampleElements: shape.count), shape)
        }
        let (dims, offset) = try IDX.header(file, name: path)
        let shape = try sampleShape(dims, path: path)
        return (SampleStore(bytes: file, byteOffset: offset, elementType: .uint8, count: dims[0], sampleElements: shape.count), shape)
    }

    static func sampleShape(_ dims: [Int], path: String) throws -> Shape {
        guard let n = dims.first, n > 0 else { throw DataError("\(path): holds no samples") }
        let rest = Array(dims.dropFirst())
        let shape: Shape
        switch rest.count {
        case 1: shape = Shape(channels: 1, height: 1, width: rest[0])
        case 2: shape = Shape(channels: 1, height: rest[0], width: rest[1])
        case 3: shape = Shape(channels: rest[0], height: rest[1], width: rest[2])
        default: throw DataError("\(path): samples of \(rest.count) dimensions are not supported (1 to 3)")
        }
        guard shape.count > 0 else { throw DataError("\(path): samples of shape \(rest) are empty") }
        return shape
    }
}
