// The HTTP side of `nerve serve` (Hummingbird 2, built with the Serve trait): the drawing page,
// POST /predict, GET /model and GET /healthz. Handlers read and check the body, prepare
// pictures, and hand samples to the PredictionBatcher, which alone runs the model.
#if Serve
  import Foundation
  import Hummingbird
  import Nerve

  struct PredictionServer {
    struct Settings {
      var host: String
      var port: Int
      var maxBodyBytes: Int
      var idleTimeout: Duration
    }

    let model: Sequential
    let settings: Settings
    let batcher: PredictionBatcher

    init(model: Sequential, settings: Settings) {
      self.model = model
      self.settings = settings
      batcher = PredictionBatcher(model: model)
    }

    /// Serves until SIGINT or SIGTERM; requests in flight finish before it returns.
    func run() async throws {
      let host = settings.host
      let app = Application(
        router: try makeRouter(),
        server: .http1(configuration: .init(idleTimeout: .nanoseconds(Int64(settings.idleTimeout.seconds * 1e9)))),
        configuration: .init(address: .hostname(host, port: settings.port), serverName: "nerve"),
        onServerRunning: { channel in
          let port = channel.localAddress?.port ?? 0
          let shown = host.contains(":") ? "[\(host)]" : host
          // Written straight to the file descriptor: scripts wait for this line through a pipe.
          FileHandle.standardOutput.write(Data("nerve serve: listening on http://\(shown):\(port)/ (Ctrl-C to stop)\n".utf8))
        }
      )
      batcher.start()
      // Stops on SIGTERM and SIGINT, after the requests in flight.
      do {
        try await app.runService()
      } catch {
        batcher.stop()
        throw error
      }
      batcher.stop()
      FileHandle.standardOutput.write(Data("nerve serve: stopped after \(batcher.samples) predictions in \(batcher.passes) forward passes\n".utf8))
    }

    private func makeRouter() throws -> Router<BasicRequestContext> {
      let router = Router()
      router.add(middleware: JSONErrors())
      let page = DrawingPage.html(summary: model.summary, inputShape: model.inputShape)
      router.get("/") { _, _ in
        Response(
          status: .ok,
          headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
          body: .init(byteBuffer: ByteBuffer(string: page)))
      }
      router.get("/healthz") { _, _ in
        try json(["status": "ok"])
      }
      let description = try jsonBytes(ModelDescription(model))
      router.get("/model") { _, _ in
        Response(
          status: .ok, headers: [.contentType: "application/json"],
          body: .init(byteBuffer: ByteBuffer(bytes: description)))
      }
      router.post("/predict") { request, _ in
        try await predict(request)
      }
      return router
    }

    private func predict(_ request: Request) async throws -> Response {
      let limit = settings.maxBodyBytes
      if let length = request.headers[.contentLength].flatMap(Int.init), length > limit {
        throw ServeError(status: 413, message: "the body is \(length) bytes; the limit is \(limit) (--max-body)")
      }
      var request = request
      let body: ByteBuffer
      do {
        body = try await request.collectBody(upTo: limit)
      } catch let error as HTTPResponseError where error.status == .contentTooLarge {
        throw ServeError(status: 413, message: "the body is over the limit of \(limit) bytes (--max-body)")
      }
      let bytes = Array(body.readableBytesView)
      let input = try PredictionInput.read(bytes, contentType: request.headers[.contentType], for: model)
      switch input {
      case .picture(let prepared):
        let outputs = try await batcher.outputs(rows: 1, rawValues: prepared.values)
        return try json(PredictionAnswer(outputs: outputs[0], endsWithSoftmax: model.endsWithSoftmax, seen: prepared.seen))
      case .samples(let rows, let values, let single):
        let outputs = try await batcher.outputs(rows: rows, rawValues: values)
        let answers = outputs.map { PredictionAnswer(outputs: $0, endsWithSoftmax: model.endsWithSoftmax) }
        return single ? try json(answers[0]) : try json(BatchAnswer(predictions: answers))
      }
    }
  }

  /// Every error as `{"error": ...}` with its status: ours, Hummingbird's (404, 405, 413) and
  /// the model's (a NerveError is the request's fault: 400).
  struct JSONErrors: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
      do {
        return try await next(request, context)
      } catch let error as ServeError {
        return errorResponse(error.status, error.message)
      } catch let error as NerveError {
        return errorResponse(error.kind == .interrupted ? 503 : 400, error.description)
      } catch let error as HTTPResponseError {
        var code = error.status.code
        if code == 404 && ["/", "/model", "/healthz", "/predict"].contains(request.uri.path) { code = 405 }
        let message = code == 404 ? "no such page: \(request.uri.path) (try /, /model, /healthz or POST /predict)" :
          code == 405 ? "\(request.method) is not allowed on \(request.uri.path) (POST /predict; GET /, /model, /healthz)" :
          code == 413 ? "the body is over the size limit" : "\(error.status)"
        return errorResponse(code, message)
      } catch {
        return errorResponse(500, "internal error: \(error)")
      }
    }

    private func errorResponse(_ status: Int, _ message: String) -> Response {
      let body = (try? jsonBytes(ErrorAnswer(error: message))) ?? []
      return Response(
        status: .init(code: status), headers: [.contentType: "application/json"],
        body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
  }

  private func json<T: Encodable>(_ value: T) throws -> Response {
    Response(
      status: .ok, headers: [.contentType: "application/json"],
      body: .init(byteBuffer: ByteBuffer(bytes: try jsonBytes(value))))
  }
#endif
