import PTKernels

// SGD with momentum (optionally Nesterov) and weight decay, and learning-rate schedules.
import PTTensor

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

    /// Updates weights[range] and velocity[range] from gradients[range] (the loop runs in the kernels of
    /// the instruction-set level in use; same bits on every level).
    public func step(lr: Float, weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     velocity: UnsafeMutablePointer<Float>, range: Range<Int>) {
        let i = range.lowerBound
        sgdUpdate(lr: lr, momentum: momentum, nesterov: nesterov, weightDecay: weightDecay, weights: weights + i,
                  gradients: gradients + i, velocity: velocity + i, count: range.count)
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

/// Adam (Kingma & Ba), and AdamW when `decoupledWeightDecay` is set (Loshchilov & Hutter), PyTorch's
/// formulation. With t the 1-based step:
///   g = grad (+ weightDecay * w for Adam; AdamW instead multiplies w by 1 - lr * weightDecay)
///   m = beta1 * m + (1 - beta1) * g;  v = beta2 * v + (1 - beta2) * g^2
///   w -= lr * (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)
public struct Adam: Sendable, Equatable {
    public var beta1: Float
    public var beta2: Float
    public var epsilon: Float
    public var weightDecay: Float
    public var decoupledWeightDecay: Bool

    public init(beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-8, weightDecay: Float = 0,
                decoupledWeightDecay: Bool = false) {
        self.beta1 = beta1; self.beta2 = beta2; self.epsilon = epsilon
        self.weightDecay = weightDecay; self.decoupledWeightDecay = decoupledWeightDecay
    }

    public func step(lr: Float, t: Int, weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, range: Range<Int>) {
        let c1 = Float(1 - pow(Double(beta1), Double(t))), c2 = Float(1 - pow(Double(beta2), Double(t)))
        let coupled = decoupledWeightDecay ? 0 : weightDecay
        let shrink = decoupledWeightDecay ? 1 - lr * weightDecay : 1
        let i = range.lowerBound
        // Per element: g = grad + coupled*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g;
        // w = w*shrink - (lr/c1)*m / (sqrt(v)*(1/sqrt(c2)) + eps), in the kernels of the level in use.
        adamUpdate(beta1: beta1, beta2: beta2, epsilon: epsilon, coupledDecay: coupled, shrink: shrink, stepSize: lr / c1,
                   rc2: 1 / c2.squareRoot(), weights: weights + i, gradients: gradients + i, m: m + i, v: v + i,
                   count: range.count)
    }
}

/// The optimizer of a run. State: SGD keeps one buffer (momentum), Adam two (m, v), each shaped
/// like the flat parameter buffer; `OptimizerState` holds them.
public enum Optimizer: Sendable, Equatable {
    case sgd(SGD)
    case adam(Adam)

    /// Names of the state tensors in checkpoints, PyTorch's: "momentum_buffer", or "exp_avg" and "exp_avg_sq".
    public var stateNames: [String] {
        switch self {
        case .sgd: return ["momentum_buffer"]
        case .adam: return ["exp_avg", "exp_avg_sq"]
        }
    }

    /// One update of weights[range] and of `state`'s buffers on the same slice, at 0-based global step `step`.
    /// `stateOffset`: where weights[range.lowerBound]'s state lies in `state`'s buffers when that
    /// state is compact (holds only some pieces of the parameters, as with the sharded gradient
    /// exchange); nil: at range.lowerBound, laid out like the parameters.
    @inline(__always)
    public func step(lr: Float, step: Int, weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                     state: OptimizerState, range: Range<Int>, stateOffset: Int? = nil) {
        precondition(range.isEmpty || (stateOffset ?? range.lowerBound) + range.count <= state.count)
        // Pointers such that pointer[i] for i in range is the state of weights[i].
        let shift = (stateOffset ?? range.lowerBound) - range.lowerBound
        switch self {
        case let .sgd(sgd): sgd.step(lr: lr, weights: weights, gradients: gradients, velocity: state.first + shift, range: range)
        case let .adam(adam):
            adam.step(lr: lr, t: step + 1, weights: weights, gradients: gradients, m: state.first + shift, v: state.second + shift,
                      range: range)
        }
    }
}

/// The state an optimizer keeps between steps: one flat buffer per entry of `optimizer.stateNames`
/// (SGD: `momentum_buffer`; Adam and AdamW: `exp_avg`, `exp_avg_sq`), each laid out like the flat
/// parameter buffer, so a worker updates the same slice of the weights and of every state buffer.
/// Checkpoints save each buffer under its name (per parameter tensor: "conv1.weight.exp_avg").
public final class OptimizerState: @unchecked Sendable {
    public let optimizer: Optimizer
    /// Floats per buffer (the model's parameter count).
    public let count: Int
    /// The buffers with their names, in `optimizer.stateNames` order.
    public let buffers: [(name: String, buffer: AlignedBuffer)]
    @usableFromInline let first: UnsafeMutablePointer<Float>
    /// Adam's second moment; SGD's state has none (a one-float placeholder).
    @usableFromInline let second: UnsafeMutablePointer<Float>
    private let placeholder: AlignedBuffer

    /// State for `parameterCount` parameters: zeroed, or with `zeroed: false` not yet written (the
    /// owner then calls `zero(_:)` on every slice, each from the thread that will update it).
    public init(optimizer: Optimizer, parameterCount: Int, zeroed: Bool = true) {
        self.optimizer = optimizer
        count = parameterCount
        buffers = optimizer.stateNames.map {
            (name: $0, buffer: zeroed ? AlignedBuffer(count: parameterCount) : AlignedBuffer(uninitializedCount: parameterCount))
        }
        placeholder = AlignedBuffer(count: 1)
        first = buffers[0].buffer.pointer
        second = buffers.count > 1 ? buffers[1].buffer.pointer : placeholder.pointer
    }

    /// The buffer saved under `name`, or nil when this optimizer keeps no such state.
    public func buffer(named name: String) -> AlignedBuffer? { buffers.first { $0.name == name }?.buffer }

    /// Sets every buffer's `range` to zero (each worker zeroes its own slice: first touch).
    public func zero(_ range: Range<Int>) {
        for (_, buffer) in buffers where !range.isEmpty { (buffer.pointer + range.lowerBound).update(repeating: 0, count: range.count) }
    }
}
