// FileBytes: reading a whole file with the system's calls, with one error per problem (missing,
// a folder, unreadable, larger than memory), and without Foundation's FileManager.contents,
// which leaks a buffer on empty files (found by fuzzing).
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

enum FileBytes {
  /// The bytes of the file at `path`.
  /// - Throws: `NerveError(.badFile)` naming the path and what is wrong.
  static func read(_ path: String) throws -> Data {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      let why = errno == ENOENT ? "no such file" : "cannot read the file (\(String(cString: strerror(errno))))"
      throw NerveError(.badFile, at: path, why)
    }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { throw NerveError(.badFile, at: path, "cannot read the file") }
    guard (st.st_mode & S_IFMT) != S_IFDIR else { throw NerveError(.badFile, at: path, "is a directory, expected a file") }
    let size = Int(st.st_size)
    guard size <= Memory.available else {
      throw NerveError(.badFile, at: path, "is \(Memory.text(size)), more than the \(Memory.text(Memory.available)) of memory available")
    }
    var data = Data(count: size)
    var done = 0
    try data.withUnsafeMutableBytes { raw in
      while done < size {
        let n = Glibc.read(fd, raw.baseAddress! + done, size - done)
        if n == 0 { break }  // The file shrank while being read.
        guard n > 0 else {
          if errno == EINTR { continue }
          throw NerveError(.badFile, at: path, "cannot read the file (\(String(cString: strerror(errno))))")
        }
        done += n
      }
    }
    if done < size { data.removeLast(size - done) }
    return data
  }
}
