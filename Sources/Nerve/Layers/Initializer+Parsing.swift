// Initialisers as configs and flags write them: `uniform(-0.1, 0.1)`, `xavier_normal`, ...
import Foundation


extension Initializer {
  /// Parses an initialiser as configs write it: `zeros`, `constant(0.5)`,
  /// `uniform(-0.1, 0.1)`, `gaussian(0.01)`, `xavier_normal` (or `glorot_normal`),
  /// `xavier_uniform`, `he_normal`, `he_uniform`, `lecun_normal`, `lecun_uniform`.
  public init(parsing text: String) throws {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    var name = trimmed
    var args: [Float] = []
    if let open = trimmed.firstIndex(of: "("), trimmed.hasSuffix(")") {
      name = String(trimmed[..<open]).trimmingCharacters(in: .whitespaces)
      let inner = trimmed[trimmed.index(after: open)..<trimmed.index(before: trimmed.endIndex)]
      for part in inner.split(separator: ",") {
        let p = part.trimmingCharacters(in: .whitespaces).replacingOccurrences(
          of: "std=", with: "")
        guard let v = Float(p), v.isFinite else {
          throw NerveError(.badValue, "initializer '\(text)': '\(p)' is not a number")
        }
        args.append(v)
      }
    }
    func arity(_ n: Int) throws {
      guard args.count == n else {
        throw NerveError(
          .badValue, "initializer '\(text)': \(name) takes \(n) argument\(n == 1 ? "" : "s")")
      }
    }
    switch name.replacingOccurrences(of: "glorot", with: "xavier").replacingOccurrences(
      of: "-", with: "_")
    {
    case "zeros", "zero": try arity(0); self = .zeros
    case "constant": try arity(1); self = .constant(args[0])
    case "uniform":
      try arity(2)
      guard args[0] <= args[1] else {
        throw NerveError(.badValue, "initializer '\(text)': low must not exceed high")
      }
      self = .uniform(low: args[0], high: args[1])
    case "gaussian", "normal":
      try arity(1)
      guard args[0] >= 0 else {
        throw NerveError(.badValue, "initializer '\(text)': std must be >= 0")
      }
      self = .gaussian(std: args[0])
    case "xavier_normal": try arity(0); self = .xavierNormal
    case "xavier_uniform": try arity(0); self = .xavierUniform
    case "he_normal": try arity(0); self = .heNormal
    case "he_uniform": try arity(0); self = .heUniform
    case "lecun_normal": try arity(0); self = .lecunNormal
    case "lecun_uniform": try arity(0); self = .lecunUniform
    default:
      throw NerveError(
        .badValue,
        "unknown initializer '\(text)'; expected zeros, constant(v), uniform(low, high), gaussian(std), xavier_normal, xavier_uniform, he_normal, he_uniform, lecun_normal or lecun_uniform"
      )
    }
  }
}
