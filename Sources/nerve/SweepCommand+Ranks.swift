// nerve sweep under mpirun: rank 0 keeps the sweep folder and hands cells to the other ranks
// as they come free; each of those trains its cells in-process with --threads threads and sends
// the run's metrics back over MPI, so no file system needs to be shared. Rank 0 writes what
// arrives exactly as a local sweep writes its runs; rerunning skips finished runs as ever.
import Foundation
import Nerve

/// The messages of a distributed sweep, by MPI tag.
enum SweepMessage: Int {
  /// worker -> rank 0: ready for a run (empty).
  case ready = 1
  /// rank 0 -> worker: train this run (SweepOrder).
  case order = 2
  /// rank 0 -> worker: no more runs (empty).
  case stop = 3
  /// worker -> rank 0: a run ended (SweepOutcome).
  case outcome = 4
}

/// A run to train: a cell of the grid and the run number (the seed follows from both).
struct SweepOrder: Codable {
  var cell: Int
  var run: Int
}

/// How a run ended on a worker: its metrics file's text, or why it failed.
struct SweepOutcome: Codable {
  var cell: Int
  var run: Int
  var seconds: Double
  var metrics: String?
  var error: String?
}

extension SweepCommand {
  /// Rank 0: hands `jobs` out to ranks 1 ..< size as they ask, and writes each outcome into
  /// `dir` (the run's metrics file and log) before `finished` records it.
  func runJobs(
    _ jobs: [Job], on ranks: Communicator, dir: String, finished: (Job, SweepRunRecord?, Int) throws -> Void
  ) throws {
    var queue = jobs[...]
    var handedOut: [String: Job] = [:]
    var stopped = 0
    while stopped < ranks.size - 1 {
      let message = try ranks.receiveMessage()
      switch SweepMessage(rawValue: message.tag) {
      case .ready:
        break
      case .outcome:
        let outcome = try JSONDecoder().decode(SweepOutcome.self, from: Data(message.bytes))
        guard let job = handedOut.removeValue(forKey: "\(outcome.cell)/\(outcome.run)") else {
          throw NerveError(.communication, at: "rank \(message.from)", "sent the result of a run it was not given")
        }
        try store(outcome, of: job, rank: message.from, dir: dir)
        let exit: Subprocess.Exit = outcome.error == nil ? .status(0) : .status(1)
        try finished(job, record(of: job, exit: exit, seconds: outcome.seconds, dir: dir), message.from)
      default:
        throw NerveError(.communication, at: "rank \(message.from)", "sent an unknown message (tag \(message.tag))")
      }
      if let job = queue.popFirst() {
        handedOut["\(job.cell.index)/\(job.run)"] = job
        let order = try JSONEncoder().encode(SweepOrder(cell: job.cell.index, run: job.run))
        try ranks.sendMessage(Array(order), to: message.from, tag: SweepMessage.order.rawValue)
      } else {
        try ranks.sendMessage([], to: message.from, tag: SweepMessage.stop.rawValue)
        stopped += 1
      }
    }
  }

  /// Writes a worker's outcome where a local run would have left its files.
  private func store(_ outcome: SweepOutcome, of job: Job, rank: Int, dir: String) throws {
    if let metrics = outcome.metrics { try AtomicFile.write(metrics, to: "\(dir)/\(job.metricsFile)") }
    let log = outcome.error.map { "error: \($0)\n" } ?? "trained on rank \(rank)\n"
    try AtomicFile.write(log, to: "\(dir)/\(job.logFile)")
  }

  /// Ranks 1 ..< size: trains the runs rank 0 hands out, one at a time with `threads`
  /// threads, until it says stop.
  func work(for ranks: Communicator, sweep: Sweep, threads: Int) throws {
    try ranks.sendMessage([], to: 0, tag: SweepMessage.ready.rawValue)
    let scratch = FileManager.default.temporaryDirectory.path + "/nerve-sweep-\(getpid())"
    try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: scratch) }
    while true {
      let message = try ranks.receiveMessage()
      guard SweepMessage(rawValue: message.tag) == .order else { return }
      let order = try JSONDecoder().decode(SweepOrder.self, from: Data(message.bytes))
      let outcome = train(order, sweep: sweep, threads: threads, metrics: "\(scratch)/run.jsonl")
      try ranks.sendMessage(Array(try JSONEncoder().encode(outcome)), to: 0, tag: SweepMessage.outcome.rawValue)
    }
  }

  /// One run in this process; its metrics file's text, or the error that stopped it.
  private func train(_ order: SweepOrder, sweep: Sweep, threads: Int, metrics: String) -> SweepOutcome {
    let started = Date()
    var outcome = SweepOutcome(cell: order.cell, run: order.run, seconds: 0)
    do {
      guard sweep.cells.indices.contains(order.cell) else {
        throw NerveError(.communication, at: "sweep", "rank 0 asked for cell \(order.cell) of \(sweep.cells.count)")
      }
      var config = try sweep.config(for: sweep.cells[order.cell], run: order.run)
      config.threads = threads
      if let data = dataOptions.data { config.dataPath = data }
      _ = try Experiment(config: config).run(metrics: metrics)
      outcome.metrics = try String(contentsOfFile: metrics, encoding: .utf8)
    } catch {
      outcome.error = "\(error)"
    }
    outcome.seconds = Date().timeIntervalSince(started)
    return outcome
  }
}
