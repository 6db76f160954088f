// Dense forward and backward against the Double reference, on every instruction set at 1, 2
// and 3 threads, and bit-identical across thread counts.
import CNerve
import Nerve
import NerveReference
import Testing

struct DenseShape: CustomStringConvertible, Sendable {
  let n: Int, i: Int, o: Int
  var description: String { "N\(n) I\(i) O\(o)" }
}

/// Batch 1, sizes off the vector width, both weight-gradient strategies (few and many rows),
/// wide and skinny outputs; one panel of outputs over long inputs, where sparse rows go over
/// their own non-zero inputs, with more than one block of the reduction (1,024 and 2,048);
/// several panels over two blocks of the reduction, each tile continuing from C; 64 rows and
/// more over several panels, where each block of B is copied before the tiles take it (two
/// blocks of the reduction, a partial last panel, and a chunk of 128 rows then one of 2).
let denseShapes: [DenseShape] = [
  .init(n: 1, i: 1, o: 1), .init(n: 1, i: 7, o: 5), .init(n: 1, i: 784, o: 300),
  .init(n: 2, i: 3, o: 33), .init(n: 3, i: 17, o: 16), .init(n: 5, i: 64, o: 10),
  .init(n: 13, i: 31, o: 47), .init(n: 32, i: 129, o: 100), .init(n: 65, i: 20, o: 30),
  .init(n: 203, i: 37, o: 29), .init(n: 257, i: 9, o: 65), .init(n: 100, i: 300, o: 10),
  .init(n: 70, i: 50, o: 100), .init(n: 100, i: 784, o: 300), .init(n: 67, i: 1100, o: 32),
  .init(n: 70, i: 2100, o: 17), .init(n: 40, i: 1500, o: 70), .init(n: 130, i: 1100, o: 70),
  // The input gradient with the batch's rows in the lanes (gemm.c's nn_lanes): one vector of
  // rows, and four with the last part full, each with a last tile of columns cut short.
  .init(n: 16, i: 45, o: 40), .init(n: 57, i: 77, o: 33),
  // AVX2's (avx2_nn_lanes, past 64 outputs): two vectors of 8 rows (5 columns a block), three
  // with the last part full (3), five (2), six, seven and eight (1 each); the blocks of 5, 3
  // and 2 columns with a last one cut short.
  .init(n: 16, i: 33, o: 80), .init(n: 20, i: 47, o: 90), .init(n: 40, i: 33, o: 70), .init(n: 45, i: 20, o: 66),
  .init(n: 50, i: 20, o: 70), .init(n: 64, i: 30, o: 65),
  // Few inputs and outputs over many rows, which two threads take by halves of the rows (dense.c's
  // halves_member): halves of 500 and 501 rows, and a full panel of inputs with 12 outputs.
  .init(n: 1001, i: 30, o: 10), .init(n: 600, i: 32, o: 12),
  // Between 64 and 512 rows over 8 blocks of columns or more, where AVX2's grid takes the rows
  // in as few blocks as keep 256 (gemm.c's blas_block_rows): two of 150 rows, nine of columns
  // (the last 8 wide), three blocks of the reduction.
  .init(n: 300, i: 600, o: 520),
]

/// An output gradient, inputs and weights that show a sum's order to the bit: negative zeros and
/// tiny values in the gradient, weights whose products with them underflow (seeds seed, + 1, + 2).
func orderProbe(rows: Int, inputs I: Int, outputs O: Int, seed: UInt64) -> (dy: [Float], x: [Float], w: [Float]) {
  var dy = randomFloats(rows * O, seed: seed)
  for at in stride(from: 0, to: dy.count, by: 7) { dy[at] = -0.0 }
  for at in stride(from: 3, to: dy.count, by: 11) { dy[at] = 1e-30 }
  var w = randomFloats(I * O, seed: seed + 2)
  for at in stride(from: 1, to: w.count, by: 5) { w[at] = -1e-20 }
  return (dy, randomFloats(rows * I, seed: seed + 1), w)
}

/// Inputs with about 70% exact zeros in runs, like MNIST's background, so the kernels' zero
/// skipping is exercised (whole zero columns included).
func sparseInputs(_ n: Int, _ i: Int, seed: UInt64) -> [Float] {
  var x = randomFloats(n * i, seed: seed)
  var g = SeededGenerator(seed: seed ^ 0xABCD)
  for r in 0..<n {
    for k in 0..<i where k < i / 4 || k > 3 * i / 4 || g.nextUnit() < 0.4 { x[r * i + k] = 0 }
  }
  return x
}

@Suite("Dense kernel")
struct DenseKernelTests {
  static let configurations = Kernels.configurations.map { "\($0.threads)|\($0.isa.rawValue)" }

  static func kernels(_ key: String) -> Kernels {
    let parts = key.split(separator: "|").map { Int($0)! }
    return Kernels(threads: parts[0], isa: InstructionSet(rawValue: parts[1])!)
  }

  @Test("forward matches the reference", arguments: configurations, denseShapes)
  func forward(_ key: String, _ s: DenseShape) {
    forward(key, s, sparse: false)
    forward(key, s, sparse: true)
  }

  func forward(_ key: String, _ s: DenseShape, sparse: Bool) {
    let k = Self.kernels(key)
    let x = sparse ? sparseInputs(s.n, s.i, seed: 1) : randomFloats(s.n * s.i, seed: 1)
    let w = randomFloats(s.i * s.o, seed: 2)
    let b = randomFloats(s.o, seed: 3)
    var y = [Float](repeating: .nan, count: s.n * s.o)
    k.ok(nerve_dense_forward(k.ctx, &y, x, w, b, Int64(s.n), Int64(s.i), Int64(s.o)), "forward")
    let ref = Reference.denseForward(x: doubles(x), w: doubles(w), b: doubles(b), n: s.n, i: s.i, o: s.o)
    expectClose(y, ref, atol: 1e-5 * Double(s.i).squareRoot(), "forward \(s) \(k.label)")
    // Without bias.
    k.ok(nerve_dense_forward(k.ctx, &y, x, w, nil, Int64(s.n), Int64(s.i), Int64(s.o)), "no bias")
    let refNoBias = Reference.denseForward(x: doubles(x), w: doubles(w), b: nil, n: s.n, i: s.i, o: s.o)
    expectClose(y, refNoBias, atol: 1e-5 * Double(s.i).squareRoot(), "forward without bias \(s) \(k.label)")
  }

  @Test("backward matches the reference; parameter gradients accumulate", arguments: configurations, denseShapes)
  func backward(_ key: String, _ s: DenseShape) {
    backward(key, s, sparse: false)
    backward(key, s, sparse: true)
  }

