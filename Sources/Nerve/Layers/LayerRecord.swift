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
      let k = kernel ?? [3, 3], st = stride ?? [1, 1]
      return Conv2D(
        try need(filters, "filters"), kernelSize: (k[0], k[1]), strides: (st[0], st[1]),
        padding: try paddingValue(location, .valid), activation: try activationValue(location),
        weights: try initializer(weights, "weights", .xavierUniform),
        bias: try initializer(bias, "bias", .zeros), useBias: useBias ?? true, l2: l2 ?? 0)
    case "maxpool2d", "maxpool", "max_pool2d", "avgpool2d", "avgpool", "average_pool2d":
      let p = pool ?? [2, 2]
      let st = stride.map { ($0[0], $0[1]) }
      let padding = try paddingValue(location, .valid)
      return kind.hasPrefix("max")
        ? MaxPool2D(poolSize: (p[0], p[1]), strides: st, padding: padding)
        : AvgPool2D(poolSize: (p[0], p[1]), strides: st, padding: padding)
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

extension Initializer {
  /// Parses an initialiser as configs write it: `zeros`, `constant(0.5)`,
  /// `uniform(-0.1, 0.1)`, `gaussian(0.01)`, `xavier_normal` (or `glorot_normal`),
  /// `xavier_uniform`, `he_normal`, `he_uniform`, `lecun_normal`, `lecun_uniform`.
  public init(parsing text: String) throws {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    var name = trimmed
    var args: [Float] = []
    if let open = trimmed.firstIndex(of: "("), trimmed.hasSuffix(")") {
      name = String(trimmed[..<open]).trimmingCharacters(in: .whitespaces)
      let inner = trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)]
      for part in inner.split(separator: ",") {
        let p = part.trimmingCharacters(in: .whitespaces).replacingOccurrences(
          of: "std=", with: "")
        guard let v = Float(p), v.isFinite else {
          throw NerveError(.badValue, "initializer '\(text)': '\(p)' is not a number")
        }
        args.append(v)
      }
    }
    func arity(_ n: Int) throws {
      guard args.count == n else {
        throw NerveError(
          .badValue, "initializer '\(text)': \(name) takes \(n) argument\(n == 1 ? "" : "s")")
      }
    }
    switch name.replacingOccurrences(of: "glorot", with: "xavier").replacingOccurrences(
      of: "-", with: "_")
    {
    case "zeros", "zero": try arity(0); self = .zeros
    case "constant": try arity(1); self = .constant(args[0])
    case "uniform":
      try arity(2)
      guard args[0] <= args[1] else {
        throw NerveError(.badValue, "initializer '\(text)': low must not exceed high")
      }
      self = .uniform(low: args[0], high: args[1])
    case "gaussian", "normal":
      try arity(1)
      guard args[0] >= 0 else {
        throw NerveError(.badValue, "initializer '\(text)': std must be >= 0")
      }
      self = .gaussian(std: args[0])
    case "xavier_normal": try arity(0); self = .xavierNormal
    case "xavier_uniform": try arity(0); self = .xavierUniform
    case "he_normal": try arity(0); self = .heNormal
    case "he_uniform": try arity(0); self = .heUniform
    case "lecun_normal": try arity(0); self = .lecunNormal
    case "lecun_uniform": try arity(0); self = .lecunUniform
    default:
      throw NerveError(
        .badValue,
        "unknown initializer '\(text)'; expected zeros, constant(v), uniform(low, high), gaussian(std), xavier_normal, xavier_uniform, he_normal, he_uniform, lecun_normal or lecun_uniform"
      )
    }
  }
}
