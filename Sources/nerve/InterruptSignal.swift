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
