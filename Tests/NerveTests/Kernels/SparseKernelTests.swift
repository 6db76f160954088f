// The dense layer over listed inputs (nerve_sparse): against the Double reference on every
// instruction set at 1, 2 and 3 threads, bit-identical to the dense kernels on the stored rows
// with libnerve's own vector kernels (AVX-512, AVX2), the same bits at any thread count, and refusals that change
// nothing.
import CNerve
import Nerve
import NerveReference
import Testing

/// A listed matrix, freed at the end of the test.
final class Listed {
  let raw: OpaquePointer

  init(_ k: Kernels, _ values: [Float], rows: Int, cols: Int) {
    var out: OpaquePointer?
    k.ok(nerve_sparse_create(k.ctx, &out, values, Int64(rows), Int64(cols)), "create")
    raw = out!
  }

  deinit { nerve_sparse_destroy(raw) }
}

@Suite("Dense kernel over listed inputs")
struct SparseKernelTests {
  /// Rows before and after the slice a call reads, so that `first` is exercised.
  static let before = 3, after = 2

  /// Sparse inputs (as MNIST's) and dense ones (a row's entries then run past one tile's list).
  static func inputs(_ s: DenseShape, sparse: Bool, seed: UInt64) -> [Float] {
    let rows = before + s.n + after
    return sparse ? sparseInputs(rows, s.i, seed: seed) : randomFloats(rows * s.i, seed: seed)
  }

  /// Values rounded to hundredths: at most 201 distinct ones, as images' pixels have few, so
  /// the listing is packed (a palette of values; on AVX-512).
  static func quantized(_ x: [Float]) -> [Float] { x.map { ($0 * 100).rounded() / 100 } }

  /// x's non-zero entries replaced by `count` distinct values in turn: 256 still pack, 257 do
  /// not.
  static func withDistinct(_ x: [Float], _ count: Int) -> [Float] {
    var y = x
    var next = 0
    for e in y.indices where y[e] != 0 {
      y[e] = Float(next % count + 1) / 512
      next += 1
    }
    return y
  }

  /// x's non-zero entries given 150 distinct values in the first 1,024 rows and 150 others
  /// after (rows of `cols` values): each part within the palette, the whole not (the palette
  /// is found in parts of 1,024 rows and merged).
  static func withDistinctHalves(_ x: [Float], cols: Int) -> [Float] {
    var y = x
    var next = 0
    for e in y.indices where y[e] != 0 {
      y[e] = Float(next % 150 + (e / cols < 1024 ? 1 : 151)) / 512
      next += 1
    }
    return y
  }

  /// The rows a call reads, stored.
  static func slice(_ x: [Float], _ s: DenseShape) -> [Float] { Array(x[before * s.i..<(before + s.n) * s.i]) }

