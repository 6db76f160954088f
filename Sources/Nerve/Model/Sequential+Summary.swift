// A model described as a table of layers, output shapes and parameter counts.

extension Sequential {
  /// A table of layers, output shapes and parameter counts, like Keras's `summary()`. A layer
  /// with its own activation shows it in brackets: `1 dense (relu)`.
  public var summary: String {
    var rows: [(String, String, String)] = [("Layer (type)", "Output shape", "Param #")]
    for (i, layer) in layers.enumerated() {
      let activation = layer.ownActivation == .identity ? "" : " (\(layer.ownActivation.rawValue))"
      rows.append(
        (
          "\(i) \(layer.typeName)\(activation)",
          "(None, " + layer.outputShape.map(String.init).joined(separator: ", ") + ")",
          "\(layer.parameterCount)"
        ))
    }
    let w0 = max(rows.map(\.0.count).max()!, 12), w1 = max(rows.map(\.1.count).max()!, 12)
    let w2 = max(rows.map(\.2.count).max()!, 7)
    func pad(_ s: String, _ w: Int) -> String { s + String(repeating: " ", count: max(0, w - s.count)) }
    func lpad(_ s: String, _ w: Int) -> String { String(repeating: " ", count: max(0, w - s.count)) + s }
    let rule = String(repeating: "-", count: w0 + w1 + w2 + 4)
    var lines = ["Input shape: (None, " + inputShape.map(String.init).joined(separator: ", ") + ")", rule]
    for (k, r) in rows.enumerated() {
      lines.append(pad(r.0, w0) + "  " + pad(r.1, w1) + "  " + lpad(r.2, w2))
      if k == 0 { lines.append(rule) }
    }
    lines.append(rule)
    lines.append("Total params: \(parameterCount)")
    if stateCount > 0 {
      lines.append("Non-trainable state: \(layers.reduce(0) { $0 + $1.stateCount })")
    }
    return lines.joined(separator: "\n")
  }
}
