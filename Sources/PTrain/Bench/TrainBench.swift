// `ptrain bench train` and `ptrain bench scaling`: whole training steps on synthetic data of a
// config's input shape; warm-up, then the median of several timed windows.
import Foundation
import PTData
import PTDistributed
import PTFiles
import PTKernels
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
    /// The step's meter (`TrainingFlops`): conv and dense multiply-adds per image, forward; FLOPs per
    /// training image (2 per multiply-add, x 3: forward, backward-data, backward-weights; BN, ReLU,
    /// pooling and adds not counted); the precision the step ran in; one core's peak it is held
    /// against (`peak_precision`: the precision of that peak, fp32 when the level has none for
    /// `precision`), and the whole step's GFLOP/s and share of threads x processes such cores.
    public var forward_macs_per_image: Int = 0
    public var flops_per_image: Double = 0
    public var precision = "fp32"
    public var peak_precision = "fp32"
    public var peak_gflops_per_core: Double = 0
    public var step_gflops: Double = 0
    public var percent_of_peak: Double = 0
    /// The same share by CPU time: images per second of this process's CPU time (all its threads,
    /// spinning at barriers included) times its threads, so time the scheduler gave to other
    /// processes does not count, as in `bench kernels` and its peak. Equal to the above on an idle machine.
    public var images_per_sec_cpu: Double = 0
    public var percent_of_peak_cpu: Double = 0
    /// `--profile`: time per layer and pass and per phase of the step, costliest first (nil without it).
    public var profile: [ProfileRow]?

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
        r.peak_gflops_per_core = round(peak_gflops_per_core, 2); r.step_gflops = round(step_gflops, 2)
        r.percent_of_peak = round(percent_of_peak, 2)
        r.images_per_sec_cpu = round(images_per_sec_cpu, 1); r.percent_of_peak_cpu = round(percent_of_peak_cpu, 2)
        r.profile = profile?.map { row in
            var row = row
            row.ms = round(row.ms, 4); row.percent_of_step = round(row.percent_of_step, 2)
            row.cpu_ms = row.cpu_ms.map { round($0, 4) }; row.percent_of_step_cpu = row.percent_of_step_cpu.map { round($0, 2) }
            row.gflops = row.gflops.map { round($0, 2) }; row.percent_of_peak = row.percent_of_peak.map { round($0, 2) }
            return row
        }
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

/// One row of `ptrain bench train --profile`: a layer's forward or backward pass, or a phase of the
/// step (`pass` "step": data gathering, loss and glue, reduction, optimizer, barrier wait, exchange,
/// between steps). Times are per step, means over the workers: wall time (`ms`, and its share of the
/// mean step) and, for layers, the worker threads' CPU time (`cpu_ms`, and its share of the step's
/// CPU time per thread), which time given to other processes does not inflate. Conv and dense passes
/// also give their GFLOP/s per core by CPU time and its share of the peak (backward:
/// backward-data + backward-weights, or only backward-weights where the layer reads the model input).
public struct ProfileRow: Codable, Sendable, Equatable {
    public var name: String
    /// The layer's type (`Conv2D`, `BatchNorm`, …), or "step" for the phases.
    public var kind: String
    public var pass: String
    public var ms: Double
    public var percent_of_step: Double
    public var cpu_ms: Double?
    public var percent_of_step_cpu: Double?
    public var gflops: Double?
    public var percent_of_peak: Double?
}

/// Settings of a training benchmark.
public struct TrainBenchSettings: Sendable {
    public var warmupSeconds: Double = 2
    public var windows: Int = 7
    /// Steps per timed window; nil: as many as fit in `windowSeconds`.
    public var stepsPerWindow: Int?
    public var windowSeconds: Double = 1
    /// Time every layer's forward and backward (`ProfileRow`s in the result).
    public var profile = false
    /// Seconds of the single-core peak measurement (0: none; the share of peak is then 0).
    public var peakSeconds: Double = 0.3
    public init() {}
}

