// Per-layer gradient diagnostics: norms and mean absolute values of every layer's gradients,
// per epoch and every N steps, to see gradients vanish or explode.
import CNerve

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

  public init(layer: Int, type: String, weightNorm: Double, weightMeanAbs: Double, biasNorm: Double?, biasMeanAbs: Double?) {
    self.layer = layer
    self.type = type
    self.weightNorm = weightNorm
    self.weightMeanAbs = weightMeanAbs
    self.biasNorm = biasNorm
    self.biasMeanAbs = biasMeanAbs
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    layer = try c.decode(Int.self, forKey: .layer)
    type = try c.decode(String.self, forKey: .type)
    weightNorm = try c.decodeFinite(.weightNorm)
    weightMeanAbs = try c.decodeFinite(.weightMeanAbs)
    biasNorm = try c.decodeIfPresent(Double.self, forKey: .biasNorm)
    biasMeanAbs = try c.decodeIfPresent(Double.self, forKey: .biasMeanAbs)
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(layer, forKey: .layer)
    try c.encode(type, forKey: .type)
    try c.encodeFinite(weightNorm, forKey: .weightNorm)
    try c.encodeFinite(weightMeanAbs, forKey: .weightMeanAbs)
    try c.encodeFinite(biasNorm, forKey: .biasNorm)
    try c.encodeFinite(biasMeanAbs, forKey: .biasMeanAbs)
  }
}

/// Gradient statistics at one step.
public struct GradientRecord: Sendable, Equatable, Codable {
  public var epoch: Int
  /// Global step (1-based, counted over the whole run).
  public var step: Int
  public var layers: [LayerGradientStats]

  public init(epoch: Int, step: Int, layers: [LayerGradientStats]) {
    self.epoch = epoch
    self.step = step
    self.layers = layers
  }

  enum CodingKeys: String, CodingKey {
    case epoch, step
    case layers = "gradients"
  }
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
