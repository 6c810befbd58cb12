// The instruction-set level of this process, chosen once before main (CPTSupport: PTRAIN_ISA, or the
// best level the CPU runs), and the kernel table of that level.
@_exported import PTKernelsCore
import PTKernelsAVX2
import PTKernelsAVX512
import CPTSupport

/// An instruction-set level the kernels are compiled for. Every level is in every binary.
public enum InstructionSet: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// x86-64-v2 (SSE4.2, no FMA): any x86-64 server CPU of the last fifteen years.
    case baseline = 0
    /// AVX2 + FMA (x86-64-v3 class: Haswell, AMD Zen 1-3, ...).
    case avx2 = 1
    /// AVX-512 F/CD/BW/DQ/VL (x86-64-v4 class: Skylake-SP and later Xeons, AMD Zen 4-5).
    case avx512 = 2

    /// The level in use: PTRAIN_ISA if set (checked at start-up: a level the CPU lacks exits with code 2),
    /// else the best level the CPU runs.
    public static let current = InstructionSet(rawValue: Int(pt_isa_level())) ?? .baseline

    /// "baseline", "avx2" or "avx512" (the values of PTRAIN_ISA).
    public var name: String { String(cString: pt_level_name(Int32(rawValue))) }
    public var description: String { name }

    /// Floats per vector register of the level's kernels.
    public var vectorWidth: Int { [4, 8, 16][rawValue] }

    /// The features the compiler may use at this level (from its predefined macros for the level's
    /// CPU). Intrinsic-only features (never emitted by code generation) are not required.
    public var requiredFeatures: [String] { Self.split(pt_level_features(Int32(rawValue))).filter { !$0.hasPrefix("~") } }

    /// Features of the running CPU (among those any level lists).
    public static var cpuFeatures: [String] {
        var buffer = [CChar](repeating: 0, count: 2048)
        pt_cpu_features(&buffer, Int32(buffer.count))
        return split(buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })
    }

    /// The levels the running CPU supports, lowest first.
    public static var supported: [InstructionSet] {
        let have = Set(cpuFeatures)
        return allCases.filter { $0.requiredFeatures.allSatisfy(have.contains) }
    }

    /// The level `requested` (a PTRAIN_ISA value; nil or "" for the best) on a CPU with `available`
    /// features, or the one-line message the start-up check prints before exiting with code 2.
    public static func select(requested: String?, available: [String]) -> Result<InstructionSet, SelectionError> {
        var message = [CChar](repeating: 0, count: 1024)
        let level = pt_select_level(requested, available.joined(separator: ","), &message, Int32(message.count))
        if level < 0 { return .failure(SelectionError(message: message.withUnsafeBufferPointer { String(cString: $0.baseAddress!) })) }
        return .success(InstructionSet(rawValue: Int(level))!)
    }

    public struct SelectionError: Error, Equatable { public let message: String }

    static func split(_ s: UnsafePointer<CChar>) -> [String] { split(String(cString: s)) }
    static func split(_ s: String) -> [String] { s.split(separator: ",").map(String.init) }

    /// The kernel table of this level. Building a table runs code of that level: only for supported ones.
    public var kernels: KernelTable {
        precondition(Self.supported.contains(self), "this CPU does not run the \(name) level")
        switch self {
        case .baseline: return baselineKernelTable()
        case .avx2: return avx2KernelTable()
        case .avx512: return avx512KernelTable()
        }
    }
}

extension InstructionSet {
    /// The kernel table of the level in use.
    public static var currentKernels: KernelTable { activeKernels }
}

/// The kernels of `InstructionSet.current`, built once.
let activeKernels: KernelTable = {
    switch InstructionSet.current {
    case .baseline: return baselineKernelTable()
    case .avx2: return avx2KernelTable()
    case .avx512: return avx512KernelTable()
    }
}()
