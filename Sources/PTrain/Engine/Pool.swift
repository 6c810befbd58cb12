// Creating the worker pool for a run: thread count from the flag, Slurm or the allowed cores,
// placement from the hwloc topology, warnings passed to the caller.
import Foundation
import PTRuntime

/// The pool for `threads` workers (nil: `PlacementPlan.defaultThreadCount`, i.e. the allowed
/// physical cores or SLURM_CPUS_PER_TASK when smaller, and at most `maximum`), spread over
/// packages and NUMA nodes. Each warning (more threads than cores, CPUs that could not be bound)
/// goes to `warn`.
///
/// `ptrain train` passes the shards a process computes as `maximum`: the config fixes the shards
/// (and with them the bits), and a worker without a shard would only wait.
public func makeWorkerPool(threads: Int?, maximum: Int? = nil, policy: PlacementPolicy = .spread,
                           warn: (String) -> Void) throws -> WorkerPool {
    let cap = max(1, maximum ?? Int.max)
    let topology: Topology
    do {
        topology = try Topology()
    } catch {
        warn("hwloc could not read this machine's topology (\(error)); workers are not pinned")
        let count = threads ?? min(cap, max(1, ProcessInfo.processInfo.activeProcessorCount))
        return try WorkerPool(workers: count, cpus: Array(repeating: -1, count: count), callerIsWorkerZero: true)
    }
    let environment = ProcessInfo.processInfo.environment
    let count = threads ?? min(cap, PlacementPlan.defaultThreadCount(topology: topology, environment: environment))
    // Processes sharing this node's CPUs take disjoint blocks of cores.
    let share = (try? topology.shareForLocalRank(threads: count, environment: environment)) ?? topology
    let plan = try PlacementPlan(workers: count, topology: share, policy: policy)
    plan.warnings.forEach(warn)
    // The calling (main) thread runs worker 0's share of every step: no hand-over wake-ups.
    let pool = try WorkerPool(plan: plan, callerIsWorkerZero: true)
    pool.warnings.filter { !plan.warnings.contains($0) }.forEach(warn)
    return pool
}
