// The model section's keys and the layer schema: one table per layer type (its type words, keys
// with type, default, allowed values and documentation, and how the values make a `LayerSpec` and
// back). Names, inputs ('from') and blocks are expanded by GraphConfig.swift.
import PTModel
import PTTensor
import Yams

/// A pooling layer's partial windows at the edge.
enum PoolEdge: String, CaseIterable, ConfigChoice {
    case keep, drop
    static var noun: String { "edge" }
    static func unknown(_ word: String) -> String { "must be keep or drop, got '\(word)'" }
}

/// The values of one layer entry, by key (each read and checked by its `LayerKey`).
struct LayerValues {
    var values: [String: Any] = [:]
    func callAsFunction<V>(_ key: String, _ type: V.Type = V.self) -> V { values[key] as! V }
    func optional<V>(_ key: String, _ type: V.Type = V.self) -> V? { values[key] as? V }
}

/// One key of a layer type.
struct LayerKey: @unchecked Sendable {
    let name: String
    let type: String
    let defaultText: String
    let allowedText: String
    let doc: String
    /// Reads and checks the value (the default when absent; nil when absent without a default).
    let read: (YAMLSection) throws -> Any?

    /// `missing`: the error when the key is absent and has no default.
    static func value<V: ConfigValue>(_ name: String, _ type: V.Type, default value: V? = nil, defaultDoc: String? = nil,
                                      _ allowed: Allowed? = nil, missing: String? = nil, doc: String) -> LayerKey {
        let choices = (V.self as? any ConfigChoice.Type).map { $0.known }
        return LayerKey(name: name, type: V.typeDoc, defaultText: defaultDoc ?? value?.yamlText ?? (missing != nil ? "required" : ""),
                        allowedText: allowed?.doc ?? choices ?? "", doc: doc) { section in
            guard let v = try V.read(section, name) ?? value else {
                if let missing { throw section.fail(name, missing) }
                return nil
            }
            if let allowed, let x = v.number, let why = allowed.failure(x) { throw section.fail(name, "\(why), got \(v.messageText)") }
            return v
        }
    }
}

/// One layer type: the words that name it in `type`, its keys, and how their values make a spec.
struct LayerType: @unchecked Sendable {
    /// The type words (listed in errors), then other words for the same type.
    let words: [String]
    var aliases: [String] = []
    let doc: String
    let keys: [LayerKey]
    /// The spec from the values read; `word` is the type word the entry used.
    let build: (_ word: String, _ values: LayerValues) throws -> LayerSpec
    /// The type word and key values that write `spec` back (nil: another type's spec).
    let write: (LayerSpec) -> (word: String, values: [String: String])?
}

enum LayerSchema {
    static let initializer = LayerKey.value("init", Initializer.self, default: .he, doc: "Initial weights: he (ReLU nets) or glorot.")

