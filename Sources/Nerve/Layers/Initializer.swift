// Initializer: how a layer's weights and biases get their first values.

#if canImport(Glibc)
  import Glibc
#endif

/// How parameters are initialised.
///
/// `fanIn` and `fanOut` are the number of inputs and outputs of the unit the parameter feeds
/// (for a convolution: channels times kernel area).
public enum Initializer: Sendable, Equatable, CustomStringConvertible {
  /// All zeros.
  case zeros
  /// Every element equal to a value.
  case constant(Float)
  /// Uniform in [low, high].
  case uniform(low: Float, high: Float)
  /// Normal with mean 0 and the given standard deviation (0 gives all zeros).
  case gaussian(std: Float)
  /// Glorot/Xavier normal: std = sqrt(2 / (fanIn + fanOut)).
  case xavierNormal
  /// Glorot/Xavier uniform: limit = sqrt(6 / (fanIn + fanOut)).
  case xavierUniform
  /// He normal: std = sqrt(2 / fanIn).
  case heNormal
  /// He uniform: limit = sqrt(6 / fanIn).
  case heUniform
  /// LeCun normal: std = sqrt(1 / fanIn).
  case lecunNormal
  /// LeCun uniform: limit = sqrt(3 / fanIn).
  case lecunUniform
  /// Exactly these values, row-major (the labs set weights by hand).
  case values([Float])

  /// Fills `buffer` for a parameter with the given fans.
  func fill(
    _ buffer: UnsafeMutableBufferPointer<Float>, fanIn: Int, fanOut: Int,
    using rng: inout SeededGenerator
  ) throws {
    let fi = Double(max(fanIn, 1)), fo = Double(max(fanOut, 1))
    func uniform(_ low: Double, _ high: Double) {
      for i in buffer.indices { buffer[i] = Float(low + (high - low) * rng.nextUnit()) }
    }
    func normal(_ std: Double) {
      for i in buffer.indices { buffer[i] = std == 0 ? 0 : Float(std * rng.nextGaussian()) }
    }
    switch self {
    case .zeros: buffer.update(repeating: 0)
    case .constant(let v): buffer.update(repeating: v)
    case .uniform(let low, let high): uniform(Double(low), Double(high))
    case .gaussian(let std): normal(Double(std))
    case .xavierNormal: normal((2 / (fi + fo)).squareRoot())
    case .xavierUniform: let l = (6 / (fi + fo)).squareRoot(); uniform(-l, l)
    case .heNormal: normal((2 / fi).squareRoot())
    case .heUniform: let l = (6 / fi).squareRoot(); uniform(-l, l)
    case .lecunNormal: normal((1 / fi).squareRoot())
    case .lecunUniform: let l = (3 / fi).squareRoot(); uniform(-l, l)
    case .values(let values):
      guard values.count == buffer.count else {
        throw NerveError(
          .shapeMismatch, "explicit initial values: expected \(buffer.count) values, got \(values.count)")
      }
      for i in buffer.indices { buffer[i] = values[i] }
    }
  }

  public var description: String {
    switch self {
    case .zeros: "zeros"
    case .constant(let v): "constant(\(v))"
    case .uniform(let l, let h): "uniform(\(l), \(h))"
    case .gaussian(let s): "gaussian(std: \(s))"
    case .xavierNormal: "xavier_normal"
    case .xavierUniform: "xavier_uniform"
    case .heNormal: "he_normal"
    case .heUniform: "he_uniform"
    case .lecunNormal: "lecun_normal"
    case .lecunUniform: "lecun_uniform"
    case .values(let v): "values(\(v.count))"
    }
  }
}
