// `ptrain bench train` and `ptrain bench scaling`: whole training steps on synthetic data of a
// config's input shape; warm-up, then the median of several timed windows.
import Foundation
import PTData
import PTDistributed
import PTFiles
import PTModel
import PTRuntime
import PTTensor

/// One measured thread count.
public struct TrainBenchResult: Codable, Sendable {
    public var threads: Int
    public var batch_size: Int
    public var images_per_sec: Double
    public var images_per_sec_min: Double
    public var images_per_sec_max: Double
    public var step_ms: Double
    /// Filled by scaling runs: relative to the first (smallest) thread count measured.
    public var speedup: Double = 1
    public var efficiency: Double = 1
    /// Mean per-worker time per step in each phase, milliseconds.
    public var compute_ms: Double
    public var data_ms: Double
    public var reduce_ms: Double
    public var optimizer_ms: Double
    public var wait_ms: Double
    /// Cross-process exchange of the partial gradients (worker 0's time; 0 with one process).
    public var communicate_ms: Double = 0
    public var processes: Int = 1
    /// The sharded exchange (several processes, `distributed.exchange: reduce_scatter`): bytes this
    /// rank sent per step (counted), the whole exchange per step (first bucket started to last
    /// weights arrived) and its exposed part (the time the workers waited for it: in the next
    /// step's forward, or at the end of the step without `overlap_forward`, and in drains), the
    /// bucket count, and whether the exchange ran on into the next step's forward.
    public var bytes_per_rank: Double = 0
    public var exchange_ms: Double = 0
    public var exposed_ms: Double = 0
    public var buckets: Int = 0
    public var overlap_forward = false
    /// Trainable parameters of the model.
    public var parameters: Int = 0

    /// One JSON line (through `Codable`): rates to 0.1, times and ratios to 0.001.
    public var json: String {
        func round(_ x: Double, _ digits: Double = 3) -> Double { (x * pow(10, digits)).rounded() / pow(10, digits) }
        var r = self
        r.images_per_sec = round(images_per_sec, 1)
        r.images_per_sec_min = round(images_per_sec_min, 1)
        r.images_per_sec_max = round(images_per_sec_max, 1)
        r.step_ms = round(step_ms); r.speedup = round(speedup); r.efficiency = round(efficiency)
        r.compute_ms = round(compute_ms); r.data_ms = round(data_ms); r.reduce_ms = round(reduce_ms)
        r.optimizer_ms = round(optimizer_ms); r.wait_ms = round(wait_ms); r.communicate_ms = round(communicate_ms)
        r.bytes_per_rank = bytes_per_rank.rounded(); r.exchange_ms = round(exchange_ms); r.exposed_ms = round(exposed_ms)
        return MetricsLine.json(r)
    }
}

/// Random samples (standard normal pixels, uniform labels) of `shape`, from `seed`.
public func syntheticDataset(shape: Shape, classes: Int, count: Int, seed: UInt64) -> Dataset {
    var rng = Xoshiro256(seed: seed, stream: 0xBE7C)
    let images = AlignedBuffer(count: count * shape.count)
    for i in 0..<images.count { images[i] = Float(rng.nextNormal()) }
    let labels = (0..<count).map { _ in Int32(rng.nextInt(below: classes)) }
    return Dataset(name: "synthetic", shape: shape, classes: classes, images: images, labels: labels)
}

/// Settings of a training benchmark.
public struct TrainBenchSettings: Sendable {
    public var warmupSeconds: Double = 2
    public var windows: Int = 7
    /// Steps per timed window; nil: as many as fit in `windowSeconds`.
    public var stepsPerWindow: Int?
    public var windowSeconds: Double = 1
    public init() {}
}

/// Measures training steps of `config` (its batch size and shards) on `pool`.
/// Under MPI every rank runs the same steps on its block of shards; the result is rank 0's view
/// (steps are synchronised by the gradient exchange, so all ranks see the same step time).
public func benchTrain(config: TrainConfig, pool: WorkerPool, settings: TrainBenchSettings,
                       communicator: Communicator = LocalCommunicator()) throws -> TrainBenchResult {
    guard let input = config.input else {
        throw ConfigError("model.input: a benchmark needs the config's input shape (channels, height, width)")
    }
    var config = config
    config.epochs = 1
    let classes = try Model(input: input, layers: config.layers, maxBatch: 1).classes
    let data = syntheticDataset(shape: input, classes: classes, count: config.batchSize * 4, seed: config.seed)
    let trainer = try Trainer(config: config, train: data, test: data, pool: pool, communicator: communicator)
    // Warm-up: at least one step, then until the warm-up time has passed.
    let warmEnd = Date().addingTimeInterval(settings.warmupSeconds)
    // Ranks agree on when warm-up ends and on the window length (rank 0's clock decides).
    var warming = 1
    while warming != 0 {
        _ = trainer.timedSteps(1)
        warming = trainer.collectives.agreeOnMaximum(communicator.rank == 0 && Date() >= warmEnd ? 0 : (communicator.rank == 0 ? 1 : 0))
    }
    // Steps per window: fixed, or estimated from one timed step.
    let estimate = settings.stepsPerWindow ?? max(1, Int(settings.windowSeconds / (Double(trainer.timedSteps(1)) / 1e9)))
    let steps = trainer.collectives.agreeOnMaximum(communicator.rank == 0 ? estimate : 0)
    trainer.resetPhaseTimes()
    var rates: [Double] = []
    var total: UInt64 = 0
    for _ in 0..<settings.windows {
        let ns = trainer.timedSteps(steps)
        total += ns
        rates.append(Double(steps * config.batchSize) / (Double(ns) / 1e9))
    }
    let totalSteps = Double(steps * settings.windows)
    let phases = trainer.phaseTimes()
    let median = rates.sorted()[rates.count / 2]
    var result = TrainBenchResult(threads: pool.workerCount, batch_size: config.batchSize, images_per_sec: median,
                            images_per_sec_min: rates.min()!, images_per_sec_max: rates.max()!,
                            step_ms: Double(config.batchSize) / median * 1000,
                            compute_ms: (phases.compute - phases.data) / totalSteps / 1e6, data_ms: phases.data / totalSteps / 1e6,
                            reduce_ms: phases.reduce / totalSteps / 1e6, optimizer_ms: phases.optimizer / totalSteps / 1e6,
                            wait_ms: phases.wait / totalSteps / 1e6, communicate_ms: phases.communicate / totalSteps / 1e6,
                            processes: communicator.size)
    result.parameters = trainer.model.trainableCount
    if let exchange = trainer.exchangeFigures() {
        result.bytes_per_rank = exchange.bytesPerStep
        result.exchange_ms = Double(exchange.exchangeNanoseconds) / totalSteps / 1e6
        result.exposed_ms = Double(exchange.exposedNanoseconds) / totalSteps / 1e6
        result.buckets = exchange.buckets
        result.overlap_forward = exchange.overlapsForward
    }
    return result
}

