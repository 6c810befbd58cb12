// The gradient exchange of a training step: how the shards' gradients become the update of the
// weights. One protocol, three implementations chosen once when the step job is built: in-process
// (one rank), all-gather of the ranks' partial sums, and the sharded exchange (reduce-scatter
// overlapped with backward and the next forward; ReduceScatterExchange.swift). The optimizer is
// called from one place (`WeightUpdate.apply`), which also finds the non-finite gradients.
import PTKernels
import PTModel
import PTRuntime
import PTTensor

/// What the step job asks of the exchange, in this order for training step g (generation g, from 1):
/// 1. `begin(_:generation:)` on the main thread, before the workers start;
/// 2. per local shard, on the worker computing it: `forward`, then (after the loss) `backward`,
///    or `skip` for a shard without samples;
/// 3. `finish(worker:pool:step:waited:)` on every worker once its shards are done: whatever the
///    exchange still does inside the step (the reduction over the shards, the transfers between
///    ranks, the update of the worker's slice of the weights);
/// 4. between steps, on the main thread: `drain()` before anything reads the weights or the
///    optimizer state; `firstNonFinite(generation:)` for a generation up to `settled`.
/// Every call made per shard or per worker allocates nothing.
protocol GradientExchange: AnyObject {
    /// Main thread, before the workers start training step `step`, the `generation`-th training
    /// step of the job (the previous step's exchange may still run).
    func begin(_ step: Step, generation: Int)
    /// Worker: forward of one shard of `batch` samples in `ws`.
    func forward(_ ws: Workspace, batch: Int, worker: Int)
    /// Worker: backward of one shard (after its loss) into its own gradient buffer `gradients`,
    /// which this zeroes first.
    func backward(_ ws: Workspace, batch: Int, into gradients: UnsafeMutablePointer<Float>, worker: Int)
    /// Worker: a shard without samples (its gradient is zero).
    func skip(_ gradients: UnsafeMutablePointer<Float>, worker: Int)
    /// Nanoseconds worker `worker` has waited for the exchange in forward (its own counter).
    func forwardWaitNanoseconds(worker: Int) -> UInt64
    /// Worker, after its shards: the rest of the step. `waited`: its waits in this step's forward.
    func finish(worker: Int, pool: WorkerPool, step: Step, waited: UInt64)
    /// Main thread, between steps: returns when the last step's exchange is complete (weights,
    /// optimizer state and gradient buffers final).
    func drain()
    /// The last generation whose exchange is complete once the workers of the step begun last are
    /// done (after a `drain()`: that step's). The same on every rank.
    var settled: Int { get }
    /// For a settled generation: the lowest index of a reduced gradient that held a NaN or an
    /// infinity among those this process checked (its slices or pieces), or nil. Weights of
    /// such a slice or piece were left untouched.
    func firstNonFinite(generation: Int) -> Int?

    /// The optimizer state laid out like the parameters, as checkpoints hold it (see
    /// `Trainer.optimizerState`).
    var checkpointState: OptimizerState { get }
    /// Whether `checkpointState` holds the whole current state.
    var checkpointStateIsComplete: Bool { get }
    /// Collective: fills `checkpointState` from the ranks that own its pieces.
    func gatherOptimizerState()
    /// Keeps this rank's pieces of `checkpointState` (gathered, or loaded from a checkpoint).
    func releaseGatheredOptimizerState()
    /// The sharded exchange's figures since the last `resetTimes` (drains first), or nil.
    var figures: ExchangeFigures? { get }
    func resetTimes()
    /// The layers whose weight gradient this exchange's reduction computes from the shards' operands
    /// (`DefersGradient`), so that `--profile` counts those products there and not in the layers' backward.
    var deferredLayers: [Int] { get }
}

extension GradientExchange {
    var deferredLayers: [Int] { [] }
}

/// Bytes this rank sent per step, the whole exchange and its exposed part (ns summed over steps),
/// buckets, and whether the exchange runs on into the next forward.
public struct ExchangeFigures: Sendable {
    public var bytesPerStep: Double
    public var exchangeNanoseconds: UInt64
    public var exposedNanoseconds: UInt64
    public var buckets: Int
    public var overlapsForward: Bool
}

