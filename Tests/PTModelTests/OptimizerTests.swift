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

    /// Adam and AdamW against hand-computed first steps (bias correction makes step 1 move by ~lr).
    func testAdamAndAdamW() {
        func run(_ adam: Adam, lr: Float, w0: Float, grads: [Float]) -> Float {
            var w = [w0], m: [Float] = [0], v: [Float] = [0]
            for (t, g) in grads.enumerated() {
                let gs = [g]
                w.withUnsafeMutableBufferPointer { wp in m.withUnsafeMutableBufferPointer { mp in v.withUnsafeMutableBufferPointer { vp in
                    gs.withUnsafeBufferPointer { gp in
                        adam.step(lr: lr, t: t + 1, weights: wp.baseAddress!, gradients: gp.baseAddress!, m: mp.baseAddress!,
                                  v: vp.baseAddress!, range: 0..<1)
                    } } } }
            }
            return w[0]
        }
        // Step 1: m^ = g, v^ = g^2, so w = w0 - lr * g / (|g| + eps) = 1 - 0.1 = 0.9.
        XCTAssertEqual(run(Adam(), lr: 0.1, w0: 1, grads: [0.5]), 0.9, accuracy: 1e-6)
        // Step 2 with g = 0.5 then 0.25: m = 0.9*0.05 + 0.1*0.25 = 0.07 -> m^ = 0.07/0.19 = 0.368421;
        // v = 0.999*0.00025 + 0.001*0.0625 = 0.00031225 -> v^ = 0.00031225/0.001999 = 0.156203, sqrt 0.395225;
        // w = 0.9 - 0.1 * 0.368421 / 0.395225 = 0.806782.
        XCTAssertEqual(run(Adam(), lr: 0.1, w0: 1, grads: [0.5, 0.25]), 0.806782, accuracy: 1e-5)
        // Adam adds weight decay to the gradient: g = 0 + 0.5 * 2 = 1 -> w = 2 - 0.1 = 1.9.
        XCTAssertEqual(run(Adam(weightDecay: 0.5), lr: 0.1, w0: 2, grads: [0]), 1.9, accuracy: 1e-6)
        // AdamW decays the weight directly: w = 2 * (1 - 0.1 * 0.5) - 0.1 * sign(g) = 1.9 - 0.1 = 1.8.
        XCTAssertEqual(run(Adam(weightDecay: 0.5, decoupledWeightDecay: true), lr: 0.1, w0: 2, grads: [1]), 1.8, accuracy: 1e-6)
    }
}
