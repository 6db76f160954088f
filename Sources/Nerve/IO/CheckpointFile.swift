// Checkpoint files: a TrainingCheckpoint in the safetensors container, written atomically.
// The model part is a model file's (layers.<i>.<name> tensors and the architecture), so a
// checkpoint also loads as a model; the rest is the training state's tensors and a JSON record,
// guarded by a CRC-32 of the tensor bytes.
import CZlib
import Foundation

extension TrainingCheckpoint {
  /// The checkpoint format this build writes and reads.
  public static let formatVersion = 1

  /// The training state besides its tensors, as JSON in the file's metadata.
  struct StateRecord: Codable {
    var completedEpochs: Int
    var stepInEpoch: Int
    var epochLossSum: Double
    var epochCorrect: Int64
    var epochSeconds: Double
    var shuffler: [UInt64]
    var gradientSums: [LayerGradientStats]?
    var gradientSteps: Int?
    var stopping: Stopping?
    var epochs: [EpochMetrics]
    var stoppedEarly: Bool
    var bestEpoch: Int?
    var optimizerSteps: Int

    struct Stopping: Codable {
      var bestScore: Double?
      var bestEpoch: Int
      var waited: Int
    }
  }

  /// Writes the checkpoint for `model` (whose architecture it records) to `path`, atomically.
  public func write(to path: String, model: Sequential) throws {
    var file = try ModelFile.contents(of: model)
    // The model's tensors as the checkpoint holds them (the live model may have moved on since).
    guard self.model.parameters.count == model.parameterStorage.count, self.model.state.count == model.stateStorage.count else {
      throw NerveError(.badValue, at: path, "the checkpoint does not belong to this model")
    }
    for t in model.tensors {
      let parameters = model.parameterStorage.pointer, state = model.stateStorage.pointer
      let base = t.data.baseAddress!
      let inParameters = base >= parameters && base < parameters + model.parameterStorage.count
      let source = inParameters ? self.model.parameters : self.model.state
      let offset = inParameters ? base - parameters : base - state
      source.withUnsafeBufferPointer {
        file.add("layers.\(t.layer).\(t.name)", UnsafeBufferPointer(rebasing: $0[offset..<(offset + t.data.count)]), shape: t.shape)
      }
    }
    file.metadata["format"] = "nerve-checkpoint"
    file.metadata["nerve.checkpoint_version"] = String(Self.formatVersion)
    let s = state
    let record = StateRecord(
      completedEpochs: s.completedEpochs, stepInEpoch: s.stepInEpoch, epochLossSum: s.epochLossSum,
      epochCorrect: s.epochCorrect, epochSeconds: s.epochSeconds, shuffler: s.shuffler.state,
      gradientSums: s.recorder?.sums, gradientSteps: s.recorder?.steps,
      stopping: s.stopping.map { .init(bestScore: $0.bestScore, bestEpoch: $0.bestEpoch, waited: $0.waited) },
      epochs: s.history.epochs, stoppedEarly: s.history.stoppedEarly, bestEpoch: s.history.bestEpoch,
      optimizerSteps: optimizerSteps)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    file.metadata["nerve.training"] = String(decoding: try encoder.encode(record), as: UTF8.self)
    file.metadata["nerve.settings"] = String(decoding: try encoder.encode(settings), as: UTF8.self)
    for (k, v) in info { file.metadata["info." + k] = v }
    func add(_ name: String, _ values: [Float]) {
      values.withUnsafeBufferPointer { file.add(name, $0, shape: [values.count]) }
    }
    add("checkpoint.parameters", self.model.parameters)
    add("checkpoint.model_state", self.model.state)
    add("checkpoint.last_good.parameters", lastGood.parameters)
    add("checkpoint.last_good.model_state", lastGood.state)
    if let best = s.stopping?.bestModel {
      add("checkpoint.best.parameters", best.parameters)
      add("checkpoint.best.model_state", best.state)
    }
    add("checkpoint.optimizer_state", optimizerState)
    file.add("checkpoint.order", int32: s.order.map { Int32($0) }, shape: [s.order.count])
    // The CRC covers the tensor bytes, which come after the header holding it: written in
    // two passes.
    let payload = Safetensors.payload(of: try file.data()) ?? Data()
    file.metadata["nerve.crc32"] = String(Self.crc32(payload))
    try AtomicFile.write(try file.data(), to: path)
  }

  static func crc32(_ data: Data) -> UInt {
    data.withUnsafeBytes { raw in
      var crc = CZlib.crc32(0, nil, 0)
      var offset = 0
      // zlib takes 32-bit lengths: large payloads go in slices.
      while offset < raw.count {
        let n = min(raw.count - offset, 1 << 30)
        crc = CZlib.crc32(crc, raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + offset, uInt(n))
        offset += n
      }
      return UInt(crc)
    }
  }

