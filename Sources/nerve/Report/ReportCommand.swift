// nerve report: a run's or a sweep's results as one self-contained HTML page of SVG figures.
import ArgumentParser
import Foundation
import Nerve

/// One figure of a report.
struct Figure {
  var id: String
  var title: String
  var svg: String
  var caption: String = ""
  /// A raster copy for lab reports (pictures of digits, filters, heat maps).
  var png: [UInt8]? = nil
}

struct ReportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "report",
    abstract: "Turn a run's metrics (and its saved model) or a sweep's folder into an HTML page of figures.",
    discussion: """
      RUN is a metrics file written by nerve train --metrics, or a folder written by nerve sweep.
      For a run: accuracy and loss curves, the confusion matrix, per-layer gradient norms (when \
      recorded) and, with the saved model (--model, or the --save file the run recorded): \
      misclassified test digits, sample digits with predictions, and for CNNs the first \
      convolution's filters and one digit's feature maps. For a sweep: the grid as a heat map, \
      a table, and every cell's curves (mean and spread over seeds).
      The page needs no network: every figure is inline SVG, pictures are embedded PNGs.
      Examples:
        nerve train --config examples/lab-e-cnn.toml --metrics runs/e.jsonl --save runs/e.safetensors
        nerve report runs/e.jsonl                      # writes runs/e.html
        nerve report runs/e.jsonl --figures runs/e-figures --png
        nerve report runs/lab-a-sweep-hidden-lr-sweep  # writes .../report.html
      """)

  @Argument(help: ArgumentHelp("A metrics file (.jsonl) or a sweep folder.", valueName: "run"))
  var runPath: String

  @Option(name: .long, help: ArgumentHelp("The trained model (default: the file the run saved, if any).", valueName: "file"))
  var model: String?

  @Option(name: .shortAndLong, help: ArgumentHelp("The HTML file to write (default: RUN with .html, or RUN/report.html).", valueName: "file"))
  var output: String?

  @Option(name: .long, help: ArgumentHelp("Also write every figure as a separate SVG file (and pictures as PNG) in this folder.", valueName: "dir"))
  var figures: String?

  @Flag(name: .long, help: "With --figures: also render every chart to PNG with a headless Chromium (must be installed).")
  var png = false

  @OptionGroup var dataOptions: DataOptions
  @OptionGroup var testOptions: TestDataOptions

  func run() throws {
    try reportingErrors {
      var isDirectory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: runPath, isDirectory: &isDirectory) else {
        throw NerveError(.badFile, at: runPath, "no such file or folder")
      }
      let title: String, figs: [Figure], facts: [(String, String)]
      let target: String
      if isDirectory.boolValue {
        (title, facts, figs) = try SweepReport(dir: runPath).build()
        target = output ?? runPath + "/report.html"
      } else {
        (title, facts, figs) = try RunReport(
          path: runPath, modelPath: model, data: dataOptions.data, testOptions: testOptions).build()
        target = output ?? (runPath.hasSuffix(".jsonl") ? String(runPath.dropLast(6)) : runPath) + ".html"
      }
      try AtomicFile.write(html(title: title, facts: facts, figures: figs), to: target)
      print("wrote \(target) (\(figs.count) figures: \(figs.map(\.id).joined(separator: ", ")))")
      if let figures {
        try FileManager.default.createDirectory(atPath: figures, withIntermediateDirectories: true)
        for f in figs {
          try AtomicFile.write(f.svg, to: "\(figures)/\(f.id).svg")
          if let p = f.png { try AtomicFile.write(Data(p), to: "\(figures)/\(f.id).png") }
        }
        if png { try renderPNGs(figs.filter { $0.png == nil }, in: figures) }
        print("wrote \(figs.count) SVG files\(png ? " and PNGs" : "") to \(figures)/")
      }
    }
  }

  /// Charts to PNG through a headless browser (there is no SVG rasteriser in the standard tools).
  func renderPNGs(_ figs: [Figure], in dir: String) throws {
    guard let browser = findBrowser() else {
      throw NerveError(.badValue, at: "--png", "needs chromium (apt-get install -y chromium) to render charts; the SVG files are written")
    }
    for f in figs {
      let svgPath = URL(fileURLWithPath: "\(dir)/\(f.id).svg").standardizedFileURL.path
      let size = svgSize(f.svg)
      let p = Process()
      p.executableURL = URL(fileURLWithPath: browser)
      p.arguments = [
        "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=2",
        "--screenshot=\(URL(fileURLWithPath: "\(dir)/\(f.id).png").standardizedFileURL.path)",
        "--window-size=\(Int(size.0)),\(Int(size.1))", "file://\(svgPath)",
      ]
      p.standardOutput = FileHandle.nullDevice
      p.standardError = FileHandle.nullDevice
      try p.run()
      p.waitUntilExit()
      guard p.terminationStatus == 0 else {
        throw NerveError(.badValue, at: browser, "failed to render \(f.id).svg (exit status \(p.terminationStatus))")
      }
    }
  }

  func html(title: String, facts: [(String, String)], figures: [Figure]) -> String {
    var out = """
      <!DOCTYPE html>
      <html lang="en"><head><meta charset="utf-8">
      <title>\(escapeXML(title))</title>
      <style>
      body { font-family: Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1100px; color: #222; }
      h1 { font-size: 22px; } table.facts td { padding: 2px 14px 2px 0; } table.facts td:first-child { color: #666; }
      figure { margin: 22px 0; } figcaption { color: #555; font-size: 13px; max-width: 900px; }
      svg { max-width: 100%; height: auto; } nav a { margin-right: 12px; font-size: 13px; }
      pre { background: #f6f6f6; padding: 8px; font-size: 12px; overflow-x: auto; }
      </style></head>
      <body data-figures="\(figures.count)">
      <h1>\(escapeXML(title))</h1>
      <table class="facts">
      """
    for (k, v) in facts {
      out += v.contains("\n") ? "<tr><td>\(escapeXML(k))</td><td><pre>\(escapeXML(v))</pre></td></tr>\n" : "<tr><td>\(escapeXML(k))</td><td>\(escapeXML(v))</td></tr>\n"
    }
    out += "</table>\n<nav>" + figures.map { "<a href=\"#\($0.id)\">\(escapeXML($0.title))</a>" }.joined() + "</nav>\n"
    for f in figures {
      out += "<figure id=\"\(f.id)\" class=\"figure\">\n\(f.svg)\n<figcaption>\(escapeXML(f.caption))</figcaption></figure>\n"
    }
    // Marks the page once every figure has drawn and every embedded picture has decoded, so a
    // headless browser (and the test suite) can confirm the report renders.
    out += """
      <script>
      window.addEventListener("load", () => {
        const figures = [...document.querySelectorAll("figure.figure")];
        let drawn = 0;
        const pictures = [];
        for (const f of figures) {
          const svg = f.querySelector("svg");
          if (svg && svg.getBBox().width > 0 && svg.getBoundingClientRect().height > 0) drawn++;
          for (const im of f.querySelectorAll("image")) pictures.push(im.getAttribute("href"));
        }
        document.body.dataset.rendered = drawn + "/" + figures.length;
        let decoded = 0, broken = 0;
        const done = () => { document.body.dataset.pictures = decoded + " decoded, " + broken + " broken"; };
        done();
        for (const href of pictures) {
          const img = new Image();
          img.onload = () => { if (img.naturalWidth > 0) decoded++; else broken++; done(); };
          img.onerror = () => { broken++; done(); };
          img.src = href;
        }
      });
      </script>
      </body></html>

      """
    return out
  }
}

