// Layer fusion: batch norm, the residual add and ReLU run as one pass over memory where the graph
// allows it, and so do ReLU and the max pooling after it (a few samples at a time inside the convolution
// before them), and ReLU between two convolutions, with the bits of the layers run one by one.
import PTTensor

/// How one layer runs in a `Workspace` with fusion on (`Model.fusionPlan`).
///
/// The plan is a function of the graph alone: a batch-norm layer whose only consumer is a ReLU
/// writes the ReLU's output itself (`bnReLU`); an add of two inputs whose only consumer is a ReLU
/// writes the ReLU's output itself (`addReLU`), applying the map of each input that is a batch-norm
/// layer consumed by that add alone (`bnIntoAdd`); a max pooling right after a ReLU that feeds it
/// alone reads the ReLU's input and applies ReLU to each value it reads (`poolAfterReLU`); a ReLU between
/// two convolutions, each its only neighbour (VGG-style stacks), runs inside them: the first writes the
/// ReLU's output as it stores its own (`convReLU`), the second writes the ReLU's input gradient as it stores
/// its own input gradient, masked by its input, the ReLU's output (`convAfterReLU`). The outputs
/// those steps skip are never written; no backward reads them (batch norm's backward reads its input,
/// ReLU's its output, which the pooling's backward replaces by its own: see below).
///
/// Backward, the ReLU folded into a batch norm is masked inside batch norm's two gradient passes
/// (the mask recomputed from the input as x * scale + shift > 0); the ReLU folded into an add
/// writes its masked gradient straight to the add's input gradients, except to an input that is a
/// folded batch norm (`bnIntoAdd`), whose backward reads the ReLU's gradient and masks it by the
/// ReLU's output itself (no copy written); the ReLU folded into a
/// max pooling is masked by the pooled value > 0 as the pooling's backward puts each gradient at its
/// window's argmax (where the ReLU's output is that pooled value), straight into the ReLU's input
/// gradient. Batch norm's backward
/// takes the batch statistics its forward computed instead of computing them again.
///
/// Every fused pass applies, per element, the operations of the layers it replaces in their order
/// (multiply, add, the residual add, then ReLU's compare), so fusion changes no bit of any
/// activation kept, gradient, weight or statistic. Only the skipped outputs are left unwritten.
public enum FusedStep: Sendable, Equatable {
    /// Runs as itself.
    case alone
    /// A ReLU run by the fused step before it: forward and backward are done there.
    case doneBefore
    /// A ReLU run by the max pooling right after it (`poolAfterReLU`): forward and backward are done there.
    case doneAfter
    /// A ReLU between two convolutions: its forward is done by the one before (`convReLU`), its backward by the
    /// one after (`convAfterReLU`).
    case doneAround
    /// A convolution whose only consumer is the ReLU at index `relu`, itself consumed by a `convAfterReLU`
    /// alone: writes that ReLU's output (not its own); its backward reads the gradient the next one wrote.
    case convReLU(relu: Int)
    /// A convolution whose input is the output of the ReLU at index `relu` (folded into a `convReLU`), which
    /// feeds it alone: its backward writes that ReLU's input gradient, its own masked by its input > 0.
    case convAfterReLU(relu: Int)
    /// Max pooling whose input is the output of the ReLU at index `relu` (= this index - 1), which
    /// feeds it alone: pools ReLU's input through ReLU, and writes ReLU's input gradient. LeNet-5 b64
    /// (1 thread): the two ReLU layers before the poolings were ~0.12 ms of a ~2.9 ms step.
    case poolAfterReLU(relu: Int)
    /// A convolution whose only consumer is a ReLU feeding the `poolAfterReLU` max pooling at index `pool` alone:
    /// its forward runs a few samples at a time into a small buffer and pools them through the ReLU (as
    /// `poolAfterReLU` does) while they are in L2; its own output is never written (the pooling's backward reads its
    /// own output and argmax, the convolution's its input). `afterReLU`: its input is a folded ReLU's output, its
    /// backward as `convAfterReLU`; nil: as a plain convolution.
    case convIntoPool(pool: Int, afterReLU: Int?)
    /// The max pooling of a `convIntoPool`: its forward is done there, its backward as `poolAfterReLU`.
    case poolInConv(relu: Int)
    /// Batch norm whose only consumer is the ReLU at index `relu`: writes that ReLU's output.
    case bnReLU(relu: Int)
    /// Batch norm whose only consumer is a fused add, itself consumed by the ReLU at index `relu`: computes and
    /// keeps its map, writes nothing; backward takes that ReLU's gradient, masked by the ReLU's output.
    case bnIntoAdd(relu: Int)
    /// An add of two inputs whose only consumer is the ReLU at index `relu`: writes that ReLU's output.
    /// `batchNorms[k]` is the batch-norm layer whose output is input k when it is folded in (its map is
    /// applied here to its own input), else nil.
    case addReLU(relu: Int, batchNorms: [Int?])

