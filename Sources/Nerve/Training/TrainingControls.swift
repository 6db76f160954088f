// Learning-rate schedules, early stopping and per-layer gradient diagnostics.
import CNerve

#if canImport(Glibc)
  import Glibc
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

/// Stops training when a validation metric stops improving, keeping the best epoch's weights.
public struct EarlyStopping: Sendable, Equatable {
  /// The metric watched.
  public enum Monitor: String, Sendable, Equatable {
    case validationLoss = "valid_loss"
    case validationAccuracy = "valid_accuracy"
  }

  public var monitor: Monitor
  /// Epochs without improvement tolerated before stopping.
  public var patience: Int
  /// The least change that counts as an improvement.
  public var minimumDelta: Double
  /// Put back the parameters of the best epoch when training ends.
  public var restoreBest: Bool

  public init(monitor: Monitor = .validationLoss, patience: Int = 3, minimumDelta: Double = 0, restoreBest: Bool = true) {
    self.monitor = monitor
    self.patience = patience
    self.minimumDelta = minimumDelta
    self.restoreBest = restoreBest
  }

  /// The watched value of an epoch, oriented so that larger is better.
  func score(_ m: EpochMetrics) -> Double? {
    switch monitor {
    case .validationLoss: m.validLoss.map { -$0 }
    case .validationAccuracy: m.validAccuracy
    }
  }
}

/// Per-layer gradient statistics, recorded to see vanishing or exploding gradients.
public struct GradientDiagnostics: Sendable, Equatable {
  /// Also report every this many steps through `Trainer.onGradients` (nil: per epoch only).
  public var everySteps: Int?

  public init(everySteps: Int? = nil) { self.everySteps = everySteps }
}

/// Gradient statistics of one layer: the L2 norm and the mean absolute value of its weight
/// (or batch-norm gamma) and bias (or beta) gradients.
public struct LayerGradientStats: Sendable, Equatable, Codable {
  public var layer: Int
  public var type: String
  public var weightNorm: Double
  public var weightMeanAbs: Double
  public var biasNorm: Double?
  public var biasMeanAbs: Double?

  enum CodingKeys: String, CodingKey {
    case layer, type
    case weightNorm = "weight_norm", weightMeanAbs = "weight_mean_abs"
    case biasNorm = "bias_norm", biasMeanAbs = "bias_mean_abs"
  }
}

/// Gradient statistics at one step.
public struct GradientRecord: Sendable {
  public var epoch: Int
  /// Global step (1-based, counted over the whole run).
  public var step: Int
  public var layers: [LayerGradientStats]
}

/// Accumulates per-step gradient statistics into per-epoch means.
struct GradientRecorder {
  /// Per parameterised layer: index, type, weight group, bias group (offset, count).
  let layers: [(index: Int, type: String, weight: (Int, Int), bias: (Int, Int)?)]
  var sums: [LayerGradientStats]
  var steps = 0

  init(model: Sequential) {
    var list: [(Int, String, (Int, Int), (Int, Int)?)] = []
    for (i, layer) in model.layers.enumerated() where layer.parameterCount > 0 {
      let p = layer.parameters
      let w = (layer.parameterOffset + p[0].offset, p[0].count)
      let b = p.count > 1 ? (layer.parameterOffset + p[1].offset, p[1].count) : nil
      list.append((i, layer.typeName, w, b))
    }
    layers = list.map { (index: $0.0, type: $0.1, weight: $0.2, bias: $0.3) }
    sums = layers.map { LayerGradientStats(layer: $0.index, type: $0.type, weightNorm: 0, weightMeanAbs: 0, biasNorm: $0.bias == nil ? nil : 0, biasMeanAbs: $0.bias == nil ? nil : 0) }
  }

  /// Statistics of the gradients now in `gradients`.
  func measure(_ gradients: UnsafePointer<Float>, context: ComputeContext) throws -> [LayerGradientStats] {
    func stats(_ g: (Int, Int)) throws -> (Double, Double) {
      var squares = 0.0, absolute = 0.0
      try context.check(nerve_sum_squares(context.raw, &squares, gradients + g.0, Int64(g.1)))
      try context.check(nerve_sum_abs(context.raw, &absolute, gradients + g.0, Int64(g.1)))
      return (squares.squareRoot(), absolute / Double(max(g.1, 1)))
    }
    return try layers.map { l in
      let w = try stats(l.weight)
      let b = try l.bias.map(stats)
      return LayerGradientStats(layer: l.index, type: l.type, weightNorm: w.0, weightMeanAbs: w.1, biasNorm: b?.0, biasMeanAbs: b?.1)
    }
  }

  mutating func add(_ s: [LayerGradientStats]) {
    for i in sums.indices {
      sums[i].weightNorm += s[i].weightNorm
      sums[i].weightMeanAbs += s[i].weightMeanAbs
      if let b = s[i].biasNorm { sums[i].biasNorm! += b }
      if let b = s[i].biasMeanAbs { sums[i].biasMeanAbs! += b }
    }
    steps += 1
  }

  /// The epoch's means, and a reset for the next epoch.
  mutating func takeMeans() -> [LayerGradientStats] {
    let n = Double(max(steps, 1))
    let means = sums.map {
      LayerGradientStats(layer: $0.layer, type: $0.type, weightNorm: $0.weightNorm / n, weightMeanAbs: $0.weightMeanAbs / n, biasNorm: $0.biasNorm.map { $0 / n }, biasMeanAbs: $0.biasMeanAbs.map { $0 / n })
    }
    for i in sums.indices {
      sums[i].weightNorm = 0
      sums[i].weightMeanAbs = 0
      if sums[i].biasNorm != nil { sums[i].biasNorm = 0; sums[i].biasMeanAbs = 0 }
    }
    steps = 0
    return means
  }
}

