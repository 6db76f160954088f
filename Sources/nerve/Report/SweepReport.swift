// The report of a sweep folder: the grid as a heat map (or a line for one axis), a small chart
// per cell, and every cell's curves together.
import Foundation
import Nerve

struct SweepReport {
  var dir: String

  func build() throws -> ReportPage {
    guard FileManager.default.isReadableFile(atPath: SweepFolder.resultsPath(dir)) else {
      throw NerveError(.badFile, at: dir, "no sweep.jsonl: expected a folder written by nerve sweep")
    }
    let folder = try SweepFolder(directory: dir)
    for w in folder.warnings { printError("nerve: warning: \(w)") }
    let cells = folder.cells
    guard !cells.isEmpty else {
      throw NerveError(.badFile, at: SweepFolder.summaryPath(dir), "missing or empty: run nerve sweep again to finish it")
    }
    let header = folder.header
    let name = header?.sweep ?? URL(fileURLWithPath: dir).lastPathComponent
    let axes = (header?.axes ?? []).map { (key: $0.key, values: $0.values.map(\.displayText)) }
    let runs = header?.runs ?? 1
    let rank = cells.contains { $0.finals["valid_accuracy"] != nil } ? "valid_accuracy" : "test_accuracy"
    var facts: [(String, String)] = [("folder", dir), ("config", header?.config ?? "?"), ("runs per cell", "\(runs)")]
    for a in axes { facts.append((a.key, a.values.joined(separator: ", "))) }
    if let best = cells.max(by: { ($0.finals[rank]?.mean ?? -1) < ($1.finals[rank]?.mean ?? -1) }) {
      facts.append(("best cell", "\(best.id) (\(rank.replacingOccurrences(of: "_", with: " ")) \(String(format: "%.2f%%", 100 * (best.finals[rank]?.mean ?? .nan))))"))
    }
    var figs: [Figure] = []
    if axes.count >= 2 {
      figs.append(gridFigure(cells, axes: axes, rank: rank, runs: runs))
    } else if axes.count == 1 {
      figs.append(axisFigure(cells, axis: axes[0], rank: rank, runs: runs))
    }
    if let f = cellCurvesFigure(cells, runs: runs) { figs.append(f) }
    figs += allCurvesFigures(cells, runs: runs)
    return ReportPage(title: "Nerve sweep report: \(name)", facts: facts, figures: figs)
  }

  private func setting(_ cell: SweepCellSummary, _ key: String) -> String {
    cell.settings[key]?.displayText ?? "?"
  }

  /// Two or more axes: a heat map of the first two (the best over the others).
  private func gridFigure(_ cells: [SweepCellSummary], axes: [(key: String, values: [String])], rank: String, runs: Int) -> Figure {
    let rowsAxis = axes[0], colsAxis = axes[1]
    let scores = cells.compactMap { $0.finals[rank]?.mean }
    let lo = scores.min() ?? 0, hi = scores.max() ?? 1
    var values = [[Double?]](repeating: [Double?](repeating: nil, count: colsAxis.values.count), count: rowsAxis.values.count)
    var texts = [[String]](repeating: [String](repeating: "", count: colsAxis.values.count), count: rowsAxis.values.count)
    for c in cells {
      guard let i = rowsAxis.values.firstIndex(of: setting(c, rowsAxis.key)),
        let j = colsAxis.values.firstIndex(of: setting(c, colsAxis.key)), let s = c.finals[rank]
      else { continue }
      // With more than two axes, a square shows the best over the others.
      if values[i][j] == nil || s.mean > values[i][j]! {
        values[i][j] = s.mean
        texts[i][j] = runs > 1 ? String(format: "%.1f±%.1f", 100 * s.mean, 100 * s.std) : String(format: "%.2f", 100 * s.mean)
      }
    }
    let label = rank.replacingOccurrences(of: "_", with: " ")
    return Figure(
      id: "sweep-heatmap", title: "Grid",
      svg: heatMap(
        title: "Final \(label) (%)\(axes.count > 2 ? ", best over the other axes" : "")",
        rowTitle: rowsAxis.key, columnTitle: colsAxis.key, rows: rowsAxis.values, columns: colsAxis.values, values: values,
        text: { texts[$0][$1] }, color: { sequentialColor(hi > lo ? ($0 - lo) / (hi - lo) : 1) }, cell: 64),
      caption: "Each square is one cell of the grid: its final \(label)\(runs > 1 ? " (mean ± std over \(runs) seeds)" : ""). Brighter is better.")
  }

