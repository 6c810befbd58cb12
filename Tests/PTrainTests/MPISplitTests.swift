// MPI transfers larger than one call may carry (C int counts) are split into pieces. The split
// path is driven here with a tiny piece size (PTRAIN_MPI_MAX_COUNT) on a small job, with both
// gradient exchanges: every gather of a training step, and every point-to-point message of the
// sharded exchange, goes through it, and the weights must equal those of one process.
// Needs PTRAIN_MPI_BINARY and mpirun, as MPITests.
import Foundation
import XCTest

final class MPISplitTests: XCTestCase {
    func testSplitTransfersGiveTheSameWeights() throws {
        let launcher = try MPILauncher.find()
        let binary = launcher.binary
        let dir = TestSupport.temporaryDirectory()
        let single = dir.appendingPathComponent("single")
        let reference = try TestSupport.smallXOConfig(dir, train: 320, test: 64, epochs: 2)
        let a = try TestSupport.run(binary, ["train", "--config", reference, "--threads", "1", "--output", single.path, "-q"])
        XCTAssertEqual(a.status, 0, a.stderr)
        let weights = try Data(contentsOf: single.appendingPathComponent("model.safetensors"))
        for exchange in ["allgather", "reduce_scatter"] {
            let folder = dir.appendingPathComponent(exchange)
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            let config = try TestSupport.smallXOConfig(folder, train: 320, test: 64, epochs: 2) {
                $0 + "distributed:\n  exchange: \(exchange)\n"
            }
            let split = folder.appendingPathComponent("split")
            // Pieces of 3 elements: the gradient gather or the sharded exchange's messages (thousands
            // of floats) and the per-shard loss gather (4 values over 2 ranks, uneven pieces) all
            // take the split path.
            let b = try launcher.run(["-np", "2", "--bind-to", "none"], ["train", "--config", config, "--threads", "1", "--output", split.path, "-q"],
                                     extra: ["PTRAIN_MPI_MAX_COUNT": "3"])
            XCTAssertEqual(b.status, 0, b.stderr)
            XCTAssertTrue(b.stderr.contains("split into pieces of at most 3 elements"), b.stderr)
            XCTAssertEqual(try Data(contentsOf: split.appendingPathComponent("model.safetensors")), weights,
                           "\(exchange): split transfers changed the weights")
        }
    }
}
