// FloatBuffer: 64-byte aligned float storage from the C core's allocator.
import CNerve

/// An owned, aligned, zero-initialised buffer of `Float`, freed when the last reference goes.
/// Large buffers are placed on huge pages by the C allocator.
final class FloatBuffer: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Float>
  let count: Int
  /// Memory someone else owns (and frees), seen for the length of one call; never written.
  let borrowed: Bool

  convenience init(count: Int) {
    self.init(uninitializedCount: count)
    pointer.initialize(repeating: 0, count: max(count, 1))
  }

  /// A buffer whose contents are undefined until written: for a caller that writes every
  /// element at once (zeroing first would touch every page twice).
  init(uninitializedCount count: Int) {
    precondition(count >= 0, "negative buffer size")
    self.count = count
    borrowed = false
    let bytes = max(count, 1) * MemoryLayout<Float>.stride
    guard let raw = nerve_alloc(bytes) else { fatalError("out of memory allocating \(bytes) bytes") }
    pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
  }

  convenience init(copying source: UnsafeBufferPointer<Float>) {
    self.init(count: source.count)
    if let base = source.baseAddress { pointer.update(from: base, count: source.count) }
  }

  /// A view of `count` floats at `pointer`, which the caller keeps alive and unchanged while
  /// the buffer is in use.
  init(borrowing pointer: UnsafePointer<Float>, count: Int) {
    precondition(count >= 0, "negative buffer size")
    self.pointer = UnsafeMutablePointer(mutating: pointer)
    self.count = count
    borrowed = true
  }

  deinit { if !borrowed { nerve_free(pointer) } }

  var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }

  func zero() { pointer.update(repeating: 0, count: count) }
}