  func backward(_ key: String, _ s: DenseShape, sparse: Bool) {
    let k = Self.kernels(key)
    let x = sparse ? sparseInputs(s.n, s.i, seed: 4) : randomFloats(s.n * s.i, seed: 4)
    let w = randomFloats(s.i * s.o, seed: 5)
    let dy = randomFloats(s.n * s.o, seed: 6)
    let dw0 = randomFloats(s.i * s.o, seed: 7), db0 = randomFloats(s.o, seed: 8)
    var dx = [Float](repeating: .nan, count: s.n * s.i)
    var dw = dw0, db = db0
    k.ok(
      nerve_dense_backward(k.ctx, &dx, &dw, &db, dy, x, w, Int64(s.n), Int64(s.i), Int64(s.o)),
      "backward")
    let ref = Reference.denseBackward(dy: doubles(dy), x: doubles(x), w: doubles(w), n: s.n, i: s.i, o: s.o)
    expectClose(dx, ref.dx, atol: 1e-5 * Double(s.o).squareRoot(), "input gradient \(s) \(k.label)")
    expectClose(dw, zip(dw0, ref.dw).map { Double($0) + $1 }, atol: 1e-5 * Double(s.n).squareRoot(), "weight gradient \(s) \(k.label)")
    expectClose(db, zip(db0, ref.db).map { Double($0) + $1 }, atol: 1e-5 * Double(s.n).squareRoot(), "bias gradient \(s) \(k.label)")
  }

  /// AVX2's input gradient with the batch's rows in the lanes (gemm.c's avx2_nn_lanes) takes
  /// AVX-512's chains (nn_lanes): the same bits, negative zeros, underflowing products and units
  /// silent over the whole batch (skipped by both) included. Only where the CPU has both.
  @Test(
    "AVX2's and AVX-512's input gradients with the batch's rows in the lanes give the same bits",
    .enabled(if: InstructionSet.best == .avx512, "needs a CPU with AVX-512 as well as AVX2"),
    arguments: [1, 2])
  func lanesAcrossInstructionSets(_ threads: Int) {
    for s in [DenseShape(n: 32, i: 129, o: 100), .init(n: 20, i: 47, o: 90), .init(n: 64, i: 30, o: 65)] {
      var (dy, _, w) = orderProbe(rows: s.n, inputs: s.i, outputs: s.o, seed: 70)
      for o in stride(from: 2, to: s.o, by: 9) { for r in 0..<s.n { dy[r * s.o + o] = 0 } }
      let dx = [InstructionSet.avx2, .avx512].map { isa in
        let k = Kernels(threads: threads, isa: isa)
        var dx = [Float](repeating: .nan, count: s.n * s.i)
        k.ok(nerve_dense_backward(k.ctx, &dx, nil, nil, dy, nil, w, Int64(s.n), Int64(s.i), Int64(s.o)), "backward")
        return dx
      }
      expectSameBits(dx[0], dx[1], "input gradient \(s), \(threads) thread(s): AVX2 against AVX-512")
    }
  }

