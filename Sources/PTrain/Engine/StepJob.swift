// One data-parallel training step as a job for the worker pool: shards -> per-shard gradients ->
// the gradient exchange (fixed-order reduction, the optimizer's update) -> the step's totals.
// Allocates nothing per step.
import PTData
import PTDistributed
import PTKernels
import PTModel
import PTRuntime
import PTTensor

/// What one training step does: everything that changes from one step to the next, as one value.
/// `StepJob.run(_:)` publishes it before waking the workers; the workers only read it.
struct Step {
    let dataset: Dataset
    /// Indices into `dataset` of this step's samples (`batch` of them).
    let indices: UnsafePointer<Int32>
    let batch: Int
    let lr: Float
    /// 0-based global step (Adam's bias correction).
    let globalStep: Int
    /// 0-based epoch (the augmentation's key, with the seed and sample index).
    let epoch: Int
    /// Noise seed of the step: a function of (config seed, global step); shards derive theirs from it.
    let noiseBase: UInt64
}

/// What one step (or evaluation chunk) adds up: the summed loss and the number correct over its
/// samples, every rank's shards added in shard order.
struct StepTotals {
    var loss: Double
    var correct: Int
}

/// The gradient exchange of a step job, chosen once when the trainer builds it (see
/// `GradientExchange`): one rank, the all-gather of the ranks' partial sums, or the sharded
/// exchange (its transport and layout built, and whether it may run on into the next forward).
enum ExchangeChoice {
    case inProcess
    case allGather
    case reduceScatter(ShardedExchange, overlapsForward: Bool)
}

/// The engine's one constructor of a worker's workspace, for training and evaluation alike (each
/// worker calls it on its own thread, so the pages are placed on its NUMA node).
func makeWorkspace(_ model: Model, config: TrainConfig) -> Workspace {
    Workspace(model: model, precision: config.precision)
}

/// The work of one training step. Results do not depend on the worker or process count: shard s
/// always holds the same samples, each shard's gradient is computed by one worker into its own
/// buffer, and the shard gradients are added in one fixed pairwise tree (PTKernels'
/// `pairwiseSumInPlace`). With several processes, rank r computes the contiguous block of shards
/// [r*S/R, (r+1)*S/R) — a subtree of that tree when S/R is a power of two — so each rank reduces
/// its subtree in-node, the ranks exchange their partial sums, and every rank finishes the same
/// tree. What happens after (and with the sharded exchange, during) backward is the
/// `GradientExchange`'s, chosen once when the job is built; the step itself has no branch on it.
///
/// Worker w computes the shards firstShard + w, firstShard + w + W, ...; it allocates their
/// gradient buffers, its workspace and its augmentation scratch itself, on its pinned thread, so
/// that their pages are first touched (and placed) on its NUMA node.
///
/// Training steps augment each gathered sample (`augmentation`, fixed when the job is built),
/// keyed by (`augmentSeed`, the step's epoch, the sample's index).
final class StepJob: ParallelJob {
    let model: Model
    let pool: WorkerPool
    let shards: Int
    let workers: Int
    /// workspaces[w] belongs to worker w (allocated on its thread); the evaluator uses them too.
    let workspaces: [Workspace]
    let parameters: UnsafeMutablePointer<Float>
    /// shardGradients[s - firstShard]: shard s's gradient (allocated by the worker that computes it).
    let shardGradients: [UnsafeMutablePointer<Float>]
    let parameterCount: Int
    let exchange: any GradientExchange
    /// Per-shard summed loss and number correct of the last step.
    let shardLoss: UnsafeMutablePointer<Double>
    let shardCorrect: UnsafeMutablePointer<Int>
    let timing: StepTiming

    /// The step being run; set only by `run(_:)`.
    private var step: Step?
    /// Training steps run (the exchange's generations).
    private(set) var generation = 0

