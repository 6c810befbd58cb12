// Stored values to the Floats a model sees: (x / divisor - mean[c]) / std[c], then optionally each
// channel of each sample to zero mean and unit variance. Done when a shard is gathered, so samples stay as stored.
import PTTensor

/// How stored sample values become model inputs. `value = (Float(x) / divisor - mean[c]) / std[c]`
/// for element x of channel c (`mean`/`std`: empty for none, one value for all channels, or one per
/// channel), then, with `zNormalize`, each channel of each sample becomes (v - its mean) / its
/// standard deviation (two passes in Double; a constant channel becomes all zeros).
public struct SampleConversion: Sendable, Equatable, CustomStringConvertible {
    public var divisor: Float
    public var mean: [Float]
    public var std: [Float]
    public var zNormalize: Bool

    public init(divisor: Float = 1, mean: [Float] = [], std: [Float] = [], zNormalize: Bool = false) {
        self.divisor = divisor
        self.mean = mean
        self.std = std
        self.zNormalize = zNormalize
    }

    /// Values as stored (floats copied bit for bit).
    public static let identity = SampleConversion()

    /// The usual conversion for an element type: bytes / 255, int16 / 32768, floats as they are.
    public static func natural(_ type: ElementType) -> SampleConversion {
        switch type {
        case .uint8: return SampleConversion(divisor: 255)
        case .int16: return SampleConversion(divisor: 32768)
        case .float32: return SampleConversion()
        }
    }

    /// True when the conversion changes nothing (a plain copy of float samples).
    public var isIdentity: Bool { divisor == 1 && mean.isEmpty && std.isEmpty && !zNormalize }

    public var description: String {
        var parts = ["x / \(divisor)"]
        if !mean.isEmpty { parts.append("mean \(mean)") }
        if !std.isEmpty { parts.append("std \(std)") }
        if zNormalize { parts.append("z-normalised") }
        return parts.joined(separator: ", ")
    }

    /// Checks the values against `channels`. Throws a one-line `DataError`.
    public func validate(channels: Int) throws {
        guard divisor.isFinite && divisor > 0 else { throw DataError("conversion: divisor must be a finite number > 0, got \(divisor)") }
        for (name, values) in [("mean", mean), ("std", std)] where !(values.count <= 1 || values.count == channels) {
            throw DataError("conversion: \(name) needs 1 or \(channels) values (one per channel), got \(values.count)")
        }
        for m in mean where !m.isFinite { throw DataError("conversion: mean must be finite, got \(m)") }
        for s in std where !(s.isFinite && s > 0) { throw DataError("conversion: std must be a finite number > 0, got \(s)") }
    }
}

/// Where a recording lies inside its stored sample, and the value it is centred on. A reader that
/// pads or crops clips to one length (FSDD) keeps the stored values as recorded and records, per
/// sample, the elements `first ..< first + count` that hold the clip and `centre` (the mean of the
/// whole recording, before any crop, in divided units). Converting such a sample gives
/// `stored / divisor - centre` inside the window and 0 outside it (the padding), before the
/// conversion's mean / std and z-normalisation.
public struct ClipWindow: Sendable, Equatable {
    public var first: Int32
    public var count: Int32
    public var centre: Float

    public init(first: Int32, count: Int32, centre: Float) {
        self.first = first
        self.count = count
        self.centre = centre
    }

    /// Checks the window against a sample of `elements` values. Throws a one-line `DataError`
    /// (prefixed with `context`, e.g. "sample 12").
    public func validate(elements: Int, context: String) throws {
        guard first >= 0, count >= 0, Int(first) + Int(count) <= elements else {
            throw DataError("\(context): clip window \(first)..<\(Int(first) + Int(count)) is outside the sample's \(elements) values")
        }
        guard centre.isFinite else { throw DataError("\(context): clip centre \(centre) is not a finite number") }
    }
}

/// A `SampleConversion` prepared for one element type and sample shape (lookup tables for bytes), so
/// that converting a sample allocates nothing. Build once; share between workers (read-only).
public final class SampleConverter: @unchecked Sendable {
    public let conversion: SampleConversion
    public let elementType: ElementType
    public let shape: Shape
    /// uint8: 256 values per channel.
    let table: UnsafeMutablePointer<Float>
    /// Per channel mean and std (1 and 0 when none).
    let channelMean: [Float]
    let channelStd: [Float]
    let affine: Bool

    public init(_ conversion: SampleConversion, elementType: ElementType, shape: Shape) throws {
        try conversion.validate(channels: shape.channels)
        self.conversion = conversion
        self.elementType = elementType
        self.shape = shape
        let c = shape.channels
        channelMean = (0..<c).map { conversion.mean.isEmpty ? 0 : conversion.mean[conversion.mean.count == 1 ? 0 : $0] }
        channelStd = (0..<c).map { conversion.std.isEmpty ? 1 : conversion.std[conversion.std.count == 1 ? 0 : $0] }
        affine = !(conversion.mean.isEmpty && conversion.std.isEmpty)
        table = .allocate(capacity: elementType == .uint8 ? 256 * c : 1)
        if elementType == .uint8 {
            for ch in 0..<c {
                for b in 0..<256 { table[ch * 256 + b] = (Float(b) / conversion.divisor - channelMean[ch]) / channelStd[ch] }
            }
        }
    }

