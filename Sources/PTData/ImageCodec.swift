// PNG (libpng's simplified API) and JPEG (libjpeg-turbo's TurboJPEG API) decoding to grey or RGB
// bytes, resizing (area average down, bilinear up) and centre-cropping; encoders for tests and tools.
import CPNG
import CTurboJPEG
import Foundation

/// A decoded image: `channels` (1 grey, 3 RGB) interleaved bytes per pixel, row-major (HWC).
public struct DecodedImage: Sendable, Equatable {
    public var width: Int
    public var height: Int
    public var channels: Int
    public var pixels: [UInt8]
    public init(width: Int, height: Int, channels: Int, pixels: [UInt8]) {
        self.width = width; self.height = height; self.channels = channels; self.pixels = pixels
    }
}

public enum ImageCodec {
    /// The largest image side accepted.
    public static let maxSide = 1 << 15
    /// The most pixels an image may have (64 Mi, 192 MiB as RGB bytes; Pillow warns above 89 M): a
    /// guard against a corrupt or hostile header that asks for gigabytes. The side limit alone let a
    /// 319-byte JPEG claiming 29697 x 18798 pixels allocate 1.7 GB and decode for seconds (found by
    /// Tests/Fuzz/ImageFuzzer.swift).
    public static let maxPixels = 1 << 26

    /// Nil when `width` x `height` is a size this decoder accepts, else why not (for the message).
    static func sizeProblem(width: Int, height: Int) -> String? {
        guard width > 0, height > 0, width <= maxSide, height <= maxSide, width * height <= maxPixels else {
            return "at most \(maxSide) a side and \(maxPixels) pixels"
        }
        return nil
    }

