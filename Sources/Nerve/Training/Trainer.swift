// Trainer: gradient descent over a dataset, epoch by epoch, with per-epoch metrics.
//
// The parts, each in its own file: TrainingSettings (the choices of a fit call),
// TrainingWorkspace (what a run prepares), TrainingStep (forward, loss, backward, update),
// TrainingEpoch (the steps of one pass), TrainingState (how far the run has come), and the
// controls in Controls/ (schedule, early stopping, divergence, gradient diagnostics).

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
  /// Threads and instruction set every kernel of a step runs with: the model's context.
  public var context: ComputeContext { model.context }
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
  /// Asked after every step; when it returns true, `fit` stops there and throws a
  /// `NerveError` of kind `.interrupted` (the model keeps the parameters of that step). For
  /// Ctrl-C, or a caller in another language that wants to stop.
  public var shouldStop: (() -> Bool)?
  /// The ranks training together, data-parallel (nil: this process alone). Every rank runs
  /// the same `fit` with the same data and settings; each takes its share of every batch, and
  /// the model ends byte-identical to one process's (see DataParallelPass). Rank 0's initial
  /// parameters are used; only rank 0 saves checkpoints. A stop asked on any rank stops all.
  public let communicator: Communicator?
  /// The last run's training features as their non-zero entries, where its first layer read
  /// them so, kept for the next `fit` on the same features (the same dataset, or a copy of it
  /// that shares its storage), which then starts its first epoch at once. Held, with the
  /// features themselves, until the next `fit` (which drops it before listing others) or until
  /// the trainer goes: 18 bytes a non-zero input with AVX-512, 14 with AVX2, 135 MB for MNIST's
  /// 50,000 training images beside their 157 MB as floats.
  private var listing: FeatureListing?

  /// - Parameters:
  ///   - model: the model to train.
  ///   - loss: the loss to minimise.
  ///   - optimizer: how gradients update parameters (it keeps state for this model).
  ///   - threads: worker threads for the model's kernels from now on (training and
  ///     inference); nil keeps the model's setting (by default `OMP_NUM_THREADS` or all CPUs).
  public init(
    model: Sequential, loss: Loss, optimizer: Optimizer, threads: Int? = nil, communicator: Communicator? = nil
  ) {
    self.model = model
    self.loss = loss
    self.optimizer = optimizer
    self.communicator = communicator
    if let threads, threads != model.context.threads {
      model.context = ComputeContext(threads: threads)
    }
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
  ///   - checkpoints: when and how to store checkpoints (at every epoch's end, every N steps,
  ///     and when `shouldStop` interrupts training).
  ///   - resumingFrom: a checkpoint of this same run to continue from (the model and optimizer
  ///     are set from it first); the result is the one the run would have had uninterrupted.
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
    onBatch: ((BatchProgress) -> Void)? = nil, onEpoch: ((EpochMetrics) -> Bool)? = nil,
    checkpoints: CheckpointPolicy? = nil, resumingFrom resume: TrainingCheckpoint? = nil
  ) throws -> History {
    let settings = TrainingSettings(
      epochs: epochs, batchSize: batchSize, shuffle: shuffle, seed: seed, schedule: schedule,
      earlyStopping: earlyStopping, gradientDiagnostics: gradientDiagnostics)
    try settings.validate(train: train, validation: validation)
    try optimizer.validate()
    for data in [train, validation, test].compactMap({ $0 }) { try model.checkFits(data) }
    let workspace = try prepareWorkspace(train, settings: settings)
    let fingerprint = checkpointSettings(settings, samples: train.count)
    var state = TrainingState(samples: train.count, settings: settings, model: model)
    var divergence = DivergenceGuard(model: model)
    try shareInitialModel()
    if let resume {
      try restore(resume, settings: fingerprint)
      state = resumedState(resume, settings: settings)
      divergence = DivergenceGuard(lastGood: resume.lastGood)
    }
    func checkpoint(_ s: TrainingState) throws {
      guard communicator?.isRoot ?? true else { return }
      try checkpoints?.save(capture(s, divergence: divergence, settings: fingerprint))
    }
    let afterStep = checkpoints?.everySteps.map { every in
      { (s: TrainingState) throws in if self.optimizer.steps % every == 0 { try checkpoint(s) } }
    }
    while state.completedEpochs < epochs && !state.history.stoppedEarly {
      let epoch = state.completedEpochs + 1
      let steps = workspace.stepsPerEpoch
      let rate: (Int) -> Float = { step in
        self.optimizer.learningRate * schedule.multiplier(step: (epoch - 1) * steps + step, stepsPerEpoch: steps, epochs: epochs)
      }
      var metrics: EpochMetrics
      do {
        metrics = try workspace.runEpoch(
          epoch, learningRate: rate, state: &state, onBatch: onBatch, onGradients: onGradients,
          shouldStop: stopTogether(), afterStep: afterStep)
      } catch let d as TrainingDiverged {
        throw divergence.stop(d, model: model)
      } catch let i as TrainingInterrupted {
        try checkpoint(state)
        throw NerveError(
          .interrupted, at: "epoch \(i.epoch), step \(i.step)",
          "training was stopped after step \(i.step) of \(workspace.stepsPerEpoch) in epoch \(i.epoch); the model holds the parameters of that step")
      }
      try evaluate(after: &metrics, validation: validation, test: test, head: workspace.head)
      state.history.epochs.append(metrics)
      state.completedEpochs = epoch
      state.beginEpoch()
      divergence.epochFinished(model: model)
      var stop = state.stopping?.shouldStop(after: metrics, model: model) ?? false
      if let onEpoch, !onEpoch(metrics) { stop = true }
      // Ranks stop together (a caller's onEpoch, or a metrics file only rank 0 writes, may say
      // stop on one rank alone).
      if let ranks = communicator, ranks.size > 1 { stop = try ranks.maximum(stop ? 1 : 0) != 0 }
      // A stop before the last epoch is recorded before the checkpoint, which a resumed run
      // then honours.
      if stop && epoch < epochs { state.history.stoppedEarly = true }
      try checkpoint(state)
      if stop { break }
    }
    state.stopping?.restoreBest(into: model, history: &state.history)
    return state.history
  }

  /// The run's workspace, listing `train`'s features only where the kept listing is not of them:
  /// a kept listing of other features is let go first, so that two are never held at once.
  private func prepareWorkspace(_ train: Dataset, settings: TrainingSettings) throws -> TrainingWorkspace {
    let reusable = listing.flatMap { $0.lists(train.features, columns: model.inputCount, context: context) ? $0 : nil }
    listing = nil
    let workspace = try TrainingWorkspace(
      model: model, loss: loss, optimizer: optimizer, train: train, settings: settings,
      fusesOptimizerSteps: fusesOptimizerSteps, chunkRows: chunkRows, communicator: communicator,
      previous: reusable)
    listing = workspace.listing.flatMap { $0.source.borrowed ? nil : $0 }
    return workspace
  }

  /// A resumed run's state: the checkpoint's, with the controls' memory from it and their rules
  /// from this call (checked equal).
  private func resumedState(_ resume: TrainingCheckpoint, settings: TrainingSettings) -> TrainingState {
    var state = resume.state
    state.stopping = settings.earlyStopping.map { rule in
      var t = EarlyStopping.Tracker(rule: rule)
      if let saved = resume.state.stopping {
        (t.bestScore, t.bestEpoch, t.bestModel, t.waited) = (saved.bestScore, saved.bestEpoch, saved.bestModel, saved.waited)
      }
      return t
    }
    return state
  }

  /// Every rank starts from rank 0's parameters and layer state.
  private func shareInitialModel() throws {
    guard let ranks = communicator, ranks.size > 1 else { return }
    for buffer in [model.parameterStorage, model.stateStorage] where buffer.count > 0 {
      try ranks.broadcast(buffer.pointer, bytes: buffer.count * MemoryLayout<Float>.stride, from: 0)
    }
  }

  /// `shouldStop`, asked of every rank after each step: one rank's stop stops them all.
  private func stopTogether() -> (() -> Bool)? {
    guard let ranks = communicator, ranks.size > 1 else { return shouldStop }
    let ask = shouldStop
    return { ((try? ranks.maximum(ask?() == true ? 1 : 0)) ?? 1) != 0 }
  }

  /// Adds the validation and test results after an epoch to its metrics.
  private func evaluate(after metrics: inout EpochMetrics, validation: Dataset?, test: Dataset?, head: LossHead) throws {
    if let validation {
      let e = try model.evaluate(validation, head: head)
      metrics.validLoss = e.loss
      metrics.validAccuracy = e.accuracy
    }
    if let test {
      let e = try model.evaluate(test, head: head)
      metrics.testLoss = e.loss
      metrics.testAccuracy = e.accuracy
    }
  }

  /// Loss and accuracy of the model on `data`, with this trainer's loss.
  public func evaluate(_ data: Dataset) throws -> Evaluation {
    try model.evaluate(data, loss: loss)
  }

  /// Loss, accuracy and the confusion matrix on `data`, from one inference pass.
  public func evaluateWithConfusion(_ data: Dataset) throws -> (Evaluation, ConfusionMatrix) {
    try model.evaluateWithConfusion(data, loss: loss)
  }
}
