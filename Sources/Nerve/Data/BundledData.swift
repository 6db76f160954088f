// BundledData: finding the datasets shipped in the repository's Data/ folder.
import Foundation

/// Locates the `Data/` folder that ships with Nerve.
public enum BundledData {
  /// The first existing `Data/<subfolder>` among: `$NERVE_DATA/<subfolder>`, `./Data`, the
  /// folders above the running executable (a `.build/release/nerve` inside a checkout), and
  /// the checkout this library was compiled from (which is where SwiftPM keeps a dependency).
  public static func directory(_ subfolder: String) -> String? {
    let fm = FileManager.default
    var roots: [String] = []
    if let env = ProcessInfo.processInfo.environment["NERVE_DATA"], !env.isEmpty {
      roots.append(env)
    }
    roots.append(fm.currentDirectoryPath + "/Data")
    var exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
    for _ in 0..<6 {
      exe.deleteLastPathComponent()
      roots.append(exe.path + "/Data")
    }
    // #filePath is .../Sources/Nerve/Data/BundledData.swift in the checkout.
    let source = URL(fileURLWithPath: #filePath)
    roots.append(
      source.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path + "/Data")
    for root in roots {
      let dir = root + "/" + subfolder
      var isDir: ObjCBool = false
      if fm.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue { return dir }
    }
    return nil
  }
}
