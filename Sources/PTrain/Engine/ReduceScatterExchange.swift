// The sharded exchange as the step's gradient exchange (several ranks, `distributed.exchange:
// reduce_scatter`): each local shard's backward runs bucket by bucket, the worker that completes a
// bucket adds the local shards' gradients of it (the in-node subtree of the fixed tree), and the
// exchange thread (PTDistributed's OverlappedExchange) reduce-scatters it, has the owner update its
// piece (`WeightUpdate`, with this rank's pieces of the optimizer state only) and all-gathers the
// weights while backward goes on. With `distributed.overlap_forward` (the default) the all-gather
// also goes on into the next step: its forward runs bucket by bucket, from the first layers, each
// bucket waiting only for its own weights; whatever else reads the weights or the optimizer state
// between steps drains first.
import PTDistributed
#if canImport(Glibc)
import Glibc
#endif
import PTKernels
import PTModel
import PTRuntime
import PTTensor

final class ReduceScatterExchange: GradientExchange {
    let update: WeightUpdate
    let layout: ExchangeLayout
    let exchange: ShardedExchange
    let overlapped: OverlappedExchange
    let collectives: Collectives
    let timing: StepTiming
    let workers: Int
    let localShards: Int
    /// The local shards' gradient buffers (the in-node tree's leaves); leaf 0 is this rank's partial.
    let leaves: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    /// Full-size optimizer state for checkpoints: filled by `gatherOptimizerState` (saving) or by a
    /// checkpoint (`checkpointState`), handed back to the owners and freed by
    /// `releaseGatheredOptimizerState`.
    private var fullState: OptimizerState?
    /// Whether `fullState` holds every rank's pieces (gathered since the last step).
    private(set) var gathered = false
    /// Per generation parity (step g's exchange uses slot g & 1): the learning rate, the 0-based
    /// global step and the lowest index of a non-finite gradient in this rank's pieces (Int.max:
    /// none). Two slots, because step g+1's are set while step g's exchange may still run.
    let stepLR: UnsafeMutablePointer<Float>
    let stepIndex: UnsafeMutablePointer<Int>
    let nonFiniteIndex: UnsafeMutablePointer<Int>
    /// Let a step's exchange run on into the next step's forward.
    let overlapsForward: Bool
    /// Training steps begun, and whether the last one's exchange was drained since.
    private var generation = 0
    private var drained = true

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

    /// `update.state` is compact: `exchange.ownedCount` floats per buffer. Starts the exchange thread.
    init(exchange: ShardedExchange, overlapsForward: Bool, update: WeightUpdate, shardGradients: [UnsafeMutablePointer<Float>],
         workers: Int, timing: StepTiming, collectives: Collectives) {
        precondition(update.state.count >= exchange.ownedCount)
        self.update = update
        layout = exchange.layout
        self.exchange = exchange
        self.collectives = collectives
        self.timing = timing
        self.workers = workers
        localShards = shardGradients.count
        leaves = leafList(shardGradients)
        self.overlapsForward = overlapsForward
        stepLR = .allocate(capacity: 2)
        stepLR.initialize(repeating: 0, count: 2)
        stepIndex = .allocate(capacity: 2)
        stepIndex.initialize(repeating: 0, count: 2)
        nonFiniteIndex = .allocate(capacity: 2)
        nonFiniteIndex.initialize(repeating: .max, count: 2)
        // The owner's update of its piece of bucket b, on the exchange thread.
        let (lr, index, nonFinite) = (stepLR, stepIndex, nonFiniteIndex)
        overlapped = OverlappedExchange(exchange: exchange, localShards: localShards, workers: workers, partial: shardGradients[0],
                                        gradients: update.gradients, weights: update.parameters,
                                        overlapsForward: overlapsForward) { b, g in
            let slot = Int(g & 1)
            if let i = update.apply(exchange.owned[b], stateOffset: exchange.ownedOffsets[b], lr: lr[slot], step: index[slot]) {
                nonFinite[slot] = min(nonFinite[slot], i)
            }
        }
    }

    deinit {
        overlapped.shutdown()
        leaves.deallocate()
        stepLR.deallocate()
        stepIndex.deallocate()
        nonFiniteIndex.deallocate()
    }

    /// Main thread: the previous step's exchange may still run (it uses the other slot).
    func begin(_ step: Step, generation: Int) {
        precondition(generation == self.generation + 1)
        let slot = generation & 1
        stepLR[slot] = step.lr
        stepIndex[slot] = step.globalStep
        nonFiniteIndex[slot] = .max
        gathered = false
        self.generation = generation
        drained = false
        overlapped.beginStep()
    }

    /// Every rank's first local shard waits in forward for every bucket, so once a step's workers
    /// are done the previous step's exchange is complete (without `overlapsForward`, worker 0 waits
    /// for the step's own).
    var settled: Int { drained || !overlapsForward ? generation : generation - 1 }

    func drain() {
        overlapped.drain()
        drained = true
    }

    func firstNonFinite(generation: Int) -> Int? {
        precondition(generation <= settled && generation + 1 >= self.generation, "generation \(generation) is not settled or was overwritten")
        let lowest = nonFiniteIndex[generation & 1]
        return lowest == .max ? nil : lowest
    }

