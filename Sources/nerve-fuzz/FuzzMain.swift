// nerve-fuzz: the fuzz targets (Sources/NerveFuzzing) under libFuzzer, or, built normally, a
// replayer that runs them on files (to reproduce a finding).
//
//   scripts/fuzz.sh 60                                   # every target for 60 s under libFuzzer
//   .build/release/nerve-fuzz idx crash-1234             # replay inputs through one target
import Foundation
import NerveFuzzing

#if NERVE_FUZZ
  /// libFuzzer's driver, for programs with a main of their own (SwiftPM gives executables one).
  @_silgen_name("LLVMFuzzerRunDriver")
  func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<Int32>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
  ) -> Int32

  /// The target NERVE_FUZZ_TARGET names (scripts/fuzz.sh sets it).
  let fuzzTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["NERVE_FUZZ_TARGET"] ?? ""
    guard let t = FuzzTarget(rawValue: name) else {
      FileHandle.standardError.write(Data("NERVE_FUZZ_TARGET must be one of \(FuzzTarget.allCases.map(\.rawValue))\n".utf8))
      exit(2)
    }
    return t
  }()

  /// One input.
  @_cdecl("LLVMFuzzerTestOneInput")
  public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    fuzzTarget.run(data.map { Data(bytes: $0, count: size) } ?? Data())
    return 0
  }
#endif

@main
struct FuzzMain {
  static func main() {
    #if NERVE_FUZZ
      var argc = CommandLine.argc
      var argv = CommandLine.unsafeArgv
      _ = fuzzTarget
      exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
    #else
      replay()
    #endif
  }

  /// Runs files through a target: `nerve-fuzz TARGET FILE...`.
  static func replay() {
    let args = CommandLine.arguments.dropFirst()
    guard let name = args.first, let target = FuzzTarget(rawValue: name), args.count >= 2 else {
      print("usage: nerve-fuzz TARGET FILE... (targets: \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")))")
      exit(2)
    }
    for file in args.dropFirst() {
      guard let data = FileManager.default.contents(atPath: file) else {
        print("\(file): cannot read")
        exit(1)
      }
      target.run(data)
      print("\(file): ok")
    }
  }
}
