// Experiment: turns an ExperimentConfig into data, a model and an optimizer.
// Experiment+Run.swift runs the whole thing (what `nerve train` does).

/// The datasets of a run, prepared as the config says.
public struct PreparedData: Sendable {
  public var train: Dataset
  public var validation: Dataset?
  public var test: Dataset
  /// The preprocessing applied to every split (saved with the model).
  public var preprocessing: Preprocessing
}

/// A training run built from a config.
public struct Experiment {
  public var config: ExperimentConfig

  public init(config: ExperimentConfig) { self.config = config }

  /// Whether samples are images [height, width, channels] (the network starts with a
  /// convolution, pooling or batch-norm layer) rather than flat vectors.
  public var samplesAreImages: Bool {
    guard let first = config.layers.first?.type.lowercased() else { return false }
    return first.hasPrefix("conv") || first.hasSuffix("pool2d") || first == "batchnorm"
  }

  /// The shape of one sample of the configured data set, as the model will see it.
  public var sampleShape: [Int] {
    let side = config.dataSet == .digits ? 8 : 28
    return samplesAreImages ? [side, side, 1] : [side * side]
  }

  /// Loads and prepares the data.
  public func loadData() throws -> PreparedData {
    let c = config
    let shape: MNIST.ImageShape = samplesAreImages ? .channels : .flat
    var train: Dataset, validation: Dataset?, test: Dataset
    var pre: Preprocessing
    switch c.dataSet {
    case .mnist:
      // A subset by count needs only that many training images converted.
      let limit = c.trainIndices == nil ? c.trainCount : nil
      let m = try MNIST.load(
        from: c.dataPath, validationCount: c.validationCount, imageShape: shape, trainLimit: limit,
        threads: c.threads)
      train = m.train
      validation = c.validationCount > 0 ? m.validation : nil
      test = m.test
      pre = m.preprocessing
    case .digits:
      let all = try Digits.load(from: c.dataPath, imageShape: shape)
      let (rest, held) = try all.split(fraction: 1 - c.testFraction, seed: c.splitSeed)
      test = held
      test.name = "digits test"
      if c.validationFraction > 0 {
        let (t, v) = try rest.split(fraction: 1 - c.validationFraction, seed: c.splitSeed &+ 1)
        train = t
        validation = v
        validation?.name = "digits validation"
      } else {
        train = rest
      }
      train.name = "digits train"
      pre = Preprocessing(scale: 1.0 / 16)
      if !c.standardize {
        train = try train.preprocessed(pre)
        validation = try validation?.preprocessed(pre)
        test = try test.preprocessed(pre)
      }
    }
    if let indices = c.trainIndices {
      train = try train.subset(indices: indices)
    } else if let n = c.trainCount {
      guard n <= train.count else {
        throw NerveError(
          .badValue, at: "data.subset", "asks for \(n) samples but the training split has \(train.count)")
      }
      train = train.prefix(n)
    }
    if c.standardize {
      // Fitted on the training split only, then applied to every split.
      let fitted = Preprocessing.standardization(fittedOn: train)
      train = try train.preprocessed(fitted)
      validation = try validation?.preprocessed(fitted)
      test = try test.preprocessed(fitted)
      pre = Preprocessing(
        scale: c.dataSet == .digits ? 1 : pre.scale, mean: fitted.mean, std: fitted.std)
    }
    return PreparedData(train: train, validation: validation, test: test, preprocessing: pre)
  }

  /// Builds the network for samples of `inputShape`.
  public func makeModel(inputShape: [Int]) throws -> Sequential {
    if let expected = config.inputSize, expected != inputShape.reduce(1, *) {
      throw NerveError(
        .shapeMismatch, at: "layers",
        "the network starts with \(expected) inputs but the data has \(inputShape.reduce(1, *)) values per sample (shape \(inputShape))")
    }
    let layers = try config.layers.enumerated().map { i, record in
      try record.makeLayer(at: i < config.layerLocations.count ? config.layerLocations[i] : "layer \(i)")
    }
    return try Sequential(input: inputShape, layers: layers, seed: config.seed)
  }

  /// The optimizer names configs and flags accept.
  public static let optimizerNames = ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adadelta"]

  /// Builds the optimizer the config names.
  public func makeOptimizer() throws -> Optimizer {
    let c = config
    let optimizer: Optimizer
    switch c.optimizer {
    case "sgd", "gd":
      optimizer = SGD(learningRate: c.learningRate, momentum: c.momentum, weightDecay: c.weightDecay)
    case "momentum", "nesterov":
      optimizer = SGD(
        learningRate: c.learningRate, momentum: c.momentum == 0 ? 0.9 : c.momentum,
        nesterov: c.optimizer == "nesterov", weightDecay: c.weightDecay)
    case "adam", "adamw":
      let make = c.optimizer == "adam" ? Adam.init : AdamW.init
      optimizer = make(c.learningRate, c.beta1 ?? 0.9, c.beta2 ?? 0.999, c.epsilon ?? 1e-7, c.weightDecay)
    case "rmsprop":
      optimizer = RMSprop(learningRate: c.learningRate, rho: c.rho ?? 0.9, epsilon: c.epsilon ?? 1e-7, weightDecay: c.weightDecay)
    case "adadelta":
      optimizer = Adadelta(learningRate: c.learningRate, rho: c.rho ?? 0.95, epsilon: c.epsilon ?? 1e-6, weightDecay: c.weightDecay)
    default:
      throw NerveError(
        .badValue, at: "train.optimizer",
        "unknown optimizer '\(c.optimizer)'; expected \(Experiment.optimizerNames.joined(separator: ", "))")
    }
    try optimizer.validate()
    return optimizer
  }

  /// Trains `trainer`'s model on `data` as the config says (the schedule, early stopping and
  /// diagnostics included).
  public func fit(
    _ trainer: Trainer, _ data: PreparedData, onBatch: ((BatchProgress) -> Void)? = nil,
    onEpoch: ((EpochMetrics) -> Bool)? = nil, checkpoints: CheckpointPolicy? = nil,
    resumingFrom resume: TrainingCheckpoint? = nil
  ) throws -> History {
    try fit(
      trainer, train: data.train, validation: data.validation, test: config.testEveryEpoch ? data.test : nil,
      onBatch: onBatch, onEpoch: onEpoch, checkpoints: checkpoints, resumingFrom: resume)
  }

  /// Trains `trainer`'s model on these data sets with the config's [train] settings: what
  /// `nerve train` does once the data is loaded, for data from elsewhere (other languages).
  public func fit(
    _ trainer: Trainer, train: Dataset, validation: Dataset?, test: Dataset? = nil,
    onBatch: ((BatchProgress) -> Void)? = nil, onEpoch: ((EpochMetrics) -> Bool)? = nil,
    checkpoints: CheckpointPolicy? = nil, resumingFrom resume: TrainingCheckpoint? = nil
  ) throws -> History {
    try trainer.fit(
      train, validation: validation, test: test, epochs: config.epochs, batchSize: config.batchSize,
      shuffle: config.shuffle, seed: config.seed, schedule: config.schedule,
      earlyStopping: config.earlyStopping, gradientDiagnostics: config.gradientDiagnostics,
      onBatch: onBatch, onEpoch: onEpoch, checkpoints: checkpoints, resumingFrom: resume)
  }
}
