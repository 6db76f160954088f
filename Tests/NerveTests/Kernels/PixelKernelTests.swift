// The dense layer over 8-bit inputs (nerve_dense_forward_pixels): against the Double reference
// on every instruction set at 1, 2 and 3 threads, bit-identical to nerve_dense_forward on the
// floats nerve_pixels_to_floats makes of the same bytes, the same bits at any thread count,
// and refusals that change nothing.
import CNerve
import Nerve
import NerveReference
import Testing

@Suite("Dense kernel over pixels")
struct PixelKernelTests {
  /// Bytes as MNIST's (the outer quarters of each row and about 40% of the rest zero) or dense
  /// (few zeros: the listing gives way to the register tiles).
  static func pixels(_ n: Int, _ i: Int, sparse: Bool, seed: UInt64) -> [UInt8] {
    var g = SeededGenerator(seed: seed)
    var x = [UInt8](repeating: 0, count: n * i)
    for r in 0..<n {
      for k in 0..<i {
        let zero = sparse && (k < i / 4 || k > 3 * i / 4 || g.nextUnit() < 0.4)
        x[r * i + k] = zero ? 0 : UInt8(truncatingIfNeeded: g.next() % 256)
      }
    }
    return x
  }

  /// The floats the bytes stand for, made by the library.
  static func floats(_ k: Kernels, _ x: [UInt8], scale: Float) -> [Float] {
    var out = [Float](repeating: .nan, count: x.count)
    k.ok(nerve_pixels_to_floats(k.ctx, &out, x, Int64(x.count), scale), "pixels to floats")
    return out
  }

  /// The dense layers' shapes, and ones where a member's list fills before its rows end (784
  /// inputs, up to 256 rows a tile), several panels, reductions past one block (1,024), and
  /// enough rows for dense bytes to be made floats 128 rows at a time by each thread.
  static let shapes = denseShapes + [
    DenseShape(n: 300, i: 784, o: 30), DenseShape(n: 130, i: 784, o: 70), DenseShape(n: 40, i: 2050, o: 16),
    DenseShape(n: 1100, i: 64, o: 20),
  ]

  @Test("forward matches the reference and the dense kernels' bits on the same values",
        arguments: DenseKernelTests.configurations, shapes)
  func matches(_ key: String, _ s: DenseShape) {
    let k = DenseKernelTests.kernels(key)
    for (sparse, scale) in [(true, Float(1) / 255), (false, Float(1) / 255), (true, Float(-0.75) / 255), (true, Float(0))] {
      let x = Self.pixels(s.n, s.i, sparse: sparse, seed: 71)
      let stored = Self.floats(k, x, scale: scale)
      let w = randomFloats(s.i * s.o, seed: 72), b = randomFloats(s.o, seed: 73)
      let (n, i, o) = (Int64(s.n), Int64(s.i), Int64(s.o))
      var y = [Float](repeating: .nan, count: s.n * s.o), yNoBias = y
      k.ok(nerve_dense_forward_pixels(k.ctx, &y, x, scale, w, b, n, i, o), "forward")
      k.ok(nerve_dense_forward_pixels(k.ctx, &yNoBias, x, scale, w, nil, n, i, o), "forward, no bias")
      let ref = Reference.denseForward(x: doubles(stored), w: doubles(w), b: doubles(b), n: s.n, i: s.i, o: s.o)
      expectClose(y, ref, atol: 1e-5 * Double(s.i).squareRoot(), "forward \(s) \(k.label) sparse \(sparse) scale \(scale)")

      var yStored = [Float](repeating: .nan, count: s.n * s.o), yStoredNoBias = yStored
      k.ok(nerve_dense_forward(k.ctx, &yStored, stored, w, b, n, i, o))
      k.ok(nerve_dense_forward(k.ctx, &yStoredNoBias, stored, w, nil, n, i, o))
      #expect(bitwiseEqual(y, yStored), "bits \(s) \(k.label) sparse \(sparse) scale \(scale)")
      #expect(bitwiseEqual(yNoBias, yStoredNoBias), "bits without a bias \(s) \(k.label) sparse \(sparse)")
    }
  }

