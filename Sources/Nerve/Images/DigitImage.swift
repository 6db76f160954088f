// DigitImage: a photo or scan of one handwritten digit, made into the input MNIST models expect.
//
// MNIST's images were made this way (LeCun et al.): the digit's bounding box scaled to fit
// 20x20 keeping its aspect ratio, anti-aliased, then placed in a 28x28 field so that its centre
// of mass sits at the centre. A model trained on MNIST sees digits only like that, so a user's
// own digit must be prepared the same way or it will be misread.

/// MNIST-style preparation of a picture of one handwritten digit.
public struct DigitImage: Sendable {
  /// What was found and done, for messages and tests.
  public struct Steps: Sendable, Equatable {
    /// True if the picture had light ink on a dark background (nothing was inverted).
    public var lightInkOnDark: Bool
    /// The background level estimated from the picture's border (0 black ... 1 white).
    public var background: Float
    /// The ink's bounding box in the original picture: x, y, width, height.
    public var box: (x: Int, y: Int, width: Int, height: Int)
    /// The size the box was scaled to (its longer side is `fit`).
    public var scaledWidth: Int
    public var scaledHeight: Int

    public static func == (a: Steps, b: Steps) -> Bool {
      a.lightInkOnDark == b.lightInkOnDark && a.background == b.background && a.box == b.box
        && a.scaledWidth == b.scaledWidth && a.scaledHeight == b.scaledHeight
    }
  }

  /// The prepared digit: white ink (1) on black (0), `side` x `side`, like an MNIST image
  /// divided by 255.
  public var image: GrayImage
  public var steps: Steps

  /// Prepares `picture` MNIST's way: ink found whether dark on light or light on dark,
  /// cropped to its bounding box, scaled so the longer side is `fit` pixels (aspect ratio kept,
  /// area-averaged), placed in a `side` x `side` field with its centre of mass at the centre.
  /// - Throws: `NerveError` if the picture holds no ink.
  public init(_ picture: GrayImage, fit: Int = 20, side: Int = 28, source: String = "image") throws {
    let background = Self.background(of: picture)
    let darkInk = background >= 0.5
    let ink = try Self.ink(of: picture, background: background, darkInk: darkInk, source: source)
    let w = picture.width, h = picture.height
    var x0 = w, y0 = h, x1 = -1, y1 = -1
    for y in 0..<h {
      for x in 0..<w where ink[y * w + x] > 0 {
        x0 = min(x0, x); x1 = max(x1, x); y0 = min(y0, y); y1 = max(y1, y)
      }
    }
    let box = (x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1)
    let scale = Double(fit) / Double(max(box.width, box.height))
    let sw = max(1, Int((Double(box.width) * scale).rounded())), sh = max(1, Int((Double(box.height) * scale).rounded()))
    let small = Self.resample(ink, width: w, box: box, to: (sw, sh))
    image = Self.centred(small, width: sw, height: sh, side: side)
    steps = Steps(
      lightInkOnDark: !darkInk, background: background, box: (x0, y0, box.width, box.height),
      scaledWidth: sw, scaledHeight: sh)
  }

  /// The background is what the border mostly shows: the median of a frame 5% wide.
  static func background(of picture: GrayImage) -> Float {
    let w = picture.width, h = picture.height
    let frame = max(1, min(w, h) / 20)
    var border: [Float] = []
    for y in 0..<h {
      for x in 0..<w where x < frame || x >= w - frame || y < frame || y >= h - frame {
        border.append(picture[x, y])
      }
    }
    border.sort()
    return border[border.count / 2]
  }

