// NerveReference: every C kernel written once more as plain loops in Double.
//
// These are deliberately naive: the tests trust them because they are short enough to check
// by eye against the formulas, and they share no code with the C core. Shapes follow the C API
// (row-major; N batch, I inputs, O outputs, C classes).

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The activation functions, as the C core numbers them.
public enum RefActivation: Int, CaseIterable, Sendable {
  case identity = 0, sigmoid, tanh, relu, lecunTanh
}

/// Every kernel of the C core as plain loops accumulating in `Double`: the oracle the kernel
/// tests compare against. Arguments follow the C API's order and shapes.
public enum Reference {
  // MARK: Dense

  /// y[N,O] = x[N,I] . w[I,O] + b[O]
  public static func denseForward(
    x: [Double], w: [Double], b: [Double]?, n: Int, i: Int, o: Int
  ) -> [Double] {
    var y = [Double](repeating: 0, count: n * o)
    for r in 0..<n {
      for c in 0..<o {
        var s = b?[c] ?? 0
        for k in 0..<i { s += x[r * i + k] * w[k * o + c] }
        y[r * o + c] = s
      }
    }
    return y
  }

  /// dx[N,I] = dy . w^T; dw[I,O] = x^T . dy; db[O] = column sums of dy.
  public static func denseBackward(
    dy: [Double], x: [Double], w: [Double], n: Int, i: Int, o: Int
  ) -> (dx: [Double], dw: [Double], db: [Double]) {
    var dx = [Double](repeating: 0, count: n * i)
    var dw = [Double](repeating: 0, count: i * o)
    var db = [Double](repeating: 0, count: o)
    for r in 0..<n {
      for k in 0..<i {
        var s = 0.0
        for c in 0..<o { s += dy[r * o + c] * w[k * o + c] }
        dx[r * i + k] = s
      }
    }
    for k in 0..<i {
      for c in 0..<o {
        var s = 0.0
        for r in 0..<n { s += x[r * i + k] * dy[r * o + c] }
        dw[k * o + c] = s
      }
    }
    for c in 0..<o {
      var s = 0.0
      for r in 0..<n { s += dy[r * o + c] }
      db[c] = s
    }
    return (dx, dw, db)
  }

  // MARK: Activations

  public static func activate(_ kind: RefActivation, _ x: Double) -> Double {
    switch kind {
    case .identity: return x
    case .sigmoid: return 1 / (1 + exp(-x))
    case .tanh: return tanh(x)
    case .relu: return max(x, 0)
    case .lecunTanh: return 1.7159 * tanh(2 * x / 3) + 0.01 * x
    }
  }

  /// f'(x)
  public static func derivative(_ kind: RefActivation, _ x: Double) -> Double {
    switch kind {
    case .identity: return 1
    case .sigmoid:
      let s = 1 / (1 + exp(-x))
      return s * (1 - s)
    case .tanh:
      let t = tanh(x)
      return 1 - t * t
    case .relu: return x > 0 ? 1 : 0
    case .lecunTanh:
      let t = tanh(2 * x / 3)
      return 1.7159 * (2.0 / 3.0) * (1 - t * t) + 0.01
    }
  }

  public static func activationForward(_ kind: RefActivation, _ x: [Double]) -> [Double] {
    x.map { activate(kind, $0) }
  }

  /// dx = dy * f'(x)
  public static func activationBackward(_ kind: RefActivation, dy: [Double], x: [Double])
    -> [Double]
  {
    zip(dy, x).map { $0 * derivative(kind, $1) }
  }

  /// Row-wise softmax of x[N,C].
  public static func softmax(_ x: [Double], n: Int, c: Int) -> [Double] {
    var y = [Double](repeating: 0, count: n * c)
    for r in 0..<n {
      let row = x[(r * c)..<(r * c + c)]
      let m = row.max()!
      let e = row.map { exp($0 - m) }
      let s = e.reduce(0, +)
      for k in 0..<c { y[r * c + k] = e[k] / s }
    }
    return y
  }

  /// dx = J^T dy for the row-wise softmax with outputs y.
  public static func softmaxBackward(dy: [Double], y: [Double], n: Int, c: Int) -> [Double] {
    var dx = [Double](repeating: 0, count: n * c)
    for r in 0..<n {
      for a in 0..<c {
        var s = 0.0
        for b in 0..<c {
          let jac = y[r * c + b] * ((a == b ? 1 : 0) - y[r * c + a])
          s += dy[r * c + b] * jac
        }
        dx[r * c + a] = s
      }
    }
    return dx
  }

  // MARK: Losses

  /// loss = (1/count) sum (o - t)^2; grad = 2 (o - t) / count
  public static func mse(out: [Double], target: [Double], count: Int) -> (
    loss: Double, grad: [Double]
  ) {
    let d = zip(out, target).map { $0 - $1 }
    return (
      d.reduce(0) { $0 + $1 * $1 } / Double(count), d.map { 2 * $0 / Double(count) }
    )
  }

  /// Softmax cross-entropy on logits.
  public static func softmaxCrossEntropy(
    logits: [Double], target: [Double], n: Int, c: Int, count: Int
  ) -> (loss: Double, grad: [Double], probs: [Double]) {
    let p = softmax(logits, n: n, c: c)
    var loss = 0.0
    for k in 0..<(n * c) where target[k] != 0 { loss -= target[k] * log(p[k]) }
    return (loss / Double(count), zip(p, target).map { ($0 - $1) / Double(count) }, p)
  }

  /// Negative log-likelihood of probabilities.
  public static func nll(
    probs: [Double], target: [Double], eps: Double, count: Int
  ) -> (loss: Double, grad: [Double]) {
    var loss = 0.0
    var grad = [Double](repeating: 0, count: probs.count)
    for k in probs.indices where target[k] != 0 {
      loss -= target[k] * log(probs[k] + eps)
      grad[k] = -target[k] / (probs[k] + eps) / Double(count)
    }
    return (loss / Double(count), grad)
  }

  // MARK: Optimizers

  /// w -= lr (g + wd w)
  public static func sgd(w: [Double], g: [Double], lr: Double, decay: Double) -> [Double] {
    zip(w, g).map { $0 - lr * ($1 + decay * $0) }
  }

  /// v = mu v + lr (g + wd w); w -= v
  public static func momentum(
    w: [Double], v: [Double], g: [Double], lr: Double, mu: Double, decay: Double
  ) -> (w: [Double], v: [Double]) {
    var w = w, v = v
    for k in w.indices {
      v[k] = mu * v[k] + lr * (g[k] + decay * w[k])
      w[k] -= v[k]
    }
    return (w, v)
  }

  // MARK: Metrics and reductions

  /// Index of the largest value of each row (first on ties).
  public static func argmax(_ x: [Double], n: Int, c: Int) -> [Int] {
    (0..<n).map { r in
      var best = 0
      for k in 1..<c where x[r * c + k] > x[r * c + best] { best = k }
      return best
    }
  }

  public static func sumSquares(_ x: [Double]) -> Double { x.reduce(0) { $0 + $1 * $1 } }
  public static func sumAbs(_ x: [Double]) -> Double { x.reduce(0) { $0 + abs($1) } }
}
