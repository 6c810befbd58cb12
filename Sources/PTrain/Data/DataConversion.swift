// The conversion a config asks for: `Preprocessing`'s, for callers that hold the data section.
import PTData

extension DataConfig {
    /// Stored values of `elementType` to model inputs for this config (`Preprocessing.conversion`).
    public func conversion(for elementType: ElementType, divisor: Float? = nil, standardized: Bool = false) -> SampleConversion {
        Preprocessing(self).conversion(for: elementType, divisor: divisor, standardized: standardized)
    }
}
