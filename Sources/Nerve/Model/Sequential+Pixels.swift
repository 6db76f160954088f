// Running a model on images kept as bytes, as image files and cameras give them: each input is
// `scale * byte`, and a dense first layer reads the bytes itself (nerve_dense_forward_pixels),
// a byte a pixel where floats take four.
import CNerve

/// Rows of 8-bit images standing for the floats `scale * byte`: a model's input, not copied.
struct PixelRows {
  let bytes: UnsafePointer<UInt8>
  let scale: Float

  /// The rows `offset` bytes further on.
  func advanced(by offset: Int) -> PixelRows { PixelRows(bytes: bytes + offset, scale: scale) }
}

extension Sequential {
  /// The outputs for `count` images given as bytes ([count, inputCount], row-major as image
  /// files store them), each input `scale * byte`, written into `outputs` ([count,
  /// outputCount]): bit for bit what `outputs(for:count:into:)` gives on those floats (with
  /// finite weights), without making them all (a dense first layer reads the bytes; otherwise
  /// each chunk is converted as it runs). As there, once the first call has sized the inference
  /// plan, a call allocates nothing.
  /// - Parameter scale: what a byte is multiplied by (MNIST's default preprocessing: 1/255,
  ///   `Preprocessing.unitScale.scale`); nil: the model's own `preprocessing`, as `nerve train`
  ///   saves it with the model, which must then be a scale alone (a model trained on
  ///   standardised inputs needs floats).
  /// - Throws: if the buffers do not hold `count` images and `count` outputs, or the scale is
  ///   not finite or not known.
  public func outputs(
    forPixels pixels: UnsafeBufferPointer<UInt8>, scale: Float? = nil, count: Int,
    into outputs: UnsafeMutableBufferPointer<Float>
  ) throws {
    let location = "outputs(forPixels:scale:count:into:)"
    let rows = try pixelRows(pixels, scale: scale, count: count, at: location)
    guard outputs.count >= count * outputCount else {
      throw NerveError(
        .shapeMismatch, at: location,
        "\(outputs.count) output values for \(count) images (expected \(count * outputCount))")
    }
    guard let rows, let out = outputs.baseAddress else { return }
    try writeOutputs(.pixels(rows), count: count, into: out)
  }

  /// The predicted class (argmax of the outputs) of each image given as bytes
  /// ([images, inputCount] row-major), each input `scale * byte` (nil: the model's own
  /// preprocessing, as for `outputs(forPixels:scale:count:into:)`).
  public func predict(pixels: [UInt8], scale: Float? = nil) throws -> [Int] {
    let per = inputCount
    guard per > 0, pixels.count % per == 0 else {
      throw NerveError(
        .shapeMismatch, at: "predict(pixels:scale:)",
        "\(pixels.count) bytes are not whole images of \(per) values (the model's input shape \(inputShape))")
    }
    return try pixels.withUnsafeBufferPointer { try predict(pixels: $0, scale: scale, count: pixels.count / per) }
  }

  /// `predict(pixels:scale:)` for `count` images already in memory, not copied.
  public func predict(pixels: UnsafeBufferPointer<UInt8>, scale: Float? = nil, count: Int) throws -> [Int] {
    guard let rows = try pixelRows(pixels, scale: scale, count: count, at: "predict(pixels:scale:count:)") else {
      return []
    }
    return try predictedClasses(.pixels(rows), count: count)
  }

  /// `pixels` as `count` images for this model, each input `scale * byte` (nil: the model's
  /// preprocessing's scale, refused if it standardises); nil for no images.
  /// - Throws: unless `pixels` holds `count` images and the scale is finite.
  private func pixelRows(
    _ pixels: UnsafeBufferPointer<UInt8>, scale: Float?, count: Int, at location: String
  ) throws -> PixelRows? {
    // Preprocessing standardises only with both a mean and a standard deviation.
    guard scale != nil || preprocessing.mean == nil || preprocessing.std == nil else {
      throw NerveError(
        .badValue, at: location,
        "the model's inputs are standardised (a mean and standard deviation per input), which bytes cannot carry; give floats, or a scale")
    }
    let scale = scale ?? preprocessing.scale
    guard count >= 0, let size = Sizes.product([count, inputCount]), pixels.count == size else {
      throw NerveError(
        .shapeMismatch, at: location,
        "\(pixels.count) bytes for \(count) images (expected \(count) x \(inputCount), the model's input shape \(inputShape))")
    }
    guard scale.isFinite else {
      throw NerveError(.badValue, at: location, "scale must be finite, got \(scale)")
    }
    guard count > 0, let bytes = pixels.baseAddress else { return nil }
    return PixelRows(bytes: bytes, scale: scale)
  }
}
