// Training-time augmentation: pure functions of (seed, epoch, sample index), so they change
// nothing about reproducibility (the same bits for any threads, ranks or resume point).
import PTTensor

/// Random changes to one training sample, drawn from (seed, epoch, sample index) only.
///
/// Images (C x H x W, the same change for every channel):
/// - `crop`: pad by `crop` pixels of `fill`, then cut a random H x W window (a shift in
///   [-crop, crop] on each axis): CIFAR's usual "random crop after zero padding";
/// - `flip`: mirror left-right with probability 1/2;
/// - `translate` and `scale` (digits): shift by up to `translate` pixels on each axis and scale by a
///   factor in [1 - scale, 1 + scale] about the centre, bilinear, `fill` outside.
///
/// 1-D signals (height 1):
/// - `shift`: move by up to `shift` samples either way (zeros enter);
/// - `gain`: multiply by a factor in [1 - gain, 1 + gain].
///
/// `fill` is the value of an empty pixel after the data's normalisation (a zero pixel becomes
/// (0 - mean) / std).
public struct Augmentation: Sendable, Equatable {
    public var crop: Int = 0
    public var flip: Bool = false
    public var translate: Int = 0
    public var scale: Float = 0
    public var shift: Int = 0
    public var gain: Float = 0
    public var fill: Float = 0

    public init(crop: Int = 0, flip: Bool = false, translate: Int = 0, scale: Float = 0, shift: Int = 0, gain: Float = 0, fill: Float = 0) {
        self.crop = crop; self.flip = flip; self.translate = translate; self.scale = scale
        self.shift = shift; self.gain = gain; self.fill = fill
    }

    /// Whether every setting is off (nothing to do).
    public var isIdentity: Bool { crop == 0 && !flip && translate == 0 && scale == 0 && shift == 0 && gain == 0 }

    /// The random stream of one sample in one epoch.
    @inline(__always) static func stream(seed: UInt64, epoch: Int, index: Int) -> SplitMix64 {
        var mix = SplitMix64(seed: seed ^ 0x6175_676D_656E_74)   // "augment"
        mix.state &+= UInt64(truncatingIfNeeded: epoch) &* 0xD6E8_FEB8_6659_FD93
        let a = mix.next()
        return SplitMix64(seed: a ^ (UInt64(truncatingIfNeeded: index) &* 0x9E37_79B9_7F4A_7C15))
    }

    /// Uniform integer in -limit...limit.
    @inline(__always) static func symmetric(_ r: inout SplitMix64, _ limit: Int) -> Int {
        guard limit > 0 else { return 0 }
        return Int((r.next() >> 11) % UInt64(2 * limit + 1)) - limit
    }

    /// Uniform in [-1, 1).
    @inline(__always) static func unit(_ r: inout SplitMix64) -> Float { Float(r.next() >> 40) * (2.0 / 16_777_216.0) - 1 }

    /// Augments the sample `x` of `shape` in place; `scratch` holds at least `shape.count` floats.
    /// Allocates nothing.
    public func apply(_ x: UnsafeMutablePointer<Float>, shape: Shape, seed: UInt64, epoch: Int, index: Int,
                      scratch: UnsafeMutablePointer<Float>) {
        guard !isIdentity else { return }
        var r = Self.stream(seed: seed, epoch: epoch, index: index)
        // Draw every setting's numbers in a fixed order, used or not, so that turning one setting
        // on or off does not change the others' draws.
        let cropY = Self.symmetric(&r, crop), cropX = Self.symmetric(&r, crop)
        let mirror = r.next() >> 63 == 1
        let moveY = Self.symmetric(&r, translate), moveX = Self.symmetric(&r, translate)
        let factor = 1 + scale * Self.unit(&r)
        let move1D = Self.symmetric(&r, shift)
        let level = 1 + gain * Self.unit(&r)
        let (c, h, w) = (shape.channels, shape.height, shape.width)
        if h == 1 {
            if move1D != 0 { shiftRows(x, rows: c, width: w, dy: 0, dx: move1D, fill: 0, scratch: scratch, height: 1) }
            if gain != 0 { for i in 0..<shape.count { x[i] *= level } }
            if mirror && flip { mirrorRows(x, rows: c, width: w) }
            return
        }
        if scale != 0 {
            resample(x, channels: c, height: h, width: w, dy: moveY + cropY, dx: moveX + cropX, factor: factor, scratch: scratch)
        } else if moveY + cropY != 0 || moveX + cropX != 0 {
            shiftRows(x, rows: c, width: w, dy: moveY + cropY, dx: moveX + cropX, fill: fill, scratch: scratch, height: h)
        }
        if mirror && flip { mirrorRows(x, rows: c * h, width: w) }
    }

    /// out[y][x] = in[y - dy][x - dx] (fill outside), for `rows / height` planes of height x width.
    func shiftRows(_ x: UnsafeMutablePointer<Float>, rows planes: Int, width w: Int, dy: Int, dx: Int, fill: Float,
                   scratch: UnsafeMutablePointer<Float>, height h: Int) {
        let n = planes * h * w
        scratch.update(from: x, count: n)
        for p in 0..<planes {
            for y in 0..<h {
                let out = x + (p * h + y) * w
                let sy = y - dy
                guard sy >= 0 && sy < h else { out.update(repeating: fill, count: w); continue }
                let src = scratch + (p * h + sy) * w
                for xx in 0..<w {
                    let sx = xx - dx
                    out[xx] = sx >= 0 && sx < w ? src[sx] : fill
                }
            }
        }
    }

    func mirrorRows(_ x: UnsafeMutablePointer<Float>, rows: Int, width w: Int) {
        for r in 0..<rows {
            let row = x + r * w
            var i = 0, j = w - 1
            while i < j { let t = row[i]; row[i] = row[j]; row[j] = t; i += 1; j -= 1 }
        }
    }

    /// Scales by `factor` about the centre, then shifts by (dy, dx): bilinear, `fill` outside.
    func resample(_ x: UnsafeMutablePointer<Float>, channels: Int, height h: Int, width w: Int, dy: Int, dx: Int, factor: Float,
                  scratch: UnsafeMutablePointer<Float>) {
        scratch.update(from: x, count: channels * h * w)
        let cy = Float(h - 1) / 2, cx = Float(w - 1) / 2
        let inv = 1 / factor
        let fill = self.fill
        for y in 0..<h {
            let sy = (Float(y - dy) - cy) * inv + cy
            let y0f = sy.rounded(.down)
            let y0 = Int(y0f), fy = sy - y0f
            let top = y0 >= 0 && y0 < h, bottom = y0 + 1 >= 0 && y0 + 1 < h
            for xx in 0..<w {
                let sx = (Float(xx - dx) - cx) * inv + cx
                let x0f = sx.rounded(.down)
                let x0 = Int(x0f), fx = sx - x0f
                let left = x0 >= 0 && x0 < w, right = x0 + 1 >= 0 && x0 + 1 < w
                let i00 = y0 * w + x0
                for ch in 0..<channels {
                    let plane = scratch + ch * h * w
                    let v00 = top && left ? plane[i00] : fill
                    let v01 = top && right ? plane[i00 + 1] : fill
                    let v10 = bottom && left ? plane[i00 + w] : fill
                    let v11 = bottom && right ? plane[i00 + w + 1] : fill
                    let upper = v00 + (v01 - v00) * fx, lower = v10 + (v11 - v10) * fx
                    x[(ch * h + y) * w + xx] = upper + (lower - upper) * fy
                }
            }
        }
    }
}
