// Progress: a live bar on a terminal, one line per epoch otherwise.
import Foundation
import Nerve

#if canImport(Glibc)
  import Glibc
#endif

final class ProgressDisplay {
  let live: Bool
  let quiet: Bool
  private var lastDraw = ContinuousClock.now
  private var drawn = false

  init(quiet: Bool) {
    self.quiet = quiet
    live = !quiet && isatty(STDERR_FILENO) != 0
  }

  /// Redraws the bar at most ten times a second.
  func batch(_ p: BatchProgress) {
    guard live else { return }
    let now = ContinuousClock.now
    guard p.batch == p.batches || now - lastDraw > .milliseconds(100) else { return }
    lastDraw = now
    let width = 30
    let filled = p.batches == 0 ? width : width * p.batch / p.batches
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    let text = String(
      format: "\repoch %d/%d [%@] %d/%d  loss %.4f ", p.epoch, p.epochs, bar, p.batch, p.batches, p.loss)
    FileHandle.standardError.write(Data(text.utf8))
    drawn = true
  }

  /// Erases the bar, if one is drawn.
  func clear() {
    if drawn {
      FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
      drawn = false
    }
  }

  /// Prints the epoch's line (clearing the bar first).
  func epoch(_ m: EpochMetrics, of epochs: Int) {
    clear()
    guard !quiet else { return }
    var line = String(
      format: "epoch %3d/%d  %6.3fs  train loss %.4f acc %6.2f%%", m.epoch, epochs, m.seconds,
      m.trainLoss, 100 * m.trainAccuracy)
    if let l = m.validLoss, let a = m.validAccuracy {
      line += String(format: "  valid loss %.4f acc %6.2f%%", l, 100 * a)
    }
    if let l = m.testLoss, let a = m.testAccuracy {
      line += String(format: "  test loss %.4f acc %6.2f%%", l, 100 * a)
    }
    print(line)
    fflush(nil)
  }
}
