// The records of a sweep folder (`nerve sweep`): sweep.jsonl (a header line, then one line per
// finished run) and summary.jsonl (one line per cell). Written and read by these types.

/// The first line of sweep.jsonl: which sweep the folder holds (a rerun must match it).
public struct SweepHeader: Sendable, Equatable, Codable {
  /// One axis of the grid.
  public struct Axis: Sendable, Equatable, Codable {
    public var key: String
    public var values: [TOMLValue]

    public init(key: String, values: [TOMLValue]) {
      self.key = key
      self.values = values
    }
  }

  /// The sweep's name (the config's `name`).
  public var sweep: String
  /// The config file.
  public var config: String
  public var axes: [Axis]
  /// `--set` overrides applied to every run, as `key=value`.
  public var set: [String]
  /// Runs (seeds) per cell.
  public var runs: Int

  public init(sweep: String, config: String, axes: [Axis], set: [String], runs: Int) {
    self.sweep = sweep
    self.config = config
    self.axes = axes
    self.set = set
    self.runs = runs
  }
}

/// A line of sweep.jsonl after the header: one finished (or failed) run of one cell.
public struct SweepRunRecord: Sendable, Equatable, Codable {
  /// `cell id|run=N`: what a rerun skips.
  public var key: String
  public var cell: Int
  public var settings: [String: TOMLValue]
  public var run: Int
  public var seed: UInt64
  /// The run's metrics file, relative to the sweep folder.
  public var metrics: String
  /// Wall-clock seconds of the whole run (loading and evaluation included).
  public var seconds: Double
  /// The last epoch's metrics and the test results (nil for a failed run).
  public var trainLoss: Double?
  public var trainAccuracy: Double?
  public var validLoss: Double?
  public var validAccuracy: Double?
  public var testLoss: Double?
  public var testAccuracy: Double?
  public var epochs: Int?
  public var trainingSeconds: Double?
  /// Why the run failed (the last error line of its log); nil for a finished run.
  public var error: String?

  public init(key: String, cell: Int, settings: [String: TOMLValue], run: Int, seed: UInt64, metrics: String, seconds: Double) {
    self.key = key
    self.cell = cell
    self.settings = settings
    self.run = run
    self.seed = seed
    self.metrics = metrics
    self.seconds = seconds
  }

  enum CodingKeys: String, CodingKey {
    case key, cell, settings, run, seed, metrics, seconds, epochs, error
    case trainLoss = "train_loss", trainAccuracy = "train_accuracy", validLoss = "valid_loss"
    case validAccuracy = "valid_accuracy", testLoss = "test_loss", testAccuracy = "test_accuracy"
    case trainingSeconds = "training_seconds"
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    key = try c.decode(String.self, forKey: .key)
    cell = try c.decode(Int.self, forKey: .cell)
    settings = try c.decodeIfPresent([String: TOMLValue].self, forKey: .settings) ?? [:]
    run = try c.decode(Int.self, forKey: .run)
    seed = try c.decode(UInt64.self, forKey: .seed)
    metrics = try c.decode(String.self, forKey: .metrics)
    seconds = try c.decodeFinite(.seconds)
    trainLoss = try c.decodeIfPresent(Double.self, forKey: .trainLoss)
    trainAccuracy = try c.decodeIfPresent(Double.self, forKey: .trainAccuracy)
    validLoss = try c.decodeIfPresent(Double.self, forKey: .validLoss)
    validAccuracy = try c.decodeIfPresent(Double.self, forKey: .validAccuracy)
    testLoss = try c.decodeIfPresent(Double.self, forKey: .testLoss)
    testAccuracy = try c.decodeIfPresent(Double.self, forKey: .testAccuracy)
    epochs = try c.decodeIfPresent(Int.self, forKey: .epochs)
    trainingSeconds = try c.decodeIfPresent(Double.self, forKey: .trainingSeconds)
    error = try c.decodeIfPresent(String.self, forKey: .error)
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(key, forKey: .key)
    try c.encode(cell, forKey: .cell)
    try c.encode(settings, forKey: .settings)
    try c.encode(run, forKey: .run)
    try c.encode(seed, forKey: .seed)
    try c.encode(metrics, forKey: .metrics)
    try c.encodeFinite(seconds, forKey: .seconds)
    try c.encodeFinite(trainLoss, forKey: .trainLoss)
    try c.encodeFinite(trainAccuracy, forKey: .trainAccuracy)
    try c.encodeFinite(validLoss, forKey: .validLoss)
    try c.encodeFinite(validAccuracy, forKey: .validAccuracy)
    try c.encodeFinite(testLoss, forKey: .testLoss)
    try c.encodeFinite(testAccuracy, forKey: .testAccuracy)
    try c.encodeIfPresent(epochs, forKey: .epochs)
    try c.encodeFinite(trainingSeconds, forKey: .trainingSeconds)
    try c.encodeIfPresent(error, forKey: .error)
  }

