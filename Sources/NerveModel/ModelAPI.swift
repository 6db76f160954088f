// nerve_model_*: a whole model from C (include/nerve_model.h). Every function checks its
// arguments before it changes anything, returns a status, and leaves a message in the handle.
import CNerve
import Foundation
import Nerve
import NerveONNX

@_cdecl("nerve_model_create")
public func nerveModelCreate(_ out: UnsafeMutablePointer<OpaquePointer?>?) -> nerve_status {
  guard let out else { return Status.nullPointer }
  out.pointee = OpaquePointer(Unmanaged.passRetained(ModelHandle()).toOpaque())
  return Status.ok
}

@_cdecl("nerve_model_free")
public func nerveModelFree(_ m: OpaquePointer?) {
  guard let m else { return }
  Unmanaged<ModelHandle>.fromOpaque(UnsafeRawPointer(m)).release()
}

@_cdecl("nerve_model_last_error")
public func nerveModelLastError(_ m: OpaquePointer?) -> UnsafePointer<CChar> {
  guard let h = handle(m, as: ModelHandle.self) else { return nerveStaticString.noHandle }
  return h.lastError
}

@_cdecl("nerve_model_set_threads")
public func nerveModelSetThreads(_ m: OpaquePointer?, _ threads: Int32) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_set_threads") {
    guard threads >= 0 else { throw Refusal(status: Status.badArgument, message: "threads must be 0 (the default) or more, got \(threads)") }
    let t = threads == 0 ? nil : Int(threads)
    try h.model?.context.setThreads(t)
    h.threads = t
  }
}

@_cdecl("nerve_model_threads")
public func nerveModelThreads(_ m: OpaquePointer?) -> Int32 {
  guard let h = handle(m, as: ModelHandle.self) else { return 0 }
  return Int32(h.model?.context.threads ?? h.threads ?? ComputeContext.defaultThreads)
}

@_cdecl("nerve_model_build")
public func nerveModelBuild(
  _ m: OpaquePointer?, _ layersTOML: UnsafePointer<CChar>?, _ inputShape: UnsafePointer<Int64>?,
  _ rank: Int32, _ seed: UInt64
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_build") {
    let text = try string(layersTOML, "layers")
    let dims = try required(inputShape, "input_shape")
    guard (1...4).contains(rank) else {
      throw Refusal(status: Status.badArgument, message: "rank must be 1 to 4, got \(rank)")
    }
    let shape = (0..<Int(rank)).map { Int(clamping: dims[$0]) }
    guard shape.allSatisfy({ $0 >= 1 && $0 <= 1 << 24 }) else {
      throw Refusal(status: Status.badSize, message: "input shape \(shape) must be positive sizes")
    }
    var config = try ExperimentConfig(table: TOMLParser.parse(text, file: "layers"), file: "layers")
    config.seed = seed
    guard !config.layers.isEmpty else {
      throw Refusal(status: Status.badArgument, message: "the text has no [[layer]] tables")
    }
    try h.adopt(Experiment(config: config).makeModel(inputShape: shape))
  }
}

@_cdecl("nerve_model_load")
public func nerveModelLoad(_ m: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_load") {
    try h.adopt(Sequential.load(from: try string(path, "path")))
  }
}

@_cdecl("nerve_model_save")
public func nerveModelSave(_ m: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_save") {
    let p = try string(path, "path")
    try h.requireModel().save(to: p)
  }
}

@_cdecl("nerve_model_export_onnx")
public func nerveModelExportONNX(_ m: OpaquePointer?, _ path: UnsafePointer<CChar>?) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_export_onnx") {
    let p = try string(path, "path")
    try h.requireModel().exportONNX(to: p)
  }
}

@_cdecl("nerve_model_summary")
public func nerveModelSummary(_ m: OpaquePointer?) -> UnsafePointer<CChar>? {
  guard let h = handle(m, as: ModelHandle.self) else { return nil }
  var text: UnsafePointer<CChar>?
  _ = h.run("nerve_model_summary") { text = h.hand(try h.requireModel().summary) }
  return text
}

