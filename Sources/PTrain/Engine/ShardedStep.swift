// The seam between the step job and the sharded exchange (PTDistributed): with several ranks and
// `distributed.exchange: reduce_scatter`, each local shard's backward runs bucket by bucket, the
// worker that completes a bucket adds the local shards' gradients of it (the in-node subtree of
// the fixed tree), and the exchange thread reduce-scatters it, runs the optimizer on this rank's
// pieces (whose state lives only here) and all-gathers the weights while backward goes on. With
// `distributed.overlap_forward` (the default) the all-gather also goes on into the next step:
// its forward runs bucket by bucket, from the first layers, each bucket waiting only for its own
// weights; whatever else reads the weights or the optimizer state between steps drains first.
import PTDistributed
#if canImport(Glibc)
import Glibc
#endif
import PTModel
import PTRuntime
import PTTensor

final class ShardedStep {
    unowned let job: StepJob
    let layout: ExchangeLayout
    let exchange: ShardedExchange
    private(set) var overlapped: OverlappedExchange!
    let localShards: Int
    /// Per worker: localShards pointers for the in-node tree.
    let leaves: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    /// The optimizer state of this rank's pieces only: the job's `optimizerState`, compact
    /// (`exchange.ownedCount` floats per buffer, bucket b's piece at `exchange.ownedOffsets[b]`).
    var state: OptimizerState { job.optimizerState }
    /// Full-size optimizer state for checkpoints: filled by `gatherState` (saving) or by a
    /// checkpoint (`fullStateForLoading`), handed back to the owners and freed by `scatterState`.
    private(set) var fullState: OptimizerState?
    /// Whether `fullState` holds every rank's pieces (gathered since the last step).
    private(set) var gathered = false
    /// Per generation parity (step g's exchange uses slot g & 1): the lowest index of a non-finite
    /// gradient in this rank's pieces (Int.max: none), the learning rate and the 0-based global
    /// step. Two slots, because step g+1's are set while step g's exchange may still run.
    let nonFiniteIndex: UnsafeMutablePointer<Int>
    let stepLR: UnsafeMutablePointer<Float>
    let stepIndex: UnsafeMutablePointer<Int>
    /// One value per rank and the rank boundaries 0...R, for agreeing on non-finite gradients.
    let nonFiniteScratch: UnsafeMutablePointer<Int>
    let rankBoundaries: [Int]
    /// Training steps run (for bytes per step).
    private(set) var steps = 0
    /// Let a step's exchange run on into the next step's forward.
    let overlapsForward: Bool

    /// The layout of `model`'s parameters over `ranks` ranks, in buckets of about `bucketKB` KiB
    /// (0: one bucket) that follow layer boundaries in backward order.
    static func layout(of model: Model, ranks: Int, bucketKB: Int) -> ExchangeLayout {
        // Where each layer's parameters start (a layer without parameters: where the next starts).
        var starts = [Int](repeating: model.parameterCount, count: model.layers.count + 1)
        for i in stride(from: model.layers.count - 1, through: 0, by: -1) {
            starts[i] = model.layers[i].parameters.map(\.offset).min() ?? starts[i + 1]
        }
        let bucketFloats = bucketKB == 0 ? max(1, model.parameterCount) : max(1, bucketKB * 256)
        return ExchangeLayout(layerStarts: starts, ranks: ranks, bucketFloats: bucketFloats)
    }

    /// `job` was built with the compact optimizer state of `exchange`'s pieces.
    init(job: StepJob, exchange: ShardedExchange, overlapsForward: Bool) {
        precondition(job.optimizerState.count >= exchange.ownedCount)
        self.job = job
        layout = exchange.layout
        self.exchange = exchange
        localShards = job.endShard - job.firstShard
        leaves = .allocate(capacity: max(1, job.workers * localShards))
        leaves.initialize(repeating: job.parameters, count: max(1, job.workers * localShards))
        nonFiniteScratch = .allocate(capacity: exchange.ranks)
        nonFiniteScratch.initialize(repeating: 0, count: exchange.ranks)
        rankBoundaries = Array(0...exchange.ranks)
        nonFiniteIndex = .allocate(capacity: 2)
        nonFiniteIndex.initialize(repeating: .max, count: 2)
        stepLR = .allocate(capacity: 2)
        stepLR.initialize(repeating: 0, count: 2)
        stepIndex = .allocate(capacity: 2)
        stepIndex.initialize(repeating: 0, count: 2)
        self.overlapsForward = overlapsForward
    }

