// Trainer: gradient descent over a dataset, epoch by epoch, with per-epoch metrics.
import CNerve

/// Trains a `Sequential` model with a loss and an optimizer.
///
/// ```swift
/// let trainer = Trainer(model: model, loss: .meanSquaredError,
///                       optimizer: SGD(learningRate: 1), threads: 2)
/// let history = try trainer.fit(mnist.train, validation: mnist.validation,
///                               epochs: 300, batchSize: .full)
/// ```
/// All buffers a step needs are allocated when `fit` starts; the steps themselves allocate
/// nothing. The same seed and thread count give bit-identical results.
public final class Trainer {
  /// The model being trained (its parameters change in place).
  public let model: Sequential
  /// The loss minimised.
  public let loss: Loss
  /// The optimizer applying the gradients.
  public let optimizer: Optimizer
  /// Threads and instruction set every kernel of a step runs with.
  public let context: ComputeContext
  /// Let layers apply the optimizer step inside backward instead of writing gradients first,
  /// where they can: dense layers with plain SGD (no momentum, no weight decay) or Adam/AdamW.
  /// Same mathematics, different rounding, much less memory traffic (per-sample SGD touches
  /// only the weights of non-zero inputs; Adam reads a dense layer's weights once per step
  /// instead of three times). On by default.
  public var fusesOptimizerSteps = true
  /// Batches larger than this are run in chunks of this many samples whose gradients are added
  /// up before the one optimizer step: the same mathematics, but each chunk's activations stay
  /// in cache between forward and backward, and memory no longer grows with the batch. Depends
  /// only on this setting, never on the thread count.
  public var chunkRows = 2048
  /// Called every `GradientDiagnostics.everySteps` steps with that step's gradient statistics.
  public var onGradients: ((GradientRecord) -> Void)?

  /// - Parameters:
  ///   - model: the model to train.
  ///   - loss: the loss to minimise.
  ///   - optimizer: how gradients update parameters (it keeps state for this model).
  ///   - threads: worker threads; nil for `OMP_NUM_THREADS` or all CPUs.
  public init(model: Sequential, loss: Loss, optimizer: Optimizer, threads: Int? = nil) {
    self.model = model
    self.loss = loss
    self.optimizer = optimizer
    context = ComputeContext(threads: threads)
  }

