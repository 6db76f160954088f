// Running a trained Sequential model: outputs, predicted classes, loss and accuracy, the
// confusion matrix. Inference runs in chunks that keep activations near 32 MB.
import CNerve

extension Sequential {
  /// Samples per inference pass: as many as keep the activations near 32 MB, at most 16,384
  /// (16,384 for Lab A's MLP, so MNIST's 10,000 test images are one pass and each layer one
  /// parallel call: 2.6 -> 2.0 ms at 2 threads against passes of 4,096; about 215 for Lab E's
  /// CNN). Counted from the inference plan's own layout for one sample, which shares buffers
  /// where relu and batch norm run in place (counting every layer's output and activation apart
  /// gave Lab E's CNN about 90, whose 6272 -> 784 product then copied its 19.6 MB of weights
  /// for every 90 images).
  var inferenceChunk: Int {
    if let counted = countedInferenceChunk { return counted }
    let perSample = (try? Plan.floats(model: self, capacity: 1, training: false)) ?? Int.max
    let chunk = max(1, min(16384, (8 << 20) / max(perSample, 1)))
    countedInferenceChunk = chunk
    return chunk
  }

  /// Runs the model in inference mode over `count` samples in chunks, calling `body` with the
  /// plan holding each chunk's activations, the chunk's size and its first sample index.
  /// Only layer `reads`'s outputs are sure to be written (the model's last by default): a relu
  /// before a max pool may be applied after it (see `poolsBeforeRelu`), and relu and batch norm
  /// run in place, over the outputs of the layer before them.
  func infer(
    _ features: UnsafePointer<Float>, count: Int, reads: Int? = nil,
    _ body: (Plan, _ chunk: Int, _ start: Int) throws -> Void
  ) throws {
    try infer(.floats(features), count: count, reads: reads, body)
  }

  /// What an inference pass reads: floats, or bytes each scaled as `PixelRows` says.
  enum InferenceInput {
    case floats(UnsafePointer<Float>)
    case pixels(PixelRows)
  }

  /// `infer` over floats or bytes. Bytes go to a first layer that reads them as they are
  /// (`readsPixels`); otherwise each chunk is made floats first, in a buffer kept with the
  /// inference plan.
  func infer(
    _ input: InferenceInput, count: Int, reads: Int? = nil,
    _ body: (Plan, _ chunk: Int, _ start: Int) throws -> Void
  ) throws {
    let capacity = min(max(count, 1), inferenceChunk)
    if inferencePlan == nil || inferencePlan!.capacity < capacity {
      inferencePlan = try Plan(model: self, capacity: capacity, training: false)
    }
    let plan = inferencePlan!
    try context.reserve(bytes: plan.workspaceBytes)
    var start = 0
    while start < count {
      let n = min(capacity, count - start)
      let through = LayerPoint(layer: reads ?? layers.count - 1)
      switch input {
      case .floats(let features):
        try forward(
          UnsafeMutablePointer(mutating: features + start * inputCount), batch: n, plan: plan,
          context: context, training: false, through: through)
      case .pixels(let pixels):
        let chunk = pixels.advanced(by: start * inputCount)
        if readsPixels {
          try forward(
            try plan.pixelFloats(count: 0), batch: n, plan: plan, context: context, training: false,
            through: through, pixels: chunk)
        } else {
          let floats = try plan.pixelFloats(count: capacity * inputCount)
          try context.check(nerve_pixels_to_floats(context.raw, floats, chunk.bytes, Int64(n * inputCount), chunk.scale))
          try forward(floats, batch: n, plan: plan, context: context, training: false, through: through)
        }
      }
      try body(plan, n, start)
      start += n
    }
  }

  /// Whether the first layer reads images as bytes itself (a dense layer does).
  var readsPixels: Bool { layers.first is Dense }

  /// The model's outputs for a batch of samples: [samples, outputs].
  /// - Parameter features: [samples, ...] whose per-sample size matches the input shape.
  public func outputs(for features: Tensor) throws -> Tensor {
    try activations(for: features, layer: layers.count - 1)
  }

  /// The outputs for `count` samples already in memory, written into `outputs`
  /// ([count, outputCount] floats). No tensors are made: after the first call has sized the
  /// inference plan, a call allocates nothing, so a server or an app can run one sample at a
  /// time at the kernels' speed.
  /// - Throws: if the buffers do not hold `count` samples and `count` outputs.
  public func outputs(
    for features: UnsafeBufferPointer<Float>, count: Int, into outputs: UnsafeMutableBufferPointer<Float>
  ) throws {
    let width = outputCount
    guard count >= 0, features.count == count * inputCount, outputs.count >= count * width,
      let x = features.baseAddress, let out = outputs.baseAddress
    else {
      throw NerveError(
        .shapeMismatch, at: "outputs(for:count:into:)",
        "\(features.count) input and \(outputs.count) output values for \(count) samples (expected \(count * inputCount) and \(count * width))")
    }
    try writeOutputs(.floats(x), count: count, into: out)
  }

  /// The outputs of `count` samples of `input` into `out` ([count, outputCount]).
  func writeOutputs(_ input: InferenceInput, count: Int, into out: UnsafeMutablePointer<Float>) throws {
    let width = outputCount, last = layers.count - 1
    try infer(input, count: count) { plan, chunk, start in
      (out + start * width).update(from: plan.outputs[last], count: chunk * width)
    }
  }