/// Measures training steps of `config` (its batch size and shards) on `pool`.
/// Under MPI every rank runs the same steps on its block of shards; the result is rank 0's view
/// (steps are synchronised by the gradient exchange, so all ranks see the same step time).
/// The step's conv and dense layers run at `config.precision`, and its share of the peak is taken
/// against that precision's peak (the fp32 peak, said so, where the level has none).
public func benchTrain(config: TrainConfig, pool: WorkerPool, settings: TrainBenchSettings,
                       communicator: Communicator = LocalCommunicator()) throws -> TrainBenchResult {
    guard let input = config.input else {
        throw ConfigError("model.input: a benchmark needs the config's input shape (channels, height, width)")
    }
    var config = config
    config.epochs = 1
    let precision = config.precision
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
    // One core's peak, on this (pinned) thread, between warm-up and timing.
    let peak = settings.peakSeconds > 0
        ? peakGFLOPS(precision: precision, seconds: settings.peakSeconds).map { ($0.gflops, precision) }
            ?? peakGFLOPS(precision: .fp32, seconds: settings.peakSeconds).map { ($0.gflops, Precision.fp32) }
        : nil
    let profiles = settings.profile ? trainer.profileLayers(true) : []
    defer { if settings.profile { _ = trainer.profileLayers(false) } }
    trainer.resetPhaseTimes()
    var rates: [Double] = []
    var total: UInt64 = 0
    let cpuStart = processCPUSeconds()
    for _ in 0..<settings.windows {
        let ns = trainer.timedSteps(steps)
        total += ns
        rates.append(Double(steps * config.batchSize) / (Double(ns) / 1e9))
    }
    let cpuSeconds = processCPUSeconds() - cpuStart
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
    let flops = trainer.model.trainingFlops
    result.forward_macs_per_image = flops.forwardMultiplyAdds
    result.flops_per_image = Double(flops.perImage)
    result.precision = precision.rawValue
    result.step_gflops = result.flops_per_image * median / 1e9
    // This process's images over its CPU time per thread, times the processes: the global rate had
    // every thread had its core to itself.
    let images = Double(steps * settings.windows * config.batchSize)
    result.images_per_sec_cpu = cpuSeconds > 0 ? images / (cpuSeconds / Double(pool.workerCount)) : 0
    if let (gflops, peakPrecision) = peak {
        let cores = pool.workerCount * communicator.size
        result.peak_precision = peakPrecision.rawValue
        result.peak_gflops_per_core = gflops
        result.percent_of_peak = 100 * shareOfPeak(flopsPerImage: result.flops_per_image, imagesPerSecond: median,
                                                   peakGFLOPSPerCore: gflops, cores: cores)
        result.percent_of_peak_cpu = 100 * shareOfPeak(flopsPerImage: result.flops_per_image, imagesPerSecond: result.images_per_sec_cpu,
                                                       peakGFLOPSPerCore: gflops, cores: cores)
    }
    if settings.profile {
        result.profile = profileRows(model: trainer.model, profiles: profiles,
                                     images: Double(config.batchSize) / Double(communicator.size), steps: totalSteps, stepNanoseconds: Double(total) / totalSteps,
                                     stepCPUNanoseconds: cpuSeconds * 1e9 / Double(pool.workerCount) / totalSteps,
                                     deferred: trainer.deferredGradientLayers, phases: phases, peakGFLOPS: peak?.0)
    }
    if let exchange = trainer.exchangeFigures() {
        result.bytes_per_rank = exchange.bytesPerStep
        result.exchange_ms = Double(exchange.exchangeNanoseconds) / totalSteps / 1e6
        result.exposed_ms = Double(exchange.exposedNanoseconds) / totalSteps / 1e6
        result.buckets = exchange.buckets
        result.overlap_forward = exchange.overlapsForward
    }
    return result
}

extension Trainer {
    /// Switches per-layer timing on (a fresh `LayerProfile` in every worker's workspace, returned in
    /// worker order) or off (none; returns []). Between steps only. A profiled step allocates nothing
    /// either (`allocation-gate --profile`).
    public func profileLayers(_ on: Bool) -> [LayerProfile] {
        let layers = model.layers.count
        for ws in job.workspaces { ws.profile = on ? LayerProfile(layers: layers) : nil }
        return job.workspaces.compactMap(\.profile)
    }
}

