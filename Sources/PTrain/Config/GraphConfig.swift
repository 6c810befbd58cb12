// The model's layer list as a config writes it: layers with names and inputs ('from'), and blocks
// of layers written once under model.blocks and repeated with their own parameters. Expanded here
// into one flat list of `LayerNode`s; `Model` then checks references and shapes.
import PTModel
import Yams

/// A layer name: starts with a letter or '_', then letters, digits, '_', '.', '-'; never 'input'.
func isValidLayerName(_ s: String) -> Bool {
    guard let first = s.unicodeScalars.first, s != "input", s.count <= 200 else { return false }
    func letter(_ c: Unicode.Scalar) -> Bool { (c >= "a" && c <= "z") || (c >= "A" && c <= "Z") || c == "_" }
    return letter(first) && s.unicodeScalars.allSatisfy { letter($0) || ($0 >= "0" && $0 <= "9") || $0 == "." || $0 == "-" }
}

/// Expands `model.layers` (with `model.blocks`) into the flat list of layers.
///
/// A block:
///
///     blocks:
///       basic:
///         params: {features: 16, stride: 1, project: false}     # names and default values
///         layers:                                               # `$name` is a parameter's value
///           - {name: conv1, type: conv, features: $features, size: 3, stride: $stride, padding: 1}
///           - ...
///           - {name: shortcut.0, type: conv, from: input, features: $features, size: 1, stride: $stride, if: $project}
///           - {type: add, from: [bn2, shortcut.0]}
///
/// used in `layers` as `{block: basic, name: layer2, repeat: 3, features: 32, first: {stride: 2, project: true}}`:
/// three copies, the first with the `first` values. Inside a block, `input` is the block's input,
/// names are the block's own, and relative indices count the block's layers as written. A layer
/// whose `if` is false is left out and passes its input through: a reference to it means its
/// input. Copy r's layers are named `NAME.r.LOCAL` (PyTorch's style, e.g. `layer2.0.conv1`);
/// unnamed ones get the kind and a count within the copy (`relu1`). At the top level a block entry
/// counts as one layer (its output is the last copy's output) and its name refers to that output.
struct GraphParser {
    let file: String
    let model: YAMLSection

    struct Block {
        let name: String
        let defaults: [(key: String, value: String)]
        let layers: [Node]
        let path: String
    }

    /// Most layers a config may expand to.
    static let maxLayers = 10_000

    /// The flat list being built; activation a is the model input (0) or node a - 1's output.
    var nodes: [LayerNode] = []

    init(file: String, model: YAMLSection) {
        self.file = file
        self.model = model
    }

    func location(_ node: Node) -> String { YAMLSection.location(file, node) }

    /// `a` as a reference from the node about to be appended.
    func reference(to a: Int) -> LayerRef { .relative(a - (nodes.count + 1)) }

    func parseBlocks() throws -> [String: Block] {
        guard let section = try model.section("blocks") else { return [:] }
        var blocks: [String: Block] = [:]
        for (name, node) in section.pairs {
            guard isValidLayerName(name) else { throw section.fail(name, "'\(name)' is not a valid block name") }
            let b = try YAMLSection(file: file, path: section.dotted(name), node: node)
            try b.checkKnown(["params", "layers"])
            var defaults: [(String, String)] = []
            if let p = try b.section("params") {
                for (key, value) in p.pairs {
                    guard case let .scalar(v) = value else { throw p.fail(key, "a parameter's default must be a single value") }
                    guard isValidLayerName(key) else { throw p.fail(key, "'\(key)' is not a valid parameter name") }
                    defaults.append((key, v.string))
                }
            }
            guard let layersNode = b.node("layers") else { throw b.fail("layers", "missing: list the block's layers") }
            guard case let .sequence(seq) = layersNode, !seq.isEmpty else { throw b.fail("layers", "expected a non-empty list of layers") }
            blocks[name] = Block(name: name, defaults: defaults, layers: Array(seq), path: b.dotted("layers"))
        }
        return blocks
    }

