// UCR/UEA time-series classification files in the sktime/aeon .ts text format, and Name_TRAIN/TEST folders.
import PTTensor

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One .ts file. Format: `#` comment lines, `@key value` header lines (`@classLabel true a b c` gives the
/// labels in class order), `@data`, then one case per line: comma-separated values for each channel,
/// channels separated by `:`, the class label after the last `:`. "?" (and NaN) mean missing.
public enum UCRFile {
    /// The parsed cases of a .ts file, before padding.
    struct Parsed {
        var channels = 0
        var labels: [String] = []          // per case
        var series: [[[Float]]] = []       // case, channel, time
        var classLabels: [String]? = nil   // from @classLabel
        var longest: Int { series.reduce(0) { max($0, $1.reduce(0) { max($0, $1.count) }) } }
    }

    /// Loads the file at `path` as a data set of shape channels x 1 x length. Labels map to classes in the
    /// order of `classLabels` (default: the file's @classLabel list, else the distinct labels sorted).
    /// `length` nil means the longest series; shorter series are zero-padded at the end, longer ones cut.
    /// Missing values become 0. Values stay as read (`Preprocessing` applies the config's
    /// `z_normalize`, over the padded length).
    public static func load(path: String, classLabels: [String]? = nil, length: Int? = nil) throws -> Dataset {
        let parsed = try parse(path: path)
        let labels = classLabels ?? parsed.classLabels ?? defaultLabels(parsed.labels)
        return try build(parsed, path: path, classLabels: labels, length: length ?? parsed.longest)
    }

    /// The distinct labels, sorted numerically when all are numbers, else as strings.
    static func defaultLabels(_ labels: [String]) -> [String] {
        let distinct = Array(Set(labels))
        if distinct.allSatisfy({ Double($0) != nil }) {
            return distinct.sorted { (Double($0) ?? 0, $0) < (Double($1) ?? 0, $1) }
        }
        return distinct.sorted()
    }

    static func parse(path: String) throws -> Parsed {
        let bytes = try FileIO.readMaybeGzip(path)
        var result = Parsed()
        var inData = false
        var hasClassLabel = true
        var lineNumber = 0
        var lineStart = 0
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != 0x0A { lineEnd += 1 }
            lineNumber += 1
            defer { lineStart = lineEnd + 1 }
            if inData {
                // Data lines are parsed from the bytes (no String per line): most of the file is here.
                var begin = lineStart, end = lineEnd
                while begin < end && isSpace(bytes[begin]) { begin += 1 }
                while end > begin && isSpace(bytes[end - 1]) { end -= 1 }
                if begin == end || bytes[begin] == UInt8(ascii: "#") { continue }
                guard hasClassLabel else {
                    throw DataError("\(path): no class labels (@classLabel false); cannot make a classification set")
                }
                try parseCase(bytes, begin, end, into: &result, where: "\(path):\(lineNumber)")
                continue
            }
            let line = String(decoding: bytes[lineStart..<lineEnd], as: UTF8.self).trimmingSpaces()
            if line.isEmpty || line.hasPrefix("#") { continue }
            guard line.hasPrefix("@") else {
                throw DataError("\(path):\(lineNumber): expected a @header line before @data")
            }
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            switch words[0].lowercased() {
            case "@data":
                inData = true
            case "@classlabel":
                hasClassLabel = words.count > 1 && words[1].lowercased() == "true"
                if hasClassLabel { result.classLabels = words.dropFirst(2).map(String.init) }
                if hasClassLabel && words.count < 3 {
                    throw DataError("\(path):\(lineNumber): @classLabel true without labels")
                }
            case "@timestamps":
                if words.count > 1 && words[1].lowercased() == "true" {
                    throw DataError("\(path): @timeStamps true is not supported")
                }
            default:
                break
            }
        }
        guard inData else { throw DataError("\(path): no @data line (not a .ts file?)") }
        guard !result.series.isEmpty else { throw DataError("\(path): empty set (no cases after @data)") }
        return result
    }

    @inline(__always) static func isSpace(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D }

    /// One case from bytes[begin..<end]: `v,v,...:v,v,...:label`. Numbers are read with strtof, which
    /// stops at the ',' or ':' after each one; a case always ends in ":label", so it never reads past it.
    static func parseCase(_ bytes: [UInt8], _ begin: Int, _ end: Int, into result: inout Parsed, where place: String) throws {
        var colon = end - 1
        while colon >= begin && bytes[colon] != UInt8(ascii: ":") { colon -= 1 }
        guard colon >= begin else { throw DataError("\(place): no class label (expected values:...:label)") }
        let label = String(decoding: bytes[(colon + 1)..<end], as: UTF8.self).trimmingSpaces()
        var channels: [[Float]] = [[]]
        try bytes.withUnsafeBufferPointer { buffer in
            guard let base = buffer.baseAddress else { return }
            var p = begin
            while p < colon {
                let c = base[p]
                if isSpace(c) || c == UInt8(ascii: ",") { p += 1; continue }
                if c == UInt8(ascii: ":") { channels.append([]); p += 1; continue }
                if c == UInt8(ascii: "?") {
                    channels[channels.count - 1].append(0)
                    p += 1
                } else {
                    var stop: UnsafeMutablePointer<CChar>? = nil
                    let start = UnsafeMutableRawPointer(mutating: base + p).assumingMemoryBound(to: CChar.self)
                    let v = strtof(start, &stop)
                    let used = stop.map { UnsafeRawPointer($0) - UnsafeRawPointer(start) } ?? 0
                    guard used > 0, p + used <= colon else {
                        var q = p
                        while q < colon && base[q] != UInt8(ascii: ",") && base[q] != UInt8(ascii: ":") { q += 1 }
                        let token = String(decoding: UnsafeBufferPointer(start: base + p, count: q - p), as: UTF8.self)
                        throw DataError("\(place): '\(printable(token))' is not a number")
                    }
                    channels[channels.count - 1].append(v.isNaN ? 0 : v)
                    p += used
                }
                while p < colon && isSpace(base[p]) { p += 1 }
                if p < colon && base[p] != UInt8(ascii: ",") && base[p] != UInt8(ascii: ":") {
                    var q = p
                    while q < colon && base[q] != UInt8(ascii: ",") && base[q] != UInt8(ascii: ":") { q += 1 }
                    let token = String(decoding: UnsafeBufferPointer(start: base + p, count: q - p), as: UTF8.self)
                    throw DataError("\(place): '\(printable(token))' is not a number")
                }
            }
        }
        if result.channels == 0 { result.channels = channels.count }
        guard channels.count == result.channels else {
            throw DataError("\(place): \(channels.count) channels, earlier cases have \(result.channels)")
        }
        result.labels.append(String(label))
        result.series.append(channels)
    }

    static func build(_ parsed: Parsed, path: String, classLabels: [String], length: Int) throws -> Dataset {
        guard length > 0 else { throw DataError("\(path): series have length 0") }
        var classOf: [String: Int32] = [:]
        for (i, label) in classLabels.enumerated() where classOf[label] == nil { classOf[label] = Int32(i) }
        var labels = [Int32](repeating: 0, count: parsed.series.count)
        for (i, label) in parsed.labels.enumerated() {
            guard let c = classOf[label] else {
                throw DataError("\(path): case \(i) has label '\(printable(label))', not one of \(printable(classLabels.joined(separator: " "), limit: 200))")
            }
            labels[i] = c
        }
        let shape = Shape(channels: parsed.channels, height: 1, width: length)
        let images = AlignedBuffer(count: parsed.series.count * shape.count)
        for (i, channels) in parsed.series.enumerated() {
            for (c, values) in channels.enumerated() {
                let out = images.pointer + i * shape.count + c * length
                for t in 0..<min(values.count, length) { out[t] = values[t] }
            }
        }
        let base = path.split(separator: "/").last.map(String.init) ?? path
        return Dataset(name: base, shape: shape, classes: classLabels.count, images: images, labels: labels)
    }
}

