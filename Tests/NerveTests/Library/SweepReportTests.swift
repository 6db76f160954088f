// Experiments a student runs: config overrides, sweeps (grids, ranges, repeated runs, resuming),
// reports rendered in a headless browser, and predicting a digit from a picture.
import Foundation
import Nerve
import Testing

@Suite("Sweeps, reports and your own digit")
struct SweepReportTests {
  static let root = ImageTests.root

  func writeConfig(_ text: String) -> String {
    let path = Fixtures.temporaryDirectory() + "/sweep.toml"
    try! text.write(toFile: path, atomically: true, encoding: .utf8)
    return path
  }

  static let base = """
    name = "tiny"
    [data]
    subset = 300
    [[layer]]
    type = "dense"
    units = 30
    activation = "sigmoid"
    [[layer]]
    type = "dense"
    units = 10
    activation = "sigmoid"
    [train]
    loss = "mse"
    learning_rate = 1.0
    batch_size = "full"
    epochs = 3
    """

  @Test("overrides reach train, data and layer keys; unknown keys and bad values are errors naming them")
  func overrides() throws {
    let path = writeConfig(Self.base)
    let c = try ExperimentConfig(contentsOf: path, overrides: [
      ConfigOverride(parsing: "train.learning_rate=0.25"), ConfigOverride(parsing: "hidden=75"),
      ConfigOverride(parsing: "layer.1.activation=softmax"), ConfigOverride(parsing: "subset=100"),
      ConfigOverride(parsing: "batch_size=full"),
    ])
    #expect(c.learningRate == 0.25 && c.layers[0].units == 75 && c.layers[1].units == 10)
    #expect(c.layers[1].activation == "softmax" && c.trainCount == 100)
    for (bad, says) in [("layer.5.units=3", "layer"), ("train.learning_rat=1", "learning_rat"), ("train.epochs=-2", "epochs"), ("nonsense.a.b.c=1", "unknown key")] {
      do {
        _ = try ExperimentConfig(contentsOf: path, overrides: [ConfigOverride(parsing: bad)])
        Issue.record("\(bad) was accepted")
      } catch {
        #expect("\(error)".contains(says), "\(bad): \(error)")
      }
    }
  }

  @Test("a [sweep] table makes a grid (first key slowest) with ranges and seeds per run")
  func grid() throws {
    let path = writeConfig(Self.base + """

      [sweep]
      hidden = [15, 30]
      learning_rate = { from = 0.1, to = 0.3, step = 0.1 }
      runs = 2
      """)
    let s = try Sweep(contentsOf: path)
    #expect(s.runs == 2 && s.cells.count == 6)
    #expect(s.axes[1].values == [.float(0.1), .float(0.2), .float(0.3)])
    let cell = s.cells[4]
    #expect(cell.id == "hidden=30,learning_rate=0.2")
    let c0 = try s.config(for: cell, run: 0), c1 = try s.config(for: cell, run: 1)
    #expect(c0.layers[0].units == 30 && c0.learningRate == 0.2 && c1.seed == c0.seed + 1)
    // A --grid axis replaces the file's axis of the same key.
    let t = try Sweep(contentsOf: path, extraAxes: [Sweep.axis(parsing: "hidden=5,6,7")], runs: 1)
    #expect(t.cells.count == 9 && t.runs == 1)
    // Every cell is checked before anything trains.
    let bad = writeConfig(Self.base + "\n[sweep]\nepochs = [1, \"x\"]\n")
    #expect(throws: NerveError.self) { try Sweep(contentsOf: bad) }
    // --set is applied before the cells are checked, so it can mend the base.
    let broken = writeConfig(Self.base.replacingOccurrences(of: "epochs = 3", with: "epochs = -1") + "\n[sweep]\nhidden = [5, 6]\n")
    #expect(throws: NerveError.self) { try Sweep(contentsOf: broken) }
    let mended = try Sweep(contentsOf: broken, overrides: [ConfigOverride(parsing: "train.epochs=2")])
    let mendedConfig = try mended.config(for: mended.cells[1], run: 0)
    #expect(mended.cells.count == 2 && mendedConfig.epochs == 2)
    let stats = RunStatistics([1, 2, 3, 4])
    #expect(stats.mean == 2.5 && abs(stats.std - 1.2909944487358056) < 1e-12)
    #expect(RunStatistics.perEpoch([[1, 2], [3]]).map(\.mean) == [2, 2])
  }