  @Test("forward and backward match the reference and, on AVX-512 and AVX2, the dense kernels' bits",
        arguments: DenseKernelTests.configurations, denseShapes)
  func matches(_ key: String, _ s: DenseShape) {
    let k = DenseKernelTests.kernels(key)
    for (sparse, packs) in [(true, false), (false, false), (true, true)] {
      let raw = Self.inputs(s, sparse: sparse, seed: 31)
      let x = packs ? Self.quantized(raw) : raw
      let stored = Self.slice(x, s)
      let listed = Listed(k, x, rows: Self.before + s.n + Self.after, cols: s.i)
      let w = randomFloats(s.i * s.o, seed: 32), b = randomFloats(s.o, seed: 33)
      let dy = randomFloats(s.n * s.o, seed: 34)
      let dw0 = randomFloats(s.i * s.o, seed: 35), db0 = randomFloats(s.o, seed: 36)
      let (n, i, o) = (Int64(s.n), Int64(s.i), Int64(s.o))
      let first = Int64(Self.before)

      var y = [Float](repeating: .nan, count: s.n * s.o)
      k.ok(nerve_dense_forward_sparse(k.ctx, &y, listed.raw, first, w, b, n, i, o), "forward")
      let ref = Reference.denseForward(x: doubles(stored), w: doubles(w), b: doubles(b), n: s.n, i: s.i, o: s.o)
      expectClose(y, ref, atol: 1e-5 * Double(s.i).squareRoot(), "forward \(s) \(k.label)")
      var yNoBias = [Float](repeating: .nan, count: s.n * s.o)
      k.ok(nerve_dense_forward_sparse(k.ctx, &yNoBias, listed.raw, first, w, nil, n, i, o), "forward, no bias")

      var dw = dw0, db = db0
      k.ok(nerve_dense_backward_sparse(k.ctx, &dw, &db, listed.raw, first, dy, n, i, o), "backward")
      let back = Reference.denseBackward(dy: doubles(dy), x: doubles(stored), w: doubles(w), n: s.n, i: s.i, o: s.o)
      let tol = 1e-5 * Double(s.n).squareRoot()
      expectClose(dw, zip(dw0, back.dw).map { Double($0) + $1 }, atol: tol, "weight gradient \(s) \(k.label)")
      expectClose(db, zip(db0, back.db).map { Double($0) + $1 }, atol: tol, "bias gradient \(s) \(k.label)")

      guard k.isa != .baseline else { continue }
      var yDense = [Float](repeating: .nan, count: s.n * s.o), yDenseNoBias = yDense
      k.ok(nerve_dense_forward(k.ctx, &yDense, stored, w, b, n, i, o))
      k.ok(nerve_dense_forward(k.ctx, &yDenseNoBias, stored, w, nil, n, i, o))
      var dwDense = dw0, dbDense = db0
      k.ok(nerve_dense_backward(k.ctx, nil, &dwDense, &dbDense, dy, stored, w, n, i, o))
      #expect(bitwiseEqual(y, yDense) && bitwiseEqual(yNoBias, yDenseNoBias), "forward bits \(s) \(k.label)")
      #expect(bitwiseEqual(dw, dwDense) && bitwiseEqual(db, dbDense), "gradient bits \(s) \(k.label)")
    }
  }

