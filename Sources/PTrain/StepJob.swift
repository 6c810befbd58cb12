// One data-parallel step as a job for the worker pool: shards -> per-shard gradients -> fixed-order
// reduction over slices -> optimizer step on the same slices. Allocates nothing per step.
import PTData
import PTDistributed
import PTKernels
import PTModel
import PTRuntime
import PTTensor

/// The work of one training or evaluation step. Results do not depend on the worker or process
/// count: shard s always holds the same samples, each shard's gradient is computed by one worker into
/// its own buffer, and the shard gradients are added in one fixed pairwise tree (see `pairwiseSum`).
/// With several processes, rank r computes the contiguous block of shards
/// [r*S/R, (r+1)*S/R) — a subtree of that tree when S/R is a power of two — so each rank reduces its
/// subtree in-node, the ranks exchange their partial sums, and every rank finishes the same tree.
final class StepJob: ParallelJob {
    enum Mode { case train, evaluate }

    let model: Model
    let shards: Int
    let workspaces: [Workspace]
    let parameters: UnsafeMutablePointer<Float>
    let gradients: UnsafeMutablePointer<Float>
    let velocity: UnsafeMutablePointer<Float>
    let shardGradients: [UnsafeMutablePointer<Float>]
    let parameterCount: Int
    let optimizer: Optimizer
    /// Second optimizer state buffer (Adam's v); a one-float placeholder for SGD.
    let state2: UnsafeMutablePointer<Float>
    /// Per-shard summed loss and number correct of the last step.
    let shardLoss: UnsafeMutablePointer<Double>
    let shardCorrect: UnsafeMutablePointer<Int>
    let timing: StepTiming

    // Set before each `pool.run(self)`.
    var mode: Mode = .train
    var dataset: Dataset
    /// Indices into `dataset` of this step's samples.
    var indices: UnsafePointer<Int32>
    var batch = 0
    var lr: Float = 0
    /// 0-based global step of this training step (Adam's bias correction, dropout's noise).
    var globalStep = 0
    /// Noise seed of the step: a function of (config seed, global step); shards derive theirs from it.
    var noiseBase: UInt64 = 0

    private let buffers: [AlignedBuffer]
    /// One flag per worker (64 bytes apart): its gradient slice held a NaN or infinity.
    let nonFinite: UnsafeMutablePointer<Int32>

    /// The model's running statistics (batch normalisation), and the statistics each shard of the
    /// last training step recorded ([shard][model.statsPerShard]).
    let state: UnsafeMutablePointer<Float>
    let statsPerShard: Int
    let shardStats: UnsafeMutablePointer<Float>

    let communicator: Communicator
    /// This rank's shards.
    let firstShard: Int, endShard: Int
    /// size x parameterCount: every rank's partial gradient (only with several ranks).
    let rankPartials: UnsafeMutablePointer<Float>
    let rankPartialPointers: [UnsafeMutablePointer<Float>]
    /// Shard blocks of the ranks: rank r has shards [b[r], b[r+1]).
    let rankShardBoundaries: [Int]
    /// The sharded exchange (several ranks, `distributed.exchange: reduce_scatter`), set by the trainer.
    var sharded: ShardedStep?

