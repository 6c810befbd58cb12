// The sharded exchange's layout, its fixed-order reduction and its thread, over an in-process
// transport (one thread per rank).
import Foundation
import XCTest
import PTDistributed
import PTTensor

/// The seed of these tests' random inputs: PTRAIN_TEST_SEED when set, else a fixed one. Every
/// comparison of results names it, so a failure can be replayed with the same inputs.
let testSeed: UInt64 = ProcessInfo.processInfo.environment["PTRAIN_TEST_SEED"].flatMap { UInt64($0) } ?? 0x5EED_19
let replay = "seed \(testSeed) (PTRAIN_TEST_SEED=\(testSeed) replays it)"

final class ShardedExchangeTests: XCTestCase {
    /// Layer starts of a made-up model: counts per layer (0: no parameters), each tensor 16-aligned.
    func starts(_ counts: [Int]) -> [Int] {
        var s: [Int] = [], offset = 0
        for c in counts { s.append(offset); offset += (c + 15) / 16 * 16 }
        return s + [offset]
    }

    func testLayoutCoversEveryLayerAndFloatInBackwardOrder() {
        let models = [[80, 0, 0, 1168, 0, 0, 0, 8224, 0, 66], [0, 0, 500, 0], [10], [0, 3000, 0, 0, 7000, 0], [5, 5, 5, 5, 5, 5, 5, 5]]
        for counts in models {
            let s = starts(counts)
            for ranks in 1...8 {
                for bucketFloats in [1, 16, 100, 1000, 1 << 20] {
                    let layout = ExchangeLayout(layerStarts: s, ranks: ranks, bucketFloats: bucketFloats)
                    let p = s.last!
                    // Buckets: descending, contiguous, covering [0, P) and every layer.
                    var top = p, topLayer = counts.count
                    for b in 0..<layout.bucketCount {
                        XCTAssertEqual(layout.buckets[b].upperBound, top)
                        XCTAssertEqual(layout.endLayer[b], topLayer)
                        XCTAssertLessThan(layout.firstLayer[b], layout.endLayer[b])
                        XCTAssertEqual(layout.buckets[b].lowerBound, s[layout.firstLayer[b]])
                        if b + 1 < layout.bucketCount || bucketFloats <= p {
                            XCTAssertTrue(layout.buckets[b].count >= min(bucketFloats, p) || b == layout.bucketCount - 1)
                        }
                        top = layout.buckets[b].lowerBound
                        topLayer = layout.firstLayer[b]
                    }
                    XCTAssertEqual(top, 0)
                    XCTAssertEqual(topLayer, 0)
                    // Pieces: a partition of each bucket in rank order, sizes within one float.
                    for b in 0..<layout.bucketCount {
                        var at = layout.buckets[b].lowerBound
                        let sizes = (0..<ranks).map { layout.piece(b, rank: $0).count }
                        for q in 0..<ranks {
                            XCTAssertEqual(layout.piece(b, rank: q).lowerBound, at)
                            at = layout.piece(b, rank: q).upperBound
                        }
                        XCTAssertEqual(at, layout.buckets[b].upperBound)
                        XCTAssertLessThanOrEqual(sizes.max()! - sizes.min()!, 1)
                    }
                    // Floats sent per step: 2 (R-1)/R P, up to one float per bucket and peer.
                    let ideal = 2.0 * Double(ranks - 1) / Double(ranks) * Double(p)
                    for q in 0..<ranks {
                        XCTAssertLessThanOrEqual(abs(Double(layout.floatsSent(rank: q)) - ideal), Double(2 * ranks * layout.bucketCount))
                    }
                    XCTAssertEqual((0..<ranks).reduce(0) { $0 + layout.ownedCount(rank: $1) }, p)
                }
            }
        }
    }

    /// The tree of `pairwiseSumInPlace`, written recursively: split at the largest power of two below n.
    func tree(_ leaves: ArraySlice<Float>) -> Float {
        if leaves.count == 1 { return leaves.first! }
        var half = 1
        while half * 2 < leaves.count { half *= 2 }
        let mid = leaves.startIndex + half
        return tree(leaves[leaves.startIndex..<mid]) + tree(leaves[mid...])
    }

    func testPairwiseSumIsTheFixedTree() {
        var rng = Xoshiro256(seed: testSeed)
        for n in 1...13 {
            let values = (0..<n).map { _ in Float.random(in: -1...1, using: &rng) * Float(1 << Int.random(in: 0...20, using: &rng)) }
            let buffers = values.map { v -> UnsafeMutablePointer<Float> in
                let p = UnsafeMutablePointer<Float>.allocate(capacity: 1); p.initialize(to: v); return p
            }
            defer { buffers.forEach { $0.deallocate() } }
            buffers.withUnsafeBufferPointer { pairwiseSumInPlace($0.baseAddress!, n: n, count: 1) }
            XCTAssertEqual(buffers[0].pointee.bitPattern, tree(values[...]).bitPattern, "n = \(n), \(replay)")
        }
    }

