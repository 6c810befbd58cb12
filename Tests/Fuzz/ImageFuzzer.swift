// libFuzzer harness for image decoding (`ImageCodec.decode`: PNG through libpng's simplified API,
// JPEG through TurboJPEG) to grey and to RGB, then the resize-and-crop an image folder with
// `resize: true` applies. Not part of Package.swift: build and run it as docs/FUZZING.md describes
// (Tests/Fuzz/build.sh). `PTRAIN_FUZZ_SEEDS=DIR image-fuzzer -runs=0` writes a small seed corpus
// (PNG and JPEG, grey and RGB) to DIR.
import Foundation
import PTData

let name = "fuzz/input.img"

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>>>) -> CInt {
    if let dir = ProcessInfo.processInfo.environment["PTRAIN_FUZZ_SEEDS"] { writeSeeds(dir) }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    for channels in [1, 3] {
        do {
            let image = try ImageCodec.decode(bytes, channels: channels, name: name)
            precondition(image.width > 0 && image.height > 0 && image.width <= ImageCodec.maxSide && image.height <= ImageCodec.maxSide,
                         "accepted a \(image.width) x \(image.height) image")
            precondition(image.channels == channels && image.pixels.count == image.width * image.height * channels,
                         "\(image.pixels.count) bytes for \(image.width) x \(image.height) x \(channels)")
            // What `resize: true` does with it: shrink (area average) and grow (bilinear), centre cut.
            if image.width * image.height <= 1 << 20 {
                for (w, h) in [(7, 5), (2 * image.width + 1, 3)] {
                    var out = [UInt8](repeating: 0, count: w * h * channels)
                    out.withUnsafeMutableBufferPointer { ImageCodec.resizeAndCrop(image, width: w, height: h, into: $0.baseAddress!) }
                }
            }
        } catch let error as DataError {
            precondition(!error.message.isEmpty && !error.message.contains("\n"), "bad message: \(error.message)")
            precondition(error.message.hasPrefix(name), "message does not name the file: \(error.message)")
        } catch {
            preconditionFailure("unexpected error \(error)")
        }
    }
    return 0
}

/// Small PNG and JPEG files, grey and RGB, of a few sizes.
func writeSeeds(_ dir: String) {
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    for (w, h) in [(1, 1), (5, 3), (16, 9)] {
        for channels in [1, 3] {
            let pixels = (0..<(w * h * channels)).map { UInt8(truncatingIfNeeded: $0 &* 53 &+ 7) }
            let image = DecodedImage(width: w, height: h, channels: channels, pixels: pixels)
            let stem = dir + "/\(w)x\(h)x\(channels)"
            do {
                try Data(ImageCodec.encodePNG(image)).write(to: URL(fileURLWithPath: stem + ".png"))
                try Data(ImageCodec.encodeJPEG(image, quality: 80)).write(to: URL(fileURLWithPath: stem + ".jpg"))
            } catch { print("seed \(stem): \(error)") }
        }
    }
}
