// Image folders in torchvision's ImageFolder layout: root/train/<class>/* and root/test/<class>/*,
// class names sorted into labels; PNG and JPEG decoded to the model input's channels and size.
import Dispatch
import Foundation
import PTTensor

public enum ImageFolder {
    /// File name endings read as images (case-insensitive); other files are ignored.
    public static let extensions = ["png", "jpg", "jpeg"]

    /// The order of the samples of each split (their storage positions, which the seeded epoch
    /// shuffle permutes).
    public enum Order: String, Sendable, CaseIterable {
        /// Class by class (labels 0, 1, ...), each class's files sorted by name: ImageFolder's order.
        case `class`
        /// All files of the split sorted by file name across the classes (bytewise), equal names in
        /// label order. Files named by their index in another data set (e.g. 00042.png) keep its order.
        case name
    }

    /// The files of one split with their labels, and the class names (sorted).
    public struct Listing: Sendable {
        public var classes: [String]
        public var train: [(path: String, label: Int32)]
        public var test: [(path: String, label: Int32)]
    }

    /// Runs body(0..<count) in parallel and returns when all are done.
    public typealias ParallelFor = @Sendable (_ count: Int, _ body: @escaping @Sendable (Int) -> Void) -> Void

    /// Dispatch's concurrentPerform (for loading without a worker pool).
    public static let dispatchParallelFor: ParallelFor = { count, body in
        DispatchQueue.concurrentPerform(iterations: count, execute: body)
    }

    /// Lists root/train and root/test in `order`. Classes are the folders of train/ (sorted bytewise).
    /// Errors: missing train/ or test/, no class folders, an empty class folder (no image files), a
    /// test class that train/ lacks.
    public static func list(root: String, order: Order = .class) throws -> Listing {
        try FileIO.requireDirectory(root)
        let trainRoot = FileIO.join(root, "train"), testRoot = FileIO.join(root, "test")
        guard FileIO.isDirectory(trainRoot) else { throw DataError("\(root): no train/ folder (expected train/<class>/* and test/<class>/*)") }
        guard FileIO.isDirectory(testRoot) else { throw DataError("\(root): no test/ folder (expected train/<class>/* and test/<class>/*)") }
        let classes = try FileIO.list(trainRoot).filter { FileIO.isDirectory(FileIO.join(trainRoot, $0)) }
        guard !classes.isEmpty else { throw DataError("\(trainRoot): no class folders") }
        guard classes.count <= 65535 else { throw DataError("\(trainRoot): \(classes.count) class folders (at most 65535)") }
        let testClasses = try FileIO.list(testRoot).filter { FileIO.isDirectory(FileIO.join(testRoot, $0)) }
        guard !testClasses.isEmpty else { throw DataError("\(testRoot): no class folders") }
        for name in testClasses where !classes.contains(name) {
            throw DataError("\(FileIO.join(testRoot, name)): class '\(printable(name))' has no folder in \(trainRoot)")
        }
        func files(_ splitRoot: String, _ names: [String]) throws -> [(path: String, label: Int32)] {
            var out: [(file: String, path: String, label: Int32)] = []
            for name in names {
                let folder = FileIO.join(splitRoot, name)
                let images = try FileIO.list(folder).filter { file in
                    let lower = file.lowercased()
                    return extensions.contains { lower.hasSuffix("." + $0) } && FileIO.isFile(FileIO.join(folder, file))
                }
                guard !images.isEmpty else { throw DataError("\(folder): empty class folder (no .png, .jpg or .jpeg files)") }
                let label = Int32(classes.firstIndex(of: name)!)
                out += images.map { ($0, FileIO.join(folder, $0), label) }
            }
            if order == .name {
                // Stable: equal names keep the class order they were listed in.
                out = out.enumerated().sorted { a, b in
                    if a.element.file == b.element.file { return a.offset < b.offset }
                    return a.element.file.utf8.lexicographicallyPrecedes(b.element.file.utf8)
                }.map(\.element)
            }
            return out.map { ($0.path, $0.label) }
        }
        return Listing(classes: classes, train: try files(trainRoot, classes), test: try files(testRoot, testClasses))
    }

    /// What `load` skipped with `skipBad`.
    public struct Report: Sendable {
        public var skipped: [String] = []
        public init() {}
    }

