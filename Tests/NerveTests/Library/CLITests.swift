// The nerve command: a short run end to end (metrics file, saved model, eval, predict) and the
// one-line errors with a non-zero exit status for bad input.
import Foundation
import Nerve
import Testing

/// The checkout's root folder.
func repositoryRoot() -> String {
  URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().path
}

/// The nerve executable built beside the test bundle.
func nerveExecutable() throws -> String {
  let bundle = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
  var candidates = [bundle.appendingPathComponent("nerve").path]
  var dir = bundle
  for _ in 0..<4 {
    dir.deleteLastPathComponent()
    candidates.append(dir.appendingPathComponent("nerve").path)
  }
  candidates.append(repositoryRoot() + "/.build/release/nerve")
  guard let exe = candidates.first(where: { FileManager.default.isExecutableFile(atPath: $0) }) else {
    throw NerveError(.badFile, "cannot find the nerve executable near \(bundle.path)")
  }
  return exe
}

/// Runs the nerve executable built beside the test bundle.
func nerve(_ arguments: [String], in directory: String? = nil) throws -> (status: Int32, out: String, err: String) {
  let p = Process()
  p.executableURL = URL(fileURLWithPath: try nerveExecutable())
  p.arguments = arguments
  p.currentDirectoryURL = URL(fileURLWithPath: directory ?? repositoryRoot())
  let out = Pipe(), err = Pipe()
  p.standardOutput = out
  p.standardError = err
  try p.run()
  // Both pipes are drained at once: a child filling one while we wait on the other would hang.
  nonisolated(unsafe) var e = Data()
  let errorRead = DispatchSemaphore(value: 0)
  Thread {
    e = err.fileHandleForReading.readDataToEndOfFile()
    errorRead.signal()
  }.start()
  let o = out.fileHandleForReading.readDataToEndOfFile()
  errorRead.wait()
  p.waitUntilExit()
  return (p.terminationStatus, String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
}

@Suite("Command line")
struct CLITests {
  @Test("train from a lab config with flags, write metrics and a model, then eval and predict it")
  func trainEvalPredict() throws {
    let dir = Fixtures.temporaryDirectory()
    let metrics = dir + "/m.jsonl", model = dir + "/m.safetensors"
    let r = try nerve([
      "train", "--config", "examples/lab-c-minibatch-100.toml", "--epochs", "2", "--subset", "10000",
      "--threads", "2", "--metrics", metrics, "--save", model,
    ])
    #expect(r.status == 0, "\(r.err)")
    #expect(r.out.contains("epoch   1/2") && r.out.contains("valid loss") && r.out.contains("test: "), "\(r.out)")
    #expect(r.out.contains("Total params: 238510"), "\(r.out)")
    let lines = try String(contentsOfFile: metrics, encoding: .utf8).split(separator: "\n")
    #expect(lines.count == 3)
    let first = try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as! [String: Any]
    for key in ["epoch", "seconds", "train_loss", "train_accuracy", "valid_loss", "valid_accuracy"] {
      #expect(first[key] != nil, "\(key) missing from \(lines[0])")
    }
    let last = try JSONSerialization.jsonObject(with: Data(lines[2].utf8)) as! [String: Any]
    for key in ["test_loss", "test_accuracy", "test_correct", "total_seconds"] {
      #expect(last[key] != nil, "\(key) missing from \(lines[2])")
    }
    let accuracy = last["test_accuracy"] as! Double
    #expect(accuracy > 0.85, "accuracy \(accuracy)")

    let e = try nerve(["eval", model])
    #expect(e.status == 0 && e.out.contains("\(last["test_correct"] as! Int)/10000 correct"), "\(e.out) \(e.err)")
    let p = try nerve(["predict", model, "--indices", "0,1,2"])
    #expect(p.status == 0 && p.out.contains("0: predicted 7") && p.out.contains("/3 correct"), "\(p.out)")
  }

  @Test("bad input gives a one-line error and a non-zero status", arguments: [
    (["train", "--lr", "-1"], "--lr"),
    (["train", "--layers", "784,x,10"], "--layers"),
    (["train", "--layers", "784,10,10", "--activation", "swish"], "unknown activation 'swish'"),
    (["train", "--batch-size", "zero"], "--batch-size"),
    (["train", "--loss", "hinge"], "--loss"),
    (["train", "--data", "/nonexistent/mnist"], "/nonexistent/mnist/train-images-idx3-ubyte: no such file"),
    (["train", "--layers", "100,30,10", "--epochs", "1"], "starts with 100 inputs but the data has 784"),
    (["train", "--config", "/nonexistent.toml"], "/nonexistent.toml: no such file"),
    (["train", "--subset", "60001", "--epochs", "1"], "data.subset"),
    (["eval", "/nonexistent.safetensors"], "no such file"),
    (["bench", "--workloads", "lab-z"], "unknown workload"),
    // Sizes are checked before memory is asked for: the memory needed and available are named.
    (["train", "--layers", "784,20000000,10", "--epochs", "1"], "GB of memory, and this machine has"),
    (["train", "--layers", "784,4000000000000,10", "--epochs", "1"], "too large"),
    (["train", "--layers", "784,10", "--batch-size", "full", "--set", "x=1"], "--set"),
  ])
  func badInput(arguments: [String], words: String) throws {
    let r = try nerve(arguments)
    #expect(r.status != 0, "\(arguments) succeeded")
    #expect(r.err.contains(words), "\(arguments): \(r.err)")
    #expect(!r.err.contains("Fatal error") && !r.err.contains("Stack dump"), "\(r.err)")
  }

  @Test("a truncated IDX file in --data is named in the error")
  func truncatedData() throws {
    let dir = Fixtures.temporaryDirectory()
    let src = BundledData.directory("mnist")!
    for name in ["train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
      try FileManager.default.copyItem(atPath: src + "/" + name, toPath: dir + "/" + name)
    }
    let images = try Data(contentsOf: URL(fileURLWithPath: src + "/train-images-idx3-ubyte.gz"))
    try images.prefix(images.count / 3).write(to: URL(fileURLWithPath: dir + "/train-images-idx3-ubyte.gz"))
    let r = try nerve(["train", "--data", dir, "--epochs", "1"])
    #expect(r.status != 0)
    #expect(r.err.contains(dir + "/train-images-idx3-ubyte.gz: truncated gzip"), "\(r.err)")
  }

  @Test("a loss that becomes NaN stops with the epoch named and --save keeps the last good model")
  func divergence() throws {
    let dir = Fixtures.temporaryDirectory()
    let r = try nerve([
      "train", "--layers", "784,10,10", "--activation", "relu", "--output-activation", "identity", "--loss", "mse",
      "--lr", "1e30", "--subset", "200", "--epochs", "3",
      "--batch-size", "10", "--save", dir + "/last.safetensors",
    ])
    #expect(r.status == 1)
    #expect(r.err.contains("epoch 1, step") && (r.err.contains("NaN") || r.err.contains("infinite")), "\(r.err)")
    #expect(r.err.contains("last good model was saved"), "\(r.err)")
    #expect(try Sequential.load(from: dir + "/last.safetensors").parameterCount == 7960)
  }
}
