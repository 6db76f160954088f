// nerve export: a saved model as an ONNX file for other runtimes (onnxruntime, ...).
import ArgumentParser
import Foundation
import Nerve
import NerveONNX

struct ExportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export",
    abstract: "Write a saved model as ONNX (opset 13) for onnxruntime and other runtimes.",
    discussion: """
      The ONNX graph takes the inputs Nerve's model takes, prepared the same way (its \
      preprocessing is in the file's metadata as nerve.preprocessing): input "input" of shape \
      [batch, 784] or [batch, 28, 28, 1] (channels last), output "output" (probabilities when \
      the model ends with a softmax). Dropout is left out; batch norm uses its running statistics.
      Example:
        nerve export runs/e.safetensors runs/e.onnx
      """)

  @Argument(help: ArgumentHelp("A model saved by nerve train --save.", valueName: "model"))
  var model: String

  @Argument(help: ArgumentHelp("The ONNX file to write.", valueName: "out.onnx"))
  var output: String

  func run() throws {
    try reportingErrors {
      let m = try Sequential.load(from: model)
      try m.exportONNX(to: output)
      let bytes = (try? FileManager.default.attributesOfItem(atPath: output)[.size] as? Int) ?? 0
      print("wrote \(output) (ONNX opset \(ONNXFormat.opset), IR \(ONNXFormat.irVersion), \(bytes) bytes; input \(m.inputShape), output \(m.outputShape))")
    }
  }
}
