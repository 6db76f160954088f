// Conv2D: 2-D convolution over channels-last images.
import CNerve

/// How a convolution or pooling window treats the image border.
public enum Padding: Sendable, Equatable, CustomStringConvertible {
  /// No padding: windows stay inside the image.
  case valid
  /// Pad so the output is ceil(input / stride) (the input size for stride 1), as Keras does.
  case same
  /// This many rows and columns of zeros on every side.
  case explicit(Int)

  /// Parses `same`, `valid` or a number of pixels.
  public init?(parsing text: String) {
    switch text.lowercased() {
    case "same": self = .same
    case "valid": self = .valid
    default:
      guard let n = Int(text), n >= 0 else { return nil }
      self = .explicit(n)
    }
  }

  public var description: String {
    switch self {
    case .valid: "valid"
    case .same: "same"
    case .explicit(let n): "\(n)"
    }
  }

  /// Output size and padding before the image along one axis.
  func resolve(input: Int, window: Int, stride: Int) -> (output: Int, before: Int) {
    switch self {
    case .valid: return ((input - window) / stride + 1, 0)
    case .same:
      let out = (input + stride - 1) / stride
      return (out, max(0, (out - 1) * stride + window - input) / 2)
    case .explicit(let p): return ((input + 2 * p - window) / stride + 1, p)
    }
  }
}

/// The geometry of a window sliding over [H, W, C] images.
struct WindowGeometry {
  var h = 0, w = 0, c = 0, kh = 0, kw = 0, sh = 0, sw = 0, pt = 0, pl = 0, oh = 0, ow = 0

  init() {}

  init(input: [Int], window: (Int, Int), stride: (Int, Int), padding: Padding, layer: String) throws {
    guard input.count == 3 else {
      throw NerveError(
        .shapeMismatch, at: layer,
        "expects images [height, width, channels] but gets shape \(input); use image-shaped data (a convolution first in the model loads it so)")
    }
    (h, w, c) = (input[0], input[1], input[2])
    (kh, kw, sh, sw) = (window.0, window.1, stride.0, stride.1)
    guard kh >= 1, kw >= 1, sh >= 1, sw >= 1 else {
      throw NerveError(.badValue, at: layer, "window \(kh)x\(kw) and stride \(sh)x\(sw) must be at least 1")
    }
    // Image sides and windows far beyond any image keep the arithmetic below in range.
    let limit = 1 << 24
    guard [h, w, c, kh, kw, sh, sw].allSatisfy({ $0 <= limit }) else {
      throw NerveError(.badValue, at: layer, "image \(h)x\(w)x\(c), window \(kh)x\(kw) and stride \(sh)x\(sw) must each be at most \(limit)")
    }
    if case .explicit(let p) = padding, p < 0 || p >= min(kh, kw) {
      throw NerveError(.badValue, at: layer, "padding \(p) must be 0 or more and smaller than the window \(kh)x\(kw)")
    }
    if case .valid = padding, kh > h || kw > w {
      throw NerveError(.shapeMismatch, at: layer, "a \(kh)x\(kw) window does not fit a \(h)x\(w) input without padding")
    }
    (oh, pt) = padding.resolve(input: h, window: kh, stride: sh)
    (ow, pl) = padding.resolve(input: w, window: kw, stride: sw)
    guard oh >= 1, ow >= 1 else {
      throw NerveError(
        .shapeMismatch, at: layer,
        "a \(kh)x\(kw) window with \(padding) padding does not fit a \(h)x\(w) input")
    }
  }

  var sizes: [Int64] { [h, w, c, kh, kw, sh, sw, pt, pl, oh, ow].map(Int64.init) }

  /// Rows and columns of padding on each side that the windows actually reach.
  var pads: WindowPadding {
    WindowPadding(
      top: pt, left: pl, bottom: max(0, (oh - 1) * sh + kh - h - pt), right: max(0, (ow - 1) * sw + kw - w - pl))
  }
}

/// The padding a built convolution or pooling layer applies, side by side: what `.same`,
/// `.valid` or `.explicit(n)` came to for its input size.
public struct WindowPadding: Sendable, Equatable {
  public var top: Int
  public var left: Int
  public var bottom: Int
  public var right: Int
}

/// A 2-D convolution: `filters` kernels of `kernel` size slide over [height, width, channels]
/// images, giving [out height, out width, filters].
///
/// ```swift
/// Conv2D(32, kernel: 3, padding: .same, activation: .relu)
/// ```
/// Weights are [kernel height, kernel width, input channels, filters] (Keras's layout).
public final class Conv2D: Layer {
  public let filters: Int
  public let kernel: (height: Int, width: Int)
  public let stride: (height: Int, width: Int)
  public let padding: Padding
  public let activation: Activation
  public let weightInitializer: Initializer
  public let biasInitializer: Initializer
  public let useBias: Bool
  /// Keras-style L2 penalty on the kernel.
  public let l2: Float
  var geometry = WindowGeometry()

