// The per-sample shape of an activation: channels x height x width (NCHW without the N).

/// Per-sample shape of a layer's input or output. 1-D signals use `height == 1`;
/// flat vectors use `height == 1, width == 1`.
public struct Shape: Hashable, Sendable, CustomStringConvertible, Codable {
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(channels: Int, height: Int, width: Int) {
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// A flat vector of `count` values.
    public static func flat(_ count: Int) -> Shape { Shape(channels: count, height: 1, width: 1) }

    public var count: Int { channels * height * width }
    public var isFlat: Bool { height == 1 && width == 1 }

    public var description: String {
        if isFlat { return "\(channels)" }
        if height == 1 { return "\(channels)x\(width)" }
        return "\(channels)x\(height)x\(width)"
    }

    public var dimensions: [Int] { isFlat ? [channels] : (height == 1 ? [channels, width] : [channels, height, width]) }
}
