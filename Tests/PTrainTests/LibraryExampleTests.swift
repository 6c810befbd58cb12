// The README's library example, compiled and run: a training run interrupted after a few steps
// and run again continues from its checkpoint and ends with the weights of an uninterrupted run.
import Foundation
import XCTest
import PTrain

// README example: begin
/// Trains the config at `path` into the run folder `folder`. Called again after an interruption,
/// it continues from the newest checkpoint and ends with the same weights as an uninterrupted run.
/// `stop` is asked after every step; a non-zero value (say, a signal number that a handler stored)
/// stops the run after writing a checkpoint.
func trainResumably(config path: String, folder: String, stop: @escaping () -> Int32 = { 0 }) throws -> [EpochRecord] {
    let config = try TrainConfig.load(path: path)
    var options = TrainingSession.Options(runFolder: folder)
    options.checkpointEvery = .epoch
    options.resume = Checkpoint.newest(in: folder)          // nil the first time
    options.stopRequested = stop
    let pool = try makeWorkerPool(threads: nil, maximum: config.shards, warn: { print("warning:", $0) })
    let session = try TrainingSession(config: config, pool: pool, options: options)
    session.onEpoch = { print("epoch \($0.epoch): test accuracy \($0.testAccuracy)") }
    switch try session.run() {
    case .finished(let records):
        return records                                      // final weights: FOLDER/model.safetensors
    case .stopped(let signal, let checkpoint, _):
        throw TrainingError(message: "stopped by signal \(signal); run again to continue from \(checkpoint)")
    }
}
// README example: end

final class LibraryExampleTests: XCTestCase {
    /// The README's Swift block is the code between the markers above (the `import` line aside).
    func testReadmeShowsThisExample() throws {
        let readme = try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let blocks = readme.components(separatedBy: "```swift\n").dropFirst().map { $0.components(separatedBy: "\n```")[0] }
        let block = try XCTUnwrap(blocks.first { $0.contains("func trainResumably") }, "README has no Swift block with trainResumably")
        let source = try String(contentsOfFile: #filePath, encoding: .utf8)
        let begin = try XCTUnwrap(source.range(of: "// README example: begin\n")), end = try XCTUnwrap(source.range(of: "// README example: end"))
        let example = String(source[begin.upperBound..<end.lowerBound])
        func lines(_ text: String) -> [String] {
            text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
                .filter { !$0.hasPrefix("import ") && !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        }
        XCTAssertEqual(lines(block), lines(example))
    }

    func testInterruptedRunContinuesToTheWeightsOfAnUninterruptedOne() throws {
        let dir = TestSupport.temporaryDirectory()
        let config = try TestSupport.smallXOConfig(dir, train: 400, test: 100, epochs: 3, batchSize: 40)
        let interrupted = dir.appendingPathComponent("interrupted").path, reference = dir.appendingPathComponent("reference").path
        var steps: Int32 = 0
        XCTAssertThrowsError(try trainResumably(config: config, folder: interrupted, stop: { steps += 1; return steps == 13 ? 15 : 0 })) {
            XCTAssertTrue("\($0)".contains("stopped by signal 15"), "\($0)")
        }
        XCTAssertNotNil(Checkpoint.newest(in: interrupted))
        XCTAssertFalse(FileManager.default.fileExists(atPath: interrupted + "/model.safetensors"))
        let resumed = try trainResumably(config: config, folder: interrupted)
        let uninterrupted = try trainResumably(config: config, folder: reference)
        XCTAssertEqual(resumed.count, 3)
        XCTAssertEqual(resumed.map(\.testLoss), uninterrupted.map(\.testLoss))
        XCTAssertEqual(resumed.map(\.trainLoss), uninterrupted.map(\.trainLoss))
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: interrupted + "/model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: reference + "/model.safetensors")))
        // The resumed epoch's wall time includes the time before the checkpoint, and is never negative.
        XCTAssertTrue(resumed.allSatisfy { $0.seconds > 0 }, "\(resumed.map(\.seconds))")
    }
}
