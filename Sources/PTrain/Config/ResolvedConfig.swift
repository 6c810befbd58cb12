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
        if data.resize { lines.append("  resize: true") }
        if data.order != .class { lines.append("  order: \(data.order.rawValue)") }
        if !augment.isIdentity {
            lines += ["augment:", "  crop: \(augment.crop)", "  flip: \(augment.flip)", "  translate: \(augment.translate)",
                      "  scale: \(augment.scale)", "  shift: \(augment.shift)", "  gain: \(augment.gain)"]
        }
        lines.append("model:")
        if let input = input {
            lines.append("  input: {channels: \(input.channels), height: \(input.height), width: \(input.width)}")
        }
        lines.append("  layers:")
        for node in layers {
            // name and inputs first, then the layer's own settings.
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
            let body: String
            switch node.spec {
            case let .conv(features, kh, kw, stride, padding, initializer):
                body = "type: \(kh == 1 && kw != 1 ? "conv1d" : "conv"), features: \(features), size: \(kw), stride: \(stride), padding: \(padding), init: \(initializer.rawValue)"
            case let .maxPool(wh, ww, stride, keep):
                body = "type: \(wh == 1 && ww != 1 ? "maxpool1d" : "maxpool"), window: \(ww), stride: \(stride), edge: \(keep ? "keep" : "drop")"
            case let .avgPool(wh, ww, stride, keep):
                body = "type: \(wh == 1 && ww != 1 ? "avgpool1d" : "avgpool"), window: \(ww), stride: \(stride), edge: \(keep ? "keep" : "drop")"
            case .globalAvgPool: body = "type: global_avgpool"
            case let .dropout(rate): body = "type: dropout, rate: \(rate)"
            case let .batchNorm(momentum, epsilon): body = "type: batchnorm, momentum: \(momentum), eps: \(epsilon)"
            case .relu: body = "type: relu"
            case .flatten: body = "type: flatten"
            case let .dense(neurons, initializer): body = "type: dense, neurons: \(neurons), init: \(initializer.rawValue)"
            case .add: body = "type: add"
            case .concat: body = "type: concat"
            }
            lines.append("    - {\(head)\(body)}")
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
        lines += ["training:", "  epochs: \(epochs)", "  batch_size: \(batchSize)", "  shards: \(shards)", "  seed: \(seed)",
                  "  precision: \(precision.rawValue)"]
        lines += ["distributed:", "  exchange: \(exchange.rawValue)", "  bucket_kb: \(bucketKB)", "  overlap_forward: \(overlapForward)",
                  "  segment_kb: \(segmentKB)", "  sends_in_flight: \(sendsInFlight)"]
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A YAML string literal: single-quoted, or double-quoted with JSON escapes when it holds control
/// characters (YAML's double-quoted style accepts JSON strings).
func yamlQuoted(_ s: String) -> String {
    if s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return jsonString(s) }
    return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
}
