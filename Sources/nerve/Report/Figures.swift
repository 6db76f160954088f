// The report's figures that need more than a line chart: the confusion matrix, gradient
// norms per layer, and the pictures drawn with a model (digits, filters, feature maps).
import Foundation
import Nerve

/// The confusion matrix as a heat map (and a PNG copy).
func confusionFigure(_ cm: [[Int]]) -> Figure {
  let n = cm.count
  // Square-root scale: the diagonal's thousands would otherwise wash out the errors.
  let maxOff = cm.enumerated().flatMap { i, row in row.enumerated().filter { $0.offset != i }.map(\.element) }.max() ?? 1
  let maxAll = cm.flatMap { $0 }.max() ?? 1
  // Mistakes fill the light third of the scale, correct answers (the largest counts) the rest.
  func shade(_ v: Double) -> Double {
    v >= Double(maxOff) ? 0.35 + 0.65 * (v / Double(max(maxAll, 1))).squareRoot() : 0.35 * (v / Double(max(maxOff, 1))).squareRoot()
  }
  let svg = heatMap(
    title: "Confusion matrix (test set)", rowTitle: "true digit", columnTitle: "predicted digit",
    rows: (0..<n).map(String.init), columns: (0..<n).map(String.init),
    values: cm.map { $0.map(Double.init) }, text: { "\(cm[$0][$1])" },
    color: { blues(shade($0)) },
    cell: 38)
  var rgb: [UInt8] = []
  let s = 24
  for i in 0..<(n * s) {
    for j in 0..<(n * s) {
      let v = Double(cm[i / s][j / s])
      let hex = Int(blues(shade(v)).dropFirst(), radix: 16)!
      rgb += [UInt8(hex >> 16), UInt8(hex >> 8 & 0xFF), UInt8(hex & 0xFF)]
    }
  }
  return Figure(
    id: "confusion-matrix", title: "Confusion matrix", svg: svg,
    caption: "Rows: the true digit; columns: the prediction. The diagonal holds the correct answers; off-diagonal colours use their own scale so that every kind of mistake is visible.",
    png: rgbPNGData(width: n * s, height: n * s, rgb: rgb))
}

/// Each layer's weight-gradient norm over the run (per step when recorded every N steps,
/// otherwise per epoch); nil when the run recorded none.
func gradientFigure(epochs: [EpochMetrics], steps: [GradientRecord]) -> Figure? {
  let useSteps = steps.count >= 2
  let records: [(x: Double, layers: [LayerGradientStats])] = useSteps
    ? steps.map { (Double($0.step), $0.layers) }
    : epochs.compactMap { e in e.gradients.map { (Double(e.epoch), $0) } }
  var byLayer: [Int: (type: String, points: [(x: Double, y: Double)])] = [:]
  for r in records {
    for l in r.layers {
      byLayer[l.layer, default: (l.type, [])].points.append((r.x, l.weightNorm))
    }
  }
  guard !byLayer.isEmpty else { return nil }
  let order = byLayer.keys.sorted()
  let series = order.enumerated().map { k, i in
    Series(name: "\(byLayer[i]!.type) \(i)", color: sequentialColor(order.count > 1 ? Double(k) / Double(order.count - 1) : 0), points: byLayer[i]!.points, markers: records.count < 4)
  }
  return Figure(
    id: "gradient-norms", title: "Gradient norms",
    svg: lineChart(title: "Weight-gradient norm per layer", xLabel: useSteps ? "step" : "epoch", yLabel: "||dW||", series: series, logY: true, width: 680, height: 380),
    caption: "The norm of each layer's weight gradient (dark: first layers, yellow: last). Lines far below the others are layers that barely learn: vanishing gradients.")
}

/// Pictures that need the model and the test images: misclassified digits, sample digits
/// with predictions, and for a CNN the first convolution's filters and one digit's feature
/// maps. `rawTest` holds the test images as stored (bytes 0...255, digits counts 0...16).
func modelFigures(_ m: Sequential, rawTest: Dataset) throws -> [Figure] {
  let test = try rawTest.preprocessed(m.preprocessing)
  let side = Int(Double(m.inputShape.reduce(1, *)).squareRoot())
  let maxRaw: Float = side == 8 ? 16 : 255
  /// Test image `i` as stored, for showing it.
  func picture(_ i: Int) -> GrayImage {
    let d = side * side
    return GrayImage(width: side, height: side, pixels: (0..<d).map { min(1, rawTest.features[flat: i * d + $0] / maxRaw) })
  }
  var figs = try digitFigures(m, test: test, picture: picture)
  if let convIndex = m.layers.firstIndex(where: { $0 is Conv2D }) {
    figs.append(try filterFigure(m, layer: convIndex))
    figs.append(try featureMapFigure(m, layer: convIndex, test: test, picture: picture))
  }
  return figs
}

