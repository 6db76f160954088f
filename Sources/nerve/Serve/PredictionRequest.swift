// What a POST /predict body can hold, read into samples for the model, and the JSON answers.
// Independent of the HTTP framework: the server hands bytes and a content type in, gets a
// value or a `ServeError` (a status and a message) out.
import Foundation
import Nerve

/// A refused request: the HTTP status and a message saying what was wrong.
struct ServeError: Error {
  var status: Int
  var message: String

  static func badRequest(_ message: String) -> ServeError { ServeError(status: 400, message: message) }
}

/// The input of one POST /predict.
enum PredictionInput {
  /// A picture of one digit, prepared MNIST-style (or digits-style) before the model sees it.
  case picture(PreparedPicture)
  /// Samples given as numbers in the data set's raw scale; `single` for `{"pixels": ...}`.
  case samples(rows: Int, values: [Float], single: Bool)

  /// Reads a body of the given content type for `model`.
  static func read(_ body: [UInt8], contentType: String?, for model: Sequential) throws -> PredictionInput {
    let type = (contentType ?? "").split(separator: ";").first.map { $0.trimmingCharacters(in: .whitespaces).lowercased() } ?? ""
    switch type {
    case "image/png", "image/x-portable-graymap", "image/x-portable-anymap", "image/pgm", "application/octet-stream":
      return try readPicture(body, for: model)
    case "application/json":
      return try readJSON(body, for: model)
    case "":
      throw ServeError(status: 415, message: "no Content-Type: send image/png, image/x-portable-graymap (PGM) or application/json")
    default:
      throw ServeError(status: 415, message: "unsupported Content-Type '\(type)': send image/png, image/x-portable-graymap (PGM) or application/json")
    }
  }

  private static func readPicture(_ body: [UInt8], for model: Sequential) throws -> PredictionInput {
    guard !body.isEmpty else { throw ServeError.badRequest("the body is empty: send a PNG or PGM picture of one digit") }
    guard GrayImage.looksLikeImage(body) else {
      let hint = body.starts(with: [0xFF, 0xD8]) ? " (JPEG is not supported; convert it to PNG)" : ""
      throw ServeError.badRequest("the body is not a PNG or PGM image\(hint)")
    }
    do {
      let picture = try GrayImage(bytes: body, source: "the picture")
      return .picture(try model.prepare(picture: picture, source: "the picture"))
    } catch let error as NerveError {
      throw ServeError.badRequest(error.description)
    }
  }

  /// `{"pixels": [...]}` for one sample, `{"batch": [[...], ...]}` for several.
  private struct Numbers: Decodable {
    var pixels: [Float]?
    var batch: [[Float]]?
  }

  private static func readJSON(_ body: [UInt8], for model: Sequential) throws -> PredictionInput {
    let numbers: Numbers
    do {
      numbers = try JSONDecoder().decode(Numbers.self, from: Data(body))
    } catch {
      throw ServeError.badRequest("the body is not JSON of the form {\"pixels\": [numbers]} or {\"batch\": [[numbers], ...]}")
    }
    let size = model.inputCount
    switch (numbers.pixels, numbers.batch) {
    case (let pixels?, nil):
      guard pixels.count == size else {
        throw ServeError.badRequest("\"pixels\" holds \(pixels.count) numbers; the model takes \(size) (\(shapeText(model.inputShape)))")
      }
      return .samples(rows: 1, values: pixels, single: true)
    case (nil, let batch?):
      guard !batch.isEmpty else { throw ServeError.badRequest("\"batch\" is empty") }
      if let bad = batch.firstIndex(where: { $0.count != size }) {
        throw ServeError.badRequest("\"batch\"[\(bad)] holds \(batch[bad].count) numbers; the model takes \(size) (\(shapeText(model.inputShape)))")
      }
      return .samples(rows: batch.count, values: batch.flatMap { $0 }, single: false)
    case (nil, nil):
      throw ServeError.badRequest("the JSON has neither \"pixels\" nor \"batch\"")
    case (_?, _?):
      throw ServeError.badRequest("give \"pixels\" or \"batch\", not both")
    }
  }

  private static func shapeText(_ shape: [Int]) -> String {
    shape.count == 1 ? "one flat sample" : "a sample of \(shape.map(String.init).joined(separator: "x"))"
  }
}

/// One sample's answer: the class, a probability per class and the raw outputs.
struct PredictionAnswer: Encodable {
  var `class`: Int
  var probabilities: [Float]
  /// The 28x28 (or 8x8) picture the model saw, for picture requests: a PNG data URL.
  var prepared: String?

  /// The answer for one row of outputs. Outputs of a softmax are the probabilities; other
  /// outputs (a sigmoid with MSE, say) are clipped at 0 and scaled to sum to 1.
  init(outputs: [Float], endsWithSoftmax: Bool, seen: GrayImage? = nil) {
    self.class = outputs.indices.max { outputs[$0] < outputs[$1] } ?? 0
    if endsWithSoftmax {
      probabilities = outputs
    } else {
      let clipped = outputs.map { max($0, 0) }
      let sum = clipped.reduce(0, +)
      probabilities = sum > 0 ? clipped.map { $0 / sum } : clipped.map { _ in 1 / Float(clipped.count) }
    }
    prepared = seen.map { "data:image/png;base64," + Data($0.pngData(compressionLevel: 1)).base64EncodedString() }
  }
}

/// The answer to `{"batch": ...}`.
struct BatchAnswer: Encodable {
  var predictions: [PredictionAnswer]
}

/// GET /model.
struct ModelDescription: Encodable {
  struct LayerDescription: Encodable {
    var index: Int
    var type: String
    var outputShape: [Int]
    enum CodingKeys: String, CodingKey { case index, type, outputShape = "output_shape" }
  }
  var summary: String
  var inputShape: [Int]
  var classes: Int
  var parameters: Int
  var endsWithSoftmax: Bool
  var layers: [LayerDescription]
  var acceptedTypes = ["image/png", "image/x-portable-graymap", "application/json"]

  enum CodingKeys: String, CodingKey {
    case summary, classes, parameters, layers
    case inputShape = "input_shape", endsWithSoftmax = "ends_with_softmax", acceptedTypes = "accepted_types"
  }

  init(_ model: Sequential) {
    summary = model.summary
    inputShape = model.inputShape
    classes = model.outputCount
    parameters = model.parameterCount
    endsWithSoftmax = model.endsWithSoftmax
    layers = model.layers.enumerated().map { i, layer in
      LayerDescription(index: i, type: layer.typeName, outputShape: layer.outputShape)
    }
  }
}

/// `{"error": ...}`.
struct ErrorAnswer: Encodable {
  var error: String
}
