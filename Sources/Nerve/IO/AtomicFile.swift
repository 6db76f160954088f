// AtomicFile: writing files so that a crash never leaves a half-written one.
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Writes whole files atomically: the bytes go to a temporary file in the same folder, which
/// is flushed to disk and then renamed over the destination.
public enum AtomicFile {
  /// Replaces the file at `path` with `data`.
  /// - Throws: `NerveError` (`.writeFailed`) naming the path.
  public static func write(_ data: Data, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
      throw NerveError(.writeFailed, at: path, "the folder \(dir) does not exist")
    }
    let temp = dir + "/." + url.lastPathComponent + ".tmp-\(getpid())"
    let fd = open(temp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    guard fd >= 0 else {
      throw NerveError(.writeFailed, at: path, "cannot create \(temp): \(String(cString: strerror(errno)))")
    }
    var ok = true
    data.withUnsafeBytes { raw in
      var offset = 0
      while offset < raw.count {
        let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
        if n <= 0 {
          ok = false
          return
        }
        offset += n
      }
    }
    let why = String(cString: strerror(errno))
    if ok { ok = fsync(fd) == 0 }
    close(fd)
    guard ok, rename(temp, path) == 0 else {
      unlink(temp)
      throw NerveError(.writeFailed, at: path, "cannot write the file: \(why)")
    }
  }

  /// Replaces the file at `path` with `text` (UTF-8).
  public static func write(_ text: String, to path: String) throws {
    try write(Data(text.utf8), to: path)
  }
}