  /// The outputs of layer `index` (inference mode, after the layer's own activation) for a
  /// batch: [samples] + that layer's output shape. For looking inside a network, e.g. a
  /// convolution's feature maps.
  public func activations(for features: Tensor, layer index: Int) throws -> Tensor {
    guard layers.indices.contains(index) else {
      throw NerveError(.badValue, at: "layer", "no layer \(index); the model has layers 0...\(layers.count - 1)")
    }
    let n = try sampleCount(features)
    let width = layers[index].outputShape.reduce(1, *)
    var result = Tensor(shape: [n] + layers[index].outputShape)
    try features.withUnsafeBufferPointer { x in
      try result.withUnsafeMutableBufferPointer { out in
        try infer(x.baseAddress!, count: n, reads: index) { plan, chunk, start in
          (out.baseAddress! + start * width).update(from: plan.outputs[index], count: chunk * width)
        }
      }
    }
    return result
  }

  /// The predicted class (argmax of the outputs) of each sample.
  public func predict(_ features: Tensor) throws -> [Int] {
    let n = try sampleCount(features)
    return try features.withUnsafeBufferPointer { x in try predictedClasses(.floats(x.baseAddress!), count: n) }
  }

  /// The argmax of the outputs of `count` samples of `input`.
  func predictedClasses(_ input: InferenceInput, count: Int) throws -> [Int] {
    var classes = [Int32](repeating: 0, count: count)
    let width = outputCount
    try classes.withUnsafeMutableBufferPointer { c in
      try infer(input, count: count) { plan, chunk, start in
        try context.check(
          nerve_argmax(context.raw, c.baseAddress! + start, plan.outputs[layers.count - 1], Int64(chunk), Int64(width)))
      }
    }
    return classes.map(Int.init)
  }

  /// Loss and accuracy on `data` (inference mode, in chunks).
  /// - Parameter loss: the loss to report.
  public func evaluate(_ data: Dataset, loss: Loss) throws -> Evaluation {
    try checkFits(data)
    return try evaluate(data, head: LossHead(loss: loss, model: self))
  }

  /// Loss, accuracy and the confusion matrix on `data` from one inference pass (a test report
  /// at half the cost of `evaluate` then `confusionMatrix`).
  public func evaluateWithConfusion(_ data: Dataset, loss: Loss) throws -> (Evaluation, ConfusionMatrix) {
    try checkFits(data)
    var confusion: ConfusionMatrix? = ConfusionMatrix(classes: max(data.classes, outputCount))
    let e = try evaluate(data, head: LossHead(loss: loss, model: self), confusion: &confusion)
    return (e, confusion!)
  }

  func evaluate(_ data: Dataset, head: LossHead) throws -> Evaluation {
    var none: ConfusionMatrix? = nil
    return try evaluate(data, head: head, confusion: &none)
  }

  /// The evaluation pass; with `confusion`, each chunk's predictions are also counted there.
  private func evaluate(_ data: Dataset, head: LossHead, confusion: inout ConfusionMatrix?) throws -> Evaluation {
    let width = outputCount
    let targets = data.oneHot(width: width)
    var loss = 0.0
    var correct: Int64 = 0
    var predicted = [Int32](repeating: 0, count: confusion == nil ? 0 : min(data.count, inferenceChunk))
    try data.labels.withUnsafeBufferPointer { labels in
      try infer(data.features.storage.pointer, count: data.count) { plan, chunk, start in
        loss += try head.evaluate(
          context: context, plan: plan, targets: targets.pointer + start * width, training: false,
          rows: chunk, classes: width, count: data.count)
        var right: Int64 = 0
        try context.check(
          nerve_count_correct(
            context.raw, &right, plan.outputs[layers.count - 1], labels.baseAddress! + start,
            Int64(chunk), Int64(width)))
        correct += right
        if confusion != nil {
          try context.check(nerve_argmax(context.raw, &predicted, plan.outputs[layers.count - 1], Int64(chunk), Int64(width)))
          for i in 0..<chunk { confusion!.counts[Int(labels[start + i])][Int(predicted[i])] += 1 }
        }
      }
    }
    return Evaluation(loss: loss, correct: Int(correct), count: data.count)
  }

  /// The confusion matrix of this model's predictions on `data`.
  public func confusionMatrix(_ data: Dataset) throws -> ConfusionMatrix {
    let predicted = try predict(data.features)
    var confusion = ConfusionMatrix(classes: max(data.classes, outputCount))
    for (label, p) in zip(data.labels, predicted) { confusion.counts[Int(label)][p] += 1 }
    return confusion
  }

  /// Throws unless `data`'s samples, targets and classes fit this model.
  func checkFits(_ data: Dataset) throws {
    guard data.sampleSize == inputCount else {
      throw NerveError(
        .shapeMismatch, at: data.name,
        "samples have \(data.sampleSize) values (shape \(data.sampleShape)) but the model takes \(inputCount) (shape \(inputShape))"
      )
    }
    if let t = data.targets, t.shape[1] != outputCount {
      throw NerveError(
        .shapeMismatch, at: data.name,
        "targets have \(t.shape[1]) values per sample but the model has \(outputCount) outputs")
    }
    guard data.classes <= outputCount else {
      throw NerveError(
        .shapeMismatch, at: data.name,
        "the data has \(data.classes) classes but the model has only \(outputCount) outputs")
    }
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
}
