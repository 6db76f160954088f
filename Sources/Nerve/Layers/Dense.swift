// Dense: the fully connected layer, y = x . W + b.
import CNerve

/// A fully connected layer: `y = x · W + b`, with `W` of shape [inputs, units].
///
/// ```swift
/// Dense(30, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
/// ```
/// The input size is taken from the previous layer. With `activation`, the layer's output is
/// the activation of `x · W + b` (still one layer).
public final class Dense: Layer {
  /// Number of outputs.
  public let units: Int
  /// Activation applied to the layer's output, as part of the layer.
  public let activation: Activation
  /// How the weights start.
  public let weightInitializer: Initializer
  /// How the biases start.
  public let biasInitializer: Initializer
  /// Whether the layer has a bias.
  public let useBias: Bool
  /// Keras-style L2 penalty `l2 * sum(W^2)` added to the loss (weights only).
  public let l2: Float

  /// Creates a dense layer.
  /// - Parameters:
  ///   - units: number of outputs.
  ///   - activation: applied after the layer; `.identity` for none.
  ///   - weights: weight initialiser (default Glorot uniform, as in Keras).
  ///   - bias: bias initialiser (default zeros).
  ///   - useBias: false for a layer without bias.
  ///   - l2: L2 penalty coefficient on the weights (Keras `kernel_regularizer=l2(...)`).
  public init(
    _ units: Int, activation: Activation = .identity, weights: Initializer = .xavierUniform,
    bias: Initializer = .zeros, useBias: Bool = true, l2: Float = 0
  ) {
    self.units = units
    self.activation = activation
    self.weightInitializer = weights
    self.biasInitializer = bias
    self.useBias = useBias
    self.l2 = l2
  }

  public override var typeName: String { "dense" }
  override var ownActivation: Activation { activation }
  var inputs: Int { inputShape.first ?? 0 }

  override func build(inputShape: [Int]) throws -> [Int] {
    guard units >= 1 else {
      throw NerveError(.badValue, at: "dense", "units must be at least 1, got \(units)")
    }
    guard l2 >= 0, l2.isFinite else {
      throw NerveError(.badValue, at: "dense", "l2 must be a finite number >= 0, got \(l2)")
    }
    guard inputShape.count == 1 else {
      throw NerveError(
        .shapeMismatch, at: "dense",
        "expects a flat input but gets shape \(inputShape); add Flatten() before it")
    }
    _ = try Sizes.product([inputShape[0] + 1, units], of: "a weight matrix and bias", at: "dense")
    return [units]
  }

  override var parameters: [ParameterInfo] {
    let i = inputs
    var list = [
      ParameterInfo(
        name: "weight", shape: [i, units], offset: 0, initializer: weightInitializer, fanIn: i,
        fanOut: units, decay: 2 * l2, isWeight: true)
    ]
    if useBias {
      list.append(
        ParameterInfo(
          name: "bias", shape: [units], offset: i * units, initializer: biasInitializer,
          fanIn: i, fanOut: units, decay: 0, isWeight: false))
    }
    return list
  }

  override func forward(_ io: LayerIO) throws {
    let w = io.parameters
    if let pixels = io.pixelInput {
      return try io.check(
        nerve_dense_forward_pixels(
          io.ctx, io.output, pixels.bytes, pixels.scale, w, useBias ? w + inputs * units : nil,
          Int64(io.batch), Int64(inputs), Int64(units)))
    }
    if let listed = io.sparseInput {
      return try io.check(
        nerve_dense_forward_sparse(
          io.ctx, io.output, listed.rows.raw, Int64(listed.first), w, useBias ? w + inputs * units : nil,
          Int64(io.batch), Int64(inputs), Int64(units)))
    }
    try io.check(
      nerve_dense_forward(
        io.ctx, io.output, io.input, w, useBias ? w + inputs * units : nil, Int64(io.batch),
        Int64(inputs), Int64(units)))
  }

  /// `forward` with the output taken through the layer's own activation (which
  /// `derivativeFromOutput`) row by row as the product leaves it: `io.output` is the
  /// activation's output, the same values as the two passes.
  func forwardThroughActivation(_ io: LayerIO) throws {
    let w = io.parameters, b = useBias ? w + inputs * units : nil, kind = activation.kernel
    let n = Int64(io.batch), i = Int64(inputs), o = Int64(units)
    if let pixels = io.pixelInput {
      // No joined kernel reads bytes: the two calls.
      try io.check(nerve_dense_forward_pixels(io.ctx, io.output, pixels.bytes, pixels.scale, w, b, n, i, o))
      return try io.check(nerve_activation_forward(io.ctx, kind, io.output, io.output, n * o))
    }
    if let listed = io.sparseInput {
      return try io.check(
        nerve_dense_forward_sparse_activation(io.ctx, kind, io.output, listed.rows.raw, Int64(listed.first), w, b, n, i, o))
    }
    try io.check(nerve_dense_forward_activation(io.ctx, kind, io.output, io.input, w, b, n, i, o))
  }

