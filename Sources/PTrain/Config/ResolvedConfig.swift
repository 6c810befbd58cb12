// Writes a resolved config back as YAML (the run folder's config.yaml, checkpoint manifests),
// readable by `--config`: every section and key of the schema (ConfigSchema.swift), in its order.
import PTFiles
import PTModel

extension TrainConfig {
    /// The config as YAML that `TrainConfig.parse` reads back to an equal value.
    public var yaml: String {
        var lines = ["# resolved by ptrain: file values with command-line overrides applied"]
        for key in ConfigSchema.topKeys { if let value = key.yaml(self) { lines.append("\(key.name): \(value)") } }
        for section in ConfigSchema.sections where section.written(self) {
            lines.append("\(section.name):")
            for key in section.keys {
                guard let value = key.yaml(self) else { continue }
                // A block value (the layer list) starts on the next line.
                lines.append("  \(key.name):" + (value.hasPrefix("\n") ? value : " \(value)"))
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// A YAML string literal: single-quoted, or double-quoted with JSON escapes when it holds control
/// characters (YAML's double-quoted style accepts JSON strings).
func yamlQuoted(_ s: String) -> String {
    if s.unicodeScalars.contains(where: { $0.value < 0x20 || $0.value == 0x7F }) { return JSON.string(s) }
    return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
}
