// Sequential: a stack of layers with one flat parameter buffer, and the passes that run it.
import CNerve

/// Builds the layer list of a `Sequential` model from a closure.
@resultBuilder
public enum LayerBuilder {
  public static func buildExpression(_ layer: Layer) -> [Layer] { [layer] }
  public static func buildExpression(_ layers: [Layer]) -> [Layer] { layers }
  public static func buildBlock(_ parts: [Layer]...) -> [Layer] { parts.flatMap { $0 } }
  public static func buildArray(_ parts: [[Layer]]) -> [Layer] { parts.flatMap { $0 } }
  public static func buildOptional(_ part: [Layer]?) -> [Layer] { part ?? [] }
  public static func buildEither(first: [Layer]) -> [Layer] { first }
  public static func buildEither(second: [Layer]) -> [Layer] { second }
}

/// A neural network made of layers applied one after another.
///
/// ```swift
/// let model = try Sequential(input: 784) {
///   Dense(30, activation: .sigmoid)
///   Dense(10, activation: .sigmoid)
/// }
/// ```
/// All parameters live in one flat buffer (each layer has a view into it), so optimizers and
/// model files work on flat arrays.
public final class Sequential: @unchecked Sendable {
  /// Shape of one input sample, e.g. `[784]` or `[28, 28, 1]`.
  public let inputShape: [Int]
  /// The layers, in order (a `Dense` with an activation appears as two layers).
  public let layers: [Layer]
  /// Total trainable parameters.
  public let parameterCount: Int
  /// Total non-trained state values (batch-norm running statistics).
  let stateCount: Int
  let parameterStorage: FloatBuffer
  let stateStorage: FloatBuffer
  /// Offsets of each layer's state in `stateStorage`.
  let stateOffsets: [Int]
  /// How input pixels were prepared; saved with the model so predictions prepare them alike.
  public var preprocessing: Preprocessing = .none

  /// The context inference (`predict`, `evaluate`) runs in; training uses the trainer's.
  public var context: ComputeContext
  private var inferencePlan: Plan?

  /// Builds a model for samples of shape `input`.
  /// - Parameters:
  ///   - input: shape of one sample (`[784]` for flat MNIST, `[28, 28, 1]` for images).
  ///   - layers: the layers; each must not belong to another model.
  ///   - seed: seed for the initial parameter values.
  /// - Throws: `NerveError` if a layer cannot take the previous layer's output.
  public init(input: [Int], layers: [Layer], seed: UInt64 = 1) throws {
    guard !input.isEmpty, input.allSatisfy({ $0 >= 1 }) else {
      throw NerveError(.badValue, at: "model", "input shape must be positive sizes, got \(input)")
    }
    guard !layers.isEmpty else { throw NerveError(.badValue, at: "model", "no layers") }
    var expanded: [Layer] = []
    for layer in layers {
      expanded.append(layer)
      if layer.followingActivation != .identity { expanded.append(layer.followingActivation.layer) }
    }
    var shape = input
    var offset = 0
    var stateOffset = 0
    var stateOffsets: [Int] = []
    for (index, layer) in expanded.enumerated() {
      guard !layer.attached else {
        throw NerveError(
          .badValue, at: "layer \(index) (\(layer.typeName))",
          "this layer object already belongs to a model; create a new one")
      }
      do {
        let out = try layer.build(inputShape: shape)
        layer.inputShape = shape
        layer.outputShape = out
        shape = out
      } catch let error as NerveError {
        throw NerveError(error.kind, at: "layer \(index) (\(layer.typeName))", error.message)
      }
      layer.attached = true
      layer.parameterOffset = offset
      // Keep each layer's block 64-byte aligned.
      offset += (layer.parameterCount + 15) / 16 * 16
      stateOffsets.append(stateOffset)
      stateOffset += (layer.stateCount + 15) / 16 * 16
    }
    inputShape = input
    self.layers = expanded
    parameterCount = expanded.reduce(0) { $0 + $1.parameterCount }
    parameterStorage = FloatBuffer(count: offset)
    stateCount = stateOffset
    stateStorage = FloatBuffer(count: stateOffset)
    self.stateOffsets = stateOffsets
    context = ComputeContext()
    try initialize(seed: seed)
  }

  /// Builds a model from a closure listing the layers.
  public convenience init(input: Int, seed: UInt64 = 1, @LayerBuilder _ layers: () throws -> [Layer])
    throws
  {
    try self.init(input: [input], layers: layers(), seed: seed)
  }

