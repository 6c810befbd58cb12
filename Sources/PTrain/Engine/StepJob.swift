// One data-parallel step as a job for the worker pool: shards -> per-shard gradients -> fixed-order
// reduction over slices -> optimizer step on the same slices. Allocates nothing per step.
import PTData
import PTDistributed
import PTKernels
import PTModel
import PTRuntime
import PTTensor

/// What one call of the step job does: everything that changes from one step to the next, as one
/// value. `StepJob.run(_:on:)` publishes it before waking the workers; the workers only read it.
struct Step {
    enum Mode { case train, evaluate }
    let mode: Mode
    let dataset: Dataset
    /// Indices into `dataset` of this step's samples (`batch` of them).
    let indices: UnsafePointer<Int32>
    let batch: Int
    /// Learning rate (training).
    let lr: Float
    /// 0-based global step of this training step (Adam's bias correction).
    let globalStep: Int
    /// 0-based epoch of this training step (the augmentation's key, with the seed and sample index).
    let epoch: Int
    /// Noise seed of the step: a function of (config seed, global step); shards derive theirs from it.
    let noiseBase: UInt64
    /// Evaluation: where each sample's logits go (batch x classes, in sample order), or nil.
    let logits: UnsafeMutablePointer<Float>?

    static func evaluation(_ dataset: Dataset, indices: UnsafePointer<Int32>, batch: Int,
                           logits: UnsafeMutablePointer<Float>? = nil) -> Step {
        Step(mode: .evaluate, dataset: dataset, indices: indices, batch: batch, lr: 0, globalStep: 0, epoch: 0, noiseBase: 0,
             logits: logits)
    }
}

/// The work of one training or evaluation step. Results do not depend on the worker or process
/// count: shard s always holds the same samples, each shard's gradient is computed by one worker into
/// its own buffer, and the shard gradients are added in one fixed pairwise tree (see `pairwiseSum`).
/// With several processes, rank r computes the contiguous block of shards
/// [r*S/R, (r+1)*S/R) — a subtree of that tree when S/R is a power of two — so each rank reduces its
/// subtree in-node, the ranks exchange their partial sums, and every rank finishes the same tree.
///
/// Worker w computes the shards firstShard + w, firstShard + w + W, ...; it allocates their
/// gradient buffers, its workspace and its augmentation scratch itself, on its pinned thread, so
/// that their pages are first touched (and placed) on its NUMA node.
///
/// Training steps augment each gathered sample (`augmentation`, fixed when the job is built),
/// keyed by (`augmentSeed`, the step's epoch, the sample's index); evaluation never augments.
final class StepJob: ParallelJob {
    let model: Model
    let shards: Int
    let workers: Int
    /// workspaces[w] belongs to worker w (allocated on its thread).
    let workspaces: [Workspace]
    let parameters: UnsafeMutablePointer<Float>
    let gradients: UnsafeMutablePointer<Float>
    /// shardGradients[s - firstShard]: shard s's gradient (allocated by the worker that computes it).
    let shardGradients: [UnsafeMutablePointer<Float>]
    let parameterCount: Int
    let optimizer: Optimizer
    let optimizerState: OptimizerState
    /// Per-shard summed loss and number correct of the last step.
    let shardLoss: UnsafeMutablePointer<Double>
    let shardCorrect: UnsafeMutablePointer<Int>
    let timing: StepTiming

    /// The step being run; set only by `run(_:on:)`.
    private var step: Step

    private let buffers: [AlignedBuffer]
    /// Training-time augmentation (nil: none) and its seed.
    let augmentation: Augmentation?
    let augmentSeed: UInt64
    /// augmentScratch[w]: worker w's scratch sample for `augmentation` (allocated on its thread;
    /// empty without augmentation).
    let augmentScratch: [UnsafeMutablePointer<Float>]
    /// One flag per worker (64 bytes apart): its gradient slice held a NaN or infinity.
    let nonFinite: UnsafeMutablePointer<Int32>

    /// The model's running statistics (batch normalisation), and the statistics each shard of the
    /// last training step recorded ([shard][model.statsPerShard]).
    let state: UnsafeMutablePointer<Float>
    let statsPerShard: Int
    let shardStats: UnsafeMutablePointer<Float>

