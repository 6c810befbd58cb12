// Per-worker activations, gradients and scratch, allocated once for the largest shard.
import PTKernels
import PTTensor

/// Everything one worker needs to run forward and backward over up to `model.maxBatch` samples.
/// Allocated once; `forward`, `backward` and `loss` allocate nothing.
///
/// Branches: a layer's backward overwrites its input gradient. When an activation feeds several
/// layers, the consumer that runs backward first (the latest in the list) writes its gradient
/// straight into the activation's gradient buffer; each later one writes into a spare buffer that
/// is then added in, so the sum runs in one fixed order (consumers from last to first). A later
/// single-input consumer whose backward can add in place (`Layer.addsInputGradient(precision:)`: a bf16
/// convolution's transposed forward) adds straight into the activation's gradient instead
/// (`LayerCall.addInputGrad`): one fp32 addition per element after its own sum, the same bits.
public final class Workspace: @unchecked Sendable {
    public let model: Model
    /// activations[0] is the input batch; activations[i + 1] is layer i's output.
    public let activations: [AlignedBuffer]
    /// activationGrads[i] is the gradient with respect to activations[i] (index 0 unused).
    public let activationGrads: [AlignedBuffer]
    public let scratch: AlignedBuffer
    let indexStorage: [UnsafeMutablePointer<Int32>]
    let indexCounts: [Int]
    public let labels: UnsafeMutablePointer<Int32>
    /// Per layer: its input pointers and where each input's gradient goes in backward (a spare
    /// buffer for all but the first consumer of an activation).
    let inputLists: [UnsafeMutablePointer<UnsafeMutablePointer<Float>>]
    let inputGradLists: [UnsafeMutablePointer<UnsafeMutablePointer<Float>?>]
    /// Per layer: (input position, activation) pairs whose gradient lands in a spare buffer and must
    /// be added into the activation's gradient after the layer's backward.
    let spareInputs: [[(position: Int, activation: Int)]]
    /// Per layer: whether its backward adds its input gradient in place (see the type's comment).
    public let addsInPlace: [Bool]
    /// Per layer: the gradient range its backward can store outright (`Layer.storedGradientRange`), or nil.
    /// Parameters lie in list order, so these ranges ascend with the layer index.
    public let storedGradients: [Range<Int>?]
    /// Per layer: whether a backward that stores the layer's gradient (`storedGradients`) can leave it to the
    /// reduction (`DefersGradient.defersGradient` for this workspace's precision and batch).
    public let defersGradient: [Bool]
    /// The few samples' convolution output a `convIntoPool` step pools from (nil: no such step).
    let poolInput: AlignedBuffer?
    let spares: [AlignedBuffer]
    /// Each layer's step with fusion on (`Model.fusionPlan`), and what each batch-norm layer's fused
    /// forward keeps for its backward and for the add that consumes it.
    public let fusionPlan: [FusedStep]
    let batchNorms: [BatchNorm?]
    let batchNormSaved: [BatchNormSaved?]
    /// Whether `forward` and `backward` run the fusion plan (on by default; the results are the same
    /// bits either way, only the outputs the plan skips are left unwritten when on). Tests turn it off
    /// to compare.
    public var fusesLayers = true

    /// The precision of the convolution and dense products (`LayerCall.precision`).
    public let precision: Precision
    /// Per layer: its prepared weights (`Layer.preparedWeightsCount`), or nil; and the weights version
    /// they were made for (0: none).
    let preparedWeights: [AlignedBuffer?]
    let preparedVersions: UnsafeMutablePointer<UInt64>
    /// The version of the parameters the next calls see, or nil (the default): layers then make their
    /// prepared weights (`LayerCall.preparedWeights`) again in every call. With a version, a layer makes
    /// them in its first call of that version and uses them in the later ones (the step's other shards,
    /// its backward). The step engine sets a new version (> 0) for each training step: whoever changes
    /// the parameters between calls with one version gets calls on stale prepared weights.
    public var weightsVersion: UInt64?

