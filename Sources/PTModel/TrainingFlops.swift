// The arithmetic of one training image, counted from the layer geometry: what `ptrain bench train`
// divides by the step time to say how close the whole step comes to the machine's peak.

/// Floating-point operations per training image, from the layer geometry.
///
/// What is counted (the headline, `perImage`): the multiply-adds of the layers whose arithmetic is
/// a product with weights, convolution (1-D and 2-D) and dense, at 2 FLOPs each, times 3 for the
/// three passes of training: forward, backward-data and backward-weights, each one product of the
/// same size. The first layer's backward-data is counted too (PyTorch-style 3x), although no step
/// computes it: the input has no gradient (for ResNet-20 on CIFAR that is 0.9 of 244.9 MFLOP).
///
/// What is not counted: biases, batch normalisation, ReLU, pooling, the residual add, dropout,
/// softmax and loss, the optimizer: element-wise passes over memory, not arithmetic the FMA peak
/// measures. `otherForwardFlops` gives their forward operations (`Layer.flopsPerSample`), for
/// reference only.
public struct TrainingFlops: Sendable, Equatable {
    /// One counted layer: its name and forward multiply-adds per image.
    public struct Counted: Sendable, Equatable {
        public let name: String
        public let multiplyAdds: Int
    }

    /// Forward multiply-adds per image of the conv and dense layers.
    public let forwardMultiplyAdds: Int
    /// Forward FLOPs per image of every other layer (not in `perImage`).
    public let otherForwardFlops: Int
    /// Each counted layer's forward multiply-adds per image, in run order.
    public let layers: [Counted]

    public init(_ model: Model) {
        var counted: [Counted] = []
        var other = 0
        for layer in model.layers {
            let macs = layer.multiplyAddsPerSample
            if macs > 0 { counted.append(Counted(name: layer.name, multiplyAdds: macs)) } else { other += layer.flopsPerSample }
        }
        layers = counted
        forwardMultiplyAdds = counted.reduce(0) { $0 + $1.multiplyAdds }
        otherForwardFlops = other
    }

    /// Forward FLOPs per image of the conv and dense layers (2 per multiply-add).
    public var forwardPerImage: Int { 2 * forwardMultiplyAdds }
    /// The headline: FLOPs per training image, forward + backward-data + backward-weights (3 x forward).
    public var perImage: Int { 3 * forwardPerImage }
}

/// The whole step's share of the peak: `flopsPerImage` x `imagesPerSecond` over the peak of all the
/// cores the step ran on (`peakGFLOPSPerCore` x `cores`), as a fraction (0.63 = 63%).
public func shareOfPeak(flopsPerImage: Double, imagesPerSecond: Double, peakGFLOPSPerCore: Double, cores: Int) -> Double {
    guard peakGFLOPSPerCore > 0, cores > 0 else { return 0 }
    return flopsPerImage * imagesPerSecond / (peakGFLOPSPerCore * 1e9 * Double(cores))
}

extension Model {
    /// FLOPs per training image of this model (see `TrainingFlops`).
    public var trainingFlops: TrainingFlops { TrainingFlops(self) }
}
