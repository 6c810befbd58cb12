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
/// `gatherArrived(b)`; after the last bucket, `finish()`. Call `progress()` while waiting.
///
/// Messages are segments of at most `segmentFloats` floats. Receives are posted when a phase
/// starts; sends wait in a queue and at most `sendsInFlight` are posted at a time, the most urgent
/// first: the bucket whose weights the next forward needs first (the highest index: the first
/// layers), its reduce-scatter before its all-gather. A link is a queue: without this a late,
/// small bucket (the first layers, reduced at the end of backward) waits behind a large bucket's
/// whole all-gather; with it (and a transport whose sends complete when received, as
/// MPIPointToPoint's), behind a few segments.
public final class ShardedExchange {
    public let layout: ExchangeLayout
    public let rank: Int
    public let ranks: Int
    let transport: PointToPoint
    /// The most floats one message carries, and how many sends may be posted at once.
    public let segmentFloats: Int
    public let sendsInFlight: Int
    /// This rank's piece of each bucket, and where it starts among the owned floats.
    public let owned: [Range<Int>]
    public let ownedOffsets: [Int]
    public let ownedCount: Int
    /// Received partial sums: bucket b's R blocks of owned[b].count floats at ranks * ownedOffsets[b].
    let staging: UnsafeMutablePointer<Float>
    let leaves: UnsafeMutablePointer<UnsafeMutablePointer<Float>>
    /// Slots: for bucket b and kind k (0 reduce receives, 1 reduce sends, 2 gather receives,
    /// 3 gather sends), peer q's segments use slots slotBase[(4b + k) * R + q] ..< + segments;
    /// one kind's slots over all peers are contiguous (slotBase[(4b + k + 1) * R] ends them).
    let slotBase: [Int]
    /// Send queue, by unit u = 2b + 1 (bucket b's reduce-scatter) or 2b (its all-gather), a higher
    /// u more urgent: the next segment to post (segments counted over peers, segment j of every
    /// peer before segment j + 1), or -1 while the unit has not started; its source buffer.
    let cursor: UnsafeMutablePointer<Int>
    let source: UnsafeMutablePointer<UnsafePointer<Float>?>
    /// Segments per peer of each unit (the largest peer's), for the cursor's walk.
    let rounds: [Int]
    /// The most urgent unit that may have segments left to post (-1: none).
    var top = -1
    /// Units started whose sends are not all posted.
    var unposted = 0
    /// Posted sends not known to be complete (slots).
    let inFlight: UnsafeMutablePointer<Int>
    var inFlightCount = 0
    /// Floats sent since creation (both phases).
    public private(set) var floatsSent = 0
    public private(set) var messagesSent = 0

    /// Default: segments of 64 KiB, two in flight (at most 128 KiB ahead of an urgent bucket from
    /// this rank: 1 ms at 1 Gbit/s); measured on shaped links (docs/BENCHMARKS.md).
    public static let defaultSegmentFloats = 1 << 14
    public static let defaultSendsInFlight = 2

