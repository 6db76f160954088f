// nerve train: one training run from a config file and/or flags (flags override the file).
import ArgumentParser
import Foundation
import Nerve

struct TrainCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "train",
    abstract: "Train a network and report per-epoch and test metrics.",
    discussion: """
      Without --config and --layers, trains the default MNIST model, the fast recipe of \
      examples/fast-99.toml: a small CNN, one epoch with a one-cycle Adam schedule, about 99% test \
      accuracy. --layers (or --dataset digits) builds an MLP instead (784-100-10 by default), with \
      softmax cross-entropy, SGD at learning rate 0.1, minibatches of 32 and 5 epochs unless \
      flags say otherwise.
      Examples:
        nerve train --config examples/lab-a-mlp-mse.toml --metrics runs/lab-a.jsonl --save runs/lab-a.safetensors
        nerve train --config examples/lab-c-sgd-per-sample.toml --epochs 1 --threads 2
        nerve train --layers 784,30,10 --activation sigmoid --loss mse --lr 1 --batch-size full --epochs 300
      """)

  @Option(name: .long, help: ArgumentHelp("A TOML config (see examples/); flags override it.", valueName: "file"))
  var config: String?

  @Option(name: .long, help: ArgumentHelp("Change one key of the config: key=value (repeatable), e.g. train.learning_rate=0.5, layer.0.units=75, hidden=75, data.subset=1000.", valueName: "key=value"))
  var set: [String] = []

  @OptionGroup var dataOptions: DataOptions

  @Option(name: .long, help: ArgumentHelp("Data set when no config says: mnist or digits.", valueName: "name"))
  var dataset: String?

  @Option(name: .long, help: ArgumentHelp("An MLP's sizes from input to output, e.g. 784,30,10 (replaces the config's layers).", valueName: "sizes"))
  var layers: String?

  @Option(name: .long, help: ArgumentHelp("Hidden-layer activation: for --layers, or replacing every hidden layer's activation in the config (sigmoid, tanh, relu, lecun_tanh, identity).", valueName: "name"))
  var activation: String?

  @Option(name: .long, help: ArgumentHelp("Output activation for --layers (default: softmax for cross_entropy and nll, sigmoid for mse).", valueName: "name"))
  var outputActivation: String?

  @Option(name: .long, help: ArgumentHelp("Weight initialiser for every dense layer, e.g. xavier_normal, uniform(-0.1,0.1), gaussian(0.01).", valueName: "init"))
  var `init`: String?

  @Option(name: .long, help: ArgumentHelp("Loss: mse, cross_entropy or nll.", valueName: "name"))
  var loss: String?

  @Option(name: .long, help: ArgumentHelp("Optimizer: sgd, momentum, nesterov, adam, adamw, rmsprop or adadelta.", valueName: "name"))
  var optimizer: String?

  @Option(name: .long, help: ArgumentHelp("Learning-rate schedule: constant, step(every,factor), cosine, cosine(min), exponential(factor), one_cycle or one_cycle(warmup,initial,final) (per step).", valueName: "schedule"))
  var schedule: String?

  @Option(name: .long, help: ArgumentHelp("Stop after this many epochs without validation improvement, keeping the best epoch's weights.", valueName: "epochs"))
  var patience: Int?

  @Option(name: .long, help: ArgumentHelp("What early stopping watches: valid_loss or valid_accuracy.", valueName: "metric"))
  var monitor: String?

  @Flag(name: .long, help: "Record per-layer gradient norms every epoch (in the metrics file).")
  var gradients = false

  @Option(name: .long, help: ArgumentHelp("Also record per-layer gradient norms every n steps.", valueName: "n"))
  var gradientEvery: Int?

  @Option(name: [.customLong("lr"), .customLong("learning-rate")], help: ArgumentHelp("Learning rate.", valueName: "rate"))
  var learningRate: Double?

  @Option(name: .long, help: ArgumentHelp("Momentum coefficient (0 for plain gradient descent).", valueName: "m"))
  var momentum: Double?

  @Option(name: .long, help: ArgumentHelp("Coupled L2 weight decay on weights.", valueName: "l2"))
  var weightDecay: Double?

  @Option(name: .long, help: ArgumentHelp("Samples per step: a number, 1 for per-sample SGD, or 'full'.", valueName: "n|full"))
  var batchSize: String?

  @Option(name: .long, help: ArgumentHelp("Passes over the training data.", valueName: "n"))
  var epochs: Int?

  @Option(name: .long, help: ArgumentHelp("Train on the first n samples of the training split.", valueName: "n"))
  var subset: Int?

  @Option(name: .long, help: ArgumentHelp("Train on these samples of the training split, e.g. 1,3,5,7,2,0,13,15,17,4.", valueName: "list"))
  var indices: String?

  @Option(name: .long, help: ArgumentHelp("MNIST images held out from the training file for validation (0 for none).", valueName: "n"))
  var validation: Int?

  @Flag(name: .long, help: "Standardise features with the training split's mean and standard deviation.")
  var standardize = false

  @Flag(name: .long, help: "Keep the training order fixed instead of reshuffling every epoch.")
  var noShuffle = false

  @Flag(name: .long, help: "Also evaluate the test set after every epoch.")
  var testEveryEpoch = false

  @Option(name: .long, help: ArgumentHelp("Seed for initialisation, shuffling and dropout.", valueName: "n"))
  var seed: UInt64?

  @Option(name: .long, help: ArgumentHelp("Write per-epoch metrics as JSON Lines to this file.", valueName: "file"))
  var metrics: String?

  @Option(name: .long, help: ArgumentHelp("Save the trained model (safetensors) to this file.", valueName: "file"))
  var save: String?

  @Flag(name: .long, help: "Print only the final results.")
  var quiet = false

  @Option(name: .long, help: ArgumentHelp("Keep a checkpoint of the whole run in this file, rewritten atomically after every epoch (and every --checkpoint-every steps, and on Ctrl-C).", valueName: "file"))
  var checkpoint: String?

  @Option(name: .long, help: ArgumentHelp("Also checkpoint every n optimizer steps.", valueName: "n"))
  var checkpointEvery: Int?

  @Option(name: .long, help: ArgumentHelp("Continue the run a checkpoint holds (its config, metrics file and model path unless given again); it ends as the run would have uninterrupted.", valueName: "file"))
  var resume: String?

  func validate() throws {
    if let learningRate, !(learningRate >= 0 && learningRate.isFinite) {
      throw ValidationError("--lr must be a finite number >= 0, got \(learningRate)")
    }
    if let momentum, !(momentum >= 0 && momentum < 1) {
      throw ValidationError("--momentum must be in [0, 1), got \(momentum)")
    }
    if let weightDecay, !(weightDecay >= 0 && weightDecay.isFinite) {
      throw ValidationError("--weight-decay must be a finite number >= 0, got \(weightDecay)")
    }
    if let batchSize, BatchSize(parsing: batchSize) == nil {
      throw ValidationError("--batch-size must be a positive integer or 'full', got '\(batchSize)'")
    }
    if let epochs, epochs < 0 { throw ValidationError("--epochs must be 0 or more, got \(epochs)") }
    if let subset, subset < 1 { throw ValidationError("--subset must be at least 1, got \(subset)") }
    if let validation, validation < 0 { throw ValidationError("--validation must be 0 or more, got \(validation)") }
    if let optimizer, !Experiment.optimizerNames.contains(optimizer.lowercased()) {
      throw ValidationError("--optimizer must be one of \(Experiment.optimizerNames.joined(separator: ", ")), got '\(optimizer)'")
    }
    if let schedule, LearningRateSchedule(parsing: schedule) == nil {
      throw ValidationError("--schedule must be constant, step(every,factor), cosine, cosine(min), exponential(factor), one_cycle or one_cycle(warmup,initial,final), got '\(schedule)'")
    }
    if let patience, patience < 0 { throw ValidationError("--patience must be 0 or more") }
    if let monitor, EarlyStopping.Monitor(rawValue: monitor) == nil {
      throw ValidationError("--monitor must be valid_loss or valid_accuracy, got '\(monitor)'")
    }
    if let gradientEvery, gradientEvery < 1 { throw ValidationError("--gradient-every must be at least 1") }
    if let loss, Loss(name: loss) == nil {
      throw ValidationError("--loss must be mse, cross_entropy or nll, got '\(loss)'")
    }
    for (flag, value) in [("--activation", activation), ("--output-activation", outputActivation)] {
      if let value, Activation(name: value) == nil {
        throw ValidationError(
          "\(flag): unknown activation '\(value)'; expected one of \(Activation.allCases.map(\.rawValue).joined(separator: ", "))")
      }
    }
    if let layers {
      let sizes = layers.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
      guard sizes.count >= 2, sizes.allSatisfy({ ($0 ?? 0) >= 1 }) else {
        throw ValidationError("--layers must be positive sizes from input to output, e.g. 784,30,10; got '\(layers)'")
      }
    }
    if let checkpointEvery, checkpointEvery < 1 { throw ValidationError("--checkpoint-every must be at least 1") }
    if checkpointEvery != nil && checkpoint == nil && resume == nil {
      throw ValidationError("--checkpoint-every needs --checkpoint FILE")
    }
    if let indices, parsedIndices(indices) == nil {
      throw ValidationError("--indices must be comma-separated non-negative integers, got '\(indices)'")
    }
    if let dataset, ExperimentConfig.DataSet(rawValue: dataset.lowercased()) == nil {
      throw ValidationError("--dataset must be mnist or digits, got '\(dataset)'")
    }
    if let `init` {
      do { _ = try Initializer(parsing: `init`) } catch let e as NerveError { throw ValidationError("--init: \(e.message)") }
    }
  }

  func parsedIndices(_ text: String) -> [Int]? {
    let parts = text.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
    guard !parts.isEmpty, parts.allSatisfy({ ($0 ?? -1) >= 0 }) else { return nil }
    return parts.map { $0! }
  }

  /// The config file (or the default model) with every flag applied.
  func resolvedConfig() throws -> ExperimentConfig {
    var c = try baseConfig()
    applyDataFlags(&c)
    if let loss { c.loss = Loss(name: loss)! }
    applyNetworkFlags(&c)
    applyTrainingFlags(&c)
    try c.validate()
    return c
  }

  /// The config file with its `--set` changes, or the default model.
  func baseConfig() throws -> ExperimentConfig {
    if config == nil, let stored = try resumed()?.checkpoint.info["config"] {
      return try ExperimentConfig(json: stored)
    }
    if let config {
      return try ExperimentConfig(contentsOf: config, overrides: set.map { try ConfigOverride(parsing: $0) })
    }
    guard set.isEmpty else { throw NerveError(.badValue, at: "--set", "changes a config file's keys; it needs --config") }
    // The default model on MNIST is the fast recipe; an MLP from --layers, or on another data
    // set, starts from plain settings.
    if layers == nil, (dataset ?? "mnist").lowercased() == "mnist" { return .fastRecipe }
    var c = ExperimentConfig()
    c.name = "default"
    c.layers = ExperimentConfig.mlp(sizes: [784, 100, 10], hidden: .relu, output: .softmax, weights: nil)
    c.loss = .crossEntropy
    c.learningRate = 0.1
    c.batchSize = .size(32)
    c.epochs = 5
    return c
  }

  /// --dataset, --data, --threads, --subset, --indices, --validation, --standardize.
  func applyDataFlags(_ c: inout ExperimentConfig) {
    if let dataset { c.dataSet = ExperimentConfig.DataSet(rawValue: dataset.lowercased())! }
    if let path = dataOptions.data { c.dataPath = path }
    if let threads = dataOptions.threads { c.threads = threads }
    if let subset {
      c.trainCount = subset
      c.trainIndices = nil
    }
    if let indices { c.trainIndices = parsedIndices(indices) }
    if let validation { c.validationCount = validation }
    if standardize { c.standardize = true }
  }

  /// --layers (a new MLP), or --init and the activations changed in the config's layers.
  func applyNetworkFlags(_ c: inout ExperimentConfig) {
    if let layers {
      let sizes = layers.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces))! }
      let hidden = activation.flatMap { Activation(name: $0) } ?? .sigmoid
      let output = outputActivation.flatMap { Activation(name: $0) } ?? (c.loss == .meanSquaredError ? .sigmoid : .softmax)
      c.layers = ExperimentConfig.mlp(sizes: sizes, hidden: hidden, output: output, weights: `init`)
      c.layerLocations = []
      c.inputSize = sizes[0]
      return
    }
    let weighted = c.layers.indices.filter { ["dense", "conv2d"].contains(c.layers[$0].type.lowercased()) }
    if let `init` {
      for i in weighted { c.layers[i].weights = `init` }
    }
    // Every weighted layer but the output one is hidden.
    if let activation {
      for i in weighted.dropLast() where c.layers[i].activation != nil { c.layers[i].activation = activation }
    }
    if let outputActivation, let last = weighted.last { c.layers[last].activation = outputActivation }
  }

  /// The optimizer, schedule, batches, epochs, seed, early stopping and diagnostics flags.
  func applyTrainingFlags(_ c: inout ExperimentConfig) {
    if let optimizer { c.optimizer = optimizer.lowercased() }
    if let learningRate { c.learningRate = Float(learningRate) }
    if let momentum { c.momentum = Float(momentum) }
    if let weightDecay { c.weightDecay = Float(weightDecay) }
    if let batchSize { c.batchSize = BatchSize(parsing: batchSize)! }
    if let epochs { c.epochs = epochs }
    if noShuffle { c.shuffle = false }
    if testEveryEpoch { c.testEveryEpoch = true }
    if let seed { c.seed = seed }
    if let schedule { c.schedule = LearningRateSchedule(parsing: schedule)! }
    if let patience { c.earlyStopping = EarlyStopping(monitor: c.earlyStopping?.monitor ?? .validationLoss, patience: patience) }
    if let monitor {
      if c.earlyStopping == nil { c.earlyStopping = EarlyStopping() }
      c.earlyStopping!.monitor = EarlyStopping.Monitor(rawValue: monitor)!
    }
    if gradients && c.gradientDiagnostics == nil { c.gradientDiagnostics = GradientDiagnostics() }
    if let gradientEvery { c.gradientDiagnostics = GradientDiagnostics(everySteps: gradientEvery) }
  }

  /// The checkpoint --resume names, read once.
  func resumed() throws -> (checkpoint: TrainingCheckpoint, model: Sequential)? {
    guard let resume else { return nil }
    if let cached = Self.resumedCache, cached.path == resume { return cached.value }
    let value = try TrainingCheckpoint.read(from: resume)
    Self.resumedCache = (resume, value)
    return value
  }

  nonisolated(unsafe) private static var resumedCache: (path: String, value: (checkpoint: TrainingCheckpoint, model: Sequential))?

  func run() throws {
    try reportingErrors {
      let started = ContinuousClock.now
      let ranks = try jobRanks()
      // Under mpirun, rank 0 alone prints and writes files.
      let root = ranks?.isRoot ?? true, quiet = self.quiet || !root
      let c = try resolvedConfig()
      let resumed = try resumed()?.checkpoint
      // Paths the checkpoint recorded, unless given again.
      func stored(_ key: String) -> String? { resumed?.info[key].flatMap { $0.isEmpty ? nil : $0 } }
      let metricsPath = root ? metrics ?? stored("metrics") : nil, savePath = root ? save ?? stored("save") : nil
      let checkpointPath = root ? checkpoint ?? resume : nil
      let display = ProgressDisplay(quiet: quiet)
      let interrupt = InterruptSignal.install()
      if let ranks { InterruptSignal.reportProgress(rank: ranks.rank) }
      let observer = RunObserver(
        started: { start in
          guard !quiet else { return }
          let d = start.data
          let processes = ranks.map { " x \($0.size) ranks" } ?? ""
          print("\(c.name): \(c.dataSet.rawValue), \(d.train.count) training samples\(d.validation.map { ", \($0.count) validation" } ?? ""), \(d.test.count) test; \(start.model.context.threads) thread(s)\(processes)")
          print(start.model.summary)
          print("loss \(c.loss), \(start.trainer.optimizer), batch size \(c.batchSize), \(c.epochs) epochs, seed \(c.seed)")
          if let r = resumed {
            print("resuming from \(resume!): \(r.completedEpochs) epoch(s) and \(r.stepInEpoch) step(s) done")
          }
        },
        batch: display.live || ranks != nil
          ? { p in
            InterruptSignal.record(epoch: p.epoch, step: p.batch)
            if display.live { display.batch(p) }
          } : nil,
        epoch: { m in
          display.epoch(m, of: c.epochs)
          return true
        },
        shouldStop: { interrupt.received != 0 })
      let result: ExperimentResult
      do {
        result = try Experiment(config: c).run(
          metrics: metricsPath, saveTo: savePath, observer: observer,
          checkpoints: CheckpointOptions(path: checkpointPath, everySteps: checkpointEvery, resume: resumed),
          ranks: ranks)
      } catch let error as NerveError where error.kind == .interrupted {
        display.clear()
        printError("nerve: \(error)")
        if !root {
          // Rank 0 says how to continue.
        } else if let checkpointPath {
          printError("nerve: interrupted; the checkpoint \(checkpointPath) holds the run: continue it with\n  nerve train --resume \(checkpointPath)")
        } else {
          printError("nerve: interrupted (no --checkpoint FILE was given, so it cannot be continued)")
        }
        throw ExitCode(128 + interrupt.received)
      } catch {
        display.clear()
        throw error
      }
      let history = result.history
      if history.stoppedEarly, !quiet {
        print("stopped early after epoch \(history.epochs.count)" + (history.bestEpoch.map { "; kept the weights of epoch \($0)" } ?? ""))
      }
      if !quiet { print(result.confusion) }
      if !quiet && history.epochs.count >= 2 { print(curveSummary(history)) }
      guard root else { return }
      let test = result.test
      print(String(format: "test: %d/%d correct (%.2f%%), loss %.4f", test.correct, test.count, 100 * test.accuracy, test.loss))
      print(String(format: "time: %.2f s training (%d epochs, median %.4f s per epoch), %.2f s in all", history.trainingSeconds, history.epochs.count, median(history.epochs.map(\.seconds)), (ContinuousClock.now - started).seconds))
      if let savePath, !quiet { print("saved \(savePath)") }
    }
  }
}

