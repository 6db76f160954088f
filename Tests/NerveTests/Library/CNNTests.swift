// Convolutional networks and the training controls: gradients by finite differences, learning,
// model files with batch-norm state, dropout and batch norm in training vs inference, early
// stopping, schedules, gradient diagnostics, every optimizer.
import Foundation
import Nerve
import Testing

@Suite("Convolutional networks and training controls")
struct CNNTests {
  /// A small image dataset: the first MNIST images as [28, 28, 1].
  static let images: MNIST = {
    do { return try MNIST.load(imageShape: .channels) } catch { fatalError("\(error)") }
  }()

  @Test("a CNN's gradients agree with finite differences of its training loss")
  func gradientCheck() throws {
    // 9x9 crops keep the check fast; every layer type is on the path.
    var crops = [Float]()
    let source = Fixtures.mnist.train.prefix(6)
    for n in 0..<6 { for y in 0..<9 { for x in 0..<9 { crops.append(source.features[flat: n * 784 + (y + 9) * 28 + x + 9]) } } }
    let data = try Dataset(features: Tensor(shape: [6, 9, 9, 1], values: crops.map { $0 + 0.1 }), labels: [0, 1, 2, 0, 1, 2], classes: 3)
    let model = try Sequential(input: [9, 9, 1], seed: 4) {
      Conv2D(3, kernel: 3, stride: 2, padding: .same, activation: .tanh)
      BatchNorm()
      Conv2D(4, kernel: 2, activation: .sigmoid, l2: 0.01)
      AvgPool2D(pool: 2, stride: 1)
      MaxPool2D(pool: 2, stride: 1, padding: .same)
      Flatten()
      Dropout(0.3)
      Dense(3, activation: .softmax, l2: 0.02)
    }
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: Adam(), threads: 1)
    let analytic = try trainer.lossAndGradients(for: data).gradients
    var checked = 0
    for g in analytic {
      var p = try model.parameter(layer: g.layer, g.name)
      for i in stride(from: 0, to: p.count, by: max(1, p.count / 5)) {
        let original = p[flat: i], h: Float = 5e-3
        p[flat: i] = original + h
        try model.setParameter(layer: g.layer, g.name, to: p)
        let up = try trainer.lossAndGradients(for: data).loss
        p[flat: i] = original - h
        try model.setParameter(layer: g.layer, g.name, to: p)
        let down = try trainer.lossAndGradients(for: data).loss
        p[flat: i] = original
        try model.setParameter(layer: g.layer, g.name, to: p)
        let numeric = (up - down) / Double(2 * h), value = Double(g.value[flat: i])
        #expect(abs(numeric - value) < 2e-3 + 0.02 * abs(value), "layer \(g.layer) \(g.name)[\(i)]: analytic \(value) numeric \(numeric)")
        checked += 1
      }
    }
    #expect(checked >= 30)
  }

  @Test("training and inference pool before relu with the same bits as relu then pool")
  func poolBeforeRelu() throws {
    let data = Fixtures.mnist.train.prefix(40)
    // The first model's relu belongs to the convolution, so training swaps it with the pool,
    // and each convolution pools its output in the same call
    // (nerve_conv2d_forward_maxpool); the second's is a layer of its own, so it runs as
    // written, one kernel per layer. Backward, the first convolution takes its gradients from
    // the pool's (nerve_conv2d_backward_maxpool), summing the batch in slices of images: the
    // same bits at any thread count, close to (not equal to) the layer-by-layer sums.
    let swapped = try Sequential(input: [28, 28, 1], seed: 9) {
      Conv2D(6, kernel: 5, activation: .relu)
      MaxPool2D()
      Conv2D(4, kernel: 3, activation: .relu)
      MaxPool2D(pool: 3)
      Flatten()
      Dense(10, activation: .softmax)
    }
    let asWritten = try Sequential(input: [28, 28, 1], seed: 9) {
      Conv2D(6, kernel: 5)
      ActivationLayer(.relu)
      MaxPool2D()
      Conv2D(4, kernel: 3)
      ActivationLayer(.relu)
      MaxPool2D(pool: 3)
      Flatten()
      Dense(10, activation: .softmax)
    }
    for (from, to) in [(0, 0), (2, 3), (5, 7)] {
      for name in ["weight", "bias"] { try asWritten.setParameter(layer: to, name, to: try swapped.parameter(layer: from, name)) }
    }
    var firstLayer: [[Float]] = []
    for threads in [1, 2] {
      let a = try Trainer(model: swapped, loss: .crossEntropy, optimizer: Adam(), threads: threads).lossAndGradients(for: data)
      let b = try Trainer(model: asWritten, loss: .crossEntropy, optimizer: Adam(), threads: threads).lossAndGradients(for: data)
      #expect(a.loss == b.loss, "\(threads) thread(s)")
      #expect(a.gradients.count == 6 && b.gradients.count == 6)
      for (x, y) in zip(a.gradients, b.gradients) {
        #expect(x.name == y.name, "layer \(x.layer) \(x.name)")
        guard x.layer == 0 else {
          #expect(x.value == y.value, "layer \(x.layer) \(x.name), \(threads) thread(s)")
          continue
        }
        let scale = y.value.scalars.map { abs($0) }.max() ?? 0
        #expect(scale > 0 && zip(x.value.scalars, y.value.scalars).allSatisfy { abs($0 - $1) <= 1e-5 * scale },
                "layer 0 \(x.name) from the pool's gradient, \(threads) thread(s)")
        firstLayer.append(x.value.scalars)
      }
      // Inference swaps too; asking for a layer's activations stops there, so the relu
      // convolution's own output (which a swapped pass never writes) is still there to read.
      try swapped.context.setThreads(threads)
      try asWritten.context.setThreads(threads)
      #expect(try swapped.outputs(for: data.features) == asWritten.outputs(for: data.features), "\(threads) thread(s)")
      for (from, to) in [(0, 1), (1, 2), (2, 4), (3, 5)] {
        let seen = try swapped.activations(for: data.features, layer: from)
        #expect(seen == (try asWritten.activations(for: data.features, layer: to)), "layer \(from), \(threads) thread(s)")
        #expect(seen.scalars.allSatisfy { $0 >= 0 }, "layer \(from) is after relu")
      }
    }
    #expect(firstLayer.count == 4 && bitwiseEqual(firstLayer[0], firstLayer[2]) && bitwiseEqual(firstLayer[1], firstLayer[3]),
            "the first layer's gradients at 1 and 2 threads")
  }

  @Test("training and inference join batch norm to the max pool after it with the separate layers' bits, but for the first layer's sliced sums")
  func normJoinedToPool() throws {
    let data = Fixtures.mnist.train.prefix(40)
    // Lab E's order: the first model's batch norm only gathers statistics and its pool
    // normalises as it reads (nerve_maxpool2d_forward_normalized); backward, the norm takes the
    // pool's gradient and the convolution the norm's, through its relu, in one call
    // (nerve_conv2d_backward_batchnorm_maxpool), which sums the convolution's in slices of the
    // batch: the last places of its gradients differ, and nothing else. An identity layer
    // between the norm and the pool in the second keeps every layer apart.
    let joined = try Sequential(input: [28, 28, 1], seed: 5) {
      Conv2D(5, kernel: 3, padding: .same, activation: .relu)
      BatchNorm()
      MaxPool2D()
      Flatten()
      Dense(10, activation: .softmax)
    }
    let apart = try Sequential(input: [28, 28, 1], seed: 5) {
      Conv2D(5, kernel: 3, padding: .same, activation: .relu)
      BatchNorm()
      ActivationLayer(.identity)
      MaxPool2D()
      Flatten()
      Dense(10, activation: .softmax)
    }
    for (from, to, names) in [(0, 0, ["weight", "bias"]), (1, 1, ["gamma", "beta"]), (4, 5, ["weight", "bias"])] {
      for name in names { try apart.setParameter(layer: to, name, to: try joined.parameter(layer: from, name)) }
    }
    for threads in [1, 2] {
      let a = try Trainer(model: joined, loss: .crossEntropy, optimizer: Adam(), threads: threads).lossAndGradients(for: data)
      let b = try Trainer(model: apart, loss: .crossEntropy, optimizer: Adam(), threads: threads).lossAndGradients(for: data)
      #expect(a.loss == b.loss, "\(threads) thread(s)")
      #expect(a.gradients.count == 6 && b.gradients.count == 6)
      for (x, y) in zip(a.gradients, b.gradients) {
        #expect(x.name == y.name, "layer \(x.layer) \(x.name)")
        if x.layer == 0 {
          expectClose(
            x.value.scalars, y.value.scalars.map(Double.init), rtol: 1e-3, atol: 1e-6, "layer 0 \(x.name), \(threads) thread(s)")
        } else {
          #expect(x.value == y.value, "layer \(x.layer) \(x.name), \(threads) thread(s)")
        }
      }
      if threads == 2 {  // the slices' sums at any thread count
        let one = try Trainer(model: joined, loss: .crossEntropy, optimizer: Adam(), threads: 1).lossAndGradients(for: data)
        #expect(zip(a.gradients, one.gradients).allSatisfy { $0.value == $1.value }, "the same bits at 1 and 2 threads")
        // apart's running statistics moved as joined's were.
        _ = try Trainer(model: apart, loss: .crossEntropy, optimizer: Adam(), threads: 1).lossAndGradients(for: data)
      }
    }
    // Inference joins them too, normalising by the running statistics as the pool reads (the
    // same in both: the forwards above moved them alike).
    for threads in [1, 2] {
      try joined.context.setThreads(threads)
      try apart.context.setThreads(threads)
      #expect(
        try joined.outputs(for: data.features) == apart.outputs(for: data.features), "inference, \(threads) thread(s)")
      #expect(try joined.activations(for: data.features, layer: 2) == apart.activations(for: data.features, layer: 3),
              "the pool's output in inference, \(threads) thread(s)")
      // Inference normalises in place, over the convolution's output (apart's norm, with no pool
      // after it, and either model's asked for its own output).
      #expect(
        try joined.activations(for: data.features, layer: 1) == apart.activations(for: data.features, layer: 1),
        "batch norm's output, \(threads) thread(s)")
    }
    // A few steps of training: the parameters within the last places' drift.
    for model in [joined, apart] {
      _ = try Trainer(model: model, loss: .crossEntropy, optimizer: Adam(), threads: 2).fit(data, epochs: 2, batchSize: .size(8))
    }
    for (layer, name) in [(1, "gamma"), (1, "beta"), (0, "weight")] {
      expectClose(
        try joined.parameter(layer: layer, name).scalars, try apart.parameter(layer: layer, name).scalars.map(Double.init),
        rtol: 1e-4, atol: 1e-6, "layer \(layer) \(name) after training")
    }
  }

  @Test("a small CNN learns MNIST digits (>= 90% on 1,000 test images after 2 epochs on 5,000)")
  func learns() throws {
    let model = try Sequential(input: [28, 28, 1]) {
      Conv2D(8, kernel: 3, padding: .same, activation: .relu)
      BatchNorm()
      MaxPool2D()
      Flatten()
      Dropout(0.2)
      Dense(10, activation: .softmax)
    }
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: Adam(learningRate: 2e-3), threads: 2)
    try trainer.fit(Self.images.train.prefix(5000), epochs: 2, batchSize: 32)
    let e = try trainer.evaluate(Self.images.test.prefix(1000))
    #expect(e.accuracy >= 0.90, "accuracy \(e.accuracy)")
    let confusion = try model.confusionMatrix(Self.images.test.prefix(1000))
    #expect(confusion.total == 1000 && confusion.correct == e.correct)
    let (once, sameConfusion) = try trainer.evaluateWithConfusion(Self.images.test.prefix(1000))
    #expect(once == e && sameConfusion == confusion, "one pass gives what evaluate and confusionMatrix give")
    #expect(confusion.description.contains("recall"))
  }

  @Test("a CNN with batch norm and dropout saves and reloads exactly, running statistics included")
  func modelFile() throws {
    let model = try Sequential(input: [28, 28, 1]) {
      Conv2D(4, kernel: 5, stride: 2, padding: .valid, activation: .relu)
      BatchNorm(momentum: 0.9)
      AvgPool2D()
      Flatten()
      Dropout(0.5)
      Dense(10, activation: .softmax)
    }
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: RMSprop(), threads: 2)
    try trainer.fit(Self.images.train.prefix(500), epochs: 1, batchSize: 50)
    let path = Fixtures.temporaryDirectory() + "/cnn.safetensors"
    try model.save(to: path)
    let loaded = try Sequential.load(from: path)
    let x = Self.images.test.prefix(200).features
    #expect(try loaded.outputs(for: x) == model.outputs(for: x))
    #expect(loaded.summary == model.summary)
    #expect(model.summary.contains("(None, 12, 12, 4)"), "\(model.summary)")
  }

  @Test("one sample at a time through outputs(for:count:into:) equals the batch; raw values get the saved preprocessing; wrong sizes are refused")
  func inferenceWithoutTensors() throws {
    let model = try Sequential(input: [28, 28, 1], seed: 5) {
      Conv2D(6, kernel: 3, padding: .same, activation: .relu)
      BatchNorm()
      MaxPool2D()
      Flatten()
      Dense(10, activation: .softmax)
    }
    let x = Self.images.test.prefix(37).features
    let batch = try model.outputs(for: x)
    var single = [Float](repeating: -1, count: 37 * 10)
    try x.withUnsafeBufferPointer { features in
      try single.withUnsafeMutableBufferPointer { out in
        for i in 0..<37 {
          try model.outputs(
            for: UnsafeBufferPointer(rebasing: features[i * 784..<(i + 1) * 784]), count: 1,
            into: UnsafeMutableBufferPointer(rebasing: out[i * 10..<(i + 1) * 10]))
        }
        // One value short, or too little room for the outputs: refused, nothing written.
        let before = Array(out)
        #expect(throws: NerveError.self) {
          try model.outputs(for: UnsafeBufferPointer(rebasing: features[0..<783]), count: 1, into: out)
        }
        #expect(throws: NerveError.self) {
          try model.outputs(for: features, count: 37, into: UnsafeMutableBufferPointer(rebasing: out[0..<369]))
        }
        #expect(Array(out) == before)
      }
    }
    #expect(Tensor(shape: [37, 10], values: single) == batch)
    // Raw bytes with the model's saved preprocessing give what the scaled values give.
    model.preprocessing = .unitScale
    let raw = (0..<(37 * 784)).map { x[flat: $0] * 255 }
    let fromRaw = try model.outputs(forRaw: raw, count: 37)
    for i in 0..<(37 * 10) { #expect(abs(fromRaw[flat: i] - batch[flat: i]) <= 1e-6) }
  }

  @Test("images given as bytes give the outputs of their floats, bit for bit, for a dense or a convolutional first layer; bad calls are refused")
  func pixelInputs() throws {
    let mlp = try Sequential(input: 784, seed: 3) {
      Dense(30, activation: .sigmoid)
      Dense(10, activation: .sigmoid)
    }
    let cnn = try Sequential(input: [28, 28, 1], seed: 4) {
      Conv2D(4, kernel: 3, activation: .relu)
      MaxPool2D()
      Flatten()
      Dense(10, activation: .softmax)
    }
    let images = try MNIST.testImages()
    let count = 300
    let bytes = images.withElementBytes { Array($0[0..<count * 784]) }
    let scale = Preprocessing.unitScale.scale
    let floats = bytes.map { Float($0) * scale }
    for model in [mlp, cnn] {
      for threads in [1, 2, 3] {
        try model.context.setThreads(threads)
        let expected = try model.outputs(for: Tensor(shape: [count] + model.inputShape, values: floats))
        var out = [Float](repeating: .nan, count: count * 10)
        try bytes.withUnsafeBufferPointer { p in
          try out.withUnsafeMutableBufferPointer { o in
            try model.outputs(forPixels: p, scale: scale, count: count, into: o)
          }
        }
        #expect(bitwiseEqual(out, (0..<count * 10).map { expected[flat: $0] }), "\(model.layers[0]) at \(threads)")
        #expect(try model.predict(pixels: bytes, scale: scale) == model.predict(Tensor(shape: [count] + model.inputShape, values: floats)))
        // One image at a time, as an app would.
        var one = [Float](repeating: .nan, count: 10)
        try bytes.withUnsafeBufferPointer { p in
          try one.withUnsafeMutableBufferPointer { o in
            try model.outputs(forPixels: UnsafeBufferPointer(rebasing: p[784 * 7..<784 * 8]), scale: scale, count: 1, into: o)
          }
        }
        #expect(bitwiseEqual(one, (70..<80).map { expected[flat: $0] }))
      }
      // The model's own preprocessing when no scale is given.
      model.preprocessing = .unitScale
      #expect(try model.predict(pixels: bytes) == model.predict(pixels: bytes, scale: scale))
      model.preprocessing = Preprocessing(scale: scale, mean: [Float](repeating: 0.1, count: 784), std: [Float](repeating: 0.3, count: 784))
      #expect(throws: NerveError.self) { try model.predict(pixels: bytes) }
      model.preprocessing = Preprocessing(scale: scale, mean: [Float](repeating: 0.1, count: 784))
      #expect(try model.predict(pixels: bytes) == model.predict(pixels: bytes, scale: scale))
      model.preprocessing = .none
      #expect(throws: NerveError.self) { try model.predict(pixels: Array(bytes[0..<783])) }
      #expect(throws: NerveError.self) { try model.predict(pixels: bytes, scale: .nan) }
      var out = [Float](repeating: 5, count: 20)
      bytes.withUnsafeBufferPointer { p in
        out.withUnsafeMutableBufferPointer { o in
          #expect(throws: NerveError.self) {
            try model.outputs(forPixels: UnsafeBufferPointer(rebasing: p[0..<784 * 3]), scale: scale, count: 3, into: o)
          }
          #expect(throws: NerveError.self) {
            try model.outputs(forPixels: UnsafeBufferPointer(rebasing: p[0..<784 * 2 - 1]), scale: scale, count: 2, into: o)
          }
        }
      }
      #expect(out.allSatisfy { $0 == 5 })
      #expect(try model.predict(pixels: []) == [])
    }
  }

  @Test("dropout is the identity in inference and masks in training; batch norm switches statistics")
  func trainingVersusInference() throws {
    let data = try Dataset(features: Tensor(shape: [64, 8], values: randomFloats(512, seed: 1, low: 2, high: 4)), labels: [Int32](repeating: 0, count: 64), classes: 2)
    let model = try Sequential(input: [8], seed: 2) {
      Dropout(0.5)
      BatchNorm()
      Dense(2, weights: .constant(1), bias: .zeros)
    }
    // Inference: dropout passes through and batch norm uses its initial running statistics
    // (mean 0, variance 1), so the output is gamma * x / sqrt(1 + eps) summed: no zeros.
    let out = try model.outputs(for: data.features)
    let x0 = (0..<8).reduce(Float(0)) { $0 + data.features[flat: $1] }
    #expect(abs(out[flat: 0] - x0 / (1 + 1e-3).squareRoot()) < 1e-3)
    // Training: batch statistics centre every feature, so the loss differs from inference's.
    let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 0.1))
    let training = try trainer.lossAndGradients(for: data).loss
    let inference = try trainer.evaluate(data).loss
    #expect(abs(training - inference) > 1, "training \(training) inference \(inference)")
  }

  @Test("early stopping stops when validation loss stops improving and restores the best epoch")
  func earlyStopping() throws {
    let model = try Sequential(input: 784) {
      Dense(64, activation: .relu)
      Dense(10, activation: .softmax)
    }
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: Adam(learningRate: 0.01), threads: 2)
    let valid = Fixtures.mnist.validation.prefix(500)
    let h = try trainer.fit(
      Fixtures.mnist.train.prefix(100), validation: valid, epochs: 60, batchSize: 10,
      earlyStopping: EarlyStopping(monitor: .validationLoss, patience: 2))
    #expect(h.stoppedEarly && h.epochs.count < 60, "trained \(h.epochs.count) epochs")
    let best = try #require(h.bestEpoch)
    #expect(h.epochs.count == best + 3, "stops after patience + 1 epochs without improvement")
    let bestLoss = h.epochs[best - 1].validLoss!
    #expect(h.epochs.allSatisfy { $0.validLoss! >= bestLoss })
    #expect(abs(try trainer.evaluate(valid).loss - bestLoss) < 1e-9, "the best epoch's weights are back")
    #expect(throws: NerveError.self) {
      try trainer.fit(Fixtures.mnist.train.prefix(10), epochs: 1, earlyStopping: EarlyStopping())
    }
  }

  @Test("learning-rate schedules")
  func schedules() throws {
    #expect(LearningRateSchedule.step(every: 2, factor: 0.5).multiplier(epoch: 5, of: 10) == 0.25)
    #expect(LearningRateSchedule.cosine().multiplier(epoch: 1, of: 11) == 1)
    #expect(abs(LearningRateSchedule.cosine().multiplier(epoch: 6, of: 11) - 0.5) < 1e-6)
    #expect(LearningRateSchedule.cosine(minimum: 0.1).multiplier(epoch: 11, of: 11) == 0.1)
    #expect(abs(LearningRateSchedule.exponential(factor: 0.9).multiplier(epoch: 3, of: 5) - 0.81) < 1e-6)
    #expect(LearningRateSchedule(parsing: "step(10, 0.5)") == .step(every: 10, factor: 0.5))
    #expect(LearningRateSchedule(parsing: "wiggle") == nil)
    let model = try Sequential(input: 784) { Dense(10, activation: .softmax) }
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 0.4))
    let h = try trainer.fit(Fixtures.mnist.train.prefix(50), epochs: 3, batchSize: 10, schedule: .step(every: 1, factor: 0.5))
    #expect(h.epochs.map(\.learningRate) == [0.4, 0.2, 0.1].map { Double(Float($0)) })

    // One cycle, step by step: up from 4% to the full rate over the first quarter, down to
    // 0.1% by the last step.
    let cycle = LearningRateSchedule.oneCycle()
    #expect(cycle.changesEveryStep && !LearningRateSchedule.cosine().changesEveryStep)
    #expect(abs(cycle.multiplier(step: 0, of: 100) - 0.04) < 1e-6)
    #expect(cycle.multiplier(step: 25, of: 100) == 1)
    #expect(abs(cycle.multiplier(step: 99, of: 100) - 0.001) < 1e-6)
    let rates = (0..<100).map { cycle.multiplier(step: $0, of: 100) }
    #expect(zip(rates, rates.dropFirst()).prefix(25).allSatisfy { $0 < $1 })
    #expect(zip(rates, rates.dropFirst()).dropFirst(25).allSatisfy { $0 > $1 })
    #expect(LearningRateSchedule(parsing: "one_cycle") == .oneCycle())
    #expect(LearningRateSchedule(parsing: "one_cycle(0.3, 0.1, 0.01)") == .oneCycle(warmup: 0.3, initial: 0.1, final: 0.01))
    #expect(LearningRateSchedule(parsing: "one_cycle(1.5, 0.1, 0.01)") == nil)
    // In a run: 3 epochs of 5 steps; each epoch records its last step's rate.
    let cycled = try Trainer(
      model: Sequential(input: 784) { Dense(10, activation: .softmax) }, loss: .crossEntropy,
      optimizer: SGD(learningRate: 0.4)
    ).fit(Fixtures.mnist.train.prefix(50), epochs: 3, batchSize: 10, schedule: cycle)
    #expect(cycled.epochs.map(\.learningRate) == [4, 9, 14].map { Double(0.4 * cycle.multiplier(step: $0, of: 15)) })
  }

  @Test("gradient diagnostics show vanishing gradients in a deep sigmoid network")
  func diagnostics() throws {
    let layers: [Layer] = (0..<10).map { _ in Dense(32, activation: .sigmoid) } + [Dense(10, activation: .softmax)]
    let model = try Sequential(input: [784], layers: layers)
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 0.1), threads: 2)
    var records: [GradientRecord] = []
    trainer.onGradients = { records.append($0) }
    let h = try trainer.fit(Fixtures.mnist.train.prefix(640), epochs: 2, batchSize: 32, gradientDiagnostics: GradientDiagnostics(everySteps: 5))
    let stats = try #require(h.epochs.last?.gradients)
    #expect(stats.count == 11 && stats.allSatisfy { $0.type == "dense" })
    #expect(stats[0].weightNorm < stats[10].weightNorm / 100, "first layer \(stats[0].weightNorm) vs last \(stats[10].weightNorm)")
    #expect(stats.allSatisfy { $0.weightMeanAbs > 0 && $0.biasNorm != nil })
    #expect(records.count == 8 && records.map(\.step) == [5, 10, 15, 20, 25, 30, 35, 40])
  }

  @Test("every optimizer trains the 8x8 digits (>= 85%)", arguments: ["sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adadelta"])
  func optimizers(name: String) throws {
    let digits = try Digits.load().preprocessed(Preprocessing(scale: 1.0 / 16))
    let (train, test) = try digits.split(fraction: 0.8, seed: 0)
    let optimizer: Optimizer = switch name {
    case "sgd": SGD(learningRate: 0.5)
    case "momentum": SGD(learningRate: 0.05, momentum: 0.9)
    case "nesterov": SGD(learningRate: 0.05, momentum: 0.9, nesterov: true)
    case "adam": Adam(learningRate: 0.01)
    case "adamw": AdamW(learningRate: 0.01)
    case "rmsprop": RMSprop(learningRate: 0.01)
    default: Adadelta()
    }
    let model = try Sequential(input: 64) {
      Dense(32, activation: .tanh)
      Dense(10, activation: .softmax)
    }
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: optimizer, threads: 1)
    try trainer.fit(train, epochs: 15, batchSize: 16)
    let e = try trainer.evaluate(test)
    #expect(e.accuracy >= 0.85, "\(name): \(e.accuracy)")
  }

  @Test("fused and unfused Adam agree up to rounding, and are reproducible at any thread count")
  func fusedAdam() throws {
    func run(fused: Bool, threads: Int) throws -> [Float] {
      let model = try Sequential(input: [28, 28, 1], seed: 3) {
        Conv2D(4, kernel: 3, activation: .relu)
        MaxPool2D()
        Flatten()
        Dense(32, activation: .relu, l2: 0.001)
        Dense(10, activation: .softmax)
      }
      let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: AdamW(learningRate: 1e-3), threads: threads)
      trainer.fusesOptimizerSteps = fused
      try trainer.fit(Self.images.train.prefix(400), epochs: 1, batchSize: 20)
      return try model.parameter(layer: 3, "weight").scalars + model.parameter(layer: 0, "weight").scalars
    }
    let a = try run(fused: true, threads: 1), b = try run(fused: true, threads: 2), c = try run(fused: false, threads: 2)
    #expect(bitwiseEqual(a, b), "fused Adam is thread-independent")
    let worst = zip(a, c).map { abs($0 - $1) }.max()!
    #expect(worst < 1e-4, "fused vs unfused: largest difference \(worst)")
  }

  @Test("the README's CNN example works as written (on a subset)")
  func readmeExample() throws {
    let all = try MNIST.load(imageShape: .channels)
    let images = (train: all.train.prefix(3000), validation: all.validation.prefix(1000), test: all.test.prefix(1000))
    let cnn = try Sequential(input: [28, 28, 1]) {
      Conv2D(32, kernel: 3, padding: .same, activation: .relu, weights: .xavierNormal)
      BatchNorm()
      MaxPool2D()
      Flatten()
      Dense(784, activation: .relu, weights: .xavierNormal)
      Dropout(0.5)
      Dense(10, activation: .softmax, weights: .xavierNormal)
    }
    #expect(cnn.summary.contains("Total params: 4926266"))
    let t = Trainer(model: cnn, loss: .crossEntropy, optimizer: Adam(learningRate: 1e-4), threads: 2)
    let history = try t.fit(images.train, validation: images.validation, epochs: 2, batchSize: 32,
                            schedule: .cosine(minimum: 1e-5),
                            earlyStopping: EarlyStopping(monitor: .validationLoss, patience: 2))
    #expect(history.epochs.count == 2)
    let accuracy = try t.evaluate(images.test).accuracy
    #expect(accuracy > 0.85, "accuracy \(accuracy)")
    #expect(try cnn.confusionMatrix(images.test).counts.flatMap { $0 }.reduce(0, +) == 1000)
    // A drawn 3 from examples/digits, through the picture path.
    let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .deletingLastPathComponent().deletingLastPathComponent().path
    let (probabilities, seen) = try cnn.classify(picture: GrayImage(contentsOf: root + "/examples/digits/digit-3-paper.png"))
    #expect(probabilities.count == 10 && abs(probabilities.reduce(0, +) - 1) < 1e-4)
    #expect(seen.width == 28 && seen.height == 28)
  }
}
