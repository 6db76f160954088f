// Checkpoints: a run killed at any moment and resumed ends byte-identical to the run never
// stopped; Ctrl-C stops cleanly; checkpoints of other runs and damaged ones are refused.
import Foundation
import Nerve
import Testing

#if canImport(Glibc)
  import Glibc
#endif

@Suite("Checkpoints", .serialized)
struct CheckpointTests {
  /// Per-sample SGD on 10,000 images for 3 epochs: long enough (seconds) to be killed mid-run.
  let args = ["train", "--config", "examples/lab-c-sgd-per-sample.toml", "--subset", "10000", "--epochs", "3", "--quiet"]

  /// Starts `nerve` without waiting.
  func start(_ arguments: [String]) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try nerveExecutable())
    p.arguments = arguments
    p.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot())
    p.standardOutput = FileHandle.nullDevice
    p.standardError = FileHandle.nullDevice
    try p.run()
    return p
  }

  func epochs(_ path: String) throws -> [EpochMetrics] { try MetricsFile(contentsOf: path).epochs }

  /// Waits while `p` runs until the checkpoint at `path` exists and has been rewritten `count`
  /// times since (each write renames a new file into place: a new inode). Counting writes
  /// instead of waiting fixed times keeps the kills mid-run on a machine of any speed.
  func waitForCheckpoint(_ p: Process, at path: String, rewritten count: Int) {
    var seen = -1
    var last: UInt64 = 0
    while p.isRunning && seen < count {
      var st = stat()
      if stat(path, &st) == 0 && (seen < 0 || UInt64(st.st_ino) != last) {
        seen += 1
        last = UInt64(st.st_ino)
      }
      usleep(500)
    }
  }

  @Test("a run killed with SIGKILL mid-epoch and resumed ends byte-identical, each epoch in its metrics once")
  func killAndResume() throws {
    let dir = Fixtures.temporaryDirectory()
    let whole = try nerve(args + ["--threads", "2", "--save", dir + "/whole.safetensors", "--metrics", dir + "/whole.jsonl"])
    #expect(whole.status == 0, "\(whole.err)")
    // Killed at three different moments: right after the first checkpoint (of about 42), in
    // the first epoch's last third and in the second epoch.
    for (k, rewrites) in [0, 10, 25].enumerated() {
      let ck = dir + "/run\(k).checkpoint", model = dir + "/run\(k).safetensors", metrics = dir + "/run\(k).jsonl"
      let p = try start(args + ["--threads", "2", "--save", model, "--metrics", metrics, "--checkpoint", ck, "--checkpoint-every", "700"])
      waitForCheckpoint(p, at: ck, rewritten: rewrites)
      #expect(p.isRunning, "the run was still going when killed")
      kill(p.processIdentifier, SIGKILL)
      p.waitUntilExit()
      #expect(p.terminationReason == .uncaughtSignal && !FileManager.default.fileExists(atPath: model))
      // Resumed at another thread count: results do not depend on it.
      let r = try nerve(["train", "--resume", ck, "--threads", "1", "--quiet"])
      #expect(r.status == 0, "\(r.err)")
      #expect(try Data(contentsOf: URL(fileURLWithPath: model)) == Data(contentsOf: URL(fileURLWithPath: dir + "/whole.safetensors")), "run \(k)")
      let resumed = try epochs(metrics), reference = try epochs(dir + "/whole.jsonl")
      #expect(resumed.map(\.epoch) == [1, 2, 3], "each epoch once: \(resumed.map(\.epoch))")
      #expect(resumed.map(\.trainLoss) == reference.map(\.trainLoss) && resumed.map(\.validAccuracy) == reference.map(\.validAccuracy))
      #expect(try MetricsFile(contentsOf: metrics).summary?.testCorrect == MetricsFile(contentsOf: dir + "/whole.jsonl").summary?.testCorrect)
    }
  }

  @Test("Ctrl-C stops after a step: exit 130, a checkpoint, the model kept, and a line saying how to resume")
  func interrupt() throws {
    let dir = Fixtures.temporaryDirectory()
    let ck = dir + "/ck", model = dir + "/m.safetensors"
    let p = Process()
    p.executableURL = URL(fileURLWithPath: try nerveExecutable())
    p.arguments = args + ["--save", model, "--checkpoint", ck, "--checkpoint-every", "500"]
    p.currentDirectoryURL = URL(fileURLWithPath: repositoryRoot())
    let err = Pipe()
    p.standardError = err
    p.standardOutput = FileHandle.nullDevice
    try p.run()
    while p.isRunning && !FileManager.default.fileExists(atPath: ck) { usleep(2000) }
    kill(p.processIdentifier, SIGINT)
    let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    p.waitUntilExit()
    #expect(p.terminationStatus == 130, "\(text)")
    #expect(text.contains("nerve train --resume \(ck)") && text.contains("stopped after step"), "\(text)")
    #expect(try Sequential.load(from: model).parameterCount == 238510)
    let (checkpoint, _) = try TrainingCheckpoint.read(from: ck)
    #expect(checkpoint.completedEpochs == 0 && checkpoint.stepInEpoch > 0, "stopped mid-epoch")
  }

  @Test("a checkpoint of another run, or a damaged one, is refused with the reason")
  func refused() throws {
    let dir = Fixtures.temporaryDirectory()
    let ck = dir + "/ck"
    let small = ["train", "--layers", "784,16,10", "--subset", "500", "--epochs", "2", "--quiet", "--checkpoint", ck]
    #expect(try nerve(small).status == 0)
    let other = try nerve(small.dropLast(2) + ["--resume", ck, "--lr", "0.5"])
    #expect(other.status == 1 && other.err.contains("another run"), "\(other.err)")
    var bytes = try Data(contentsOf: URL(fileURLWithPath: ck))
    bytes[bytes.count - 10] ^= 0xFF
    try bytes.write(to: URL(fileURLWithPath: ck))
    let damaged = try nerve(["train", "--resume", ck])
    #expect(damaged.status == 1 && damaged.err.contains("CRC"), "\(damaged.err)")
    try Data(bytes.prefix(bytes.count / 2)).write(to: URL(fileURLWithPath: ck))
    let cut = try nerve(["train", "--resume", ck])
    #expect(cut.status == 1 && cut.err.contains("truncated"), "\(cut.err)")
    let model = try nerve(["train", "--layers", "784,16,10", "--subset", "200", "--epochs", "1", "--quiet", "--save", dir + "/m"])
    #expect(model.status == 0)
    let notCheckpoint = try nerve(["train", "--resume", dir + "/m"])
    #expect(notCheckpoint.err.contains("not a Nerve checkpoint"), "\(notCheckpoint.err)")
  }

  @Test("in Swift: a trainer resumes from a checkpoint taken mid-epoch to the uninterrupted result")
  func swiftResume() throws {
    let train = Fixtures.mnist.train.prefix(1200), valid = Fixtures.mnist.validation.prefix(300)
    func model() throws -> Sequential {
      try Sequential(input: 784, seed: 4) {
        Dense(40, activation: .relu)
        Dropout(0.2)
        Dense(10, activation: .softmax)
      }
    }
    func fit(_ m: Sequential, _ policy: CheckpointPolicy? = nil, _ resume: TrainingCheckpoint? = nil) throws -> History {
      try Trainer(model: m, loss: .crossEntropy, optimizer: Adam(learningRate: 0.003), threads: 2).fit(
        train, validation: valid, epochs: 3, batchSize: 50, seed: 9, schedule: .cosine(minimum: 0.1),
        earlyStopping: EarlyStopping(patience: 5), checkpoints: policy, resumingFrom: resume)
    }
    let reference = try model()
    let h = try fit(reference)
    var saved: [TrainingCheckpoint] = []
    let taken = try model()
    _ = try fit(taken, CheckpointPolicy(everySteps: 17) { saved.append($0) })
    let mid = try #require(saved.first { $0.stepInEpoch > 0 && $0.completedEpochs == 1 })
    // Through a file and back, into a fresh model.
    let path = Fixtures.temporaryDirectory() + "/ck"
    try mid.write(to: path, model: taken)
    let (read, _) = try TrainingCheckpoint.read(from: path)
    let resumed = try model()
    let h2 = try fit(resumed, nil, read)
    #expect(try resumed.outputs(for: valid.features) == reference.outputs(for: valid.features))
    #expect(h2.epochs.map(\.trainLoss) == h.epochs.map(\.trainLoss))
  }
}