  /// - Parameters:
  ///   - filters: output channels.
  ///   - kernel: square kernel size (use `kernelSize:` for rectangles).
  ///   - stride: step between windows.
  ///   - padding: `.same`, `.valid` or `.explicit(n)`.
  ///   - activation: applied after the layer.
  ///   - weights: initialiser (default Glorot uniform, fans counted over the kernel area).
  public convenience init(
    _ filters: Int, kernel: Int = 3, stride: Int = 1, padding: Padding = .valid,
    activation: Activation = .identity, weights: Initializer = .xavierUniform,
    bias: Initializer = .zeros, useBias: Bool = true, l2: Float = 0
  ) {
    self.init(
      filters, kernelSize: (kernel, kernel), strides: (stride, stride), padding: padding,
      activation: activation, weights: weights, bias: bias, useBias: useBias, l2: l2)
  }

  /// A convolution with a rectangular kernel and separate strides.
  public init(
    _ filters: Int, kernelSize: (Int, Int), strides: (Int, Int), padding: Padding = .valid,
    activation: Activation = .identity, weights: Initializer = .xavierUniform,
    bias: Initializer = .zeros, useBias: Bool = true, l2: Float = 0
  ) {
    self.filters = filters
    kernel = kernelSize
    stride = strides
    self.padding = padding
    self.activation = activation
    weightInitializer = weights
    biasInitializer = bias
    self.useBias = useBias
    self.l2 = l2
  }

  public override var typeName: String { "conv2d" }
  override var ownActivation: Activation { activation }

  override func build(inputShape: [Int]) throws -> [Int] {
    guard filters >= 1 else { throw NerveError(.badValue, at: "conv2d", "filters must be at least 1, got \(filters)") }
    guard l2 >= 0, l2.isFinite else { throw NerveError(.badValue, at: "conv2d", "l2 must be a finite number >= 0") }
    geometry = try WindowGeometry(input: inputShape, window: kernel, stride: stride, padding: padding, layer: "conv2d")
    _ = try Sizes.product([kernel.height, kernel.width, geometry.c + 1, filters], of: "a kernel", at: "conv2d")
    _ = try Sizes.product([geometry.oh, geometry.ow, filters], of: "an output", at: "conv2d")
    return [geometry.oh, geometry.ow, filters]
  }

  var weightCount: Int { kernel.height * kernel.width * geometry.c * filters }

  /// The padding applied on each side, once the model is built.
  public var appliedPadding: WindowPadding { geometry.pads }

  override var parameters: [ParameterInfo] {
    let area = kernel.height * kernel.width
    var list = [
      ParameterInfo(
        name: "weight", shape: [kernel.height, kernel.width, geometry.c, filters], offset: 0,
        initializer: weightInitializer, fanIn: area * geometry.c, fanOut: area * filters,
        decay: 2 * l2, isWeight: true)
    ]
    if useBias {
      list.append(
        ParameterInfo(
          name: "bias", shape: [filters], offset: weightCount, initializer: biasInitializer,
          fanIn: area * geometry.c, fanOut: area * filters, decay: 0, isWeight: false))
    }
    return list
  }