/// The update of the weights from the reduced gradients: the only caller of the optimizer, and the
/// only check of a reduced gradient for NaN and infinity.
final class WeightUpdate {
    let parameters: UnsafeMutablePointer<Float>
    let parameterCount: Int
    /// The reduced gradient (laid out like the parameters).
    let gradients: UnsafeMutablePointer<Float>
    let optimizer: Optimizer
    /// The state the steps update: laid out like the parameters, or with the sharded exchange this
    /// rank's pieces only (compact, bucket b's piece at `ShardedExchange.ownedOffsets[b]`).
    let state: OptimizerState

    init(parameters: UnsafeMutablePointer<Float>, parameterCount: Int, gradients: UnsafeMutablePointer<Float>,
         state: OptimizerState) {
        self.parameters = parameters
        self.parameterCount = parameterCount
        self.gradients = gradients
        optimizer = state.optimizer
        self.state = state
    }

    /// One optimizer step of weights[range] (their state at `stateOffset`) from gradients[range],
    /// unless the range holds a NaN or an infinity: then the weights stay untouched and the result
    /// is the lowest such index (the ranks stop after the step).
    @inline(__always)
    func apply(_ range: Range<Int>, stateOffset: Int, lr: Float, step: Int) -> Int? {
        guard !range.isEmpty else { return nil }
        if !allFinite(gradients + range.lowerBound, count: range.count) {
            return range.first { !gradients[$0].isFinite } ?? range.lowerBound
        }
        optimizer.step(lr: lr, step: step, weights: parameters, gradients: gradients, state: state, range: range,
                       stateOffset: stateOffset)
        return nil
    }
}

/// Per-worker slices of the flat buffers: worker w reduces and updates floats
/// [w*slice, (w+1)*slice) (a multiple of 16 floats, so slices never share a cache line).
struct Slices {
    let count: Int
    let size: Int
    init(count: Int, workers: Int) {
        self.count = count
        size = alignedCount((count + workers - 1) / workers)
    }
    @inline(__always) func of(_ worker: Int) -> Range<Int> {
        let lo = min(count, worker * size)
        return lo..<min(count, lo + size)
    }
}

/// Per-worker lowest non-finite index of the last step (Int.max: none), 64 bytes apart.
struct WorkerNonFinite {
    let values: UnsafeMutablePointer<Int>
    let workers: Int
    init(workers: Int) {
        self.workers = workers
        values = .allocate(capacity: 8 * workers)
        values.initialize(repeating: .max, count: 8 * workers)
    }
    func free() { values.deallocate() }
    @inline(__always) func set(_ worker: Int, _ index: Int?) { values[8 * worker] = index ?? .max }
    var lowest: Int? {
        var low = Int.max
        for w in 0..<workers { low = min(low, values[8 * w]) }
        return low == .max ? nil : low
    }
}

/// The exchanges that reduce once backward is done (in-process, all-gather): forward and
/// backward over the whole model, every rank ends the step with the whole reduced gradient and
/// each worker updates its slice, so a step's gradients are settled when its workers are done.
protocol ReducesAfterBackward: GradientExchange {
    var update: WeightUpdate { get }
    var slices: Slices { get }
    var timing: StepTiming { get }
    var nonFinite: WorkerNonFinite { get }
    var settled: Int { get set }
    /// Whether the shards' backward leaves deferrable weight gradients to this exchange's reduction
    /// (`Workspace.defersGradient`); default false: every product is stored.
    var defersGradients: Bool { get }
}

extension ReducesAfterBackward {
    func begin(_ step: Step, generation: Int) { settled = generation }

    @inline(__always) func forward(_ ws: Workspace, batch: Int, worker: Int) {
        ws.forward(batch: batch, parameters: update.parameters)
    }

    var defersGradients: Bool { false }