    /// Runs `body(rank)` on one thread per rank and waits for all.
    func onRanks(_ ranks: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for r in 0..<ranks {
            group.enter()
            Thread { body(r); group.leave() }.start()
        }
        XCTAssertEqual(group.wait(timeout: .now() + 60), .success, "ranks did not finish")
    }

    final class Box<T>: @unchecked Sendable { var value: T; init(_ v: T) { value = v } }

    /// Every rank ends with the same weights, equal bit for bit to the fixed tree over the ranks'
    /// partial sums followed by the update; each rank sends what the layout says, in messages of at
    /// most the segment size (whole pieces, or segments of 7 floats with one or three in flight).
    func testReduceScatterAndAllGatherEqualTheSerialTree() {
        let s = starts([80, 0, 1168, 0, 0, 4000, 0, 66])
        let p = s.last!
        for ranks in [2, 3, 4, 5, 8] {
            for (bucketFloats, segment, inFlight) in [(100, 1 << 16, 2), (1 << 20, 1 << 16, 2), (100, 7, 1), (1 << 20, 7, 3)] {
                let layout = ExchangeLayout(layerStarts: s, ranks: ranks, bucketFloats: bucketFloats)
                var rng = Xoshiro256(seed: testSeed)
                let partials = (0..<ranks).map { _ in (0..<p).map { _ in Float.random(in: -1...1, using: &rng) } }
                let start = (0..<p).map { _ in Float.random(in: -1...1, using: &rng) }
                let expected = (0..<p).map { i in start[i] - 0.5 * tree(partials.map { $0[i] }[...]) }
                let group = LoopbackGroup(size: ranks)
                let results = Box([[Float]](repeating: [], count: ranks))
                let sent = Box([Int](repeating: 0, count: ranks))
                let lock = NSLock()
                onRanks(ranks) { r in
                    let transport = group.endpoint(r)
                    let exchange = ShardedExchange(layout: layout, transport: transport, segmentFloats: segment, sendsInFlight: inFlight)
                    let partial = UnsafeMutablePointer<Float>.allocate(capacity: p)
                    let gradients = UnsafeMutablePointer<Float>.allocate(capacity: p)
                    let weights = UnsafeMutablePointer<Float>.allocate(capacity: p)
                    defer { partial.deallocate(); gradients.deallocate(); weights.deallocate() }
                    partial.initialize(from: partials[r], count: p)
                    weights.initialize(from: start, count: p)
                    // Buckets in reverse order on odd ranks: the order of starts does not matter.
                    let order = r % 2 == 0 ? Array(0..<layout.bucketCount) : Array((0..<layout.bucketCount).reversed())
                    for b in order { exchange.startReduce(b, partial: partial) }
                    for b in order {
                        while !exchange.reduceArrived(b) { exchange.progress(); usleep(20) }
                        exchange.combine(b, partial: partial, into: gradients)
                        for i in exchange.owned[b] { weights[i] -= 0.5 * gradients[i] }
                        exchange.startGather(b, values: weights)
                    }
                    exchange.finish()
                    lock.lock()
                    results.value[r] = Array(UnsafeBufferPointer(start: weights, count: p))
                    sent.value[r] = exchange.floatsSent
                    lock.unlock()
                    XCTAssertEqual(exchange.floatsSent, transport.floatsPosted)
                    XCTAssertEqual(exchange.floatsSent, layout.floatsSent(rank: r))
                    XCTAssertEqual(exchange.messagesSent, layout.messagesSent(rank: r, segmentFloats: segment))
                    XCTAssertEqual(transport.largestPosted, min(segment, layout.buckets.map { ($0.count + ranks - 1) / ranks }.max()!),
                                   "no message above the segment size")
                }
                for r in 0..<ranks {
                    XCTAssertEqual(results.value[r].map(\.bitPattern), expected.map(\.bitPattern), "rank \(r) of \(ranks), \(replay)")
                }
            }
        }
    }

