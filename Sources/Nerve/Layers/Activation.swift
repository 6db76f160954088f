// Activation functions as layers: element-wise activations and the row-wise softmax.
import CNerve

/// The activation functions Nerve knows.
public enum Activation: String, Sendable, CaseIterable, Codable {
  /// No change.
  case identity
  /// 1 / (1 + e^-x)
  case sigmoid
  /// tanh(x)
  case tanh
  /// max(x, 0)
  case relu
  /// LeCun's scaled tanh, 1.7159 tanh(2x/3) + 0.01x.
  case lecunTanh = "lecun_tanh"
  /// exp(x_i) / sum_j exp(x_j) over each sample's outputs.
  case softmax

  /// Parses a name as configs write it (`sigmoid`, `relu`, `lecun_tanh`, ...).
  public init?(name: String) {
    let key = name.lowercased().replacingOccurrences(of: "-", with: "_")
    switch key {
    case "linear", "none": self = .identity
    case "lecuntanh": self = .lecunTanh
    default: self.init(rawValue: key)
    }
  }

  var kernel: nerve_activation {
    switch self {
    case .identity, .softmax: NERVE_ACTIVATION_IDENTITY
    case .sigmoid: NERVE_ACTIVATION_SIGMOID
    case .tanh: NERVE_ACTIVATION_TANH
    case .relu: NERVE_ACTIVATION_RELU
    case .lecunTanh: NERVE_ACTIVATION_LECUN_TANH
    }
  }

  /// The layer applying this activation.
  public var layer: Layer { self == .softmax ? Softmax() : ActivationLayer(self) }

  /// Whether the derivative comes from the output alone, so that a dense layer's kernels can
  /// apply the function as they write its input (forward) or take a gradient on through it
  /// (backward) without the values before it: sigmoid, tanh and ReLU.
  var derivativeFromOutput: Bool {
    switch self {
    case .sigmoid, .tanh, .relu: true
    case .identity, .lecunTanh, .softmax: false
    }
  }
}

/// An element-wise activation as a layer of its own.
public final class ActivationLayer: Layer {
  /// The function applied.
  public let function: Activation

  /// A layer applying `function` element-wise (use `Softmax` for softmax).
  public init(_ function: Activation) {
    precondition(function != .softmax, "use Softmax() for softmax")
    self.function = function
  }

  public override var typeName: String { function.rawValue }

  override func forward(_ io: LayerIO) throws {
    try io.check(
      nerve_activation_forward(
        io.ctx, function.kernel, io.output, io.input, Int64(io.batch * inputShape.reduce(1, *))))
  }

  override func backward(_ io: LayerIO) throws {
    guard let dx = io.inputGradient else { return }
    try io.check(
      nerve_activation_backward(
        io.ctx, function.kernel, dx, io.outputGradient, io.input, io.output,
        Int64(io.batch * inputShape.reduce(1, *))))
  }
}

/// Softmax over each sample's values: a probability per class.
///
/// Followed by a cross-entropy loss, the trainer fuses the two (it never differentiates the
/// softmax on its own, which is both faster and more accurate).
public final class Softmax: Layer {
  public override init() {}

  public override var typeName: String { "softmax" }

  override func build(inputShape: [Int]) throws -> [Int] {
    guard inputShape.count == 1 else {
      throw NerveError(
        .shapeMismatch, at: "softmax", "expects a flat input but gets shape \(inputShape)")
    }
    return inputShape
  }

  override func forward(_ io: LayerIO) throws {
    try io.check(
      nerve_softmax_forward(io.ctx, io.output, io.input, Int64(io.batch), Int64(inputShape[0])))
  }

  override func backward(_ io: LayerIO) throws {
    guard let dx = io.inputGradient else { return }
    try io.check(
      nerve_softmax_backward(
        io.ctx, dx, io.outputGradient, io.output, Int64(io.batch), Int64(inputShape[0])))
  }
}