/// What `nerve_model_info` describes, as JSON.
struct ModelInfo: Encodable {
  var inputShape: [Int]
  var outputShape: [Int]
  var parameterCount: Int
  var endsWithSoftmax: Bool
  var layers: [LayerInfo]
  var preprocessing: Preprocessing
  var threads: Int

  struct LayerInfo: Encodable {
    var type: String
    var activation: String?
    var outputShape: [Int]
    var parameters: Int
    enum CodingKeys: String, CodingKey {
      case type, activation, parameters
      case outputShape = "output_shape"
    }
  }

  enum CodingKeys: String, CodingKey {
    case layers, preprocessing, threads
    case inputShape = "input_shape", outputShape = "output_shape", parameterCount = "parameter_count"
    case endsWithSoftmax = "ends_with_softmax"
  }
}

@_cdecl("nerve_model_info")
public func nerveModelInfo(_ m: OpaquePointer?) -> UnsafePointer<CChar>? {
  guard let h = handle(m, as: ModelHandle.self) else { return nil }
  var text: UnsafePointer<CChar>?
  _ = h.run("nerve_model_info") {
    let model = try h.requireModel()
    let layers = model.layers.map { l in
      ModelInfo.LayerInfo(
        type: l.typeName, activation: (l as? Dense)?.activation.rawValue ?? (l as? Conv2D)?.activation.rawValue,
        outputShape: l.outputShape, parameters: l.parameterCount)
    }
    let info = ModelInfo(
      inputShape: model.inputShape, outputShape: model.outputShape, parameterCount: model.parameterCount,
      endsWithSoftmax: model.endsWithSoftmax, layers: layers, preprocessing: model.preprocessing,
      threads: model.context.threads)
    text = h.hand(try json(info))
  }
  return text
}

@_cdecl("nerve_model_set_preprocessing")
public func nerveModelSetPreprocessing(_ m: OpaquePointer?, _ preprocessingJSON: UnsafePointer<CChar>?) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_set_preprocessing") {
    let text = try string(preprocessingJSON, "preprocessing")
    let model = try h.requireModel()
    guard let p = try? JSONDecoder().decode(Preprocessing.self, from: Data(text.utf8)) else {
      throw Refusal(status: Status.badArgument, message: "not a preprocessing object: \(text.prefix(80))")
    }
    let n = model.inputShape.reduce(1, *)
    guard p.scale.isFinite, (p.mean?.count ?? n) == n, (p.std?.count ?? n) == n else {
      throw Refusal(status: Status.badArgument, message: "preprocessing must have a finite scale and \(n) means and stds (one per input value)")
    }
    model.preprocessing = p
  }
}

@_cdecl("nerve_model_predict")
public func nerveModelPredict(
  _ m: OpaquePointer?, _ classes: UnsafeMutablePointer<Int32>?, _ x: UnsafePointer<Float>?, _ n: Int64
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_predict") {
    let model = try h.requireModel()
    let out = try required(classes, "classes"), input = try required(x, "x")
    _ = try sampleValues(n, model.inputShape.reduce(1, *), "n")
    let predicted = try Tensor.withBorrowed(input, shape: [Int(n)] + model.inputShape) { try model.predict($0) }
    for (i, c) in predicted.enumerated() { out[i] = Int32(c) }
  }
}

@_cdecl("nerve_model_predict_proba")
public func nerveModelPredictProba(
  _ m: OpaquePointer?, _ outputs: UnsafeMutablePointer<Float>?, _ x: UnsafePointer<Float>?, _ n: Int64
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_predict_proba") {
    let model = try h.requireModel()
    let out = try required(outputs, "outputs"), input = try required(x, "x")
    _ = try sampleValues(n, model.inputShape.reduce(1, *), "n")
    let y = try Tensor.withBorrowed(input, shape: [Int(n)] + model.inputShape) { try model.outputs(for: $0) }
    y.withUnsafeBufferPointer { out.update(from: $0.baseAddress!, count: $0.count) }
  }
}

@_cdecl("nerve_model_predict_pixels")
public func nerveModelPredictPixels(
  _ m: OpaquePointer?, _ classes: UnsafeMutablePointer<Int32>?, _ pixels: UnsafePointer<UInt8>?, _ scale: Float,
  _ n: Int64
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_predict_pixels") {
    let out = try required(classes, "classes")
    let (model, images) = try pixelImages(h, pixels, n)
    let predicted = try model.predict(pixels: images, scale: try finite(scale), count: Int(n))
    for (i, c) in predicted.enumerated() { out[i] = Int32(c) }
  }
}