    /// `precision: .bf16` needs the bf16 unit (`Precision.unavailableReason` is nil). `addInPlace: false`
    /// routes every later consumer's input gradient through a spare buffer (tests compare the two).
    public init(model: Model, precision: Precision = .fp32, addInPlace: Bool = true) {
        precondition(precision.unavailableReason == nil, precision.unavailableReason ?? "")
        self.model = model
        let plan = model.fusionPlan
        fusionPlan = plan
        batchNorms = model.layers.map { $0 as? BatchNorm }
        batchNormSaved = batchNorms.map { $0.map { BatchNormSaved(channels: $0.channels) } }
        self.precision = precision
        preparedWeights = model.layers.map { layer in
            let n = layer.preparedWeightsCount(precision: precision)
            return n > 0 ? AlignedBuffer(count: n) : nil
        }
        preparedVersions = .allocate(capacity: max(1, model.layers.count))
        preparedVersions.initialize(repeating: 0, count: max(1, model.layers.count))
        let mb = model.maxBatch
        // The activations and their gradients are views of one arena (one run of huge pages: see
        // `AlignedBuffer.hugePageThreshold`), each starting on a 4 KiB boundary as a buffer of its own would (the
        // input has no gradient).
        let counts = [mb * model.inputShape.count] + model.layers.map { mb * $0.outputShape.count }
        let arena = AlignedBuffer(count: 2 * counts.map(Self.pageRounded).reduce(0, +) - Self.pageRounded(counts[0]))
        var arenaUsed = 0
        func carve(_ count: Int) -> AlignedBuffer {
            defer { arenaUsed += Self.pageRounded(count) }
            return AlignedBuffer(in: arena, offset: arenaUsed, count: count)
        }
        var acts = [carve(counts[0])]
        var grads = [carve(0)]
        var scratchCount = 0
        var idx: [UnsafeMutablePointer<Int32>] = []
        var idxCounts: [Int] = []
        for (l, layer) in model.layers.enumerated() {
            acts.append(carve(counts[l + 1]))
            grads.append(carve(counts[l + 1]))
            scratchCount = max(scratchCount, layer.scratchCount(maxBatch: mb, precision: precision))
            let n = max(1, layer.indexCount(batch: mb))
            let p = UnsafeMutablePointer<Int32>.allocate(capacity: n)
            p.initialize(repeating: 0, count: n)
            idx.append(p)
            idxCounts.append(n)
        }
        activations = acts
        activationGrads = grads
        scratch = AlignedBuffer(count: scratchCount)
        indexStorage = idx
        indexCounts = idxCounts
        labels = UnsafeMutablePointer<Int32>.allocate(capacity: mb)
        labels.initialize(repeating: 0, count: mb)
        // Backward visits layers from last to first and, within a layer, inputs in order: the first
        // visit of an activation writes directly, later ones go through a spare buffer.
        var seen = [Bool](repeating: false, count: model.layers.count + 1)
        var spareInputs = [[(position: Int, activation: Int)]](repeating: [], count: model.layers.count)
        var addsInPlace = [Bool](repeating: false, count: model.layers.count)
        var spareNeeded = 0, spareSize = 0
        for i in stride(from: model.layers.count - 1, through: 0, by: -1) {
            for (k, a) in model.inputs[i].enumerated() where a > 0 {
                if seen[a] && addInPlace && model.inputs[i].count == 1 && model.layers[i].addsInputGradient(precision: precision) {
                    addsInPlace[i] = true
                } else if seen[a] {
                    spareInputs[i].append((k, a))
                    spareSize = max(spareSize, mb * (a == 0 ? model.inputShape.count : model.layers[a - 1].outputShape.count))
                }
                seen[a] = true
            }
            spareNeeded = max(spareNeeded, spareInputs[i].count)
        }
        self.spareInputs = spareInputs
        self.addsInPlace = addsInPlace
        storedGradients = model.layers.map { $0.storedGradientRange(precision: precision) }
        let poolInputCount = plan.indices.map { i -> Int in
            guard case .convIntoPool = plan[i] else { return 0 }
            let count = model.layers[i].outputShape.count
            return min(mb, Self.poolGroup(count)) * count
        }.max() ?? 0
        poolInput = poolInputCount > 0 ? AlignedBuffer(count: poolInputCount) : nil
        defersGradient = model.layers.map { ($0 as? DefersGradient)?.defersGradient(precision: precision, maxBatch: mb) ?? false }
        spares = (0..<spareNeeded).map { _ in AlignedBuffer(count: spareSize) }
        var lists: [UnsafeMutablePointer<UnsafeMutablePointer<Float>>] = []
        var gradLists: [UnsafeMutablePointer<UnsafeMutablePointer<Float>?>] = []
        for i in 0..<model.layers.count {
            let sources = model.inputs[i]
            let list = UnsafeMutablePointer<UnsafeMutablePointer<Float>>.allocate(capacity: sources.count)
            let gradList = UnsafeMutablePointer<UnsafeMutablePointer<Float>?>.allocate(capacity: sources.count)
            for (k, a) in sources.enumerated() {
                (list + k).initialize(to: acts[a].pointer)
                (gradList + k).initialize(to: a == 0 ? nil : grads[a].pointer)
            }
            for (j, entry) in spareInputs[i].enumerated() { gradList[entry.position] = spares[j].pointer }
            lists.append(list)
            gradLists.append(gradList)
        }
        inputLists = lists
        inputGradLists = gradLists
    }

