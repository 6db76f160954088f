// The forward and backward passes of a Sequential model over a batch, and the plan of buffers
// they run in. Shapes: every buffer is [batch, values per sample] row-major.
import CNerve

/// A point in a model's forward pass: the output of layer `layer`, or its output before the
/// layer's own activation (the logits a loss with a fused softmax reads).
struct LayerPoint: Equatable {
  var layer: Int
  var beforeActivation = false
}

extension Sequential {
  /// Activations, gradients and scratch for batches of up to `capacity` samples, allocated
  /// once so that passes allocate nothing.
  final class Plan {
    let capacity: Int
    /// outputs[i]: layer i's output, after its own activation.
    let outputs: [UnsafeMutablePointer<Float>]
    /// gradients[i] = dLoss/d(outputs[i]); empty for inference plans.
    let gradients: [UnsafeMutablePointer<Float>]
    /// Layer i's output before its own activation (the same buffer as outputs[i] if it has none).
    let coreOutputs: [UnsafeMutablePointer<Float>]
    /// dLoss/d(coreOutputs[i]) (the same buffer as gradients[i] without an activation).
    let coreGradients: [UnsafeMutablePointer<Float>]
    let scratch: [UnsafeMutablePointer<Float>]
    private let storage: FloatBuffer

    /// Bytes of layer workspace the model's layers need at this capacity.
    let workspaceBytes: Int

    init(model: Sequential, capacity: Int, training: Bool) {
      self.capacity = capacity
      workspaceBytes = model.layers.map { $0.workspaceBytes(batch: capacity) }.max() ?? 0
      func padded(_ n: Int) -> Int { (n + 15) / 16 * 16 }
      var total = 0
      func take(_ n: Int) -> Int {
        defer { total += padded(n) }
        return total
      }
      var outs: [Int] = [], grads: [Int] = [], coreOuts: [Int] = [], coreGrads: [Int] = []
      var scratchOffsets: [Int] = []
      // Per layer: its core's output, gradient and scratch, then its activation's output and
      // gradient.
      for layer in model.layers {
        let size = capacity * layer.outputShape.reduce(1, *)
        let coreSize = capacity * (layer.activationLayer?.inputShape ?? layer.outputShape).reduce(1, *)
        coreOuts.append(take(coreSize))
        if training { coreGrads.append(take(coreSize)) }
        scratchOffsets.append(take(layer.scratchCount(batch: capacity)))
        if layer.activationLayer != nil {
          outs.append(take(size))
          if training { grads.append(take(size)) }
        } else {
          outs.append(coreOuts.last!)
          if training { grads.append(coreGrads.last!) }
        }
      }
      storage = FloatBuffer(count: total)
      let base = storage.pointer
      outputs = outs.map { base + $0 }
      gradients = grads.map { base + $0 }
      coreOutputs = coreOuts.map { base + $0 }
      coreGradients = coreGrads.map { base + $0 }
      scratch = scratchOffsets.map { base + $0 }
    }
  }

  /// The point after the last layer.
  var end: LayerPoint { LayerPoint(layer: layers.count - 1) }

  /// Runs the layers up to `stop` (the whole model by default) on `batch` samples at `input`;
  /// layer i writes `plan.coreOutputs[i]` and, through its activation, `plan.outputs[i]`.
  func forward(
    _ input: UnsafeMutablePointer<Float>, batch: Int, plan: Plan, context: ComputeContext,
    training: Bool, step: UInt64 = 0, through stop: LayerPoint? = nil
  ) throws {
    let stop = stop ?? end
    var x = input
    for i in 0...stop.layer {
      let layer = layers[i]
      try layer.forward(
        io(i, context: context, batch: batch, input: x, output: plan.coreOutputs[i], plan: plan,
           training: training, step: step))
      if let activation = layer.activationLayer, !(i == stop.layer && stop.beforeActivation) {
        try activation.forward(
          io(i, context: context, batch: batch, input: plan.coreOutputs[i], output: plan.outputs[i],
             plan: plan, training: training, step: step, activation: true))
      }
      x = plan.outputs[i]
    }
  }

  /// Backpropagates from `start` (its gradient buffer already holding dLoss/d(that point))
  /// down to layer 0, accumulating parameter gradients into `gradients`; layers marked in
  /// `fusedLayers` apply `fused` to their parameters directly instead.
  func backward(
    _ input: UnsafeMutablePointer<Float>, batch: Int, plan: Plan, context: ComputeContext,
    gradients: UnsafeMutablePointer<Float>, from start: LayerPoint, step: UInt64 = 0,
    fused: FusedStep? = nil, fusedLayers: [Bool] = []
  ) throws {
    for i in stride(from: start.layer, through: 0, by: -1) {
      let layer = layers[i]
      if let activation = layer.activationLayer, !(i == start.layer && start.beforeActivation) {
        try activation.backward(
          io(i, context: context, batch: batch, input: plan.coreOutputs[i], output: plan.outputs[i],
             plan: plan, training: true, step: step, activation: true,
             inputGradient: plan.coreGradients[i], outputGradient: plan.gradients[i]))
      }
      let core = io(
        i, context: context, batch: batch, input: i == 0 ? input : plan.outputs[i - 1],
        output: plan.coreOutputs[i], plan: plan, training: true, step: step,
        inputGradient: i == 0 ? nil : plan.gradients[i - 1], outputGradient: plan.coreGradients[i],
        parameterGradients: gradients + layer.parameterOffset)
      if let fused, i < fusedLayers.count, fusedLayers[i] {
        try layer.backwardUpdate(core, step: fused)
      } else {
        try layer.backward(core)
      }
    }
  }

  /// The buffers layer `i` (or its activation) works on in one call.
  private func io(
    _ i: Int, context: ComputeContext, batch: Int, input: UnsafeMutablePointer<Float>,
    output: UnsafeMutablePointer<Float>, plan: Plan, training: Bool, step: UInt64,
    activation: Bool = false, inputGradient: UnsafeMutablePointer<Float>? = nil,
    outputGradient: UnsafeMutablePointer<Float>? = nil,
    parameterGradients: UnsafeMutablePointer<Float>? = nil
  ) -> LayerIO {
    let layer = layers[i]
    let stream = layer.streamIndex + (activation ? 1 : 0)
    return LayerIO(
      context: context, batch: batch, input: input, output: output, inputGradient: inputGradient,
      outputGradient: outputGradient, parameters: parameterStorage.pointer + layer.parameterOffset,
      parameterGradients: parameterGradients, state: stateStorage.pointer + stateOffsets[i],
      scratch: plan.scratch[i], training: training, stepSeed: step &* 0x9E37_79B9 &+ UInt64(stream))
  }
}