  /// Trains for `epochs` passes over `train`.
  ///
  /// - Parameters:
  ///   - train: the training samples.
  ///   - validation: evaluated after every epoch, if given.
  ///   - test: evaluated after every epoch, if given (the labs plot test curves too).
  ///   - epochs: number of passes.
  ///   - batchSize: samples per step: `.full`, `.size(100)`, or `1` for per-sample SGD.
  ///   - shuffle: reshuffle the training order every epoch (ignored for full batches, where
  ///     order cannot matter).
  ///   - seed: seed of the shuffling (and of dropout).
  ///   - schedule: how the learning rate changes per epoch.
  ///   - earlyStopping: stop when a validation metric stops improving (needs `validation`).
  ///   - gradientDiagnostics: record per-layer gradient norms each epoch (and every N steps
  ///     through `onGradients`).
  ///   - onBatch: called after every step, e.g. for a progress bar.
  ///   - onEpoch: called after every epoch with its metrics; return false to stop training.
  /// - Returns: the metrics of every epoch.
  /// - Throws: `NerveError` on mismatched data, bad hyperparameters, or a loss that becomes
  ///   NaN or infinite. In that last case the model is first restored to the parameters it had
  ///   after the last complete epoch.
  @discardableResult
  public func fit(
    _ train: Dataset, validation: Dataset? = nil, test: Dataset? = nil, epochs: Int,
    batchSize: BatchSize = .size(32), shuffle: Bool = true, seed: UInt64 = 1,
    schedule: LearningRateSchedule = .constant, earlyStopping: EarlyStopping? = nil,
    gradientDiagnostics: GradientDiagnostics? = nil,
    onBatch: ((BatchProgress) -> Void)? = nil, onEpoch: ((EpochMetrics) -> Bool)? = nil
  ) throws -> History {
    guard epochs >= 0 else {
      throw NerveError(.badValue, at: "epochs", "must be 0 or more, got \(epochs)")
    }
    guard train.count >= 1 else { throw NerveError(.badValue, at: train.name, "no samples") }
    if case .size(let n) = batchSize, n < 1 {
      throw NerveError(.badValue, at: "batch_size", "must be at least 1 or 'full', got \(n)")
    }
    try optimizer.validate()
    for data in [train, validation, test].compactMap({ $0 }) { try checkFits(data) }
    if let earlyStopping {
      guard validation != nil else {
        throw NerveError(.badValue, at: "early_stopping", "watches \(earlyStopping.monitor.rawValue), so it needs a validation set")
      }
      guard earlyStopping.patience >= 0 else {
        throw NerveError(.badValue, at: "early_stopping.patience", "must be 0 or more")
      }
    }
    if let every = gradientDiagnostics?.everySteps, every < 1 {
      throw NerveError(.badValue, at: "gradient_every", "must be at least 1, got \(every)")
    }

    let head = try LossHead(loss: loss, model: model)
    let width = model.outputCount
    let n = train.count
    let capacity = batchSize.resolved(count: n)
    let chunked = capacity > chunkRows && !model.layers.contains(where: \.needsWholeBatch)
    let planRows = chunked ? max(chunkRows, 1) : capacity
    let plan = Sequential.Plan(model: model, capacity: planRows, training: true)
    try context.reserve(bytes: plan.workspaceBytes)
    let targets = train.oneHot(width: width)
    let xBatch = FloatBuffer(count: capacity * model.inputCount)
    let tBatch = FloatBuffer(count: capacity * width)
    var yBatch = [Int32](repeating: 0, count: capacity)
    optimizer.bind(parameterFloats: model.parameterStorage.count)
    let owners = model.parameterGroups.map(\.layer)
    let groups = model.parameterGroups.map {
      ParameterGroup(offset: $0.offset, count: $0.info.count, l2Decay: $0.info.decay, isWeight: $0.info.isWeight)
    }
    let penalties = groups.filter { $0.l2Decay > 0 }
    // A step inside backward would change the weights between chunks of one batch, and
    // diagnostics need the gradients themselves.
    let fusing = fusesOptimizerSteps && !chunked && gradientDiagnostics == nil
    let probe = fusing ? optimizer.fusedStep(learningRate: optimizer.learningRate) : nil
    let fusedLayers = model.layers.map { layer in probe.map { layer.parameterCount > 0 && layer.supportsFused($0) } ?? false }
    /// Groups whose gradients are stored and stepped by the optimizer as usual.
    let stepped = zip(groups, owners).filter { !fusedLayers[$0.1] }.map(\.0)
    var recorder = gradientDiagnostics.map { _ in GradientRecorder(model: model) }
    var best: (score: Double, epoch: Int, snapshot: (parameters: [Float], state: [Float]))?
    var waited = 0
    let gradients = FloatBuffer(count: model.parameterStorage.count)
    let features = train.features.storage.pointer
    let d = model.inputCount
    let ctx = context.raw
    let last = model.layers.count - 1
    let stepsPerEpoch = (n + capacity - 1) / capacity
    let contiguous = !shuffle || capacity >= n
    var order = Array(0..<n)
    var rng = SeededGenerator(seed: seed)
    var history = History()
    var lastGood = model.snapshot()
    let clock = ContinuousClock()

    for epoch in 1...max(epochs, 1) where epochs > 0 {
      if !contiguous { Dataset.shuffle(&order, using: &rng) }
      let lr = optimizer.learningRate * schedule.multiplier(epoch: epoch, of: epochs)
      var lossSum = 0.0
      var correct: Int64 = 0
      let started = clock.now
      for step in 0..<stepsPerEpoch {
        let start = step * capacity
        let rows = min(capacity, n - start)
        let x: UnsafeMutablePointer<Float>, t: UnsafeMutablePointer<Float>
        if contiguous {
          x = features + start * d
          t = targets.pointer + start * width
          for r in 0..<rows { yBatch[r] = train.labels[start + r] }
        } else {
          for r in 0..<rows {
            let i = order[start + r]
            (xBatch.pointer + r * d).update(from: features + i * d, count: d)
            (tBatch.pointer + r * width).update(from: targets.pointer + i * width, count: width)
            yBatch[r] = train.labels[i]
          }
          x = xBatch.pointer
          t = tBatch.pointer
        }
        let globalStep = UInt64(optimizer.steps)
        // Only gradients that will be stored need zeroing.
        for g in stepped { (gradients.pointer + g.offset).update(repeating: 0, count: g.count) }
        let fused = probe == nil ? nil : optimizer.fusedStep(learningRate: lr)
        var value = 0.0
        var right: Int64 = 0
        var c0 = 0
        while c0 < rows {
          let cr = min(planRows, rows - c0)
          let xc = x + c0 * d
          // Distinct random streams per seed, step and chunk (dropout).
          let stream = (globalStep &* 0x10_0000 &+ UInt64(c0)) ^ (seed &* 0x9E37_79B9_7F4A_7C15)
          try model.forward(
            xc, batch: cr, plan: plan, context: context, training: true, step: stream,
            through: head.readsLayer + 1)
          let part = try head.evaluate(
            context: context, outputs: plan.outputs[head.readsLayer],
            probabilities: head.probabilitiesLayer.map { plan.outputs[$0] }, targets: t + c0 * width,
            gradient: plan.gradients[head.readsLayer], rows: cr, classes: width, count: rows)
          guard part.isFinite else {
            model.restore(lastGood)
            throw NerveError(
              .diverged, at: "epoch \(epoch), step \(step + 1)",
              "the loss became \(part.isNaN ? "NaN" : "infinite"); training stopped and the model was restored to the end of epoch \(epoch - 1)\(epoch == 1 ? " (its initial parameters)" : ""). Try a smaller learning rate."
            )
          }
          value += part
          if c0 == 0 {
            // The penalty is on the parameters this step starts from (fused layers change
            // them during backward).
            for g in penalties {
              var ss = 0.0
              try context.check(nerve_sum_squares(ctx, &ss, model.parameterStorage.pointer + g.offset, Int64(g.count)))
              value += Double(g.l2Decay) / 2 * ss
            }
          }
          try model.backward(
            xc, batch: cr, plan: plan, context: context, gradients: gradients.pointer,
            from: head.readsLayer, step: stream, fused: fused, fusedLayers: fusedLayers)
          var chunkRight: Int64 = 0
          try yBatch.withUnsafeBufferPointer {
            try context.check(
              nerve_count_correct(ctx, &chunkRight, plan.outputs[last], $0.baseAddress! + c0, Int64(cr), Int64(width)))
          }
          right += chunkRight
          c0 += cr
        }
        if recorder != nil {
          let stats = try recorder!.measure(gradients.pointer, context: context)
          recorder!.add(stats)
          if let every = gradientDiagnostics?.everySteps, (optimizer.steps + 1) % every == 0 {
            onGradients?(GradientRecord(epoch: epoch, step: optimizer.steps + 1, layers: stats))
          }
        }
        try optimizer.step(
          context: context, parameters: model.parameterStorage.pointer,
          gradients: gradients.pointer, groups: stepped, learningRate: lr,
          parameterFloats: model.parameterStorage.count)
        correct += right
        lossSum += value * Double(rows)
        onBatch?(
          BatchProgress(
            epoch: epoch, epochs: epochs, batch: step + 1, batches: stepsPerEpoch,
            loss: lossSum / Double(start + rows)))
      }
      let elapsed = clock.now - started
      var metrics = EpochMetrics(
        epoch: epoch, seconds: elapsed.seconds, trainLoss: lossSum / Double(n),
        trainAccuracy: Double(correct) / Double(n), learningRate: Double(lr))
      if let validation {
        let e = try model.evaluate(validation, head: head, context: context)
        metrics.validLoss = e.loss
        metrics.validAccuracy = e.accuracy
      }
      if let test {
        let e = try model.evaluate(test, head: head, context: context)
        metrics.testLoss = e.loss
        metrics.testAccuracy = e.accuracy
      }
      metrics.gradients = recorder?.takeMeans()
      history.epochs.append(metrics)
      lastGood = model.snapshot()
      var stop = false
      if let earlyStopping, let score = earlyStopping.score(metrics) {
        if best == nil || score > best!.score + earlyStopping.minimumDelta {
          best = (score, epoch, earlyStopping.restoreBest ? lastGood : ([], []))
          waited = 0
        } else {
          waited += 1
          stop = waited > earlyStopping.patience
        }
      }
      if let onEpoch, !onEpoch(metrics) { stop = true }
      if stop {
        history.stoppedEarly = epoch < epochs
        break
      }
    }
    if let best, earlyStopping?.restoreBest == true {
      history.bestEpoch = best.epoch
      if best.epoch != history.epochs.last?.epoch { model.restore(best.snapshot) }
    }
    return history
  }