func findBrowser() -> String? {
  for name in ["chromium", "chromium-browser", "google-chrome", "chrome"] {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":") {
      let path = "\(dir)/\(name)"
      if FileManager.default.isExecutableFile(atPath: path) { return path }
    }
  }
  return nil
}

// MARK: - One training run

struct RunReport {
  var path: String
  var modelPath: String?
  var data: String?
  var testOptions: TestDataOptions

  func build() throws -> (String, [(String, String)], [Figure]) {
    guard FileManager.default.isReadableFile(atPath: path) else { throw NerveError(.badFile, at: path, "cannot read the metrics file") }
    let records = readJSONLines(path)
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    let nonEmpty = text.split(separator: "\n").count
    guard !records.isEmpty else {
      throw NerveError(.badFile, at: path, "holds no JSON lines; expected the file nerve train --metrics writes")
    }
    guard records.count == nonEmpty else {
      throw NerveError(.badFile, at: path, "\(nonEmpty - records.count) of \(nonEmpty) lines are not JSON objects")
    }
    let epochs = records.filter { $0["epoch"] != nil && $0["step"] == nil && $0["train_loss"] != nil }
    let steps = records.filter { $0["step"] != nil }
    let final = records.last(where: { $0["test_accuracy"] != nil && $0["epoch"] == nil })
    guard !epochs.isEmpty || final != nil else {
      throw NerveError(.badFile, at: path, "has no epoch records (train_loss, ...) or final test record; is it a nerve train --metrics file?")
    }
    let name = URL(fileURLWithPath: path).deletingPathExtension().lastPathComponent
    var facts: [(String, String)] = [("metrics", path)]
    if let c = final?["config"] as? String { facts.append(("config", c)) }
    if let f = final {
      if let a = f["test_accuracy"] as? Double {
        facts.append(("test accuracy", String(format: "%.2f%% (%d of %d correct)", 100 * a, (f["test_correct"] as? Int) ?? 0, (f["test_count"] as? Int) ?? 0)))
      }
      if let s = f["training_seconds"] as? Double { facts.append(("training time", String(format: "%.1f s, %d epochs, %d thread(s)", s, epochs.count, (f["threads"] as? Int) ?? 0))) }
      if let b = f["best_epoch"] as? Int { facts.append(("early stopping", "kept the weights of epoch \(b)")) }
    }
    var figs: [Figure] = []
    func curve(_ key: String) -> [(x: Double, y: Double)] {
      epochs.compactMap { e in (e[key] as? Double).map { (Double(e["epoch"] as? Int ?? 0), $0) } }
    }
    let lastEpoch = Double(epochs.count)
    for (kind, scale) in [("accuracy", 100.0), ("loss", 1.0)] {
      var series: [Series] = []
      for (i, split) in ["train", "valid", "test"].enumerated() {
        let pts = curve("\(split)_\(kind)").map { (x: $0.x, y: $0.y * scale) }
        if !pts.isEmpty { series.append(Series(name: split == "valid" ? "validation" : split, color: palette[i], points: pts)) }
      }
      if !series.contains(where: { $0.name == "test" }), let t = final?["test_\(kind)"] as? Double {
        series.append(Series(name: "test (end)", color: palette[2], points: [(lastEpoch, t * scale)], markers: true))
      }
      figs.append(Figure(
        id: "\(kind)-curves", title: kind == "accuracy" ? "Accuracy" : "Loss",
        svg: lineChart(title: kind == "accuracy" ? "Accuracy per epoch" : "Loss per epoch", xLabel: "epoch", yLabel: kind == "accuracy" ? "accuracy (%)" : "loss", series: series, logY: kind == "loss" && (series.flatMap(\.points).map(\.y).max() ?? 0) > 20 * max(1e-12, series.flatMap(\.points).map(\.y).min() ?? 1)),
        caption: kind == "accuracy" ? "Training, validation and test accuracy after each epoch (test: at the end unless the run evaluated it every epoch)." : "Training, validation and test loss after each epoch."))
    }
    if let cm = final?["confusion_matrix"] as? [[Int]], !cm.isEmpty {
      figs.append(confusionFigure(cm))
    }
    if let g = gradientFigure(epochs: epochs, steps: steps) { figs.append(g) }

    // Everything below needs the model and the test images.
    var modelFile = modelPath
    if modelFile == nil {
      let candidates = [final?["model"] as? String, URL(fileURLWithPath: path).deletingPathExtension().appendingPathExtension("safetensors").path].compactMap { $0 }
      modelFile = candidates.first { FileManager.default.fileExists(atPath: $0) }
    }
    if let modelFile {
      let m = try Sequential.load(from: modelFile)
      facts.append(("model", modelFile))
      facts.append(("layers", m.summary))
      figs += try modelFigures(m)
    } else {
      facts.append(("model", "not found: pass --model FILE (or train with --save) for digit galleries and filters"))
    }
    return ("Nerve report: \(name)", facts, figs)
  }

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

