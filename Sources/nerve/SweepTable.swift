// The table `nerve sweep` prints at the end: a row per cell, the best cell marked, and for a
// single cell run with several seeds, its curves epoch by epoch.
import Foundation
import Nerve

struct SweepTable {
  var cells: [Sweep.Cell]
  var summaries: [SweepCellSummary]
  /// Runs per cell.
  var runs: Int

  /// Cells are ranked by validation accuracy, or test accuracy without a validation split.
  var rankedBy: String {
    summaries.first?.finals["valid_accuracy"] != nil ? "valid_accuracy" : "test_accuracy"
  }

  var text: String {
    var out = rows()
    if runs > 1 { out.append("mean ± sample standard deviation over \(runs) runs per cell") }
    if cells.count == 1 && runs > 1, let curves = summaries.first?.curves {
      out += epochRows(curves)
    }
    return out.joined(separator: "\n")
  }

  private func percent(_ s: RunStatistics?) -> String {
    guard let s else { return "-" }
    return runs > 1 ? String(format: "%.2f ± %.2f", 100 * s.mean, 100 * s.std) : String(format: "%.2f", 100 * s.mean)
  }

  /// One row per cell, columns aligned.
  private func rows() -> [String] {
    let rank = rankedBy
    let best = summaries.indices.filter { summaries[$0].finals[rank] != nil }
      .max { summaries[$0].finals[rank]!.mean < summaries[$1].finals[rank]!.mean }
    var table: [[String]] = [["cell", "train %", "valid %", "test %", "seconds", ""]]
    for (i, s) in summaries.enumerated() {
      let note = (i == best && summaries.count > 1 ? "<- best (\(rank.replacingOccurrences(of: "_", with: " ")))" : "")
        + (s.failed > 0 ? " \(s.failed) failed" : "")
      table.append([
        s.id.isEmpty ? "base" : s.id.replacingOccurrences(of: ",", with: "  "),
        percent(s.finals["train_accuracy"]), percent(s.finals["valid_accuracy"]), percent(s.finals["test_accuracy"]),
        s.secondsMean.map { String(format: "%.2f", $0) } ?? "-", note,
      ])
    }
    let widths = (0..<table[0].count).map { c in table.map { $0[c].count }.max()! }
    return table.map { row in
      row.enumerated().map { c, text in
        c == 0 ? text.padding(toLength: widths[c], withPad: " ", startingAt: 0)
          : String(repeating: " ", count: widths[c] - text.count) + text
      }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
  }

  /// One configuration, several seeds: the curves themselves, mean ± std per epoch (at most
  /// 30 rows, spread over the run).
  private func epochRows(_ curves: [String: [RunStatistics]]) -> [String] {
    guard let epochs = curves["train_loss"]?.count, epochs > 0 else { return [] }
    let keys = SweepCellSummary.metrics.filter { curves[$0]?.count == epochs }
    var out = ["", "epoch" + keys.map { " " + $0.replacingOccurrences(of: "accuracy", with: "acc %").padding(toLength: 17, withPad: " ", startingAt: 0) }.joined()]
    let shown = epochs <= 30 ? Array(0..<epochs) : Array(Set((0..<30).map { $0 * (epochs - 1) / 29 })).sorted()
    for e in shown {
      var line = String(e + 1).padding(toLength: 5, withPad: " ", startingAt: 0)
      for k in keys {
        let s = curves[k]![e]
        let text = k.hasSuffix("accuracy") ? String(format: "%.2f ± %.2f", 100 * s.mean, 100 * s.std) : String(format: "%.4f ± %.4f", s.mean, s.std)
        line += " " + text.padding(toLength: 17, withPad: " ", startingAt: 0)
      }
      out.append(line)
    }
    return out
  }
}