  @Test("the fused SGD backward equals backward followed by a descent step", arguments: configurations, denseShapes)
  func fusedDescent(_ key: String, _ s: DenseShape) {
    let k = Self.kernels(key)
    let lr: Float = 0.25
    for sparse in [false, true] {
      let x = sparse ? sparseInputs(s.n, s.i, seed: 21) : randomFloats(s.n * s.i, seed: 21)
      let w0 = randomFloats(s.i * s.o, seed: 22), b0 = randomFloats(s.o, seed: 23)
      let dy = randomFloats(s.n * s.o, seed: 24)
      var w = w0, b = b0
      var dx = [Float](repeating: .nan, count: s.n * s.i)
      k.ok(nerve_dense_backward_sgd(k.ctx, &dx, &w, &b, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), lr), "fused")
      let ref = Reference.denseBackward(dy: doubles(dy), x: doubles(x), w: doubles(w0), n: s.n, i: s.i, o: s.o)
      let tol = 1e-5 * Double(s.n).squareRoot()
      expectClose(dx, ref.dx, atol: 1e-5 * Double(s.o).squareRoot(), "input gradient (old weights) \(s) \(k.label)")
      expectClose(w, Reference.sgd(w: doubles(w0), g: ref.dw, lr: Double(lr), decay: 0), atol: tol, "weights after the step \(s) \(k.label)")
      expectClose(b, Reference.sgd(w: doubles(b0), g: ref.db, lr: Double(lr), decay: 0), atol: tol, "bias after the step \(s) \(k.label)")
    }
  }

  @Test("results are bit-identical at 1, 2 and 3 threads", arguments: denseShapes)
  func threadIndependence(_ s: DenseShape) {
    let x = sparseInputs(s.n, s.i, seed: 9), w = randomFloats(s.i * s.o, seed: 10)
    let b = randomFloats(s.o, seed: 11), dy = randomFloats(s.n * s.o, seed: 12)
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      var results: [[Float]] = []
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: isa)
        var y = [Float](repeating: 0, count: s.n * s.o)
        var dx = [Float](repeating: 0, count: s.n * s.i)
        var dw = [Float](repeating: 0, count: s.i * s.o), db = [Float](repeating: 0, count: s.o)
        k.ok(nerve_dense_forward(k.ctx, &y, x, w, b, Int64(s.n), Int64(s.i), Int64(s.o)))
        k.ok(nerve_dense_backward(k.ctx, &dx, &dw, &db, dy, x, w, Int64(s.n), Int64(s.i), Int64(s.o)))
        var wf = w, bf = b
        k.ok(nerve_dense_backward_sgd(k.ctx, nil, &wf, &bf, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.1))
        results.append(y + dx + dw + db + wf + bf)
      }
      #expect(bitwiseEqual(results[0], results[1]) && bitwiseEqual(results[0], results[2]), "\(s) on \(isa)")
    }
  }

  /// AVX-512's stored products take the reduction in blocks (128 steps for chunks of 17 to 32
  /// rows against several panels, 1024 otherwise: gemm.c's nn_block_steps), carrying each
  /// element's sum from block to block: the
  /// forward is still each output's one chain of fused multiply-adds from its bias in the
  /// inputs' order, written out here, for rows at both sizes and a last block of one step.
  @Test("the AVX-512 forward is each output's one chain from its bias, whatever its blocks", arguments: [17, 32, 40])
  func forwardChains(_ rows: Int) {
    guard InstructionSet.best == .avx512 else { return }
    let inputs = 1025, outputs = 70
    let x = randomFloats(rows * inputs, seed: 81).map { $0 == 0 ? 0.5 : $0 }
    let w = randomFloats(inputs * outputs, seed: 82), b = randomFloats(outputs, seed: 83)
    var want = [Float](repeating: 0, count: rows * outputs)
    for m in 0..<rows {
      for o in 0..<outputs {
        var sum = b[o]
        for i in 0..<inputs { sum = sum.addingProduct(x[m * inputs + i], w[i * outputs + o]) }
        want[m * outputs + o] = sum
      }
    }
    for threads in [1, 2, 3] {
      let k = Kernels(threads: threads, isa: .avx512)
      var y = [Float](repeating: .nan, count: rows * outputs)
      k.ok(nerve_dense_forward(k.ctx, &y, x, w, b, Int64(rows), Int64(inputs), Int64(outputs)))
      #expect(bitwiseEqual(y, want), "\(rows) rows, \(threads) thread(s)")
    }
  }

  @Test("the bias gradient's AVX-512 kernel gives the AVX2 loop's bits, with and without a step", arguments: denseShapes)
  func biasKernelBits(_ s: DenseShape) {
    guard InstructionSet.best == .avx512 else { return }
    // 600 rows as well: more than one of the kernel's passes over the rows.
    for n in [s.n, 600] {
      let x = randomFloats(n * s.i, seed: 31), w = randomFloats(s.i * s.o, seed: 32)
      let dy = randomFloats(n * s.o, seed: 33), b0 = randomFloats(s.o, seed: 34)
      var results: [[Float]] = []
      for (threads, isa) in [(1, InstructionSet.avx2), (1, .avx512), (2, .avx512), (3, .avx512)] {
        let k = Kernels(threads: threads, isa: isa)
        var db = b0, bias = b0, weights = w
        k.ok(nerve_dense_backward(k.ctx, nil, nil, &db, dy, x, w, Int64(n), Int64(s.i), Int64(s.o)))
        k.ok(nerve_dense_backward_sgd(k.ctx, nil, &weights, &bias, dy, x, Int64(n), Int64(s.i), Int64(s.o), 0.3))
        results.append(db + bias)
      }
      #expect(results.dropFirst().allSatisfy { bitwiseEqual($0, results[0]) }, "\(s), \(n) rows")
    }
  }

  @Test("optional outputs can be skipped")
  func skippedOutputs() {
    let k = Kernels(threads: 2, isa: .best)
    let x = randomFloats(6, seed: 1), w = randomFloats(6, seed: 2), dy = randomFloats(4, seed: 3)
    var dw = [Float](repeating: 0, count: 6)
    k.ok(nerve_dense_backward(k.ctx, nil, &dw, nil, dy, x, w, 2, 3, 2))
    let ref = Reference.denseBackward(dy: doubles(dy), x: doubles(x), w: doubles(w), n: 2, i: 3, o: 2)
    expectClose(dw, ref.dw, "weight gradient alone")
    var dx = [Float](repeating: 0, count: 6)
    // Only the input gradient: in (x) is not needed.
    k.ok(nerve_dense_backward(k.ctx, &dx, nil, nil, dy, nil, w, 2, 3, 2))
    expectClose(dx, ref.dx, "input gradient alone")
  }

  /// Past 64 rows the weight gradient runs over the batch's rows in order, one chain of fused
  /// multiply-adds an element: dw[i, o] += x[r, i] * dy[r, o], or with the fused step
  /// w[i, o] += x[r, i] * (-lr dy[r, o]), for r in order from the element's old value, the rows
  /// whose input is zero (or -0) skipped. With at most 12 outputs (gemm.c's tn_narrow) the
  /// weights' rows fill the lanes, in panels of 32 taken by thread or, with fewer panels than
  /// threads, each thread its own outputs in every panel.
  /// Written out here in Float, with negative zeros and products that underflow in the output
  /// gradient, inputs with zeros and a first input always zero whose weights start at -0 (they
  /// must stay -0: adding its terms would make them +0), at 1, 2 and 3 threads: one output, 13
  /// inputs (one vector), 30 -> 10 (Lab A's second layer), 45 -> 12 (a whole panel and one of
  /// 13), 70 -> 3 (three panels, a partial last block of 16 rows); then enough rows for teams:
  /// 2,048 and 3,000 rows of 30 -> 10 (the outputs split 5 / 5, and for 3,000 rows at 3
  /// threads 3 / 3 / 4), 1,000 rows of 70 -> 12 (three panels, at 3 threads one each).
  @Test(
    "a weight gradient over many rows is one chain of multiply-adds an element, in the rows' order",
    .enabled(if: InstructionSet.best == .avx512, "the chains are the AVX-512 kernels'"),
    arguments: [
      DenseShape(n: 97, i: 13, o: 1), DenseShape(n: 300, i: 30, o: 10), DenseShape(n: 130, i: 45, o: 12),
      DenseShape(n: 66, i: 70, o: 3), DenseShape(n: 2048, i: 30, o: 10), DenseShape(n: 3000, i: 30, o: 10),
      DenseShape(n: 1000, i: 70, o: 12),
    ])
  func weightGradientChains(_ s: DenseShape) {
    var (dy, x, w0) = orderProbe(rows: s.n, inputs: s.i, outputs: s.o, seed: 71)
    for r in 0..<s.n {
      x[r * s.i] = r % 2 == 0 ? 0 : -0.0
      for k in stride(from: r % 5 + 1, to: s.i, by: 5) { x[r * s.i + k] = 0 }
    }
    for o in 0..<s.o { w0[o] = -0.0 }
    let lr: Float = 0.375
    func chains(from start: [Float], scale: Float) -> [Float] {
      var want = start
      for i in 0..<s.i {
        for o in 0..<s.o {
          for r in 0..<s.n where x[r * s.i + i] != 0 {
            want[i * s.o + o] = want[i * s.o + o].addingProduct(x[r * s.i + i], scale * dy[r * s.o + o])
          }
        }
      }
      return want
    }
    let gradient = chains(from: w0, scale: 1), stepped = chains(from: w0, scale: -lr)
    for threads in [1, 2, 3] {
      let k = Kernels(threads: threads, isa: .avx512)
      var dw = w0, w = w0, b = [Float](repeating: 0, count: s.o)
      k.ok(nerve_dense_backward(k.ctx, nil, &dw, nil, dy, x, nil, Int64(s.n), Int64(s.i), Int64(s.o)))
      k.ok(nerve_dense_backward_sgd(k.ctx, nil, &w, &b, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), lr))
      #expect(bitwiseEqual(dw, gradient), "gradient, \(s), \(threads) thread(s)")
      // With the input gradient too: at 2 threads the larger shapes go by halves of the rows.
      var dx = [Float](repeating: .nan, count: s.n * s.i), dwWithInput = w0
      k.ok(nerve_dense_backward(k.ctx, &dx, &dwWithInput, nil, dy, x, w0, Int64(s.n), Int64(s.i), Int64(s.o)))
      #expect(bitwiseEqual(dwWithInput, gradient), "gradient with the input's, \(s), \(threads) thread(s)")
      #expect(bitwiseEqual(w, stepped), "descent step, \(s), \(threads) thread(s)")
    }
  }

  /// A fused SGD step by rank updates (over 64 rows) on outputs that are not whole vectors works
  /// on a padded copy of the weights, each member copying its own rows in and back; a team
  /// whose context streams (NERVE_STORES_STREAMED, or AUTO with its cores far apart; AVX-512
  /// only) writes them back by streaming stores over the rows as one run, ordinary stores at
  /// its ends (gemm.c's copy_out_streamed, from 17 outputs on). Every way, at any offset, gives
  /// one thread's bits, and nothing past the weights is written: 300 outputs (a run's 16 values
  /// across a row's end), 20 (nearly every vector across one), 13 (too narrow to stream).
  @Test("weights copied back by a team's streaming stores are one thread's bits", arguments: [
    DenseShape(n: 100, i: 90, o: 300), DenseShape(n: 150, i: 200, o: 20), DenseShape(n: 200, i: 300, o: 13),
  ])
  func streamedCopyBack(_ s: DenseShape) {
    let count = s.i * s.o, w0 = randomFloats(count, seed: 17)
    var first: [Float]? = nil, differing: [String] = []
    forEachStoreWay(isa: .best, offsets: [0, 1, 3]) { k, offset, stores in
      let w = alignedBuffer(count, Float.nan)
      defer { nerve_free(w) }
      (w + offset).update(from: w0, count: count)
      var b = randomFloats(s.o, seed: 18), dx = [Float](repeating: .nan, count: s.n * s.i)
      for step in 1...2 {
        let x = sparseInputs(s.n, s.i, seed: UInt64(50 + step)), dy = randomFloats(s.n * s.o, seed: UInt64(60 + step))
        k.ok(
          nerve_dense_backward_sgd(k.ctx, &dx, w + offset, &b, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.05),
          "step \(step) \(s) \(k.label)")
      }
      let around = (0..<offset).map { w[$0] } + (offset + count..<count + 16).map { w[$0] }
      #expect(around.allSatisfy { $0.isNaN }, "nothing written past the weights \(s) \(k.label), offset \(offset)")
      let run = Array(UnsafeBufferPointer(start: w + offset, count: count)) + b + dx
      if let first, !bitwiseEqual(run, first) { differing.append("\(k.label), offset \(offset), \(stores)") }
      if first == nil { first = run }
    }
    #expect(first![0..<count] != w0[...], "the weights were stepped")
    #expect(differing.isEmpty, "\(s): differ from 1 thread: \(differing)")
  }
}

