// Runs the sharded exchange of each training step on a thread of its own, so that a bucket's
// transfers start as soon as the local shards have finished backward through its layers and
// progress while the workers compute (the rest of backward, then the next step's forward, which
// waits per bucket for the weights it needs), without the workers ever calling MPI.
import CPTSupport
#if canImport(Glibc)
import Glibc
#endif

/// The exchange thread of one rank and the flags the workers and it meet on. Training step g:
/// 1. the main thread calls `beginStep()` before the workers start (step g's generation is g);
/// 2. each worker, before the forward of the layers of bucket b, calls `awaitWeights(b, worker:)`:
///    it returns once step g-1's exchange has left bucket b's weights final (at once when that
///    exchange has been drained, or with `overlapsForward` off). So step g-1's all-gather goes on
///    while step g's forward runs: the first layers (the last bucket) arrive first;
/// 3. each worker, after backward of one local shard through the layers of bucket b, calls
///    `shardFinished(bucket: b)`; the call that completes the bucket (all local shards done)
///    returns true. The bucket's in-node sum (the tree over the local shards, into `partial`) is
///    then done in chunks: that worker, and workers that have finished their shards, take chunks
///    with `claimChunk(b)` and report each with `chunkReduced(b)`; the last chunk marks the bucket
///    reduced (or, unchunked, one caller reduces it all and calls `bucketReduced(b)`);
/// 4. the exchange thread starts a bucket's reduce-scatter as soon as it is reduced, combines our
///    piece when the other ranks' partials have arrived, lets `update` (the optimizer) change our
///    piece of the weights, and all-gathers the bucket's weights; once they have arrived (and our
///    sends of the bucket's partials have completed, so `partial` may be overwritten) it marks the
///    bucket's weights ready for generation g;
/// 5. whoever needs the whole state between steps (evaluation, checkpoints, the end of a run, the
///    benchmark's figures) calls `drain()`, which returns when the last step's exchange is complete.
///    Without `overlapsForward`, worker 0 drains at the end of each step instead (step 2 then
///    never waits).
/// Step g+1 may start while step g's exchange runs, but never before step g's workers are done;
/// the flags the exchange thread reads (bucket reduced) and writes (weights ready) hold a
/// generation rather than being reset, and the thread runs the generations in order. Flags are
/// atomics on their own cache lines, waits spin briefly and then sleep on a futex: no locks, no
/// allocation per step. Only the exchange thread calls the transport during a step; the main
/// thread's collectives (on another communicator) may run at the same time, which MPI allows
/// with MPI_THREAD_MULTIPLE (see `Communicator.allowsCollectivesDuringExchange`).
public final class OverlappedExchange: @unchecked Sendable {
    public let exchange: ShardedExchange
    let buckets: Int
    let localShards: UInt32
    let workers: Int
    let partial: UnsafeMutablePointer<Float>
    let gradients: UnsafeMutablePointer<Float>
    let weights: UnsafeMutablePointer<Float>
    let update: (_ bucket: Int, _ generation: UInt32) -> Void
    /// Whether a step's exchange may run on into the next step's forward (otherwise worker 0
    /// drains it at the end of the step).
    public let overlapsForward: Bool
    /// Words 16 apart (64 bytes): 0 generation requested, 1 generation done, 2 shutdown, 3 workers
    /// asleep in `awaitWeights`, 4 + b finished shards of bucket b, 4 + B + b generation of bucket
    /// b's reduced partial, 4 + 2B + b chunks of bucket b claimed, 4 + 3B + b chunks of bucket b
    /// reduced, 4 + 4B + b generation of bucket b's final weights, 4 + 5B buckets reduced (a count
    /// the exchange thread sleeps on while it has nothing to move), 5 + 5B whether it sleeps so.
    let words: UnsafeMutablePointer<UInt32>
    /// Nanoseconds each worker waited in `awaitWeights` (8 words apart), then the drains' total.
    let waits: UnsafeMutablePointer<UInt64>
    let phase: UnsafeMutablePointer<UInt8>
    var thread: pthread_t? = nil
    /// The last generation requested (main thread).
    public private(set) var generation: UInt32 = 0
    /// The generation whose weights the running step's forward waits for (set by `beginStep`).
    var awaited: UInt32 = 0
    /// Sleep after a poll of the transfers that moved nothing, when the one before moved something.
    public var pollNanoseconds = 20_000
    /// The longest sleep between polls: after each poll in which nothing moved the sleep doubles,
    /// up to this (each poll costs the workers' core time; a slow link needs few polls).
    public var maxPollNanoseconds = 80_000
    /// Summed over steps by the exchange thread: from the first bucket's start to the last
    /// bucket's arrival. Read it after `drain()`.
    public private(set) var exchangeNanoseconds: UInt64 = 0