    let collectives: Collectives
    let rank: Int, ranks: Int
    /// This rank's shards.
    let firstShard: Int, endShard: Int
    /// ranks x parameterCount: every rank's partial gradient (only with several ranks).
    let rankPartials: UnsafeMutablePointer<Float>
    let rankPartialPointers: [UnsafeMutablePointer<Float>]
    /// Shard blocks of the ranks: rank r has shards [b[r], b[r+1]).
    let rankShardBoundaries: [Int]
    /// The sharded exchange (several ranks, `distributed.exchange: reduce_scatter`; set once by the
    /// trainer, before the first step). `optimizerState` then holds only this rank's pieces.
    var sharded: ShardedStep?

    /// `parameters` and `optimizerState` may be unwritten (uninitialised allocations): each
    /// worker copies its slice of `initialParameters` into `parameters` and zeroes its slice of the
    /// optimizer state, so those pages are first touched by the worker that updates them.
    /// `augmentation` applies to training samples (none when it is the identity).
    /// `allGatherPartials: false` (the sharded exchange follows) leaves out the buffer of every
    /// rank's partial gradient.
    init(model: Model, shards: Int, pool: WorkerPool, parameters: AlignedBuffer, initialParameters: AlignedBuffer,
         optimizerState: OptimizerState, dataset: Dataset, indices: UnsafePointer<Int32>, state: AlignedBuffer,
         collectives: Collectives, allGatherPartials: Bool = true, augmentation: Augmentation = Augmentation(),
         augmentSeed: UInt64 = 0, precision: Precision = .fp32) {
        let workers = pool.workerCount
        self.model = model
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
        optimizer = optimizerState.optimizer
        self.optimizerState = optimizerState
        self.augmentation = augmentation.isIdentity ? nil : augmentation
        self.augmentSeed = augmentSeed
        step = .evaluation(dataset, indices: indices, batch: 0)
        let grads = AlignedBuffer(uninitializedCount: model.parameterCount)
        let partials = AlignedBuffer(count: ranks > 1 && allGatherPartials ? ranks * model.parameterCount : 1)
        // Workspaces and shard gradient buffers, each allocated (and zeroed) by the worker that uses
        // it; each worker's slice of the parameters, gradients and optimizer state written by it.
        let local = PerWorkerAllocation(model: model, workers: workers, shards: endShard - firstShard,
                                        slices: [(grads.pointer, nil), (parameters.pointer, initialParameters.pointer)],
                                        optimizerState: optimizerState, augmentScratch: !augmentation.isIdentity,
                                        precision: precision)
        pool.run(local)
        let shardBuffers = local.shardBuffers()
        workspaces = local.workspaceList()
        let scratch = local.scratchList()
        augmentScratch = scratch.map(\.pointer)
        buffers = [parameters, grads, partials] + shardBuffers + [state, stats] + scratch
        rankPartials = partials.pointer
        let rankCount = ranks, parameterCount = model.parameterCount
        rankPartialPointers = rankCount > 1 ? (0..<rankCount).map { partials.pointer + $0 * parameterCount } : []
        rankShardBoundaries = (0...rankCount).map { $0 * shards / rankCount }
        self.parameters = parameters.pointer
        gradients = grads.pointer
        shardGradients = shardBuffers.map(\.pointer)
        shardLoss = .allocate(capacity: shards)
        shardLoss.initialize(repeating: 0, count: shards)
        shardCorrect = .allocate(capacity: shards)
        shardCorrect.initialize(repeating: 0, count: shards)
        timing = StepTiming(workers: workers)
        nonFinite = .allocate(capacity: workers * 16)
        nonFinite.initialize(repeating: 0, count: workers * 16)
    }

    deinit {
        shardLoss.deallocate()
        shardCorrect.deallocate()
        nonFinite.deallocate()
    }

    /// Runs `step` on every worker of `pool` (the pool this job was built for) and returns when all
    /// are done. The only way a step reaches the workers.
    func run(_ step: Step, on pool: WorkerPool) {
        self.step = step
        // The sharded exchange: a training step may begin while the previous one's exchange runs
        // (its forward waits per bucket); an evaluation reads every weight, so it drains first.
        if step.mode == .train { sharded?.beginStep(step) } else { sharded?.drain() }
        pool.run(self)
    }

    /// After a training step without the sharded exchange (see `Trainer.step` for it): the name of
    /// the first layer whose reduced gradient holds a NaN or infinity, or nil when all are finite.
    func firstNonFiniteLayer() -> String? {
        guard (0..<workers).contains(where: { nonFinite[$0 * 16] != 0 }) else { return nil }
        for layer in model.layers {
            for t in layer.parameters {
                for i in t.offset..<(t.offset + t.count) where !gradients[i].isFinite { return "the gradient of \(t.name) (layer \(layer.name))" }
            }
        }
        return "the gradients"
    }