    init(model: Model, shards: Int, workers: Int, parameters: AlignedBuffer, optimizer: Optimizer, dataset: Dataset,
         indices: UnsafePointer<Int32>, state: AlignedBuffer, communicator: Communicator = LocalCommunicator(),
         shardedState: Bool = false) {
        self.model = model
        self.state = state.pointer
        statsPerShard = model.statsPerShard
        let stats = AlignedBuffer(count: max(1, shards * model.statsPerShard))
        shardStats = stats.pointer
        self.shards = shards
        self.communicator = communicator
        firstShard = communicator.rank * shards / communicator.size
        endShard = (communicator.rank + 1) * shards / communicator.size
        self.parameterCount = model.parameterCount
        self.optimizer = optimizer
        self.dataset = dataset
        self.indices = indices
        let grads = AlignedBuffer(count: model.parameterCount)
        // With the sharded exchange the optimizer state lives in `sharded` (this rank's pieces only).
        let vel = AlignedBuffer(count: shardedState ? 1 : model.parameterCount)
        // Gradient buffers for this rank's shards only (indexed s - firstShard).
        let shardBuffers = (firstShard..<endShard).map { _ in AlignedBuffer(count: model.parameterCount) }
        let partials = AlignedBuffer(count: communicator.size > 1 && !shardedState ? communicator.size * model.parameterCount : 1)
        let second = AlignedBuffer(count: optimizer.stateCount > 1 && !shardedState ? model.parameterCount : 1)
        buffers = [parameters, grads, vel, second, partials] + shardBuffers + [state, stats]
        state2 = second.pointer
        rankPartials = partials.pointer
        rankPartialPointers = communicator.size > 1 ? (0..<communicator.size).map { partials.pointer + $0 * model.parameterCount } : []
        rankShardBoundaries = (0...communicator.size).map { $0 * shards / communicator.size }
        self.parameters = parameters.pointer
        gradients = grads.pointer
        velocity = vel.pointer
        shardGradients = shardBuffers.map(\.pointer)
        workspaces = (0..<workers).map { _ in Workspace(model: model) }
        shardLoss = .allocate(capacity: shards)
        shardLoss.initialize(repeating: 0, count: shards)
        shardCorrect = .allocate(capacity: shards)
        shardCorrect.initialize(repeating: 0, count: shards)
        timing = StepTiming(workers: workers)
        nonFinite = .allocate(capacity: workers * 16)
        nonFinite.initialize(repeating: 0, count: workers * 16)
        self.workers = workers
    }

    let workers: Int

    /// After a training step: the name of the first layer whose reduced gradient holds a NaN or
    /// infinity, or nil when all are finite.
    func firstNonFiniteLayer() -> String? {
        if let sharded { return sharded.firstNonFiniteLayer(communicator) }
        guard (0..<workers).contains(where: { nonFinite[$0 * 16] != 0 }) else { return nil }
        for layer in model.layers {
            for t in layer.parameters {
                for i in t.offset..<(t.offset + t.count) where !gradients[i].isFinite { return "the gradient of \(t.name) (layer \(layer.name))" }
            }
        }
        return "the gradients"
    }

    deinit {
        shardLoss.deallocate()
        shardCorrect.deallocate()
        nonFinite.deallocate()
    }

    /// The optimizer's state buffers (SGD: momentum; Adam: m and v).
    var stateBuffers: [AlignedBuffer] { Array(buffers[2..<(2 + optimizer.stateCount)]) }

    /// Shard s covers samples [s*batch/S, (s+1)*batch/S) of the step: sizes differ by at most one.
    @inline(__always) func shardRange(_ s: Int) -> Range<Int> { (s * batch / shards)..<((s + 1) * batch / shards) }

