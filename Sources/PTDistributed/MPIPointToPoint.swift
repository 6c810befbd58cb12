// Point-to-point transfers over MPI (package trait MPI) for the sharded exchange: MPI_Isend /
// MPI_Irecv on a duplicate of MPI_COMM_WORLD (so its tags never meet the collectives'), completed
// with MPI_Testall / MPI_Waitall over slot ranges.
#if MPI
import CMPI

public final class MPIPointToPoint: PointToPoint {
    public let rank: Int
    public let size: Int
    var comm: MPI_Comm?
    var requests: UnsafeMutablePointer<MPI_Request?> = .allocate(capacity: 1)
    var slotCount = 0

    /// A transport among the ranks of `communicator` (collective: every rank creates it, in the same order).
    public init(_ communicator: MPICommunicator) {
        rank = communicator.rank
        size = communicator.size
        var duplicate: MPI_Comm? = nil
        MPI_Comm_dup(communicator.world, &duplicate)
        comm = duplicate
    }

    deinit {
        requests.deallocate()
        MPI_Comm_free(&comm)
    }

    public func reserve(slots count: Int) {
        guard count > slotCount else { return }
        requests.deallocate()
        requests = .allocate(capacity: count)
        requests.initialize(repeating: pt_mpi_request_null(), count: count)
        slotCount = count
    }

    public func startSend(_ values: UnsafePointer<Float>, count: Int, to: Int, tag: Int32, slot: Int) {
        MPI_Isend(values, Int32(count), pt_mpi_float(), Int32(to), tag, comm, requests + slot)
    }

    public func startReceive(_ values: UnsafeMutablePointer<Float>, count: Int, from: Int, tag: Int32, slot: Int) {
        MPI_Irecv(values, Int32(count), pt_mpi_float(), Int32(from), tag, comm, requests + slot)
    }

    public func test(_ slots: Range<Int>) -> Bool {
        var flag: Int32 = 0
        MPI_Testall(Int32(slots.count), requests + slots.lowerBound, &flag, pt_mpi_statuses_ignore())
        return flag != 0
    }

    public func wait(_ slots: Range<Int>) {
        MPI_Waitall(Int32(slots.count), requests + slots.lowerBound, pt_mpi_statuses_ignore())
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

