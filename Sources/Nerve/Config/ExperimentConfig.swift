// ExperimentConfig: one training run described as data (a TOML file, then command-line flags).
import Foundation

/// Everything a training run needs: which data, which network, how to train it.
///
/// Read from a TOML file (see `examples/`), then adjusted by command-line flags:
/// ```toml
/// [data]
/// set = "mnist"
///
/// [[layer]]
/// type = "dense"
/// units = 30
/// activation = "sigmoid"
///
/// [train]
/// loss = "mse"
/// learning_rate = 1.0
/// batch_size = "full"
/// epochs = 300
/// ```
public struct ExperimentConfig: Sendable, Equatable {
  /// The datasets Nerve knows by name.
  public enum DataSet: String, Sendable, CaseIterable {
    /// MNIST, or any dataset in MNIST's four IDX files (`data.path` or `--data`).
    case mnist
    /// The 8x8 digits CSV.
    case digits
  }

  /// A name for the run (reports and file names).
  public var name: String = "run"
  /// Where the config came from, for messages.
  public var source: String = "defaults"

  // MARK: [data]
  public var dataSet: DataSet = .mnist
  /// A folder with the IDX files (MNIST) or a CSV file (digits); nil for the bundled data.
  public var dataPath: String?
  /// Train on the first `trainCount` samples of the training split.
  public var trainCount: Int?
  /// Train on these samples of the training split instead (in this order).
  public var trainIndices: [Int]?
  /// MNIST: images held out from the end of the training file for validation.
  public var validationCount: Int = 10_000
  /// Digits: the share of samples held out for testing.
  public var testFraction: Double = 0.2
  /// Digits: the share of the remaining samples held out for validation (0 for none).
  public var validationFraction: Double = 0
  /// Standardise features with the training split's mean and standard deviation.
  public var standardize: Bool = false
  /// Seed of the digits train/test split.
  public var splitSeed: UInt64 = 0

  // MARK: [[layer]]
  /// Values per input sample the layers were written for (`--layers 784,...`), checked
  /// against the data; nil to take the data's.
  public var inputSize: Int?
  public var layers: [LayerRecord] = []
  /// `file:line` of each layer table, for messages.
  public var layerLocations: [String] = []

  // MARK: [train]
  public var loss: Loss = .crossEntropy
  /// `sgd` (momentum if `momentum` > 0), `momentum`, `nesterov`, `adam`, `adamw`, `rmsprop`,
  /// `adadelta`.
  public var optimizer: String = "sgd"
  public var learningRate: Float = 0.1
  public var momentum: Float = 0
  public var weightDecay: Float = 0
  /// Adam's moment decays; RMSprop's and Adadelta's `rho`; every adaptive method's epsilon
  /// (nil: the optimizer's default).
  public var beta1: Float?
  public var beta2: Float?
  public var rho: Float?
  public var epsilon: Float?
  public var schedule: LearningRateSchedule = .constant
  public var earlyStopping: EarlyStopping?
  public var gradientDiagnostics: GradientDiagnostics?
  public var batchSize: BatchSize = .size(32)
  public var epochs: Int = 10
  public var shuffle: Bool = true
  public var seed: UInt64 = 1
  /// Worker threads; nil for `OMP_NUM_THREADS` or all CPUs.
  public var threads: Int?
  /// Also evaluate the test set after every epoch (for test curves).
  public var testEveryEpoch: Bool = false

  public init() {}

  /// Reads a config file.
  /// - Throws: `NerveError` at `file:line` naming the field for anything unknown or invalid.
  public init(contentsOf path: String) throws {
    try self.init(table: TOMLParser.parse(contentsOf: path), file: path)
  }

  /// Builds a config from parsed TOML.
  public init(table: TOMLTable, file: String) throws {
    source = file
    name = URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
    var root = Fields(table: table, section: "", file: file)
    if let v = try root.string("name") { name = v }
    _ = try root.string("description")
    // A [sweep] table is read by `Sweep`; the rest of the file is the base run.
    _ = root.raw("sweep")
    if let data = try root.table("data") { try readData(data, file: file) }
    if let list = try root.tableArray("layer") { try readLayers(list, file: file) }
    if let train = try root.table("train") { try readTrain(train, file: file) }
    try root.rejectUnknown()
  }

  /// The [data] table.
  private mutating func readData(_ data: TOMLTable, file: String) throws {
    var f = Fields(table: data, section: "data", file: file)
    if let v = try f.string("set") {
      guard let s = DataSet(rawValue: v.lowercased()) else {
        throw f.error("set", "unknown data set '\(v)'; expected mnist or digits")
      }
      dataSet = s
    }
    dataPath = try f.string("path")
    trainCount = try f.int("subset", min: 1)
    trainIndices = try f.intArray("indices", min: 0)
    if let v = try f.int("validation", min: 0) { validationCount = v }
    if let v = try f.double("test_fraction", min: 0, max: 1) { testFraction = v }
    if let v = try f.double("validation_fraction", min: 0, max: 1) { validationFraction = v }
    if let v = try f.bool("standardize") { standardize = v }
    if let v = try f.int("split_seed", min: 0) { splitSeed = UInt64(v) }
    try f.rejectUnknown()
  }

