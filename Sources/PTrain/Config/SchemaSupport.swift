// The machinery behind the config schema (ConfigSchema.swift): a key's value types, what a value
// may be, and one key as a row that reads, checks, writes and documents itself.
import Foundation
import PTData
import PTKernels
import PTModel
import Yams

// MARK: - Allowed values

/// What a number may be: the text of the key table's "allowed" column, and the check that gives the
/// error message ("must be in 1...64") when a value is outside.
struct Allowed: Sendable {
    /// For the key table, e.g. `1...1000000`, `> 0`, `[0, 1)`.
    let doc: String
    /// nil when `x` is allowed, else why not ("must be in 1...64").
    let failure: @Sendable (Double) -> String?

    init(doc: String, failure: @escaping @Sendable (Double) -> String?) {
        self.doc = doc
        self.failure = failure
    }

    /// An integer in `range`: "must be in LO...HI" (with `unit` in parentheses).
    static func range(_ range: ClosedRange<Int>, unit: String? = nil) -> Allowed {
        let text = "\(range.lowerBound)...\(range.upperBound)"
        return Allowed(doc: text) { x in
            x >= Double(range.lowerBound) && x <= Double(range.upperBound) ? nil : "must be in \(text)\(unit.map { " (\($0))" } ?? "")"
        }
    }

    /// An integer of at least `low` (and at most `high`), with one message for each side.
    static func atLeast(_ low: Int, atMost high: Int? = nil) -> Allowed {
        Allowed(doc: high.map { "\(low)...\($0)" } ?? ">= \(low)") { x in
            if x < Double(low) { return "must be at least \(low)" }
            if let high, x > Double(high) { return "must be at most \(high)" }
            return nil
        }
    }

    /// An integer of at least 0 (and at most `high`), with one message for each side.
    static func zeroOrMore(atMost high: Int) -> Allowed {
        Allowed(doc: "0...\(high)") { x in
            if x < 0 { return "must be >= 0" }
            return x > Double(high) ? "must be at most \(high)" : nil
        }
    }

    /// A number greater than `low`.
    static func above(_ low: Double) -> Allowed {
        Allowed(doc: "> \(plain(low))") { $0 > low ? nil : "must be a number > \(plain(low))" }
    }

    /// A finite number greater than 0.
    static let positive = Allowed(doc: "> 0") { $0.isFinite && $0 > 0 ? nil : "must be a finite number > 0" }
    /// A finite number of at least 0.
    static let nonNegative = Allowed(doc: ">= 0") { $0.isFinite && $0 >= 0 ? nil : "must be a finite number >= 0" }
    /// Any finite number.
    static let finite = Allowed(doc: "finite") { $0.isFinite ? nil : "must be a finite number" }
    /// At least 0 (a finite number: the reader takes no other).
    static let notNegative = Allowed(doc: ">= 0") { $0.isFinite && $0 >= 0 ? nil : "must be >= 0" }

    /// A number in [low, high).
    static func halfOpen(_ low: Double, _ high: Double) -> Allowed {
        let text = "[\(plain(low)), \(plain(high)))"
        return Allowed(doc: text) { $0 >= low && $0 < high ? nil : "must be in \(text)" }
    }

    /// A number in [low, high].
    static func closed(_ low: Double, _ high: Double) -> Allowed {
        let text = "[\(plain(low)), \(plain(high))]"
        return Allowed(doc: text) { $0 >= low && $0 <= high ? nil : "must be in \(text)" }
    }

    /// 0 rather than 0.0 in messages and docs.
    static func plain(_ x: Double) -> String { x == x.rounded() && abs(x) < 1e15 ? String(Int(x)) : String(x) }
}

// MARK: - Value types

/// A type a config key can hold: how YAML text becomes a value (errors naming the key) and back.
protocol ConfigValue: Equatable {
    /// For the key table's "type" column.
    static var typeDoc: String { get }
    /// The value of `key` in `section`, nil when the key is absent.
    static func read(_ section: YAMLSection, _ key: String) throws -> Self?
    /// The value as YAML; nil leaves the key out of the written config.
    var yamlText: String? { get }
    /// The value as a number, for `Allowed` checks (nil: not a number).
    var number: Double? { get }
    /// The value in an error message ("got 0.5").
    var messageText: String { get }
}

extension ConfigValue {
    var number: Double? { nil }
    var messageText: String { "\(self)" }
}

extension Int: ConfigValue {
    static var typeDoc: String { "integer" }
    static func read(_ section: YAMLSection, _ key: String) throws -> Int? { try section.int(key) }
    var yamlText: String? { String(self) }
    var number: Double? { Double(self) }
}

extension UInt64: ConfigValue {
    static var typeDoc: String { "integer" }
    static func read(_ section: YAMLSection, _ key: String) throws -> UInt64? {
        guard let v = try section.int(key) else { return nil }
        guard v >= 0 else { throw section.fail(key, "must be >= 0, got \(v)") }
        return UInt64(v)
    }
    var yamlText: String? { String(self) }
    var number: Double? { Double(self) }
}

