// A batch split into parts (the ranks of data-parallel training) gets, part by part, exactly the
// bytes one call on the whole batch gets: the kernels' side of the byte identity across ranks.
import CNerve
import Nerve
import Testing

@Suite("Kernels on a batch split into parts")
struct SplitBatchKernelTests {
  /// Row ranges of `rows` split into `parts`, as ranks take them.
  static func parts(_ rows: Int, _ parts: Int) -> [Range<Int>] {
    (0..<parts).map { (rows * $0 / parts)..<(rows * ($0 + 1) / parts) }
  }

  @Test("dropout from a first index draws the whole array's mask", arguments: [1, 2, 3])
  func dropoutAt(_ threads: Int) {
    let k = Kernels(threads: threads, isa: .best)
    let width = 37, rows = 101, n = rows * width
    let x = randomFloats(n, seed: 5)
    var whole = [Float](repeating: 0, count: n), wholeMask = whole
    k.ok(nerve_dropout_forward(k.ctx, &whole, &wholeMask, x, Int64(n), 0.5, 99))
    var split = [Float](repeating: .nan, count: n), splitMask = split
    for part in Self.parts(rows, 3) {
      let at = part.lowerBound * width, count = part.count * width
      split.withUnsafeMutableBufferPointer { y in
        splitMask.withUnsafeMutableBufferPointer { m in
          k.ok(
            nerve_dropout_forward_at(
              k.ctx, y.baseAddress! + at, m.baseAddress! + at, Array(x[at..<(at + count)]), Int64(count), 0.5, 99,
              Int64(at)))
        }
      }
    }
    #expect(split == whole && splitMask == wholeMask)
    var y = [Float](repeating: 0, count: 4), m = y
    #expect(nerve_dropout_forward_at(k.ctx, &y, &m, x, 4, 0.5, 1, -1) == NERVE_ERROR_BAD_SIZE)
    #expect(nerve_dropout_forward_at(k.ctx, &y, &m, x, 4, 0.5, 1, Int64.max - 2) == NERVE_ERROR_BAD_SIZE)
  }

  /// Dense backward over the parts of a batch, each part's weight gradient continuing the sum
  /// of the parts before it, with the context told the whole batch's size.
  @Test(
    "dense backward in parts: input gradients and chained weight sums equal the whole batch's",
    arguments: [(rows: 100, parts: 2), (rows: 100, parts: 3), (rows: 40, parts: 3), (rows: 300, parts: 2)])
  func denseInParts(_ shape: (rows: Int, parts: Int)) {
    let (rows, I, O) = (shape.rows, 70, 48)
    let x = randomFloats(rows * I, seed: 1), w = randomFloats(I * O, seed: 2), dy = randomFloats(rows * O, seed: 3)
    for threads in [1, 2] {
      let k = Kernels(threads: threads, isa: .best)
      var din = [Float](repeating: 0, count: rows * I), dw = [Float](repeating: 0, count: I * O)
      var db = [Float](repeating: 0, count: O)
      k.ok(nerve_dense_backward(k.ctx, &din, &dw, &db, dy, x, w, Int64(rows), Int64(I), Int64(O)))
      var pdin = [Float](repeating: .nan, count: rows * I), pdw = [Float](repeating: 0, count: I * O)
      var pdb = [Float](repeating: 0, count: O)
      k.ok(nerve_context_set_whole_batch(k.ctx, Int64(rows)))
      for part in Self.parts(rows, shape.parts) {
        let n = part.count
        let px = Array(x[(part.lowerBound * I)..<(part.upperBound * I)])
        let pdy = Array(dy[(part.lowerBound * O)..<(part.upperBound * O)])
        var partDin = [Float](repeating: 0, count: n * I)
        k.ok(nerve_dense_backward(k.ctx, &partDin, &pdw, &pdb, pdy, px, w, Int64(n), Int64(I), Int64(O)))
        pdin.replaceSubrange((part.lowerBound * I)..<(part.upperBound * I), with: partDin)
      }
      k.ok(nerve_context_set_whole_batch(k.ctx, 0))
      #expect(pdin == din, "input gradient, \(threads) thread(s), \(shape)")
      #expect(pdw == dw, "weight gradient, \(threads) thread(s), \(shape)")
      #expect(pdb == db, "bias gradient, \(threads) thread(s), \(shape)")
    }
  }

