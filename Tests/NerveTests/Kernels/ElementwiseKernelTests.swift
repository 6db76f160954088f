// Activations, softmax, losses, optimizer steps, metrics and reductions against the Double
// reference, on every instruction set at 1, 2 and 3 threads.
import CNerve
import Nerve
import NerveReference
import Testing

/// Lengths around the vector widths, plus one big enough to be split across threads.
let elementCounts = [1, 7, 15, 16, 17, 33, 1000, 70_001]

@Suite("Element-wise kernels")
struct ElementwiseKernelTests {
  static let configurations = DenseKernelTests.configurations

  /// Inputs spanning saturation on both sides, exact zeros and ordinary values.
  static func activationInputs(_ n: Int, seed: UInt64) -> [Float] {
    var x = randomFloats(n, seed: seed, low: -12, high: 12)
    let specials: [Float] = [0, -0.0, 100, -100, 1e-4, -1e-4, 0.5, 88.5, -90]
    for (i, v) in specials.enumerated() where i < n { x[(i * 7919) % n] = v }
    return x
  }

  @Test("activation forward and backward match the reference", arguments: configurations, RefActivation.allCases.map(\.rawValue))
  func activations(_ key: String, _ kindRaw: Int) {
    let k = DenseKernelTests.kernels(key)
    let kind = RefActivation(rawValue: kindRaw)!
    let ckind = nerve_activation(rawValue: UInt32(kindRaw))
    for n in elementCounts {
      let x = Self.activationInputs(n, seed: UInt64(n))
      var y = [Float](repeating: .nan, count: n)
      k.ok(nerve_activation_forward(k.ctx, ckind, &y, x, Int64(n)), "\(kind) forward")
      expectClose(y, Reference.activationForward(kind, doubles(x)), rtol: 4e-6, atol: 1e-6, "\(kind) forward n=\(n) \(k.label)")
      let dy = randomFloats(n, seed: 99)
      var dx = [Float](repeating: .nan, count: n)
      k.ok(nerve_activation_backward(k.ctx, ckind, &dx, dy, x, y, Int64(n)), "\(kind) backward")
      expectClose(dx, Reference.activationBackward(kind, dy: doubles(dy), x: doubles(x)), rtol: 2e-5, atol: 1e-6, "\(kind) backward n=\(n) \(k.label)")
      // In place: out == in for forward, din == dout for backward.
      var inPlace = x
      k.ok(nerve_activation_forward(k.ctx, ckind, &inPlace, inPlace, Int64(n)))
      #expect(bitwiseEqual(inPlace, y), "\(kind) forward in place n=\(n)")
      var grad = dy
      k.ok(nerve_activation_backward(k.ctx, ckind, &grad, grad, x, y, Int64(n)))
      #expect(bitwiseEqual(grad, dx), "\(kind) backward in place n=\(n)")
    }
  }

  @Test("NaN stays NaN through every activation")
  func nanPropagates() {
    let k = Kernels(threads: 1, isa: .best)
    for raw in 1...4 {
      var y: [Float] = [0, 0]
      k.ok(nerve_activation_forward(k.ctx, nerve_activation(rawValue: UInt32(raw)), &y, [.nan, 1], 2))
      #expect(y[0].isNaN, "activation \(raw) turned NaN into \(y[0])")
    }
  }

  static let softmaxShapes: [(Int, Int)] = [(1, 1), (1, 10), (7, 3), (1000, 10), (5, 129), (3000, 17)]

