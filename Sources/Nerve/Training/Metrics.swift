// Metrics: what training and evaluation report.

/// How many samples each gradient step uses.
public enum BatchSize: Sendable, Equatable, CustomStringConvertible, ExpressibleByIntegerLiteral {
  /// The whole training set per step (full-batch gradient descent).
  case full
  /// `n` samples per step; 1 is per-sample (stochastic) gradient descent.
  case size(Int)

  public init(integerLiteral value: Int) { self = .size(value) }

  /// Parses `full` or a positive integer.
  public init?(parsing text: String) {
    if text.lowercased() == "full" {
      self = .full
    } else if let n = Int(text), n >= 1 {
      self = .size(n)
    } else {
      return nil
    }
  }

  /// Samples per step for a training set of `count` samples.
  public func resolved(count: Int) -> Int {
    switch self {
    case .full: max(count, 1)
    case .size(let n): max(1, min(n, count))
    }
  }

  public var description: String {
    switch self {
    case .full: "full"
    case .size(let n): "\(n)"
    }
  }
}

/// Loss and accuracy of a model on a dataset.
public struct Evaluation: Sendable, Codable, Equatable {
  /// Mean loss per sample.
  public var loss: Double
  /// Samples whose predicted class is the label.
  public var correct: Int
  /// Samples evaluated.
  public var count: Int
  /// correct / count.
  public var accuracy: Double { count == 0 ? 0 : Double(correct) / Double(count) }
}

/// What one epoch of training measured.
public struct EpochMetrics: Sendable, Codable, Equatable {
  /// 1-based epoch number.
  public var epoch: Int
  /// Wall-clock seconds of the epoch's training steps (evaluation excluded).
  public var seconds: Double
  /// Mean loss over the epoch's steps (as Keras reports it: each step's loss at the weights it
  /// started from).
  public var trainLoss: Double
  /// Fraction of training samples classified correctly during the epoch's steps.
  public var trainAccuracy: Double
  /// Validation loss and accuracy after the epoch, if a validation set was given.
  public var validLoss: Double?
  public var validAccuracy: Double?
  /// Test loss and accuracy after the epoch, if asked for every epoch.
  public var testLoss: Double?
  public var testAccuracy: Double?
  /// Learning rate used during the epoch.
  public var learningRate: Double
  /// Per-layer gradient statistics, averaged over the epoch's steps (with diagnostics on).
  public var gradients: [LayerGradientStats]?

  enum CodingKeys: String, CodingKey {
    case epoch, seconds
    case trainLoss = "train_loss", trainAccuracy = "train_accuracy"
    case validLoss = "valid_loss", validAccuracy = "valid_accuracy"
    case testLoss = "test_loss", testAccuracy = "test_accuracy"
    case learningRate = "learning_rate"
    case gradients
  }

  public init(
    epoch: Int, seconds: Double, trainLoss: Double, trainAccuracy: Double, learningRate: Double
  ) {
    self.epoch = epoch
    self.seconds = seconds
    self.trainLoss = trainLoss
    self.trainAccuracy = trainAccuracy
    self.learningRate = learningRate
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    epoch = try c.decode(Int.self, forKey: .epoch)
    seconds = try c.decodeIfPresent(Double.self, forKey: .seconds) ?? 0
    trainLoss = try c.decodeFinite(.trainLoss)
    trainAccuracy = try c.decodeFinite(.trainAccuracy)
    validLoss = try c.decodeIfPresent(Double.self, forKey: .validLoss)
    validAccuracy = try c.decodeIfPresent(Double.self, forKey: .validAccuracy)
    testLoss = try c.decodeIfPresent(Double.self, forKey: .testLoss)
    testAccuracy = try c.decodeIfPresent(Double.self, forKey: .testAccuracy)
    learningRate = try c.decodeIfPresent(Double.self, forKey: .learningRate) ?? .nan
    gradients = try c.decodeIfPresent([LayerGradientStats].self, forKey: .gradients)
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(epoch, forKey: .epoch)
    try c.encodeFinite(seconds, forKey: .seconds)
    try c.encodeFinite(trainLoss, forKey: .trainLoss)
    try c.encodeFinite(trainAccuracy, forKey: .trainAccuracy)
    try c.encodeFinite(validLoss, forKey: .validLoss)
    try c.encodeFinite(validAccuracy, forKey: .validAccuracy)
    try c.encodeFinite(testLoss, forKey: .testLoss)
    try c.encodeFinite(testAccuracy, forKey: .testAccuracy)
    try c.encodeFinite(learningRate, forKey: .learningRate)
    try c.encodeIfPresent(gradients, forKey: .gradients)
  }
}

extension EpochMetrics {
  /// A metric by its metrics-file name (`train_loss`, `valid_accuracy`, ...).
  public func value(_ metric: String) -> Double? {
    switch metric {
    case "learning_rate": learningRate
    case "seconds": seconds
    default: lossAndAccuracy.value(metric)
    }
  }
}

/// A run's six loss and accuracy figures (an epoch's, or a sweep run's final ones), looked up
/// by their names in the metrics files.
public struct LossAndAccuracy: Sendable, Equatable {
  public var trainLoss, trainAccuracy, validLoss, validAccuracy, testLoss, testAccuracy: Double?

  /// `train_loss`, `valid_accuracy`, ... by name; nil for another name or a figure not measured.
  public func value(_ metric: String) -> Double? {
    switch metric {
    case "train_loss": trainLoss
    case "train_accuracy": trainAccuracy
    case "valid_loss": validLoss
    case "valid_accuracy": validAccuracy
    case "test_loss": testLoss
    case "test_accuracy": testAccuracy
    default: nil
    }
  }
}

extension EpochMetrics {
  /// The epoch's loss and accuracy figures.
  public var lossAndAccuracy: LossAndAccuracy {
    LossAndAccuracy(
      trainLoss: trainLoss, trainAccuracy: trainAccuracy, validLoss: validLoss, validAccuracy: validAccuracy,
      testLoss: testLoss, testAccuracy: testAccuracy)
  }
}

/// Where training is within an epoch, for progress displays.
public struct BatchProgress: Sendable {
  public var epoch: Int
  public var epochs: Int
  /// Steps done in this epoch, and steps per epoch.
  public var batch: Int
  public var batches: Int
  /// Mean loss so far in this epoch.
  public var loss: Double
}

/// Everything a `fit` call measured.
public struct History: Sendable {
  /// One entry per completed epoch.
  public var epochs: [EpochMetrics] = []
  /// True if early stopping (or the epoch callback) ended training before the last epoch.
  public var stoppedEarly = false
  /// The epoch whose parameters the model holds after early stopping restored the best.
  public var bestEpoch: Int?

  public init(epochs: [EpochMetrics] = []) { self.epochs = epochs }
  /// Total wall-clock seconds of training steps.
  public var trainingSeconds: Double { epochs.reduce(0) { $0 + $1.seconds } }
}
