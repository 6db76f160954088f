// One training step: forward, loss and backward over a batch (in chunks), then the optimizer's
// update. Data-parallel training and diagnostics work between the two halves.
import CNerve

/// A batch as a step reads it: `rows` samples, their one-hot targets and labels.
struct TrainingBatch {
  let features: UnsafeMutablePointer<Float>
  let targets: UnsafeMutablePointer<Float>
  let labels: UnsafePointer<Int32>
  let rows: Int
  /// The same features as non-zero entries, when the workspace lists them.
  var listed: SparseSlice? = nil
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
  /// order is kept, otherwise gathered into the batch buffers (the features by the context's
  /// threads, nerve_rows_gather).
  func batch(at start: Int, rows: Int, order: [Int]) throws -> TrainingBatch {
    let d = model.inputCount, width = model.outputCount
    let features = train.features.storage.pointer
    if keepsOrder {
      for r in 0..<rows { batchLabels[r] = train.labels[start + r] }
      return TrainingBatch(
        features: features + start * d, targets: targets.pointer + start * width, labels: batchLabels,
        rows: rows, listed: listedFeatures.map { SparseSlice(rows: $0, first: start) })
    }
    // The order's Ints are the C call's int64 indices (Int is 64 bits wide on every platform
    // Nerve builds for).
    precondition(MemoryLayout<Int>.size == MemoryLayout<Int64>.size)
    if rows > 0 {
      try order.withUnsafeBufferPointer { all in
        try all.baseAddress!.withMemoryRebound(to: Int64.self, capacity: all.count) { indices in
          try context.check(
            nerve_rows_gather(
              context.raw, batchFeatures.pointer, features, indices + start, Int64(train.count), Int64(d), Int64(rows)))
        }
      }
    }
    for r in 0..<rows {
      let i = order[start + r]
      (batchTargets.pointer + r * width).update(from: targets.pointer + i * width, count: width)
      batchLabels[r] = train.labels[i]
    }
    return TrainingBatch(features: batchFeatures.pointer, targets: batchTargets.pointer, labels: batchLabels, rows: rows)
  }

