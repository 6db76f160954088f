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

/// Where a loss attaches to a particular model: which layer's output it reads, and which
/// layer backpropagation starts from.
struct LossHead {
  let loss: Loss
  /// Layer whose output the loss reads (logits when fused).
  let readsLayer: Int
  /// Layer whose output the loss's probabilities are written to, when the softmax is fused.
  let probabilitiesLayer: Int?

  init(loss: Loss, model: Sequential) throws {
    self.loss = loss
    let last = model.layers.count - 1
    let endsWithSoftmax = model.layers[last] is Softmax
    switch loss {
    case .crossEntropy where endsWithSoftmax:
      guard last >= 1 else {
        throw NerveError(.badValue, at: "model", "a model that is only a softmax has nothing to train")
      }
      readsLayer = last - 1
      probabilitiesLayer = last
    case .negativeLogLikelihood:
      guard endsWithSoftmax else {
        throw NerveError(
          .badValue, at: "loss",
          "negative log-likelihood needs probabilities: end the model with a softmax layer")
      }
      readsLayer = last
      probabilitiesLayer = nil
    default:
      readsLayer = last
      probabilitiesLayer = nil
    }
  }

  /// Computes the loss of `outputs` against one-hot `targets` (rows `n` of a batch of `count`)
  /// and, if `gradient` is given, writes dLoss/d(readsLayer output) into it.
  func evaluate(
    context: ComputeContext, outputs: UnsafePointer<Float>,
    probabilities: UnsafeMutablePointer<Float>?, targets: UnsafePointer<Float>,
    gradient: UnsafeMutablePointer<Float>?, rows n: Int, classes: Int, count: Int
  ) throws -> Double {
    var value = 0.0
    let ctx = context.raw
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
