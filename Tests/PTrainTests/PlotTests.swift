// The per-epoch error plot: a log scale over the data's range, so 1.2% against 0.8% is visible.
import XCTest
import PTrain

final class PlotTests: XCTestCase {
    func labels(_ svg: String) -> [String] {
        svg.components(separatedBy: "text-anchor=\"end\">").dropFirst().map { $0.components(separatedBy: "<")[0] }
    }

    func testErrorPlotZoomsToTheDataOnALogScale() {
        var plot = LinePlot(title: "t", xLabel: "epoch", yLabel: "error rate (%)",
                            series: [.init(name: "test", points: [(1, 1.6), (2, 1.2), (3, 0.85)]),
                                     .init(name: "train", points: [(1, 3.0), (2, 0.0), (3, 0.4)])])
        plot.logarithmicY = true
        let svg = plot.svg()
        // The smallest positive value is 0.4, so 0 (a perfect epoch) is drawn at 0.04: ticks from
        // 0.01 to 10, no 0 and no 100.
        XCTAssertEqual(labels(svg), ["0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10"])
        // The points 1.6, 1.2 and 0.85 are far apart on the canvas (on the former 0-100 linear axis: 2.4 pixels).
        let test = svg.components(separatedBy: "<polyline")[1].components(separatedBy: "points=\"")[1].components(separatedBy: "\"")[0]
        let ys = test.split(separator: " ").map { Double($0.split(separator: ",")[1])! }
        XCTAssertGreaterThan(ys[2] - ys[0], 25, test)
        plot.logarithmicY = false
        XCTAssertTrue(labels(plot.svg()).contains("0"))
    }
}
