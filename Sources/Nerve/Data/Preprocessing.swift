// Preprocessing: how raw pixel values become model inputs; stored with a saved model.

/// The transformation from raw values (bytes 0...255, digit intensities 0...16) to model
/// inputs: `x * scale`, then, if fitted, `(x - mean) / std` per feature.
///
/// A model remembers its preprocessing, so `nerve predict` prepares new inputs exactly as the
/// training data was prepared.
public struct Preprocessing: Codable, Equatable, Sendable {
  /// Multiplier applied to raw values first (1/255 maps bytes to [0, 1]).
  public var scale: Float
  /// Per-feature mean subtracted after scaling (standardisation), or nil.
  public var mean: [Float]?
  /// Per-feature standard deviation divided by after subtracting the mean, or nil.
  public var std: [Float]?

  public init(scale: Float = 1, mean: [Float]? = nil, std: [Float]? = nil) {
    self.scale = scale
    self.mean = mean
    self.std = std
  }

  /// Leaves values unchanged.
  public static let none = Preprocessing()
  /// Bytes to [0, 1].
  public static let unitScale = Preprocessing(scale: 1 / 255)

  /// Standardisation fitted on `data` only (never on validation or test data): per feature,
  /// the mean and standard deviation after `scale`. Constant features get std 1.
  public static func standardization(fittedOn data: Dataset, scale: Float = 1) -> Preprocessing {
    let n = data.count, d = data.sampleSize
    var mean = [Double](repeating: 0, count: d), sq = [Double](repeating: 0, count: d)
    data.features.withUnsafeBufferPointer { x in
      for i in 0..<n {
        for j in 0..<d { mean[j] += Double(x[i * d + j] * scale) }
      }
      for j in 0..<d { mean[j] /= Double(max(n, 1)) }
      for i in 0..<n {
        for j in 0..<d {
          let v = Double(x[i * d + j] * scale) - mean[j]
          sq[j] += v * v
        }
      }
    }
    let std = sq.map { s -> Float in
      let v = (s / Double(max(n, 1))).squareRoot()
      return v > 1e-8 ? Float(v) : 1
    }
    return Preprocessing(scale: scale, mean: mean.map(Float.init), std: std)
  }

  /// Whether it leaves values unchanged (no scaling, no standardisation).
  public var isIdentity: Bool { scale == 1 && (mean == nil || std == nil) }

  /// Applies the transformation in place to [samples, features...]. The identity touches
  /// nothing (writing would copy a tensor that shares its storage).
  public func apply(to features: inout Tensor) throws {
    let d = features.rank >= 2 ? features.shape.dropFirst().reduce(1, *) : features.count
    if let mean, mean.count != d {
      throw NerveError(
        .shapeMismatch, at: "preprocessing",
        "standardisation was fitted on \(mean.count) features but the data has \(d)")
    }
    if let std, std.count != d {
      throw NerveError(
        .shapeMismatch, at: "preprocessing",
        "standardisation was fitted on \(std.count) features but the data has \(d)")
    }
    if isIdentity { return }
    let scale = self.scale, mean = self.mean, std = self.std
    features.withUnsafeMutableBufferPointer { x in
      let n = d == 0 ? 0 : x.count / d
      if scale != 1 { for i in x.indices { x[i] *= scale } }
      if let mean, let std {
        for i in 0..<n {
          for j in 0..<d { x[i * d + j] = (x[i * d + j] - mean[j]) / std[j] }
        }
      }
    }
  }
}