  /// Builds a model for samples of shape `input` from a closure listing the layers.
  public convenience init(
    input: [Int], seed: UInt64 = 1, @LayerBuilder _ layers: () throws -> [Layer]
  ) throws {
    try self.init(input: input, layers: layers(), seed: seed)
  }

  /// Shape of one output sample.
  public var outputShape: [Int] { layers.last!.outputShape }
  var outputCount: Int { outputShape.reduce(1, *) }
  var inputCount: Int { inputShape.reduce(1, *) }

  /// Sets every parameter to its initialiser's value, drawing from `seed`.
  public func initialize(seed: UInt64) throws {
    var rng = SeededGenerator(seed: seed)
    parameterStorage.zero()
    for (index, layer) in layers.enumerated() {
      for p in layer.parameters {
        let buffer = UnsafeMutableBufferPointer(
          start: parameterStorage.pointer + layer.parameterOffset + p.offset, count: p.count)
        do {
          try p.initializer.fill(buffer, fanIn: p.fanIn, fanOut: p.fanOut, using: &rng)
        } catch let e as NerveError {
          throw NerveError(e.kind, at: "layer \(index) (\(layer.typeName)).\(p.name)", e.message)
        }
      }
      layer.resetState(stateStorage.pointer + stateOffsets[index])
    }
  }

  // MARK: Parameters

  /// A parameter tensor: `layer` is the index in `layers`, `name` is `weight` or `bias`
  /// (and `gamma`/`beta` for batch norm).
  public func parameter(layer index: Int, _ name: String) throws -> Tensor {
    let (layer, info) = try lookup(index, name)
    let start = parameterStorage.pointer + layer.parameterOffset + info.offset
    return Tensor(shape: info.shape, values: Array(UnsafeBufferPointer(start: start, count: info.count)))
  }

  /// Replaces a parameter tensor's values (the shape must match).
  public func setParameter(layer index: Int, _ name: String, to value: Tensor) throws {
    let (layer, info) = try lookup(index, name)
    guard value.count == info.count else {
      throw NerveError(
        .shapeMismatch, at: "layer \(index) (\(layer.typeName)).\(name)",
        "expected \(info.count) values (shape \(info.shape)), got shape \(value.shape)")
    }
    value.withUnsafeBufferPointer {
      (parameterStorage.pointer + layer.parameterOffset + info.offset).update(
        from: $0.baseAddress!, count: info.count)
    }
  }

  private func lookup(_ index: Int, _ name: String) throws -> (Layer, ParameterInfo) {
    guard layers.indices.contains(index) else {
      throw NerveError(.badValue, "no layer \(index); the model has \(layers.count) layers")
    }
    let layer = layers[index]
    guard let info = layer.parameters.first(where: { $0.name == name }) else {
      let names = layer.parameters.map(\.name)
      throw NerveError(
        .badValue, at: "layer \(index) (\(layer.typeName))",
        names.isEmpty ? "has no parameters" : "has no parameter '\(name)'; it has \(names.joined(separator: ", "))")
    }
    return (layer, info)
  }

  /// Every parameter tensor with its layer index and name, in buffer order.
  var parameterGroups: [(layer: Int, info: ParameterInfo, offset: Int)] {
    layers.enumerated().flatMap { (i, layer) in
      layer.parameters.map { (i, $0, layer.parameterOffset + $0.offset) }
    }
  }

  /// A copy of all parameters and state (for restoring the best or last good epoch).
  func snapshot() -> (parameters: [Float], state: [Float]) {
    (Array(parameterStorage.buffer), Array(stateStorage.buffer))
  }

  func restore(_ s: (parameters: [Float], state: [Float])) {
    s.parameters.withUnsafeBufferPointer {
      parameterStorage.pointer.update(from: $0.baseAddress!, count: $0.count)
    }
    s.state.withUnsafeBufferPointer {
      if let base = $0.baseAddress { stateStorage.pointer.update(from: base, count: $0.count) }
    }
  }

  // MARK: Running

  /// Activations, gradients and scratch for batches of up to `capacity` samples.
  final class Plan {
    let capacity: Int
    let outputs: [UnsafeMutablePointer<Float>]
    /// gradients[i] = dLoss/d(output of layer i); empty for inference plans.
    let gradients: [UnsafeMutablePointer<Float>]
    let scratch: [UnsafeMutablePointer<Float>]
    private let storage: FloatBuffer

