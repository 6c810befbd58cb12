// The `distributed` section of a config: defaults, round-trip, one-line errors naming the key.
import XCTest
import PTrain

final class DistributedConfigTests: XCTestCase {
    func testDistributedSettingsParseRoundTripAndFailWithTheKey() throws {
        let base = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        XCTAssertEqual(base.exchange, .reduceScatter)
        XCTAssertEqual(base.bucketKB, 1024)
        XCTAssertTrue(base.overlapForward)
        let text = defaultConfigYAML + "distributed:\n  exchange: allgather\n  bucket_kb: 0\n  overlap_forward: false\n"
        let config = try TrainConfig.parse(yaml: text, file: "x.yaml")
        XCTAssertEqual(config.exchange, .allGather)
        XCTAssertEqual(config.bucketKB, 0)
        XCTAssertFalse(config.overlapForward)
        XCTAssertEqual(try TrainConfig.parse(yaml: config.yaml, file: "resolved"), config)
        for (bad, key) in [("exchange: ring", "exchange"), ("bucket_kb: -1", "distributed.bucket_kb"), ("buckets: 3", "buckets"),
                           ("overlap_forward: maybe", "overlap_forward")] {
            XCTAssertThrowsError(try TrainConfig.parse(yaml: defaultConfigYAML + "distributed:\n  \(bad)\n", file: "x.yaml")) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("x.yaml") && message.contains(key), message)
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
    }
}