    deinit {
        for p in indexStorage { p.deallocate() }
        for p in inputLists { p.deallocate() }
        for p in inputGradLists { p.deallocate() }
        labels.deallocate()
        preparedVersions.deallocate()
        for saved in batchNormSaved { saved?.deallocate() }
    }

    /// `count` floats rounded up to whole 4 KiB pages.
    static func pageRounded(_ count: Int) -> Int { (count + 1023) / 1024 * 1024 }

    /// Whether layer i's output activation holds its forward result (always with fusion off; with it on,
    /// the outputs of batch norms and adds folded into the ReLU after them are not written).
    public func holdsOutput(ofLayer i: Int) -> Bool { !fusesLayers || fusionPlan[i].writesOutput }

    /// The input batch buffer: fill `batch * inputShape.count` floats before `forward`.
    public var input: UnsafeMutablePointer<Float> { activations[0].pointer }
    /// The logits after `forward`: [batch][classes].
    public var logits: UnsafeMutablePointer<Float> { activations[model.layers.count].pointer }

    /// The model's state buffer (running statistics), or nil (inference then uses batch statistics).
    public var state: UnsafeMutablePointer<Float>?
    /// Where a training forward records the shard's statistics (`model.statsPerShard` floats), or nil.
    public var shardStats: UnsafeMutablePointer<Float>?
    /// Training (dropout active) or inference. Set by the step before `forward`.
    public var training = false
    /// Seed of this call's random noise (dropout): a function of (seed, global step, shard), so the
    /// noise does not depend on which worker runs the shard.
    public var noiseSeed: UInt64 = 0
    /// Per-layer forward and backward times (`ptrain bench train --profile`), or nil: not timed.
    public var profile: LayerProfile?

    func call(_ i: Int, batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>) -> LayerCall {
        let first = model.inputs[i][0]
        var c = LayerCall(batch: batch, input: inputLists[i][0], output: activations[i + 1].pointer,
                          parameters: parameters, gradients: gradients, outputGrad: activationGrads[i + 1].pointer,
                          inputGrad: first == 0 ? nil : inputGradLists[i][0], scratch: scratch.pointer, indices: indexStorage[i])
        c.inputList = inputLists[i]
        c.inputGradList = inputGradLists[i]
        c.training = training
        c.precision = precision
        if let prepared = preparedWeights[i] {
            // This call makes them when they are not current, so they are current for the version after it.
            c.preparedWeights = prepared.pointer
            let version = weightsVersion ?? 0
            c.preparedWeightsCurrent = version != 0 && preparedVersions[i] == version
            preparedVersions[i] = version
        }
        c.noiseSeed = noiseSeed &+ UInt64(i) &* 0x9E37_79B9_7F4A_7C15
        c.state = state
        c.shardStats = shardStats.map { $0 + model.statsOffsets[i] }
        return c
    }

