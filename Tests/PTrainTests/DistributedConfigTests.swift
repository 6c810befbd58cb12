// The `distributed` section of a config: defaults, round-trip, one-line errors naming the key.
import XCTest
import PTDistributed
import PTrain

final class DistributedConfigTests: XCTestCase {
    func testDistributedSettingsParseRoundTripAndFailWithTheKey() throws {
        let base = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        XCTAssertEqual(base.exchange, .reduceScatter)
        XCTAssertEqual(base.bucketKB, 1024)
        XCTAssertTrue(base.overlapForward)
        XCTAssertEqual(base.segmentKB * 256, ShardedExchange.defaultSegmentFloats)
        XCTAssertEqual(base.sendsInFlight, ShardedExchange.defaultSendsInFlight)
        let text = defaultConfigYAML
            + "distributed:\n  exchange: allgather\n  bucket_kb: 0\n  overlap_forward: false\n  segment_kb: 512\n  sends_in_flight: 4\n"
        let config = try TrainConfig.parse(yaml: text, file: "x.yaml")
        XCTAssertEqual(config.exchange, .allGather)
        XCTAssertEqual(config.bucketKB, 0)
        XCTAssertFalse(config.overlapForward)
        XCTAssertEqual(config.segmentKB, 512)
        XCTAssertEqual(config.sendsInFlight, 4)
        XCTAssertEqual(try TrainConfig.parse(yaml: config.yaml, file: "resolved"), config)
        for (bad, key) in [("exchange: ring", "exchange"), ("bucket_kb: -1", "distributed.bucket_kb"), ("buckets: 3", "buckets"),
                           ("overlap_forward: maybe", "overlap_forward"), ("segment_kb: 0", "distributed.segment_kb"),
                           ("segment_kb: 2000000", "distributed.segment_kb"), ("sends_in_flight: 0", "distributed.sends_in_flight"),
                           ("sends_in_flight: many", "sends_in_flight")] {
            XCTAssertThrowsError(try TrainConfig.parse(yaml: defaultConfigYAML + "distributed:\n  \(bad)\n", file: "x.yaml")) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("x.yaml") && message.contains(key), message)
                XCTAssertFalse(message.contains("\n"), message)
            }
        }
    }
}