  /// The [[layer]] tables, in order; `repeat = n` stands for n copies of a table.
  private mutating func readLayers(_ list: [TOMLTable], file: String) throws {
    for (i, t) in list.enumerated() {
      var f = Fields(table: t, section: "layer[\(i)]", file: file)
      let record = try f.layerRecord()
      // `repeat = 20` stands for 20 copies of the table (deep networks).
      let copies = try f.int("repeat", min: 1) ?? 1
      for copy in 0..<copies {
        layers.append(record)
        layerLocations.append("\(file):\(t.line) layer \(i)\(copies > 1 ? " (copy \(copy + 1))" : "")")
      }
      try f.rejectUnknown()
    }
  }

  /// The [train] table.
  private mutating func readTrain(_ train: TOMLTable, file: String) throws {
    var f = Fields(table: train, section: "train", file: file)
    if let v = try f.string("loss") {
      guard let l = Loss(name: v) else {
        throw f.error("loss", "unknown loss '\(v)'; expected mse, cross_entropy or nll")
      }
      loss = l
    }
    if let v = try f.string("optimizer") { optimizer = v.lowercased() }
    if let v = try f.double("learning_rate", min: 0) { learningRate = Float(v) }
    if let v = try f.double("momentum", min: 0, max: 0.999999) { momentum = Float(v) }
    if let v = try f.double("weight_decay", min: 0) { weightDecay = Float(v) }
    beta1 = try f.double("beta1", min: 0, max: 0.999999).map(Float.init)
    beta2 = try f.double("beta2", min: 0, max: 0.99999999).map(Float.init)
    rho = try f.double("rho", min: 0, max: 1).map(Float.init)
    epsilon = try f.double("epsilon", min: 1e-30, max: 0.5).map(Float.init)
    if let v = try f.string("schedule") {
      guard let sch = LearningRateSchedule(parsing: v) else {
        throw f.error("schedule", "expected constant, step(every, factor), cosine, cosine(minimum), exponential(factor), one_cycle or one_cycle(warmup, initial, final), found '\(v)'")
      }
      schedule = sch
    }
    if let v = try f.int("patience", min: 0) {
      earlyStopping = EarlyStopping(patience: v)
    }
    if let v = try f.string("monitor") {
      guard let m = EarlyStopping.Monitor(rawValue: v) else {
        throw f.error("monitor", "expected valid_loss or valid_accuracy, found '\(v)'")
      }
      if earlyStopping == nil { earlyStopping = EarlyStopping() }
      earlyStopping!.monitor = m
    }
    if let v = try f.bool("gradient_diagnostics"), v { gradientDiagnostics = GradientDiagnostics() }
    if let v = try f.int("gradient_every", min: 1) { gradientDiagnostics = GradientDiagnostics(everySteps: v) }
    if let v = f.table["batch_size"] {
      f.used.insert("batch_size")
      switch v {
      case .integer(let n) where n >= 1: batchSize = .size(n)
      case .string(let s) where BatchSize(parsing: s) != nil: batchSize = BatchSize(parsing: s)!
      default: throw f.error("batch_size", "expected a positive integer or \"full\", found \(v)")
      }
    }
    if let v = try f.int("epochs", min: 0) { epochs = v }
    if let v = try f.bool("shuffle") { shuffle = v }
    if let v = try f.int("seed", min: 0) { seed = UInt64(v) }
    if let v = try f.int("threads", min: 0) { threads = v == 0 ? nil : v }
    if let v = try f.bool("test_every_epoch") { testEveryEpoch = v }
    try f.rejectUnknown()
  }

  /// Layers of a multilayer perceptron: `sizes` = [inputs, hidden..., outputs].
  public static func mlp(
    sizes: [Int], hidden: Activation, output: Activation, weights: String?
  ) -> [LayerRecord] {
    sizes.dropFirst().enumerated().map { (i, units) in
      var r = LayerRecord(type: "dense")
      r.units = units
      r.activation = (i == sizes.count - 2 ? output : hidden).rawValue
      r.weights = weights
      return r
    }
  }

  /// Checks everything that can be checked without data; throws naming the field.
  public func validate() throws {
    guard !layers.isEmpty else {
      throw NerveError(.badValue, at: source, "no layers: add [[layer]] tables or pass --layers")
    }
    guard epochs >= 0 else { throw NerveError(.badValue, at: "epochs", "must be 0 or more") }
    if let threads, threads < 1 { throw NerveError(.badValue, at: "threads", "must be at least 1") }
    if dataSet == .mnist && (validationCount < 0) {
      throw NerveError(.badValue, at: "data.validation", "must be 0 or more")
    }
  }
}

/// Typed access to one TOML table's keys, remembering which were used.
struct Fields {
  let table: TOMLTable
  let section: String
  let file: String
  var used = Set<String>()

