// Point-to-point transfers over MPI (package trait MPI) for the sharded exchange: MPI_Issend /
// MPI_Irecv on a duplicate of MPI_COMM_WORLD (so its tags never meet the collectives'), completed
// with MPI_Testall / MPI_Waitall over slot ranges. Sends are synchronous: one completes only once
// the receiver has matched it, so the exchange's few sends in flight bound the data queued ahead
// on the link (socket buffers, shaper, switch), whatever the library's eager limit (a buffered
// send of up to 64 KiB completes at once, and the queues ahead of a late urgent bucket then grew
// to megabytes; measured in docs/BENCHMARKS.md). MPI counts are C ints: a transfer larger than
// the communicator's `maximumCount` goes as several messages of at most that many floats, each
// with its own request (messages with the same source, tag and communicator arrive in order).
#if MPI
import CMPI

public final class MPIPointToPoint: PointToPoint {
    public let rank: Int
    public let size: Int
    var comm: MPI_Comm?
    /// The most floats one message carries (`MPICommunicator.maximumCount`).
    let maximumCount: Int
    /// MPI requests per slot: the pieces of the largest transfer (unused ones stay null).
    var piecesPerSlot = 1
    var requests: UnsafeMutablePointer<MPI_Request?> = .allocate(capacity: 1)
    var requestCount = 0
    /// MPI_TAG_UB of the duplicate communicator.
    public let tagUpperBound: Int

    /// A transport among the ranks of `communicator` (collective: every rank creates it, in the same order).
    public init(_ communicator: MPICommunicator) {
        rank = communicator.rank
        size = communicator.size
        maximumCount = communicator.maximumCount
        var duplicate: MPI_Comm? = nil
        MPI_Comm_dup(communicator.world, &duplicate)
        comm = duplicate
        tagUpperBound = Int(pt_mpi_tag_upper_bound(duplicate))
    }

    deinit {
        requests.deallocate()
        MPI_Comm_free(&comm)
    }

    public func reserve(slots count: Int, largest: Int) {
        let pieces = max(1, (largest + maximumCount - 1) / maximumCount)
        requests.deallocate()
        piecesPerSlot = pieces
        requestCount = count * pieces
        requests = .allocate(capacity: max(1, requestCount))
        requests.initialize(repeating: pt_mpi_request_null(), count: max(1, requestCount))
    }

    public func startSend(_ values: UnsafePointer<Float>, count: Int, to: Int, tag: Int32, slot: Int) {
        forEachPiece(count: count, slot: slot) { start, n, request in
            MPI_Issend(values + start, Int32(n), pt_mpi_float(), Int32(to), tag, comm, request)
        }
    }

    public func startReceive(_ values: UnsafeMutablePointer<Float>, count: Int, from: Int, tag: Int32, slot: Int) {
        forEachPiece(count: count, slot: slot) { start, n, request in
            MPI_Irecv(values + start, Int32(n), pt_mpi_float(), Int32(from), tag, comm, request)
        }
    }

    /// Splits a transfer of `count` floats into pieces of at most `maximumCount` (C int counts),
    /// each with its own request of `slot`'s block.
    @inline(__always)
    private func forEachPiece(count: Int, slot: Int, _ body: (_ start: Int, _ count: Int, _ request: UnsafeMutablePointer<MPI_Request?>) -> Void) {
        precondition(count <= piecesPerSlot * maximumCount, "MPIPointToPoint: a transfer larger than reserved")
        var start = 0, piece = slot * piecesPerSlot
        while start < count {
            let n = min(maximumCount, count - start)
            body(start, n, requests + piece)
            start += n
            piece += 1
        }
    }

    @inline(__always) func requestRange(_ slots: Range<Int>) -> (UnsafeMutablePointer<MPI_Request?>, Int32) {
        (requests + slots.lowerBound * piecesPerSlot, Int32(slots.count * piecesPerSlot))
    }

    public func test(_ slots: Range<Int>) -> Bool {
        var flag: Int32 = 0
        let (first, n) = requestRange(slots)
        MPI_Testall(n, first, &flag, pt_mpi_statuses_ignore())
        return flag != 0
    }

    public func wait(_ slots: Range<Int>) {
        let (first, n) = requestRange(slots)
        MPI_Waitall(n, first, pt_mpi_statuses_ignore())
    }
}
#endif

/// Point-to-point transfers among the ranks of `communicator`, or nil when it has none to offer
/// (one process, or a build without the trait MPI). Collective over the ranks.
public func makePointToPoint(_ communicator: Communicator) -> PointToPoint? {
    #if MPI
    if let mpi = communicator as? MPICommunicator, mpi.size > 1 { return MPIPointToPoint(mpi) }
    #endif
    return nil
}
