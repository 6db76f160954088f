// nerve bench: times the labs' workloads at several thread counts.
import ArgumentParser
import Foundation
import Nerve

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Time the labs' workloads at several thread counts (median seconds, samples per second).",
    discussion: """
      Workloads (MNIST, 50,000 training images):
        lab-a       784-30-10 sigmoid, MSE, full-batch gradient descent, lr 1: seconds per epoch
        minibatch   784-300-10 sigmoid + softmax cross-entropy, minibatches of 100, lr 0.1: seconds per epoch
        per-sample  the same network, per-sample SGD, lr 0.01: seconds per pass over the first 10,000 images
        lab-e       Lab E's CNN (conv 32 3x3, batch norm, max pool, dense 784, dense 10), Adam lr 1e-4,
                    minibatches of 32: seconds per epoch (no warm-up epoch; not in the default list)
        predict-mlp the Lab A network predicting the 10,000 test images in one call: seconds
        predict-mlp-pixels  the same from the test file's bytes (Sequential.outputs(forPixels:...): its dense
                    layer reads them as they are, each byte / 255)
        predict-cnn the Lab E CNN predicting the 10,000 test images in one call: seconds
        latency-mlp the Lab A network predicting the test images one at a time (Sequential.outputs(for:count:into:)):
                    seconds per 10,000 calls (so microseconds per image = seconds x 100)
        fast-99     examples/fast-99.toml's recipe: one epoch on all 60,000 training images from a fresh
                    start (seed = run number), seconds of training; --json also gives the mean test accuracy
      bench/compare.sh runs these beside PyTorch in one go and prints the ratios.

      Runs alternate between the thread counts (a round times each count once, every other round
      in reverse order), so a machine whose speed drifts from minute to minute slows both sides of
      a comparison alike; each count's speed-up over the first is the median of the rounds' ratios.
      """)

  @Option(name: .long, help: ArgumentHelp("Comma-separated thread counts to time.", valueName: "list"))
  var threads: String = "1,2"

  @Option(name: .long, help: ArgumentHelp("Comma-separated workloads, any of those listed above.", valueName: "list"))
  var workloads: String = "lab-a,minibatch,per-sample"

  @Option(name: .long, help: ArgumentHelp("Timed repetitions (rounds) per workload and thread count (the median is reported; a first, untimed one warms up).", valueName: "n"))
  var repeats: Int = 5

  @Option(name: .long, help: ArgumentHelp("A folder with MNIST's IDX files (default: the bundled Data/mnist).", valueName: "path"))
  var data: String?

  @Flag(name: .long, help: "Print one JSON object per measurement instead of a table.")
  var json = false

  static let known = [
    "lab-a", "minibatch", "per-sample", "lab-e", "predict-mlp", "predict-mlp-pixels", "predict-cnn", "latency-mlp",
    "fast-99",
  ]
  /// Workloads of CNNs, which take images as [28, 28, 1] (fast-99 loads its own 60,000).
  static let imageWorkloads: Set = ["lab-e", "predict-cnn"]

  /// `--threads` as numbers (0 for an entry that is not one, which `validate` refuses).
  var threadCounts: [Int] { threads.split(separator: ",").map { Int($0) ?? 0 } }
  /// `--workloads` as names.
  var workloadList: [String] { workloads.split(separator: ",").map(String.init) }

  func validate() throws {
    guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    guard threadCounts.allSatisfy({ $0 >= 1 }) else {
      throw ValidationError("--threads must list positive integers, got '\(threads)'")
    }
    guard Set(threadCounts).count == threadCounts.count else {
      throw ValidationError("--threads lists a count twice: '\(threads)'")
    }
    for w in workloadList where !Self.known.contains(w) {
      throw ValidationError("unknown workload '\(w)'; expected \(Self.known.joined(separator: ", "))")
    }
  }

  func run() throws {
    try reportingErrors {
      let kernels = InstructionSet.chosen  // each query makes a context: once a run
      if let told = ProcessInfo.processInfo.environment["NERVE_ISA"], !told.isEmpty, told != kernels.description {
        printError("nerve: NERVE_ISA=\(told) is not baseline, avx2 or avx512 within this CPU's \(InstructionSet.best): timing \(kernels)")
      }
      let mnist = try MNIST.load(from: data)
      let usesImages = workloadList.contains { Self.imageWorkloads.contains($0) }
      let images = usesImages ? try MNIST.load(from: data, imageShape: .channels) : mnist
      let first10k = mnist.train.prefix(10_000)
      // fast-99 trains on all 60,000 (no validation split), one copy for every thread count.
      let all60k = workloadList.contains("fast-99")
        ? try MNIST.load(from: data, validationCount: 0, imageShape: .channels) : nil
      if !json {
        print("nerve \(nerveVersion), \(kernels) kernels; median of \(repeats) timed runs after one warm-up (lab-e: none)")
        print("workload            threads   seconds   samples/s")
      }
      for workload in workloadList {
        let data = Self.imageWorkloads.contains(workload) ? images : mnist
        let timed = try timeRounds(threadCounts) { t in
          workload == "fast-99"
            ? try fast99Runner(threads: t, images: all60k!) : try runner(workload, threads: t, mnist: data, first10k: first10k)
        }
        for (t, runs) in zip(threadCounts, timed.runs) {
          let seconds = runs.map(\.seconds), m = median(seconds)
          let accuracies = runs.compactMap(\.accuracy)
          let speedup = timed.speedups[t]
          if json {
            print(try jsonLine(
              BenchRecord(
                tool: "nerve", workload: workload, instructionSet: kernels.description, threads: t,
                medianSeconds: m,
                samplesPerSecond: Double(timed.samples) / m, runs: seconds,
                accuracy: accuracies.isEmpty ? nil : accuracies.reduce(0, +) / Double(accuracies.count),
                speedup: speedup)))
          } else {
            print(workload.padding(toLength: 18, withPad: " ", startingAt: 0) + String(format: " %8d %9.4f %11.0f", t, m, Double(timed.samples) / m))
            if let speedup {
              print(String(format: "  %@ speed-up %d -> %d threads: %.2fx (median of %d rounds' ratios)", workload, threadCounts[0], t, speedup, repeats))
            }
          }
          if workload == "lab-e" && !json {
            let context = ComputeContext(threads: t), productRate = try context.productRate()
            let updates = try Self.labEAdamUpdates(samples: timed.samples)
            try printAdamFloor(context, updates: updates, measured: m)
            printArithmeticFloor(samples: timed.samples, productRate: productRate, measured: m)
            try printInCoreEstimate(context, samples: timed.samples, updates: updates, productRate: productRate, measured: m)
          }
          fflush(nil)
        }
      }
    }
  }

  /// One timed run: its seconds and, for workloads that train to a result, the test accuracy.
  struct Run {
    var seconds: Double
    var accuracy: Double?
  }

  /// A workload at one thread count, ready to time: each call of `next` times one more run
  /// (an epoch, a pass over the test images or a whole training) after the workload's warm-up.
  struct Runner {
    var samples: Int
    var next: () throws -> Run
  }

  /// `repeats` rounds of one run per thread count (in the listed order, then reversed, and so
  /// on), from runners made first for every count: each count's runs, the samples a run
  /// processes, and each later count's speed-up over the first, the median of the rounds' ratios.
  func timeRounds(
    _ threadCounts: [Int], _ makeRunner: (Int) throws -> Runner
  ) throws -> (runs: [[Run]], samples: Int, speedups: [Int: Double]) {
    let runners = try threadCounts.map(makeRunner)
    var runs = [[Run]](repeating: [], count: threadCounts.count)
    for round in 0..<repeats {
      let order = round % 2 == 0 ? Array(runners.indices) : runners.indices.reversed()
      for i in order { runs[i].append(try runners[i].next()) }
    }
    var speedups = [Int: Double]()
    for i in threadCounts.indices.dropFirst() {
      speedups[threadCounts[i]] = median(zip(runs[0], runs[i]).map { $0.seconds / $1.seconds })
    }
    return (runs, runners.first?.samples ?? 0, speedups)
  }

  /// Lab E's floor from memory traffic: per step, its parameters are read by the forward pass
  /// and the input gradient, and Adam's fused step reads and writes weights and both moments
  /// (8 floats per parameter), at the bandwidth an Adam step reaches here.
  func printAdamFloor(_ context: ComputeContext, updates: Double, measured: Double) throws {
    let bytes = updates * 8 * 4
    let bandwidth = try context.adamStepBandwidth()
    printFloor(
      String(
        format: "%.0f GB of parameter and Adam state traffic per epoch at %.1f GB/s (an Adam step here)",
        bytes / 1e9, bandwidth / 1e9),
      seconds: bytes / bandwidth, measured: measured)
  }

  /// Lab E's floor from arithmetic: its products' floating-point operations per epoch (forward,
  /// weight gradient, and input gradient for all but the first layer) at the rate Nerve's own
  /// 2048^3 product reaches here on the same threads (`productRate`).
  func printArithmeticFloor(samples: Int, productRate rate: Double, measured: Double) {
    let flops = Self.labEProductFlops(samples: samples)
    printFloor(
      String(format: "%.2f TFLOP of products per epoch at %.0f GFLOP/s (a 2048^3 product here)", flops / 1e12, rate / 1e9),
      seconds: flops / rate, measured: measured)
  }

  /// Floating-point operations of Lab E's products in an epoch of `samples` images: forward,
  /// weight gradient, and input gradient for all but the first layer.
  static func labEProductFlops(samples: Int) -> Double {
    // Multiply-adds per image: the 3x3 convolution (32 filters, "same") and the two dense layers.
    let convolution = 28 * 28 * 32 * 3 * 3, dense = 6272 * 784 + 784 * 10
    return 2 * Double(samples) * Double(2 * convolution + 3 * dense)
  }

  /// Parameters Lab E's Adam steps update in an epoch of `samples` images: every parameter at
  /// each of its batches of 32 (a whole model built for its count: once per thread count).
  static func labEAdamUpdates(samples: Int) throws -> Double {
    Double((samples + 31) / 32) * Double(try labE().parameterCount)
  }

  /// Lab E's time in the cores, estimated: the products as above, then the Adam step's own
  /// arithmetic, which its fused backward runs on each tile after the tile's products, on the
  /// same core (so the two add), at the rate a step reaches here where its arrays stay in cache.
  /// An estimate, not a bound: the epoch's small products can beat a 2048^3 product's rate, and
  /// a core's Adam arithmetic can overlap its loads.
  func printInCoreEstimate(
    _ context: ComputeContext, samples: Int, updates: Double, productRate rate: Double, measured: Double
  ) throws {
    let flops = Self.labEProductFlops(samples: samples), adam = try context.adamStepRate()
    printFloor(
      String(
        format: "%.2f TFLOP at %.0f GFLOP/s, then %.1f G Adam updates at %.1f G/s (in cache)",
        flops / 1e12, rate / 1e9, updates / 1e9, adam / 1e9),
      seconds: flops / rate + updates / adam, measured: measured, label: "estimate")
  }

  /// One floor line (or, labelled so, an estimate): what it counts at what rate, its seconds,
  /// and the measurement against it.
  func printFloor(_ what: String, seconds floor: Double, measured: Double, label: String = "floor") {
    print("  lab-e \(label): \(what) = " + String(format: "%.2f s; measured %.2fx that", floor, measured / floor))
  }

  /// One measurement as `--json` prints it (bench/compare.sh reads these beside PyTorch's).
  struct BenchRecord: Encodable {
    var tool: String
    var workload: String
    /// The kernels timed: this CPU's best, or what NERVE_ISA chose.
    var instructionSet: String
    var threads: Int
    var medianSeconds: Double
    var samplesPerSecond: Double
    var runs: [Double]
    /// Mean test accuracy of the timed runs, for workloads that train to a result.
    var accuracy: Double?
    /// Speed-up over the first thread count listed: the median of the rounds' ratios.
    var speedup: Double?

    enum CodingKeys: String, CodingKey {
      case tool, workload, threads, runs, accuracy, speedup
      case medianSeconds = "median_seconds", samplesPerSecond = "samples_per_second"
      case instructionSet = "instruction_set"
    }
  }

  /// The runner of `workload` (not fast-99) at `threads` (its warm-up, if it takes one, done here).
  func runner(_ workload: String, threads: Int, mnist: MNIST, first10k: Dataset) throws -> Runner {
    switch workload {
    case "predict-mlp-pixels":
      let model = try Self.labA()
      try model.context.setThreads(threads)
      let images = try MNIST.testImages(from: data)
      return try passRunner(model, samples: mnist.test.count) { out in
        try images.withElementBytes { pixels in
          try model.outputs(forPixels: pixels, scale: Preprocessing.unitScale.scale, count: images.dimensions[0], into: out)
        }
      }
    case "predict-mlp", "predict-cnn", "latency-mlp":
      let model = workload == "predict-cnn" ? try Self.labE() : try Self.labA()
      try model.context.setThreads(threads)
      return try inferenceRunner(model, test: mnist.test, oneAtATime: workload == "latency-mlp")
    case "lab-a":
      let trainer = Trainer(model: try Self.labA(), loss: .meanSquaredError, optimizer: SGD(learningRate: 1), threads: threads)
      return try epochRunner(trainer, mnist.train, batchSize: .full, warmUp: true)
    case "lab-e":
      let trainer = Trainer(model: try Self.labE(), loss: .crossEntropy, optimizer: Adam(learningRate: 1e-4), threads: threads)
      return try epochRunner(trainer, mnist.train, batchSize: .size(32), warmUp: false)
    default:
      let model = try Sequential(input: 784) {
        Dense(300, activation: .sigmoid)
        Dense(10, activation: .softmax)
      }
      let perSample = workload == "per-sample"
      let trainer = Trainer(
        model: model, loss: .crossEntropy, optimizer: SGD(learningRate: perSample ? 0.01 : 0.1), threads: threads)
      return try epochRunner(trainer, perSample ? first10k : mnist.train, batchSize: .size(perSample ? 1 : 100), warmUp: true)
    }
  }

  /// Runs of one epoch each of `trainer` on `set`, the model trained on from run to run; after
  /// one untimed epoch if `warmUp`.
  func epochRunner(_ trainer: Trainer, _ set: Dataset, batchSize: BatchSize, warmUp: Bool) throws -> Runner {
    if warmUp { _ = try trainer.fit(set, epochs: 1, batchSize: batchSize) }
    return Runner(samples: set.count) {
      Run(seconds: try trainer.fit(set, epochs: 1, batchSize: batchSize).epochs[0].seconds)
    }
  }
  /// Lab A's network: 784-30-10, sigmoid, weights uniform in [-0.1, 0.1].
  static func labA() throws -> Sequential {
    try Sequential(input: 784) {
      Dense(30, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
      Dense(10, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
    }
  }

  /// Lab E's CNN.
  static func labE() throws -> Sequential {
    try Sequential(input: [28, 28, 1]) {
      Conv2D(32, kernel: 3, padding: .same, activation: .relu, weights: .xavierNormal)
      BatchNorm()
      MaxPool2D()
      Flatten()
      Dense(784, activation: .relu, weights: .xavierNormal)
      Dense(10, activation: .softmax, weights: .xavierNormal)
    }
  }

  /// Runs of one pass over the test images after an untimed one: all in one call, or one image
  /// per call through the allocation-free path.
  func inferenceRunner(_ model: Sequential, test: Dataset, oneAtATime: Bool) throws -> Runner {
    let n = test.count, d = model.inputCount, width = model.outputCount
    return try passRunner(model, samples: n) { out in
      try test.features.withUnsafeBufferPointer { features in
        if oneAtATime {
          for i in 0..<n {
            try model.outputs(
              for: UnsafeBufferPointer(rebasing: features[i * d..<(i + 1) * d]), count: 1,
              into: UnsafeMutableBufferPointer(rebasing: out[i * width..<(i + 1) * width]))
          }
        } else {
          try model.outputs(for: features, count: n, into: out)
        }
      }
    }
  }

  /// Runs of one call of `pass` writing the model's outputs for `samples` inputs, after an
  /// untimed call (a warm-up).
  func passRunner(
    _ model: Sequential, samples: Int, _ pass: @escaping (UnsafeMutableBufferPointer<Float>) throws -> Void
  ) throws -> Runner {
    var outputs = [Float](repeating: 0, count: samples * model.outputCount)
    try outputs.withUnsafeMutableBufferPointer { try pass($0) }
    return Runner(samples: samples) {
      let clock = ContinuousClock()
      let start = clock.now
      try outputs.withUnsafeMutableBufferPointer { try pass($0) }
      return Run(seconds: (clock.now - start).seconds)
    }
  }

  /// examples/fast-99.toml's recipe (ExperimentConfig.fastRecipe, built as `nerve train` builds
  /// it): runs of one epoch on all 60,000 training images (`images`, loaded without a
  /// validation split) from a fresh start, seed = run number (1 is the untimed warm-up), each
  /// with its test accuracy.
  func fast99Runner(threads: Int, images: MNIST) throws -> Runner {
    var run: UInt64 = 0
    let train = {
      run += 1
      var recipe = ExperimentConfig.fastRecipe
      recipe.seed = run
      let experiment = Experiment(config: recipe)
      let model = try experiment.makeModel(inputShape: images.train.sampleShape)
      let trainer = Trainer(model: model, loss: recipe.loss, optimizer: try experiment.makeOptimizer(), threads: threads)
      let h = try experiment.fit(trainer, train: images.train, validation: nil)
      return Run(seconds: h.epochs[0].seconds, accuracy: try model.evaluate(images.test, loss: recipe.loss).accuracy)
    }
    _ = try train()
    return Runner(samples: images.train.count, next: train)
  }
}