/// The misclassified test digits, and the first test digits with their predictions.
func digitFigures(_ m: Sequential, test: Dataset, picture: (Int) -> GrayImage) throws -> [Figure] {
  let outputs = try m.outputs(for: test.features)
  let classes = try m.predict(test.features)
  let k = m.outputShape.reduce(1, *)
  let wrong = (0..<test.count).filter { classes[$0] != Int(test.labels[$0]) }
  let gallery = wrong.prefix(60).map { i in
    Tile(image: picture(i), caption: "\(test.labels[i])→\(classes[i]) \(String(format: "%.0f%%", 100 * outputs[flat: i * k + classes[i]]))", captionColor: "#c0392b")
  }
  let samples = (0..<min(36, test.count)).map { i in
    Tile(image: picture(i), caption: "\(test.labels[i]) (\(classes[i]))", captionColor: classes[i] == Int(test.labels[i]) ? "#222" : "#c0392b")
  }
  return [
    Figure(
      id: "misclassified", title: "Misclassified digits",
      svg: imageGrid(title: "Misclassified test digits (\(wrong.count) of \(test.count); first \(gallery.count))", tiles: Array(gallery), columns: 12),
      caption: "Each digit the model got wrong: true label → predicted label, and the probability the model gave its prediction.",
      png: mosaic(Array(gallery), columns: 12).map(\.pngData)),
    Figure(
      id: "samples", title: "Sample digits",
      svg: imageGrid(title: "The first \(samples.count) test digits: label (prediction)", tiles: samples, columns: 12),
      caption: "A grid of test digits as the model receives them (28x28, centred by centre of mass), with the true label and the model's prediction in brackets.",
      png: mosaic(samples, columns: 12).map(\.pngData)),
  ]
}

/// A convolution's filters, each averaged over input channels and scaled to black..white.
func filterFigure(_ m: Sequential, layer convIndex: Int) throws -> Figure {
  let w = try m.parameter(layer: convIndex, "weight")  // [kh, kw, in, out]
  let kh = w.shape[0], kw = w.shape[1], cin = w.shape[2], cout = w.shape[3]
  var tiles: [Tile] = []
  for f in 0..<cout {
    var px = [Float](repeating: 0, count: kh * kw)
    for y in 0..<kh {
      for x in 0..<kw {
        for c in 0..<cin { px[y * kw + x] += w[flat: ((y * kw + x) * cin + c) * cout + f] / Float(cin) }
      }
    }
    let lo = px.min()!, hi = px.max()!
    tiles.append(Tile(image: GrayImage(width: kw, height: kh, pixels: px.map { hi > lo ? ($0 - lo) / (hi - lo) : 0.5 }), caption: "\(f)"))
  }
  return Figure(
    id: "conv-filters", title: "Convolution filters",
    svg: imageGrid(title: "First convolution layer: \(cout) filters of \(kh)x\(kw)", tiles: tiles, columns: 16, size: 40, invert: false),
    caption: "Each filter's weights (averaged over input channels), scaled from black (most negative) to white (most positive).",
    png: mosaic(tiles, columns: 16, scale: 12, invert: false).map(\.pngData))
}

/// One test digit's feature maps: the convolution's output after its activation (its own, or
/// an activation layer right after it).
func featureMapFigure(_ m: Sequential, layer convIndex: Int, test: Dataset, picture: (Int) -> GrayImage) throws -> Figure {
  let after = convIndex + 1 < m.layers.count && m.layers[convIndex + 1] is ActivationLayer ? convIndex + 1 : convIndex
  let digit = 0
  let maps = try m.activations(for: try test.subset(indices: [digit]).features, layer: after)  // [1, h, w, filters]
  let h = maps.shape[1], wd = maps.shape[2], fc = maps.shape[3]
  var tiles = [Tile(image: picture(digit), caption: "input")]
  for f in 0..<fc {
    var px = (0..<(h * wd)).map { maps[flat: $0 * fc + f] }
    let hi = px.max()!, lo = px.min()!
    px = px.map { hi > lo ? ($0 - lo) / (hi - lo) : 0 }
    tiles.append(Tile(image: GrayImage(width: wd, height: h, pixels: px), caption: "\(f)"))
  }
  return Figure(
    id: "feature-maps", title: "Feature maps",
    svg: imageGrid(title: "Feature maps of test digit \(digit) (label \(test.labels[digit])) after the first convolution", tiles: tiles, columns: 11, size: 52, invert: false),
    caption: "What each filter of the first convolution responds to in one digit (bright: strong response).",
    png: mosaic(tiles.dropFirst().map { $0 }, columns: 11, scale: 3, invert: false).map(\.pngData))
}
