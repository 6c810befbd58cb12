// The Communicator protocol: how the trainer reaches other processes. In-process (one rank) here;
// an MPI communicator plugs in behind the same protocol (package trait MPI).

/// Collective operations across the processes (ranks) of one training job.
public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// In-place sum of `count` floats across ranks; every rank gets the same result, with a summation
    /// order that depends only on `size` (so results are reproducible).
    func allReduceSum(_ values: UnsafeMutablePointer<Float>, count: Int)
    /// Blocks until every rank has arrived.
    func barrier()
}

/// The single-process communicator: rank 0 of 1; collectives are no-ops.
public final class LocalCommunicator: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
    public func barrier() {}
}
