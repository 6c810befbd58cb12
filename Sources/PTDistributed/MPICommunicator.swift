// The MPI communicator (package trait MPI): MPI_Init_thread asks for MPI_THREAD_MULTIPLE, because
// the sharded exchange's thread may still be all-gathering a step's weights (on its own duplicate
// communicator) while the main thread runs the small collectives after the step. With only
// MPI_THREAD_SERIALIZED the trainer drains the exchange at the end of every step instead (MPI calls
// then never overlap: the main thread, worker 0 while the main thread waits, or the exchange
// thread while the main thread waits for the step); less than that fails at start-up.
#if MPI
import CMPI
#if canImport(Glibc)
import Glibc
#endif

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    let world: MPI_Comm
    /// The most elements one MPI call moves: MPI counts and displacements are C ints, so larger
    /// transfers are split into pieces of at most this many elements. The environment variable
    /// PTRAIN_MPI_MAX_COUNT lowers it (tests drive the split path with small models that way).
    public let maximumCount: Int
    /// Whether the library granted MPI_THREAD_MULTIPLE.
    public let threadMultiple: Bool
    public var allowsCollectivesDuringExchange: Bool { threadMultiple }

    public init() {
        let limit = Int(Int32.max)
        maximumCount = getenv("PTRAIN_MPI_MAX_COUNT").flatMap { Int(String(cString: $0)) }.map { min(max($0, 1), limit) } ?? limit
        var provided: Int32 = 0
        var argc: Int32 = 0
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        MPI_Init_thread(&argc, &argv, pt_mpi_thread_multiple(), &provided)
        world = pt_mpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
        threadMultiple = provided >= pt_mpi_thread_multiple()
        if provided < pt_mpi_thread_serialized() {
            abort("rank \(rank): the MPI library does not support MPI_THREAD_SERIALIZED", code: 1)
        }
        if rank == 0 && maximumCount < limit {
            writeStandardError("ptrain: warning: PTRAIN_MPI_MAX_COUNT: MPI transfers are split into pieces of at most \(maximumCount) elements\n")
        }
    }

    deinit { MPI_Finalize() }

    public func allGather(inPlace values: UnsafeMutablePointer<Float>, count: Int) {
        if count <= maximumCount {
            MPI_Allgather(pt_mpi_in_place(), 0, pt_mpi_float(), values, Int32(count), pt_mpi_float(), world)
        } else {
            broadcastBlocks(values, boundaries: nil, blockCount: count, type: pt_mpi_float())
        }
    }

    func allGatherV(_ values: UnsafeMutableRawPointer, boundaries: [Int], type: MPI_Datatype) {
        // Displacements are C ints too: the last boundary (the total) must fit, not only each block.
        guard boundaries[size] <= maximumCount else {
            broadcastBlocks(values, boundaries: boundaries, blockCount: 0, type: type)
            return
        }
        // Counts and displacements in temporary (stack) memory: training steps call this, and a
        // step allocates nothing (allocation-gate checks it under mpirun too).
        withUnsafeTemporaryAllocation(of: Int32.self, capacity: 2 * size) { buffer in
            let counts = buffer.baseAddress!, displacements = counts + size
            for r in 0..<size {
                counts[r] = Int32(boundaries[r + 1] - boundaries[r])
                displacements[r] = Int32(boundaries[r])
            }
            MPI_Allgatherv(pt_mpi_in_place(), 0, type, values, counts, displacements, type, world)
        }
    }

    /// The split path of the gathers: each rank broadcasts its own block, `maximumCount` elements
    /// per call. Blocks are rank r's `boundaries[r]..<boundaries[r + 1]`, or `r * blockCount` on
    /// when `boundaries` is nil. The same bytes land in the same places as with one gather call.
    func broadcastBlocks(_ values: UnsafeMutableRawPointer, boundaries: [Int]?, blockCount: Int, type: MPI_Datatype) {
        var extent: MPI_Aint = 0, lowerBound: MPI_Aint = 0
        MPI_Type_get_extent(type, &lowerBound, &extent)
        for root in 0..<size {
            let start = boundaries?[root] ?? root * blockCount
            let end = boundaries?[root + 1] ?? (root + 1) * blockCount
            var offset = start
            while offset < end {
                let piece = min(maximumCount, end - offset)
                MPI_Bcast(values + offset * Int(extent), Int32(piece), type, Int32(root), world)
                offset += piece
            }
        }
    }

    public func allGather(inPlace values: UnsafeMutablePointer<Double>, boundaries: [Int]) {
        allGatherV(values, boundaries: boundaries, type: pt_mpi_double())
    }

    public func allGather(inPlace values: UnsafeMutablePointer<Int>, boundaries: [Int]) {
        allGatherV(values, boundaries: boundaries, type: pt_mpi_long_long())
    }

    public func maximum(_ value: Int) -> Int {
        var send = Int64(value), result: Int64 = 0
        MPI_Allreduce(&send, &result, 1, pt_mpi_long_long(), pt_mpi_max(), world)
        return Int(result)
    }

    public func barrier() { MPI_Barrier(world) }

    public func abort(_ message: String, code: Int32) -> Never {
        writeStandardError("ptrain: error: \(message)\n")
        MPI_Abort(world, code)
        exit(code)
    }
}
#endif
