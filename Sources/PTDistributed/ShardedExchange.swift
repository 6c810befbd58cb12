// The sharded gradient exchange: a deterministic reduce-scatter (every piece's R partial sums meet
// at its owner, which adds them in the fixed pairwise tree), the owner's optimizer update, and an
// all-gather of the updated weights; bucket by bucket, with non-blocking point-to-point transfers.

/// Non-blocking point-to-point transfers of floats between the ranks of a job. Requests live in
/// numbered slots (reserved once), so that a step allocates nothing.
public protocol PointToPoint: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Makes slots 0 ..< count usable for transfers of at most `largest` floats each (called
    /// once, before any transfer).
    func reserve(slots count: Int, largest: Int)
    /// Starts sending `count` floats to rank `to`; the buffer must stay unchanged until the slot completes.
    func startSend(_ values: UnsafePointer<Float>, count: Int, to: Int, tag: Int32, slot: Int)
    /// Starts receiving `count` floats from rank `from` into `values`.
    func startReceive(_ values: UnsafeMutablePointer<Float>, count: Int, from: Int, tag: Int32, slot: Int)
    /// Progresses the transfers; whether every request in `slots` has completed (completed and
    /// never-used slots count as completed).
    func test(_ slots: Range<Int>) -> Bool
    /// Blocks until every request in `slots` has completed.
    func wait(_ slots: Range<Int>)
    /// The largest message tag the transport accepts (MPI guarantees at least 32767).
    var tagUpperBound: Int { get }
}

extension PointToPoint {
    public var tagUpperBound: Int { Int(Int32.max) }
}

/// One rank's side of the sharded exchange for a fixed layout. Per bucket b, in this order:
/// `startReduce(b)` (send the partial sums of the other ranks' pieces, receive theirs of ours),
/// `reduceArrived(b)`, `combine(b)` (the pairwise tree over the R partials of our piece),
/// the owner's update of its piece, `startGather(b)` (send our updated piece, receive theirs),
/// `gatherArrived(b)`; after the last bucket, `finish()`.
public final class ShardedExchange {
    public let layout: ExchangeLayout
    public let rank: Int
    public let ranks: Int
    let transport: PointToPoint
    /// This rank's piece of each bucket, and where it starts among the owned floats.
    public let owned: [Range<Int>]
    public let ownedOffsets: [Int]
    public let ownedCount: Int
    /// Received partial sums: bucket b's R blocks of owned[b].count floats at ranks * ownedOffsets[b].
    let staging: UnsafeMutablePointer<Float>
    let leaves: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    /// Floats sent since creation (both phases).
    public private(set) var floatsSent = 0
    public private(set) var messagesSent = 0

    public init(layout: ExchangeLayout, transport: PointToPoint) {
        precondition(layout.ranks == transport.size)
        self.layout = layout
        self.transport = transport
        rank = transport.rank
        ranks = transport.size
        owned = (0..<layout.bucketCount).map { layout.piece($0, rank: transport.rank) }
        ownedOffsets = layout.ownedOffsets(rank: transport.rank)
        ownedCount = layout.ownedCount(rank: transport.rank)
        staging = .allocate(capacity: max(1, ranks * ownedCount))
        staging.initialize(repeating: 0, count: max(1, ranks * ownedCount))
        leaves = .allocate(capacity: ranks)
        leaves.initialize(repeating: staging, count: ranks)
        var largest = 0
        for b in 0..<layout.bucketCount {
            for q in 0..<ranks { largest = max(largest, layout.piece(b, rank: q).count) }
        }
        transport.reserve(slots: 4 * ranks * layout.bucketCount, largest: largest)
        // Bucket b's messages carry the tags 2b and 2b + 1 (ExchangeLayout.maximumBuckets keeps them
        // under the 32767 every MPI accepts). Consecutive steps reuse them safely: MPI matches
        // messages of one source, tag and communicator in the order they were sent.
        precondition(2 * layout.bucketCount - 1 <= transport.tagUpperBound,
                     "ShardedExchange: \(layout.bucketCount) buckets need tags up to \(2 * layout.bucketCount - 1); the transport allows \(transport.tagUpperBound)")
    }

    deinit {
        staging.deallocate()
        leaves.deallocate()
    }