/// Fills speedup and efficiency relative to the first result.
public func scalingTable(_ results: [TrainBenchResult]) -> [TrainBenchResult] {
    guard let base = results.first else { return [] }
    return results.map { r in
        var r = r
        r.speedup = r.images_per_sec / base.images_per_sec
        r.efficiency = r.speedup / (Double(r.threads * r.processes) / Double(base.threads * base.processes))
        return r
    }
}

/// A table for people.
public func formatTrainBench(_ results: [TrainBenchResult]) -> String {
    var lines = ["procs  threads  images/s   (min-max)          speedup  efficiency  step ms  compute  data    reduce  optimizer  wait    mpi"]
    for r in results {
        lines.append(String(format: "%5d  %7d  %9.1f  (%8.1f-%8.1f)  %7.2f  %9.1f%%  %7.3f  %7.3f  %6.3f  %6.3f  %9.3f  %6.3f  %6.3f",
                            r.processes, r.threads, r.images_per_sec, r.images_per_sec_min, r.images_per_sec_max, r.speedup,
                            r.efficiency * 100, r.step_ms, r.compute_ms, r.data_ms, r.reduce_ms, r.optimizer_ms, r.wait_ms,
                            r.communicate_ms))
    }
    lines.append("(per-step times in ms, means over workers; compute excludes data gathering; mpi: the cross-process exchange)")
    for r in results where r.buckets > 0 {
        lines.append(String(format: "exchange (%d procs x %d threads): reduce-scatter + all-gather in %d buckets, %.0f bytes sent per rank per step, %.3f ms per step, %.3f ms exposed",
                            r.processes, r.threads, r.buckets, r.bytes_per_rank, r.exchange_ms, r.exposed_ms)
                     + (r.overlap_forward ? " (workers waiting for it in the next forward)" : " (workers waiting for it after the last backward)"))
    }
    return lines.joined(separator: "\n")
}

/// CSV of a scaling run.
public func scalingCSV(_ results: [TrainBenchResult]) -> String {
    var lines = ["processes,threads,batch_size,images_per_sec,speedup,efficiency,step_ms,compute_ms,data_ms,reduce_ms,optimizer_ms,wait_ms,communicate_ms,bytes_per_rank,exchange_ms,exposed_ms"]
    for r in results {
        lines.append([String(r.processes), String(r.threads), String(r.batch_size), String(format: "%.1f", r.images_per_sec), String(format: "%.4f", r.speedup),
                      String(format: "%.4f", r.efficiency), String(format: "%.4f", r.step_ms), String(format: "%.4f", r.compute_ms),
                      String(format: "%.4f", r.data_ms), String(format: "%.4f", r.reduce_ms), String(format: "%.4f", r.optimizer_ms),
                      String(format: "%.4f", r.wait_ms), String(format: "%.4f", r.communicate_ms), String(format: "%.0f", r.bytes_per_rank),
                      String(format: "%.4f", r.exchange_ms), String(format: "%.4f", r.exposed_ms)].joined(separator: ","))
    }
    return lines.joined(separator: "\n") + "\n"
}

/// Writes the scaling CSV and an SVG of speedup against threads (with the ideal line) into `folder`.
public func writeScalingFiles(_ results: [TrainBenchResult], folder: String, title: String) throws -> (csv: String, svg: String) {
    try makeDirectory(folder)
    let csv = folder + "/scaling.csv", svg = folder + "/scaling.svg"
    try AtomicFile.write(scalingCSV(results), to: csv)
    let base = Double(results.first?.threads ?? 1)
    let threads = results.map { Double($0.threads) }
    let plot = LinePlot(title: title, xLabel: "threads", yLabel: "speedup",
                        series: [.init(name: "ideal", points: threads.map { ($0, $0 / base) }, dashed: true),
                                 .init(name: "measured", points: results.map { (Double($0.threads), $0.speedup) }, dashed: false)])
    try AtomicFile.write(plot.svg(), to: svg)
    return (csv, svg)
}