    /// Shard s covers samples [s*batch/S, (s+1)*batch/S) of the step: sizes differ by at most one.
    @inline(__always) static func shardRange(_ s: Int, batch: Int, shards: Int) -> Range<Int> {
        (s * batch / shards)..<((s + 1) * batch / shards)
    }

    func run(worker: Int, pool: WorkerPool) {
        let step = self.step
        if step.mode == .train, let sharded {
            runSharded(worker: worker, step: step, sharded)
            return
        }
        let (t0, t1) = computeOwnShards(worker: worker, step: step)
        timing.record(worker: worker, phase: .compute, nanoseconds: t1 - t0)
        guard step.mode == .train else { return }
        pool.barrier(worker: worker)
        var t2 = monotonicNanoseconds()
        timing.record(worker: worker, phase: .wait, nanoseconds: t2 - t1)
        // Each worker owns a 16-float aligned slice of the flat buffers.
        let lo = min(parameterCount, worker * sliceSize)
        let hi = min(parameterCount, lo + sliceSize)
        // In-node: this rank's subtree of shards, into the gradient (one rank) or this rank's partial.
        let partial = ranks > 1 ? rankPartials + rank * parameterCount : gradients
        if lo < hi { pairwiseSum(shardGradients, into: partial, range: lo..<hi) }
        if ranks > 1 {
            // Across processes: exchange the partial sums, then finish the same tree over them.
            timing.record(worker: worker, phase: .reduce, nanoseconds: monotonicNanoseconds() - t2)
            pool.barrier(worker: worker)
            if worker == 0 {
                let tc = monotonicNanoseconds()
                collectives.exchangeGradients(rankPartials, count: parameterCount)
                timing.record(worker: worker, phase: .communicate, nanoseconds: monotonicNanoseconds() - tc)
            }
            pool.barrier(worker: worker)
            t2 = monotonicNanoseconds()
            if lo < hi { pairwiseSum(rankPartialPointers, into: gradients, range: lo..<hi) }
        }
        nonFinite[worker * 16] = 0
        if lo < hi {
            // inf * 0 and NaN * 0 are NaN: one vectorisable pass tells whether the slice is finite.
            var probe: Float = 0
            for i in lo..<hi { probe += gradients[i] * 0 }
            if !probe.isFinite {
                nonFinite[worker * 16] = 1
                return   // leave this slice's weights untouched; the trainer stops
            }
            let t3 = monotonicNanoseconds()
            timing.record(worker: worker, phase: .reduce, nanoseconds: t3 - t2)
            optimizer.step(lr: step.lr, step: step.globalStep, weights: parameters, gradients: gradients,
                           state: optimizerState, range: lo..<hi)
            timing.record(worker: worker, phase: .optimizer, nanoseconds: monotonicNanoseconds() - t3)
        }
    }

    /// Floats of the flat buffers each worker reduces and updates (a multiple of 16).
    var sliceSize: Int { alignedCount((parameterCount + workers - 1) / workers) }

    /// Runs this worker's shards (every `workers`-th from `firstShard + worker`) one after another;
    /// returns the clock before and after.
    @inline(__always) func computeOwnShards(worker: Int, step: Step) -> (start: UInt64, end: UInt64) {
        let start = monotonicNanoseconds()
        var s = firstShard + worker
        while s < endShard {
            computeShard(s, worker: worker, step: step)
            s += workers
        }
        return (start, monotonicNanoseconds())
    }

