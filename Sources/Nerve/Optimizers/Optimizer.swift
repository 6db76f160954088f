// Optimizer: how gradients change parameters; SGD with optional momentum.
import CNerve

/// Updates a model's parameters from their gradients. Use a concrete optimizer: `SGD`.
///
/// An optimizer keeps per-parameter state (velocities, moment estimates) in flat arrays laid
/// out like the model's parameters, so it belongs to one model at a time.
public class Optimizer: CustomStringConvertible {
  /// Step size. A learning-rate schedule, if any, scales this per epoch.
  public var learningRate: Float
  /// Coupled L2 decay added to the gradient of every weight (not biases): grad += decay * w.
  public let weightDecay: Float
  /// Number of steps taken.
  public internal(set) var steps = 0
  var state: FloatBuffer?

  init(learningRate: Float, weightDecay: Float) {
    self.learningRate = learningRate
    self.weightDecay = weightDecay
  }

  public var description: String { "optimizer" }

  /// Number of state arrays as long as the parameter buffer.
  var stateArrays: Int { 0 }

  /// Checks hyperparameters; throws a `NerveError` naming the bad one.
  func validate() throws {
    guard learningRate.isFinite, learningRate >= 0 else {
      throw NerveError(.badValue, at: "learning_rate", "must be a finite number >= 0, got \(learningRate)")
    }
    guard weightDecay.isFinite, weightDecay >= 0 else {
      throw NerveError(.badValue, at: "weight_decay", "must be a finite number >= 0, got \(weightDecay)")
    }
  }

  /// Allocates state for a model with `count` parameter floats (zeroed), if not yet bound.
  func bind(parameterFloats count: Int) {
    let needed = stateArrays * count
    if state == nil || state!.count != needed {
      state = FloatBuffer(count: needed)
      steps = 0
    }
  }

  /// Clears state and the step count.
  public func reset() {
    state?.zero()
    steps = 0
  }

  /// One update of every parameter group. `decay` is each group's coupled L2 coefficient.
  func step(
    context: ComputeContext, parameters: UnsafeMutablePointer<Float>,
    gradients: UnsafePointer<Float>, groups: [(offset: Int, count: Int, decay: Float)],
    learningRate lr: Float, parameterFloats: Int
  ) throws {}
}

/// Gradient descent, optionally with momentum in the labs' form: `v = momentum*v + lr*g;
/// w -= v`.
public final class SGD: Optimizer {
  /// Momentum coefficient (0 for plain gradient descent).
  public let momentum: Float

  /// - Parameters:
  ///   - learningRate: step size.
  ///   - momentum: 0 for plain gradient descent, e.g. 0.9 for momentum.
  ///   - weightDecay: coupled L2 decay on weights (biases excluded).
  public init(learningRate: Float, momentum: Float = 0, weightDecay: Float = 0) {
    self.momentum = momentum
    super.init(learningRate: learningRate, weightDecay: weightDecay)
  }

  public override var description: String {
    momentum == 0 ? "sgd(lr: \(learningRate))" : "sgd(lr: \(learningRate), momentum: \(momentum))"
  }

  override var stateArrays: Int { momentum == 0 ? 0 : 1 }

  override func validate() throws {
    try super.validate()
    guard momentum.isFinite, momentum >= 0, momentum < 1 else {
      throw NerveError(.badValue, at: "momentum", "must be in [0, 1), got \(momentum)")
    }
  }

  override func step(
    context: ComputeContext, parameters: UnsafeMutablePointer<Float>,
    gradients: UnsafePointer<Float>, groups: [(offset: Int, count: Int, decay: Float)],
    learningRate lr: Float, parameterFloats: Int
  ) throws {
    steps += 1
    for g in groups {
      if momentum == 0 {
        try context.check(
          nerve_sgd_step(
            context.raw, parameters + g.offset, gradients + g.offset, Int64(g.count), lr, g.decay))
      } else {
        try context.check(
          nerve_momentum_step(
            context.raw, parameters + g.offset, state!.pointer + g.offset, gradients + g.offset,
            Int64(g.count), lr, momentum, g.decay))
      }
    }
  }
}
