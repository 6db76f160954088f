// Classifying pictures of single digits, prepared the way the model's data set was made.

/// A picture prepared for a model: the values in the data set's raw scale (MNIST bytes 0-255,
/// digits counts 0-16) and the image the model sees.
public struct PreparedPicture: Sendable {
  /// One sample's input values before the model's preprocessing, in the input's layout.
  public var values: [Float]
  /// The prepared picture (28x28 for MNIST models, 8x8 for digits models).
  public var seen: GrayImage
}

extension Sequential {
  /// A picture of one digit prepared MNIST-style for 784-input models or digits-style for
  /// 64-input models.
  public func prepare(picture: GrayImage, source: String = "image") throws -> PreparedPicture {
    switch inputCount {
    case 784:
      let d = try DigitImage(picture, source: source)
      return PreparedPicture(values: d.mnistValues, seen: d.image)
    case 64:
      let values = try DigitImage.digitsValues(picture, source: source)
      return PreparedPicture(values: values, seen: GrayImage(width: 8, height: 8, pixels: values.map { $0 / 16 }))
    default:
      throw NerveError(
        .shapeMismatch, at: source,
        "the model takes \(inputShape) inputs; pictures can be prepared for 28x28 (MNIST) or 8x8 (digits) models")
    }
  }

  /// Outputs for samples given in the data set's raw scale: the model's saved preprocessing is
  /// applied first, as `nerve predict` does.
  /// - Parameter rawValues: `count` samples of the input's size, one after another.
  /// - Returns: [count, outputs].
  public func outputs(forRaw rawValues: [Float], count: Int) throws -> Tensor {
    guard count >= 1, rawValues.count == count * inputCount else {
      throw NerveError(
        .shapeMismatch, at: "input",
        "\(rawValues.count) values for \(count) samples of \(inputShape) (expected \(count * inputCount))")
    }
    var x = Tensor(shape: [count] + inputShape, values: rawValues)
    try preprocessing.apply(to: &x)
    return try outputs(for: x)
  }

  /// Class probabilities (the model's outputs) for a picture of one digit, prepared
  /// MNIST-style for 784-input models or digits-style for 64-input models.
  /// - Returns: the outputs and the prepared 28x28 (or 8x8) image the model saw.
  public func classify(picture: GrayImage, source: String = "image") throws -> (outputs: [Float], seen: GrayImage) {
    let prepared = try prepare(picture: picture, source: source)
    let out = try outputs(forRaw: prepared.values, count: 1)
    return ((0..<outputCount).map { out[flat: $0] }, prepared.seen)
  }
}
