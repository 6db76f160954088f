// Charts: line charts, heat maps and image grids as standalone SVG documents.
//
// Every figure is a complete <svg> with its own viewBox, so the same text goes inline into the
// HTML report and into a separate .svg file. Pictures of digits are embedded PNG data URIs:
// no file or network access is needed to view any figure.
import Foundation
import Nerve

/// A minimal SVG document builder.
struct SVGDocument {
  let width: Double
  let height: Double
  private(set) var parts: [String] = []

  init(width: Double, height: Double) {
    self.width = width
    self.height = height
  }

  mutating func add(_ element: String) { parts.append(element) }

  mutating func text(
    _ s: String, x: Double, y: Double, size: Double = 12, anchor: String = "start", weight: String = "normal",
    color: String = "#222", rotate: Double? = nil
  ) {
    let transform = rotate.map { " transform=\"rotate(\(fmt($0)) \(fmt(x)) \(fmt(y)))\"" } ?? ""
    add("<text x=\"\(fmt(x))\" y=\"\(fmt(y))\" font-size=\"\(fmt(size))\" text-anchor=\"\(anchor)\" font-weight=\"\(weight)\" fill=\"\(color)\"\(transform)>\(escapeXML(s))</text>")
  }

  mutating func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, color: String = "#999", width: Double = 1, dash: String? = nil) {
    add("<line x1=\"\(fmt(x1))\" y1=\"\(fmt(y1))\" x2=\"\(fmt(x2))\" y2=\"\(fmt(y2))\" stroke=\"\(color)\" stroke-width=\"\(fmt(width))\"\(dash.map { " stroke-dasharray=\"\($0)\"" } ?? "")/>")
  }

  mutating func rect(_ x: Double, _ y: Double, _ w: Double, _ h: Double, fill: String, stroke: String? = nil, title: String? = nil) {
    let s = stroke.map { " stroke=\"\($0)\"" } ?? ""
    if let title {
      add("<rect x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(w))\" height=\"\(fmt(h))\" fill=\"\(fill)\"\(s)><title>\(escapeXML(title))</title></rect>")
    } else {
      add("<rect x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(w))\" height=\"\(fmt(h))\" fill=\"\(fill)\"\(s)/>")
    }
  }

  mutating func image(_ png: [UInt8], x: Double, y: Double, w: Double, h: Double) {
    add("<image x=\"\(fmt(x))\" y=\"\(fmt(y))\" width=\"\(fmt(w))\" height=\"\(fmt(h))\" preserveAspectRatio=\"none\" style=\"image-rendering:pixelated\" href=\"data:image/png;base64,\(Data(png).base64EncodedString())\"/>")
  }

  var svg: String {
    "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 \(fmt(width)) \(fmt(height))\" width=\"\(fmt(width))\" height=\"\(fmt(height))\" font-family=\"Helvetica, Arial, sans-serif\">"
      + "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>" + parts.joined() + "</svg>"
  }
}

func fmt(_ x: Double) -> String {
  let r = (x * 100).rounded() / 100
  return r == r.rounded() ? String(Int(r)) : String(r)
}

func escapeXML(_ s: String) -> String {
  s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
}

/// Round tick values covering [lo, hi].
func niceTicks(_ lo: Double, _ hi: Double, count: Int = 5) -> [Double] {
  guard hi > lo, lo.isFinite, hi.isFinite else { return [lo] }
  let raw = (hi - lo) / Double(count)
  let mag = pow(10, floor(log10(raw)))
  let step = [1.0, 2, 2.5, 5, 10].map { $0 * mag }.first { $0 >= raw } ?? 10 * mag
  var t = (lo / step).rounded(.up) * step
  var out: [Double] = []
  while t <= hi + step * 1e-9 {
    out.append(abs(t) < step * 1e-9 ? 0 : t)
    t += step
  }
  return out
}

