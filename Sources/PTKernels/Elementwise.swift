// Pooling, activations and loss entry points used by the layers (fast paths dispatch here).

/// Max pooling forward. See `maxPoolForwardReference`.
public func maxPoolForward(_ g: PoolGeometry, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                           argmax: UnsafeMutablePointer<Int32>) {
    maxPoolForwardReference(g, input: input, output: output, argmax: argmax)
}

/// Max pooling backward. See `maxPoolBackwardReference`.
public func maxPoolBackward(_ g: PoolGeometry, outputGrad: UnsafePointer<Float>, argmax: UnsafePointer<Int32>,
                            inputGrad: UnsafeMutablePointer<Float>) {
    maxPoolBackwardReference(g, outputGrad: outputGrad, argmax: argmax, inputGrad: inputGrad)
}

/// ReLU forward. See `reluForwardReference`.
public func reluForward(count: Int, input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    for i in 0..<count { output[i] = max(input[i], 0) }
}

/// ReLU backward. See `reluBackwardReference`.
public func reluBackward(count: Int, output: UnsafePointer<Float>, outputGrad: UnsafePointer<Float>,
                         inputGrad: UnsafeMutablePointer<Float>) {
    for i in 0..<count { inputGrad[i] = output[i] > 0 ? outputGrad[i] : 0 }
}

/// Softmax cross-entropy. See `softmaxCrossEntropyReference`.
@discardableResult
public func softmaxCrossEntropy(rows: Int, classes: Int, logits: UnsafePointer<Float>, labels: UnsafePointer<Int32>,
                                gradScale: Float, logitsGrad: UnsafeMutablePointer<Float>?) -> (loss: Double, correct: Int) {
    softmaxCrossEntropyReference(rows: rows, classes: classes, logits: logits, labels: labels,
                                 gradScale: gradScale, logitsGrad: logitsGrad)
}
