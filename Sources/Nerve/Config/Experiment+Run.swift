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

  public init(
    started: ((RunStart) -> Void)? = nil, batch: ((BatchProgress) -> Void)? = nil,
    epoch: ((EpochMetrics) -> Bool)? = nil
  ) {
    self.started = started
    self.batch = batch
    self.epoch = epoch
  }
}

/// A run about to train: its data, model and trainer.
public struct RunStart {
  public var data: PreparedData
  public var model: Sequential
  public var trainer: Trainer
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
  /// - Throws: `NerveError`. If the loss diverges, the last good model is saved first (when
  ///   `saveTo` is given) and the error says so.
  public func run(
    data: PreparedData? = nil, metrics: String? = nil, saveTo: String? = nil, observer: RunObserver = .init()
  ) throws -> ExperimentResult {
    let clock = ContinuousClock()
    let started = clock.now
    try config.validate()
    let data = try data ?? loadData()
    let model = try makeModel(inputShape: data.train.sampleShape)
    model.preprocessing = data.preprocessing
    let trainer = Trainer(model: model, loss: config.loss, optimizer: try makeOptimizer(), threads: config.threads)
    let log = try metrics.map { try JSONLinesWriter(path: $0, truncate: true) }
    // Callbacks cannot throw: the first failure to write stops training and is thrown after.
    var failure: Error?
    func write(_ record: MetricsRecord) {
      guard let log, failure == nil else { return }
      do { try log.append(record) } catch { failure = error }
    }
    trainer.onGradients = { write(.gradients($0)) }
    observer.started?(RunStart(data: data, model: model, trainer: trainer))
    let history: History
    do {
      history = try fit(
        trainer, data, onBatch: observer.batch,
        onEpoch: { metrics in
          write(.epoch(metrics))
          let goOn = observer.epoch?(metrics) ?? true
          return goOn && failure == nil
        })
    } catch let error as NerveError where error.kind == .diverged {
      guard let saveTo else { throw error }
      try model.save(to: saveTo)
      throw NerveError(error.kind, at: error.location, error.message + " The last good model was saved to \(saveTo).")
    }
    if let failure { throw failure }
    let test = try trainer.evaluate(data.test)
    let confusion = try model.confusionMatrix(data.test)
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