    /// Runs every layer forward over `batch` samples already in `input`.
    public func forward(batch: Int, parameters: UnsafeMutablePointer<Float>) {
        forward(batch: batch, parameters: parameters, layers: 0..<model.layers.count)
    }

    /// Forward through the layers `layers` only, first first (the layers before must already have
    /// run): lets a caller act between groups of layers. Consecutive ranges from layer 0 up give
    /// the same bits as one full `forward`.
    public func forward(batch: Int, parameters: UnsafeMutablePointer<Float>, layers: Range<Int>) {
        precondition(batch <= model.maxBatch)
        let profile = self.profile
        for i in layers {
            let t0 = profile?.start() ?? LayerProfile.Stamp()
            let c = call(i, batch: batch, parameters: parameters, gradients: parameters)
            defer { profile?.addForward(i, since: t0) }
            guard fusesLayers else { model.layers[i].forward(c); continue }
            switch fusionPlan[i] {
            case .alone, .convAfterReLU:
                if let bn = batchNorms[i] { bn.forward(c, saved: batchNormSaved[i]!, reluOutput: nil, writeOutput: true) }
                else { model.layers[i].forward(c) }
            case .doneBefore, .doneAfter, .doneAround, .poolInConv:
                break
            case let .convIntoPool(pool, _):
                convIntoPoolForward(i, c, pool: pool, parameters: parameters)
            case let .convReLU(relu):
                (model.layers[i] as! Conv2D).forward(c, reluOutput: activations[relu + 1].pointer)
            case let .poolAfterReLU(relu):
                var fused = c
                fused.input = inputLists[relu][0]
                (model.layers[i] as! MaxPool2D).forward(fused, reluFirst: true)
            case let .bnReLU(relu):
                batchNorms[i]!.forward(c, saved: batchNormSaved[i]!, reluOutput: activations[relu + 1].pointer, writeOutput: false)
            case .bnIntoAdd:
                batchNorms[i]!.forward(c, saved: batchNormSaved[i]!, reluOutput: nil, writeOutput: false)
            case let .addReLU(relu, bns):
                addReLUForward(i, batch: batch, relu: relu, batchNorms: bns)
            }
        }
    }

    /// The convolution and the max pooling after its ReLU, a few samples at a time (`FusedStep.convIntoPool`): each
    /// group's convolution output goes to `poolInput` and is pooled through the ReLU from there, while it is in L2, where
    /// the pooling read the whole shard's output back from memory (cifar-small bf16, b128, 1 thread, Zen 4: see
    /// docs/BENCHMARKS.md). Every sample's outputs and the pooling's are those of the two layers run over the shard.
    func convIntoPoolForward(_ i: Int, _ c: LayerCall, pool m: Int, parameters: UnsafeMutablePointer<Float>) {
        let conv = model.layers[i] as! Conv2D, mp = model.layers[m] as! MaxPool2D
        let inCount = conv.inputShape.count, outCount = conv.outputShape.count, pooledCount = mp.outputShape.count
        let group = Self.poolGroup(outCount)
        var p = call(m, batch: 0, parameters: parameters, gradients: parameters)
        var n = 0
        while n < c.batch {
            let k = min(group, c.batch - n)
            var cc = c
            cc.batch = k
            cc.input = c.input + n * inCount
            cc.output = poolInput!.pointer
            conv.forward(cc)
            p.batch = k
            p.input = poolInput!.pointer
            p.output = activations[m + 1].pointer + n * pooledCount
            p.indices = indexStorage[m] + n * pooledCount
            mp.forward(p, reluFirst: true)
            n += k
        }
    }

