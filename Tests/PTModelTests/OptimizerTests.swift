// SGD (momentum, Nesterov, weight decay) against hand-computed updates, and the schedules' values.
import XCTest
import PTModel

final class OptimizerTests: XCTestCase {
    func run(_ sgd: SGD, lr: Float, w0: Float, grads: [Float]) -> (w: Float, v: Float) {
        var w = [w0], v: [Float] = [0]
        for g in grads {
            let gs = [g]
            w.withUnsafeMutableBufferPointer { wp in
                v.withUnsafeMutableBufferPointer { vp in
                    gs.withUnsafeBufferPointer { gp in
                        sgd.step(lr: lr, weights: wp.baseAddress!, gradients: gp.baseAddress!, velocity: vp.baseAddress!, range: 0..<1)
                    }
                }
            }
        }
        return (w[0], v[0])
    }

    func testPlainMomentumNesterovAndWeightDecay() {
        // Plain SGD: w = 1 - 0.1*0.5 = 0.95.
        XCTAssertEqual(run(SGD(momentum: 0), lr: 0.1, w0: 1, grads: [0.5]).w, 0.95, accuracy: 1e-7)
        // Momentum 0.9, grads 1 then 1: v1 = 1, w1 = 0.9; v2 = 1.9, w2 = 0.9 - 0.19 = 0.71.
        let m = run(SGD(momentum: 0.9), lr: 0.1, w0: 1, grads: [1, 1])
        XCTAssertEqual(m.v, 1.9, accuracy: 1e-6)
        XCTAssertEqual(m.w, 0.71, accuracy: 1e-6)
        // Nesterov: step = g + mu*v. Step 1: v = 1, w = 1 - 0.1*(1 + 0.9) = 0.81. Step 2: v = 1.9,
        // w = 0.81 - 0.1*(1 + 1.71) = 0.539.
        let n = run(SGD(momentum: 0.9, nesterov: true), lr: 0.1, w0: 1, grads: [1, 1])
        XCTAssertEqual(n.w, 0.539, accuracy: 1e-6)
        // Weight decay 0.1 adds 0.1*w to the gradient: g = 0 + 0.1*2 = 0.2, w = 2 - 0.5*0.2 = 1.9.
        XCTAssertEqual(run(SGD(momentum: 0, weightDecay: 0.1), lr: 0.5, w0: 2, grads: [0]).w, 1.9, accuracy: 1e-6)
    }

    func testSchedules() {
        let constant = LRSchedule(kind: .constant, baseLR: 0.1, totalSteps: 100)
        XCTAssertEqual(constant.lr(at: 0), 0.1)
        XCTAssertEqual(constant.lr(at: 99), 0.1)
        let step = LRSchedule(kind: .step, baseLR: 1, totalSteps: 100, stepSize: 10, gamma: 0.5)
        XCTAssertEqual(step.lr(at: 9), 1)
        XCTAssertEqual(step.lr(at: 10), 0.5)
        XCTAssertEqual(step.lr(at: 25), 0.25)
        let cosine = LRSchedule(kind: .cosine, baseLR: 1, totalSteps: 100)
        XCTAssertEqual(cosine.lr(at: 0), 1)
        XCTAssertEqual(cosine.lr(at: 50), 0.5, accuracy: 1e-6)
        XCTAssertEqual(cosine.lr(at: 100), 0, accuracy: 1e-6)
        // Warm-up: linear from lr/warmup to lr, then the schedule over the remaining steps.
        let warm = LRSchedule(kind: .cosine, baseLR: 1, warmupSteps: 4, totalSteps: 104)
        XCTAssertEqual(warm.lr(at: 0), 0.25)
        XCTAssertEqual(warm.lr(at: 3), 1)
        XCTAssertEqual(warm.lr(at: 4), 1)
        XCTAssertEqual(warm.lr(at: 54), 0.5, accuracy: 1e-6)
    }
}
