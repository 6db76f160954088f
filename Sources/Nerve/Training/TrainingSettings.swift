// TrainingSettings: the choices of one `fit` call, checked together before anything runs.

/// How a `fit` call trains: the arguments of `Trainer.fit` as one value.
struct TrainingSettings {
  var epochs: Int
  var batchSize: BatchSize
  var shuffle: Bool
  var seed: UInt64
  var schedule: LearningRateSchedule
  var earlyStopping: EarlyStopping?
  var gradientDiagnostics: GradientDiagnostics?

  /// Throws a `NerveError` naming the first setting that cannot be used with these data sets.
  func validate(train: Dataset, validation: Dataset?) throws {
    guard epochs >= 0 else {
      throw NerveError(.badValue, at: "epochs", "must be 0 or more, got \(epochs)")
    }
    guard train.count >= 1 else { throw NerveError(.badValue, at: train.name, "no samples") }
    if case .size(let n) = batchSize, n < 1 {
      throw NerveError(.badValue, at: "batch_size", "must be at least 1 or 'full', got \(n)")
    }
    if let earlyStopping {
      guard validation != nil else {
        throw NerveError(
          .badValue, at: "early_stopping",
          "watches \(earlyStopping.monitor.rawValue), so it needs a validation set")
      }
      guard earlyStopping.patience >= 0 else {
        throw NerveError(.badValue, at: "early_stopping.patience", "must be 0 or more")
      }
    }
    if let every = gradientDiagnostics?.everySteps, every < 1 {
      throw NerveError(.badValue, at: "gradient_every", "must be at least 1, got \(every)")
    }
  }

  /// Whether batches are slices of the training set in its stored order (no copying): when
  /// the order is kept, or when one batch holds everything and order cannot matter.
  func keepsOrder(count: Int) -> Bool { !shuffle || batchSize.resolved(count: count) >= count }
}
