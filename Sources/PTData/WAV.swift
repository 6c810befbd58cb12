// WAV (RIFF, 16-bit PCM, mono) reading and the Free Spoken Digit Dataset (FSDD) folder loader.
import PTTensor

/// Reader for RIFF/WAVE files holding 16-bit PCM mono audio.
public enum WAV {
    /// Sample rate and samples (as stored: signed 16-bit) of the WAV file at `path`.
    /// Chunks other than "fmt " and "data" are skipped; WAVE_FORMAT_EXTENSIBLE with a PCM sub-format is
    /// accepted. Non-PCM, more than one channel, or other than 16 bits per sample are errors.
    public static func read(path: String) throws -> (sampleRate: Int, samples: [Int16]) {
        let file = try FileIO.readAll(path)
        guard file.count >= 12, tag(file, 0) == "RIFF", tag(file, 8) == "WAVE" else {
            throw DataError("\(path): not a WAV file (no RIFF/WAVE header)")
        }
        var position = 12
        var sampleRate: Int? = nil
        while position + 8 <= file.count {
            let id = tag(file, position)
            let size = Int(le32(file, position + 4))
            let body = position + 8
            if id == "fmt " {
                guard size >= 16, body + size <= file.count else { throw DataError("\(path): truncated fmt chunk") }
                var format = Int(le16(file, body))
                let channels = Int(le16(file, body + 2))
                let rate = Int(le32(file, body + 4))
                let bits = Int(le16(file, body + 14))
                if format == 0xFFFE && size >= 26 { format = Int(le16(file, body + 24)) }  // extensible: sub-format GUID
                guard format == 1 else { throw DataError("\(path): not PCM (format tag \(format)); only 16-bit PCM is supported") }
                guard channels == 1 else { throw DataError("\(path): \(channels) channels; only mono is supported") }
                guard bits == 16 else { throw DataError("\(path): \(bits) bits per sample; only 16-bit is supported") }
                guard rate > 0 else { throw DataError("\(path): sample rate \(rate)") }
                sampleRate = rate
            } else if id == "data" {
                guard let rate = sampleRate else { throw DataError("\(path): data chunk before fmt chunk") }
                guard body + size <= file.count else {
                    throw DataError("\(path): truncated: data chunk says \(size) bytes, file has \(file.count - body)")
                }
                guard size % 2 == 0 else { throw DataError("\(path): data chunk of \(size) bytes is not whole 16-bit samples") }
                let count = size / 2
                let samples = [Int16](unsafeUninitializedCapacity: count) { out, initialized in
                    file.withUnsafeBytes { raw in
                        guard let base = raw.baseAddress, let o = out.baseAddress else { return }
                        for i in 0..<count {
                            o[i] = Int16(littleEndian: base.loadUnaligned(fromByteOffset: body + 2 * i, as: Int16.self))
                        }
                    }
                    initialized = count
                }
                return (rate, samples)
            }
            position = body + size + (size & 1)  // chunks are padded to an even length
        }
        throw DataError(sampleRate == nil ? "\(path): no fmt chunk" : "\(path): no data chunk")
    }

    static func tag(_ b: [UInt8], _ i: Int) -> String {
        String(decoding: b[i..<min(i + 4, b.count)], as: UTF8.self)
    }
    @inline(__always) static func le16(_ b: [UInt8], _ i: Int) -> UInt16 { UInt16(b[i]) | UInt16(b[i + 1]) << 8 }
    @inline(__always) static func le32(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }
}