  init(table: TOMLTable, section: String, file: String) {
    self.table = table
    self.section = section
    self.file = file
  }

  func error(_ key: String, _ message: String) -> NerveError {
    NerveError(
      .badValue, at: "\(file):\(table.line(of: key))",
      "\(section.isEmpty ? "" : section + ".")\(key): \(message)")
  }

  mutating func raw(_ key: String) -> TOMLValue? {
    used.insert(key)
    return table[key]
  }

  mutating func string(_ key: String) throws -> String? {
    guard let v = raw(key) else { return nil }
    guard case .string(let s) = v else { throw error(key, "expected a string, found \(v.typeName) (\(v))") }
    return s
  }

  mutating func int(_ key: String, min: Int? = nil) throws -> Int? {
    guard let v = raw(key) else { return nil }
    guard case .integer(let n) = v else { throw error(key, "expected an integer, found \(v.typeName) (\(v))") }
    if let min, n < min { throw error(key, "must be at least \(min), found \(n)") }
    return n
  }

  mutating func double(_ key: String, min: Double? = nil, max: Double? = nil) throws -> Double? {
    guard let v = raw(key) else { return nil }
    let d: Double
    switch v {
    case .integer(let n): d = Double(n)
    case .float(let x): d = x
    default: throw error(key, "expected a number, found \(v.typeName) (\(v))")
    }
    if let min, d < min { throw error(key, "must be at least \(min), found \(d)") }
    if let max, d > max { throw error(key, "must be at most \(max), found \(d)") }
    return d
  }

  mutating func bool(_ key: String) throws -> Bool? {
    guard let v = raw(key) else { return nil }
    guard case .boolean(let b) = v else { throw error(key, "expected true or false, found \(v.typeName) (\(v))") }
    return b
  }

  mutating func intArray(_ key: String, min: Int? = nil) throws -> [Int]? {
    guard let v = raw(key) else { return nil }
    guard case .array(let items) = v else { throw error(key, "expected an array of integers, found \(v.typeName)") }
    return try items.map { item in
      guard case .integer(let n) = item else { throw error(key, "expected integers, found \(item.typeName) (\(item))") }
      if let min, n < min { throw error(key, "values must be at least \(min), found \(n)") }
      return n
    }
  }

  /// An integer or a pair of integers (kernel and pool sizes, strides).
  mutating func pair(_ key: String) throws -> [Int]? {
    guard let v = raw(key) else { return nil }
    switch v {
    case .integer(let n) where n >= 0: return [n, n]
    case .array(let items) where items.count == 2:
      return try items.map {
        guard case .integer(let n) = $0, n >= 0 else { throw error(key, "expected non-negative integers, found \($0)") }
        return n
      }
    default: throw error(key, "expected an integer or [height, width], found \(v)")
    }
  }

  mutating func table(_ key: String) throws -> TOMLTable? {
    guard let v = raw(key) else { return nil }
    guard case .table(let t) = v else { throw error(key, "expected a [\(key)] table, found \(v.typeName)") }
    return t
  }

  mutating func tableArray(_ key: String) throws -> [TOMLTable]? {
    guard let v = raw(key) else { return nil }
    guard case .array(let items) = v else { throw error(key, "expected [[\(key)]] tables, found \(v.typeName)") }
    return try items.map {
      guard case .table(let t) = $0 else { throw error(key, "expected [[\(key)]] tables, found \($0.typeName)") }
      return t
    }
  }

  mutating func layerRecord() throws -> LayerRecord {
    guard let type = try string("type") else {
      throw NerveError(.badValue, at: "\(file):\(table.line)", "\(section): needs a 'type' (dense, sigmoid, relu, softmax, conv2d, ...)")
    }
    var r = LayerRecord(type: type)
    r.units = try int("units", min: 1)
    r.activation = try string("activation")
    r.weights = try string("weights") ?? string("init")
    r.bias = try string("bias")
    r.useBias = try bool("use_bias")
    r.l2 = try double("l2", min: 0).map(Float.init)
    r.filters = try int("filters", min: 1)
    r.kernel = try pair("kernel")
    r.stride = try pair("stride")
    if let v = raw("padding") {
      switch v {
      case .string(let s): r.padding = s
      case .integer(let n) where n >= 0: r.padding = "\(n)"
      default: throw error("padding", "expected \"same\", \"valid\" or a non-negative integer, found \(v)")
      }
    }
    r.pool = try pair("pool")
    r.rate = try double("rate", min: 0, max: 0.999999).map(Float.init)
    r.momentum = try double("momentum", min: 0, max: 1).map(Float.init)
    r.epsilon = try double("epsilon", min: 0).map(Float.init)
    return r
  }

  func rejectUnknown() throws {
    if let bad = table.keys.first(where: { !used.contains($0) }) {
      let known = used.sorted().joined(separator: ", ")
      throw error(bad, "unknown key; expected one of \(known)")
    }
  }
}
