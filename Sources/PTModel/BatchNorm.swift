// Batch normalisation with per-shard statistics, so results do not depend on the thread count.
import PTKernels
import PTTensor

/// Batch normalisation over each channel: y = gamma * (x - mean) / sqrt(var + eps) + beta.
///
/// Training: mean and (biased) variance are those of the shard (its samples x positions), not of
/// the global batch, so a shard's result does not depend on which worker or process computes it.
/// The shard's statistics are recorded (`LayerCall.shardStats`: means, then variances) and, after
/// the step, the trainer folds them in shard order into the running statistics:
/// running = (1 - momentum) * running + momentum * batch statistic (variance unbiased).
/// Inference uses the running statistics. Parameters: weight (gamma, 1 at start), bias (beta, 0).
/// Backward (training) adds dgamma = sum(dy * xhat), dbeta = sum(dy) and writes
/// dx = gamma / sqrt(var + eps) / M * (M * dy - sum(dy) - xhat * sum(dy * xhat)), M = samples x positions.
public struct BatchNorm: Layer {
    public let name: String
    public let inputShape: Shape
    public var outputShape: Shape { inputShape }
    public let parameters: [ParameterTensor]
    public let state: [ParameterTensor]
    public let momentum: Float
    public let epsilon: Float

    public init(name: String, input: Shape, momentum: Float = 0.1, epsilon: Float = 1e-5, parameterOffset: Int, stateOffset: Int) {
        self.name = name
        inputShape = input
        self.momentum = momentum
        self.epsilon = epsilon
        let c = input.channels
        parameters = [ParameterTensor(name: "\(name).weight", shape: [c], offset: parameterOffset),
                      ParameterTensor(name: "\(name).bias", shape: [c], offset: parameterOffset + alignedCount(c))]
        state = [ParameterTensor(name: "\(name).running_mean", shape: [c], offset: stateOffset),
                 ParameterTensor(name: "\(name).running_var", shape: [c], offset: stateOffset + alignedCount(c))]
    }

    public var channels: Int { inputShape.channels }
    var positions: Int { inputShape.height * inputShape.width }
    public var summary: String { "batchnorm" }
    public var flopsPerSample: Int { 2 * inputShape.count }
    public var statsCount: Int { 2 * channels }

    public func initialize(parameters p: UnsafeMutablePointer<Float>, rng: inout Xoshiro256) {
        (p + parameters[0].offset).update(repeating: 1, count: channels)
        (p + parameters[1].offset).update(repeating: 0, count: channels)
    }

    public func initializeState(_ s: UnsafeMutablePointer<Float>) {
        (s + state[0].offset).update(repeating: 0, count: channels)
        (s + state[1].offset).update(repeating: 1, count: channels)
    }

    /// Mean and biased variance of channel `c` over the call's samples: two passes (the mean, then
    /// squared deviations), each row summed in 16 Float lanes and the lanes and rows added in Double (PTKernels' row
    /// kernels, dispatched to the instruction-set level).
    /// The order depends only on the shapes.
    @inline(__always)
    func statistics(_ x: UnsafeMutablePointer<Float>, batch: Int, channel c: Int) -> (mean: Double, variance: Double) {
        let hw = positions
        var sum = 0.0
        for n in 0..<batch { sum += bnRowSum(x + (n * channels + c) * hw, count: hw) }
        let count = Double(batch * hw)
        let mean = sum / count
        var squares = 0.0
        for n in 0..<batch { squares += bnRowSquares(x + (n * channels + c) * hw, count: hw, mean: Float(mean)) }
        return (mean, squares / count)
    }

    public func forward(_ call: LayerCall) {
        let hw = positions
        let gamma = call.parameters + parameters[0].offset, beta = call.parameters + parameters[1].offset
        for c in 0..<channels {
            let mean: Float, variance: Float
            if call.training || call.state == nil {
                let s = statistics(call.input, batch: call.batch, channel: c)
                (mean, variance) = (Float(s.mean), Float(s.variance))
                if let stats = call.shardStats {
                    stats[c] = mean
                    stats[channels + c] = variance
                }
            } else {
                mean = call.state![state[0].offset + c]
                variance = call.state![state[1].offset + c]
            }
            let scale = gamma[c] / (variance + epsilon).squareRoot()
            let shift = beta[c] - mean * scale
            for n in 0..<call.batch {
                let at = (n * channels + c) * hw
                bnAffine(call.input + at, count: hw, scale: scale, shift: shift, output: call.output + at)
            }
        }
    }

    public func backward(_ call: LayerCall) {
        let hw = positions
        let gamma = call.parameters + parameters[0].offset
        let dGamma = call.gradients + parameters[0].offset, dBeta = call.gradients + parameters[1].offset
        let m = Double(call.batch * hw)
        for c in 0..<channels {
            let s = statistics(call.input, batch: call.batch, channel: c)
            let invStd = 1 / (s.variance + Double(epsilon)).squareRoot()
            var sumDy = 0.0, sumDyCentered = 0.0
            for n in 0..<call.batch {
                let at = (n * channels + c) * hw
                let (a, b) = bnRowGradientSums(call.input + at, outputGrad: call.outputGrad + at, count: hw, mean: Float(s.mean))
                sumDy += a
                sumDyCentered += b
            }
            let sumDyXhat = sumDyCentered * invStd
            dGamma[c] += Float(sumDyXhat)
            dBeta[c] += Float(sumDy)
            guard let dIn = call.inputGrad else { continue }
            // dx = g * (m * dy - sumDy - xhat * sumDyXhat), g = gamma * invStd / m, as dx = a*dy + b*(x - mean) + k.
            let g = Double(gamma[c]) * invStd / m
            let a = g * m, b = -g * invStd * sumDyXhat
            let k = -g * sumDy
            for n in 0..<call.batch {
                let at = (n * channels + c) * hw
                bnInputGradient(call.input + at, outputGrad: call.outputGrad + at, count: hw, mean: Float(s.mean), a: Float(a), b: Float(b),
                                k: Float(k), inputGrad: dIn + at)
            }
        }
    }

    /// Folds shards' statistics into the running statistics, in shard order. `stats(s)` points at
    /// shard s's record (means, then variances) and `samples(s)` is its number of samples.
    public func updateRunningStatistics(_ stateBuffer: UnsafeMutablePointer<Float>, shards: Int,
                                        stats: (Int) -> UnsafePointer<Float>, samples: (Int) -> Int) {
        let hw = Double(positions)
        for c in 0..<channels {
            var total = 0.0, sum = 0.0, squares = 0.0
            for s in 0..<shards {
                let n = Double(samples(s)) * hw
                guard n > 0 else { continue }
                let mean = Double(stats(s)[c]), variance = Double(stats(s)[channels + c])
                total += n
                sum += n * mean
                squares += n * (variance + mean * mean)
            }
            guard total > 0 else { continue }
            let mean = sum / total
            let variance = max(0, squares / total - mean * mean) * (total > 1 ? total / (total - 1) : 1)
            let rm = stateBuffer + state[0].offset + c, rv = stateBuffer + state[1].offset + c
            rm.pointee = (1 - momentum) * rm.pointee + momentum * Float(mean)
            rv.pointee = (1 - momentum) * rv.pointee + momentum * Float(variance)
        }
    }
}
