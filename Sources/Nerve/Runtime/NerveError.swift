// NerveError: the one error type Nerve throws, saying what was wrong and where.

/// An error from Nerve: what went wrong, and where (a file, a field, a layer, an epoch).
///
/// Every failure Nerve reports (bad files, mismatched shapes, bad options, a diverging loss, a
/// C kernel refusing its arguments) is a `NerveError`. Its `description` is one line meant to be
/// shown to the user as is, for example
/// `Data/mnist/train-images-idx3-ubyte.gz: truncated: expected 47040016 bytes, found 1024`.
public struct NerveError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The broad kind of failure, for code that wants to react to some of them.
  public enum Kind: String, Sendable {
    /// A file is missing, unreadable, truncated or not in the expected format.
    case badFile
    /// An option, configuration field or argument has a value Nerve cannot use.
    case badValue
    /// Shapes that must agree do not (layer sizes, image and label counts, ...).
    case shapeMismatch
    /// Training produced a non-finite loss.
    case diverged
    /// The C core rejected a call.
    case kernel
    /// A file could not be written.
    case writeFailed
    /// Training was asked to stop (Ctrl-C, a callback) and stopped after a step.
    case interrupted
    /// A message between the ranks of a data-parallel job failed.
    case communication
  }

  /// What kind of failure this is.
  public let kind: Kind
  /// Where it happened: a file path, `file:line`, a config field or a layer; empty if none.
  public let location: String
  /// What was wrong, and what was expected.
  public let message: String

  /// Creates an error.
  public init(_ kind: Kind, at location: String = "", _ message: String) {
    self.kind = kind
    self.location = location
    self.message = message
  }

  public var description: String { location.isEmpty ? message : "\(location): \(message)" }
}
