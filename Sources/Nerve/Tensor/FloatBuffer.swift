// FloatBuffer: 64-byte aligned float storage from the C core's allocator, pages mapped from
// the kernel for large zeroed buffers, or ordinary pages for data sets written once.
import CNerve

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// An owned, aligned buffer of `Float`, freed when the last reference goes: zero-initialised
/// (large ones on huge pages), or written whole by its maker (`init(uninitializedCount:)`, on
/// ordinary pages).
final class FloatBuffer: @unchecked Sendable {
  let pointer: UnsafeMutablePointer<Float>
  let count: Int
  /// Who frees the memory: nerve_alloc's (nerve_free), the C library's (free: buffers on
  /// ordinary pages), the kernel's mapping it lies in (large zeroed buffers: munmap), or
  /// someone else (borrowed for the length of one call, never written).
  private enum Owner {
    case allocator
    case system
    case mapping(base: UnsafeMutableRawPointer, length: Int)
    case borrowed
  }
  private let owner: Owner

  /// Memory someone else owns (and frees), seen for the length of one call; never written.
  var borrowed: Bool { if case .borrowed = owner { true } else { false } }

  /// Zeroed buffers of at least this many bytes are fresh pages mapped from the kernel.
  static let mappedBytes = 2 << 20

  /// `count` zeros. Large buffers (a training run's activations, gradients and optimizer
  /// state) are pages mapped from the kernel, which are zero until first written: nothing is
  /// written here, and the kernel clears each page when a kernel first touches it, on the
  /// thread that does (in parallel), and never for pages a run leaves untouched. Zeroing them
  /// here took one thread 0.1-0.4 s of the fast recipe's whole command (first touches of
  /// memory run at 0.6-2 GB/s on this kind of machine).
  init(count: Int) {
    precondition(count >= 0, "negative buffer size")
    self.count = count
    let bytes = max(count, 1) * MemoryLayout<Float>.stride
    if bytes >= Self.mappedBytes, let mapped = Self.mapZeroed(bytes: bytes) {
      owner = .mapping(base: mapped.base, length: mapped.length)
      pointer = mapped.start.bindMemory(to: Float.self, capacity: count)
    } else {
      owner = .allocator
      guard let raw = nerve_alloc(bytes) else { fatalError("out of memory allocating \(bytes) bytes") }
      pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
      pointer.initialize(repeating: 0, count: max(count, 1))
    }
  }

  /// Fresh zero pages for `bytes`, starting on a 2 MiB boundary and advised for huge pages, as
  /// nerve_alloc places large blocks (the mapping has a huge page to spare for the alignment).
  /// nil where mapping is not available or fails (the caller then allocates and zeroes).
  private static func mapZeroed(bytes: Int) -> (base: UnsafeMutableRawPointer, length: Int, start: UnsafeMutableRawPointer)? {
    #if canImport(Glibc) || canImport(Darwin)
      let huge = mappedBytes
      let (rounded, o1) = bytes.addingReportingOverflow(huge - 1)
      let (length, o2) = (rounded / huge * huge).addingReportingOverflow(huge)
      guard !o1, !o2 else { return nil }
      #if canImport(Glibc)
        let flags = MAP_PRIVATE | MAP_ANONYMOUS
      #else
        let flags = MAP_PRIVATE | MAP_ANON
      #endif
      guard let base = mmap(nil, length, PROT_READ | PROT_WRITE, flags, -1, 0),
        base != UnsafeMutableRawPointer(bitPattern: -1)
      else { return nil }
      let start = base + (huge - Int(bitPattern: base) % huge) % huge
      #if canImport(Glibc)
        _ = madvise(start, length - (start - base), MADV_HUGEPAGE)
      #endif
      return (base, length, start)
    #else
      return nil
    #endif
  }

  /// A buffer whose contents are undefined until written: for a caller that writes every
  /// element at once (zeroing first would touch every page twice), such as a data set's
  /// pixels. Its pages are ordinary ones, not the huge pages nerve_alloc advises for large
  /// blocks: a data set is written once and read a row at a time, so huge pages save it
  /// little, while on this kind of machine (a virtual one whose host takes back free memory
  /// in 2 MiB blocks) a fresh huge page costs far more to touch first: 220 MB in 0.4-0.66 s
  /// on one thread, against 0.1 s in 4 KiB pages (all 70,000 MNIST images as floats).
  init(uninitializedCount count: Int) {
    precondition(count >= 0, "negative buffer size")
    self.count = count
    owner = .system
    let bytes = max(count, 1) * MemoryLayout<Float>.stride
    var raw: UnsafeMutableRawPointer?
    guard posix_memalign(&raw, 64, bytes) == 0, let raw else { fatalError("out of memory allocating \(bytes) bytes") }
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
    owner = .borrowed
  }

  deinit {
    switch owner {
    case .allocator: nerve_free(pointer)
    case .system: free(pointer)
    case .mapping(let base, let length):
      #if canImport(Glibc) || canImport(Darwin)
        munmap(base, length)
      #endif
    case .borrowed: break
    }
  }

  var buffer: UnsafeMutableBufferPointer<Float> { .init(start: pointer, count: count) }

  func zero() { pointer.update(repeating: 0, count: count) }
}