    /// - Parameters:
    ///   - workers: the workers that may call `awaitWeights` (0 ..< workers).
    ///   - partial: where the workers leave this rank's partial sums (whole buffer).
    ///   - gradients: where `combine` puts our pieces' full sums.
    ///   - weights: the parameters, all-gathered bucket by bucket after `update`.
    ///   - overlapsForward: let the exchange run on into the next step's forward.
    ///   - update: runs on the exchange thread for bucket b of the step of generation g (the
    ///     `generation` that `beginStep` made) after its combine, before its all-gather.
    public init(exchange: ShardedExchange, localShards: Int, workers: Int, partial: UnsafeMutablePointer<Float>,
                gradients: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>, overlapsForward: Bool,
                update: @escaping (_ bucket: Int, _ generation: UInt32) -> Void) {
        self.exchange = exchange
        buckets = exchange.layout.bucketCount
        self.localShards = UInt32(localShards)
        self.workers = max(1, workers)
        self.partial = partial
        self.gradients = gradients
        self.weights = weights
        self.overlapsForward = overlapsForward
        self.update = update
        words = .allocate(capacity: 16 * (6 + 5 * buckets))
        words.initialize(repeating: 0, count: 16 * (6 + 5 * buckets))
        waits = .allocate(capacity: 8 * (self.workers + 1))
        waits.initialize(repeating: 0, count: 8 * (self.workers + 1))
        phase = .allocate(capacity: max(1, buckets))
        phase.initialize(repeating: 0, count: max(1, buckets))
        let context = Unmanaged.passUnretained(self).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(&handle, nil, { raw in
            Unmanaged<OverlappedExchange>.fromOpaque(raw!).takeUnretainedValue().loop()
            return nil
        }, context)
        precondition(status == 0, "cannot start the exchange thread")
        thread = handle
    }

    /// Completes the last step's exchange, then stops the thread (between steps).
    public func shutdown() {
        guard let thread else { return }
        drain()
        pt_atomic_store_seqcst_u32(word(2), 1)
        pt_atomic_fetch_add_seqcst_u32(word(0), 1)
        _ = pt_futex_wake(word(0), 1)
        pthread_join(thread, nil)
        self.thread = nil
    }

    deinit {
        shutdown()
        words.deallocate()
        waits.deallocate()
        phase.deallocate()
    }

    @inline(__always) func word(_ i: Int) -> UnsafeMutablePointer<UInt32> { words + 16 * i }
    @inline(__always) func finishedWord(_ b: Int) -> UnsafeMutablePointer<UInt32> { word(4 + b) }
    @inline(__always) func reducedWord(_ b: Int) -> UnsafeMutablePointer<UInt32> { word(4 + buckets + b) }
    @inline(__always) func claimedWord(_ b: Int) -> UnsafeMutablePointer<UInt32> { word(4 + 2 * buckets + b) }
    @inline(__always) func chunksDoneWord(_ b: Int) -> UnsafeMutablePointer<UInt32> { word(4 + 3 * buckets + b) }
    @inline(__always) func readyWord(_ b: Int) -> UnsafeMutablePointer<UInt32> { word(4 + 4 * buckets + b) }
    @inline(__always) var reductionsWord: UnsafeMutablePointer<UInt32> { word(4 + 5 * buckets) }
    @inline(__always) var idleWord: UnsafeMutablePointer<UInt32> { word(5 + 5 * buckets) }

    /// Main thread, before the workers start a training step (the previous step's workers are
    /// done; its exchange may still run).
    public func beginStep() {
        for b in 0..<buckets {
            pt_atomic_store_relaxed_u32(finishedWord(b), 0)
            pt_atomic_store_relaxed_u32(claimedWord(b), 0)
            pt_atomic_store_relaxed_u32(chunksDoneWord(b), 0)
        }
        awaited = generation
        generation &+= 1
        pt_atomic_store_seqcst_u32(word(0), generation)
        _ = pt_futex_wake(word(0), 1)
    }

