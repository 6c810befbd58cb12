// Runs the sharded exchange of each training step on a thread of its own, so that a bucket's
// transfers start as soon as the local shards have finished backward through its layers and
// progress while the workers compute, without the workers ever calling MPI.
import CPTSupport
#if canImport(Glibc)
import Glibc
#endif

/// The exchange thread of one rank and the flags the workers and it meet on. One step:
/// 1. the main thread calls `beginStep()` before the workers start;
/// 2. each worker, after backward of one local shard through the layers of bucket b, calls
///    `shardFinished(bucket: b)`; the call that completes the bucket (all local shards done)
///    returns true. The bucket's in-node sum (the tree over the local shards, into `partial`) is
///    then done in chunks: that worker, and workers that have finished their shards, take chunks
///    with `claimChunk(b)` and report each with `chunkReduced(b)`; the last chunk marks the bucket
///    reduced (or, unchunked, one caller reduces it all and calls `bucketReduced(b)`);
/// 3. the exchange thread starts a bucket's reduce-scatter as soon as it is reduced, combines our
///    piece when the other ranks' partials have arrived, lets `update` (the optimizer) change our
///    piece of the weights, and all-gathers the bucket's weights;
/// 4. worker 0 calls `waitStep()` when its shards are done; it returns when every bucket's
///    weights have arrived.
/// Flags are atomics on their own cache lines, waits spin briefly and then sleep on a futex: no
/// locks, no allocation per step. Only the exchange thread calls the transport during a step
/// (MPI_THREAD_SERIALIZED).
public final class OverlappedExchange: @unchecked Sendable {
    public let exchange: ShardedExchange
    let buckets: Int
    let localShards: UInt32
    let partial: UnsafeMutablePointer<Float>
    let gradients: UnsafeMutablePointer<Float>
    let weights: UnsafeMutablePointer<Float>
    let update: (Int) -> Void
    /// Words 16 apart (64 bytes): 0 generation, 1 done, 2 shutdown, 3 + b finished shards of
    /// bucket b, 3 + B + b bucket b reduced, 3 + 2B + b chunks of bucket b claimed, 3 + 3B + b
    /// chunks of bucket b reduced.
    let words: UnsafeMutablePointer<UInt32>
    /// When each bucket was reduced (written by the reducing worker before its flag).
    let reducedAt: UnsafeMutablePointer<UInt64>
    let phase: UnsafeMutablePointer<UInt8>
    var thread: pthread_t? = nil
    var generation: UInt32 = 0
    /// Sleep between polls of the transfers when nothing moved.
    public var pollNanoseconds = 20_000
    /// Summed over steps: from the first bucket's start to the last bucket's arrival, and the part
    /// of that after the last bucket was reduced (after the last backward: exposed).
    public private(set) var exchangeNanoseconds: UInt64 = 0
    public private(set) var exposedNanoseconds: UInt64 = 0

