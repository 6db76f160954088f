// TOML: the subset of TOML that Nerve's config files use, with line numbers for every value.
//
// Supported: comments, `key = value`, bare and quoted keys, `[table]` and `[[array.of.tables]]`
// headers (dotted names), basic "strings" with escapes and 'literal' strings, integers (with
// `_` separators), floats (with exponents), booleans, arrays (across lines, trailing commas) and
// inline tables. Not supported: dates, multi-line strings, dotted keys on the left of `=`.
import Foundation

/// A parsed TOML value.
public indirect enum TOMLValue: Equatable, Sendable, CustomStringConvertible {
  case string(String)
  case integer(Int)
  case float(Double)
  case boolean(Bool)
  case array([TOMLValue])
  case table(TOMLTable)

  public var description: String {
    switch self {
    case .string(let s): "\"\(s)\""
    case .integer(let i): "\(i)"
    case .float(let d): "\(d)"
    case .boolean(let b): "\(b)"
    case .array(let a): "[" + a.map(\.description).joined(separator: ", ") + "]"
    case .table: "{...}"
    }
  }

  /// A short name of the value's type for error messages.
  public var typeName: String {
    switch self {
    case .string: "a string"
    case .integer: "an integer"
    case .float: "a number"
    case .boolean: "a boolean"
    case .array: "an array"
    case .table: "a table"
    }
  }
}

/// A TOML table: keys in file order, each with the line it was defined on.
public struct TOMLTable: Equatable, Sendable {
  public private(set) var keys: [String] = []
  var values: [String: TOMLValue] = [:]
  var lines: [String: Int] = [:]
  /// The line of the table's header (0 for the root).
  public var line: Int = 0

  public init() {}

  public subscript(key: String) -> TOMLValue? { values[key] }

  /// The line `key` was defined on (or the table's own line).
  public func line(of key: String) -> Int { lines[key] ?? line }

  mutating func set(_ key: String, _ value: TOMLValue, line: Int) {
    if values[key] == nil { keys.append(key) }
    values[key] = value
    lines[key] = line
  }

  /// Replaces a key's value, keeping its line (or taking the table's line if it is new).
  mutating func replace(_ key: String, with value: TOMLValue) {
    set(key, value, line: lines[key] ?? line)
  }

  mutating func remove(_ key: String) {
    guard values.removeValue(forKey: key) != nil else { return }
    keys.removeAll { $0 == key }
    lines.removeValue(forKey: key)
  }
}

/// Parses TOML text; errors are `NerveError`s located at `file:line`.
public struct TOMLParser {
  let file: String
  /// Unicode scalars, not Characters: "\r\n" is one Character, which would hide newlines.
  var chars: [Unicode.Scalar]
  var i = 0
  var line = 1

  /// Parses `text`, naming `file` in errors.
  public static func parse(_ text: String, file: String) throws -> TOMLTable {
    var p = TOMLParser(file: file, chars: Array(text.unicodeScalars))
    return try p.document()
  }

  /// Reads and parses a file.
  public static func parse(contentsOf path: String) throws -> TOMLTable {
    let data = try FileBytes.read(path)
    guard let text = String(data: data, encoding: .utf8) else {
      throw NerveError(.badFile, at: path, "not UTF-8 text")
    }
    return try parse(text, file: path)
  }

  func error(_ message: String) -> NerveError { NerveError(.badFile, at: "\(file):\(line)", message) }

  var atEnd: Bool { i >= chars.count }
  var peek: Unicode.Scalar? { atEnd ? nil : chars[i] }

  mutating func advance() {
    if chars[i] == "\n" { line += 1 }
    i += 1
  }

  mutating func skipSpaces() {
    while let c = peek, c == " " || c == "\t" || c == "\r" { advance() }
  }

  /// Skips spaces, comments and newlines (inside arrays).
  mutating func skipBlank() {
    while let c = peek {
      if c == " " || c == "\t" || c == "\r" || c == "\n" {
        advance()
      } else if c == "#" {
        while let d = peek, d != "\n" { advance() }
      } else {
        return
      }
    }
  }

