// Dataset: labelled samples in memory, and the ways the labs slice them.

/// Labelled samples: `features` [count, sample shape...] as float32 and one class label each.
///
/// Slicing (`prefix`, `subset(indices:)`, `split`) copies the selected samples, so every
/// dataset owns contiguous storage the kernels can read directly.
public struct Dataset: Sendable {
  /// Where the data came from, for messages (`MNIST train`, a file path, ...).
  public var name: String
  /// [count, sample shape...], row-major.
  public private(set) var features: Tensor
  /// One class index per sample, in 0..<classes.
  public private(set) var labels: [Int32]
  /// Number of classes.
  public let classes: Int
  /// Explicit targets [count, outputs] (soft or real-valued) used instead of one-hot labels,
  /// or nil.
  public private(set) var targets: Tensor?

  /// Creates a dataset, checking that counts agree and labels are in range.
  public init(name: String = "data", features: Tensor, labels: [Int32], classes: Int) throws {
    guard features.rank >= 2 else {
      throw NerveError(
        .shapeMismatch, at: name, "features must be [samples, ...], got shape \(features.shape)")
    }
    guard features.shape[0] == labels.count else {
      throw NerveError(
        .shapeMismatch, at: name,
        "\(features.shape[0]) samples but \(labels.count) labels; the counts must match")
    }
    guard classes >= 1 else { throw NerveError(.badValue, at: name, "classes must be at least 1") }
    if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classes }) {
      throw NerveError(
        .badValue, at: name, "label \(labels[bad]) of sample \(bad) is outside 0..<\(classes)")
    }
    self.name = name
    self.features = features
    self.labels = labels
    self.classes = classes
  }

  /// A dataset with explicit targets [count, outputs] (regression, or soft labels); each
  /// sample's label is the index of its largest target.
  public init(name: String = "data", features: Tensor, targets: Tensor) throws {
    guard targets.rank == 2, targets.shape[0] == features.shape.first else {
      throw NerveError(
        .shapeMismatch, at: name,
        "targets must be [samples, outputs] with one row per sample; got \(targets.shape) for features \(features.shape)")
    }
    let width = targets.shape[1]
    let labels = (0..<targets.shape[0]).map { r -> Int32 in
      var best = 0
      for c in 1..<max(width, 1) where targets[flat: r * width + c] > targets[flat: r * width + best] { best = c }
      return Int32(best)
    }
    try self.init(name: name, features: features, labels: labels, classes: max(width, 1))
    self.targets = targets
  }

  /// Number of samples.
  public var count: Int { labels.count }
  /// Shape of one sample.
  public var sampleShape: [Int] { Array(features.shape.dropFirst()) }
  /// Values per sample.
  public var sampleSize: Int { sampleShape.reduce(1, *) }

  /// The first `n` samples (all if there are fewer).
  public func prefix(_ n: Int) -> Dataset {
    let n = max(0, min(n, count))
    var d = self
    d.features = features.rows(0..<n)
    d.labels = Array(labels[0..<n])
    d.targets = targets?.rows(0..<n)
    d.name = "\(name)[:\(n)]"
    return d
  }

  /// Samples `range`, in order.
  public func slice(_ range: Range<Int>) -> Dataset {
    var d = self
    d.features = features.rows(range)
    d.labels = Array(labels[range])
    d.targets = targets?.rows(range)
    d.name = "\(name)[\(range.lowerBound):\(range.upperBound)]"
    return d
  }

  /// The samples at `indices`, in that order (indices may repeat).
  public func subset(indices: [Int]) throws -> Dataset {
    if let bad = indices.first(where: { $0 < 0 || $0 >= count }) {
      throw NerveError(.badValue, at: name, "index \(bad) is outside 0..<\(count)")
    }
    let size = sampleSize
    var f = Tensor(shape: [indices.count] + sampleShape)
    features.withUnsafeBufferPointer { src in
      f.withUnsafeMutableBufferPointer { dst in
        for (row, i) in indices.enumerated() {
          (dst.baseAddress! + row * size).update(from: src.baseAddress! + i * size, count: size)
        }
      }
    }
    var d = try Dataset(
      name: "\(name)[\(indices.count) indices]", features: f, labels: indices.map { labels[$0] },
      classes: classes)
    if let targets {
      let w = targets.shape[1]
      var t = Tensor(shape: [indices.count, w])
      for (row, i) in indices.enumerated() {
        for c in 0..<w { t[flat: row * w + c] = targets[flat: i * w + c] }
      }
      d.targets = t
    }
    return d
  }

  /// A random permutation of the samples, fixed by `seed`.
  public func shuffled(seed: UInt64) -> Dataset {
    var rng = SeededGenerator(seed: seed)
    // Cannot fail: a permutation's indices are all in range.
    return try! subset(indices: Dataset.permutation(count, using: &rng))
  }

  /// Splits into a shuffled first part with `fraction` of the samples and the rest.
  public func split(fraction: Double, seed: UInt64) throws -> (Dataset, Dataset) {
    guard fraction > 0, fraction < 1 else {
      throw NerveError(.badValue, at: "split", "fraction must be between 0 and 1, got \(fraction)")
    }
    var rng = SeededGenerator(seed: seed)
    let order = Dataset.permutation(count, using: &rng)
    let cut = Int((Double(count) * fraction).rounded())
    var a = try subset(indices: Array(order[..<cut]))
    var b = try subset(indices: Array(order[cut...]))
    a.name = "\(name) (\(cut) of \(count))"
    b.name = "\(name) (\(count - cut) of \(count))"
    return (a, b)
  }

  /// The same samples seen with another per-sample shape of equal size (e.g. [784] as
  /// [28, 28, 1]).
  public func reshaped(sampleShape shape: [Int]) throws -> Dataset {
    guard shape.reduce(1, *) == sampleSize else {
      throw NerveError(
        .shapeMismatch, at: name,
        "cannot view samples of shape \(sampleShape) as \(shape): sizes differ")
    }
    var d = self
    d.features = features.reshaped([count] + shape)
    return d
  }

  /// Applies `preprocessing` to every sample's values.
  public func preprocessed(_ preprocessing: Preprocessing) throws -> Dataset {
    var d = self
    try preprocessing.apply(to: &d.features)
    return d
  }

  /// Training targets [count, width]: the explicit targets, or one-hot labels (width >=
  /// classes).
  func oneHot(width: Int) -> FloatBuffer {
    let buffer = FloatBuffer(count: count * width)
    if let targets {
      targets.withUnsafeBufferPointer { buffer.pointer.update(from: $0.baseAddress!, count: min($0.count, count * width)) }
      return buffer
    }
    for (i, label) in labels.enumerated() { buffer.pointer[i * width + Int(label)] = 1 }
    return buffer
  }

  /// Fisher-Yates, written out so the order for a seed never depends on the standard library.
  static func permutation(_ n: Int, using rng: inout SeededGenerator) -> [Int] {
    var order = Array(0..<n)
    shuffle(&order, using: &rng)
    return order
  }

  static func shuffle(_ order: inout [Int], using rng: inout SeededGenerator) {
    guard order.count > 1 else { return }
    for i in stride(from: order.count - 1, to: 0, by: -1) {
      let j = Int(rng.next() % UInt64(i + 1))
      order.swapAt(i, j)
    }
  }
}
