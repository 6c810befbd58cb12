// An in-memory labelled data set: samples as one aligned Float buffer, labels as Int32.
import PTTensor

/// A labelled data set held in memory. `images` holds `count` samples of `shape.count` floats each,
/// sample-major (NCHW without padding); `labels[i]` is in 0..<classes.
public struct Dataset: @unchecked Sendable {
    public let name: String
    public let shape: Shape
    public let count: Int
    public let classes: Int
    public let images: AlignedBuffer
    public let labels: [Int32]

    public init(name: String, shape: Shape, classes: Int, images: AlignedBuffer, labels: [Int32]) {
        precondition(images.count == labels.count * shape.count, "Dataset: images and labels disagree")
        self.name = name
        self.shape = shape
        self.count = labels.count
        self.classes = classes
        self.images = images
        self.labels = labels
    }

    /// Pointer to sample `index`.
    public func sample(_ index: Int) -> UnsafeMutablePointer<Float> { images.pointer + index * shape.count }
}

/// A data error: one line naming the file (or setting) and what is wrong with it.
public struct DataError: Error, CustomStringConvertible, Equatable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