func tickLabel(_ v: Double) -> String {
  if v == 0 { return "0" }
  if abs(v) >= 1e4 || abs(v) < 1e-3 { return String(format: "%.0e", v) }
  let s = String(format: "%.4g", v)
  return s
}

/// Log10 positions of ticks at 1, 2 and 5 times powers of ten (only powers of ten if the range
/// spans many decades).
func logTicks(_ lo: Double, _ hi: Double) -> [Double] {
  let multipliers: [Double] = hi - lo > 3 ? [1] : hi - lo > 1.2 ? [1, 3] : [1, 2, 5]
  var out: [Double] = []
  for e in Int(floor(lo))...max(Int(floor(lo)), Int(ceil(hi))) {
    for m in multipliers {
      let t = Double(e) + log10(m)
      if t >= lo && t <= hi { out.append(t) }
    }
  }
  return out
}

/// Several SVG documents side by side in rows of `columns`, as one SVG.
func smallMultiples(title: String, panels: [String], columns: Int) -> String {
  let sizes = panels.map(svgSize)
  let cw = sizes.map(\.0).max() ?? 0, ch = sizes.map(\.1).max() ?? 0
  let rows = (panels.count + columns - 1) / max(columns, 1)
  var doc = SVGDocument(width: max(300, Double(min(columns, panels.count)) * cw), height: 30 + Double(rows) * ch)
  doc.text(title, x: 10, y: 20, size: 14, weight: "bold")
  for (k, p) in panels.enumerated() {
    let x = Double(k % columns) * cw, y = 30 + Double(k / columns) * ch
    doc.add(p.replacingOccurrences(of: "<svg xmlns=\"http://www.w3.org/2000/svg\" ", with: "<svg x=\"\(fmt(x))\" y=\"\(fmt(y))\" "))
  }
  return doc.svg
}

/// The width and height attributes of an SVG document made here.
func svgSize(_ svg: String) -> (Double, Double) {
  func attr(_ name: String) -> Double {
    guard let r = svg.range(of: " \(name)=\"") else { return 0 }
    return Double(svg[r.upperBound...].prefix { $0 != "\"" }) ?? 0
  }
  return (attr("width"), attr("height"))
}

/// One line of a chart, with an optional shaded band (mean ± std over runs).
struct Series {
  var name: String
  var color: String
  var points: [(x: Double, y: Double)]
  var band: [(x: Double, low: Double, high: Double)] = []
  var dashed = false
  var markers = false
}

/// Ten distinguishable colours (Tableau 10).
let palette = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"]

/// A perceptually ordered colour for t in [0, 1] (dark blue to yellow, like viridis).
func sequentialColor(_ t: Double) -> String {
  let stops: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
  let u = max(0, min(1, t.isFinite ? t : 0)) * Double(stops.count - 1)
  let i = min(Int(u), stops.count - 2), f = u - Double(i)
  let c = (0..<3).map { k -> Int in
    let a = [stops[i].0, stops[i].1, stops[i].2][k], b = [stops[i + 1].0, stops[i + 1].1, stops[i + 1].2][k]
    return Int((a + (b - a) * f).rounded())
  }
  return String(format: "#%02x%02x%02x", c[0], c[1], c[2])
}

/// A line chart's plot area: where it sits in the picture and the data ranges it shows, with the
/// transforms from data to picture coordinates that the axes, series and legend share.
private struct PlotArea {
  let left: Double, top: Double, width: Double, height: Double
  let x0: Double, x1: Double, y0: Double, y1: Double
  let logY: Bool

  /// The y value as plotted (log10 on a log axis), nil where it cannot be.
  func plotted(_ v: Double) -> Double? {
    guard v.isFinite else { return nil }
    if logY { return v > 0 ? log10(v) : nil }
    return v
  }

  func px(_ x: Double) -> Double { left + (x - x0) / (x1 > x0 ? x1 - x0 : 1) * width }
  /// Picture y of a plotted value, clamped into the area.
  func py(_ y: Double) -> Double { top + (1 - (max(y0, min(y1, y)) - y0) / (y1 - y0)) * height }
}

