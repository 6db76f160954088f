// nerve serve: a saved model behind HTTP, with a page to draw digits on.
import ArgumentParser
import Foundation
import Nerve

struct ServeCommand: AsyncParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "serve",
    abstract: "Serve a saved model over HTTP: a page to draw digits on, and POST /predict.",
    discussion: """
      Open the printed address in a browser and draw a digit; the prediction follows as you draw.
      The API (answers are JSON; errors are {"error": ...} with a 4xx status):
        curl --data-binary @digit.png -H 'Content-Type: image/png' http://127.0.0.1:8080/predict
        curl -d '{"pixels": [0, 0, ...784 values 0-255...]}' -H 'Content-Type: application/json' http://127.0.0.1:8080/predict
        curl http://127.0.0.1:8080/model
        curl http://127.0.0.1:8080/healthz
      Requests that arrive together are answered by one forward pass (up to 64 samples or 1 ms).
      SIGINT or SIGTERM stops the server after the requests in flight.
      """)

  @Argument(help: ArgumentHelp("A model saved by nerve train --save.", valueName: "model"))
  var model: String

  @Option(name: .long, help: ArgumentHelp("Address to listen on (default: loopback only; 0.0.0.0 for every interface).", valueName: "host"))
  var host = "127.0.0.1"

  @Option(name: .long, help: ArgumentHelp("Port to listen on (0: any free port, printed at start).", valueName: "port"))
  var port = 8080

  @Option(name: .long, help: ArgumentHelp("Threads for the model's forward passes (default 1: the HTTP side needs the other cores).", valueName: "n"))
  var threads = 1

  @Option(name: .long, help: ArgumentHelp("Largest request body in bytes; larger ones get 413.", valueName: "bytes"))
  var maxBody = 4 << 20

  @Option(name: .long, help: ArgumentHelp("Seconds a connection may stay silent (idle or mid-request) before it is closed.", valueName: "seconds"))
  var idleTimeout = 10.0

  func validate() throws {
    if threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
    if !(0...65535).contains(port) { throw ValidationError("--port must be 0...65535, got \(port)") }
    if maxBody < 1 { throw ValidationError("--max-body must be at least 1 byte, got \(maxBody)") }
    if !(idleTimeout > 0 && idleTimeout <= 86400) { throw ValidationError("--idle-timeout must be in (0, 86400] seconds, got \(idleTimeout)") }
  }

  func run() async throws {
    #if Serve
      let m = try reportingErrors {
        let m = try Sequential.load(from: model)
        try m.context.setThreads(threads)
        return m
      }
      let settings = PredictionServer.Settings(
        host: host, port: port, maxBodyBytes: maxBody, idleTimeout: .milliseconds(Int64(idleTimeout * 1000)))
      do {
        try await PredictionServer(model: m, settings: settings).run()
      } catch {
        printError("nerve: error: cannot serve on \(host):\(port): \(error)")
        throw ExitCode.failure
      }
    #else
      printError("nerve: error: this nerve was built without the Serve trait; build with `swift build -c release --traits Serve`")
      throw ExitCode.failure
    #endif
  }
}