    /// - Parameters:
    ///   - partial: where the workers leave this rank's partial sums (whole buffer).
    ///   - gradients: where `combine` puts our pieces' full sums.
    ///   - weights: the parameters, all-gathered bucket by bucket after `update`.
    ///   - update: runs on the exchange thread for bucket b after its combine, before its all-gather.
    public init(exchange: ShardedExchange, localShards: Int, partial: UnsafeMutablePointer<Float>,
                gradients: UnsafeMutablePointer<Float>, weights: UnsafeMutablePointer<Float>, update: @escaping (Int) -> Void) {
        self.exchange = exchange
        buckets = exchange.layout.bucketCount
        self.localShards = UInt32(localShards)
        self.partial = partial
        self.gradients = gradients
        self.weights = weights
        self.update = update
        words = .allocate(capacity: 16 * (3 + 4 * buckets))
        words.initialize(repeating: 0, count: 16 * (3 + 4 * buckets))
        reducedAt = .allocate(capacity: max(1, buckets))
        reducedAt.initialize(repeating: 0, count: max(1, buckets))
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

    /// Stops the thread (between steps).
    public func shutdown() {
        guard let thread else { return }
        pt_atomic_store_seqcst_u32(word(2), 1)
        pt_atomic_fetch_add_seqcst_u32(word(0), 1)
        _ = pt_futex_wake(word(0), 1)
        pthread_join(thread, nil)
        self.thread = nil
    }

    deinit {
        shutdown()
        words.deallocate()
        reducedAt.deallocate()
        phase.deallocate()
    }

    @inline(__always) func word(_ i: Int) -> UnsafeMutablePointer<UInt32> { words + 16 * i }

    /// Main thread, before the workers start a training step.
    public func beginStep() {
        for b in 0..<buckets {
            pt_atomic_store_relaxed_u32(word(3 + b), 0)
            pt_atomic_store_relaxed_u32(word(3 + buckets + b), 0)
            pt_atomic_store_relaxed_u32(word(3 + 2 * buckets + b), 0)
            pt_atomic_store_relaxed_u32(word(3 + 3 * buckets + b), 0)
        }
        generation &+= 1
        pt_atomic_store_seqcst_u32(word(0), generation)
        _ = pt_futex_wake(word(0), 1)
    }

    /// A worker finished backward of one local shard through bucket b's layers. True for the call
    /// that completes the bucket: the caller must then reduce it and call `bucketReduced(b)`.
    @inline(__always) public func shardFinished(bucket b: Int) -> Bool {
        pt_atomic_fetch_add_acqrel_u32(word(3 + b), 1) + 1 == localShards
    }

    /// Floats per chunk of the in-node sum.
    public static let chunkFloats = 1 << 16

    @inline(__always) func chunkCount(_ b: Int) -> UInt32 {
        UInt32(max(1, (exchange.layout.buckets[b].count + Self.chunkFloats - 1) / Self.chunkFloats))
    }

    /// Whether every local shard has finished backward through bucket b.
    @inline(__always) public func bucketReady(_ b: Int) -> Bool {
        pt_atomic_load_acquire_u32(word(3 + b)) == localShards
    }

    /// The next unclaimed chunk (floats of the flat buffer) of a ready bucket b, or nil.
    @inline(__always) public func claimChunk(_ b: Int) -> Range<Int>? {
        let c = pt_atomic_fetch_add_acqrel_u32(word(3 + 2 * buckets + b), 1)
        guard c < chunkCount(b) else { return nil }
        let range = exchange.layout.buckets[b]
        let lo = range.lowerBound + Int(c) * Self.chunkFloats
        return lo..<min(range.upperBound, lo + Self.chunkFloats)
    }

    /// A claimed chunk of bucket b is reduced; the last one marks the bucket reduced.
    @inline(__always) public func chunkReduced(_ b: Int) {
        if pt_atomic_fetch_add_acqrel_u32(word(3 + 3 * buckets + b), 1) + 1 == chunkCount(b) { bucketReduced(b) }
    }

    /// The in-node sum of bucket b is in `partial`.
    @inline(__always) public func bucketReduced(_ b: Int) {
        reducedAt[b] = monotonicNanoseconds()
        pt_atomic_store_release_u32(word(3 + buckets + b), 1)
    }

    /// Worker 0, after its shards: returns when the step's exchange is complete.
    public func waitStep() {
        var spins = 0
        while true {
            let done = pt_atomic_load_acquire_u32(word(1))
            if done == generation { return }
            if spins < 2000 {
                spins += 1
                pt_cpu_relax()
            } else {
                _ = pt_futex_wait(word(1), done)
            }
        }
    }

    func loop() {
        var seen: UInt32 = 0
        while true {
            var current = pt_atomic_load_acquire_u32(word(0))
            while current == seen {
                _ = pt_futex_wait(word(0), current)
                current = pt_atomic_load_acquire_u32(word(0))
            }
            if pt_atomic_load_seqcst_u32(word(2)) != 0 { return }
            seen = current
            runStep()
            pt_atomic_store_seqcst_u32(word(1), seen)
            _ = pt_futex_wake(word(1), 1)
        }
    }

    func runStep() {
        phase.update(repeating: 0, count: buckets)
        var remaining = buckets
        var started: UInt64 = 0
        var pause = timespec(tv_sec: 0, tv_nsec: pollNanoseconds)
        while remaining > 0 {
            var moved = false
            for b in 0..<buckets {
                switch phase[b] {
                case 0:
                    guard pt_atomic_load_acquire_u32(word(3 + buckets + b)) != 0 else { continue }
                    if started == 0 { started = monotonicNanoseconds() }
                    exchange.startReduce(b, partial: partial)
                    phase[b] = 1
                    moved = true
                case 1:
                    guard exchange.reduceArrived(b) else { continue }
                    exchange.combine(b, partial: partial, into: gradients)
                    update(b)
                    exchange.startGather(b, values: weights)
                    phase[b] = 2
                    moved = true
                case 2:
                    guard exchange.gatherArrived(b) else { continue }
                    phase[b] = 3
                    remaining -= 1
                    moved = true
                default:
                    continue
                }
            }
            if !moved {
                pause.tv_nsec = pollNanoseconds
                nanosleep(&pause, nil)
            }
        }
        exchange.finish()
        let end = monotonicNanoseconds()
        var lastReduced: UInt64 = 0
        for b in 0..<buckets { lastReduced = max(lastReduced, reducedAt[b]) }
        exchangeNanoseconds &+= end - min(started, end)
        exposedNanoseconds &+= end - min(lastReduced, end)
    }

    public func resetTimes() {
        exchangeNanoseconds = 0
        exposedNanoseconds = 0
    }
}

/// CLOCK_MONOTONIC in nanoseconds.
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
