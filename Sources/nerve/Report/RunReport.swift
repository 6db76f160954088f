// The report of one training run: its curves, confusion matrix and gradient norms from the
// metrics file, and with the saved model, pictures of digits, filters and feature maps.
import Foundation
import Nerve

struct RunReport {
  var path: String
  var modelPath: String?
  var data: String?
  var testOptions: TestDataOptions

  func build() throws -> ReportPage {
    let metrics = try MetricsFile(contentsOf: path)
    if let warning = metrics.warning { printError("nerve: warning: \(warning)") }
    let epochs = metrics.epochs, summary = metrics.summary
    guard !epochs.isEmpty || summary != nil else {
      throw NerveError(.badFile, at: path, "has no epoch records (train_loss, ...) or final test record; is it a nerve train --metrics file?")
    }
    let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    var facts = self.facts(summary, epochs: epochs.count)
    var figs = curveFigures(epochs, summary: summary)
    if let cm = summary?.confusionMatrix, !cm.isEmpty { figs.append(confusionFigure(cm)) }
    if let g = gradientFigure(epochs: epochs, steps: metrics.gradientSteps) { figs.append(g) }
    // Everything below needs the model and the test images.
    if let modelFile = modelFile(summary) {
      let m = try Sequential.load(from: modelFile)
      facts.append(("model", modelFile))
      facts.append(("layers", m.summary))
      let rawTest = try testOptions.rawTestSet(for: m, data: data, recorded: summary)
      figs += try modelFigures(m, rawTest: rawTest)
    } else {
      facts.append(("model", "not found: pass --model FILE (or train with --save) for digit galleries and filters"))
    }
    return ReportPage(title: "Nerve report: \(name)", facts: facts, figures: figs)
  }

  /// The table at the top of the page.
  func facts(_ summary: RunSummary?, epochs: Int) -> [(String, String)] {
    var facts: [(String, String)] = [("metrics", path)]
    guard let s = summary else { return facts }
    if let c = s.config { facts.append(("config", c)) }
    facts.append(("data", s.dataSet + (s.dataPath.map { " (\($0))" } ?? "")))
    facts.append(("test accuracy", String(format: "%.2f%% (%d of %d correct)", 100 * s.testAccuracy, s.testCorrect, s.testCount)))
    facts.append(("training time", String(format: "%.1f s, %d epochs, %d thread(s)", s.trainingSeconds, epochs, s.threads)))
    if let b = s.bestEpoch { facts.append(("early stopping", "kept the weights of epoch \(b)")) }
    return facts
  }

  /// The model to draw pictures with: --model, else the file the run saved, else the metrics
  /// file's name with .safetensors.
  func modelFile(_ summary: RunSummary?) -> String? {
    if let modelPath { return modelPath }
    let candidates: [String?] = [summary?.model, URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("safetensors").path]
    return candidates.compactMap { $0 }.first { FileManager.default.fileExists(atPath: $0) }
  }

  /// Accuracy and loss per epoch for the training, validation and test sets.
  func curveFigures(_ epochs: [EpochMetrics], summary: RunSummary?) -> [Figure] {
    let lastEpoch = Double(epochs.count)
    return [("accuracy", 100.0), ("loss", 1.0)].map { kind, scale in
      var series: [Series] = []
      for (i, split) in ["train", "valid", "test"].enumerated() {
        let pts = epochs.compactMap { e in e.value("\(split)_\(kind)").map { (x: Double(e.epoch), y: $0 * scale) } }
        if !pts.isEmpty { series.append(Series(name: split == "valid" ? "validation" : split, color: palette[i], points: pts)) }
      }
      if !series.contains(where: { $0.name == "test" }), let s = summary {
        let t = kind == "accuracy" ? s.testAccuracy : s.testLoss
        series.append(Series(name: "test (end)", color: palette[2], points: [(lastEpoch, t * scale)], markers: true))
      }
      let ys = series.flatMap(\.points).map(\.y)
      return Figure(
        id: "\(kind)-curves", title: kind == "accuracy" ? "Accuracy" : "Loss",
        svg: lineChart(
          title: kind == "accuracy" ? "Accuracy per epoch" : "Loss per epoch", xLabel: "epoch",
          yLabel: kind == "accuracy" ? "accuracy (%)" : "loss", series: series,
          logY: kind == "loss" && (ys.max() ?? 0) > 20 * max(1e-12, ys.min() ?? 1)),
        caption: kind == "accuracy" ? "Training, validation and test accuracy after each epoch (test: at the end unless the run evaluated it every epoch)." : "Training, validation and test loss after each epoch.")
    }
  }
}