    /// The exchange thread with workers: 2 workers x 2 local shards per rank, 3 ranks, 4 steps;
    /// the result equals the fixed tree over all 6 shards (each rank's 2 shards are a subtree).
    /// One bucket spans several chunks, which both workers reduce. Each step's exchange runs on
    /// into the next step (`overlapsForward`): before it writes its shard's gradient a worker waits
    /// for every bucket, as the trainer's forward does, and each bucket it waited for must already
    /// hold that bucket's weights after the previous step, bit for bit. Without the overlap, worker
    /// 0 drains at the end of each step and the results are the same.
    func testOverlappedExchangeWithWorkersEqualsTheTreeOverAllShards() {
        let s = starts([80, 0, 1168, 0, 3 * OverlappedExchange.chunkFloats + 5, 66])
        let p = s.last!, ranks = 3, localShards = 2, steps = 4
        let layout = ExchangeLayout(layerStarts: s, ranks: ranks, bucketFloats: 1000)
        XCTAssertGreaterThan(layout.bucketCount, 1)
        var rng = Xoshiro256(seed: testSeed)
        // grads[step][shard][i]
        let grads = (0..<steps).map { _ in (0..<(ranks * localShards)).map { _ in (0..<p).map { _ in Float.random(in: -1...1, using: &rng) } } }
        var expected = (0..<p).map { _ in Float.random(in: -1...1, using: &rng) }
        let start = expected
        var afterStep: [[Float]] = []
        for step in 0..<steps {
            for i in 0..<p {
                // Rank subtrees first (as the ranks add), then the tree over the ranks.
                let perRank = (0..<ranks).map { r in tree(grads[step][(r * localShards)..<((r + 1) * localShards)].map { $0[i] }[...]) }
                expected[i] -= 0.25 * tree(perRank[...])
            }
            afterStep.append(expected)
        }
        let before = [start] + afterStep   // before[step]: the weights step `step` must read
        for overlapsForward in [true, false] {
            let group = LoopbackGroup(size: ranks)
            let results = Box([[Float]](repeating: [], count: ranks))
            let stale = Box(0)
            let lock = NSLock()
            onRanks(ranks) { r in
                let shardBuffers = (0..<localShards).map { _ in UnsafeMutablePointer<Float>.allocate(capacity: p) }
                let gradients = UnsafeMutablePointer<Float>.allocate(capacity: p)
                let weights = UnsafeMutablePointer<Float>.allocate(capacity: p)
                defer { shardBuffers.forEach { $0.deallocate() }; gradients.deallocate(); weights.deallocate() }
                weights.initialize(from: start, count: p)
                let exchange = ShardedExchange(layout: layout, transport: group.endpoint(r), segmentFloats: 5000)
                let overlapped = OverlappedExchange(exchange: exchange, localShards: localShards, workers: 2, partial: shardBuffers[0],
                                                    gradients: gradients, weights: weights, overlapsForward: overlapsForward) { b, _ in
                    for i in exchange.owned[b] { weights[i] -= 0.25 * gradients[i] }
                }
                for step in 0..<steps {
                    overlapped.beginStep()
                    let pool = DispatchGroup()
                    for w in 0..<2 {
                        pool.enter()
                        let buffers = Box(shardBuffers), current = Box(weights)
                        Thread {
                            let shardBuffers = buffers.value, weights = current.value
                            let shard = r * localShards + w
                            // "Forward": each bucket from the first layers waits for its weights.
                            for b in stride(from: layout.bucketCount - 1, through: 0, by: -1) {
                                overlapped.awaitWeights(b, worker: w)
                                if layout.buckets[b].contains(where: { weights[$0].bitPattern != before[step][$0].bitPattern }) {
                                    lock.lock(); stale.value += 1; lock.unlock()
                                }
                            }
                            shardBuffers[w].update(from: grads[step][shard], count: p)
                            func reduce(_ b: Int) {
                                while let range = overlapped.claimChunk(b) {
                                    let a = shardBuffers[0], other = shardBuffers[1]
                                    for k in range { a[k] += other[k] }
                                    overlapped.chunkReduced(b)
                                }
                            }
                            for b in 0..<layout.bucketCount {
                                usleep(UInt32(100 * (w + 1)))   // "backward" of the bucket's layers
                                if overlapped.shardFinished(bucket: b) { reduce(b) }
                            }
                            // Done with its shard: help with the buckets' remaining chunks.
                            for b in 0..<layout.bucketCount {
                                while !overlapped.bucketReady(b) { usleep(10) }
                                reduce(b)
                            }
                            if w == 0 && !overlapsForward { overlapped.drain() }
                            pool.leave()
                        }.start()
                    }
                    pool.wait()
                }
                overlapped.drain()
                XCTAssertTrue(overlapped.isDrained)
                XCTAssertGreaterThan(overlapped.exchangeNanoseconds, 0)
                overlapped.shutdown()
                lock.lock()
                results.value[r] = Array(UnsafeBufferPointer(start: weights, count: p))
                lock.unlock()
            }
            XCTAssertEqual(stale.value, 0, "buckets read before their weights were final (overlapsForward \(overlapsForward)), \(replay)")
            for r in 0..<ranks {
                XCTAssertEqual(results.value[r].map(\.bitPattern), expected.map(\.bitPattern), "rank \(r), overlapsForward \(overlapsForward), \(replay)")
            }
        }
    }
}
