// Saving and loading models: a reloaded model predicts exactly as before; damaged files are
// refused with a message naming the file.
import Foundation
import Nerve
import Testing

@Suite("Model files")
struct ModelFileTests {
  func trainedModel() throws -> Sequential {
    let model = try Sequential(input: 784, seed: 9) {
      Dense(32, activation: .lecunTanh)
      Dense(16, activation: .relu, useBias: false)
      Dense(10, activation: .softmax)
    }
    model.preprocessing = .unitScale
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 0.1), threads: 2)
    try trainer.fit(Fixtures.mnist.train.prefix(500), epochs: 1, batchSize: 25)
    return model
  }

  @Test("a reloaded model has the same architecture, parameters, preprocessing and outputs")
  func roundTrip() throws {
    let model = try trainedModel()
    let path = Fixtures.temporaryDirectory() + "/model.safetensors"
    try model.save(to: path)
    let loaded = try Sequential.load(from: path)
    #expect(loaded.summary == model.summary)
    #expect(loaded.preprocessing == model.preprocessing)
    let x = Fixtures.mnist.test.prefix(300).features
    #expect(try loaded.outputs(for: x) == model.outputs(for: x), "outputs are bit-identical")
    #expect(try loaded.predict(x) == model.predict(x))
    #expect(try loaded.parameter(layer: 1, "weight") == model.parameter(layer: 1, "weight"))
    #expect(throws: NerveError.self) { try loaded.parameter(layer: 1, "bias") }
    // No temporary file is left behind.
    let dir = (path as NSString).deletingLastPathComponent
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir) == ["model.safetensors"])
  }

  @Test("the file is safetensors: a length, a JSON header with the architecture, float32 data")
  func format() throws {
    let model = try trainedModel()
    let path = Fixtures.temporaryDirectory() + "/m.safetensors"
    try model.save(to: path)
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
    let meta = header["__metadata__"] as! [String: String]
    #expect(meta["format"] == "nerve" && meta["nerve.format_version"] == "\(ModelFile.formatVersion)")
    #expect(meta["nerve.architecture"]!.contains("\"activation\":\"lecun_tanh\""))
    // Layers are numbered as the model lists them: the activation belongs to its dense layer.
    #expect(Set(header.keys) == ["__metadata__", "layers.0.weight", "layers.0.bias", "layers.1.weight", "layers.2.weight", "layers.2.bias"])
    let w = header["layers.0.weight"] as! [String: Any]
    #expect(w["dtype"] as? String == "F32" && w["shape"] as? [Int] == [784, 32])
    #expect(n % 8 == 0)
    #expect(data.count == 8 + n + 4 * model.parameterCount)
  }

  func expectRefused(_ bytes: Data, _ words: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    let path = Fixtures.temporaryDirectory() + "/bad.safetensors"
    _ = FileManager.default.createFile(atPath: path, contents: bytes)
    do {
      _ = try Sequential.load(from: path)
      Issue.record("a damaged file loaded", sourceLocation: sourceLocation)
    } catch let e as NerveError {
      #expect(e.description.hasPrefix(path), "\(e)", sourceLocation: sourceLocation)
      for w in words { #expect(e.message.contains(w), "'\(w)' not in: \(e)", sourceLocation: sourceLocation) }
    } catch {
      Issue.record("unexpected \(error)", sourceLocation: sourceLocation)
    }
  }

  /// Rewrites a saved file's header through `edit`.
  func edited(_ data: Data, _ edit: (inout [String: Any]) -> Void) -> Data {
    let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    var header = try! JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
    edit(&header)
    let json = try! JSONSerialization.data(withJSONObject: header)
    var out = Data()
    withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
    return out + json + data.subdata(in: (8 + n)..<data.count)
  }

  @Test("missing, truncated, corrupt and mismatched files are refused with a reason")
  func damaged() throws {
    let model = try trainedModel()
    let path = Fixtures.temporaryDirectory() + "/m.safetensors"
    try model.save(to: path)
    let good = try Data(contentsOf: URL(fileURLWithPath: path))
    do {
      _ = try Sequential.load(from: path + ".nope")
      Issue.record("missing file loaded")
    } catch let e as NerveError { #expect(e.message.contains("no such file")) }
    expectRefused(good.prefix(5), ["truncated"])
    expectRefused(good.prefix(good.count - 100), ["truncated", "layers.2.weight"])
    expectRefused(Data([0xE8, 3, 0, 0, 0, 0, 0, 0]) + Data(repeating: 32, count: 300), ["truncated", "1000 bytes"])
    expectRefused(Data([4, 0, 0, 0, 0, 0, 0, 0]) + Data("nope".utf8), ["not a JSON object"])
    expectRefused(edited(good) { $0["__metadata__"] = ["format": "pt"] }, ["not a Nerve model"])
    expectRefused(edited(good) { h in
      var m = h["__metadata__"] as! [String: String]
      m["nerve.format_version"] = "7"
      h["__metadata__"] = m
    }, ["newer Nerve", "format 7"])
    expectRefused(edited(good) { h in
      var w = h["layers.0.weight"] as! [String: Any]
      w["shape"] = [32, 784]
      h["layers.0.weight"] = w
    }, ["layers.0.weight", "shape"])
    expectRefused(edited(good) { h in
      var w = h["layers.0.weight"] as! [String: Any]
      w["dtype"] = "F16"
      h["layers.0.weight"] = w
    }, ["dtype F16"])
    expectRefused(edited(good) { $0.removeValue(forKey: "layers.1.weight") }, ["layers.1.weight", "missing"])
    expectRefused(edited(good) { $0["layers.9.weight"] = ["dtype": "F32", "shape": [1], "data_offsets": [0, 4]] }, ["layers.9.weight", "does not belong"])
    expectRefused(edited(good) { h in
      var m = h["__metadata__"] as! [String: String]
      m["nerve.architecture"] = "{\"input\":[784],\"layers\":[{\"type\":\"dense\",\"units\":10},{\"type\":\"wobble\"}]}"
      h["__metadata__"] = m
    }, ["wobble"])
  }

  /// A safetensors file's tensors by name, read without Nerve.
  func rawTensors(_ path: String) throws -> [String: [Float]] {
    let data = try Data(contentsOf: URL(fileURLWithPath: path))
    let n = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
    let header = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + n))) as! [String: Any]
    var out: [String: [Float]] = [:]
    for (name, entry) in header where name != "__metadata__" {
      let range = (entry as! [String: Any])["data_offsets"] as! [Int]
      out[name] = data.subdata(in: (8 + n + range[0])..<(8 + n + range[1])).withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
    return out
  }

  @Test("a model saved by Nerve 0.1.0 (format 1, activations as layers of their own) still loads")
  func formatOne() throws {
    // Saved by nerve 0.1.0: conv2d, relu, batchnorm, maxpool2d, flatten, dense, tanh, dense,
    // softmax, its tensors named by those positions (layers.0, layers.2, layers.5, layers.7).
    let path = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
      .appendingPathComponent("Fixtures/format-1-cnn.safetensors").path
    let loaded = try Sequential.load(from: path)
    #expect(loaded.layers.map(\.typeName) == ["conv2d", "batchnorm", "maxpool2d", "flatten", "dense", "dense"])
    // The same network built today, its tensors set from the file by their format-1 names.
    let fresh = try Sequential(input: [28, 28, 1]) {
      Conv2D(3, kernel: 3, padding: .same, activation: .relu)
      BatchNorm()
      MaxPool2D()
      Flatten()
      Dense(12, activation: .tanh)
      Dense(10, activation: .softmax)
    }
    #expect(loaded.summary == fresh.summary)
    let raw = try rawTensors(path)
    #expect(raw.count == 10)
    for (oldIndex, newIndex, names) in [(0, 0, ["weight", "bias"]), (2, 1, ["gamma", "beta"]), (5, 4, ["weight", "bias"]), (7, 5, ["weight", "bias"])] {
      for name in names {
        #expect(try loaded.parameter(layer: newIndex, name).scalars == raw["layers.\(oldIndex).\(name)"]!, "layer \(newIndex) \(name)")
      }
    }
    let images = try MNIST.load(imageShape: .channels).test.prefix(500)
    let outputs = try loaded.outputs(for: images.features)
    let accuracy = try loaded.evaluate(images, loss: .crossEntropy).accuracy
    #expect(accuracy > 0.4, "the loaded model classifies (accuracy \(accuracy))")
    // Saving it again writes today's format, which loads to the same outputs.
    let again = Fixtures.temporaryDirectory() + "/again.safetensors"
    try loaded.save(to: again)
    #expect(try Sequential.load(from: again).outputs(for: images.features) == outputs)
    #expect(try rawTensors(again)["layers.1.running_mean"] == raw["layers.2.running_mean"])
  }

  @Test("saving into a folder that does not exist fails cleanly")
  func unwritable() throws {
    let model = try trainedModel()
    #expect(throws: NerveError.self) { try model.save(to: "/nonexistent-folder/x/model.safetensors") }
  }
}