    /// Starts the exchange thread (after init: its update closure holds this object).
    func start() {
        overlapped = OverlappedExchange(exchange: exchange, localShards: localShards, workers: job.workers,
                                        partial: job.shardGradients[0], gradients: job.gradients, weights: job.parameters,
                                        overlapsForward: overlapsForward) { [unowned self] b in self.update(b) }
    }

    /// The owner's update of its piece of bucket b (on the exchange thread).
    func update(_ b: Int) {
        let piece = exchange.owned[b]
        guard !piece.isEmpty else { return }
        let slot = Int(overlapped.runningGeneration & 1)
        let g = job.gradients
        var probe: Float = 0
        for i in piece { probe += g[i] * 0 }
        if !probe.isFinite {
            // Leave this piece's weights untouched; the ranks agree on stopping after the step.
            for i in piece where !g[i].isFinite { nonFiniteIndex[slot] = min(nonFiniteIndex[slot], i); break }
            return
        }
        job.optimizer.step(lr: stepLR[slot], step: stepIndex[slot], weights: job.parameters, gradients: g, state: state,
                           range: piece, stateOffset: exchange.ownedOffsets[b])
    }

    deinit {
        overlapped.shutdown()
        leaves.deallocate()
        nonFiniteScratch.deallocate()
        nonFiniteIndex.deallocate()
        stepLR.deallocate()
        stepIndex.deallocate()
    }

    /// The generation of the last training step begun (its exchange's).
    var generation: UInt32 { overlapped.generation }

    /// Main thread, before the workers start training step `step` (`StepJob.run(_:on:)`). The
    /// previous step's exchange may still run (it uses the other slot).
    func beginStep(_ step: Step) {
        let slot = Int((overlapped.generation &+ 1) & 1)
        stepLR[slot] = step.lr
        stepIndex[slot] = step.globalStep
        nonFiniteIndex[slot] = .max
        gathered = false
        steps += 1
        overlapped.beginStep()
    }

    /// Main thread, between steps: returns when the last step's exchange is complete (weights,
    /// optimizer state and gradient buffers final).
    func drain() { overlapped.drain() }

    /// Forward of one local shard of a training step, bucket by bucket from the first layers: each
    /// bucket's layers wait for that bucket's weights from the previous step's exchange.
    @inline(__always)
    func forward(_ ws: Workspace, batch: Int, worker: Int) {
        for b in stride(from: layout.bucketCount - 1, through: 0, by: -1) {
            overlapped.awaitWeights(b, worker: worker)
            ws.forward(batch: batch, parameters: job.parameters, layers: layout.firstLayer[b]..<layout.endLayer[b])
        }
    }

    /// Backward of one local shard, bucket by bucket; each bucket's slice of the shard's gradient
    /// is zeroed just before (not at the start of the step: shard buffer 0 is this rank's partial,
    /// which the previous step's exchange reads until its forward has all the weights).
    @inline(__always)
    func backward(_ ws: Workspace, batch: Int, gradients: UnsafeMutablePointer<Float>, worker: Int) {
        for b in 0..<layout.bucketCount {
            let range = layout.buckets[b]
            (gradients + range.lowerBound).update(repeating: 0, count: range.count)
            ws.backward(batch: batch, parameters: job.parameters, gradients: gradients, layers: layout.firstLayer[b]..<layout.endLayer[b])
            finished(b, worker: worker)
        }
    }

    /// An empty shard (no samples): waits, as a forward would, for the previous step's exchange,
    /// zeroes the shard's gradient and counts as finished for every bucket.
    func skip(gradients: UnsafeMutablePointer<Float>, worker: Int) {
        for b in 0..<layout.bucketCount { overlapped.awaitWeights(b, worker: worker) }
        gradients.update(repeating: 0, count: job.parameterCount)
        for b in 0..<layout.bucketCount { finished(b, worker: worker) }
    }

    @inline(__always) func finished(_ b: Int, worker: Int) {
        if overlapped.shardFinished(bucket: b) { reduceChunks(b, worker: worker) }
    }

    /// Adds the local shards' gradients (the rank's subtree of the fixed tree) into shard buffer 0,
    /// this rank's partial, for the unclaimed chunks of ready bucket b.
    func reduceChunks(_ b: Int, worker: Int) {
        while let range = overlapped.claimChunk(b) {
            if localShards > 1, !range.isEmpty {
                let mine = leaves + worker * localShards
                for i in 0..<localShards { mine[i] = job.shardGradients[i] + range.lowerBound }
                pairwiseSumInPlace(mine, n: localShards, count: range.count)
            }
            overlapped.chunkReduced(b)
        }
    }

