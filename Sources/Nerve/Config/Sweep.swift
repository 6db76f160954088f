// Sweep: a grid of settings over one base config (each setting a ConfigOverride).
//
// A config's [sweep] table lists the values to try for some keys:
//
//   [sweep]
//   hidden = [15, 30, 75]                                  # units of every hidden dense layer
//   learning_rate = [0.1, 1, 10]                           # train.learning_rate
//   "layer.0.activation" = ["sigmoid", "relu"]             # one [[layer]] table's key
//   momentum = { from = 0.5, to = 0.9, step = 0.1 }         # a range, both ends included
//   runs = 4                                               # seeds per cell: seed, seed+1, ...
//
// Every cell of the grid (first key slowest) is the base config with those keys replaced, read
// and checked exactly as if the file said so.
import Foundation

/// A grid of runs: a base config and the values to try for some of its keys.
public struct Sweep: Sendable {
  /// One key and the values it takes.
  public struct Axis: Sendable, Equatable {
    public var key: String
    public var values: [TOMLValue]
    public init(key: String, values: [TOMLValue]) {
      self.key = key
      self.values = values
    }
  }

  /// One combination of values.
  public struct Cell: Sendable, Equatable {
    /// Position in `cells` (first axis slowest).
    public var index: Int
    public var settings: [ConfigOverride]
    /// `key=value,key=value`: names the cell in files and tables.
    public var id: String { settings.map(\.description).joined(separator: ",") }
  }

  public var file: String
  /// The config without its [sweep] table.
  public var base: TOMLTable
  public var axes: [Axis]
  /// Seeds per cell (the config's seed, seed+1, ...).
  public var runs: Int

  /// Reads a config with a [sweep] table (or without one: a single cell, for repeated runs).
  /// - Parameters:
  ///   - extraAxes: more axes; each replaces the file's axis of the same key.
  ///   - overrides: keys changed for every run (`--set`), applied before anything is checked.
  ///   - runs: seeds per cell, replacing the table's `runs`.
  public init(contentsOf path: String, extraAxes: [Axis] = [], overrides: [ConfigOverride] = [], runs: Int? = nil) throws {
    var table = try TOMLParser.parse(contentsOf: path)
    file = path
    axes = []
    var fileRuns = 1
    if let v = table["sweep"] {
      guard case .table(let sweep) = v else { throw NerveError(.badValue, at: path, "sweep: expected a [sweep] table") }
      for key in sweep.keys {
        let at = "\(path):\(sweep.line(of: key))"
        if key == "runs" {
          guard case .integer(let n)? = sweep[key], n >= 1 else { throw NerveError(.badValue, at: at, "sweep.runs: expected a positive integer") }
          fileRuns = n
          continue
        }
        axes.append(Axis(key: key, values: try Sweep.values(sweep[key]!, at: at, key: key)))
      }
      table.remove("sweep")
    }
    for extra in extraAxes {
      axes.removeAll { $0.key == extra.key }
      axes.append(extra)
    }
    for o in overrides { table = try o.apply(to: table, source: path) }
    base = table
    self.runs = runs ?? fileRuns
    guard self.runs >= 1 else { throw NerveError(.badValue, at: "runs", "must be at least 1") }
    let size = axes.reduce(1.0) { $0 * Double($1.values.count) } * Double(self.runs)
    guard size <= 100_000 else {
      throw NerveError(.badValue, at: path, "the grid has \(Int(min(size, 1e18))) runs (cells x runs); a sweep may have at most 100,000")
    }
    // Every cell must make a valid config: find out now, not after hours of training.
    for cell in cells { _ = try config(for: cell, run: 0) }
  }