  @Test("softmax forward and backward match the reference", arguments: configurations)
  func softmax(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    for (n, c) in Self.softmaxShapes {
      var x = randomFloats(n * c, seed: UInt64(n * c), low: -20, high: 20)
      if n * c > 2 { x[1] = 80; x[2] = -80 }
      var y = [Float](repeating: .nan, count: n * c)
      k.ok(nerve_softmax_forward(k.ctx, &y, x, Int64(n), Int64(c)))
      let ref = Reference.softmax(doubles(x), n: n, c: c)
      expectClose(y, ref, rtol: 1e-5, atol: 1e-7, "softmax \(n)x\(c) \(k.label)")
      let dy = randomFloats(n * c, seed: 5)
      var dx = [Float](repeating: .nan, count: n * c)
      k.ok(nerve_softmax_backward(k.ctx, &dx, dy, y, Int64(n), Int64(c)))
      expectClose(dx, Reference.softmaxBackward(dy: doubles(dy), y: doubles(y), n: n, c: c), rtol: 1e-4, atol: 1e-6, "softmax backward \(n)x\(c) \(k.label)")
    }
  }

  @Test("the mean squared error's AVX-512 kernel (rows in lanes) gives the AVX2 row loop's bits")
  func mseLanesBits() {
    guard InstructionSet.best == .avx512 else { return }
    // Rows in whole groups of 16 and not (the rest go row by row), across the sum's chunks of
    // 512 rows; columns up to 16 (in lanes) and 17 (the row loop itself).
    for (n, c) in [(1, 10), (16, 10), (37, 10), (1500, 10), (2048, 10), (33, 1), (40, 16), (50, 17), (700, 3)] {
      let out = randomFloats(n * c, seed: 41, low: -2, high: 2), target = randomFloats(n * c, seed: 42)
      var results: [(Double, [Float])] = []
      for (threads, isa) in [(1, InstructionSet.avx2), (1, .avx512), (2, .avx512), (3, .avx512)] {
        let k = Kernels(threads: threads, isa: isa)
        var loss = 0.0, grad = [Float](repeating: .nan, count: n * c), lossOnly = 0.0
        k.ok(nerve_loss_mse(k.ctx, &loss, &grad, out, target, Int64(n), Int64(c), Int64(n + 5)))
        k.ok(nerve_loss_mse(k.ctx, &lossOnly, nil, out, target, Int64(n), Int64(c), Int64(n + 5)))
        #expect(lossOnly.bitPattern == loss.bitPattern, "the loss alone, \(n)x\(c) \(k.label)")
        results.append((loss, grad))
      }
      for (loss, grad) in results.dropFirst() {
        #expect(loss.bitPattern == results[0].0.bitPattern, "loss \(n)x\(c): \(loss) vs \(results[0].0)")
        expectSameBits(grad, results[0].1, "gradient \(n)x\(c)")
      }
    }
  }

  @Test("losses and their gradients match the reference", arguments: configurations)
  func losses(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    for (n, c) in [(1, 1), (1, 10), (9, 3), (1500, 10), (4, 33)] {
      let count = n + 3  // a slice of a bigger batch
      let out = randomFloats(n * c, seed: 1, low: 0, high: 1)
      var g = SeededGenerator(seed: 2)
      let labels = (0..<n).map { _ in Int(g.next() % UInt64(c)) }
      let target = oneHot(labels, classes: c)
      var loss = 0.0
      var grad = [Float](repeating: .nan, count: n * c)

      k.ok(nerve_loss_mse(k.ctx, &loss, &grad, out, target, Int64(n), Int64(c), Int64(count)))
      let mse = Reference.mse(out: doubles(out), target: doubles(target), count: count)
      expectClose(loss, mse.loss, rtol: 1e-5, "mse \(n)x\(c) \(k.label)")
      expectClose(grad, mse.grad, "mse gradient \(n)x\(c) \(k.label)")

      let logits = randomFloats(n * c, seed: 3, low: -30, high: 30)
      // Soft targets exercise the general formula; one-hot the usual case.
      for t in [target, softTargets(n, c)] {
        var probs = [Float](repeating: .nan, count: n * c)
        k.ok(nerve_loss_softmax_cross_entropy(k.ctx, &loss, &grad, &probs, logits, t, Int64(n), Int64(c), Int64(count)))
        let ce = Reference.softmaxCrossEntropy(logits: doubles(logits), target: doubles(t), n: n, c: c, count: count)
        expectClose(loss, ce.loss, rtol: 1e-5, atol: 1e-6, "cross-entropy \(n)x\(c) \(k.label)")
        expectClose(grad, ce.grad, rtol: 1e-4, atol: 1e-7, "cross-entropy gradient \(n)x\(c) \(k.label)")
        expectClose(probs, ce.probs, rtol: 1e-5, atol: 1e-7, "cross-entropy probabilities \(n)x\(c) \(k.label)")
      }

      let p = Reference.softmax(doubles(logits), n: n, c: c).map(Float.init)
      k.ok(nerve_loss_nll(k.ctx, &loss, &grad, p, target, Int64(n), Int64(c), 1e-7, Int64(count)))
      let nll = Reference.nll(probs: doubles(p), target: doubles(target), eps: Double(Float(1e-7)), count: count)
      expectClose(loss, nll.loss, rtol: 1e-5, atol: 1e-6, "nll \(n)x\(c) \(k.label)")
      expectClose(grad, nll.grad, rtol: 1e-5, atol: 1e-6, "nll gradient \(n)x\(c) \(k.label)")
    }
  }

