// nerve: the command-line tool. Train, evaluate, predict and benchmark digit classifiers.
import ArgumentParser
import Foundation
import Nerve

@main
struct NerveCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "nerve",
    abstract: "Train and run neural networks on MNIST, the 8x8 digits and other small image sets.",
    discussion: """
      Examples:
        nerve train --config examples/lab-a-mlp-mse.toml
        nerve train --layers 784,100,10 --loss cross_entropy --lr 0.1 --batch-size 32 --epochs 5 --save digits.safetensors
        nerve eval digits.safetensors
        nerve predict digits.safetensors --count 5
        nerve serve digits.safetensors          # then open http://127.0.0.1:8080/ and draw a digit
      """,
    version: nerveVersion,
    subcommands: [
      TrainCommand.self, EvalCommand.self, PredictCommand.self, SummaryCommand.self,
      BenchCommand.self, SweepCommand.self, ReportCommand.self, ExportCommand.self, ServeCommand.self,
    ]
  )
}

/// Prints to standard error.
func printError(_ text: String) {
  FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Runs `body`, turning a NerveError into a one-line message and exit status 1.
func reportingErrors<T>(_ body: () throws -> T) throws -> T {
  do {
    return try body()
  } catch let error as NerveError {
    printError("nerve: error: \(error)")
    if let ranks = JobRanks.current {
      printError("nerve: rank \(ranks.rank) stops the job")
      ranks.abort(code: 1)
    }
    throw ExitCode.failure
  }
}

/// A value as one line of JSON (keys sorted).
func jsonLine<T: Encodable>(_ value: T) throws -> String {
  String(decoding: try jsonBytes(value), as: UTF8.self)
}

/// A value as the UTF-8 bytes of one line of JSON (keys sorted, slashes as they are).
func jsonBytes<T: Encodable>(_ value: T) throws -> [UInt8] {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
  return Array(try encoder.encode(value))
}

extension Duration {
  /// The duration in seconds as a Double.
  var seconds: Double {
    let c = components
    return Double(c.seconds) + Double(c.attoseconds) * 1e-18
  }
}
