// Ctrl-C (SIGINT) and SIGTERM during training: the handler only records the signal; training
// sees it after the current step, writes its checkpoint and stops cleanly.
#if canImport(Glibc)
  import Glibc
#endif

/// The signal that asked the process to stop (0 for none yet).
final class InterruptSignal: @unchecked Sendable {
  /// Written by the signal handler, read between training steps.
  nonisolated(unsafe) static var last: Int32 = 0

  var received: Int32 { Self.last }

  /// In an mpirun job: the line the handler prints, kept current by `record` (nil otherwise).
  nonisolated(unsafe) static var note: UnsafeMutablePointer<UInt8>?
  nonisolated(unsafe) static var noteLength = 0
  nonisolated(unsafe) private static var rank = 0

  /// Makes the handler print where training is (for ranks of an mpirun job).
  static func reportProgress(rank: Int) {
    Self.rank = rank
    note = .allocate(capacity: 256)
    record(epoch: 0, step: 0)
  }

  /// Records that training is at `step` of `epoch` (no allocation: called every step).
  static func record(epoch: Int, step: Int) {
    guard let note else { return }
    var n = 0
    func put(_ text: StaticString) {
      text.withUTF8Buffer { for b in $0 { note[n] = b; n += 1 } }
    }
    func put(_ value: Int) {
      var digits = 1, v = value
      while v >= 10 { v /= 10; digits *= 10 }
      v = value
      while digits > 0 { note[n] = UInt8(48 + v / digits); v %= digits; digits /= 10; n += 1 }
    }
    put("nerve: rank "); put(rank); put(" was stopped in epoch "); put(epoch); put(", after step ")
    put(step); put(" (another rank ended, or the job was stopped); a run with --checkpoint resumes from its last checkpoint\n")
    noteLength = n
  }

  /// Routes SIGINT and SIGTERM to the flag from now on; a second one ends the process at once
  /// (as if no handler were installed).
  static func install() -> InterruptSignal {
    // A parent may have started us with these blocked (blocked masks are inherited).
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGINT)
    sigaddset(&set, SIGTERM)
    pthread_sigmask(SIG_UNBLOCK, &set, nil)
    for sig in [SIGINT, SIGTERM] {
      signal(sig) { sig in
        // In an mpirun job a rank may be blocked waiting for a rank that died: say where the
        // run was before mpirun ends this process (write(2) is safe in a handler).
        if let note = InterruptSignal.note { _ = write(2, note, InterruptSignal.noteLength) }
        if InterruptSignal.last != 0 {
          signal(sig, SIG_DFL)
          raise(sig)
        }
        InterruptSignal.last = sig
      }
    }
    return InterruptSignal()
  }
}
