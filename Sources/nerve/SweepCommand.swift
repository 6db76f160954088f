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
    var metricsFile: String { "cells/\(fileStem).jsonl" }
    var checkpointFile: String { "cells/\(fileStem).checkpoint" }
    var logFile: String { "cells/\(fileStem).log" }
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
      let name = try sweep.config(for: cells[0], run: 0).name
      // Under mpirun, ranks 1 ..< size train what rank 0 hands out (SweepCommand+Ranks).
      let ranks = try jobRanks()
      if let ranks, !ranks.isRoot { return try work(for: ranks, sweep: sweep, threads: dataOptions.threads ?? 1) }
      let dir = out ?? "runs/\(name)-sweep"
      try FileManager.default.createDirectory(atPath: dir + "/cells", withIntermediateDirectories: true)
      let header = SweepHeader(
        sweep: name, config: config, axes: sweep.axes.map { SweepHeader.Axis(key: $0.key, values: $0.values) },
        set: overrides.map(\.description), runs: sweep.runs)
      let (log, done) = try openResults(dir: dir, header: header)
      var pending: [Job] = []
      for cell in cells {
        for r in 0..<sweep.runs {
          let job = Job(cell: cell, run: r, seed: try sweep.config(for: cell, run: r).seed)
          if !done.contains(job.key) { pending.append(job) }
        }
      }
      let threads = dataOptions.threads ?? (ranks == nil ? ComputeContext.defaultThreads : 1)
      let jobsAtOnce = max(1, min(jobs ?? threads, cells.count * sweep.runs))
      let threadsPerJob = max(1, threads / jobsAtOnce)
      let total = cells.count * sweep.runs
      if !quiet {
        let axes = sweep.axes.map { "\($0.key) (\($0.values.count))" }.joined(separator: " x ")
        print("\(name): \(cells.count) cell(s)\(axes.isEmpty ? "" : " = " + axes), \(sweep.runs) run(s) each; \(total - pending.count) of \(total) already done in \(dir)")
        if let ranks {
          print("\(ranks.size - 1) rank(s) training one run at a time, \(threads) thread(s) each; rank 0 keeps the results")
        } else {
          print("\(jobsAtOnce) run(s) at a time, \(threadsPerJob) thread(s) each")
        }
      }
      let started = Date()
      var finished = total - pending.count
      func ended(_ job: Job, _ record: SweepRunRecord?, on rank: Int?) throws {
        guard let record else {
          if !quiet { print("\(job.cell.id.isEmpty ? "base" : job.cell.id) run \(job.run): interrupted; its checkpoint lets the next sweep continue it") }
          return
        }
        try log.append(record)
        finished += 1
        if !quiet {
          let outcome = record.error.map { "FAILED: \($0)" } ?? String(format: "test %.2f%%", 100 * (record.testAccuracy ?? .nan))
          let place = rank.map { ", rank \($0)" } ?? ""
          print(String(format: "[%d/%d] %@ run %d: %@ (%.1f s%@)", finished, total, job.cell.id.isEmpty ? "base" : job.cell.id, job.run, outcome, record.seconds, place))
        }
      }
      if let ranks {
        try runJobs(pending, on: ranks, dir: dir) { try ended($0, $1, on: $2) }
      } else {
        try runJobs(pending, at: jobsAtOnce, threads: threadsPerJob, dir: dir, overrides: overrides) { try ended($0, $1, on: nil) }
      }
      if !quiet && !pending.isEmpty {
        print(String(format: "%d run(s) in %.1f s", pending.count, Date().timeIntervalSince(started)))
      }
      let results = try SweepFolder(directory: dir)
      for w in results.warnings { printError("nerve: warning: \(w)") }
      print(try summarize(runs: results.runs, cells: cells, runsPerCell: sweep.runs, dir: dir))
    }
  }

  /// Opens the folder's sweep.jsonl for appending, starting it with `header` unless it holds
  /// results of this same sweep; returns it and the keys of the runs already finished.
  func openResults(dir: String, header: SweepHeader) throws -> (JSONLinesWriter, Set<String>) {
    let path = SweepFolder.resultsPath(dir)
    if !fresh, let existing = try? SweepFolder(directory: dir), let old = existing.header {
      // Compared as written: a number read back from JSON may change type (1.0 reads as 1).
      guard try jsonLine(old) == jsonLine(header) else {
        throw NerveError(
          .badValue, at: path,
          "holds the results of a different sweep (other config, axes, --set or --runs); use --out DIR for a new folder or --fresh to discard them")
      }
      return (try JSONLinesWriter(path: path, truncate: false), Set(existing.runs.map(\.key)))
    }
    let log = try JSONLinesWriter(path: path, truncate: true)
    try log.append(header)
    return (log, [])
  }

  /// Runs `jobs` as child `nerve train` processes, `atOnce` at a time, calling `finished`
  /// with each one's record as it ends.
  func runJobs(
    _ jobs: [Job], at atOnce: Int, threads: Int, dir: String, overrides: [ConfigOverride],
    finished: (Job, SweepRunRecord?) throws -> Void
  ) throws {
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    var running: [(Subprocess, Job, Date)] = []
    var queue = jobs[...]
    while !queue.isEmpty || !running.isEmpty {
      while running.count < atOnce, let job = queue.popFirst() {
        running.append((try launch(job, executable: executable, threads: threads, dir: dir, overrides: overrides), job, Date()))
      }
      Thread.sleep(forTimeInterval: 0.05)
      var still: [(Subprocess, Job, Date)] = []
      for (p, job, t0) in running {
        if let exit = p.poll() {
          try finished(job, record(of: job, exit: exit, seconds: Date().timeIntervalSince(t0), dir: dir))
        } else {
          still.append((p, job, t0))
        }
      }
      running = still
    }
  }

  /// Starts one run: `nerve train` with the cell's settings, its output in the cell's log.
  func launch(_ job: Job, executable: String, threads: Int, dir: String, overrides: [ConfigOverride]) throws -> Subprocess {
    var args = ["train", "--config", config, "--quiet", "--seed", "\(job.seed)", "--threads", "\(threads)",
                "--metrics", "\(dir)/\(job.metricsFile)", "--checkpoint", "\(dir)/\(job.checkpointFile)"]
    // A run a killed or interrupted sweep left unfinished continues from its checkpoint.
    if FileManager.default.fileExists(atPath: "\(dir)/\(job.checkpointFile)") {
      args += ["--resume", "\(dir)/\(job.checkpointFile)"]
    }
    for o in overrides + job.cell.settings { args += ["--set", o.key + "=" + o.value.tomlText] }
    if let data = dataOptions.data { args += ["--data", data] }
    let log = "\(dir)/\(job.logFile)"
    try? FileManager.default.removeItem(atPath: log)
    return try Subprocess.start(executable, args, output: log)
  }

  /// The record of a run that has ended: its final metrics, or why it failed; nil for a run
  /// stopped by Ctrl-C or SIGTERM (unfinished: the next sweep continues it).
  func record(of job: Job, exit: Subprocess.Exit, seconds: Double, dir: String) -> SweepRunRecord? {
    if case .signal = exit { return nil }
    if exit == .status(130) || exit == .status(143) { return nil }
    var r = SweepRunRecord(
      key: job.key, cell: job.cell.index, settings: job.cell.settingsObject, run: job.run, seed: job.seed,
      metrics: job.metricsFile, seconds: seconds)
    let metrics = try? MetricsFile(contentsOf: "\(dir)/\(job.metricsFile)")
    if exit.succeeded, let metrics, let summary = metrics.summary {
      // Finished: its checkpoint is no longer needed.
      try? FileManager.default.removeItem(atPath: "\(dir)/\(job.checkpointFile)")
      let last = metrics.epochs.last
      r.trainLoss = last?.trainLoss
      r.trainAccuracy = last?.trainAccuracy
      r.validLoss = last?.validLoss
      r.validAccuracy = last?.validAccuracy
      r.testLoss = summary.testLoss
      r.testAccuracy = summary.testAccuracy
      r.epochs = metrics.epochs.count
      r.trainingSeconds = summary.trainingSeconds
    } else {
      let logText = (try? String(contentsOfFile: "\(dir)/\(job.logFile)", encoding: .utf8)) ?? ""
      r.error = logText.split(separator: "\n").last(where: { $0.contains("error") }).map(String.init)
        ?? "\(exit)"
    }
    return r
  }

  /// Prints the table and writes summary.jsonl: per cell, mean and std of every metric per
  /// epoch and at the end.
  func summarize(runs results: [SweepRunRecord], cells: [Sweep.Cell], runsPerCell runs: Int, dir: String) throws -> String {
    let metricKeys = SweepCellSummary.metrics
    var summaries: [SweepCellSummary] = []
    for cell in cells {
      let mine = results.filter { $0.cell == cell.index && $0.key.hasPrefix(cell.id + "|") }
      let ok = mine.filter { $0.error == nil }
      var finals: [String: RunStatistics] = [:]
      for k in metricKeys {
        let values = ok.compactMap { $0.value(k) }
        if !values.isEmpty { finals[k] = RunStatistics(values) }
      }
      // Curves: per-epoch mean and std over the runs.
      var curves: [String: [[Double]]] = [:]
      for r in ok {
        guard let epochs = try? MetricsFile(contentsOf: dir + "/" + r.metrics).epochs else { continue }
        for k in metricKeys {
          let curve = epochs.compactMap { $0.value(k) }
          if curve.count == epochs.count && !curve.isEmpty { curves[k, default: []].append(curve) }
        }
      }
      // Wall time of each run: training, evaluation and loading the data.
      let seconds = ok.map(\.seconds)
      summaries.append(
        SweepCellSummary(
          cell: cell.index, id: cell.id, settings: cell.settingsObject, runs: ok.count,
          failed: mine.count - ok.count, secondsMean: ok.isEmpty ? nil : RunStatistics(seconds).mean,
          finals: finals, curves: curves.mapValues { RunStatistics.perEpoch($0) }))
    }
    try AtomicFile.write(try summaries.map { try jsonLine($0) }.joined(separator: "\n") + "\n", to: SweepFolder.summaryPath(dir))
    return SweepTable(cells: cells, summaries: summaries, runs: runs).text + "\nresults: \(dir)/sweep.jsonl, \(dir)/summary.jsonl; report: nerve report \(dir)"
  }
}

extension TOMLValue {
  /// The value as TOML text for `--set`.
  var tomlText: String {
    switch self {
    case .table: "{}"
    default: description
    }
  }
}

extension Sweep.Cell {
  /// The cell's settings as records store them: {"hidden": 30, "learning_rate": 0.1}.
  var settingsObject: [String: TOMLValue] {
    Dictionary(settings.map { ($0.key, $0.value) }, uniquingKeysWith: { _, last in last })
  }
}
