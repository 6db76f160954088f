// Gzip: reading files that may be gzip-compressed (IDX and CSV datasets ship as .gz).
import CZlib
import Foundation

enum Gzip {
  /// True if `bytes` start with the gzip magic number.
  static func isCompressed(_ bytes: Data) -> Bool {
    bytes.count >= 2 && bytes[bytes.startIndex] == 0x1F && bytes[bytes.startIndex + 1] == 0x8B
  }

  /// The decompressed contents of a gzip stream (all members, concatenated).
  /// - Parameter path: the file the bytes came from, for error messages.
  static func decompress(_ input: Data, path: String) throws -> [UInt8] {
    var output = [UInt8]()
    // The trailer's ISIZE (length mod 2^32) is a good first guess for the output size (but
    // only a guess: a damaged trailer must not reserve gigabytes).
    if input.count >= 4 {
      let t = input.suffix(4).map(UInt32.init)
      output.reserveCapacity(min(Int(t[0] | t[1] << 8 | t[2] << 16 | t[3] << 24), 64 * input.count, 1 << 30))
    }
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
