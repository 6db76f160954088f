// Sizes and memory: every size that comes from a file, a config or a flag is multiplied with
// overflow checks, and an allocation bigger than the machine's memory is refused up front with
// the size needed and the memory there is, instead of trapping or being killed later.
import Foundation

#if canImport(Glibc)
  import Glibc
#endif

enum Sizes {
  /// The largest element count Nerve accepts for one array (2^40 floats, 4 TB): far beyond any
  /// machine, small enough that byte counts and sums of a few such counts cannot overflow.
  static let maxElements = 1 << 40

  /// The product of `dims`, or nil if it overflows or passes `maxElements`.
  static func product(_ dims: [Int]) -> Int? {
    var p = 1
    for d in dims {
      guard d >= 0 else { return nil }
      let (r, overflow) = p.multipliedReportingOverflow(by: d)
      guard !overflow, r <= maxElements else { return nil }
      p = r
    }
    return p
  }

  /// The product of `dims`, or a `NerveError` at `location` saying what is too large.
  static func product(_ dims: [Int], of what: String, at location: String) throws -> Int {
    guard let p = product(dims) else {
      throw NerveError(
        .badValue, at: location,
        "\(what) of \(dims.map(String.init).joined(separator: " x ")) values is too large (more than 2^40)")
    }
    return p
  }
}

/// The memory the machine has for Nerve's arrays.
public enum Memory {
  /// Bytes available now: MemAvailable from /proc/meminfo, else the physical memory; at most
  /// `NERVE_MEMORY_LIMIT` bytes when that is set (a number, or with K, M or G), for sharing a
  /// machine (and for fuzzing, where any large allocation counts as a failure).
  public static var available: Int {
    let machine = machineAvailable
    guard let limit else { return machine }
    return min(machine, limit)
  }

  /// NERVE_MEMORY_LIMIT in bytes, read once (the environment is a dictionary built per call).
  private static let limit: Int? = {
    guard let text = ProcessInfo.processInfo.environment["NERVE_MEMORY_LIMIT"], !text.isEmpty else { return nil }
    let units: [Character: Int] = ["K": 1 << 10, "M": 1 << 20, "G": 1 << 30]
    let unit = text.last.flatMap { units[Character($0.uppercased())] }
    guard let n = Int(unit == nil ? text : String(text.dropLast())), n > 0 else { return nil }
    return n.multipliedReportingOverflow(by: unit ?? 1).overflow ? nil : n * (unit ?? 1)
  }()

  /// Sizes up to this pass `check` without reading /proc/meminfo: a machine that cannot find
  /// 16 MB is failing anyway, and small checks sit in per-request paths (decoding a picture).
  private static let surelyAvailable = 16 << 20

  private static var machineAvailable: Int {
    if let text = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
      let line = text.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
      let kb = Int(line.split(separator: " ").dropFirst().first ?? "")
    {
      return kb * 1024
    }
    return Int(sysconf(Int32(_SC_PHYS_PAGES))) * Int(sysconf(Int32(_SC_PAGESIZE)))
  }

  /// `bytes` as people read them: "63.4 GB".
  static func text(_ bytes: Int) -> String {
    let units = ["bytes", "KB", "MB", "GB", "TB"]
    var v = Double(bytes), u = 0
    while v >= 1000 && u < units.count - 1 {
      v /= 1000
      u += 1
    }
    return u == 0 ? "\(bytes) bytes" : String(format: "%.1f %@", v, units[u])
  }

  /// Throws unless `floats` float32 values fit in the memory available now.
  static func check(floats: Int, for what: String, at location: String) throws {
    let (bytes, overflow) = floats.multipliedReportingOverflow(by: 4)
    if !overflow && bytes <= surelyAvailable && bytes <= (limit ?? .max) { return }
    let available = Memory.available
    guard !overflow, bytes <= available else {
      throw NerveError(
        .badValue, at: location,
        "\(what) need \(overflow ? "more than 9 EB" : text(bytes)) of memory, and this machine has \(text(available)) available")
    }
  }
}
