// The conversion a config asks for, per data source: what `loadData` gives each set, and what
// evaluation and prediction must apply to samples read as stored.
import PTData

extension DataConfig {
    /// Stored values of `elementType` to model inputs for this config: the natural divisor (bytes
    /// / 255, int16 / 32768); `mean` / `std` for the byte sources that take them (idx, cifar10,
    /// images, packed); per-sample standardisation when `z_normalize` is set (UCR standardises
    /// each channel in its reader instead, and a packed file made from such values says so:
    /// `standardized`).
    public func conversion(for elementType: ElementType, divisor: Float? = nil, standardized: Bool = false) -> SampleConversion {
        var c = SampleConversion.natural(elementType)
        if let divisor { c.divisor = divisor }
        switch source {
        case .idx, .cifar10, .images, .packed:
            c.mean = mean.map { [$0] } ?? []
            c.std = std.map { [$0] } ?? []
        case .xo, .npy, .fsdd, .ucr:
            break
        }
        c.zNormalize = zNormalize && source != .ucr && !standardized
        return c
    }
}