/// The `--profile` rows, costliest first (by wall time): each layer's forward and backward and the
/// step's other phases, per step (means over the `profiles.count` workers), as shares of the mean
/// step `stepNanoseconds` (layers also by CPU time, of the process's CPU time per thread and step
/// `stepCPUNanoseconds`). "between steps" is what the phases leave of the step (the main thread's
/// work between two steps, waking the workers). GFLOP/s of a conv or dense pass, per core: its
/// multiply-adds x 2 over this process's `images` per step, over the workers' summed CPU time in it. The layers in
/// `deferred` compute their weight gradient in the reduction (`DefersGradient`): their backward counts backward-data
/// only.
func profileRows(model: Model, profiles: [LayerProfile], images: Double, steps: Double, stepNanoseconds: Double,
                 stepCPUNanoseconds: Double, deferred: [Int] = [],
                 phases: (compute: Double, data: Double, wait: Double, reduce: Double, optimizer: Double, communicate: Double),
                 peakGFLOPS: Double?) -> [ProfileRow] {
    let workers = Double(max(1, profiles.count))
    func ms(_ ns: Double) -> Double { ns / steps / 1e6 }
    func row(_ name: String, _ pass: String, _ ms: Double, kind: String = "step", cpuMs: Double? = nil,
             macs: Int = 0, products: Int = 0) -> ProfileRow {
        var gflops: Double?, percent: Double?
        if macs > 0, let cpuMs, cpuMs > 0 {
            gflops = 2 * Double(macs * products) * images / workers / (cpuMs / 1e3) / 1e9
            percent = peakGFLOPS.map { 100 * gflops! / $0 }
        }
        return ProfileRow(name: name, kind: kind, pass: pass, ms: ms, percent_of_step: 100 * ms / (stepNanoseconds / 1e6),
                          cpu_ms: cpuMs, percent_of_step_cpu: cpuMs.map { 100 * $0 / (stepCPUNanoseconds / 1e6) },
                          gflops: gflops, percent_of_peak: percent)
    }
    func mean(_ value: (LayerProfile) -> UInt64) -> Double { Double(profiles.reduce(0) { $0 &+ value($1) }) / workers }
    var rows: [ProfileRow] = []
    var layerTotal = 0.0
    for (i, layer) in model.layers.enumerated() {
        let forward = mean { $0.forwardNanoseconds(i) }, backward = mean { $0.backwardNanoseconds(i) }
        layerTotal += forward + backward
        let macs = layer.multiplyAddsPerSample
        // Backward: backward-weights unless the reduction computes it, and backward-data unless the layer reads the
        // model input.
        let backwardProducts = (deferred.contains(i) ? 0 : 1) + (model.inputs[i][0] == 0 ? 0 : 1)
        let kind = String(describing: type(of: layer))
        rows.append(row(layer.name, "forward", ms(forward), kind: kind, cpuMs: ms(mean { $0.forwardCPUNanoseconds(i) }),
                        macs: macs, products: 1))
        rows.append(row(layer.name, "backward", ms(backward), kind: kind, cpuMs: ms(mean { $0.backwardCPUNanoseconds(i) }),
                        macs: macs, products: backwardProducts))
    }
    rows.append(row("data gathering", "step", ms(phases.data)))
    rows.append(row("loss, gradient zeroing, glue", "step", ms(phases.compute - phases.data - layerTotal)))
    rows.append(row("reduction", "step", ms(phases.reduce)))
    rows.append(row("optimizer", "step", ms(phases.optimizer)))
    rows.append(row("barrier wait", "step", ms(phases.wait)))
    if phases.communicate > 0 { rows.append(row("exchange (mpi)", "step", ms(phases.communicate))) }
    let accounted = phases.compute + phases.wait + phases.reduce + phases.optimizer + phases.communicate
    rows.append(row("between steps", "step", ms(stepNanoseconds * steps - accounted)))
    return rows.sorted { $0.ms > $1.ms }
}

