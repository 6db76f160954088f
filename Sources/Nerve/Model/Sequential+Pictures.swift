// Classifying a picture of one digit, prepared the way the model's data set was made.

extension Sequential {
  /// Class probabilities (the model's outputs) for a picture of one digit, prepared
  /// MNIST-style for 784-input models or digits-style for 64-input models.
  /// - Returns: the outputs and the prepared 28x28 (or 32x32) image the model saw.
  public func classify(picture: GrayImage, source: String = "image") throws -> (outputs: [Float], seen: GrayImage) {
    var values: [Float], seen: GrayImage
    switch inputCount {
    case 784:
      let d = try DigitImage(picture, source: source)
      values = d.mnistValues
      seen = d.image
    case 64:
      values = try DigitImage.digitsValues(picture, source: source)
      seen = GrayImage(width: 8, height: 8, pixels: values.map { $0 / 16 })
    default:
      throw NerveError(
        .shapeMismatch, at: source,
        "the model takes \(inputShape) inputs; pictures can be prepared for 28x28 (MNIST) or 8x8 (digits) models")
    }
    var x = Tensor(shape: [1] + inputShape, values: values)
    try preprocessing.apply(to: &x)
    let out = try outputs(for: x)
    return ((0..<outputCount).map { out[flat: $0] }, seen)
  }
}
