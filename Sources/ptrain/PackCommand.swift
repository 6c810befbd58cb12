// `ptrain pack`: any supported data source into one packed, memory-mappable file (docs/PACKED.md).
import ArgumentParser
import CPTSupport
import Foundation
import PTData
import PTrain
import PTRuntime

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pack",
        abstract: "Convert a data set (any source) into one packed file that `source: packed` memory-maps.",
        discussion: """
            The samples are written as stored (uint8 pixels, int16 audio, float32) with their labels,
            an index and CRC-32 checksums; the file appears only when complete (temporary file, then
            rename). Image folders (source: images) are decoded on the pinned workers to the config's
            model input (channels 1 or 3, height x width; data.resize: true scales and centre-crops).
            Image order (--order, or data.order in the config): `class` stores each split class by
            class, as torchvision's ImageFolder lists it; `name` sorts all files of a split by file
            name across the classes (equal names in class order), so images named by their index in
            another data set (00000.png, 00001.png, ...) keep that set's order and train alike with
            the same seed.

            Examples:
              ptrain pack --config configs/lenet5-mnist.yaml --data DIR --output mnist.ptpack
              ptrain pack --config images.yaml --data ROOT --output set.ptpack --threads 2 --skip-bad
              ptrain pack --config images.yaml --data ROOT --output set.ptpack --order name
            """)

    @OptionGroup var configOptions: ConfigOptions
    @Option(help: ArgumentHelp("Data folder (overrides data.path).", valueName: "dir")) var data: String?
    @Option(help: ArgumentHelp("The packed file to write.", valueName: "file")) var output: String
    @Option(help: "Worker threads for decoding images (default: the allowed cores).") var threads: Int?
    @Option(help: ArgumentHelp("Image folders: sample order, class or name (overrides data.order; default class).",
                               valueName: "order")) var order: String?
    @Flag(help: "Leave out images that cannot be decoded and report how many (default: the first one is an error).")
    var skipBad = false
    @Flag(help: "Only errors and the final line.") var quiet = false

    func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    }

    func run() throws {
        reportingErrors {
            var config = try configOptions.load()
            if let data { config.data.path = data; if config.data.source == .xo { config.data.source = .idx } }
            if let order {
                guard let chosen = ImageFolder.Order(rawValue: order) else {
                    throw ConfigError("--order: unknown image order '\(order)' (known: class, name)")
                }
                guard config.data.source == .images else {
                    throw ConfigError("--order: only image folders (data.source: images) have an order to choose; the source is \(config.data.source.rawValue)")
                }
                config.data.order = chosen
            }
            guard config.data.source != .packed else {
                throw ConfigError("data.source: already packed; pack reads idx, cifar10, npy, fsdd, ucr, images or xo")
            }
            let start = Date()
            let train: Dataset, test: Dataset
            var skipped: [String] = []
            var workers = 0
            if config.data.source == .images {
                guard let path = config.data.path else { throw ConfigError("data.path: not set; pass --data DIR (the image root)") }
                guard let input = config.input else {
                    throw ConfigError("model.input: required for data.source images (channels 1 or 3, height, width)")
                }
                let pool = try makeWorkerPool(threads: threads, warn: { if !quiet { warn($0) } })
                workers = pool.workerCount
                let progress = ProgressPrinter(quiet: quiet)
                var report = ImageFolder.Report()
                (train, test) = try ImageFolder.load(root: path, shape: input, resize: config.data.resize, order: config.data.order,
                                                     skipBad: skipBad,
                                                     parallelFor: poolParallelFor(pool),
                                                     progress: { done, total in progress.update(done, total, "images decoded") },
                                                     report: &report)
                progress.finish()
                skipped = report.skipped
            } else {
                (train, test) = try loadUnprocessedData(config)
            }
            let decoded = Date()
            let progress = ProgressPrinter(quiet: quiet)
            // Samples as the reader stores them: mean, std and z_normalize are `Preprocessing`'s, applied
            // when the packed file is trained on.
            try Packed.write(train: train, test: test, divisor: train.conversion.divisor, to: output,
                             progress: { done, total in progress.update(done, total, "samples written") })
            progress.finish()
            let seconds = Date().timeIntervalSince(start)
            let total = train.count + test.count
            var line = "packed \(train.count) train + \(test.count) test samples (\(train.shape), \(train.store.elementType), "
                + "\(train.classes) classes) into \(output) in \(String(format: "%.2f", seconds)) s"
            if config.data.source == .images {
                let decodeSeconds = decoded.timeIntervalSince(start)
                line += String(format: " (%.0f images/s decoding with %d threads)", Double(total + skipped.count) / max(decodeSeconds, 1e-9),
                               workers)
            }
            print(line)
            if skipBad && !skipped.isEmpty {
                print("skipped \(skipped.count) unreadable image\(skipped.count == 1 ? "" : "s") (first: \(skipped[0]))")
            } else if skipBad {
                print("skipped 0 unreadable images")
            }
        }
    }
}

/// A parallel-for over a pinned worker pool: worker w takes the next unclaimed index (an atomic
/// counter), so slow images do not hold up a fixed share.
func poolParallelFor(_ pool: WorkerPool) -> ImageFolder.ParallelFor {
    { count, body in
        let job = ClaimJob(count: count, body: body)
        pool.run(job)
    }
}

final class ClaimJob: ParallelJob, @unchecked Sendable {
    let count: Int
    let body: @Sendable (Int) -> Void
    let next = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)

    init(count: Int, body: @escaping @Sendable (Int) -> Void) {
        self.count = count
        self.body = body
        next.initialize(to: 0)
    }

    deinit { next.deallocate() }

    func run(worker: Int, pool: WorkerPool) {
        while true {
            let i = Int(pt_atomic_fetch_add_seqcst_u32(next, 1))
            if i >= count { return }
            body(i)
        }
    }
}

/// One updating progress line on a terminal (standard error); otherwise a line every 10% once the
/// work has taken more than 2 s.
final class ProgressPrinter: @unchecked Sendable {
    let quiet: Bool
    let terminal = isatty(2) != 0
    var lastTime = Date.distantPast
    var lastTenth = -1
    var printed = false
    let started = Date()

    init(quiet: Bool) { self.quiet = quiet }

    func update(_ done: Int, _ total: Int, _ what: String) {
        guard !quiet, total > 0 else { return }
        if terminal {
            let now = Date()
            guard done == total || now.timeIntervalSince(lastTime) > 0.2 else { return }
            lastTime = now
            FileHandle.standardError.write(Data("\rpack: \(done)/\(total) \(what) (\(100 * done / total)%)   ".utf8))
            printed = true
        } else {
            let tenth = 10 * done / total
            guard tenth != lastTenth, Date().timeIntervalSince(started) > 2 else { return }
            lastTenth = tenth
            FileHandle.standardError.write(Data("pack: \(done)/\(total) \(what) (\(100 * done / total)%)\n".utf8))
        }
    }

    func finish() {
        if printed { FileHandle.standardError.write(Data("\n".utf8)) }
        printed = false
    }
}
