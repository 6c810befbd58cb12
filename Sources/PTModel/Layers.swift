// The layers of the slides: convolution, max pooling, ReLU, fully connected (dense), flatten.
import PTKernels
import PTTensor

/// 2-D convolution with zero padding (1-D signals: kernel height 1 on inputs of height 1).
///
/// Output size: oh = (ih + 2*ph - kh) / sh + 1, ow = (iw + 2*pw - kw) / sw + 1.
/// Parameters: weight [features][channels][kh][kw], bias [features]. Initialisation: `init` with
/// fanIn = channels*kh*kw, fanOut = features*kh*kw; bias 0.
/// Backward adds dW = sum dOut (x) input patches and dB = sum dOut; writes dIn.
public struct Conv2D: Layer {
    public let name: String
    public let inputShape: Shape
    public let outputShape: Shape
    public let parameters: [ParameterTensor]
    public let kernel: ConvKernel
    public let initializer: Initializer
    /// `kernel.bf16Passes`, chosen once: which passes run in bf16 in a bf16 workspace (the kernels are
    /// asked in C for the narrow-layer forms, so not in every call of the step).
    public let bf16Passes: BF16Passes
    /// `kernel.bf16BackwardDataAdds`, chosen once.
    let bf16DataAdds: Bool

    /// - Parameters: `maxBatch` is the largest number of samples one call will see (the shard size).
    public init(name: String, input: Shape, features: Int, kernelSize: (Int, Int), stride: (Int, Int) = (1, 1),
                padding: (Int, Int) = (0, 0), maxBatch: Int, parameterOffset: Int, initializer: Initializer = .he) {
        self.name = name
        self.inputShape = input
        self.initializer = initializer
        let g = ConvGeometry(mb: maxBatch, ic: input.channels, oc: features, ih: input.height, iw: input.width,
                             kh: kernelSize.0, kw: kernelSize.1, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1)
        kernel = ConvKernel(geometry: g)
        bf16Passes = kernel.bf16Passes
        bf16DataAdds = bf16Passes.backwardData && kernel.bf16BackwardDataAdds
        outputShape = Shape(channels: features, height: g.oh, width: g.ow)
        let w = ParameterTensor(name: "\(name).weight", shape: [features, input.channels, kernelSize.0, kernelSize.1],
                                offset: parameterOffset)
        let b = ParameterTensor(name: "\(name).bias", shape: [features], offset: parameterOffset + alignedCount(w.count))
        parameters = [w, b]
    }

    public var geometry: ConvGeometry { kernel.geometry }
    public var summary: String {
        let g = geometry
        let size = g.kh == 1 && inputShape.height == 1 ? "\(g.kw)" : "\(g.kh)x\(g.kw)"
        return "conv \(size) s\(g.sw) p\(g.kh == 1 && inputShape.height == 1 ? g.pw : g.ph), \(g.oc) features"
    }
    public var flopsPerSample: Int { geometry.with(mb: 1).forwardFlops }
    public var multiplyAddsPerSample: Int { geometry.with(mb: 1).forwardFlops / 2 }
    public func scratchCount(maxBatch: Int) -> Int { kernel.scratchCount }
    public func scratchCount(maxBatch: Int, precision: Precision) -> Int { kernel.scratchCount(precision: precision) }
    /// In bf16 where the input gradient is the transposed forward over channel pairs (the kernel adds
    /// after each chain); fp32 and the other bf16 forms overwrite.
    public func addsInputGradient(precision: Precision) -> Bool { precision == .bf16 && bf16DataAdds }

    public func initialize(parameters p: UnsafeMutablePointer<Float>, rng: inout Xoshiro256) {
        let g = geometry
        initializer.fill(p + parameters[0].offset, count: parameters[0].count, fanIn: g.ic * g.kh * g.kw,
                         fanOut: g.oc * g.kh * g.kw, rng: &rng)
        (p + parameters[1].offset).update(repeating: 0, count: parameters[1].count)
    }

    /// In a bf16 workspace, when the forward or the input gradient runs in bf16: the weights rounded and
    /// packed for both, kept while the weights stay the same (one training step) instead of made in every
    /// call (see `Dense.preparedWeightsCount`).
    public func preparedWeightsCount(precision: Precision) -> Int {
        precision == .bf16 && (bf16Passes.forward || bf16Passes.backwardData) ? kernel.bf16PreparedCount : 0
    }