extension Float: ConfigValue {
    static var typeDoc: String { "number" }
    static func read(_ section: YAMLSection, _ key: String) throws -> Float? { try section.float(key) }
    var yamlText: String? { "\(self)" }
    var number: Double? { Double(self) }
}

extension Double: ConfigValue {
    static var typeDoc: String { "number" }
    static func read(_ section: YAMLSection, _ key: String) throws -> Double? { try section.double(key) }
    var yamlText: String? { "\(self)" }
    var number: Double? { self }
}

extension Bool: ConfigValue {
    static var typeDoc: String { "true/false" }
    static func read(_ section: YAMLSection, _ key: String) throws -> Bool? { try section.bool(key) }
    var yamlText: String? { "\(self)" }
}

extension String: ConfigValue {
    static var typeDoc: String { "text" }
    static func read(_ section: YAMLSection, _ key: String) throws -> String? { try section.string(key) }
    var yamlText: String? { yamlQuoted(self) }
}

extension Optional: ConfigValue where Wrapped: ConfigValue {
    static var typeDoc: String { Wrapped.typeDoc }
    static func read(_ section: YAMLSection, _ key: String) throws -> Wrapped?? {
        try Wrapped.read(section, key).map { .some($0) }
    }
    var yamlText: String? { self?.yamlText }
    var number: Double? { self?.number }
    var messageText: String { self?.messageText ?? "none" }
}

/// A key whose value is one of a few words (an enum with string raw values).
protocol ConfigChoice: ConfigValue, RawRepresentable<String>, CaseIterable {
    /// What the value names, for "unknown NOUN 'x'" (e.g. "optimizer").
    static var noun: String { get }
    /// Other words accepted for a value (e.g. "mnist" for idx).
    static var aliases: [String: Self] { get }
    /// The error for a word that is no value: "unknown NOUN 'x' (known: ...)".
    static func unknown(_ word: String) -> String
}

extension ConfigChoice {
    static var aliases: [String: Self] { [:] }
    static var typeDoc: String { "choice" }
    static func unknown(_ word: String) -> String { "unknown \(noun) '\(word)' (known: \(known))" }
    /// The values, each with its aliases: ["xo", "idx (or mnist)", "cifar10"].
    static var words: [String] {
        allCases.map { value in
            let others = aliases.filter { $0.value == value }.map(\.key).sorted()
            return others.isEmpty ? value.rawValue : "\(value.rawValue) (or \(others.joined(separator: ", ")))"
        }
    }
    /// The values as one list: "xo, idx (or mnist), cifar10".
    static var known: String { words.joined(separator: ", ") }
    static func read(_ section: YAMLSection, _ key: String) throws -> Self? {
        guard let s = try section.string(key) else { return nil }
        guard let value = Self(rawValue: s) ?? aliases[s] else { throw section.fail(key, unknown(s)) }
        return value
    }
    var yamlText: String? { rawValue }
}

extension DataConfig.Source: ConfigChoice {
    static var noun: String { "data source" }
    static var aliases: [String: Self] { ["mnist": .idx] }
}
extension ImageFolder.Order: ConfigChoice { static var noun: String { "image order" } }
extension TrainConfig.OptimizerKind: ConfigChoice { static var noun: String { "optimizer" } }
extension LRSchedule.Kind: ConfigChoice { static var noun: String { "schedule" } }
extension TrainConfig.ExchangeKind: ConfigChoice { static var noun: String { "exchange" } }
extension Initializer: ConfigChoice { static var noun: String { "initialiser" } }
extension Precision: ConfigChoice { static var noun: String { "precision" } }

// MARK: - Keys and sections

/// One key of the schema: its documentation, and how it is read (with its check), checked again
/// after command-line overrides, and written back.
struct ConfigKey: @unchecked Sendable {
    /// When a key is written into the resolved YAML.
    enum Written {
        case always
        /// Only when it differs from the default (keys added late, so older configs read the same).
        case unlessDefault
        case when(@Sendable (TrainConfig) -> Bool)
    }

    let name: String
    let type: String
    /// The default as the key table shows it.
    let defaultText: String
    /// The allowed values as the key table shows them ("" when any value of the type goes).
    let allowedText: String
    /// A choice key's words (with their aliases, "idx (or mnist)"); empty for other keys.
    var choices: [String] = []
    let doc: String
    /// Reads the key from its section into the config (absent: leaves the default).
    let read: (YAMLSection, inout TrainConfig) throws -> Void
    /// The value as YAML (nil: not written).
    let yaml: (TrainConfig) -> String?
    /// Why the config's value is not allowed ("must be in 1...64, got 0"), or nil.
    let check: (TrainConfig) -> String?