    /// Decodes every image of root/train and root/test to `shape` (channels 1 or 3) as uint8 samples
    /// (CHW), labels from the sorted class folders. With `resize`, each image is scaled so that it
    /// covers the input and centre-cropped; without it every image must already have the input's size.
    /// A corrupt or unreadable image is an error naming it, or with `skipBad` left out and listed in
    /// the report. Samples are stored in `order`, converted as bytes / 255 (`Preprocessing` adds the
    /// config's mean and std).
    public static func load(root: String, shape: Shape, resize: Bool, order: Order = .class,
                            skipBad: Bool = false, parallelFor: ParallelFor = dispatchParallelFor,
                            progress: (@Sendable (Int, Int) -> Void)? = nil, report: UnsafeMutablePointer<Report>? = nil)
        throws -> (train: Dataset, test: Dataset)
    {
        guard shape.channels == 1 || shape.channels == 3 else {
            throw DataError("\(root): images are decoded to 1 (grey) or 3 (RGB) channels, the input has \(shape.channels)")
        }
        let listing = try list(root: root, order: order)
        let all = listing.train + listing.test
        let sampleBytes = shape.count
        let results = DecodeResults(count: all.count, sampleBytes: sampleBytes)
        let counter = ProgressCounter(total: all.count, progress: progress)
        let paths = all.map(\.path)
        parallelFor(all.count) { i in
            let path = paths[i]
            do {
                let bytes = try FileIO.readAll(path)
                let image = try ImageCodec.decode(bytes, channels: shape.channels, name: path)
                let out = results.pixels + i * sampleBytes
                if image.width == shape.width && image.height == shape.height {
                    ImageCodec.planar(image, into: out)
                } else if resize {
                    ImageCodec.resizeAndCrop(image, width: shape.width, height: shape.height, into: out)
                } else {
                    results.setError(i, DataError("\(path): image is \(image.width)x\(image.height) but the model input is "
                        + "\(shape.width)x\(shape.height) (images of other sizes need data.resize: true)"), decode: false)
                }
            } catch let error as DataError {
                results.setError(i, error, decode: true)
            } catch {
                results.setError(i, DataError("\(path): \(error)"), decode: true)
            }
            counter.step()
        }
        var skipped: [String] = []
        for i in 0..<all.count {
            guard let error = results.errors[i] else { continue }
            if skipBad && results.isDecodeError[i] { skipped.append(all[i].path) } else { throw error }
        }
        report?.pointee.skipped = skipped
        let keep = (0..<all.count).filter { results.errors[$0] == nil }
        let trainKeep = keep.filter { $0 < listing.train.count }
        let testKeep = keep.filter { $0 >= listing.train.count }
        guard !trainKeep.isEmpty else { throw DataError("\(root): no readable training images") }
        guard !testKeep.isEmpty else { throw DataError("\(root): no readable test images") }
        func set(_ indices: [Int], _ name: String) throws -> Dataset {
            var bytes = [UInt8](repeating: 0, count: indices.count * sampleBytes)
            bytes.withUnsafeMutableBufferPointer { out in
                for (k, i) in indices.enumerated() {
                    (out.baseAddress! + k * sampleBytes).update(from: results.pixels + i * sampleBytes, count: sampleBytes)
                }
            }
            let store = SampleStore(bytes: bytes, elementType: .uint8, count: indices.count, sampleElements: sampleBytes)
            return try Dataset(name: name, shape: shape, classes: listing.classes.count, store: store,
                               labels: indices.map { all[$0].label }, classNames: listing.classes)
        }
        let base = (root as NSString).lastPathComponent
        return (try set(trainKeep, base + "-train"), try set(testKeep, base + "-test"))
    }
}

/// Decoded pixels of every file (written by distinct indices from many threads) and per-file errors.
final class DecodeResults: @unchecked Sendable {
    let pixels: UnsafeMutablePointer<UInt8>
    var errors: [DataError?]
    var isDecodeError: [Bool]
    private let lock = NSLock()

    init(count: Int, sampleBytes: Int) {
        pixels = .allocate(capacity: max(1, count * sampleBytes))
        pixels.initialize(repeating: 0, count: max(1, count * sampleBytes))
        errors = Array(repeating: nil, count: count)
        isDecodeError = Array(repeating: false, count: count)
    }

    func setError(_ i: Int, _ error: DataError, decode: Bool) {
        lock.lock()
        errors[i] = error
        isDecodeError[i] = decode
        lock.unlock()
    }

    deinit { pixels.deallocate() }
}

/// Counts finished files and calls `progress` (under a lock: files take far longer than the lock).
final class ProgressCounter: @unchecked Sendable {
    let total: Int
    let progress: (@Sendable (Int, Int) -> Void)?
    private var done = 0
    private let lock = NSLock()

    init(total: Int, progress: (@Sendable (Int, Int) -> Void)?) {
        self.total = total
        self.progress = progress
    }

    func step() {
        guard let progress else { return }
        lock.lock()
        done += 1
        let now = done
        progress(now, total)
        lock.unlock()
    }
}
