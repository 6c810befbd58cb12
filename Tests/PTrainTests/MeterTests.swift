// `ptrain bench train`'s meter and `--profile`: the FLOPs of a known model, the share of peak as
// printed against FLOPs x images/s / peak, and the profile's rows adding up to the step. Not timed:
// whatever the machine's speed, the printed figures must follow from the measured ones.
import Foundation
import PTModel
import PTRuntime
import PTrain
import XCTest

final class MeterTests: XCTestCase {
    func testResNet20ConfigFlops() throws {
        let config = try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/resnet20-cifar.yaml").path)
        let flops = try Model(input: config.input!, layers: config.layers, maxBatch: 1).trainingFlops
        // ResNet-20 with identity shortcuts: 40,551,040 multiply-adds forward (stem 442,368; per stage
        // 6 x 2,359,296, the strided first conv of stages 2 and 3 1,179,648; dense 640). This config's
        // two strided 1x1 projection shortcuts add 16x32 and 32x64 channels at 16x16 and 8x8: 131,072 each.
        let identity = 442_368 + 6 * 2_359_296 + 2 * (1_179_648 + 5 * 2_359_296) + 640
        XCTAssertEqual(identity, 40_551_040)
        XCTAssertEqual(flops.forwardMultiplyAdds, identity + 2 * 131_072)
        XCTAssertEqual(flops.perImage, 244_879_104)   // 40.81 M x 2 x 3 = 244.88 MFLOP per training image
        XCTAssertEqual(flops.layers.count, 22)        // 21 convs (19 + 2 projections) and the dense layer
    }

    /// A small batch-norm ConvNet, short windows: enough to run every pass of the meter.
    func benchOnce(threads: Int, profile: Bool) throws -> TrainBenchResult {
        var config = try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/mnist-fast.yaml").path)
        config.batchSize = 32
        config.shards = 4
        var settings = TrainBenchSettings()
        settings.warmupSeconds = 0
        settings.windows = 3
        settings.stepsPerWindow = 2
        settings.peakSeconds = 0.02
        settings.profile = profile
        return try benchTrain(config: config, pool: try WorkerPool(workers: threads), settings: settings)
    }

    func testPrintedShareFollowsFromFlopsRateAndPeak() throws {
        for threads in [1, 2] {
            let r = try benchOnce(threads: threads, profile: false)
            let config = try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/mnist-fast.yaml").path)
            let model = try Model(input: config.input!, layers: config.layers, maxBatch: 1)
            XCTAssertEqual(r.flops_per_image, Double(6 * model.trainingFlops.forwardMultiplyAdds))
            XCTAssertEqual(r.forward_macs_per_image, model.trainingFlops.forwardMultiplyAdds)
            XCTAssertEqual(r.precision, "fp32")
            XCTAssertEqual(r.peak_precision, "fp32")
            XCTAssertGreaterThan(r.peak_gflops_per_core, 0)
            XCTAssertEqual(r.step_gflops, r.flops_per_image * r.images_per_sec / 1e9, accuracy: 1e-9 * r.step_gflops)
            let expected = 100 * r.flops_per_image * r.images_per_sec / (r.peak_gflops_per_core * 1e9 * Double(threads))
            XCTAssertEqual(r.percent_of_peak, expected, accuracy: 1e-9 * expected)
            XCTAssertGreaterThan(r.images_per_sec_cpu, 0)
            let byCPU = 100 * r.flops_per_image * r.images_per_sec_cpu / (r.peak_gflops_per_core * 1e9 * Double(threads))
            XCTAssertEqual(r.percent_of_peak_cpu, byCPU, accuracy: 1e-9 * byCPU)
            // The JSON line carries the same figures, rounded.
            let json = try JSONSerialization.jsonObject(with: Data(r.json.utf8)) as! [String: Any]
            for key in ["flops_per_image", "forward_macs_per_image", "precision", "peak_precision", "peak_gflops_per_core",
                        "step_gflops", "percent_of_peak", "images_per_sec_cpu", "percent_of_peak_cpu"] {
                XCTAssertNotNil(json[key], key)
            }
            XCTAssertNil(json["profile"])
            let printedShare = try XCTUnwrap(json["percent_of_peak"] as? Double)
            let printedRate = try XCTUnwrap(json["images_per_sec"] as? Double)
            let printedPeak = try XCTUnwrap(json["peak_gflops_per_core"] as? Double)
            XCTAssertEqual(printedShare, 100 * r.flops_per_image * printedRate / (printedPeak * 1e9 * Double(threads)),
                           accuracy: 0.01 + 1e-3 * printedShare)
            // The text line prints the same share.
            XCTAssertTrue(formatMeter(r).contains(String(format: "= %.1f%% of %d x %.1f GFLOP/s", r.percent_of_peak, threads,
                                                         r.peak_gflops_per_core)), formatMeter(r))
        }
    }

    func testProfileRowsCoverTheStep() throws {
        let r = try benchOnce(threads: 2, profile: true)
        let rows = try XCTUnwrap(r.profile)
        let config = try TrainConfig.load(path: TestSupport.repositoryRoot.appendingPathComponent("configs/mnist-fast.yaml").path)
        let model = try Model(input: config.input!, layers: config.layers, maxBatch: 1)
        // Every layer has a forward and a backward row, plus the step's phases.
        for layer in model.layers {
            XCTAssertEqual(rows.filter { $0.name == layer.name }.map(\.pass).sorted(), ["backward", "forward"], layer.name)
            XCTAssertEqual(Set(rows.filter { $0.name == layer.name }.map(\.kind)), [String(describing: type(of: layer))])
        }
        for phase in ["data gathering", "loss, gradient zeroing, glue", "reduction", "optimizer", "barrier wait", "between steps"] {
            XCTAssertEqual(rows.filter { $0.name == phase && $0.pass == "step" && $0.kind == "step" }.count, 1, phase)
        }
        // Costliest first, and together exactly the mean step.
        XCTAssertEqual(rows.map(\.ms), rows.map(\.ms).sorted(by: >))
        XCTAssertEqual(rows.reduce(0) { $0 + $1.percent_of_step }, 100, accuracy: 1e-6)
        // Only layers have CPU times, only conv and dense passes GFLOP/s; the convolutions took some time.
        for row in rows {
            let layer = model.layers.first { $0.name == row.name }
            XCTAssertEqual(row.cpu_ms != nil, layer != nil, row.name)
            XCTAssertEqual(row.gflops != nil, (layer?.multiplyAddsPerSample ?? 0) > 0 && (row.cpu_ms ?? 0) > 0, row.name)
        }
        // A layer's CPU time fits in its wall time (both clocks read around the same call; 1 µs slack per step for the reads).
        for row in rows where row.cpu_ms != nil {
            XCTAssertLessThanOrEqual(row.cpu_ms!, row.ms + 0.001 * 8, row.name)
        }
        let convForward = rows.filter { $0.pass == "forward" && $0.kind == "Conv2D" }
        XCTAssertFalse(convForward.isEmpty)
        XCTAssertTrue(convForward.allSatisfy { $0.ms > 0 })
        // The JSON line carries the rows.
        let json = try JSONSerialization.jsonObject(with: Data(r.json.utf8)) as! [String: Any]
        XCTAssertEqual((json["profile"] as? [Any])?.count, rows.count)
        XCTAssertTrue(formatProfile(rows).contains("between steps"))
    }
}