    /// A worker whose shards are done helps with the in-node sums of the buckets, in backward order,
    /// each as soon as the other workers' last shards have passed it.
    func help(worker: Int) {
        for b in 0..<layout.bucketCount {
            var spins = 0
            while !overlapped.bucketReady(b) {
                spins += 1
                if spins > 256 { usleep(20) }
            }
            reduceChunks(b, worker: worker)
        }
    }

    /// On every rank, once the exchange of the step of `generation` is complete (the next step's
    /// forward has waited for all of it, or a drain) and before the step after next begins: the
    /// first layer (lowest parameter index over all ranks) whose reduced gradient held a NaN or
    /// infinity, or nil.
    func firstNonFiniteLayer(generation: UInt32) -> String? {
        let p = job.parameterCount
        let lowest = nonFiniteIndex[Int(generation & 1)]
        let local = lowest == .max ? 0 : p - lowest
        let global = job.collectives.agreeOnNonFinite(local, scratch: nonFiniteScratch, boundaries: rankBoundaries)
        guard global > 0 else { return nil }
        let index = p - global
        for layer in job.model.layers {
            for t in layer.parameters where (t.offset..<(t.offset + t.count)).contains(index) {
                return "the gradient of \(t.name) (layer \(layer.name))"
            }
        }
        return "the gradients"
    }

    /// Bytes this rank sends per step (both phases), counted by the exchange (read after `drain()`).
    var bytesPerStep: Double { steps == 0 ? 0 : Double(exchange.floatsSent) * 4 / Double(steps) }

    /// Nanoseconds the workers waited for the exchange since the last reset: the waits in forward
    /// (a mean over the workers that compute shards) and the drains (end of step without
    /// `overlapsForward`, between steps), during which every worker waits.
    var exposedNanoseconds: UInt64 {
        let computing = max(1, min(job.workers, localShards))
        var forward: UInt64 = 0
        for w in 0..<job.workers { forward &+= overlapped.forwardWaitNanoseconds(worker: w) }
        return forward / UInt64(computing) + overlapped.drainNanoseconds
    }

    /// Collective (every rank, between steps): the full optimizer state, gathered from the owners.
    func gatherState() {
        drain()
        let full = fullStateForLoading()
        job.collectives.gatherOptimizerState(exchange, compact: state, into: full)
        gathered = true
    }

    /// The full-size state a checkpoint loads into (then `scatterState` keeps this rank's pieces).
    func fullStateForLoading() -> OptimizerState {
        if let fullState { return fullState }
        let full = OptimizerState(optimizer: state.optimizer, parameterCount: job.parameterCount)
        fullState = full
        return full
    }

    /// Keeps this rank's pieces of the full state (loaded from a checkpoint, or gathered), and frees it.
    func scatterState() {
        guard let full = fullState else { return }
        for ((_, compact), (_, whole)) in zip(state.buffers, full.buffers) {
            exchange.copyOwned(full: whole.pointer, compact: compact.pointer, toFull: false)
        }
        fullState = nil
        gathered = false
    }
}

extension StepJob {
    /// A training step with the sharded exchange: the shards (each one's forward waits per bucket
    /// for the previous step's weights, each one's backward hands its buckets to the exchange), the
    /// in-node sums; without `overlapsForward` worker 0 then waits for the exchange. No reduction or
    /// optimizer pass here. Compute excludes the waits; worker 0 records its waits as communicate.
    func runSharded(worker: Int, step: Step, _ sharded: ShardedStep) {
        let overlapped = sharded.overlapped!
        let waited = overlapped.forwardWaitNanoseconds(worker: worker)
        let (t0, t1) = computeOwnShards(worker: worker, step: step)
        let waits = overlapped.forwardWaitNanoseconds(worker: worker) - waited
        timing.record(worker: worker, phase: .compute, nanoseconds: t1 - t0 - min(waits, t1 - t0))
        sharded.help(worker: worker)
        if worker == 0 {
            var communicate = waits
            if !sharded.overlapsForward {
                let t2 = monotonicNanoseconds()
                overlapped.drain()
                communicate += monotonicNanoseconds() - t2
            }
            timing.record(worker: worker, phase: .communicate, nanoseconds: communicate)
        }
    }
}