    mutating func expand() throws -> [LayerNode] {
        let blocks = try parseBlocks()
        guard let layersNode = model.node("layers") else { throw model.fail("layers", "missing: list the layers") }
        guard case let .sequence(seq) = layersNode else { throw model.fail("layers", "expected a list of layers") }
        let entries = Array(seq)
        // Names of block entries (their outputs) and where they stand, to tell forward references.
        var blockEntryNames: [String: Int] = [:]
        var blockCounts: [String: Int] = [:]
        var entryNames: [String?] = []
        for entry in entries {
            var name: String?
            if case let .mapping(m) = entry, let blockNode = m["block"], let blockName = blockNode.string {
                blockCounts[blockName, default: 0] += 1
                name = m["name"]?.string ?? "\(blockName)\(blockCounts[blockName]!)"
                blockEntryNames[name!] = entryNames.count
            }
            entryNames.append(name)
        }
        // Activation of each written entry's output.
        var entryOutput: [Int] = []
        var blockOutputs: [String: Int] = [:]
        for (t, entry) in entries.enumerated() {
            let path = "model.layers[\(t + 1)]"
            if case let .mapping(m) = entry, m["block"] != nil {
                let b = try YAMLSection(file: file, path: path, node: entry)
                let input = try b.node("from") == nil ? nodes.count : resolveTopLevel(try TrainConfig.parseFrom(b)!, section: b, key: "from",
                                                                                       entry: t, entryOutput: entryOutput,
                                                                                       blockOutputs: blockOutputs, blockEntries: blockEntryNames,
                                                                                       single: true)[0]
                guard let name = entryNames[t] else { throw b.fail("block", "expected a block name") }
                let out = try expandBlock(b, blocks: blocks, name: name, input: input)
                entryOutput.append(out)
                blockOutputs[name] = out
                continue
            }
            var node = try TrainConfig.parseLayer(entry, path: path, file: file)
            if let refs = node.from, refs.contains(where: {
                if case let .relative(k) = $0 { return t + k < 0 || entryOutput[t + k] != nodes.count + 1 + k }
                if case let .name(n) = $0 { return blockEntryNames[n] != nil }
                return false
            }) {
                // References across blocks: count expanded layers instead of written entries.
                let b = try YAMLSection(file: file, path: path, node: entry)
                node.from = try resolveTopLevel(refs, section: b, key: "from", entry: t, entryOutput: entryOutput, blockOutputs: blockOutputs,
                                                blockEntries: blockEntryNames, single: false).map { reference(to: $0) }
            }
            nodes.append(node)
            entryOutput.append(nodes.count)
        }
        return nodes
    }

    /// Top-level references that involve blocks, as activations. Plain names of layers stay for
    /// `Model` to resolve; only relative indices and block names are handled here.
    func resolveTopLevel(_ refs: [LayerRef], section: YAMLSection, key: String, entry t: Int, entryOutput: [Int],
                         blockOutputs: [String: Int], blockEntries: [String: Int], single: Bool) throws -> [Int] {
        if single && refs.count != 1 { throw section.fail(key, "a block takes one input") }
        return try refs.map { ref in
            switch ref {
            case .input: return 0
            case let .relative(k):
                if t + k < -1 { throw section.fail(key, "\(k) reaches before the model input (this is entry \(t + 1) of model.layers)") }
                return t + k == -1 ? 0 : entryOutput[t + k]
            case let .name(n):
                if let a = blockOutputs[n] { return a }
                if let at = blockEntries[n] {
                    throw section.fail(key, "'\(n)' is a forward reference to entry \(at + 1); inputs must come from earlier layers")
                }
                // A layer name: find it among the nodes so far.
                if let i = nodes.lastIndex(where: { $0.name == n }) { return i + 1 }
                throw section.fail(key, "'\(n)': no earlier layer or block has that name")
            }
        }
    }

    /// Appends the copies of a block entry; returns the activation of its output.
    mutating func expandBlock(_ b: YAMLSection, blocks: [String: Block], name: String, input: Int) throws -> Int {
        guard let blockName = try b.string("block") else { throw b.fail("block", "expected a block name") }
        guard let block = blocks[blockName] else {
            throw b.fail("block", "unknown block '\(blockName)' (defined: \(blocks.keys.sorted().joined(separator: ", ")))")
        }
        let known = block.defaults.map(\.key)
        try b.checkKnown(["block", "name", "repeat", "first", "from"] + known)
        guard isValidLayerName(name) else { throw b.fail("name", "'\(name)' is not a valid name") }
        let copies = try b.int("repeat") ?? 1
        if copies < 1 || copies > 1000 { throw b.fail("repeat", "must be in 1...1000, got \(copies)") }
        var values: [String: String] = [:]
        for (k, v) in block.defaults { values[k] = v }
        for k in known { if let v = try b.scalar(k) { values[k] = v } }
        var firstValues = values
        if let f = try b.section("first") {
            try f.checkKnown(known)
            for k in known { if let v = try f.scalar(k) { firstValues[k] = v } }
        }
        var blockInput = input
        for r in 0..<copies {
            blockInput = try expandCopy(block, prefix: "\(name).\(r)", values: r == 0 ? firstValues : values, input: blockInput)
        }
        return blockInput
    }