  func gradientFigure(epochs: [[String: Any]], steps: [[String: Any]]) -> Figure? {
    let useSteps = steps.count >= 2
    let records = useSteps ? steps : epochs
    var byLayer: [Int: (type: String, points: [(x: Double, y: Double)])] = [:]
    for (k, r) in records.enumerated() {
      guard let layers = r["gradients"] as? [[String: Any]] else { continue }
      let x = useSteps ? Double((r["step"] as? Int) ?? k) : Double((r["epoch"] as? Int) ?? k + 1)
      for l in layers {
        guard let i = l["layer"] as? Int, let norm = l["weight_norm"] as? Double else { continue }
        byLayer[i, default: ((l["type"] as? String) ?? "layer", [])].points.append((x, norm))
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

  func modelFigures(_ m: Sequential) throws -> [Figure] {
    var figs: [Figure] = []
    let rawTest = try testOptions.rawTestSet(for: m, data: data)
    let test = try rawTest.preprocessed(m.preprocessing)
    let outputs = try m.outputs(for: test.features)
    let classes = try m.predict(test.features)
    let k = m.outputShape.reduce(1, *)
    let side = Int(Double(m.inputShape.reduce(1, *)).squareRoot())
    let maxRaw: Float = side == 8 ? 16 : 255
    func picture(_ i: Int) -> GrayImage {
      let d = side * side
      return GrayImage(width: side, height: side, pixels: (0..<d).map { min(1, rawTest.features[flat: i * d + $0] / maxRaw) })
    }
    let wrong = (0..<test.count).filter { classes[$0] != Int(test.labels[$0]) }
    let gallery = wrong.prefix(60).map { i in
      Tile(image: picture(i), caption: "\(test.labels[i])→\(classes[i]) \(String(format: "%.0f%%", 100 * outputs[flat: i * k + classes[i]]))", captionColor: "#c0392b")
    }
    figs.append(Figure(
      id: "misclassified", title: "Misclassified digits",
      svg: imageGrid(title: "Misclassified test digits (\(wrong.count) of \(test.count); first \(gallery.count))", tiles: Array(gallery), columns: 12),
      caption: "Each digit the model got wrong: true label → predicted label, and the probability the model gave its prediction.",
      png: mosaic(Array(gallery), columns: 12).map(\.pngData)))
    let samples = (0..<min(36, test.count)).map { i in
      Tile(image: picture(i), caption: "\(test.labels[i]) (\(classes[i]))", captionColor: classes[i] == Int(test.labels[i]) ? "#222" : "#c0392b")
    }
    figs.append(Figure(
      id: "samples", title: "Sample digits",
      svg: imageGrid(title: "The first \(samples.count) test digits: label (prediction)", tiles: samples, columns: 12),
      caption: "A grid of test digits as the model receives them (28x28, centred by centre of mass), with the true label and the model's prediction in brackets.",
      png: mosaic(samples, columns: 12).map(\.pngData)))

    if let convIndex = m.layers.firstIndex(where: { $0 is Conv2D }) {
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
      figs.append(Figure(
        id: "conv-filters", title: "Convolution filters",
        svg: imageGrid(title: "First convolution layer: \(cout) filters of \(kh)x\(kw)", tiles: tiles, columns: 16, size: 40, invert: false),
        caption: "Each filter's weights (averaged over input channels), scaled from black (most negative) to white (most positive).",
        png: mosaic(tiles, columns: 16, scale: 12, invert: false).map(\.pngData)))
      // One digit's feature maps: the convolution's output after its activation.
      let after = convIndex + 1 < m.layers.count && m.layers[convIndex + 1] is ActivationLayer ? convIndex + 1 : convIndex
      let digit = 0
      let one = try test.subset(indices: [digit]).features
      let maps = try m.activations(for: one, layer: after)  // [1, h, w, filters]
      let h = maps.shape[1], wd = maps.shape[2], fc = maps.shape[3]
      var mapTiles = [Tile(image: picture(digit), caption: "input")]
      for f in 0..<fc {
        var px = (0..<(h * wd)).map { maps[flat: $0 * fc + f] }
        let hi = px.max()!, lo = px.min()!
        px = px.map { hi > lo ? ($0 - lo) / (hi - lo) : 0 }
        mapTiles.append(Tile(image: GrayImage(width: wd, height: h, pixels: px), caption: "\(f)"))
      }
      figs.append(Figure(
        id: "feature-maps", title: "Feature maps",
        svg: imageGrid(title: "Feature maps of test digit \(digit) (label \(test.labels[digit])) after the first convolution", tiles: mapTiles, columns: 11, size: 52, invert: false),
        caption: "What each filter of the first convolution responds to in one digit (bright: strong response).",
        png: mosaic(mapTiles.dropFirst().map { $0 }, columns: 11, scale: 3, invert: false).map(\.pngData)))
    }
    return figs
  }
}

// MARK: - A sweep

struct SweepReport {
  var dir: String

  func build() throws -> (String, [(String, String)], [Figure]) {
    let sweepFile = dir + "/sweep.jsonl", summaryFile = dir + "/summary.jsonl"
    guard FileManager.default.isReadableFile(atPath: sweepFile) else {
      throw NerveError(.badFile, at: dir, "no sweep.jsonl: expected a folder written by nerve sweep")
    }
    let header = readJSONLines(sweepFile).first ?? [:]
    let cells = readJSONLines(summaryFile)
    guard !cells.isEmpty else { throw NerveError(.badFile, at: summaryFile, "missing or empty: run nerve sweep again to finish it") }
    let name = header["sweep"] as? String ?? URL(fileURLWithPath: dir).lastPathComponent
    let axes = (header["axes"] as? [[String: Any]] ?? []).map { (key: $0["key"] as? String ?? "?", values: ($0["values"] as? [Any] ?? []).map(jsonValueText)) }
    let runs = header["runs"] as? Int ?? 1
    var facts: [(String, String)] = [("folder", dir), ("config", header["config"] as? String ?? "?"), ("runs per cell", "\(runs)")]
    for a in axes { facts.append((a.key, a.values.joined(separator: ", "))) }
    let rank = cells.contains { $0["final_valid_accuracy_mean"] != nil } ? "valid_accuracy" : "test_accuracy"
    var figs: [Figure] = []
    func settingText(_ cell: [String: Any], _ key: String) -> String {
      (cell["settings"] as? [String: Any])?[key].map(jsonValueText) ?? "?"
    }
    func score(_ c: [String: Any]) -> Double? { c["final_\(rank)_mean"] as? Double }
    let scores = cells.compactMap(score)
    let lo = scores.min() ?? 0, hi = scores.max() ?? 1
    let best = cells.max { (score($0) ?? -1) < (score($1) ?? -1) }
    if let best { facts.append(("best cell", "\(best["id"] as? String ?? "") (\(rank.replacingOccurrences(of: "_", with: " ")) \(String(format: "%.2f%%", 100 * (score(best) ?? .nan))))")) }
    if axes.count >= 2 {
      let rowsAxis = axes[0], colsAxis = axes[1]
      var values = [[Double?]](repeating: [Double?](repeating: nil, count: colsAxis.values.count), count: rowsAxis.values.count)
      var texts = [[String]](repeating: [String](repeating: "", count: colsAxis.values.count), count: rowsAxis.values.count)
      for c in cells {
        guard let i = rowsAxis.values.firstIndex(of: settingText(c, rowsAxis.key)), let j = colsAxis.values.firstIndex(of: settingText(c, colsAxis.key)), let s = score(c) else { continue }
        // With more than two axes, a square shows the best over the others.
        if values[i][j] == nil || s > values[i][j]! {
          values[i][j] = s
          let sd = c["final_\(rank)_std"] as? Double ?? 0
          texts[i][j] = runs > 1 ? String(format: "%.1f±%.1f", 100 * s, 100 * sd) : String(format: "%.2f", 100 * s)
        }
      }
      figs.append(Figure(
        id: "sweep-heatmap", title: "Grid",
        svg: heatMap(
          title: "Final \(rank.replacingOccurrences(of: "_", with: " ")) (%)\(axes.count > 2 ? ", best over the other axes" : "")",
          rowTitle: rowsAxis.key, columnTitle: colsAxis.key, rows: rowsAxis.values, columns: colsAxis.values, values: values,
          text: { texts[$0][$1] }, color: { sequentialColor(hi > lo ? ($0 - lo) / (hi - lo) : 1) }, cell: 64),
        caption: "Each square is one cell of the grid: its final \(rank.replacingOccurrences(of: "_", with: " "))\(runs > 1 ? " (mean ± std over \(runs) seeds)" : ""). Brighter is better."))
    } else if axes.count == 1 {
      let a = axes[0]
      let numeric = a.values.allSatisfy { Double($0) != nil }
      var pts: [(x: Double, y: Double)] = [], band: [(x: Double, low: Double, high: Double)] = []
      for (k, c) in cells.enumerated() {
        guard let s = score(c) else { continue }
        let x = numeric ? Double(settingText(c, a.key)) ?? Double(k) : Double(k)
        pts.append((x, 100 * s))
        let sd = 100 * (c["final_\(rank)_std"] as? Double ?? 0)
        band.append((x, 100 * s - sd, 100 * s + sd))
      }
      figs.append(Figure(
        id: "sweep-line", title: "Final accuracy",
        svg: lineChart(title: "Final \(rank.replacingOccurrences(of: "_", with: " ")) against \(a.key)", xLabel: a.key + (numeric ? "" : " (cell)"), yLabel: "accuracy (%)", series: [Series(name: rank.replacingOccurrences(of: "_", with: " "), color: palette[0], points: pts, band: runs > 1 ? band : [], markers: true)]),
        caption: runs > 1 ? "Mean over \(runs) seeds; the band is ± one standard deviation." : "One run per value."))
    }
    // One small chart per cell: training and validation accuracy (mean over runs, ± std).
    var panels: [String] = []
    for c in cells {
      var series: [Series] = []
      for (i, split) in ["train", "valid", "test"].enumerated() {
        guard let mean = c["\(split)_accuracy_mean"] as? [Any] else { continue }
        let m = mean.map { 100 * (($0 as? Double) ?? .nan) }
        let s = (c["\(split)_accuracy_std"] as? [Any] ?? []).map { 100 * (($0 as? Double) ?? 0) }
        series.append(Series(
          name: split, color: palette[i], points: m.enumerated().map { (Double($0.offset + 1), $0.element) },
          band: runs > 1 && s.count == m.count ? m.indices.map { (Double($0 + 1), m[$0] - s[$0], m[$0] + s[$0]) } : []))
      }
      if let t = c["final_test_accuracy_mean"] as? Double, !series.contains(where: { $0.name == "test" }),
        let n = series.first?.points.count {
        series.append(Series(name: "test", color: palette[2], points: [(Double(n), 100 * t)], markers: true))
      }
      panels.append(lineChart(
        title: (c["id"] as? String ?? "").replacingOccurrences(of: ",", with: ", "), xLabel: "epoch", yLabel: "accuracy (%)",
        series: series, width: 330, height: 230, yRange: (0, 100), showLegend: false, titleSize: 11))
    }
    if !panels.isEmpty {
      figs.append(Figure(
        id: "cell-curves", title: "Curves per cell",
        svg: smallMultiples(title: "Accuracy per epoch in each cell: train (blue), validation (orange), test (red)", panels: panels, columns: 3),
        caption: "One chart per cell of the grid\(runs > 1 ? ", mean over \(runs) seeds with a band of ± one standard deviation" : ""); the test dot is the accuracy at the end."))
    }
    // Every cell's curves in one chart: accuracy and loss, mean over runs with a ± std band.
    for (kind, scale) in [("accuracy", 100.0), ("loss", 1.0)] {
      for split in ["valid", "train"] {
        let key = "\(split)_\(kind)"
        var series: [Series] = []
        for (k, c) in cells.enumerated() {
          guard let mean = c["\(key)_mean"] as? [Any] else { continue }
          let std = c["\(key)_std"] as? [Any] ?? []
          let m = mean.map { ($0 as? Double) ?? .nan }, s = std.map { ($0 as? Double) ?? 0 }
          series.append(Series(
            name: (c["id"] as? String ?? "").replacingOccurrences(of: ",", with: " "),
            color: cells.count <= 10 ? palette[k % palette.count] : sequentialColor(Double(k) / Double(cells.count - 1)),
            points: m.enumerated().map { (Double($0.offset + 1), $0.element * scale) },
            band: runs > 1 ? m.indices.map { (Double($0 + 1), (m[$0] - (s.indices.contains($0) ? s[$0] : 0)) * scale, (m[$0] + (s.indices.contains($0) ? s[$0] : 0)) * scale) } : []))
        }
        guard !series.isEmpty else { continue }
        let label = split == "valid" ? "validation" : "training"
        figs.append(Figure(
          id: "curves-\(split)-\(kind)", title: "\(label.capitalized) \(kind)",
          svg: lineChart(title: "\(label.capitalized) \(kind) per epoch, every cell", xLabel: "epoch", yLabel: kind == "accuracy" ? "accuracy (%)" : "loss", series: series, logY: kind == "loss", width: 760, height: 400),
          caption: "One line per cell\(runs > 1 ? " (mean over \(runs) seeds, band ± one standard deviation)" : "")."))
        if split == "valid" { break }  // Training curves only when there is no validation split.
      }
    }
    return ("Nerve sweep report: \(name)", facts, figs)
  }
}

func jsonValueText(_ v: Any) -> String {
  switch v {
  case let n as NSNumber:
    let d = n.doubleValue
    return d == d.rounded() && abs(d) < 1e15 && !"\(n)".contains(".") ? String(Int(d)) : "\(d)"
  case let s as String: return s
  default: return "\(v)"
  }
}
