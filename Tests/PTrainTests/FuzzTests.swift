// Deterministic fuzzing of the trainer's readers: safetensors (Safetensors.decode), checkpoint manifests
// (Checkpoint.readManifest on a temporary folder) and configs (TrainConfig.parse). A seeded generator
// mutates valid inputs (bit flips, truncations, inserted and deleted bytes, header and JSON field
// edits, YAML line and value edits); every reader must succeed with a consistent result or throw an
// error whose message is one non-empty line naming the input. Never a crash.
//
// Budget: a few thousand inputs, a few seconds in release. PTRAIN_FUZZ_ITERATIONS=N sets the
// iterations of each target, PTRAIN_FUZZ_SEED=S the seed; see docs/FUZZING.md for long campaigns.
import Foundation
import PTrain
import XCTest

/// SplitMix64: small, seedable, the same sequence everywhere.
struct FuzzRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func byte() -> UInt8 { UInt8(truncatingIfNeeded: next()) }
    mutating func pick<T>(_ items: [T]) -> T { items[below(items.count)] }
}

enum FuzzBudget {
    static let environment = ProcessInfo.processInfo.environment
    static func iterations(_ ci: Int) -> Int { environment["PTRAIN_FUZZ_ITERATIONS"].flatMap { Int($0) } ?? ci }
    static let seed: UInt64 = environment["PTRAIN_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5EED_F022
}

/// IEEE CRC-32 (zlib's crc32), for writing checkpoint manifests by hand.
func crc32(_ bytes: [UInt8]) -> UInt32 {
    var table = [UInt32](repeating: 0, count: 256)
    for i in 0..<256 {
        var c = UInt32(i)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        table[i] = c
    }
    var crc: UInt32 = 0xFFFF_FFFF
    for b in bytes { crc = table[Int((crc ^ UInt32(b)) & 255)] ^ (crc >> 8) }
    return crc ^ 0xFFFF_FFFF
}

enum Mutator {
    /// Byte-level mutations; `fields` are offsets of little-endian 4-byte size fields.
    static func bytes(_ input: [UInt8], _ rng: inout FuzzRandom, fields: [Int] = []) -> [UInt8] {
        var b = input
        let interesting: [UInt32] = [0, 1, 2, 7, 8, 255, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF]
        for _ in 0...rng.below(3) {
            switch rng.below(8) {
            case 0 where !b.isEmpty: b[rng.below(b.count)] ^= 1 << UInt8(rng.below(8))
            case 1 where !b.isEmpty: b[rng.below(b.count)] = rng.byte()
            case 2: b = Array(b.prefix(rng.below(b.count + 1)))
            case 3: b.insert(contentsOf: (0..<(1 + rng.below(8))).map { _ in rng.byte() }, at: rng.below(b.count + 1))
            case 4 where !b.isEmpty:
                let at = rng.below(b.count)
                b.removeSubrange(at..<min(b.count, at + 1 + rng.below(16)))
            case 5, 6:
                guard !fields.isEmpty else { continue }
                let f = rng.pick(fields)
                guard f + 4 <= b.count else { continue }
                let v = rng.pick(interesting)
                for k in 0..<4 { b[f + k] = UInt8(truncatingIfNeeded: v >> (8 * UInt32(k))) }
            default: b += (0..<(1 + rng.below(8))).map { _ in rng.byte() }
            }
        }
        return b
    }

    static let numbers = ["-1", "0", "1", "-0", "1.5", "1e308", "-1e308", "1e-320", "99999999999999999999", "9223372036854775807",
                          "-9223372036854775808", "4294967296", "NaN", "null", "true", "\"7\"", "[]", "{}", "[1,2]", "1e3"]
    static let strings = ["", "x", "../manifest.json", "model.safetensors", "a\\nb", "\\u0000", "F16", "F32", "__metadata__",
                          "conv1.weight", "ptrain-checkpoint", "\\ud800"]

