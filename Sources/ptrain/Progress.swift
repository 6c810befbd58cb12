// What a run shows while it trains: one updating line on a terminal, plain periodic lines in batch
// jobs (standard output not a terminal), one line per epoch, and a summary at the end.
import Foundation
import PTrain

final class ProgressReporter {
    enum Level { case quiet, normal, verbose }
    let level: Level
    let interactive: Bool
    let epochs: Int
    let stepsPerEpoch: Int
    let samplesPerEpoch: Int
    let batchSize: Int
    /// Batch jobs: seconds between plain progress lines.
    let batchInterval: Double
    private var lastLine = Date.distantPast
    private let started = Date()
    private let startStep: Int
    private var lineIsOpen = false

    init(level: Level, trainer: Trainer, batchInterval: Double = 30) {
        self.level = level
        interactive = isatty(STDOUT_FILENO) != 0 && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        epochs = trainer.config.epochs
        stepsPerEpoch = trainer.stepsPerEpoch
        samplesPerEpoch = trainer.train.count
        batchSize = trainer.config.batchSize
        self.batchInterval = batchInterval
        startStep = trainer.progress.globalStep
        if !interactive { lastLine = Date() }   // batch jobs: the first line after one interval
    }

    /// "1:02:03" or "2:03".
    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "--:--" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%d:%02d:%02d", s / 3600, s / 60 % 60, s % 60) : String(format: "%d:%02d", s / 60, s % 60)
    }

    func line(_ p: TrainingProgress) -> String {
        let seen = max(1, min(p.stepInEpoch * batchSize, samplesPerEpoch))
        let rate = p.trainingNanoseconds > 0 ? Double(seen) / (Double(p.trainingNanoseconds) / 1e9) : 0
        let done = p.globalStep - startStep
        let remaining = epochs * stepsPerEpoch - p.globalStep
        let eta = done > 0 ? Date().timeIntervalSince(started) / Double(done) * Double(remaining) : .nan
        return String(format: "epoch %d/%d  step %d/%d  loss %.4f  accuracy %.2f%%  %.0f images/s  ETA %@",
                      min(p.epoch + 1, epochs), epochs, p.stepInEpoch, stepsPerEpoch, p.epochLoss / Double(seen),
                      100 * Double(p.epochCorrect) / Double(seen), rate, Self.clock(eta))
    }

    /// After every training step.
    func step(_ p: TrainingProgress) {
        guard level != .quiet, p.stepInEpoch > 0 else { return }
        let now = Date()
        if interactive {
            guard now.timeIntervalSince(lastLine) >= 0.1 else { return }
            print("\r\u{1B}[2K" + line(p), terminator: "")
            fflush(nil)
            lineIsOpen = true
        } else {
            let every = level == .verbose ? min(batchInterval, 5) : batchInterval
            guard now.timeIntervalSince(lastLine) >= every else { return }
            print(line(p))
            fflush(nil)
        }
        lastLine = now
    }

    /// After each epoch: one permanent line.
    func epoch(_ r: EpochRecord) {
        guard level != .quiet else { return }
        if lineIsOpen { print("\r\u{1B}[2K", terminator: ""); lineIsOpen = false }
        print(String(format: "epoch %d/%d  train_loss %.4f  train_accuracy %.2f%%  test_loss %.4f  test_accuracy %.2f%%  %.0f images/s  %.1f s",
                     r.epoch, epochs, r.trainLoss, r.trainAccuracy * 100, r.testLoss, r.testAccuracy * 100, r.imagesPerSecond, r.seconds))
        fflush(nil)
        lastLine = Date()
    }

    /// Clears an open progress line (before a message on another stream).
    func finishLine() {
        if lineIsOpen { print("\r\u{1B}[2K", terminator: ""); fflush(nil); lineIsOpen = false }
    }
}