    /// Samples per group of `convIntoPoolForward`: as many of `count` floats as fit in 512 KiB (half of a Zen 4 core's L2),
    /// at least one. (cifar-small bf16: 256 KiB, groups of 2 and 4 samples, saved 0.35 ms a step, 512 KiB 1.0 ms.)
    static func poolGroup(_ count: Int) -> Int { max(1, 131072 / max(1, count)) }

    /// The fused add + ReLU (see `FusedStep.addReLU`): relu(input 0 + input 1), each input that is a
    /// folded batch norm's output computed here from that layer's input and kept map.
    func addReLUForward(_ i: Int, batch: Int, relu: Int, batchNorms bns: [Int?]) {
        let shape = model.layers[i].outputShape
        let z = activations[relu + 1].pointer
        let hw = shape.height * shape.width, channels = shape.channels
        func source(_ k: Int) -> (x: UnsafeMutablePointer<Float>, map: UnsafeMutablePointer<Float>?) {
            guard let b = bns[k] else { return (inputLists[i][k], nil) }
            return (inputLists[b][0], batchNormSaved[b]!.map)
        }
        let (x0, map0) = source(0), (x1, map1) = source(1)
        switch (map0, map1) {
        case (nil, nil):
            addReLU(count: batch * shape.count, x0, x1, output: z)
        // Sample by sample, plane by plane, in one call with one fence at the end: walking the three tensors
        // channel by channel (rows at a stride) was slower here (ResNet-20 b128, 1 thread, AMD EPYC Zen 4: the
        // adds' forward 4.8 -> 6.1 ms per step, CPU time, medians of 3 interleaved runs), and so was a call (and
        // its fence) per plane (stage 3's 8x8 planes: 0.9 ms per add instead of 0.15 ms).
        case let (m0?, m1?):
            bnAffine2AddReLU(x0, map: m0, x1, map2: m1, samples: batch, channels: channels, count: hw, output: z)
        default:
            // One folded batch norm; the residual add is commutative, so its side does not matter.
            let (x, m, other) = map0 != nil ? (x0, map0!, x1) : (x1, map1!, x0)
            bnAffineAddReLU(x, map: m, other: other, samples: batch, channels: channels, count: hw, output: z)
        }
    }

    /// Softmax cross-entropy of the logits against `labels` (the first `batch` entries); writes the
    /// logits gradient scaled by `gradScale`. Returns the summed loss and the number correct.
    public func loss(batch: Int, gradScale: Float, computeGradient: Bool = true) -> (loss: Double, correct: Int) {
        softmaxCrossEntropy(rows: batch, classes: model.classes, logits: logits, labels: labels, gradScale: gradScale,
                            logitsGrad: computeGradient ? activationGrads[model.layers.count].pointer : nil)
    }

    /// Backward through every layer, adding parameter gradients into `gradients`.
    public func backward(batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>) {
        backward(batch: batch, parameters: parameters, gradients: gradients, layers: 0..<model.layers.count)
    }

    /// Backward through the layers `layers` only, last first (the logits gradient or the layers
    /// above must already have run): lets a caller act between groups of layers. Running
    /// consecutive ranges from the last down gives the same bits as one full `backward`: the
    /// branch gradients of a layer are added right after it, in the same order.
    public func backward(batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                         layers: Range<Int>) {
        backward(batch: batch, parameters: parameters, gradients: gradients, layers: layers, storing: nil)
    }

