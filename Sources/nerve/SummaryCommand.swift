// nerve summary: the layers, output shapes and parameter counts of a model or config.
import ArgumentParser
import Foundation
import Nerve

struct SummaryCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "summary", abstract: "Print the layers, output shapes and parameter counts of a model or config.")

  @Argument(help: ArgumentHelp("A saved model (.safetensors) or a config (.toml).", valueName: "file"))
  var file: String

  func run() throws {
    try reportingErrors {
      if file.hasSuffix(".toml") {
        let c = try ExperimentConfig(contentsOf: file)
        let e = Experiment(config: c)
        print(try e.makeModel(inputShape: e.sampleShape).summary)
      } else {
        print(try Sequential.load(from: file).summary)
      }
    }
  }
}
