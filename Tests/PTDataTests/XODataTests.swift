// X/O generator tests: the slide's 9x9 X, determinism per seed, value range, balance, shapes inside the canvas.
import PTData
import PTTensor
import XCTest

final class XODataTests: XCTestCase {
    func testSlideXMatchesTheSlides() {
        XCTAssertEqual(XOData.slideX.count, 81)
        for r in 0..<9 {
            for c in 0..<9 {
                let onStroke = (1...7).contains(r) && (c == r || c == 8 - r)
                XCTAssertEqual(XOData.slideX[r * 9 + c], onStroke ? 1 : -1, "row \(r) col \(c)")
            }
        }
    }

    func testDeterministicPerSeedAndDifferentAcrossSeeds() {
        let a = XOData.make(count: 50, size: 16, seed: 7)
        let b = XOData.make(count: 50, size: 16, seed: 7)
        let c = XOData.make(count: 50, size: 16, seed: 8)
        XCTAssertEqual(a.images.array, b.images.array)
        XCTAssertEqual(a.labels, b.labels)
        XCTAssertNotEqual(a.images.array, c.images.array)
        let split = XOData.makeSplit(trainCount: 20, testCount: 20, size: 16, seed: 7)
        XCTAssertNotEqual(split.train.images.array, split.test.images.array)
    }

    func testRangeBalanceAndCanvas() {
        for size in [8, 12, 16, 20, 28] {
            for count in [1, 2, 101] {
                let data = XOData.make(count: count, size: size, seed: UInt64(size * 1000 + count))
                XCTAssertEqual(data.shape, Shape(channels: 1, height: size, width: size))
                XCTAssertEqual(data.classes, 2)
                let xs = data.labels.filter { $0 == XOData.classX }.count
                XCTAssertEqual(xs, (count + 1) / 2, "size \(size) count \(count)")
                XCTAssertEqual(data.count - xs, count / 2)
                for i in 0..<count {
                    let p = data.sample(i)
                    var ink = 0
                    for j in 0..<(size * size) {
                        XCTAssertTrue(p[j] >= -1 && p[j] <= 1, "pixel \(p[j]) out of range")
                        if p[j] > 0 { ink += 1 }
                    }
                    // Every shape leaves ink, yet mostly background.
                    XCTAssertGreaterThan(ink, size, "size \(size) sample \(i)")
                    XCTAssertLessThan(ink, size * size / 2, "size \(size) sample \(i)")
                    // The shape stays inside: border pixels are at most half covered.
                    for k in 0..<size {
                        for (r, c) in [(0, k), (size - 1, k), (k, 0), (k, size - 1)] {
                            XCTAssertLessThanOrEqual(p[r * size + c], 1e-5, "size \(size) sample \(i) border (\(r), \(c))")
                        }
                    }
                }
            }
        }
    }

    /// A crude shape check: an O leaves its centre empty, an X inks it (centre = ink centroid).
    func testXHasInkedCentreAndOHasHole() {
        for size in [12, 16, 28] {
            let data = XOData.make(count: 200, size: size, seed: 3)
            var correct = 0
            for i in 0..<data.count {
                let p = data.sample(i)
                var sx = 0.0, sy = 0.0, w = 0.0
                for r in 0..<size { for c in 0..<size where p[r * size + c] > 0 {
                    let v = Double(p[r * size + c] + 1); sx += v * Double(c); sy += v * Double(r); w += v
                } }
                let cx = Int((sx / w).rounded()), cy = Int((sy / w).rounded())
                var centre: Float = 0
                for r in max(0, cy - 1)...min(size - 1, cy + 1) {
                    for c in max(0, cx - 1)...min(size - 1, cx + 1) { centre += p[r * size + c] }
                }
                let looksX = centre > -5
                if looksX == (data.labels[i] == XOData.classX) { correct += 1 }
            }
            XCTAssertGreaterThanOrEqual(correct, 195, "size \(size): centre test separated only \(correct) of 200")
            if size == 12 {
                print("X/O samples, seed 3 (size 12):")
                for i in 0..<4 {
                    print("label \(data.labels[i])")
                    let p = data.sample(i)
                    for r in 0..<size {
                        print(String((0..<size).map { p[r * size + $0] > 0.5 ? "#" : p[r * size + $0] > -0.5 ? "+" : "." }))
                    }
                }
            }
        }
    }

    func testGather() {
        let data = XOData.make(count: 10, size: 12, seed: 1)
        let indices: [Int32] = [9, 0, 4, 4]
        var images = [Float](repeating: 0, count: 4 * 144)
        var labels = [Int32](repeating: -1, count: 4)
        indices.withUnsafeBufferPointer { idx in
            images.withUnsafeMutableBufferPointer { img in
                labels.withUnsafeMutableBufferPointer { lbl in
                    data.gather(indices: idx.baseAddress!, count: 4, images: img.baseAddress!, labels: lbl.baseAddress!)
                }
            }
        }
        for (b, index) in indices.enumerated() {
            XCTAssertEqual(labels[b], data.labels[Int(index)])
            XCTAssertEqual(Array(images[(b * 144)..<((b + 1) * 144)]), Array(UnsafeBufferPointer(start: data.sample(Int(index)), count: 144)))
        }
        let order = epochPermutation(count: 10, seed: 5, epoch: 0)
        images.withUnsafeMutableBufferPointer { img in
            labels.withUnsafeMutableBufferPointer { lbl in
                data.gather(order: order, start: 6, count: 4, images: img.baseAddress!, labels: lbl.baseAddress!)
            }
        }
        XCTAssertEqual(labels, order[6..<10].map { data.labels[Int($0)] })
    }
}