  @Test("nerve sweep: a 3 x 2 grid in parallel, a table with the best cell, resume without redoing, a report with heat map and curves")
  func sweepCommand() throws {
    let dir = Fixtures.temporaryDirectory()
    let config = writeConfig(Self.base + "\n[sweep]\nhidden = [5, 15, 30]\nlearning_rate = [0.5, 2]\n")
    let r = try nerve(["sweep", "--config", config, "--out", dir, "--threads", "2"])
    #expect(r.status == 0, "\(r.err)")
    #expect(r.out.contains("2 run(s) at a time, 1 thread(s) each"), "\(r.out)")
    #expect(r.out.components(separatedBy: "\n").filter { $0.hasPrefix("hidden=") }.count == 6, "\(r.out)")
    #expect(r.out.contains("<- best (valid accuracy)"), "\(r.out)")
    let lines = try String(contentsOfFile: dir + "/sweep.jsonl", encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 7)
    let summary = try String(contentsOfFile: dir + "/summary.jsonl", encoding: .utf8).split(separator: "\n")
    #expect(summary.count == 6)
    let cell = try JSONSerialization.jsonObject(with: Data(summary[0].utf8)) as! [String: Any]
    #expect((cell["valid_accuracy_mean"] as? [Double])?.count == 3)

    // Run it again: everything is done, nothing is trained.
    let again = try nerve(["sweep", "--config", config, "--out", dir, "--threads", "2"])
    #expect(again.status == 0 && again.out.contains("6 of 6 already done"), "\(again.out)")
    #expect(!again.out.contains("[1/6]"))
    // A different sweep in the same folder is refused, not mixed in.
    let other = try nerve(["sweep", "--config", config, "--out", dir, "--runs", "2"])
    #expect(other.status != 0 && other.err.contains("different sweep"), "\(other.err)")

    let report = try nerve(["report", dir])
    #expect(report.status == 0, "\(report.err)")
    let html = try String(contentsOfFile: dir + "/report.html", encoding: .utf8)
    #expect(html.contains("id=\"sweep-heatmap\"") && html.contains("id=\"cell-curves\""))
    #expect(html.components(separatedBy: "<rect").count > 6, "heat map squares")
  }

  @Test("nerve sweep --runs: mean and standard deviation per epoch over seeds")
  func repeatedRuns() throws {
    let dir = Fixtures.temporaryDirectory()
    let config = writeConfig(Self.base)
    let r = try nerve(["sweep", "--config", config, "--out", dir, "--runs", "3", "--set", "train.epochs=2"])
    #expect(r.status == 0, "\(r.err)")
    #expect(r.out.contains("±") && r.out.contains("over 3 runs"), "\(r.out)")
    // A single configuration: the per-epoch curves, mean ± std, in the terminal too.
    #expect(r.out.contains("epoch train_loss") && r.out.contains("\n2     "), "\(r.out)")
    let summary = try String(contentsOfFile: dir + "/summary.jsonl", encoding: .utf8).split(separator: "\n")
    let cell = try JSONSerialization.jsonObject(with: Data(summary[0].utf8)) as! [String: Any]
    #expect(cell["runs"] as? Int == 3)
    let std = cell["train_loss_std"] as! [Double]
    #expect(std.count == 2 && std.allSatisfy { $0 > 0 }, "different seeds must give different runs: \(std)")
  }