  /// Parses `--grid key=v1,v2,v3` or `key=from:to:step`.
  public static func axis(parsing text: String) throws -> Axis {
    guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
      throw NerveError(.badValue, at: "--grid", "expected key=v1,v2,... or key=from:to:step, got '\(text)'")
    }
    let key = text[..<eq].trimmingCharacters(in: .whitespaces)
    let rest = String(text[text.index(after: eq)...])
    let range = rest.split(separator: ":").map { Double($0.trimmingCharacters(in: .whitespaces)) }
    if range.count == 3, range.allSatisfy({ $0 != nil }) {
      return Axis(key: key, values: try values(.table(rangeTable(range.map { $0! })), at: "--grid", key: key))
    }
    let values = rest.split(separator: ",").map { ConfigOverride.value(parsing: String($0)) }
    guard !values.isEmpty else { throw NerveError(.badValue, at: "--grid", "\(key): no values") }
    return Axis(key: key, values: values)
  }

  static func rangeTable(_ r: [Double]) -> TOMLTable {
    var t = TOMLTable()
    t.set("from", .float(r[0]), line: 0)
    t.set("to", .float(r[1]), line: 0)
    t.set("step", .float(r[2]), line: 0)
    return t
  }

  static func values(_ v: TOMLValue, at: String, key: String) throws -> [TOMLValue] {
    switch v {
    case .array(let items) where !items.isEmpty:
      return items
    case .table(let t):
      func number(_ k: String) throws -> Double {
        switch t[k] {
        case .integer(let n)?: return Double(n)
        case .float(let x)?: return x
        default: throw NerveError(.badValue, at: at, "sweep.\(key): a range needs numbers from, to and step")
        }
      }
      let from = try number("from"), to = try number("to"), step = try number("step")
      guard step > 0, to >= from, (to - from) / step < 10_000 else {
        throw NerveError(.badValue, at: at, "sweep.\(key): expected from <= to and a step > 0 giving at most 10,000 values")
      }
      let allIntegers = [t["from"], t["to"], t["step"]].allSatisfy { if case .integer? = $0 { return true } else { return false } }
      let count = Int(((to - from) / step + 1e-9).rounded(.down)) + 1
      return (0..<count).map { i in
        let x = from + Double(i) * step
        // Round away the binary noise of repeated addition (0.1 * 3 = 0.30000000000000004).
        return allIntegers ? .integer(Int(x.rounded())) : .float((x * 1e12).rounded() / 1e12)
      }
    default:
      throw NerveError(.badValue, at: at, "sweep.\(key): expected a non-empty array of values or {from, to, step}")
    }
  }

  /// Every combination of the axes' values, the first axis varying slowest.
  public var cells: [Cell] {
    var combos: [[ConfigOverride]] = [[]]
    for axis in axes {
      combos = combos.flatMap { prefix in axis.values.map { prefix + [ConfigOverride(key: axis.key, value: $0)] } }
    }
    return combos.enumerated().map { Cell(index: $0.offset, settings: $0.element) }
  }

  /// The config of one run of one cell: the base with the cell's settings, seed + `run`.
  public func config(for cell: Cell, run: Int) throws -> ExperimentConfig {
    var table = base
    for o in cell.settings { table = try o.apply(to: table, source: file) }
    var c = try ExperimentConfig(table: table, file: file)
    c.seed &+= UInt64(run)
    try c.validate()
    return c
  }
}

/// Mean and spread of a quantity over several runs.
public struct RunStatistics: Sendable, Equatable {
  public var mean: Double
  /// Sample standard deviation (n - 1 in the denominator); 0 for a single run.
  public var std: Double
  public var count: Int

  public init(mean: Double, std: Double, count: Int) {
    self.mean = mean
    self.std = std
    self.count = count
  }

  public init(_ values: [Double]) {
    count = values.count
    mean = values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
    if values.count > 1 {
      let m = mean
      std = (values.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(values.count - 1)).squareRoot()
    } else {
      std = 0
    }
  }

  /// Per-epoch statistics of several runs' curves (runs that stopped early count only for
  /// the epochs they ran).
  public static func perEpoch(_ curves: [[Double]]) -> [RunStatistics] {
    let epochs = curves.map(\.count).max() ?? 0
    return (0..<epochs).map { e in RunStatistics(curves.compactMap { e < $0.count ? $0[e] : nil }) }
  }
}