    /// The prepared weights of a bf16 call (see `LayerCall.currentPreparedWeights`).
    func prepared(_ c: LayerCall) -> UnsafePointer<Float>? {
        c.currentPreparedWeights { kernel.bf16Prepare(weight: c.parameters + parameters[0].offset, prepared: $0, scratch: c.scratch) }
    }

    public func forward(_ c: LayerCall) {
        let weight = c.parameters + parameters[0].offset, bias = c.parameters + parameters[1].offset
        if c.precision == .bf16 && bf16Passes.forward {
            if let p = prepared(c) {
                kernel.bf16Forward(mb: c.batch, input: c.input, prepared: p, bias: bias, output: c.output, scratch: c.scratch)
            } else {
                kernel.bf16Forward(mb: c.batch, input: c.input, weight: weight, bias: bias, output: c.output, scratch: c.scratch)
            }
            return
        }
        kernel.forward(mb: c.batch, input: c.input, weight: weight, bias: bias, output: c.output, scratch: c.scratch)
    }

    /// Forward with the ReLU after this layer folded in (`FusedStep.convReLU`): writes relu(this layer's output)
    /// into `reluOutput` and nothing into `c.output`. In bf16 each sample passes through ReLU as the kernel stores
    /// it (still in the caches); in fp32 one ReLU pass in place follows. The bits of the two layers one by one.
    func forward(_ c: LayerCall, reluOutput: UnsafeMutablePointer<Float>) {
        if c.precision == .bf16 && bf16Passes.forward {
            kernel.bf16ForwardReLU(mb: c.batch, input: c.input, weight: c.parameters + parameters[0].offset, prepared: prepared(c),
                                   bias: c.parameters + parameters[1].offset, output: reluOutput, scratch: c.scratch)
            return
        }
        var fused = c
        fused.output = reluOutput
        forward(fused)
        reluForward(count: c.batch * outputShape.count, input: reluOutput, output: reluOutput)
    }

    public func backward(_ c: LayerCall) { backward(c, gated: false) }

    /// `gated`: the ReLU whose output is `c.input` is folded in (`FusedStep.convAfterReLU`): `c.inputGrad` is that
    /// ReLU's input gradient, written as this layer's input gradient masked by c.input > 0 (in bf16 as each sample
    /// is stored; in fp32 by one ReLU backward pass in place). The bits of this layer's backward, then the ReLU's.
    func backward(_ c: LayerCall, gated: Bool) {
        // In a bf16 workspace the passes `bf16Passes` names run in bf16, the others in fp32.
        let bf16 = c.precision == .bf16
        let weight = c.parameters + parameters[0].offset
        let dW = c.gradients + parameters[0].offset, dB = c.gradients + parameters[1].offset
        if bf16 && bf16Passes.backwardWeights {
            kernel.bf16BackwardWeights(mb: c.batch, input: c.input, outputGrad: c.outputGrad, weightGrad: dW, biasGrad: dB,
                                       scratch: c.scratch)
        } else {
            kernel.backwardWeights(mb: c.batch, input: c.input, outputGrad: c.outputGrad, weightGrad: dW, biasGrad: dB,
                                   scratch: c.scratch)
        }
        guard let dIn = c.inputGrad else { return }
        precondition(!gated || !c.addInputGrad, "\(name): a gated input gradient cannot be added in place")
        if bf16 && bf16Passes.backwardData && gated {
            kernel.bf16BackwardDataGated(mb: c.batch, outputGrad: c.outputGrad, weight: weight, prepared: prepared(c), gate: c.input,
                                         inputGrad: dIn, scratch: c.scratch)
            return
        }
        if bf16 && bf16Passes.backwardData {
            if let p = prepared(c) {
                kernel.bf16BackwardData(mb: c.batch, outputGrad: c.outputGrad, prepared: p, inputGrad: dIn, add: c.addInputGrad,
                                        scratch: c.scratch)
            } else {
                kernel.bf16BackwardData(mb: c.batch, outputGrad: c.outputGrad, weight: weight, inputGrad: dIn, add: c.addInputGrad,
                                        scratch: c.scratch)
            }
            return
        }
        precondition(!c.addInputGrad, "\(name): fp32 backward cannot add into its input gradient")
        kernel.backwardData(mb: c.batch, outputGrad: c.outputGrad, weight: weight, inputGrad: dIn, scratch: c.scratch)
        if gated { reluBackward(count: c.batch * inputShape.count, output: c.input, outputGrad: dIn, inputGrad: dIn) }
    }
}

