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
    /// Pixels as stored (converted as byte / 255; `Preprocessing` adds the config's mean and std).
    /// Shape 3 x 32 x 32, 10 classes.
    public static func load(directory: String) throws -> (train: Dataset, test: Dataset) {
        try FileIO.requireDirectory(directory)
        var folder = directory
        let nested = FileIO.join(directory, "cifar-10-batches-bin")
        if !FileIO.isFile(FileIO.join(directory, testName)) && FileIO.isDirectory(nested) { folder = nested }
        let missing = (trainNames + [testName]).filter { !FileIO.isFile(FileIO.join(folder, $0)) }
        guard missing.isEmpty else {
            throw DataError("\(folder): missing CIFAR-10 batch files \(missing.joined(separator: ", ")) "
                + "(expected \((trainNames + [testName]).joined(separator: ", ")))")
        }
        let train = try loadBatches(paths: trainNames.map { FileIO.join(folder, $0) }, name: "cifar10-train")
        let test = try loadBatches(paths: [FileIO.join(folder, testName)], name: "cifar10-test")
        return (train, test)
    }

    /// Loads and concatenates the given batch files (each a whole number of records), pixels as
    /// stored (converted as byte / 255).
    public static func loadBatches(paths: [String], name: String = "cifar10") throws -> Dataset {
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

        // Pixels stay bytes (CHW already); the labels are taken out of the records.
        let shape = Shape(channels: 3, height: 32, width: 32)
        let pixels = recordSize - 1
        var labels = [Int32](repeating: 0, count: total)
        var sample = 0
        var stored = [UInt8](repeating: 0, count: total * pixels)
        stored.withUnsafeMutableBufferPointer { out in
            for bytes in files {
                bytes.withUnsafeBufferPointer { file in
                    for r in 0..<(bytes.count / recordSize) {
                        labels[sample] = Int32(file[r * recordSize])
                        (out.baseAddress! + sample * pixels).update(from: file.baseAddress! + r * recordSize + 1, count: pixels)
                        sample += 1
                    }
                }
            }
        }
        files = []
        let store = SampleStore(bytes: stored, elementType: .uint8, count: total, sampleElements: shape.count)
        return try Dataset(name: name, shape: shape, classes: 10, store: store, labels: labels)
    }
}
