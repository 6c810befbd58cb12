// IDX files (LeCun's MNIST format), raw or gzip, and the MNIST folder loader built on them.
import PTTensor

/// IDX reader. Layout: magic (2 zero bytes, type 0x08 = unsigned byte, number of dimensions),
/// then one big-endian UInt32 per dimension, then exactly the product of the dimensions in bytes.
public enum IDX {
    /// Dimensions and body of the IDX file at `path` (gzip is detected by the magic bytes 1f 8b).
    public static func load(path: String) throws -> (dims: [Int], bytes: [UInt8]) {
        let file = try FileIO.readMaybeGzip(path)
        let (dims, offset) = try header(file, name: path)
        return (dims, Array(file[offset...]))
    }

    /// Dimensions and body offset of IDX data in memory, checking magic, sizes and exact length.
    static func header(_ file: [UInt8], name: String) throws -> (dims: [Int], offset: Int) {
        guard file.count >= 4 else { throw DataError("\(name): not an IDX file (only \(file.count) bytes)") }
        let magic = be32(file, 0)
        guard file[0] == 0, file[1] == 0, file[2] == 0x08, (1...4).contains(file[3]) else {
            throw DataError("\(name): not an IDX file (magic 0x\(hex(magic)); expected 0x00000801 ... 0x00000804, unsigned bytes)")
        }
        let rank = Int(file[3])
        let offset = 4 + 4 * rank
        guard file.count >= offset else {
            throw DataError("\(name): truncated IDX header (\(file.count) bytes, header needs \(offset))")
        }
        var dims: [Int] = []
        var total = 1
        for d in 0..<rank {
            let size = Int(be32(file, 4 + 4 * d))
            dims.append(size)
            let (product, overflow) = total.multipliedReportingOverflow(by: size)
            guard !overflow else { throw DataError("\(name): IDX dimensions \(dims) overflow") }
            total = product
        }
        let body = file.count - offset
        let shape = dims.map(String.init).joined(separator: " x ")
        if body < total {
            throw DataError("\(name): truncated: header says \(shape) = \(total) bytes of data, file has \(body)")
        }
        if body > total {
            throw DataError("\(name): \(body - total) trailing bytes after the \(shape) = \(total) bytes of data")
        }
        return (dims, offset)
    }

    @inline(__always) static func be32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }

    static func hex(_ v: UInt32) -> String {
        let s = String(v, radix: 16)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}

/// MNIST as distributed: four IDX files in one folder, optionally gzipped.
public enum MNISTFolder {
    // Base names tried for each file, in order; each is also tried with ".gz" appended.
    /// Names tried for the training images.
    public static let trainImageNames = ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]
    /// Names tried for the training labels.
    public static let trainLabelNames = ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"]
    /// Names tried for the test images.
    public static let testImageNames = ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]
    /// Names tried for the test labels.
    public static let testLabelNames = ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]

    /// Loads the train and test sets from `directory`, pixels as stored (converted as byte / 255;
    /// `Preprocessing` adds the config's mean and std). Shape 1 x rows x cols; labels must lie in
    /// 0..<classes.
    public static func load(directory: String, classes: Int = 10) throws -> (train: Dataset, test: Dataset) {
        try FileIO.requireDirectory(directory)
        guard classes > 0 else { throw DataError("MNIST: classes must be positive, got \(classes)") }
        let trainImages = try find(directory, trainImageNames)
        let trainLabels = try find(directory, trainLabelNames)
        let testImages = try find(directory, testImageNames)
        let testLabels = try find(directory, testLabelNames)
        let train = try loadPair(images: trainImages, labels: trainLabels, classes: classes, name: "mnist-train")
        let test = try loadPair(images: testImages, labels: testLabels, classes: classes, name: "mnist-test")
        guard train.shape == test.shape else {
            throw DataError("\(testImages) has images of \(test.shape.height) x \(test.shape.width) but \(trainImages) has "
                + "\(train.shape.height) x \(train.shape.width)")
        }
        return (train, test)
    }


    static func find(_ directory: String, _ names: [String]) throws -> String {
        for base in names {
            for candidate in [base, base + ".gz"] {
                let path = FileIO.join(directory, candidate)
                if FileIO.isFile(path) { return path }
            }
        }
        let tried = names.flatMap { [$0, $0 + ".gz"] }.joined(separator: ", ")
        throw DataError("\(directory): no MNIST file found (looked for \(tried))")
    }

    /// Loads one image file and its label file as a data set (any IDX image/label pair in MNIST's
    /// layout), pixels as stored (converted as byte / 255).
    public static func loadPair(images imagePath: String, labels labelPath: String, classes: Int = 10,
                                name: String = "mnist") throws -> Dataset {
        let imageFile = try FileIO.readMaybeGzip(imagePath)
        let (imageDims, imageOffset) = try IDX.header(imageFile, name: imagePath)
        guard imageDims.count == 3 else {
            throw DataError("\(imagePath): expected 3 dimensions (images x rows x cols), found \(imageDims.count)")
        }
        let labelFile = try FileIO.readMaybeGzip(labelPath)
        let (labelDims, labelOffset) = try IDX.header(labelFile, name: labelPath)
        guard labelDims.count == 1 else {
            throw DataError("\(labelPath): expected 1 dimension (labels), found \(labelDims.count)")
        }
        let count = imageDims[0]
        guard count == labelDims[0] else {
            throw DataError("\(imagePath) has \(count) images but \(labelPath) has \(labelDims[0]) labels")
        }
        guard count > 0 else { throw DataError("\(imagePath): empty set (0 images)") }
        guard imageDims[1] > 0, imageDims[2] > 0 else {
            throw DataError("\(imagePath): images of size \(imageDims[1]) x \(imageDims[2])")
        }

        var labels = [Int32](repeating: 0, count: count)
        for i in 0..<count {
            let value = Int(labelFile[labelOffset + i])
            guard value < classes else {
                throw DataError("\(labelPath): label \(value) at index \(i) is outside 0..<\(classes)")
            }
            labels[i] = Int32(value)
        }

        // The pixels stay as the file's bytes (one byte each); they become Floats when gathered.
        let shape = Shape(channels: 1, height: imageDims[1], width: imageDims[2])
        let store = SampleStore(bytes: imageFile, byteOffset: imageOffset, elementType: .uint8, count: count,
                                sampleElements: shape.count)
        return try Dataset(name: name, shape: shape, classes: classes, store: store, labels: labels)
    }
}
