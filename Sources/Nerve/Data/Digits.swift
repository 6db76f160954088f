// Digits: the 8x8 optical digits (UCI; scikit-learn's load_digits), 1,797 samples.
import Foundation

/// The 8x8 digits dataset: 64 intensities 0...16 per sample and a label 0...9.
public enum Digits {
  /// Reads the digits CSV (raw or `.gz`): per line 64 values then the label.
  /// - Parameters:
  ///   - path: the CSV file; nil for the bundled `Data/digits/digits.csv.gz`.
  ///   - imageShape: `.flat` gives [64]; `.channels` gives [8, 8, 1].
  /// - Returns: raw values (0...16), not yet scaled or standardised.
  /// - Throws: `NerveError` naming the file, line and field of anything malformed.
  public static func load(from path: String? = nil, imageShape: MNIST.ImageShape = .flat) throws
    -> Dataset
  {
    guard let file = path ?? BundledData.directory("digits").map({ $0 + "/digits.csv.gz" }) else {
      throw NerveError(.badFile, at: "Data/digits", "cannot find the bundled digits dataset")
    }
    let bytes = try Gzip.readFile(file)
    guard let text = String(bytes: bytes, encoding: .utf8) else {
      throw NerveError(.badFile, at: file, "not UTF-8 text")
    }
    var values: [Float] = []
    var labels: [Int32] = []
    values.reserveCapacity(1797 * 64)
    var lineNumber = 0
    for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
      lineNumber += 1
      let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
      if trimmed.isEmpty { continue }
      let fields = trimmed.split(separator: ",", omittingEmptySubsequences: false)
      // A header line of names is allowed.
      if lineNumber == 1, fields.contains(where: { Double($0.trimmingCharacters(in: .whitespaces)) == nil }) {
        continue
      }
      guard fields.count == 65 else {
        throw NerveError(
          .badFile, at: "\(file):\(lineNumber)",
          "expected 65 comma-separated values (64 pixels then the label), found \(fields.count)")
      }
      for (i, f) in fields.enumerated() {
        let s = f.trimmingCharacters(in: .whitespaces)
        guard let v = Double(s), v.isFinite else {
          throw NerveError(
            .badFile, at: "\(file):\(lineNumber)", "field \(i + 1) is '\(s)', expected a number")
        }
        if i < 64 {
          guard v >= 0, v <= 16 else {
            throw NerveError(
              .badFile, at: "\(file):\(lineNumber)",
              "pixel \(i + 1) is \(s), expected a value from 0 to 16")
          }
          values.append(Float(v))
        } else {
          guard v == v.rounded(), v >= 0, v <= 9 else {
            throw NerveError(
              .badFile, at: "\(file):\(lineNumber)", "label is \(s), expected an integer 0 to 9")
          }
          labels.append(Int32(v))
        }
      }
    }
    guard !labels.isEmpty else { throw NerveError(.badFile, at: file, "no samples") }
    let shape = imageShape == .flat ? [64] : [8, 8, 1]
    return try Dataset(
      name: "digits", features: Tensor(shape: [labels.count] + shape, values: values),
      labels: labels, classes: 10)
  }
}
