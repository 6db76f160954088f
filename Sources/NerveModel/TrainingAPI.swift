// nerve_model_train and nerve_model_run_config: training from C, on caller-owned arrays or from
// a config file, with per-epoch and progress callbacks that can stop it.
import CNerve
import Foundation
import Nerve

public typealias EpochCallback = @convention(c) (UnsafeMutableRawPointer?, UnsafePointer<CChar>?) -> Int32
public typealias ProgressCallback = @convention(c) (UnsafeMutableRawPointer?, Int64, Int64, Int64, Double) -> Int32

/// The callbacks of one training call: the epoch callback after every epoch, the progress
/// callback after a step at most every 50 ms (so a caller's interpreter can notice Ctrl-C
/// without slowing per-sample training), either one stopping training by returning non-zero.
final class TrainingCallbacks {
  let onEpoch: EpochCallback?
  let onProgress: ProgressCallback?
  let user: UnsafeMutableRawPointer?
  private(set) var stopRequested = false
  private var lastProgress = ContinuousClock.now

  init(onEpoch: EpochCallback?, onProgress: ProgressCallback?, user: UnsafeMutableRawPointer?) {
    self.onEpoch = onEpoch
    self.onProgress = onProgress
    self.user = user
  }

  func batch(_ p: BatchProgress) {
    guard let onProgress, !stopRequested else { return }
    let now = ContinuousClock.now
    guard now - lastProgress >= .milliseconds(50) || p.batch == p.batches else { return }
    lastProgress = now
    if onProgress(user, Int64(p.epoch), Int64(p.batch), Int64(p.batches), p.loss) != 0 { stopRequested = true }
  }

  /// False to stop training.
  func epoch(_ m: EpochMetrics) -> Bool {
    guard let onEpoch else { return true }
    let text = (try? json(m)) ?? "{}"
    return text.withCString { onEpoch(user, $0) } == 0
  }

  func attach(to trainer: Trainer) {
    trainer.shouldStop = { [unowned self] in stopRequested }
  }
}

/// What `nerve_model_history` returns.
struct HistoryRecord: Encodable {
  var epochs: [EpochMetrics]
  var stoppedEarly: Bool
  var bestEpoch: Int?
  enum CodingKeys: String, CodingKey {
    case epochs
    case stoppedEarly = "stopped_early", bestEpoch = "best_epoch"
  }
}

@_cdecl("nerve_model_train")
public func nerveModelTrain(
  _ m: OpaquePointer?, _ trainTOML: UnsafePointer<CChar>?,
  _ x: UnsafePointer<Float>?, _ labels: UnsafePointer<Int32>?, _ n: Int64,
  _ validX: UnsafePointer<Float>?, _ validLabels: UnsafePointer<Int32>?, _ validN: Int64,
  _ onEpoch: EpochCallback?, _ onProgress: ProgressCallback?, _ user: UnsafeMutableRawPointer?
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_train") {
    let model = try h.requireModel()
    let text = try string(trainTOML, "train")
    let config = try ExperimentConfig(table: TOMLParser.parse(text, file: "train"), file: "train")
    let experiment = Experiment(config: config)
    let trainer = Trainer(model: model, loss: config.loss, optimizer: try experiment.makeOptimizer())
    let callbacks = TrainingCallbacks(onEpoch: onEpoch, onProgress: onProgress, user: user)
    callbacks.attach(to: trainer)
    func fit(_ train: Dataset, _ validation: Dataset?) throws -> History {
      try experiment.fit(
        trainer, train: train, validation: validation, onBatch: callbacks.batch, onEpoch: callbacks.epoch)
    }
    // The caller's arrays are borrowed for the call, not copied.
    h.history = try withDataset(model, x, labels, n, name: "x") { train in
      validN == 0
        ? try fit(train, nil)
        : try withDataset(model, validX, validLabels, validN, name: "validation") { try fit(train, $0) }
    }
    h.loss = config.loss
  }
}

@_cdecl("nerve_model_history")
public func nerveModelHistory(_ m: OpaquePointer?) -> UnsafePointer<CChar>? {
  guard let h = handle(m, as: ModelHandle.self) else { return nil }
  var text: UnsafePointer<CChar>?
  _ = h.run("nerve_model_history") {
    guard let history = h.history else {
      throw Refusal(status: Status.noModel, message: "the model has not been trained through this handle")
    }
    text = h.hand(try json(HistoryRecord(epochs: history.epochs, stoppedEarly: history.stoppedEarly, bestEpoch: history.bestEpoch)))
  }
  return text
}

@_cdecl("nerve_model_run_config")
public func nerveModelRunConfig(
  _ m: OpaquePointer?, _ configPath: UnsafePointer<CChar>?,
  _ overrides: UnsafePointer<UnsafePointer<CChar>?>?, _ overrideCount: Int32,
  _ metricsPath: UnsafePointer<CChar>?, _ savePath: UnsafePointer<CChar>?,
  _ onEpoch: EpochCallback?, _ onProgress: ProgressCallback?, _ user: UnsafeMutableRawPointer?
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_run_config") {
    let path = try string(configPath, "config")
    guard overrideCount >= 0 else { throw Refusal(status: Status.badSize, message: "override count is negative") }
    let list = overrideCount == 0 ? [] : try (0..<Int(overrideCount)).map { i -> ConfigOverride in
      let items = try required(overrides, "overrides")
      return try ConfigOverride(parsing: try string(items[i], "overrides[\(i)]"))
    }
    var config = try ExperimentConfig(contentsOf: path, overrides: list)
    if let threads = h.threads { config.threads = threads }
    let callbacks = TrainingCallbacks(onEpoch: onEpoch, onProgress: onProgress, user: user)
    let observer = RunObserver(
      started: { callbacks.attach(to: $0.trainer) }, batch: callbacks.batch, epoch: callbacks.epoch)
    let result = try Experiment(config: config).run(
      metrics: metricsPath.map { String(cString: $0) }, saveTo: savePath.map { String(cString: $0) },
      observer: observer)
    h.model = result.model
    h.loss = config.loss
    h.history = result.history
    h.runSummary = result.summary
  }
}

@_cdecl("nerve_model_run_summary")
public func nerveModelRunSummary(_ m: OpaquePointer?) -> UnsafePointer<CChar>? {
  guard let h = handle(m, as: ModelHandle.self) else { return nil }
  var text: UnsafePointer<CChar>?
  _ = h.run("nerve_model_run_summary") {
    guard let s = h.runSummary else {
      throw Refusal(status: Status.noModel, message: "no config was run through this handle")
    }
    text = h.hand(try json(s))
  }
  return text
}
