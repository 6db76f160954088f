// Durations as seconds, for metrics.

extension Duration {
  /// The duration in seconds as a Double.
  var seconds: Double {
    let c = components
    return Double(c.seconds) + Double(c.attoseconds) * 1e-18
  }
}