    static let types: [LayerType] = [
        LayerType(words: ["conv", "conv1d"], aliases: ["conv2d"], doc: "convolution (conv1d: along the width of 1-D data)", keys: [
            .value("features", Int.self, .range(1...65_536), missing: "missing: how many features (filters)", doc: "Output channels."),
            .value("size", Int.self, .range(1...4096), missing: "missing: the feature (kernel) size", doc: "Kernel side (conv1d: its length)."),
            .value("stride", Int.self, default: 1, .atLeast(1, atMost: 4096), doc: "Step between windows."),
            .value("padding", Int.self, default: 0, .zeroOrMore(atMost: 4096), doc: "Zeros added on each side."),
            initializer,
        ], build: { word, v in
            .conv(features: v("features"), kernelHeight: word == "conv1d" ? 1 : v("size"), kernelWidth: v("size"),
                  stride: v("stride"), padding: v("padding"), initializer: v("init"))
        }, write: { spec in
            guard case let .conv(features, kh, kw, stride, padding, initializer) = spec else { return nil }
            return (kh == 1 && kw != 1 ? "conv1d" : "conv",
                    ["features": "\(features)", "size": "\(kw)", "stride": "\(stride)", "padding": "\(padding)", "init": initializer.rawValue])
        }),
        pool(max: true),
        pool(max: false),
        LayerType(words: ["global_avgpool"], aliases: ["gap"], doc: "mean of each channel", keys: [],
                  build: { _, _ in .globalAvgPool },
                  write: { if case .globalAvgPool = $0 { ("global_avgpool", [:]) } else { nil } }),
        LayerType(words: ["batchnorm"], aliases: ["bn"], doc: "batch normalisation (each shard's statistics while training, running ones for evaluation)", keys: [
            .value("momentum", Float.self, default: 0.1, .closed(0, 1), doc: "Running statistics' update factor."),
            .value("eps", Float.self, default: 1e-5, .above(0), doc: "Added to the variance."),
        ], build: { _, v in .batchNorm(momentum: v("momentum"), epsilon: v("eps")) },
           write: { spec in
            guard case let .batchNorm(momentum, epsilon) = spec else { return nil }
            return ("batchnorm", ["momentum": "\(momentum)", "eps": "\(epsilon)"])
        }),
        LayerType(words: ["dropout"], doc: "zeroes values while training", keys: [
            .value("rate", Float.self, default: 0.5, .halfOpen(0, 1), doc: "Share of values dropped."),
        ], build: { _, v in .dropout(rate: v("rate")) },
           write: { if case let .dropout(rate) = $0 { ("dropout", ["rate": "\(rate)"]) } else { nil } }),
        LayerType(words: ["relu"], doc: "max(0, x)", keys: [], build: { _, _ in .relu },
                  write: { if case .relu = $0 { ("relu", [:]) } else { nil } }),
        LayerType(words: ["flatten"], doc: "to one row per sample", keys: [], build: { _, _ in .flatten },
                  write: { if case .flatten = $0 { ("flatten", [:]) } else { nil } }),
        LayerType(words: ["dense"], aliases: ["fc", "linear"], doc: "fully connected", keys: [
            .value("neurons", Int.self, .range(1...(1 << 20)), missing: "missing: how many neurons", doc: "Outputs."),
            initializer,
        ], build: { _, v in .dense(neurons: v("neurons"), initializer: v("init")) },
           write: { spec in
            guard case let .dense(neurons, initializer) = spec else { return nil }
            return ("dense", ["neurons": "\(neurons)", "init": initializer.rawValue])
        }),
        LayerType(words: ["add"], doc: "sum of inputs of one shape (residual); needs `from`", keys: [], build: { _, _ in .add },
                  write: { if case .add = $0 { ("add", [:]) } else { nil } }),
        LayerType(words: ["concat"], doc: "inputs joined along channels; needs `from`", keys: [], build: { _, _ in .concat },
                  write: { if case .concat = $0 { ("concat", [:]) } else { nil } }),
    ]

    /// maxpool / avgpool and their 1-D forms.
    static func pool(max: Bool) -> LayerType {
        let name = max ? "maxpool" : "avgpool"
        return LayerType(words: max ? ["maxpool", "maxpool1d"] : ["avgpool", "avgpool1d"], aliases: max ? ["pool"] : [],
                         doc: max ? "largest value of each window (maxpool1d: along the width)" : "mean of each window (avgpool1d: along the width)",
                         keys: [
            .value("window", Int.self, default: 2, .range(1...4096), doc: "Window side (1-D: its length)."),
            .value("stride", Int.self, defaultDoc: "window", .atLeast(1), doc: "Step between windows."),
            .value("edge", PoolEdge.self, default: .keep, doc: "A partial window at the edge: kept (the slides' 7x7 -> 4x4) or dropped."),
        ], build: { word, v in
            let window: Int = v("window")
            let stride = v.optional("stride", Int.self) ?? window
            let keep = v("edge", PoolEdge.self) == .keep
            let height = word.hasSuffix("1d") ? 1 : window
            return max ? .maxPool(windowHeight: height, windowWidth: window, stride: stride, keepPartial: keep)
                       : .avgPool(windowHeight: height, windowWidth: window, stride: stride, keepPartial: keep)
        }, write: { spec in
            let settings: (Int, Int, Int, Bool)
            switch spec {
            case let .maxPool(wh, ww, stride, keep) where max: settings = (wh, ww, stride, keep)
            case let .avgPool(wh, ww, stride, keep) where !max: settings = (wh, ww, stride, keep)
            default: return nil
            }
            let (wh, ww, stride, keep) = settings
            return (wh == 1 && ww != 1 ? "\(name)1d" : name, ["window": "\(ww)", "stride": "\(stride)", "edge": keep ? "keep" : "drop"])
        })
    }

