// ConfusionMatrix: which classes a model confuses with which.
import Foundation

/// Counts of (true class, predicted class) pairs over a dataset.
public struct ConfusionMatrix: Sendable, Equatable, CustomStringConvertible {
  /// counts[true][predicted].
  public var counts: [[Int]]

  public init(counts: [[Int]]) { self.counts = counts }

  /// All zeros, for `classes` classes.
  public init(classes: Int) { counts = [[Int]](repeating: [Int](repeating: 0, count: classes), count: classes) }

  public var classes: Int { counts.count }
  public var total: Int { counts.joined().reduce(0, +) }
  public var correct: Int { (0..<classes).reduce(0) { $0 + counts[$1][$1] } }

  /// Recall of each class: correct / samples of that class.
  public var recall: [Double] {
    counts.enumerated().map { i, row in
      let n = row.reduce(0, +)
      return n == 0 ? 0 : Double(row[i]) / Double(n)
    }
  }

  /// A table with true classes as rows and predictions as columns, plus per-class recall.
  public var description: String {
    let width = max(5, String(counts.joined().max() ?? 0).count + 1)
    func cell(_ s: String) -> String { String(repeating: " ", count: max(0, width - s.count)) + s }
    var lines = ["true \\ predicted"]
    lines.append("     " + (0..<classes).map { cell(String($0)) }.joined() + "   recall")
    for (i, row) in counts.enumerated() {
      let r = recall[i]
      lines.append(cell(String(i)) + row.map { cell(String($0)) }.joined() + String(format: "   %5.1f%%", 100 * r))
    }
    return lines.joined(separator: "\n")
  }
}
