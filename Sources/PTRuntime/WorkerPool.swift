// The pinned worker pool the trainer steps through: long-lived threads that bind themselves to
// one CPU each and meet at a spin-then-futex barrier. Steady-state run + barrier allocate nothing
// and take no locks (C11 atomics and futex only, CPTThreads.h).
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CHwloc
import CPTSupport

/// Work run on every worker of a pool, once per call to `WorkerPool.run`.
/// Implementations hold all their state (buffers, step number) so that a call allocates nothing.
public protocol ParallelJob: AnyObject {
    /// Runs on worker `worker` (0..<pool.workerCount). Phases inside one call are separated with
    /// `pool.barrier(worker:)`, which every worker must call the same number of times.
    func run(worker: Int, pool: WorkerPool)
}

/// Why a worker pool or a placement could not be made: a worker count out of range, or a thread
/// the system would not start. One line.
public struct WorkerPoolError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Where one worker was asked to run and where it was seen running.
public struct WorkerPlacement: Sendable, Equatable, Codable {
    public var worker: Int
    /// OS CPU the worker's thread was bound to and then observed running on (`sched_getcpu`
    /// right after binding), or -1 when it was not bound (no CPU asked, or binding failed).
    public var osCPU: Int
    public init(worker: Int, osCPU: Int) { self.worker = worker; self.osCPU = osCPU }
}

/// A fixed set of long-lived workers. `run` hands one job to all of them and returns when every
/// worker has finished it. The calling thread waits (it does not act as a worker, even with one
/// worker: the job always runs on the pool's own pinned, flush-to-zero threads).
///
/// Each worker is an owned pthread (not a Dispatch queue: a queue's work items hop between OS
/// threads, so pinning would not stick, and waking queues cost 70-140 µs per step). It binds
/// itself with `hwloc_set_cpubind(HWLOC_CPUBIND_THREAD)`, sets flush-to-zero, records
/// `sched_getcpu()`, then serves jobs until the pool is released (`deinit` stops and joins all).
///
/// `run` must not be called from a worker or from two threads at once.
public final class WorkerPool: @unchecked Sendable {
    public let workerCount: Int
    public private(set) var placement: [WorkerPlacement]
    /// How long each kind of wait spins before it sleeps in the kernel.
    public let waitPolicy: WaitPolicy
    /// Notes from start-up: CPUs that could not be bound, topology not readable; with `cpus == nil`
    /// also the default plan's warnings (with explicit CPUs those are `PlacementPlan.warnings`).
    public private(set) var warnings: [String] = []

    private let state: PoolState
    private var threads: [pthread_t] = []

    /// Whether the thread that calls `run` acts as worker 0 (see `init`).
    public let callerIsWorkerZero: Bool

    /// The most workers a pool (and a placement plan) takes: far above the cores of any one node
    /// today, far below what would exhaust threads or memory. A larger request is an error, not
    /// thousands of threads.
    public static let maximumWorkers = 4096

    /// Throws unless `workers` is in 1...maximumWorkers.
    public static func checkWorkerCount(_ workers: Int) throws {
        guard workers >= 1 else { throw WorkerPoolError("a worker pool needs at least one worker (asked for \(workers))") }
        guard workers <= maximumWorkers else {
            throw WorkerPoolError("\(workers) worker threads asked for; at most \(maximumWorkers)")
        }
    }

