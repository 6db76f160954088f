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
      """)

  @Option(name: .long, help: ArgumentHelp("Comma-separated thread counts to time.", valueName: "list"))
  var threads: String = "1,2"

  @Option(name: .long, help: ArgumentHelp("Comma-separated workloads: lab-a, minibatch, per-sample, lab-e.", valueName: "list"))
  var workloads: String = "lab-a,minibatch,per-sample"

  @Option(name: .long, help: ArgumentHelp("Timed repetitions per workload (the median is reported; a first, untimed one warms up).", valueName: "n"))
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

  func validate() throws {
    guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    for t in threads.split(separator: ",") where (Int(t) ?? 0) < 1 {
      throw ValidationError("--threads must list positive integers, got '\(threads)'")
    }
    for w in workloads.split(separator: ",") where !Self.known.contains(String(w)) {
      throw ValidationError("unknown workload '\(w)'; expected \(Self.known.joined(separator: ", "))")
    }
  }

  func run() throws {
    try reportingErrors {
      let mnist = try MNIST.load(from: data)
      let usesImages = workloads.split(separator: ",").contains { Self.imageWorkloads.contains(String($0)) }
      let images = usesImages ? try MNIST.load(from: data, imageShape: .channels) : mnist
      let first10k = mnist.train.prefix(10_000)
      let threadCounts = threads.split(separator: ",").map { Int($0)! }
      if !json {
        print("nerve \(nerveVersion), \(InstructionSet.best) kernels; median of \(repeats) timed runs after one warm-up")
        print("workload      threads   seconds   samples/s")
      }
      for workload in workloads.split(separator: ",").map(String.init) {
        for t in threadCounts {
          var accuracy: Double?
          let (seconds, samples): ([Double], Int)
          if workload == "fast-99" {
            (seconds, samples, accuracy) = try measureFast99(threads: t)
          } else {
            let data = Self.imageWorkloads.contains(workload) ? images : mnist
            (seconds, samples) = try measure(workload, threads: t, mnist: data, first10k: first10k)
          }
          let m = median(seconds)
          if json {
            print(try jsonLine(
              BenchRecord(
                tool: "nerve", workload: workload, threads: t, medianSeconds: m,
                samplesPerSecond: Double(samples) / m, runs: seconds, accuracy: accuracy)))
          } else {
            print(workload.padding(toLength: 12, withPad: " ", startingAt: 0) + String(format: " %8d %9.4f %11.0f", t, m, Double(samples) / m))
          }
          if workload == "lab-e" && !json {
            try printAdamFloor(threads: t, samples: samples, measured: m)
            try printArithmeticFloor(threads: t, samples: samples, measured: m)
          }
          fflush(nil)
        }
      }
    }
  }

  /// Lab E's floor from memory traffic: per step, its parameters are read by the forward pass
  /// and the input gradient, and Adam's fused step reads and writes weights and both moments
  /// (8 floats per parameter), at the bandwidth an Adam step reaches here.
  func printAdamFloor(threads: Int, samples: Int, measured: Double) throws {
    let parameters = try Self.labE().parameterCount, steps = (samples + 31) / 32
    let bytes = Double(steps) * Double(parameters) * 8 * 4
    let bandwidth = try ComputeContext(threads: threads).adamStepBandwidth()
    printFloor(
      String(
        format: "%.0f GB of parameter and Adam state traffic per epoch at %.1f GB/s (an Adam step here)",
        bytes / 1e9, bandwidth / 1e9),
      seconds: bytes / bandwidth, measured: measured)
  }

  /// Lab E's floor from arithmetic: its products' floating-point operations per epoch (forward,
  /// weight gradient, and input gradient for all but the first layer) at the rate Nerve's own
  /// 2048^3 product reaches here on the same threads.
  func printArithmeticFloor(threads: Int, samples: Int, measured: Double) throws {
    // Multiply-adds per image: the 3x3 convolution (32 filters, "same") and the two dense layers.
    let convolution = 28 * 28 * 32 * 3 * 3, dense = 6272 * 784 + 784 * 10
    let flops = 2 * Double(samples) * Double(2 * convolution + 3 * dense)
    let rate = try ComputeContext(threads: threads).productRate()
    printFloor(
      String(format: "%.2f TFLOP of products per epoch at %.0f GFLOP/s (a 2048^3 product here)", flops / 1e12, rate / 1e9),
      seconds: flops / rate, measured: measured)
  }

  /// One floor line: what it counts at what rate, its seconds, and the measurement against it.
  func printFloor(_ what: String, seconds floor: Double, measured: Double) {
    print("  lab-e floor: \(what) = " + String(format: "%.2f s; measured %.2fx that", floor, measured / floor))
  }

  /// One measurement as `--json` prints it (bench/compare.sh reads these beside PyTorch's).
  struct BenchRecord: Encodable {
    var tool: String
    var workload: String
    var threads: Int
    var medianSeconds: Double
    var samplesPerSecond: Double
    var runs: [Double]
    /// Mean test accuracy of the timed runs, for workloads that train to a result.
    var accuracy: Double?

    enum CodingKeys: String, CodingKey {
      case tool, workload, threads, runs, accuracy
      case medianSeconds = "median_seconds", samplesPerSecond = "samples_per_second"
    }
  }

  /// Seconds of each timed run and the samples one run processes.
  func measure(_ workload: String, threads: Int, mnist: MNIST, first10k: Dataset) throws -> ([Double], Int) {
    let runs = repeats + 1
    switch workload {
    case "predict-mlp-pixels":
      let model = try Self.labA()
      try model.context.setThreads(threads)
      return (try timePixels(model, images: try MNIST.testImages(from: data), runs: runs), mnist.test.count)
    case "predict-mlp", "predict-cnn", "latency-mlp":
      let model = workload == "predict-cnn" ? try Self.labE() : try Self.labA()
      try model.context.setThreads(threads)
      return (try timeInference(model, test: mnist.test, oneAtATime: workload == "latency-mlp", runs: runs), mnist.test.count)
    case "lab-a":
      let model = try Self.labA()
      let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 1), threads: threads)
      let h = try trainer.fit(mnist.train, epochs: runs, batchSize: .full)
      return (h.epochs.dropFirst().map(\.seconds), mnist.train.count)
    case "lab-e":
      let model = try Self.labE()
      let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: Adam(learningRate: 1e-4), threads: threads)
      let h = try trainer.fit(mnist.train, epochs: repeats, batchSize: 32)
      return (h.epochs.map(\.seconds), mnist.train.count)
    default:
      let model = try Sequential(input: 784) {
        Dense(300, activation: .sigmoid)
        Dense(10, activation: .softmax)
      }
      let perSample = workload == "per-sample"
      let trainer = Trainer(
        model: model, loss: .crossEntropy, optimizer: SGD(learningRate: perSample ? 0.01 : 0.1), threads: threads)
      let set = perSample ? first10k : mnist.train
      let h = try trainer.fit(set, epochs: runs, batchSize: .size(perSample ? 1 : 100))
      return (h.epochs.dropFirst().map(\.seconds), set.count)
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

  /// Seconds of each timed pass over the test images after the first (a warm-up): all in one
  /// call, or one image per call through the allocation-free path.
  func timeInference(_ model: Sequential, test: Dataset, oneAtATime: Bool, runs: Int) throws -> [Double] {
    let n = test.count, d = model.inputCount, width = model.outputCount
    var outputs = [Float](repeating: 0, count: n * width)
    return try test.features.withUnsafeBufferPointer { features in
      try Self.timePasses(runs: runs, into: &outputs) { out in
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

  /// Seconds of each timed pass over an image file's bytes after the first (a warm-up), all in
  /// one call scaling them by 1/255 as the images were when they were floats.
  func timePixels(_ model: Sequential, images: IDXArray, runs: Int) throws -> [Double] {
    let n = images.dimensions[0]
    var outputs = [Float](repeating: 0, count: n * model.outputCount)
    return try images.withElementBytes { pixels in
      try Self.timePasses(runs: runs, into: &outputs) { out in
        try model.outputs(forPixels: pixels, scale: Preprocessing.unitScale.scale, count: n, into: out)
      }
    }
  }

  /// Seconds of each of `runs` calls of `pass` writing `outputs`, the first (a warm-up) left out.
  static func timePasses(
    runs: Int, into outputs: inout [Float], _ pass: (UnsafeMutableBufferPointer<Float>) throws -> Void
  ) throws -> [Double] {
    var times = [Double]()
    for _ in 0..<runs {
      let clock = ContinuousClock()
      let start = clock.now
      try outputs.withUnsafeMutableBufferPointer { try pass($0) }
      times.append((clock.now - start).seconds)
    }
    return Array(times.dropFirst())
  }

  /// examples/fast-99.toml's recipe in code: seconds of each one-epoch run after a warm-up run,
  /// the samples of an epoch and the mean test accuracy of the timed runs.
  func measureFast99(threads: Int) throws -> ([Double], Int, Double) {
    let images = try MNIST.load(from: data, validationCount: 0, imageShape: .channels)
    let all = images.train
    var seconds = [Double](), accuracies = [Double]()
    for run in 0...repeats {
      let model = try Sequential(input: [28, 28, 1], seed: UInt64(run + 1)) {
        Conv2D(24, kernel: 5, activation: .relu)
        MaxPool2D()
        Conv2D(32, kernel: 3, activation: .relu)
        MaxPool2D()
        Flatten()
        Dense(256, activation: .relu)
        Dense(10, activation: .softmax)
      }
      let trainer = Trainer(
        model: model, loss: .crossEntropy, optimizer: Adam(learningRate: 0.01, beta1: 0.7, beta2: 0.9), threads: threads)
      let h = try trainer.fit(all, epochs: 1, batchSize: 256, seed: UInt64(run + 1), schedule: .oneCycle())
      if run == 0 { continue }
      seconds.append(h.epochs[0].seconds)
      accuracies.append(try model.evaluate(images.test, loss: .crossEntropy).accuracy)
    }
    return (seconds, all.count, accuracies.reduce(0, +) / Double(accuracies.count))
  }
}
