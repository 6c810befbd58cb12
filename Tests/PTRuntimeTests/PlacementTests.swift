// Placement on machines we do not have: hwloc synthetic topologies.
import Foundation
import PTRuntime
import XCTest

final class PlacementTests: XCTestCase {
    let bigMachine = "pack:2 numa:2 core:16 pu:2"  // 2 x 2 x 16 = 64 cores, 128 PUs

    func testSyntheticTopologyCounts() throws {
        let topology = try Topology(synthetic: bigMachine)
        XCTAssertEqual(topology.packageCount, 2)
        XCTAssertEqual(topology.numaNodeCount, 4)
        XCTAssertEqual(topology.coreCount, 64)
        XCTAssertEqual(topology.processingUnitCount, 128)
        XCTAssertEqual(topology.osCPUs, Array(0..<128))
        XCTAssertEqual(Set(topology.cores.map(\.package)), [0, 1])
        XCTAssertTrue(topology.cores.allSatisfy { $0.osCPUs.count == 2 })
        // "package:" is the spelling hwloc prints; caches are reported when the description has them.
        let cached = try Topology(synthetic: "package:2 l3:1 numa:2 l2:4 core:1 pu:2")
        XCTAssertEqual(cached.packageCount, 2)
        XCTAssertEqual(cached.l3CacheCount, 2)
        XCTAssertEqual(cached.l2CacheCount, 16)
        XCTAssertEqual(cached.coreCount, 16)
        XCTAssertThrowsError(try Topology(synthetic: "bogus:3"))
    }

    func testSpread32WorkersUseDistinctCoresEvenlyOverPackages() throws {
        let plan = try PlacementPlan(workers: 32, topology: try Topology(synthetic: bigMachine))
        XCTAssertEqual(Set(plan.entries.map(\.core)).count, 32, "no two workers on one core")
        XCTAssertEqual(plan.entries.filter { $0.package == 0 }.count, 16)
        XCTAssertEqual(plan.entries.filter { $0.package == 1 }.count, 16)
        for numa in 0..<4 { XCTAssertEqual(plan.entries.filter { $0.numa == numa }.count, 8, "NUMA \(numa)") }
        XCTAssertFalse(plan.oversubscribed)
        XCTAssertEqual(plan.warnings, [])
    }

    func testSpread64WorkersUseEveryCoreOnce() throws {
        let plan = try PlacementPlan(workers: 64, topology: try Topology(synthetic: bigMachine))
        XCTAssertEqual(Set(plan.entries.map(\.core)).count, 64)
        XCTAssertEqual(Set(plan.osCPUs).count, 64)
        XCTAssertEqual(plan.warnings, [])
    }

    func testHardwareThreadsOnlyAfterEveryCoreAndThenEveryPUOnce() throws {
        let topology = try Topology(synthetic: bigMachine)
        let plan = try PlacementPlan(workers: 128, topology: topology)
        XCTAssertEqual(plan.osCPUs.sorted(), Array(0..<128), "every PU used once")
        XCTAssertEqual(Set(plan.entries.prefix(64).map(\.core)).count, 64, "first 64 workers: one per core")
        XCTAssertFalse(plan.oversubscribed)
        XCTAssertEqual(plan.warnings.count, 1)
        XCTAssertTrue(plan.warnings[0].contains("hardware thread"), plan.warnings[0])

        let over = try PlacementPlan(workers: 130, topology: topology)
        XCTAssertTrue(over.oversubscribed)
        XCTAssertEqual(over.entries[128].osCPU, over.entries[0].osCPU, "wraps around")
        XCTAssertTrue(over.warnings[0].hasPrefix("oversubscribed"), over.warnings[0])
    }

