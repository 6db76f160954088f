// Sweep: a grid of settings over one base config, and overrides of single config keys.
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

/// One setting of a sweep or of `nerve train --set`: a config key and a value.
public struct ConfigOverride: Sendable, Equatable, CustomStringConvertible {
  /// `section.key` (`train.learning_rate`, `data.subset`), `layer.N.key` (N counts `[[layer]]`
  /// tables from 0), `hidden` (units of every dense layer but the last) or a bare [train] or
  /// [data] key.
  public var key: String
  public var value: TOMLValue

  public init(key: String, value: TOMLValue) {
    self.key = key
    self.value = value
  }

  /// Parses `key=value`; the value is read as TOML (`0.1`, `true`, `"relu"`), or taken as a
  /// string if it is not valid TOML (`relu`).
  public init(parsing text: String) throws {
    guard let eq = text.firstIndex(of: "="), eq != text.startIndex else {
      throw NerveError(.badValue, at: "--set", "expected key=value, got '\(text)'")
    }
    key = text[..<eq].trimmingCharacters(in: .whitespaces)
    value = ConfigOverride.value(parsing: String(text[text.index(after: eq)...]))
  }

  static func value(parsing text: String) -> TOMLValue {
    let t = text.trimmingCharacters(in: .whitespaces)
    if let table = try? TOMLParser.parse("v = \(t)", file: "value"), let v = table["v"] { return v }
    return .string(t)
  }

  public var description: String {
    if case .string(let s) = value { return "\(key)=\(s)" }
    return "\(key)=\(value)"
  }

  static let dataKeys: Set<String> = [
    "set", "path", "subset", "indices", "validation", "test_fraction", "validation_fraction",
    "standardize", "split_seed",
  ]

  /// `table` with this override applied.
  /// - Throws: `NerveError` naming `source` and the key if it points nowhere.
  public func apply(to table: TOMLTable, source: String) throws -> TOMLTable {
    var root = table
    let parts = key.split(separator: ".").map(String.init)
    func fail(_ message: String) -> NerveError { NerveError(.badValue, at: source, "\(key): \(message)") }
    func edit(section: String, _ body: (inout TOMLTable) throws -> Void) throws {
      var t: TOMLTable
      switch root[section] {
      case .table(let existing)?: t = existing
      case nil: t = TOMLTable()
      default: throw fail("'\(section)' is not a table in the config")
      }
      try body(&t)
      root.replace(section, with: .table(t))
    }
    func editLayers(_ body: (inout [TOMLTable]) throws -> Void) throws {
      guard case .array(let items)? = root["layer"] else { throw fail("the config has no [[layer]] tables") }
      var tables = items.compactMap { item -> TOMLTable? in if case .table(let t) = item { return t } else { return nil } }
      try body(&tables)
      root.replace("layer", with: .array(tables.map { .table($0) }))
    }
    switch parts.count {
    case 1 where parts[0] == "hidden":
      try editLayers { layers in
        let dense = layers.indices.filter { if case .string(let s)? = layers[$0]["type"] { return s.lowercased() == "dense" } else { return false } }
        guard dense.count >= 2 else { throw fail("needs at least two dense layers (hidden and output)") }
        for i in dense.dropLast() { layers[i].replace("units", with: value) }
      }
    case 1:
      let section = Self.dataKeys.contains(parts[0]) ? "data" : "train"
      try edit(section: section) { $0.replace(parts[0], with: value) }
    case 2 where ["train", "data"].contains(parts[0]):
      try edit(section: parts[0]) { $0.replace(parts[1], with: value) }
    case 2 where parts[0] == "":
      throw fail("empty section name")
    case 3 where parts[0] == "layer":
      guard let n = Int(parts[1]) else { throw fail("expected layer.N.key with N a number") }
      try editLayers { layers in
        guard layers.indices.contains(n) else {
          throw fail("the config has \(layers.count) [[layer]] tables (0...\(layers.count - 1))")
        }
        layers[n].replace(parts[2], with: value)
      }
    default:
      throw fail("unknown key; expected train.KEY, data.KEY, layer.N.KEY, hidden, or a [train]/[data] key")
    }
    return root
  }
}

extension ExperimentConfig {
  /// Reads a config file and applies `overrides` (as `nerve train --set` does).
  public init(contentsOf path: String, overrides: [ConfigOverride]) throws {
    var table = try TOMLParser.parse(contentsOf: path)
    for o in overrides { table = try o.apply(to: table, source: path) }
    try self.init(table: table, file: path)
  }
}

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
