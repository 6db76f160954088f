// A whole run from a config: load the data, build the model, train it, evaluate it, write the
// metrics file and save the model. `nerve train` is this plus a display.

/// What a run reports while it works, for displays; every member is optional.
public struct RunObserver {
  /// After the data is loaded and the model built, before the first epoch.
  public var started: ((RunStart) -> Void)?
  /// After every step.
  public var batch: ((BatchProgress) -> Void)?
  /// After every epoch; return false to stop training.
  public var epoch: ((EpochMetrics) -> Bool)?
  /// Asked after every step; true stops training there (Ctrl-C). The run then throws a
  /// `NerveError` of kind `.interrupted`, after writing a checkpoint and the model if asked to.
  public var shouldStop: (() -> Bool)?

  public init(
    started: ((RunStart) -> Void)? = nil, batch: ((BatchProgress) -> Void)? = nil,
    epoch: ((EpochMetrics) -> Bool)? = nil, shouldStop: (() -> Bool)? = nil
  ) {
    self.started = started
    self.batch = batch
    self.epoch = epoch
    self.shouldStop = shouldStop
  }
}

/// A run about to train: its data, model and trainer.
public struct RunStart {
  public var data: PreparedData
  public var model: Sequential
  public var trainer: Trainer
}

/// Where a run keeps checkpoints, and the one it continues from.
public struct CheckpointOptions {
  /// The checkpoint file, rewritten atomically at every epoch's end, every `everySteps` steps
  /// and when the run is interrupted.
  public var path: String?
  public var everySteps: Int?
  /// A checkpoint of this same run to continue from.
  public var resume: TrainingCheckpoint?

  public init(path: String? = nil, everySteps: Int? = nil, resume: TrainingCheckpoint? = nil) {
    self.path = path
    self.everySteps = everySteps
    self.resume = resume
  }
}

/// A finished run.
public struct ExperimentResult {
  /// The trained model (with the best epoch's weights when early stopping restored them).
  public var model: Sequential
  public var data: PreparedData
  public var history: History
  public var test: Evaluation
  public var confusion: ConfusionMatrix
  /// The metrics file's last record.
  public var summary: RunSummary
}

extension Experiment {
  /// Loads the data (unless given), builds the model and trains it as the config says, then
  /// evaluates it on the test set.
  /// - Parameters:
  ///   - data: data already loaded for this config, to skip loading.
  ///   - metrics: a JSON Lines file to write: a line per epoch (and per gradient report), then
  ///     the summary, each appended as it is known.
  ///   - saveTo: a model file to write at the end.
  ///   - observer: progress callbacks.
  ///   - checkpoints: where to keep checkpoints, and one to resume from (its metrics file is
  ///     cut back to what it held at that checkpoint, so every epoch appears once).
  ///   - ranks: the ranks training together, data-parallel (see `Trainer.communicator`);
  ///     give files to write on rank 0 only.
  /// - Throws: `NerveError`. If the loss diverges, the last good model is saved first (when
  ///   `saveTo` is given) and the error says so; so too when the run is interrupted.
  public func run(
    data: PreparedData? = nil, metrics: String? = nil, saveTo: String? = nil, observer: RunObserver = .init(),
    checkpoints: CheckpointOptions = .init(), ranks: Communicator? = nil
  ) throws -> ExperimentResult {
    let clock = ContinuousClock()
    let started = clock.now
    try config.validate()
    let data = try data ?? loadData()
    let model = try makeModel(inputShape: data.train.sampleShape)
    model.preprocessing = data.preprocessing
    let trainer = Trainer(
      model: model, loss: config.loss, optimizer: try makeOptimizer(), threads: config.threads, communicator: ranks)
    if let resume = checkpoints.resume, resume.info["config"].map({ (try? ExperimentConfig(json: $0))?.runIdentity }) != config.runIdentity {
      throw NerveError(.badValue, at: "checkpoint", "was written by another run (another config or other settings); resume it with the config it holds")
    }
    let log = try metrics.map { try JSONLinesWriter(path: $0, truncate: checkpoints.resume == nil) }
    if let log, let resume = checkpoints.resume {
      guard resume.info["metrics"] == log.path, let bytes = resume.info["metrics_bytes"].flatMap(Int.init) else {
        throw NerveError(.badValue, at: log.path, "the checkpoint was not written with this metrics file; give the run's own --metrics file or none")
      }
      try log.truncate(to: bytes)
    }
    // Callbacks cannot throw: the first failure to write stops training and is thrown after.
    var failure: Error?
    func write(_ record: MetricsRecord) {
      guard let log, failure == nil else { return }
      do { try log.append(record) } catch { failure = error }
    }
    trainer.onGradients = { write(.gradients($0)) }
    trainer.shouldStop = observer.shouldStop
    let policy = checkpoints.path.map { path in
      CheckpointPolicy(everySteps: checkpoints.everySteps) { c in
        var c = c
        c.info = ["config": config.json, "metrics": metrics ?? "", "metrics_bytes": String(log?.size ?? 0), "save": saveTo ?? ""]
        try c.write(to: path, model: model)
      }
    }
    observer.started?(RunStart(data: data, model: model, trainer: trainer))
    let history: History
    do {
      history = try fit(
        trainer, data, onBatch: observer.batch,
        onEpoch: { metrics in
          write(.epoch(metrics))
          let goOn = observer.epoch?(metrics) ?? true
          return goOn && failure == nil
        }, checkpoints: policy, resumingFrom: checkpoints.resume)
    } catch let error as NerveError where error.kind == .diverged || error.kind == .interrupted {
      guard let saveTo else { throw error }
      try model.save(to: saveTo)
      let kept = error.kind == .diverged ? "The last good model" : "The model as it is"
      throw NerveError(error.kind, at: error.location, error.message + ". \(kept) was saved to \(saveTo).")
    }
    if let failure { throw failure }
    let (test, confusion) = try trainer.evaluateWithConfusion(data.test)
    let summary = RunSummary(
      test: test, trainingSeconds: history.trainingSeconds, totalSeconds: (clock.now - started).seconds,
      threads: model.context.threads, bestEpoch: history.bestEpoch, confusionMatrix: confusion.counts,
      config: config.source == ExperimentConfig().source ? nil : config.source,
      dataSet: config.dataSet.rawValue, dataPath: config.dataPath,
      testFraction: config.dataSet == .digits ? config.testFraction : nil,
      splitSeed: config.dataSet == .digits ? config.splitSeed : nil, model: saveTo)
    write(.summary(summary))
    if let failure { throw failure }
    if let saveTo { try model.save(to: saveTo) }
    return ExperimentResult(
      model: model, data: data, history: history, test: test, confusion: confusion, summary: summary)
  }
}