  @Test("a CNN run's report renders every figure in headless Chromium; the CNN reads the drawn digits")
  func cnnReportAndDigits() throws {
    let dir = Fixtures.temporaryDirectory()
    let metrics = dir + "/cnn.jsonl", model = dir + "/cnn.safetensors"
    let t = try nerve([
      "train", "--config", "examples/lab-e-cnn.toml", "--subset", "12000", "--epochs", "1", "--threads", "2",
      "--gradients", "--metrics", metrics, "--save", model,
    ])
    #expect(t.status == 0, "\(t.err)")
    // The final record carries the confusion matrix; epochs carry per-layer gradient norms.
    let records = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n").map {
      try JSONSerialization.jsonObject(with: Data($0.utf8)) as! [String: Any]
    }
    let confusion = records.last!["confusion_matrix"] as! [[Int]]
    #expect(confusion.count == 10 && confusion.flatMap { $0 }.reduce(0, +) == records.last!["test_count"] as! Int)
    let gradients = records[0]["gradients"] as! [[String: Any]]
    #expect(gradients.count == 4 && gradients.allSatisfy { ($0["weight_norm"] as! Double) > 0 })

    let r = try nerve(["report", metrics, "--figures", dir + "/figures"])
    #expect(r.status == 0, "\(r.err)")
    let ids = ["accuracy-curves", "loss-curves", "confusion-matrix", "gradient-norms", "misclassified", "samples", "conv-filters", "feature-maps"]
    let html = try String(contentsOfFile: dir + "/cnn.html", encoding: .utf8)
    for id in ids {
      #expect(html.contains("<figure id=\"\(id)\""), "\(id) missing")
      #expect(FileManager.default.fileExists(atPath: "\(dir)/figures/\(id).svg"), "\(id).svg missing")
    }
    #expect(!html.contains("<link") && !html.contains("src=\"http"))

    // Open it in a real browser: every figure drawn, every embedded picture decoded.
    let browser = ["/usr/bin/chromium", "/usr/bin/chromium-browser"].first { FileManager.default.isExecutableFile(atPath: $0) }
    #expect(browser != nil, "Chromium is needed to check reports: apt-get install -y chromium (scripts/setup.sh does)")
    if let browser {
      let p = Process()
      p.executableURL = URL(fileURLWithPath: browser)
      p.arguments = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=10000", "--dump-dom", "file://\(dir)/cnn.html"]
      let out = Pipe()
      p.standardOutput = out
      p.standardError = FileHandle.nullDevice
      try p.run()
      let dom = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
      p.waitUntilExit()
      #expect(dom.contains("data-rendered=\"8/8\""), "\(dom.prefix(300))")
      #expect(dom.contains(" 0 broken\""), "broken pictures")
      let decoded = dom.range(of: "data-pictures=\"")
        .map { Int(dom[$0.upperBound...].prefix { $0.isNumber }) ?? 0 } ?? 0
      #expect(decoded > 100, "only \(decoded) pictures decoded")
    }

    // The drawn digits in examples/digits, prepared MNIST-style, read by this CNN.
    let digits = Self.root + "/examples/digits"
    let files = try FileManager.default.contentsOfDirectory(atPath: digits).filter { $0.hasSuffix(".png") }.sorted()
    let m = try Sequential.load(from: model)
    var right = 0
    for f in files {
      let (p, _) = try m.classify(picture: GrayImage(contentsOf: digits + "/" + f), source: f)
      let predicted = p.indices.max { p[$0] < p[$1] }!
      if "digit-\(predicted)-" == String(f.prefix(8)) { right += 1 }
    }
    #expect(right >= files.count - 1, "\(right) of \(files.count) drawn digits read correctly")

    let prepared = dir + "/seen.png"
    let c = try nerve(["predict", model, "examples/digits/digit-7-paper.png", "--save-prepared", prepared])
    #expect(c.status == 0, "\(c.err)")
    #expect(c.out.contains("digit-7-paper.png: 7 ("), "\(c.out)")
    let seen = try GrayImage(contentsOf: prepared)
    #expect(seen.width == 28 && seen.height == 28)
    let bad = try nerve(["predict", model, "Package.swift"])
    #expect(bad.status != 0 && bad.err.contains("Package.swift") && bad.err.contains("not a PNG"), "\(bad.err)")
  }
}
