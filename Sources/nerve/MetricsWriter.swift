// MetricsWriter: the --metrics file, JSON Lines, rewritten atomically after every epoch.
import Foundation
import Nerve

/// Collects one JSON object per epoch and a final summary object; after every addition the
/// whole file is replaced atomically, so it is complete and valid whenever it is read.
final class MetricsWriter {
  let path: String
  private var lines: [String] = []

  init(path: String) { self.path = path }

  /// A JSON object with keys in the given order.
  static func object(_ fields: [(String, Any?)]) -> String {
    let parts = fields.compactMap { key, value -> String? in
      guard let value else { return nil }
      let text: String
      switch value {
      case let d as Double: text = d.isFinite ? "\(d)" : "null"
      case let i as Int: text = "\(i)"
      case let b as Bool: text = b ? "true" : "false"
      case let s as String: text = quote(s)
      case let a as [Double]: text = "[" + a.map { $0.isFinite ? "\($0)" : "null" }.joined(separator: ",") + "]"
      case let a as [[Int]]: text = "[" + a.map { "[" + $0.map(String.init).joined(separator: ",") + "]" }.joined(separator: ",") + "]"
      case let raw as RawJSON: text = raw.text
      default: text = quote("\(value)")
      }
      return "\(quote(key)):\(text)"
    }
    return "{" + parts.joined(separator: ",") + "}"
  }

  struct RawJSON { let text: String }

  static func quote(_ s: String) -> String {
    var out = "\""
    for c in s.unicodeScalars {
      switch c {
      case "\"": out += "\\\""
      case "\\": out += "\\\\"
      case "\n": out += "\\n"
      case "\t": out += "\\t"
      default:
        if c.value < 0x20 { out += String(format: "\\u%04x", c.value) } else { out.unicodeScalars.append(c) }
      }
    }
    return out + "\""
  }

  func add(_ line: String) throws {
    lines.append(line)
    try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: path)
  }

  func epoch(_ m: EpochMetrics) throws {
    try add(
      Self.object([
        ("epoch", m.epoch), ("seconds", m.seconds), ("train_loss", m.trainLoss),
        ("train_accuracy", m.trainAccuracy), ("valid_loss", m.validLoss),
        ("valid_accuracy", m.validAccuracy), ("test_loss", m.testLoss),
        ("test_accuracy", m.testAccuracy), ("learning_rate", m.learningRate),
        ("gradients", m.gradients.map { RawJSON(text: Self.gradients($0)) }),
      ]))
  }

  /// Per-step gradient statistics: {"epoch", "step", "gradients": [...]}.
  func gradientStep(_ r: GradientRecord) throws {
    try add(Self.object([("epoch", r.epoch), ("step", r.step), ("gradients", RawJSON(text: Self.gradients(r.layers)))]))
  }

  static func gradients(_ layers: [LayerGradientStats]) -> String {
    "[" + layers.map {
      object([
        ("layer", $0.layer), ("type", $0.type), ("weight_norm", $0.weightNorm),
        ("weight_mean_abs", $0.weightMeanAbs), ("bias_norm", $0.biasNorm), ("bias_mean_abs", $0.biasMeanAbs),
      ])
    }.joined(separator: ",") + "]"
  }
}