  /// Loss and accuracy of the model on `data`, with this trainer's loss and threads.
  public func evaluate(_ data: Dataset) throws -> Evaluation {
    try checkFits(data)
    return try model.evaluate(data, head: LossHead(loss: loss, model: model), context: context)
  }

  func checkFits(_ data: Dataset) throws {
    guard data.sampleSize == model.inputCount else {
      throw NerveError(
        .shapeMismatch, at: data.name,
        "samples have \(data.sampleSize) values (shape \(data.sampleShape)) but the model takes \(model.inputCount) (shape \(model.inputShape))"
      )
    }
    if let t = data.targets, t.shape[1] != model.outputCount {
      throw NerveError(
        .shapeMismatch, at: data.name,
        "targets have \(t.shape[1]) values per sample but the model has \(model.outputCount) outputs")
    }
    guard data.classes <= model.outputCount else {
      throw NerveError(
        .shapeMismatch, at: data.name,
        "the data has \(data.classes) classes but the model has only \(model.outputCount) outputs")
    }
  }
}

extension Sequential {
  /// Loss and accuracy on `data` (inference mode, in chunks).
  /// - Parameter loss: the loss to report.
  public func evaluate(_ data: Dataset, loss: Loss) throws -> Evaluation {
    guard data.sampleSize == inputCount, data.classes <= outputCount else {
      throw NerveError(
        .shapeMismatch, at: data.name,
        "samples of \(data.sampleSize) values and \(data.classes) classes do not fit a model taking \(inputCount) values with \(outputCount) outputs"
      )
    }
    return try evaluate(data, head: LossHead(loss: loss, model: self), context: context)
  }