  /// One axis: the final metric against its values (with a ± std band over seeds).
  private func axisFigure(_ cells: [SweepCellSummary], axis a: (key: String, values: [String]), rank: String, runs: Int) -> Figure {
    let numeric = a.values.allSatisfy { Double($0) != nil }
    var pts: [(x: Double, y: Double)] = [], band: [(x: Double, low: Double, high: Double)] = []
    for (k, c) in cells.enumerated() {
      guard let s = c.finals[rank] else { continue }
      let x = numeric ? Double(setting(c, a.key)) ?? Double(k) : Double(k)
      pts.append((x, 100 * s.mean))
      band.append((x, 100 * (s.mean - s.std), 100 * (s.mean + s.std)))
    }
    let label = rank.replacingOccurrences(of: "_", with: " ")
    return Figure(
      id: "sweep-line", title: "Final accuracy",
      svg: lineChart(
        title: "Final \(label) against \(a.key)", xLabel: a.key + (numeric ? "" : " (cell)"), yLabel: "accuracy (%)",
        series: [Series(name: label, color: palette[0], points: pts, band: runs > 1 ? band : [], markers: true)]),
      caption: runs > 1 ? "Mean over \(runs) seeds; the band is ± one standard deviation." : "One run per value.")
  }

  /// One small chart per cell: training and validation accuracy (mean over runs, ± std).
  private func cellCurvesFigure(_ cells: [SweepCellSummary], runs: Int) -> Figure? {
    var panels: [String] = []
    for c in cells {
      var series: [Series] = []
      for (i, split) in ["train", "valid", "test"].enumerated() {
        guard let curve = c.curves["\(split)_accuracy"] else { continue }
        let m = curve.map { 100 * $0.mean }, s = curve.map { 100 * $0.std }
        series.append(Series(
          name: split, color: palette[i], points: m.enumerated().map { (Double($0.offset + 1), $0.element) },
          band: runs > 1 ? m.indices.map { (Double($0 + 1), m[$0] - s[$0], m[$0] + s[$0]) } : []))
      }
      if let t = c.finals["test_accuracy"], !series.contains(where: { $0.name == "test" }), let n = series.first?.points.count {
        series.append(Series(name: "test", color: palette[2], points: [(Double(n), 100 * t.mean)], markers: true))
      }
      panels.append(lineChart(
        title: c.id.replacingOccurrences(of: ",", with: ", "), xLabel: "epoch", yLabel: "accuracy (%)",
        series: series, width: 330, height: 230, yRange: (0, 100), showLegend: false, titleSize: 11))
    }
    guard !panels.isEmpty else { return nil }
    return Figure(
      id: "cell-curves", title: "Curves per cell",
      svg: smallMultiples(title: "Accuracy per epoch in each cell: train (blue), validation (orange), test (red)", panels: panels, columns: 3),
      caption: "One chart per cell of the grid\(runs > 1 ? ", mean over \(runs) seeds with a band of ± one standard deviation" : ""); the test dot is the accuracy at the end.")
  }

  /// Every cell's curves in one chart: accuracy and loss, validation (or training without a
  /// validation split), mean over runs with a ± std band.
  private func allCurvesFigures(_ cells: [SweepCellSummary], runs: Int) -> [Figure] {
    var figs: [Figure] = []
    for (kind, scale) in [("accuracy", 100.0), ("loss", 1.0)] {
      for split in ["valid", "train"] {
        let series: [Series] = cells.enumerated().compactMap { k, c in
          guard let curve = c.curves["\(split)_\(kind)"] else { return nil }
          return Series(
            name: c.id.replacingOccurrences(of: ",", with: " "),
            color: cells.count <= 10 ? palette[k % palette.count] : sequentialColor(Double(k) / Double(cells.count - 1)),
            points: curve.enumerated().map { (Double($0.offset + 1), $0.element.mean * scale) },
            band: runs > 1 ? curve.enumerated().map { (Double($0.offset + 1), ($0.element.mean - $0.element.std) * scale, ($0.element.mean + $0.element.std) * scale) } : [])
        }
        guard !series.isEmpty else { continue }
        let label = split == "valid" ? "validation" : "training"
        figs.append(Figure(
          id: "curves-\(split)-\(kind)", title: "\(label.capitalized) \(kind)",
          svg: lineChart(title: "\(label.capitalized) \(kind) per epoch, every cell", xLabel: "epoch", yLabel: kind == "accuracy" ? "accuracy (%)" : "loss", series: series, logY: kind == "loss", width: 760, height: 400),
          caption: "One line per cell\(runs > 1 ? " (mean over \(runs) seeds, band ± one standard deviation)" : "")."))
        break  // Training curves only when there is no validation split.
      }
    }
    return figs
  }
}

extension TOMLValue {
  /// The value as a report shows it: strings bare, numbers as written.
  var displayText: String {
    switch self {
    case .string(let s): s
    case .integer(let i): "\(i)"
    case .float(let d): d == d.rounded() && abs(d) < 1e15 ? String(Int(d)) : "\(d)"
    case .boolean(let b): "\(b)"
    case .array(let a): "[" + a.map(\.displayText).joined(separator: ", ") + "]"
    case .table: "{...}"
    }
  }
}