    private let buffers: [AlignedBuffer]
    /// Training-time augmentation (nil: none) and its seed.
    let augmentation: Augmentation?
    let augmentSeed: UInt64
    /// augmentScratch[w]: worker w's scratch sample for `augmentation` (allocated on its thread;
    /// empty without augmentation).
    let augmentScratch: [UnsafeMutablePointer<Float>]

    /// The model's running statistics (batch normalisation), and the statistics each shard of the
    /// last training step recorded ([shard][model.statsPerShard]).
    let state: UnsafeMutablePointer<Float>
    let statsPerShard: Int
    let shardStats: UnsafeMutablePointer<Float>

    let collectives: Collectives
    let rank: Int, ranks: Int
    /// This rank's shards.
    let firstShard: Int, endShard: Int
    /// Shard blocks of the ranks: rank r has shards [b[r], b[r+1]).
    let rankShardBoundaries: [Int]
    /// One value per rank and the rank boundaries 0...R, for agreeing on non-finite gradients.
    let nonFiniteScratch: UnsafeMutablePointer<Int>
    let rankBoundaries: [Int]

    /// `parameters` may be unwritten (an uninitialised allocation): each worker copies its slice of
    /// `initialParameters` into it and zeroes its slice of the optimizer state (compact with the
    /// sharded exchange: this rank's pieces only), so those pages are first touched by the worker
    /// that updates them.
    init(model: Model, config: TrainConfig, pool: WorkerPool, parameters: AlignedBuffer, initialParameters: AlignedBuffer,
         state: AlignedBuffer, collectives: Collectives, exchange choice: ExchangeChoice) {
        let workers = pool.workerCount
        let shards = config.shards
        self.model = model
        self.pool = pool
        self.workers = workers
        self.state = state.pointer
        statsPerShard = model.statsPerShard
        let stats = AlignedBuffer(count: max(1, shards * model.statsPerShard))
        shardStats = stats.pointer
        self.shards = shards
        self.collectives = collectives
        rank = collectives.rank
        ranks = collectives.size
        firstShard = rank * shards / ranks
        endShard = (rank + 1) * shards / ranks
        parameterCount = model.parameterCount
        let augmentation = Preprocessing(config.data).augmentation(config.augment)
        self.augmentation = augmentation.isIdentity ? nil : augmentation
        augmentSeed = config.seed
        // The optimizer state the steps update (momentum, or Adam's moments): laid out like the
        // parameters, or with the sharded exchange this rank's pieces only.
        var stateCount = model.parameterCount
        if case let .reduceScatter(exchange, _) = choice { stateCount = max(1, exchange.ownedCount) }
        let optimizerState = OptimizerState(optimizer: config.makeOptimizer(), parameterCount: stateCount, zeroed: false)
        let grads = AlignedBuffer(uninitializedCount: model.parameterCount)
        // Workspaces and shard gradient buffers, each allocated (and zeroed) by the worker that uses
        // it; each worker's slice of the parameters, gradients and optimizer state written by it.
        let local = PerWorkerAllocation(model: model, config: config, workers: workers, shards: endShard - firstShard,
                                        slices: [(grads.pointer, nil), (parameters.pointer, initialParameters.pointer)],
                                        optimizerState: optimizerState, augmentScratch: !augmentation.isIdentity)
        pool.run(local)
        let shardBuffers = local.shardBuffers()
        workspaces = local.workspaceList()
        let scratch = local.scratchList()
        augmentScratch = scratch.map(\.pointer)
        buffers = [parameters, grads] + shardBuffers + [state, stats] + scratch
        rankShardBoundaries = (0...ranks).map { $0 * shards / collectives.size }
        self.parameters = parameters.pointer
        shardGradients = shardBuffers.map(\.pointer)
        shardLoss = .allocate(capacity: shards)
        shardLoss.initialize(repeating: 0, count: shards)
        shardCorrect = .allocate(capacity: shards)
        shardCorrect.initialize(repeating: 0, count: shards)
        nonFiniteScratch = .allocate(capacity: ranks)
        nonFiniteScratch.initialize(repeating: 0, count: ranks)
        rankBoundaries = Array(0...ranks)
        let timing = StepTiming(workers: workers)
        self.timing = timing
        let update = WeightUpdate(parameters: parameters.pointer, parameterCount: model.parameterCount, gradients: grads.pointer,
                                  state: optimizerState)
        switch choice {
        case .inProcess:
            exchange = InProcessExchange(update: update, shardGradients: shardGradients, workers: workers, timing: timing,
                                         workspace: workspaces[0])
        case .allGather:
            exchange = AllGatherExchange(update: update, shardGradients: shardGradients, workers: workers, timing: timing,
                                         collectives: collectives)
        case let .reduceScatter(sharded, overlapsForward):
            exchange = ReduceScatterExchange(exchange: sharded, overlapsForward: overlapsForward, update: update,
                                             shardGradients: shardGradients, workers: workers, timing: timing,
                                             collectives: collectives)
        }
    }

