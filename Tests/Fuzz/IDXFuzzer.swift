// libFuzzer harness for the IDX reader (raw and gzip) and the MNIST image/label pair loader.
// Not part of Package.swift: build and run it as docs/FUZZING.md describes (Tests/Fuzz/build.sh).
import Foundation
import PTData

let scratch = NSTemporaryDirectory() + "ptrain-idx-fuzz-\(getpid())"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    FileManager.default.createFile(atPath: scratch, contents: Data(bytes))
    do {
        let (dims, body) = try IDX.load(path: scratch)
        precondition(body.count == dims.reduce(1, *), "IDX body does not match its dimensions")
    } catch let error as DataError {
        precondition(!error.message.isEmpty && !error.message.contains("\n"), "bad message: \(error.message)")
    } catch {
        preconditionFailure("unexpected error \(error)")
    }
    // The same bytes as an image file with a fixed label file: count and label checks.
    if size > 4, bytes[3] == 3 {
        let labels = scratch + ".labels"
        FileManager.default.createFile(atPath: labels, contents: Data([0, 0, 8, 1, 0, 0, 0, 2, 1, 9]))
        do { _ = try MNISTFolder.loadPair(images: scratch, labels: labels) } catch let error as DataError {
            precondition(!error.message.isEmpty && !error.message.contains("\n"), "bad message: \(error.message)")
        } catch { preconditionFailure("unexpected error \(error)") }
    }
    return 0
}