    /// Worker `worker`, before the forward of bucket b's layers in a training step: returns when the
    /// previous step's weights of bucket b are final (the time spent waiting is exposed exchange).
    @inline(__always) public func awaitWeights(_ b: Int, worker: Int) {
        if pt_atomic_load_acquire_u32(readyWord(b)) == awaited { return }
        let t0 = monotonicNanoseconds()
        var spins = 0
        while true {
            let seen = pt_atomic_load_acquire_u32(readyWord(b))
            if seen == awaited { break }
            if spins < 2000 {
                spins += 1
                pt_cpu_relax()
            } else {
                // Announce the sleep before re-checking (both sequentially consistent, as are the
                // exchange thread's flag store and its look at this count): no lost wake-up.
                pt_atomic_fetch_add_seqcst_u32(word(3), 1)
                if pt_atomic_load_seqcst_u32(readyWord(b)) == seen { _ = pt_futex_wait(readyWord(b), seen) }
                pt_atomic_fetch_sub_seqcst_u32(word(3), 1)
            }
        }
        waits[8 * worker] &+= monotonicNanoseconds() - t0
    }

    /// Nanoseconds worker `worker` has waited in `awaitWeights` (its own counter; read by it, or
    /// by anyone after the step).
    @inline(__always) public func forwardWaitNanoseconds(worker: Int) -> UInt64 { waits[8 * worker] }

    /// Nanoseconds spent in `drain()` (the end-of-step waits without `overlapsForward`, and the
    /// drains between steps).
    public var drainNanoseconds: UInt64 { waits[8 * workers] }

    /// A worker finished backward of one local shard through bucket b's layers. True for the call
    /// that completes the bucket: the caller must then reduce it and call `bucketReduced(b)`.
    @inline(__always) public func shardFinished(bucket b: Int) -> Bool {
        pt_atomic_fetch_add_acqrel_u32(finishedWord(b), 1) + 1 == localShards
    }

    /// Floats per chunk of the in-node sum.
    public static let chunkFloats = 1 << 16

    @inline(__always) func chunkCount(_ b: Int) -> UInt32 {
        UInt32(max(1, (exchange.layout.buckets[b].count + Self.chunkFloats - 1) / Self.chunkFloats))
    }

    /// Whether every local shard has finished backward through bucket b.
    @inline(__always) public func bucketReady(_ b: Int) -> Bool {
        pt_atomic_load_acquire_u32(finishedWord(b)) == localShards
    }

    /// The next unclaimed chunk (floats of the flat buffer) of a ready bucket b, or nil.
    @inline(__always) public func claimChunk(_ b: Int) -> Range<Int>? {
        let c = pt_atomic_fetch_add_acqrel_u32(claimedWord(b), 1)
        guard c < chunkCount(b) else { return nil }
        let range = exchange.layout.buckets[b]
        let lo = range.lowerBound + Int(c) * Self.chunkFloats
        return lo..<min(range.upperBound, lo + Self.chunkFloats)
    }

    /// A claimed chunk of bucket b is reduced; the last one marks the bucket reduced.
    @inline(__always) public func chunkReduced(_ b: Int) {
        if pt_atomic_fetch_add_acqrel_u32(chunksDoneWord(b), 1) + 1 == chunkCount(b) { bucketReduced(b) }
    }

    /// The in-node sum of bucket b is in `partial`.
    @inline(__always) public func bucketReduced(_ b: Int) {
        pt_atomic_store_release_u32(reducedWord(b), generation)
        // Wake the exchange thread if it sleeps for want of work (see `sleepUntilReduced`).
        pt_atomic_fetch_add_seqcst_u32(reductionsWord, 1)
        if pt_atomic_load_seqcst_u32(idleWord) != 0 { _ = pt_futex_wake(reductionsWord, 1) }
    }