    /// One copy of a block; returns the activation of its output.
    mutating func expandCopy(_ block: Block, prefix: String, values: [String: String], input: Int) throws -> Int {
        var outputs: [Int] = []          // activation of each written layer (or what it passes through)
        var local: [String: Int] = [:]
        var autoCounts: [String: Int] = [:]
        for (j, raw) in block.layers.enumerated() {
            let path = "\(block.path)[\(j + 1)]"
            let node = try substitute(raw, values: values, path: path)
            var included = true
            var section: YAMLSection?
            if case .mapping = node {
                let l = try YAMLSection(file: file, path: path, node: node)
                section = l
                included = try l.bool("if") ?? true
            }
            func resolve(_ refs: [LayerRef], _ key: String) throws -> [Int] {
                try refs.map { ref in
                    switch ref {
                    case .input: return input
                    case let .relative(k):
                        if j + k < -1 {
                            throw section!.fail(key, "\(k) reaches outside the block (layer \(j + 1) of the block; \(-(j + 1)) is the block's input)")
                        }
                        return j + k == -1 ? input : outputs[j + k]
                    case let .name(n):
                        if let a = local[n] { return a }
                        if let i = nodes.lastIndex(where: { $0.name == n }) { return i + 1 }
                        if block.layers.contains(where: { $0.mapping?["name"]?.string == n }) {
                            throw section!.fail(key, "'\(n)' is a forward reference inside the block; inputs must come from earlier layers")
                        }
                        throw section!.fail(key, "'\(n)': no earlier layer of the block (or of the model) has that name")
                    }
                }
            }
            let given = section.flatMap { try? $0.string("name") }
            if !included {
                // Left out: passes its input through.
                let from = try section.flatMap { try TrainConfig.parseFrom($0) }
                let through = try from.map { try resolve($0, "from") } ?? [j == 0 ? input : outputs[j - 1]]
                guard through.count == 1 else { throw section!.fail("if", "a layer with several inputs cannot be left out") }
                outputs.append(through[0])
                if let g = given { local[g] = through[0] }
                continue
            }
            var layer = try TrainConfig.parseLayer(node, path: path, file: file, extraKeys: ["if"])
            let localName: String
            if let g = layer.name { localName = g } else {
                autoCounts[layer.spec.kind, default: 0] += 1
                localName = "\(layer.spec.kind)\(autoCounts[layer.spec.kind]!)"
            }
            if local[localName] != nil, section != nil {
                throw section!.fail("name", "'\(localName)' is used twice in the block")
            }
            let sources = try layer.from.map { try resolve($0, "from") } ?? [j == 0 ? input : outputs[j - 1]]
            layer.name = "\(prefix).\(localName)"
            layer.from = sources == [nodes.count] ? nil : sources.map { reference(to: $0) }
            nodes.append(layer)
            if nodes.count > Self.maxLayers {
                throw ConfigError("\(location(raw)): \(path): the model would have more than \(Self.maxLayers) layers")
            }
            outputs.append(nodes.count)
            local[localName] = nodes.count
        }
        return outputs.last!
    }

    /// The node with every scalar `$name` replaced by the parameter's value (the line stays).
    func substitute(_ node: Node, values: [String: String], path: String) throws -> Node {
        switch node {
        case let .scalar(s):
            guard s.string.hasPrefix("$") else { return node }
            let key = String(s.string.dropFirst())
            guard let v = values[key] else {
                throw ConfigError("\(location(node)): \(path): unknown parameter '\(s.string)' (the block's params: \(values.keys.sorted().joined(separator: ", ")))")
            }
            return .scalar(Node.Scalar(v, .implicit, .plain, s.mark))
        case let .mapping(m):
            return .mapping(Node.Mapping(try m.map { (try substitute($0.key, values: values, path: path), try substitute($0.value, values: values, path: path)) },
                                         m.tag, m.style, m.mark))
        case let .sequence(seq):
            return .sequence(Node.Sequence(try seq.map { try substitute($0, values: values, path: path) }, seq.tag, seq.style, seq.mark))
        }
    }
}
