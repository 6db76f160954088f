// Subprocess: child programs (sweep runs, the headless browser) started with posix_spawn, their
// output sent to a file. Foundation's Process leaks each Process object on Linux (LeakSanitizer
// shows it), which a sweep of hundreds of runs would pile up.
import Foundation
import Nerve

#if canImport(Glibc)
  import Glibc
#endif

struct Subprocess {
  let pid: pid_t
  let executable: String

  /// How a child ended.
  enum Exit: Equatable, CustomStringConvertible {
    case status(Int32)
    case signal(Int32)

    var succeeded: Bool { self == .status(0) }

    var description: String {
      switch self {
      case .status(let s): "exit status \(s)"
      case .signal(let s): "killed by signal \(s)"
      }
    }
  }

  /// Starts `executable` with `arguments`, its standard output and error appended to `output`
  /// (or discarded), its standard input empty.
  static func start(_ executable: String, _ arguments: [String], output: String? = nil) throws -> Subprocess {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, output ?? "/dev/null", O_WRONLY | O_CREAT | O_APPEND, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    let argv = ([executable] + arguments).map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let status = posix_spawn(&pid, executable, &actions, nil, argv, environ)
    guard status == 0 else {
      throw NerveError(.badValue, at: executable, "cannot start it: \(String(cString: strerror(status)))")
    }
    return Subprocess(pid: pid, executable: executable)
  }

  /// How the child ended, or nil while it runs.
  func poll() -> Exit? { wait(options: WNOHANG) }

  /// Waits for the child to end.
  func waitUntilExit() -> Exit { wait(options: 0)! }

  private func wait(options: Int32) -> Exit? {
    var status: Int32 = 0
    var r: pid_t
    repeat { r = waitpid(pid, &status, options) } while r < 0 && errno == EINTR
    guard r == pid else { return nil }
    // The <sys/wait.h> macros, which Swift does not import.
    let signal = status & 0x7F
    return signal == 0 ? .status((status >> 8) & 0xFF) : .signal(signal)
  }
}
