// ModelFile: saving and loading models as safetensors, with the architecture in the metadata.
import Foundation

/// The model file format: safetensors (https://github.com/huggingface/safetensors).
///
/// Layout: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw little-endian float32 data. Tensors are named
/// `layers.<index>.<name>` (`layers.0.weight` is [inputs, outputs]: `y = x @ W + b`).
/// `__metadata__` holds `format` = `nerve`, `nerve.format_version`, the architecture
/// (`nerve.architecture`, JSON) and the input preprocessing (`nerve.preprocessing`, JSON).
/// Python reads the weights with `safetensors.numpy.load_file(path)`.
public enum ModelFile {
  /// The format version this build writes and reads.
  public static let formatVersion = 1

  struct Architecture: Codable {
    var input: [Int]
    var layers: [LayerRecord]
  }

  /// Writes `model` to `path` atomically (a temporary file renamed into place).
  public static func save(_ model: Sequential, to path: String) throws {
    var tensors: [(String, [Int], UnsafeBufferPointer<Float>)] = []
    for (i, layer) in model.layers.enumerated() {
      for p in layer.parameters {
        tensors.append(
          ("layers.\(i).\(p.name)", p.shape,
           UnsafeBufferPointer(start: model.parameterStorage.pointer + layer.parameterOffset + p.offset, count: p.count)))
      }
      for s in layer.stateTensors {
        tensors.append(
          ("layers.\(i).\(s.name)", s.shape,
           UnsafeBufferPointer(start: model.stateStorage.pointer + model.stateOffsets[i] + s.offset, count: s.count)))
      }
    }
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let arch = Architecture(input: model.inputShape, layers: model.layers.map(\.record))
    var header: [String: Any] = [
      "__metadata__": [
        "format": "nerve",
        "nerve.format_version": String(formatVersion),
        "nerve.library": nerveVersion,
        "nerve.architecture": String(decoding: try encoder.encode(arch), as: UTF8.self),
        "nerve.preprocessing": String(decoding: try encoder.encode(model.preprocessing), as: UTF8.self),
      ]
    ]
    var offset = 0
    for (name, shape, data) in tensors {
      let bytes = data.count * 4
      header[name] = ["dtype": "F32", "shape": shape, "data_offsets": [offset, offset + bytes]]
      offset += bytes
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data(capacity: 8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(json)
    for (_, _, data) in tensors {
      // float32 little-endian, which is this machine's layout.
      out.append(UnsafeBufferPointer(start: UnsafeRawPointer(data.baseAddress!).assumingMemoryBound(to: UInt8.self), count: data.count * 4))
    }
    try AtomicFile.write(out, to: path)
  }

  /// Reads a model written by `save`.
  /// - Throws: `NerveError` naming the file and the problem for missing, truncated or corrupt
  ///   files, unknown formats, and tensors that do not match the architecture.
  public static func load(from path: String) throws -> Sequential {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw NerveError(
        .badFile, at: path,
        FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file")
    }
    func fail(_ message: String) -> NerveError { NerveError(.badFile, at: path, message) }
    guard data.count >= 8 else {
      throw fail("truncated: a safetensors file starts with an 8-byte header length, the file has \(data.count) bytes")
    }
    let headerLength = data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    guard headerLength <= UInt64(data.count - 8) else {
      throw fail("truncated or not a model file: the header claims \(headerLength) bytes but only \(data.count - 8) follow")
    }
    let headerData = data.subdata(in: 8..<(8 + Int(headerLength)))
    guard let header = try? JSONSerialization.jsonObject(with: headerData) as? [String: Any] else {
      throw fail("corrupt: the safetensors header is not a JSON object")
    }
    guard let meta = header["__metadata__"] as? [String: String], meta["format"] == "nerve" else {
      throw fail("not a Nerve model: the safetensors metadata lacks format = nerve")
    }
    guard let versionText = meta["nerve.format_version"], let version = Int(versionText) else {
      throw fail("corrupt: metadata nerve.format_version is missing or not a number")
    }
    guard version <= formatVersion else {
      throw fail("written by a newer Nerve (model format \(version)); this build reads format \(formatVersion)")
    }
    guard let archText = meta["nerve.architecture"],
      let arch = try? JSONDecoder().decode(Architecture.self, from: Data(archText.utf8))
    else {
      throw fail("corrupt: metadata nerve.architecture is missing or not valid")
    }
    var layers: [Layer] = []
    for (i, record) in arch.layers.enumerated() {
      layers += try record.makeLayers(at: "\(path): layer \(i)")
    }
    let model: Sequential
    do {
      model = try Sequential(input: arch.input, layers: layers)
    } catch let e as NerveError {
      throw fail("the architecture does not build: \(e.description)")
    }
    if let pre = meta["nerve.preprocessing"] {
      guard let p = try? JSONDecoder().decode(Preprocessing.self, from: Data(pre.utf8)) else {
        throw fail("corrupt: metadata nerve.preprocessing is not valid")
      }
      model.preprocessing = p
    }
    let dataStart = 8 + Int(headerLength)
    let dataLength = data.count - dataStart
    var expected = Set(header.keys.filter { $0 != "__metadata__" })
    func fill(_ name: String, _ shape: [Int], _ dest: UnsafeMutablePointer<Float>) throws {
      guard let entry = header[name] as? [String: Any] else {
        throw fail("tensor '\(name)' is missing")
      }
      expected.remove(name)
      guard entry["dtype"] as? String == "F32" else {
        throw fail("tensor '\(name)' has dtype \(entry["dtype"] ?? "none"), expected F32")
      }
      guard let fileShape = entry["shape"] as? [Int], fileShape == shape else {
        throw fail("tensor '\(name)' has shape \(entry["shape"] ?? "none"), the architecture needs \(shape)")
      }
      guard let range = entry["data_offsets"] as? [Int], range.count == 2, range[0] >= 0,
        range[1] - range[0] == shape.reduce(1, *) * 4
      else {
        throw fail("tensor '\(name)' has bad data_offsets")
      }
      guard range[1] <= dataLength else {
        throw fail("truncated: tensor '\(name)' ends at byte \(range[1]) of the data but the file holds \(dataLength)")
      }
      data.withUnsafeBytes { raw in
        let src = raw.baseAddress! + dataStart + range[0]
        UnsafeMutableRawPointer(dest).copyMemory(from: src, byteCount: range[1] - range[0])
      }
    }
    for (i, layer) in model.layers.enumerated() {
      for p in layer.parameters {
        try fill("layers.\(i).\(p.name)", p.shape, model.parameterStorage.pointer + layer.parameterOffset + p.offset)
      }
      for s in layer.stateTensors {
        try fill("layers.\(i).\(s.name)", s.shape, model.stateStorage.pointer + model.stateOffsets[i] + s.offset)
      }
    }
    if let extra = expected.sorted().first {
      throw fail("tensor '\(extra)' does not belong to the architecture")
    }
    return model
  }
}

/// The library version.
public let nerveVersion = "0.1.0"

extension Sequential {
  /// Saves the model (architecture, parameters, preprocessing) to a safetensors file,
  /// atomically.
  public func save(to path: String) throws { try ModelFile.save(self, to: path) }

  /// Loads a model saved with `save(to:)`.
  public static func load(from path: String) throws -> Sequential {
    try ModelFile.load(from: path)
  }
}