  /// `backward` (or `backwardUpdate` with plain SGD) with the input gradient taken on through
  /// `inputActivation`, the activation of the layer before, whose output is this layer's input:
  /// `io.inputGradient` is the gradient of that activation's input, the same values as this
  /// layer's backward followed by the activation's.
  func backward(_ io: LayerIO, throughInput inputActivation: Activation, step: FusedStep?) throws {
    let w = io.parameters, g = io.parameterGradients, kind = inputActivation.kernel
    let n = Int64(io.batch), i = Int64(inputs), o = Int64(units)
    if case .sgd(let lr) = step {
      return try io.check(
        nerve_dense_backward_sgd_activation(
          io.ctx, kind, io.inputGradient, w, useBias ? w + inputs * units : nil, io.outputGradient, io.input, n, i, o, lr))
    }
    try io.check(
      nerve_dense_backward_activation(
        io.ctx, kind, io.inputGradient, g, useBias ? g.map { $0 + inputs * units } : nil, io.outputGradient,
        io.input, w, n, i, o))
  }

  override func backward(_ io: LayerIO) throws {
    let w = io.parameters
    let g = io.parameterGradients
    if let listed = io.sparseInput, io.inputGradient == nil {
      return try io.check(
        nerve_dense_backward_sparse(
          io.ctx, g, useBias ? g.map { $0 + inputs * units } : nil, listed.rows.raw, Int64(listed.first),
          io.outputGradient, Int64(io.batch), Int64(inputs), Int64(units)))
    }
    try io.check(
      nerve_dense_backward(
        io.ctx, io.inputGradient, g, useBias ? g.map { $0 + inputs * units } : nil,
        io.outputGradient, io.input, w, Int64(io.batch), Int64(inputs), Int64(units)))
  }

  override func supportsFused(_ step: FusedStep) -> Bool {
    switch step {
    case .sgd: l2 == 0  // the fused descent step has no decay term
    case .adam: true
    }
  }

  override func backwardUpdate(_ io: LayerIO, step: FusedStep) throws {
    let w = io.parameters, b = useBias ? w + inputs * units : nil
    let n = Int64(io.batch), i = Int64(inputs), o = Int64(units)
    switch step {
    case .sgd(let lr):
      try io.check(nerve_dense_backward_sgd(io.ctx, io.inputGradient, w, b, io.outputGradient, io.input, n, i, o, lr))
    case .adam(let adam, let lr, let t, let m, let v):
      let at = parameterOffset, bias = at + inputs * units
      let coupled = 2 * l2 + (adam is AdamW ? 0 : adam.weightDecay)
      let decoupled: Float = adam is AdamW ? adam.weightDecay : 0
      try io.check(
        nerve_dense_backward_adam(
          io.ctx, io.inputGradient, w, b, m + at, v + at, useBias ? m + bias : nil, useBias ? v + bias : nil,
          io.outputGradient, io.input, n, i, o, lr, adam.beta1, adam.beta2, adam.epsilon, coupled, decoupled, Int64(t)))
    }
  }

  override func backwardInput(_ io: LayerIO, fused: FusedStep?) throws {
    guard case .adam = fused else { return try super.backwardInput(io, fused: fused) }
    try io.check(
      nerve_dense_backward_adam_input(
        io.ctx, io.inputGradient, io.outputGradient, io.parameters, Int64(io.batch), Int64(inputs), Int64(units)))
  }

  /// What nerve_dense_backward_adam does once it has the gradient (its path for large
  /// batches, which gives the same bytes as its fused tiles): Adam on the bias without decay,
  /// then on the weights. SGD's fused step needs no second half (DataParallelPass).
  override func applyFusedStep(
    _ step: FusedStep, parameters w: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
    context: ComputeContext
  ) throws {
    guard case .adam(let adam, let lr, let t, let m, let v) = step else { return }
    let at = parameterOffset, weights = inputs * units
    let coupled = 2 * l2 + (adam is AdamW ? 0 : adam.weightDecay)
    let decoupled: Float = adam is AdamW ? adam.weightDecay : 0
    if useBias {
      try context.check(
        nerve_adam_step(
          context.raw, w + weights, m + at + weights, v + at + weights, gradients + weights, Int64(units), lr,
          adam.beta1, adam.beta2, adam.epsilon, 0, 0, Int64(t)))
    }
    try context.check(
      nerve_adam_step(
        context.raw, w, m + at, v + at, gradients, Int64(weights), lr, adam.beta1, adam.beta2, adam.epsilon,
        coupled, decoupled, Int64(t)))
  }

  override var record: LayerRecord {
    var r = LayerRecord(type: typeName)
    r.units = units
    r.activation = activation == .identity ? nil : activation.rawValue
    r.useBias = useBias ? nil : false
    r.l2 = l2 == 0 ? nil : l2
    return r
  }
}