/// Max pooling: each window's maximum. Windows start every `stride`; with `keepPartial` (the slides'
/// edge handling) a last window that hangs over the edge is kept and clipped, so a 7x7 map with
/// window 2, stride 2 gives 4x4. Backward routes each output gradient to its window's arg-max.
public struct MaxPool2D: Layer {
    public let name: String
    public let inputShape: Shape
    public let outputShape: Shape
    public var parameters: [ParameterTensor] { [] }
    public let geometry: PoolGeometry   // planes = channels (one sample)

    public init(name: String, input: Shape, window: (Int, Int), stride: (Int, Int), keepPartial: Bool = true) {
        self.name = name
        self.inputShape = input
        (geometry, outputShape) = poolingGeometry(input, window: window, stride: stride, keepPartial: keepPartial)
    }

    public var summary: String { poolingSummary("maxpool", geometry, oneD: inputShape.height == 1) }
    public var flopsPerSample: Int { outputShape.count * geometry.kh * geometry.kw }
    public func indexCount(batch: Int) -> Int { batch * outputShape.count }

    public func forward(_ c: LayerCall) { forward(c, reluFirst: false) }

    /// `reluFirst`: `c.input` is a ReLU's input, pooled through ReLU (`FusedStep.poolAfterReLU`).
    func forward(_ c: LayerCall, reluFirst: Bool) {
        maxPoolForward(geometry.with(planes: c.batch * inputShape.channels), input: c.input, output: c.output, argmax: c.indices,
                       reluFirst: reluFirst)
    }

    public func backward(_ c: LayerCall) { backward(c, reluOutput: nil) }

    /// `reluOutput`: this layer's output after a `reluFirst` forward; `c.inputGrad` is then the ReLU's input gradient.
    func backward(_ c: LayerCall, reluOutput: UnsafePointer<Float>?) {
        guard let dIn = c.inputGrad else { return }
        maxPoolBackward(geometry.with(planes: c.batch * inputShape.channels), outputGrad: c.outputGrad, argmax: c.indices,
                        inputGrad: dIn, reluOutput: reluOutput)
    }
}

/// Rectified linear unit: max(0, x). "Change everything negative to zero."
public struct ReLU: Layer {
    public let name: String
    public let inputShape: Shape
    public var outputShape: Shape { inputShape }
    public var parameters: [ParameterTensor] { [] }
    public init(name: String, input: Shape) { self.name = name; inputShape = input }
    public var summary: String { "relu" }
    public var flopsPerSample: Int { inputShape.count }
    public func forward(_ c: LayerCall) { reluForward(count: c.batch * inputShape.count, input: c.input, output: c.output) }
    public func backward(_ c: LayerCall) {
        guard let dIn = c.inputGrad else { return }
        reluBackward(count: c.batch * inputShape.count, output: c.output, outputGrad: c.outputGrad, inputGrad: dIn)
    }
}

/// Flattens C x H x W into a vector of C*H*W values (same memory order).
public struct Flatten: Layer {
    public let name: String
    public let inputShape: Shape
    public var outputShape: Shape { .flat(inputShape.count) }
    public var parameters: [ParameterTensor] { [] }
    public init(name: String, input: Shape) { self.name = name; inputShape = input }
    public var summary: String { "flatten" }
    public var flopsPerSample: Int { 0 }
    public func forward(_ c: LayerCall) { c.output.update(from: c.input, count: c.batch * inputShape.count) }
    public func backward(_ c: LayerCall) {
        c.inputGrad?.update(from: c.outputGrad, count: c.batch * inputShape.count)
    }
}

/// Fully connected layer ("every value gets a vote"): y = W x + b over the flattened input.
///
/// Parameters: weight [neurons][inputs], bias [neurons]. Backward adds dW = dY^T X, dB = sum dY,
/// writes dX = dY W.
public struct Dense: Layer {
    public let name: String
    public let inputShape: Shape
    public let outputShape: Shape
    public let parameters: [ParameterTensor]
    public let initializer: Initializer