    deinit {
        // The sharded exchange's thread may still use the buffers: finish its last step first.
        exchange.drain()
        shardLoss.deallocate()
        shardCorrect.deallocate()
        nonFiniteScratch.deallocate()
    }

    /// One training step, the only way one reaches the workers: runs `step` on every worker of the
    /// pool, folds the shards' batch statistics into the running statistics, and returns the
    /// step's totals. The exchange may still run on into the next step (see `GradientExchange`).
    func run(_ step: Step) -> StepTotals {
        self.step = step
        generation += 1
        exchange.begin(step, generation: generation)
        pool.run(self)
        updateRunningStatistics(batch: step.batch)
        return totals()
    }

    /// Shard s covers samples [s*batch/S, (s+1)*batch/S) of the step: sizes differ by at most one.
    @inline(__always) static func shardRange(_ s: Int, batch: Int, shards: Int) -> Range<Int> {
        (s * batch / shards)..<((s + 1) * batch / shards)
    }

    /// Worker w: its shards (every `workers`-th from `firstShard + w`) one after another, then the
    /// exchange's part. Compute excludes the waits for the exchange in forward.
    func run(worker: Int, pool: WorkerPool) {
        let step = self.step!
        let waitedBefore = exchange.forwardWaitNanoseconds(worker: worker)
        let t0 = monotonicNanoseconds()
        var s = firstShard + worker
        while s < endShard {
            computeShard(s, worker: worker, step: step)
            s += workers
        }
        let t1 = monotonicNanoseconds()
        let waited = exchange.forwardWaitNanoseconds(worker: worker) - waitedBefore
        timing.record(worker: worker, phase: .compute, nanoseconds: t1 - t0 - min(waited, t1 - t0))
        exchange.finish(worker: worker, pool: pool, step: step, waited: waited)
    }

    func computeShard(_ s: Int, worker: Int, step: Step) {
        let ws = workspaces[worker]
        let range = Self.shardRange(s, batch: step.batch, shards: shards)
        let n = range.count
        let shardGrad = shardGradients[s - firstShard]
        guard n > 0 else {
            exchange.skip(shardGrad, worker: worker)
            shardLoss[s] = 0
            shardCorrect[s] = 0
            return
        }
        let t0 = monotonicNanoseconds()
        step.dataset.gather(indices: step.indices + range.lowerBound, count: n, images: ws.input, labels: ws.labels)
        if let augmentation {
            let size = model.inputShape.count, scratch = augmentScratch[worker]
            for k in 0..<n {
                augmentation.apply(ws.input + k * size, shape: model.inputShape, seed: augmentSeed, epoch: step.epoch,
                                   index: Int(step.indices[range.lowerBound + k]), scratch: scratch)
            }
        }
        timing.record(worker: worker, phase: .data, nanoseconds: monotonicNanoseconds() - t0)
        ws.training = true
        ws.state = state
        ws.shardStats = statsPerShard > 0 ? shardStats + s * statsPerShard : nil
        ws.noiseSeed = shardNoiseSeed(step.noiseBase, shard: s)
        // The weights stay the same through the step (the exchange writes the next step's after its
        // last backward, or behind the next forward's waits): layers prepare them once per step.
        ws.weightsVersion = UInt64(generation)
        exchange.forward(ws, batch: n, worker: worker)
        let result = ws.loss(batch: n, gradScale: 1 / Float(step.batch), computeGradient: true)
        shardLoss[s] = result.loss
        shardCorrect[s] = result.correct
        exchange.backward(ws, batch: n, into: shardGrad, worker: worker)
    }