  @Test("results are bit-identical at 1, 2 and 3 threads", arguments: shapes + [DenseShape(n: 700, i: 100, o: 40)])
  func threadIndependence(_ s: DenseShape) {
    let w = randomFloats(s.i * s.o, seed: 82), b = randomFloats(s.o, seed: 83)
    for sparse in [true, false] {
      let x = Self.pixels(s.n, s.i, sparse: sparse, seed: 81)
      for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
        var results: [[Float]] = []
        for threads in [1, 2, 3] {
          let k = Kernels(threads: threads, isa: isa)
          var y = [Float](repeating: 0, count: s.n * s.o)
          k.ok(nerve_dense_forward_pixels(k.ctx, &y, x, 1.0 / 255, w, b, Int64(s.n), Int64(s.i), Int64(s.o)))
          results.append(y)
        }
        #expect(bitwiseEqual(results[0], results[1]) && bitwiseEqual(results[0], results[2]), "\(s) on \(isa), sparse \(sparse)")
      }
    }
  }

  @Test("all-zero rows give the bias; zero rows and outputs do nothing")
  func edges() {
    let k = Kernels(threads: 2, isa: .best)
    var x = Self.pixels(40, 784, sparse: true, seed: 91)
    for r in stride(from: 0, to: 40, by: 3) { for c in 0..<784 { x[r * 784 + c] = 0 } }
    let w = randomFloats(784 * 10, seed: 92), b = randomFloats(10, seed: 93)
    var y = [Float](repeating: .nan, count: 40 * 10)
    k.ok(nerve_dense_forward_pixels(k.ctx, &y, x, 1.0 / 255, w, b, 40, 784, 10))
    for r in stride(from: 0, to: 40, by: 3) { #expect(Array(y[r * 10..<(r + 1) * 10]) == b, "row \(r)") }
    var untouched = [Float](repeating: 7, count: 4)
    k.ok(nerve_dense_forward_pixels(k.ctx, &untouched, nil, 1, nil, nil, 0, 784, 4))
    k.ok(nerve_dense_forward_pixels(k.ctx, &untouched, x, 1, w, nil, 1, 784, 0))
    #expect(untouched == [7, 7, 7, 7])
    // No inputs: the outputs are the bias.
    var noInputs = [Float](repeating: .nan, count: 2 * 10)
    k.ok(nerve_dense_forward_pixels(k.ctx, &noInputs, nil, 1, nil, b, 2, 0, 10))
    #expect(noInputs == b + b)
  }

  @Test("refused calls name the problem and change nothing")
  func refusals() {
    let k = Kernels(threads: 2, isa: .best)
    let x = Self.pixels(6, 40, sparse: true, seed: 95)
    let w = randomFloats(40 * 3, seed: 96)
    var y = [Float](repeating: 9, count: 6 * 3)
    func refused(_ status: nerve_status, _ expected: nerve_status, _ words: String) {
      #expect(status == expected, "\(words): got \(status)")
      #expect(String(cString: nerve_context_last_error(k.ctx)).contains(words))
      #expect(y.allSatisfy { $0 == 9 })
    }
    refused(nerve_dense_forward_pixels(k.ctx, &y, x, .nan, w, nil, 6, 40, 3), NERVE_ERROR_BAD_ARGUMENT, "scale")
    refused(nerve_dense_forward_pixels(k.ctx, &y, x, .infinity, w, nil, 6, 40, 3), NERVE_ERROR_BAD_ARGUMENT, "scale")
    refused(nerve_dense_forward_pixels(k.ctx, &y, nil, 1, w, nil, 6, 40, 3), NERVE_ERROR_NULL_POINTER, "pixels")
    refused(nerve_dense_forward_pixels(k.ctx, &y, x, 1, nil, nil, 6, 40, 3), NERVE_ERROR_NULL_POINTER, "weight")
    refused(nerve_dense_forward_pixels(k.ctx, nil, x, 1, w, nil, 6, 40, 3), NERVE_ERROR_NULL_POINTER, "out")
    refused(nerve_dense_forward_pixels(k.ctx, &y, x, 1, w, nil, -1, 40, 3), NERVE_ERROR_BAD_SIZE, "negative")
    refused(nerve_dense_forward_pixels(k.ctx, &y, x, 1, w, nil, 1 << 40, 1 << 40, 3), NERVE_ERROR_BAD_SIZE, "too large")
  }
}
