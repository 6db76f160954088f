// One epoch: the training set in this epoch's order, batch after batch, with progress and the
// epoch's training metrics.

/// A step whose loss was not finite, with where it happened.
struct TrainingDiverged: Error {
  var epoch: Int
  var step: Int
  var value: Double
}

/// A stop asked for between steps, with where it happened.
struct TrainingInterrupted: Error {
  var epoch: Int
  var step: Int
}

/// Called after each step with its gradient statistics, when diagnostics ask for them.
typealias GradientObserver = (GradientRecord) -> Void

extension TrainingWorkspace {
  /// Runs the steps of epoch `epoch` that `state` has not yet done (all of them at the start of
  /// an epoch), and returns the epoch's training metrics. `learningRate` gives the rate of each
  /// 0-based step of the epoch; the metrics record the last step's.
  /// `afterStep` sees the state after every step but an epoch's last (a checkpoint's chance).
  /// - Throws: `TrainingDiverged` for a non-finite loss, `TrainingInterrupted` when
  ///   `shouldStop` says so after a step; errors of the kernels.
  func runEpoch(
    _ epoch: Int, learningRate: (Int) -> Float, state: inout TrainingState,
    onBatch: ((BatchProgress) -> Void)?, onGradients: GradientObserver?, shouldStop: (() -> Bool)? = nil,
    afterStep: ((TrainingState) throws -> Void)? = nil
  ) throws -> EpochMetrics {
    let n = train.count, steps = stepsPerEpoch
    if state.stepInEpoch == 0 && !keepsOrder { Dataset.shuffle(&state.order, using: &state.shuffler) }
    let clock = ContinuousClock()
    var started = clock.now
    /// Adds the time since `started` to the epoch's (before a checkpoint or a stop sees it).
    func clockIn(_ state: inout TrainingState) {
      let now = clock.now
      state.epochSeconds += (now - started).seconds
      started = now
    }
    while state.stepInEpoch < steps {
      let step = state.stepInEpoch
      let start = step * batchCapacity
      let rows = min(batchCapacity, n - start)
      let batch = try batch(at: start, rows: rows, order: state.order)
      let rate = learningRate(step)
      let result: StepResult
      do {
        result = try computeGradients(batch, learningRate: rate)
      } catch let e as NonFiniteLoss {
        throw TrainingDiverged(epoch: epoch, step: step + 1, value: e.value)
      }
      try recordGradients(epoch: epoch, state: &state, onGradients: onGradients)
      try applyUpdate(learningRate: rate)
      state.epochCorrect += result.correct
      state.epochLossSum += result.loss * Double(rows)
      state.stepInEpoch += 1
      onBatch?(
        BatchProgress(
          epoch: epoch, epochs: settings.epochs, batch: step + 1, batches: steps,
          loss: state.epochLossSum / Double(start + rows)))
      if let afterStep, state.stepInEpoch < steps {
        clockIn(&state)
        try afterStep(state)
        started = clock.now  // Checkpoint writing is not training time.
      }
      if let shouldStop, shouldStop() {
        clockIn(&state)
        throw TrainingInterrupted(epoch: epoch, step: step + 1)
      }
    }
    clockIn(&state)
    var metrics = EpochMetrics(
      epoch: epoch, seconds: state.epochSeconds, trainLoss: state.epochLossSum / Double(n),
      trainAccuracy: Double(state.epochCorrect) / Double(n), learningRate: Double(learningRate(steps - 1)))
    metrics.gradients = state.recorder?.takeMeans()
    return metrics
  }

  /// Adds this step's gradient statistics to the epoch's (with diagnostics on), and reports
  /// them every `everySteps` steps.
  private func recordGradients(epoch: Int, state: inout TrainingState, onGradients: GradientObserver?) throws {
    guard state.recorder != nil else { return }
    let stats = try state.recorder!.measure(gradients.pointer, context: context)
    state.recorder!.add(stats)
    let step = optimizer.steps + 1
    if let every = settings.gradientDiagnostics?.everySteps, step % every == 0 {
      onGradients?(GradientRecord(epoch: epoch, step: step, layers: stats))
    }
  }
}
