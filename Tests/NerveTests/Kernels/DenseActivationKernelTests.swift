// Dense layers joined to their activations (nerve_dense_forward_activation and its sparse
// form, nerve_dense_backward_activation and its SGD form): the bits of a dense call followed
// by an activation call, on every instruction set at 1, 2 and 3 threads, for every way the
// products share out their work; and refusals that change nothing.
import CNerve
import Nerve
import Testing

/// Shapes that reach each way a product hands its results to the activation: rows shared out
/// in chunks of 128 and more (300), few rows shared by column panels (40 x 200, 7 panels: more
/// than twice 3 threads), the input gradient's dot products for few rows (5), one row, widths
/// off the vector (17, 33, 47), a layer without inputs (its output is f(bias)), and many rows
/// through few units, which two threads take by halves of the rows.
let joinedShapes: [DenseShape] = [
  .init(n: 300, i: 30, o: 10), .init(n: 300, i: 37, o: 30), .init(n: 40, i: 50, o: 200),
  .init(n: 40, i: 200, o: 50), .init(n: 5, i: 64, o: 10), .init(n: 1, i: 17, o: 33),
  .init(n: 129, i: 47, o: 20), .init(n: 3, i: 0, o: 5),
  // The backward by halves of the rows at two threads (dense.c's halves_member).
  .init(n: 777, i: 30, o: 10),
]

let forwardKinds: [nerve_activation] = [
  NERVE_ACTIVATION_IDENTITY, NERVE_ACTIVATION_SIGMOID, NERVE_ACTIVATION_TANH, NERVE_ACTIVATION_RELU,
  NERVE_ACTIVATION_LECUN_TANH,
]
/// The kinds whose derivative comes from their output, which the backward takes.
let outputKinds: [nerve_activation] = [
  NERVE_ACTIVATION_IDENTITY, NERVE_ACTIVATION_SIGMOID, NERVE_ACTIVATION_TANH, NERVE_ACTIVATION_RELU,
]

@Suite("Dense kernel joined to its activation")
struct DenseActivationKernelTests {
  @Test("forward: the dense call then the activation, bit for bit", arguments: DenseKernelTests.configurations, joinedShapes)
  func forward(_ key: String, _ s: DenseShape) {
    let k = DenseKernelTests.kernels(key)
    let n = Int64(s.n), i = Int64(s.i), o = Int64(s.o)
    // Pre-activations of both signs and a few large ones, where sigmoid and tanh saturate.
    let x = sparseInputs(s.n, s.i, seed: 11).map { $0 * 3 }
    let w = randomFloats(s.i * s.o, seed: 12), b = randomFloats(s.o, seed: 13, low: -4, high: 4)
    for kind in forwardKinds {
      var apart = [Float](repeating: .nan, count: s.n * s.o)
      k.ok(nerve_dense_forward(k.ctx, &apart, x, w, b, n, i, o), "forward")
      k.ok(nerve_activation_forward(k.ctx, kind, &apart, apart, n * o), "activation")
      var joined = [Float](repeating: .nan, count: s.n * s.o)
      k.ok(nerve_dense_forward_activation(k.ctx, kind, &joined, x, w, b, n, i, o), "joined")
      expectSameBits(joined, apart, "forward, activation \(kind.rawValue), \(s) \(k.label)")

      // The same rows listed, read from the third row of a larger matrix.
      let rows = x + randomFloats(2 * s.i, seed: 14)
      let all = [Float](repeating: 0, count: 3 * s.i) + rows
      let listed = Listed(k, all, rows: s.n + 5, cols: s.i)
      var listedApart = [Float](repeating: .nan, count: s.n * s.o)
      k.ok(nerve_dense_forward_sparse(k.ctx, &listedApart, listed.raw, 3, w, b, n, i, o), "sparse")
      k.ok(nerve_activation_forward(k.ctx, kind, &listedApart, listedApart, n * o), "activation")
      var listedJoined = [Float](repeating: .nan, count: s.n * s.o)
      k.ok(nerve_dense_forward_sparse_activation(k.ctx, kind, &listedJoined, listed.raw, 3, w, b, n, i, o), "sparse joined")
      expectSameBits(listedJoined, listedApart, "sparse forward, activation \(kind.rawValue), \(s) \(k.label)")
    }
  }

