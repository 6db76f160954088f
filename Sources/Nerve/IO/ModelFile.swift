// ModelFile: saving and loading models as safetensors, with the architecture in the metadata.
import Foundation

/// The model file format: safetensors (https://github.com/huggingface/safetensors).
///
/// Layout: an 8-byte little-endian header length, a JSON header naming each tensor's dtype,
/// shape and byte range, then the raw little-endian float32 data. Tensors are named
/// `layers.<index>.<name>`, with layers numbered as in `Sequential.layers` (`layers.0.weight` is
/// [inputs, outputs]: `y = x @ W + b`). `__metadata__` holds `format` = `nerve`,
/// `nerve.format_version`, the architecture (`nerve.architecture`, JSON) and the input
/// preprocessing (`nerve.preprocessing`, JSON). Python reads the weights with
/// `safetensors.numpy.load_file(path)`.
///
/// Format 1 (Nerve 0.1.0) listed a layer's activation as a layer of its own (`dense`,
/// `sigmoid`, `dense`, `softmax`) and numbered tensors that way; it still loads, each activation
/// joining the layer before it.
public enum ModelFile {
  /// The format version this build writes; it reads this one and every earlier one.
  public static let formatVersion = 2

  struct Architecture: Codable {
    var input: [Int]
    var layers: [LayerRecord]
  }

  /// Writes `model` to `path` atomically (a temporary file renamed into place).
  public static func save(_ model: Sequential, to path: String) throws {
    let tensors = model.tensors
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
    for t in tensors {
      let bytes = t.data.count * 4
      header["layers.\(t.layer).\(t.name)"] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + bytes]]
      offset += bytes
    }
    var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    while json.count % 8 != 0 { json.append(0x20) }
    var out = Data(capacity: 8 + json.count + offset)
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    out.append(json)
    for t in tensors {
      // float32 little-endian, which is this machine's layout.
      out.append(UnsafeBufferPointer(start: UnsafeRawPointer(t.data.baseAddress!).assumingMemoryBound(to: UInt8.self), count: t.data.count * 4))
    }
    try AtomicFile.write(out, to: path)
  }

  /// Reads a model written by `save` (this format or an earlier one).
  /// - Throws: `NerveError` naming the file and the problem for missing, truncated or corrupt
  ///   files, unknown formats, and tensors that do not match the architecture.
  public static func load(from path: String) throws -> Sequential {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw NerveError(
        .badFile, at: path,
        FileManager.default.fileExists(atPath: path) ? "cannot read the file" : "no such file")
    }
    func fail(_ message: String) -> NerveError { NerveError(.badFile, at: path, message) }
    let (header, dataStart) = try readHeader(data, fail)
    guard let meta = header["__metadata__"] as? [String: String], meta["format"] == "nerve" else {
      throw fail("not a Nerve model: the safetensors metadata lacks format = nerve")
    }
    guard let versionText = meta["nerve.format_version"], let version = Int(versionText), version >= 1 else {
      throw fail("corrupt: metadata nerve.format_version is missing or not a number")
    }
    guard version <= formatVersion else {
      throw fail("written by a newer Nerve (model format \(version)); this build reads formats 1 to \(formatVersion)")
    }
    guard let archText = meta["nerve.architecture"],
      let arch = try? JSONDecoder().decode(Architecture.self, from: Data(archText.utf8))
    else {
      throw fail("corrupt: metadata nerve.architecture is missing or not valid")
    }
    // Each layer's index in the file's tensor names.
    let (records, fileIndex) = version == 1 ? joiningActivations(arch.layers) : (arch.layers, Array(arch.layers.indices))
    var layers: [Layer] = []
    for (i, record) in records.enumerated() {
      layers.append(try record.makeLayer(at: "\(path): layer \(i)"))
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
    var expected = Set(header.keys.filter { $0 != "__metadata__" })
    for t in model.tensors {
      let name = "layers.\(fileIndex[t.layer]).\(t.name)"
      try fill(t.data, from: data, dataStart: dataStart, entry: header[name], name: name, shape: t.shape, fail)
      expected.remove(name)
    }
    if let extra = expected.sorted().first {
      throw fail("tensor '\(extra)' does not belong to the architecture")
    }
    return model
  }

  /// The JSON header of a safetensors file and the offset where its data starts.
  private static func readHeader(_ data: Data, _ fail: (String) -> NerveError) throws -> ([String: Any], Int) {
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
    return (header, 8 + Int(headerLength))
  }

  /// Copies one tensor's data after checking its header entry against the architecture.
  private static func fill(
    _ dest: UnsafeMutableBufferPointer<Float>, from data: Data, dataStart: Int, entry: Any?, name: String,
    shape: [Int], _ fail: (String) -> NerveError
  ) throws {
    guard let entry = entry as? [String: Any] else { throw fail("tensor '\(name)' is missing") }
    guard entry["dtype"] as? String == "F32" else {
      throw fail("tensor '\(name)' has dtype \(entry["dtype"] ?? "none"), expected F32")
    }
    guard let fileShape = entry["shape"] as? [Int], fileShape == shape else {
      throw fail("tensor '\(name)' has shape \(entry["shape"] ?? "none"), the architecture needs \(shape)")
    }
    guard let range = entry["data_offsets"] as? [Int], range.count == 2, range[0] >= 0,
      range[1] - range[0] == dest.count * 4
    else {
      throw fail("tensor '\(name)' has bad data_offsets")
    }
    let dataLength = data.count - dataStart
    guard range[1] <= dataLength else {
      throw fail("truncated: tensor '\(name)' ends at byte \(range[1]) of the data but the file holds \(dataLength)")
    }
    data.withUnsafeBytes { raw in
      UnsafeMutableRawPointer(dest.baseAddress!).copyMemory(
        from: raw.baseAddress! + dataStart + range[0], byteCount: range[1] - range[0])
    }
  }

  /// Format 1's layer list with each activation record joined to the dense or convolution
  /// record before it, and the format-1 index of each resulting layer (where its tensors are).
  static func joiningActivations(_ records: [LayerRecord]) -> ([LayerRecord], [Int]) {
    var joined: [LayerRecord] = [], index: [Int] = []
    for (i, r) in records.enumerated() {
      if Activation(rawValue: r.type) != nil, let last = joined.last, ["dense", "conv2d"].contains(last.type),
        last.activation == nil
      {
        joined[joined.count - 1].activation = r.type
      } else {
        joined.append(r)
        index.append(i)
      }
    }
    return (joined, index)
  }
}

extension Sequential {
  /// Every parameter and state tensor: its layer, its name within the layer (`weight`,
  /// `running_mean`, ...), its shape and a view of its values.
  var tensors: [(layer: Int, name: String, shape: [Int], data: UnsafeMutableBufferPointer<Float>)] {
    layers.enumerated().flatMap { i, layer in
      layer.parameters.map {
        (i, $0.name, $0.shape,
         UnsafeMutableBufferPointer(start: parameterStorage.pointer + layer.parameterOffset + $0.offset, count: $0.count))
      }
        + layer.stateTensors.map {
          (i, $0.name, $0.shape,
           UnsafeMutableBufferPointer(start: stateStorage.pointer + stateOffsets[i] + $0.offset, count: $0.count))
        }
    }
  }
}