    /// After a training step of `batch` samples: folds every shard's recorded statistics, in shard
    /// order, into the running statistics (collecting other ranks' shards first). Main thread,
    /// between steps.
    private func updateRunningStatistics(batch: Int) {
        guard statsPerShard > 0 else { return }
        collectives.gatherShardStatistics(shardStats, perRank: shards / ranks * statsPerShard)
        for (i, layer) in model.layers.enumerated() {
            guard let bn = layer as? BatchNorm else { continue }
            let offset = model.statsOffsets[i]
            let shards = self.shards
            bn.updateRunningStatistics(state, shards: shards, stats: { UnsafePointer(self.shardStats + $0 * self.statsPerShard + offset) },
                                       samples: { Self.shardRange($0, batch: batch, shards: shards).count })
        }
    }

    /// The step's summed loss and number correct, added in shard order (after collecting every
    /// rank's shards).
    private func totals() -> StepTotals {
        addShardTotals(loss: shardLoss, correct: shardCorrect, shards: shards, boundaries: rankShardBoundaries,
                       collectives: collectives)
    }

    /// Collective (every rank, between steps), the one agreement on non-finite gradients: once
    /// training step `generation` is settled (`exchange.settled`), the first layer (lowest
    /// parameter index over all ranks) whose reduced gradient held a NaN or infinity, or nil.
    func firstNonFiniteLayer(generation: Int) -> String? {
        let p = parameterCount
        let local = exchange.firstNonFinite(generation: generation).map { p - $0 } ?? 0
        let global = collectives.agreeOnNonFinite(local, scratch: nonFiniteScratch, boundaries: rankBoundaries)
        guard global > 0 else { return nil }
        let index = p - global
        for layer in model.layers {
            for t in layer.parameters where (t.offset..<(t.offset + t.count)).contains(index) {
                return "the gradient of \(t.name) (layer \(layer.name))"
            }
        }
        return "the gradients"
    }
}

/// Shard s's noise seed (dropout) in a step with noise seed `base`.
@inline(__always) func shardNoiseSeed(_ base: UInt64, shard s: Int) -> UInt64 {
    var mix = SplitMix64(seed: base ^ (UInt64(s) &* 0xD6E8_FEB8_6659_FD93))
    return mix.next()
}

/// The totals of a step or an evaluation chunk: per-shard loss and number correct gathered from
/// the ranks (rank r owns shards [boundaries[r], boundaries[r + 1])), then added in shard order.
func addShardTotals(loss: UnsafeMutablePointer<Double>, correct: UnsafeMutablePointer<Int>, shards: Int, boundaries: [Int],
                    collectives: Collectives) -> StepTotals {
    collectives.gatherShardTotals(loss: loss, correct: correct, boundaries: boundaries)
    var totals = StepTotals(loss: 0, correct: 0)
    for s in 0..<shards {
        totals.loss += loss[s]
        totals.correct += correct[s]
    }
    return totals
}

/// The set-up job: each worker allocates its workspace, the gradient buffers of the shards it
/// computes and its augmentation scratch (AlignedBuffer zeroes what it allocates), and writes its slice of the flat
/// parameter-sized buffers (copied from a source, or zeroed), so the pages are first touched on
/// its thread.
final class PerWorkerAllocation: ParallelJob {
    let model: Model
    let workers: Int
    let shards: Int
    let slices: [(UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?)]
    let optimizerState: OptimizerState?
    let config: TrainConfig
    let workspaceSlots: UnsafeMutablePointer<Workspace?>
    let shardSlots: UnsafeMutablePointer<AlignedBuffer?>
    let scratchSlots: UnsafeMutablePointer<AlignedBuffer?>
    let augmentScratch: Bool

