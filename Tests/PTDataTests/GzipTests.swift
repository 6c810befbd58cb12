// gzip inflation bounded by the trailers: members of any sizes in any order still inflate to their
// concatenation, and data that runs past its member's promise is an error.
import Foundation
import PTData
import XCTest

final class GzipTests: XCTestCase {
    let body = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ $0 >> 7) }

    /// Members larger than the last one (whose trailer is the first guess at the size) are measured
    /// and inflated into exactly their size; an empty last member promises nothing at all.
    func testMembersOfAnySizeInflateToTheirConcatenation() throws {
        let dir = try makeTempFolder(self)
        let raw = idxBytes(dims: [body.count], body: body)
        let cuts: [[Int]] = [[10, 90_000], [50_000, 50_001], [7], [raw.count]]
        for (i, cut) in cuts.enumerated() {
            // Cut points split the file into members; a cut at the end leaves an empty last member.
            let bounds = [0] + cut + [raw.count]
            let pieces = zip(bounds, bounds.dropFirst()).map { Array(raw[$0..<$1]) }
            let gz = pieces.flatMap { systemGzip($0) ?? gzipStored($0) }
            try write(gz, to: dir + "/m\(i).gz")
            XCTAssertEqual(try IDX.load(path: dir + "/m\(i).gz").bytes, body, "cuts \(cut)")
        }
    }

    /// A single member whose data is longer than its trailer says stops with an error naming the file.
    func testDataPastThePromiseIsAnError() throws {
        let dir = try makeTempFolder(self)
        let raw = idxBytes(dims: [body.count], body: body)
        for promise in [0, 1, raw.count - 1, raw.count + 1] {
            var gz = systemGzip(raw) ?? gzipStored(raw)
            let n = gz.count
            for k in 0..<4 { gz[n - 4 + k] = UInt8(truncatingIfNeeded: promise >> (8 * k)) }
            try write(gz, to: dir + "/p\(promise).gz")
            assertDataError([dir + "/p\(promise).gz", "gzip"]) { try IDX.load(path: dir + "/p\(promise).gz") }
        }
    }
}