/// The `--profile` table for people, then the layers' time grouped by type and pass.
public func formatProfile(_ rows: [ProfileRow]) -> String {
    let width = max(5, rows.map(\.name.count).max() ?? 0)
    func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count), withPad: " ", startingAt: 0) }
    func left(_ s: String, _ n: Int) -> String { String(repeating: " ", count: max(0, n - s.count)) + s }
    func number(_ x: Double?, _ format: String) -> String { x.map { String(format: format, $0) } ?? "" }
    var lines = [pad("layer", width) + "  " + pad("pass", 8) + "  " + left("ms/step", 9) + "  " + left("% step", 7) + "  "
                 + left("cum. %", 7) + "  " + left("CPU ms", 9) + "  " + left("% CPU", 6) + "  " + left("GFLOP/s", 8) + "  "
                 + left("% peak", 7)]
    var cumulative = 0.0
    for r in rows {
        cumulative += r.percent_of_step
        lines.append(pad(r.name, width) + "  " + pad(r.pass, 8) + "  " + left(String(format: "%.3f", r.ms), 9) + "  "
                     + left(String(format: "%.1f", r.percent_of_step), 7) + "  " + left(String(format: "%.1f", cumulative), 7) + "  "
                     + left(number(r.cpu_ms, "%.3f"), 9) + "  " + left(number(r.percent_of_step_cpu, "%.1f"), 6) + "  "
                     + left(number(r.gflops, "%.1f"), 8) + "  " + left(number(r.percent_of_peak, "%.1f"), 7))
    }
    lines.append("(per step, means over workers; ms: wall time, % step: of the mean step; CPU ms: the worker thread's CPU time,")
    lines.append(" % CPU: of the step's CPU time per thread; a layer's backward includes adding its branch gradients; GFLOP/s")
    lines.append(" per core by CPU time: conv and dense multiply-adds x 2, backward counting backward-data and backward-weights;")
    lines.append(" a bf16 dense layer's weight gradient, with one process, is computed in the reduction: not counted in its backward)")
    // The same time by layer type and pass.
    var groups: [String: (ms: Double, percent: Double, cpu: Double, cpuPercent: Double, count: Int)] = [:]
    for r in rows where r.kind != "step" {
        let key = "\(r.kind) \(r.pass)"
        let g = groups[key] ?? (0, 0, 0, 0, 0)
        groups[key] = (g.ms + r.ms, g.percent + r.percent_of_step, g.cpu + (r.cpu_ms ?? 0), g.cpuPercent + (r.percent_of_step_cpu ?? 0),
                       g.count + 1)
    }
    lines.append("")
    lines.append(pad("by layer type", 24) + "  " + left("layers", 6) + "  " + left("ms/step", 9) + "  " + left("% step", 7) + "  "
                 + left("CPU ms", 9) + "  " + left("% CPU", 6))
    for (key, g) in groups.sorted(by: { $0.value.ms > $1.value.ms }) {
        lines.append(pad(key, 24) + "  " + left(String(g.count), 6) + "  " + left(String(format: "%.3f", g.ms), 9) + "  "
                     + left(String(format: "%.1f", g.percent), 7) + "  " + left(String(format: "%.3f", g.cpu), 9) + "  "
                     + left(String(format: "%.1f", g.cpuPercent), 6))
    }
    return lines.joined(separator: "\n")
}

/// The meter line: FLOPs per training image and the whole step's share of the peak.
public func formatMeter(_ r: TrainBenchResult) -> String {
    func flops(_ x: Double) -> String {
        x >= 1e9 ? String(format: "%.3f GFLOP", x / 1e9) : x >= 1e6 ? String(format: "%.2f MFLOP", x / 1e6) : String(format: "%.1f kFLOP", x / 1e3)
    }
    var line = "meter: \(flops(r.flops_per_image)) per training image (conv + dense: "
        + String(format: "%.3f", Double(r.forward_macs_per_image) / 1e6) + " M multiply-adds forward x 2 FLOPs x 3 passes; "
        + "BN, ReLU, pooling, adds not counted); step "
        + String(format: "%.1f GFLOP/s", r.step_gflops) + " in \(r.precision)"
    if r.peak_gflops_per_core > 0 {
        // The peak's instructions: the bf16 unit's (avx512bf16 or amx), else the level's FMA.
        let unit = r.peak_precision == "bf16" ? InstructionSet.bf16Unit?.rawValue : nil
        line += String(format: " = %.1f%% of %d x %.1f GFLOP/s", r.percent_of_peak, r.threads * r.processes, r.peak_gflops_per_core)
            + " (\(r.peak_precision) peak per core, \(unit ?? InstructionSet.current.name))"
        if r.peak_precision != r.precision { line += "; no \(r.precision) peak at this level, held against fp32" }
        line += String(format: "; by CPU time %.1f images/s, %.1f%%", r.images_per_sec_cpu, r.percent_of_peak_cpu)
    }
    return line
}

/// CPU seconds of the whole process (every thread), CLOCK_PROCESS_CPUTIME_ID.
func processCPUSeconds() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9
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