    /// Bytes of layer workspace the model's layers need at this capacity.
    let workspaceBytes: Int

    init(model: Sequential, capacity: Int, training: Bool) {
      self.capacity = capacity
      workspaceBytes = model.layers.map { $0.workspaceBytes(batch: capacity) }.max() ?? 0
      func padded(_ n: Int) -> Int { (n + 15) / 16 * 16 }
      var total = 0
      var outOffsets: [Int] = [], gradOffsets: [Int] = [], scratchOffsets: [Int] = []
      for layer in model.layers {
        let size = padded(capacity * layer.outputShape.reduce(1, *))
        outOffsets.append(total)
        total += size
        if training {
          gradOffsets.append(total)
          total += size
        }
        scratchOffsets.append(total)
        total += padded(layer.scratchCount(batch: capacity))
      }
      storage = FloatBuffer(count: total)
      let base = storage.pointer
      outputs = outOffsets.map { base + $0 }
      gradients = gradOffsets.map { base + $0 }
      scratch = scratchOffsets.map { base + $0 }
    }
  }

  /// Runs layers `0..<end` on `batch` samples at `input`; layer i writes `plan.outputs[i]`.
  func forward(
    _ input: UnsafeMutablePointer<Float>, batch: Int, plan: Plan, context: ComputeContext,
    training: Bool, step: UInt64 = 0, through end: Int? = nil
  ) throws {
    let stop = end ?? layers.count
    var x = input
    for i in 0..<stop {
      let layer = layers[i]
      try layer.forward(
        LayerIO(
          context: context, batch: batch, input: x, output: plan.outputs[i],
          inputGradient: nil, outputGradient: nil,
          parameters: parameterStorage.pointer + layer.parameterOffset, parameterGradients: nil,
          state: stateStorage.pointer + stateOffsets[i], scratch: plan.scratch[i],
          training: training, stepSeed: step &* 0x9E37_79B9 &+ UInt64(i)))
      x = plan.outputs[i]
    }
  }

  /// Backpropagates from `plan.gradients[start]` (already holding dLoss/d(output of layer
  /// start)) down to layer 0, accumulating parameter gradients into `gradients`; layers in
  /// `fusedLayers` apply `fused` to their parameters directly instead.
  func backward(
    _ input: UnsafeMutablePointer<Float>, batch: Int, plan: Plan, context: ComputeContext,
    gradients: UnsafeMutablePointer<Float>, from start: Int, step: UInt64 = 0,
    fused: FusedStep? = nil, fusedLayers: [Bool] = []
  ) throws {
    for i in stride(from: start, through: 0, by: -1) {
      let layer = layers[i]
      let io = LayerIO(
          context: context, batch: batch, input: i == 0 ? input : plan.outputs[i - 1],
          output: plan.outputs[i], inputGradient: i == 0 ? nil : plan.gradients[i - 1],
          outputGradient: plan.gradients[i],
          parameters: parameterStorage.pointer + layer.parameterOffset,
          parameterGradients: gradients + layer.parameterOffset,
          state: stateStorage.pointer + stateOffsets[i], scratch: plan.scratch[i],
          training: true, stepSeed: step &* 0x9E37_79B9 &+ UInt64(i))
      if let fused, i < fusedLayers.count, fusedLayers[i] {
        try layer.backwardUpdate(io, step: fused)
      } else {
        try layer.backward(io)
      }
    }
  }

  /// Samples per inference pass: as many as keep the activations near 32 MB (4,096 for an
  /// MLP, about 90 for Lab E's CNN).
  var inferenceChunk: Int {
    let perSample = layers.reduce(0) { $0 + $1.outputShape.reduce(1, *) + $1.scratchCount(batch: 1) }
    return max(1, min(4096, (8 << 20) / max(perSample, 1)))
  }

  /// Runs the model in inference mode over `count` samples in chunks, calling `body` with the
  /// plan holding each chunk's activations, the chunk's size and its first sample index.
  func infer(
    _ features: UnsafePointer<Float>, count: Int, context: ComputeContext? = nil,
    _ body: (Plan, _ chunk: Int, _ start: Int) throws -> Void
  ) throws {
    let capacity = min(max(count, 1), inferenceChunk)
    if inferencePlan == nil || inferencePlan!.capacity < capacity {
      inferencePlan = Plan(model: self, capacity: capacity, training: false)
    }
    let plan = inferencePlan!
    let context = context ?? self.context
    try context.reserve(bytes: plan.workspaceBytes)
    var start = 0
    while start < count {
      let n = min(capacity, count - start)
      try forward(
        UnsafeMutablePointer(mutating: features + start * inputCount), batch: n, plan: plan,
        context: context, training: false)
      try body(plan, n, start)
      start += n
    }
  }

