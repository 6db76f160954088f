// Gzip: reading files that may be gzip-compressed (IDX and CSV datasets ship as .gz).
import CDeflate
import CZlib
import Foundation

enum Gzip {
  /// True if `bytes` start with the gzip magic number.
  static func isCompressed(_ bytes: Data) -> Bool {
    bytes.count >= 2 && bytes[bytes.startIndex] == 0x1F && bytes[bytes.startIndex + 1] == 0x8B
  }

  /// The trailer's ISIZE (the last member's length mod 2^32): a good first guess for the
  /// output's size, but only a guess (a damaged trailer must not reserve gigabytes).
  static func sizeGuess(_ input: Data) -> Int {
    guard input.count >= 4 else { return 0 }
    let t = input.suffix(4).map(UInt32.init)
    return min(Int(t[0] | t[1] << 8 | t[2] << 16 | t[3] << 24), 64 * input.count, 1 << 30)
  }

  /// The decompressed contents of a gzip stream (all members, concatenated).
  /// - Parameter path: the file the bytes came from, for error messages.
  static func decompress(_ input: Data, path: String) throws -> [UInt8] {
    if let whole = decompressWhole(input) { return whole }
    return try decompressStreaming(input, path: path)
  }

  /// The contents by libdeflate into a buffer of the trailer's size, if they fit it exactly
  /// (a data set's one member, as gzip writes it): MNIST's training images in 0.06-0.08 s
  /// where zlib's streaming takes 0.14-0.19 s. nil for anything else (several members, a
  /// damaged trailer, corrupt or truncated data), which the streaming reader then reads or
  /// names the trouble of.
  static func decompressWhole(_ input: Data) -> [UInt8]? {
    let size = sizeGuess(input)
    guard size > 0, size <= Memory.available / 2, let d = libdeflate_alloc_decompressor() else { return nil }
    defer { libdeflate_free_decompressor(d) }
    var fits = false
    let output = [UInt8](unsafeUninitializedCapacity: size) { out, initialized in
      input.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
        var used = 0, written = 0
        let result = libdeflate_gzip_decompress_ex(d, raw.baseAddress, raw.count, out.baseAddress, size, &used, &written)
        fits = result == LIBDEFLATE_SUCCESS && used == raw.count && written == size
        initialized = fits ? size : 0
      }
    }
    return fits ? output : nil
  }

  /// The contents by zlib, a megabyte at a time: any number of members, a size not known in
  /// advance, and errors that say whether the data is truncated or corrupt.
  static func decompressStreaming(_ input: Data, path: String) throws -> [UInt8] {
    var output = [UInt8]()
    output.reserveCapacity(sizeGuess(input))
    // A small file that inflates past the memory there is (a "zip bomb") is refused as it grows.
    let limit = Memory.available / 2
    try input.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
      var stream = z_stream()
      guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw NerveError(.badFile, at: path, "cannot start gzip decompression")
      }
      defer { inflateEnd(&stream) }
      stream.next_in = UnsafeMutablePointer(mutating: raw.bindMemory(to: UInt8.self).baseAddress)
      stream.avail_in = uInt(raw.count)
      var chunk = [UInt8](repeating: 0, count: 1 << 20)
      while true {
        let status: Int32 = chunk.withUnsafeMutableBufferPointer { buf in
          stream.next_out = buf.baseAddress
          stream.avail_out = uInt(buf.count)
          return inflate(&stream, Z_NO_FLUSH)
        }
        output.append(contentsOf: chunk[0..<(chunk.count - Int(stream.avail_out))])
        guard output.count <= limit else {
          throw NerveError(.badFile, at: path, "decompresses to more than \(Memory.text(limit)), half the memory available; not a data set Nerve can load")
        }
        switch status {
        case Z_STREAM_END:
          // Another gzip member may follow.
          if stream.avail_in == 0 { return }
          guard inflateReset(&stream) == Z_OK else {
            throw NerveError(.badFile, at: path, "corrupt gzip data after the first member")
          }
        case Z_OK:
          continue
        case Z_BUF_ERROR where stream.avail_in == 0:
          throw NerveError(
            .badFile, at: path,
            "truncated gzip file: the compressed data ends before the stream does (\(output.count) bytes decompressed)")
        default:
          let why = stream.msg.map { String(cString: $0) } ?? "error \(status)"
          throw NerveError(.badFile, at: path, "corrupt gzip data (\(why))")
        }
      }
    }
    return output
  }

  /// A file's bytes, decompressed if it is gzip.
  static func readFile(_ path: String) throws -> [UInt8] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw NerveError(.badFile, at: path, "no such file")
    }
    guard !isDirectory.boolValue else {
      throw NerveError(.badFile, at: path, "is a directory, expected a file")
    }
    let data = try FileBytes.read(path)
    return isCompressed(data) ? try decompress(data, path: path) : [UInt8](data)
  }
}