    @inline(__always) func backward(_ ws: Workspace, batch: Int, into gradients: UnsafeMutablePointer<Float>, worker: Int) {
        ws.backward(batch: batch, parameters: update.parameters, gradients: gradients, layers: 0..<ws.model.layers.count,
                    clearing: 0..<update.parameterCount, deferring: defersGradients)
    }

    func skip(_ gradients: UnsafeMutablePointer<Float>, worker: Int) { gradients.update(repeating: 0, count: update.parameterCount) }
    func forwardWaitNanoseconds(worker: Int) -> UInt64 { 0 }
    func drain() {}

    func firstNonFinite(generation: Int) -> Int? {
        precondition(generation == settled, "the workers' non-finite records hold the last step only")
        return nonFinite.lowest
    }

    /// The pool barrier after backward (every shard's gradient is complete), its wait recorded;
    /// returns the clock after it and the worker's slice.
    @inline(__always) func afterBackward(worker: Int, pool: WorkerPool) -> (time: UInt64, slice: Range<Int>) {
        let t0 = monotonicNanoseconds()
        pool.barrier(worker: worker)
        let t1 = monotonicNanoseconds()
        timing.record(worker: worker, phase: .wait, nanoseconds: t1 - t0)
        return (t1, slices.of(worker))
    }

    /// The reduction's tail, on every worker: `slice` of the reduced gradient is final; update it.
    @inline(__always) func updateSlice(_ slice: Range<Int>, worker: Int, step: Step) {
        let t0 = monotonicNanoseconds()
        nonFinite.set(worker, update.apply(slice, stateOffset: slice.lowerBound, lr: step.lr, step: step.globalStep))
        timing.record(worker: worker, phase: .optimizer, nanoseconds: monotonicNanoseconds() - t0)
    }

    var checkpointState: OptimizerState { update.state }
    var checkpointStateIsComplete: Bool { true }
    func gatherOptimizerState() {}
    func releaseGatheredOptimizerState() {}
    var figures: ExchangeFigures? { nil }
    func resetTimes() {}
}

/// destination[slice] = the fixed tree over leaves[0 ..< n][slice] (consuming the leaves' slices).
@inline(__always)
func reduce(_ leaves: UnsafePointer<UnsafeMutablePointer<Float>>, n: Int, into destination: UnsafeMutablePointer<Float>,
            _ slice: Range<Int>) {
    guard !slice.isEmpty else { return }
    pairwiseSumInPlace(leaves, n: n, range: slice)
    (destination + slice.lowerBound).update(from: leaves[0] + slice.lowerBound, count: slice.count)
}

/// A copy of `pointers` that lives as long as its owner frees it (the tree's leaves).
func leafList(_ pointers: [UnsafeMutablePointer<Float>]) -> UnsafeMutablePointer<UnsafeMutablePointer<Float>> {
    let leaves = UnsafeMutablePointer<UnsafeMutablePointer<Float>>.allocate(capacity: max(1, pointers.count))
    leaves.initialize(from: pointers, count: pointers.count)
    return leaves
}

/// One rank: after backward (a pool barrier), each worker adds its slice of the shards' gradients
/// in the fixed tree into the reduced gradient and updates that slice.
/// Layers whose weight gradient is deferred (`DefersGradient`) multiply their shards' operands in the reduction
/// instead of adding stored products: the same bits, without each shard's product going to memory and back.
final class InProcessExchange: ReducesAfterBackward {
    let update: WeightUpdate
    /// The shards' gradient buffers (the tree's leaves), consumed by the reduction.
    let leaves: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    let shards: Int
    let slices: Slices
    let timing: StepTiming
    let nonFinite: WorkerNonFinite
    /// The deferred gradient ranges, in order, with their layers and the layers' indices.
    let deferred: [(range: Range<Int>, layer: any DefersGradient, index: Int)]
    var settled = 0

