// Text and JSON views of a topology and a placement plan (what `ptrain topo` prints).

/// A human-readable summary: the topology's counts, then one row per worker
/// (worker → core → OS CPU → NUMA node → package), then the plan's warnings.
public func topologyReport(topology: Topology, plan: PlacementPlan) -> String {
    var lines: [String] = []
    let caches = [topology.l3CacheCount > 0 ? "\(topology.l3CacheCount) L3" : nil,
                  topology.l2CacheCount > 0 ? "\(topology.l2CacheCount) L2" : nil].compactMap { $0 }
    lines.append("topology: \(topology.source)\(topology.isSynthetic ? " (synthetic)" : "")")
    lines.append("  packages \(topology.packageCount), NUMA nodes \(topology.numaNodeCount), "
        + "cores \(topology.coreCount), PUs \(topology.processingUnitCount)"
        + (caches.isEmpty ? "" : ", caches \(caches.joined(separator: ", "))"))
    lines.append("placement: \(plan.workerCount) workers, \(plan.policy.rawValue)"
        + (plan.oversubscribed ? ", oversubscribed" : ""))
    let header = ["worker", "core", "os_cpu", "numa", "package"]
    let rows = plan.entries.map { ["\($0.worker)", "\($0.core)", "\($0.osCPU)", "\($0.numa)", "\($0.package)"] }
    let widths = header.indices.map { column in
        ([header[column]] + rows.map { $0[column] }).map(\.count).max()!
    }
    func format(_ row: [String]) -> String {
        "  " + row.indices.map { String(repeating: " ", count: widths[$0] - row[$0].count) + row[$0] }
            .joined(separator: "  ")
    }
    lines.append(format(header))
    lines += rows.map(format)
    lines += plan.warnings.map { "warning: \($0)" }
    return lines.joined(separator: "\n")
}

/// The plan as a `Codable` value (`ptrain topo --format json` encodes it):
/// `{"workers": [{"worker":0,"core":0,"os_cpu":0,"numa":0,"package":0}, ...]}`.
public struct PlacementReport: Codable, Equatable, Sendable {
    public struct Worker: Codable, Equatable, Sendable {
        public var worker, core, os_cpu, numa, package: Int

        public init(worker: Int, core: Int, os_cpu: Int, numa: Int, package: Int) {
            (self.worker, self.core, self.os_cpu, self.numa, self.package) = (worker, core, os_cpu, numa, package)
        }
    }
    public var workers: [Worker]

    public init(plan: PlacementPlan) {
        workers = plan.entries.map {
            Worker(worker: $0.worker, core: $0.core, os_cpu: $0.osCPU, numa: $0.numa, package: $0.package)
        }
    }
}