    /// Starts `workers` threads, bound to `cpus[i]` (OS CPU indices, -1 = leave unbound). With
    /// `cpus == nil` the workers follow the default spread plan of this process's topology (one
    /// per physical core, hardware threads next, wrap-around when oversubscribed).
    /// - Parameter waitPolicy: overrides `WaitPolicy.default(workers:cpus:)` (benchmarks, tests).
    /// - Parameter callerIsWorkerZero: the creating thread binds itself to worker 0's CPU and runs
    ///   worker 0's part of every job inside `run`; only workers 1..<N get threads of their own.
    ///   No thread sleeps and wakes between steps just to hand over work (measured in
    ///   docs/ARCHITECTURE.md); `run` must then always be called from the creating thread.
    /// - Throws: `WorkerPoolError` for a worker count outside 1...maximumWorkers, a `cpus` list of
    ///   another length, or a thread the system would not start (the threads already started are
    ///   stopped and joined first).
    public init(workers: Int, cpus: [Int]? = nil, waitPolicy: WaitPolicy? = nil, callerIsWorkerZero: Bool = false) throws {
        self.callerIsWorkerZero = callerIsWorkerZero
        try Self.checkWorkerCount(workers)
        if let cpus, cpus.count != workers {
            throw WorkerPoolError("\(cpus.count) CPUs given for \(workers) workers; give one OS CPU (or -1) per worker")
        }
        workerCount = workers
        let hwloc = try? HwlocTopology(synthetic: nil, restrictedTo: nil, honourAffinity: false)
        var targets: [Int]
        var notes: [String] = []
        if let cpus {
            targets = cpus
        } else if let topology = try? Topology(), let plan = try? PlacementPlan(workers: workers, topology: topology) {
            targets = plan.osCPUs
            notes += plan.warnings
        } else {
            targets = Array(repeating: -1, count: workers)
            notes.append("hwloc could not load this machine's topology: workers are not pinned")
        }
        if hwloc == nil && targets.contains(where: { $0 >= 0 }) {
            targets = Array(repeating: -1, count: workers)
            notes.append("hwloc could not load this machine's topology: workers are not pinned")
        }
        let allowed = max(1, Int(pt_affinity_count()))
        // Spinning is decided by whether workers plus the caller fit the allowed CPUs (a caller
        // that is worker 0 is one of the workers).
        let policy = waitPolicy ?? (callerIsWorkerZero ? WaitPolicy.callerWorks(workers: workers, cpus: allowed)
                                                       : WaitPolicy.default(workers: workers, cpus: allowed))
        self.waitPolicy = policy

        state = PoolState(workers: workers, targets: targets, hwloc: hwloc, policy: policy,
                          callerIsWorkerZero: callerIsWorkerZero)
        placement = []
        state.pool = Unmanaged.passUnretained(self)
        threads.reserveCapacity(workers)
        if callerIsWorkerZero { state.adoptCallerAsWorkerZero() }
        for worker in (callerIsWorkerZero ? 1 : 0)..<workers {
            let retained = Unmanaged.passRetained(WorkerContext(state: state, worker: worker))
            var thread = pthread_t()
            let rc = pthread_create(&thread, nil, { raw in
                let context = Unmanaged<WorkerContext>.fromOpaque(raw!).takeRetainedValue()
                context.state.serve(worker: context.worker)
                return nil
            }, retained.toOpaque())
            guard rc == 0 else {
                // Every stored property is set, so deinit runs: it stops and joins `threads`.
                retained.release()
                throw WorkerPoolError("cannot start worker thread \(worker) of \(workers) "
                    + "(pthread_create: \(String(cString: strerror(rc)))); ask for fewer threads")
            }
            threads.append(thread)
        }
        state.waitUntilReady()
        placement = (0..<workers).map { WorkerPlacement(worker: $0, osCPU: state.observedCPU[$0]) }
        for (worker, cpu) in targets.enumerated() where cpu >= 0 && placement[worker].osCPU != cpu {
            notes.append("worker \(worker) could not be bound to OS CPU \(cpu) (not allowed?); "
                + "it runs unbound")
            placement[worker].osCPU = -1
        }
        warnings = notes
    }

    /// Convenience: a pool laid out by a placement plan.
    public convenience init(plan: PlacementPlan, waitPolicy: WaitPolicy? = nil, callerIsWorkerZero: Bool = false) throws {
        try self.init(workers: plan.workerCount, cpus: plan.osCPUs, waitPolicy: waitPolicy, callerIsWorkerZero: callerIsWorkerZero)
    }

    deinit {
        state.shutDown()
        for thread in threads { pthread_join(thread, nil) }
    }

    /// Runs `job.run(worker:pool:)` on every worker and returns when all have returned.
    public func run(_ job: ParallelJob) {
        state.run(job)
    }

    /// Waits until every worker of the running job has reached this barrier (the same number of
    /// times). Memory written before the barrier by any worker is visible after it to all.
    @inline(__always)
    public func barrier(worker: Int) {
        state.barrier()
    }
}

/// How long waits spin before they sleep on a futex: first `pauses` x `pause` (~25 ns each on
/// the dev machine's CPU), then `yields` x `sched_yield` (lets a descheduled thread that shares
/// this CPU run first: what matters when threads outnumber CPUs), then FUTEX_WAIT.
public struct Spin: Sendable, Equatable {
    public var pauses: Int
    public var yields: Int
    public init(pauses: Int, yields: Int = 0) { self.pauses = pauses; self.yields = yields }
}

