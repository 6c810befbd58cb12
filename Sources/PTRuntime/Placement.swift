// Which CPU each worker gets: one worker per physical core first (spread across packages and
// NUMA nodes, or packed into package 0), hardware threads next, wrap-around last.

/// How workers are laid out over the topology.
public enum PlacementPolicy: String, Sendable, Equatable, CaseIterable, Codable {
    /// Round-robin over packages, then NUMA nodes, then L3 and L2 caches, then cores:
    /// most memory bandwidth and cache per worker. The default.
    case spread
    /// Cores in order: package 0 is filled before package 1 (shared caches, one memory node).
    case compact
}

/// The CPU chosen for each worker.
///
/// Order of use: first one PU of every allowed core (in policy order), then the second PU of
/// every core that has one, and so on; workers beyond the allowed PUs wrap around to the start
/// (`oversubscribed`). So 32 workers on "pack:2 numa:2 core:16 pu:2" (64 cores) sit on 32
/// distinct cores, 16 per package, 8 per NUMA node.
public struct PlacementPlan: Sendable, Equatable {
    public struct Entry: Sendable, Equatable, Codable {
        public var worker: Int
        /// Logical core index in the topology (`Topology.Core.index`).
        public var core: Int
        public var osCPU: Int
        /// Logical NUMA node and package indices.
        public var numa: Int
        public var package: Int

        public init(worker: Int, core: Int, osCPU: Int, numa: Int, package: Int) {
            self.worker = worker; self.core = core; self.osCPU = osCPU; self.numa = numa; self.package = package
        }
    }

    public var policy: PlacementPolicy
    public var entries: [Entry]
    /// More workers than allowed PUs: some PUs run two or more workers.
    public var oversubscribed: Bool
    /// Human-readable notes on the request (more workers than cores, oversubscription).
    public var warnings: [String]

    public var workerCount: Int { entries.count }
    /// The OS CPU of each worker, in worker order: what `WorkerPool(workers:cpus:)` takes.
    public var osCPUs: [Int] { entries.map(\.osCPU) }

    /// - Throws: `WorkerPoolError` for a worker count outside 1...WorkerPool.maximumWorkers or a
    ///   topology without cores.
    public init(workers: Int, topology: Topology, policy: PlacementPolicy = .spread) throws {
        try WorkerPool.checkWorkerCount(workers)
        guard topology.cores.contains(where: { !$0.osCPUs.isEmpty }) else {
            throw WorkerPoolError("\(topology.source): no allowed cores to place workers on")
        }
        self.policy = policy
        let coreOrder: [Int]
        switch policy {
        case .compact:
            coreOrder = topology.cores.map(\.index)
        case .spread:
            coreOrder = Self.interleave(topology.cores.map(\.index), by: [
                { topology.cores[$0].package }, { topology.cores[$0].numa },
                { topology.cores[$0].l3 }, { topology.cores[$0].l2 },
            ])
        }
        // Slots: every core's first PU, then every core's second PU, ...
        var slots: [(core: Int, osCPU: Int)] = []
        let deepest = topology.cores.map(\.osCPUs.count).max() ?? 1
        for rank in 0..<deepest {
            for core in coreOrder where topology.cores[core].osCPUs.count > rank {
                slots.append((core, topology.cores[core].osCPUs[rank]))
            }
        }
        entries = (0..<workers).map { worker in
            let slot = slots[worker % slots.count]
            let core = topology.cores[slot.core]
            return Entry(worker: worker, core: core.index, osCPU: slot.osCPU, numa: core.numa, package: core.package)
        }
        oversubscribed = workers > slots.count
        warnings = Self.warnings(workers: workers, cores: topology.coreCount, pus: slots.count)
    }

    /// Round-robin merge, level by level: cores grouped by the first key (in first-seen order),
    /// each group ordered recursively by the remaining keys, then one from each group in turn.
    static func interleave(_ items: [Int], by keys: [(Int) -> Int]) -> [Int] {
        guard let key = keys.first, items.count > 1 else { return items }
        var groupKeys: [Int] = []
        var groups: [Int: [Int]] = [:]
        for item in items {
            let k = key(item)
            if groups[k] == nil { groupKeys.append(k) }
            groups[k, default: []].append(item)
        }
        let rest = Array(keys.dropFirst())
        let ordered = groupKeys.map { interleave(groups[$0]!, by: rest) }
        var result: [Int] = []
        result.reserveCapacity(items.count)
        var round = 0
        while result.count < items.count {
            for group in ordered where round < group.count { result.append(group[round]) }
            round += 1
        }
        return result
    }

    static func warnings(workers: Int, cores: Int, pus: Int) -> [String] {
        let launch = "give the process more CPUs (srun --cpus-per-task=\(workers), "
            + "mpirun --map-by slot:PE=\(workers) or --bind-to none, taskset) or ask for fewer threads"
        if workers > pus {
            return ["oversubscribed: \(workers) workers on \(pus) allowed CPUs (\(cores) cores); "
                + "several workers share a CPU and every step waits for the slowest; \(launch)"]
        }
        if workers > cores {
            return ["\(workers) workers on \(cores) allowed physical cores: \(workers - cores) of them "
                + "run on a second hardware thread of a busy core (usually slower for SIMD kernels); \(launch)"]
        }
        return []
    }

    /// Threads to use when none are asked for: the allowed physical cores, or
    /// `SLURM_CPUS_PER_TASK` when it is set, a positive integer, and smaller.
    public static func defaultThreadCount(topology: Topology, environment: [String: String]) -> Int {
        let cores = max(1, topology.coreCount)
        if let text = environment["SLURM_CPUS_PER_TASK"],
           let slurm = Int(trimmed(text)), slurm > 0, slurm < cores {
            return slurm
        }
        return cores
    }
}

/// `text` without leading and trailing blanks (no Foundation in this target).
private func trimmed(_ text: String) -> Substring {
    var s = Substring(text)
    while let c = s.first, c.isWhitespace { s.removeFirst() }
    while let c = s.last, c.isWhitespace { s.removeLast() }
    return s
}

extension Topology {
    /// Several processes of one job on this node that may all use the same CPUs (for example
    /// `mpirun --bind-to none`) would otherwise pin their workers to the same cores. When the
    /// launcher says how many processes share the node (OMPI_COMM_WORLD_LOCAL_SIZE / _LOCAL_RANK,
    /// MPI_LOCALNRANKS / MPI_LOCALRANKID, SLURM_NTASKS_PER_NODE / SLURM_LOCALID) and this
    /// process's allowed cores can hold all of them (`threads` cores each), the process keeps the
    /// consecutive block of cores [localRank * threads, (localRank + 1) * threads). A process that
    /// the launcher already bound to its own CPUs sees too few cores for that and is left as it is.
    /// Launcher values that make no sense (negative, a rank outside the size, sizes whose product
    /// with `threads` would overflow) leave the topology as it is.
    public func shareForLocalRank(threads: Int, environment: [String: String]) throws -> Topology {
        func number(_ keys: [String]) -> Int? { keys.lazy.compactMap { environment[$0].flatMap { Int(trimmed($0)) } }.first }
        // Both factors are at most coreCount before they are multiplied: no overflow.
        guard threads > 0, threads <= coreCount,
              let size = number(["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"]),
              let rank = number(["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]),
              size > 1, size <= coreCount, rank >= 0, rank < size, coreCount >= size * threads else { return self }
        let block = cores[(rank * threads)..<((rank + 1) * threads)].flatMap(\.osCPUs)
        return isSynthetic ? try Topology(synthetic: source, restrictedTo: block) : try Topology(restrictedTo: block)
    }
}