    /// `workspace`: any of the workers' (they share the model, precision and batch), which decides what is deferred.
    init(update: WeightUpdate, shardGradients: [UnsafeMutablePointer<Float>], workers: Int, timing: StepTiming,
         workspace: Workspace) {
        self.update = update
        shards = shardGradients.count
        leaves = leafList(shardGradients)
        slices = Slices(count: update.parameterCount, workers: workers)
        self.timing = timing
        nonFinite = WorkerNonFinite(workers: workers)
        // Stored ranges ascend with the layer index.
        deferred = workspace.model.layers.indices.compactMap { i in
            guard workspace.defersGradient[i], let r = workspace.storedGradients[i] else { return nil }
            return (r, workspace.model.layers[i] as! DefersGradient, i)
        }
    }

    var defersGradients: Bool { true }
    var deferredLayers: [Int] { deferred.map(\.index) }

    deinit {
        leaves.deallocate()
        nonFinite.free()
    }

    func finish(worker: Int, pool: WorkerPool, step: Step, waited: UInt64) {
        let (t1, slice) = afterBackward(worker: worker, pool: pool)
        var at = slice.lowerBound
        for d in deferred {
            let part = d.range.clamped(to: slice)
            guard !part.isEmpty else { continue }
            reduce(leaves, n: shards, into: update.gradients, at..<part.lowerBound)
            d.layer.reduceDeferred(leaves, n: shards, range: part, into: update.gradients)
            at = part.upperBound
        }
        reduce(leaves, n: shards, into: update.gradients, at..<slice.upperBound)
        timing.record(worker: worker, phase: .reduce, nanoseconds: monotonicNanoseconds() - t1)
        updateSlice(slice, worker: worker, step: step)
    }
}

/// Several ranks, `distributed.exchange: allgather`: after backward each worker adds its slice of
/// this rank's shards (a subtree of the fixed tree) into the rank's partial sum, worker 0
/// all-gathers the ranks' partial sums (between two pool barriers), and each worker finishes the
/// tree over them in rank order and updates its slice: every rank holds the whole reduced gradient.
final class AllGatherExchange: ReducesAfterBackward {
    let update: WeightUpdate
    let collectives: Collectives
    let leaves: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    let localShards: Int
    /// ranks x parameterCount: every rank's partial gradient, and their pointers (the tree's leaves).
    let partials: AlignedBuffer
    let rankLeaves: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    let slices: Slices
    let timing: StepTiming
    let nonFinite: WorkerNonFinite
    var settled = 0

    init(update: WeightUpdate, shardGradients: [UnsafeMutablePointer<Float>], workers: Int, timing: StepTiming,
         collectives: Collectives) {
        self.update = update
        self.collectives = collectives
        localShards = shardGradients.count
        leaves = leafList(shardGradients)
        let count = update.parameterCount
        let partials = AlignedBuffer(count: collectives.size * count)
        self.partials = partials
        rankLeaves = leafList((0..<collectives.size).map { partials.pointer + $0 * count })
        slices = Slices(count: count, workers: workers)
        self.timing = timing
        nonFinite = WorkerNonFinite(workers: workers)
    }

    deinit {
        leaves.deallocate()
        rankLeaves.deallocate()
        nonFinite.free()
    }

    func finish(worker: Int, pool: WorkerPool, step: Step, waited: UInt64) {
        let (t1, slice) = afterBackward(worker: worker, pool: pool)
        // In-node: this rank's subtree of shards into its partial.
        reduce(leaves, n: localShards, into: rankLeaves[collectives.rank], slice)
        timing.record(worker: worker, phase: .reduce, nanoseconds: monotonicNanoseconds() - t1)
        pool.barrier(worker: worker)
        if worker == 0 {
            let tc = monotonicNanoseconds()
            collectives.exchangeGradients(partials.pointer, count: update.parameterCount)
            timing.record(worker: worker, phase: .communicate, nanoseconds: monotonicNanoseconds() - tc)
        }
        pool.barrier(worker: worker)
        // Across ranks: the same tree over the partials, in rank order.
        let t2 = monotonicNanoseconds()
        reduce(rankLeaves, n: collectives.size, into: update.gradients, slice)
        timing.record(worker: worker, phase: .reduce, nanoseconds: monotonicNanoseconds() - t2)
        updateSlice(slice, worker: worker, step: step)
    }
}
