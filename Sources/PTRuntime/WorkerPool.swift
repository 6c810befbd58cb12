// The worker pool interface the trainer steps through. PLACEHOLDER: single worker, no pinning.
// (The pinned multi-worker implementation replaces the internals; the interface stays.)

/// Work run on every worker of a pool, once per call to `WorkerPool.run`.
/// Implementations hold all their state (buffers, step number) so that a call allocates nothing.
public protocol ParallelJob: AnyObject {
    /// Runs on worker `worker` (0..<pool.workerCount). Phases inside one call are separated with
    /// `pool.barrier(worker:)`, which every worker must call the same number of times.
    func run(worker: Int, pool: WorkerPool)
}

/// Where one worker was asked to run and where it was seen running.
public struct WorkerPlacement: Sendable, Equatable, Codable {
    public var worker: Int
    /// OS CPU index the worker's thread was bound to, or -1 when unbound.
    public var osCPU: Int
    public init(worker: Int, osCPU: Int) { self.worker = worker; self.osCPU = osCPU }
}

/// A fixed set of long-lived workers. `run` hands one job to all of them and returns when every
/// worker has finished it. The calling thread waits (it does not act as a worker).
public final class WorkerPool: @unchecked Sendable {
    public let workerCount: Int
    public private(set) var placement: [WorkerPlacement]

    /// - Parameter cpus: OS CPU per worker to bind to (nil: unbound). Its count is the worker count.
    public init(workers: Int, cpus: [Int]? = nil) {
        precondition(workers == 1, "placeholder pool supports one worker")
        workerCount = workers
        placement = [WorkerPlacement(worker: 0, osCPU: -1)]
    }

    public func run(_ job: ParallelJob) {
        job.run(worker: 0, pool: self)
    }

    public func barrier(worker: Int) {}
}
