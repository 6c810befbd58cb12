// The version of ptrain, recorded where a file leaves the project (ONNX export's metadata) and
// printed by `ptrain --version`.

/// ptrain's release version (semantic versioning; raise it with each release).
public enum PTrainVersion {
    public static let current = "0.1.0"
}