/// A line chart of several series; `logY` plots log10 of positive values.
func lineChart(
  title: String, xLabel: String, yLabel: String, series: [Series], logY: Bool = false,
  width: Double = 620, height: Double = 340, yRange: (Double, Double)? = nil, showLegend: Bool = true,
  titleSize: Double = 14
) -> String {
  let longest = series.map(\.name.count).max() ?? 0
  let legendWidth = showLegend ? max(110.0, min(300, 44 + 6.2 * Double(longest))) : 18
  var doc = SVGDocument(width: showLegend ? width - 150 + legendWidth : width, height: height)
  let left = 64.0, top = 34.0, bottom = 46.0
  doc.text(title, x: left, y: 20, size: titleSize, weight: "bold")
  let unranged = PlotArea(left: 0, top: 0, width: 0, height: 0, x0: 0, x1: 0, y0: 0, y1: 0, logY: logY)
  let xs = series.flatMap { $0.points.map(\.x) }
  let ys = series.flatMap { s in
    s.points.compactMap { unranged.plotted($0.y) } + s.band.compactMap { unranged.plotted($0.low) }
      + s.band.compactMap { unranged.plotted($0.high) }
  }
  guard let x0 = xs.min(), let x1 = xs.max(), var y0 = ys.min(), var y1 = ys.max() else {
    doc.text("no data", x: width / 2, y: height / 2, anchor: "middle", color: "#888")
    return doc.svg
  }
  if let yRange, !logY { (y0, y1) = yRange }
  if y1 - y0 < 1e-12 { y0 -= 0.5; y1 += 0.5 }
  let pad = (y1 - y0) * 0.04
  let area = PlotArea(
    left: left, top: top, width: doc.width - left - legendWidth, height: height - top - bottom,
    x0: x0, x1: x1, y0: y0 - pad, y1: y1 + pad, logY: logY)
  drawAxes(area, xs: xs, xLabel: xLabel, yLabel: yLabel, pictureHeight: height, into: &doc)
  for s in series { draw(s, in: area, into: &doc) }
  if showLegend { drawLegend(series, beside: area, into: &doc) }
  return doc.svg
}

/// The plot area's background, grid, ticks and axis labels.
private func drawAxes(_ a: PlotArea, xs: [Double], xLabel: String, yLabel: String, pictureHeight: Double, into doc: inout SVGDocument) {
  doc.rect(a.left, a.top, a.width, a.height, fill: "#fafafa", stroke: "#ddd")
  let yTicks = a.logY ? logTicks(a.y0, a.y1) : niceTicks(a.y0, a.y1, count: max(3, min(5, Int(a.height / 45))))
  for t in yTicks where t >= a.y0 && t <= a.y1 {
    doc.line(a.left, a.py(t), a.left + a.width, a.py(t), color: "#e4e4e4")
    doc.text(a.logY ? tickLabel(pow(10, t)) : tickLabel(t), x: a.left - 6, y: a.py(t) + 4, size: 10, anchor: "end", color: "#555")
  }
  var xTicks = niceTicks(a.x0, a.x1 > a.x0 ? a.x1 : a.x0 + 1, count: max(3, min(6, Int(a.width / 70))))
  // Epochs and steps are whole numbers: no tick at 1.5.
  if xs.allSatisfy({ $0 == $0.rounded() }) {
    xTicks = xTicks.filter { $0 == $0.rounded() }
    if xTicks.count < 2 { xTicks = Array(Set(xs)).sorted() }
  }
  for t in xTicks where t >= a.x0 - 1e-9 && t <= max(a.x1, a.x0 + 1) {
    doc.line(a.px(t), a.top + a.height, a.px(t), a.top + a.height + 4, color: "#888")
    doc.text(tickLabel(t), x: a.px(t), y: a.top + a.height + 16, size: 10, anchor: "middle", color: "#555")
  }
  doc.text(xLabel, x: a.left + a.width / 2, y: pictureHeight - 8, size: 11, anchor: "middle", color: "#333")
  doc.text(
    yLabel + (a.logY ? " (log scale)" : ""), x: 14, y: a.top + a.height / 2, size: 11, anchor: "middle", color: "#333",
    rotate: -90)
}