  /// A final metric of the run by its metrics-file name (`valid_accuracy`, ...).
  public func value(_ metric: String) -> Double? {
    LossAndAccuracy(
      trainLoss: trainLoss, trainAccuracy: trainAccuracy, validLoss: validLoss, validAccuracy: validAccuracy,
      testLoss: testLoss, testAccuracy: testAccuracy
    ).value(metric)
  }
}

/// A line of summary.jsonl: one cell's runs summed up, at the end and per epoch.
public struct SweepCellSummary: Sendable, Equatable, Codable {
  /// The metrics summarised, as the metrics files name them.
  public static let metrics = ["train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "test_loss", "test_accuracy"]

  public var cell: Int
  /// `key=value,key=value`.
  public var id: String
  public var settings: [String: TOMLValue]
  /// Runs that finished, and runs that failed.
  public var runs: Int
  public var failed: Int
  /// Mean wall-clock seconds of the finished runs.
  public var secondsMean: Double?
  /// Per metric: mean and sample standard deviation of the final values over the runs.
  public var finals: [String: RunStatistics]
  /// Per metric: mean and standard deviation per epoch over the runs.
  public var curves: [String: [RunStatistics]]

  public init(
    cell: Int, id: String, settings: [String: TOMLValue], runs: Int, failed: Int, secondsMean: Double?,
    finals: [String: RunStatistics], curves: [String: [RunStatistics]]
  ) {
    self.cell = cell
    self.id = id
    self.settings = settings
    self.runs = runs
    self.failed = failed
    self.secondsMean = secondsMean
    self.finals = finals
    self.curves = curves
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: DynamicKey.self)
    cell = try c.decode(Int.self, forKey: DynamicKey("cell"))
    id = try c.decode(String.self, forKey: DynamicKey("id"))
    settings = try c.decodeIfPresent([String: TOMLValue].self, forKey: DynamicKey("settings")) ?? [:]
    runs = try c.decode(Int.self, forKey: DynamicKey("runs"))
    failed = try c.decodeIfPresent(Int.self, forKey: DynamicKey("failed")) ?? 0
    secondsMean = try c.decodeIfPresent(Double.self, forKey: DynamicKey("seconds_mean"))
    finals = [:]
    curves = [:]
    for m in Self.metrics {
      if let mean = try c.decodeIfPresent(Double.self, forKey: DynamicKey("final_\(m)_mean")) {
        let std = try c.decodeIfPresent(Double.self, forKey: DynamicKey("final_\(m)_std")) ?? 0
        finals[m] = RunStatistics(mean: mean, std: std, count: runs)
      }
      if let means = try c.decodeIfPresent([Double?].self, forKey: DynamicKey("\(m)_mean")) {
        let stds = try c.decodeIfPresent([Double?].self, forKey: DynamicKey("\(m)_std")) ?? []
        curves[m] = means.indices.map {
          RunStatistics(mean: means[$0] ?? .nan, std: $0 < stds.count ? stds[$0] ?? 0 : 0, count: runs)
        }
      }
    }
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: DynamicKey.self)
    try c.encode(cell, forKey: DynamicKey("cell"))
    try c.encode(id, forKey: DynamicKey("id"))
    try c.encode(settings, forKey: DynamicKey("settings"))
    try c.encode(runs, forKey: DynamicKey("runs"))
    try c.encode(failed, forKey: DynamicKey("failed"))
    try c.encodeFinite(secondsMean, forKey: DynamicKey("seconds_mean"))
    for m in Self.metrics {
      if let s = finals[m] {
        try c.encodeFinite(s.mean, forKey: DynamicKey("final_\(m)_mean"))
        try c.encodeFinite(s.std, forKey: DynamicKey("final_\(m)_std"))
      }
      if let curve = curves[m] {
        try c.encode(curve.map { $0.mean.isFinite ? $0.mean : nil }, forKey: DynamicKey("\(m)_mean"))
        try c.encode(curve.map { $0.std.isFinite ? $0.std : nil }, forKey: DynamicKey("\(m)_std"))
      }
    }
  }
}

