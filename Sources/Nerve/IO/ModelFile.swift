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
    try AtomicFile.write(try contents(of: model).data(), to: path)
  }

  /// The model as a safetensors container: its tensors and its metadata.
  static func contents(of model: Sequential) throws -> Safetensors {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let arch = Architecture(input: model.inputShape, layers: model.layers.map(\.record))
    var file = Safetensors()
    file.metadata = [
      "format": "nerve",
      "nerve.format_version": String(formatVersion),
      "nerve.library": nerveVersion,
      "nerve.architecture": String(decoding: try encoder.encode(arch), as: UTF8.self),
      "nerve.preprocessing": String(decoding: try encoder.encode(model.preprocessing), as: UTF8.self),
    ]
    for t in model.tensors { file.add("layers.\(t.layer).\(t.name)", UnsafeBufferPointer(t.data), shape: t.shape) }
    return file
  }

  /// Reads a model written by `save` (this format or an earlier one).
  /// - Throws: `NerveError` naming the file and the problem for missing, truncated or corrupt
  ///   files, unknown formats, and tensors that do not match the architecture.
  public static func load(from path: String) throws -> Sequential {
    let data = try FileBytes.read(path)
    return try model(from: Safetensors(parsing: data) { NerveError(.badFile, at: path, $0) }, path: path)
  }

  /// The model a parsed container holds (a model file, or a checkpoint's model part).
  static func model(from file: Safetensors, path: String) throws -> Sequential {
    func fail(_ message: String) -> NerveError { NerveError(.badFile, at: path, message) }
    let meta = file.metadata
    guard meta["format"] == "nerve" || meta["format"] == "nerve-checkpoint" else {
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
    var expected = Set(file.names.filter { $0.hasPrefix("layers.") })
    for t in model.tensors {
      let name = "layers.\(fileIndex[t.layer]).\(t.name)"
      do {
        try file.copy(name, shape: t.shape, into: t.data, fail)
      } catch let e as NerveError where e.message.contains("has shape") {
        throw fail(e.message.replacingOccurrences(of: "expected", with: "the architecture needs"))
      }
      expected.remove(name)
    }
    if let extra = expected.sorted().first {
      throw fail("tensor '\(extra)' does not belong to the architecture")
    }
    return model
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