/// A UCR/UEA problem folder holding Name_TRAIN.ts and Name_TEST.ts.
public enum UCRFolder {
    /// Loads train and test with one label mapping (the train file's @classLabel list, else the sorted
    /// distinct labels of both) and one length (the longest series in either file).
    public static func load(directory: String) throws -> (train: Dataset, test: Dataset) {
        let names = try FileIO.list(directory)
        let trainNames = names.filter { $0.hasSuffix("_TRAIN.ts") }
        guard trainNames.count == 1, let trainName = trainNames.first else {
            throw DataError(trainNames.isEmpty ? "\(directory): no Name_TRAIN.ts file"
                : "\(directory): several _TRAIN.ts files (\(trainNames.joined(separator: ", ")))")
        }
        let testName = String(trainName.dropLast("_TRAIN.ts".count)) + "_TEST.ts"
        guard names.contains(testName) else { throw DataError("\(directory): \(trainName) has no matching \(testName)") }
        let trainPath = FileIO.join(directory, trainName), testPath = FileIO.join(directory, testName)
        let train = try UCRFile.parse(path: trainPath)
        let test = try UCRFile.parse(path: testPath)
        guard train.channels == test.channels else {
            throw DataError("\(trainPath) has \(train.channels) channels but \(testPath) has \(test.channels)")
        }
        let labels = train.classLabels ?? test.classLabels ?? UCRFile.defaultLabels(train.labels + test.labels)
        let length = max(train.longest, test.longest)
        return (try UCRFile.build(train, path: trainPath, classLabels: labels, length: length),
                try UCRFile.build(test, path: testPath, classLabels: labels, length: length))
    }
}
