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

/// `text` fit for a one-line message: control characters escaped, cut to `limit` characters.
func printable<S: StringProtocol>(_ text: S, limit: Int = 40) -> String {
    var out = ""
    for (i, u) in text.unicodeScalars.enumerated() {
        if i == limit { out += "..."; break }
        switch u {
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if u.value < 0x20 || (0x7F...0x9F).contains(u.value) || u.value == 0x2028 || u.value == 0x2029 {
                out += "\\u{" + String(u.value, radix: 16) + "}"
            } else {
                out.unicodeScalars.append(u)
            }
        }
    }
    return out
}