    func testSpread8Workers() throws {
        let plan = try PlacementPlan(workers: 8, topology: try Topology(synthetic: bigMachine))
        for package in 0..<2 { XCTAssertEqual(plan.entries.filter { $0.package == package }.count, 4) }
        for numa in 0..<4 { XCTAssertEqual(plan.entries.filter { $0.numa == numa }.count, 2) }
        XCTAssertEqual(Set(plan.entries.map(\.core)).count, 8)
        // Round-robin over packages first: consecutive workers alternate packages.
        XCTAssertEqual(plan.entries.map(\.package), [0, 1, 0, 1, 0, 1, 0, 1])
    }

    func testCompactFillsPackageZeroFirst() throws {
        let topology = try Topology(synthetic: bigMachine)
        let plan = try PlacementPlan(workers: 32, topology: topology, policy: .compact)
        XCTAssertTrue(plan.entries.allSatisfy { $0.package == 0 })
        XCTAssertEqual(Set(plan.entries.map(\.core)).count, 32)
        let more = try PlacementPlan(workers: 40, topology: topology, policy: .compact)
        XCTAssertEqual(more.entries.filter { $0.package == 1 }.count, 8)
        XCTAssertEqual(more.entries.map(\.core), Array(0..<40))
    }

    func testRestrictedSyntheticTopology() throws {
        // As under `taskset -c 0-3,8`: cores 0,1 (PUs 0-3) and core 4's first PU.
        let topology = try Topology(synthetic: bigMachine, restrictedTo: [0, 1, 2, 3, 8])
        XCTAssertEqual(topology.coreCount, 3)
        XCTAssertEqual(topology.processingUnitCount, 5)
        XCTAssertEqual(topology.packageCount, 1)
        XCTAssertEqual(topology.numaNodeCount, 1)
        XCTAssertEqual(PlacementPlan.defaultThreadCount(topology: topology, environment: [:]), 3)
        XCTAssertThrowsError(try Topology(synthetic: bigMachine, restrictedTo: [500]))
    }

    func testDefaultThreadCountHonoursSlurm() throws {
        let topology = try Topology(synthetic: bigMachine)
        XCTAssertEqual(PlacementPlan.defaultThreadCount(topology: topology, environment: [:]), 64)
        XCTAssertEqual(PlacementPlan.defaultThreadCount(topology: topology, environment: ["SLURM_CPUS_PER_TASK": "12"]), 12)
        XCTAssertEqual(PlacementPlan.defaultThreadCount(topology: topology, environment: ["SLURM_CPUS_PER_TASK": "200"]), 64)
        XCTAssertEqual(PlacementPlan.defaultThreadCount(topology: topology, environment: ["SLURM_CPUS_PER_TASK": "zero"]), 64)
        XCTAssertEqual(PlacementPlan.defaultThreadCount(topology: topology, environment: ["SLURM_CPUS_PER_TASK": "0"]), 64)
    }

    func testReportTextAndJSON() throws {
        let topology = try Topology(synthetic: "pack:2 core:2 pu:1")
        let plan = try PlacementPlan(workers: 3, topology: topology)
        let text = topologyReport(topology: topology, plan: plan)
        XCTAssertTrue(text.contains("packages 2, NUMA nodes 1, cores 4, PUs 4"), text)
        XCTAssertTrue(text.contains("worker  core  os_cpu  numa  package"), text)
        XCTAssertEqual(PlacementReport(plan: plan).workers, [
            .init(worker: 0, core: 0, os_cpu: 0, numa: 0, package: 0),
            .init(worker: 1, core: 2, os_cpu: 2, numa: 0, package: 1),
            .init(worker: 2, core: 1, os_cpu: 1, numa: 0, package: 0),
        ])
    }

    func testThisMachine() throws {
        let topology = try Topology()
        XCTAssertGreaterThanOrEqual(topology.coreCount, 1)
        XCTAssertFalse(topology.isSynthetic)
        let plan = try PlacementPlan(workers: topology.coreCount, topology: topology)
        XCTAssertEqual(Set(plan.entries.map(\.core)).count, topology.coreCount)
    }

