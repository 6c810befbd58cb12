// Augmentation: pure functions of (seed, epoch, sample index); crops, flips, shifts and gains move
// values exactly where they should.
import XCTest
import PTData
import PTTensor

final class AugmentTests: XCTestCase {
    func sample(_ shape: Shape) -> [Float] { (0..<shape.count).map { Float($0 % 97) + 1 } }

    func run(_ a: Augmentation, _ shape: Shape, seed: UInt64 = 1, epoch: Int = 0, index: Int = 0, input: [Float]? = nil) -> [Float] {
        var x = input ?? sample(shape)
        let scratch = AlignedBuffer(count: shape.count)
        x.withUnsafeMutableBufferPointer { a.apply($0.baseAddress!, shape: shape, seed: seed, epoch: epoch, index: index, scratch: scratch.pointer) }
        return x
    }

    func testKeyedBySeedEpochAndIndexOnly() {
        let shape = Shape(channels: 3, height: 8, width: 8)
        let a = Augmentation(crop: 2, flip: true)
        XCTAssertEqual(run(a, shape, seed: 1, epoch: 3, index: 5), run(a, shape, seed: 1, epoch: 3, index: 5))
        // Over many keys, each of seed, epoch and index changes the outcome for some of them.
        func differs(_ f: (Int) -> [Float], _ g: (Int) -> [Float]) -> Bool { (0..<20).contains { f($0) != g($0) } }
        XCTAssertTrue(differs({ self.run(a, shape, seed: 1, epoch: 0, index: $0) }, { self.run(a, shape, seed: 2, epoch: 0, index: $0) }))
        XCTAssertTrue(differs({ self.run(a, shape, seed: 1, epoch: 0, index: $0) }, { self.run(a, shape, seed: 1, epoch: 1, index: $0) }))
        XCTAssertTrue(differs({ self.run(a, shape, index: $0) }, { self.run(a, shape, index: $0 + 1) }))
        XCTAssertEqual(run(Augmentation(fill: 5), shape), sample(shape), "all settings off: the sample is unchanged")
    }

    /// A crop after padding is a shift of the whole image by (dy, dx) in [-crop, crop] with `fill`
    /// entering; every channel moves the same way; over many samples every shift appears.
    func testCropIsAShiftWithFill() {
        let shape = Shape(channels: 2, height: 6, width: 5)
        let x = sample(shape)
        var seen = Set<[Int]>()
        for index in 0..<300 {
            let y = run(Augmentation(crop: 1, fill: -7), shape, index: index, input: x)
            var match: [Int]?
            for dy in -1...1 {
                for dx in -1...1 {
                    var expected = [Float](repeating: -7, count: shape.count)
                    for c in 0..<2 { for i in 0..<6 { for j in 0..<5 where (0..<6).contains(i - dy) && (0..<5).contains(j - dx) {
                        expected[(c * 6 + i) * 5 + j] = x[(c * 6 + i - dy) * 5 + j - dx]
                    } } }
                    if expected == y { match = [dy, dx] }
                }
            }
            XCTAssertNotNil(match, "sample \(index) is not a shifted copy")
            if let match { seen.insert(match) }
        }
        XCTAssertEqual(seen.count, 9)
    }

    func testFlipMirrorsRowsAboutHalfTheTime() {
        let shape = Shape(channels: 3, height: 4, width: 7)
        let x = sample(shape)
        var flipped = 0
        for index in 0..<400 {
            let y = run(Augmentation(flip: true), shape, index: index, input: x)
            if y == x { continue }
            flipped += 1
            for r in 0..<12 { for j in 0..<7 { XCTAssertEqual(y[r * 7 + j], x[r * 7 + 6 - j]) } }
        }
        XCTAssertEqual(Double(flipped) / 400, 0.5, accuracy: 0.08)
    }

    /// Digits: translation and scaling keep the picture (a scale of exactly 1 and no shift would be
    /// the identity); values stay within the range of the input and the fill.
    func testTranslateAndScaleStayInRange() {
        let shape = Shape(channels: 1, height: 28, width: 28)
        var x = [Float](repeating: -0.5, count: shape.count)
        for i in 8..<20 { for j in 10..<18 { x[i * 28 + j] = 2 } }   // a bright block
        var changed = 0
        for index in 0..<50 {
            let y = run(Augmentation(translate: 2, scale: 0.1, fill: -0.5), shape, index: index, input: x)
            XCTAssertTrue(y.allSatisfy { $0 >= -0.5 - 1e-6 && $0 <= 2 + 1e-6 })
            // Mass of the block stays close (scale within 10%: area within about 21%).
            let mass = y.reduce(0) { $0 + Double($1 + 0.5) }, original = x.reduce(0) { $0 + Double($1 + 0.5) }
            XCTAssertEqual(mass / original, 1, accuracy: 0.25)
            if y != x { changed += 1 }
        }
        XCTAssertGreaterThan(changed, 40)
    }

    func testOneDimensionalShiftAndGain() {
        let shape = Shape(channels: 1, height: 1, width: 50)
        let x = sample(shape)
        var shifts = Set<Int>()
        for index in 0..<200 {
            let y = run(Augmentation(shift: 3), shape, index: index, input: x)
            let found = (-3...3).first { d in (0..<50).allSatisfy { j in y[j] == ((0..<50).contains(j - d) ? x[j - d] : 0) } }
            XCTAssertNotNil(found, "sample \(index) is not a shifted copy")
            if let found { shifts.insert(found) }
            let g = run(Augmentation(gain: 0.2), shape, index: index, input: x)
            let ratio = g[0] / x[0]
            XCTAssertTrue(ratio >= 0.8 && ratio <= 1.2, "gain \(ratio)")
            for j in 0..<50 { XCTAssertEqual(g[j], x[j] * ratio, accuracy: 1e-4 * abs(x[j])) }
        }
        XCTAssertEqual(shifts.count, 7)
    }
}