    /// Returns when the exchange of the last step begun is complete (weights, optimizer state and
    /// `partial` final, every transfer done). Worker 0 at the end of a step without
    /// `overlapsForward`, or the main thread between steps.
    public func drain() {
        if pt_atomic_load_acquire_u32(word(1)) == generation { return }
        let t0 = monotonicNanoseconds()
        var spins = 0
        while true {
            let done = pt_atomic_load_acquire_u32(word(1))
            if done == generation { break }
            if spins < 2000 {
                spins += 1
                pt_cpu_relax()
            } else {
                _ = pt_futex_wait(word(1), done)
            }
        }
        waits[8 * workers] &+= monotonicNanoseconds() - t0
    }

    /// Whether the last step's exchange is complete.
    public var isDrained: Bool { pt_atomic_load_acquire_u32(word(1)) == generation }

    func loop() {
        var seen: UInt32 = 0
        while true {
            var current = pt_atomic_load_acquire_u32(word(0))
            while current == seen {
                _ = pt_futex_wait(word(0), current)
                current = pt_atomic_load_acquire_u32(word(0))
            }
            if pt_atomic_load_seqcst_u32(word(2)) != 0 { return }
            // The generations in order (the main thread may be one ahead when this one finishes).
            seen &+= 1
            runStep(seen)
            pt_atomic_store_seqcst_u32(word(1), seen)
            _ = pt_futex_wake(word(1), Int32.max)
        }
    }

    func runStep(_ g: UInt32) {
        phase.update(repeating: 0, count: buckets)
        var remaining = buckets
        var started: UInt64 = 0
        var pause = timespec(tv_sec: 0, tv_nsec: pollNanoseconds)
        while remaining > 0 || exchange.sendsQueued {
            var moved = exchange.progress()
            var waiting = true   // every unfinished bucket waits for its in-node sum
            for b in 0..<buckets {
                switch phase[b] {
                case 0:
                    guard pt_atomic_load_acquire_u32(reducedWord(b)) == g else { continue }
                    waiting = false
                    if started == 0 { started = monotonicNanoseconds() }
                    exchange.startReduce(b, partial: partial)
                    phase[b] = 1
                    moved = true
                case 1:
                    waiting = false
                    guard exchange.reduceArrived(b) else { continue }
                    exchange.combine(b, partial: partial, into: gradients)
                    update(b, g)
                    exchange.startGather(b, values: weights)
                    phase[b] = 2
                    moved = true
                case 2:
                    waiting = false
                    guard exchange.gatherArrived(b), exchange.reduceSent(b) else { continue }
                    pt_atomic_store_seqcst_u32(readyWord(b), g)
                    if pt_atomic_load_seqcst_u32(word(3)) != 0 { _ = pt_futex_wake(readyWord(b), Int32.max) }
                    phase[b] = 3
                    remaining -= 1
                    moved = true
                default:
                    continue
                }
            }
            if moved {
                pause.tv_nsec = pollNanoseconds
            } else if waiting && !exchange.hasSendsOutstanding {
                // Nothing on the wire and no bucket to start: sleep until the workers reduce one,
                // instead of polling through the forward and backward.
                sleepUntilReduced(g)
                pause.tv_nsec = pollNanoseconds
            } else {
                nanosleep(&pause, nil)
                pause.tv_nsec = min(2 * pause.tv_nsec, maxPollNanoseconds)
            }
        }
        exchange.finish()
        let end = monotonicNanoseconds()
        exchangeNanoseconds &+= end - min(started, end)
    }

    /// Exchange thread: sleeps until some bucket's in-node sum of generation g may be ready. The
    /// sleep is announced before the buckets are looked at again, and `bucketReduced` counts
    /// before it looks at the announcement (all sequentially consistent): no lost wake-up.
    func sleepUntilReduced(_ g: UInt32) {
        let seen = pt_atomic_load_seqcst_u32(reductionsWord)
        pt_atomic_store_seqcst_u32(idleWord, 1)
        let ready = (0..<buckets).contains { phase[$0] == 0 && pt_atomic_load_seqcst_u32(reducedWord($0)) == g }
        if !ready { _ = pt_futex_wait(reductionsWord, seen) }
        pt_atomic_store_seqcst_u32(idleWord, 0)
    }

    /// Zeroes the times (between steps; drains first so the exchange thread is not adding to them).
    public func resetTimes() {
        drain()
        exchangeNanoseconds = 0
        waits.update(repeating: 0, count: 8 * (workers + 1))
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