    init(model: Model, config: TrainConfig, workers: Int, shards: Int,
         slices: [(UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?)] = [], optimizerState: OptimizerState? = nil,
         augmentScratch: Bool = false) {
        self.model = model
        self.config = config
        self.workers = workers
        self.shards = shards
        self.slices = slices
        self.optimizerState = optimizerState
        workspaceSlots = .allocate(capacity: workers)
        workspaceSlots.initialize(repeating: nil, count: workers)
        shardSlots = .allocate(capacity: max(1, shards))
        shardSlots.initialize(repeating: nil, count: max(1, shards))
        self.augmentScratch = augmentScratch
        scratchSlots = .allocate(capacity: workers)
        scratchSlots.initialize(repeating: nil, count: workers)
    }

    deinit {
        workspaceSlots.deinitialize(count: workers)
        workspaceSlots.deallocate()
        shardSlots.deinitialize(count: max(1, shards))
        shardSlots.deallocate()
        scratchSlots.deinitialize(count: workers)
        scratchSlots.deallocate()
    }

    func run(worker: Int, pool: WorkerPool) {
        // The same slices as the reduction and the optimizer (`Slices`).
        let slice = Slices(count: model.parameterCount, workers: workers).of(worker)
        let lo = slice.lowerBound, hi = slice.upperBound
        if lo < hi {
            for (destination, source) in slices {
                if let source {
                    (destination + lo).update(from: source + lo, count: hi - lo)
                } else {
                    (destination + lo).update(repeating: 0, count: hi - lo)
                }
            }
            // (The sharded exchange's state holds only this rank's pieces: fewer floats.)
            if let optimizerState { optimizerState.zero((lo..<hi).clamped(to: 0..<optimizerState.count)) }
        }
        workspaceSlots[worker] = makeWorkspace(model, config: config)
        if augmentScratch { scratchSlots[worker] = AlignedBuffer(count: model.inputShape.count) }
        var s = worker
        while s < shards {
            shardSlots[s] = AlignedBuffer(count: model.parameterCount)
            s += workers
        }
    }

    func workspaceList() -> [Workspace] { (0..<workers).map { workspaceSlots[$0]! } }
    func shardBuffers() -> [AlignedBuffer] { (0..<shards).map { shardSlots[$0]! } }
    func scratchList() -> [AlignedBuffer] { augmentScratch ? (0..<workers).map { scratchSlots[$0]! } : [] }
}

/// Per-worker time spent in each phase of a step, for `ptrain bench` (plain stores; each worker
/// writes only its own row).
final class StepTiming: @unchecked Sendable {
    enum Phase: Int, CaseIterable { case compute, wait, reduce, optimizer, data, communicate }
    let workers: Int
    let values: UnsafeMutablePointer<UInt64>

    init(workers: Int) {
        self.workers = workers
        values = .allocate(capacity: workers * Phase.allCases.count * 8)
        values.initialize(repeating: 0, count: workers * Phase.allCases.count * 8)
    }
    deinit { values.deallocate() }

    // Rows are padded to 64 bytes so workers do not share cache lines.
    @inline(__always) func record(worker: Int, phase: Phase, nanoseconds: UInt64) {
        values[worker * 8 * Phase.allCases.count + phase.rawValue * 8] &+= nanoseconds
    }

    func reset() { values.update(repeating: 0, count: workers * Phase.allCases.count * 8) }

    /// Mean over workers of the time in `phase`, in nanoseconds.
    func mean(_ phase: Phase) -> Double {
        var sum: UInt64 = 0
        for w in 0..<workers { sum &+= values[w * 8 * Phase.allCases.count + phase.rawValue * 8] }
        return Double(sum) / Double(workers)
    }
}

#if canImport(Glibc)
import Glibc
#endif

/// CLOCK_MONOTONIC in nanoseconds (no allocation, no Foundation).
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
