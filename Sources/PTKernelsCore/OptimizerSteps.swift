// Optimizer updates over a slice of the flat buffers (PTModel's SGD and Adam call these through the
// dispatch table). The same expressions as PTModel's formulas, element by element, with no fused
// multiply-add, so every level computes the same bits; the level only sets the vector width.

/// SGD with momentum (PyTorch's formulation): g = grad + wd*w; v = mu*v + g; w -= lr * (nesterov ? g + mu*v : v);
/// momentum 0: w -= lr * g.
func _sgdStep<L: KernelLevel>(_ level: L.Type, lr: Float, momentum mu: Float, nesterov: Bool, weightDecay wd: Float,
                              weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                              velocity: UnsafeMutablePointer<Float>, count: Int) {
    typealias V = L.V
    let w = L.width
    let vlr = V(repeating: lr), vmu = V(repeating: mu), vwd = V(repeating: wd)
    let wr = UnsafeMutableRawPointer(weights), gr = UnsafeRawPointer(gradients), vr = UnsafeMutableRawPointer(velocity)
    var i = 0
    if mu == 0 {
        while i + w <= count {
            let x = wr.loadUnaligned(fromByteOffset: 4 * i, as: V.self), g = gr.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
            wr.storeBytes(of: x - vlr * (g + vwd * x), toByteOffset: 4 * i, as: V.self)
            i += w
        }
        while i < count { weights[i] -= lr * (gradients[i] + wd * weights[i]); i += 1 }
        return
    }
    while i + w <= count {
        let x = wr.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
        let g = gr.loadUnaligned(fromByteOffset: 4 * i, as: V.self) + vwd * x
        let v = vmu * vr.loadUnaligned(fromByteOffset: 4 * i, as: V.self) + g
        vr.storeBytes(of: v, toByteOffset: 4 * i, as: V.self)
        wr.storeBytes(of: x - vlr * (nesterov ? g + vmu * v : v), toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count {
        let g = gradients[i] + wd * weights[i]
        let v = mu * velocity[i] + g
        velocity[i] = v
        weights[i] -= lr * (nesterov ? g + mu * v : v)
        i += 1
    }
}

/// Adam / AdamW (PyTorch's formulation), with the per-step constants computed by the caller:
/// g = grad + coupled*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g*g; w = w*shrink - stepSize*m / (sqrt(v)*rc2 + eps).
func _adamStep<L: KernelLevel>(_ level: L.Type, b1: Float, b2: Float, eps: Float, coupled: Float, shrink: Float, stepSize: Float,
                               rc2: Float, weights: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
                               m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, count: Int) {
    typealias V = L.V
    let w = L.width
    let vb1 = V(repeating: b1), vb2 = V(repeating: b2), v1b1 = V(repeating: 1 - b1), v1b2 = V(repeating: 1 - b2)
    let veps = V(repeating: eps), vc = V(repeating: coupled), vs = V(repeating: shrink), vst = V(repeating: stepSize)
    let vrc2 = V(repeating: rc2)
    let wr = UnsafeMutableRawPointer(weights), gr = UnsafeRawPointer(gradients)
    let mr = UnsafeMutableRawPointer(m), vr = UnsafeMutableRawPointer(v)
    var i = 0
    while i + w <= count {
        let x = wr.loadUnaligned(fromByteOffset: 4 * i, as: V.self)
        let g = gr.loadUnaligned(fromByteOffset: 4 * i, as: V.self) + vc * x
        let mi = vb1 * mr.loadUnaligned(fromByteOffset: 4 * i, as: V.self) + v1b1 * g
        let vi = vb2 * vr.loadUnaligned(fromByteOffset: 4 * i, as: V.self) + v1b2 * g * g
        mr.storeBytes(of: mi, toByteOffset: 4 * i, as: V.self)
        vr.storeBytes(of: vi, toByteOffset: 4 * i, as: V.self)
        wr.storeBytes(of: x * vs - vst * mi / (vi.squareRoot() * vrc2 + veps), toByteOffset: 4 * i, as: V.self)
        i += w
    }
    while i < count {
        let g = gradients[i] + coupled * weights[i]
        let mi = b1 * m[i] + (1 - b1) * g
        let vi = b2 * v[i] + (1 - b2) * g * g
        m[i] = mi
        v[i] = vi
        weights[i] = weights[i] * shrink - stepSize * mi / (vi.squareRoot() * rc2 + eps)
        i += 1
    }
}

/// dst[i] += src[i] with vectors of the level (the sums of shard gradients; exact per element, so the
/// same bits on every level).
func _addFloats<L: KernelLevel>(_ level: L.Type, _ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, _ count: Int) {
    typealias V = L.V
    let w = L.width
    let d = UnsafeMutableRawPointer(dst), s = UnsafeRawPointer(src)
    var i = 0
    while i + 4 * w <= count {
        for u in 0..<4 {
            let o = 4 * (i + u * w)
            d.storeBytes(of: d.loadUnaligned(fromByteOffset: o, as: V.self) + s.loadUnaligned(fromByteOffset: o, as: V.self),
                         toByteOffset: o, as: V.self)
        }
        i += 4 * w
    }
    while i < count { dst[i] += src[i]; i += 1 }
}
