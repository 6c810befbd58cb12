// SGD with momentum (optionally Nesterov) and weight decay, and learning-rate schedules.

/// Stochastic gradient descent, PyTorch's formulation:
///   g = grad + weightDecay * w
///   v = momentum * v + g
///   step = nesterov ? g + momentum * v : v      (momentum 0: step = g)
///   w -= lr * step
/// The update runs over any slice of the flat buffers, so each worker updates its own slice.
public struct SGD: Sendable, Equatable {
    public var momentum: Float
    public var nesterov: Bool
    public var weightDecay: Float

    public init(momentum: Float = 0.9, nesterov: Bool = false, weightDecay: Float = 0) {
        self.momentum = momentum; self.nesterov = nesterov; self.weightDecay = weightDecay
    }

    /// Updates weights[range] and velocity[range] from gradients[range].
    public func step(lr: Float, weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     velocity: UnsafeMutablePointer<Float>, range: Range<Int>) {
        let mu = momentum, wd = weightDecay
        if mu == 0 {
            for i in range { weights[i] -= lr * (gradients[i] + wd * weights[i]) }
            return
        }
        if nesterov {
            for i in range {
                let g = gradients[i] + wd * weights[i]
                let v = mu * velocity[i] + g
                velocity[i] = v
                weights[i] -= lr * (g + mu * v)
            }
        } else {
            for i in range {
                let g = gradients[i] + wd * weights[i]
                let v = mu * velocity[i] + g
                velocity[i] = v
                weights[i] -= lr * v
            }
        }
    }
}

/// Learning rate as a function of the global step: an optional linear warm-up from lr/warmupSteps
/// to lr over `warmupSteps`, then constant, step decay (x gamma every `stepSize` steps), or cosine
/// decay from lr to `minLR` over the remaining steps.
public struct LRSchedule: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case constant, step, cosine }
    public var kind: Kind
    public var baseLR: Float
    public var warmupSteps: Int
    public var totalSteps: Int
    public var stepSize: Int
    public var gamma: Float
    public var minLR: Float

    public init(kind: Kind, baseLR: Float, warmupSteps: Int = 0, totalSteps: Int, stepSize: Int = 1, gamma: Float = 0.1,
                minLR: Float = 0) {
        self.kind = kind; self.baseLR = baseLR; self.warmupSteps = warmupSteps; self.totalSteps = totalSteps
        self.stepSize = max(1, stepSize); self.gamma = gamma; self.minLR = minLR
    }

    /// The learning rate for global step `step` (0-based).
    public func lr(at step: Int) -> Float {
        if step < warmupSteps { return baseLR * Float(step + 1) / Float(warmupSteps) }
        let s = step - warmupSteps
        switch kind {
        case .constant:
            return baseLR
        case .step:
            return baseLR * Float(pow(Double(gamma), Double(s / stepSize)))
        case .cosine:
            let span = max(1, totalSteps - warmupSteps)
            let t = min(1, Double(s) / Double(span))
            return minLR + (baseLR - minLR) * Float(0.5 * (1 + cos(Double.pi * t)))
        }
    }
}

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
