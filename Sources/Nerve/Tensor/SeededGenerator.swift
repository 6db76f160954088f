// SeededGenerator: a small, fast, reproducible random number generator (xoshiro256**).

/// A random number generator that produces the same sequence for the same seed on every
/// machine: shuffling, initialisation and dropout all draw from it, which is what makes a run
/// reproducible.
public struct SeededGenerator: RandomNumberGenerator, Sendable {
  private var s: (UInt64, UInt64, UInt64, UInt64)

  /// A generator whose sequence is fixed by `seed`.
  public init(seed: UInt64) {
    // SplitMix64 spreads the seed over the 256-bit state (never all zero).
    var x = seed
    func next() -> UInt64 {
      x &+= 0x9E37_79B9_7F4A_7C15
      var z = x
      z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
      z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
      return z ^ (z >> 31)
    }
    s = (next(), next(), next(), next())
  }

  /// The generator's whole state, for checkpoints: a generator made from it continues the
  /// same sequence.
  public var state: [UInt64] { [s.0, s.1, s.2, s.3] }

  /// A generator continuing from a saved `state` (four words, not all zero).
  public init?(state: [UInt64]) {
    guard state.count == 4, state.contains(where: { $0 != 0 }) else { return nil }
    s = (state[0], state[1], state[2], state[3])
  }

  public mutating func next() -> UInt64 {
    let result = rotl(s.1 &* 5, 7) &* 9
    let t = s.1 << 17
    s.2 ^= s.0
    s.3 ^= s.1
    s.1 ^= s.2
    s.0 ^= s.3
    s.2 ^= t
    s.3 = rotl(s.3, 45)
    return result
  }

  private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

  /// A uniform `Double` in [0, 1) with 53 random bits.
  public mutating func nextUnit() -> Double { Double(next() >> 11) * 0x1.0p-53 }

  /// A standard normal sample (Box-Muller).
  public mutating func nextGaussian() -> Double {
    var u = nextUnit()
    while u <= 0 { u = nextUnit() }
    let v = nextUnit()
    return (-2 * _log(u)).squareRoot() * _cos(2 * Double.pi * v)
  }

  /// A seed derived from this one for an independent stream (e.g. one per run of a sweep).
  public static func derive(_ seed: UInt64, _ stream: UInt64) -> UInt64 {
    var g = SeededGenerator(seed: seed ^ (stream &* 0xD6E8_FEB8_6659_FD93))
    return g.next()
  }
}

#if canImport(Glibc)
  import Glibc
  @inline(__always) private func _log(_ x: Double) -> Double { Glibc.log(x) }
  @inline(__always) private func _cos(_ x: Double) -> Double { Glibc.cos(x) }
#else
  import Foundation
  @inline(__always) private func _log(_ x: Double) -> Double { Foundation.log(x) }
  @inline(__always) private func _cos(_ x: Double) -> Double { Foundation.cos(x) }
#endif