    /// Edits of JSON text: numbers, strings and structure.
    static func json(_ text: [UInt8], _ rng: inout FuzzRandom) -> [UInt8] {
        var b = text
        for _ in 0...rng.below(2) {
            switch rng.below(5) {
            case 0, 1:  // replace a number
                let digits = b.indices.filter { (48...57).contains(b[$0]) && ($0 == 0 || !(48...57).contains(b[$0 - 1])) }
                guard let start = digits.isEmpty ? nil : rng.pick(digits) else { continue }
                var end = start
                while end < b.count, (48...57).contains(b[end]) || b[end] == UInt8(ascii: ".") || b[end] == UInt8(ascii: "e") { end += 1 }
                let from = start > 0 && b[start - 1] == UInt8(ascii: "-") ? start - 1 : start
                b.replaceSubrange(from..<end, with: Array(rng.pick(numbers).utf8))
            case 2:  // replace the contents of a string
                let quotes = b.indices.filter { b[$0] == UInt8(ascii: "\"") }
                guard quotes.count >= 2 else { continue }
                let q = rng.below(quotes.count / 2) * 2
                b.replaceSubrange((quotes[q] + 1)..<quotes[q + 1], with: Array(rng.pick(strings).utf8))
            case 3:  // delete or duplicate a structural character
                let marks = b.indices.filter { "{}[],:\"".utf8.contains(b[$0]) }
                guard let i = marks.isEmpty ? nil : rng.pick(marks) else { continue }
                if rng.chance(50) { b.remove(at: i) } else { b.insert(b[i], at: i) }
            default:
                b = bytes(b, &rng)
            }
        }
        return b
    }

    static let values = [".nan", ".NaN", ".inf", "-.inf", "+.inf", "nan", "inf", "-1", "0", "1", "-0", "0x10", "0o7", "1_000",
                         "1e300", "-1e300", "1e-300", "2.5", "99999999999999999999", "9223372036854775807", "-9223372036854775808",
                         "~", "null", "''", "\"\"", "[]", "{}", "[1, 2]", "{a: 1}", "true", "yes", "off", "&a 3", "*a", "!!int 3",
                         "!!str 4", "'quoted'", "\"tab\\there\"", "|\n  block\n  scalar", ">\n  folded", "conv", "relu", "dense",
                         "keep", "drop", "he", "glorot", "cosine", "step", "sgd", "idx", "xo", "mnist", "- 1", "a: b"]
    static let keys = ["name", "data", "model", "layers", "input", "optimizer", "schedule", "training", "type", "features",
                       "size", "stride", "padding", "window", "edge", "neurons", "init", "lr", "momentum", "epochs",
                       "batch_size", "shards", "seed", "source", "path", "mean", "std", "channels", "height", "width",
                       "length", "warmup_epochs", "gamma", "min_lr", "step_epochs", "bogus", "<<", "? x"]

