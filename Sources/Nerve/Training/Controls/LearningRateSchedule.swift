// LearningRateSchedule: the learning rate epoch by epoch, or step by step for one-cycle.
#if canImport(Glibc)
  import Glibc
#else
  import Foundation
#endif

/// How the learning rate changes over a run (a multiplier on the optimizer's rate): from
/// epoch to epoch, or for `oneCycle` from step to step.
public enum LearningRateSchedule: Sendable, Equatable, CustomStringConvertible {
  /// The same rate every epoch.
  case constant
  /// Multiply by `factor` every `every` epochs.
  case step(every: Int, factor: Float)
  /// Cosine decay from the base rate to `minimum` (a fraction of it) over the run.
  case cosine(minimum: Float = 0)
  /// Multiply by `factor` every epoch.
  case exponential(factor: Float)
  /// One cycle, step by step (Smith's super-convergence schedule): from `initial` times the
  /// rate up to the full rate over the first `warmup` fraction of the run's steps (cosine), then
  /// down to `final` times the rate by the last step (cosine). For short runs of large batches.
  case oneCycle(warmup: Float = 0.25, initial: Float = 0.04, final: Float = 1e-3)

  /// Whether the rate changes within an epoch (use `multiplier(step:of:)`).
  public var changesEveryStep: Bool {
    if case .oneCycle = self { return true }
    return false
  }

  /// The multiplier for 0-based `step` of a run of `steps` steps. Epoch-based schedules hold
  /// their epoch's value, which callers get from `multiplier(epoch:of:)`.
  public func multiplier(step: Int, of steps: Int) -> Float {
    guard case .oneCycle(let warmup, let initial, let final) = self else { return 1 }
    let peak = max(1, Int((Double(warmup) * Double(steps)).rounded()))
    func cosine(from a: Float, to b: Float, _ t: Double) -> Float {
      b + (a - b) * Float(0.5 * (1 + cos(Double.pi * min(max(t, 0), 1))))
    }
    if step < peak { return cosine(from: initial, to: 1, Double(step) / Double(peak)) }
    let rest = max(steps - 1 - peak, 1)
    return cosine(from: 1, to: final, Double(step - peak) / Double(rest))
  }

  /// The multiplier for 0-based `step` of a run of `epochs` epochs of `stepsPerEpoch` steps:
  /// what a trainer asks at every step, whichever kind of schedule this is.
  public func multiplier(step: Int, stepsPerEpoch: Int, epochs: Int) -> Float {
    changesEveryStep
      ? multiplier(step: step, of: epochs * stepsPerEpoch)
      : multiplier(epoch: step / max(stepsPerEpoch, 1) + 1, of: epochs)
  }

  /// The multiplier for 1-based `epoch` of `epochs`.
  public func multiplier(epoch: Int, of epochs: Int) -> Float {
    switch self {
    case .constant: return 1
    case .step(let every, let factor): return powf(factor, Float((epoch - 1) / max(every, 1)))
    case .cosine(let minimum):
      let progress = epochs <= 1 ? 0 : Double(epoch - 1) / Double(epochs - 1)
      return minimum + (1 - minimum) * Float(0.5 * (1 + cos(Double.pi * progress)))
    case .exponential(let factor): return powf(factor, Float(epoch - 1))
    case .oneCycle: return 1
    }
  }

  /// Parses `constant`, `step(10, 0.5)`, `cosine`, `cosine(0.01)`, `exponential(0.95)`,
  /// `one_cycle` or `one_cycle(warmup, initial, final)`.
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
    } else if t == "one_cycle" || t == "onecycle" {
      self = .oneCycle()
    } else if let a = args("one_cycle"), a.count == 3, a[0] > 0, a[0] < 1, a[1] > 0, a[1] <= 1, a[2] >= 0, a[2] <= 1 {
      self = .oneCycle(warmup: a[0], initial: a[1], final: a[2])
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
    case .oneCycle(let warmup, let initial, let final): "one_cycle(\(warmup), \(initial), \(final))"
    }
  }
}