  mutating func endOfLine() throws {
    skipSpaces()
    if peek == "#" { while let d = peek, d != "\n" { advance() } }
    guard atEnd || peek == "\n" else { throw error("unexpected '\(Character(peek!))' after the value") }
  }

  mutating func document() throws -> TOMLTable {
    var root = TOMLTable()
    // The path of the current table and whether it is an element of an array of tables.
    var path: [String] = []
    var definedTables = Set<String>()
    while true {
      skipBlank()
      guard let c = peek else { break }
      if c == "[" {
        advance()
        let isArray = peek == "["
        if isArray { advance() }
        skipSpaces()
        var names = [try key()]
        skipSpaces()
        while peek == "." {
          advance()
          skipSpaces()
          names.append(try key())
          skipSpaces()
        }
        guard peek == "]" else { throw error("expected ']' to close the table header") }
        advance()
        if isArray {
          guard peek == "]" else { throw error("expected ']]' to close the array-of-tables header") }
          advance()
        }
        try endOfLine()
        let headerLine = line
        if isArray {
          try Self.appendTable(&root, names, line: headerLine, error: error)
        } else {
          let joined = names.joined(separator: ".")
          guard !definedTables.contains(joined) else { throw error("table [\(joined)] is defined twice") }
          definedTables.insert(joined)
          try Self.ensureTable(&root, names, line: headerLine, error: error)
        }
        path = names
      } else {
        let k = try key()
        skipSpaces()
        guard peek == "=" else { throw error("expected '=' after the key '\(k)'") }
        advance()
        skipSpaces()
        let valueLine = line
        let v = try value()
        try endOfLine()
        try Self.assign(&root, path, k, v, line: valueLine, error: error)
      }
    }
    return root
  }

  mutating func key() throws -> String {
    guard let c = peek else { throw error("expected a key") }
    if c == "\"" || c == "'" { return try string() }
    var s = ""
    while let d = peek, d.properties.isAlphabetic || ("0"..."9").contains(d) || d == "_" || d == "-" {
      s.unicodeScalars.append(d)
      advance()
    }
    guard !s.isEmpty else { throw error("expected a key, found '\(Character(c))'") }
    return s
  }

  mutating func value() throws -> TOMLValue {
    guard let c = peek else { throw error("expected a value") }
    switch c {
    case "\"", "'": return .string(try string())
    case "[":
      advance()
      var items: [TOMLValue] = []
      skipBlank()
      while peek != "]" {
        guard !atEnd else { throw error("unterminated array") }
        items.append(try value())
        skipBlank()
        guard !atEnd else { throw error("unterminated array: expected ']'") }
        if peek == "," {
          advance()
          skipBlank()
        } else if peek != "]" {
          throw error("expected ',' or ']' in the array")
        }
      }
      advance()
      return .array(items)
    case "{":
      advance()
      var table = TOMLTable()
      table.line = line
      skipSpaces()
      while peek != "}" {
        let k = try key()
        skipSpaces()
        guard peek == "=" else { throw error("expected '=' after '\(k)' in the inline table") }
        advance()
        skipSpaces()
        table.set(k, try value(), line: line)
        skipSpaces()
        if peek == "," {
          advance()
          skipSpaces()
        } else if peek != "}" {
          throw error("expected ',' or '}' in the inline table")
        }
      }
      advance()
      return .table(table)
    default:
      var token = ""
      while let d = peek, !" \t\r\n,]}#".unicodeScalars.contains(d) {
        token.unicodeScalars.append(d)
        advance()
      }
      if token.isEmpty { throw error("expected a value") }
      if token == "true" { return .boolean(true) }
      if token == "false" { return .boolean(false) }
      let clean = token.replacingOccurrences(of: "_", with: "")
      if let v = Int(clean) { return .integer(v) }
      if clean.contains(where: { $0.isNumber }), !clean.lowercased().contains("n"), let d = Double(clean), d.isFinite {
        return .float(d)
      }
      throw error("'\(token)' is not a value (strings need quotes)")
    }
  }

