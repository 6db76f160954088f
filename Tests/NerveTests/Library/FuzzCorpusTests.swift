// Every input of the fuzzing seed corpus, and every input a fuzzer ever found a fault with, run
// through its reader again: each must come back with a value or an error, never a crash.
import Foundation
import NerveFuzzing
import Testing

@Suite("Fuzz corpus and regressions")
struct FuzzCorpusTests {
  /// A file's bytes (with stdio: Foundation's readers leak a buffer on empty files).
  func bytes(_ path: String) throws -> Data {
    guard let f = fopen(path, "rb") else { throw CocoaError(.fileReadNoSuchFile) }
    defer { fclose(f) }
    var data = Data()
    var chunk = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let n = fread(&chunk, 1, chunk.count, f)
      if n == 0 { break }
      data.append(contentsOf: chunk[0..<n])
    }
    return data
  }

  @Test("the readers survive the seed corpus and every past finding", arguments: FuzzTarget.allCases)
  func replay(target: FuzzTarget) throws {
    var count = 0
    for folder in ["Tests/Fuzz/Corpus", "Tests/Fuzz/Regressions"] {
      let dir = repositoryRoot() + "/\(folder)/\(target.rawValue)"
      for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
        target.run(try bytes(dir + "/" + name))
        count += 1
      }
    }
    #expect(count >= 1, "no inputs for \(target.rawValue)")
  }
}
