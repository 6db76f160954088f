// Optimizer: how gradients change parameters. SGD (with momentum or Nesterov), Adam, AdamW,
// RMSprop and Adadelta, each one call of a C kernel per parameter tensor.
import CNerve

/// One parameter tensor as an optimizer sees it.
struct ParameterGroup {
  var offset: Int
  var count: Int
  /// Coupled L2 coefficient from the layer (2 * its Keras-style `l2`).
  var l2Decay: Float
  /// Weights get the optimizer's weight decay; biases and normalisation shifts do not.
  var isWeight: Bool
}

/// An optimizer step a layer can apply inside its backward pass, so its gradient is never
/// stored (see `Trainer.fusesOptimizerSteps`).
enum FusedStep {
  case sgd(learningRate: Float)
  /// Adam at step `step` (1-based); moments are the optimizer's two state arrays.
  case adam(Adam, learningRate: Float, step: Int, m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>)
}

/// Updates a model's parameters from their gradients. Use a concrete optimizer: `SGD`, `Adam`,
/// `AdamW`, `RMSprop` or `Adadelta`.
///
/// An optimizer keeps per-parameter state (velocities, moment estimates) in flat arrays laid
/// out like the model's parameters, so it belongs to one model at a time.
public class Optimizer: CustomStringConvertible {
  /// Base step size; a learning-rate schedule scales it per epoch.
  public var learningRate: Float
  /// Weight decay on weights (not biases): coupled L2 (added to the gradient) for every
  /// optimizer but `AdamW`, whose decay is decoupled.
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

