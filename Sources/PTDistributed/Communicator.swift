// The Communicator protocol: how the trainer reaches the other processes of a job. In-process (one
// rank) always; an MPI communicator with the package trait MPI.

/// Collective operations across the processes (ranks) of one training job. Only exchanges that
/// keep results reproducible are offered: gathers (no reductions whose order MPI chooses).
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// `values` holds `size` blocks of `count` floats; this rank's block (at rank * count) is sent and
    /// every other block is filled from its rank.
    func allGather(inPlace values: UnsafeMutablePointer<Float>, count: Int)
    /// Uneven blocks: rank r owns values[boundaries[r] ..< boundaries[r + 1]].
    func allGather(inPlace values: UnsafeMutablePointer<Double>, boundaries: [Int])
    func allGather(inPlace values: UnsafeMutablePointer<Int>, boundaries: [Int])
    /// The largest of each rank's `value` (used to agree on stopping).
    func maximum(_ value: Int) -> Int
    func barrier()
    /// Ends every rank of the job with `code` after printing `message` (one line) on standard error.
    func abort(_ message: String, code: Int32) -> Never
    /// Whether these collectives may run on one thread while another thread drives a
    /// `PointToPoint` transport made from this communicator (MPI: MPI_THREAD_MULTIPLE granted).
    var allowsCollectivesDuringExchange: Bool { get }
}

extension Communicator {
    public var allowsCollectivesDuringExchange: Bool { true }
}

/// The single-process communicator: rank 0 of 1; collectives are no-ops.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allGather(inPlace values: UnsafeMutablePointer<Float>, count: Int) {}
    public func allGather(inPlace values: UnsafeMutablePointer<Double>, boundaries: [Int]) {}
    public func allGather(inPlace values: UnsafeMutablePointer<Int>, boundaries: [Int]) {}
    public func maximum(_ value: Int) -> Int { value }
    public func barrier() {}
    public func abort(_ message: String, code: Int32) -> Never {
        writeStandardError("ptrain: error: \(message)\n")
        exit(code)
    }
}

#if canImport(Glibc)
import Glibc
#endif

func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

/// The communicator for this process: MPI when built with the trait MPI and started by an MPI
/// launcher (mpirun, mpiexec, srun with PMI), otherwise the local one.
public func makeCommunicator(environment: [String: String]) -> Communicator {
    #if MPI
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS"]
        .contains { environment[$0] != nil }
    if launched { return MPICommunicator() }
    #endif
    return LocalCommunicator()
}
