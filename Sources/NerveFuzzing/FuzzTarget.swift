// The readers of outside bytes, each as a fuzz target: given any bytes, a reader returns a value
// or throws a NerveError; it must never crash, hang, leak or ask for more memory than there is.
// scripts/fuzz.sh runs them under libFuzzer (Sources/nerve-fuzz); the tests replay the corpus
// and every input a fuzzer ever found a fault with (Tests/Fuzz/).
import Foundation
import Nerve

/// A reader of outside bytes that fuzzing exercises.
public enum FuzzTarget: String, CaseIterable, Sendable {
  /// IDX arrays, raw or gzip-compressed (MNIST's format).
  case idx
  /// The 8x8 digits CSV.
  case csv
  /// Model files (safetensors header and metadata, the architecture in it).
  case model
  /// PNG pictures, and their MNIST-style preparation.
  case png
  /// PGM pictures, and their preparation.
  case pgm
  /// TOML configs (and [sweep] tables).
  case toml
  /// Metrics files (JSON Lines records).
  case metrics
  /// Sweep folders' records.
  case sweep
  /// Checkpoint files.
  case checkpoint

  /// Runs the reader on `data`; thrown errors are the expected outcome for bad input.
  public func run(_ data: Data) {
    let dir = Self.scratch
    let path = dir + "/input" + (self == .idx && data.starts(with: [0x1F, 0x8B]) ? ".gz" : "")
    guard FileManager.default.createFile(atPath: path, contents: data) else { return }
    defer { try? FileManager.default.removeItem(atPath: path) }
    do {
      switch self {
      case .idx:
        let a = try IDXArray(contentsOf: path)
        _ = a.floats()
        _ = try? a.integers()
      case .csv:
        _ = try Digits.load(from: path)
      case .model:
        let m = try Sequential.load(from: path)
        _ = m.summary
      case .png, .pgm:
        let picture = try GrayImage(contentsOf: path)
        _ = try DigitImage(picture)
      case .toml:
        _ = try ExperimentConfig(contentsOf: path)
        _ = try Sweep(contentsOf: path).cells.count
      case .metrics:
        _ = try MetricsFile(contentsOf: path)
      case .sweep:
        let folder = dir + "/sweep"
        try? FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try data.write(to: URL(fileURLWithPath: folder + "/sweep.jsonl"))
        _ = try SweepFolder(directory: folder)
      case .checkpoint:
        _ = try TrainingCheckpoint.read(from: path)
      }
    } catch is NerveError {
      // A refusal with a reason: what bad input should get.
    } catch {
      // Anything else thrown (Foundation's own errors) is still not a crash.
    }
  }

  /// A folder for this process's inputs (in memory when the machine has /dev/shm).
  static let scratch: String = {
    let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
    let dir = base + "/nerve-fuzz-\(getpid())"
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
  }()
}
