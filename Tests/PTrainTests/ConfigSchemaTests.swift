// The config schema, key by key: every declared key parses and takes effect, survives the
// resolved YAML, and refuses wrong types and values outside its declared range with a one-line
// message naming the file, line and key; README.md's key list is the schema's own rendering.
import XCTest
import PTrain

final class ConfigSchemaTests: XCTestCase {
    /// A config with `key` set to `value` (and otherwise the smallest valid one), and the line the key is on.
    static func config(_ key: String, _ value: String) -> (yaml: String, line: Int) {
        var sections: [(name: String, lines: [(String, String)])] = [
            ("model", [("layers", "\n    - {type: dense, neurons: 2}")]),
            // Room for every key's own range: shards up to 65536, batch sizes down to 1.
            ("training", [("batch_size", "1048576"), ("shards", "1")]),
        ]
        // Adam's settings are written (and so read back) only for Adam.
        if ["optimizer.beta1", "optimizer.beta2", "optimizer.eps"].contains(key) { sections.append(("optimizer", [("type", "adam")])) }
        var top: [(String, String)] = []
        let parts = key.split(separator: ".", maxSplits: 1).map(String.init)
        if parts.count == 1 {
            top.append((parts[0], value))
        } else if let s = sections.firstIndex(where: { $0.name == parts[0] }) {
            if let k = sections[s].lines.firstIndex(where: { $0.0 == parts[1] }) {
                sections[s].lines[k].1 = value
            } else {
                sections[s].lines.append((parts[1], value))
            }
        } else {
            sections.append((parts[0], [(parts[1], value)]))
        }
        var lines: [String] = top.map { "\($0.0): \($0.1)" }
        var keyLine = parts.count == 1 ? 1 : 0
        for section in sections {
            lines.append("\(section.name):")
            for (k, v) in section.lines {
                if "\(section.name).\(k)" == key { keyLine = lines.joined(separator: "\n").split(separator: "\n").count + 1 }
                lines.append("  \(k):" + (v.hasPrefix("\n") ? v : " \(v)"))
            }
        }
        return (lines.joined(separator: "\n") + "\n", keyLine)
    }

    /// Keys that hold values (the model's list and mappings are covered by ConfigTests and GraphTests).
    var valueKeys: [ConfigKeyInfo] { TrainConfig.keys.filter { !["mapping", "list"].contains($0.type) } }

    /// Two values inside the declared range (the ends where there are ends) and two outside it.
    static func samples(_ k: ConfigKeyInfo) -> (good: [String], bad: [String]) {
        if !k.choices.isEmpty {
            return (k.choices.map { String($0.split(separator: " ")[0]) }, ["no_such_\(k.key.split(separator: ".").last!)"])
        }
        switch k.type {
        case "true/false": return (["true", "false"], [])
        case "text": return (["'some text'", "other"], [])
        default: break
        }
        let a = k.allowed
        if let dots = a.range(of: "...") {
            let low = Int(a[..<dots.lowerBound])!, high = Int(a[dots.upperBound...])!
            return (["\(low)", "\(high)"], ["\(low - 1)", "\(high + 1)"])
        }
        if a.hasPrefix(">= ") {
            let low = Double(a.dropFirst(3))!
            return k.type == "integer" ? (["\(Int(low))", "\(Int(low) + 12345)"], ["\(Int(low) - 1)"])
                                       : (["\(low)", "\(low + 0.5)"], ["\(low - 0.5)", "-1e30"])
        }
        if a.hasPrefix("> ") {
            let low = Double(a.dropFirst(2))!
            return (["\(low + 0.25)", "\(low + 2)"], ["\(low)", "\(low - 1)"])
        }
        if a.hasPrefix("[") {
            let ends = a.dropFirst().dropLast().split(separator: ",").map { Double($0.trimmingCharacters(in: .whitespaces))! }
            let closed = a.hasSuffix("]")
            return (closed ? ["\(ends[0])", "\(ends[1])"] : ["\(ends[0])", "\((ends[0] + ends[1]) / 2)"],
                    [closed ? "\(ends[1] + 0.125)" : "\(ends[1])", "\(ends[0] - 0.125)"])
        }
        if a == "finite" { return (["-1.5", "2.25"], [".nan"]) }
        XCTFail("\(k.key): the test does not know the allowed values '\(a)'")
        return ([], [])
    }

    func testEveryKeyParsesTakesEffectAndRoundTrips() throws {
        XCTAssertGreaterThanOrEqual(valueKeys.count, 40)
        for k in valueKeys {
            let base = try TrainConfig.parse(yaml: Self.config("training.shards", "1").yaml, file: "base.yaml")
            var configs: [TrainConfig] = []
            for value in Self.samples(k).good {
                let (yaml, _) = Self.config(k.key, value)
                let config: TrainConfig
                do { config = try TrainConfig.parse(yaml: yaml, file: "my.yaml") } catch {
                    XCTFail("\(k.key): \(value): \(error)")
                    continue
                }
                XCTAssertEqual(try TrainConfig.parse(yaml: config.yaml, file: "resolved"), config, "\(k.key): \(value)")
                configs.append(config)
            }
            // The key reaches the config: its values give different configs, at least one not the base's.
            XCTAssertEqual(configs.count, Self.samples(k).good.count, k.key)
            XCTAssertNotEqual(configs.first, configs.last, k.key)
            XCTAssertTrue(configs.contains { $0 != base }, "\(k.key) changes nothing")
        }
    }