/// The Free Spoken Digit Dataset: `recordings/{digit}_{speaker}_{index}.wav`, 8 kHz mono 16-bit.
public enum SpokenDigits {
    /// Loads FSDD from `directory` (the data set folder holding `recordings/`, or `recordings/` itself).
    /// Files whose index is in `testIndices` form the test set (upstream's split: 0..<5), the rest train.
    /// Samples stay as recorded (int16, 2 bytes each): each clip is placed in the middle of `length`
    /// samples (zero-padded on both sides when shorter, centre-cropped when longer), and its
    /// `ClipWindow` records where it lies and its mean (of sample / 32768 over the whole recording),
    /// so that the conversion gives sample / 32768 minus the clip's mean inside the clip and 0 in the
    /// padding. Shape 1 x 1 x length; label = the digit; files in sorted name order.
    public static func load(directory: String, length: Int = 8000, testIndices: Range<Int> = 0..<5) throws
        -> (train: Dataset, test: Dataset)
    {
        guard length > 0 else { throw DataError("SpokenDigits: length must be positive, got \(length)") }
        guard length <= Int(Int32.max) else { throw DataError("SpokenDigits: length \(length) is too large") }
        try FileIO.requireDirectory(directory)
        let nested = FileIO.join(directory, "recordings")
        let folder = FileIO.isDirectory(nested) ? nested : directory
        let names = try FileIO.list(folder).filter { $0.hasSuffix(".wav") }
        guard !names.isEmpty else { throw DataError("\(folder): no .wav files (expected digit_speaker_index.wav)") }

        var train = Clips(length: length), test = Clips(length: length)
        var rate: Int? = nil
        for name in names {
            let path = FileIO.join(folder, name)
            let parts = name.dropLast(4).split(separator: "_", omittingEmptySubsequences: false)
            guard parts.count == 3, let digit = Int(parts[0]), (0...9).contains(digit), let index = Int(parts[2]) else {
                throw DataError("\(path): name does not match {digit}_{speaker}_{index}.wav")
            }
            let (fileRate, samples) = try WAV.read(path: path)
            if let rate, rate != fileRate {
                throw DataError("\(path): sample rate \(fileRate) Hz differs from the other files' \(rate) Hz")
            }
            rate = fileRate
            if testIndices.contains(index) { test.append(samples, label: Int32(digit)) } else { train.append(samples, label: Int32(digit)) }
        }
        guard train.count > 0 else { throw DataError("\(folder): empty training set (every index is in \(testIndices))") }
        guard test.count > 0 else { throw DataError("\(folder): empty test set (no index in \(testIndices))") }
        return (try train.dataset(name: "fsdd-train"), try test.dataset(name: "fsdd-test"))
    }

    /// The mean of a recording in the units the conversion divides into (sample / 32768), summed in
    /// Double over the whole recording and rounded to Float once.
    static func mean(_ samples: [Int16]) -> Float {
        guard !samples.isEmpty else { return 0 }
        var sum = 0.0
        for s in samples { sum += Double(Float(s) / 32768) }
        return Float(sum / Double(samples.count))
    }

    /// Where a recording of `n` samples lies in `length` (centred: padding split evenly, the odd
    /// sample after it; a longer one cropped evenly), and the first recorded sample kept.
    static func placement(_ n: Int, length: Int) -> (first: Int, count: Int, skip: Int) {
        n <= length ? ((length - n) / 2, n, 0) : (0, length, (n - length) / 2)
    }

    /// Clips gathered as stored: `length` int16 values each (little-endian bytes), window and label.
    struct Clips {
        let length: Int
        var bytes: [UInt8] = []
        var windows: [ClipWindow] = []
        var labels: [Int32] = []
        var count: Int { labels.count }

        init(length: Int) { self.length = length }

        mutating func append(_ samples: [Int16], label: Int32) {
            let (first, n, skip) = SpokenDigits.placement(samples.count, length: length)
            var sample = [UInt8](repeating: 0, count: 2 * length)
            for i in 0..<n {
                let v = UInt16(bitPattern: samples[skip + i])
                sample[2 * (first + i)] = UInt8(v & 0xFF)
                sample[2 * (first + i) + 1] = UInt8(v >> 8)
            }
            bytes += sample
            windows.append(ClipWindow(first: Int32(first), count: Int32(n), centre: SpokenDigits.mean(samples)))
            labels.append(label)
        }

        func dataset(name: String) throws -> Dataset {
            let store = SampleStore(bytes: bytes, elementType: .int16, count: count, sampleElements: length)
            return try Dataset(name: name, shape: Shape(channels: 1, height: 1, width: length), classes: 10, store: store,
                               conversion: .natural(.int16), labels: labels, clips: windows)
        }
    }
}