    public init(layout: ExchangeLayout, transport: PointToPoint, segmentFloats: Int = ShardedExchange.defaultSegmentFloats,
                sendsInFlight: Int = ShardedExchange.defaultSendsInFlight) {
        precondition(layout.ranks == transport.size && segmentFloats >= 1 && sendsInFlight >= 1)
        self.layout = layout
        self.transport = transport
        self.segmentFloats = segmentFloats
        self.sendsInFlight = sendsInFlight
        rank = transport.rank
        ranks = transport.size
        let rank = transport.rank, ranks = transport.size, buckets = layout.bucketCount
        owned = (0..<buckets).map { layout.piece($0, rank: rank) }
        ownedOffsets = layout.ownedOffsets(rank: rank)
        ownedCount = layout.ownedCount(rank: rank)
        staging = .allocate(capacity: max(1, ranks * ownedCount))
        staging.initialize(repeating: 0, count: max(1, ranks * ownedCount))
        leaves = .allocate(capacity: ranks)
        leaves.initialize(repeating: staging, count: ranks)
        // Floats of each (bucket, kind, peer): receives of our piece and sends of theirs (reduce),
        // receives of theirs and sends of ours (gather); nothing to or from ourselves.
        var base: [Int] = [], total = 0, largest = 1, rounds: [Int] = []
        for b in 0..<buckets {
            let mine = layout.piece(b, rank: rank).count
            for k in 0..<4 {
                var most = 0
                for q in 0..<ranks {
                    base.append(total)
                    guard q != rank else { continue }
                    let theirs = layout.piece(b, rank: q).count
                    let n = (k == 0 || k == 3) ? mine : theirs
                    let segments = (n + segmentFloats - 1) / segmentFloats
                    total += segments
                    most = max(most, segments)
                    largest = max(largest, min(n, segmentFloats))
                }
                if k == 1 || k == 3 { rounds.append(most) }   // (per bucket: reduce sends, then gather sends)
            }
        }
        base.append(total)
        slotBase = base
        // rounds was appended per bucket as [reduce, gather]; units are 2b (gather), 2b + 1 (reduce).
        var unitRounds = [Int](repeating: 0, count: 2 * buckets)
        for b in 0..<buckets {
            unitRounds[2 * b + 1] = rounds[2 * b]
            unitRounds[2 * b] = rounds[2 * b + 1]
        }
        self.rounds = unitRounds
        cursor = .allocate(capacity: max(1, 2 * buckets))
        cursor.initialize(repeating: -1, count: max(1, 2 * buckets))
        source = .allocate(capacity: max(1, 2 * buckets))
        source.initialize(repeating: nil, count: max(1, 2 * buckets))
        inFlight = .allocate(capacity: sendsInFlight)
        inFlight.initialize(repeating: 0, count: sendsInFlight)
        transport.reserve(slots: max(1, total), largest: largest)
        // Bucket b's messages carry the tags 2b and 2b + 1 (ExchangeLayout.maximumBuckets keeps them
        // under the 32767 every MPI accepts). Consecutive steps and the segments of one transfer
        // reuse them safely: MPI matches messages of one source, tag and communicator in the order
        // they were sent, and receives in the order they were posted.
        precondition(2 * buckets - 1 <= transport.tagUpperBound,
                     "ShardedExchange: \(buckets) buckets need tags up to \(2 * buckets - 1); the transport allows \(transport.tagUpperBound)")
    }

    deinit {
        staging.deallocate()
        leaves.deallocate()
        cursor.deallocate()
        source.deallocate()
        inFlight.deallocate()
    }

    @inline(__always) func slots(_ b: Int, _ kind: Int) -> Range<Int> {
        slotBase[(4 * b + kind) * ranks]..<slotBase[(4 * b + kind + 1) * ranks]
    }
    @inline(__always) func block(_ b: Int, _ q: Int) -> UnsafeMutablePointer<Float> {
        staging + ranks * ownedOffsets[b] + q * owned[b].count
    }

    /// Posts the receives of `count` floats from `q` into `values`, one per segment, from `slot` on.
    func receive(_ values: UnsafeMutablePointer<Float>, count: Int, from q: Int, tag: Int32, slot: Int) {
        var offset = 0, s = slot
        while offset < count {
            let n = min(segmentFloats, count - offset)
            transport.startReceive(values + offset, count: n, from: q, tag: tag, slot: s)
            offset += n
            s += 1
        }
    }

    /// Queues unit u's sends (from `values`).
    func queue(_ u: Int, from values: UnsafePointer<Float>) {
        guard rounds[u] > 0 else { return }
        cursor[u] = 0
        source[u] = values
        unposted += 1
        top = max(top, u)
        progress()
    }

    /// Starts bucket b's reduce-scatter: `partial` holds this rank's partial sums of the whole buffer.
    public func startReduce(_ b: Int, partial: UnsafePointer<Float>) {
        let mine = owned[b]
        for q in 0..<ranks where q != rank && !mine.isEmpty {
            receive(block(b, q), count: mine.count, from: q, tag: Int32(2 * b), slot: slotBase[(4 * b) * ranks + q])
        }
        queue(2 * b + 1, from: partial)
    }

    /// Starts bucket b's all-gather of `values`: sends our piece, receives every other rank's piece in place.
    public func startGather(_ b: Int, values: UnsafeMutablePointer<Float>) {
        for q in 0..<ranks where q != rank {
            let theirs = layout.piece(b, rank: q)
            if !theirs.isEmpty {
                receive(values + theirs.lowerBound, count: theirs.count, from: q, tag: Int32(2 * b + 1),
                        slot: slotBase[(4 * b + 2) * ranks + q])
            }
        }
        queue(2 * b, from: UnsafePointer(values))
    }

