// Training end to end on small MNIST subsets: learning happens, runs are reproducible, a
// diverging loss is caught.
import Nerve
import Testing

@Suite("Training")
struct TrainingTests {
  func mlp(seed: UInt64 = 1, hidden: Int = 64) throws -> Sequential {
    try Sequential(input: 784, seed: seed) {
      Dense(hidden, activation: .relu)
      Dense(10, activation: .softmax)
    }
  }

  @Test("minibatch SGD on 3,000 images learns (>= 85% on 1,000 test images)")
  func minibatchLearns() throws {
    let train = Fixtures.mnist.train.prefix(3000), test = Fixtures.mnist.test.prefix(1000)
    let model = try mlp()
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 0.1), threads: 2)
    let before = try trainer.evaluate(test)
    let history = try trainer.fit(train, validation: test, epochs: 4, batchSize: 32, seed: 7)
    let after = try trainer.evaluate(test)
    #expect(before.accuracy < 0.3, "untrained accuracy \(before.accuracy)")
    #expect(after.accuracy >= 0.85, "accuracy after 4 epochs \(after.accuracy)")
    #expect(history.epochs.count == 4)
    #expect(history.epochs.last!.trainLoss < history.epochs.first!.trainLoss, "the training loss falls")
    #expect(history.epochs.last!.validAccuracy == after.accuracy)
  }

  @Test("full-batch sigmoid + MSE gradient descent (Lab A's setting) learns on 2,000 images (>= 80%)")
  func fullBatchLearns() throws {
    let train = Fixtures.mnist.train.prefix(2000), test = Fixtures.mnist.test.prefix(1000)
    let model = try Sequential(input: 784) {
      Dense(30, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
      Dense(10, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
    }
    let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 1), threads: 2)
    let h = try trainer.fit(train, epochs: 400, batchSize: .full)
    let e = try trainer.evaluate(test)
    print("full batch, 400 epochs on 2,000 images: \(e.accuracy)")
    #expect(e.accuracy >= 0.80, "accuracy after 400 full-batch epochs: \(e.accuracy)")
    #expect(h.epochs[399].trainLoss < h.epochs[0].trainLoss * 0.5)
  }

  @Test("per-sample SGD and momentum both learn (>= 80% after 3 epochs on 2,000 images)")
  func perSampleAndMomentum() throws {
    let train = Fixtures.mnist.train.prefix(2000), test = Fixtures.mnist.test.prefix(500)
    for optimizer in [SGD(learningRate: 0.02), SGD(learningRate: 0.05, momentum: 0.9)] {
      let model = try Sequential(input: 784) {
        Dense(100, activation: .sigmoid)
        Dense(10, activation: .softmax)
      }
      let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: optimizer, threads: 2)
      try trainer.fit(train, epochs: 3, batchSize: optimizer.momentum == 0 ? 1 : 16)
      let e = try trainer.evaluate(test)
      print("\(optimizer): \(e.accuracy)")
      #expect(e.accuracy >= 0.80, "\(optimizer): \(e.accuracy)")
    }
  }

  /// Trains the same network and returns every number it produced.
  func run(threads: Int, seed: UInt64, batch: BatchSize, optimizer: Optimizer, fused: Bool = true) throws -> ([EpochMetrics], [Float]) {
    let model = try mlp(seed: seed, hidden: 48)
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: optimizer, threads: threads)
    trainer.fusesOptimizerSteps = fused
    let h = try trainer.fit(
      Fixtures.mnist.train.prefix(1500), validation: Fixtures.mnist.validation.prefix(500), epochs: 2,
      batchSize: batch, seed: seed)
    let params = try model.parameter(layer: 0, "weight").scalars + model.parameter(layer: 1, "weight").scalars
    return (h.epochs.map { var m = $0; m.seconds = 0; return m }, params)
  }

  @Test("the same seed gives bit-identical results, at any thread count", arguments: [BatchSize.size(1), .size(50), .full])
  func reproducible(batch: BatchSize) throws {
    for makeOptimizer in [{ SGD(learningRate: 0.05) }, { SGD(learningRate: 0.05, momentum: 0.9, weightDecay: 1e-4) }] {
      let a = try run(threads: 1, seed: 3, batch: batch, optimizer: makeOptimizer())
      let b = try run(threads: 1, seed: 3, batch: batch, optimizer: makeOptimizer())
      let c = try run(threads: 2, seed: 3, batch: batch, optimizer: makeOptimizer())
      let d = try run(threads: 3, seed: 3, batch: batch, optimizer: makeOptimizer())
      #expect(a.0 == b.0 && bitwiseEqual(a.1, b.1), "same seed, same threads (batch \(batch))")
      #expect(a.0 == c.0 && bitwiseEqual(a.1, c.1), "1 vs 2 threads (batch \(batch))")
      #expect(a.0 == d.0 && bitwiseEqual(a.1, d.1), "1 vs 3 threads (batch \(batch))")
      let other = try run(threads: 1, seed: 4, batch: batch, optimizer: makeOptimizer())
      #expect(!bitwiseEqual(a.1, other.1), "another seed gives another model")
    }
  }

  @Test("a large batch run in chunks matches one pass up to rounding, at any thread count")
  func chunkedBatches() throws {
    func train(chunk: Int, threads: Int) throws -> (Double, [Float]) {
      let model = try mlp(seed: 2, hidden: 24)
      let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 0.5, momentum: 0.5), threads: threads)
      trainer.chunkRows = chunk
      let h = try trainer.fit(Fixtures.mnist.train.prefix(1000), epochs: 3, batchSize: .full)
      return (h.epochs.last!.trainLoss, try model.parameter(layer: 0, "weight").scalars)
    }
    let whole = try train(chunk: 4096, threads: 2)
    let chunked1 = try train(chunk: 300, threads: 1), chunked2 = try train(chunk: 300, threads: 2)
    #expect(chunked1.0 == chunked2.0 && bitwiseEqual(chunked1.1, chunked2.1), "chunked runs are thread-independent")
    let worst = zip(whole.1, chunked1.1).map { abs($0 - $1) }.max()!
    #expect(worst < 1e-5, "largest weight difference \(worst)")
    #expect(abs(whole.0 - chunked1.0) < 1e-6, "loss \(whole.0) vs \(chunked1.0)")
  }

  @Test("fit called epoch by epoch (its inputs listed once) gives one fit's bits; other data are not read from that list")
  func fitAfterFit() throws {
    // Lab A's setting in chunks: its first layer reads the training set listed as non-zero
    // entries, which a trainer keeps from one fit to the next on the same features.
    func labA() throws -> Sequential {
      try Sequential(input: 784, seed: 5) {
        Dense(30, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
        Dense(10, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
      }
    }
    func trainer(_ model: Sequential) -> Trainer {
      let t = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 1), threads: 2)
      t.chunkRows = 256
      return t
    }
    func weights(_ model: Sequential) throws -> [Float] {
      try model.parameter(layer: 0, "weight").scalars + model.parameter(layer: 1, "weight").scalars
    }
    let train = Fixtures.mnist.train.prefix(700), other = Fixtures.mnist.train.slice(700..<1400)
    let stepwise = try labA(), whole = try labA()
    let t = trainer(stepwise)
    var losses: [Double] = []
    for _ in 0..<3 { losses.append(try t.fit(train, epochs: 1, batchSize: .full).epochs[0].trainLoss) }
    let h = try trainer(whole).fit(train, epochs: 3, batchSize: .full)
    #expect(losses == h.epochs.map(\.trainLoss), "losses epoch by epoch \(losses), in one fit \(h.epochs.map(\.trainLoss))")
    #expect(bitwiseEqual(try weights(stepwise), try weights(whole)), "three fits of one epoch against one of three")
    // The same trainer on other images of the same shape, against a new trainer of the model
    // trained alike.
    let again = try t.fit(other, epochs: 1, batchSize: .full).epochs[0].trainLoss
    let fresh = try trainer(whole).fit(other, epochs: 1, batchSize: .full).epochs[0].trainLoss
    #expect(again == fresh, "loss on other images: \(again) against a new trainer's \(fresh)")
    #expect(bitwiseEqual(try weights(stepwise), try weights(whole)), "a fit on other images after fits on the first")
  }

  @Test(
    "dense layers run their activations inside their kernels with the bits of separate layers",
    arguments: ["sgd fused, minibatches", "full batch in chunks, listed inputs", "momentum", "adam"])
  func activationsJoinedToDense(_ setting: String) throws {
    // The first model's dense kernels apply their sigmoid, tanh and relu as they write, and take
    // each input gradient on through the activation before them (nerve_dense_*_activation); the
    // second has every activation as a layer of its own, one kernel per layer. Minibatches with
    // plain SGD step inside backward; a full batch in chunks lists its inputs for the first
    // layer (30 outputs, as Lab A's), whose gradient is stored; momentum stores every gradient;
    // Adam steps inside backward, where only the forward is joined.
    func pair() throws -> [Sequential] {
      let joined = try Sequential(input: 784, seed: 8) {
        Dense(30, activation: .sigmoid)
        Dense(24, activation: .tanh)
        Dense(16, activation: .relu)
        Dense(10, activation: .sigmoid)
      }
      let apart = try Sequential(input: 784, seed: 8) {
        Dense(30)
        ActivationLayer(.sigmoid)
        Dense(24)
        ActivationLayer(.tanh)
        Dense(16)
        ActivationLayer(.relu)
        Dense(10)
        ActivationLayer(.sigmoid)
      }
      for (from, to) in [(0, 0), (1, 2), (2, 4), (3, 6)] {
        for name in ["weight", "bias"] { try apart.setParameter(layer: to, name, to: try joined.parameter(layer: from, name)) }
      }
      return [joined, apart]
    }
    let data = Fixtures.mnist.train.prefix(300)
    for threads in [1, 2, 3] {
      let models = try pair()
      for model in models {
        let optimizer: Optimizer =
          switch setting {
          case "momentum": SGD(learningRate: 0.3, momentum: 0.9)
          case "adam": Adam(learningRate: 0.01)
          default: SGD(learningRate: 0.5)
          }
        let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: optimizer, threads: threads)
        trainer.chunkRows = 128
        let batch: BatchSize = setting.hasPrefix("full") ? .full : .size(32)
        _ = try trainer.fit(data, epochs: 2, batchSize: batch)
      }
      for (from, to) in [(0, 0), (1, 2), (2, 4), (3, 6)] {
        for name in ["weight", "bias"] {
          let a = try models[0].parameter(layer: from, name).scalars, b = try models[1].parameter(layer: to, name).scalars
          expectSameBits(a, b, "\(setting): layer \(from) \(name), \(threads) thread(s)")
        }
      }
      try models.forEach { try $0.context.setThreads(threads) }
      #expect(try models[0].outputs(for: data.features) == models[1].outputs(for: data.features), "\(setting), inference")
    }
  }

  @Test("fused and unfused plain SGD agree up to rounding")
  func fusedMatchesUnfused() throws {
    let fused = try run(threads: 2, seed: 5, batch: .size(20), optimizer: SGD(learningRate: 0.05), fused: true)
    let plain = try run(threads: 2, seed: 5, batch: .size(20), optimizer: SGD(learningRate: 0.05), fused: false)
    let worst = zip(fused.1, plain.1).map { abs($0 - $1) }.max()!
    #expect(worst < 1e-3, "largest weight difference \(worst)")
    #expect(abs(fused.0.last!.trainLoss - plain.0.last!.trainLoss) < 1e-3)
  }

  @Test("a loss that becomes NaN stops training, names the epoch, and restores the last good model")
  func divergence() throws {
    let model = try mlp(hidden: 16)
    let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 1e30), threads: 1)
    let initial = try model.parameter(layer: 0, "weight")
    var seen: [Int] = []
    do {
      try trainer.fit(Fixtures.mnist.train.prefix(200), epochs: 5, batchSize: 10, onEpoch: { seen.append($0.epoch); return true })
      Issue.record("training with lr 1e30 did not fail")
    } catch let error as NerveError {
      #expect(error.kind == .diverged)
      #expect(error.location.hasPrefix("epoch 1, step"), "\(error)")
      #expect(error.message.contains("NaN") || error.message.contains("infinite"), "\(error)")
    }
    #expect(seen.isEmpty)
    #expect(try model.parameter(layer: 0, "weight") == initial, "restored to the initial parameters")
  }

  @Test("mismatched data and bad settings are reported, not crashed on")
  func badInputs() throws {
    let model = try mlp(hidden: 8)
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 0.1))
    let digits = try Digits.load()
    #expect(throws: NerveError.self) { try trainer.fit(digits, epochs: 1) }
    do {
      try trainer.fit(digits, epochs: 1)
    } catch let e as NerveError {
      #expect(e.kind == .shapeMismatch && e.description.contains("784"), "\(e)")
    }
    let bad = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: -1))
    #expect(throws: NerveError.self) { try bad.fit(Fixtures.mnist.train.prefix(10), epochs: 1) }
    let nllWithoutSoftmax = Trainer(
      model: try Sequential(input: 784) { Dense(10) }, loss: .negativeLogLikelihood(), optimizer: SGD(learningRate: 0.1))
    #expect(throws: NerveError.self) { try nllWithoutSoftmax.fit(Fixtures.mnist.train.prefix(10), epochs: 1) }
    #expect(throws: NerveError.self) {
      _ = try Sequential(input: 784) {
        Dense(10)
        Dense(0)
      }
    }
  }

  @Test("negative log-likelihood on a softmax output trains like cross-entropy")
  func nllTrains() throws {
    let model = try mlp()
    let trainer = Trainer(model: model, loss: .negativeLogLikelihood(), optimizer: SGD(learningRate: 0.1), threads: 2)
    try trainer.fit(Fixtures.mnist.train.prefix(2000), epochs: 2, batchSize: 32)
    #expect(try trainer.evaluate(Fixtures.mnist.test.prefix(500)).accuracy > 0.8)
  }
}