  /// How much ink each pixel holds, in [0, 1].
  /// - Throws: `NerveError` if the picture is nearly uniform (no digit).
  static func ink(of picture: GrayImage, background: Float, darkInk: Bool, source: String) throws -> [Float] {
    let ink = picture.pixels.map { max(0, darkInk ? background - $0 : $0 - background) }
    // Paper texture, shadows and noise sit well below the ink's own level: measure the ink's
    // strength robustly (a high percentile, not the maximum, which one speck could set) and
    // keep only what rises above a quarter of it, stretched to [0, 1].
    let sorted = ink.sorted()
    let strength = sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.998))]
    let peak = max(strength, sorted.last! * 0.5)
    guard peak > 0.08 else {
      throw NerveError(
        .badValue, at: source,
        "found no digit: the picture is nearly uniform (contrast \(String(format: "%.3f", peak)) against its background)")
    }
    let threshold = 0.25 * peak
    return ink.map { min(1, max(0, ($0 - threshold) / (peak - threshold))) }
  }

  /// The ink inside `box` scaled to `size` by area averaging (each output pixel is the mean of
  /// the input area it covers), then stretched so its strongest pixel is 1: strokes thinner
  /// than a pixel after scaling come out faint, and MNIST's strokes are solid.
  static func resample(
    _ ink: [Float], width w: Int, box: (x: Int, y: Int, width: Int, height: Int), to size: (Int, Int)
  ) -> [Float] {
    let (sw, sh) = size, bw = box.width, bh = box.height
    var small = [Float](repeating: 0, count: sw * sh)
    let fx = Double(bw) / Double(sw), fy = Double(bh) / Double(sh)
    for oy in 0..<sh {
      let ya = Double(oy) * fy, yb = Double(oy + 1) * fy
      for ox in 0..<sw {
        let xa = Double(ox) * fx, xb = Double(ox + 1) * fx
        var sum = 0.0, area = 0.0
        var iy = Int(ya)
        while Double(iy) < yb && iy < bh {
          let cy = min(yb, Double(iy + 1)) - max(ya, Double(iy))
          var ix = Int(xa)
          while Double(ix) < xb && ix < bw {
            let cx = min(xb, Double(ix + 1)) - max(xa, Double(ix))
            sum += Double(ink[(box.y + iy) * w + box.x + ix]) * cx * cy
            area += cx * cy
            ix += 1
          }
          iy += 1
        }
        small[oy * sw + ox] = Float(area > 0 ? sum / area : 0)
      }
    }
    let smallPeak = small.max() ?? 1
    return smallPeak > 0 ? small.map { min(1, $0 / smallPeak) } : small
  }

  /// A `side` x `side` image with `small` placed so its centre of mass is at the centre,
  /// keeping the whole digit inside.
  static func centred(_ small: [Float], width sw: Int, height sh: Int, side: Int) -> GrayImage {
    var mass = 0.0, mx = 0.0, my = 0.0
    for y in 0..<sh {
      for x in 0..<sw {
        let v = Double(small[y * sw + x])
        mass += v; mx += v * (Double(x) + 0.5); my += v * (Double(y) + 0.5)
      }
    }
    let cx = mass > 0 ? mx / mass : Double(sw) / 2, cy = mass > 0 ? my / mass : Double(sh) / 2
    let half = Double(side) / 2
    let ox = min(max(Int((half - cx).rounded()), 0), side - sw)
    let oy = min(max(Int((half - cy).rounded()), 0), side - sh)
    var out = GrayImage(width: side, height: side, value: 0)
    for y in 0..<sh {
      for x in 0..<sw { out[ox + x, oy + y] = small[y * sw + x] }
    }
    return out
  }

  /// Reads a PNG or PGM file and prepares it.
  public init(contentsOf path: String, fit: Int = 20, side: Int = 28) throws {
    try self.init(GrayImage(contentsOf: path), fit: fit, side: side, source: path)
  }

  /// The prepared digit as raw MNIST values (bytes 0...255 as floats), the form a model's
  /// preprocessing expects.
  public var mnistValues: [Float] { image.pixels.map { ($0 * 255).rounded() } }

  /// The prepared digit the way the 8x8 digits set was made (32x32 bitmap, ink counted in
  /// 4x4 blocks, values 0...16).
  public static func digitsValues(_ picture: GrayImage, source: String = "image") throws -> [Float] {
    let big = try DigitImage(picture, fit: 32, side: 32, source: source).image
    var out = [Float](repeating: 0, count: 64)
    for by in 0..<8 {
      for bx in 0..<8 {
        var count: Float = 0
        for y in 0..<4 {
          for x in 0..<4 where big[bx * 4 + x, by * 4 + y] >= 0.5 { count += 1 }
        }
        out[by * 8 + bx] = count
      }
    }
    return out
  }
}