    public init(name: String, input: Shape, neurons: Int, parameterOffset: Int, initializer: Initializer = .he) {
        self.name = name
        self.inputShape = input
        self.initializer = initializer
        outputShape = .flat(neurons)
        let w = ParameterTensor(name: "\(name).weight", shape: [neurons, input.count], offset: parameterOffset)
        let b = ParameterTensor(name: "\(name).bias", shape: [neurons], offset: parameterOffset + alignedCount(w.count))
        parameters = [w, b]
    }

    public var inputs: Int { inputShape.count }
    public var neurons: Int { outputShape.count }
    public var summary: String { "dense \(neurons)" }
    public var flopsPerSample: Int { 2 * inputs * neurons }
    public var multiplyAddsPerSample: Int { inputs * neurons }

    public func initialize(parameters p: UnsafeMutablePointer<Float>, rng: inout Xoshiro256) {
        initializer.fill(p + parameters[0].offset, count: parameters[0].count, fanIn: inputs, fanOut: neurons, rng: &rng)
        (p + parameters[1].offset).update(repeating: 0, count: neurons)
    }

    /// GEMM workspace for the backward products (dW: neurons x inputs x batch, dX: batch x inputs x neurons).
    public func scratchCount(maxBatch: Int) -> Int {
        sgemmWorkspaceCount(m: max(neurons, maxBatch), n: inputs, k: max(neurons, maxBatch))
    }
    /// In a bf16 workspace the products run in bf16 when there are at least 16 neurons (the GEMM's
    /// 32-column register tile would otherwise multiply mostly padding: a 10-way classifier stays fp32).
    public var bf16Applies: Bool { neurons >= 16 }

    public func scratchCount(maxBatch: Int, precision: Precision) -> Int {
        let fp32 = scratchCount(maxBatch: maxBatch)
        return precision == .bf16 && bf16Applies ? max(fp32, bf16DenseScratchCount(batch: maxBatch, inputs: inputs, neurons: neurons)) : fp32
    }

    /// In a bf16 workspace: the weights rounded and packed for the forward and the input gradient, kept
    /// while the weights stay the same (one training step) instead of made in every call (the shards of
    /// a step): cifar-small's 4096 -> 256 layer rounded and packed its 1 M weights 8 times a step.
    public func preparedWeightsCount(precision: Precision) -> Int {
        precision == .bf16 && bf16Applies ? bf16DensePreparedCount(inputs: inputs, neurons: neurons) : 0
    }

    /// The weight gradient: with `LayerCall.storeGradient` the product is stored, not added. A shard's
    /// weight gradient of cifar-small's 4096 -> 256 layer is 4 MiB, read and written in every shard's
    /// backward after the engine had zeroed it.
    public func storedGradientRange(precision: Precision) -> Range<Int>? {
        parameters[0].offset..<(parameters[0].offset + parameters[0].count)
    }

    /// The prepared weights of a bf16 call (see `LayerCall.currentPreparedWeights`).
    func prepared(_ c: LayerCall) -> UnsafePointer<Float>? {
        c.currentPreparedWeights {
            bf16DensePrepare(inputs: inputs, neurons: neurons, weight: c.parameters + parameters[0].offset, prepared: $0,
                             scratch: c.scratch)
        }
    }

    public func forward(_ c: LayerCall) {
        let w = c.parameters + parameters[0].offset
        let b = c.parameters + parameters[1].offset
        if c.precision == .bf16 && bf16Applies {
            if let p = prepared(c) {
                bf16DenseForward(batch: c.batch, inputs: inputs, neurons: neurons, x: c.input, prepared: p, bias: b, y: c.output,
                                 scratch: c.scratch)
            } else {
                bf16DenseForward(batch: c.batch, inputs: inputs, neurons: neurons, x: c.input, weight: w, bias: b, y: c.output,
                                 scratch: c.scratch)
            }
            return
        }
        for n in 0..<c.batch { (c.output + n * neurons).update(from: b, count: neurons) }
        // y[n][o] += x[n][:] . W[o][:]: both operands are contiguous along the inputs, so the
        // inner-product GEMM reads them as they lie (no transposed packing of W for a shard of 8-16 rows).
        sgemmDotNT(m: c.batch, n: neurons, k: inputs, a: c.input, lda: inputs, b: w, ldb: inputs,
                   c: c.output, ldc: neurons)
    }

