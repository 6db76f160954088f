// Test support: seeded data, contexts at several thread counts and instruction sets, and a
// closeness check that reports the largest difference and the first mismatches.
import CNerve
import Nerve
import Testing

/// `count` values of `fill` and 16 more (a run may start a few values in, and what lies past it
/// shows whether anything wrote there), at a 64-byte boundary (nerve_alloc): where a team may
/// write with streaming stores. The caller frees them with nerve_free.
func alignedBuffer<T>(_ count: Int, _ fill: T) -> UnsafeMutablePointer<T> {
  let p = nerve_alloc((count + 16) * MemoryLayout<T>.stride)!.bindMemory(to: T.self, capacity: count + 16)
  p.initialize(repeating: fill, count: count + 16)
  return p
}

/// Every way a team may store what it writes, as contexts for `isa` at 1, 2 and 3 threads: with
/// streaming stores (NERVE_STORES_STREAMED) at each offset (values past a 64-byte boundary, 0
/// and 1 unless told; streaming needs whole lines, so off a boundary a kernel stores otherwise),
/// and with cached stores at offset 0. `body` gets the context, the offset and the setting.
func forEachStoreWay(isa: InstructionSet, offsets: [Int] = [0, 1], _ body: (Kernels, Int, nerve_stores) -> Void) {
  let ways = [(offsets[0], NERVE_STORES_STREAMED), (0, NERVE_STORES_CACHED)]
    + offsets.dropFirst().map { ($0, NERVE_STORES_STREAMED) }
  for threads in [1, 2, 3] {
    for (offset, stores) in ways {
      let k = Kernels(threads: threads, isa: isa)
      k.ok(nerve_context_set_stores(k.ctx, stores))
      body(k, offset, stores)
    }
  }
}

/// A nerve_context for one thread count and instruction set, freed at the end of the test.
final class Kernels {
  let ctx: OpaquePointer
  let threads: Int
  let isa: InstructionSet

  init(threads: Int, isa: InstructionSet) {
    var out: OpaquePointer?
    precondition(nerve_context_create(&out, Int32(threads)) == NERVE_OK)
    ctx = out!
    self.threads = threads
    self.isa = isa
    precondition(nerve_context_set_isa(ctx, nerve_isa(rawValue: UInt32(isa.rawValue))) == NERVE_OK)
  }

  deinit { nerve_context_free(ctx) }

  /// Fails the test with the context's message if `status` is not OK.
  func ok(_ status: nerve_status, _ what: String = "", sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(
      status == NERVE_OK, "\(what): \(String(cString: nerve_context_last_error(ctx)))",
      sourceLocation: sourceLocation)
  }

  var label: String { "\(threads) thread(s), \(isa)" }

  /// Every instruction set this CPU supports, each at 1, 2 and 3 threads.
  static var configurations: [(threads: Int, isa: InstructionSet)] {
    let best = InstructionSet.best
    return InstructionSet.allCases.filter { $0.rawValue <= best.rawValue }.flatMap { isa in
      [1, 2, 3].map { (threads: $0, isa: isa) }
    }
  }
}

/// Deterministic pseudo-random floats in [low, high).
func randomFloats(_ count: Int, seed: UInt64, low: Float = -1, high: Float = 1) -> [Float] {
  var g = SeededGenerator(seed: seed)
  return (0..<count).map { _ in low + (high - low) * Float(g.nextUnit()) }
}

/// One-hot rows for labels.
func oneHot(_ labels: [Int], classes: Int) -> [Float] {
  var t = [Float](repeating: 0, count: labels.count * classes)
  for (i, l) in labels.enumerated() { t[i * classes + l] = 1 }
  return t
}

/// Checks |actual - expected| <= atol + rtol * |expected| element-wise; on failure records the
/// largest difference and the first few mismatches.
func expectClose(
  _ actual: [Float], _ expected: [Double], rtol: Double = 1e-5, atol: Double = 1e-6,
  _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) {
  guard actual.count == expected.count else {
    Issue.record("\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
    return
  }
  var worst = 0.0, worstIndex = -1
  var mismatches: [String] = []
  for i in actual.indices {
    let d = abs(Double(actual[i]) - expected[i])
    let bad = !(d <= atol + rtol * abs(expected[i]))
    if d > worst || (d.isNaN && worstIndex < 0) { worst = d; worstIndex = i }
    if bad && mismatches.count < 5 { mismatches.append("[\(i)] \(actual[i]) vs \(expected[i])") }
  }
  if !mismatches.isEmpty {
    Issue.record(
      "\(what): largest difference \(worst) at [\(worstIndex)] (rtol \(rtol), atol \(atol)); first mismatches: \(mismatches.joined(separator: ", "))",
      sourceLocation: sourceLocation)
  }
}

func expectClose(
  _ actual: Double, _ expected: Double, rtol: Double = 1e-6, atol: Double = 1e-9, _ what: String,
  sourceLocation: SourceLocation = #_sourceLocation
) {
  #expect(
    abs(actual - expected) <= atol + rtol * abs(expected), "\(what): \(actual) vs \(expected)",
    sourceLocation: sourceLocation)
}

func doubles(_ x: [Float]) -> [Double] { x.map(Double.init) }

/// Bitwise equality of float arrays.
func bitwiseEqual(_ a: [Float], _ b: [Float]) -> Bool {
  a.count == b.count && zip(a, b).allSatisfy { $0.bitPattern == $1.bitPattern }
}

/// Expects `actual` to hold `expected`'s bits; on failure records how many elements differ and
/// the first, instead of the whole arrays.
func expectSameBits(
  _ actual: [Float], _ expected: [Float], _ what: String, sourceLocation: SourceLocation = #_sourceLocation
) {
  guard actual.count == expected.count else {
    Issue.record("\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
    return
  }
  let differ = actual.indices.filter { actual[$0].bitPattern != expected[$0].bitPattern }
  if let first = differ.first {
    Issue.record(
      "\(what): \(differ.count) of \(actual.count) values differ, first [\(first)] \(actual[first]) vs \(expected[first])",
      sourceLocation: sourceLocation)
  }
}
