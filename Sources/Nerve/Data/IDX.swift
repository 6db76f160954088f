// IDX: the array format MNIST (and Fashion-MNIST, KMNIST, EMNIST) is distributed in.
import CNerve
import Foundation

/// An array read from an IDX file: a big-endian header (two zero bytes, a type byte, the number
/// of dimensions, one 32-bit size per dimension), then the values.
public struct IDXArray: Sendable {
  /// The element type codes IDX defines.
  public enum ElementType: UInt8, Sendable, CustomStringConvertible {
    case uint8 = 0x08, int8 = 0x09, int16 = 0x0B, int32 = 0x0C, float32 = 0x0D, float64 = 0x0E

    /// The type's name and code, as messages show it: "float32 (0x0D)".
    public var description: String {
      let name: String
      switch self {
      case .uint8: name = "unsigned byte"
      case .int8: name = "signed byte"
      case .int16: name = "int16"
      case .int32: name = "int32"
      case .float32: name = "float32"
      case .float64: name = "float64"
      }
      return name + String(format: " (0x%02X)", rawValue)
    }

    var size: Int {
      switch self {
      case .uint8, .int8: 1
      case .int16: 2
      case .int32, .float32: 4
      case .float64: 8
      }
    }
  }

  /// Size of each dimension.
  public let dimensions: [Int]
  /// The element type.
  public let type: ElementType
  /// The file the array was read from.
  public let path: String
  let bytes: [UInt8]
  let dataOffset: Int

  /// Number of elements.
  public var count: Int { dimensions.reduce(1, *) }

  /// Reads an IDX file, raw or gzip-compressed.
  /// - Throws: `NerveError` naming the file if it is missing, not IDX, or truncated.
  public init(contentsOf path: String) throws {
    let bytes = try Gzip.readFile(path)
    guard bytes.count >= 4 else {
      throw NerveError(
        .badFile, at: path, "truncated: an IDX header needs at least 4 bytes, the file has \(bytes.count)")
    }
    guard bytes[0] == 0, bytes[1] == 0 else {
      throw NerveError(
        .badFile, at: path,
        String(format: "not an IDX file: it starts with 0x%02X%02X, expected 0x0000", bytes[0], bytes[1]))
    }
    guard let type = ElementType(rawValue: bytes[2]) else {
      throw NerveError(
        .badFile, at: path,
        String(format: "unknown IDX element type 0x%02X (expected 0x08, 0x09, 0x0B, 0x0C, 0x0D or 0x0E)", bytes[2]))
    }
    let rank = Int(bytes[3])
    guard rank >= 1 && rank <= 8 else {
      throw NerveError(.badFile, at: path, "IDX header says \(rank) dimensions; expected 1 to 8")
    }
    let header = 4 + 4 * rank
    guard bytes.count >= header else {
      throw NerveError(
        .badFile, at: path,
        "truncated: the IDX header for \(rank) dimensions needs \(header) bytes, the file has \(bytes.count)")
    }
    var dims: [Int] = []
    for d in 0..<rank {
      let o = 4 + 4 * d
      dims.append(Int(bytes[o]) << 24 | Int(bytes[o + 1]) << 16 | Int(bytes[o + 2]) << 8 | Int(bytes[o + 3]))
    }
    // Sizes from the header are multiplied with overflow checks before anything trusts them.
    guard let count = Sizes.product(dims), let expected = Sizes.product([count, type.size]) else {
      throw NerveError(.badFile, at: path, "corrupt: dimensions \(dims) describe more values than any file holds")
    }
    let found = bytes.count - header
    guard found == expected else {
      throw NerveError(
        .badFile, at: path,
        found < expected
          ? "truncated: dimensions \(dims) need \(expected) bytes of data, found \(found)"
          : "corrupt: dimensions \(dims) need \(expected) bytes of data, found \(found) (\(found - expected) extra)")
    }
    self.dimensions = dims
    self.type = type
    self.path = path
    self.bytes = bytes
    self.dataOffset = header
  }

  /// Calls `body` with the elements' bytes as the file stores them (`count` times the type's
  /// size, big-endian for multi-byte types): an image file's pixels, not copied.
  public func withElementBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) throws -> R) rethrows -> R {
    try bytes.withUnsafeBufferPointer { b in
      try body(UnsafeBufferPointer(rebasing: b[dataOffset..<dataOffset + count * type.size]))
    }
  }

  /// The elements as Float, each multiplied by `scale`.
  public func floats(scale: Float = 1) -> [Float] {
    [Float](unsafeUninitializedCapacity: count) { out, initialized in
      write(into: out.baseAddress!, scale: scale)
      initialized = count
    }
  }

  /// Writes the elements, times `scale`, to `out` (room for `count` floats).
  func write(into out: UnsafeMutablePointer<Float>, scale: Float) {
    write(elements: 0..<count, into: out, scale: scale)
  }

  /// `write(elements:into:scale:)` with `context`'s threads for bytes (image files): each
  /// thread converts, and first touches, its own part of `out`.
  func write(
    elements: Range<Int>, into out: UnsafeMutablePointer<Float>, scale: Float, context: ComputeContext
  ) throws {
    guard type == .uint8 else { return write(elements: elements, into: out, scale: scale) }
    precondition(elements.lowerBound >= 0 && elements.upperBound <= count)
    try bytes.withUnsafeBufferPointer { b in
      try context.check(
        nerve_pixels_to_floats(
          context.raw, out, b.baseAddress! + dataOffset + elements.lowerBound, Int64(elements.count), scale))
    }
  }

  /// Writes the elements `elements` (flat indices), times `scale`, to `out` (room for
  /// `elements.count` floats): a slice of a file without converting the rest.
  func write(elements: Range<Int>, into out: UnsafeMutablePointer<Float>, scale: Float) {
    precondition(elements.lowerBound >= 0 && elements.upperBound <= count)
    let n = elements.count
    bytes.withUnsafeBufferPointer { b in
      let p = b.baseAddress! + dataOffset + elements.lowerBound * type.size
      switch type {
      case .uint8: for i in 0..<n { out[i] = Float(p[i]) * scale }
      case .int8: for i in 0..<n { out[i] = Float(Int8(bitPattern: p[i])) * scale }
      case .int16:
        for i in 0..<n {
          out[i] = Float(Int16(bitPattern: UInt16(p[2 * i]) << 8 | UInt16(p[2 * i + 1]))) * scale
        }
      case .int32: for i in 0..<n { out[i] = Float(Int32(bitPattern: word(p + 4 * i))) * scale }
      case .float32: for i in 0..<n { out[i] = Float(bitPattern: word(p + 4 * i)) * scale }
      case .float64:
        for i in 0..<n {
          let hi = UInt64(word(p + 8 * i)), lo = UInt64(word(p + 8 * i + 4))
          out[i] = Float(Double(bitPattern: hi << 32 | lo)) * scale
        }
      }
    }
  }

  /// The elements as integers (for label files).
  /// - Throws: `NerveError` naming the file if the element type is not an integer type.
  public func integers() throws -> [Int] {
    guard [.uint8, .int8, .int16, .int32].contains(type) else {
      throw NerveError(.badFile, at: path, "holds \(type) values; labels must be integers (IDX type 0x08, 0x09, 0x0B or 0x0C)")
    }
    return floats().map { Int($0) }
  }

  private func word(_ p: UnsafePointer<UInt8>) -> UInt32 {
    UInt32(p[0]) << 24 | UInt32(p[1]) << 16 | UInt32(p[2]) << 8 | UInt32(p[3])
  }
}
