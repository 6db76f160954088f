// Safetensors: the container of model files and checkpoints. An 8-byte little-endian header
// length, a JSON header (each tensor's dtype, shape and byte range, and string metadata), then
// the tensors' raw little-endian bytes. https://github.com/huggingface/safetensors
import Foundation

/// A safetensors file's contents: named tensors of float32 or int32, and string metadata.
struct Safetensors {
  enum DType: String { case f32 = "F32", i32 = "I32" }

  struct Entry {
    var dtype: DType
    var shape: [Int]
    var bytes: Data
  }

  /// The JSON header: `__metadata__` (strings) beside one description per tensor. A
  /// description's fields are read leniently (nil when missing or of the wrong type) so that the
  /// parser can say which field of which tensor is wrong.
  struct Header: Codable {
    struct Tensor: Codable {
      var dtype: String?
      var shape: [Int]?
      var dataOffsets: [Int]?

      enum CodingKeys: String, CodingKey {
        case dtype, shape
        case dataOffsets = "data_offsets"
      }

      init(dtype: String, shape: [Int], dataOffsets: [Int]) {
        (self.dtype, self.shape, self.dataOffsets) = (dtype, shape, dataOffsets)
      }

      init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        dtype = try? c.decode(String.self, forKey: .dtype)
        shape = try? c.decode([Int].self, forKey: .shape)
        dataOffsets = try? c.decode([Int].self, forKey: .dataOffsets)
      }
    }

    /// What makes a header unreadable beyond "not JSON".
    enum Problem: Error {
      case metadataNotStrings
      case tensorNotAnObject(String)
    }

    static let metadataKey = "__metadata__"
    var metadata: [String: String]
    var tensors: [String: Tensor] = [:]

    init(metadata: [String: String]) { self.metadata = metadata }

    init(from decoder: Decoder) throws {
      let c = try decoder.container(keyedBy: DynamicKey.self)
      metadata = [:]
      for key in c.allKeys {
        if key.stringValue == Self.metadataKey {
          do { metadata = try c.decode([String: String].self, forKey: key) } catch { throw Problem.metadataNotStrings }
        } else {
          do { tensors[key.stringValue] = try c.decode(Tensor.self, forKey: key) } catch {
            throw Problem.tensorNotAnObject(key.stringValue)
          }
        }
      }
    }

