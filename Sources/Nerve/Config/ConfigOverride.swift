// ConfigOverride: one config key set from outside the file (`nerve train --set`, a sweep cell).
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