/// One series: its band (shaded), its line, and its markers when asked for (or when it is a
/// single point).
private func draw(_ s: Series, in a: PlotArea, into doc: inout SVGDocument) {
  let band = s.band.compactMap { b -> (Double, Double, Double)? in
    guard let lo = a.plotted(b.low), let hi = a.plotted(b.high) else { return nil }
    return (a.px(b.x), a.py(lo), a.py(hi))
  }
  if band.count >= 2 {
    let path = band.map { "\(fmt($0.0)),\(fmt($0.2))" } + band.reversed().map { "\(fmt($0.0)),\(fmt($0.1))" }
    doc.add("<polygon points=\"\(path.joined(separator: " "))\" fill=\"\(s.color)\" fill-opacity=\"0.18\" stroke=\"none\"/>")
  }
  let points = s.points.compactMap { p -> (x: Double, y: Double)? in
    a.plotted(p.y).map { (a.px(p.x), a.py($0)) }
  }
  if points.count >= 2 {
    let text = points.map { "\(fmt($0.x)),\(fmt($0.y))" }.joined(separator: " ")
    doc.add("<polyline points=\"\(text)\" fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"1.8\"\(s.dashed ? " stroke-dasharray=\"5 3\"" : "")/>")
  }
  if s.markers || points.count == 1 {
    for p in points { doc.add("<circle cx=\"\(fmt(p.x))\" cy=\"\(fmt(p.y))\" r=\"3.5\" fill=\"\(s.color)\"/>") }
  }
}

/// The legend right of the plot area (long lists show their first and last entries).
private func drawLegend(_ series: [Series], beside a: PlotArea, into doc: inout SVGDocument) {
  var shown = series.filter { !$0.name.isEmpty }
  if shown.count > 14 { shown = Array(shown.prefix(7)) + [Series(name: "...", color: "none", points: [])] + Array(shown.suffix(6)) }
  for (i, s) in shown.enumerated() {
    let y = a.top + 8 + Double(i) * 17
    if s.color != "none" {
      doc.line(a.left + a.width + 12, y, a.left + a.width + 32, y, color: s.color, width: 2.5, dash: s.dashed ? "5 3" : nil)
    }
    doc.text(s.name, x: a.left + a.width + 38, y: y + 4, size: 11)
  }
}

/// A heat map with row and column labels; `text` gives each cell's annotation.
func heatMap(
  title: String, rowTitle: String, columnTitle: String, rows: [String], columns: [String],
  values: [[Double?]], text: (Int, Int) -> String, color: (Double) -> String, cell: Double = 40
) -> String {
  let left = 70.0 + Double(rows.map(\.count).max() ?? 0) * 6, top = 62.0
  let width = left + Double(columns.count) * cell + 30, height = top + Double(rows.count) * cell + 20
  var doc = SVGDocument(width: max(width, 300), height: height)
  doc.text(title, x: 10, y: 20, size: 14, weight: "bold")
  doc.text(columnTitle, x: left + Double(columns.count) * cell / 2, y: 40, size: 11, anchor: "middle", color: "#333")
  doc.text(rowTitle, x: 12, y: top + Double(rows.count) * cell / 2, size: 11, anchor: "middle", color: "#333", rotate: -90)
  for (j, c) in columns.enumerated() {
    doc.text(c, x: left + (Double(j) + 0.5) * cell, y: top - 6, size: 10, anchor: "middle", color: "#555")
  }
  for (i, r) in rows.enumerated() {
    doc.text(r, x: left - 6, y: top + (Double(i) + 0.5) * cell + 4, size: 10, anchor: "end", color: "#555")
    for j in columns.indices {
      let x = left + Double(j) * cell, y = top + Double(i) * cell
      if let v = values[i][j] {
        let fill = color(v)
        doc.rect(x, y, cell, cell, fill: fill, stroke: "white", title: "\(r), \(columns[j]): \(text(i, j))")
        let dark = isDark(fill)
        doc.text(text(i, j), x: x + cell / 2, y: y + cell / 2 + 4, size: cell >= 36 ? 10 : 8, anchor: "middle", color: dark ? "white" : "#222")
      } else {
        doc.rect(x, y, cell, cell, fill: "#eee", stroke: "white", title: "\(r), \(columns[j]): no result")
      }
    }
  }
  return doc.svg
}