    func computeShard(_ s: Int, worker: Int, step: Step) {
        let ws = workspaces[worker]
        let range = Self.shardRange(s, batch: step.batch, shards: shards)
        let n = range.count
        let train = step.mode == .train
        let shardGrad = shardGradients[s - firstShard]
        // (The sharded step zeroes the gradient bucket by bucket in backward.)
        if train && sharded == nil { shardGrad.update(repeating: 0, count: parameterCount) }
        guard n > 0 else {
            if train { sharded?.skip(gradients: shardGrad, worker: worker) }
            shardLoss[s] = 0
            shardCorrect[s] = 0
            return
        }
        let t0 = monotonicNanoseconds()
        step.dataset.gather(indices: step.indices + range.lowerBound, count: n, images: ws.input, labels: ws.labels)
        if train, let augmentation {
            let size = model.inputShape.count, scratch = augmentScratch[worker]
            for k in 0..<n {
                augmentation.apply(ws.input + k * size, shape: model.inputShape, seed: augmentSeed, epoch: step.epoch,
                                   index: Int(step.indices[range.lowerBound + k]), scratch: scratch)
            }
        }
        timing.record(worker: worker, phase: .data, nanoseconds: monotonicNanoseconds() - t0)
        ws.training = train
        ws.state = state
        ws.shardStats = train && statsPerShard > 0 ? shardStats + s * statsPerShard : nil
        var mix = SplitMix64(seed: step.noiseBase ^ (UInt64(s) &* 0xD6E8_FEB8_6659_FD93))
        ws.noiseSeed = mix.next()
        if train, let sharded {
            sharded.forward(ws, batch: n, worker: worker)
        } else {
            ws.forward(batch: n, parameters: parameters)
        }
        let result = ws.loss(batch: n, gradScale: 1 / Float(step.batch), computeGradient: train)
        shardLoss[s] = result.loss
        shardCorrect[s] = result.correct
        if train {
            if let sharded {
                sharded.backward(ws, batch: n, gradients: shardGrad, worker: worker)
            } else {
                ws.backward(batch: n, parameters: parameters, gradients: shardGrad)
            }
        } else if let out = step.logits {
            let classes = model.classes
            (out + range.lowerBound * classes).update(from: ws.logits, count: n * classes)
        }
    }

    /// destination[range] = the pairwise sum of `buffers[0..<n][range]`, consuming the buffers' slices:
    /// with stride 1, 2, 4, ...: buffers[i] += buffers[i + stride] for i = 0, 2*stride, 4*stride, ...
    /// That is the tree that splits n leaves at the largest power of two below n, so a block of
    /// 2^k consecutive leaves starting at a multiple of 2^k is one of its subtrees.
    private func pairwiseSum(_ buffers: [UnsafeMutablePointer<Float>], into destination: UnsafeMutablePointer<Float>,
                             range: Range<Int>) {
        let n = buffers.count
        var stride = 1
        while stride < n {
            var i = 0
            while i + stride < n {
                let a = buffers[i], b = buffers[i + stride]
                addFloats(a + range.lowerBound, b + range.lowerBound, count: range.count)
                i += 2 * stride
            }
            stride *= 2
        }
        let first = buffers[0]
        for k in range { destination[k] = first[k] }
    }

    /// After a training step of `batch` samples: folds every shard's recorded statistics, in shard
    /// order, into the running statistics (collecting other ranks' shards first). Main thread,
    /// between steps.
    func updateRunningStatistics(batch: Int) {
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
    func totals() -> (loss: Double, correct: Int) {
        collectives.gatherShardTotals(loss: shardLoss, correct: shardCorrect, boundaries: rankShardBoundaries)
        var loss = 0.0
        var correct = 0
        for s in 0..<shards { loss += shardLoss[s]; correct += shardCorrect[s] }
        return (loss, correct)
    }
}

/// The set-up job: each worker allocates its workspace, the gradient buffers of the shards it
/// computes and its augmentation scratch (AlignedBuffer zeroes what it allocates), and writes its slice of the flat
/// parameter-sized buffers (copied from a source, or zeroed), so the pages are first touched on
/// its thread.
private final class PerWorkerAllocation: ParallelJob {
    let model: Model
    let workers: Int
    let shards: Int
    let slices: [(UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?)]
    let optimizerState: OptimizerState
    let workspaceSlots: UnsafeMutablePointer<Workspace?>
    let shardSlots: UnsafeMutablePointer<AlignedBuffer?>
    let scratchSlots: UnsafeMutablePointer<AlignedBuffer?>
    let augmentScratch: Bool
    let precision: Precision

    init(model: Model, workers: Int, shards: Int, slices: [(UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>?)],
         optimizerState: OptimizerState, augmentScratch: Bool, precision: Precision) {
        self.model = model
        self.precision = precision
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
        // The same slices as the reduction and the optimizer (`StepJob.sliceSize`).
        let count = model.parameterCount
        let slice = alignedCount((count + workers - 1) / workers)
        let lo = min(count, worker * slice), hi = min(count, lo + slice)
        if lo < hi {
            for (destination, source) in slices {
                if let source {
                    (destination + lo).update(from: source + lo, count: hi - lo)
                } else {
                    (destination + lo).update(repeating: 0, count: hi - lo)
                }
            }
            // (The sharded exchange's state holds only this rank's pieces: fewer floats.)
            optimizerState.zero((lo..<hi).clamped(to: 0..<optimizerState.count))
        }
        workspaceSlots[worker] = Workspace(model: model, precision: precision)
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
