// `ptrain topo`: what hwloc sees and where the workers will sit.
import ArgumentParser
import Foundation
import PTFiles
import PTKernels
import PTRuntime

#if canImport(Glibc)
import Glibc
#endif

struct Topo: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topo",
        abstract: "Show the CPU topology (hwloc) and where each worker thread will be pinned.",
        discussion: """
            Lists packages, NUMA nodes, cores and hardware threads (PUs) that this process may \
            use (cgroup cpuset, taskset, srun and mpirun bindings are honoured), then one row \
            per worker: worker -> core -> OS CPU -> NUMA node -> package. Workers go one per \
            physical core first (spread over packages and NUMA nodes, or package 0 first with \
            --policy compact), hardware threads next, and wrap around when there are more \
            workers than CPUs (oversubscribed, with a warning).

            Examples:
              ptrain topo
              ptrain topo --threads 32 --synthetic "pack:2 numa:2 core:16 pu:2" --format json
            """)

    @Option(help: "Number of workers (default: the allowed physical cores, or SLURM_CPUS_PER_TASK when smaller).")
    var threads: Int?

    @Option(help: ArgumentHelp("An hwloc synthetic topology to plan for instead of this machine.",
                               valueName: "description"))
    var synthetic: String?

    @Option(help: "Placement policy: spread or compact.")
    var policy: PlacementPolicy = .spread

    @Option(help: "Output format: text or json.")
    var format: OutputFormat = .text


    func validate() throws {
        try OptionBounds.checkThreads(threads)
        if let synthetic, synthetic.trimmingBlanks.isEmpty {
            throw ValidationError("--synthetic needs a description such as \"pack:2 numa:2 core:16 pu:2\"")
        }
    }

    func run() throws {
        let topology: Topology
        do {
            topology = try synthetic.map { try Topology(synthetic: $0) } ?? Topology()
        } catch let error as TopologyError {
            throw ValidationError(error.description)
        }
        let workers = threads ?? PlacementPlan.defaultThreadCount(topology: topology, environment: environment())
        // Under a launcher, several processes on this node take disjoint blocks of cores.
        let share = (try? topology.shareForLocalRank(threads: workers, environment: environment())) ?? topology
        let plan = try PlacementPlan(workers: workers, topology: share, policy: policy)
        switch format {
        case .text:
            print(topologyReport(topology: topology, plan: plan))
            print("instruction set: \(InstructionSet.current) (this CPU runs: \(InstructionSet.supported.map(\.name).joined(separator: ", ")); PTRAIN_ISA forces one)")
            print("bf16: " + (InstructionSet.bf16Unit.map { "\($0.rawValue) (precision bf16 available)" }
                              ?? "none (precision bf16 needs the avx512 level with AVX512_BF16)"))
        case .json:
            // The placement with the instruction-set level in front.
            struct Report: Encodable {
                var instruction_set: String
                var bf16_unit: String?
                var supported: [String]
                var workers: [PlacementReport.Worker]
            }
            let report = Report(instruction_set: InstructionSet.current.name, bf16_unit: InstructionSet.bf16Unit?.rawValue, supported: InstructionSet.supported.map(\.name),
                                workers: PlacementReport(plan: plan).workers)
            print(JSON.line(report))
        }
    }

    /// The process environment without Foundation.
    private func environment() -> [String: String] {
        var result: [String: String] = [:]
        var entry = environ
        while let pointer = entry.pointee {
            let pair = String(cString: pointer)
            if let equals = pair.firstIndex(of: "=") {
                result[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            entry += 1
        }
        return result
    }
}

extension PlacementPolicy: ExpressibleByArgument {}

private extension String {
    var trimmingBlanks: Substring {
        var s = Substring(self)
        while let c = s.first, c.isWhitespace { s.removeFirst() }
        while let c = s.last, c.isWhitespace { s.removeLast() }
        return s
    }
}