@_cdecl("nerve_model_predict_proba_pixels")
public func nerveModelPredictProbaPixels(
  _ m: OpaquePointer?, _ outputs: UnsafeMutablePointer<Float>?, _ pixels: UnsafePointer<UInt8>?, _ scale: Float,
  _ n: Int64
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_predict_proba_pixels") {
    let out = try required(outputs, "outputs")
    let (model, images) = try pixelImages(h, pixels, n)
    let width = try sampleValues(n, model.outputCount, "n")
    try model.outputs(
      forPixels: images, scale: try finite(scale), count: Int(n), into: UnsafeMutableBufferPointer(start: out, count: width))
  }
}

/// The handle's model and the `n` images of bytes at `pixels`, checked.
private func pixelImages(
  _ h: ModelHandle, _ pixels: UnsafePointer<UInt8>?, _ n: Int64
) throws -> (Sequential, UnsafeBufferPointer<UInt8>) {
  let model = try h.requireModel()
  let input = try required(pixels, "pixels")
  let count = try sampleValues(n, model.inputShape.reduce(1, *), "n")
  return (model, UnsafeBufferPointer(start: input, count: count))
}

/// `scale`, refused unless finite.
private func finite(_ scale: Float) throws -> Float {
  guard scale.isFinite else {
    throw Refusal(status: Status.badArgument, message: "scale must be finite, got \(scale)")
  }
  return scale
}

@_cdecl("nerve_model_evaluate")
public func nerveModelEvaluate(
  _ m: OpaquePointer?, _ loss: UnsafeMutablePointer<Double>?, _ correct: UnsafeMutablePointer<Int64>?,
  _ x: UnsafePointer<Float>?, _ labels: UnsafePointer<Int32>?, _ n: Int64, _ lossName: UnsafePointer<CChar>?
) -> nerve_status {
  guard let h = handle(m, as: ModelHandle.self) else { return Status.nullPointer }
  return h.run("nerve_model_evaluate") {
    let model = try h.requireModel()
    let lossOut = try required(loss, "loss"), correctOut = try required(correct, "correct")
    let kind = try lossName.map { p -> Loss in
      let name = String(cString: p)
      guard let l = Loss(name: name) else {
        throw Refusal(status: Status.badArgument, message: "unknown loss '\(name)'; expected mse, cross_entropy or nll")
      }
      return l
    } ?? h.loss ?? (model.endsWithSoftmax ? .crossEntropy : .meanSquaredError)
    let e = try withDataset(model, x, labels, n, name: "x") { try model.evaluate($0, loss: kind) }
    lossOut.pointee = e.loss
    correctOut.pointee = Int64(e.correct)
  }
}

/// Runs `body` with caller-owned samples and labels as a dataset for `model` (labels checked
/// against its outputs). The samples are borrowed, not copied: the dataset lives for `body`.
func withDataset<R>(
  _ model: Sequential, _ x: UnsafePointer<Float>?, _ labels: UnsafePointer<Int32>?, _ n: Int64, name: String,
  _ body: (Dataset) throws -> R
) throws -> R {
  let input = try required(x, name)
  let y = try required(labels, name == "x" ? "labels" : "\(name) labels")
  _ = try sampleValues(n, model.inputShape.reduce(1, *), name == "x" ? "n" : "\(name) count")
  guard n >= 1 else { throw Refusal(status: Status.badSize, message: "\(name) holds no samples") }
  return try Tensor.withBorrowed(input, shape: [Int(n)] + model.inputShape) { features in
    try body(
      Dataset(
        name: name, features: features, labels: Array(UnsafeBufferPointer(start: y, count: Int(n))),
        classes: model.outputShape.reduce(1, *)))
  }
}

/// Strings the API returns when it has no handle to keep them in (static storage).
enum nerveStaticString {
  static var noHandle: UnsafePointer<CChar> {
    let s: StaticString = "the handle is NULL"
    return UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
  }
}