func isDark(_ hex: String) -> Bool {
  guard hex.count == 7, let v = Int(hex.dropFirst(), radix: 16) else { return false }
  let r = Double(v >> 16), g = Double(v >> 8 & 0xFF), b = Double(v & 0xFF)
  return 0.299 * r + 0.587 * g + 0.114 * b < 140
}

/// White to blue, for counts.
func blues(_ t: Double) -> String {
  let u = max(0, min(1, t.isFinite ? t : 0))
  let r = 247 - u * (247 - 8), g = 251 - u * (251 - 48), b = 255 - u * (255 - 107)
  return String(format: "#%02x%02x%02x", Int(r), Int(g), Int(b))
}

/// One picture in an image grid.
struct Tile {
  var image: GrayImage
  var caption: String
  var captionColor = "#222"
}

/// Pictures in a grid, each with a caption underneath. `invert` shows white-on-black MNIST
/// digits as dark ink on white, the way people draw them.
func imageGrid(title: String, tiles: [Tile], columns: Int, size: Double = 56, invert: Bool = true) -> String {
  let rows = max(1, (tiles.count + columns - 1) / columns)
  let cellW = size + 10, cellH = size + 24
  var doc = SVGDocument(width: max(320, Double(min(columns, max(tiles.count, 1))) * cellW + 20), height: 34 + Double(rows) * cellH)
  doc.text(title, x: 10, y: 20, size: 14, weight: "bold")
  if tiles.isEmpty { doc.text("none", x: 10, y: 50, color: "#888") }
  for (k, t) in tiles.enumerated() {
    let x = 10 + Double(k % columns) * cellW, y = 30 + Double(k / columns) * cellH
    var shown = t.image
    if invert { shown.pixels = shown.pixels.map { 1 - $0 } }
    doc.image(shown.pngData, x: x, y: y, w: size, h: size * Double(t.image.height) / Double(t.image.width))
    doc.rect(x, y, size, size * Double(t.image.height) / Double(t.image.width), fill: "none", stroke: "#ccc")
    doc.text(t.caption, x: x + size / 2, y: y + size + 14, size: 10, anchor: "middle", color: t.captionColor)
  }
  return doc.svg
}

/// Tiles of a grid as one raster picture (for the PNG copies of image figures).
func mosaic(_ tiles: [Tile], columns: Int, scale: Int = 3, invert: Bool = true) -> GrayImage? {
  guard let first = tiles.first else { return nil }
  let w = first.image.width, h = first.image.height, gap = 2
  let rows = (tiles.count + columns - 1) / columns
  var out = GrayImage(width: columns * (w + gap) + gap, height: rows * (h + gap) + gap, value: invert ? 0.85 : 0.3)
  for (k, t) in tiles.enumerated() where t.image.width == w && t.image.height == h {
    let ox = gap + (k % columns) * (w + gap), oy = gap + (k / columns) * (h + gap)
    for y in 0..<h {
      for x in 0..<w { out[ox + x, oy + y] = invert ? 1 - t.image[x, y] : t.image[x, y] }
    }
  }
  return out.magnified(by: scale)
}