    deinit { table.deallocate() }

    /// Converts one stored sample at `source` (shape.count elements, any alignment) into `out`.
    @inline(__always)
    public func convert(_ source: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>) {
        let plane = shape.height * shape.width
        let n = shape.count
        switch elementType {
        case .uint8:
            let bytes = source.assumingMemoryBound(to: UInt8.self)
            for ch in 0..<shape.channels {
                let t = table + ch * 256, o = out + ch * plane, s = bytes + ch * plane
                for i in 0..<plane { o[i] = t[Int(s[i])] }
            }
        case .int16:
            let d = conversion.divisor
            for ch in 0..<shape.channels {
                let m = channelMean[ch], sd = channelStd[ch]
                for i in ch * plane..<(ch + 1) * plane {
                    let v = Float(Int16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) / d
                    out[i] = affine ? (v - m) / sd : v
                }
            }
        case .float32:
            if !affine && conversion.divisor == 1 {
                UnsafeMutableRawPointer(out).copyMemory(from: source, byteCount: 4 * n)
            } else {
                let d = conversion.divisor
                for ch in 0..<shape.channels {
                    let m = channelMean[ch], sd = channelStd[ch]
                    for i in ch * plane..<(ch + 1) * plane {
                        let v = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) / d
                        out[i] = affine ? (v - m) / sd : v
                    }
                }
            }
        }
        if conversion.zNormalize { standardizeChannels(out) }
    }

    /// Converts one stored sample whose recording lies in `clip` (nil: the whole sample, `convert`):
    /// stored / divisor - clip.centre inside the window, 0 outside; then mean / std and
    /// z-normalisation as `convert` does. Allocates nothing.
    @inline(__always)
    public func convert(_ source: UnsafeRawPointer, into out: UnsafeMutablePointer<Float>, clip: ClipWindow?) {
        guard let clip else { convert(source, into: out); return }
        let n = shape.count
        let first = min(n, Int(clip.first)), end = min(n, first + Int(clip.count))
        let d = conversion.divisor, centre = clip.centre
        for i in 0..<first { out[i] = 0 }
        switch elementType {
        case .uint8:
            let bytes = source.assumingMemoryBound(to: UInt8.self)
            for i in first..<end { out[i] = Float(bytes[i]) / d - centre }
        case .int16:
            for i in first..<end {
                out[i] = Float(Int16(littleEndian: source.loadUnaligned(fromByteOffset: 2 * i, as: Int16.self))) / d - centre
            }
        case .float32:
            for i in first..<end {
                out[i] = Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self))) / d - centre
            }
        }
        for i in end..<n { out[i] = 0 }
        if affine {
            let plane = shape.height * shape.width
            for ch in 0..<shape.channels {
                let m = channelMean[ch], sd = channelStd[ch]
                for i in ch * plane..<(ch + 1) * plane { out[i] = (out[i] - m) / sd }
            }
        }
        if conversion.zNormalize { standardizeChannels(out) }
    }

    /// Each channel of one sample (at `x`) to zero mean and unit variance (`standardize`).
    @inline(__always)
    public func standardizeChannels(_ x: UnsafeMutablePointer<Float>) {
        let plane = shape.height * shape.width
        guard plane > 0 else { return }
        for ch in 0..<shape.channels { standardize(x + ch * plane, count: plane) }
    }

    /// Scales `count` values in place to zero mean and unit variance (Double sums; constant: zeros).
    @inline(__always)
    public func standardize(_ x: UnsafeMutablePointer<Float>, count n: Int) {
        var mean = 0.0
        for k in 0..<n { mean += Double(x[k]) }
        mean /= Double(n)
        var variance = 0.0
        for k in 0..<n { variance += (Double(x[k]) - mean) * (Double(x[k]) - mean) }
        let std = (variance / Double(n)).squareRoot()
        let scale = std > 1e-12 ? 1 / std : 0
        for k in 0..<n { x[k] = Float((Double(x[k]) - mean) * scale) }
    }

    /// Converts raw values already widened to Float (e.g. a `predict` input read from .npy as stored)
    /// in place, sample by sample: the same formula as `convert`.
    public func convertInPlace(_ values: UnsafeMutablePointer<Float>, samples: Int) {
        let plane = shape.height * shape.width
        for s in 0..<samples {
            let x = values + s * shape.count
            if affine || conversion.divisor != 1 {
                for ch in 0..<shape.channels {
                    let m = channelMean[ch], sd = channelStd[ch], d = conversion.divisor
                    for i in ch * plane..<(ch + 1) * plane {
                        let v = x[i] / d
                        x[i] = affine ? (v - m) / sd : v
                    }
                }
            }
            if conversion.zNormalize { standardizeChannels(x) }
        }
    }
}