  /// The first half of a step: the loss of `batch` and its gradients in `gradients` (layers
  /// that fuse the optimizer's step update their parameters here instead).
  /// - Throws: `NonFiniteLoss` before backward if the loss is NaN or infinite.
  func computeGradients(_ batch: TrainingBatch, learningRate: Float) throws -> StepResult {
    if let ranks { return try computeGradients(batch, learningRate: learningRate, ranks: ranks) }
    let d = model.inputCount, width = model.outputCount
    // Only gradients that will be stored need zeroing.
    for g in steppedGroups { (gradients.pointer + g.offset).update(repeating: 0, count: g.count) }
    let fused = fuses ? optimizer.fusedStep(learningRate: learningRate) : nil
    let stream = randomStream
    // Chunks choose their kernels' methods as for the whole batch, as ranks' shares do.
    try context.check(nerve_context_set_whole_batch(context.raw, Int64(batch.rows)))
    defer { nerve_context_set_whole_batch(context.raw, 0) }
    var result = StepResult(loss: 0, correct: 0)
    var start = 0
    let chunk = chunkRows(ofBatch: batch.rows)
    while start < batch.rows {
      let rows = min(chunk, batch.rows - start)
      let x = batch.features + start * d
      let listed = batch.listed?.advanced(by: start)
      try model.forward(
        x, batch: rows, plan: plan, context: context, training: true, step: stream, firstRow: start, through: head.reads,
        listed: listed)
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
        step: stream, firstRow: start, fused: fused, fusedLayers: fusedLayers, listed: listed)
      var right: Int64 = 0
      try context.check(
        nerve_count_correct(
          context.raw, &right, plan.outputs[model.layers.count - 1], batch.labels + start, Int64(rows), Int64(width)))
      result.correct += right
      start += rows
    }
    return result
  }

  /// The random stream of this step (dropout): distinct per seed and step; samples draw by
  /// their row in the batch.
  private var randomStream: UInt64 {
    (UInt64(optimizer.steps) &* 0x10_0000) ^ (settings.seed &* 0x9E37_79B9_7F4A_7C15)
  }

  /// The first half of a data-parallel step: this rank's rows of `batch` forward and
  /// backward, the parameter sums passed along the ranks (DataParallelPass), and the loss and
  /// correct count of the whole batch. Fused layers are updated here, as in one process.
  private func computeGradients(
    _ batch: TrainingBatch, learningRate: Float, ranks: DataParallelPass
  ) throws -> StepResult {
    let d = model.inputCount, width = model.outputCount
    let mine = ranks.begin(batchRows: batch.rows)
    // Kernels choose their methods as for the whole batch (the same bytes for every row).
    try context.check(nerve_context_set_whole_batch(context.raw, Int64(batch.rows)))
    defer { nerve_context_set_whole_batch(context.raw, 0) }
    // Every sum starts from zero, except a fused SGD layer's, which carries its parameters.
    gradients.pointer.update(repeating: 0, count: gradients.count)
    let fused = fuses ? optimizer.fusedStep(learningRate: learningRate) : nil
    let stream = randomStream
    let x = batch.features + mine.lowerBound * d
    try model.forward(
      x, batch: mine.count, plan: plan, context: context, training: true, step: stream,
      firstRow: mine.lowerBound, through: head.reads, ranks: ranks)
    var part = try head.evaluate(
      context: context, plan: plan, targets: batch.targets + mine.lowerBound * width, training: true,
      rows: mine.count, classes: width, count: batch.rows)
    // Every rank stops together, before backward, if any rank's loss is not finite (checked
    // before the penalty, as one process checks it).
    if try ranks.ranks.maximum(part.isFinite ? 0 : 1) != 0 {
      throw NonFiniteLoss(value: try ranks.ranks.sum(part))
    }
    // The penalty is on the parameters this step starts from; rank 0 counts it once.
    if ranks.ranks.isRoot { part += try penalty.value(of: model.parameterStorage.pointer, context: context) }
    try model.backward(
      x, batch: mine.count, plan: plan, context: context, gradients: gradients.pointer, from: head.reads,
      step: stream, firstRow: mine.lowerBound, fused: fused, fusedLayers: fusedLayers, ranks: ranks)
    try ranks.finishBackward(gradients: gradients.pointer, count: gradients.count)
    try applyFusedSteps(fused)
    var right: Int64 = 0
    try context.check(
      nerve_count_correct(
        context.raw, &right, plan.outputs[model.layers.count - 1], batch.labels + mine.lowerBound,
        Int64(mine.count), Int64(width)))
    return StepResult(loss: try ranks.ranks.sum(part), correct: Int64(try ranks.ranks.sum(Double(right))))
  }

  /// After a data-parallel backward: fused layers take their step from the complete sums
  /// (SGD's chain carried the updated parameters; Adam steps from the gradient as its kernel
  /// does for large batches).
  private func applyFusedSteps(_ fused: FusedStep?) throws {
    guard let fused else { return }
    for (i, layer) in model.layers.enumerated() where fusedLayers[i] {
      let at = layer.parameterOffset
      switch fused {
      case .sgd:
        (model.parameterStorage.pointer + at).update(from: gradients.pointer + at, count: layer.parameterCount)
      case .adam:
        try layer.applyFusedStep(
          fused, parameters: model.parameterStorage.pointer + at, gradients: gradients.pointer + at, context: context)
      }
    }
  }

  /// The second half of a step: the optimizer updates every parameter whose gradient was
  /// stored (and counts the step).
  func applyUpdate(learningRate: Float) throws {
    try optimizer.step(
      context: context, parameters: model.parameterStorage.pointer, gradients: gradients.pointer,
      groups: steppedGroups, learningRate: learningRate, parameterFloats: model.parameterStorage.count)
  }
}