    // Slots of bucket b: [reduce receives | reduce sends | gather receives | gather sends], R each.
    @inline(__always) func slot(_ b: Int, _ phase: Int, _ q: Int) -> Int { (4 * b + phase) * ranks + q }
    @inline(__always) func slots(_ b: Int, _ phase: Int) -> Range<Int> { slot(b, phase, 0)..<slot(b, phase + 1, 0) }
    @inline(__always) func block(_ b: Int, _ q: Int) -> UnsafeMutablePointer<Float> {
        staging + ranks * ownedOffsets[b] + q * owned[b].count
    }

    /// Starts bucket b's reduce-scatter: `partial` holds this rank's partial sums of the whole buffer.
    public func startReduce(_ b: Int, partial: UnsafePointer<Float>) {
        let mine = owned[b]
        for q in 0..<ranks where q != rank {
            if !mine.isEmpty {
                transport.startReceive(block(b, q), count: mine.count, from: q, tag: Int32(2 * b), slot: slot(b, 0, q))
            }
            let theirs = layout.piece(b, rank: q)
            if !theirs.isEmpty {
                transport.startSend(partial + theirs.lowerBound, count: theirs.count, to: q, tag: Int32(2 * b), slot: slot(b, 1, q))
                floatsSent += theirs.count
                messagesSent += 1
            }
        }
    }

    /// Whether the other ranks' partial sums of our piece of bucket b have arrived.
    public func reduceArrived(_ b: Int) -> Bool { transport.test(slots(b, 0)) }

    /// Whether our partial sums of bucket b have been sent (their buffer may then change).
    public func reduceSent(_ b: Int) -> Bool { transport.test(slots(b, 1)) }

    /// gradients[owned[b]] = the pairwise tree over the ranks' partial sums of our piece of bucket
    /// b, rank order (ours is read from `partial`, which it overwrites).
    public func combine(_ b: Int, partial: UnsafeMutablePointer<Float>, into gradients: UnsafeMutablePointer<Float>) {
        let mine = owned[b]
        guard !mine.isEmpty else { return }
        for q in 0..<ranks { leaves[q] = q == rank ? partial + mine.lowerBound : block(b, q) }
        pairwiseSumInPlace(leaves, n: ranks, count: mine.count)
        (gradients + mine.lowerBound).update(from: leaves[0], count: mine.count)
    }

    /// Starts bucket b's all-gather of `values`: sends our piece, receives every other rank's piece in place.
    public func startGather(_ b: Int, values: UnsafeMutablePointer<Float>) {
        let mine = owned[b]
        for q in 0..<ranks where q != rank {
            let theirs = layout.piece(b, rank: q)
            if !theirs.isEmpty {
                transport.startReceive(values + theirs.lowerBound, count: theirs.count, from: q, tag: Int32(2 * b + 1),
                                       slot: slot(b, 2, q))
            }
            if !mine.isEmpty {
                transport.startSend(UnsafePointer(values + mine.lowerBound), count: mine.count, to: q, tag: Int32(2 * b + 1),
                                    slot: slot(b, 3, q))
                floatsSent += mine.count
                messagesSent += 1
            }
        }
    }

    /// Whether every other rank's piece of bucket b has arrived.
    public func gatherArrived(_ b: Int) -> Bool { transport.test(slots(b, 2)) }

    /// Waits for every transfer of the step (the sends too), so the buffers may be reused.
    public func finish() { transport.wait(0..<(4 * ranks * layout.bucketCount)) }

    /// Blocking all-gather of a whole buffer in which each rank holds its own pieces (checkpoints:
    /// optimizer state). Not counted in `floatsSent` / `messagesSent` (those count steps).
    public func allGather(_ values: UnsafeMutablePointer<Float>) {
        let floats = floatsSent, messages = messagesSent
        for b in 0..<layout.bucketCount { startGather(b, values: values) }
        finish()
        floatsSent = floats
        messagesSent = messages
    }

    /// Copies this rank's pieces of the full buffer `full` into the compact buffer `compact`
    /// (ownedCount floats), or back with `toFull`.
    public func copyOwned(full: UnsafeMutablePointer<Float>, compact: UnsafeMutablePointer<Float>, toFull: Bool) {
        for b in 0..<layout.bucketCount where !owned[b].isEmpty {
            let f = full + owned[b].lowerBound, c = compact + ownedOffsets[b]
            if toFull { f.update(from: c, count: owned[b].count) } else { c.update(from: f, count: owned[b].count) }
        }
    }
}
