// Seeded, checkpointable random numbers: xoshiro256** seeded through SplitMix64.

/// SplitMix64: used to expand a seed (and to derive independent streams from (seed, purpose, index)).
public struct SplitMix64: Sendable {
    public var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// xoshiro256**: the project's random generator. Its whole state is `state` (four words), so a
/// checkpoint can capture and restore it exactly.
public struct Xoshiro256: RandomNumberGenerator, Sendable, Equatable, Codable {
    public var state: [UInt64]

    /// A generator for `seed`, optionally split into independent streams by `stream` (e.g. the epoch
    /// number for shuffling, or a purpose constant).
    public init(seed: UInt64, stream: UInt64 = 0) {
        var sm = SplitMix64(seed: seed ^ (stream &* 0xD1B5_4A32_D192_ED03))
        state = [sm.next(), sm.next(), sm.next(), sm.next()]
        if state.allSatisfy({ $0 == 0 }) { state[0] = 1 }
    }

    public init(state: [UInt64]) {
        precondition(state.count == 4, "Xoshiro256 state has four words")
        self.state = state
    }

    @inline(__always) static func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    public mutating func next() -> UInt64 {
        let result = Self.rotl(state[1] &* 5, 7) &* 9
        let t = state[1] << 17
        state[2] ^= state[0]; state[3] ^= state[1]; state[1] ^= state[2]; state[0] ^= state[3]
        state[2] ^= t
        state[3] = Self.rotl(state[3], 45)
        return result
    }

    /// Uniform in [0, 1) with 24 random bits (exactly representable as Float).
    public mutating func nextUnitFloat() -> Float { Float(next() >> 40) * (1.0 / 16_777_216.0) }

    /// Uniform in [0, 1) with 53 random bits.
    public mutating func nextUnitDouble() -> Double { Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    /// Uniform integer in 0..<bound (bound > 0), unbiased (Lemire's method).
    public mutating func nextInt(below bound: Int) -> Int {
        precondition(bound > 0)
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// Standard normal via Box-Muller (Double precision, deterministic).
    public mutating func nextNormal() -> Double {
        var u1 = nextUnitDouble()
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = nextUnitDouble()
        return (-2 * _logD(u1)).squareRoot() * _cosD(2 * Double.pi * u2)
    }
}

#if canImport(Glibc)
import Glibc
@usableFromInline func _logD(_ x: Double) -> Double { Glibc.log(x) }
@usableFromInline func _cosD(_ x: Double) -> Double { Glibc.cos(x) }
#elseif canImport(Darwin)
import Darwin
@usableFromInline func _logD(_ x: Double) -> Double { Darwin.log(x) }
@usableFromInline func _cosD(_ x: Double) -> Double { Darwin.cos(x) }
#endif

/// A seeded Fisher-Yates permutation of 0..<count for one epoch: a pure function of (seed, epoch),
/// so resuming needs only the epoch number and the position within it.
public func epochPermutation(count: Int, seed: UInt64, epoch: Int) -> [Int32] {
    var order = (0..<count).map { Int32($0) }
    var rng = Xoshiro256(seed: seed, stream: 0x5348_5546 &+ UInt64(epoch))
    if count > 1 {
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = rng.nextInt(below: i + 1)
            order.swapAt(i, j)
        }
    }
    return order
}
