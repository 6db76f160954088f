// GrayImage: a grayscale picture, read from PNG or PGM and written as PNG.
import Foundation

/// A grayscale image, row-major, values in [0, 1] with 0 black and 1 white.
public struct GrayImage: Sendable, Equatable {
  public var width: Int
  public var height: Int
  /// `height` rows of `width` values.
  public var pixels: [Float]

  public init(width: Int, height: Int, pixels: [Float]) {
    precondition(pixels.count == width * height, "pixels must hold width * height values")
    self.width = width
    self.height = height
    self.pixels = pixels
  }

  /// A blank image of one value.
  public init(width: Int, height: Int, value: Float = 1) {
    self.init(width: width, height: height, pixels: [Float](repeating: value, count: width * height))
  }

  public subscript(x: Int, y: Int) -> Float {
    get { pixels[y * width + x] }
    set { pixels[y * width + x] = newValue }
  }

  /// Reads a PNG (any color type, not interlaced) or a PGM (P2 or P5) file.
  /// - Throws: `NerveError` naming the file and what is wrong (not an image, truncated,
  ///   corrupt, unsupported).
  public init(contentsOf path: String) throws {
    try self.init(bytes: [UInt8](try FileBytes.read(path)), source: path)
  }

  /// Decodes PNG or PGM bytes received from somewhere other than a file (an upload, a request).
  /// - Parameter source: what errors name as the origin of the bytes.
  public init(bytes: [UInt8], source: String = "image") throws {
    if PNG.isPNG(bytes) {
      self = try PNG.decode(bytes, path: source)
    } else if PGM.isPGM(bytes) {
      self = try PGM.decode(bytes, path: source)
    } else if bytes.starts(with: [0xFF, 0xD8]) {
      throw NerveError(.badFile, at: source, "JPEG images are not supported; convert it to PNG (for example: convert in.jpg out.png)")
    } else {
      throw NerveError(.badFile, at: source, "not a PNG or PGM image")
    }
  }

  /// Whether `bytes` start like a PNG or PGM file (the formats `init(bytes:)` reads).
  public static func looksLikeImage(_ bytes: [UInt8]) -> Bool { PNG.isPNG(bytes) || PGM.isPGM(bytes) }

  /// The image as 8-bit grayscale PNG bytes.
  public var pngData: [UInt8] { pngData(compressionLevel: 9) }

  /// The image as 8-bit grayscale PNG bytes, deflated at `compressionLevel` (1 fastest, 9
  /// smallest): a server answering thousands of small pictures a second wants 1.
  public func pngData(compressionLevel: Int) -> [UInt8] {
    PNG.encode(
      width: width, height: height, channels: 1, samples: pixels.map { UInt8(max(0, min(255, ($0 * 255).rounded()))) },
      level: Int32(max(1, min(9, compressionLevel))))
  }

  /// Writes the image as PNG, atomically.
  public func writePNG(to path: String) throws {
    try AtomicFile.write(Data(pngData), to: path)
  }

  /// An image scaled up by an integer factor (nearest neighbour), for looking at 28x28 digits.
  public func magnified(by factor: Int) -> GrayImage {
    var out = GrayImage(width: width * factor, height: height * factor)
    for y in 0..<out.height {
      for x in 0..<out.width { out[x, y] = self[x / factor, y / factor] }
    }
    return out
  }
}

/// 8-bit RGB pixels (`width * height * 3` samples, rows top to bottom) as PNG bytes.
public func rgbPNGData(width: Int, height: Int, rgb: [UInt8]) -> [UInt8] {
  PNG.encode(width: width, height: height, channels: 3, samples: rgb)
}

/// Writes 8-bit RGB pixels (`width * height * 3` samples) as a PNG file, atomically.
public func writeRGBPNG(width: Int, height: Int, rgb: [UInt8], to path: String) throws {
  guard rgb.count == width * height * 3 else {
    throw NerveError(.shapeMismatch, at: path, "\(rgb.count) samples for a \(width)x\(height) RGB image (expected \(width * height * 3))")
  }
  try AtomicFile.write(Data(PNG.encode(width: width, height: height, channels: 3, samples: rgb)), to: path)
}
