// TrainingState: how far a training run has come.

/// Everything about a run in progress besides the model's parameters and the optimizer's
/// state: where it is, the order of the current epoch, what the epoch has measured so far, the
/// controls' memory and the history. With the model and optimizer, it is what continuing the
/// run exactly needs.
struct TrainingState {
  /// Epochs finished.
  var completedEpochs = 0
  /// Steps done in the current epoch, and what they measured.
  var stepInEpoch = 0
  var epochLossSum = 0.0
  var epochCorrect: Int64 = 0
  var epochSeconds = 0.0
  /// The order of the training samples in the current epoch, and the generator shuffling it.
  var order: [Int]
  var shuffler: SeededGenerator
  /// Gradient statistics of the current epoch's steps (with diagnostics on).
  var recorder: GradientRecorder?
  /// The best epoch so far (with early stopping on).
  var stopping: EarlyStopping.Tracker?
  var history = History()

  init(samples: Int, settings: TrainingSettings, model: Sequential) {
    order = Array(0..<samples)
    shuffler = SeededGenerator(seed: settings.seed)
    recorder = settings.gradientDiagnostics.map { _ in GradientRecorder(model: model) }
    stopping = settings.earlyStopping.map { EarlyStopping.Tracker(rule: $0) }
  }

  /// Starts the next epoch's bookkeeping (after one has finished).
  mutating func beginEpoch() {
    stepInEpoch = 0
    epochLossSum = 0
    epochCorrect = 0
    epochSeconds = 0
  }
}
