// nerve sweep: a grid of settings and/or repeated runs with several seeds, resumable.
//
// Each run is a child `nerve train` process with its own metrics file, `jobs` of them at a
// time. Separate processes make the sweep interruptible (Ctrl-C stops the children; finished
// runs are kept in sweep.jsonl and skipped next time) and keep one run's failure from touching
// the others.
import ArgumentParser
import Foundation
import Nerve

struct SweepCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "sweep",
    abstract: "Train every cell of a grid of settings (and/or several seeds), then tabulate the results.",
    discussion: """
      The grid comes from the config's [sweep] table and/or --grid flags. Results go to DIR \
      (default runs/NAME-sweep): sweep.jsonl (one line per finished run), summary.jsonl (per \
      cell: mean and standard deviation of every metric per epoch), and cells/ (each run's \
      metrics). Run the same command again to resume: finished runs are not redone.
      Examples:
        nerve sweep --config examples/lab-a-sweep-hidden-lr.toml
        nerve sweep --config examples/lab-a-mlp-mse.toml --grid learning_rate=0.002:0.02:0.002 --set data.subset=1000
        nerve sweep --config examples/lab-c-sgd-minibatch-100.toml --runs 4
        nerve report runs/lab-a-sweep-hidden-lr-sweep
      """)

  @Option(name: .long, help: ArgumentHelp("A TOML config, with or without a [sweep] table.", valueName: "file"))
  var config: String

  @Option(name: .long, help: ArgumentHelp("Another axis: key=v1,v2,... or key=from:to:step (repeatable; replaces the file's axis of that key).", valueName: "key=values"))
  var grid: [String] = []

  @Option(name: .long, help: ArgumentHelp("Change one config key for every run: key=value (repeatable), e.g. train.epochs=50.", valueName: "key=value"))
  var set: [String] = []

  @Option(name: .long, help: ArgumentHelp("Runs per cell with seeds seed, seed+1, ... (default: the [sweep] table's runs, or 1).", valueName: "n"))
  var runs: Int?

  @Option(name: .long, help: ArgumentHelp("Runs trained at the same time (default: one per thread; each gets threads/jobs threads).", valueName: "n"))
  var jobs: Int?

  @Option(name: .long, help: ArgumentHelp("Where results go (default: runs/NAME-sweep).", valueName: "dir"))
  var out: String?

  @Flag(name: .long, help: "Discard the results already in the output folder and start over.")
  var fresh = false

  @OptionGroup var dataOptions: DataOptions

  @Flag(name: .long, help: "Print only the final table.")
  var quiet = false

  func validate() throws {
    if let runs, runs < 1 { throw ValidationError("--runs must be at least 1") }
    if let jobs, jobs < 1 { throw ValidationError("--jobs must be at least 1") }
  }

  struct Job {
    var cell: Sweep.Cell
    var run: Int
    var seed: UInt64
    var key: String { "\(cell.id)|run=\(run)" }
    var fileStem: String {
      let safe = cell.id.isEmpty ? "base" : String(cell.id.map { $0.isLetter || $0.isNumber || $0 == "." || $0 == "-" || $0 == "=" ? $0 : "_" })
      return String(format: "%03d-", cell.index) + String(safe) + "-run\(run)"
    }
  }

  func run() throws {
    try reportingErrors {
      let overrides = try set.map { try ConfigOverride(parsing: $0) }
      let extra = try grid.map { try Sweep.axis(parsing: $0) }
      let sweep = try Sweep(contentsOf: config, extraAxes: extra, overrides: overrides, runs: runs)
      let cells = sweep.cells
      let base = try sweep.config(for: cells[0], run: 0)
      let name = base.name
      let dir = out ?? "runs/\(name)-sweep"
      let fm = FileManager.default
      try fm.createDirectory(atPath: dir + "/cells", withIntermediateDirectories: true)

      let threads = dataOptions.threads ?? ComputeContext.defaultThreads
      let jobsAtOnce = max(1, min(jobs ?? threads, cells.count * sweep.runs))
      let threadsPerJob = max(1, threads / jobsAtOnce)
      let header = MetricsWriter.object([
        ("sweep", name), ("config", config),
        ("axes", MetricsWriter.RawJSON(text: "[" + sweep.axes.map { a in
          "{\"key\":\(MetricsWriter.quote(a.key)),\"values\":[" + a.values.map(\.jsonText).joined(separator: ",") + "]}"
        }.joined(separator: ",") + "]")),
        ("set", MetricsWriter.RawJSON(text: "[" + overrides.map { MetricsWriter.quote($0.description) }.joined(separator: ",") + "]")),
        ("runs", sweep.runs),
      ])
      let resultsPath = dir + "/sweep.jsonl"
      var lines: [String] = []
      var done = Set<String>()
      if !fresh, let text = try? String(contentsOfFile: resultsPath, encoding: .utf8) {
        let existing = text.split(separator: "\n").map(String.init)
        if let first = existing.first, !existing.isEmpty {
          guard sameSweep(first, header) else {
            throw NerveError(
              .badValue, at: resultsPath,
              "holds the results of a different sweep (other config, axes, --set or --runs); use --out DIR for a new folder or --fresh to discard them")
          }
          lines = existing
          for line in existing.dropFirst() {
            if let o = jsonObject(line), let key = o["key"] as? String { done.insert(key) }
          }
        }
      }
      if lines.isEmpty { lines = [header] }
      try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: resultsPath)

      var pending: [Job] = []
      for cell in cells {
        for r in 0..<sweep.runs {
          let job = Job(cell: cell, run: r, seed: try sweep.config(for: cell, run: r).seed)
          if !done.contains(job.key) { pending.append(job) }
        }
      }
      let total = cells.count * sweep.runs
      if !quiet {
        let axes = sweep.axes.map { "\($0.key) (\($0.values.count))" }.joined(separator: " x ")
        print("\(name): \(cells.count) cell(s)\(axes.isEmpty ? "" : " = " + axes), \(sweep.runs) run(s) each; \(total - pending.count) of \(total) already done in \(dir)")
        print("\(jobsAtOnce) run(s) at a time, \(threadsPerJob) thread(s) each")
      }

      let executable = (try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
      var running: [(Process, Job, Date)] = []
      var queue = pending[...]
      var finished = total - pending.count
      let started = Date()
      while !queue.isEmpty || !running.isEmpty {
        while running.count < jobsAtOnce, let job = queue.popFirst() {
          let p = Process()
          p.executableURL = URL(fileURLWithPath: executable)
          var args = ["train", "--config", config, "--quiet", "--seed", "\(job.seed)", "--threads", "\(threadsPerJob)",
                      "--metrics", "\(dir)/cells/\(job.fileStem).jsonl"]
          for o in overrides { args += ["--set", o.key + "=" + o.value.tomlText] }
          for s in job.cell.settings { args += ["--set", s.key + "=" + s.value.tomlText] }
          if let data = dataOptions.data { args += ["--data", data] }
          p.arguments = args
          let log = "\(dir)/cells/\(job.fileStem).log"
          fm.createFile(atPath: log, contents: nil)
          let handle = FileHandle(forWritingAtPath: log)
          p.standardOutput = handle
          p.standardError = handle
          try p.run()
          running.append((p, job, Date()))
        }
        Thread.sleep(forTimeInterval: 0.05)
        var still: [(Process, Job, Date)] = []
        for (p, job, t0) in running {
          if p.isRunning { still.append((p, job, t0)); continue }
          finished += 1
          let seconds = Date().timeIntervalSince(t0)
          let metricsFile = "cells/\(job.fileStem).jsonl"
          var fields: [(String, Any?)] = [
            ("key", job.key), ("cell", job.cell.index),
            ("settings", settingsJSON(job.cell.settings)),
            ("run", job.run), ("seed", Int(job.seed)), ("metrics", metricsFile), ("seconds", seconds),
          ]
          let records = readJSONLines(dir + "/" + metricsFile)
          if p.terminationStatus == 0, let last = records.last, last["test_accuracy"] != nil {
            let epochs = records.filter { $0["epoch"] != nil && $0["step"] == nil }
            let final = epochs.last ?? [:]
            for k in ["train_loss", "train_accuracy", "valid_loss", "valid_accuracy"] {
              fields.append((k, final[k] as? Double))
            }
            fields.append(("test_loss", last["test_loss"] as? Double))
            fields.append(("test_accuracy", last["test_accuracy"] as? Double))
            fields.append(("epochs", epochs.count))
            fields.append(("training_seconds", last["training_seconds"] as? Double))
          } else {
            let logText = (try? String(contentsOfFile: "\(dir)/cells/\(job.fileStem).log", encoding: .utf8)) ?? ""
            let why = logText.split(separator: "\n").last(where: { $0.contains("error") }).map(String.init)
              ?? "exit status \(p.terminationStatus)"
            fields.append(("error", why))
          }
          let line = MetricsWriter.object(fields)
          lines.append(line)
          try AtomicFile.write(lines.joined(separator: "\n") + "\n", to: resultsPath)
          if !quiet {
            let o = jsonObject(line) ?? [:]
            let outcome = (o["error"] as? String).map { "FAILED: \($0)" }
              ?? String(format: "test %.2f%%", 100 * ((o["test_accuracy"] as? Double) ?? .nan))
            print(String(format: "[%d/%d] %@ run %d: %@ (%.1f s)", finished, total, job.cell.id.isEmpty ? "base" : job.cell.id, job.run, outcome, seconds))
          }
        }
        running = still
      }
      if !quiet && !pending.isEmpty {
        print(String(format: "%d run(s) in %.1f s", pending.count, Date().timeIntervalSince(started)))
      }
      let summary = try summarize(lines: lines, cells: cells, runs: sweep.runs, dir: dir)
      print(summary)
    }
  }

  func sameSweep(_ a: String, _ b: String) -> Bool {
    guard let x = jsonObject(a), let y = jsonObject(b) else { return false }
    return NSDictionary(dictionary: x).isEqual(to: y)
  }

  /// Prints the table and writes summary.jsonl: per cell, mean and std of every metric per
  /// epoch and at the end.
  func summarize(lines: [String], cells: [Sweep.Cell], runs: Int, dir: String) throws -> String {
    let results = lines.dropFirst().compactMap(jsonObject)
    let metricKeys = ["train_loss", "train_accuracy", "valid_loss", "valid_accuracy", "test_loss", "test_accuracy"]
    var rows: [(cell: Sweep.Cell, stats: [String: RunStatistics], seconds: RunStatistics, failed: Int)] = []
    var perEpoch: [String: [RunStatistics]] = [:]  // The last cell's, printed for a single cell.
    var summaryLines: [String] = []
    for cell in cells {
      let mine = results.filter { ($0["cell"] as? Int) == cell.index && ($0["key"] as? String)?.hasPrefix(cell.id + "|") == true }
      let ok = mine.filter { $0["error"] == nil }
      var stats: [String: RunStatistics] = [:]
      for k in metricKeys {
        let values = ok.compactMap { $0[k] as? Double }
        if !values.isEmpty { stats[k] = RunStatistics(values) }
      }
      // Wall time of each run: training, evaluation and loading the data.
      let seconds = RunStatistics(ok.compactMap { $0["seconds"] as? Double })
      rows.append((cell, stats, seconds, mine.count - ok.count))
      // Curves: per-epoch mean and std over the runs.
      var curves: [String: [[Double]]] = [:]
      for r in ok {
        guard let file = r["metrics"] as? String else { continue }
        let epochs = readJSONLines(dir + "/" + file).filter { $0["epoch"] != nil && $0["step"] == nil }
        for k in metricKeys {
          let curve = epochs.compactMap { $0[k] as? Double }
          if curve.count == epochs.count && !curve.isEmpty { curves[k, default: []].append(curve) }
        }
      }
      var fields: [(String, Any?)] = [
        ("cell", cell.index), ("id", cell.id),
        ("settings", settingsJSON(cell.settings)),
        ("runs", ok.count), ("failed", mine.count - ok.count), ("seconds_mean", ok.isEmpty ? nil : seconds.mean),
      ]
      perEpoch = curves.mapValues { RunStatistics.perEpoch($0) }
      for k in metricKeys {
        if let s = stats[k] {
          fields.append(("final_\(k)_mean", s.mean))
          fields.append(("final_\(k)_std", s.std))
        }
        if let c = curves[k] {
          let per = RunStatistics.perEpoch(c)
          fields.append(("\(k)_mean", per.map(\.mean)))
          fields.append(("\(k)_std", per.map(\.std)))
        }
      }
      summaryLines.append(MetricsWriter.object(fields))
    }
    try AtomicFile.write(summaryLines.joined(separator: "\n") + "\n", to: dir + "/summary.jsonl")

    // The best cell by validation accuracy (test accuracy when there is no validation split).
    let rank = rows.first?.stats["valid_accuracy"] != nil ? "valid_accuracy" : "test_accuracy"
    let best = rows.indices.filter { rows[$0].stats[rank] != nil }.max { rows[$0].stats[rank]!.mean < rows[$1].stats[rank]!.mean }
    func cellText(_ s: RunStatistics?) -> String {
      guard let s else { return "-" }
      return runs > 1 ? String(format: "%.2f ± %.2f", 100 * s.mean, 100 * s.std) : String(format: "%.2f", 100 * s.mean)
    }
    var table: [[String]] = [["cell"] + ["train %", "valid %", "test %", "seconds", ""]]
    for (i, r) in rows.enumerated() {
      table.append([
        r.cell.id.isEmpty ? "base" : r.cell.id.replacingOccurrences(of: ",", with: "  "),
        cellText(r.stats["train_accuracy"]), cellText(r.stats["valid_accuracy"]), cellText(r.stats["test_accuracy"]),
        r.seconds.count > 0 ? String(format: "%.2f", r.seconds.mean) : "-",
        (i == best && rows.count > 1 ? "<- best (\(rank.replacingOccurrences(of: "_", with: " ")))" : "") + (r.failed > 0 ? " \(r.failed) failed" : ""),
      ])
    }
    let widths = (0..<table[0].count).map { c in table.map { $0[c].count }.max()! }
    var out = table.map { row in
      row.enumerated().map { c, text in
        c == 0 ? text.padding(toLength: widths[c], withPad: " ", startingAt: 0)
          : String(repeating: " ", count: widths[c] - text.count) + text
      }.joined(separator: "  ").trimmingCharacters(in: .whitespaces)
    }
    if runs > 1 { out.append("mean ± sample standard deviation over \(runs) runs per cell") }
    if cells.count == 1 && runs > 1, let epochs = perEpoch["train_loss"]?.count, epochs > 0 {
      // One configuration, several seeds: the curves themselves, mean ± std per epoch.
      let keys = metricKeys.filter { perEpoch[$0]?.count == epochs }
      out.append("")
      out.append("epoch" + keys.map { " " + $0.replacingOccurrences(of: "accuracy", with: "acc %").padding(toLength: 17, withPad: " ", startingAt: 0) }.joined())
      let shown = epochs <= 30 ? Array(0..<epochs) : Array(Set((0..<30).map { $0 * (epochs - 1) / 29 })).sorted()
      for e in shown {
        var line = String(e + 1).padding(toLength: 5, withPad: " ", startingAt: 0)
        for k in keys {
          let s = perEpoch[k]![e]
          let text = k.hasSuffix("accuracy") ? String(format: "%.2f ± %.2f", 100 * s.mean, 100 * s.std) : String(format: "%.4f ± %.4f", s.mean, s.std)
          line += " " + text.padding(toLength: 17, withPad: " ", startingAt: 0)
        }
        out.append(line)
      }
    }
    out.append("results: \(dir)/sweep.jsonl, \(dir)/summary.jsonl; report: nerve report \(dir)")
    return out.joined(separator: "\n")
  }
}

