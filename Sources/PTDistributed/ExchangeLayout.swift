// How the sharded gradient exchange cuts the flat parameter buffer: buckets of whole layers in
// backward order, and inside each bucket one contiguous piece per rank (its owner).
import PTKernels

/// The cut of a flat buffer of `parameterCount` floats for the sharded exchange.
///
/// - Buckets hold whole layers, in backward order: bucket 0 holds the last layers (whose backward
///   runs first), the last bucket ends with layer 0. Bucket b covers the layers
///   `firstLayer[b] ..< endLayer[b]` and the floats `buckets[b]` of the flat buffer; together
///   the buckets cover every layer and `0 ..< parameterCount` without gaps.
/// - Inside bucket b of n floats, rank q owns `piece(b, rank: q)`, floats
///   [q*n/R, (q+1)*n/R) of the bucket: the pieces of one bucket differ by at most one float.
///   With one bucket each rank owns one contiguous slice of the whole buffer.
public struct ExchangeLayout: Sendable, Equatable {
    public let parameterCount: Int
    public let ranks: Int
    public let buckets: [Range<Int>]
    public let firstLayer: [Int]
    public let endLayer: [Int]

    /// Most buckets a layout makes (message tags stay below MPI's guaranteed 32767).
    public static let maximumBuckets = 4096

    /// - Parameters:
    ///   - layerStarts: for each of the L layers, where its parameters start in the flat buffer
    ///     (a layer without parameters: where the next layer's start), non-decreasing, followed by
    ///     `parameterCount` (L + 1 entries).
    ///   - bucketFloats: a bucket is closed (at a layer boundary) once it holds at least this many
    ///     floats; a bucket without parameters is merged into the one before it.
    public init(layerStarts: [Int], ranks: Int, bucketFloats: Int) {
        precondition(layerStarts.count >= 2 && ranks >= 1 && bucketFloats >= 1)
        let layers = layerStarts.count - 1
        parameterCount = layerStarts[layers]
        self.ranks = ranks
        let minimum = max(bucketFloats, (parameterCount + Self.maximumBuckets - 1) / Self.maximumBuckets)
        var ranges: [Range<Int>] = [], first: [Int] = [], end: [Int] = []
        var top = layers   // layers [i, top) not yet in a bucket
        for i in stride(from: layers - 1, through: 0, by: -1) {
            let floats = layerStarts[top] - layerStarts[i]
            if floats >= minimum || i == 0 {
                if floats == 0, !ranges.isEmpty {
                    // No parameters below the previous bucket: its layers extend down to i.
                    first[first.count - 1] = i
                } else {
                    ranges.append(layerStarts[i]..<layerStarts[top])
                    first.append(i)
                    end.append(top)
                }
                top = i
            }
        }
        buckets = ranges
        firstLayer = first
        endLayer = end
    }

    public var bucketCount: Int { buckets.count }

    /// The floats of bucket `b` that rank `q` owns.
    @inline(__always) public func piece(_ b: Int, rank q: Int) -> Range<Int> {
        let r = buckets[b], n = r.count
        return (r.lowerBound + q * n / ranks)..<(r.lowerBound + (q + 1) * n / ranks)
    }

    /// Floats rank `q` owns in all (its optimizer state's size).
    public func ownedCount(rank q: Int) -> Int { (0..<bucketCount).reduce(0) { $0 + piece($1, rank: q).count } }

    /// Where each bucket's piece of rank `q` starts in a compact buffer of its owned floats.
    public func ownedOffsets(rank q: Int) -> [Int] {
        var offsets: [Int] = [], total = 0
        for b in 0..<bucketCount {
            offsets.append(total)
            total += piece(b, rank: q).count
        }
        return offsets
    }

    /// Floats rank `q` sends in one step: its partial sums of the other ranks' pieces
    /// (reduce-scatter), then its updated piece to every other rank (all-gather).
    public func floatsSent(rank q: Int) -> Int {
        (0..<bucketCount).reduce(0) { sum, b in
            let own = piece(b, rank: q).count
            return sum + (buckets[b].count - own) + (ranks - 1) * own
        }
    }

    /// Messages rank `q` sends in one step, in segments of at most `segmentFloats` floats (empty
    /// pieces send nothing).
    public func messagesSent(rank q: Int, segmentFloats: Int) -> Int {
        var count = 0
        for b in 0..<bucketCount {
            for p in 0..<ranks where p != q {
                count += (piece(b, rank: p).count + segmentFloats - 1) / segmentFloats
                count += (piece(b, rank: q).count + segmentFloats - 1) / segmentFloats
            }
        }
        return count
    }
}

/// buffers[0][0 ..< count] = the pairwise sum of buffers[0 ..< n][0 ..< count], in place in the
/// buffers: PTKernels' `pairwiseSumInPlace` (the one copy of the fixed tree, on the dispatched
/// kernels), over the whole of each buffer.
@inline(__always)
public func pairwiseSumInPlace(_ buffers: UnsafePointer<UnsafeMutablePointer<Float>>, n: Int, count: Int) {
    PTKernels.pairwiseSumInPlace(buffers, n: n, range: 0..<count)
}
