// Pictures of your own digits: PNG and PGM reading (every color type, bit depth and row filter,
// corrupt files), and MNIST-style preparation checked on drawn digits.
import CZlib
import Foundation
import Nerve
import Testing

/// A PNG built here, independently of Nerve's encoder: any color type and depth, rows written
/// with the given filter type (the filters are applied forwards, as an encoder would).
func handMadePNG(width: Int, height: Int, colorType: UInt8, depth: UInt8, rows: [[UInt8]], filter: UInt8, palette: [UInt8] = [], alpha: [UInt8] = [], corruptCRC: Bool = false) -> [UInt8] {
  let channels = [0: 1, 2: 3, 3: 1, 4: 2, 6: 4][Int(colorType)]!
  let bpp = max(1, channels * Int(depth) / 8)
  var raw: [UInt8] = []
  var previous = [UInt8](repeating: 0, count: rows[0].count)
  for row in rows {
    raw.append(filter)
    for i in row.indices {
      let a = i >= bpp ? Int(row[i - bpp]) : 0, b = Int(previous[i]), c = i >= bpp ? Int(previous[i - bpp]) : 0
      let p: Int
      switch filter {
      case 1: p = a
      case 2: p = b
      case 3: p = (a + b) / 2
      case 4:
        let e = a + b - c
        let pa = abs(e - a), pb = abs(e - b), pc = abs(e - c)
        p = pa <= pb && pa <= pc ? a : pb <= pc ? b : c
      default: p = 0
      }
      raw.append(UInt8(truncatingIfNeeded: Int(row[i]) - p))
    }
    previous = row
  }
  var size = compressBound(uLong(raw.count))
  var packed = [UInt8](repeating: 0, count: Int(size))
  _ = compress2(&packed, &size, raw, uLong(raw.count), 6)
  packed = Array(packed.prefix(Int(size)))
  var out: [UInt8] = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]
  func be(_ v: Int) -> [UInt8] { [UInt8(v >> 24 & 255), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
  func chunk(_ type: String, _ data: [UInt8]) {
    let body = Array(type.utf8) + data
    out += be(data.count) + body
    let crc = Int(crc32(0, body, uInt(body.count)))
    out += be(corruptCRC && type == "IDAT" ? crc ^ 1 : crc)
  }
  chunk("IHDR", be(width) + be(height) + [depth, colorType, 0, 0, 0])
  if !palette.isEmpty { chunk("PLTE", palette) }
  if !alpha.isEmpty { chunk("tRNS", alpha) }
  chunk("IDAT", packed)
  chunk("IEND", [])
  return out
}

/// Writes bytes to a fresh file and returns its path.
func temporaryFile(_ bytes: [UInt8], name: String) -> String {
  let path = Fixtures.temporaryDirectory() + "/" + name
  _ = FileManager.default.createFile(atPath: path, contents: Data(bytes))
  return path
}

/// Draws a digit-like figure with thick strokes: `ink` on `paper`, scale `s`, with uneven light
/// and deterministic noise, the way a photo of a written digit looks.
func drawnDigit(width: Int, height: Int, scale s: Double, ink: Float, paper: Float, seed: UInt64 = 1) -> GrayImage {
  // A "7" with a crossbar: three segments in a unit box.
  let segments: [((Double, Double), (Double, Double))] = [
    ((0.2, 0.1), (0.8, 0.1)), ((0.8, 0.1), (0.4, 0.9)), ((0.35, 0.5), (0.75, 0.5)),
  ]
  var image = GrayImage(width: width, height: height, value: paper)
  var state = seed
  let size = Double(min(width, height)) * s, half = size * 0.05
  let cx = Double(width) * 0.45, cy = Double(height) * 0.55
  for y in 0..<height {
    for x in 0..<width {
      let px = Double(x) + 0.5, py = Double(y) + 0.5
      var d = Double.infinity
      for ((ax, ay), (bx, by)) in segments {
        let a = (cx + (ax - 0.5) * size, cy + (ay - 0.5) * size), b = (cx + (bx - 0.5) * size, cy + (by - 0.5) * size)
        let vx = b.0 - a.0, vy = b.1 - a.1
        let t = max(0, min(1, ((px - a.0) * vx + (py - a.1) * vy) / (vx * vx + vy * vy)))
        d = min(d, ((px - a.0 - t * vx) * (px - a.0 - t * vx) + (py - a.1 - t * vy) * (py - a.1 - t * vy)).squareRoot())
      }
      let coverage = Float(max(0, min(1, half + 0.5 - d)))
      state = state &* 6364136223846793005 &+ 1442695040888963407
      let noise = (Float(state >> 40) / Float(1 << 24) - 0.5) * 0.06
      let light = 1 - 0.1 * Float(x) / Float(width)
      image[x, y] = max(0, min(1, (paper * light + noise) * (1 - coverage) + ink * coverage))
    }
  }
  return image
}

/// Bounding box and centre of mass of the ink (values > 0) of a prepared digit.
func inkGeometry(_ image: GrayImage) -> (width: Int, height: Int, cx: Double, cy: Double) {
  var x0 = image.width, x1 = -1, y0 = image.height, y1 = -1
  var m = 0.0, mx = 0.0, my = 0.0
  for y in 0..<image.height {
    for x in 0..<image.width where image[x, y] > 0 {
      x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
      let v = Double(image[x, y])
      m += v; mx += v * (Double(x) + 0.5); my += v * (Double(y) + 0.5)
    }
  }
  return (x1 - x0 + 1, y1 - y0 + 1, mx / m, my / m)
}

@Suite("Pictures and digit preparation")
struct ImageTests {
  static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path

  @Test("PNG: every row filter, gray at 1, 8 and 16 bits, RGB, gray+alpha, RGBA and palette images decode exactly")
  func pngVariants() throws {
    let w = 5, h = 4
    let gray: [[UInt8]] = (0..<h).map { y in (0..<w).map { x in UInt8((x * 50 + y * 17) % 256) } }
    for filter: UInt8 in 0...4 {
      let image = try GrayImage(contentsOf: temporaryFile(handMadePNG(width: w, height: h, colorType: 0, depth: 8, rows: gray, filter: filter), name: "g.png"))
      #expect(image.width == w && image.height == h)
      #expect(image.pixels == gray.flatMap { $0 }.map { Float($0) / 255 }, "filter \(filter)")
    }
    // 16-bit gray: big-endian samples.
    let g16: [[UInt8]] = gray.map { row in row.flatMap { v -> [UInt8] in [v, 0x80] } }
    let i16 = try GrayImage(contentsOf: temporaryFile(handMadePNG(width: w, height: h, colorType: 0, depth: 16, rows: g16, filter: 4), name: "g16.png"))
    #expect(i16[2, 1] == Float(Int(gray[1][2]) << 8 | 0x80) / 65535)
    // 1-bit gray: 8 pixels per byte, most significant bit first.
    let bits = try GrayImage(contentsOf: temporaryFile(handMadePNG(width: 10, height: 1, colorType: 0, depth: 1, rows: [[0b1010_0000, 0b0100_0000]], filter: 0), name: "b.png"))
    #expect(bits.pixels == [1, 0, 1, 0, 0, 0, 0, 0, 0, 1])
    // RGB to luminance.
    let rgb = try GrayImage(contentsOf: temporaryFile(handMadePNG(width: 2, height: 1, colorType: 2, depth: 8, rows: [[255, 0, 0, 0, 0, 255]], filter: 1), name: "rgb.png"))
    #expect(abs(rgb[0, 0] - 0.299) < 1e-5 && abs(rgb[1, 0] - 0.114) < 1e-5)
    // Alpha composited over white: transparent black is paper, opaque black is ink.
    let ga = try GrayImage(contentsOf: temporaryFile(handMadePNG(width: 2, height: 1, colorType: 4, depth: 8, rows: [[0, 0, 0, 255]], filter: 2), name: "ga.png"))
    #expect(ga.pixels == [1, 0])
    let rgba = try GrayImage(contentsOf: temporaryFile(handMadePNG(width: 2, height: 1, colorType: 6, depth: 8, rows: [[0, 0, 0, 0, 0, 0, 0, 255]], filter: 3), name: "rgba.png"))
    #expect(rgba.pixels == [1, 0])
    // Palette with 2-bit indices and a transparent entry.
    let pal = try GrayImage(contentsOf: temporaryFile(handMadePNG(width: 3, height: 1, colorType: 3, depth: 2, rows: [[0b00_01_10_00]], filter: 0, palette: [0, 0, 0, 255, 255, 255, 0, 0, 0], alpha: [255, 255, 0]), name: "p.png"))
    #expect(pal.pixels == [0, 1, 1])
  }

  @Test("PNG written by Nerve reads back; bad files give errors naming the file and the problem")
  func pngErrors() throws {
    let image = GrayImage(width: 3, height: 2, pixels: [0, 0.5, 1, 1, 0.25, 0])
    let dir = Fixtures.temporaryDirectory()
    try image.writePNG(to: dir + "/x.png")
    let back = try GrayImage(contentsOf: dir + "/x.png")
    #expect(zip(back.pixels, image.pixels).allSatisfy { abs($0 - $1) <= 0.5 / 255 + 1e-6 })

    func failure(_ bytes: [UInt8], _ name: String) -> String {
      let path = temporaryFile(bytes, name: name)
      do { _ = try GrayImage(contentsOf: path); return "no error" } catch { return "\(error)" }
    }
    let good = image.pngData
    let badCRC = handMadePNG(width: 2, height: 2, colorType: 0, depth: 8, rows: [[1, 2], [3, 4]], filter: 0, corruptCRC: true)
    #expect(failure(badCRC, "crc.png").contains("crc.png") && failure(badCRC, "crc.png").contains("CRC"))
    #expect(failure(Array(good.prefix(good.count - 20)), "cut.png").contains("truncated"))
    #expect(failure(Array("hello".utf8), "text.png").contains("not a PNG or PGM"))
    #expect(failure([0xFF, 0xD8, 0xFF, 0xE0], "photo.jpg").contains("JPEG"))
    #expect(failure(Array("P5 4 4 255\n".utf8) + [1, 2, 3], "short.pgm").contains("truncated"))
  }

  @Test("PGM: text (P2) and binary (P5), with comments")
  func pgm() throws {
    let p2 = try GrayImage(contentsOf: temporaryFile(Array("P2\n# a comment\n3 1\n10\n0 5 10\n".utf8), name: "a.pgm"))
    #expect(p2.pixels == [0, 0.5, 1])
    let p5 = try GrayImage(contentsOf: temporaryFile(Array("P5 2 1 255\n".utf8) + [0, 255], name: "b.pgm"))
    #expect(p5.pixels == [0, 1])
  }

  @Test("MNIST-style preparation: 20-pixel box, centre of mass at the centre, clean background")
  func preparation() throws {
    let picture = drawnDigit(width: 180, height: 220, scale: 0.6, ink: 0.15, paper: 0.92)
    let d = try DigitImage(picture)
    #expect(d.image.width == 28 && d.image.height == 28)
    #expect(!d.steps.lightInkOnDark && d.steps.background > 0.8)
    let g = inkGeometry(d.image)
    #expect(max(g.width, g.height) == 20, "box \(g.width)x\(g.height)")
    #expect(abs(g.cx - 14) <= 0.5 && abs(g.cy - 14) <= 0.5, "centre of mass (\(g.cx), \(g.cy))")
    // The paper's grain and the uneven light leave no ink away from the digit.
    #expect(d.image[0, 0] == 0 && d.image[27, 27] == 0 && d.image[0, 27] == 0 && d.image[27, 0] == 0)
    #expect(d.mnistValues.allSatisfy { $0 >= 0 && $0 <= 255 && $0 == $0.rounded() })
  }

  @Test("preparation does not care about ink colour or picture size")
  func preparationInvariance() throws {
    let dark = try DigitImage(drawnDigit(width: 180, height: 220, scale: 0.6, ink: 0.15, paper: 0.92))
    let light = try DigitImage(drawnDigit(width: 180, height: 220, scale: 0.6, ink: 0.9, paper: 0.1))
    let big = try DigitImage(drawnDigit(width: 540, height: 660, scale: 0.6, ink: 0.15, paper: 0.92, seed: 9))
    #expect(light.steps.lightInkOnDark)
    func meanDifference(_ a: GrayImage, _ b: GrayImage) -> Float {
      zip(a.pixels, b.pixels).map { abs($0 - $1) }.reduce(0, +) / Float(a.pixels.count)
    }
    #expect(meanDifference(dark.image, light.image) < 0.02, "\(meanDifference(dark.image, light.image))")
    #expect(meanDifference(dark.image, big.image) < 0.03, "\(meanDifference(dark.image, big.image))")
    // A tall narrow stroke keeps its shape: 20 pixels high, a few wide.
    var one = GrayImage(width: 100, height: 100, value: 1)
    for y in 10..<90 { for x in 47..<53 { one[x, y] = 0 } }
    let g = inkGeometry(try DigitImage(one).image)
    #expect(g.height == 20 && g.width <= 3, "\(g.width)x\(g.height)")
  }

  @Test("a picture without a digit is an error, not a guess")
  func blank() throws {
    var plain = GrayImage(width: 50, height: 50, value: 0.9)
    plain[10, 10] = 0.88
    #expect(throws: NerveError.self) { try DigitImage(plain, source: "blank.png") }
    do { _ = try DigitImage(plain, source: "blank.png") } catch { #expect("\(error)".contains("blank.png") && "\(error)".contains("no digit")) }
  }

  @Test("the drawn example digits (examples/digits) are prepared MNIST-style")
  func exampleDigits() throws {
    let dir = Self.root + "/examples/digits"
    let files = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasSuffix(".png") }.sorted()
    #expect(files.count >= 10)
    for f in files {
      let picture = try GrayImage(contentsOf: dir + "/" + f)
      #expect(picture.width >= 100)
      let d = try DigitImage(picture, source: f)
      #expect(d.steps.lightInkOnDark == f.contains("chalk"), "\(f)")
      let g = inkGeometry(d.image)
      #expect(max(g.width, g.height) >= 19 && max(g.width, g.height) <= 20, "\(f): box \(g.width)x\(g.height)")
      #expect(abs(g.cx - 14) <= 1 && abs(g.cy - 14) <= 1, "\(f): centre of mass (\(g.cx), \(g.cy))")
    }
  }
}
