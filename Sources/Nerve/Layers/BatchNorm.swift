// BatchNorm: batch normalisation of dense features or image channels.
import CNerve

/// Normalises each feature (the last dimension: a dense layer's units or an image's channels)
/// with the batch's statistics while training and with running averages in inference, then
/// scales by `gamma` and shifts by `beta`.
///
/// `momentum` has Keras's meaning: running = momentum * running + (1 - momentum) * batch.
public final class BatchNorm: Layer {
  public let momentum: Float
  public let epsilon: Float

  /// - Parameters:
  ///   - momentum: weight of the old running average (Keras's default 0.99).
  ///   - epsilon: added to the variance (Keras's default 0.001).
  public init(momentum: Float = 0.99, epsilon: Float = 1e-3) {
    self.momentum = momentum
    self.epsilon = epsilon
  }

  public override var typeName: String { "batchnorm" }
  var channels: Int { inputShape.last ?? 0 }
  override var needsWholeBatch: Bool { true }

  override func build(inputShape: [Int]) throws -> [Int] {
    guard momentum >= 0, momentum <= 1 else {
      throw NerveError(.badValue, at: "batchnorm", "momentum must be in [0, 1], got \(momentum)")
    }
    guard epsilon > 0, epsilon.isFinite else {
      throw NerveError(.badValue, at: "batchnorm", "epsilon must be positive, got \(epsilon)")
    }
    return inputShape
  }

  override var parameters: [ParameterInfo] {
    [
      ParameterInfo(name: "gamma", shape: [channels], offset: 0, initializer: .constant(1), fanIn: 1, fanOut: 1, decay: 0, isWeight: false),
      ParameterInfo(name: "beta", shape: [channels], offset: channels, initializer: .zeros, fanIn: 1, fanOut: 1, decay: 0, isWeight: false),
    ]
  }

  override var stateTensors: [(name: String, shape: [Int], offset: Int, count: Int)] {
    [("running_mean", [channels], 0, channels), ("running_var", [channels], channels, channels)]
  }

  override func resetState(_ state: UnsafeMutablePointer<Float>) {
    state.update(repeating: 0, count: channels)
    (state + channels).update(repeating: 1, count: channels)
  }

  /// The batch mean and 1/std of the last training forward, for backward.
  override func scratchCount(batch: Int) -> Int { 2 * channels }

  var rows: (Int) -> Int64 { { Int64($0 * self.inputShape.dropLast().reduce(1, *)) } }

  override func forward(_ io: LayerIO) throws {
    let c = channels, gamma = io.parameters, beta = io.parameters + c
    if io.training {
      try io.check(
        nerve_batchnorm_forward_train(
          io.ctx, io.output, io.scratch, io.scratch + c, io.state, io.state + c, io.input, gamma, beta,
          rows(io.batch), Int64(c), momentum, epsilon))
    } else {
      try io.check(
        nerve_batchnorm_forward_infer(
          io.ctx, io.output, io.input, gamma, beta, io.state, io.state + c, rows(io.batch), Int64(c), epsilon))
    }
  }

  /// The training forward's statistics and running averages without its output, for a max pool
  /// that normalises as it reads (`MaxPool2D.forwardNormalized`): the same statistics.
  func forwardStatistics(_ io: LayerIO) throws {
    let c = channels, gamma = io.parameters, beta = io.parameters + c
    try io.check(
      nerve_batchnorm_forward_train(
        io.ctx, nil, io.scratch, io.scratch + c, io.state, io.state + c, io.input, gamma, beta,
        rows(io.batch), Int64(c), momentum, epsilon))
  }

  /// What the inference forward normalises by, into the scratch as `forwardStatistics` leaves
  /// the batch's: the running mean, and 1 / sqrt(running variance + epsilon) computed as
  /// nerve_batchnorm_forward_infer computes it (in double, then rounded once), so a max pool
  /// that normalises as it reads gives the inference forward's bits.
  func inferenceStatistics(_ io: LayerIO) {
    let c = channels
    for k in 0..<c {
      io.scratch[k] = io.state[k]
      io.scratch[c + k] = Float(1.0 / (Double(io.state[c + k]) + Double(epsilon)).squareRoot())
    }
  }

  override func backward(_ io: LayerIO) throws {
    let c = channels
    try io.check(
      nerve_batchnorm_backward(
        io.ctx, io.inputGradient, io.parameterGradients, io.parameterGradients.map { $0 + c },
        io.outputGradient, io.input, io.parameters, io.scratch, io.scratch + c, rows(io.batch), Int64(c)))
  }

  /// `backward` with the input gradient also taken through the ReLU before this layer (the
  /// layer's input is that ReLU's output), in the same pass and with the same bits.
  func backwardThroughRelu(_ io: LayerIO) throws {
    let c = channels
    try io.check(
      nerve_batchnorm_backward_relu(
        io.ctx, io.inputGradient, io.parameterGradients, io.parameterGradients.map { $0 + c },
        io.outputGradient, io.input, io.parameters, io.scratch, io.scratch + c, rows(io.batch), Int64(c)))
  }

  /// `backward` (through the ReLU before this layer if `relu`) from the gradient of `pool`, the
  /// max pool that read this layer's output: its output gradient `pooledGradient` and the
  /// winners in its `poolScratch`, so the gradient between them is never written. The same bits.
  func backward(
    _ io: LayerIO, pooledBy pool: MaxPool2D, pooledGradient: UnsafeMutablePointer<Float>,
    poolScratch: UnsafeMutablePointer<Float>, relu: Bool
  ) throws {
    let c = channels, s = pool.geometry.sizes
    try pool.withArgmax(in: poolScratch, batch: io.batch) { argmax in
      try io.check(
        nerve_batchnorm_backward_maxpool2d(
          io.ctx, io.inputGradient, io.parameterGradients, io.parameterGradients.map { $0 + c }, pooledGradient,
          argmax, io.input, io.parameters, io.scratch, io.scratch + c, Int64(io.batch), s[0], s[1], s[2], s[3],
          s[4], s[5], s[6], s[7], s[8], s[9], s[10], relu ? 1 : 0))
    }
  }

  override var record: LayerRecord {
    var r = LayerRecord(type: typeName)
    r.momentum = momentum
    r.epsilon = epsilon
    return r
  }
}