    func run(worker: Int, pool: WorkerPool) {
        if mode == .train, let sharded {
            runSharded(worker: worker, pool: pool, sharded)
            return
        }
        let workers = pool.workerCount
        let t0 = monotonicNanoseconds()
        var s = firstShard + worker
        while s < endShard {
            computeShard(s, worker: worker)
            s += workers
        }
        let t1 = monotonicNanoseconds()
        timing.record(worker: worker, phase: .compute, nanoseconds: t1 - t0)
        guard mode == .train else { return }
        pool.barrier(worker: worker)
        var t2 = monotonicNanoseconds()
        timing.record(worker: worker, phase: .wait, nanoseconds: t2 - t1)
        // Each worker owns a 16-float aligned slice of the flat buffers.
        let chunk = alignedCount((parameterCount + workers - 1) / workers)
        let lo = min(parameterCount, worker * chunk)
        let hi = min(parameterCount, lo + chunk)
        let ranks = communicator.size
        // In-node: this rank's subtree of shards, into the gradient (one rank) or this rank's partial.
        let partial = ranks > 1 ? rankPartials + communicator.rank * parameterCount : gradients
        if lo < hi { pairwiseSum(shardGradients, into: partial, range: lo..<hi) }
        if ranks > 1 {
            // Across processes: exchange the partial sums, then finish the same tree over them.
            timing.record(worker: worker, phase: .reduce, nanoseconds: monotonicNanoseconds() - t2)
            pool.barrier(worker: worker)
            if worker == 0 {
                let tc = monotonicNanoseconds()
                communicator.allGather(inPlace: rankPartials, count: parameterCount)
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
            optimizer.step(lr: lr, step: globalStep, weights: parameters, gradients: gradients, state: velocity, state2: state2,
                           range: lo..<hi)
            timing.record(worker: worker, phase: .optimizer, nanoseconds: monotonicNanoseconds() - t3)
        }
    }

    func computeShard(_ s: Int, worker: Int) {
        let ws = workspaces[worker]
        let range = shardRange(s)
        let n = range.count
        let shardGrad = shardGradients[s - firstShard]
        if mode == .train { shardGrad.update(repeating: 0, count: parameterCount) }
        guard n > 0 else {
            if mode == .train { sharded?.skip(worker: worker) }
            shardLoss[s] = 0
            shardCorrect[s] = 0
            return
        }
        let t0 = monotonicNanoseconds()
        dataset.gather(indices: indices + range.lowerBound, count: n, images: ws.input, labels: ws.labels)
        timing.record(worker: worker, phase: .data, nanoseconds: monotonicNanoseconds() - t0)
        ws.training = mode == .train
        ws.state = state
        ws.shardStats = mode == .train && statsPerShard > 0 ? shardStats + s * statsPerShard : nil
        var mix = SplitMix64(seed: noiseBase ^ (UInt64(s) &* 0xD6E8_FEB8_6659_FD93))
        ws.noiseSeed = mix.next()
        ws.forward(batch: n, parameters: parameters)
        let train = mode == .train
        let result = ws.loss(batch: n, gradScale: 1 / Float(batch), computeGradient: train)
        shardLoss[s] = result.loss
        shardCorrect[s] = result.correct
        if train {
            if let sharded {
                sharded.backward(ws, batch: n, gradients: shardGrad, worker: worker)
            } else {
                ws.backward(batch: n, parameters: parameters, gradients: shardGrad)
            }
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
                for k in range { a[k] += b[k] }
                i += 2 * stride
            }
            stride *= 2
        }
        let first = buffers[0]
        for k in range { destination[k] = first[k] }
    }

    /// After a training step: folds every shard's recorded statistics, in shard order, into the
    /// running statistics (collecting other ranks' shards first). Main thread, between steps.
    func updateRunningStatistics() {
        guard statsPerShard > 0 else { return }
        if communicator.size > 1 {
            communicator.allGather(inPlace: shardStats, count: shards / communicator.size * statsPerShard)
        }
        for (i, layer) in model.layers.enumerated() {
            guard let bn = layer as? BatchNorm else { continue }
            let offset = model.statsOffsets[i]
            bn.updateRunningStatistics(state, shards: shards, stats: { UnsafePointer(self.shardStats + $0 * self.statsPerShard + offset) },
                                       samples: { self.shardRange($0).count })
        }
    }

    /// The step's summed loss and number correct, added in shard order (after collecting every
    /// rank's shards).
    func totals() -> (loss: Double, correct: Int) {
        if communicator.size > 1 {
            communicator.allGather(inPlace: shardLoss, boundaries: rankShardBoundaries)
            communicator.allGather(inPlace: shardCorrect, boundaries: rankShardBoundaries)
        }
        var loss = 0.0
        var correct = 0
        for s in 0..<shards { loss += shardLoss[s]; correct += shardCorrect[s] }
        return (loss, correct)
    }
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
