// A config as JSON: what a checkpoint stores, so that `nerve train --resume FILE` rebuilds the
// same run and refuses a checkpoint of another one.
import Foundation

extension ExperimentConfig: Codable {
  enum CodingKeys: String, CodingKey {
    case name, source, dataSet = "data_set", dataPath = "data_path", trainCount = "subset"
    case trainIndices = "indices", validationCount = "validation", testFraction = "test_fraction"
    case validationFraction = "validation_fraction", standardize, splitSeed = "split_seed"
    case inputSize = "input_size", layers, loss, optimizer, learningRate = "learning_rate", momentum
    case weightDecay = "weight_decay", beta1, beta2, rho, epsilon, schedule, patience, monitor
    case minimumDelta = "min_delta", restoreBest = "restore_best", gradientEvery = "gradient_every"
    case gradientDiagnostics = "gradient_diagnostics", batchSize = "batch_size", epochs, shuffle, seed
    case threads, testEveryEpoch = "test_every_epoch"
  }

  public func encode(to encoder: Encoder) throws {
    var c = encoder.container(keyedBy: CodingKeys.self)
    try c.encode(name, forKey: .name)
    try c.encode(source, forKey: .source)
    try c.encode(dataSet.rawValue, forKey: .dataSet)
    try c.encodeIfPresent(dataPath, forKey: .dataPath)
    try c.encodeIfPresent(trainCount, forKey: .trainCount)
    try c.encodeIfPresent(trainIndices, forKey: .trainIndices)
    try c.encode(validationCount, forKey: .validationCount)
    try c.encode(testFraction, forKey: .testFraction)
    try c.encode(validationFraction, forKey: .validationFraction)
    try c.encode(standardize, forKey: .standardize)
    try c.encode(splitSeed, forKey: .splitSeed)
    try c.encodeIfPresent(inputSize, forKey: .inputSize)
    try c.encode(layers, forKey: .layers)
    try c.encode(loss.description, forKey: .loss)
    try c.encode(optimizer, forKey: .optimizer)
    try c.encode(learningRate, forKey: .learningRate)
    try c.encode(momentum, forKey: .momentum)
    try c.encode(weightDecay, forKey: .weightDecay)
    try c.encodeIfPresent(beta1, forKey: .beta1)
    try c.encodeIfPresent(beta2, forKey: .beta2)
    try c.encodeIfPresent(rho, forKey: .rho)
    try c.encodeIfPresent(epsilon, forKey: .epsilon)
    try c.encode(schedule.description, forKey: .schedule)
    if let e = earlyStopping {
      try c.encode(e.patience, forKey: .patience)
      try c.encode(e.monitor.rawValue, forKey: .monitor)
      try c.encode(e.minimumDelta, forKey: .minimumDelta)
      try c.encode(e.restoreBest, forKey: .restoreBest)
    }
    if let g = gradientDiagnostics {
      try c.encode(true, forKey: .gradientDiagnostics)
      try c.encodeIfPresent(g.everySteps, forKey: .gradientEvery)
    }
    try c.encode(batchSize.description, forKey: .batchSize)
    try c.encode(epochs, forKey: .epochs)
    try c.encode(shuffle, forKey: .shuffle)
    try c.encode(seed, forKey: .seed)
    try c.encodeIfPresent(threads, forKey: .threads)
    try c.encode(testEveryEpoch, forKey: .testEveryEpoch)
  }

  public init(from decoder: Decoder) throws {
    let c = try decoder.container(keyedBy: CodingKeys.self)
    self.init()
    func bad(_ key: CodingKeys, _ what: String) -> DecodingError {
      .dataCorruptedError(forKey: key, in: c, debugDescription: what)
    }
    name = try c.decode(String.self, forKey: .name)
    source = try c.decode(String.self, forKey: .source)
    guard let set = DataSet(rawValue: try c.decode(String.self, forKey: .dataSet)) else { throw bad(.dataSet, "unknown data set") }
    dataSet = set
    dataPath = try c.decodeIfPresent(String.self, forKey: .dataPath)
    trainCount = try c.decodeIfPresent(Int.self, forKey: .trainCount)
    trainIndices = try c.decodeIfPresent([Int].self, forKey: .trainIndices)
    validationCount = try c.decode(Int.self, forKey: .validationCount)
    testFraction = try c.decode(Double.self, forKey: .testFraction)
    validationFraction = try c.decode(Double.self, forKey: .validationFraction)
    standardize = try c.decode(Bool.self, forKey: .standardize)
    splitSeed = try c.decode(UInt64.self, forKey: .splitSeed)
    inputSize = try c.decodeIfPresent(Int.self, forKey: .inputSize)
    layers = try c.decode([LayerRecord].self, forKey: .layers)
    guard let l = Loss(name: try c.decode(String.self, forKey: .loss)) else { throw bad(.loss, "unknown loss") }
    loss = l
    optimizer = try c.decode(String.self, forKey: .optimizer)
    learningRate = try c.decode(Float.self, forKey: .learningRate)
    momentum = try c.decode(Float.self, forKey: .momentum)
    weightDecay = try c.decode(Float.self, forKey: .weightDecay)
    beta1 = try c.decodeIfPresent(Float.self, forKey: .beta1)
    beta2 = try c.decodeIfPresent(Float.self, forKey: .beta2)
    rho = try c.decodeIfPresent(Float.self, forKey: .rho)
    epsilon = try c.decodeIfPresent(Float.self, forKey: .epsilon)
    guard let s = LearningRateSchedule(parsing: try c.decode(String.self, forKey: .schedule)) else {
      throw bad(.schedule, "unknown schedule")
    }
    schedule = s
    if let patience = try c.decodeIfPresent(Int.self, forKey: .patience) {
      guard let monitor = EarlyStopping.Monitor(rawValue: try c.decode(String.self, forKey: .monitor)) else {
        throw bad(.monitor, "unknown metric")
      }
      earlyStopping = EarlyStopping(
        monitor: monitor, patience: patience, minimumDelta: try c.decode(Double.self, forKey: .minimumDelta),
        restoreBest: try c.decode(Bool.self, forKey: .restoreBest))
    }
    if try c.decodeIfPresent(Bool.self, forKey: .gradientDiagnostics) == true {
      gradientDiagnostics = GradientDiagnostics(everySteps: try c.decodeIfPresent(Int.self, forKey: .gradientEvery))
    }
    guard let b = BatchSize(parsing: try c.decode(String.self, forKey: .batchSize)) else { throw bad(.batchSize, "bad batch size") }
    batchSize = b
    epochs = try c.decode(Int.self, forKey: .epochs)
    shuffle = try c.decode(Bool.self, forKey: .shuffle)
    seed = try c.decode(UInt64.self, forKey: .seed)
    threads = try c.decodeIfPresent(Int.self, forKey: .threads)
    testEveryEpoch = try c.decode(Bool.self, forKey: .testEveryEpoch)
  }

  /// The config as JSON (keys sorted).
  public var json: String {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys]
    return (try? String(decoding: e.encode(self), as: UTF8.self)) ?? "{}"
  }

  /// What decides a run's result, as JSON: everything but its name, where it came from and
  /// its thread count (results are the same at any thread count).
  public var runIdentity: String {
    var c = self
    c.name = ""
    c.source = ""
    c.threads = nil
    c.layerLocations = []
    return c.json
  }

  /// Reads a config back from `json`.
  public init(json: String) throws {
    self = try JSONDecoder().decode(ExperimentConfig.self, from: Data(json.utf8))
  }
}
