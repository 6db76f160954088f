// Loss: what training minimises, and how its gradient reaches the last layer.
import CNerve

/// The loss functions Nerve trains with.
public enum Loss: Sendable, Equatable, CustomStringConvertible {
  /// Per sample the squared distance `||output - target||^2`, averaged over the batch (the
  /// labs' definition; its gradient is `2 (output - target) / N`).
  case meanSquaredError
  /// Softmax cross-entropy. The model's outputs are taken as logits, or, if the model ends
  /// with `Softmax`, the softmax is fused into the loss.
  case crossEntropy
  /// Negative log-likelihood of probabilities (the model should end with `Softmax`):
  /// `-log(p_target + epsilon)`.
  case negativeLogLikelihood(epsilon: Float = 1e-7)

  /// Parses a loss name as configs write it (`mse`, `cross_entropy`, `nll`).
  public init?(name: String) {
    switch name.lowercased().replacingOccurrences(of: "-", with: "_") {
    case "mse", "mean_squared_error", "squared_error": self = .meanSquaredError
    case "cross_entropy", "crossentropy", "softmax_cross_entropy", "categorical_crossentropy":
      self = .crossEntropy
    case "nll", "negative_log_likelihood": self = .negativeLogLikelihood()
    default: return nil
    }
  }

  public var description: String {
    switch self {
    case .meanSquaredError: "mse"
    case .crossEntropy: "cross_entropy"
    case .negativeLogLikelihood: "nll"
    }
  }
}

/// Where a loss attaches to a particular model: which point of the forward pass it reads,
/// where backpropagation starts, and where a fused softmax writes its probabilities.
struct LossHead {
  let loss: Loss
  /// The point whose values the loss reads (the logits before the last softmax when fused).
  let reads: LayerPoint
  /// Layer whose output receives the probabilities, when the softmax is fused into the loss.
  let probabilitiesLayer: Int?

  init(loss: Loss, model: Sequential) throws {
    self.loss = loss
    let last = model.layers.count - 1
    let softmaxInLast = model.layers[last].activationLayer is Softmax
    let softmaxLayer = model.layers[last] is Softmax
    switch loss {
    case .crossEntropy where softmaxInLast:
      reads = LayerPoint(layer: last, beforeActivation: true)
      probabilitiesLayer = last
    case .crossEntropy where softmaxLayer:
      guard last >= 1 else {
        throw NerveError(.badValue, at: "model", "a model that is only a softmax has nothing to train")
      }
      reads = LayerPoint(layer: last - 1)
      probabilitiesLayer = last
    case .negativeLogLikelihood:
      guard softmaxInLast || softmaxLayer else {
        throw NerveError(
          .badValue, at: "loss",
          "negative log-likelihood needs probabilities: end the model with a softmax layer")
      }
      reads = LayerPoint(layer: last)
      probabilitiesLayer = nil
    default:
      reads = LayerPoint(layer: last)
      probabilitiesLayer = nil
    }
  }

  /// The values the loss reads in `plan`.
  func values(_ plan: Sequential.Plan) -> UnsafeMutablePointer<Float> {
    reads.beforeActivation ? plan.coreOutputs[reads.layer] : plan.outputs[reads.layer]
  }

  /// Where the loss writes dLoss/d(values) in a training plan.
  func gradient(_ plan: Sequential.Plan) -> UnsafeMutablePointer<Float> {
    reads.beforeActivation ? plan.coreGradients[reads.layer] : plan.gradients[reads.layer]
  }

  /// Computes the loss of the plan's values against one-hot `targets` (rows `n` of a batch of
  /// `count`). In training it also writes the gradient and the fused softmax's probabilities.
  func evaluate(
    context: ComputeContext, plan: Sequential.Plan, targets: UnsafePointer<Float>, training: Bool,
    rows n: Int, classes: Int, count: Int
  ) throws -> Double {
    var value = 0.0
    let ctx = context.raw
    let outputs = values(plan)
    let gradient = training ? gradient(plan) : nil
    let probabilities = training ? probabilitiesLayer.map { plan.outputs[$0] } : nil
    switch loss {
    case .meanSquaredError:
      try context.check(
        nerve_loss_mse(ctx, &value, gradient, outputs, targets, Int64(n), Int64(classes), Int64(count)))
    case .crossEntropy:
      try context.check(
        nerve_loss_softmax_cross_entropy(
          ctx, &value, gradient, probabilities, outputs, targets, Int64(n), Int64(classes), Int64(count)))
    case .negativeLogLikelihood(let eps):
      try context.check(
        nerve_loss_nll(ctx, &value, gradient, outputs, targets, Int64(n), Int64(classes), eps, Int64(count)))
    }
    return value
  }
}