/// A cell's settings as one JSON object: {"hidden": 30, "learning_rate": 0.1}.
func settingsJSON(_ settings: [ConfigOverride]) -> MetricsWriter.RawJSON {
  MetricsWriter.RawJSON(text: "{" + settings.map { "\(MetricsWriter.quote($0.key)):\($0.value.jsonText)" }.joined(separator: ",") + "}")
}

func jsonObject(_ line: String) -> [String: Any]? {
  guard let data = line.data(using: .utf8) else { return nil }
  return (try? JSONSerialization.jsonObject(with: data)) as? [String: Any]
}

func readJSONLines(_ path: String) -> [[String: Any]] {
  guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return [] }
  return text.split(separator: "\n").compactMap { jsonObject(String($0)) }
}

extension TOMLValue {
  /// The value as JSON.
  var jsonText: String {
    switch self {
    case .string(let s): MetricsWriter.quote(s)
    case .integer(let i): "\(i)"
    case .float(let d): d.isFinite ? "\(d)" : "null"
    case .boolean(let b): b ? "true" : "false"
    case .array(let a): "[" + a.map(\.jsonText).joined(separator: ",") + "]"
    case .table: "{}"
    }
  }

  /// The value as TOML text for `--set`.
  var tomlText: String {
    switch self {
    case .table: "{}"
    default: description
    }
  }
}
