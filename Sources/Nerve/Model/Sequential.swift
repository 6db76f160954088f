// Sequential: a stack of layers with one flat parameter buffer and one flat state buffer.
// Running it lives in Sequential+Passes.swift, inference in Sequential+Inference.swift.
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
/// model files work on flat arrays. The model owns the `ComputeContext` its kernels run in,
/// for inference and for any `Trainer` training it.
public final class Sequential: @unchecked Sendable {
  /// Shape of one input sample, e.g. `[784]` or `[28, 28, 1]`.
  public let inputShape: [Int]
  /// The layers, in order, as they were given (a `Dense` with an activation is one layer).
  public let layers: [Layer]
  /// Total trainable parameters.
  public let parameterCount: Int
  /// Total non-trained state values (batch-norm running statistics), padding included.
  let stateCount: Int
  let parameterStorage: FloatBuffer
  let stateStorage: FloatBuffer
  /// Offsets of each layer's state in `stateStorage`.
  let stateOffsets: [Int]
  /// How input pixels were prepared; saved with the model so predictions prepare them alike.
  public var preprocessing: Preprocessing = .none

  /// Threads, instruction set and scratch memory of every kernel run for this model, in
  /// inference and in training.
  public var context: ComputeContext
  var inferencePlan: Plan?
  /// `inferenceChunk`, counted once (the layers are fixed): counting lays a plan out, which
  /// allocates, and one-image calls allocate nothing.
  var countedInferenceChunk: Int?

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
    _ = try Sizes.product(input, of: "an input sample", at: "model")
    guard !layers.isEmpty else { throw NerveError(.badValue, at: "model", "no layers") }
    var shape = input
    var offset = 0
    var stateOffset = 0
    var stateOffsets: [Int] = []
    var stream = 0
    for (index, layer) in layers.enumerated() {
      guard !layer.attached else {
        throw NerveError(
          .badValue, at: "layer \(index) (\(layer.typeName))",
          "this layer object already belongs to a model; create a new one")
      }
      do {
        shape = try Self.build(layer, inputShape: shape)
      } catch let error as NerveError {
        throw NerveError(error.kind, at: "layer \(index) (\(layer.typeName))", error.message)
      }
      guard let count = Sizes.product([layer.parameterCount]), let states = Sizes.product([layer.stateCount]),
        let next = Sizes.product([offset + count + 16]), Sizes.product([stateOffset + states + 16]) != nil
      else {
        throw NerveError(.badValue, at: "layer \(index) (\(layer.typeName))", "the model's parameters are too many to count")
      }
      _ = next
      layer.attached = true
      layer.parameterOffset = offset
      layer.streamIndex = stream
      stream += layer.activationLayer == nil ? 1 : 2
      // Keep each layer's block 64-byte aligned.
      offset += (layer.parameterCount + 15) / 16 * 16
      stateOffsets.append(stateOffset)
      stateOffset += (layer.stateCount + 15) / 16 * 16
    }
    // Parameters and state, and an optimizer's two arrays as large, must fit in memory.
    try Memory.check(floats: offset + stateOffset, for: "the model's \(offset) parameters", at: "model")
    inputShape = input
    self.layers = layers
    parameterCount = layers.reduce(0) { $0 + $1.parameterCount }
    parameterStorage = FloatBuffer(count: offset)
    stateCount = stateOffset
    stateStorage = FloatBuffer(count: stateOffset)
    self.stateOffsets = stateOffsets
    context = ComputeContext()
    try initialize(seed: seed)
  }

  /// Fixes a layer's shapes (and its own activation's) for samples of `inputShape`; returns
  /// the layer's output shape.
  private static func build(_ layer: Layer, inputShape: [Int]) throws -> [Int] {
    var out = try layer.build(inputShape: inputShape)
    layer.inputShape = inputShape
    if layer.ownActivation != .identity {
      let activation = layer.ownActivation.layer
      activation.inputShape = out
      out = try activation.build(inputShape: out)
      activation.outputShape = out
      layer.activationLayer = activation
    }
    layer.outputShape = out
    return out
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
  /// Values per output sample (the number of classes for a classifier).
  public var outputCount: Int { outputShape.reduce(1, *) }
  /// Values per input sample.
  public var inputCount: Int { inputShape.reduce(1, *) }

  /// Whether the outputs are probabilities: the last layer is a softmax or ends with one.
  public var endsWithSoftmax: Bool {
    let last = layers[layers.count - 1]
    return last is Softmax || last.activationLayer is Softmax
  }

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

  /// A layer's non-trained state tensor: `running_mean` or `running_var` of a batch norm.
  public func state(layer index: Int, _ name: String) throws -> Tensor {
    guard layers.indices.contains(index) else {
      throw NerveError(.badValue, "no layer \(index); the model has \(layers.count) layers")
    }
    let layer = layers[index]
    guard let s = layer.stateTensors.first(where: { $0.name == name }) else {
      let names = layer.stateTensors.map(\.name)
      throw NerveError(
        .badValue, at: "layer \(index) (\(layer.typeName))",
        names.isEmpty ? "has no state" : "has no state '\(name)'; it has \(names.joined(separator: ", "))")
    }
    let start = stateStorage.pointer + stateOffsets[index] + s.offset
    return Tensor(shape: s.shape, values: Array(UnsafeBufferPointer(start: start, count: s.count)))
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
  func snapshot() -> ModelSnapshot {
    ModelSnapshot(parameters: Array(parameterStorage.buffer), state: Array(stateStorage.buffer))
  }

  /// Puts back the parameters and state of a snapshot of this model.
  func restore(_ snapshot: ModelSnapshot) {
    snapshot.parameters.withUnsafeBufferPointer {
      parameterStorage.pointer.update(from: $0.baseAddress!, count: $0.count)
    }
    snapshot.state.withUnsafeBufferPointer {
      if let base = $0.baseAddress { stateStorage.pointer.update(from: base, count: $0.count) }
    }
  }
}

/// A copy of a model's parameters and non-trained state.
struct ModelSnapshot {
  var parameters: [Float]
  var state: [Float]
}
