// nerve predict: classify your own pictures, test images or an IDX file with a saved model.
import ArgumentParser
import Foundation
import Nerve

struct PredictCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "predict",
    abstract: "Predict digits with a saved model: your own pictures (PNG, PGM), test images by index, or an IDX file.",
    discussion: """
      A picture can be of any size, dark ink on light paper or the reverse: it is prepared the \
      way MNIST was made (grayscale, ink found and cropped, scaled to fit 20x20 keeping its \
      shape, centred by its centre of mass in 28x28). --save-prepared shows what the model saw.
      Examples:
        nerve predict model.safetensors my-digit.png --save-prepared seen.png
        nerve predict model.safetensors --count 5
        nerve predict model.safetensors --indices 0,7,42
        nerve predict model.safetensors --images my-images-idx3-ubyte --labels my-labels-idx1-ubyte
      """)

  @Argument(help: ArgumentHelp("A model saved by nerve train --save.", valueName: "model"))
  var model: String

  @Argument(help: ArgumentHelp("Pictures of single digits (PNG or PGM) to classify.", valueName: "picture"))
  var pictures: [String] = []

  @Option(name: .long, help: ArgumentHelp("Save the prepared 28x28 input the model saw as a PNG (several pictures: FILE-1.png, FILE-2.png, ...).", valueName: "file"))
  var savePrepared: String?

  @OptionGroup var dataOptions: DataOptions
  @OptionGroup var testOptions: TestDataOptions

  @Option(name: .long, help: ArgumentHelp("Predict the first n test images.", valueName: "n"))
  var count: Int = 10

  @Option(name: .long, help: ArgumentHelp("Predict these test images, e.g. 0,7,42.", valueName: "list"))
  var indices: String?

  @Option(name: .long, help: ArgumentHelp("An IDX file of raw images [count, rows, columns] to predict instead.", valueName: "file"))
  var images: String?

  @Option(name: .long, help: ArgumentHelp("An IDX file of labels for --images, to count correct predictions.", valueName: "file"))
  var labels: String?

  func validate() throws {
    if count < 1 { throw ValidationError("--count must be at least 1") }
    if labels != nil && images == nil { throw ValidationError("--labels goes with --images") }
    if !pictures.isEmpty && (images != nil || indices != nil) { throw ValidationError("give pictures, --images or --indices, not several") }
    if savePrepared != nil && pictures.isEmpty { throw ValidationError("--save-prepared goes with pictures") }
  }

  func classifyPictures(_ m: Sequential) throws {
    for (k, path) in pictures.enumerated() {
      let (probabilities, seen) = try m.classify(picture: GrayImage(contentsOf: path), source: path)
      let best = probabilities.indices.max { probabilities[$0] < probabilities[$1] }!
      print(String(format: "%@: %d (%.1f%%)", path, best, 100 * probabilities[best]))
      for (digit, p) in probabilities.enumerated() {
        let bar = String(repeating: "█", count: Int((Double(p) * 40).rounded()))
        print(String(format: "  %d %6.2f%% ", digit, 100 * p) + bar)
      }
      if let savePrepared {
        var target = savePrepared
        if pictures.count > 1 {
          let base = savePrepared.hasSuffix(".png") ? String(savePrepared.dropLast(4)) : savePrepared
          target = "\(base)-\(k + 1).png"
        }
        try seen.magnified(by: 1).writePNG(to: target)
        print("  prepared input saved to \(target)")
      }
    }
  }

  func run() throws {
    try reportingErrors {
      let m = try Sequential.load(from: model)
      if let threads = dataOptions.threads { try m.context.setThreads(threads) }
      if !pictures.isEmpty { return try classifyPictures(m) }
      var data: Dataset
      if let images {
        let idx = try IDXArray(contentsOf: images)
        guard idx.type == .uint8 else {
          throw NerveError(.badFile, at: images, "holds \(idx.type) values; images must be unsigned bytes (IDX type 0x08), as the model's preprocessing expects")
        }
        guard idx.dimensions.count >= 2, idx.dimensions.dropFirst().reduce(1, *) == m.inputShape.reduce(1, *) else {
          throw NerveError(.shapeMismatch, at: images, "images of shape \(Array(idx.dimensions.dropFirst())) do not fit a model taking \(m.inputShape)")
        }
        let n = idx.dimensions[0]
        var labelValues = [Int32](repeating: 0, count: n)
        if let labels {
          let l = try IDXArray(contentsOf: labels)
          guard l.dimensions == [n] else {
            throw NerveError(.shapeMismatch, at: labels, "has \(l.dimensions.first ?? 0) labels but \(images) has \(n) images")
          }
          let values = try l.integers()
          if let bad = values.firstIndex(where: { $0 < 0 || $0 >= m.outputShape[0] }) {
            throw NerveError(.badFile, at: labels, "label \(values[bad]) at index \(bad) is not one of the model's \(m.outputShape[0]) classes")
          }
          labelValues = values.map { Int32($0) }
        }
        var f = Tensor(shape: [n] + m.inputShape, values: idx.floats())
        try m.preprocessing.apply(to: &f)
        data = try Dataset(name: images, features: f, labels: labelValues, classes: m.outputShape[0])
      } else {
        let test = try testOptions.testSet(for: m, data: dataOptions.data)
        let wanted: [Int]
        if let indices {
          let parsed = indices.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
          guard parsed.allSatisfy({ $0 != nil }) else { throw NerveError(.badValue, at: "--indices", "expected comma-separated integers, got '\(indices)'") }
          wanted = parsed.map { $0! }
        } else {
          wanted = Array(0..<min(count, test.count))
        }
        data = try test.subset(indices: wanted)
      }
      let outputs = try m.outputs(for: data.features)
      let classes = try m.predict(data.features)
      let width = m.outputShape[0]
      let hasLabels = images == nil || labels != nil
      var right = 0
      for i in 0..<data.count {
        let row = (0..<width).map { outputs[flat: i * width + $0] }
        let values = row.map { String(format: "%.3f", $0) }.joined(separator: " ")
        var line = "\(i): predicted \(classes[i])"
        if hasLabels {
          line += ", label \(data.labels[i])\(classes[i] == Int(data.labels[i]) ? "" : "  <-- wrong")"
          if classes[i] == Int(data.labels[i]) { right += 1 }
        }
        print(line + "   [\(values)]")
      }
      if hasLabels { print("\(right)/\(data.count) correct") }
    }
  }
}
