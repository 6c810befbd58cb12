// An in-memory labelled data set: samples as one aligned Float buffer, labels as Int32.
import PTTensor

/// A labelled data set. `store` holds `count` samples of `shape.count` elements each, sample-major
/// (NCHW without padding), as stored: Floats, uint8 pixels, int16 audio, in memory or memory-mapped.
/// `conversion` turns stored values into model inputs when samples are gathered (`gather`), so a
/// uint8 set costs one byte per pixel however it is normalised. `labels[i]` is in 0..<classes.
/// `clips` (audio padded or cropped to one length) says, per sample, where the recording lies and
/// the value it is centred on; the conversion applies it (`ClipWindow`).
public struct Dataset: @unchecked Sendable {
    public let name: String
    public let shape: Shape
    public let count: Int
    public let classes: Int
    public let store: SampleStore
    public let labels: [Int32]
    /// Class names, one per class (default "0", "1", ...).
    public let classNames: [String]
    /// The conversion `gather` applies (prepared: `converter`).
    public var conversion: SampleConversion { converter.conversion }
    public let converter: SampleConverter
    /// Per sample: the recording's window and centre (nil: every sample is converted whole).
    public let clips: [ClipWindow]?

    /// A set of Float samples used as they are.
    public init(name: String, shape: Shape, classes: Int, images: AlignedBuffer, labels: [Int32]) {
        precondition(images.count == labels.count * shape.count, "Dataset: images and labels disagree")
        self.init(name: name, shape: shape, classes: classes,
                  store: SampleStore(floats: images, sampleElements: max(1, shape.count)), labels: labels)
    }

    /// A set over `store` with `conversion` (default: the element type's natural one, bytes / 255)
    /// and, for padded or cropped recordings, one `ClipWindow` per sample. Throws when the
    /// conversion does not fit the shape (e.g. 2 means for 3 channels) or a window the sample.
    public init(name: String, shape: Shape, classes: Int, store: SampleStore, conversion: SampleConversion? = nil,
                labels: [Int32], classNames: [String]? = nil, clips: [ClipWindow]? = nil) throws {
        precondition(store.count == labels.count && store.sampleElements == shape.count, "Dataset: store and labels disagree")
        if let clips {
            guard clips.count == labels.count else {
                throw DataError("\(name): \(clips.count) clip windows for \(labels.count) samples")
            }
            for (i, clip) in clips.enumerated() { try clip.validate(elements: shape.count, context: "\(name): sample \(i)") }
        }
        self.init(name: name, shape: shape, classes: classes, store: store,
                  converter: try SampleConverter(conversion ?? .natural(store.elementType), elementType: store.elementType, shape: shape),
                  labels: labels, classNames: classNames ?? (0..<classes).map(String.init), clips: clips)
    }

    init(name: String, shape: Shape, classes: Int, store: SampleStore, labels: [Int32]) {
        // Natural conversion of a float store is the identity: cannot fail.
        try! self.init(name: name, shape: shape, classes: classes, store: store, conversion: .natural(store.elementType), labels: labels)
    }

    /// The same set over another store of the same samples (a copy in other pages), keeping the
    /// prepared converter.
    public func with(store other: SampleStore) -> Dataset {
        precondition(other.count == count && other.sampleElements == store.sampleElements && other.elementType == store.elementType,
                     "Dataset.with(store:): another layout")
        return Dataset(name: name, shape: shape, classes: classes, store: other, converter: converter, labels: labels,
                       classNames: classNames, clips: clips)
    }

    private init(name: String, shape: Shape, classes: Int, store: SampleStore, converter: SampleConverter, labels: [Int32],
                 classNames: [String], clips: [ClipWindow]?) {
        self.clips = clips
        self.name = name
        self.shape = shape
        self.count = labels.count
        self.classes = classes
        self.store = store
        self.labels = labels
        self.classNames = classNames
        self.converter = converter
    }

    /// The same samples with another conversion (e.g. the config's mean, std or z-normalisation).
    public func with(conversion: SampleConversion) throws -> Dataset {
        try Dataset(name: name, shape: shape, classes: classes, store: store, conversion: conversion, labels: labels,
                    classNames: classNames, clips: clips)
    }

    /// Pointer to Float sample `index`, for sets held as Floats in memory (generated data, tests).
    public func sample(_ index: Int) -> UnsafeMutablePointer<Float> {
        guard let floats = store.floatBuffer else { preconditionFailure("Dataset.sample: \(name) is stored as \(store.elementType)") }
        return floats.pointer + index * shape.count
    }

    /// Sample `index` converted to model inputs (a new array; for tests and inspection).
    public func values(_ index: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: shape.count) { out, n in
            convert(index, into: out.baseAddress!)
            n = shape.count
        }
    }

    /// Every sample converted, in one new buffer of count x shape.count Floats. Costs 4 bytes per
    /// value: for small sets, tests and whole-set inference; training gathers shard by shard.
    public func converted() -> AlignedBuffer {
        let out = AlignedBuffer(count: count * shape.count)
        for i in 0..<count { convert(i, into: out.pointer + i * shape.count) }
        return out
    }

    /// Converts sample `index` into `out` (shape.count Floats). Allocates nothing.
    @inline(__always)
    public func convert(_ index: Int, into out: UnsafeMutablePointer<Float>, converter: SampleConverter? = nil) {
        store.willRead(index)
        let c = converter ?? self.converter
        let bytes = store.sampleBytes
        if let clips {
            store.withBase { base in c.convert(base + index * bytes, into: out, clip: clips[index]) }
        } else {
            store.withBase { base in c.convert(base + index * bytes, into: out) }
        }
    }
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
