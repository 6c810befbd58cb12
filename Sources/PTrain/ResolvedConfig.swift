// Writes a resolved config back as YAML (the run folder's config.yaml), readable by `--config`.
import PTModel

extension TrainConfig {
    /// The config as YAML that `TrainConfig.parse` reads back to an equal value.
    public var yaml: String {
        var lines: [String] = ["# resolved by ptrain: file values with command-line overrides applied", "name: \(yamlQuoted(name))", "data:"]
        lines.append("  source: \(data.source.rawValue)")
        if let path = data.path { lines.append("  path: \(yamlQuoted(path))") }
        lines += ["  size: \(data.size)", "  train: \(data.trainCount)", "  test: \(data.testCount)", "  length: \(data.length)",
                  "  z_normalize: \(data.zNormalize)"]
        if let mean = data.mean { lines.append("  mean: \(mean)") }
        if let std = data.std { lines.append("  std: \(std)") }
        lines.append("model:")
        if let input = input {
            lines.append("  input: {channels: \(input.channels), height: \(input.height), width: \(input.width)}")
        }
        lines.append("  layers:")
        for layer in layers {
            switch layer {
            case let .conv(features, kh, kw, stride, padding, initializer):
                lines.append("    - {type: \(kh == 1 && kw != 1 ? "conv1d" : "conv"), features: \(features), size: \(kw), stride: \(stride), padding: \(padding), init: \(initializer.rawValue)}")
            case let .maxPool(wh, ww, stride, keep):
                lines.append("    - {type: \(wh == 1 && ww != 1 ? "maxpool1d" : "maxpool"), window: \(ww), stride: \(stride), edge: \(keep ? "keep" : "drop")}")
            case let .avgPool(wh, ww, stride, keep):
                lines.append("    - {type: \(wh == 1 && ww != 1 ? "avgpool1d" : "avgpool"), window: \(ww), stride: \(stride), edge: \(keep ? "keep" : "drop")}")
            case .globalAvgPool: lines.append("    - {type: global_avgpool}")
            case let .dropout(rate): lines.append("    - {type: dropout, rate: \(rate)}")
            case let .batchNorm(momentum, epsilon): lines.append("    - {type: batchnorm, momentum: \(momentum), eps: \(epsilon)}")
            case .relu: lines.append("    - {type: relu}")
            case .flatten: lines.append("    - {type: flatten}")
            case let .dense(neurons, initializer): lines.append("    - {type: dense, neurons: \(neurons), init: \(initializer.rawValue)}")
            }
        }
        lines += ["optimizer:", "  type: \(optimizer.rawValue)", "  lr: \(learningRate)"]
        if optimizer == .sgd {
            lines += ["  momentum: \(momentum)", "  nesterov: \(nesterov)"]
        } else {
            lines += ["  beta1: \(beta1)", "  beta2: \(beta2)", "  eps: \(epsilon)"]
        }
        lines.append("  weight_decay: \(weightDecay)")
        lines += ["schedule:", "  type: \(schedule.rawValue)", "  warmup_epochs: \(warmupEpochs)", "  step_epochs: \(stepEpochs)",
                  "  gamma: \(gamma)", "  min_lr: \(minLR)"]
        lines += ["training:", "  epochs: \(epochs)", "  batch_size: \(batchSize)", "  shards: \(shards)", "  seed: \(seed)"]
        lines += ["distributed:", "  exchange: \(exchange.rawValue)", "  bucket_kb: \(bucketKB)"]
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A YAML string literal: single-quoted, or double-quoted with JSON escapes when it holds control
/// characters (YAML's double-quoted style accepts JSON strings).
func yamlQuoted(_ s: String) -> String {
    if s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return jsonString(s) }
    return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
}