  func softTargets(_ n: Int, _ c: Int) -> [Float] {
    let raw = randomFloats(n * c, seed: 17, low: 0, high: 1)
    var t = raw
    for r in 0..<n {
      let s = raw[(r * c)..<(r * c + c)].reduce(0, +)
      for j in 0..<c { t[r * c + j] = raw[r * c + j] / s }
    }
    return t
  }

  @Test("cross-entropy never takes log(0): extreme logits give a finite loss")
  func crossEntropyExtreme() {
    let k = Kernels(threads: 1, isa: .best)
    var loss = 0.0
    var grad: [Float] = [0, 0]
    k.ok(nerve_loss_softmax_cross_entropy(k.ctx, &loss, &grad, nil, [1000, -1000], [0, 1], 1, 2, 1))
    #expect(loss.isFinite && abs(loss - 2000) < 1e-3, "loss \(loss)")
    #expect(grad == [1, -1])
  }

  @Test("optimizer steps match the reference", arguments: configurations)
  func optimizerSteps(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    for n in elementCounts {
      let w0 = randomFloats(n, seed: 1), g = randomFloats(n, seed: 2), v0 = randomFloats(n, seed: 3)
      var w = w0
      k.ok(nerve_sgd_step(k.ctx, &w, g, Int64(n), 0.3, 0.01))
      expectClose(w, Reference.sgd(w: doubles(w0), g: doubles(g), lr: 0.3, decay: 0.01), "sgd n=\(n) \(k.label)")
      w = w0
      var v = v0
      k.ok(nerve_momentum_step(k.ctx, &w, &v, g, Int64(n), 0.1, 0.9, 0.001))
      let ref = Reference.momentum(w: doubles(w0), v: doubles(v0), g: doubles(g), lr: 0.1, mu: 0.9, decay: 0.001)
      expectClose(w, ref.w, "momentum weights n=\(n) \(k.label)")
      expectClose(v, ref.v, "momentum velocity n=\(n) \(k.label)")
    }
  }

