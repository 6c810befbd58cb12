// The machine as hwloc sees it, restricted to the CPUs this process may use, flattened into a
// value type: packages, NUMA nodes, L3/L2 caches, cores and their hardware threads (PUs).
import CHwloc
import CPTSupport

/// Why a topology could not be built.
public struct TopologyError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The CPUs this process may use, grouped the way placement needs them.
///
/// Built from hwloc (`Topology()`, this machine) or from an hwloc synthetic description
/// (`Topology(synthetic: "pack:2 numa:2 core:16 pu:2")`, a machine we do not have). Each level
/// multiplies the one above: that example has 2 packages x 2 NUMA nodes x 16 cores = 64 cores
/// and 128 PUs. The real machine's topology honours hwloc's allowed cpuset (cgroup cpuset) and
/// the process's affinity mask (`taskset`, `srun --cpus-per-task`, `mpirun --bind-to`).
///
/// All indices except OS CPU numbers are logical: 0..<count in hwloc's tree order, after
/// restriction, so `core` 0...n-1 are the allowed cores, package by package.
public struct Topology: Sendable, Equatable {
    /// One physical core and its allowed hardware threads.
    public struct Core: Sendable, Equatable {
        /// Logical core index, 0..<coreCount, in tree order (package 0's cores first).
        public var index: Int
        public var package: Int
        public var numa: Int
        /// Logical index of the L3 / L2 cache above this core, or -1 when hwloc reports none.
        public var l3: Int
        public var l2: Int
        /// OS indices of this core's allowed hardware threads (PUs), in hwloc order.
        public var osCPUs: [Int]
    }

    /// "this machine" or the synthetic description it was built from.
    public var source: String
    public var isSynthetic: Bool
    public var packageCount: Int
    public var numaNodeCount: Int
    public var l3CacheCount: Int
    public var l2CacheCount: Int
    /// Allowed cores in logical order; every one has at least one allowed PU.
    public var cores: [Core]

    public var coreCount: Int { cores.count }
    public var processingUnitCount: Int { cores.reduce(0) { $0 + $1.osCPUs.count } }
    /// Every allowed OS CPU, ascending.
    public var osCPUs: [Int] { cores.flatMap(\.osCPUs).sorted() }

    /// This machine, restricted to the CPUs the process may run on (the union of its threads'
    /// affinity masks and hwloc's allowed cpuset). `restrictedTo` narrows it further to the given
    /// OS CPUs, as `taskset -c` would.
    public init(restrictedTo osCPUs: [Int]? = nil) throws {
        let handle = try HwlocTopology(synthetic: nil, restrictedTo: osCPUs, honourAffinity: true)
        self = handle.snapshot(source: "this machine", isSynthetic: false)
    }

    /// A synthetic machine from an hwloc description such as "pack:2 numa:2 core:16 pu:2" or
    /// "package:2 l3:1 core:8 pu:2" (see `hwloc_topology_set_synthetic`). `restrictedTo` keeps only
    /// the given OS CPUs (the synthetic PUs are numbered 0..<n in order).
    public init(synthetic description: String, restrictedTo osCPUs: [Int]? = nil) throws {
        let handle = try HwlocTopology(synthetic: description, restrictedTo: osCPUs, honourAffinity: false)
        self = handle.snapshot(source: description, isSynthetic: true)
    }

    /// A topology from explicit parts (tests, reports of remote machines).
    public init(source: String, isSynthetic: Bool, packageCount: Int, numaNodeCount: Int,
                l3CacheCount: Int, l2CacheCount: Int, cores: [Core]) {
        self.source = source
        self.isSynthetic = isSynthetic
        self.packageCount = packageCount
        self.numaNodeCount = numaNodeCount
        self.l3CacheCount = l3CacheCount
        self.l2CacheCount = l2CacheCount
        self.cores = cores
    }
}

/// Owns one loaded hwloc topology. Used to build `Topology` values and, kept alive by a
/// `WorkerPool`, to bind worker threads. Read-only after init, so binding from several threads
/// at once is safe (hwloc: functions that do not modify the topology are thread-safe).
final class HwlocTopology: @unchecked Sendable {
    let topology: hwloc_topology_t

