// Shared test data: MNIST is loaded once per test process.
import Foundation
import Nerve

enum Fixtures {
  /// The bundled MNIST (50,000 / 10,000 / 10,000).
  static let mnist: MNIST = {
    do { return try MNIST.load() } catch { fatalError("cannot load the bundled MNIST: \(error)") }
  }()

  /// A fresh temporary directory for one test.
  static func temporaryDirectory() -> String {
    let path = NSTemporaryDirectory() + "nerve-tests-\(UUID().uuidString)"
    try! FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
  }
}
