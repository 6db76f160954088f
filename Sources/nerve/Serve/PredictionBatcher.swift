// PredictionBatcher: the one thread that runs the model for the server. Requests wait in a
// queue; the thread takes what has gathered (up to `maxRows` samples, or whatever came within
// `maxWait` of the first) and runs one forward pass for all of them. The model, its workspace
// and its compute context are touched by this thread alone, so they need no lock, and no
// inference ever runs on the server's event loops.
import Foundation
import Nerve

final class PredictionBatcher: @unchecked Sendable {
  /// Samples in one request's input, and where to send their outputs.
  private struct Job {
    let rows: Int
    let values: [Float]
    let reply: CheckedContinuation<[[Float]], any Error>
  }

  let model: Sequential
  let maxRows: Int
  let maxWait: Duration
  private let signal = NSCondition()
  private var queue: [Job] = []  // guarded by `signal`
  private var queuedRows = 0  // guarded by `signal`
  private var stopping = false  // guarded by `signal`
  /// Signalled when the worker thread has ended.
  private let finished = DispatchSemaphore(value: 0)
  /// Forward passes run and samples they covered (written by the worker; read after `stop`).
  private(set) var passes = 0, samples = 0

  init(model: Sequential, maxRows: Int = 64, maxWait: Duration = .milliseconds(1)) {
    self.model = model
    self.maxRows = maxRows
    self.maxWait = maxWait
  }

  func start() {
    let thread = Thread { [self] in
      runLoop()
      finished.signal()
    }
    thread.name = "nerve-inference"
    thread.start()
  }

  /// Answers the jobs already queued, then ends the thread and returns; later calls are
  /// refused. Call once, after `start`.
  func stop() {
    signal.lock()
    stopping = true
    signal.broadcast()
    signal.unlock()
    finished.wait()
  }

  /// The model's outputs for `rows` samples in raw data-set scale (one after another).
  func outputs(rows: Int, rawValues: [Float]) async throws -> [[Float]] {
    try await withCheckedThrowingContinuation { reply in
      signal.lock()
      defer { signal.unlock() }
      guard !stopping else {
        reply.resume(throwing: NerveError(.interrupted, at: "server", "the server is shutting down"))
        return
      }
      queue.append(Job(rows: rows, values: rawValues, reply: reply))
      queuedRows += rows
      signal.signal()
    }
  }

  private func runLoop() {
    while let jobs = nextBatch() {
      run(jobs)
    }
  }

  /// Waits for a first job, then up to `maxWait` for more until `maxRows` samples have gathered.
  /// A job larger than `maxRows` runs alone. Nil once stopped with nothing left.
  private func nextBatch() -> [Job]? {
    signal.lock()
    defer { signal.unlock() }
    while queue.isEmpty {
      if stopping { return nil }
      signal.wait()
    }
    let deadline = Date(timeIntervalSinceNow: maxWait.seconds)
    while queuedRows < maxRows && !stopping {
      if !signal.wait(until: deadline) { break }
    }
    var taken = 1, rows = queue[0].rows
    while taken < queue.count && rows + queue[taken].rows <= maxRows {
      rows += queue[taken].rows
      taken += 1
    }
    let jobs = Array(queue.prefix(taken))
    queue.removeFirst(taken)
    queuedRows -= rows
    return jobs
  }

  private func run(_ jobs: [Job]) {
    let rows = jobs.reduce(0) { $0 + $1.rows }
    var values = [Float]()
    values.reserveCapacity(rows * model.inputCount)
    for job in jobs { values += job.values }
    do {
      let out = try model.outputs(forRaw: values, count: rows)
      let width = model.outputCount
      var row = 0
      out.withUnsafeBufferPointer { o in
        for job in jobs {
          let results = (0..<job.rows).map { r in Array(o[(row + r) * width..<(row + r + 1) * width]) }
          row += job.rows
          job.reply.resume(returning: results)
        }
      }
      passes += 1
      samples += rows
    } catch {
      for job in jobs { job.reply.resume(throwing: error) }
    }
  }
}