@Suite("Dense backward fused with Adam")
struct FusedAdamKernelTests {
  /// Batches on both sides of the fused path's limit (256 rows), odd widths, batch 1; and 150
  /// rows, past the dot products' limit (64), where the input gradient is one product before
  /// the tiles. The output gradients have a relu's zeros, which that product skips.
  static let shapes: [DenseShape] = [
    .init(n: 1, i: 7, o: 5), .init(n: 32, i: 129, o: 100), .init(n: 13, i: 300, o: 47),
    .init(n: 300, i: 37, o: 29), .init(n: 5, i: 64, o: 1030), .init(n: 150, i: 90, o: 300),
    .init(n: 60, i: 50, o: 40),
  ]

  @Test("matches dense backward followed by Adam steps", arguments: DenseKernelTests.configurations, shapes)
  func matchesReference(_ key: String, _ s: DenseShape) {
    let k = DenseKernelTests.kernels(key)
    // Weight decay coupled (added to the gradient), decoupled (AdamW) and none (the plain step).
    for (coupled, decoupled) in [(Float(0.02), Float(0)), (0, 0.02), (0, 0)] {
      var w = randomFloats(s.i * s.o, seed: 1), b = randomFloats(s.o, seed: 2)
      var wm = [Float](repeating: 0, count: w.count), wv = wm, bm = [Float](repeating: 0, count: s.o), bv = bm
      var rw = doubles(w), rb = doubles(b)
      var rwm = [Double](repeating: 0, count: w.count), rwv = rwm, rbm = [Double](repeating: 0, count: s.o), rbv = rbm
      var dx = [Float](repeating: .nan, count: s.n * s.i)
      for t in 1...3 {
        let x = sparseInputs(s.n, s.i, seed: UInt64(10 + t)), dy = sparseInputs(s.n, s.o, seed: UInt64(20 + t))
        let ref = Reference.denseBackward(dy: doubles(dy), x: doubles(x), w: rw, n: s.n, i: s.i, o: s.o)
        k.ok(nerve_dense_backward_adam(
          k.ctx, &dx, &w, &b, &wm, &wv, &bm, &bv, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.01, 0.9, 0.999, 1e-7,
          coupled, decoupled, Int64(t)), "fused step \(t)")
        expectClose(dx, ref.dx, atol: 1e-5 * Double(s.o).squareRoot(), "input gradient (old weights) \(s) step \(t) \(k.label)")
        (rw, rwm, rwv) = Reference.adam(w: rw, m: rwm, v: rwv, g: ref.dw, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: Double(Float(1e-7)), decay: Double(coupled + decoupled), decoupled: decoupled > 0, step: t)
        (rb, rbm, rbv) = Reference.adam(w: rb, m: rbm, v: rbv, g: ref.db, lr: 0.01, beta1: 0.9, beta2: 0.999, eps: Double(Float(1e-7)), decay: 0, decoupled: false, step: t)
      }
      expectClose(w, rw, rtol: 1e-4, atol: 2e-5, "weights after 3 fused Adam steps \(s) \(k.label) decay \(coupled), \(decoupled)")
      expectClose(b, rb, rtol: 1e-4, atol: 2e-5, "bias after 3 steps \(s)")
      expectClose(wm, rwm, rtol: 1e-4, atol: 1e-6, "first moments \(s)")
    }
  }

  /// A unit silent for the whole batch (its column of dy all zero) has a zero gradient, and
  /// its weights' first moments shrink by beta1 each step: from just above the smallest normal
  /// float they would become subnormal, and on x86-64 are stored as zero instead, by the fused
  /// step as by nerve_adam_step (elsewhere both keep them), the silent units' weights kept.
  @Test("moments that would be subnormal are stored as zero", arguments: DenseKernelTests.configurations, shapes)
  func subnormalMoments(_ key: String, _ s: DenseShape) {
    let k = DenseKernelTests.kernels(key)
    let x = sparseInputs(s.n, s.i, seed: 7)
    var dy = sparseInputs(s.n, s.o, seed: 8)
    for r in 0..<s.n { for o in stride(from: 0, to: s.o, by: 2) { dy[r * s.o + o] = 0 } }  // even units silent
    let w0 = randomFloats(s.i * s.o, seed: 9), b0 = randomFloats(s.o, seed: 10)
    let tiny = [Float](repeating: 1.2e-38, count: w0.count), small = [Float](repeating: 1e-4, count: w0.count)
    var w = w0, b = b0, wm = tiny, wv = small, bm = Array(tiny[..<s.o]), bv = Array(small[..<s.o])
    k.ok(nerve_dense_backward_adam(
      k.ctx, nil, &w, &b, &wm, &wv, &bm, &bv, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.01, 0.9, 0.999, 1e-7, 0, 0, 3))
    // The same step in two calls: the gradient, then nerve_adam_step.
    var gw = [Float](repeating: 0, count: w0.count), gb = [Float](repeating: 0, count: s.o)
    k.ok(nerve_dense_backward(k.ctx, nil, &gw, &gb, dy, x, nil, Int64(s.n), Int64(s.i), Int64(s.o)))
    var rw = w0, rm = tiny, rv = small, rb = b0, rbm = Array(tiny[..<s.o]), rbv = Array(small[..<s.o])
    k.ok(nerve_adam_step(k.ctx, &rw, &rm, &rv, gw, Int64(w0.count), 0.01, 0.9, 0.999, 1e-7, 0, 0, 3))
    k.ok(nerve_adam_step(k.ctx, &rb, &rbm, &rbv, gb, Int64(s.o), 0.01, 0.9, 0.999, 1e-7, 0, 0, 3))
    expectClose(w, doubles(rw), rtol: 1e-5, atol: 1e-7, "fused and separate steps' weights, \(s) \(k.label)")
    expectClose(b, doubles(rb), rtol: 1e-5, atol: 1e-7, "the bias's step, \(s) \(k.label)")
    let silent = (0..<w0.count).filter { $0 % s.o % 2 == 0 }  // [inputs, units]: unit = index % units
    #expect(silent.allSatisfy { gw[$0] == 0 }, "silent units' gradients, \(s)")
    #expect(silent.allSatisfy { w[$0] == w0[$0] && rw[$0] == w0[$0] }, "silent units' weights kept, \(s) \(k.label)")
    #expect(silent.allSatisfy { wm[$0].bitPattern == rm[$0].bitPattern }, "silent units' moments alike, \(s) \(k.label)")
    #if arch(x86_64)
      #expect(silent.allSatisfy { wm[$0] == 0 }, "silent units' moments stored as zero, \(s) \(k.label)")
      #expect((0..<s.o).filter { $0 % 2 == 0 }.allSatisfy { bm[$0] == 0 && rbm[$0] == 0 }, "silent units' bias moments, \(s)")
    #endif
  }

