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
    /// squared deviations), each row summed in 16 Float lanes and the rows' lanes added in Double (PTKernels' channel
    /// kernels, dispatched to the instruction-set level, one call per pass).
    /// The order depends only on the shapes.
    @inline(__always)
    func statistics(_ x: UnsafeMutablePointer<Float>, batch: Int, channel c: Int) -> (mean: Double, variance: Double) {
        let hw = positions
        let sum = bnRowSum(x + c * hw, count: hw, rows: batch, rowStride: channels * hw)
        let count = Double(batch * hw)
        let mean = sum / count
        let squares = bnRowSquares(x + c * hw, count: hw, mean: Float(mean), rows: batch, rowStride: channels * hw)
        return (mean, squares / count)
    }

    /// The per-channel map y = x * scale + shift of this call: batch statistics while training (or
    /// without state), recorded in `shardStats`; else the running statistics.
    @inline(__always)
    func channelMap(_ call: LayerCall, channel c: Int) -> (scale: Float, shift: Float, batch: (mean: Double, variance: Double)?) {
        let gamma = call.parameters + parameters[0].offset, beta = call.parameters + parameters[1].offset
        let mean: Float, variance: Float
        var batchStatistics: (mean: Double, variance: Double)?
        if call.training || call.state == nil {
            let s = statistics(call.input, batch: call.batch, channel: c)
            batchStatistics = s
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
        return (scale, beta[c] - mean * scale, batchStatistics)
    }

    public func forward(_ call: LayerCall) {
        let hw = positions
        for c in 0..<channels {
            let (scale, shift, _) = channelMap(call, channel: c)
            bnAffine(call.input + c * hw, count: hw, scale: scale, shift: shift, output: call.output + c * hw, rows: call.batch,
                     rowStride: channels * hw)
        }
    }

    public func backward(_ call: LayerCall) { backward(call, saved: nil, gate: .none) }

    /// Forward of a fused step (see `FusedStep`): saves each channel's map (and the batch statistics,
    /// which backward would otherwise compute again from the same input) into `saved`, then writes
    /// relu(y) into `reluOutput` (ReLU fused), or y into `call.output` (`writeOutput`), or nothing (the
    /// add that consumes this layer applies the map). Same bits as `forward` (then ReLU's).
    func forward(_ call: LayerCall, saved: BatchNormSaved, reluOutput: UnsafeMutablePointer<Float>?, writeOutput: Bool) {
        let hw = positions
        saved.statistics[0] = -1
        for c in 0..<channels {
            let (scale, shift, batchStatistics) = channelMap(call, channel: c)
            saved.map[c] = scale
            saved.map[channels + c] = shift
            if let s = batchStatistics {
                saved.statistics[1 + c] = s.mean
                saved.statistics[1 + channels + c] = s.variance
            }
            if let z = reluOutput {
                bnAffineReLU(call.input + c * hw, count: hw, scale: scale, shift: shift, output: z + c * hw, rows: call.batch,
                             rowStride: channels * hw)
            } else if writeOutput {
                bnAffine(call.input + c * hw, count: hw, scale: scale, shift: shift, output: call.output + c * hw, rows: call.batch,
                         rowStride: channels * hw)
            }
        }
        if call.training || call.state == nil { saved.statistics[0] = Double(call.batch) }
    }

    /// Backward; with `saved` from this input's fused forward, its batch statistics are used instead of
    /// being computed again (the same values). `gate` says which ReLU's backward is fused in (same bits as
    /// running it alone): see `BatchNormGradientGate`.
    func backward(_ call: LayerCall, saved: BatchNormSaved?, gate: BatchNormGradientGate) {
        let hw = positions
        let gamma = call.parameters + parameters[0].offset
        let dGamma = call.gradients + parameters[0].offset, dBeta = call.gradients + parameters[1].offset
        let m = Double(call.batch * hw)
        let cached = saved.map { $0.statistics[0] == Double(call.batch) } ?? false
        for c in 0..<channels {
            let s = cached ? (mean: saved!.statistics[1 + c], variance: saved!.statistics[1 + channels + c])
                           : statistics(call.input, batch: call.batch, channel: c)
            let relu = gate == .reluOfOutput
            let scale = relu ? saved!.map[c] : 0, shift = relu ? saved!.map[channels + c] : 0
            let invStd = 1 / (s.variance + Double(epsilon)).squareRoot()
            let at = c * hw, stride = channels * hw
            let sumDy: Double, sumDyCentered: Double
            switch gate {
            case .none:
                (sumDy, sumDyCentered) = bnRowGradientSums(call.input + at, outputGrad: call.outputGrad + at, count: hw,
                                                           mean: Float(s.mean), rows: call.batch, rowStride: stride)
            case .reluOfOutput:
                (sumDy, sumDyCentered) = bnRowGradientSumsReLU(call.input + at, outputGrad: call.outputGrad + at, count: hw,
                                                               mean: Float(s.mean), scale: scale, shift: shift, rows: call.batch,
                                                               rowStride: stride)
            case let .positive(mask):
                (sumDy, sumDyCentered) = bnRowGradientSumsMasked(call.input + at, outputGrad: call.outputGrad + at, mask: mask + at,
                                                                 count: hw, mean: Float(s.mean), rows: call.batch, rowStride: stride)
            }
            let sumDyXhat = sumDyCentered * invStd
            dGamma[c] += Float(sumDyXhat)
            dBeta[c] += Float(sumDy)
            guard let dIn = call.inputGrad else { continue }
            // dx = g * (m * dy - sumDy - xhat * sumDyXhat), g = gamma * invStd / m, as dx = a*dy + b*(x - mean) + k.
            let g = Double(gamma[c]) * invStd / m
            let a = g * m, b = -g * invStd * sumDyXhat
            let k = -g * sumDy
            // This pass is element by element, so it walks the channel's planes last first (a negative stride): the
            // planes the sums read last are the likeliest still in cache (a channel's input and gradient are 1 MiB
            // at 32x32, batch 128: more than Zen 4's L2).
            let last = at + (call.batch - 1) * stride
            switch gate {
            case let .positive(mask):
                bnInputGradientMasked(call.input + last, outputGrad: call.outputGrad + last, mask: mask + last, count: hw,
                                      mean: Float(s.mean), a: Float(a), b: Float(b), k: Float(k), inputGrad: dIn + last,
                                      rows: call.batch, rowStride: -stride)
            case .reluOfOutput:
                bnInputGradientReLU(call.input + last, outputGrad: call.outputGrad + last, count: hw, mean: Float(s.mean), a: Float(a),
                                    b: Float(b), k: Float(k), scale: scale, shift: shift, inputGrad: dIn + last, rows: call.batch,
                                    rowStride: -stride)
            case .none:
                bnInputGradient(call.input + last, outputGrad: call.outputGrad + last, count: hw, mean: Float(s.mean), a: Float(a),
                                b: Float(b), k: Float(k), inputGrad: dIn + last, rows: call.batch, rowStride: -stride)
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

/// The ReLU backward a fused batch-norm backward applies to its output gradient first (`FusedStep`).
enum BatchNormGradientGate: Equatable {
    /// None: the output gradient as it is.
    case none
    /// The ReLU right after this layer (`bnReLU`): dy where x * scale + shift > 0 (the saved map), else 0.
    case reluOfOutput
    /// The ReLU after the residual add this layer feeds alone (`bnIntoAdd`): dy where that ReLU's output
    /// (this pointer, laid out as the layer's output) is > 0, else 0.
    case positive(UnsafePointer<Float>)
}

/// What a batch-norm layer's fused forward keeps for the fused steps after it (one per layer in a
/// `Workspace`): `map` holds each channel's scale, then each channel's shift; `statistics` holds the
/// number of samples whose batch statistics follow (-1: none, the running statistics were used),
/// then each channel's mean, then each channel's variance.
struct BatchNormSaved {
    let map: UnsafeMutablePointer<Float>
    let statistics: UnsafeMutablePointer<Double>

    init(channels: Int) {
        map = .allocate(capacity: 2 * channels)
        map.initialize(repeating: 0, count: 2 * channels)
        statistics = .allocate(capacity: 1 + 2 * channels)
        statistics.initialize(repeating: -1, count: 1 + 2 * channels)
    }

    func deallocate() {
        map.deallocate()
        statistics.deallocate()
    }
}