  mutating func string() throws -> String {
    let quote = peek!
    advance()
    var s = ""
    while true {
      guard let c = peek, c != "\n" else { throw error("unterminated string") }
      advance()
      if c == quote { return s }
      if c == "\\" && quote == "\"" {
        guard let e = peek else { throw error("unterminated string") }
        advance()
        switch e {
        case "n": s.append("\n")
        case "t": s.append("\t")
        case "\\": s.append("\\")
        case "\"": s.append("\"")
        case "u":
          var hex = ""
          for _ in 0..<4 {
            guard let h = peek else { throw error("bad \\u escape") }
            hex.unicodeScalars.append(h)
            advance()
          }
          guard let code = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(code) else {
            throw error("bad \\u escape '\(hex)'")
          }
          s.unicodeScalars.append(scalar)
        default: throw error("unknown escape '\\\(e)'")
        }
      } else {
        s.unicodeScalars.append(c)
      }
    }
  }

  // MARK: Building the tree

  static func ensureTable(
    _ root: inout TOMLTable, _ names: [String], line: Int, error: (String) -> NerveError
  ) throws {
    guard let first = names.first else { return }
    var child: TOMLTable
    switch root[first] {
    case nil:
      child = TOMLTable()
      child.line = line
    case .table(let t): child = t
    case .array(var items):
      // [a.b] after [[a]] extends the last element of a.
      guard case .table(var last)? = items.last else {
        throw error("'\(first)' is already a value, not a table")
      }
      try ensureTable(&last, Array(names.dropFirst()), line: line, error: error)
      items[items.count - 1] = .table(last)
      root.set(first, .array(items), line: root.line(of: first))
      return
    default: throw error("'\(first)' is already a value, not a table")
    }
    try ensureTable(&child, Array(names.dropFirst()), line: line, error: error)
    root.set(first, .table(child), line: root.lines[first] ?? line)
  }

  static func appendTable(
    _ root: inout TOMLTable, _ names: [String], line: Int, error: (String) -> NerveError
  ) throws {
    let first = names[0]
    if names.count == 1 {
      var items: [TOMLValue] = []
      if let existing = root[first] {
        guard case .array(let a) = existing else { throw error("'\(first)' is already a value, not an array of tables") }
        items = a
      }
      var t = TOMLTable()
      t.line = line
      items.append(.table(t))
      root.set(first, .array(items), line: root.lines[first] ?? line)
      return
    }
    switch root[first] {
    case nil:
      var t = TOMLTable()
      t.line = line
      try appendTable(&t, Array(names.dropFirst()), line: line, error: error)
      root.set(first, .table(t), line: line)
    case .table(var t):
      try appendTable(&t, Array(names.dropFirst()), line: line, error: error)
      root.set(first, .table(t), line: root.line(of: first))
    case .array(var items):
      guard case .table(var last)? = items.last else { throw error("'\(first)' is not a table") }
      try appendTable(&last, Array(names.dropFirst()), line: line, error: error)
      items[items.count - 1] = .table(last)
      root.set(first, .array(items), line: root.line(of: first))
    default: throw error("'\(first)' is already a value, not a table")
    }
  }

  static func assign(
    _ root: inout TOMLTable, _ path: [String], _ key: String, _ value: TOMLValue, line: Int,
    error: (String) -> NerveError
  ) throws {
    if path.isEmpty {
      guard root[key] == nil else { throw error("'\(key)' is defined twice") }
      root.set(key, value, line: line)
      return
    }
    let first = path[0]
    switch root[first] {
    case .table(var t):
      try assign(&t, Array(path.dropFirst()), key, value, line: line, error: error)
      root.set(first, .table(t), line: root.line(of: first))
    case .array(var items):
      guard case .table(var last)? = items.last else { throw error("'\(first)' is not a table") }
      try assign(&last, Array(path.dropFirst()), key, value, line: line, error: error)
      items[items.count - 1] = .table(last)
      root.set(first, .array(items), line: root.line(of: first))
    default:
      throw error("'\(first)' is not a table")
    }
  }
}