  override func workspaceBytes(batch: Int) -> Int {
    let s = geometry.sizes
    return nerve_conv2d_workspace_size(Int64(batch), s[0], s[1], s[2], Int64(filters), s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10])
  }

  override func forward(_ io: LayerIO) throws {
    let s = geometry.sizes, w = io.parameters
    try io.check(
      nerve_conv2d_forward(
        io.ctx, io.output, io.input, w, useBias ? w + weightCount : nil, Int64(io.batch), s[0], s[1],
        s[2], Int64(filters), s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
  }

  /// `forward` with the output taken through a ReLU in place, block by block while in cache
  /// (the layer's own ReLU, run as part of the convolution): the same values.
  func forwardThroughRelu(_ io: LayerIO) throws {
    let s = geometry.sizes, w = io.parameters
    try io.check(
      nerve_conv2d_forward_relu(
        io.ctx, io.output, io.input, w, useBias ? w + weightCount : nil, Int64(io.batch), s[0], s[1],
        s[2], Int64(filters), s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
  }

  /// `forward`, then `pool`'s forward on the output in the same pass (each block of images
  /// pooled while it is in cache): `pooled` and the pool's `scratch` as its own forward
  /// writes them. The convolution's own output is not kept (`io.output` is left as it was):
  /// nothing after the pool reads it, the pool's backward needing only its argmax, and never
  /// writing it spares a first convolution most of its memory traffic.
  func forward(
    _ io: LayerIO, pooledBy pool: MaxPool2D, into pooled: UnsafeMutablePointer<Float>,
    scratch: UnsafeMutablePointer<Float>
  ) throws {
    let s = geometry.sizes, w = io.parameters, p = pool.windowSizes
    try pool.withArgmax(in: scratch, batch: io.batch) { argmax in
      try io.check(
        nerve_conv2d_forward_maxpool(
          io.ctx, nil, pooled, argmax, io.input, w, useBias ? w + weightCount : nil, Int64(io.batch), s[0],
          s[1], s[2], Int64(filters), s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], p[0], p[1], p[2], p[3],
          p[4], p[5], p[6], p[7]))
    }
  }

  override func backward(_ io: LayerIO) throws {
    let s = geometry.sizes, g = io.parameterGradients
    try io.check(
      nerve_conv2d_backward(
        io.ctx, io.inputGradient, g, useBias ? g.map { $0 + weightCount } : nil, io.outputGradient,
        io.input, io.parameters, Int64(io.batch), s[0], s[1], s[2], Int64(filters), s[3], s[4],
        s[5], s[6], s[7], s[8], s[9], s[10]))
  }

  /// Whether `parameterBackward` through `pool` on `context` never writes this layer's output
  /// gradient (nerve_conv2d_backward_maxpool_direct); otherwise it would write it to the
  /// context's workspace, a map the size of the output allocated in the step.
  func takesPoolGradientDirectly(_ pool: MaxPool2D, context: ComputeContext) -> Bool {
    let s = geometry.sizes, p = pool.windowSizes
    return nerve_conv2d_backward_maxpool_direct(
      context.raw, s[0], s[1], s[2], Int64(filters), s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10], p[0], p[1],
      p[2], p[3], p[4], p[5], p[6], p[7]) == 1
  }

  /// `backward` without an input gradient (a first layer's) from the gradient of `pool`, the
  /// max pool after this layer: its output gradient `pooledGradient` and the winners in its
  /// `poolScratch` (nerve_conv2d_backward_maxpool), so the gradient between them is never
  /// written where the windows tile the map. The batch is summed in slices of images fixed by
  /// its size: bits that differ from `backward`'s in the last places, the same at any thread count.
  func parameterBackward(
    _ io: LayerIO, pooledBy pool: MaxPool2D, pooledGradient: UnsafeMutablePointer<Float>,
    poolScratch: UnsafeMutablePointer<Float>
  ) throws {
    let s = geometry.sizes, g = io.parameterGradients, p = pool.windowSizes
    try pool.withArgmax(in: poolScratch, batch: io.batch) { argmax in
      try io.check(
        nerve_conv2d_backward_maxpool(
          io.ctx, g, useBias ? g.map { $0 + weightCount } : nil, pooledGradient, argmax, io.input,
          Int64(io.batch), s[0], s[1], s[2], Int64(filters), s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10],
          p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]))
    }
  }

  /// `parameterBackward` through `norm`, a batch norm between this layer and `pool` (over this
  /// layer's output, after its ReLU where `relu`): the norm's parameter gradients and this
  /// layer's in one call (nerve_conv2d_backward_batchnorm_maxpool), the norm's input gradient,
  /// Lab E's largest map, made as the products take it instead of written and read back. The
  /// norm's bits as its own backward's; this layer's summed in slices of the batch as there.
  func parameterBackward(
    _ io: LayerIO, normalizedBy norm: LayerIO, pooledBy pool: MaxPool2D, pooledGradient: UnsafeMutablePointer<Float>,
    poolScratch: UnsafeMutablePointer<Float>, relu: Bool
  ) throws {
    let s = geometry.sizes, g = io.parameterGradients, p = pool.windowSizes, c = filters
    try pool.withArgmax(in: poolScratch, batch: io.batch) { argmax in
      try io.check(
        nerve_conv2d_backward_batchnorm_maxpool(
          io.ctx, g, useBias ? g.map { $0 + weightCount } : nil, norm.parameterGradients,
          norm.parameterGradients.map { $0 + c }, pooledGradient, argmax, norm.input, norm.parameters, norm.scratch,
          norm.scratch + c, relu ? 1 : 0, io.input, Int64(io.batch), s[0], s[1], s[2], Int64(filters), s[3], s[4],
          s[5], s[6], s[7], s[8], s[9], s[10], p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]))
    }
  }

  /// `backward`'s parameter sums from the stored output gradient, without an input gradient,
  /// in the slices of the batch that `parameterBackward(_:normalizedBy:...)` sums them in
  /// (nerve_conv2d_backward_sliced): a rank's share of a data-parallel batch, where one process
  /// takes that call, so that the ranks give its bits.
  func parameterBackwardSliced(_ io: LayerIO) throws {
    let s = geometry.sizes, g = io.parameterGradients
    try io.check(
      nerve_conv2d_backward_sliced(
        io.ctx, g, useBias ? g.map { $0 + weightCount } : nil, io.outputGradient, io.input, Int64(io.batch), s[0], s[1],
        s[2], Int64(filters), s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
  }

  override var record: LayerRecord {
    var r = LayerRecord(type: typeName)
    r.filters = filters
    r.kernel = [kernel.height, kernel.width]
    r.stride = [stride.height, stride.width]
    r.padding = padding.description
    r.activation = activation == .identity ? nil : activation.rawValue
    r.useBias = useBias ? nil : false
    r.l2 = l2 == 0 ? nil : l2
    return r
  }
}
