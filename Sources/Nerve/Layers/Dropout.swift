// Dropout and Flatten: layers that reshape or mask without parameters.
import CNerve

/// Inverted dropout: in training, each value is dropped with probability `rate` (Keras's
/// meaning) and the rest are scaled by 1 / (1 - rate); in inference it passes values through.
/// The choices come from the training seed, the step and the value's index, so a run is
/// reproducible at any thread count.
public final class Dropout: Layer {
  public let rate: Float

  /// - Parameter rate: the fraction of values dropped, in [0, 1).
  public init(_ rate: Float) { self.rate = rate }

  public override var typeName: String { "dropout" }

  override func build(inputShape: [Int]) throws -> [Int] {
    guard rate >= 0, rate < 1 else {
      throw NerveError(.badValue, at: "dropout", "rate must be in [0, 1), got \(rate)")
    }
    return inputShape
  }

  /// The mask of the last training forward.
  override func scratchCount(batch: Int) -> Int { batch * inputShape.reduce(1, *) }

  override func forward(_ io: LayerIO) throws {
    let n = io.batch * inputShape.reduce(1, *)
    if io.training {
      // Element indices count from the batch's first row, so a batch split into chunks or
      // across ranks draws the mask the whole batch would.
      let first = io.firstRow * inputShape.reduce(1, *)
      try io.check(
        nerve_dropout_forward_at(io.ctx, io.output, io.scratch, io.input, Int64(n), rate, io.stepSeed, Int64(first)))
    } else {
      io.output.update(from: io.input, count: n)
    }
  }

  override func backward(_ io: LayerIO) throws {
    guard let dx = io.inputGradient, let dy = io.outputGradient else { return }
    try io.check(nerve_dropout_backward(io.ctx, dx, dy, io.scratch, Int64(io.batch * inputShape.reduce(1, *))))
  }

  override var record: LayerRecord {
    var r = LayerRecord(type: typeName)
    r.rate = rate
    return r
  }
}

/// Flattens each sample to one dimension (e.g. [14, 14, 32] to [6272]) before dense layers.
public final class Flatten: Layer {
  public override init() {}

  public override var typeName: String { "flatten" }

  override func build(inputShape: [Int]) throws -> [Int] { [inputShape.reduce(1, *)] }

  /// In a model's plan its output is its input (Sequential.Plan.layout): nothing to copy.
  override func forward(_ io: LayerIO) throws {
    guard io.output != io.input else { return }
    io.output.update(from: io.input, count: io.batch * inputShape.reduce(1, *))
  }

  override func backward(_ io: LayerIO) throws {
    guard let dx = io.inputGradient, let dy = io.outputGradient, dx != dy else { return }
    dx.update(from: dy, count: io.batch * inputShape.reduce(1, *))
  }
}
