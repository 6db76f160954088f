// LearningRateSchedule: the learning rate epoch by epoch.
#if canImport(Glibc)
  import Glibc
#else
  import Foundation
#endif

/// How the learning rate changes from epoch to epoch (a multiplier on the optimizer's rate).
public enum LearningRateSchedule: Sendable, Equatable, CustomStringConvertible {
  /// The same rate every epoch.
  case constant
  /// Multiply by `factor` every `every` epochs.
  case step(every: Int, factor: Float)
  /// Cosine decay from the base rate to `minimum` (a fraction of it) over the run.
  case cosine(minimum: Float = 0)
  /// Multiply by `factor` every epoch.
  case exponential(factor: Float)

  /// The multiplier for 1-based `epoch` of `epochs`.
  public func multiplier(epoch: Int, of epochs: Int) -> Float {
    switch self {
    case .constant: return 1
    case .step(let every, let factor): return powf(factor, Float((epoch - 1) / max(every, 1)))
    case .cosine(let minimum):
      let progress = epochs <= 1 ? 0 : Double(epoch - 1) / Double(epochs - 1)
      return minimum + (1 - minimum) * Float(0.5 * (1 + cos(Double.pi * progress)))
    case .exponential(let factor): return powf(factor, Float(epoch - 1))
    }
  }

  /// Parses `constant`, `step(10, 0.5)`, `cosine`, `cosine(0.01)` or `exponential(0.95)`.
  public init?(parsing text: String) {
    let t = text.lowercased().replacingOccurrences(of: " ", with: "")
    func args(_ prefix: String) -> [Float]? {
      guard t.hasPrefix(prefix + "("), t.hasSuffix(")") else { return nil }
      let inner = t.dropFirst(prefix.count + 1).dropLast()
      let parts = inner.split(separator: ",").map { Float($0) }
      return parts.allSatisfy { $0 != nil } ? parts.map { $0! } : nil
    }
    if t == "constant" || t == "none" {
      self = .constant
    } else if t == "cosine" {
      self = .cosine()
    } else if let a = args("cosine"), a.count == 1, a[0] >= 0, a[0] <= 1 {
      self = .cosine(minimum: a[0])
    } else if let a = args("step"), a.count == 2, a[0] >= 1, a[1] > 0 {
      self = .step(every: Int(a[0]), factor: a[1])
    } else if let a = args("exponential"), a.count == 1, a[0] > 0 {
      self = .exponential(factor: a[0])
    } else {
      return nil
    }
  }

  public var description: String {
    switch self {
    case .constant: "constant"
    case .step(let every, let factor): "step(\(every), \(factor))"
    case .cosine(let minimum): "cosine(\(minimum))"
    case .exponential(let factor): "exponential(\(factor))"
    }
  }
}