/// The spin budget of each kind of wait in a `WorkerPool`.
public struct WaitPolicy: Sendable, Equatable {
    /// A worker waiting at `barrier` for the other workers.
    public var barrier: Spin
    /// A worker waiting for the next `run`.
    public var idle: Spin
    /// The calling thread waiting in `run` for the workers.
    public var caller: Spin

    public init(barrier: Spin, idle: Spin, caller: Spin) {
        self.barrier = barrier; self.idle = idle; self.caller = caller
    }

    /// No spinning at all: every wait sleeps on the futex.
    public static let sleep = WaitPolicy(barrier: Spin(pauses: 0), idle: Spin(pauses: 0), caller: Spin(pauses: 0))

    /// Chosen by `cpus`, the CPUs the process may use (the caller is one more thread).
    ///
    /// Measured on the 2-core AVX-512 dev VM (other builds running alongside, so noisy), µs per
    /// `run`, median of 7 x 1,000 runs, three sessions (`swift run -c release BarrierBenchmarks` in
    /// Benchmarks/; `sweep` compares policies):
    ///
    ///     workers           empty job     1 barrier   10 barriers
    ///     1                 0.23-0.24     0.23-0.24   0.21-0.23
    ///     2 (= CPUs)        8-12          37-58       20-24
    ///     3 (oversub.)      25-31         23          60-65
    ///     4 (oversub.)      12-20         57-64       74-88
    ///
    /// With 2 workers on 2 CPUs every run pays a futex wake of the caller (it cannot spin without
    /// taking a worker's CPU), hence ~10-50 µs instead of ~1 µs; per step of a few ms that is
    /// about 1%. Alternatives measured (same units, 2 / 3 / 4 workers, 10 barriers): pure sleep
    /// (no spinning) 270-380; pause-spinning everywhere incl. the caller 430-520 at 2 workers and
    /// 1,500-4,000 oversubscribed (spinners hold the CPU a descheduled worker needs); the
    /// `sched_yield` spins below cut oversubscribed 10-barrier runs from ~220-340 µs (sleep at
    /// once) to 60-90 µs.
    /// For a pool whose caller is worker 0: the caller is busy, not asleep, between jobs, so with
    /// a CPU per worker everyone spins a while before sleeping; oversubscribed as `default`.
    public static func callerWorks(workers: Int, cpus: Int) -> WaitPolicy {
        if workers <= cpus {
            let spin = Spin(pauses: 4_000, yields: 20)
            return WaitPolicy(barrier: spin, idle: spin, caller: spin)
        }
        return WaitPolicy.default(workers: workers, cpus: cpus)
    }

    public static func `default`(workers: Int, cpus: Int) -> WaitPolicy {
        if workers < cpus {  // room for the caller too: everyone spins
            let spin = Spin(pauses: 4_000, yields: 20)
            return WaitPolicy(barrier: spin, idle: spin, caller: spin)
        }
        if workers == cpus {  // the caller sleeps; idle workers yield so it gets a CPU back fast
            return WaitPolicy(barrier: Spin(pauses: 4_000, yields: 20), idle: Spin(pauses: 0, yields: 100),
                              caller: Spin(pauses: 0))
        }
        // Oversubscribed: never pause-spin (a spinning worker holds the CPU that a descheduled
        // one needs: 1,500-4,000 µs per 10 barriers, measured above); yield a little, then sleep.
        return WaitPolicy(barrier: Spin(pauses: 0, yields: 20), idle: Spin(pauses: 0, yields: 20),
                          caller: Spin(pauses: 0))
    }
}

/// Thread entry argument.
private final class WorkerContext {
    let state: PoolState
    let worker: Int
    init(state: PoolState, worker: Int) { self.state = state; self.worker = worker }
}