    /// Whether the layer's own output activation is written in a fused forward.
    public var writesOutput: Bool {
        switch self {
        case .alone, .doneBefore, .poolAfterReLU, .doneAround, .convAfterReLU, .poolInConv: return true
        case .bnReLU, .bnIntoAdd, .addReLU, .doneAfter, .convReLU, .convIntoPool: return false
        }
    }
}

extension Model {
    /// Each layer's step with fusion on (see `FusedStep`), from the graph alone.
    public var fusionPlan: [FusedStep] {
        let count = layers.count
        // consumers[a]: the layers that read activation a (with repeats).
        var consumers = [[Int]](repeating: [], count: count + 1)
        for (i, list) in inputs.enumerated() { for a in list { consumers[a].append(i) } }
        /// The ReLU that alone consumes layer i's output, if any.
        func onlyReLU(after i: Int) -> Int? {
            guard consumers[i + 1].count == 1, let r = consumers[i + 1].first, layers[r] is ReLU else { return nil }
            return r
        }
        var plan = [FusedStep](repeating: .alone, count: count)
        for i in 0..<count {
            if layers[i] is BatchNorm, let r = onlyReLU(after: i) {
                plan[i] = .bnReLU(relu: r)
                plan[r] = .doneBefore
            } else if layers[i] is Add, inputs[i].count == 2, inputs[i][0] != inputs[i][1], let r = onlyReLU(after: i) {
                var batchNorms: [Int?] = []
                for a in inputs[i] {
                    let b = a - 1
                    if b >= 0, layers[b] is BatchNorm, consumers[a] == [i] {
                        batchNorms.append(b)
                        plan[b] = .bnIntoAdd(relu: r)
                    } else {
                        batchNorms.append(nil)
                    }
                }
                plan[i] = .addReLU(relu: r, batchNorms: batchNorms)
                plan[r] = .doneBefore
            }
        }
        // ReLU -> max pooling (LeNet, CIFAR-small), adjacent, so that the branch gradients added after
        // the ReLU's (empty) backward are still added right after the pooling wrote the ReLU's input gradient.
        for r in 0..<(count - 1) where plan[r] == .alone && layers[r] is ReLU {
            let m = r + 1
            guard plan[m] == .alone, layers[m] is MaxPool2D, inputs[m] == [r + 1], consumers[r + 1] == [m] else { continue }
            plan[r] = .doneAfter
            plan[m] = .poolAfterReLU(relu: r)
        }
        // Convolution -> ReLU -> convolution, each the only consumer of the one before (CIFAR-small's two
        // pairs: the ReLUs' passes were 3.8 ms of a 113 ms bf16 step, b128, 1 thread, Zen 4).
        for r in 0..<count where plan[r] == .alone && layers[r] is ReLU {
            guard inputs[r].count == 1, consumers[r + 1].count == 1 else { continue }
            let i = inputs[r][0] - 1, m = consumers[r + 1][0]
            guard i >= 0, layers[i] is Conv2D, plan[i] == .alone, consumers[i + 1] == [r],
                  layers[m] is Conv2D, plan[m] == .alone, inputs[m] == [r + 1] else { continue }
            plan[i] = .convReLU(relu: r)
            plan[r] = .doneAround
            plan[m] = .convAfterReLU(relu: r)
        }
        // Convolution -> ReLU -> max pooling, the ReLU already folded into the pooling and the convolution its only
        // producer and feeding it alone (CIFAR-small's conv2 and conv4, LeNet's two convolutions).
        for m in 0..<count {
            guard case let .poolAfterReLU(r) = plan[m], inputs[r].count == 1 else { continue }
            let i = inputs[r][0] - 1
            guard i >= 0, layers[i] is Conv2D, consumers[i + 1] == [r] else { continue }
            switch plan[i] {
            case .alone: plan[i] = .convIntoPool(pool: m, afterReLU: nil)
            case let .convAfterReLU(before): plan[i] = .convIntoPool(pool: m, afterReLU: before)
            default: continue
            }
            plan[m] = .poolInConv(relu: r)
        }
        return plan
    }
}