    /// Forward of one local shard, bucket by bucket from the first layers: each bucket's layers wait
    /// for that bucket's weights from the previous step's exchange.
    @inline(__always)
    func forward(_ ws: Workspace, batch: Int, worker: Int) {
        for b in stride(from: layout.bucketCount - 1, through: 0, by: -1) {
            overlapped.awaitWeights(b, worker: worker)
            ws.forward(batch: batch, parameters: update.parameters, layers: layout.firstLayer[b]..<layout.endLayer[b])
        }
    }

    /// Backward of one local shard, bucket by bucket; each bucket's slice of the shard's gradient
    /// is cleared just before (zeroed, or stored outright: `Workspace.backward(...clearing:)`; not at
    /// the start of the step: shard buffer 0 is this rank's partial, which the previous step's
    /// exchange reads until its forward has all the weights).
    @inline(__always)
    func backward(_ ws: Workspace, batch: Int, into gradients: UnsafeMutablePointer<Float>, worker: Int) {
        for b in 0..<layout.bucketCount {
            let range = layout.buckets[b]
            ws.backward(batch: batch, parameters: update.parameters, gradients: gradients,
                        layers: layout.firstLayer[b]..<layout.endLayer[b], clearing: range)
            finished(b, worker: worker)
        }
    }

    /// An empty shard (no samples): waits, as a forward would, for the previous step's exchange,
    /// zeroes the shard's gradient and counts as finished for every bucket.
    func skip(_ gradients: UnsafeMutablePointer<Float>, worker: Int) {
        for b in 0..<layout.bucketCount { overlapped.awaitWeights(b, worker: worker) }
        gradients.update(repeating: 0, count: update.parameterCount)
        for b in 0..<layout.bucketCount { finished(b, worker: worker) }
    }

    @inline(__always) func forwardWaitNanoseconds(worker: Int) -> UInt64 { overlapped.forwardWaitNanoseconds(worker: worker) }

    @inline(__always) func finished(_ b: Int, worker: Int) {
        if overlapped.shardFinished(bucket: b) { reduceChunks(b) }
    }

    /// Adds the local shards' gradients (the rank's subtree of the fixed tree) into shard buffer 0,
    /// this rank's partial, for the unclaimed chunks of ready bucket b.
    func reduceChunks(_ b: Int) {
        while let range = overlapped.claimChunk(b) {
            pairwiseSumInPlace(leaves, n: localShards, range: range)
            overlapped.chunkReduced(b)
        }
    }

    /// After its shards, a worker helps with the in-node sums of the buckets, in backward order,
    /// each as soon as the other workers' last shards have passed it; without `overlapsForward`
    /// worker 0 then waits for the exchange. No reduction or optimizer pass here (the exchange
    /// thread runs the owner's update). Worker 0 records its waits (forward and end) as communicate.
    func finish(worker: Int, pool: WorkerPool, step: Step, waited: UInt64) {
        for b in 0..<layout.bucketCount {
            var spins = 0
            while !overlapped.bucketReady(b) {
                spins += 1
                if spins > 256 { usleep(20) }
            }
            reduceChunks(b)
        }
        if worker == 0 {
            var communicate = waited
            if !overlapsForward {
                let t0 = monotonicNanoseconds()
                overlapped.drain()
                communicate += monotonicNanoseconds() - t0
            }
            timing.record(worker: worker, phase: .communicate, nanoseconds: communicate)
        }
    }

    /// The full-size state a checkpoint loads into or is saved from.
    var checkpointState: OptimizerState {
        if let fullState { return fullState }
        let full = OptimizerState(optimizer: update.optimizer, parameterCount: update.parameterCount)
        fullState = full
        return full
    }

    var checkpointStateIsComplete: Bool { gathered }

    /// Collective (every rank, between steps): the full optimizer state, gathered from the owners.
    func gatherOptimizerState() {
        drain()
        collectives.gatherOptimizerState(exchange, compact: update.state, into: checkpointState)
        gathered = true
    }

    /// Keeps this rank's pieces of the full state (loaded from a checkpoint, or gathered), and frees it.
    func releaseGatheredOptimizerState() {
        guard let full = fullState else { return }
        for ((_, compact), (_, whole)) in zip(update.state.buffers, full.buffers) {
            exchange.copyOwned(full: whole.pointer, compact: compact.pointer, toFull: false)
        }
        fullState = nil
        gathered = false
    }

    /// Bytes this rank sends per step (both phases, counted by the exchange), the exchange time and
    /// its exposed part: the workers' waits in forward (a mean over the workers that compute
    /// shards) and the drains (end of step without `overlapsForward`, between steps), during which
    /// every worker waits.
    var figures: ExchangeFigures? {
        drain()
        let computing = max(1, min(workers, localShards))
        var forward: UInt64 = 0
        for w in 0..<workers { forward &+= overlapped.forwardWaitNanoseconds(worker: w) }
        return ExchangeFigures(bytesPerStep: generation == 0 ? 0 : Double(exchange.floatsSent) * 4 / Double(generation),
                               exchangeNanoseconds: overlapped.exchangeNanoseconds,
                               exposedNanoseconds: forward / UInt64(computing) + overlapped.drainNanoseconds,
                               buckets: layout.bucketCount, overlapsForward: overlapsForward)
    }

    func resetTimes() {
        drain()
        overlapped.resetTimes()
    }
}
