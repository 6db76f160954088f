// FloatBuffer: 64-byte aligned float storage from the C core's allocator.
import CNerve

/// An owned, aligned, zero-initialised buffer of `Float`, freed when the last reference goes.
/// Large buffers are placed on huge pages by the C allocator.
final class FloatBuffer: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Float>
  let count: Int

  init(count: Int) {
    precondition(count >= 0, "negative buffer size")
    self.count = count
    let bytes = max(count, 1) * MemoryLayout<Float>.stride
    guard let raw = nerve_alloc(bytes) else { fatalError("out of memory allocating \(bytes) bytes") }
    raw.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
    pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
  }

  convenience init(copying source: UnsafeBufferPointer<Float>) {
    self.init(count: source.count)
    if let base = source.baseAddress { pointer.update(from: base, count: source.count) }
  }

  deinit { nerve_free(pointer) }

  var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }

  func zero() { pointer.update(repeating: 0, count: count) }
}
