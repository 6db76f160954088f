// nerve report: a run's or a sweep's results as one self-contained HTML page of SVG figures.
// The page template is ReportPage.swift, the two kinds of report RunReport.swift and
// SweepReport.swift, the figures Figures.swift and Charts.swift.
import ArgumentParser
import Foundation
import Nerve

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
      let page: ReportPage
      let target: String
      if isDirectory.boolValue {
        page = try SweepReport(dir: runPath).build()
        target = output ?? runPath + "/report.html"
      } else {
        page = try RunReport(
          path: runPath, modelPath: model, data: dataOptions.data, testOptions: testOptions).build()
        target = output ?? (runPath.hasSuffix(".jsonl") ? String(runPath.dropLast(6)) : runPath) + ".html"
      }
      let figs = page.figures
      try AtomicFile.write(page.html, to: target)
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
      let browserRun = try Subprocess.start(browser, [
        "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--force-device-scale-factor=2",
        "--screenshot=\(URL(fileURLWithPath: "\(dir)/\(f.id).png").standardizedFileURL.path)",
        "--window-size=\(Int(size.0)),\(Int(size.1))", "file://\(svgPath)",
      ])
      let exit = browserRun.waitUntilExit()
      guard exit.succeeded else {
        throw NerveError(.badValue, at: browser, "failed to render \(f.id).svg (\(exit))")
      }
    }
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
