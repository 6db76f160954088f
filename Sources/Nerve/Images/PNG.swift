// PNG: reading any non-interlaced PNG and writing 8-bit gray or RGB ones, with zlib only.
//
// Reading covers what phones, scanners and drawing programs write: gray, gray+alpha, RGB,
// RGBA and palette images at every bit depth the format allows. Transparent pixels are
// composited over white, so a digit drawn on a transparent canvas reads as ink on paper.
import CZlib
import Foundation

enum PNG {
  static let signature: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]

  static func isPNG(_ bytes: [UInt8]) -> Bool { bytes.starts(with: signature) }

  /// What the chunks before the pixels say: the header, the palette, the compressed data.
  struct Layout {
    var width = 0, height = 0, depth = 0, colorType = -1, interlace = 0
    var palette: [(Float, Float, Float)] = []
    var paletteAlpha: [Float] = []
    var compressed: [UInt8] = []

    /// Samples per pixel.
    var channels: Int { [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][colorType] ?? 0 }
    var rowBytes: Int { (width * channels * depth + 7) / 8 }
  }

  /// Decodes `bytes` to a grayscale image in [0, 1] (0 black, 1 white).
  /// - Parameter path: named in errors.
  static func decode(_ bytes: [UInt8], path: String) throws -> GrayImage {
    func fail(_ message: String) -> NerveError { NerveError(.badFile, at: path, message) }
    guard isPNG(bytes) else { throw fail("not a PNG file (the 8-byte PNG signature is missing)") }
    let layout = try readChunks(bytes, fail)
    try check(layout, fail)
    // The header's size decides the buffer: checked against memory before it is trusted.
    try Memory.check(floats: (layout.rowBytes + 1) * layout.height / 4 + layout.width * layout.height, for: "a \(layout.width)x\(layout.height) picture", at: path)
    var raw = [UInt8](repeating: 0, count: (layout.rowBytes + 1) * layout.height)
    try inflate(layout.compressed, into: &raw, path: path)
    let rows = try unfilter(raw, layout, fail)
    return try grayImage(rows, layout, fail)
  }

  /// Walks the chunks, checking each one's length and CRC, up to IEND.
  static func readChunks(_ bytes: [UInt8], _ fail: (String) -> NerveError) throws -> Layout {
    var layout = Layout()
    var offset = 8, sawEnd = false
    func u32(_ at: Int) -> Int {
      Int(bytes[at]) << 24 | Int(bytes[at + 1]) << 16 | Int(bytes[at + 2]) << 8 | Int(bytes[at + 3])
    }
    while offset < bytes.count && !sawEnd {
      guard offset + 12 <= bytes.count else { throw fail("truncated: a chunk header is cut off at byte \(offset)") }
      let length = u32(offset)
      let type = String(decoding: bytes[(offset + 4)..<(offset + 8)], as: UTF8.self)
      guard length <= bytes.count - offset - 12 else {
        throw fail("truncated: chunk '\(type)' at byte \(offset) claims \(length) bytes but the file ends first")
      }
      let data = Array(bytes[(offset + 8)..<(offset + 8 + length)])
      let stored = UInt(u32(offset + 8 + length))
      let computed = bytes.withUnsafeBufferPointer { b in
        crc32(0, b.baseAddress! + offset + 4, uInt(length + 4))
      }
      guard stored == computed else { throw fail("corrupt: chunk '\(type)' at byte \(offset) fails its CRC check") }
      switch type {
      case "IHDR":
        guard length == 13 else { throw fail("IHDR chunk has \(length) bytes, expected 13") }
        layout.width = Int(data[0]) << 24 | Int(data[1]) << 16 | Int(data[2]) << 8 | Int(data[3])
        layout.height = Int(data[4]) << 24 | Int(data[5]) << 16 | Int(data[6]) << 8 | Int(data[7])
        layout.depth = Int(data[8])
        layout.colorType = Int(data[9])
        layout.interlace = Int(data[12])
      case "PLTE":
        guard length % 3 == 0 else { throw fail("PLTE chunk length \(length) is not a multiple of 3") }
        layout.palette = stride(from: 0, to: length, by: 3).map {
          (Float(data[$0]) / 255, Float(data[$0 + 1]) / 255, Float(data[$0 + 2]) / 255)
        }
      case "tRNS":
        if layout.colorType == 3 { layout.paletteAlpha = data.map { Float($0) / 255 } }
      case "IDAT":
        layout.compressed += data
      case "IEND":
        sawEnd = true
      default:
        break  // Ancillary chunks (gamma, text, ...) do not change the digit.
      }
      offset += length + 12
    }
    return layout
  }

  /// Refuses sizes, colour types and bit depths the format does not allow, interlacing, and
  /// missing data.
  static func check(_ l: Layout, _ fail: (String) -> NerveError) throws {
    guard l.width > 0, l.height > 0 else { throw fail("no image header (IHDR) or a zero size") }
    guard l.width <= 1 << 14, l.height <= 1 << 14 else {
      throw fail("image is \(l.width)x\(l.height); at most 16384 pixels a side is supported")
    }
    guard l.channels > 0 else { throw fail("unknown PNG color type \(l.colorType)") }
    let validDepths: [Int] = l.colorType == 0 ? [1, 2, 4, 8, 16] : l.colorType == 3 ? [1, 2, 4, 8] : [8, 16]
    guard validDepths.contains(l.depth) else { throw fail("bit depth \(l.depth) is not valid for color type \(l.colorType)") }
    guard l.interlace == 0 else {
      throw fail("interlaced (Adam7) PNGs are not supported; save the image without interlacing")
    }
    guard !l.compressed.isEmpty else { throw fail("no image data (IDAT chunks)") }
    if l.colorType == 3 && l.palette.isEmpty { throw fail("palette image without a PLTE chunk") }
  }

  /// Undoes the per-row filters: `raw` is rows of a filter byte and `rowBytes` bytes; the
  /// result is the rows alone.
  static func unfilter(_ raw: [UInt8], _ l: Layout, _ fail: (String) -> NerveError) throws -> [UInt8] {
    let rowBytes = l.rowBytes
    let pixelBytes = max(1, l.channels * l.depth / 8)
    var previous = [UInt8](repeating: 0, count: rowBytes)
    var rows = [UInt8](repeating: 0, count: rowBytes * l.height)
    for y in 0..<l.height {
      let base = y * (rowBytes + 1)
      let filter = raw[base]
      var row = Array(raw[(base + 1)...(base + rowBytes)])
      for i in 0..<rowBytes {
        let a = i >= pixelBytes ? Int(row[i - pixelBytes]) : 0
        let b = Int(previous[i])
        let c = i >= pixelBytes ? Int(previous[i - pixelBytes]) : 0
        let predictor: Int
        switch filter {
        case 0: predictor = 0
        case 1: predictor = a
        case 2: predictor = b
        case 3: predictor = (a + b) / 2
        case 4:
          let p = a + b - c
          let pa = abs(p - a), pb = abs(p - b), pc = abs(p - c)
          predictor = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
        default: throw fail("corrupt: row \(y) has unknown filter type \(filter)")
        }
        row[i] = UInt8(truncatingIfNeeded: Int(row[i]) + predictor)
      }
      rows.replaceSubrange((y * rowBytes)..<((y + 1) * rowBytes), with: row)
      previous = row
    }
    return rows
  }

  /// Samples to gray in [0, 1], alpha composited over white.
  static func grayImage(_ rows: [UInt8], _ l: Layout, _ fail: (String) -> NerveError) throws -> GrayImage {
    let depth = l.depth, rowBytes = l.rowBytes, channels = l.channels
    let maxValue = Float((1 << depth) - 1)
    func sample(_ y: Int, _ index: Int) -> Float {
      let rowStart = y * rowBytes
      switch depth {
      case 16: return Float(Int(rows[rowStart + 2 * index]) << 8 | Int(rows[rowStart + 2 * index + 1])) / maxValue
      case 8: return Float(rows[rowStart + index]) / maxValue
      default:
        let bit = index * depth
        let byte = rows[rowStart + bit / 8]
        let shift = 8 - depth - bit % 8
        return Float((Int(byte) >> shift) & ((1 << depth) - 1)) / maxValue
      }
    }
    var pixels = [Float](repeating: 1, count: l.width * l.height)
    for y in 0..<l.height {
      for x in 0..<l.width {
        var gray: Float, alpha: Float = 1
        switch l.colorType {
        case 0: gray = sample(y, x)
        case 3:
          let index = Int((sample(y, x) * maxValue).rounded())
          guard index < l.palette.count else { throw fail("corrupt: pixel (\(x), \(y)) uses palette entry \(index) of \(l.palette.count)") }
          let (r, g, b) = l.palette[index]
          gray = 0.299 * r + 0.587 * g + 0.114 * b
          if index < l.paletteAlpha.count { alpha = l.paletteAlpha[index] }
        case 4:
          gray = sample(y, 2 * x)
          alpha = sample(y, 2 * x + 1)
        default:
          let r = sample(y, channels * x), g = sample(y, channels * x + 1), b = sample(y, channels * x + 2)
          gray = 0.299 * r + 0.587 * g + 0.114 * b
          if channels == 4 { alpha = sample(y, 4 * x + 3) }
        }
        pixels[y * l.width + x] = alpha * gray + (1 - alpha)
      }
    }
    return GrayImage(width: l.width, height: l.height, pixels: pixels)
  }

  static func inflate(_ input: [UInt8], into output: inout [UInt8], path: String) throws {
    var stream = z_stream()
    guard inflateInit_(&stream, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
      throw NerveError(.badFile, at: path, "cannot start zlib decompression")
    }
    defer { inflateEnd(&stream) }
    let expected = output.count
    let status: Int32 = input.withUnsafeBufferPointer { i in
      output.withUnsafeMutableBufferPointer { o in
        stream.next_in = UnsafeMutablePointer(mutating: i.baseAddress)
        stream.avail_in = uInt(i.count)
        stream.next_out = o.baseAddress
        stream.avail_out = uInt(o.count)
        return CZlib.inflate(&stream, Z_FINISH)
      }
    }
    let produced = expected - Int(stream.avail_out)
    if status == Z_STREAM_END && produced == expected { return }
    if status == Z_BUF_ERROR && stream.avail_in == 0 || produced < expected && status == Z_STREAM_END {
      throw NerveError(.badFile, at: path, "truncated: the image data ends after \(produced) of \(expected) bytes")
    }
    if status == Z_BUF_ERROR && stream.avail_out == 0 {
      return  // More data than the image needs (some encoders pad); the image itself is complete.
    }
    let why = stream.msg.map { String(cString: $0) } ?? "zlib error \(status)"
    throw NerveError(.badFile, at: path, "corrupt image data (\(why))")
  }

  /// Encodes 8-bit samples: `channels` 1 (gray) or 3 (RGB), rows top to bottom.
  static func encode(width: Int, height: Int, channels: Int, samples: [UInt8], level: Int32 = 9) -> [UInt8] {
    precondition(channels == 1 || channels == 3 || channels == 4)
    precondition(samples.count == width * height * channels)
    var raw = [UInt8]()
    raw.reserveCapacity((width * channels + 1) * height)
    for y in 0..<height {
      raw.append(0)
      raw += samples[(y * width * channels)..<((y + 1) * width * channels)]
    }
    var size = compressBound(uLong(raw.count))
    var packed = [UInt8](repeating: 0, count: Int(size))
    let status = packed.withUnsafeMutableBufferPointer { p in
      raw.withUnsafeBufferPointer { r in compress2(p.baseAddress, &size, r.baseAddress, uLong(r.count), level) }
    }
    precondition(status == Z_OK, "zlib compress2 failed with \(status)")
    packed.removeLast(packed.count - Int(size))

    var out = signature
    func chunk(_ type: String, _ data: [UInt8]) {
      let length = UInt32(data.count)
      out += [UInt8(length >> 24), UInt8(length >> 16 & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length & 0xFF)]
      let body = Array(type.utf8) + data
      out += body
      let crc = body.withUnsafeBufferPointer { UInt32(crc32(0, $0.baseAddress, uInt($0.count))) }
      out += [UInt8(crc >> 24), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc & 0xFF)]
    }
    func be32(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)] }
    let colorType: UInt8 = channels == 1 ? 0 : channels == 3 ? 2 : 6
    chunk("IHDR", be32(width) + be32(height) + [8, colorType, 0, 0, 0])
    chunk("IDAT", packed)
    chunk("IEND", [])
    return out
  }
}

