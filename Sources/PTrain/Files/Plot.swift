// Minimal SVG line plots (no dependencies): axes with ticks, one polyline per series, a legend.
import Foundation

/// A line chart written as a standalone SVG document.
public struct LinePlot {
    public struct Series {
        public var name: String
        public var points: [(Double, Double)]
        public var dashed: Bool
        public init(name: String, points: [(Double, Double)], dashed: Bool = false) {
            self.name = name; self.points = points; self.dashed = dashed
        }
    }

    public var title: String
    public var xLabel: String
    public var yLabel: String
    public var series: [Series]
    public var width = 640.0
    public var height = 420.0
    /// A log-scale y axis over the data's range (values <= 0 are drawn at the bottom edge).
    public var logarithmicY = false

    public init(title: String, xLabel: String, yLabel: String, series: [Series]) {
        self.title = title; self.xLabel = xLabel; self.yLabel = yLabel; self.series = series
    }

    static let colors = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b"]

    /// "Nice" tick values covering [lo, hi].
    static func ticks(_ lo: Double, _ hi: Double, count: Int = 6, integers: Bool = false) -> [Double] {
        let span = max(hi - lo, 1e-12)
        let raw = integers ? max(1, span / Double(count)) : span / Double(count)
        let magnitude = pow(10, floor(log10(raw)))
        let step = [1.0, 2, 2.5, 5, 10].map { $0 * magnitude }.first { $0 >= raw } ?? raw
        var t = ceil(lo / step) * step
        var out: [Double] = []
        while t <= hi + step * 1e-9 { out.append(t); t += step }
        return out
    }

    static func label(_ v: Double) -> String {
        if v == v.rounded() && abs(v) < 1e6 { return String(Int(v)) }
        return String(format: abs(v) < 0.01 ? "%.2g" : "%.3g", v)
    }

    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }

    /// Log-axis ticks: 1, 2, 5 x powers of ten inside [lo, hi] (values, not logarithms).
    static func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
        var out: [Double] = []
        var decade = pow(10, floor(log10(lo)))
        while decade <= hi * 1.0000001 {
            for m in [1.0, 2, 5] where m * decade >= lo * 0.9999999 && m * decade <= hi * 1.0000001 { out.append(m * decade) }
            decade *= 10
        }
        return out
    }

    public func svg() -> String {
        let raw = series.flatMap(\.points).filter { $0.0.isFinite && $0.1.isFinite }
        // On a log axis, values <= 0 (a perfect epoch: 0% error) sit at the floor: a tenth of the
        // smallest positive value, or 0.01 when there is none.
        let floorValue = logarithmicY ? (raw.map(\.1).filter { $0 > 0 }.min().map { $0 / 10 } ?? 0.01) : 0
        func ty(_ y: Double) -> Double { logarithmicY ? log10(max(y, floorValue)) : y }
        let all = raw.map { ($0.0, ty($0.1)) }
        var (x0, x1) = (all.map(\.0).min() ?? 0, all.map(\.0).max() ?? 1)
        var (y0, y1) = (all.map(\.1).min() ?? 0, all.map(\.1).max() ?? 1)
        if !logarithmicY { y0 = min(0, y0) }
        if x1 <= x0 { x1 = x0 + 1 }
        if y1 <= y0 { y0 -= logarithmicY ? 0.5 : 0; y1 = y0 + 1 }
        if logarithmicY {
            // Whole decades around the data, so the ticks 1, 2, 5 x 10^k frame it.
            y0 = floor(y0 + 1e-9); y1 = max(ceil(y1 - 1e-9), y0 + 1)
        } else {
            y1 += (y1 - y0) * 0.05
        }
        x0 = min(x0, x1); y0 = min(y0, y1)
        let left = 70.0, right = 160.0, top = 40.0, bottom = 55.0
        let pw = width - left - right, ph = height - top - bottom
        func sx(_ x: Double) -> Double { left + (x - x0) / (x1 - x0) * pw }
        func sy(_ y: Double) -> Double { top + ph - (y - y0) / (y1 - y0) * ph }
        func n(_ v: Double) -> String { String(format: "%.1f", v) }
        var out = ["<?xml version=\"1.0\" encoding=\"UTF-8\"?>",
                   "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" font-family=\"sans-serif\" font-size=\"12\">",
                   "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>",
                   "<text x=\"\(n(left + pw / 2))\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">\(Self.escape(title))</text>"]
        // Whole-number x values (epochs, threads) get whole-number ticks.
        let integerX = all.allSatisfy { $0.0 == $0.0.rounded() }
        for t in Self.ticks(x0, x1, integers: integerX) {
            out.append("<line x1=\"\(n(sx(t)))\" y1=\"\(n(top))\" x2=\"\(n(sx(t)))\" y2=\"\(n(top + ph))\" stroke=\"#e5e5e5\"/>")
            out.append("<text x=\"\(n(sx(t)))\" y=\"\(n(top + ph + 18))\" text-anchor=\"middle\">\(Self.label(t))</text>")
        }
        let yTicks = logarithmicY ? Self.logTicks(pow(10, y0), pow(10, y1)).map { (log10($0), $0) } : Self.ticks(y0, y1).map { ($0, $0) }
        for (t, value) in yTicks {
            out.append("<line x1=\"\(n(left))\" y1=\"\(n(sy(t)))\" x2=\"\(n(left + pw))\" y2=\"\(n(sy(t)))\" stroke=\"#e5e5e5\"/>")
            out.append("<text x=\"\(n(left - 8))\" y=\"\(n(sy(t) + 4))\" text-anchor=\"end\">\(Self.label(value))</text>")
        }
        out.append("<rect x=\"\(n(left))\" y=\"\(n(top))\" width=\"\(n(pw))\" height=\"\(n(ph))\" fill=\"none\" stroke=\"#333\"/>")
        out.append("<text x=\"\(n(left + pw / 2))\" y=\"\(n(height - 12))\" text-anchor=\"middle\">\(Self.escape(xLabel))</text>")
        out.append("<text transform=\"translate(18 \(n(top + ph / 2))) rotate(-90)\" text-anchor=\"middle\">\(Self.escape(yLabel))</text>")
        for (i, s) in series.enumerated() {
            let color = Self.colors[i % Self.colors.count]
            let pts = s.points.filter { $0.0.isFinite && $0.1.isFinite }.map { "\(n(sx($0.0))),\(n(sy(ty($0.1))))" }.joined(separator: " ")
            let dash = s.dashed ? " stroke-dasharray=\"6 4\"" : ""
            out.append("<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash) points=\"\(pts)\"/>")
            for p in s.points where p.0.isFinite && p.1.isFinite && !s.dashed {
                out.append("<circle cx=\"\(n(sx(p.0)))\" cy=\"\(n(sy(ty(p.1))))\" r=\"3\" fill=\"\(color)\"/>")
            }
            let ly = top + 10 + Double(i) * 20
            out.append("<line x1=\"\(n(left + pw + 15))\" y1=\"\(n(ly))\" x2=\"\(n(left + pw + 40))\" y2=\"\(n(ly))\" stroke=\"\(color)\" stroke-width=\"2\"\(dash)/>")
            out.append("<text x=\"\(n(left + pw + 46))\" y=\"\(n(ly + 4))\">\(Self.escape(s.name))</text>")
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }
}