    /// Edits of YAML text: lines, values, keys and punctuation.
    static func yaml(_ text: String, _ rng: inout FuzzRandom) -> String {
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for _ in 0...rng.below(3) {
            guard !lines.isEmpty else { lines = [""]; continue }
            let i = rng.below(lines.count)
            switch rng.below(10) {
            case 0: lines.remove(at: i)
            case 1: lines.insert(lines[i], at: i)
            case 2: lines.swapAt(i, rng.below(lines.count))
            case 3: lines[i] = rng.chance(50) ? "  " + lines[i] : String(lines[i].drop { $0 == " " }.prefix(1000))
            case 4, 5:  // replace a value after "key:" (block or flow style)
                let line = lines[i]
                let colons = line.indices.filter { line[$0] == ":" }
                guard let colon = colons.isEmpty ? nil : rng.pick(colons) else { continue }
                let after = line[line.index(after: colon)...]
                let stop = after.firstIndex { $0 == "," || $0 == "}" } ?? line.endIndex
                lines[i] = String(line[...colon]) + " " + rng.pick(values) + String(line[stop...])
            case 6:  // insert a key line
                let indent = String(repeating: " ", count: 2 * rng.below(3))
                lines.insert("\(indent)\(rng.pick(keys)): \(rng.pick(values))", at: i)
            case 7:  // rename a key
                let line = lines[i]
                guard let colon = line.firstIndex(of: ":") else { continue }
                let start = line.firstIndex { $0 != " " && $0 != "-" && $0 != "{" } ?? line.startIndex
                guard start < colon else { continue }
                lines[i] = String(line[..<start]) + rng.pick(keys) + String(line[colon...])
            case 8:  // punctuation
                var chars = Array(lines[i])
                let marks: [Character] = [":", "{", "}", "[", "]", ",", "-", "#", "&", "*", "!", "|", ">", "'", "\"", " ", "\t", "%", "@", "`"]
                if !chars.isEmpty && rng.chance(50) { chars.remove(at: rng.below(chars.count)) } else {
                    chars.insert(rng.pick(marks), at: rng.below(chars.count + 1))
                }
                lines[i] = String(chars)
            default:
                lines[i] = String(decoding: bytes(Array(lines[i].utf8), &rng), as: UTF8.self)
            }
        }
        return lines.joined(separator: "\n")
    }
}

final class FuzzTests: XCTestCase {
    /// Known, reported problems outside this test's files that the fuzzer still finds. Each entry
    /// is reported as a note instead of a failure; remove it once the fix lands (see docs/FUZZING.md).
    /// - Config.swift quotes scalar values and keys as they are, so a value or key holding a line
    ///   break (a YAML block scalar, "\n" in a double-quoted key) gives a multi-line error.
    static let knownMultiLineConfigErrors = false
    /// - ResolvedConfig.swift writes data.size/train/test only for source xo (length only for fsdd,
    ///   z_normalize only for ucr) and quotes the name in single quotes, where a line break folds
    ///   into a space: config.yaml then reads back as a slightly different config.
    static let knownRoundTripProblems = false

    func isOneLine(_ message: String) -> Bool { !message.isEmpty && !message.contains("\n") && !message.contains("\r") }

    /// One tensor set as (name, shape, values), encoded with `Safetensors.encode`.
    func encode(_ tensors: [(String, [Int])], metadata: [String: String] = [:]) -> [UInt8] {
        let storage = tensors.map { (_, shape) in (0..<shape.reduce(1, *)).map { Float($0) * 0.5 - 1 } }
        var pointers: [UnsafeMutablePointer<Float>] = []
        defer { pointers.forEach { $0.deallocate() } }
        var list: [(name: String, shape: [Int], data: UnsafePointer<Float>)] = []
        for (i, t) in tensors.enumerated() {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(1, storage[i].count))
            storage[i].withUnsafeBufferPointer { if let base = $0.baseAddress { p.update(from: base, count: storage[i].count) } }
            pointers.append(p)
            list.append((name: t.0, shape: t.1, data: UnsafePointer(p)))
        }
        return Safetensors.encode(list, metadata: metadata)
    }

