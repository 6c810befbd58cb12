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
    /// The optimizer state of this rank's pieces only: the job's `optimizerState`, compact
    /// (`exchange.ownedCount` floats per buffer, bucket b's piece at `exchange.ownedOffsets[b]`).
    var state: OptimizerState { job.optimizerState }
    /// Full-size optimizer state for checkpoints: filled by `gatherState` (saving) or by a
    /// checkpoint (`fullStateForLoading`), handed back to the owners and freed by `scatterState`.
    private(set) var fullState: OptimizerState?
    /// Whether `fullState` holds every rank's pieces (gathered since the last step).
    private(set) var gathered = false
    /// Lowest index of a non-finite gradient in this rank's pieces during the last step (Int.max: none).
    var nonFiniteIndex = Int.max
    /// One value per rank and the rank boundaries 0...R, for agreeing on non-finite gradients.
    let nonFiniteScratch: UnsafeMutablePointer<Int>
    let rankBoundaries: [Int]
    /// Training steps run (for bytes per step).
    private(set) var steps = 0
    /// The running step's learning rate and 0-based global step (set by `beginStep`, read by the
    /// exchange thread's updates).
    private var lr: Float = 0
    private var globalStep = 0

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
    init(job: StepJob, exchange: ShardedExchange) {
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
        job.optimizer.step(lr: lr, step: globalStep, weights: job.parameters, gradients: g, state: state, range: piece,
                           stateOffset: exchange.ownedOffsets[b])
    }

    deinit {
        overlapped.shutdown()
        leaves.deallocate()
        nonFiniteScratch.deallocate()
    }

    /// Main thread, before the workers start training step `step` (`StepJob.run(_:on:)`).
    func beginStep(_ step: Step) {
        lr = step.lr
        globalStep = step.globalStep
        nonFiniteIndex = .max
        gathered = false
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
    func firstNonFiniteLayer() -> String? {
        let p = job.parameterCount
        let local = nonFiniteIndex == .max ? 0 : p - nonFiniteIndex
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

    /// Bytes this rank sends per step (both phases), counted by the exchange.
    var bytesPerStep: Double { steps == 0 ? 0 : Double(exchange.floatsSent) * 4 / Double(steps) }

    /// Collective (every rank, between steps): the full optimizer state, gathered from the owners.
    func gatherState() {
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
    /// A training step with the sharded exchange: the shards (each one's backward hands its buckets
    /// to the exchange), then worker 0 waits for the exchange; no reduction or optimizer pass here.
    func runSharded(worker: Int, step: Step, _ sharded: ShardedStep) {
        let t0 = monotonicNanoseconds()
        var s = firstShard + worker
        while s < endShard {
            computeShard(s, worker: worker, step: step)
            s += workers
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