  @Test("backward: the dense call then the activation's backward, bit for bit", arguments: DenseKernelTests.configurations, joinedShapes)
  func backward(_ key: String, _ s: DenseShape) {
    let k = DenseKernelTests.kernels(key)
    let n = Int64(s.n), i = Int64(s.i), o = Int64(s.o)
    let probe = orderProbe(rows: s.n, inputs: s.i, outputs: s.o, seed: 21)
    let dy = probe.dy, w = probe.w
    for kind in outputKinds {
      // The layer's input is the activation's output: in (0, 1) for sigmoid, with zeros for relu.
      var x = sparseInputs(s.n, s.i, seed: 22).map { abs($0) }
      k.ok(nerve_activation_forward(k.ctx, kind, &x, x, n * i), "inputs")
      let start = randomFloats(s.i * s.o + s.o, seed: 23)

      var dxApart = [Float](repeating: .nan, count: s.n * s.i), gApart = start
      gApart.withUnsafeMutableBufferPointer { g in
        k.ok(nerve_dense_backward(k.ctx, &dxApart, g.baseAddress, g.baseAddress! + s.i * s.o, dy, x, w, n, i, o), "backward")
      }
      k.ok(nerve_activation_backward(k.ctx, kind, &dxApart, dxApart, nil, x, n * i), "activation backward")
      var dxJoined = [Float](repeating: .nan, count: s.n * s.i), gJoined = start
      gJoined.withUnsafeMutableBufferPointer { g in
        k.ok(
          nerve_dense_backward_activation(k.ctx, kind, &dxJoined, g.baseAddress, g.baseAddress! + s.i * s.o, dy, x, w, n, i, o),
          "joined backward")
      }
      let what = "activation \(kind.rawValue), \(s) \(k.label)"
      expectSameBits(dxJoined, dxApart, "input gradient, \(what)")
      expectSameBits(gJoined, gApart, "weight and bias gradients, \(what)")

      // The plain SGD step's form: the input gradient from the weights before the step.
      var dxSGD = [Float](repeating: .nan, count: s.n * s.i), pApart = start
      pApart.withUnsafeMutableBufferPointer { p in
        k.ok(nerve_dense_backward_sgd(k.ctx, &dxSGD, p.baseAddress, p.baseAddress! + s.i * s.o, dy, x, n, i, o, 0.5), "sgd")
      }
      k.ok(nerve_activation_backward(k.ctx, kind, &dxSGD, dxSGD, nil, x, n * i), "activation backward")
      var dxSGDJoined = [Float](repeating: .nan, count: s.n * s.i), pJoined = start
      pJoined.withUnsafeMutableBufferPointer { p in
        k.ok(
          nerve_dense_backward_sgd_activation(k.ctx, kind, &dxSGDJoined, p.baseAddress, p.baseAddress! + s.i * s.o, dy, x, n, i, o, 0.5),
          "joined sgd")
      }
      expectSameBits(dxSGDJoined, dxSGD, "SGD's input gradient, \(what)")
      expectSameBits(pJoined, pApart, "SGD's step, \(what)")
    }
  }

  @Test("refusals change nothing: an unknown kind, LeCun's tanh backward, a missing input")
  func refusals() {
    let k = Kernels(threads: 2, isa: .best)
    let s = DenseShape(n: 6, i: 5, o: 4)
    let n = Int64(s.n), i = Int64(s.i), o = Int64(s.o)
    let x = randomFloats(s.n * s.i, seed: 31), w = randomFloats(s.i * s.o, seed: 32)
    let dy = randomFloats(s.n * s.o, seed: 33)
    let untouched = [Float](repeating: 7, count: s.n * max(s.i, s.o))
    var out = untouched, grads = [Float](repeating: 3, count: s.i * s.o + s.o)
    let unknown = nerve_activation(rawValue: 9)
    #expect(nerve_dense_forward_activation(k.ctx, unknown, &out, x, w, nil, n, i, o) == NERVE_ERROR_BAD_ARGUMENT)
    #expect(nerve_dense_backward_activation(k.ctx, unknown, &out, &grads, nil, dy, x, w, n, i, o) == NERVE_ERROR_BAD_ARGUMENT)
    #expect(
      nerve_dense_backward_activation(k.ctx, NERVE_ACTIVATION_LECUN_TANH, &out, &grads, nil, dy, x, w, n, i, o)
        == NERVE_ERROR_BAD_ARGUMENT)
    #expect(String(cString: nerve_context_last_error(k.ctx)).contains("LeCun"))
    var weights = w
    #expect(
      nerve_dense_backward_sgd_activation(k.ctx, NERVE_ACTIVATION_LECUN_TANH, &out, &weights, nil, dy, x, n, i, o, 0.1)
        == NERVE_ERROR_BAD_ARGUMENT)
    // The input gradient taken through the activation reads the input even without a weight
    // gradient asked for.
    #expect(nerve_dense_backward_activation(k.ctx, NERVE_ACTIVATION_SIGMOID, &out, nil, nil, dy, nil, w, n, i, o) == NERVE_ERROR_NULL_POINTER)
    #expect(out == untouched && weights == w && grads == [Float](repeating: 3, count: s.i * s.o + s.o))
  }
}
