// TrainingCheckpoint: a training run's whole state, so that a run stopped at any step (killed,
// interrupted) continues to the same result as if it never stopped.

/// Everything `Trainer.fit` needs to continue a run exactly: the model's parameters and
/// non-trained state, the optimizer's state and step count, the epoch and step reached with
/// what the epoch has measured so far, the shuffled order and the generator that shuffles it,
/// the controls' memory (the last good model, the best epoch's model, gradient statistics)
/// and the history.
///
/// A run resumed from a checkpoint (`fit(..., resumingFrom:)`) with the same data and settings
/// ends with a model byte-identical to the run that was never stopped, at any thread count.
public struct TrainingCheckpoint {
  var state: TrainingState
  var model: ModelSnapshot
  var lastGood: ModelSnapshot
  var optimizerState: [Float]
  var optimizerSteps: Int
  /// What the run trains with: a run resumed with other settings is refused.
  var settings: Settings
  /// Facts the caller stores with the checkpoint (the run's config, the metrics file's length).
  public var info: [String: String] = [:]

  /// Epochs finished, and steps done in the next one.
  public var completedEpochs: Int { state.completedEpochs }
  public var stepInEpoch: Int { state.stepInEpoch }
  /// Optimizer steps taken over the whole run.
  public var globalStep: Int { optimizerSteps }
  /// The epochs measured so far.
  public var history: History { state.history }

  /// The settings of a run, compared on resume.
  struct Settings: Codable, Equatable {
    var epochs: Int
    var batchSize: String
    var shuffle: Bool
    var seed: UInt64
    var schedule: String
    var loss: String
    var optimizer: String
    var samples: Int
    var parameters: Int
    var stateValues: Int
    /// Early stopping and gradient diagnostics, as text.
    var controls: String
  }
}

/// When `fit` writes checkpoints, and how.
public struct CheckpointPolicy {
  /// Also every this many optimizer steps (counted over the run); nil for epoch ends only.
  public var everySteps: Int?
  /// Stores a checkpoint (called at every epoch's end, every `everySteps` steps, and when
  /// training is interrupted).
  public var save: (TrainingCheckpoint) throws -> Void

  public init(everySteps: Int? = nil, save: @escaping (TrainingCheckpoint) throws -> Void) {
    self.everySteps = everySteps
    self.save = save
  }
}

extension Trainer {
  /// The settings that a checkpoint of this run records.
  func checkpointSettings(_ s: TrainingSettings, samples: Int) -> TrainingCheckpoint.Settings {
    TrainingCheckpoint.Settings(
      epochs: s.epochs, batchSize: s.batchSize.description, shuffle: s.shuffle, seed: s.seed,
      schedule: s.schedule.description, loss: loss.description, optimizer: optimizer.description,
      samples: samples, parameters: model.parameterStorage.count, stateValues: model.stateStorage.count,
      controls: "early stopping: \(s.earlyStopping.map { "\($0.monitor.rawValue), patience \($0.patience), delta \($0.minimumDelta), restore \($0.restoreBest)" } ?? "none"); gradients: \(s.gradientDiagnostics.map { "every \($0.everySteps.map(String.init) ?? "epoch")" } ?? "none")")
  }

  /// A checkpoint of the run now.
  func capture(_ state: TrainingState, divergence: DivergenceGuard, settings: TrainingCheckpoint.Settings) -> TrainingCheckpoint {
    TrainingCheckpoint(
      state: state, model: model.snapshot(), lastGood: divergence.lastGood,
      optimizerState: optimizer.state.map { Array($0.buffer) } ?? [], optimizerSteps: optimizer.steps,
      settings: settings)
  }

  /// Puts the model and optimizer back as the checkpoint holds them, after checking that it
  /// belongs to this run.
  func restore(_ c: TrainingCheckpoint, settings: TrainingCheckpoint.Settings) throws {
    guard c.settings == settings else {
      let differences = Mirror(reflecting: c.settings).children.compactMap { child -> String? in
        let mine = Mirror(reflecting: settings).children.first { $0.label == child.label }?.value
        return "\(child.value)" == "\(mine ?? "")" ? nil : "\(child.label ?? "?"): \(child.value) in the checkpoint, \(mine ?? "?") now"
      }
      throw NerveError(.badValue, at: "checkpoint", "belongs to another run (\(differences.joined(separator: "; ")))")
    }
    guard c.model.parameters.count == model.parameterStorage.count, c.model.state.count == model.stateStorage.count,
      c.optimizerState.count == (optimizer.state?.count ?? 0)
    else {
      throw NerveError(.badValue, at: "checkpoint", "its tensors do not fit this model and optimizer")
    }
    model.restore(c.model)
    if let state = optimizer.state, !c.optimizerState.isEmpty {
      c.optimizerState.withUnsafeBufferPointer { state.pointer.update(from: $0.baseAddress!, count: $0.count) }
    }
    optimizer.steps = c.optimizerSteps
  }
}
