// JSON Lines files: one record per line, appended one whole line per write, read back typed.
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Appends records to a JSON Lines file, one whole line per `write(2)`, so a reader (or a
/// crash) sees complete lines only, except possibly a torn last one, which `JSONLinesFile`
/// skips. Values that are not finite are written as `null`; keys are sorted.
public final class JSONLinesWriter {
  public let path: String
  private let fd: Int32

  /// Opens `path` for appending; `truncate` starts it empty (a new run).
  /// - Throws: `NerveError(.writeFailed)` naming the file if it cannot be opened.
  public init(path: String, truncate: Bool) throws {
    self.path = path
    fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0o644)
    guard fd >= 0 else {
      throw NerveError(.writeFailed, at: path, "cannot open for writing: \(String(cString: strerror(errno)))")
    }
  }

  deinit { close(fd) }

  /// Bytes in the file now.
  public var size: Int {
    var st = stat()
    return fstat(fd, &st) == 0 ? Int(st.st_size) : 0
  }

  /// Cuts the file back to its first `length` bytes (a resumed run drops what it will redo).
  public func truncate(to length: Int) throws {
    guard length >= 0, length <= size else {
      throw NerveError(.badValue, at: path, "has \(size) bytes, fewer than the \(length) the checkpoint recorded: is it the same run's metrics file?")
    }
    guard ftruncate(fd, off_t(length)) == 0 else {
      throw NerveError(.writeFailed, at: path, "cannot truncate: \(String(cString: strerror(errno)))")
    }
  }

  /// Appends one record as one line.
  public func append<T: Encodable>(_ record: T) throws {
    var line = try JSONLinesFile.encoder.encode(record)
    line.append(0x0A)
    let written = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    guard written == line.count else {
      let why = written < 0 ? String(cString: strerror(errno)) : "only \(written) of \(line.count) bytes written"
      throw NerveError(.writeFailed, at: path, "cannot append a record: \(why)")
    }
  }
}

/// The lines of a JSON Lines file, decoded on demand.
public struct JSONLinesFile {
  public let path: String
  /// Every complete line, in order (blank lines left out).
  public let lines: [Data]
  /// Set when the file's last line was cut short (a run killed while writing it) and skipped.
  public let warning: String?

  static let encoder: JSONEncoder = {
    let e = JSONEncoder()
    e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return e
  }()

  /// Reads `path`; a missing file reads as empty when `missingIsEmpty`.
  /// - Throws: `NerveError(.badFile)` if the file cannot be read.
  public init(contentsOf path: String, missingIsEmpty: Bool = false) throws {
    self.path = path
    if missingIsEmpty && !FileManager.default.fileExists(atPath: path) {
      lines = []
      warning = nil
      return
    }
    let data = try FileBytes.read(path)
    var parts = data.split(separator: 0x0A, omittingEmptySubsequences: false).map { Data($0) }
    var torn: String?
    // Every record ends with a newline: what follows the last one is a record cut short.
    if let last = parts.last, !last.isEmpty {
      torn = "the last line is incomplete (\(last.count) bytes; a run stopped while writing it?) and was skipped"
    }
    parts.removeLast()
    lines = parts.filter { !$0.allSatisfy { $0 == 0x20 || $0 == 0x0D || $0 == 0x09 } }
    warning = torn.map { "\(path): \($0)" }
  }

  /// Line `index` decoded as `T`.
  /// - Throws: `NerveError(.badFile)` naming the file, the line and what was expected.
  public func decode<T: Decodable>(_ type: T.Type, line index: Int, as what: String) throws -> T {
    do {
      return try JSONDecoder().decode(T.self, from: lines[index])
    } catch {
      throw NerveError(.badFile, at: "\(path):\(index + 1)", "not \(what): \(Self.reason(error))")
    }
  }

  /// Every line decoded as `T`.
  public func decodeAll<T: Decodable>(_ type: T.Type, as what: String) throws -> [T] {
    try lines.indices.map { try decode(T.self, line: $0, as: what) }
  }

  static func reason(_ error: Error) -> String {
    switch error {
    case DecodingError.keyNotFound(let key, _): "the key '\(key.stringValue)' is missing"
    case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
      "'\(c.codingPath.map(\.stringValue).joined(separator: "."))' has the wrong type"
    case DecodingError.dataCorrupted(let c):
      c.codingPath.isEmpty ? "not valid JSON" : "'\(c.codingPath.map(\.stringValue).joined(separator: "."))': \(c.debugDescription)"
    default: "\(error)"
    }
  }
}

/// A JSON object key made at run time (records whose keys depend on the data).
struct DynamicKey: CodingKey {
  var stringValue: String
  var intValue: Int? { nil }
  init(_ string: String) { stringValue = string }
  init?(stringValue: String) { self.stringValue = stringValue }
  init?(intValue: Int) { nil }
}

extension KeyedEncodingContainer {
  /// Encodes a number, or `null` if it is not finite (JSON has no NaN or infinity).
  mutating func encodeFinite(_ value: Double?, forKey key: Key) throws {
    guard let value else { return }
    if value.isFinite { try encode(value, forKey: key) } else { try encodeNil(forKey: key) }
  }
}

extension KeyedDecodingContainer {
  /// A number that may have been written as `null` (not finite): NaN then.
  func decodeFinite(_ key: Key) throws -> Double {
    try decodeIfPresent(Double.self, forKey: key) ?? .nan
  }
}
