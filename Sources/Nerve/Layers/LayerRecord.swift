// LayerRecord: a layer as data, the form configs and model files describe layers in.
import Foundation

/// A layer described by its fields, as in a config file's `[[layer]]` table or a model file's
/// architecture. Unused fields are nil.
public struct LayerRecord: Codable, Equatable, Sendable {
  /// `dense`, `sigmoid`, `tanh`, `relu`, `lecun_tanh`, `identity`, `softmax`, `conv2d`,
  /// `maxpool2d`, `avgpool2d`, `batchnorm`, `dropout`, `flatten`.
  public var type: String
  public var units: Int?
  public var activation: String?
  public var weights: String?
  public var bias: String?
  public var useBias: Bool?
  public var l2: Float?
  public var filters: Int?
  public var kernel: [Int]?
  public var stride: [Int]?
  public var padding: String?
  public var pool: [Int]?
  public var rate: Float?
  public var momentum: Float?
  public var epsilon: Float?

  public init(type: String) { self.type = type }

  enum CodingKeys: String, CodingKey {
    case type, units, activation, weights, bias, l2, filters, kernel, stride, padding, pool, rate
    case momentum, epsilon
    case useBias = "use_bias"
  }

  /// The layer this record stands for.
  /// - Parameter location: where the record came from, for error messages.
  public func makeLayer(at location: String) throws -> Layer {
    func need<T>(_ value: T?, _ field: String) throws -> T {
      guard let value else {
        throw NerveError(.badValue, at: location, "\(type) layer needs '\(field)'")
      }
      return value
    }
    func initializer(_ text: String?, _ field: String, _ fallback: Initializer) throws
      -> Initializer
    {
      guard let text else { return fallback }
      do { return try Initializer(parsing: text) } catch let e as NerveError {
        throw NerveError(.badValue, at: "\(location).\(field)", e.message)
      }
    }
    let kind = type.lowercased()
    switch kind {
    case "dense", "linear":
      return Dense(
        try need(units, "units"), activation: try activationValue(location),
        weights: try initializer(weights, "weights", .xavierUniform),
        bias: try initializer(bias, "bias", .zeros), useBias: useBias ?? true, l2: l2 ?? 0)
    case "conv2d", "conv", "convolution2d":
      let k = try pair(kernel, "kernel", location) ?? (3, 3), st = try pair(stride, "stride", location) ?? (1, 1)
      return Conv2D(
        try need(filters, "filters"), kernelSize: k, strides: st,
        padding: try paddingValue(location, .valid), activation: try activationValue(location),
        weights: try initializer(weights, "weights", .xavierUniform),
        bias: try initializer(bias, "bias", .zeros), useBias: useBias ?? true, l2: l2 ?? 0)
    case "maxpool2d", "maxpool", "max_pool2d", "avgpool2d", "avgpool", "average_pool2d":
      let p = try pair(pool, "pool", location) ?? (2, 2)
      let st = try pair(stride, "stride", location)
      let padding = try paddingValue(location, .valid)
      return kind.hasPrefix("max")
        ? MaxPool2D(poolSize: p, strides: st, padding: padding)
        : AvgPool2D(poolSize: p, strides: st, padding: padding)
    case "batchnorm", "batch_norm", "batchnormalization":
      return BatchNorm(momentum: momentum ?? 0.99, epsilon: epsilon ?? 1e-3)
    case "dropout":
      return Dropout(try need(rate, "rate"))
    case "flatten":
      return Flatten()
    default:
      if let a = Activation(name: kind) { return a.layer }
      throw NerveError(
        .badValue, at: "\(location).type",
        "unknown layer type '\(type)'; expected dense, an activation (\(Activation.allCases.map(\.rawValue).joined(separator: ", "))), conv2d, maxpool2d, avgpool2d, batchnorm, dropout or flatten"
      )
    }
  }
}

extension LayerRecord {
  /// A [height, width] pair as a tuple (nil if absent).
  func pair(_ values: [Int]?, _ field: String, _ location: String) throws -> (Int, Int)? {
    guard let values else { return nil }
    guard values.count == 2 else {
      throw NerveError(.badValue, at: "\(location).\(field)", "expected [height, width], got \(values)")
    }
    return (values[0], values[1])
  }

  func activationValue(_ location: String) throws -> Activation {
    guard let name = activation else { return .identity }
    guard let a = Activation(name: name) else {
      throw NerveError(
        .badValue, at: "\(location).activation",
        "unknown activation '\(name)'; expected one of \(Activation.allCases.map(\.rawValue).joined(separator: ", "))")
    }
    return a
  }

  func paddingValue(_ location: String, _ fallback: Padding) throws -> Padding {
    guard let text = padding else { return fallback }
    guard let p = Padding(parsing: text) else {
      throw NerveError(.badValue, at: "\(location).padding", "expected same, valid or a number of pixels, got '\(text)'")
    }
    return p
  }
}