    public func backward(_ c: LayerCall) {
        let dw = c.gradients + parameters[0].offset
        let db = c.gradients + parameters[1].offset
        // The products in bf16 (fp32 accumulation) in a bf16 workspace; the bias gradient is an fp32 sum either way.
        let bf16 = c.precision == .bf16 && bf16Applies
        if bf16 && c.deferGradient {
            bf16DenseDeferWeights(batch: c.batch, inputs: inputs, neurons: neurons, x: c.input, outputGrad: c.outputGrad,
                                  deferred: dw, scratch: c.scratch)
        } else if bf16 {
            bf16DenseBackwardWeights(batch: c.batch, inputs: inputs, neurons: neurons, x: c.input, outputGrad: c.outputGrad,
                                     weightGrad: dw, add: !c.storeGradient, scratch: c.scratch)
        } else {
            sgemm(transA: true, transB: false, m: neurons, n: inputs, k: c.batch, a: c.outputGrad, lda: neurons,
                  b: c.input, ldb: inputs, beta: c.storeGradient ? 0 : 1, c: dw, ldc: inputs, workspace: c.scratch)
        }
        for n in 0..<c.batch {
            let row = c.outputGrad + n * neurons
            for o in 0..<neurons { db[o] += row[o] }
        }
        if let dIn = c.inputGrad {
            if bf16, let p = prepared(c) {
                bf16DenseBackwardData(batch: c.batch, inputs: inputs, neurons: neurons, outputGrad: c.outputGrad, prepared: p,
                                      inputGrad: dIn, scratch: c.scratch)
            } else if bf16 {
                bf16DenseBackwardData(batch: c.batch, inputs: inputs, neurons: neurons, outputGrad: c.outputGrad,
                                      weight: c.parameters + parameters[0].offset, inputGrad: dIn, scratch: c.scratch)
            } else {
                sgemm(transA: false, transB: false, m: c.batch, n: inputs, k: neurons, a: c.outputGrad, lda: neurons,
                      b: c.parameters + parameters[0].offset, ldb: inputs, beta: 0, c: dIn, ldc: inputs, workspace: c.scratch)
            }
        }
    }
}

/// In bf16 the weight gradient of a shard is the product of its 16 or so samples' inputs and output gradients:
/// a GEMM that writes 4 MiB for cifar-small's 4096 -> 256 layer, which the reduction then reads back with every
/// other shard's. Deferred, the shard keeps the packed operands (136 KiB there) and the reduction computes each
/// tile of every shard's product and adds them in the tree while they are in L1.
extension Dense: DefersGradient {
    public func defersGradient(precision: Precision, maxBatch: Int) -> Bool {
        guard precision == .bf16, bf16Applies, let r = storedGradientRange(precision: precision) else { return false }
        let count = bf16DenseDeferredCount(batch: maxBatch, inputs: inputs, neurons: neurons)
        return count > 0 && count <= r.count
    }

    public func reduceDeferred(_ leaves: UnsafePointer<UnsafeMutablePointer<Float>>, n: Int, range: Range<Int>,
                               into destination: UnsafeMutablePointer<Float>) {
        let w = parameters[0].offset
        bf16DenseReduceDeferred(leaves, n: n, offset: w, inputs: inputs, neurons: neurons,
                                range: (range.lowerBound - w)..<(range.upperBound - w), weightGrad: destination + w)
    }
}

/// A pooling layer's geometry over one sample (planes = channels) and its output shape.
func poolingGeometry(_ input: Shape, window: (Int, Int), stride: (Int, Int), keepPartial: Bool) -> (PoolGeometry, Shape) {
    let g = PoolGeometry(planes: input.channels, ih: input.height, iw: input.width, kh: window.0, kw: window.1,
                         sh: stride.0, sw: stride.1, keepPartial: keepPartial)
    return (g, Shape(channels: input.channels, height: g.oh, width: g.ow))
}

/// "maxpool 2x2 s2", or "maxpool 3 s2" on 1-D data.
func poolingSummary(_ kind: String, _ g: PoolGeometry, oneD: Bool) -> String {
    oneD ? "\(kind) \(g.kw) s\(g.sw)" : "\(kind) \(g.kh)x\(g.kw) s\(g.sh)"
}

/// Parameter tensors start on 16-float (64-byte) boundaries in the flat buffer.
@inlinable public func alignedCount(_ n: Int) -> Int { (n + 15) & ~15 }
