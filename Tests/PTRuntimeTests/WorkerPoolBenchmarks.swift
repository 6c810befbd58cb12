// Barrier round-trip cost, run only with PTRUNTIME_BENCH=1 (prints a table; asserts nothing).
import CPTSupport
import PTRuntime
import XCTest

private final class BarrierJob: ParallelJob {
    let barriers: Int
    init(barriers: Int) { self.barriers = barriers }
    func run(worker: Int, pool: WorkerPool) {
        for _ in 0..<barriers { pool.barrier(worker: worker) }
    }
}

final class WorkerPoolBenchmarks: XCTestCase {
    /// Median µs per `run` over `repeats` batches of `steps` runs.
    private func measure(_ pool: WorkerPool, _ job: ParallelJob, steps: Int, repeats: Int = 5) -> Double {
        for _ in 0..<200 { pool.run(job) }
        var samples: [Double] = []
        for _ in 0..<repeats {
            let start = ContinuousClock.now
            for _ in 0..<steps { pool.run(job) }
            let elapsed = ContinuousClock.now - start
            let (seconds, attoseconds) = elapsed.components
            samples.append((Double(seconds) + Double(attoseconds) * 1e-18) * 1e6 / Double(steps))
        }
        return samples.sorted()[repeats / 2]
    }

    func testBarrierCost() throws {
        guard ProcessInfo.processInfo.environment["PTRUNTIME_BENCH"] == "1" else {
            throw XCTSkip("set PTRUNTIME_BENCH=1 to measure")
        }
        let spins = (ProcessInfo.processInfo.environment["PTRUNTIME_SPINS"] ?? "0,100,1000,4000,20000")
            .split(separator: ",").map { Int($0)! }
        let callerSpins: [Int?] = [nil, 0, 4000]
        print("allowed CPUs \(pt_affinity_count()); µs per run, median of 5 x N steps")
        print("spin   callerSpin workers  empty  1barrier  10barriers")
        for workers in 1...4 {
            for spin in spins {
                for callerSpin in callerSpins {
                    let pool = WorkerPool(workers: workers, spinIterations: spin, callerSpinIterations: callerSpin)
                    let steps = workers > 2 && spin > 1000 ? 200 : 5000
                    let empty = measure(pool, BarrierJob(barriers: 0), steps: steps)
                    let one = measure(pool, BarrierJob(barriers: 1), steps: steps)
                    let ten = measure(pool, BarrierJob(barriers: 10), steps: steps)
                    print(String(format: "%6d %10@ %7d %7.2f %8.2f %10.2f", spin,
                                 callerSpin.map { "\($0)" } ?? "auto(\(pool.callerSpinIterations))",
                                 workers, empty, one, ten))
                }
            }
        }
        let defaults = (1...4).map { workers -> String in
            let pool = WorkerPool(workers: workers)
            return String(format: "%d workers: %.2f / %.2f", workers,
                          measure(pool, BarrierJob(barriers: 0), steps: 5000),
                          measure(pool, BarrierJob(barriers: 1), steps: 5000))
        }
        print("defaults (empty / 1 barrier): " + defaults.joined(separator: "; "))
    }
}