    func testFuzzSafetensorsDecode() throws {
        var rng = FuzzRandom(seed: FuzzBudget.seed ^ 0x5AFE)
        let seeds = [encode([("conv1.weight", [2, 1, 3, 3]), ("conv1.bias", [2]), ("dense1.weight", [3, 4])], metadata: ["format": "pt"]),
                     encode([("a", [1])]),
                     encode([("x", [0]), ("y", [2, 2])], metadata: ["optimizer": "sgd", "k": "v"])]
        for seed in seeds { XCTAssertNoThrow(try Safetensors.decode(seed, file: "seed.safetensors")) }
        var stats = (ok: 0, rejected: 0)
        let start = Date()
        for _ in 0..<FuzzBudget.iterations(3000) {
            var input = rng.pick(seeds)
            let headerLength = Int(input[0]) | Int(input[1]) << 8
            switch rng.below(3) {
            case 0:  // JSON edits inside the header, keeping the length field right
                let header = Array(input[8..<(8 + headerLength)])
                let edited = Mutator.json(header, &rng)
                var length = UInt64(edited.count).littleEndian
                input = withUnsafeBytes(of: &length) { Array($0) } + edited + input[(8 + headerLength)...]
            case 1:  // JSON edits without fixing the length field
                let header = Array(input[8..<(8 + headerLength)])
                input = Array(input[..<8]) + Mutator.json(header, &rng) + input[(8 + headerLength)...]
            default:
                input = Mutator.bytes(input, &rng, fields: [0, 4])
            }
            do {
                let (tensors, _) = try Safetensors.decode(input, file: "fuzz.safetensors")
                stats.ok += 1
                for t in tensors {
                    XCTAssertTrue(t.shape.allSatisfy { $0 >= 0 }, "\(t.shape)")
                    XCTAssertEqual(t.values.count, t.shape.reduce(1, *))
                }
            } catch {
                stats.rejected += 1
                let m = "\(error)"
                XCTAssertTrue(isOneLine(m) && m.hasPrefix("fuzz.safetensors: "), "bad error message: \(m)")
            }
        }
        print("fuzz safetensors: \(stats.ok) accepted, \(stats.rejected) rejected, \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        XCTAssertGreaterThan(stats.rejected, 0)
    }

    /// A checkpoint folder written by hand in the format `Checkpoint.save` writes.
    func manifestText(config: String, weights: [UInt8], optimizer: [UInt8]) -> [UInt8] {
        let escapedConfig = String(decoding: try! JSONSerialization.data(withJSONObject: [config]), as: UTF8.self).dropFirst().dropLast()
        let record = "{\"epoch\":1,\"trainLoss\":0.5,\"trainAccuracy\":0.75,\"testLoss\":0.25,\"testAccuracy\":1,\"imagesPerSecond\":1000,\"seconds\":0.5}"
        let text = """
            {
              "config" : \(escapedConfig),
              "files" : {
                "model.safetensors" : {"bytes" : \(weights.count), "crc32" : \(crc32(weights))},
                "optimizer.safetensors" : {"bytes" : \(optimizer.count), "crc32" : \(crc32(optimizer))}
              },
              "format" : "ptrain-checkpoint",
              "progress" : {"epoch" : 1, "epochCorrect" : 3, "epochLoss" : 1.5, "globalStep" : 18, "records" : [\(record)],
                            "stepInEpoch" : 3, "trainingNanoseconds" : 1000},
              "rng" : {"generator" : "xoshiro256** seeded by splitmix64(seed ^ stream)", "seed" : 1, "shuffleStream" : "epochPermutation(seed, epoch)"},
              "version" : 1
            }
            """
        return Array(text.utf8)
    }

    func testFuzzCheckpointManifest() throws {
        let folder = TestSupport.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: folder) }
        var rng = FuzzRandom(seed: FuzzBudget.seed ^ 0xC4EC)
        let config = try TrainConfig.parse(yaml: defaultConfigYAML, file: "default").yaml
        let weights = encode([("conv1.weight", [2, 1, 3, 3]), ("conv1.bias", [2])], metadata: ["format": "pt"])
        let optimizer = encode([("conv1.weight.momentum_buffer", [2, 1, 3, 3]), ("conv1.bias.momentum_buffer", [2])])
        let manifest = manifestText(config: config, weights: weights, optimizer: optimizer)
        func put(_ bytes: [UInt8], _ name: String) throws { try Data(bytes).write(to: folder.appendingPathComponent(name)) }
        try put(weights, "model.safetensors")
        try put(optimizer, "optimizer.safetensors")
        try put(manifest, "manifest.json")
        let good = try Checkpoint.readManifest(folder.path)   // the template matches what ptrain writes
        XCTAssertEqual(good.progress.globalStep, 18)
        XCTAssertNoThrow(try Checkpoint.config(of: good, folder: folder.path))

