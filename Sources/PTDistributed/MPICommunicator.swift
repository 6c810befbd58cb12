// The MPI communicator (package trait MPI): MPI_Init_thread(SERIALIZED) — collectives are called
// by one thread at a time (the main thread, or worker 0 while the main thread waits).
#if MPI
import CMPI
#if canImport(Glibc)
import Glibc
#endif

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    let world: MPI_Comm

    public init() {
        var provided: Int32 = 0
        var argc: Int32 = 0
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = nil
        MPI_Init_thread(&argc, &argv, pt_mpi_thread_serialized(), &provided)
        world = pt_mpi_comm_world()
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(world, &r)
        MPI_Comm_size(world, &s)
        rank = Int(r)
        size = Int(s)
        if provided < pt_mpi_thread_serialized() {
            abort("rank \(rank): the MPI library does not support MPI_THREAD_SERIALIZED", code: 1)
        }
    }

    deinit { MPI_Finalize() }

    public func allGather(inPlace values: UnsafeMutablePointer<Float>, count: Int) {
        MPI_Allgather(pt_mpi_in_place(), 0, pt_mpi_float(), values, Int32(count), pt_mpi_float(), world)
    }

    func allGatherV(_ values: UnsafeMutableRawPointer, boundaries: [Int], type: MPI_Datatype) {
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