    /// A key stored at `path` of `TrainConfig`.
    static func value<V: ConfigValue>(_ name: String, _ path: WritableKeyPath<TrainConfig, V>, _ allowed: Allowed? = nil,
                                      written: Written = .always, doc: String) -> ConfigKey {
        let defaultValue = TrainConfig()[keyPath: path]
        func failure(_ v: V) -> String? {
            guard let allowed, let x = v.number, let why = allowed.failure(x) else { return nil }
            return "\(why), got \(v.messageText)"
        }
        let choices = (V.self as? any ConfigChoice.Type).map { $0.words } ?? []
        return ConfigKey(
            name: name, type: V.typeDoc, defaultText: defaultValue.yamlText ?? "none",
            allowedText: allowed?.doc ?? choices.joined(separator: ", "), choices: choices,
            doc: doc,
            read: { section, config in
                guard let v = try V.read(section, name) else { return }
                if let why = failure(v) { throw section.fail(name, why) }
                config[keyPath: path] = v
            },
            yaml: { config in
                let v = config[keyPath: path]
                switch written {
                case .always: break
                case .unlessDefault: if v == defaultValue { return nil }
                case let .when(condition): if !condition(config) { return nil }
                }
                return v.yamlText
            },
            check: { failure($0[keyPath: path]) })
    }
}

/// One section of the config (`data`, `optimizer`, ...): a table of keys.
struct ConfigSection: @unchecked Sendable {
    let name: String
    let doc: String
    let keys: [ConfigKey]
    /// Whether the section is written into the resolved YAML.
    let written: (TrainConfig) -> Bool
    /// The error when the section is missing (nil: optional).
    let missing: String?

    init(_ name: String, doc: String, written: @escaping (TrainConfig) -> Bool = { _ in true }, missing: String? = nil,
         keys: [ConfigKey]) {
        self.name = name; self.doc = doc; self.keys = keys; self.written = written; self.missing = missing
    }

    /// Reads the section's keys in table order, after refusing keys it does not have.
    func read(_ section: YAMLSection, into config: inout TrainConfig) throws {
        try section.checkKnown(keys.map(\.name))
        for key in keys { try key.read(section, &config) }
    }
}

// MARK: - Reading YAML

/// Walks a YAML mapping, remembering which keys were read so that the rest can be reported as unknown.
struct YAMLSection {
    let file: String
    let path: String
    let pairs: [(key: String, value: Node)]

    init(file: String, path: String, node: Node) throws {
        self.file = file
        self.path = path
        guard case let .mapping(mapping) = node else {
            throw ConfigError("\(Self.location(file, node)): \(path.isEmpty ? "the file" : path): expected a mapping of keys")
        }
        var pairs: [(String, Node)] = []
        for (k, v) in mapping {
            guard let key = k.string else { throw ConfigError("\(Self.location(file, k)): \(path): keys must be strings") }
            if pairs.contains(where: { $0.0 == key }) { throw ConfigError("\(Self.location(file, k)): \(path.isEmpty ? key : path + "." + key): duplicate key") }
            pairs.append((key, v))
        }
        self.pairs = pairs
    }

    static func location(_ file: String, _ node: Node) -> String {
        if let line = node.mark?.line { return "\(file):\(line)" }
        return file
    }

    func dotted(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    func node(_ key: String) -> Node? { pairs.first { $0.key == key }?.value }

    func checkKnown(_ known: [String]) throws {
        for (key, value) in pairs where !known.contains(key) {
            throw ConfigError("\(Self.location(file, value)): unknown key '\(dotted(key))' (known here: \(known.joined(separator: ", ")))")
        }
    }

    func fail(_ key: String, _ why: String) -> ConfigError {
        let where_ = node(key).map { Self.location(file, $0) } ?? file
        return ConfigError("\(where_): \(dotted(key)): \(why)")
    }

    func scalar(_ key: String) throws -> String? {
        guard let n = node(key) else { return nil }
        guard case let .scalar(s) = n else { throw fail(key, "expected a single value") }
        return s.string
    }

    func int(_ key: String) throws -> Int? {
        guard let s = try scalar(key) else { return nil }
        guard let v = Int(s) else { throw fail(key, "expected an integer, got '\(s)'") }
        return v
    }

    func double(_ key: String) throws -> Double? {
        guard let s = try scalar(key) else { return nil }
        let lowered = s.lowercased()
        if [".nan", "nan", ".inf", "-.inf", "+.inf", "inf", "-inf"].contains(lowered) {
            throw fail(key, "must be a finite number, got '\(s)'")
        }
        guard let v = Double(s), v.isFinite else { throw fail(key, "expected a number, got '\(s)'") }
        return v
    }

    func float(_ key: String) throws -> Float? {
        guard let d = try double(key) else { return nil }
        guard Float(d).isFinite else { throw fail(key, "must be a finite number, got \(d) (too large)") }
        return Float(d)
    }

    func bool(_ key: String) throws -> Bool? {
        guard let s = try scalar(key) else { return nil }
        switch s.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: throw fail(key, "expected true or false, got '\(s)'")
        }
    }

    func string(_ key: String) throws -> String? { try scalar(key) }

    func section(_ key: String) throws -> YAMLSection? {
        guard let n = node(key) else { return nil }
        return try YAMLSection(file: file, path: dotted(key), node: n)
    }
}