/// Everything the workers touch, kept apart from `WorkerPool` so that threads do not keep the
/// pool alive (its deinit shuts them down). The futex words live on their own 128-byte lines
/// (two 64-byte lines: the adjacent-line prefetcher pairs them) so waiters spinning on one word do
/// not slow writers of another.
final class PoolState: @unchecked Sendable {
    let workerCount: UInt32
    let targets: [Int]
    let hwloc: HwlocTopology?
    let policy: WaitPolicy
    /// Set by the pool right after init; jobs only run while the pool is alive.
    var pool: Unmanaged<WorkerPool>?
    /// The job of the current `run`; written by the caller before it publishes `startGeneration`.
    var currentJob: ParallelJob?
    /// The caller's count of runs (mirrors `startGeneration`, read without atomics by the caller).
    var generation: UInt32 = 0
    /// OS CPU each worker observed after binding (-1: unbound), written before `ready`.
    let observedCPU: UnsafeMutablePointer<Int>

    private let words: UnsafeMutablePointer<UInt32>
    private static let line = 32  // UInt32s per 128-byte line
    private var startGeneration: UnsafeMutablePointer<UInt32> { words }
    private var shutdown: UnsafeMutablePointer<UInt32> { words + 1 }
    private var startSleepers: UnsafeMutablePointer<UInt32> { words + 1 * Self.line }
    private var remaining: UnsafeMutablePointer<UInt32> { words + 2 * Self.line }
    private var doneGeneration: UnsafeMutablePointer<UInt32> { words + 3 * Self.line }
    private var callerSleepers: UnsafeMutablePointer<UInt32> { words + 4 * Self.line }
    private var barrierCount: UnsafeMutablePointer<UInt32> { words + 5 * Self.line }
    private var barrierGeneration: UnsafeMutablePointer<UInt32> { words + 6 * Self.line }
    private var barrierSleepers: UnsafeMutablePointer<UInt32> { words + 7 * Self.line }
    private var ready: UnsafeMutablePointer<UInt32> { words + 8 * Self.line }
    private static let wordCount = 9 * line

    /// Worker 0 is the thread that calls `run` (see `WorkerPool.init`).
    let callerIsWorkerZero: Bool

    init(workers: Int, targets: [Int], hwloc: HwlocTopology?, policy: WaitPolicy, callerIsWorkerZero: Bool = false) {
        self.callerIsWorkerZero = callerIsWorkerZero
        workerCount = UInt32(workers)
        self.targets = targets
        self.hwloc = hwloc
        self.policy = policy
        let raw = UnsafeMutableRawPointer.allocate(byteCount: Self.wordCount * 4, alignment: 128)
        raw.initializeMemory(as: UInt32.self, repeating: 0, count: Self.wordCount)
        words = raw.assumingMemoryBound(to: UInt32.self)
        observedCPU = .allocate(capacity: workers)
        observedCPU.initialize(repeating: -1, count: workers)
    }

    deinit {
        UnsafeMutableRawPointer(words).deallocate()
        observedCPU.deallocate()
    }

    // MARK: waiting

    /// Spins (`spin.pauses` pauses, then `spin.yields` sched_yields), then sleeps on the futex,
    /// until `*word != value`.
    /// `sleepers` counts threads that may be asleep on `word`, so that publishers only pay the
    /// wake syscall when someone sleeps (seq_cst on both sides: either the publisher sees the
    /// sleeper or the sleeper sees the new value).
    @inline(__always)
    private static func wait(_ word: UnsafeMutablePointer<UInt32>, whileEquals value: UInt32,
                             sleepers: UnsafeMutablePointer<UInt32>, spin: Spin) {
        var i = 0
        while i < spin.pauses {
            if pt_atomic_load_acquire_u32(word) != value { return }
            pt_cpu_relax()
            i += 1
        }
        i = 0
        while i < spin.yields {
            if pt_atomic_load_acquire_u32(word) != value { return }
            sched_yield()
            i += 1
        }
        while pt_atomic_load_acquire_u32(word) == value {
            _ = pt_atomic_fetch_add_seqcst_u32(sleepers, 1)
            if pt_atomic_load_seqcst_u32(word) == value { _ = pt_futex_wait(word, value) }
            _ = pt_atomic_fetch_sub_seqcst_u32(sleepers, 1)
        }
    }

    /// Stores `value` and wakes the sleepers on `word`, if any.
    @inline(__always)
    private static func publish(_ word: UnsafeMutablePointer<UInt32>, _ value: UInt32,
                                sleepers: UnsafeMutablePointer<UInt32>) {
        pt_atomic_store_seqcst_u32(word, value)
        if pt_atomic_load_seqcst_u32(sleepers) != 0 { _ = pt_futex_wake(word, Int32.max) }
    }

    // MARK: caller side

