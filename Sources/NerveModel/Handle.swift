// Handles of the model-level C API (include/nerve_model.h): Swift objects handed to C as opaque
// pointers, each keeping its last error message and the strings it returned.
import CNerve
import Foundation
import Nerve

/// The statuses the model-level API returns (nerve.h lists them all).
enum Status {
  static let ok = NERVE_OK
  static let nullPointer = NERVE_ERROR_NULL_POINTER
  static let badSize = NERVE_ERROR_BAD_SIZE
  static let badArgument = NERVE_ERROR_BAD_ARGUMENT
  static let badFile = NERVE_ERROR_BAD_FILE
  static let shapeMismatch = NERVE_ERROR_SHAPE_MISMATCH
  static let diverged = NERVE_ERROR_DIVERGED
  static let interrupted = NERVE_ERROR_INTERRUPTED
  static let writeFailed = NERVE_ERROR_WRITE_FAILED
  static let noModel = NERVE_ERROR_NO_MODEL
  static let failed = NERVE_ERROR_FAILED

  /// The status reporting a thrown error.
  static func of(_ error: Error) -> nerve_status {
    guard let e = error as? NerveError else { return failed }
    switch e.kind {
    case .badFile: return badFile
    case .badValue: return badArgument
    case .shapeMismatch: return shapeMismatch
    case .diverged: return diverged
    case .kernel, .communication: return failed
    case .writeFailed: return writeFailed
    case .interrupted: return interrupted
    }
  }
}

/// A refusal at the API's border (a NULL pointer, a bad size), before anything changes.
struct Refusal: Error {
  var status: nerve_status
  var message: String
}

/// What every handle has: a last error message and strings handed out, all freed with it.
class Handle {
  /// "" when the last call succeeded.
  private var error: UnsafeMutablePointer<CChar>
  /// The last string a call returned (summary, JSON); valid until the next call on the handle.
  private var text: UnsafeMutablePointer<CChar>?

  init() { error = strdup("")! }

  deinit {
    free(error)
    free(text)
  }

  var lastError: UnsafePointer<CChar> { UnsafePointer(error) }

  func setError(_ message: String) {
    free(error)
    error = strdup(message)!
  }

  /// Keeps `string` alive in the handle and returns it as a C string.
  func hand(_ string: String) -> UnsafePointer<CChar> {
    free(text)
    text = strdup(string)!
    return UnsafePointer(text!)
  }

  /// Runs `body`, turning anything thrown into a status and this handle's message.
  func run(_ function: String, _ body: () throws -> Void) -> nerve_status {
    do {
      try body()
      setError("")
      return Status.ok
    } catch let r as Refusal {
      setError("\(function): \(r.message)")
      return r.status
    } catch let e as NerveError {
      setError("\(function): \(e.description)")
      return Status.of(e)
    } catch {
      setError("\(function): \(error)")
      return Status.failed
    }
  }
}

/// The object behind a `nerve_model *`.
final class ModelHandle: Handle {
  var model: Sequential?
  /// Threads asked for before a model was built or loaded.
  var threads: Int?
  /// The loss the model was last trained with (the default for evaluate).
  var loss: Loss?
  /// The history of the last training, as JSON.
  var history: History?
  /// The summary of the last config run.
  var runSummary: RunSummary?

  /// The model, or a refusal if none was built or loaded yet.
  func requireModel() throws -> Sequential {
    guard let model else {
      throw Refusal(status: Status.noModel, message: "the handle holds no model yet: build one (nerve_model_build) or load one (nerve_model_load)")
    }
    return model
  }

  /// Installs a model built or loaded by this handle, with the threads asked for.
  func adopt(_ m: Sequential) throws {
    if let threads { try m.context.setThreads(threads) }
    model = m
    history = nil
  }
}

/// The object behind a `nerve_dataset *`.
final class DatasetHandle: Handle {
  var data: PreparedData?
}

// MARK: Arguments from C

/// A required C string.
func string(_ p: UnsafePointer<CChar>?, _ name: String) throws -> String {
  guard let p else { throw Refusal(status: Status.nullPointer, message: "\(name) is NULL") }
  return String(cString: p)
}

/// A required pointer.
func required<T>(_ p: T?, _ name: String) throws -> T {
  guard let p else { throw Refusal(status: Status.nullPointer, message: "\(name) is NULL") }
  return p
}

/// `n` samples of `per` values each, checked for a negative count and overflow.
func sampleValues(_ n: Int64, _ per: Int, _ name: String) throws -> Int {
  guard n >= 0 else { throw Refusal(status: Status.badSize, message: "\(name) is negative (\(n))") }
  let (total, overflow) = Int(n).multipliedReportingOverflow(by: per)
  guard !overflow, total <= Int.max / 8 else {
    throw Refusal(status: Status.badSize, message: "\(name) = \(n) samples of \(per) values overflows")
  }
  return total
}

/// The handle behind an opaque pointer (not retained).
func handle<T: Handle>(_ p: OpaquePointer?, as: T.Type) -> T? {
  guard let p else { return nil }
  return Unmanaged<T>.fromOpaque(UnsafeRawPointer(p)).takeUnretainedValue()
}

/// A value as JSON text (keys sorted).
func json<T: Encodable>(_ value: T) throws -> String {
  let e = JSONEncoder()
  e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
  return String(decoding: try e.encode(value), as: UTF8.self)
}
