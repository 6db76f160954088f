// Every input of the fuzzing seed corpus, and every input a fuzzer ever found a fault with, run
// through its reader again: each must come back with a value or an error, never a crash.
import Foundation
import NerveFuzzing
import Testing

@Suite("Fuzz corpus and regressions")
struct FuzzCorpusTests {
  @Test("the readers survive the seed corpus and every past finding", arguments: FuzzTarget.allCases)
  func replay(target: FuzzTarget) throws {
    var count = 0
    for folder in ["Tests/Fuzz/Corpus", "Tests/Fuzz/Regressions"] {
      let dir = repositoryRoot() + "/\(folder)/\(target.rawValue)"
      for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
        target.run(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name)))
        count += 1
      }
    }
    #expect(count >= 1, "no inputs for \(target.rawValue)")
  }
}