/// The run's curves in a few lines of text: a sparkline per metric with first, best and last
/// values, so a terminal user sees the shape of training without opening a report.
func curveSummary(_ history: History) -> String {
  let bars = Array("▁▂▃▄▅▆▇█")
  func spark(_ values: [Double]) -> String {
    // At most 60 columns: long runs are averaged in equal buckets.
    let width = min(60, values.count)
    let buckets = (0..<width).map { b -> Double in
      let lo = b * values.count / width, hi = max(lo + 1, (b + 1) * values.count / width)
      return values[lo..<hi].reduce(0, +) / Double(hi - lo)
    }
    let mn = buckets.min()!, mx = buckets.max()!
    return String(buckets.map { mx > mn ? bars[min(7, Int(($0 - mn) / (mx - mn) * 7.999))] : bars[3] })
  }
  var lines: [String] = ["curves over \(history.epochs.count) epochs (first -> best -> last):"]
  let rows: [(String, (EpochMetrics) -> Double?, Bool, Double)] = [
    ("train loss", { $0.trainLoss }, false, 1), ("valid loss", { $0.validLoss }, false, 1),
    ("train acc %", { $0.trainAccuracy }, true, 100), ("valid acc %", { $0.validAccuracy }, true, 100),
    ("test acc %", { $0.testAccuracy }, true, 100),
  ]
  for (name, get, higherIsBetter, scale) in rows {
    let v = history.epochs.compactMap(get).map { $0 * scale }
    guard v.count == history.epochs.count, v.allSatisfy(\.isFinite) else { continue }
    let best = higherIsBetter ? v.max()! : v.min()!
    let f = scale == 100 ? "%.2f" : "%.4f"
    lines.append("  " + name.padding(toLength: 12, withPad: " ", startingAt: 0) + spark(v) + "  "
      + String(format: "\(f) -> \(f) -> \(f)", v.first!, best, v.last!))
  }
  return lines.joined(separator: "\n")
}

func median(_ values: [Double]) -> Double {
  guard !values.isEmpty else { return 0 }
  let s = values.sorted()
  return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}
