// L2Penalty: the layers' Keras-style `l2` settings as a term of the loss.
import CNerve

/// The penalty `l2 * sum(W^2)` of every layer with an `l2` setting: its value, added to the
/// loss, and its gradient `2 * l2 * W`. (Optimizers usually apply the gradient themselves as a
/// coupled decay; the trainer adds it only where gradients are reported.)
struct L2Penalty {
  /// Offset, count and coefficient (2 * l2) of each penalised parameter tensor.
  let groups: [(offset: Int, count: Int, decay: Float)]

  init(model: Sequential) {
    groups = model.parameterGroups.filter { $0.info.decay > 0 }.map { ($0.offset, $0.info.count, $0.info.decay) }
  }

  var isEmpty: Bool { groups.isEmpty }

  /// The penalty of the parameters at `parameters` (the model's flat buffer).
  func value(of parameters: UnsafePointer<Float>, context: ComputeContext) throws -> Double {
    var total = 0.0
    for g in groups {
      var squares = 0.0
      try context.check(nerve_sum_squares(context.raw, &squares, parameters + g.offset, Int64(g.count)))
      total += Double(g.decay) / 2 * squares
    }
    return total
  }

  /// Adds the penalty's gradient to `gradients` (laid out like the parameters).
  func addGradient(of parameters: UnsafePointer<Float>, to gradients: UnsafeMutablePointer<Float>) {
    for g in groups {
      let w = parameters + g.offset, d = gradients + g.offset
      for i in 0..<g.count { d[i] += g.decay * w[i] }
    }
  }
}