  /// Reads a checkpoint and the model it belongs to (architecture and preprocessing from the
  /// file, parameters as the checkpoint holds them).
  /// - Throws: `NerveError` naming the file for a missing, truncated or corrupt checkpoint.
  public static func read(from path: String) throws -> (checkpoint: TrainingCheckpoint, model: Sequential) {
    let data = try FileBytes.read(path)
    func fail(_ message: String) -> NerveError { NerveError(.badFile, at: path, message) }
    let file = try Safetensors(parsing: data, fail)
    let meta = file.metadata
    guard meta["format"] == "nerve-checkpoint" else {
      throw fail("not a Nerve checkpoint (a model file? train with --checkpoint FILE to get one)")
    }
    guard let version = meta["nerve.checkpoint_version"].flatMap(Int.init), version <= formatVersion else {
      throw fail("written by another Nerve (checkpoint format \(meta["nerve.checkpoint_version"] ?? "?")); this build reads format \(formatVersion)")
    }
    guard let stored = meta["nerve.crc32"].flatMap(UInt.init), let payload = Safetensors.payload(of: data),
      stored == crc32(payload)
    else {
      throw fail("corrupt: the tensors do not match the checkpoint's CRC-32")
    }
    let decoder = JSONDecoder()
    guard let recordText = meta["nerve.training"], let settingsText = meta["nerve.settings"],
      let r = try? decoder.decode(StateRecord.self, from: Data(recordText.utf8)),
      let settings = try? decoder.decode(Settings.self, from: Data(settingsText.utf8)),
      let shuffler = SeededGenerator(state: r.shuffler)
    else {
      throw fail("corrupt: the training state in the metadata is missing or not valid")
    }
    let model = try ModelFile.model(from: file, path: path)
    let p = model.parameterStorage.count, s = model.stateStorage.count
    func snapshot(_ prefix: String) throws -> ModelSnapshot {
      ModelSnapshot(parameters: try file.floats(prefix + ".parameters", count: p, fail), state: try file.floats(prefix + ".model_state", count: s, fail))
    }
    let optimizerCount = file.shape(of: "checkpoint.optimizer_state")?.first ?? 0
    var state = TrainingState(
      samples: settings.samples,
      settings: TrainingSettings(
        epochs: settings.epochs, batchSize: BatchSize(parsing: settings.batchSize) ?? .full, shuffle: settings.shuffle,
        seed: settings.seed, schedule: .constant, earlyStopping: r.stopping == nil ? nil : EarlyStopping(),
        gradientDiagnostics: r.gradientSums == nil ? nil : GradientDiagnostics()),
      model: model)
    let order = try file.int32s("checkpoint.order", count: settings.samples, fail)
    guard Set(order).count == order.count, order.allSatisfy({ $0 >= 0 && Int($0) < settings.samples }) else {
      throw fail("corrupt: the sample order is not a permutation of the \(settings.samples) samples")
    }
    state.order = order.map(Int.init)
    state.shuffler = shuffler
    state.completedEpochs = r.completedEpochs
    state.stepInEpoch = r.stepInEpoch
    state.epochLossSum = r.epochLossSum
    state.epochCorrect = r.epochCorrect
    state.epochSeconds = r.epochSeconds
    if let sums = r.gradientSums, state.recorder != nil {
      guard sums.count == state.recorder!.sums.count else { throw fail("corrupt: gradient statistics do not fit the model") }
      state.recorder!.sums = sums
      state.recorder!.steps = r.gradientSteps ?? 0
    }
    if let st = r.stopping {
      state.stopping?.bestScore = st.bestScore
      state.stopping?.bestEpoch = st.bestEpoch
      state.stopping?.waited = st.waited
      if file.contains("checkpoint.best.parameters") { state.stopping?.bestModel = try snapshot("checkpoint.best") }
    }
    state.history = History(epochs: r.epochs)
    state.history.stoppedEarly = r.stoppedEarly
    state.history.bestEpoch = r.bestEpoch
    var info: [String: String] = [:]
    for (k, v) in meta where k.hasPrefix("info.") { info[String(k.dropFirst(5))] = v }
    var c = TrainingCheckpoint(
      state: state, model: try snapshot("checkpoint"), lastGood: try snapshot("checkpoint.last_good"),
      optimizerState: try file.floats("checkpoint.optimizer_state", count: optimizerCount, fail),
      optimizerSteps: r.optimizerSteps, settings: settings)
    c.info = info
    model.restore(c.model)
    return (c, model)
  }
}
