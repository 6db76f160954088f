// Layer: what every layer of a Sequential model is, and what the engine asks of it.
import CNerve

/// One step of a network: `Dense`, `Conv2D`, pooling, `BatchNorm`, `Dropout`, `Flatten`,
/// activations and `Softmax`.
///
/// Layers are created by you and handed to a `Sequential` model, which builds them (fixes
/// their shapes), owns their parameters and runs them. A layer belongs to one model.
///
/// A layer is one entry of the model wherever layers are numbered (summaries, `--set`,
/// gradient records, tensor names in model files): `Dense(30, activation: .sigmoid)` is one
/// layer whose output is the activation's output.
public class Layer: CustomStringConvertible {
  /// Shape of one input sample (without the batch dimension); set when the model is built.
  public internal(set) var inputShape: [Int] = []
  /// Shape of one output sample (after the layer's own activation); set when the model is built.
  public internal(set) var outputShape: [Int] = []
  /// Offset of this layer's parameters in the model's flat parameter buffer.
  var parameterOffset = 0
  var attached = false
  /// The layer applying this layer's `ownActivation` to its output, run as part of this layer;
  /// built by the model, nil without an activation.
  var activationLayer: Layer?
  /// Seeds this layer's random streams (dropout): the layer's position when every activation
  /// counts as a kernel of its own. Format-1 models numbered layers that way, so keeping it
  /// keeps every dropout mask, and so every trained model, as it was.
  var streamIndex = 0

  init() {}

  /// The layer's type as configs and model files name it (`dense`, `sigmoid`, ...).
  public var typeName: String { "layer" }

  /// Number of trainable parameters (weights and biases).
  public var parameterCount: Int { parameters.reduce(0) { $0 + $1.count } }

  /// Number of values kept between training steps that are not trained (batch-norm statistics).
  var stateCount: Int { stateTensors.reduce(0) { $0 + $1.count } }

  /// Named views into the layer's non-trained state, saved with the model.
  var stateTensors: [(name: String, shape: [Int], offset: Int, count: Int)] { [] }

  public var description: String { "\(typeName) \(inputShape) -> \(outputShape)" }

  // MARK: Engine hooks (overridden by each layer)

  /// Fixes shapes for a per-sample input shape and returns the output shape; throws if the
  /// layer cannot take that input.
  func build(inputShape: [Int]) throws -> [Int] { inputShape }

  /// The layer's parameter tensors, in the order they lie in the flat buffer.
  var parameters: [ParameterInfo] { [] }

  /// Floats of per-layer scratch needed for a batch of `batch` samples.
  func scratchCount(batch: Int) -> Int { 0 }

  /// Does the layer need the whole batch at once (batch statistics), so that a large batch may
  /// not be run in chunks?
  var needsWholeBatch: Bool { false }

  /// Sets non-trained state to its starting values (running variance 1, for batch norm).
  func resetState(_ state: UnsafeMutablePointer<Float>) {}

  func forward(_ io: LayerIO) throws {}
  func backward(_ io: LayerIO) throws {}

  /// The activation this layer applies to its own output (`Dense` and `Conv2D` take one).
  var ownActivation: Activation { .identity }

  /// Bytes of the context's layer workspace forward and backward use for `batch` samples
  /// (reserved once when training or inference is planned).
  func workspaceBytes(batch: Int) -> Int { 0 }

  /// Can backward apply this optimizer step to the parameters directly (no gradient buffer)?
  /// Layers without parameters always can: they have nothing to update.
  func supportsFused(_ step: FusedStep) -> Bool { parameterCount == 0 }

  /// Backward fused with an optimizer step. Layers without parameters just run backward.
  func backwardUpdate(_ io: LayerIO, step: FusedStep) throws { try backward(io) }

  /// The input gradient alone, computed as `backward` (or, for a layer that takes `fused`
  /// inside backward, `backwardUpdate`) computes it.
  func backwardInput(_ io: LayerIO, fused: FusedStep?) throws {
    try backward(io.replacing(parameterGradients: .some(nil)))
  }

  /// The step `backwardUpdate` takes, from a complete gradient laid out like the layer's
  /// parameters (data-parallel training, where the gradient is summed across ranks first).
  func applyFusedStep(
    _ step: FusedStep, parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>,
    context: ComputeContext
  ) throws {}

  /// Describes the layer for config and model files.
  var record: LayerRecord { LayerRecord(type: typeName) }
}

/// A parameter tensor of a layer: where it lives and how it starts.
struct ParameterInfo {
  var name: String
  var shape: [Int]
  /// Offset within the layer's parameters.
  var offset: Int
  var initializer: Initializer
  var fanIn: Int
  var fanOut: Int
  /// Coupled L2 coefficient added to the gradient (2 * the layer's `l2`).
  var decay: Float
  /// Weights (as opposed to biases and normalisation shifts) get the optimizer's weight decay.
  var isWeight: Bool
  var count: Int { shape.reduce(1, *) }
}

/// Everything a layer's forward or backward call works on, for a batch of `batch` samples.
/// Buffers are [batch, sample size] row-major; gradient buffers are nil when not needed.
struct LayerIO {
  let context: ComputeContext
  let batch: Int
  let input: UnsafeMutablePointer<Float>
  let output: UnsafeMutablePointer<Float>
  /// dLoss/dinput, written by backward; nil for the first layer.
  let inputGradient: UnsafeMutablePointer<Float>?
  /// dLoss/doutput, read by backward.
  let outputGradient: UnsafeMutablePointer<Float>?
  let parameters: UnsafeMutablePointer<Float>
  /// Accumulated by backward; nil in inference.
  let parameterGradients: UnsafeMutablePointer<Float>?
  /// Non-trained state (running statistics).
  let state: UnsafeMutablePointer<Float>
  let scratch: UnsafeMutablePointer<Float>
  let training: Bool
  /// Seed for this step's random choices (dropout), distinct per step and layer.
  let stepSeed: UInt64
  /// The row of the whole batch that `input`'s first row is (chunks of a step, ranks of a
  /// data-parallel run); random choices per sample count from it.
  var firstRow = 0
  /// The same values as `input`, listed as their non-zero entries (the first layer of a
  /// training run over sparse images); layers that can read them instead may.
  var sparseInput: SparseSlice?
  /// The same values as `input`, as the bytes they were scaled from (a model run on images
  /// kept as bytes); a layer that can read them instead may, and `input` is then unused.
  var pixelInput: PixelRows?

  var ctx: OpaquePointer { context.raw }
  func check(_ status: nerve_status) throws { try context.check(status) }
}