        var stats = (ok: 0, rejected: 0)
        let start = Date()
        for _ in 0..<FuzzBudget.iterations(1500) {
            let mutated = rng.chance(70) ? Mutator.json(manifest, &rng) : Mutator.bytes(manifest, &rng)
            try put(mutated, "manifest.json")
            let dataMutated = rng.chance(15)
            if dataMutated { try put(Mutator.bytes(weights, &rng, fields: [0]), "model.safetensors") }
            do {
                let m = try Checkpoint.readManifest(folder.path)
                stats.ok += 1
                XCTAssertTrue(m.progress.epoch >= 0 && m.progress.stepInEpoch >= 0 && m.progress.records.count == m.progress.epoch)
                do { _ = try Checkpoint.config(of: m, folder: folder.path) } catch {
                    let text = "\(error)"
                    if !isOneLine(text) && Self.knownMultiLineConfigErrors { print("fuzz manifest: known multi-line config error: \(text.debugDescription)") }
                    else { XCTAssertTrue(isOneLine(text) && text.contains("manifest.json"), "bad error message: \(text)") }
                }
            } catch {
                stats.rejected += 1
                let m = "\(error)"
                XCTAssertTrue(isOneLine(m) && m.hasPrefix(folder.path), "bad error message: \(m)")
            }
            if dataMutated { try put(weights, "model.safetensors") }
        }
        print("fuzz manifest: \(stats.ok) accepted, \(stats.rejected) rejected, \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        XCTAssertGreaterThan(stats.rejected, 0)
    }

    func testFuzzConfigParse() throws {
        var rng = FuzzRandom(seed: FuzzBudget.seed ^ 0xC0F1)
        let configs = TestSupport.repositoryRoot.appendingPathComponent("configs")
        var seeds = [defaultConfigYAML]
        for name in try FileManager.default.contentsOfDirectory(atPath: configs.path).sorted() where name.hasSuffix(".yaml") {
            seeds.append(try String(contentsOf: configs.appendingPathComponent(name), encoding: .utf8))
        }
        seeds.append(try TrainConfig.parse(yaml: defaultConfigYAML, file: "default").yaml)
        var stats = (ok: 0, rejected: 0, knownMultiLine: 0, roundTrip: 0)
        let start = Date()
        for _ in 0..<FuzzBudget.iterations(3000) {
            let text = Mutator.yaml(rng.pick(seeds), &rng)
            do {
                let config = try TrainConfig.parse(yaml: text, file: "fuzz.yaml")
                stats.ok += 1
                XCTAssertNoThrow(try config.validate(file: "fuzz.yaml"), text)
                XCTAssertFalse(config.layers.isEmpty)
                // The resolved YAML (config.yaml, checkpoint manifests) reads back to the same config.
                do {
                    let again = try TrainConfig.parse(yaml: config.yaml, file: "resolved")
                    if again != config {
                        let differences = zip(Mirror(reflecting: config).children, Mirror(reflecting: again).children)
                            .filter { "\($0.0.value)" != "\($0.1.value)" }
                            .map { "\($0.0.label ?? "?"): \($0.0.value) became \($0.1.value)" }.joined(separator: "; ")
                        stats.roundTrip += 1
                        let note = "resolved YAML reads back differently (\(differences)) for \(text.debugDescription)"
                        if Self.knownRoundTripProblems { if stats.roundTrip <= 3 { print("fuzz config: known: \(note)") } } else { XCTFail(note) }
                    }
                } catch {
                    XCTFail("resolved YAML does not parse: \(error) for \(text.debugDescription)")
                }
            } catch let error as ConfigError {
                stats.rejected += 1
                let m = error.message
                if !isOneLine(m) && Self.knownMultiLineConfigErrors && m.hasPrefix("fuzz.yaml") {
                    stats.knownMultiLine += 1
                    continue
                }
                XCTAssertTrue(isOneLine(m) && m.hasPrefix("fuzz.yaml"), "bad error message \(m.debugDescription) for \(text.debugDescription)")
            } catch {
                XCTFail("unexpected error type \(type(of: error)): \(error) for \(text.debugDescription)")
            }
        }
        print("fuzz config: \(stats.ok) accepted, \(stats.rejected) rejected (\(stats.knownMultiLine) known multi-line messages), \(stats.roundTrip) known round-trip differences, "
              + "\(String(format: "%.2f", Date().timeIntervalSince(start))) s")
        XCTAssertGreaterThan(stats.rejected, 0)
    }
}
