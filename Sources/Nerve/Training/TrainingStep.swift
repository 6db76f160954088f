// One training step: forward, loss and backward over a batch (in chunks), then the optimizer's
// update. Data-parallel training and diagnostics work between the two halves.
import CNerve

/// A batch as a step reads it: `rows` samples, their one-hot targets and labels.
struct TrainingBatch {
  let features: UnsafeMutablePointer<Float>
  let targets: UnsafeMutablePointer<Float>
  let labels: UnsafePointer<Int32>
  let rows: Int
}

/// What a step measured on its batch: the mean loss (with the L2 penalty) and the samples
/// classified correctly, both at the parameters the step started from.
struct StepResult {
  var loss: Double
  var correct: Int64
}

/// Thrown by a step whose loss is not finite; the trainer restores the last good model.
struct NonFiniteLoss: Error {
  var value: Double
}

extension TrainingWorkspace {
  /// The batch of samples `order[start..<start + rows]`: slices of the training set when its
  /// order is kept, otherwise gathered into the batch buffers.
  func batch(at start: Int, rows: Int, order: [Int]) -> TrainingBatch {
    let d = model.inputCount, width = model.outputCount
    let features = train.features.storage.pointer
    if keepsOrder {
      for r in 0..<rows { batchLabels[r] = train.labels[start + r] }
      return TrainingBatch(
        features: features + start * d, targets: targets.pointer + start * width, labels: batchLabels,
        rows: rows)
    }
    for r in 0..<rows {
      let i = order[start + r]
      (batchFeatures.pointer + r * d).update(from: features + i * d, count: d)
      (batchTargets.pointer + r * width).update(from: targets.pointer + i * width, count: width)
      batchLabels[r] = train.labels[i]
    }
    return TrainingBatch(features: batchFeatures.pointer, targets: batchTargets.pointer, labels: batchLabels, rows: rows)
  }

  /// The first half of a step: the loss of `batch` and its gradients in `gradients` (layers
  /// that fuse the optimizer's step update their parameters here instead).
  /// - Throws: `NonFiniteLoss` before backward if the loss is NaN or infinite.
  func computeGradients(_ batch: TrainingBatch, learningRate: Float) throws -> StepResult {
    let d = model.inputCount, width = model.outputCount
    let seed = settings.seed
    let globalStep = UInt64(optimizer.steps)
    // Only gradients that will be stored need zeroing.
    for g in steppedGroups { (gradients.pointer + g.offset).update(repeating: 0, count: g.count) }
    let fused = fuses ? optimizer.fusedStep(learningRate: learningRate) : nil
    var result = StepResult(loss: 0, correct: 0)
    var start = 0
    while start < batch.rows {
      let rows = min(chunkCapacity, batch.rows - start)
      let x = batch.features + start * d
      // Distinct random streams per seed, step and chunk (dropout).
      let stream = (globalStep &* 0x10_0000 &+ UInt64(start)) ^ (seed &* 0x9E37_79B9_7F4A_7C15)
      try model.forward(x, batch: rows, plan: plan, context: context, training: true, step: stream, through: head.reads)
      let part = try head.evaluate(
        context: context, plan: plan, targets: batch.targets + start * width, training: true, rows: rows,
        classes: width, count: batch.rows)
      guard part.isFinite else { throw NonFiniteLoss(value: part) }
      result.loss += part
      if start == 0 {
        // The penalty is on the parameters this step starts from (fused layers change them
        // during backward).
        result.loss += try penalty.value(of: model.parameterStorage.pointer, context: context)
      }
      try model.backward(
        x, batch: rows, plan: plan, context: context, gradients: gradients.pointer, from: head.reads,
        step: stream, fused: fused, fusedLayers: fusedLayers)
      var right: Int64 = 0
      try context.check(
        nerve_count_correct(
          context.raw, &right, plan.outputs[model.layers.count - 1], batch.labels + start, Int64(rows), Int64(width)))
      result.correct += right
      start += rows
    }
    return result
  }

  /// The second half of a step: the optimizer updates every parameter whose gradient was
  /// stored (and counts the step).
  func applyUpdate(learningRate: Float) throws {
    try optimizer.step(
      context: context, parameters: model.parameterStorage.pointer, gradients: gradients.pointer,
      groups: steppedGroups, learningRate: learningRate, parameterFloats: model.parameterStorage.count)
  }
}