    /// Processes sharing a node's CPUs (mpirun --bind-to none) take disjoint blocks of cores; a
    /// process already bound to fewer cores, or alone on the node, keeps what it has.
    func testLocalRanksTakeDisjointCores() throws {
        let node = try Topology(synthetic: "pack:2 core:4 pu:2")
        let env = ["OMPI_COMM_WORLD_LOCAL_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "1"]
        let share = try node.shareForLocalRank(threads: 4, environment: env)
        XCTAssertEqual(share.coreCount, 4)
        let first = try node.shareForLocalRank(threads: 4, environment: ["OMPI_COMM_WORLD_LOCAL_SIZE": "2", "OMPI_COMM_WORLD_LOCAL_RANK": "0"])
        XCTAssertTrue(Set(share.osCPUs).isDisjoint(with: first.osCPUs), "\(share.osCPUs) vs \(first.osCPUs)")
        XCTAssertEqual(Set(share.osCPUs).union(first.osCPUs), Set(node.osCPUs))
        XCTAssertEqual(try node.shareForLocalRank(threads: 5, environment: env), node, "too few cores for both: unchanged")
        XCTAssertEqual(try node.shareForLocalRank(threads: 4, environment: [:]), node, "no launcher: unchanged")
    }

    /// Launcher values whose product with the thread count would overflow, or that make no sense,
    /// leave the topology as it is (no trap, no wrap-around into a bogus block).
    func testAbsurdLocalRankValuesLeaveTheTopologyAlone() throws {
        let node = try Topology(synthetic: "pack:2 core:4 pu:2")
        for (size, rank, threads) in [("4611686018427387904", "2", 4), ("9223372036854775807", "9223372036854775806", 2),
                                      ("2", "1", Int.max), ("2", "1", Int.max / 2 + 1), ("-2", "1", 2), ("2", "-1", 2)] {
            let env = ["OMPI_COMM_WORLD_LOCAL_SIZE": size, "OMPI_COMM_WORLD_LOCAL_RANK": rank]
            XCTAssertEqual(try node.shareForLocalRank(threads: threads, environment: env), node, "\(size) \(rank) \(threads)")
        }
    }

    /// Worker counts outside 1...WorkerPool.maximumWorkers are errors, not preconditions.
    func testPlacementRejectsWorkerCountsOutOfRange() throws {
        let topology = try Topology(synthetic: bigMachine)
        for workers in [0, -1, WorkerPool.maximumWorkers + 1, 1_000_000_000] {
            XCTAssertThrowsError(try PlacementPlan(workers: workers, topology: topology), "\(workers)") { error in
                XCTAssertTrue(error is WorkerPoolError, "\(error)")
            }
        }
        XCTAssertEqual(try PlacementPlan(workers: WorkerPool.maximumWorkers, topology: topology).workerCount, WorkerPool.maximumWorkers)
        let empty = Topology(source: "empty", isSynthetic: true, packageCount: 0, numaNodeCount: 0,
                             l3CacheCount: 0, l2CacheCount: 0, cores: [])
        XCTAssertThrowsError(try PlacementPlan(workers: 1, topology: empty))
    }

    /// A synthetic description naming more PUs than any node is refused at once (hwloc would build
    /// every object); the count skips attributes and multiplies without overflow.
    func testHugeSyntheticTopologiesAreRefused() throws {
        for description in ["pack:1000 core:1000 pu:100", "pack:4294967296 core:4294967296 pu:4294967296",
                            "pack:2 numa:2(memory=1000000000) core:65536 pu:2"] {
            let start = Date()
            XCTAssertThrowsError(try Topology(synthetic: description), description) { error in
                XCTAssertTrue("\(error)".contains("at most 65536"), "\(error)")
            }
            XCTAssertLessThan(Date().timeIntervalSince(start), 1, description)
        }
        XCTAssertEqual(try Topology(synthetic: "pack:2 numa:2(memory=1000000000) core:16 pu:2").processingUnitCount, 128)
    }
}