    /// Completes posted sends and posts queued ones, most urgent first, up to `sendsInFlight`.
    /// Call it while waiting (the exchange thread does on every poll). Whether a send completed or
    /// was posted.
    @discardableResult
    public func progress() -> Bool {
        var moved = false
        var i = 0
        while i < inFlightCount {
            let s = inFlight[i]
            if transport.test(s..<(s + 1)) {
                inFlightCount -= 1
                inFlight[i] = inFlight[inFlightCount]
                moved = true
            } else {
                i += 1
            }
        }
        while inFlightCount < sendsInFlight && top >= 0 {
            let u = top
            guard cursor[u] >= 0, cursor[u] < rounds[u] * ranks else {
                top -= 1
                continue
            }
            postNext(u)
            moved = true
        }
        return moved
    }

    /// Whether some started unit still has sends to post.
    public var sendsQueued: Bool { unposted > 0 }

    /// Whether some send is posted and not complete, or still to be posted.
    public var hasSendsOutstanding: Bool { inFlightCount > 0 || unposted > 0 }

    /// Posts unit u's next segment (one to one peer) and advances its cursor past peers without one.
    func postNext(_ u: Int) {
        let b = u / 2, reduce = u % 2 == 1
        let kind = reduce ? 1 : 3
        var c = cursor[u]
        let end = rounds[u] * ranks
        while c < end {
            let j = c / ranks, q = c % ranks
            c += 1
            guard q != rank else { continue }
            let range = reduce ? layout.piece(b, rank: q) : owned[b]
            let offset = j * segmentFloats
            guard offset < range.count else { continue }
            let n = min(segmentFloats, range.count - offset)
            let slot = slotBase[(4 * b + kind) * ranks + q] + j
            transport.startSend(source[u]! + range.lowerBound + offset, count: n, to: q, tag: Int32(reduce ? 2 * b : 2 * b + 1), slot: slot)
            floatsSent += n
            messagesSent += 1
            inFlight[inFlightCount] = slot
            inFlightCount += 1
            break
        }
        // Skip ahead over peers with nothing left, so a finished unit is seen as finished.
        while c < end {
            let j = c / ranks, q = c % ranks
            let range = reduce ? layout.piece(b, rank: q) : owned[b]
            if q != rank && j * segmentFloats < range.count { break }
            c += 1
        }
        cursor[u] = c
        if c == end { unposted -= 1 }
    }

    /// Whether unit u's sends have all been posted (or it has none).
    @inline(__always) func posted(_ u: Int) -> Bool { rounds[u] == 0 || cursor[u] == rounds[u] * ranks }

    /// Whether the other ranks' partial sums of our piece of bucket b have arrived.
    public func reduceArrived(_ b: Int) -> Bool { transport.test(slots(b, 0)) }

    /// Whether our partial sums of bucket b have been sent (their buffer may then change).
    public func reduceSent(_ b: Int) -> Bool { posted(2 * b + 1) && transport.test(slots(b, 1)) }

    /// gradients[owned[b]] = the pairwise tree over the ranks' partial sums of our piece of bucket
    /// b, rank order (ours is read from `partial`, which it overwrites).
    public func combine(_ b: Int, partial: UnsafeMutablePointer<Float>, into gradients: UnsafeMutablePointer<Float>) {
        let mine = owned[b]
        guard !mine.isEmpty else { return }
        for q in 0..<ranks { leaves[q] = q == rank ? partial + mine.lowerBound : block(b, q) }
        pairwiseSumInPlace(leaves, n: ranks, count: mine.count)
        (gradients + mine.lowerBound).update(from: leaves[0], count: mine.count)
    }

    /// Whether every other rank's piece of bucket b has arrived.
    public func gatherArrived(_ b: Int) -> Bool { transport.test(slots(b, 2)) }

    /// Posts every queued send and waits for every transfer of the step (the sends too), so the
    /// buffers may be reused; the units start over.
    public func finish() {
        while unposted > 0 { progress() }
        transport.wait(0..<slotBase[slotBase.count - 1])
        inFlightCount = 0
        top = -1
        cursor.update(repeating: -1, count: max(1, 2 * layout.bucketCount))
    }

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