    /// Keys every layer entry may have besides its type's.
    static let commonKeys: [(name: String, doc: String)] = [
        ("type", "The layer type."),
        ("name", "Names the layer and its tensors (`name: stem` gives `stem.weight`)."),
        ("from", "Inputs: a name, a negative index (-1: the previous layer), `input`, or a list of them."),
        ("if", "In a block: false leaves the layer out (a reference to it means its input)."),
    ]

    /// Layer types without settings that may be written as a bare word ("relu").
    static let bareWords: [String: LayerSpec] = [
        "relu": .relu, "flatten": .flatten, "batchnorm": .batchNorm(momentum: 0.1, epsilon: 1e-5), "bn": .batchNorm(momentum: 0.1, epsilon: 1e-5),
        "global_avgpool": .globalAvgPool, "gap": .globalAvgPool,
    ]

    /// Every type word, for "unknown layer type".
    static var knownWords: String { types.flatMap(\.words).joined(separator: ", ") }

    /// The spec of the entry `l` with type word `type`.
    static func spec(_ l: YAMLSection, type word: String, extraKeys: [String]) throws -> LayerSpec {
        guard let type = types.first(where: { $0.words.contains(word) || $0.aliases.contains(word) }) else {
            throw l.fail("type", "unknown layer type '\(word)' (known: \(knownWords))")
        }
        try l.checkKnown(["type"] + type.keys.map(\.name) + extraKeys)
        var values = LayerValues()
        for key in type.keys { values.values[key.name] = try key.read(l) }
        return try type.build(word, values)
    }

    /// The YAML flow mapping body of `spec` ("type: conv, features: 8, ..."), keys in table order.
    static func yaml(_ spec: LayerSpec) -> String {
        for type in types {
            guard let (word, values) = type.write(spec) else { continue }
            return (["type: \(word)"] + type.keys.compactMap { k in values[k.name].map { "\(k.name): \($0)" } }).joined(separator: ", ")
        }
        preconditionFailure("LayerSchema: no layer type writes \(spec)")
    }