  @Test("results are bit-identical at 1, 2 and 3 threads", arguments: denseShapes)
  func threadIndependence(_ s: DenseShape) {
    let x = Self.inputs(s, sparse: true, seed: 41)
    let w = randomFloats(s.i * s.o, seed: 42), b = randomFloats(s.o, seed: 43)
    let dy = randomFloats(s.n * s.o, seed: 44)
    let (n, i, o) = (Int64(s.n), Int64(s.i), Int64(s.o))
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      var results: [[Float]] = []
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: isa)
        let listed = Listed(k, x, rows: Self.before + s.n + Self.after, cols: s.i)
        var y = [Float](repeating: 0, count: s.n * s.o)
        var dw = [Float](repeating: 0, count: s.i * s.o), db = [Float](repeating: 0, count: s.o)
        k.ok(nerve_dense_forward_sparse(k.ctx, &y, listed.raw, Int64(Self.before), w, b, n, i, o))
        k.ok(nerve_dense_backward_sparse(k.ctx, &dw, &db, listed.raw, Int64(Self.before), dy, n, i, o))
        results.append(y + dw + db)
      }
      #expect(bitwiseEqual(results[0], results[1]) && bitwiseEqual(results[0], results[2]), "\(s) on \(isa)")
    }
  }

  /// Slices of a listed matrix long enough for its column lists (blocks of 256 rows): rows read
  /// before the first whole block and after the last, a slice to the matrix's end (its short
  /// last block), all-zero rows (whose outputs are the bias) and columns, 1 to 3 panels; slices
  /// of whole blocks, whose weight gradient is summed in place rather than in a padded copy.
  static let blockSlices: [(rows: Int, first: Int, n: Int, i: Int, o: Int)] = [
    (1100, 100, 900, 50, 30), (1100, 300, 800, 41, 70), (700, 0, 700, 33, 9), (600, 5, 250, 20, 30),
    (1100, 256, 512, 41, 30), (600, 0, 600, 20, 47),
  ]

  @Test("packed lists and column lists: the dense bits at 1, 2 and 3 threads, and the reference",
        arguments: [0, 256, 257, -1, -2])
  func columnBlocks(_ distinct: Int) {
    for c in Self.blockSlices {
      var x = sparseInputs(c.rows, c.i, seed: 61)
      for r in stride(from: 0, to: c.rows, by: 7) { for k in 0..<c.i { x[r * c.i + k] = 0 } }
      // 0: quantized (packed); 256 and 257 distinct values (packed, not); -1: as drawn (not);
      // -2: 150 distinct values in the first 1,024 rows, 150 others after (1,100 rows: not packed,
      // though each part of the palette's search fits; fewer rows: packed).
      if distinct >= 0 { x = distinct == 0 ? Self.quantized(x) : Self.withDistinct(x, distinct) }
      if distinct == -2 { x = Self.withDistinctHalves(x, cols: c.i) }
      let stored = Array(x[c.first * c.i..<(c.first + c.n) * c.i])
      let w = randomFloats(c.i * c.o, seed: 62), b = randomFloats(c.o, seed: 63)
      let dy = randomFloats(c.n * c.o, seed: 64), dw0 = randomFloats(c.i * c.o, seed: 65)
      let db0 = randomFloats(c.o, seed: 66)
      let (n, i, o) = (Int64(c.n), Int64(c.i), Int64(c.o))
      let ref = Reference.denseForward(x: doubles(stored), w: doubles(w), b: doubles(b), n: c.n, i: c.i, o: c.o)
      let back = Reference.denseBackward(dy: doubles(dy), x: doubles(stored), w: doubles(w), n: c.n, i: c.i, o: c.o)
      var results: [[Float]] = []
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: .best)
        let listed = Listed(k, x, rows: c.rows, cols: c.i)
        var y = [Float](repeating: .nan, count: c.n * c.o), dw = dw0, db = db0
        k.ok(nerve_dense_forward_sparse(k.ctx, &y, listed.raw, Int64(c.first), w, b, n, i, o))
        // The bias's sums go with the column lists' team (by halves of the rows at 2 threads).
        k.ok(nerve_dense_backward_sparse(k.ctx, &dw, &db, listed.raw, Int64(c.first), dy, n, i, o))
        expectClose(y, ref, atol: 1e-5 * Double(c.i).squareRoot(), "forward \(c) at \(threads)")
        expectClose(dw, zip(dw0, back.dw).map { Double($0) + $1 }, atol: 1e-5 * Double(c.n).squareRoot(),
                    "weight gradient \(c) at \(threads)")
        expectClose(db, zip(db0, back.db).map { Double($0) + $1 }, atol: 1e-5 * Double(c.n).squareRoot(),
                    "bias gradient \(c) at \(threads)")
        if k.isa != .baseline {
          var yDense = [Float](repeating: .nan, count: c.n * c.o), dwDense = dw0, dbDense = db0
          k.ok(nerve_dense_forward(k.ctx, &yDense, stored, w, b, n, i, o))
          k.ok(nerve_dense_backward(k.ctx, nil, &dwDense, &dbDense, dy, stored, w, n, i, o))
          #expect(bitwiseEqual(y, yDense) && bitwiseEqual(dw, dwDense) && bitwiseEqual(db, dbDense),
                  "dense bits \(c) at \(threads)")
        }
        results.append(y + dw + db)
      }
      #expect(bitwiseEqual(results[0], results[1]) && bitwiseEqual(results[0], results[2]), "threads \(c)")
    }
  }

  /// Each row of the weight gradient as its column's own chain in Float: from dw0, then
  /// fma(x, dy, g) over the rows whose input in that column is not zero, rows in order.
  static func columnChains(_ x: [Float], first: Int, n: Int, i: Int, o: Int, dy: [Float], dw0: [Float]) -> [Float] {
    var dw = dw0
    for k in 0..<i {
      for c in 0..<o {
        var g = dw0[k * o + c]
        for r in 0..<n where x[(first + r) * i + k] != 0 {
          g = g.addingProduct(x[(first + r) * i + k], dy[r * o + c])
        }
        dw[k * o + c] = g
      }
    }
    return dw
  }

  /// The column pairs' lists (AVX-512; a word for each row either column of a pair holds) leave
  /// a column's terms out where its input is zero, exactly: a NaN or an infinity in dy on such
  /// a row stays out of that column's sums, and a sum at -0 stays -0 while its column has no
  /// entries but its pair's other column has. (Below AVX-512 the same holds of the column
  /// lists.) Rows enough for three threads to share the pairs (the work sets the team), odd
  /// columns (the last alone), and one panel or two (10 or 30 outputs).
  @Test("column pairs: each weight gradient row its own column's chain, at 1, 2 and 3 threads",
        arguments: [(rows: 4100, first: 100, n: 3900, i: 41, o: 30), (rows: 8000, first: 0, n: 8000, i: 50, o: 10),
                    (rows: 600, first: 0, n: 512, i: 33, o: 30)])
  func columnPairs(_ c: (rows: Int, first: Int, n: Int, i: Int, o: Int)) {
    let o = c.o
    var x = Self.quantized(sparseInputs(c.rows, c.i, seed: 71))
    for r in 0..<c.rows { x[r * c.i + 2] = 0 }  // column 2 empty; column 3, its pair's, not
    for r in 0..<c.rows { x[r * c.i + 3] = x[r * c.i + 3] == 0 ? 0.5 : x[r * c.i + 3] }
    // The last column (alone where the columns are odd) not empty, as sparseInputs leaves it.
    for r in stride(from: 0, to: c.rows, by: 3) { x[r * c.i + c.i - 1] = 0.75 }
    var dy = randomFloats(c.n * o, seed: 72)
    for r in stride(from: 5, to: c.n, by: 97) {
      // A row whose even columns are zero: its NaNs and infinities belong to the odd ones alone.
      for k in stride(from: 0, to: c.i, by: 2) { x[(c.first + r) * c.i + k] = 0 }
      x[(c.first + r) * c.i + 1] = 0.25
      for col in 0..<o { dy[r * o + col] = col % 2 == 0 ? .nan : -.infinity }
    }
    var dw0 = randomFloats(c.i * o, seed: 73)
    for col in 0..<o { dw0[2 * o + col] = -0.0 }
    let expected = Self.columnChains(x, first: c.first, n: c.n, i: c.i, o: o, dy: dy, dw0: dw0)
    #expect(expected[2 * o..<3 * o].allSatisfy { $0 == 0 && $0.sign == .minus })
    #expect(expected[0..<o].allSatisfy { $0.isFinite } && expected[o..<2 * o].contains { !$0.isFinite })
    for threads in [1, 2, 3] {
      let k = Kernels(threads: threads, isa: .best)
      let listed = Listed(k, x, rows: c.rows, cols: c.i)
      var dw = dw0
      k.ok(nerve_dense_backward_sparse(
        k.ctx, &dw, nil, listed.raw, Int64(c.first), dy, Int64(c.n), Int64(c.i), Int64(o)))
      #expect(bitwiseEqual(dw, expected), "\(c) at \(threads) threads on \(k.isa)")
    }
  }

  @Test("a listed matrix without entries leaves the weight gradient and still sums the bias's")
  func noEntries() {
    let (n, i, o) = (600, 40, 30)
    let dy = randomFloats(n * o, seed: 81), dw0 = randomFloats(i * o, seed: 82), db0 = randomFloats(o, seed: 83)
    var results: [[Float]] = []
    for threads in [1, 2, 3] {
      let k = Kernels(threads: threads, isa: .best)
      let listed = Listed(k, [Float](repeating: 0, count: n * i), rows: n, cols: i)
      var dw = dw0, db = db0
      k.ok(nerve_dense_backward_sparse(k.ctx, &dw, &db, listed.raw, 0, dy, Int64(n), Int64(i), Int64(o)))
      #expect(bitwiseEqual(dw, dw0), "weight gradient at \(threads)")
      var dbDense = db0
      k.ok(nerve_dense_backward(k.ctx, nil, nil, &dbDense, dy, nil, nil, Int64(n), Int64(i), Int64(o)))
      #expect(bitwiseEqual(db, dbDense), "bias gradient at \(threads)")
      results.append(db)
    }
    #expect(bitwiseEqual(results[0], results[1]) && bitwiseEqual(results[0], results[2]), "threads")
  }

  @Test("listing keeps every value that is not zero (NaN included, -0.0 not), row by row")
  func listing() {
    let k = Kernels(threads: 2, isa: .best)
    let x: [Float] = [0, 1.5, -0.0, .nan, 0, -2, 0, 0, 0, 0, 0, 0, 3, 0, 0, .infinity]
    var count: Int64 = -1
    k.ok(nerve_sparse_count(k.ctx, &count, x, 4, 4))
    #expect(count == 5)
    let listed = Listed(k, x, rows: 4, cols: 4)
    var rows: Int64 = 0, cols: Int64 = 0, entries: Int64 = 0
    #expect(nerve_sparse_shape(listed.raw, &rows, &cols, &entries) == NERVE_OK)
    #expect(rows == 4 && cols == 4 && entries == 5)
    // Finite rows through an identity weight come back as stored (-0.0 as +0.0: not listed).
    let finite: [Float] = [0, 1.5, -0.0, 4, 0, -2, 0, 0, 0, 0, 0, 0, 3, 0, 0, -0.5]
    let listedFinite = Listed(k, finite, rows: 4, cols: 4)
    var eye = [Float](repeating: 0, count: 16)
    for d in 0..<4 { eye[d * 4 + d] = 1 }
    var y = [Float](repeating: 7, count: 16)
    k.ok(nerve_dense_forward_sparse(k.ctx, &y, listedFinite.raw, 0, eye, nil, 4, 4, 4))
    #expect(y == finite)
    #expect(y[2].sign == .plus)
  }

  @Test("refused calls name the problem and change nothing")
  func refusals() {
    let k = Kernels(threads: 2, isa: .best)
    let x = sparseInputs(6, 40, seed: 51)
    let listed = Listed(k, x, rows: 6, cols: 40)
    let w = randomFloats(40 * 3, seed: 52)
    let dy = randomFloats(6 * 3, seed: 53)
    var y = [Float](repeating: 9, count: 6 * 3)
    var dw = [Float](repeating: 9, count: 40 * 3), db = [Float](repeating: 9, count: 3)
    func refused(_ status: nerve_status, _ expected: nerve_status, _ words: String) {
      #expect(status == expected, "\(words): got \(status)")
      #expect(String(cString: nerve_context_last_error(k.ctx)).contains(words))
      #expect(y.allSatisfy { $0 == 9 } && dw.allSatisfy { $0 == 9 } && db.allSatisfy { $0 == 9 })
    }
    refused(nerve_dense_forward_sparse(k.ctx, &y, listed.raw, 1, w, nil, 6, 40, 3), NERVE_ERROR_BAD_SIZE, "outside")
    refused(nerve_dense_forward_sparse(k.ctx, &y, listed.raw, -1, w, nil, 2, 40, 3), NERVE_ERROR_BAD_SIZE, "outside")
    refused(nerve_dense_forward_sparse(k.ctx, &y, listed.raw, 0, w, nil, 6, 39, 3), NERVE_ERROR_SHAPE_MISMATCH, "columns")
    refused(nerve_dense_forward_sparse(k.ctx, &y, nil, 0, w, nil, 6, 40, 3), NERVE_ERROR_NULL_POINTER, "in is NULL")
    refused(nerve_dense_forward_sparse(k.ctx, &y, listed.raw, 0, nil, nil, 6, 40, 3), NERVE_ERROR_NULL_POINTER, "weight")
    refused(nerve_dense_backward_sparse(k.ctx, &dw, &db, listed.raw, 5, dy, 2, 40, 3), NERVE_ERROR_BAD_SIZE, "outside")
    refused(nerve_dense_backward_sparse(k.ctx, &dw, &db, listed.raw, 0, nil, 6, 40, 3), NERVE_ERROR_NULL_POINTER, "dout")
    var out: OpaquePointer? = OpaquePointer(bitPattern: 1)
    #expect(nerve_sparse_create(k.ctx, &out, x, -1, 40) == NERVE_ERROR_BAD_SIZE && out == nil)
    #expect(nerve_sparse_create(k.ctx, &out, nil, 6, 40) == NERVE_ERROR_NULL_POINTER)
    var count: Int64 = 0
    #expect(nerve_sparse_count(k.ctx, &count, x, 6, Int64(Int32.max) + 1) == NERVE_ERROR_BAD_SIZE)
    // No columns: rows are refused before their starts are sized.
    #expect(nerve_sparse_create(k.ctx, &out, nil, 1 << 61, 0) == NERVE_ERROR_BAD_SIZE && out == nil)
    #expect(nerve_sparse_create(k.ctx, &out, nil, .max, 0) == NERVE_ERROR_BAD_SIZE && out == nil)
  }
}
