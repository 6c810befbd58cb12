// Average pooling, global average pooling and dropout.
import PTKernels
import PTTensor

/// Average pooling: each window's mean, over the part of the window inside the input (windows are
/// placed like `MaxPool2D`'s, with the same edge handling). Backward spreads each output gradient
/// evenly over its window.
public struct AvgPool2D: Layer {
    public let name: String
    public let inputShape: Shape
    public let outputShape: Shape
    public var parameters: [ParameterTensor] { [] }
    public let geometry: PoolGeometry

    public init(name: String, input: Shape, window: (Int, Int), stride: (Int, Int), keepPartial: Bool = true) {
        self.name = name
        self.inputShape = input
        (geometry, outputShape) = poolingGeometry(input, window: window, stride: stride, keepPartial: keepPartial)
    }

    public var summary: String { poolingSummary("avgpool", geometry, oneD: inputShape.height == 1) }
    public var flopsPerSample: Int { outputShape.count * geometry.kh * geometry.kw }

    /// Visits every (plane, output index, clipped window) once.
    @inline(__always)
    func forEachWindow(planes: Int, _ body: (_ inPlane: Int, _ out: Int, _ rows: Range<Int>, _ cols: Range<Int>) -> Void) {
        let g = geometry
        let (oh, ow) = (g.oh, g.ow)
        for p in 0..<planes {
            for y in 0..<oh {
                let rows = (y * g.sh)..<min(y * g.sh + g.kh, g.ih)
                for x in 0..<ow {
                    body(p * g.ih * g.iw, (p * oh + y) * ow + x, rows, (x * g.sw)..<min(x * g.sw + g.kw, g.iw))
                }
            }
        }
    }

    public func forward(_ c: LayerCall) {
        let iw = geometry.iw
        forEachWindow(planes: c.batch * inputShape.channels) { base, out, rows, cols in
            var sum: Float = 0
            for i in rows { for j in cols { sum += c.input[base + i * iw + j] } }
            c.output[out] = sum / Float(rows.count * cols.count)
        }
    }

    public func backward(_ c: LayerCall) {
        guard let dIn = c.inputGrad else { return }
        let iw = geometry.iw
        dIn.update(repeating: 0, count: c.batch * inputShape.count)
        forEachWindow(planes: c.batch * inputShape.channels) { base, out, rows, cols in
            let share = c.outputGrad[out] / Float(rows.count * cols.count)
            for i in rows { for j in cols { dIn[base + i * iw + j] += share } }
        }
    }
}

/// Global average pooling: each channel's mean over all positions, C x H x W -> C.
public struct GlobalAvgPool: Layer {
    public let name: String
    public let inputShape: Shape
    public var outputShape: Shape { .flat(inputShape.channels) }
    public var parameters: [ParameterTensor] { [] }
    public init(name: String, input: Shape) { self.name = name; inputShape = input }
    public var summary: String { "global avgpool" }
    public var flopsPerSample: Int { inputShape.count }

    public func forward(_ c: LayerCall) {
        let plane = inputShape.height * inputShape.width
        for p in 0..<(c.batch * inputShape.channels) {
            var sum: Float = 0
            let src = c.input + p * plane
            for k in 0..<plane { sum += src[k] }
            c.output[p] = sum / Float(plane)
        }
    }

    public func backward(_ c: LayerCall) {
        guard let dIn = c.inputGrad else { return }
        let plane = inputShape.height * inputShape.width
        for p in 0..<(c.batch * inputShape.channels) {
            (dIn + p * plane).update(repeating: c.outputGrad[p] / Float(plane), count: plane)
        }
    }
}

/// Dropout ("inverted"): while training, each value is kept with probability 1 - rate and scaled by
/// 1 / (1 - rate), or set to 0; at inference it passes unchanged. The mask comes from a counter-based
/// generator keyed by the call's noise seed and the value's index, so it depends on (seed, step,
/// shard, position) only — never on the worker that runs the shard.
public struct Dropout: Layer {
    public let name: String
    public let inputShape: Shape
    public var outputShape: Shape { inputShape }
    public var parameters: [ParameterTensor] { [] }
    public let rate: Float

    public init(name: String, input: Shape, rate: Float) {
        self.name = name
        inputShape = input
        self.rate = rate
    }

    public var summary: String { "dropout \(rate)" }
    public var flopsPerSample: Int { inputShape.count }
    public func indexCount(batch: Int) -> Int { batch * inputShape.count }

    /// Whether value `index` is kept under `seed`: one SplitMix64 output compared with the keep
    /// probability in 2^-32 units.
    @inline(__always) public static func keep(seed: UInt64, index: Int, threshold: UInt64) -> Bool {
        var z = seed &+ UInt64(index) &* 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) >> 32 < threshold
    }

    public func forward(_ c: LayerCall) {
        let n = c.batch * inputShape.count
        guard c.training, rate > 0 else {
            c.output.update(from: c.input, count: n)
            for i in 0..<n { c.indices[i] = 1 }
            return
        }
        let threshold = UInt64((Double(1 - rate) * 4_294_967_296).rounded())
        let scale = 1 / (1 - rate)
        for i in 0..<n {
            let kept = Self.keep(seed: c.noiseSeed, index: i, threshold: threshold)
            c.indices[i] = kept ? 1 : 0
            c.output[i] = kept ? c.input[i] * scale : 0
        }
    }

    public func backward(_ c: LayerCall) {
        guard let dIn = c.inputGrad else { return }
        let n = c.batch * inputShape.count
        let scale: Float = c.training && rate > 0 ? 1 / (1 - rate) : 1
        for i in 0..<n { dIn[i] = c.indices[i] != 0 ? c.outputGrad[i] * scale : 0 }
    }
}
