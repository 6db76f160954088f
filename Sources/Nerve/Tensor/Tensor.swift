// Tensor: an n-dimensional float32 array, row-major, whose storage reaches C without copies.

/// A row-major array of `Float` with a shape, for inputs, outputs and weights.
///
/// `Tensor` has value semantics (copy-on-write): assigning it is cheap and a copy is made only
/// when one of two sharing tensors is mutated. Its storage is 64-byte aligned and handed to the
/// C kernels as is.
///
/// ```swift
/// var x = Tensor(shape: [2, 3], values: [1, 2, 3, 4, 5, 6])
/// x[1, 2] = 0
/// print(x.shape, x.scalars)   // [2, 3] [1.0, 2.0, 3.0, 4.0, 5.0, 0.0]
/// ```
public struct Tensor: Sendable, CustomStringConvertible {
  var storage: FloatBuffer
  /// The size of each dimension, outermost first.
  public private(set) var shape: [Int]

  /// A tensor of the given shape filled with `value`.
  public init(shape: [Int], repeating value: Float = 0) {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    self.shape = shape
    storage = FloatBuffer(count: shape.reduce(1, *))
    if value != 0 { storage.pointer.update(repeating: value, count: storage.count) }
  }

  /// A tensor of the given shape whose `write` fills every element (none is read before).
  init(shape: [Int], writingEvery write: (UnsafeMutablePointer<Float>) throws -> Void) rethrows {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    self.shape = shape
    storage = FloatBuffer(uninitializedCount: shape.reduce(1, *))
    try write(storage.pointer)
  }

  /// A tensor of the given shape holding `values` in row-major order.
  public init(shape: [Int], values: [Float]) {
    precondition(
      shape.reduce(1, *) == values.count,
      "shape \(shape) needs \(shape.reduce(1, *)) values, got \(values.count)")
    self.shape = shape
    storage = values.withUnsafeBufferPointer { FloatBuffer(copying: $0) }
  }

  /// A matrix from its rows; every row must have the same length.
  public init(_ rows: [[Float]]) {
    let columns = rows.first?.count ?? 0
    precondition(rows.allSatisfy { $0.count == columns }, "rows of different lengths")
    self.init(shape: [rows.count, columns], values: rows.flatMap { $0 })
  }

  /// Runs `body` with a tensor viewing `values` (row-major, `shape`) without copying them: for
  /// handing a caller's large array to Nerve, e.g. from another language. The tensor (and any
  /// dataset made of it) must not outlive `body`; changing it copies it first.
  public static func withBorrowed<R>(
    _ values: UnsafePointer<Float>, shape: [Int], _ body: (Tensor) throws -> R
  ) rethrows -> R {
    precondition(shape.allSatisfy { $0 >= 0 }, "negative dimension in \(shape)")
    return try body(Tensor(shape: shape, storage: FloatBuffer(borrowing: values, count: shape.reduce(1, *))))
  }

  init(shape: [Int], storage: FloatBuffer) {
    precondition(shape.reduce(1, *) <= storage.count)
    self.shape = shape
    self.storage = storage
  }

  /// The number of elements.
  public var count: Int { shape.reduce(1, *) }
  /// The number of dimensions.
  public var rank: Int { shape.count }

  /// All elements in row-major order.
  public var scalars: [Float] { Array(UnsafeBufferPointer(start: storage.pointer, count: count)) }

  /// The element at a flat (row-major) index.
  public subscript(flat index: Int) -> Float {
    get {
      precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
      return storage.pointer[index]
    }
    set {
      precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
      makeUnique()
      storage.pointer[index] = newValue
    }
  }

  /// The element at a multi-dimensional index.
  public subscript(indices: Int...) -> Float {
    get { self[flat: flatIndex(indices)] }
    set { self[flat: flatIndex(indices)] = newValue }
  }

  func flatIndex(_ indices: [Int]) -> Int {
    precondition(indices.count == shape.count, "need \(shape.count) indices, got \(indices.count)")
    var flat = 0
    for (i, d) in zip(indices, shape) {
      precondition(i >= 0 && i < d, "index \(indices) out of range for shape \(shape)")
      flat = flat * d + i
    }
    return flat
  }

  /// The same elements with another shape of equal element count.
  public func reshaped(_ newShape: [Int]) -> Tensor {
    precondition(newShape.reduce(1, *) == count, "cannot reshape \(shape) to \(newShape)")
    return Tensor(shape: newShape, storage: storage)
  }

  /// Rows `range` of the outermost dimension, copied.
  public func rows(_ range: Range<Int>) -> Tensor {
    precondition(rank >= 1 && range.lowerBound >= 0 && range.upperBound <= shape[0])
    let stride = shape.dropFirst().reduce(1, *)
    let result = Tensor(shape: [range.count] + shape.dropFirst())
    result.storage.pointer.update(
      from: storage.pointer + range.lowerBound * stride, count: range.count * stride)
    return result
  }

  /// Calls `body` with read access to the elements.
  public func withUnsafeBufferPointer<R>(_ body: (UnsafeBufferPointer<Float>) throws -> R)
    rethrows -> R
  {
    try body(UnsafeBufferPointer(start: storage.pointer, count: count))
  }

  /// Calls `body` with write access to the elements (copying first if storage is shared).
  public mutating func withUnsafeMutableBufferPointer<R>(
    _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
  ) rethrows -> R {
    makeUnique()
    return try body(UnsafeMutableBufferPointer(start: storage.pointer, count: count))
  }

  mutating func makeUnique() {
    // Borrowed memory is never written: the first change copies it.
    if !isKnownUniquelyReferenced(&storage) || storage.borrowed {
      storage = FloatBuffer(copying: UnsafeBufferPointer(start: storage.pointer, count: count))
    }
  }

  public var description: String {
    let preview = scalars.prefix(8).map { "\($0)" }.joined(separator: ", ")
    return "Tensor(shape: \(shape), [\(preview)\(count > 8 ? ", ..." : "")])"
  }
}

extension Tensor: Equatable {
  /// Same shape and bit-for-bit equal elements.
  public static func == (a: Tensor, b: Tensor) -> Bool {
    a.shape == b.shape
      && (a.storage === b.storage
        || zip(a.scalars, b.scalars).allSatisfy { $0.bitPattern == $1.bitPattern })
  }
}
