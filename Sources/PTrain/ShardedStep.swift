// The seam between the step job and the sharded exchange (PTDistributed): with several ranks and
// `distributed.exchange: reduce_scatter`, each local shard's backward runs bucket by bucket, the
// worker that completes a bucket adds the local shards' gradients of it (the in-node subtree of
// the fixed tree), and the exchange thread reduce-scatters it, runs the optimizer on this rank's
// pieces (whose state lives only here) and all-gathers the weights while backward goes on.
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
    /// The optimizer state of this rank's pieces only (compact, `exchange.ownedCount` floats each).
    let state: [AlignedBuffer]
    /// Full-size optimizer state for checkpoints: filled by `gatherState`, read back by `scatterState`.
    private(set) var fullState: [AlignedBuffer]?
    /// Lowest index of a non-finite gradient in this rank's pieces during the last step (Int.max: none).
    var nonFiniteIndex = Int.max
    /// Floats this rank sent, counted by the exchange, and steps run (for bytes per step).
    private(set) var steps = 0

    init(job: StepJob, transport: PointToPoint, bucketFloats: Int) {
        self.job = job
        let model = job.model
        // Where each layer's parameters start (a layer without parameters: where the next starts).
        var starts = [Int](repeating: model.parameterCount, count: model.layers.count + 1)
        for i in stride(from: model.layers.count - 1, through: 0, by: -1) {
            starts[i] = model.layers[i].parameters.map(\.offset).min() ?? starts[i + 1]
        }
        layout = ExchangeLayout(layerStarts: starts, ranks: transport.size, bucketFloats: bucketFloats)
        exchange = ShardedExchange(layout: layout, transport: transport)
        localShards = job.endShard - job.firstShard
        leaves = .allocate(capacity: max(1, job.workers * localShards))
        leaves.initialize(repeating: job.parameters, count: max(1, job.workers * localShards))
        let owned = exchange.ownedCount
        state = (0..<job.optimizer.stateCount).map { _ in AlignedBuffer(count: max(1, owned)) }
    }

    /// Starts the exchange thread (after init: its update closure holds this object).
    func start() {
        overlapped = OverlappedExchange(exchange: exchange, localShards: localShards, partial: job.shardGradients[0],
                                        gradients: job.gradients, weights: job.parameters) { [unowned self] b in self.update(b) }
    }

    /// The owner's update of its piece of bucket b (on the exchange thread).
    func update(_ b: Int) {
        let piece = exchange.owned[b]
        guard !piece.isEmpty else { return }
        let g = job.gradients
        var probe: Float = 0
        for i in piece { probe += g[i] * 0 }
        if !probe.isFinite {
            // Leave this piece's weights untouched; the ranks agree on stopping after the step.
            for i in piece where !g[i].isFinite { nonFiniteIndex = min(nonFiniteIndex, i); break }
            return
        }
        let shift = exchange.ownedOffsets[b] - piece.lowerBound
        let s0 = state[0].pointer, s1 = state.count > 1 ? state[1].pointer : state[0].pointer
        job.optimizer.step(lr: job.lr, step: job.globalStep, weights: job.parameters, gradients: g,
                           state: s0 + shift, state2: s1 + shift, range: piece)
    }

    deinit {
        overlapped.shutdown()
        leaves.deallocate()
    }

    /// Main thread, before the workers start a training step.
    func beginStep() {
        nonFiniteIndex = .max
        steps += 1
        overlapped.beginStep()
    }

    /// Backward of one local shard, bucket by bucket.
    @inline(__always)
    func backward(_ ws: Workspace, batch: Int, gradients: UnsafeMutablePointer<Float>, worker: Int) {
        for b in 0..<layout.bucketCount {
            ws.backward(batch: batch, parameters: job.parameters, gradients: gradients, layers: layout.firstLayer[b]..<layout.endLayer[b])
            finished(b, worker: worker)
        }
    }

    /// An empty shard (no samples) counts as finished for every bucket.
    func skip(worker: Int) {
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

    /// After a step, on every rank: the first layer (lowest parameter index over all ranks) whose
    /// reduced gradient held a NaN or infinity, or nil.
    func firstNonFiniteLayer(_ communicator: Communicator) -> String? {
        let p = job.parameterCount
        let local = nonFiniteIndex == .max ? 0 : p - nonFiniteIndex
        let global = communicator.maximum(local)
        guard global > 0 else { return nil }
        let index = p - global
        for layer in job.model.layers {
            for t in layer.parameters where (t.offset..<(t.offset + t.count)).contains(index) {
                return "the gradient of \(t.name) (layer \(layer.name))"
            }
        }
        return "the gradients"
    }

    /// Bytes this rank sends per step (both phases), counted by the exchange.
    var bytesPerStep: Double { steps == 0 ? 0 : Double(exchange.floatsSent) * 4 / Double(steps) }

    /// Collective (every rank, between steps): the full optimizer state, gathered from the owners.
    func gatherState() -> [AlignedBuffer] {
        let full = fullState ?? state.map { _ in AlignedBuffer(count: job.parameterCount) }
        fullState = full
        for (compact, whole) in zip(state, full) {
            whole.pointer.update(repeating: 0, count: job.parameterCount)
            exchange.copyOwned(full: whole.pointer, compact: compact.pointer, toFull: true)
            exchange.allGather(whole.pointer)
        }
        return full
    }

    /// Full-size buffers a checkpoint loads into (then `scatterState` keeps this rank's pieces).
    func loadingBuffers() -> [AlignedBuffer] {
        let full = fullState ?? state.map { _ in AlignedBuffer(count: job.parameterCount) }
        fullState = full
        return full
    }

    /// Keeps this rank's pieces of the full state loaded from a checkpoint, and frees it.
    func scatterState() {
        guard let full = fullState else { return }
        for (compact, whole) in zip(state, full) { exchange.copyOwned(full: whole.pointer, compact: compact.pointer, toFull: false) }
        fullState = nil
    }
}

extension StepJob {
    /// A training step with the sharded exchange: the shards (each one's backward hands its buckets
    /// to the exchange), then worker 0 waits for the exchange; no reduction or optimizer pass here.
    func runSharded(worker: Int, pool: WorkerPool, _ sharded: ShardedStep) {
        let t0 = monotonicNanoseconds()
        var s = firstShard + worker
        while s < endShard {
            computeShard(s, worker: worker)
            s += pool.workerCount
        }
        let t1 = monotonicNanoseconds()
        timing.record(worker: worker, phase: .compute, nanoseconds: t1 - t0)
        sharded.help(worker: worker)
        if worker == 0 {
            sharded.overlapped.waitStep()
            timing.record(worker: worker, phase: .communicate, nanoseconds: monotonicNanoseconds() - t1)
        }
    }
}