    /// True when `bytes` start like a PNG file.
    public static func isPNG(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 8 && Array(bytes[0..<8]) == [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
    }

    /// True when `bytes` start like a JPEG file (SOI marker).
    public static func isJPEG(_ bytes: [UInt8]) -> Bool { bytes.count >= 3 && bytes[0] == 0xFF && bytes[1] == 0xD8 && bytes[2] == 0xFF }

    /// Decodes a PNG or JPEG file's bytes to `channels` (1: grey, 3: RGB; colour is converted as the
    /// libraries do: luminance for grey, grey replicated for RGB; alpha composited onto black).
    /// `name` (the file) goes into the one-line error.
    public static func decode(_ bytes: [UInt8], channels: Int, name: String) throws -> DecodedImage {
        precondition(channels == 1 || channels == 3, "ImageCodec.decode: channels must be 1 or 3")
        if isPNG(bytes) { return try decodePNG(bytes, channels: channels, name: name) }
        if isJPEG(bytes) { return try decodeJPEG(bytes, channels: channels, name: name) }
        throw DataError("\(name): not a PNG or JPEG file (unrecognised first bytes)")
    }

    static func decodePNG(_ bytes: [UInt8], channels: Int, name: String) throws -> DecodedImage {
        var image = zeroedPNGImage()
        image.version = UInt32(PNG_IMAGE_VERSION)
        defer { png_image_free(&image) }
        func failure(_ what: String) -> DataError {
            let message = withUnsafeBytes(of: image.message) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            return DataError("\(name): corrupt or unreadable PNG (\(what): \(printable(message, limit: 80)))")
        }
        let ok = bytes.withUnsafeBytes { png_image_begin_read_from_memory(&image, $0.baseAddress, $0.count) }
        guard ok != 0 else { throw failure("header") }
        if let problem = sizeProblem(width: Int(image.width), height: Int(image.height)) {
            throw DataError("\(name): PNG of \(image.width) x \(image.height) pixels (\(problem))")
        }
        image.format = channels == 1 ? 0 : UInt32(PNG_FORMAT_FLAG_COLOR)  // PNG_FORMAT_GRAY, PNG_FORMAT_RGB
        let width = Int(image.width), height = Int(image.height)
        var pixels = [UInt8](repeating: 0, count: width * height * channels)
        let done = pixels.withUnsafeMutableBytes { png_image_finish_read(&image, nil, $0.baseAddress, Int32(width * channels), nil) }
        guard done != 0 else { throw failure("pixels") }
        return DecodedImage(width: width, height: height, channels: channels, pixels: pixels)
    }

    static func decodeJPEG(_ bytes: [UInt8], channels: Int, name: String) throws -> DecodedImage {
        guard let handle = tjInitDecompress() else { throw DataError("\(name): cannot start the JPEG decoder") }
        defer { tjDestroy(handle) }
        func failure(_ what: String) -> DataError {
            let message = tjGetErrorStr2(handle).map { String(cString: $0) } ?? "unknown error"
            return DataError("\(name): corrupt or unreadable JPEG (\(what): \(printable(message, limit: 80)))")
        }
        var width: Int32 = 0, height: Int32 = 0, subsampling: Int32 = 0, colorspace: Int32 = 0
        let header = bytes.withUnsafeBufferPointer {
            tjDecompressHeader3(handle, $0.baseAddress, UInt($0.count), &width, &height, &subsampling, &colorspace)
        }
        guard header == 0 else { throw failure("header") }
        if let problem = sizeProblem(width: Int(width), height: Int(height)) {
            throw DataError("\(name): JPEG of \(width) x \(height) pixels (\(problem))")
        }
        var pixels = [UInt8](repeating: 0, count: Int(width) * Int(height) * channels)
        let format = channels == 1 ? TJPF_GRAY : TJPF_RGB
        // A warning (e.g. "premature end of data": a truncated file) is an error here too.
        let status = bytes.withUnsafeBufferPointer { src in
            pixels.withUnsafeMutableBufferPointer { out in
                tjDecompress2(handle, src.baseAddress, UInt(src.count), out.baseAddress, width, Int32(Int(width) * channels),
                              height, format.rawValue, 0)
            }
        }
        guard status == 0 else { throw failure("pixels") }
        return DecodedImage(width: Int(width), height: Int(height), channels: channels, pixels: pixels)
    }

    /// A png_image with every field zero, as libpng's simplified API requires.
    static func zeroedPNGImage() -> png_image {
        withUnsafeTemporaryAllocation(of: png_image.self, capacity: 1) { p in
            memset(p.baseAddress!, 0, MemoryLayout<png_image>.size)
            return p[0]
        }
    }

    // MARK: - Geometry

    /// Scales `image` so that it covers width x height (the shorter side fits), then cuts the centre
    /// (torchvision's Resize(shorter side) + CenterCrop). Output is CHW planes of width x height bytes.
    public static func resizeAndCrop(_ image: DecodedImage, width: Int, height: Int, into out: UnsafeMutablePointer<UInt8>) {
        let scale = max(Double(width) / Double(image.width), Double(height) / Double(image.height))
        let scaledW = max(width, Int((Double(image.width) * scale).rounded()))
        let scaledH = max(height, Int((Double(image.height) * scale).rounded()))
        let left = (scaledW - width) / 2, top = (scaledH - height) / 2
        let c = image.channels
        // Horizontal pass (to scaledW columns, only the kept ones), then vertical.
        let horizontal = weights(source: image.width, target: scaledW, first: left, count: width)
        let vertical = weights(source: image.height, target: scaledH, first: top, count: height)
        var rows = [Float](repeating: 0, count: image.height * width * c)
        image.pixels.withUnsafeBufferPointer { src in
            for y in 0..<image.height {
                for (x, taps) in horizontal.enumerated() {
                    for ch in 0..<c {
                        var sum: Float = 0
                        for (i, w) in taps { sum += w * Float(src[(y * image.width + i) * c + ch]) }
                        rows[(y * width + x) * c + ch] = sum
                    }
                }
            }
        }
        for (y, taps) in vertical.enumerated() {
            for x in 0..<width {
                for ch in 0..<c {
                    var sum: Float = 0
                    for (j, w) in taps { sum += w * rows[(j * width + x) * c + ch] }
                    out[ch * width * height + y * width + x] = UInt8(max(0, min(255, sum.rounded())))
                }
            }
        }
    }

    /// Copies an image of exactly width x height into CHW planes.
    public static func planar(_ image: DecodedImage, into out: UnsafeMutablePointer<UInt8>) {
        let n = image.width * image.height, c = image.channels
        image.pixels.withUnsafeBufferPointer { src in
            for ch in 0..<c { for i in 0..<n { out[ch * n + i] = src[i * c + ch] } }
        }
    }

    /// For output samples first..<first+count of a `source` -> `target` resampling: source taps and
    /// weights (summing to 1). Down: area average over the output pixel's footprint; up: linear.
    static func weights(source: Int, target: Int, first: Int, count: Int) -> [[(Int, Float)]] {
        let ratio = Double(source) / Double(target)
        return (first..<(first + count)).map { o in
            if ratio > 1 {
                let a = Double(o) * ratio, b = Double(o + 1) * ratio
                var taps: [(Int, Float)] = []
                var i = Int(a.rounded(.down))
                while Double(i) < b && i < source {
                    let cover = min(b, Double(i + 1)) - max(a, Double(i))
                    if cover > 1e-9 { taps.append((i, Float(cover / ratio))) }
                    i += 1
                }
                return taps
            }
            let centre = (Double(o) + 0.5) * ratio - 0.5
            let i0 = Int(centre.rounded(.down))
            let f = centre - Double(i0)
            let lo = max(0, min(source - 1, i0)), hi = max(0, min(source - 1, i0 + 1))
            return lo == hi ? [(lo, Float(1))] : [(lo, Float(1 - f)), (hi, Float(f))]
        }
    }

    // MARK: - Encoding (tests and tools)

    /// PNG bytes of HWC `pixels` (1 grey or 3 RGB channels).
    public static func encodePNG(_ image: DecodedImage) throws -> [UInt8] {
        var png = zeroedPNGImage()
        png.version = UInt32(PNG_IMAGE_VERSION)
        png.width = UInt32(image.width)
        png.height = UInt32(image.height)
        png.format = image.channels == 1 ? 0 : UInt32(PNG_FORMAT_FLAG_COLOR)
        defer { png_image_free(&png) }
        var size = 0
        guard image.pixels.withUnsafeBytes({ png_image_write_to_memory(&png, nil, &size, 0, $0.baseAddress, 0, nil) }) != 0 else {
            throw DataError("PNG encoder: cannot size the image")
        }
        var out = [UInt8](repeating: 0, count: size)
        let ok = out.withUnsafeMutableBytes { o in
            image.pixels.withUnsafeBytes { png_image_write_to_memory(&png, o.baseAddress, &size, 0, $0.baseAddress, 0, nil) }
        }
        guard ok != 0 else { throw DataError("PNG encoder failed") }
        return Array(out[0..<size])
    }

    /// JPEG bytes of HWC `pixels` at `quality` (1...100), 4:4:4 (no chroma subsampling).
    public static func encodeJPEG(_ image: DecodedImage, quality: Int = 95) throws -> [UInt8] {
        guard let handle = tjInitCompress() else { throw DataError("JPEG encoder: cannot start") }
        defer { tjDestroy(handle) }
        var buffer: UnsafeMutablePointer<UInt8>? = nil
        var size: UInt = 0
        let format = image.channels == 1 ? TJPF_GRAY : TJPF_RGB
        let status = image.pixels.withUnsafeBufferPointer {
            tjCompress2(handle, $0.baseAddress, Int32(image.width), 0, Int32(image.height), format.rawValue, &buffer, &size,
                        Int32(image.channels == 1 ? TJSAMP_GRAY.rawValue : TJSAMP_444.rawValue), Int32(quality), 0)
        }
        defer { if let buffer { tjFree(buffer) } }
        guard status == 0, let buffer else { throw DataError("JPEG encoder failed") }
        return Array(UnsafeBufferPointer(start: buffer, count: Int(size)))
    }
}
