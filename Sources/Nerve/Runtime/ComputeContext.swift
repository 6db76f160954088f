// ComputeContext: a handle on the C core's context (threads, instruction set, scratch memory).
import CNerve

#if canImport(Glibc)
  import Glibc
#endif

/// The instruction set the C kernels run with.
public enum InstructionSet: Int, Sendable, CaseIterable, CustomStringConvertible {
  /// x86-64 baseline element-wise code; matrix products through OpenBLAS.
  case baseline = 1
  /// AVX2 + FMA element-wise code and Nerve's own 8-lane matrix products.
  case avx2 = 2
  /// AVX-512 element-wise code and Nerve's own AVX-512 matrix products.
  case avx512 = 3

  public var description: String {
    switch self {
    case .baseline: "baseline"
    case .avx2: "avx2"
    case .avx512: "avx512"
    }
  }

  /// The best instruction set this CPU supports.
  public static var best: InstructionSet {
    let ctx = ComputeContext(threads: 1)
    return allCases.reversed().first { (try? ctx.setInstructionSet($0)) != nil } ?? .baseline
  }

  /// The instruction set new contexts take: `best`, or the one the `NERVE_ISA` environment
  /// variable names (`baseline`, `avx2`, `avx512`) where this CPU has it.
  public static var chosen: InstructionSet {
    ComputeContext(threads: 1).instructionSet
  }
}

/// Where kernels run: a thread count, an instruction set and scratch memory.
///
/// Every parallel loop in the C core and every OpenBLAS call made for a model uses this
/// context's thread count; nothing is process-wide. A context is used by one thread at a time.
public final class ComputeContext: @unchecked Sendable {
  let raw: OpaquePointer

  /// Creates a context.
  /// - Parameter threads: worker threads; `nil` means `OMP_NUM_THREADS` if set, otherwise every
  ///   CPU this process may use.
  public init(threads: Int? = nil) {
    var out: OpaquePointer?
    let status = nerve_context_create(&out, Int32(clamping: max(0, threads ?? 0)))
    guard status == NERVE_OK, let out else {
      fatalError("nerve_context_create failed: \(String(cString: nerve_status_string(status)))")
    }
    raw = out
  }

  deinit { nerve_context_free(raw) }

  /// The thread count in effect.
  public var threads: Int { Int(nerve_context_threads(raw)) }

  /// Changes the thread count (`nil`: the default as in `init`).
  public func setThreads(_ threads: Int?) throws {
    try check(nerve_context_set_threads(raw, Int32(clamping: max(0, threads ?? 0))))
  }

  /// The instruction set in effect.
  public var instructionSet: InstructionSet {
    InstructionSet(rawValue: Int(nerve_context_isa(raw).rawValue)) ?? .baseline
  }

  /// Chooses an instruction set (for comparing paths); throws if the CPU lacks it.
  public func setInstructionSet(_ isa: InstructionSet) throws {
    try check(nerve_context_set_isa(raw, nerve_isa(rawValue: UInt32(isa.rawValue))))
  }

  /// Grows the layer workspace now, so kernels never allocate while training.
  func reserve(bytes: Int) throws {
    if bytes > 0 { try check(nerve_context_reserve(raw, bytes)) }
  }

  /// Turns a C status into a thrown `NerveError` carrying the context's message.
  func check(_ status: nerve_status) throws {
    if status != NERVE_OK {
      let message = String(cString: nerve_context_last_error(raw))
      throw NerveError(
        .kernel, message.isEmpty ? String(cString: nerve_status_string(status)) : message)
    }
  }

  /// Default thread count: `OMP_NUM_THREADS` if set, otherwise the usable CPUs.
  public static var defaultThreads: Int { ComputeContext().threads }
}