    /// `backward(batch:parameters:gradients:layers:)` into gradients whose part `range` holds stale values
    /// (the step engine's shard buffers, which held the last step's gradient): zeroes that part, except the
    /// gradients of those layers that store theirs outright (`Layer.storedGradientRange`), which then store.
    /// The same bits as zeroing all of `range` first; a dense layer's large weight gradient is then written
    /// once instead of zeroed, read and written again. `deferring`: those that can (`defersGradient`) leave it to
    /// the caller's reduction (`DefersGradient.reduceDeferred`) instead.
    public func backward(batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>,
                         layers: Range<Int>, clearing range: Range<Int>, deferring: Bool = false) {
        var cleared = range.lowerBound
        for i in layers where stores(i, layers: layers, clearing: range) {
            let r = storedGradients[i]!
            (gradients + cleared).update(repeating: 0, count: r.lowerBound - cleared)
            cleared = r.upperBound
        }
        (gradients + cleared).update(repeating: 0, count: range.upperBound - cleared)
        backward(batch: batch, parameters: parameters, gradients: gradients, layers: layers, storing: range, deferring: deferring)
    }

    /// Whether layer i stores its gradient in a backward of `layers` that clears `range`.
    @inline(__always) func stores(_ i: Int, layers: Range<Int>, clearing range: Range<Int>) -> Bool {
        guard layers.contains(i), let r = storedGradients[i] else { return false }
        return range.lowerBound <= r.lowerBound && r.upperBound <= range.upperBound
    }

    func backward(batch: Int, parameters: UnsafeMutablePointer<Float>, gradients: UnsafeMutablePointer<Float>, layers: Range<Int>,
                  storing: Range<Int>?, deferring: Bool = false) {
        let profile = self.profile
        for i in layers.reversed() {
            let t0 = profile?.start() ?? LayerProfile.Stamp()
            var c = call(i, batch: batch, parameters: parameters, gradients: gradients)
            c.addInputGrad = addsInPlace[i]
            if let storing {
                c.storeGradient = stores(i, layers: layers, clearing: storing)
                c.deferGradient = deferring && c.storeGradient && defersGradient[i]
            }
            if !fusesLayers {
                model.layers[i].backward(c)
            } else {
                switch fusionPlan[i] {
                case let .bnIntoAdd(relu):
                    // The add's backward wrote no gradient for this input: it is the ReLU's gradient, masked here.
                    var fused = c
                    fused.outputGrad = activationGrads[relu + 1].pointer
                    batchNorms[i]!.backward(fused, saved: batchNormSaved[i]!, gate: .positive(activations[relu + 1].pointer))
                case .alone, .convReLU, .convIntoPool(_, afterReLU: nil):
                    if let bn = batchNorms[i] { bn.backward(c, saved: batchNormSaved[i]!, gate: .none) }
                    else { model.layers[i].backward(c) }
                case .doneBefore, .doneAfter, .doneAround:
                    break
                case let .convAfterReLU(relu), let .convIntoPool(_, afterReLU: relu?):
                    var fused = c
                    fused.inputGrad = inputGradLists[relu][0]
                    (model.layers[i] as! Conv2D).backward(fused, gated: true)
                case let .poolAfterReLU(relu), let .poolInConv(relu):
                    var fused = c
                    fused.inputGrad = inputGradLists[relu][0]
                    (model.layers[i] as! MaxPool2D).backward(fused, reluOutput: c.output)
                case let .bnReLU(relu):
                    var fused = c
                    fused.outputGrad = activationGrads[relu + 1].pointer
                    batchNorms[i]!.backward(fused, saved: batchNormSaved[i]!, gate: .reluOfOutput)
                case let .addReLU(relu, bns):
                    // An input that is a folded batch norm takes the ReLU's gradient in its own backward (masked there).
                    reluBackwardFanOut(count: batch * model.layers[i].outputShape.count, output: activations[relu + 1].pointer,
                                       outputGrad: activationGrads[relu + 1].pointer, first: bns[0] == nil ? inputGradLists[i][0] : nil,
                                       second: bns[1] == nil ? inputGradLists[i][1] : nil)
                }
            }
            for (j, entry) in spareInputs[i].enumerated() {
                let a = entry.activation
                let n = batch * model.layers[a - 1].outputShape.count
                addVectors(count: n, activationGrads[a].pointer, spares[j].pointer, into: activationGrads[a].pointer)
            }
            profile?.addBackward(i, since: t0)
        }
    }
}