    func testWrongTypesAndValuesNameFileLineAndKey() {
        func expectError(_ key: String, _ value: String, _ parts: [String], file: StaticString = #filePath, line: UInt = #line) {
            let (yaml, keyLine) = Self.config(key, value)
            XCTAssertThrowsError(try TrainConfig.parse(yaml: yaml, file: "my.yaml"), key, file: file, line: line) { error in
                let text = "\(error)"
                XCTAssertTrue(text.hasPrefix("my.yaml:\(keyLine): \(key): "), "\(key) = \(value): \(text)", file: file, line: line)
                XCTAssertFalse(text.contains("\n"), text, file: file, line: line)
                for part in parts { XCTAssertTrue(text.contains(part), "'\(part)' not in: \(text)", file: file, line: line) }
            }
        }
        var checked = 0
        for k in valueKeys {
            expectError(k.key, "[1, 2]", ["expected a single value"])
            switch k.type {
            case "integer": expectError(k.key, "many", ["expected an integer, got 'many'"])
            case "number": expectError(k.key, "many", ["expected a number, got 'many'"])
            case "true/false": expectError(k.key, "maybe", ["expected true or false, got 'maybe'"])
            default: break
            }
            for value in Self.samples(k).bad {
                if k.choices.isEmpty {
                    // A number outside the range: "must be ..., got VALUE" (as the value reads back).
                    let shown = k.type == "integer" ? value : "\(Float(value).map { "\($0)" } ?? value)"
                    expectError(k.key, value, ["must be", value == ".nan" ? "finite" : "got \(shown)"])
                } else {
                    expectError(k.key, value, ["unknown", "'\(value)' (known: \(k.choices.joined(separator: ", ")))"])
                }
                checked += 1
            }
        }
        XCTAssertGreaterThan(checked, 40)
    }

    /// Values set after parsing (command-line overrides) are checked by the same rows.
    func testValidateChecksOverridesAgainstTheSchema() throws {
        var config = try TrainConfig.parse(yaml: Self.config("name", "x").yaml, file: "my.yaml")
        config.learningRate = -1
        XCTAssertThrowsError(try config.validate(file: "flags")) { XCTAssertEqual("\($0)", "flags: optimizer.lr: must be a finite number > 0, got -1.0") }
        config.learningRate = 0.1
        config.epochs = 0
        XCTAssertThrowsError(try config.validate(file: "flags")) { XCTAssertEqual("\($0)", "flags: training.epochs: must be in 1...1000000, got 0") }
        config.epochs = 1
        config.shards = 70_000
        XCTAssertThrowsError(try config.validate(file: "flags")) { XCTAssertEqual("\($0)", "flags: training.shards: must be at most 65536, got 70000") }
        config.shards = 1
        XCTAssertNoThrow(try config.validate(file: "flags"))
    }

    /// The resolved YAML keeps the layout earlier versions wrote (checkpoints store it and must load).
    func testResolvedYAMLOfTheDefaultJob() throws {
        let config = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default")
        XCTAssertEqual(config.yaml, """
            # resolved by ptrain: file values with command-line overrides applied
            name: 'xo'
            data:
              source: xo
              size: 16
              train: 8000
              test: 500
              length: 8000
              z_normalize: false
            model:
              input: {channels: 1, height: 16, width: 16}
              layers:
                - {type: conv, features: 8, size: 3, stride: 1, padding: 1, init: he}
                - {type: relu}
                - {type: maxpool, window: 2, stride: 2, edge: keep}
                - {type: conv, features: 16, size: 3, stride: 1, padding: 1, init: he}
                - {type: relu}
                - {type: maxpool, window: 2, stride: 2, edge: keep}
                - {type: flatten}
                - {type: dense, neurons: 32, init: he}
                - {type: relu}
                - {type: dense, neurons: 2, init: he}
            optimizer:
              type: sgd
              lr: 0.05
              momentum: 0.9
              nesterov: false
              weight_decay: 0.0005
            schedule:
              type: cosine
              warmup_epochs: 0.0
              step_epochs: 1
              gamma: 0.1
              min_lr: 0.0
            training:
              epochs: 8
              batch_size: 32
              shards: 4
              seed: 1
            distributed:
              exchange: reduce_scatter
              bucket_kb: 1024
              overlap_forward: true
              segment_kb: 64
              sends_in_flight: 2

            """)
    }

    /// README.md's key list is `ptrain summary --keys`' table, so the documentation cannot drift.
    func testReadmeKeyListIsTheSchema() throws {
        let readme = try String(contentsOf: TestSupport.repositoryRoot.appendingPathComponent("README.md"), encoding: .utf8)
        let begin = "<!-- config keys: generated by `ptrain summary --keys`; ConfigSchemaTests checks it -->\n"
        let end = "<!-- end of config keys -->"
        guard let from = readme.range(of: begin), let to = readme.range(of: end, range: from.upperBound..<readme.endIndex) else {
            return XCTFail("README.md lacks the config key list between its markers")
        }
        XCTAssertEqual(String(readme[from.upperBound..<to.lowerBound]), TrainConfig.keyTable,
                       "README.md's key list differs from the schema: paste `ptrain summary --keys` between the markers")
        let printed = try TestSupport.ptrain(["summary", "--keys"])
        XCTAssertEqual(printed.status, 0)
        XCTAssertEqual(printed.stdout, TrainConfig.keyTable)
        for k in TrainConfig.keys { XCTAssertTrue(TrainConfig.keyTable.contains("| `\(k.key)` |"), k.key) }
    }
}