    func encode(to encoder: Encoder) throws {
      var c = encoder.container(keyedBy: DynamicKey.self)
      try c.encode(metadata, forKey: DynamicKey(Self.metadataKey))
      for (name, tensor) in tensors { try c.encode(tensor, forKey: DynamicKey(name)) }
    }
  }

  var metadata: [String: String] = [:]
  /// In file order.
  private(set) var names: [String] = []
  private var entries: [String: Entry] = [:]

  init() {}

  mutating func add(_ name: String, _ values: UnsafeBufferPointer<Float>, shape: [Int]) {
    put(name, Entry(dtype: .f32, shape: shape, bytes: Data(buffer: values)))
  }

  mutating func add(_ name: String, int32 values: [Int32], shape: [Int]) {
    put(name, Entry(dtype: .i32, shape: shape, bytes: values.withUnsafeBufferPointer { Data(buffer: $0) }))
  }

  private mutating func put(_ name: String, _ entry: Entry) {
    if entries[name] == nil { names.append(name) }
    entries[name] = entry
  }

  /// The file's bytes (header padded to a multiple of 8 bytes, as the format recommends).
  func data() throws -> Data {
    var header = Header(metadata: metadata)
    var offset = 0
    for name in names {
      let e = entries[name]!
      header.tensors[name] = Header.Tensor(dtype: e.dtype.rawValue, shape: e.shape, dataOffsets: [offset, offset + e.bytes.count])
      offset += e.bytes.count
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var json = try encoder.encode(header)
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data(capacity: 8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(json)
    for name in names { out.append(entries[name]!.bytes) }
    return out
  }

  /// The bytes after the header: what a checksum covers.
  static func payload(of data: Data) -> Data? {
    guard data.count >= 8 else { return nil }
    let n = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    guard n <= UInt64(data.count - 8) else { return nil }
    return data.subdata(in: (8 + Int(n))..<data.count)
  }

  /// Parses a file's bytes; `fail` makes the error for each problem (naming the file).
  init(parsing data: Data, _ fail: (String) -> NerveError) throws {
    guard data.count >= 8 else {
      throw fail("truncated: a safetensors file starts with an 8-byte header length, the file has \(data.count) bytes")
    }
    let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    guard headerLength <= UInt64(data.count - 8) else {
      throw fail("truncated or not a safetensors file: the header claims \(headerLength) bytes but only \(data.count - 8) follow")
    }
    let start = 8 + Int(headerLength)
    let header: Header
    do {
      header = try JSONDecoder().decode(Header.self, from: data.subdata(in: 8..<start))
    } catch Header.Problem.metadataNotStrings {
      throw fail("corrupt: __metadata__ is not an object of strings")
    } catch Header.Problem.tensorNotAnObject(let name) {
      throw fail("corrupt: tensor '\(name)' is not described by an object")
    } catch {
      throw fail("corrupt: the safetensors header is not a JSON object")
    }
    metadata = header.metadata
    let available = data.count - start
    // In data order, so that a truncated file names the first tensor it cuts.
    let described = header.tensors.sorted { ($0.value.dataOffsets?.first ?? 0, $0.key) < ($1.value.dataOffsets?.first ?? 0, $1.key) }
    for (name, e) in described {
      guard let dtype = e.dtype.flatMap(DType.init(rawValue:)) else {
        throw fail("tensor '\(name)' has dtype \(e.dtype ?? "none"), expected F32 or I32")
      }
      guard let shape = e.shape, shape.allSatisfy({ $0 >= 0 && $0 <= 1 << 40 }) else {
        throw fail("tensor '\(name)' has a shape that is not a list of sizes")
      }
      let (count, overflow) = shape.reduce((1, false)) { acc, d in
        let (p, o) = acc.0.multipliedReportingOverflow(by: d)
        return (p, acc.1 || o)
      }
      guard let range = e.dataOffsets, range.count == 2, range[0] >= 0, range[1] >= range[0],
        !overflow, count <= Int.max / 4, range[1] - range[0] == count * 4
      else {
        throw fail("tensor '\(name)' has bad data_offsets")
      }
      guard range[1] <= available else {
        throw fail("truncated: tensor '\(name)' ends at byte \(range[1]) of the data but the file holds \(available)")
      }
      entries[name] = Entry(dtype: dtype, shape: shape, bytes: data.subdata(in: (start + range[0])..<(start + range[1])))
      names.append(name)
    }
    names.sort()
  }

  /// A tensor's entry after checking its dtype and shape.
  func entry(_ name: String, _ dtype: DType, shape: [Int], _ fail: (String) -> NerveError) throws -> Entry {
    guard let e = entries[name] else { throw fail("tensor '\(name)' is missing") }
    guard e.dtype == dtype else { throw fail("tensor '\(name)' has dtype \(e.dtype.rawValue), expected \(dtype.rawValue)") }
    guard e.shape == shape else { throw fail("tensor '\(name)' has shape \(e.shape), expected \(shape)") }
    return e
  }

  func contains(_ name: String) -> Bool { entries[name] != nil }

  func shape(of name: String) -> [Int]? { entries[name]?.shape }

  /// Float32 tensor `name` of `shape` copied into `dest` (which holds its element count).
  func copy(_ name: String, shape: [Int], into dest: UnsafeMutableBufferPointer<Float>, _ fail: (String) -> NerveError) throws {
    let e = try entry(name, .f32, shape: shape, fail)
    guard let base = dest.baseAddress else { return }
    e.bytes.copyBytes(to: UnsafeMutableRawBufferPointer(start: base, count: min(e.bytes.count, dest.count * 4)))
  }

  func floats(_ name: String, count: Int, _ fail: (String) -> NerveError) throws -> [Float] {
    var out = [Float](repeating: 0, count: count)
    try out.withUnsafeMutableBufferPointer { try copy(name, shape: [count], into: $0, fail) }
    return out
  }

  func int32s(_ name: String, count: Int, _ fail: (String) -> NerveError) throws -> [Int32] {
    let e = try entry(name, .i32, shape: [count], fail)
    var out = [Int32](repeating: 0, count: count)
    _ = out.withUnsafeMutableBytes { e.bytes.copyBytes(to: $0) }
    return out
  }
}
