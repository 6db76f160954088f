// The records of a metrics file (`nerve train --metrics`): one line per epoch, per gradient
// report and, last, the run's summary. Written and read by the same types.

/// One line of a metrics file.
public enum MetricsRecord: Sendable, Equatable, Codable {
  /// An epoch's training and validation metrics.
  case epoch(EpochMetrics)
  /// Per-layer gradient statistics at one step (`--gradient-every N`).
  case gradients(GradientRecord)
  /// The run's results: test metrics, times, the confusion matrix, where the data came from.
  case summary(RunSummary)

  public init(from decoder: Decoder) throws {
    let keys = try decoder.container(keyedBy: DynamicKey.self)
    if keys.contains(DynamicKey("step")) {
      self = .gradients(try GradientRecord(from: decoder))
    } else if keys.contains(DynamicKey("epoch")) {
      self = .epoch(try EpochMetrics(from: decoder))
    } else {
      self = .summary(try RunSummary(from: decoder))
    }
  }

  public func encode(to encoder: Encoder) throws {
    switch self {
    case .epoch(let m): try m.encode(to: encoder)
    case .gradients(let g): try g.encode(to: encoder)
    case .summary(let s): try s.encode(to: encoder)
    }
  }
}

/// What `nerve train` measured in the end, the last line of its metrics file.
public struct RunSummary: Sendable, Equatable, Codable {
  public var testLoss: Double
  public var testAccuracy: Double
  public var testCorrect: Int
  public var testCount: Int
  /// Seconds of training steps, and of the whole run (loading and evaluation included).
  public var trainingSeconds: Double
  public var totalSeconds: Double
  public var threads: Int
  /// The epoch whose weights the model kept, when early stopping restored the best one.
  public var bestEpoch: Int?
  /// counts[true][predicted] on the test set.
  public var confusionMatrix: [[Int]]
  /// The config file the run was read from, if any.
  public var config: String?
  /// `mnist` or `digits`, and the folder or file it was read from (nil: the bundled copy).
  public var dataSet: String
  public var dataPath: String?
  /// Digits: how the test split was drawn, so that reports rebuild the same test set.
  public var testFraction: Double?
  public var splitSeed: UInt64?
  /// Where the trained model was saved, if it was.
  public var model: String?

  public init(
    test: Evaluation, trainingSeconds: Double, totalSeconds: Double, threads: Int, bestEpoch: Int?,
    confusionMatrix: [[Int]], config: String?, dataSet: String, dataPath: String?,
    testFraction: Double? = nil, splitSeed: UInt64? = nil, model: String?
  ) {
    testLoss = test.loss
    testAccuracy = test.accuracy
    testCorrect = test.correct
    testCount = test.count
    self.trainingSeconds = trainingSeconds
    self.totalSeconds = totalSeconds
    self.threads = threads
    self.bestEpoch = bestEpoch
    self.confusionMatrix = confusionMatrix
    self.config = config
    self.dataSet = dataSet
    self.dataPath = dataPath
    self.testFraction = testFraction
    self.splitSeed = splitSeed
    self.model = model
  }

  enum CodingKeys: String, CodingKey {
    case testLoss = "test_loss", testAccuracy = "test_accuracy", testCorrect = "test_correct"
    case testCount = "test_count", trainingSeconds = "training_seconds", totalSeconds = "total_seconds"
    case threads, bestEpoch = "best_epoch", confusionMatrix = "confusion_matrix", config
    case dataSet = "data_set", dataPath = "data_path", testFraction = "test_fraction"
    case splitSeed = "split_seed", model
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    testLoss = try c.decodeFinite(.testLoss)
    testAccuracy = try c.decode(Double.self, forKey: .testAccuracy)
    testCorrect = try c.decodeIfPresent(Int.self, forKey: .testCorrect) ?? 0
    testCount = try c.decodeIfPresent(Int.self, forKey: .testCount) ?? 0
    trainingSeconds = try c.decodeIfPresent(Double.self, forKey: .trainingSeconds) ?? 0
    totalSeconds = try c.decodeIfPresent(Double.self, forKey: .totalSeconds) ?? 0
    threads = try c.decodeIfPresent(Int.self, forKey: .threads) ?? 0
    bestEpoch = try c.decodeIfPresent(Int.self, forKey: .bestEpoch)
    confusionMatrix = try c.decodeIfPresent([[Int]].self, forKey: .confusionMatrix) ?? []
    config = try c.decodeIfPresent(String.self, forKey: .config)
    dataSet = try c.decodeIfPresent(String.self, forKey: .dataSet) ?? "mnist"
    dataPath = try c.decodeIfPresent(String.self, forKey: .dataPath)
    testFraction = try c.decodeIfPresent(Double.self, forKey: .testFraction)
    splitSeed = try c.decodeIfPresent(UInt64.self, forKey: .splitSeed)
    model = try c.decodeIfPresent(String.self, forKey: .model)
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encodeFinite(testLoss, forKey: .testLoss)
    try c.encodeFinite(testAccuracy, forKey: .testAccuracy)
    try c.encode(testCorrect, forKey: .testCorrect)
    try c.encode(testCount, forKey: .testCount)
    try c.encodeFinite(trainingSeconds, forKey: .trainingSeconds)
    try c.encodeFinite(totalSeconds, forKey: .totalSeconds)
    try c.encode(threads, forKey: .threads)
    try c.encodeIfPresent(bestEpoch, forKey: .bestEpoch)
    try c.encode(confusionMatrix, forKey: .confusionMatrix)
    try c.encodeIfPresent(config, forKey: .config)
    try c.encode(dataSet, forKey: .dataSet)
    try c.encodeIfPresent(dataPath, forKey: .dataPath)
    try c.encodeIfPresent(testFraction, forKey: .testFraction)
    try c.encodeIfPresent(splitSeed, forKey: .splitSeed)
    try c.encodeIfPresent(model, forKey: .model)
  }
}

/// A metrics file read back: its epochs, gradient reports and summary, in order.
public struct MetricsFile: Sendable {
  public var records: [MetricsRecord]
  /// Set when the last line was cut short (a run killed while writing it) and skipped.
  public var warning: String?

  /// Reads a file written by `nerve train --metrics` (or `Experiment.run`).
  /// - Throws: `NerveError(.badFile)` naming the line that is not a metrics record.
  public init(contentsOf path: String) throws {
    let file = try JSONLinesFile(contentsOf: path)
    records = try file.decodeAll(MetricsRecord.self, as: "a metrics record (an epoch, gradient or summary line)")
    warning = file.warning
  }

  public var epochs: [EpochMetrics] {
    records.compactMap { if case .epoch(let m) = $0 { m } else { nil } }
  }

  public var gradientSteps: [GradientRecord] {
    records.compactMap { if case .gradients(let g) = $0 { g } else { nil } }
  }

  public var summary: RunSummary? {
    records.lazy.compactMap { if case .summary(let s) = $0 { s } else { nil } }.last
  }
}
