// nerve eval: a saved model's test-set accuracy; the test data options predict and report share.
import ArgumentParser
import Foundation
import Nerve

/// Which test data a saved model is evaluated on.
struct TestDataOptions: ParsableArguments {
  @Option(name: .long, help: ArgumentHelp("mnist or digits (default: digits for 64-value inputs, otherwise mnist).", valueName: "name"))
  var dataset: String?

  @Option(name: .long, help: ArgumentHelp("Digits: the share held out for testing, as in training (default 0.2, or what the run recorded).", valueName: "f"))
  var testFraction: Double?

  @Option(name: .long, help: ArgumentHelp("Digits: the split seed used in training (default 0, or what the run recorded).", valueName: "n"))
  var splitSeed: UInt64?

  /// The test set, prepared with the model's own preprocessing. MNIST's bytes are scaled as
  /// they become floats, as training loads them, rather than converted as stored and then
  /// rewritten: that second pass copied the 31 MB of test images (the dataset still shared
  /// them), a third of `nerve eval`'s 0.35-0.4 s with the fast recipe's model.
  func testSet(for model: Sequential, data: String?) throws -> Dataset {
    try loadTestSet(for: model, data: data, recorded: nil, preprocessing: model.preprocessing)
  }

  /// The test set as stored (MNIST bytes 0...255, digits counts 0...16), for pictures.
  func rawTestSet(for model: Sequential, data: String?, recorded: RunSummary? = nil) throws -> Dataset {
    try loadTestSet(for: model, data: data, recorded: recorded, preprocessing: .none)
  }

  /// The test set prepared with `preprocessing`. Flags win; then what the run recorded in its
  /// metrics file; then a guess from the input size.
  private func loadTestSet(
    for model: Sequential, data: String?, recorded: RunSummary?, preprocessing: Preprocessing
  ) throws -> Dataset {
    let name = dataset?.lowercased() ?? recorded?.dataSet ?? (model.inputShape.reduce(1, *) == 64 ? "digits" : "mnist")
    let path = data ?? recorded?.dataPath
    let shape: MNIST.ImageShape = model.inputShape.count == 3 ? .channels : .flat
    switch name {
    case "mnist":
      return try MNIST.loadPair(
        dir: path ?? BundledData.directory("mnist") ?? "Data/mnist", images: MNIST.fileNames.testImages,
        labels: MNIST.fileNames.testLabels, name: "MNIST test", shape: shape, preprocessing: preprocessing)
    case "digits":
      let all = try Digits.load(from: path, imageShape: shape)
      let fraction = testFraction ?? recorded?.testFraction ?? 0.2
      let seed = splitSeed ?? recorded?.splitSeed ?? 0
      return try all.split(fraction: 1 - fraction, seed: seed).1.preprocessed(preprocessing)
    default:
      throw NerveError(.badValue, at: "--dataset", "expected mnist or digits, got '\(name)'")
    }
  }
}

struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval", abstract: "Report a saved model's test-set accuracy and correct count.")

  @Argument(help: ArgumentHelp("A model saved by nerve train --save.", valueName: "model"))
  var model: String

  @OptionGroup var dataOptions: DataOptions
  @OptionGroup var testOptions: TestDataOptions

  @Option(name: .long, help: ArgumentHelp("Loss to report: mse, cross_entropy or nll (default: cross_entropy for softmax outputs, else mse).", valueName: "name"))
  var loss: String?

  func run() throws {
    try reportingErrors {
      let m = try Sequential.load(from: model)
      if let threads = dataOptions.threads { try m.context.setThreads(threads) }
      let test = try testOptions.testSet(for: m, data: dataOptions.data)
      let lossKind: Loss
      if let loss {
        guard let l = Loss(name: loss) else { throw NerveError(.badValue, at: "--loss", "unknown loss '\(loss)'") }
        lossKind = l
      } else {
        lossKind = m.endsWithSoftmax ? .crossEntropy : .meanSquaredError
      }
      let e = try m.evaluate(test, loss: lossKind)
      print(String(format: "%@: %d/%d correct (%.2f%%), %@ loss %.4f", test.name, e.correct, e.count, 100 * e.accuracy, lossKind.description, e.loss))
    }
  }
}
