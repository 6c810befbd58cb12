// Every exchange between the processes of a training job, in one place and one order.
import PTDistributed

/// The collective operations of a training job. Every call to the `Communicator` made by the
/// trainer, the training session and the training benchmark goes through this type, and every
/// rank makes the same calls in the same order:
///
/// For each training step (`Trainer.step`):
///   1. `exchangeGradients`: worker 0, inside the step, between two pool barriers (the partial
///      gradient sums of the ranks' shard blocks);
///   2. `gatherShardStatistics`: the main thread after the step, only for models with batch
///      normalisation (each shard's batch statistics, folded in shard order);
///   3. `gatherShardTotals`: the main thread (per-shard loss, then per-shard number correct);
///   4. after the last step of an epoch, for each evaluation chunk of the test set: `gatherShardTotals`.
/// Then, in `TrainingSession.run`, after every step:
///   5. `agreeOnStop`: the largest stop signal seen by any rank (0: none), so all ranks stop at
///      the same step;
///   6. when a checkpoint is due or the ranks stop: `checkpointWritten`, a barrier that rank 0
///      joins after writing the checkpoint.
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
