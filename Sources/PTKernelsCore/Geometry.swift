// Geometry structs computed once per layer; kernels take raw pointers plus one of these.
// Dimension names follow oneDNN: mb ic oc ih iw oh ow kh kw sh sw ph pw.

/// A 2-D convolution (1-D signals use ih == kh == 1). Layout NCHW, weights [oc][ic][kh][kw].
///
/// Output size: `oh = (ih + 2*ph - kh) / sh + 1`, `ow = (iw + 2*pw - kw) / sw + 1` (floor).
public struct ConvGeometry: Hashable, Sendable, CustomStringConvertible {
    public var mb: Int, ic: Int, oc: Int
    public var ih: Int, iw: Int
    public var kh: Int, kw: Int
    public var sh: Int, sw: Int
    public var ph: Int, pw: Int

    public init(mb: Int, ic: Int, oc: Int, ih: Int, iw: Int, kh: Int, kw: Int,
                sh: Int = 1, sw: Int = 1, ph: Int = 0, pw: Int = 0) {
        self.mb = mb; self.ic = ic; self.oc = oc; self.ih = ih; self.iw = iw
        self.kh = kh; self.kw = kw; self.sh = sh; self.sw = sw; self.ph = ph; self.pw = pw
    }

    public var oh: Int { (ih + 2 * ph - kh) / sh + 1 }
    public var ow: Int { (iw + 2 * pw - kw) / sw + 1 }
    /// Whether the geometry describes a non-empty output.
    public var isValid: Bool {
        mb >= 0 && ic > 0 && oc > 0 && kh > 0 && kw > 0 && sh > 0 && sw > 0 && ph >= 0 && pw >= 0
            && ih + 2 * ph >= kh && iw + 2 * pw >= kw
    }
    /// Reduction length of one output value: ic * kh * kw.
    public var reduction: Int { ic * kh * kw }
    public var inputCount: Int { mb * ic * ih * iw }
    public var outputCount: Int { mb * oc * oh * ow }
    public var weightCount: Int { oc * ic * kh * kw }
    /// Multiply-adds x 2 for one forward pass over the whole minibatch.
    public var forwardFlops: Int { 2 * mb * oc * oh * ow * reduction }
    /// Same geometry with another minibatch size.
    public func with(mb: Int) -> ConvGeometry { var g = self; g.mb = mb; return g }

    public var description: String {
        "mb\(mb)ic\(ic)oc\(oc)_ih\(ih)iw\(iw)_kh\(kh)kw\(kw)_sh\(sh)sw\(sw)_ph\(ph)pw\(pw)"
    }
}

/// Max pooling over each channel plane. Windows start at 0, sh, 2*sh, ... and, with
/// `keepPartial` (the slides' edge handling: a 7x7 map, window 2, stride 2 gives 4x4), a last window
/// that hangs over the edge is kept and clipped; without it, such a window is dropped (floor).
public struct PoolGeometry: Hashable, Sendable, CustomStringConvertible {
    /// Number of planes: minibatch x channels.
    public var planes: Int
    public var ih: Int, iw: Int
    public var kh: Int, kw: Int
    public var sh: Int, sw: Int
    public var keepPartial: Bool

    public init(planes: Int, ih: Int, iw: Int, kh: Int, kw: Int, sh: Int, sw: Int, keepPartial: Bool = true) {
        self.planes = planes; self.ih = ih; self.iw = iw; self.kh = kh; self.kw = kw
        self.sh = sh; self.sw = sw; self.keepPartial = keepPartial
    }

    static func outputSize(_ input: Int, _ window: Int, _ stride: Int, _ keep: Bool) -> Int {
        guard input > 0, window > 0, stride > 0 else { return 0 }
        if input < window { return keep ? 1 : 0 }
        if !keep { return (input - window) / stride + 1 }
        var n = (input - window + stride - 1) / stride + 1
        if (n - 1) * stride >= input { n -= 1 }   // every window starts inside the input
        return n
    }

    public var oh: Int { Self.outputSize(ih, kh, sh, keepPartial) }
    public var ow: Int { Self.outputSize(iw, kw, sw, keepPartial) }
    public var isValid: Bool { oh > 0 && ow > 0 }
    public func with(planes: Int) -> PoolGeometry { var g = self; g.planes = planes; return g }

    public var description: String { "planes\(planes)_ih\(ih)iw\(iw)_kh\(kh)kw\(kw)_sh\(sh)sw\(sw)\(keepPartial ? "_keep" : "")" }
}