    init(synthetic: String?, restrictedTo osCPUs: [Int]?, honourAffinity: Bool) throws {
        var handle: hwloc_topology_t?
        guard hwloc_topology_init(&handle) == 0, let handle else {
            throw TopologyError("hwloc_topology_init failed")
        }
        // From here on deinit destroys the handle, also when init throws (all stored properties set).
        topology = handle
        if let synthetic {
            // hwloc builds every object a description names, so "pack:1000 core:1000 pu:100" would
            // take minutes and gigabytes: refuse descriptions with more PUs than any real node.
            let pus = Self.syntheticPUCount(synthetic)
            guard pus <= Self.maximumSyntheticPUs else {
                throw TopologyError("the synthetic topology \"\(synthetic)\" describes \(pus == .max ? "too many" : "\(pus)") PUs; "
                    + "at most \(Self.maximumSyntheticPUs)")
            }
            guard hwloc_topology_set_synthetic(handle, synthetic) == 0 else {
                throw TopologyError("hwloc does not understand the synthetic topology \"\(synthetic)\" "
                    + "(example: \"pack:2 numa:2 core:16 pu:2\")")
            }
        }
        guard hwloc_topology_load(handle) == 0 else {
            throw TopologyError("hwloc_topology_load failed")
        }
        // hwloc already dropped CPUs outside the cgroup cpuset; also drop those outside the
        // process's affinity mask (taskset, srun, mpirun bindings), then any explicit list.
        let keep = hwloc_bitmap_dup(hwloc_topology_get_topology_cpuset(handle))!
        defer { hwloc_bitmap_free(keep) }
        if honourAffinity {
            let bound = hwloc_bitmap_alloc()!
            defer { hwloc_bitmap_free(bound) }
            if hwloc_get_cpubind(handle, bound, Int32(HWLOC_CPUBIND_PROCESS.rawValue)) == 0,
               hwloc_bitmap_iszero(bound) == 0 {
                hwloc_bitmap_and(keep, keep, bound)
            }
        }
        if let osCPUs {
            let wanted = hwloc_bitmap_alloc()!
            defer { hwloc_bitmap_free(wanted) }
            for cpu in osCPUs where cpu >= 0 { hwloc_bitmap_set(wanted, UInt32(cpu)) }
            hwloc_bitmap_and(keep, keep, wanted)
        }
        if hwloc_bitmap_iszero(keep) != 0 {
            throw TopologyError("no allowed CPUs left after restricting the topology to \(osCPUs.map { "\($0)" } ?? "the process's affinity mask")")
        }
        if hwloc_bitmap_isequal(keep, hwloc_topology_get_topology_cpuset(handle)) == 0 {
            guard hwloc_topology_restrict(handle, keep, UInt(HWLOC_RESTRICT_FLAG_REMOVE_CPULESS.rawValue)) == 0 else {
                throw TopologyError("hwloc_topology_restrict failed")
            }
        }
    }

    deinit { hwloc_topology_destroy(topology) }

    /// The most PUs a synthetic description may describe.
    static let maximumSyntheticPUs = 1 << 16

    /// The product of the arities ("type:N") of a synthetic description's levels: its PU count,
    /// or Int.max on overflow. Attributes in parentheses and memory children in brackets are skipped.
    static func syntheticPUCount(_ description: String) -> Int {
        var product = 1
        var depth = 0
        var token = ""
        func finish() {
            defer { token = "" }
            guard let colon = token.lastIndex(of: ":"),
                  let arity = Int(token[token.index(after: colon)...].prefix(while: \.isNumber)) else { return }
            let (next, overflow) = product.multipliedReportingOverflow(by: arity)
            product = overflow ? .max : next
        }
        for character in description {
            switch character {
            case "(", "[": depth += 1
            case ")", "]": depth = max(0, depth - 1)
            case _ where depth > 0: break
            case _ where character.isWhitespace: finish()
            default: token.append(character)
            }
        }
        finish()
        return product
    }

    private func count(_ type: hwloc_obj_type_t) -> Int {
        Int(hwloc_get_nbobjs_by_type(topology, type))
    }

    private func ancestorIndex(_ type: hwloc_obj_type_t, of object: hwloc_obj_t) -> Int {
        guard let ancestor = hwloc_get_ancestor_obj_by_type(topology, type, object) else { return -1 }
        return Int(ancestor.pointee.logical_index)
    }

    func snapshot(source: String, isSynthetic: Bool) -> Topology {
        let numaNodes = (0..<count(HWLOC_OBJ_NUMANODE)).compactMap {
            hwloc_get_obj_by_type(topology, HWLOC_OBJ_NUMANODE, UInt32($0))
        }
        var cores: [Topology.Core] = []
        var coreSlot: [Int: Int] = [:]  // hwloc core logical index (or PU's, if no cores) -> cores slot
        for puIndex in 0..<count(HWLOC_OBJ_PU) {
            guard let pu = hwloc_get_obj_by_type(topology, HWLOC_OBJ_PU, UInt32(puIndex)) else { continue }
            let osCPU = Int(pu.pointee.os_index)
            let hwCore = ancestorIndex(HWLOC_OBJ_CORE, of: pu)
            let key = hwCore >= 0 ? hwCore : -1 - puIndex
            if let slot = coreSlot[key] {
                cores[slot].osCPUs.append(osCPU)
                continue
            }
            let numa = numaNodes.firstIndex { hwloc_bitmap_isset($0.pointee.cpuset, UInt32(osCPU)) != 0 } ?? 0
            coreSlot[key] = cores.count
            cores.append(Topology.Core(
                index: cores.count,
                package: max(0, ancestorIndex(HWLOC_OBJ_PACKAGE, of: pu)),
                numa: numa,
                l3: ancestorIndex(HWLOC_OBJ_L3CACHE, of: pu),
                l2: ancestorIndex(HWLOC_OBJ_L2CACHE, of: pu),
                osCPUs: [osCPU]))
        }
        return Topology(
            source: source, isSynthetic: isSynthetic,
            packageCount: max(1, count(HWLOC_OBJ_PACKAGE)),
            numaNodeCount: max(1, numaNodes.count),
            l3CacheCount: count(HWLOC_OBJ_L3CACHE),
            l2CacheCount: count(HWLOC_OBJ_L2CACHE),
            cores: cores)
    }

    /// The calling thread's current CPU binding (to restore it later), or nil.
    func currentThreadBinding() -> hwloc_bitmap_t? {
        guard let set = hwloc_bitmap_alloc() else { return nil }
        guard hwloc_get_cpubind(topology, set, Int32(HWLOC_CPUBIND_THREAD.rawValue)) == 0 else {
            hwloc_bitmap_free(set)
            return nil
        }
        return set
    }

    /// Binds `thread` to `set` again (and frees `set`).
    func restoreBinding(of thread: pthread_t, to set: hwloc_bitmap_t) {
        _ = hwloc_set_thread_cpubind(topology, thread, set, 0)
        hwloc_bitmap_free(set)
    }

    /// Binds the calling thread to one OS CPU (thread scope) and returns the CPU it then runs on,
    /// or -1 when binding failed (CPU not allowed, not present).
    func bindCurrentThread(toOSCPU cpu: Int) -> Int {
        guard cpu >= 0, let set = hwloc_bitmap_alloc() else { return -1 }
        defer { hwloc_bitmap_free(set) }
        hwloc_bitmap_only(set, UInt32(cpu))
        guard hwloc_set_cpubind(topology, set, Int32(HWLOC_CPUBIND_THREAD.rawValue)) == 0 else { return -1 }
        // The kernel migrates a thread that changes its own affinity before the call returns.
        return Int(pt_current_cpu())
    }
}

/// Binds the calling thread to one OS CPU with hwloc (thread scope). Returns the OS CPU the
/// thread runs on afterwards (`sched_getcpu`), or -1 when the CPU is not allowed. Loads the
/// machine's topology on each call (about a millisecond): not for hot paths.
@discardableResult
public func bindCurrentThread(toOSCPU cpu: Int) -> Int {
    guard let handle = try? HwlocTopology(synthetic: nil, restrictedTo: nil, honourAffinity: false) else { return -1 }
    return handle.bindCurrentThread(toOSCPU: cpu)
}