  /// What `nerve bench` divides Lab E's epoch by: sizes just large enough that every thread
  /// takes part (a step's 65,536 parameters a thread, a product's 2^18 multiply-adds), so the
  /// rates are only checked to be rates (positive and finite), not timed.
  @Test("the bench's machine rates are positive and finite", arguments: [1, 2, 3])
  func machineRates(_ threads: Int) throws {
    let context = ComputeContext(threads: threads)
    let rates = [
      try context.adamStepRate(perThread: 1 << 16, steps: 2, runs: 1),
      try context.adamStepBandwidth(floats: threads << 16, runs: 1),
      try context.productRate(size: 128, runs: 1),
    ]
    for rate in rates { #expect(rate.isFinite && rate > 0, "\(rates) at \(threads) threads") }
  }

  @Test("argmax, correct counts and reductions match the reference", arguments: configurations)
  func metrics(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    for (n, c) in [(1, 1), (1, 10), (50, 3), (9000, 10), (40, 16), (40, 17)] {
      var scores = randomFloats(n * c, seed: 4)
      if c > 1 { scores[0] = 0.5; scores[1] = 0.5 }  // a tie: the first wins
      if n >= 40 && c >= 10 {
        // Rows the vector forms must read as the loop does: a NaN first (class 0), NaNs among
        // the scores (never taken), ties at the top (the first: 0.5 and 0.5, -0.0 and 0.0),
        // infinities. At rows 0-7, in the correct count's first 16 rows in lanes, and again at
        // the last 8, which it takes row by row.
        func row(_ r: Int, _ values: [Float]) {
          for k in 0..<c { scores[r * c + k] = k < values.count ? values[k] : -3 }
        }
        for first in [0, n - 8] {
          row(first, [0.5, 0.5])
          row(first + 2, [.nan, 0.9, 3])
          row(first + 3, [-1, .nan, 0.2, .nan, 0.9, 0.9])
          row(first + 4, [-1, -0.0, 0.0, -2])
          row(first + 5, [-.infinity, .infinity, .nan, .infinity])
          row(first + 6, [Float](repeating: .nan, count: c - 1) + [-.infinity])
          row(first + 7, [0.25] + [Float](repeating: .nan, count: c - 1))
        }
      }
      var classes = [Int32](repeating: -1, count: n)
      k.ok(nerve_argmax(k.ctx, &classes, scores, Int64(n), Int64(c)))
      let ref = Reference.argmax(doubles(scores), n: n, c: c)
      #expect(classes.map(Int.init) == ref, "argmax \(n)x\(c) \(k.label)")
      var g = SeededGenerator(seed: 6)
      let labels = (0..<n).map { _ in Int32(g.next() % UInt64(c)) }
      var correct: Int64 = -1
      k.ok(nerve_count_correct(k.ctx, &correct, scores, labels, Int64(n), Int64(c)))
      #expect(Int(correct) == zip(ref, labels).filter { $0 == Int($1) }.count, "correct \(n)x\(c)")
      // Every row's class, by the count: all right with the reference's classes as labels, none
      // with the next class.
      let right = ref.map { Int32($0) }, wrong = ref.map { Int32(($0 + 1) % c) }
      k.ok(nerve_count_correct(k.ctx, &correct, scores, right, Int64(n), Int64(c)))
      #expect(Int(correct) == n, "all correct \(n)x\(c) \(k.label)")
      if c > 1 {
        k.ok(nerve_count_correct(k.ctx, &correct, scores, wrong, Int64(n), Int64(c)))
        #expect(correct == 0, "none correct \(n)x\(c) \(k.label)")
      }
      // A label outside 0 ..< c: refused, naming the first such row, the count left as it was.
      var bad = right
      bad[n - 1] = Int32(c)
      if n > 3 { bad[3] = -1 }
      correct = -7
      #expect(nerve_count_correct(k.ctx, &correct, scores, bad, Int64(n), Int64(c)) == NERVE_ERROR_BAD_ARGUMENT)
      #expect(String(cString: nerve_context_last_error(k.ctx)).contains("at row \(n > 3 ? 3 : n - 1) "), "\(n)x\(c)")
      #expect(correct == -7)
    }
    for n in elementCounts {
      let x = randomFloats(n, seed: 8)
      var s = 0.0
      k.ok(nerve_sum_squares(k.ctx, &s, x, Int64(n)))
      expectClose(s, Reference.sumSquares(doubles(x)), rtol: 1e-5, "sum of squares n=\(n)")
      k.ok(nerve_sum_abs(k.ctx, &s, x, Int64(n)))
      expectClose(s, Reference.sumAbs(doubles(x)), rtol: 1e-5, "sum of |x| n=\(n)")
    }
  }

  @Test("pixels become the floats Swift computes, on every ISA and thread count", arguments: configurations)
  func pixels(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    // Past one thread's grain (2^20), so that two and three threads share the elements.
    for n in [0, 1, 17, 3_000_001] {
      var g = SeededGenerator(seed: 71)
      let bytes = (0..<n).map { _ in UInt8(truncatingIfNeeded: g.next()) }
      for scale: Float in [1.0 / 255, 1, -0.5] {
        var out = [Float](repeating: .nan, count: n)
        k.ok(nerve_pixels_to_floats(k.ctx, &out, bytes, Int64(n), scale), "n=\(n)")
        #expect(out == bytes.map { Float($0) * scale }, "n=\(n) scale \(scale) \(k.label)")
      }
    }
    var out: [Float] = [7]
    #expect(nerve_pixels_to_floats(k.ctx, &out, [1], 1, .infinity) == NERVE_ERROR_BAD_ARGUMENT && out == [7])
  }

  @Test("rows are gathered in the order given, on every ISA and thread count; a bad index changes nothing",
        arguments: configurations)
  func rowsGather(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    // A shuffled batch of MNIST's shape (past one thread's grain, so threads share it), rows
    // repeated, one-float rows, and none.
    for (total, width, count) in [(600, 784, 256), (50, 1, 37), (9, 5, 0), (4, 0, 3)] {
      let data = randomFloats(total * width, seed: 91)
      var g = SeededGenerator(seed: UInt64(total))
      let rows = (0..<count).map { _ in Int64(g.next() % UInt64(total)) }
      var out = [Float](repeating: .nan, count: count * width)
      k.ok(nerve_rows_gather(k.ctx, &out, data, rows, Int64(total), Int64(width), Int64(count)), "\(total)x\(width), \(count) rows")
      let expected = rows.flatMap { r in data[Int(r) * width..<(Int(r) + 1) * width] }
      #expect(bitwiseEqual(out, expected), "\(total)x\(width), \(count) rows \(k.label)")
    }
    var out = [Float](repeating: 7, count: 4)
    for bad: [Int64] in [[0, 2], [-1, 0]] {
      let status = nerve_rows_gather(k.ctx, &out, [1, 2, 3, 4], bad, 2, 2, 2)
      #expect(status == NERVE_ERROR_BAD_ARGUMENT && out == [7, 7, 7, 7], "rows \(bad)")
      #expect(String(cString: nerve_context_last_error(k.ctx)).contains("outside the 2 rows"))
    }
  }

  @Test("every element-wise kernel is bit-identical at 1, 2 and 3 threads")
  func threadIndependence() {
    let n = 70_001, c = 7, rows = n / c
    let x = ElementwiseKernelTests.activationInputs(n, seed: 3), t = oneHot((0..<rows).map { $0 % c }, classes: c)
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      var runs: [[Float]] = []
      var sums: [[Double]] = []
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: isa)
        var out: [Float] = []
        var values: [Double] = []
        for raw in 0...4 {
          var y = [Float](repeating: 0, count: n), dx = y
          k.ok(nerve_activation_forward(k.ctx, nerve_activation(rawValue: UInt32(raw)), &y, x, Int64(n)))
          k.ok(nerve_activation_backward(k.ctx, nerve_activation(rawValue: UInt32(raw)), &dx, x, x, y, Int64(n)))
          out += y + dx
        }
        var loss = 0.0
        var g = [Float](repeating: 0, count: rows * c)
        k.ok(nerve_loss_softmax_cross_entropy(k.ctx, &loss, &g, nil, x, t, Int64(rows), Int64(c), Int64(rows)))
        values.append(loss)
        k.ok(nerve_loss_mse(k.ctx, &loss, &g, x, t, Int64(rows), Int64(c), Int64(rows)))
        values.append(loss)
        var s = 0.0
        k.ok(nerve_sum_squares(k.ctx, &s, x, Int64(n)))
        values.append(s)
        runs.append(out + g)
        sums.append(values)
      }
      #expect(bitwiseEqual(runs[0], runs[1]) && bitwiseEqual(runs[0], runs[2]), "element-wise results on \(isa)")
      #expect(sums[0] == sums[1] && sums[0] == sums[2], "sums on \(isa): \(sums)")
    }
  }
}
