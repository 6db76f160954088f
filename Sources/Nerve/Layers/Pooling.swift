// MaxPool2D and AvgPool2D: downsampling windows over channels-last images.
import CNerve

/// Max or average pooling, shared shape logic.
public class Pooling2D: Layer {
  /// Window size.
  public let pool: (height: Int, width: Int)
  /// Step between windows.
  public let stride: (height: Int, width: Int)
  /// How windows treat the border (padding never wins a max and never counts in an average).
  public let padding: Padding
  var geometry = WindowGeometry()

  init(pool: (Int, Int), stride: (Int, Int)?, padding: Padding) {
    self.pool = pool
    self.stride = stride ?? pool
    self.padding = padding
  }

  /// The padding applied on each side, once the model is built.
  public var appliedPadding: WindowPadding { geometry.pads }

  override func build(inputShape: [Int]) throws -> [Int] {
    geometry = try WindowGeometry(input: inputShape, window: pool, stride: stride, padding: padding, layer: typeName)
    return [geometry.oh, geometry.ow, geometry.c]
  }

  override var record: LayerRecord {
    var r = LayerRecord(type: typeName)
    r.pool = [pool.height, pool.width]
    r.stride = [stride.height, stride.width]
    r.padding = padding.description
    return r
  }
}

/// The maximum of each window (2x2 halves height and width by default).
public final class MaxPool2D: Pooling2D {
  /// - Parameters:
  ///   - pool: window size.
  ///   - stride: step between windows (default: the window size).
  ///   - padding: `.valid` (Keras's default) or `.same`.
  public init(pool: Int = 2, stride: Int? = nil, padding: Padding = .valid) {
    super.init(pool: (pool, pool), stride: stride.map { ($0, $0) }, padding: padding)
  }

  init(poolSize: (Int, Int), strides: (Int, Int)?, padding: Padding) {
    super.init(pool: poolSize, stride: strides, padding: padding)
  }

  public override var typeName: String { "maxpool2d" }

  /// The winning positions (Int32, one per output) live in the layer's scratch.
  override func scratchCount(batch: Int) -> Int { batch * outputShape.reduce(1, *) }

  /// The winning positions of a batch of `batch` in the layer's `scratch`.
  func withArgmax<T>(
    in scratch: UnsafeMutablePointer<Float>, batch: Int, _ body: (UnsafeMutablePointer<Int32>) throws -> T
  ) rethrows -> T {
    try scratch.withMemoryRebound(to: Int32.self, capacity: batch * outputShape.reduce(1, *), body)
  }

  /// The window's sizes as the C core takes them after the input's (PH, PW, SH, SW, PT, PL, OH, OW).
  var windowSizes: [Int64] { Array(geometry.sizes[3...]) }

  override func forward(_ io: LayerIO) throws {
    let s = geometry.sizes
    try withArgmax(in: io.scratch, batch: io.batch) { argmax in
      try io.check(
        nerve_maxpool2d_forward(
          io.ctx, io.output, argmax, io.input, Int64(io.batch), s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
    }
  }

  /// Whether no two windows overlap (stride >= window), so that each input pixel's gradient
  /// comes from one window at most (what `BatchNorm.backward(_:pooledBy:...)` takes).
  var windowsApart: Bool { stride.height >= pool.height && stride.width >= pool.width }

  /// `forward` of the output of `norm`, a training batch norm before this layer, from `norm`'s
  /// input (`normIO`, after `norm.forwardStatistics(normIO)`): each value normalised as it is
  /// read, so `norm`'s output is never written. The same bits.
  func forwardNormalized(_ io: LayerIO, by norm: BatchNorm, normIO: LayerIO) throws {
    let s = geometry.sizes, c = norm.channels
    try withArgmax(in: io.scratch, batch: io.batch) { argmax in
      try io.check(
        nerve_maxpool2d_forward_normalized(
          io.ctx, io.output, argmax, normIO.input, normIO.scratch, normIO.scratch + c, normIO.parameters,
          normIO.parameters + c, Int64(io.batch), s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
    }
  }

  override func backward(_ io: LayerIO) throws {
    guard let dx = io.inputGradient else { return }
    let s = geometry.sizes
    try withArgmax(in: io.scratch, batch: io.batch) { argmax in
      try io.check(
        nerve_maxpool2d_backward(
          io.ctx, dx, io.outputGradient, argmax, Int64(io.batch), s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
    }
  }
}

/// The mean of each window (padding is not counted).
public final class AvgPool2D: Pooling2D {
  public init(pool: Int = 2, stride: Int? = nil, padding: Padding = .valid) {
    super.init(pool: (pool, pool), stride: stride.map { ($0, $0) }, padding: padding)
  }

  init(poolSize: (Int, Int), strides: (Int, Int)?, padding: Padding) {
    super.init(pool: poolSize, stride: strides, padding: padding)
  }

  public override var typeName: String { "avgpool2d" }

  override func forward(_ io: LayerIO) throws {
    let s = geometry.sizes
    try io.check(
      nerve_avgpool2d_forward(
        io.ctx, io.output, io.input, Int64(io.batch), s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
  }

  override func backward(_ io: LayerIO) throws {
    guard let dx = io.inputGradient else { return }
    let s = geometry.sizes
    try io.check(
      nerve_avgpool2d_backward(
        io.ctx, dx, io.outputGradient, Int64(io.batch), s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], s[10]))
  }
}