    /// The creating thread becomes worker 0: binds itself and sets flush-to-zero.
    /// Restores its binding when the pool goes, so that a later topology query (which unites the
    /// bindings of the process's threads) or a later pool sees the CPUs the process had.
    func adoptCallerAsWorkerZero() {
        if let hwloc, targets[0] >= 0 {
            callerBinding = hwloc.currentThreadBinding()
            callerThread = pthread_self()
            observedCPU[0] = hwloc.bindCurrentThread(toOSCPU: targets[0])
        }
        pt_set_flush_to_zero()
    }

    private var callerBinding: hwloc_bitmap_t?
    private var callerThread: pthread_t?

    func waitUntilReady() {
        let threads = callerIsWorkerZero ? workerCount - 1 : workerCount
        while true {
            let seen = pt_atomic_load_acquire_u32(ready)
            if seen == threads { return }
            _ = pt_futex_wait(ready, seen)
        }
    }

    @inline(__always)
    func run(_ job: ParallelJob) {
        if callerIsWorkerZero {
            runAsWorkerZero(job)
            return
        }
        currentJob = job
        pt_atomic_store_relaxed_u32(remaining, workerCount)
        let previous = generation
        generation = previous &+ 1
        Self.publish(startGeneration, generation, sleepers: startSleepers)
        Self.wait(doneGeneration, whileEquals: previous, sleepers: callerSleepers,
                  spin: policy.caller)
        currentJob = nil
    }

    /// Hands the job to workers 1..<N, runs worker 0's part here, then waits for the others.
    @inline(__always)
    private func runAsWorkerZero(_ job: ParallelJob) {
        let pool = self.pool.unsafelyUnwrapped.takeUnretainedValue()
        if workerCount == 1 {
            job.run(worker: 0, pool: pool)
            return
        }
        currentJob = job
        pt_atomic_store_relaxed_u32(remaining, workerCount - 1)
        let previous = generation
        generation = previous &+ 1
        Self.publish(startGeneration, generation, sleepers: startSleepers)
        job.run(worker: 0, pool: pool)
        Self.wait(doneGeneration, whileEquals: previous, sleepers: callerSleepers, spin: policy.caller)
        currentJob = nil
    }

    func shutDown() {
        if let hwloc, let callerBinding, let callerThread {
            hwloc.restoreBinding(of: callerThread, to: callerBinding)
            self.callerBinding = nil
        }
        pt_atomic_store_seqcst_u32(shutdown, 1)
        generation &+= 1
        pt_atomic_store_seqcst_u32(startGeneration, generation)
        _ = pt_futex_wake(startGeneration, Int32.max)
    }

    // MARK: worker side

    func serve(worker: Int) {
        if let hwloc, targets[worker] >= 0 {
            observedCPU[worker] = hwloc.bindCurrentThread(toOSCPU: targets[worker])
        }
        pt_set_flush_to_zero()
        _ = pt_atomic_fetch_add_seqcst_u32(ready, 1)
        _ = pt_futex_wake(ready, 1)

        var seen: UInt32 = 0
        while true {
            Self.wait(startGeneration, whileEquals: seen, sleepers: startSleepers,
                      spin: policy.idle)
            seen = pt_atomic_load_acquire_u32(startGeneration)
            if pt_atomic_load_acquire_u32(shutdown) != 0 { return }
            currentJob.unsafelyUnwrapped.run(worker: worker, pool: pool.unsafelyUnwrapped.takeUnretainedValue())
            if pt_atomic_fetch_sub_seqcst_u32(remaining, 1) == 1 {
                Self.publish(doneGeneration, seen, sleepers: callerSleepers)
            }
        }
    }

    /// Central sense-reversing barrier: the last of `workerCount` arrivals resets the count and
    /// advances the generation; the others wait for the generation to change.
    @inline(__always)
    func barrier() {
        if workerCount == 1 { return }
        let generation = pt_atomic_load_acquire_u32(barrierGeneration)
        if pt_atomic_fetch_add_acqrel_u32(barrierCount, 1) == workerCount - 1 {
            pt_atomic_store_relaxed_u32(barrierCount, 0)
            Self.publish(barrierGeneration, generation &+ 1, sleepers: barrierSleepers)
        } else {
            Self.wait(barrierGeneration, whileEquals: generation, sleepers: barrierSleepers,
                      spin: policy.barrier)
        }
    }
}