  func check(_ value: Float, in range: ClosedRange<Float>, _ name: String) throws {
    guard range.contains(value) else {
      throw NerveError(.badValue, at: name, "must be in [\(range.lowerBound), \(range.upperBound)], got \(value)")
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

  /// The coupled decay for a group: the layer's L2 plus, for weights, the optimizer's decay.
  func coupled(_ g: ParameterGroup) -> Float { g.l2Decay + (g.isWeight ? weightDecay : 0) }

  /// State array `k` at the group's offset.
  func state(_ k: Int, _ g: ParameterGroup, _ floats: Int) -> UnsafeMutablePointer<Float> {
    state!.pointer + k * floats + g.offset
  }

  /// The step layers may apply inside backward, if this optimizer has one.
  func fusedStep(learningRate lr: Float) -> FusedStep? { nil }

  /// One update of every parameter group.
  func step(
    context: ComputeContext, parameters: UnsafeMutablePointer<Float>,
    gradients: UnsafePointer<Float>, groups: [ParameterGroup], learningRate lr: Float,
    parameterFloats: Int
  ) throws {
    steps += 1
    for g in groups {
      try update(context, parameters + g.offset, gradients + g.offset, g, lr, parameterFloats)
    }
  }

  func update(
    _ context: ComputeContext, _ w: UnsafeMutablePointer<Float>, _ grad: UnsafePointer<Float>,
    _ g: ParameterGroup, _ lr: Float, _ floats: Int
  ) throws {}
}

/// Gradient descent, optionally with momentum in the labs' form (`v = momentum*v + lr*g;
/// w -= v`) or Nesterov momentum (`w -= momentum*v + lr*g` with the new `v`).
public final class SGD: Optimizer {
  /// Momentum coefficient (0 for plain gradient descent).
  public let momentum: Float
  /// Nesterov's look-ahead form of momentum.
  public let nesterov: Bool

  /// - Parameters:
  ///   - learningRate: step size.
  ///   - momentum: 0 for plain gradient descent, e.g. 0.9 for momentum.
  ///   - nesterov: use Nesterov momentum.
  ///   - weightDecay: coupled L2 decay on weights (biases excluded).
  public init(learningRate: Float, momentum: Float = 0, nesterov: Bool = false, weightDecay: Float = 0) {
    self.momentum = momentum
    self.nesterov = nesterov
    super.init(learningRate: learningRate, weightDecay: weightDecay)
  }

  public override var description: String {
    momentum == 0
      ? "sgd(lr: \(learningRate))"
      : "sgd(lr: \(learningRate), \(nesterov ? "nesterov " : "")momentum: \(momentum))"
  }

  override var stateArrays: Int { momentum == 0 ? 0 : 1 }

  override func fusedStep(learningRate lr: Float) -> FusedStep? {
    momentum == 0 && weightDecay == 0 ? .sgd(learningRate: lr) : nil
  }

  override func validate() throws {
    try super.validate()
    guard momentum.isFinite, momentum >= 0, momentum < 1 else {
      throw NerveError(.badValue, at: "momentum", "must be in [0, 1), got \(momentum)")
    }
  }

  override func update(
    _ context: ComputeContext, _ w: UnsafeMutablePointer<Float>, _ grad: UnsafePointer<Float>,
    _ g: ParameterGroup, _ lr: Float, _ floats: Int
  ) throws {
    let n = Int64(g.count), decay = coupled(g)
    if momentum == 0 {
      try context.check(nerve_sgd_step(context.raw, w, grad, n, lr, decay))
    } else if nesterov {
      try context.check(nerve_nesterov_step(context.raw, w, state(0, g, floats), grad, n, lr, momentum, decay))
    } else {
      try context.check(nerve_momentum_step(context.raw, w, state(0, g, floats), grad, n, lr, momentum, decay))
    }
  }
}

/// Adam (Kingma & Ba), with bias-corrected moment estimates.
public class Adam: Optimizer {
  public let beta1: Float
  public let beta2: Float
  public let epsilon: Float
  var decoupled: Bool { false }

  /// Keras's defaults: lr 0.001, beta1 0.9, beta2 0.999, epsilon 1e-7.
  public init(learningRate: Float = 0.001, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-7, weightDecay: Float = 0) {
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    super.init(learningRate: learningRate, weightDecay: weightDecay)
  }

  public override var description: String { "\(decoupled ? "adamw" : "adam")(lr: \(learningRate))" }
  override var stateArrays: Int { 2 }

  override func fusedStep(learningRate lr: Float) -> FusedStep? {
    guard let state else { return nil }
    let floats = state.count / 2
    return .adam(self, learningRate: lr, step: steps + 1, m: state.pointer, v: state.pointer + floats)
  }

  override func validate() throws {
    try super.validate()
    try check(beta1, in: 0...0.999999, "beta1")
    try check(beta2, in: 0...0.99999999, "beta2")
    try check(epsilon, in: Float.leastNormalMagnitude...0.5, "epsilon")
  }

  override func update(
    _ context: ComputeContext, _ w: UnsafeMutablePointer<Float>, _ grad: UnsafePointer<Float>,
    _ g: ParameterGroup, _ lr: Float, _ floats: Int
  ) throws {
    let coupledDecay = decoupled ? g.l2Decay : coupled(g)
    let decoupledDecay: Float = decoupled && g.isWeight ? weightDecay : 0
    try context.check(
      nerve_adam_step(
        context.raw, w, state(0, g, floats), state(1, g, floats), grad, Int64(g.count), lr, beta1,
        beta2, epsilon, coupledDecay, decoupledDecay, Int64(steps)))
  }
}

/// AdamW: Adam with decoupled weight decay (weights shrink by lr * weightDecay every step).
public final class AdamW: Adam {
  override var decoupled: Bool { true }

  /// PyTorch's default decay 0.01; otherwise Adam's defaults.
  public override init(learningRate: Float = 0.001, beta1: Float = 0.9, beta2: Float = 0.999, epsilon: Float = 1e-7, weightDecay: Float = 0.01) {
    super.init(learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon, weightDecay: weightDecay)
  }
}

/// RMSprop: steps scaled by a running root-mean-square of the gradient.
public final class RMSprop: Optimizer {
  public let rho: Float
  public let epsilon: Float

  /// Keras's defaults: lr 0.001, rho 0.9, epsilon 1e-7.
  public init(learningRate: Float = 0.001, rho: Float = 0.9, epsilon: Float = 1e-7, weightDecay: Float = 0) {
    self.rho = rho
    self.epsilon = epsilon
    super.init(learningRate: learningRate, weightDecay: weightDecay)
  }

  public override var description: String { "rmsprop(lr: \(learningRate))" }
  override var stateArrays: Int { 1 }

  override func validate() throws {
    try super.validate()
    try check(rho, in: 0...1, "rho")
    try check(epsilon, in: Float.leastNormalMagnitude...0.5, "epsilon")
  }

  override func update(
    _ context: ComputeContext, _ w: UnsafeMutablePointer<Float>, _ grad: UnsafePointer<Float>,
    _ g: ParameterGroup, _ lr: Float, _ floats: Int
  ) throws {
    try context.check(
      nerve_rmsprop_step(context.raw, w, state(0, g, floats), grad, Int64(g.count), lr, rho, epsilon, coupled(g)))
  }
}

/// Adadelta (Zeiler 2012): per-parameter step sizes from running averages of squared gradients
/// and squared updates. The original method uses learning rate 1.0 (Keras defaults to 0.001,
/// which learns very slowly).
public final class Adadelta: Optimizer {
  public let rho: Float
  public let epsilon: Float

  public init(learningRate: Float = 1.0, rho: Float = 0.95, epsilon: Float = 1e-6, weightDecay: Float = 0) {
    self.rho = rho
    self.epsilon = epsilon
    super.init(learningRate: learningRate, weightDecay: weightDecay)
  }

  public override var description: String { "adadelta(lr: \(learningRate))" }
  override var stateArrays: Int { 2 }

  override func validate() throws {
    try super.validate()
    try check(rho, in: 0...1, "rho")
    try check(epsilon, in: Float.leastNormalMagnitude...0.5, "epsilon")
  }

  override func update(
    _ context: ComputeContext, _ w: UnsafeMutablePointer<Float>, _ grad: UnsafePointer<Float>,
    _ g: ParameterGroup, _ lr: Float, _ floats: Int
  ) throws {
    try context.check(
      nerve_adadelta_step(
        context.raw, w, state(0, g, floats), state(1, g, floats), grad, Int64(g.count), lr, rho, epsilon, coupled(g)))
  }
}