  /// The model's outputs for a batch of samples: [samples, outputs].
  /// - Parameter features: [samples, ...] whose per-sample size matches the input shape.
  public func outputs(for features: Tensor) throws -> Tensor {
    let n = try sampleCount(features)
    var result = Tensor(shape: [n] + outputShape)
    let width = outputCount
    try features.withUnsafeBufferPointer { x in
      try result.withUnsafeMutableBufferPointer { out in
        try infer(x.baseAddress!, count: n) { plan, chunk, start in
          (out.baseAddress! + start * width).update(
            from: plan.outputs[layers.count - 1], count: chunk * width)
        }
      }
    }
    return result
  }

  /// The outputs of layer `index` (inference mode) for a batch: [samples] + that layer's
  /// output shape. For looking inside a network, e.g. a convolution's feature maps.
  public func activations(for features: Tensor, layer index: Int) throws -> Tensor {
    guard layers.indices.contains(index) else {
      throw NerveError(.badValue, at: "layer", "no layer \(index); the model has layers 0...\(layers.count - 1)")
    }
    let n = try sampleCount(features)
    let width = layers[index].outputShape.reduce(1, *)
    var result = Tensor(shape: [n] + layers[index].outputShape)
    try features.withUnsafeBufferPointer { x in
      try result.withUnsafeMutableBufferPointer { out in
        try infer(x.baseAddress!, count: n) { plan, chunk, start in
          (out.baseAddress! + start * width).update(from: plan.outputs[index], count: chunk * width)
        }
      }
    }
    return result
  }

  /// The predicted class (argmax of the outputs) of each sample.
  public func predict(_ features: Tensor) throws -> [Int] {
    let n = try sampleCount(features)
    var classes = [Int32](repeating: 0, count: n)
    let width = outputCount
    try features.withUnsafeBufferPointer { x in
      try classes.withUnsafeMutableBufferPointer { c in
        try infer(x.baseAddress!, count: n) { plan, chunk, start in
          try context.check(
            nerve_argmax(
              context.raw, c.baseAddress! + start, plan.outputs[layers.count - 1], Int64(chunk),
              Int64(width)))
        }
      }
    }
    return classes.map(Int.init)
  }

  func sampleCount(_ features: Tensor) throws -> Int {
    let per = inputCount
    guard features.rank >= 1, features.count == features.shape[0] * per else {
      throw NerveError(
        .shapeMismatch,
        "the model takes samples of shape \(inputShape) (\(per) values) but got a tensor of shape \(features.shape)"
      )
    }
    return features.shape[0]
  }

  // MARK: Description

  /// A table of layers, output shapes and parameter counts, like Keras's `summary()`.
  public var summary: String {
    var rows: [(String, String, String)] = [("Layer (type)", "Output shape", "Param #")]
    for (i, layer) in layers.enumerated() {
      rows.append(
        (
          "\(i) \(layer.typeName)", "(None, " + layer.outputShape.map(String.init).joined(separator: ", ") + ")",
          "\(layer.parameterCount)"
        ))
    }
    let w0 = max(rows.map(\.0.count).max()!, 12), w1 = max(rows.map(\.1.count).max()!, 12)
    let w2 = max(rows.map(\.2.count).max()!, 7)
    func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
    func lpad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
    let rule = String(repeating: "-", count: w0 + w1 + w2 + 4)
    var lines = ["Input shape: (None, " + inputShape.map(String.init).joined(separator: ", ") + ")", rule]
    for (k, r) in rows.enumerated() {
      lines.append(pad(r.0, w0) + "  " + pad(r.1, w1) + "  " + lpad(r.2, w2))
      if k == 0 { lines.append(rule) }
    }
    lines.append(rule)
    lines.append("Total params: \(parameterCount)")
    if stateCount > 0 {
      lines.append("Non-trainable state: \(layers.reduce(0) { $0 + $1.stateCount })")
    }
    return lines.joined(separator: "\n")
  }
}