  /// A "part" larger than the whole batch the context was told of is computed as a whole batch
  /// of its own: its method (and the scratch the method takes) follow its own rows.
  @Test("a part larger than the whole said is its own whole", arguments: [(said: 16, rows: 100), (said: 20, rows: 40)])
  func partLargerThanWhole(_ shape: (said: Int, rows: Int)) {
    let (rows, I, O) = (shape.rows, 45, 40)
    let x = randomFloats(rows * I, seed: 21), w = randomFloats(I * O, seed: 22), dy = randomFloats(rows * O, seed: 23)
    let k = Kernels(threads: 2, isa: .best)
    var din = [Float](repeating: 0, count: rows * I), dw = [Float](repeating: 0, count: I * O)
    k.ok(nerve_dense_backward(k.ctx, &din, &dw, nil, dy, x, w, Int64(rows), Int64(I), Int64(O)))
    var sdin = [Float](repeating: .nan, count: rows * I), sdw = [Float](repeating: 0, count: I * O)
    var alone = [Float](repeating: .nan, count: rows * I)
    k.ok(nerve_context_set_whole_batch(k.ctx, Int64(shape.said)))
    k.ok(nerve_dense_backward(k.ctx, &sdin, &sdw, nil, dy, x, w, Int64(rows), Int64(I), Int64(O)))
    k.ok(nerve_dense_backward_adam_input(k.ctx, &alone, dy, w, Int64(rows), Int64(I), Int64(O)))
    k.ok(nerve_context_set_whole_batch(k.ctx, 0))
    var whole = [Float](repeating: .nan, count: rows * I)
    k.ok(nerve_dense_backward_adam_input(k.ctx, &whole, dy, w, Int64(rows), Int64(I), Int64(O)))
    #expect(sdin == din && sdw == dw, "nerve_dense_backward, \(shape)")
    #expect(alone == whole, "nerve_dense_backward_adam_input, \(shape)")
  }

  /// 10 outputs, or 65-256 rows: the fused path computes the input gradient whole before
  /// stepping any tile; otherwise each tile's columns before its step (past 256 rows it is
  /// not fused). The output gradients have a relu's zeros, which the 65-256 rows' product skips.
  @Test("the fused Adam backward's input gradient, alone", arguments: [32, 100, 300], [48, 10])
  func adamInput(_ rows: Int, _ O: Int) {
    let I = 70
    let x = randomFloats(rows * I, seed: 11), dy = sparseInputs(rows, O, seed: 12)
    let k = Kernels(threads: 2, isa: .best)
    var w = randomFloats(I * O, seed: 13), b = [Float](repeating: 0, count: O)
    let w0 = w
    var m = [Float](repeating: 0, count: I * O), v = m, bm = b, bv = b
    var din = [Float](repeating: 0, count: rows * I)
    k.ok(
      nerve_dense_backward_adam(
        k.ctx, &din, &w, &b, &m, &v, &bm, &bv, dy, x, Int64(rows), Int64(I), Int64(O), 0.01, 0.9, 0.999, 1e-7, 0, 0, 1))
    var alone = [Float](repeating: .nan, count: rows * I)
    k.ok(nerve_dense_backward_adam_input(k.ctx, &alone, dy, w0, Int64(rows), Int64(I), Int64(O)))
    #expect(alone == din, "\(rows) rows, \(O) outputs")
    // A rank's share of the batch (here under 64 rows of 100): the method of the whole batch.
    var parts = [Float](repeating: .nan, count: rows * I)
    k.ok(nerve_context_set_whole_batch(k.ctx, Int64(rows)))
    for part in Self.parts(rows, 3) {
      var partDin = [Float](repeating: .nan, count: part.count * I)
      let pdy = Array(dy[(part.lowerBound * O)..<(part.upperBound * O)])
      k.ok(nerve_dense_backward_adam_input(k.ctx, &partDin, pdy, w0, Int64(part.count), Int64(I), Int64(O)))
      parts.replaceSubrange((part.lowerBound * I)..<(part.upperBound * I), with: partDin)
    }
    k.ok(nerve_context_set_whole_batch(k.ctx, 0))
    #expect(parts == din, "\(rows) rows in 3 parts, \(O) outputs")
  }
}