  func evaluate(_ data: Dataset, head: LossHead, context: ComputeContext) throws -> Evaluation {
    let width = outputCount
    let targets = data.oneHot(width: width)
    var loss = 0.0
    var correct: Int64 = 0
    try data.labels.withUnsafeBufferPointer { labels in
      try infer(data.features.storage.pointer, count: data.count, context: context) {
        plan, chunk, start in
        loss += try head.evaluate(
          context: context, outputs: plan.outputs[head.readsLayer], probabilities: nil,
          targets: targets.pointer + start * width, gradient: nil, rows: chunk, classes: width,
          count: data.count)
        var right: Int64 = 0
        try context.check(
          nerve_count_correct(
            context.raw, &right, plan.outputs[layers.count - 1], labels.baseAddress! + start,
            Int64(chunk), Int64(width)))
        correct += right
      }
    }
    return Evaluation(loss: loss, correct: Int(correct), count: data.count)
  }
}

extension Duration {
  /// The duration in seconds as a Double.
  var seconds: Double {
    let c = components
    return Double(c.seconds) + Double(c.attoseconds) * 1e-18
  }
}

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
    try checkFits(data)
    let head = try LossHead(loss: loss, model: model)
    let width = model.outputCount
    let plan = Sequential.Plan(model: model, capacity: data.count, training: true)
    try context.reserve(bytes: plan.workspaceBytes)
    let grads = FloatBuffer(count: model.parameterStorage.count)
    let targets = data.oneHot(width: width)
    let x = data.features.storage.pointer
    try model.forward(x, batch: data.count, plan: plan, context: context, training: true, through: head.readsLayer + 1)
    var loss = try head.evaluate(
      context: context, outputs: plan.outputs[head.readsLayer],
      probabilities: head.probabilitiesLayer.map { plan.outputs[$0] }, targets: targets.pointer,
      gradient: plan.gradients[head.readsLayer], rows: data.count, classes: width, count: data.count)
    for g in model.parameterGroups where g.info.decay > 0 {
      var ss = 0.0
      try context.check(nerve_sum_squares(context.raw, &ss, model.parameterStorage.pointer + g.offset, Int64(g.info.count)))
      loss += Double(g.info.decay) / 2 * ss
    }
    try model.backward(x, batch: data.count, plan: plan, context: context, gradients: grads.pointer, from: head.readsLayer)
    // The L2 penalty's gradient (optimizers apply it as coupled decay, outside backward).
    for g in model.parameterGroups where g.info.decay > 0 {
      let w = model.parameterStorage.pointer + g.offset, d = grads.pointer + g.offset
      for i in 0..<g.info.count { d[i] += g.info.decay * w[i] }
    }
    let gradients = model.parameterGroups.map { g in
      ParameterGradient(
        layer: g.layer, name: g.info.name,
        value: Tensor(shape: g.info.shape, values: Array(UnsafeBufferPointer(start: grads.pointer + g.offset, count: g.info.count))))
    }
    return (loss, gradients)
  }
}
