// CIFAR-10 "binary version": data_batch_1..5.bin (train) and test_batch.bin, 3073-byte records.
import PTTensor

/// CIFAR-10 binary batches. Each record is 1 label byte (0...9) and 3072 pixel bytes: 1024 red, then
/// 1024 green, then 1024 blue, each 32x32 row-major (so already CHW).
public enum CIFAR10Folder {
    /// Bytes per record: 1 label + 3 x 32 x 32 pixels.
    public static let recordSize = 1 + 3 * 32 * 32
    /// Training batch file names, in load order.
    public static let trainNames = (1...5).map { "data_batch_\($0).bin" }
    /// Test batch file name.
    public static let testName = "test_batch.bin"

    /// Loads train (50,000) and test (10,000) from `directory` (or its `cifar-10-batches-bin` subfolder).
    /// Pixels become byte/255, then (x - mean[c]) / std[c] when given (one value, or one per channel,
    /// e.g. mean [0.4914, 0.4822, 0.4465], std [0.2470, 0.2435, 0.2616]). Shape 3 x 32 x 32, 10 classes.
    public static func load(directory: String, mean: [Float]? = nil, std: [Float]? = nil) throws
        -> (train: Dataset, test: Dataset)
    {
        try FileIO.requireDirectory(directory)
        var folder = directory
        let nested = FileIO.join(directory, "cifar-10-batches-bin")
        if !FileIO.isFile(FileIO.join(directory, testName)) && FileIO.isDirectory(nested) { folder = nested }
        let missing = (trainNames + [testName]).filter { !FileIO.isFile(FileIO.join(folder, $0)) }
        guard missing.isEmpty else {
            throw DataError("\(folder): missing CIFAR-10 batch files \(missing.joined(separator: ", ")) "
                + "(expected \((trainNames + [testName]).joined(separator: ", ")))")
        }
        let tables = try channelTables(mean: mean, std: std)
        let train = try loadBatches(trainNames.map { FileIO.join(folder, $0) }, tables: tables, name: "cifar10-train")
        let test = try loadBatches([FileIO.join(folder, testName)], tables: tables, name: "cifar10-test")
        return (train, test)
    }

    /// Loads and concatenates the given batch files (each a whole number of records).
    public static func loadBatches(paths: [String], mean: [Float]? = nil, std: [Float]? = nil,
                                   name: String = "cifar10") throws -> Dataset {
        try loadBatches(paths, tables: channelTables(mean: mean, std: std), name: name)
    }

    /// One 256-entry table per channel: (b/255 - mean[c]) / std[c].
    static func channelTables(mean: [Float]?, std: [Float]?) throws -> [[Float]] {
        func perChannel(_ v: [Float]?, _ what: String, _ fallback: Float) throws -> [Float] {
            guard let v else { return [fallback, fallback, fallback] }
            if v.count == 1 { return [v[0], v[0], v[0]] }
            guard v.count == 3 else { throw DataError("CIFAR-10: \(what) needs 1 or 3 values, got \(v.count)") }
            return v
        }
        let m = try perChannel(mean, "mean", 0), s = try perChannel(std, "std", 1)
        for value in s where !(value > 0) { throw DataError("CIFAR-10: std must be positive, got \(value)") }
        return (0..<3).map { MNISTFolder.pixelTable(mean: m[$0], std: s[$0]) }
    }

    static func loadBatches(_ paths: [String], tables: [[Float]], name: String) throws -> Dataset {
        var files: [[UInt8]] = []
        var total = 0
        for path in paths {
            let bytes = try FileIO.readMaybeGzip(path)
            guard bytes.count % recordSize == 0 else {
                throw DataError("\(path): \(bytes.count) bytes is not a whole number of \(recordSize)-byte records "
                    + "(truncated or not a CIFAR-10 binary batch)")
            }
            let records = bytes.count / recordSize
            for r in 0..<records where bytes[r * recordSize] > 9 {
                throw DataError("\(path): label \(bytes[r * recordSize]) at record \(r) is outside 0..<10")
            }
            files.append(bytes)
            total += records
        }
        guard total > 0 else { throw DataError("\(paths.joined(separator: ", ")): empty set (0 records)") }

        let shape = Shape(channels: 3, height: 32, width: 32)
        let plane = 32 * 32
        let images = AlignedBuffer(count: total * shape.count)
        var labels = [Int32](repeating: 0, count: total)
        var sample = 0
        for bytes in files {
            for r in 0..<(bytes.count / recordSize) {
                let record = r * recordSize
                labels[sample] = Int32(bytes[record])
                for c in 0..<3 {
                    MNISTFolder.convertBytes(bytes, from: record + 1 + c * plane, count: plane, table: tables[c],
                                             into: images.pointer + sample * shape.count + c * plane)
                }
                sample += 1
            }
        }
        return Dataset(name: name, shape: shape, classes: 10, images: images, labels: labels)
    }
}
