// The records runs write (metrics files, sweep folders): one type per kind of line, written as
// the run goes, read back typed; a line cut short by a crash is skipped and reported.
import Foundation
import Nerve
import Testing

@Suite("Records")
struct RecordTests {
  /// A small config: digits, 64-16-10, a few epochs, gradient reports every 5 steps.
  func config(epochs: Int = 3) -> ExperimentConfig {
    var c = ExperimentConfig()
    c.dataSet = .digits
    c.layers = ExperimentConfig.mlp(sizes: [64, 16, 10], hidden: .tanh, output: .softmax, weights: nil)
    c.validationFraction = 0.2
    c.epochs = epochs
    c.batchSize = .size(64)
    c.learningRate = 0.2
    c.threads = 2
    c.gradientDiagnostics = GradientDiagnostics(everySteps: 5)
    return c
  }

  @Test("the metrics file grows a line per record while the run goes, and reads back typed")
  func appendedAsTheRunGoes() throws {
    let path = Fixtures.temporaryDirectory() + "/m.jsonl"
    var linesSeen: [Int] = []
    let observer = RunObserver(epoch: { m in
      // Every epoch's line (and the gradient reports before it) is on disk when it ends.
      let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
      linesSeen.append(text.split(separator: "\n").count)
      #expect(text.hasSuffix("}\n"), "whole lines only")
      return true
    })
    let result = try Experiment(config: config()).run(metrics: path, observer: observer)
    let file = try MetricsFile(contentsOf: path)
    #expect(file.warning == nil)
    #expect(file.epochs == result.history.epochs, "epochs read back equal what training measured")
    #expect(file.summary?.testCorrect == result.test.correct && file.summary?.dataSet == "digits")
    #expect(file.summary?.confusionMatrix == result.confusion.counts)
    let steps = file.gradientSteps
    #expect(!steps.isEmpty && steps.allSatisfy { $0.step % 5 == 0 })
    // Lines on disk after epoch e: e epoch lines plus the gradient reports of its steps.
    for (e, seen) in linesSeen.enumerated() {
      #expect(seen == e + 1 + steps.filter { $0.epoch <= e + 1 }.count, "after epoch \(e + 1): \(seen) lines")
    }
    #expect(file.records.count == 3 + steps.count + 1)
    // Gradient records name layers as the model numbers them: a dense layer with its
    // activation is one layer.
    #expect(Set(steps[0].layers.map(\.layer)) == [0, 1])
  }

  @Test("a last line cut short by a crash is skipped with a warning; a bad line elsewhere is an error naming it")
  func tornLastLine() throws {
    let dir = Fixtures.temporaryDirectory()
    let path = dir + "/m.jsonl"
    _ = try Experiment(config: config(epochs: 2)).run(metrics: path)
    let whole = try String(contentsOfFile: path, encoding: .utf8)
    let lines = whole.split(separator: "\n")
    // Killed while writing the summary: half of it, no newline.
    let torn = lines.dropLast().joined(separator: "\n") + "\n" + lines.last!.prefix(40)
    try torn.write(toFile: path, atomically: true, encoding: .utf8)
    let file = try MetricsFile(contentsOf: path)
    #expect(file.summary == nil && file.epochs.count == 2)
    #expect(file.warning?.contains(path) == true && file.warning?.contains("incomplete") == true, "\(file.warning ?? "no warning")")
    // The report still renders from what is there, and says what it skipped.
    let r = try nerve(["report", path, "-o", dir + "/r.html"])
    #expect(r.status == 0, "\(r.err)")
    #expect(r.err.contains("warning") && r.err.contains("incomplete"), "\(r.err)")
    // A damaged line in the middle is not a crash artefact: refused, naming the line.
    var damaged = lines.map(String.init)
    damaged[1] = "{\"epoch\": \"two\"}"
    try (damaged.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    #expect {
      _ = try MetricsFile(contentsOf: path)
    } throws: { ($0 as? NerveError)?.location == "\(path):2" }
  }

  @Test("records round-trip; numbers that are not finite are written as null")
  func roundTrip() throws {
    var m = EpochMetrics(epoch: 3, seconds: 0.5, trainLoss: 0.25, trainAccuracy: 0.9, learningRate: 0.1)
    m.validLoss = .infinity
    m.validAccuracy = 0.875
    m.gradients = [LayerGradientStats(layer: 1, type: "dense", weightNorm: 2, weightMeanAbs: 0.1, biasNorm: nil, biasMeanAbs: nil)]
    let path = Fixtures.temporaryDirectory() + "/r.jsonl"
    let writer = try JSONLinesWriter(path: path, truncate: true)
    try writer.append(MetricsRecord.epoch(m))
    let text = try String(contentsOfFile: path, encoding: .utf8)
    #expect(text.contains("\"valid_loss\":null") && text.hasSuffix("}\n"), "\(text)")
    let back = try MetricsFile(contentsOf: path).epochs
    #expect(back.count == 1 && back[0].validLoss == nil && back[0].validAccuracy == 0.875)
    #expect(back[0].gradients == m.gradients && back[0].trainLoss == 0.25 && back[0].epoch == 3)
  }

  @Test("one context per run: the trainer uses the model's, and threads set there stay for inference")
  func oneContext() throws {
    let model = try Sequential(input: 64) { Dense(10, activation: .softmax) }
    let own = model.context
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 0.1), threads: 3)
    #expect(trainer.context === model.context && model.context.threads == 3 && own !== model.context)
    let same = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 0.1))
    #expect(same.context === trainer.context, "a trainer without threads keeps the model's context")
  }
}
