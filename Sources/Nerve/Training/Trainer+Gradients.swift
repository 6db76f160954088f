// The gradient of the loss over a whole dataset, without training: for checking gradients by
// hand (the labs' worked examples) and by finite differences.

/// One parameter tensor's gradient.
public struct ParameterGradient: Sendable {
  /// Index of the layer in `Sequential.layers`.
  public var layer: Int
  /// `weight`, `bias`, ...
  public var name: String
  /// dLoss/dparameter, shaped like the parameter.
  public var value: Tensor
}

extension Trainer {
  /// The gradient of the loss over all of `data` (one full batch, training mode) with respect
  /// to every parameter, without changing the parameters. The labs' hand-worked gradients are
  /// checked with this.
  public func gradients(for data: Dataset) throws -> [ParameterGradient] {
    try lossAndGradients(for: data).gradients
  }

  /// The training-mode loss over all of `data` as one batch (batch statistics, the first
  /// step's dropout masks), and its gradient with respect to every parameter. Parameters are
  /// unchanged (batch-norm running averages move, as in any training forward pass). Finite
  /// differences of this loss check the gradients.
  public func lossAndGradients(for data: Dataset) throws -> (loss: Double, gradients: [ParameterGradient]) {
    try model.checkFits(data)
    let head = try LossHead(loss: loss, model: model)
    let width = model.outputCount
    let plan = try Sequential.Plan(model: model, capacity: data.count, training: true)
    try context.reserve(bytes: plan.workspaceBytes)
    let grads = FloatBuffer(count: model.parameterStorage.count)
    let targets = data.oneHot(width: width)
    let x = data.features.storage.pointer
    let parameters = model.parameterStorage.pointer
    try model.forward(x, batch: data.count, plan: plan, context: context, training: true, through: head.reads)
    let penalty = L2Penalty(model: model)
    let loss = try head.evaluate(
      context: context, plan: plan, targets: targets.pointer, training: true, rows: data.count,
      classes: width, count: data.count) + penalty.value(of: parameters, context: context)
    try model.backward(x, batch: data.count, plan: plan, context: context, gradients: grads.pointer, from: head.reads)
    // Optimizers apply the penalty's gradient as a coupled decay, outside backward.
    penalty.addGradient(of: parameters, to: grads.pointer)
    let gradients = model.parameterGroups.map { g in
      ParameterGradient(
        layer: g.layer, name: g.info.name,
        value: Tensor(shape: g.info.shape, values: Array(UnsafeBufferPointer(start: grads.pointer + g.offset, count: g.info.count))))
    }
    return (loss, gradients)
  }
}