  /// Where the output gradient is mostly zeros (a relu's; here 70%) over 8 to 64 rows, the
  /// fused step's weight gradient skips them (gemm.c's listed tiles, AVX-512's and AVX2's): the
  /// same chains from zero, so the bits of the gradient stored whole and then stepped, and the
  /// input gradient as nerve_dense_backward_adam_input and nerve_dense_backward write it. With
  /// an infinite input, the tile of weight rows it meets skips nothing (0 * inf is NaN in the
  /// whole product, and so in the fused one) while the others still skip: here in a middle
  /// tile, a last one of one row, and the only one. Every instruction set this CPU has (the
  /// baseline's fused step against its own products).
  @Test("skipping the output gradient's zeros keeps the whole product's bits", arguments: [1, 2, 3], [false, true])
  func skippedZerosKeepBits(_ threads: Int, _ infinite: Bool) {
    // AVX-512's tiles of 128 weight rows: 128, 128 and 44; 128 and 1; 37 alone. AVX2's of 64:
    // four and 44; two and 1; 37 alone. Widths past whole vectors, and both row limits (8 and
    // 64).
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      for s in [DenseShape(n: 32, i: 300, o: 100), .init(n: 8, i: 129, o: 47), .init(n: 64, i: 37, o: 16)] {
        skippedZerosKeepBits(s, Kernels(threads: threads, isa: isa), infinite)
      }
    }
  }

  func skippedZerosKeepBits(_ s: DenseShape, _ k: Kernels, _ infinite: Bool) {
    var x = sparseInputs(s.n, s.i, seed: 50)
    if infinite { x[s.i + min(s.i - 1, 200)] = .infinity }
    let dy = sparseInputs(s.n, s.o, seed: 51)
    let w0 = randomFloats(s.i * s.o, seed: 52), m0 = randomFloats(s.i * s.o, seed: 53, low: -0.01, high: 0.01)
    let v0 = randomFloats(s.i * s.o, seed: 54, low: 0, high: 0.01)
    var w = w0, wm = m0, wv = v0, b = [Float](repeating: 0, count: s.o), bm = b, bv = b
    var dx = [Float](repeating: .nan, count: s.n * s.i), alone = dx
    k.ok(nerve_dense_backward_adam(
      k.ctx, &dx, &w, &b, &wm, &wv, &bm, &bv, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.01, 0.9, 0.999, 1e-7, 0, 0, 2))
    k.ok(nerve_dense_backward_adam_input(k.ctx, &alone, dy, w0, Int64(s.n), Int64(s.i), Int64(s.o)))
    var gw = [Float](repeating: 0, count: w0.count), gb = [Float](repeating: 0, count: s.o)
    var unfused = [Float](repeating: .nan, count: s.n * s.i)
    k.ok(nerve_dense_backward(k.ctx, &unfused, &gw, &gb, dy, x, w0, Int64(s.n), Int64(s.i), Int64(s.o)))
    var rw = w0, rm = m0, rv = v0
    k.ok(nerve_adam_step(k.ctx, &rw, &rm, &rv, gw, Int64(w0.count), 0.01, 0.9, 0.999, 1e-7, 0, 0, 2))
    let label = "\(s), \(k.label), \(infinite ? "an infinite input" : "finite inputs")"
    expectSameBits(w, rw, "weights, \(label)")
    expectSameBits(wm, rm, "first moments, \(label)")
    expectSameBits(wv, rv, "second moments, \(label)")
    expectSameBits(dx, alone, "input gradient, \(label)")
    expectSameBits(dx, unfused, "input gradient against the unfused backward's, \(label)")
    #expect(w.contains { $0.isNaN } == infinite, "NaN weights, \(label)")
  }

  /// A product under the smallest subnormal rounds to -0, and a chain at -0 turns to +0 when it
  /// adds a zero's product: a listed column whose sum ends at -0 is summed again over every row
  /// (gemm.c's whole_chain). Seen through a first moment at -0, which a -0 gradient keeps and a
  /// +0 one turns to +0.
  @Test("a weight gradient that ends at -0 keeps the whole product's bits", arguments: [1, 2])
  func negativeZeroGradient(_ threads: Int) {
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      negativeZeroGradient(Kernels(threads: threads, isa: isa))
    }
  }

  func negativeZeroGradient(_ k: Kernels) {
    let s = DenseShape(n: 8, i: 20, o: 17)
    var x = randomFloats(s.n * s.i, seed: 60), dy = sparseInputs(s.n, s.o, seed: 61)
    // Output 5's gradient: -1e-30 in row 0 alone, against input 3's 1e-30 there (a product of
    // -1e-60: -0) and 0.5 in row 1 (whose zero product, +0, turns the whole chain's sum to +0).
    for r in 0..<s.n { dy[r * s.o + 5] = r == 0 ? -1e-30 : 0 }
    x[3] = 1e-30
    x[s.i + 3] = 0.5
    let w0 = randomFloats(s.i * s.o, seed: 62), m0 = [Float](repeating: -0.0, count: w0.count)
    let v0 = randomFloats(s.i * s.o, seed: 63, low: 0, high: 0.01)
    var w = w0, wm = m0, wv = v0, b = [Float](repeating: 0, count: s.o), bm = b, bv = b
    k.ok(nerve_dense_backward_adam(
      k.ctx, nil, &w, &b, &wm, &wv, &bm, &bv, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.01, 0.9, 0.999, 1e-7, 0, 0, 2))
    var gw = [Float](repeating: 0, count: w0.count), gb = [Float](repeating: 0, count: s.o)
    k.ok(nerve_dense_backward(k.ctx, nil, &gw, &gb, dy, x, nil, Int64(s.n), Int64(s.i), Int64(s.o)))
    #expect(gw[3 * s.o + 5].bitPattern == Float(0).bitPattern, "the whole product's sum is +0")
    var rw = w0, rm = m0, rv = v0
    k.ok(nerve_adam_step(k.ctx, &rw, &rm, &rv, gw, Int64(w0.count), 0.01, 0.9, 0.999, 1e-7, 0, 0, 2))
    expectSameBits(wm, rm, "first moments, \(k.label)")
    expectSameBits(w, rw, "weights, \(k.label)")
  }

  /// AVX2's stored products leave out the terms of zero inputs by tiles (the columns where none
  /// of a tile's rows is non-zero, the rows where none of a tile's columns is), yet give the
  /// chains over every step: written out here in Float, each element from the bias (forward)
  /// or the old gradient, every input in order. Inputs 85% zero, with whole zero rows and
  /// columns. Output 0 is where leaving out terms would show: a -0 start and -0 products where
  /// inputs are not zero, so a listed sum ends -0 while the zero inputs' terms (x 1) make the
  /// whole chain +0. Then (a second run, as an infinity turns the lists off around it, without
  /// the -0 probe) output 1 has infinite weights (forward) or gradients (backward) only where the
  /// inputs are zero: the whole chain is NaN. At 1, 2 and 3 threads, on the rows from 0 and from
  /// 3 (other tiles). 37 outputs take two whole panels of 16, which few rows read in place, and a
  /// narrow one, copied. It fails with the -0 check or either finiteness check left out.
  @Test(
    "AVX2's zero-skipping products give every step's chains (-0 sums and infinities included)",
    .enabled(if: InstructionSet.best.rawValue >= InstructionSet.avx2.rawValue, "AVX2's kernels"),
    arguments: [DenseShape(n: 40, i: 64, o: 13), DenseShape(n: 40, i: 64, o: 37), DenseShape(n: 70, i: 300, o: 5)],
    [false, true])
  func avx2ZeroSkipping(_ s: DenseShape, _ infinities: Bool) {
    var g = SeededGenerator(seed: 91)
    var x = [Float](repeating: 0, count: s.n * s.i)
    for r in 0..<s.n where r % 9 != 4 {
      for k in 4..<(s.i - 4) where g.nextUnit() < 0.15 { x[r * s.i + k] = Float(g.nextUnit()) + 0.25 }
    }
    func columnZero(_ k: Int) -> Bool { (0..<s.n).allSatisfy { x[$0 * s.i + k] == 0 } }
    func rowZero(_ r: Int) -> Bool { (0..<s.i).allSatisfy { x[r * s.i + $0] == 0 } }
    var w = randomFloats(s.i * s.o, seed: 92), b = randomFloats(s.o, seed: 93)
    var dy = randomFloats(s.n * s.o, seed: 94), dw0 = randomFloats(s.i * s.o, seed: 95)
    // The -0 probe only in the finite run: a tile whose listed sum ends -0 runs every step
    // again, which would hide a left-out finiteness check.
    if !infinities { b[0] = -0.0 }
    for k in 0..<s.i {
      if infinities {
        w[k * s.o + 1] = columnZero(k) ? .infinity : w[k * s.o + 1]
      } else {
        w[k * s.o] = columnZero(k) ? 1 : -0.0
        dw0[k * s.o] = -0.0
      }
    }
    for r in 0..<s.n {
      if infinities {
        dy[r * s.o + 1] = rowZero(r) ? .infinity : dy[r * s.o + 1]
      } else {
        dy[r * s.o] = rowZero(r) ? 1 : -0.0
      }
    }
    var forward = [Float](repeating: 0, count: s.n * s.o), gradient = dw0
    for r in 0..<s.n {
      for o in 0..<s.o {
        var c = b[o]
        for k in 0..<s.i { c = c.addingProduct(x[r * s.i + k], w[k * s.o + o]) }
        forward[r * s.o + o] = c
      }
    }
    for r in 0..<s.n {
      for k in 0..<s.i {
        for o in 0..<s.o { gradient[k * s.o + o] = gradient[k * s.o + o].addingProduct(x[r * s.i + k], dy[r * s.o + o]) }
      }
    }
    #expect((infinities || forward[0].bitPattern == Float(0).bitPattern) && forward[1].isNaN == infinities,
            "the probe's own outputs")
    #expect((infinities || gradient[4 * s.o].bitPattern == Float(0).bitPattern)
            && gradient[4 * s.o + 1].isNaN == infinities, "the probe's own gradient")
    /// NaNs compared as NaN (their payload is the hardware's); everything else bit for bit.
    func same(_ a: [Float], _ e: [Float]) -> Bool {
      a.count == e.count && zip(a, e).allSatisfy { $0.isNaN ? $1.isNaN : $0.bitPattern == $1.bitPattern }
    }
    for threads in [1, 2, 3] {
      let k = Kernels(threads: threads, isa: .avx2)
      for first in [0, 3] {
        let n = s.n - first, rows = Array(x[(first * s.i)...])
        var y = [Float](repeating: .nan, count: n * s.o)
        k.ok(nerve_dense_forward(k.ctx, &y, rows, w, b, Int64(n), Int64(s.i), Int64(s.o)))
        #expect(same(y, Array(forward[(first * s.o)...])), "forward \(s) \(infinities), rows from \(first), \(threads) thread(s)")
      }
      var dw = dw0
      k.ok(nerve_dense_backward(k.ctx, nil, &dw, nil, dy, x, nil, Int64(s.n), Int64(s.i), Int64(s.o)))
      #expect(same(dw, gradient), "weight gradient \(s) \(infinities), \(threads) thread(s)")
    }
  }

  @Test("bit-identical at 1, 2 and 3 threads", arguments: shapes)
  func threadIndependent(_ s: DenseShape) {
    let x = sparseInputs(s.n, s.i, seed: 3), dy = sparseInputs(s.n, s.o, seed: 4)
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      var runs: [[Float]] = []
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: isa)
        var w = randomFloats(s.i * s.o, seed: 5), b = randomFloats(s.o, seed: 6)
        var wm = [Float](repeating: 0, count: w.count), wv = wm, bm = [Float](repeating: 0, count: s.o), bv = bm
        var dx = [Float](repeating: 0, count: s.n * s.i)
        k.ok(nerve_dense_backward_adam(k.ctx, &dx, &w, &b, &wm, &wv, &bm, &bv, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.01, 0.9, 0.999, 1e-7, 0, 0, 1))
        runs.append(dx + w + b + wm + wv)
      }
      #expect(bitwiseEqual(runs[0], runs[1]) && bitwiseEqual(runs[0], runs[2]), "\(s) on \(isa)")
    }
  }

  /// The fused steps may ask for each next tile's weights and moments ahead of their use (by
  /// the CPU, or as nerve_context_set_fetch_ahead says): that may change the time, never the
  /// bits. Two steps, so that the second meets moments the first wrote; 600 inputs make 5
  /// tiles of 128 weight rows where dy's zeros are listed (its 32 rows), 50 of 12 elsewhere,
  /// shared by 2 threads.
  @Test(
    "fetching ahead or not gives the same bits",
    .enabled(if: InstructionSet.best == .avx512, "only the AVX-512 visitor fetches"),
    arguments: shapes + [.init(n: 32, i: 600, o: 130)])
  func fetchAheadKeepsBits(_ s: DenseShape) {
    var runs: [[Float]] = []
    for fetch in [NERVE_FETCH_OFF, NERVE_FETCH_ON] {
      let k = Kernels(threads: 2, isa: .avx512)
      k.ok(nerve_context_set_fetch_ahead(k.ctx, fetch))
      #expect(nerve_context_fetch_ahead(k.ctx) == fetch)
      var w = randomFloats(s.i * s.o, seed: 7), b = randomFloats(s.o, seed: 8)
      var wm = [Float](repeating: 0, count: w.count), wv = wm, bm = [Float](repeating: 0, count: s.o), bv = bm
      var dx = [Float](repeating: 0, count: s.n * s.i)
      for t in 1...2 {
        let x = sparseInputs(s.n, s.i, seed: UInt64(30 + t)), dy = sparseInputs(s.n, s.o, seed: UInt64(40 + t))
        k.ok(nerve_dense_backward_adam(
          k.ctx, &dx, &w, &b, &wm, &wv, &bm, &bv, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.01, 0.9, 0.999, 1e-7, 0,
          0, Int64(t)))
      }
      runs.append(dx + w + b + wm + wv + bm + bv)
    }
    #expect(bitwiseEqual(runs[0], runs[1]), "\(s)")
  }

  /// A context setting the CPU chooses unless told: AUTO (0), then off (1) and on (2).
  struct CPUChoice: CustomStringConvertible, Sendable {
    let description: String
    let get: @Sendable (OpaquePointer) -> UInt32
    let set: @Sendable (OpaquePointer, UInt32) -> nerve_status
  }
  static let cpuChoices = [
    CPUChoice(
      description: "fetching ahead", get: { nerve_context_fetch_ahead($0).rawValue },
      set: { nerve_context_set_fetch_ahead($0, nerve_fetch(rawValue: $1)) }),
    CPUChoice(
      description: "stores", get: { nerve_context_stores($0).rawValue },
      set: { nerve_context_set_stores($0, nerve_stores(rawValue: $1)) }),
  ]

  @Test("AUTO gives back the CPU's own choice", arguments: cpuChoices)
  func cpuChoiceAuto(_ choice: CPUChoice) {
    let fresh = Kernels(threads: 2, isa: InstructionSet.best), k = Kernels(threads: 2, isa: InstructionSet.best)
    let own = choice.get(fresh.ctx)
    #expect(own == 1 || own == 2, "\(choice): \(own)")
    k.ok(choice.set(k.ctx, 3 - own))
    #expect(choice.get(k.ctx) == 3 - own, "\(choice)")
    k.ok(choice.set(k.ctx, 0))
    #expect(choice.get(k.ctx) == own, "\(choice)")
  }

  /// Up to 16 outputs, the input gradient's dots are taken 16 columns at a time (gemm.c's
  /// short_dots) and must keep the bits of one column at a time with its lanes summed by
  /// _mm512_reduce_add_ps: lane k with k + 8, then + 4, + 2, + 1, the result added to +0.
  /// Written out here in Float; the output gradients are dense (every level of the tree adds
  /// two products) with negative zeros and products that underflow. 37 inputs: two whole
  /// blocks of 16 columns and a part. 16 outputs: each tile's columns just before its step,
  /// where fewer are the whole gradient first; and there nerve_dense_backward's input gradient
  /// still takes one column at a time with the intrinsic itself (16 is not short for it).
  @Test(
    "a classifier's input gradient sums each dot in reduce_add's tree",
    .enabled(if: InstructionSet.best == .avx512, "the tree is the AVX-512 kernels'"), arguments: [1, 3, 10, 15, 16])
  func shortDots(_ O: Int) {
    let I = 37
    func expected(_ dy: [Float], _ w: [Float], rows: Int) -> [Float] {
      var din = [Float](repeating: 0, count: rows * I)
      for r in 0..<rows {
        for i in 0..<I {
          var lanes = (0..<16).map { $0 < O ? dy[r * O + $0] * w[i * O + $0] : 0 }
          for half in [8, 4, 2, 1] { for k in 0..<half { lanes[k] = lanes[k] + lanes[k + half] } }
          din[r * I + i] = 0 + lanes[0]
        }
      }
      return din
    }
    // From 16 outputs, past 64 rows the input gradient is one product (fused_input_method).
    for rows in O < 16 ? [1, 32, 100] : [1, 32] {
      let (dy, x, w0) = orderProbe(rows: rows, inputs: I, outputs: O, seed: 51)
      let want = expected(dy, w0, rows: rows)
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: .avx512)
        var w = w0, b = [Float](repeating: 0, count: O), m = w.map { _ in Float(0) }, v = m, bm = b, bv = b
        var din = [Float](repeating: .nan, count: rows * I), alone = din
        k.ok(nerve_dense_backward_adam(
          k.ctx, &din, &w, &b, &m, &v, &bm, &bv, dy, x, Int64(rows), Int64(I), Int64(O), 0.01, 0.9, 0.999, 1e-7, 0, 0, 1))
        k.ok(nerve_dense_backward_adam_input(k.ctx, &alone, dy, w0, Int64(rows), Int64(I), Int64(O)))
        #expect(bitwiseEqual(din, want), "fused, \(rows) rows, \(O) outputs, \(threads) thread(s)")
        #expect(bitwiseEqual(alone, want), "alone, \(rows) rows, \(O) outputs, \(threads) thread(s)")
        if O == 16 {
          var byColumn = [Float](repeating: .nan, count: rows * I)
          k.ok(nerve_dense_backward(k.ctx, &byColumn, nil, nil, dy, nil, w0, Int64(rows), Int64(I), Int64(O)))
          #expect(bitwiseEqual(byColumn, want), "one column at a time, \(rows) rows, \(threads) thread(s)")
        }
      }
    }
  }

  /// From 16 rows of the batch and past 16 outputs, the input gradient takes the rows in the
  /// lanes (gemm.c's nn_lanes): each element is one chain of fused multiply-adds over the
  /// outputs in order from zero, added to +0, whichever path computes it (fused, alone, or
  /// nerve_dense_backward's product) and however many threads. Written out here in Float, with
  /// negative zeros and products that underflow; 29 inputs: tiles of 12 or 6 columns and a part,
  /// and 33 outputs: two blocks of 16 and one more. The lanes skip outputs whose gradient is
  /// zero in every row (a relu's silent units, nerve__nt_packed), which must not change a bit:
  /// none silent; the first, a run across a block's end, and the last (+0 in some rows and -0
  /// in others, against weights that make -0 products), with output 20 zero in all rows but
  /// the last (live, though only past the first panel's 32 rows when there are 40 or 64); and
  /// all of them. Then a NaN in one row of an otherwise silent output must still reach that
  /// row's sums (the list counts NaN as live), and only that row's.
  @Test(
    "a batch's input gradient is one chain of multiply-adds an element, in the outputs' order",
    .enabled(if: InstructionSet.best == .avx512, "the chains are the AVX-512 kernels'"), arguments: [16, 32, 40, 64])
  func inputGradientChains(_ rows: Int) {
    let (I, O) = (29, 33)
    let (probe, x, w0) = orderProbe(rows: rows, inputs: I, outputs: O, seed: 61)
    func chains(_ dy: [Float]) -> [Float] {
      var want = [Float](repeating: 0, count: rows * I)
      for r in 0..<rows {
        for i in 0..<I {
          var chain: Float = 0
          for k in 0..<O { chain = chain.addingProduct(w0[i * O + k], dy[r * O + k]) }
          want[r * I + i] = 0 + chain
        }
      }
      return want
    }
    /// The three paths' input gradients for dy at `threads`.
    func paths(_ dy: [Float], threads: Int) -> (fused: [Float], alone: [Float], product: [Float]) {
      let k = Kernels(threads: threads, isa: .avx512)
      var w = w0, b = [Float](repeating: 0, count: O), m = w.map { _ in Float(0) }, v = m, bm = b, bv = b
      var fused = [Float](repeating: .nan, count: rows * I), alone = fused, product = fused
      k.ok(nerve_dense_backward_adam(
        k.ctx, &fused, &w, &b, &m, &v, &bm, &bv, dy, x, Int64(rows), Int64(I), Int64(O), 0.01, 0.9, 0.999, 1e-7, 0, 0, 1))
      k.ok(nerve_dense_backward_adam_input(k.ctx, &alone, dy, w0, Int64(rows), Int64(I), Int64(O)))
      k.ok(nerve_dense_backward(k.ctx, &product, nil, nil, dy, nil, w0, Int64(rows), Int64(I), Int64(O)))
      return (fused, alone, product)
    }
    for silent in [[], [0, 15, 16, 17, 20, 32], Array(0..<O)] {
      var dy = probe
      for r in 0..<rows { for k in silent { dy[r * O + k] = r % 3 == 0 ? -0.0 : 0 } }
      if silent.count == 6 { dy[(rows - 1) * O + 20] = 0.75 }
      let want = chains(dy)
      for threads in [1, 2, 3] {
        let (fused, alone, product) = paths(dy, threads: threads)
        let label = "\(rows) rows, \(silent.count) silent outputs, \(threads) thread(s)"
        #expect(bitwiseEqual(fused, want), "fused, \(label)")
        #expect(bitwiseEqual(alone, want), "alone, \(label)")
        #expect(bitwiseEqual(product, want), "product, \(label)")
      }
    }
    // Output 7 silent but for a NaN in the last row: that row's sums are NaN, the others'
    // the chains of the finite rows.
    var dy = probe
    for r in 0..<rows { dy[r * O + 7] = r == rows - 1 ? .nan : 0 }
    let want = chains(dy)
    for threads in [1, 2, 3] {
      let got = paths(dy, threads: threads)
      for (name, din) in [("fused", got.fused), ("alone", got.alone), ("product", got.product)] {
        let last = (rows - 1) * I
        let nanRow = din[last...].allSatisfy { $0.isNaN }
        #expect(nanRow, "\(name): the NaN row's sums, \(rows) rows, \(threads) thread(s)")
        #expect(bitwiseEqual(Array(din[..<last]), Array(want[..<last])), "\(name): the other rows, \(rows) rows, \(threads) thread(s)")
      }
    }
  }

  /// A team steps the weights in a row buffer and streams them back where every row starts at
  /// a 64-byte boundary (outputs a multiple of 16, the weight aligned; dense.c's
  /// streams_weights; with AVX-512) and its context streams (nerve_context_set_stores), and
  /// stores them as one thread does 4 bytes off a boundary or with cached stores. All give one
  /// thread's bits, over two steps, with weight decay coupled, decoupled and none. 784 outputs:
  /// three runs of the row buffer's 256 and a last of 16. 1,500 x 1,008 is past the 16 MB of
  /// weights and moments up to which a team streams wherever its cores are: past it only
  /// NERVE_STORES_STREAMED (or, under AUTO, cores found far apart) streams.
  @Test("weights streamed back by a team are one thread's bits", arguments: [
    DenseShape(n: 150, i: 90, o: 256), DenseShape(n: 32, i: 129, o: 784), DenseShape(n: 8, i: 1500, o: 1008),
  ])
  func streamedWeights(_ s: DenseShape) {
    let count = s.i * s.o
    for (coupled, decoupled) in [(Float(0.02), Float(0)), (0, 0.02), (0, 0)] {
      var first: [Float]? = nil, differing: [String] = []
      forEachStoreWay(isa: .best) { k, offset, stores in
        let w0 = randomFloats(count, seed: 7)
        let w = alignedBuffer(count, Float.nan), wm = alignedBuffer(count, Float.nan)
        let wv = alignedBuffer(count, Float.nan)
        defer { for p in [w, wm, wv] { nerve_free(p) } }
        (w + offset).update(from: w0, count: count)
        (wm + offset).update(repeating: 0, count: count)
        (wv + offset).update(repeating: 0, count: count)
        var b = randomFloats(s.o, seed: 8), bm = [Float](repeating: 0, count: s.o), bv = bm
        var dx = [Float](repeating: .nan, count: s.n * s.i)
        for step in 1...2 {
          let x = sparseInputs(s.n, s.i, seed: UInt64(30 + step)), dy = sparseInputs(s.n, s.o, seed: UInt64(40 + step))
          k.ok(nerve_dense_backward_adam(
            k.ctx, &dx, w + offset, &b, wm + offset, wv + offset, &bm, &bv, dy, x, Int64(s.n), Int64(s.i), Int64(s.o), 0.01, 0.9,
            0.999, 1e-7, coupled, decoupled, Int64(step)), "step \(step) \(s) \(k.label)")
        }
        let stepped = [w, wm, wv].flatMap { (p: UnsafeMutablePointer<Float>) in Array(UnsafeBufferPointer(start: p + offset, count: count)) }
        let run = stepped + b + dx
        // Each run against the first as it ends: the largest shape's 27 runs would hold 490 MB.
        if let first, !bitwiseEqual(run, first) { differing.append("\(k.label), offset \(offset), \(stores)") }
        if first == nil { first = run }
      }
      #expect(first![0..<count] != randomFloats(count, seed: 7)[...], "the weights were stepped")
      #expect(
        differing.isEmpty,
        "\(s), decay \(coupled), \(decoupled): differ from 1 thread: \(differing)")
    }
  }
}
