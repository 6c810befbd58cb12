// Worker-pool round trips: µs per `run` of an empty job, a job with one barrier and one with ten,
// for 1-4 workers (median of several batches of 1000 runs). Prints a table; asserts nothing.
//
//     swift run -c release BarrierBenchmarks          # the default wait policy
//     swift run -c release BarrierBenchmarks sweep    # a sweep of spin/yield budgets
import CPTSupport
import Foundation
import PTRuntime

final class BarrierJob: ParallelJob {
    let barriers: Int
    init(barriers: Int) { self.barriers = barriers }
    func run(worker: Int, pool: WorkerPool) {
        for _ in 0..<barriers { pool.barrier(worker: worker) }
    }
}

func microseconds(_ d: Duration) -> Double {
    let (seconds, attoseconds) = d.components
    return (Double(seconds) + Double(attoseconds) * 1e-18) * 1e6
}

/// Median µs per `run` over `repeats` batches of `steps` runs, after 100 warm-up runs.
func measure(_ pool: WorkerPool, _ job: ParallelJob, steps: Int, repeats: Int) -> Double {
    for _ in 0..<100 { pool.run(job) }
    var samples: [Double] = []
    for _ in 0..<repeats {
        let start = ContinuousClock.now
        for _ in 0..<steps { pool.run(job) }
        samples.append(microseconds(ContinuousClock.now - start) / Double(steps))
    }
    return samples.sorted()[repeats / 2]
}

func policy(_ b: (Int, Int), _ i: (Int, Int), _ c: (Int, Int)) -> WaitPolicy {
    WaitPolicy(barrier: Spin(pauses: b.0, yields: b.1), idle: Spin(pauses: i.0, yields: i.1),
               caller: Spin(pauses: c.0, yields: c.1))
}

let arguments = Array(CommandLine.arguments.dropFirst())
guard arguments.isEmpty || arguments == ["sweep"] else {
    FileHandle.standardError.write(Data("usage: BarrierBenchmarks [sweep]\n".utf8))
    exit(64)
}
let sweep = arguments == ["sweep"]

let start = ContinuousClock.now
for _ in 0..<1_000_000 { pt_cpu_relax() }
print(String(format: "pause: %.1f ns", microseconds(ContinuousClock.now - start) * 1e3 / 1e6))
let policies: [(String, WaitPolicy?)] = [
    ("default", nil),
    ("sleep", .sleep),
    ("b4000 i4000 c0", policy((4000, 0), (4000, 0), (0, 0))),
    ("b4000+20y i4000+20y c4000+20y", policy((4000, 20), (4000, 20), (4000, 20))),
    ("b4000+20y i20y c0", policy((4000, 20), (0, 20), (0, 0))),
    ("b4000+20y i100y c0", policy((4000, 20), (0, 100), (0, 0))),
    ("b20y i20y c0", policy((0, 20), (0, 20), (0, 0))),
    ("b100y i100y c0", policy((0, 100), (0, 100), (0, 0))),
    ("b20y i20y c20y", policy((0, 20), (0, 20), (0, 20))),
]
let repeats = sweep ? 3 : 7
let runs = sweep ? policies : [("default", nil)]
print("allowed CPUs \(pt_affinity_count()); µs per run, median of \(repeats) x 1000 runs: empty / 1 barrier / 10 barriers")
for workers in 1...4 {
    for (name, policy) in runs {
        let pool = try WorkerPool(workers: workers, waitPolicy: policy)
        let row = [0, 1, 10].map { measure(pool, BarrierJob(barriers: $0), steps: 1000, repeats: repeats) }
        print("workers \(workers) \(name.padding(toLength: 30, withPad: " ", startingAt: 0)) "
              + row.map { String(format: "%8.2f", $0) }.joined(separator: " "))
    }
}
