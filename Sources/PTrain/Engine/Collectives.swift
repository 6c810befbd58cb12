// Every exchange between the processes of a training job, in one place and one order.
import PTDistributed
import PTModel

/// The collective operations of a training job. Every call to the `Communicator` made by the
/// trainer, the training session and the training benchmark goes through this type, and every
/// rank makes the same calls in the same order:
///
/// Once, when the trainer is built with `distributed.exchange: reduce_scatter` (the default):
///   0. `makeExchangeTransport`: the sharded exchange's point-to-point transport (a duplicate of
///      the communicator, so its messages never meet the collectives below).
/// For each training step (`Trainer.step`):
///   1. `exchangeGradients` (`distributed.exchange: allgather`): worker 0, inside the step,
///      between two pool barriers (the partial gradient sums of the ranks' shard blocks);
///      or with the sharded exchange, on its exchange thread from backward on, on its own
///      transport: per bucket in backward order the reduce-scatter of the partial sums to the
///      piece owners and, after the owner's update, the all-gather of the weights. With
///      `distributed.overlap_forward` (the default) it runs on into the next step's forward (each
///      bucket's layers wait for that bucket), so it runs beside the main thread's calls 2-5:
///      that needs MPI_THREAD_MULTIPLE (`Communicator.allowsCollectivesDuringExchange`; without
///      it worker 0 waits for the last bucket before the step ends);
///   2. `gatherShardStatistics`: the main thread after the step, only for models with batch
///      normalisation (each shard's batch statistics, folded in shard order);
///   3. `gatherShardTotals`: the main thread (per-shard loss, then per-shard number correct);
///   3a. `agreeOnNonFinite` (`StepJob.firstNonFiniteLayer`) for each step whose exchange is
///      complete: this step, or with the sharded exchange the previous one (whose exchange the
///      forward has waited for), and the last step at the next drain: the lowest parameter index
///      over the ranks whose reduced gradient was not finite (with the sharded exchange each
///      rank sees only its pieces);
///   4. after the last step of an epoch, the drain (`Trainer.drainExchange`: the exchange thread
///      finishes, then 3a for that step), and for each evaluation chunk of the test set:
///      `gatherShardTotals`.
/// Then, in `TrainingSession.run`, after every step:
///   5. `agreeOnStop`: the largest stop signal seen by any rank (0: none), so all ranks stop at
///      the same step;
///   6. when a checkpoint is due or the ranks stop: with the sharded exchange first the drain (as
///      in 4) and `gatherOptimizerState` (every rank's pieces of the optimizer state, all-gathered
///      on the exchange's transport), then `checkpointWritten`, a barrier that rank 0 joins after
///      writing the checkpoint.
/// The training benchmark (`benchTrain`) uses `agreeOnMaximum` between steps (end of warm-up,
/// steps per window), decided by rank 0's clock.
///
/// With one process all of these are no-ops. With several, a rank that failed ends the job
/// through `abort` instead of leaving the others waiting in a collective.
public struct Collectives {
    public let communicator: Communicator

    public init(_ communicator: Communicator) { self.communicator = communicator }

    public var rank: Int { communicator.rank }
    public var size: Int { communicator.size }

    /// 1. `partials` holds `size` blocks of `count` floats; this rank's block is sent, the others filled.
    @inline(__always)
    func exchangeGradients(_ partials: UnsafeMutablePointer<Float>, count: Int) {
        if size > 1 { communicator.allGather(inPlace: partials, count: count) }
    }

    /// 0. The sharded exchange's transport, or nil with one process (or a build without MPI).
    func makeExchangeTransport() -> PointToPoint? {
        size > 1 ? makePointToPoint(communicator) : nil
    }

    /// 3a. `local`: parameter count minus the lowest index of a non-finite gradient in this rank's
    /// pieces (0: none); the largest over the ranks. An all-gather of one value per rank into
    /// `scratch` (`size` values; `boundaries` = 0...size), not `maximum`: Open MPI's MPI_Allreduce
    /// allocates a temporary on every call, and a step allocates nothing.
    func agreeOnNonFinite(_ local: Int, scratch: UnsafeMutablePointer<Int>, boundaries: [Int]) -> Int {
        guard size > 1 else { return local }
        scratch[rank] = local
        communicator.allGather(inPlace: scratch, boundaries: boundaries)
        var largest = 0
        for r in 0..<size { largest = max(largest, scratch[r]) }
        return largest
    }

    /// 6. Before a checkpoint, sharded exchange: `full` = every rank's pieces of `compact`.
    func gatherOptimizerState(_ exchange: ShardedExchange, compact: OptimizerState, into full: OptimizerState) {
        for ((_, piece), (_, whole)) in zip(compact.buffers, full.buffers) {
            whole.pointer.update(repeating: 0, count: full.count)
            exchange.copyOwned(full: whole.pointer, compact: piece.pointer, toFull: true)
            exchange.allGather(whole.pointer)
        }
    }

    /// 2. Rank r's shards' statistics, `perRank` floats, at r * perRank.
    func gatherShardStatistics(_ stats: UnsafeMutablePointer<Float>, perRank: Int) {
        if size > 1 { communicator.allGather(inPlace: stats, count: perRank) }
    }

    /// 3 and 4. Per-shard loss and number correct; rank r owns shards [boundaries[r], boundaries[r + 1]).
    func gatherShardTotals(loss: UnsafeMutablePointer<Double>, correct: UnsafeMutablePointer<Int>, boundaries: [Int]) {
        guard size > 1 else { return }
        communicator.allGather(inPlace: loss, boundaries: boundaries)
        communicator.allGather(inPlace: correct, boundaries: boundaries)
    }

    /// 5. The stop signal every rank acts on: the largest one any rank saw (0: go on).
    func agreeOnStop(_ local: Int32) -> Int32 {
        size > 1 ? Int32(communicator.maximum(Int(local))) : local
    }

    /// 6. Every rank waits here until rank 0 has written the checkpoint.
    func checkpointWritten() {
        if size > 1 { communicator.barrier() }
    }

    /// Benchmarks: the largest `value` over the ranks.
    func agreeOnMaximum(_ value: Int) -> Int {
        size > 1 ? communicator.maximum(value) : value
    }

    /// Ends every rank of the job, naming this one, when there are several; otherwise returns.
    func abortIfSeveral(_ error: Error) {
        if size > 1 { communicator.abort("rank \(rank): \(error)", code: 1) }
    }
}
