// Results independent of the thread count: the same config and seed give bit-identical weights and
// identical metrics (timings aside) with 1, 2, 3 and 4 workers.
import XCTest
import PTData
import PTModel
import PTRuntime
import PTTensor
import PTrain

final class DeterminismTests: XCTestCase {
    func train(workers: Int, config: TrainConfig, data: (train: Dataset, test: Dataset)) throws -> (weights: [Float], records: [EpochRecord]) {
        let pool = try WorkerPool(workers: workers)
        let trainer = try Trainer(config: config, train: data.train, test: data.test, pool: pool)
        while !trainer.isFinished { _ = try trainer.step() }
        return (trainer.parameters.array + trainer.state.array, trainer.progress.records)   // weights and running statistics
    }

    func testSameBitsForOneToFourWorkers() throws {
        var config = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        config.data.trainCount = 600
        config.data.testCount = 100
        config.epochs = 2
        config.batchSize = 50      // 7 shards of 7 or 8 samples, and a last batch of 50 again
        config.shards = 7
        let data = try loadData(config)
        let reference = try train(workers: 1, config: config, data: data)
        XCTAssertGreaterThan(reference.records.last!.testAccuracy, 0.9, "the model should learn")
        for workers in 2...4 {
            let other = try train(workers: workers, config: config, data: data)
            XCTAssertEqual(other.weights, reference.weights, "weights differ with \(workers) workers")
            for (a, b) in zip(other.records, reference.records) {
                XCTAssertEqual(a.trainLoss, b.trainLoss, "train loss differs with \(workers) workers")
                XCTAssertEqual(a.testLoss, b.testLoss)
                XCTAssertEqual(a.testAccuracy, b.testAccuracy)
            }
        }
    }

    /// Dropout noise, batch-norm statistics and Adam's state are keyed by (seed, step, shard), not by worker.
    func testDropoutBatchNormAndAdamWAreThreadCountIndependent() throws {
        var config = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        config.data.trainCount = 300
        config.data.testCount = 50
        config.epochs = 1
        config.batchSize = 30
        config.shards = 5
        config.optimizer = .adamw
        config.learningRate = 0.002
        config.weightDecay = 0.01
        config.layers.insert(.dropout(rate: 0.25), at: config.layers.count - 1)
        config.layers.insert(.batchNorm(momentum: 0.1, epsilon: 1e-5), at: 1)   // after conv1
        let data = try loadData(config)
        let reference = try train(workers: 1, config: config, data: data)
        for workers in [2, 3] {
            XCTAssertEqual(try train(workers: workers, config: config, data: data).weights, reference.weights,
                           "weights differ with \(workers) workers")
        }
    }

    /// Spreading a data set's pages over the workers (multi-NUMA machines) copies it exactly.
    func testSpreadingDataOverWorkersKeepsEverySample() throws {
        var config = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        config.data.trainCount = 123   // 123 x 256 floats: not a whole number of 4 KiB pages
        let data = try loadData(config).train
        let spread = spreadOverWorkers(data, pool: try WorkerPool(workers: 3), force: true)
        XCTAssertFalse(spread.store === data.store)
        XCTAssertEqual(spread.converted().array, data.converted().array)
        XCTAssertEqual(spread.labels, data.labels)

        // Byte samples are copied as bytes (not widened to floats), with the same conversion.
        let bytes = (0..<(5 * 1000)).map { UInt8(truncatingIfNeeded: $0 &* 37) }
        let shape = Shape(channels: 1, height: 25, width: 40)
        let byteSet = try Dataset(name: "bytes", shape: shape, classes: 2,
                                  store: SampleStore(bytes: bytes, elementType: .uint8, count: 5, sampleElements: shape.count),
                                  conversion: SampleConversion(divisor: 255, mean: [0.5], std: [0.25]), labels: [0, 1, 0, 1, 1])
        let spreadBytes = spreadOverWorkers(byteSet, pool: try WorkerPool(workers: 3), force: true)
        XCTAssertFalse(spreadBytes.store === byteSet.store)
        XCTAssertEqual(spreadBytes.store.elementType, .uint8)
        XCTAssertEqual((0..<5).flatMap { spreadBytes.store.storedBytes($0) }, bytes)
        XCTAssertEqual(spreadBytes.conversion, byteSet.conversion)
        XCTAssertEqual(spreadBytes.converted().array, byteSet.converted().array)
    }
}