    /// The layer keys as markdown tables (README.md's list).
    static var keyTable: String {
        var lines = ["| layer type | key | type | default | allowed | meaning |", "| --- | --- | --- | --- | --- | --- |"]
        for k in commonKeys { lines.append("| any | `\(k.name)` | | | | \(k.doc) |") }
        for t in types {
            let words = (t.words + t.aliases).map { "`\($0)`" }.joined(separator: ", ")
            if t.keys.isEmpty { lines.append("| \(words) | | | | | \(t.doc) |") }
            for k in t.keys {
                let d = k.defaultText.isEmpty || k.defaultText == "required" ? k.defaultText : "`\(k.defaultText)`"
                let a = k.allowedText.isEmpty ? "" : "`\(k.allowedText)`"
                lines.append("| \(words) | `\(k.name)` | \(k.type) | \(d) | \(a) | \(k.doc) |")
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

// MARK: - The model section's keys

enum ModelKeys {
    /// model.input: {channels, height, width} or {channels, length}.
    static let input = ConfigKey(
        name: "input", type: "mapping", defaultText: "", allowedText: "",
        doc: "Input shape: {channels, height, width}, or {channels, length} for 1-D data; default: the data's.",
        read: { m, config in
            guard let inputNode = m.node("input") else { return }
            let i = try YAMLSection(file: m.file, path: "model.input", node: inputNode)
            try i.checkKnown(["channels", "height", "width", "length"])
            let channels = try i.int("channels") ?? 1
            let length = try i.int("length")
            let height = try i.int("height") ?? (length != nil ? 1 : nil)
            let width = try i.int("width") ?? length
            guard let h = height, let w = width else { throw m.fail("input", "give height and width (or length for 1-D data)") }
            guard channels > 0, h > 0, w > 0, channels <= 65_536, h <= 1 << 20, w <= 1 << 20, channels * h * w <= 1 << 28 else {
                throw m.fail("input", "sizes must be positive and at most 2^28 values per sample, got \(channels)x\(h)x\(w)")
            }
            config.input = Shape(channels: channels, height: h, width: w)
        },
        yaml: { config in config.input.map { "{channels: \($0.channels), height: \($0.height), width: \($0.width)}" } },
        check: { _ in nil })

    /// model.layers: the layer list (blocks expanded by GraphParser).
    static let layers = ConfigKey(
        name: "layers", type: "list", defaultText: "", allowedText: "",
        doc: "The layers in order (see the layer keys below); an entry may also use a block.",
        read: { m, config in
            var graph = GraphParser(file: m.file, model: m)
            config.layers = try graph.expand()
        },
        yaml: { config in
            "\n" + config.layers.map { "    - {\(layerHead($0))\(LayerSchema.yaml($0.spec))}" }.joined(separator: "\n")
        },
        check: { $0.layers.isEmpty ? "the model needs at least one layer" : nil })

    /// model.blocks: read with the layers (GraphConfig.swift); the resolved YAML holds them expanded.
    static let blocks = ConfigKey(
        name: "blocks", type: "mapping", defaultText: "", allowedText: "",
        doc: "Named blocks of layers with parameters, used in `layers` as {block: NAME, repeat: N, ...}.",
        read: { _, _ in }, yaml: { _ in nil }, check: { _ in nil })

    /// "name: 'x', from: [..], " of a written layer.
    static func layerHead(_ node: LayerNode) -> String {
        var head = ""
        if let name = node.name { head += "name: \(yamlQuoted(name)), " }
        if let from = node.from {
            head += "from: [" + from.map { ref -> String in
                switch ref {
                case .input: return "input"
                case let .relative(k): return String(k)
                case let .name(n): return yamlQuoted(n)
                }
            }.joined(separator: ", ") + "], "
        }
        return head
    }
}

// MARK: - Layer entries

extension TrainConfig {
    /// One layer entry (a mapping with 'type', or a bare word for a layer without settings).
    /// `extraKeys` are keys the caller reads itself (a block layer's 'if').
    static func parseLayer(_ node: Node, path: String, file: String, extraKeys: [String] = []) throws -> LayerNode {
        // A bare string ("relu", "flatten") is a layer without settings.
        if case let .scalar(s) = node {
            let location = YAMLSection.location(file, node)
            guard let spec = LayerSchema.bareWords[s.string] else {
                throw ConfigError("\(location): \(path): '\(s.string)' needs settings (write it as a mapping with 'type')")
            }
            return LayerNode(spec, location: location)
        }
        let l = try YAMLSection(file: file, path: path, node: node)
        guard let type = try l.string("type") else { throw ConfigError("\(YAMLSection.location(file, node)): \(path): missing 'type'") }
        var result = LayerNode(try LayerSchema.spec(l, type: type, extraKeys: ["name", "from"] + extraKeys),
                               location: YAMLSection.location(file, node))
        if let name = try l.string("name") {
            guard isValidLayerName(name) else {
                throw l.fail("name", "'\(name)' is not a layer name (letters, digits, '_', '.', '-'; starting with a letter or '_'; not 'input')")
            }
            result.name = name
        }
        result.from = try parseFrom(l)
        if result.spec.joinsInputs && result.from == nil {
            throw ConfigError("\(YAMLSection.location(file, node)): \(path): \(type) needs 'from' with at least two inputs (names or relative indices such as -3)")
        }
        return result
    }

    /// 'from': one reference or a list; a negative integer counts layers back (-1: the previous
    /// one), 'input' is the model input (inside a block: the block's input), anything else a name.
    static func parseFrom(_ l: YAMLSection) throws -> [LayerRef]? {
        guard let node = l.node("from") else { return nil }
        let items: [Node]
        switch node {
        case .scalar: items = [node]
        case let .sequence(seq): items = Array(seq)
        default: throw l.fail("from", "expected a layer name, a negative index such as -3, or a list of them")
        }
        if items.isEmpty { throw l.fail("from", "the list is empty") }
        return try items.map { item in
            guard case let .scalar(s) = item else { throw l.fail("from", "expected a layer name or a negative index, not a nested list") }
            let text = s.string
            if let k = Int(text) {
                guard k < 0 else {
                    throw l.fail("from", k == 0 ? "0 would be the layer itself (a cycle); -1 is the previous layer"
                                                : "\(k) is a forward reference; inputs must come from earlier layers (negative indices)")
                }
                return .relative(k)
            }
            if text == "input" { return .input }
            guard isValidLayerName(text) else { throw l.fail("from", "'\(text)' is neither a layer name nor a negative index") }
            return .name(text)
        }
    }
}