/// A sweep folder's records read back.
public struct SweepFolder {
  public let directory: String
  public var header: SweepHeader?
  public var runs: [SweepRunRecord]
  public var cells: [SweepCellSummary]
  /// Torn last lines skipped (a sweep killed while writing).
  public var warnings: [String]

  public static func resultsPath(_ directory: String) -> String { directory + "/sweep.jsonl" }
  public static func summaryPath(_ directory: String) -> String { directory + "/summary.jsonl" }

  /// Reads `directory`; missing files read as empty.
  /// - Throws: `NerveError(.badFile)` naming a line that is not the expected record.
  public init(directory: String) throws {
    self.directory = directory
    let results = try JSONLinesFile(contentsOf: Self.resultsPath(directory), missingIsEmpty: true)
    header = results.lines.isEmpty ? nil : try results.decode(SweepHeader.self, line: 0, as: "a sweep header")
    runs = try results.lines.indices.dropFirst().map { try results.decode(SweepRunRecord.self, line: $0, as: "a sweep run record") }
    let summary = try JSONLinesFile(contentsOf: Self.summaryPath(directory), missingIsEmpty: true)
    cells = try summary.decodeAll(SweepCellSummary.self, as: "a sweep cell summary")
    warnings = [results.warning, summary.warning].compactMap { $0 }
  }
}

extension TOMLValue: Codable {
  /// The value as JSON (a table becomes an object).
  public func encode(to encoder: Encoder) throws {
    switch self {
    case .string(let s): var c = encoder.singleValueContainer(); try c.encode(s)
    case .integer(let i): var c = encoder.singleValueContainer(); try c.encode(i)
    case .float(let d):
      var c = encoder.singleValueContainer()
      if d.isFinite { try c.encode(d) } else { try c.encodeNil() }
    case .boolean(let b): var c = encoder.singleValueContainer(); try c.encode(b)
    case .array(let a): var c = encoder.unkeyedContainer(); for v in a { try c.encode(v) }
    case .table(let t):
      var c = encoder.container(keyedBy: DynamicKey.self)
      for k in t.keys { try c.encode(t[k]!, forKey: DynamicKey(k)) }
    }
  }

  /// Reads JSON back: whole numbers written without a fraction become integers.
  public init(from decoder: Decoder) throws {
    if let c = try? decoder.singleValueContainer() {
      if let b = try? c.decode(Bool.self) { self = .boolean(b); return }
      if let i = try? c.decode(Int.self) { self = .integer(i); return }
      if let d = try? c.decode(Double.self) { self = .float(d); return }
      if let s = try? c.decode(String.self) { self = .string(s); return }
      if c.decodeNil() { self = .float(.nan); return }
    }
    if var c = try? decoder.unkeyedContainer() {
      var items: [TOMLValue] = []
      while !c.isAtEnd { items.append(try c.decode(TOMLValue.self)) }
      self = .array(items)
      return
    }
    let c = try decoder.container(keyedBy: DynamicKey.self)
    var t = TOMLTable()
    for k in c.allKeys { t.set(k.stringValue, try c.decode(TOMLValue.self, forKey: k), line: 0) }
    self = .table(t)
  }
}