/// PGM ("portable graymap", P2 text or P5 binary), the simplest format a script can write.
enum PGM {
  static func isPGM(_ bytes: [UInt8]) -> Bool {
    bytes.count >= 2 && bytes[0] == UInt8(ascii: "P") && (bytes[1] == UInt8(ascii: "2") || bytes[1] == UInt8(ascii: "5"))
  }

  static func decode(_ bytes: [UInt8], path: String) throws -> GrayImage {
    func fail(_ message: String) -> NerveError { NerveError(.badFile, at: path, message) }
    let binary = bytes[1] == UInt8(ascii: "5")
    var i = 2
    func token() throws -> Int {
      while i < bytes.count {
        if bytes[i] == UInt8(ascii: "#") {
          while i < bytes.count && bytes[i] != 10 { i += 1 }
        } else if bytes[i] == 32 || (9...13).contains(bytes[i]) {
          i += 1
        } else {
          break
        }
      }
      var value = 0, digits = 0
      while i < bytes.count, (48...57).contains(bytes[i]) {
        value = value * 10 + Int(bytes[i] - 48)
        digits += 1
        i += 1
        if value > 1 << 24 { throw fail("header number too large") }
      }
      guard digits > 0 else { throw fail("truncated or corrupt PGM header (expected a number at byte \(i))") }
      return value
    }
    let width = try token(), height = try token(), maxValue = try token()
    guard width > 0, height > 0, width <= 1 << 14, height <= 1 << 14 else { throw fail("bad size \(width)x\(height)") }
    guard (1...65535).contains(maxValue) else { throw fail("maximum value \(maxValue) must be 1...65535") }
    // The header's size is believed only if the file is long enough to hold that many pixels
    // (each takes at least a byte either way).
    guard bytes.count - i >= width * height else {
      throw fail("truncated: \(width)x\(height) pixels need at least \(width * height) more bytes, found \(max(0, bytes.count - i))")
    }
    var pixels = [Float](repeating: 0, count: width * height)
    if binary {
      i += 1  // The single whitespace after the header.
      let bytesPerSample = maxValue > 255 ? 2 : 1
      guard bytes.count - i >= width * height * bytesPerSample else {
        throw fail("truncated: \(width)x\(height) pixels need \(width * height * bytesPerSample) bytes, found \(max(0, bytes.count - i))")
      }
      for p in 0..<(width * height) {
        let v = bytesPerSample == 1 ? Int(bytes[i + p]) : Int(bytes[i + 2 * p]) << 8 | Int(bytes[i + 2 * p + 1])
        pixels[p] = Float(min(v, maxValue)) / Float(maxValue)
      }
    } else {
      for p in 0..<(width * height) {
        do { pixels[p] = Float(min(try token(), maxValue)) / Float(maxValue) } catch {
          throw fail("truncated: found \(p) of \(width * height) pixel values")
        }
      }
    }
    return GrayImage(width: width, height: height, pixels: pixels)
  }
}
