// The one JSON configuration of everything ptrain writes: metrics lines, checkpoint manifests,
// safetensors headers, bench and topology output, eval/predict results.
import Foundation

/// JSON as ptrain writes it: keys sorted (the same value always gives the same bytes), slashes
/// not escaped, and non-finite numbers (a test loss that overflowed) as the strings "inf",
/// "-inf", "nan".
public enum JSON {
    /// The encoder; `pretty` indents (checkpoint manifests, read by people too).
    public static func encoder(pretty: Bool = false) -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .withoutEscapingSlashes, .prettyPrinted] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        return encoder
    }

    /// The encoded bytes.
    public static func bytes<T: Encodable>(_ value: T, pretty: Bool = false) throws -> [UInt8] {
        [UInt8](try encoder(pretty: pretty).encode(value))
    }

    /// One compact line (no line break): a metrics record, a bench result.
    public static func line<T: Encodable>(_ value: T) -> String {
        guard let data = try? encoder().encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    /// A JSON string literal (quotes and escapes), for one-line messages and quoted names.
    public static func string(_ s: String) -> String { line(s) }
}
