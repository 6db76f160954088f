// EarlyStopping: stop when a validation metric stops improving, and keep the best epoch.

/// Stops training when a validation metric stops improving, keeping the best epoch's weights.
public struct EarlyStopping: Sendable, Equatable {
  /// The metric watched.
  public enum Monitor: String, Sendable, Equatable {
    case validationLoss = "valid_loss"
    case validationAccuracy = "valid_accuracy"
  }

  public var monitor: Monitor
  /// Epochs without improvement tolerated before stopping.
  public var patience: Int
  /// The least change that counts as an improvement.
  public var minimumDelta: Double
  /// Put back the parameters of the best epoch when training ends.
  public var restoreBest: Bool

  public init(monitor: Monitor = .validationLoss, patience: Int = 3, minimumDelta: Double = 0, restoreBest: Bool = true) {
    self.monitor = monitor
    self.patience = patience
    self.minimumDelta = minimumDelta
    self.restoreBest = restoreBest
  }

  /// The watched value of an epoch, oriented so that larger is better.
  func score(_ m: EpochMetrics) -> Double? {
    switch monitor {
    case .validationLoss: m.validLoss.map { -$0 }
    case .validationAccuracy: m.validAccuracy
    }
  }
}

extension EarlyStopping {
  /// Follows the watched metric epoch by epoch and remembers the best epoch's model.
  struct Tracker {
    let rule: EarlyStopping
    var bestScore: Double?
    var bestEpoch = 0
    var bestModel: ModelSnapshot?
    /// Epochs since the last improvement.
    var waited = 0

    init(rule: EarlyStopping) { self.rule = rule }

    /// Takes an epoch's metrics (`model` holds the parameters after it); true when training
    /// should stop.
    mutating func shouldStop(after metrics: EpochMetrics, model: Sequential) -> Bool {
      guard let score = rule.score(metrics) else { return false }
      if bestScore == nil || score > bestScore! + rule.minimumDelta {
        bestScore = score
        bestEpoch = metrics.epoch
        bestModel = rule.restoreBest ? model.snapshot() : nil
        waited = 0
        return false
      }
      waited += 1
      return waited > rule.patience
    }

    /// Puts the best epoch's parameters back into `model` (when the rule asks for it) and
    /// notes that epoch in `history`.
    func restoreBest(into model: Sequential, history: inout History) {
      guard rule.restoreBest, bestScore != nil else { return }
      history.bestEpoch = bestEpoch
      if bestEpoch != history.epochs.last?.epoch, let bestModel { model.restore(bestModel) }
    }
  }
}
