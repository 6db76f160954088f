// Convolution, pooling, batch norm, dropout and the adaptive optimizer steps against the
// Double reference, on every instruction set at 1, 2 and 3 threads.
import CNerve
import Nerve
import NerveReference
import Testing

let convGeometries: [RefGeometry] = [
  .init(n: 1, h: 7, w: 7, c: 3, k: 4, kh: 5, kw: 5, sh: 1, sw: 1, same: false),
  .init(n: 2, h: 7, w: 7, c: 3, k: 5, kh: 5, kw: 5, sh: 2, sw: 2, same: true),
  .init(n: 3, h: 28, w: 28, c: 1, k: 32, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
  .init(n: 2, h: 9, w: 8, c: 2, k: 3, kh: 3, kw: 2, sh: 2, sw: 1, pt: 1, pl: 0, oh: 5, ow: 7),
  .init(n: 1, h: 6, w: 6, c: 4, k: 6, kh: 1, kw: 1, sh: 1, sw: 1, same: false),
  .init(n: 5, h: 11, w: 11, c: 3, k: 7, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
  .init(n: 2, h: 1, w: 1, c: 1, k: 1, kh: 1, kw: 1, sh: 1, sw: 1, same: false),
  .init(n: 3, h: 10, w: 10, c: 32, k: 8, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
  .init(n: 9, h: 16, w: 16, c: 2, k: 3, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
  .init(n: 1, h: 8, w: 8, c: 2, k: 4, kh: 4, kw: 4, sh: 2, sw: 2, same: true),
  // Large enough that the forward shares its blocks of images among threads (3 blocks of 3
  // images, the last one short).
  .init(n: 7, h: 28, w: 28, c: 1, k: 32, kh: 5, kw: 5, sh: 1, sw: 1, same: false),
  // Read in place (no padding) with two panels of filters, the second short: the gathered
  // products list the non-zero inputs and the weight gradient takes rank updates.
  .init(n: 3, h: 9, w: 9, c: 3, k: 40, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
  // The fast recipe's first convolution: 24 filters, whose second vector of columns is half
  // full (256-bit operations).
  .init(n: 3, h: 12, w: 12, c: 1, k: 24, kh: 5, kw: 5, sh: 1, sw: 1, same: false),
  // 18 rows of output pixels and 20 filters: the input gradient's products take the rows in
  // the lanes (gemm.c's nn_lanes).
  .init(n: 2, h: 5, w: 5, c: 3, k: 20, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
  // Lab E's first convolution over enough images for a team: 9 lowered columns, too few to
  // share out (conv.c, weight_grad_threads), so one thread takes the weight gradient alone
  // (the test's call without the input gradient at 2 threads, and both calls at 3).
  .init(n: 8, h: 28, w: 28, c: 1, k: 32, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
]

let poolGeometries: [RefGeometry] = [
  .init(n: 1, h: 7, w: 7, c: 3, k: 3, kh: 2, kw: 2, sh: 2, sw: 2, same: false),
  .init(n: 2, h: 7, w: 7, c: 5, k: 5, kh: 3, kw: 3, sh: 2, sw: 2, same: true),
  .init(n: 2, h: 6, w: 5, c: 4, k: 4, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
  .init(n: 3, h: 28, w: 28, c: 32, k: 32, kh: 2, kw: 2, sh: 2, sw: 2, same: false),
  .init(n: 1, h: 9, w: 9, c: 17, k: 17, kh: 3, kw: 2, sh: 2, sw: 3, same: true),
  // Windows that tile the image with the last ones cut (7x5 pooled 2x2 "same": 4x3 outputs,
  // no padding), the fast recipe's 24 channels.
  .init(n: 2, h: 7, w: 5, c: 24, k: 24, kh: 2, kw: 2, sh: 2, sw: 2, same: true),
  // Windows apart with gaps between them and padding before the image: rows and columns that
  // no window covers, 33 channels (a short last vector).
  .init(n: 2, h: 9, w: 8, c: 33, k: 33, kh: 2, kw: 3, sh: 3, sw: 4, pt: 1, pl: 2, oh: 3, ow: 2),
  // The same kind over 8,160 rows of 9 channels: batch norm's row chunks and the threads' shares
  // start in the middle of images, next to rows no window covers.
  .init(n: 32, h: 17, w: 15, c: 9, k: 9, kh: 2, kw: 2, sh: 3, sw: 3, pt: 1, pl: 0, oh: 6, ow: 5),
]

@Suite("Image kernels")
struct ImageKernelTests {
  static let configurations = DenseKernelTests.configurations

  @Test("conv2d forward and backward match the reference", arguments: configurations, convGeometries.indices)
  func conv(_ key: String, _ index: Int) {
    let k = DenseKernelTests.kernels(key), g = convGeometries[index]
    for sparse in [false, true] {
      let xCount = g.n * g.h * g.w * g.c
      let x = sparse ? sparseInputs(g.n * g.h, g.w * g.c, seed: 31) : randomFloats(xCount, seed: 31)
      let w = randomFloats(g.kh * g.kw * g.c * g.k, seed: 32), b = randomFloats(g.k, seed: 33)
      var y = [Float](repeating: .nan, count: g.n * g.oh * g.ow * g.k)
      k.ok(nerve_conv2d_forward(k.ctx, &y, x, w, b, Int64(g.n), Int64(g.h), Int64(g.w), Int64(g.c), Int64(g.k),
                                Int64(g.kh), Int64(g.kw), Int64(g.sh), Int64(g.sw), Int64(g.pt), Int64(g.pl), Int64(g.oh), Int64(g.ow)), "forward \(g)")
      let terms = Double(g.kh * g.kw * g.c).squareRoot()
      expectClose(y, Reference.convForward(x: doubles(x), w: doubles(w), b: doubles(b), g: g), atol: 1e-5 * terms, "conv forward \(g) \(k.label)")
      let dy = randomFloats(y.count, seed: 34)
      var dx = [Float](repeating: .nan, count: xCount), dw = randomFloats(w.count, seed: 35), db = randomFloats(g.k, seed: 36)
      let dw0 = dw, db0 = db
      k.ok(nerve_conv2d_backward(k.ctx, &dx, &dw, &db, dy, x, w, Int64(g.n), Int64(g.h), Int64(g.w), Int64(g.c), Int64(g.k),
                                 Int64(g.kh), Int64(g.kw), Int64(g.sh), Int64(g.sw), Int64(g.pt), Int64(g.pl), Int64(g.oh), Int64(g.ow)), "backward \(g)")
      let ref = Reference.convBackward(dy: doubles(dy), x: doubles(x), w: doubles(w), g: g)
      let rows = Double(g.n * g.oh * g.ow).squareRoot()
      expectClose(dx, ref.dx, atol: 1e-5 * Double(g.k * g.kh * g.kw).squareRoot(), "conv input gradient \(g) \(k.label)")
      expectClose(dw, zip(dw0, ref.dw).map { Double($0) + $1 }, atol: 2e-5 * rows, "conv weight gradient \(g) \(k.label)")
      expectClose(db, zip(db0, ref.db).map { Double($0) + $1 }, atol: 2e-5 * rows, "conv bias gradient \(g) \(k.label)")
      // Bit for bit the rows added in order, whichever pass adds them (the weight gradient's
      // first tile, or a pass of its own).
      var inOrder = db0
      for r in 0..<(g.n * g.oh * g.ow) { for o in 0..<g.k { inOrder[o] += dy[r * g.k + o] } }
      #expect(bitwiseEqual(db, inOrder), "conv bias gradient in row order \(g) \(k.label)")
      // A first layer's call, without the input gradient: the same weight and bias gradients.
      var dwAlone = dw0, dbAlone = db0
      k.ok(nerve_conv2d_backward(k.ctx, nil, &dwAlone, &dbAlone, dy, x, w, Int64(g.n), Int64(g.h), Int64(g.w), Int64(g.c),
                                 Int64(g.k), Int64(g.kh), Int64(g.kw), Int64(g.sh), Int64(g.sw), Int64(g.pt), Int64(g.pl),
                                 Int64(g.oh), Int64(g.ow)), "backward without din \(g)")
      #expect(bitwiseEqual(dwAlone, dw) && bitwiseEqual(dbAlone, db), "conv gradients without din \(g) \(k.label)")
    }
  }

  /// AVX2 scatters a convolution's input gradient (conv.c, scatter_image): each output pixel's
  /// non-zero filters times the weight, added straight into its window's input pixels, the
  /// pixels taken last to first. What it must give is the lowered product's bits (for each tap
  /// and channel one chain of multiply-adds over every filter, from 0) summed back from 0 in
  /// (kh, kw) order, written out here in Float: with -0 and whole zero rows in the output
  /// gradient, and, where a weight is infinite, the NaNs its zero filters give (so there
  /// nothing may be left out). With and without the weight gradient in the same call (which
  /// shares the workspace), at 1, 2 and 3 threads.
  @Test(
    "AVX2's scattered input gradient gives the lowered product's chains summed in (kh, kw) order",
    .enabled(if: InstructionSet.best.rawValue >= InstructionSet.avx2.rawValue, "AVX2's kernels"),
    arguments: [0, 1, 2, 3], [false, true])
  func avx2ScatteredInputGradient(_ index: Int, _ infinity: Bool) {
    let g = [
      // Windows covering the image, 16 channels: written in place.
      RefGeometry(n: 3, h: 12, w: 12, c: 16, k: 32, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
      // Padding, strides, a last row no window covers, 20 channels (a vector pair and a short
      // one): a frame, copied out.
      RefGeometry(n: 2, h: 9, w: 8, c: 20, k: 7, kh: 3, kw: 2, sh: 2, sw: 1, pt: 1, pl: 0, oh: 4, ow: 7),
      // One image (members without one), 3 channels in a vector of 8, 25 taps in three groups,
      // column strides and padding.
      RefGeometry(n: 1, h: 11, w: 12, c: 3, k: 9, kh: 5, kw: 5, sh: 1, sw: 2, pt: 2, pl: 1, oh: 9, ow: 5),
      // "Same" padding and 64 filters, the most scattered.
      RefGeometry(n: 2, h: 10, w: 10, c: 8, k: 64, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
    ][index]
    var w = randomFloats(g.kh * g.kw * g.c * g.k, seed: 71)
    if infinity { w[g.k + 1] = .infinity }
    var dy = randomFloats(g.n * g.oh * g.ow * g.k, seed: 72)
    for i in dy.indices where i % 4 != 0 || (i / g.k) % 5 == 2 { dy[i] = i % 3 == 0 ? -0.0 : 0 }
    var expected = [Float](repeating: 0, count: g.n * g.h * g.w * g.c)
    for n in 0..<g.n {
      for ih in 0..<g.h {
        for iw in 0..<g.w {
          for c in 0..<g.c {
            var sum: Float = 0
            for kh in 0..<g.kh {
              let th = ih + g.pt - kh
              guard th >= 0, th % g.sh == 0, th / g.sh < g.oh else { continue }
              for kw in 0..<g.kw {
                let tw = iw + g.pl - kw
                guard tw >= 0, tw % g.sw == 0, tw / g.sw < g.ow else { continue }
                let pixel = (n * g.oh + th / g.sh) * g.ow + tw / g.sw
                var chain: Float = 0
                for f in 0..<g.k { chain = chain.addingProduct(dy[pixel * g.k + f], w[((kh * g.kw + kw) * g.c + c) * g.k + f]) }
                sum += chain
              }
            }
            expected[((n * g.h + ih) * g.w + iw) * g.c + c] = sum
          }
        }
      }
    }
    #expect(expected.contains { $0.isNaN } == infinity, "the probe's own NaNs")
    let sizes = [g.n, g.h, g.w, g.c, g.k, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow].map(Int64.init)
    let x = randomFloats(expected.count, seed: 73)
    for threads in [1, 2, 3] {
      for withWeights in [false, true] {
        let k = Kernels(threads: threads, isa: .avx2)
        var dx = [Float](repeating: .nan, count: expected.count)
        var dw = [Float](repeating: 0, count: w.count), db = [Float](repeating: 0, count: g.k)
        k.ok(withWeights
          ? nerve_conv2d_backward(k.ctx, &dx, &dw, &db, dy, x, w, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4],
                                  sizes[5], sizes[6], sizes[7], sizes[8], sizes[9], sizes[10], sizes[11], sizes[12])
          : nerve_conv2d_backward(k.ctx, &dx, nil, nil, dy, nil, w, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4],
                                  sizes[5], sizes[6], sizes[7], sizes[8], sizes[9], sizes[10], sizes[11], sizes[12]))
        #expect(zip(dx, expected).allSatisfy { $0.isNaN ? $1.isNaN : $0.bitPattern == $1.bitPattern },
                "\(g) infinity \(infinity), weights \(withWeights), \(threads) thread(s)")
      }
    }
  }

  @Test("a convolution through a ReLU in the same call writes the two calls' bits", arguments: configurations, convGeometries.indices)
  func convolutionThroughRelu(_ key: String, _ index: Int) {
    let k = DenseKernelTests.kernels(key), g = convGeometries[index]
    let x = sparseInputs(g.n * g.h, g.w * g.c, seed: 64)
    let w = randomFloats(g.kh * g.kw * g.c * g.k, seed: 65), b = randomFloats(g.k, seed: 66)
    let sizes = [g.n, g.h, g.w, g.c, g.k, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow].map(Int64.init)
    let count = g.n * g.oh * g.ow * g.k
    var fused = [Float](repeating: .nan, count: count), twoCalls = fused
    k.ok(nerve_conv2d_forward_relu(
      k.ctx, &fused, x, w, b, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7], sizes[8],
      sizes[9], sizes[10], sizes[11], sizes[12]), "\(g)")
    k.ok(nerve_conv2d_forward(
      k.ctx, &twoCalls, x, w, b, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7], sizes[8],
      sizes[9], sizes[10], sizes[11], sizes[12]))
    // Both signs, so the ReLU has something to do (all but the 2-output geometry).
    #expect(count < 8 || twoCalls.contains { $0 < 0 } && twoCalls.contains { $0 > 0 }, "outputs of both signs \(g)")
    let beforeRelu = twoCalls
    k.ok(nerve_activation_forward(k.ctx, NERVE_ACTIVATION_RELU, &twoCalls, beforeRelu, Int64(count)))
    #expect(bitwiseEqual(fused, twoCalls), "\(g) through a ReLU \(k.label)")
  }

  @Test("a convolution max-pooled in the same call writes the two calls' bits", arguments: configurations, convGeometries.indices)
  func convolutionPooled(_ key: String, _ index: Int) {
    let k = DenseKernelTests.kernels(key), g = convGeometries[index]
    let x = sparseInputs(g.n * g.h, g.w * g.c, seed: 61)
    let w = randomFloats(g.kh * g.kw * g.c * g.k, seed: 62), b = randomFloats(g.k, seed: 63)
    let conv = (Int64(g.n), Int64(g.h), Int64(g.w), Int64(g.c), Int64(g.k), Int64(g.kh), Int64(g.kw), Int64(g.sh), Int64(g.sw), Int64(g.pt), Int64(g.pl), Int64(g.oh), Int64(g.ow))
    // 2x2 windows (valid), and 3x3 ones at stride 2 with "same" padding, over the output.
    let pools = [
      RefGeometry(n: g.n, h: g.oh, w: g.ow, c: g.k, k: g.k, kh: min(2, g.oh), kw: min(2, g.ow), sh: 2, sw: 2, same: false),
      RefGeometry(n: g.n, h: g.oh, w: g.ow, c: g.k, k: g.k, kh: min(3, g.oh), kw: min(3, g.ow), sh: 2, sw: 2, same: true),
    ]
    for p in pools {
      let outCount = g.n * g.oh * g.ow * g.k, pooledCount = g.n * p.oh * p.ow * g.k
      var y = [Float](repeating: .nan, count: outCount), pooled = [Float](repeating: .nan, count: pooledCount)
      var am = [Int32](repeating: -7, count: pooledCount)
      k.ok(nerve_conv2d_forward_maxpool(
        k.ctx, &y, &pooled, &am, x, w, b, conv.0, conv.1, conv.2, conv.3, conv.4, conv.5, conv.6, conv.7, conv.8, conv.9, conv.10,
        conv.11, conv.12, Int64(p.kh), Int64(p.kw), Int64(p.sh), Int64(p.sw), Int64(p.pt), Int64(p.pl), Int64(p.oh), Int64(p.ow)), "fused \(g) \(p)")
      var y2 = [Float](repeating: .nan, count: outCount), pooled2 = [Float](repeating: .nan, count: pooledCount)
      var am2 = [Int32](repeating: -7, count: pooledCount)
      k.ok(nerve_conv2d_forward(k.ctx, &y2, x, w, b, conv.0, conv.1, conv.2, conv.3, conv.4, conv.5, conv.6, conv.7, conv.8, conv.9, conv.10, conv.11, conv.12))
      k.ok(nerve_maxpool2d_forward(
        k.ctx, &pooled2, &am2, y2, Int64(p.n), Int64(p.h), Int64(p.w), Int64(p.c), Int64(p.kh), Int64(p.kw), Int64(p.sh), Int64(p.sw),
        Int64(p.pt), Int64(p.pl), Int64(p.oh), Int64(p.ow)))
      #expect(bitwiseEqual(y, y2) && bitwiseEqual(pooled, pooled2) && am == am2, "\(g) pooled \(p) \(k.label)")
      // Without the convolution's output kept: the same pooled values and winners.
      var pooled3 = [Float](repeating: .nan, count: pooledCount), am3 = [Int32](repeating: -7, count: pooledCount)
      k.ok(nerve_conv2d_forward_maxpool(
        k.ctx, nil, &pooled3, &am3, x, w, b, conv.0, conv.1, conv.2, conv.3, conv.4, conv.5, conv.6, conv.7, conv.8, conv.9, conv.10,
        conv.11, conv.12, Int64(p.kh), Int64(p.kw), Int64(p.sh), Int64(p.sw), Int64(p.pt), Int64(p.pl), Int64(p.oh), Int64(p.ow)), "unkept \(g) \(p)")
      #expect(bitwiseEqual(pooled3, pooled2) && am3 == am2, "\(g) pooled \(p), output not kept, \(k.label)")
    }
    // A pool that does not fit the convolution's output is refused before anything is written.
    var y = [Float](repeating: 5, count: g.n * g.oh * g.ow * g.k), pooled = [Float](repeating: 5, count: 1)
    var am = [Int32](repeating: 5, count: 1)
    let status = nerve_conv2d_forward_maxpool(
      k.ctx, &y, &pooled, &am, x, w, b, conv.0, conv.1, conv.2, conv.3, conv.4, conv.5, conv.6, conv.7, conv.8, conv.9, conv.10,
      conv.11, conv.12, 2, 2, 2, 2, 0, 0, Int64(g.oh + 1), 1)
    #expect(status == NERVE_ERROR_BAD_SIZE && y.allSatisfy { $0 == 5 } && pooled == [5] && am == [5])
  }

  /// The convolution geometries, and two batches the pooled weight gradient cuts into slices of
  /// images (37 images: 16, 16 and 5; the fast recipe's first layer on 40 images).
  static let pooledGradientGeometries = convGeometries + [
    RefGeometry(n: 37, h: 13, w: 11, c: 2, k: 17, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
    RefGeometry(n: 40, h: 28, w: 28, c: 1, k: 24, kh: 5, kw: 5, sh: 1, sw: 1, same: false),
  ]

  @Test("a first convolution's parameter gradients from its max pool's gradient match the reference",
        arguments: configurations, pooledGradientGeometries.indices)
  func convolutionGradientFromPool(_ key: String, _ index: Int) {
    let k = DenseKernelTests.kernels(key), g = Self.pooledGradientGeometries[index]
    let x = sparseInputs(g.n * g.h, g.w * g.c, seed: 91)
    let w = randomFloats(g.kh * g.kw * g.c * g.k, seed: 92), b = randomFloats(g.k, seed: 93)
    let conv = [g.n, g.h, g.w, g.c, g.k, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow].map(Int64.init)
    // 2x2 windows that tile the output (valid; the output gradient made as the products take
    // it, with AVX-512), and overlapping 3x3 ones at stride 2 with padding (the two calls).
    let pools = [
      RefGeometry(n: g.n, h: g.oh, w: g.ow, c: g.k, k: g.k, kh: min(2, g.oh), kw: min(2, g.ow), sh: 2, sw: 2, same: false),
      RefGeometry(n: g.n, h: g.oh, w: g.ow, c: g.k, k: g.k, kh: min(3, g.oh), kw: min(3, g.ow), sh: 2, sw: 2, same: true),
    ]
    for p in pools {
      let pool = [p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.oh, p.ow].map(Int64.init)
      let pooledCount = g.n * p.oh * p.ow * g.k
      var pooled = [Float](repeating: .nan, count: pooledCount), am = [Int32](repeating: -7, count: pooledCount)
      k.ok(nerve_conv2d_forward_maxpool(
        k.ctx, nil, &pooled, &am, x, w, b, conv[0], conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], conv[8],
        conv[9], conv[10], conv[11], conv[12], pool[0], pool[1], pool[2], pool[3], pool[4], pool[5], pool[6], pool[7]))
      // A relu's mask (zeros where the pooled value is not positive) and signed zeros.
      var dp = randomFloats(pooledCount, seed: 94)
      for i in dp.indices where pooled[i] <= 0 { dp[i] = 0 }
      for i in stride(from: 5, to: pooledCount, by: 11) { dp[i] = -0.0 }
      func gradients(_ kernels: Kernels, weight: Bool = true) -> (dw: [Float], db: [Float]) {
        var dw = randomFloats(w.count, seed: 95), db = randomFloats(g.k, seed: 96)
        let status = weight
          ? nerve_conv2d_backward_maxpool(
            kernels.ctx, &dw, &db, dp, am, x, conv[0], conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], conv[8],
            conv[9], conv[10], conv[11], conv[12], pool[0], pool[1], pool[2], pool[3], pool[4], pool[5], pool[6], pool[7])
          : nerve_conv2d_backward_maxpool(
            kernels.ctx, nil, &db, dp, am, x, conv[0], conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], conv[8],
            conv[9], conv[10], conv[11], conv[12], pool[0], pool[1], pool[2], pool[3], pool[4], pool[5], pool[6], pool[7])
        kernels.ok(status, "\(g) pooled \(p)")
        return (dw, db)
      }
      let got = gradients(k)
      let dout = Reference.maxPoolBackward(dy: doubles(dp), argmax: am.map(Int.init), g: p)
      let ref = Reference.convBackward(dy: dout, x: doubles(x), w: doubles(w), g: g)
      let dw0 = randomFloats(w.count, seed: 95), db0 = randomFloats(g.k, seed: 96)
      let rows = Double(g.n * g.oh * g.ow).squareRoot()
      expectClose(got.dw, zip(dw0, ref.dw).map { Double($0) + $1 }, atol: 2e-5 * rows, "weight gradient \(g) pooled \(p) \(k.label)")
      expectClose(got.db, zip(db0, ref.db).map { Double($0) + $1 }, atol: 2e-5 * rows, "bias gradient \(g) pooled \(p) \(k.label)")
      // The bits of one thread on the same instruction set, and the bias alone the same.
      let one = gradients(Kernels(threads: 1, isa: k.isa))
      #expect(bitwiseEqual(got.dw + got.db, one.dw + one.db), "\(g) pooled \(p) at \(k.label) and 1 thread")
      #expect(bitwiseEqual(gradients(k, weight: false).db, got.db), "bias gradient alone \(g) pooled \(p) \(k.label)")
      // Where the output gradient is made as the products take it (AVX-512 or AVX2, windows that
      // tile it, one panel of filters; padded windows from a copy with borders), the batch in two calls that meet
      // at a slice boundary, as two ranks' shares: the same bits. (The two calls' products
      // through OpenBLAS add each call's sum to the gradient instead.)
      let slice = Int(nerve_conv2d_pooled_slice_images(Int64(g.n)))
      let first = slice * ((g.n + slice - 1) / slice / 2), perImage = p.oh * p.ow * g.k
      let tiles = p.sh == p.kh && p.sw == p.kw && p.pt == 0 && p.pl == 0
      let inside = g.pt == 0 && g.pl == 0 && (g.oh - 1) * g.sh + g.kh <= g.h && (g.ow - 1) * g.sw + g.kw <= g.w
      let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && inside && g.oh == g.h && g.ow == g.w
      let direct = k.isa != .baseline && tiles && !pointwise && g.k <= 32
      let says = nerve_conv2d_backward_maxpool_direct(
        k.ctx, conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], conv[8], conv[9], conv[10], conv[11], conv[12],
        pool[0], pool[1], pool[2], pool[3], pool[4], pool[5], pool[6], pool[7])
      #expect(says == (direct ? 1 : 0), "whether \(g) pooled \(p) writes no output gradient, \(k.label)")
      guard first > 0, direct else { continue }
      var dw = randomFloats(w.count, seed: 95), db = randomFloats(g.k, seed: 96)
      k.ok(nerve_context_set_whole_batch(k.ctx, Int64(g.n)))
      for (n0, n1) in [(0, first), (first, g.n)] {
        k.ok(nerve_conv2d_backward_maxpool(
          k.ctx, &dw, &db, Array(dp[(n0 * perImage)...]), Array(am[(n0 * perImage)...]), Array(x[(n0 * g.h * g.w * g.c)...]),
          Int64(n1 - n0), conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], conv[8], conv[9], conv[10],
          conv[11], conv[12], pool[0], pool[1], pool[2], pool[3], pool[4], pool[5], pool[6], pool[7]), "\(g) images \(n0)..<\(n1)")
      }
      k.ok(nerve_context_set_whole_batch(k.ctx, 0))
      #expect(bitwiseEqual(dw + db, got.dw + got.db), "\(g) pooled \(p) in two calls at image \(first), \(k.label)")
    }
    // A pool that does not fit the convolution's output is refused before anything is written.
    var dw = [Float](repeating: 5, count: w.count), db = [Float](repeating: 5, count: g.k)
    let status = nerve_conv2d_backward_maxpool(
      k.ctx, &dw, &db, [0], [0], x, conv[0], conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], conv[8],
      conv[9], conv[10], conv[11], conv[12], 2, 2, 2, 2, 0, 0, Int64(g.oh + 1), 1)
    #expect(status == NERVE_ERROR_BAD_SIZE && dw.allSatisfy { $0 == 5 } && db.allSatisfy { $0 == 5 })
    // A refused geometry is not direct, and asking leaves the context's last error alone.
    let before = String(cString: nerve_context_last_error(k.ctx))
    #expect(nerve_conv2d_backward_maxpool_direct(
      k.ctx, conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7], conv[8], conv[9], conv[10], conv[11], conv[12],
      2, 2, 2, 2, 0, 0, Int64(g.oh + 1), 1) == 0)
    #expect(String(cString: nerve_context_last_error(k.ctx)) == before)
  }

  @Test("pooling forward and backward match the reference", arguments: configurations, poolGeometries.indices)
  func pooling(_ key: String, _ index: Int) {
    let k = DenseKernelTests.kernels(key), g = poolGeometries[index]
    let args = (Int64(g.n), Int64(g.h), Int64(g.w), Int64(g.c), Int64(g.kh), Int64(g.kw), Int64(g.sh), Int64(g.sw), Int64(g.pt), Int64(g.pl), Int64(g.oh), Int64(g.ow))
    var x = randomFloats(g.n * g.h * g.w * g.c, seed: 41)
    // A tie for a window's maximum (the first two pixels' first channel) goes to the first
    // pixel in scan order.
    x[0] = 10
    x[g.c] = 10
    let outCount = g.n * g.oh * g.ow * g.c
    var y = [Float](repeating: .nan, count: outCount), am = [Int32](repeating: -7, count: outCount)
    k.ok(nerve_maxpool2d_forward(k.ctx, &y, &am, x, args.0, args.1, args.2, args.3, args.4, args.5, args.6, args.7, args.8, args.9, args.10, args.11))
    let ref = Reference.maxPoolForward(x: doubles(x), g: g)
    expectClose(y, ref.y, rtol: 0, atol: 0, "max pool \(g) \(k.label)")
    #expect(am.map(Int.init) == ref.argmax, "argmax \(g)")
    let dy = randomFloats(outCount, seed: 42)
    var dx = [Float](repeating: .nan, count: x.count)
    k.ok(nerve_maxpool2d_backward(k.ctx, &dx, dy, am, args.0, args.1, args.2, args.3, args.4, args.5, args.6, args.7, args.8, args.9, args.10, args.11))
    expectClose(dx, Reference.maxPoolBackward(dy: doubles(dy), argmax: ref.argmax, g: g), "max pool backward \(g) \(k.label)")
    k.ok(nerve_avgpool2d_forward(k.ctx, &y, x, args.0, args.1, args.2, args.3, args.4, args.5, args.6, args.7, args.8, args.9, args.10, args.11))
    expectClose(y, Reference.avgPoolForward(x: doubles(x), g: g), "avg pool \(g) \(k.label)")
    k.ok(nerve_avgpool2d_backward(k.ctx, &dx, dy, args.0, args.1, args.2, args.3, args.4, args.5, args.6, args.7, args.8, args.9, args.10, args.11))
    expectClose(dx, Reference.avgPoolBackward(dy: doubles(dy), g: g), "avg pool backward \(g) \(k.label)")
  }

  @Test("batch normalisation matches the reference", arguments: configurations)
  func batchNorm(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    for (r, c) in [(1, 1), (7, 3), (1000, 7), (300, 129), (25_088, 32)] {
      let x = randomFloats(r * c, seed: 51, low: -2, high: 3), gamma = randomFloats(c, seed: 52), beta = randomFloats(c, seed: 53)
      let eps: Float = 1e-3, momentum: Float = 0.9
      var y = [Float](repeating: .nan, count: r * c), mean = [Float](repeating: 0, count: c), invstd = mean
      var runMean = randomFloats(c, seed: 54), runVar = randomFloats(c, seed: 55, low: 0.5, high: 2)
      let runMean0 = runMean, runVar0 = runVar
      k.ok(nerve_batchnorm_forward_train(k.ctx, &y, &mean, &invstd, &runMean, &runVar, x, gamma, beta, Int64(r), Int64(c), momentum, eps))
      let ref = Reference.batchNormTrain(x: doubles(x), gamma: doubles(gamma), beta: doubles(beta), r: r, c: c, eps: Double(eps))
      expectClose(y, ref.y, rtol: 1e-4, atol: 1e-5, "batch norm train \(r)x\(c) \(k.label)")
      expectClose(mean, ref.mean, rtol: 1e-5, atol: 1e-6, "saved mean")
      expectClose(invstd, ref.variance.map { 1 / ($0 + Double(eps)).squareRoot() }, rtol: 1e-5, "saved invstd")
      let unbiased = ref.variance.map { $0 * Double(r) / Double(max(r - 1, 1)) }
      expectClose(runMean, zip(runMean0, ref.mean).map { 0.9 * Double($0) + 0.1 * $1 }, rtol: 1e-5, atol: 1e-6, "running mean")
      expectClose(runVar, zip(runVar0, unbiased).map { 0.9 * Double($0) + 0.1 * $1 }, rtol: 1e-5, atol: 1e-6, "running variance")

      var yi = [Float](repeating: .nan, count: r * c)
      k.ok(nerve_batchnorm_forward_infer(k.ctx, &yi, x, gamma, beta, runMean, runVar, Int64(r), Int64(c), eps))
      var expected = [Double](repeating: 0, count: r * c)
      for i in 0..<r { for j in 0..<c {
        expected[i * c + j] = Double(gamma[j]) * (Double(x[i * c + j]) - Double(runMean[j])) / (Double(runVar[j]) + Double(eps)).squareRoot() + Double(beta[j])
      } }
      expectClose(yi, expected, rtol: 1e-5, atol: 1e-5, "batch norm inference \(r)x\(c)")

      let dy = randomFloats(r * c, seed: 56)
      var dx = [Float](repeating: .nan, count: r * c), dgamma = [Float](repeating: 1, count: c), dbeta = dgamma
      k.ok(nerve_batchnorm_backward(k.ctx, &dx, &dgamma, &dbeta, dy, x, gamma, mean, invstd, Int64(r), Int64(c)))
      let back = Reference.batchNormBackward(dy: doubles(dy), x: doubles(x), gamma: doubles(gamma), r: r, c: c, eps: Double(eps))
      let scale = Double(r).squareRoot()
      expectClose(dx, back.dx, rtol: 1e-3, atol: 1e-4, "batch norm input gradient \(r)x\(c) \(k.label)")
      expectClose(dgamma, back.dgamma.map { $0 + 1 }, rtol: 1e-4, atol: 1e-5 * scale, "dgamma (accumulated)")
      expectClose(dbeta, back.dbeta.map { $0 + 1 }, rtol: 1e-4, atol: 1e-5 * scale, "dbeta (accumulated)")

      // Through the ReLU before the layer (x as its output, a third of it negative), in one
      // pass: the bits of the two calls.
      var twoCalls = dx
      k.ok(nerve_activation_backward(k.ctx, NERVE_ACTIVATION_RELU, &twoCalls, dx, nil, x, Int64(r * c)))
      var fused = [Float](repeating: .nan, count: r * c), fusedGamma = [Float](repeating: 1, count: c), fusedBeta = fusedGamma
      k.ok(nerve_batchnorm_backward_relu(k.ctx, &fused, &fusedGamma, &fusedBeta, dy, x, gamma, mean, invstd, Int64(r), Int64(c)))
      #expect(bitwiseEqual(fused, twoCalls), "batch norm + ReLU input gradient \(r)x\(c) \(k.label)")
      #expect(bitwiseEqual(fusedGamma + fusedBeta, dgamma + dbeta), "batch norm + ReLU parameter gradients")
      #expect(fused.contains(0) && fused.contains { $0 != 0 } || r * c < 8, "the ReLU zeroed some, not all")
    }
  }

  /// Convolutions followed by a batch norm and a 2x2 pool: Lab E's first layer (padded), one
  /// whose pool leaves a row and a column of pixels uncovered, 37 images in three slices, and
  /// two panels of filters (the two calls).
  static let normedGradientGeometries: [RefGeometry] = [
    .init(n: 3, h: 28, w: 28, c: 1, k: 32, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
    .init(n: 2, h: 9, w: 9, c: 3, k: 5, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
    .init(n: 37, h: 13, w: 11, c: 2, k: 17, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
    .init(n: 2, h: 9, w: 9, c: 3, k: 40, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
  ]

  @Test("a first convolution's and its batch norm's gradients from the pool after them match the reference",
        arguments: configurations, normedGradientGeometries.indices)
  func convolutionGradientThroughNorm(_ key: String, _ index: Int) {
    let k = DenseKernelTests.kernels(key), c = NormedConvolution(k, Self.normedGradientGeometries[index]), g = c.g
    let dnorm = Reference.maxPoolBackward(dy: doubles(c.dp), argmax: c.am.map(Int.init), g: c.p)
    let back = Reference.batchNormBackward(dy: dnorm, x: doubles(c.out), gamma: doubles(c.gamma), r: c.rows, c: g.k, eps: 1e-3)
    let direct = k.isa != .baseline && g.k <= 32, convolution = ..<(c.w.count + g.k), norm = (c.w.count + g.k)...
    for relu in [true, false] {
      let got = c.oneCall(k, relu: relu, from: c.start)
      let dout = relu ? zip(back.dx, c.out).map { $1 > 0 ? $0 : 0 } : back.dx
      let ref = Reference.convBackward(dy: dout, x: doubles(c.x), w: doubles(c.w), g: g)
      let expected = zip(c.start, ref.dw + ref.db + back.dgamma + back.dbeta).map { Double($0) + $1 }
      expectClose(got, expected, rtol: 1e-3, atol: 1e-4 * Double(c.rows).squareRoot(), "\(g) relu \(relu) \(k.label)")
      // The two calls: the norm's gradients their bits; the convolution's too where it takes
      // them in the two calls' order (no AVX-512 or AVX2, or two panels of filters).
      var din = [Float](repeating: .nan, count: c.rows * g.k)
      let two = c.twoCalls(k, relu: relu, from: c.start, din: &din)
      #expect(bitwiseEqual(Array(got[norm]), Array(two[norm])), "the norm's gradients \(g) relu \(relu) \(k.label)")
      if !direct { #expect(bitwiseEqual(got, two), "the two calls' bits \(g) relu \(relu) \(k.label)") }
      // The convolution's sums from the stored gradient (nerve_conv2d_backward_sliced), as ranks
      // make them: the one call's bits, in two shares meeting at a slice boundary where it sums
      // in slices (elsewhere OpenBLAS's products add each call's sum instead: whole).
      let slice = Int(nerve_conv2d_pooled_slice_images(Int64(g.n))), first = slice * ((g.n + slice - 1) / slice / 2)
      let shares = first > 0 && direct ? [(0, first), (first, g.n)] : [(0, g.n)]
      #expect(bitwiseEqual(c.sliced(k, din: din, shares: shares), Array(got[convolution])),
              "sliced from the stored gradient \(g) relu \(relu) \(k.label)")
      // One image, one slice, from zero: its one chain is the two calls', so the norm's input
      // gradient made as the products take it has the bits the norm's backward writes.
      let zeros = [Float](repeating: 0, count: c.start.count)
      #expect(bitwiseEqual(c.oneCall(k, relu: relu, from: zeros, images: 1), c.twoCalls(k, relu: relu, from: zeros, din: &din, images: 1)),
              "one image \(g) relu \(relu) \(k.label)")
      #expect(bitwiseEqual(got, c.oneCall(Kernels(threads: 1, isa: k.isa), relu: relu, from: c.start)), "\(g) at \(k.label) and 1 thread")
    }
    c.expectRefusals(k)
  }

  @Test("batch norm joined to the max pool after it writes the separate calls' bits", arguments: configurations, poolGeometries.indices)
  func batchNormPooled(_ key: String, _ index: Int) {
    let k = DenseKernelTests.kernels(key), g = poolGeometries[index]
    let r = g.n * g.h * g.w, c = g.c, outCount = g.n * g.oh * g.ow * c
    let pool = (Int64(g.kh), Int64(g.kw), Int64(g.sh), Int64(g.sw), Int64(g.pt), Int64(g.pl), Int64(g.oh), Int64(g.ow))
    // Some gammas negative: normalising then flips which pixel wins a window.
    let x = randomFloats(r * c, seed: 71, low: -2, high: 3), gamma = randomFloats(c, seed: 72), beta = randomFloats(c, seed: 73)
    let runMean0 = randomFloats(c, seed: 74), runVar0 = randomFloats(c, seed: 75, low: 0.5, high: 2)
    var y = [Float](repeating: .nan, count: r * c), mean = [Float](repeating: 0, count: c), invstd = mean
    var runMean = runMean0, runVar = runVar0
    k.ok(nerve_batchnorm_forward_train(k.ctx, &y, &mean, &invstd, &runMean, &runVar, x, gamma, beta, Int64(r), Int64(c), 0.9, 1e-3))
    // The statistics alone (no output): the same statistics and running averages.
    var mean2 = [Float](repeating: 0, count: c), invstd2 = mean2, runMean2 = runMean0, runVar2 = runVar0
    k.ok(nerve_batchnorm_forward_train(k.ctx, nil, &mean2, &invstd2, &runMean2, &runVar2, x, gamma, beta, Int64(r), Int64(c), 0.9, 1e-3))
    #expect(bitwiseEqual(mean2 + invstd2 + runMean2 + runVar2, mean + invstd + runMean + runVar), "statistics only \(g) \(k.label)")

    var pooled = [Float](repeating: .nan, count: outCount), am = [Int32](repeating: -7, count: outCount)
    k.ok(nerve_maxpool2d_forward(
      k.ctx, &pooled, &am, y, Int64(g.n), Int64(g.h), Int64(g.w), Int64(c), pool.0, pool.1, pool.2, pool.3, pool.4, pool.5, pool.6, pool.7))
    var joined = [Float](repeating: .nan, count: outCount), joinedAm = [Int32](repeating: -7, count: outCount)
    k.ok(nerve_maxpool2d_forward_normalized(
      k.ctx, &joined, &joinedAm, x, mean, invstd, gamma, beta, Int64(g.n), Int64(g.h), Int64(g.w), Int64(c), pool.0, pool.1, pool.2,
      pool.3, pool.4, pool.5, pool.6, pool.7))
    #expect(bitwiseEqual(joined, pooled) && joinedAm == am, "pooled while normalised \(g) \(k.label)")

    var dp = randomFloats(outCount, seed: 76)
    for i in stride(from: 3, to: outCount, by: 7) { dp[i] = -0.0 }  // the pool writes 0 + -0 = +0 for these
    var dnorm = [Float](repeating: .nan, count: r * c)
    k.ok(nerve_maxpool2d_backward(
      k.ctx, &dnorm, dp, am, Int64(g.n), Int64(g.h), Int64(g.w), Int64(c), pool.0, pool.1, pool.2, pool.3, pool.4, pool.5, pool.6, pool.7))
    let apart = g.sh >= g.kh && g.sw >= g.kw
    for relu in [false, true] {
      var dx = [Float](repeating: .nan, count: r * c), dgamma = [Float](repeating: 1, count: c), dbeta = dgamma
      k.ok(relu
        ? nerve_batchnorm_backward_relu(k.ctx, &dx, &dgamma, &dbeta, dnorm, x, gamma, mean, invstd, Int64(r), Int64(c))
        : nerve_batchnorm_backward(k.ctx, &dx, &dgamma, &dbeta, dnorm, x, gamma, mean, invstd, Int64(r), Int64(c)))
      var dx2 = [Float](repeating: .nan, count: r * c), dgamma2 = [Float](repeating: 1, count: c), dbeta2 = dgamma2
      let status = nerve_batchnorm_backward_maxpool2d(
        k.ctx, &dx2, &dgamma2, &dbeta2, dp, am, x, gamma, mean, invstd, Int64(g.n), Int64(g.h), Int64(g.w), Int64(c), pool.0,
        pool.1, pool.2, pool.3, pool.4, pool.5, pool.6, pool.7, relu ? 1 : 0)
      if apart {
        k.ok(status)
        #expect(bitwiseEqual(dx2, dx), "batch norm input gradient from the pool's \(g), relu \(relu), \(k.label)")
        #expect(bitwiseEqual(dgamma2 + dbeta2, dgamma + dbeta), "parameter gradients from the pool's \(g), relu \(relu)")
      } else {
        // Overlapping windows are refused, and nothing is written.
        #expect(status == NERVE_ERROR_BAD_ARGUMENT, "overlapping windows \(g)")
        #expect(dx2.allSatisfy(\.isNaN) && (dgamma2 + dbeta2).allSatisfy { $0 == 1 }, "refused, nothing written")
      }
    }
  }

  @Test("dropout drops the rate's share, scales the rest, and repeats exactly at any thread count")
  func dropout() {
    let n = 200_003
    let x = randomFloats(n, seed: 61)
    for rate: Float in [0, 0.5, 0.75, 0.9] {
      var masks: [[Float]] = []
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: .best)
        var y = [Float](repeating: .nan, count: n), mask = y
        k.ok(nerve_dropout_forward(k.ctx, &y, &mask, x, Int64(n), rate, 1234))
        let keep = 1 / (1 - rate)
        #expect(mask.allSatisfy { $0 == 0 || $0 == keep }, "mask values for rate \(rate)")
        let dropped = Double(mask.filter { $0 == 0 }.count) / Double(n)
        #expect(abs(dropped - Double(rate)) < 0.01, "dropped \(dropped) for rate \(rate)")
        #expect(zip(zip(y, x), mask).allSatisfy { $0.0 == $0.1 * $1 }, "out = in * mask")
        var dx = [Float](repeating: .nan, count: n)
        k.ok(nerve_dropout_backward(k.ctx, &dx, x, mask, Int64(n)))
        #expect(zip(zip(dx, x), mask).allSatisfy { $0.0 == $0.1 * $1 }, "din = dout * mask")
        masks.append(mask)
      }
      #expect(masks[0] == masks[1] && masks[0] == masks[2], "the mask does not depend on the thread count (rate \(rate))")
    }
    let k = Kernels(threads: 1, isa: .best)
    var a = [Float](repeating: 0, count: 1000), b = a, ma = a, mb = a
    k.ok(nerve_dropout_forward(k.ctx, &a, &ma, Array(x.prefix(1000)), 1000, 0.5, 1))
    k.ok(nerve_dropout_forward(k.ctx, &b, &mb, Array(x.prefix(1000)), 1000, 0.5, 2))
    #expect(ma != mb, "another seed drops other values")
    #expect(nerve_dropout_forward(k.ctx, &a, &ma, x, 10, 1.0, 1) == NERVE_ERROR_BAD_ARGUMENT)
  }

  @Test("adaptive optimizer steps match the reference over several steps", arguments: configurations)
  func optimizers(_ key: String) {
    let k = DenseKernelTests.kernels(key)
    for n in [1, 17, 70_001] {
      let w0 = randomFloats(n, seed: 71)
      var w = w0, m = [Float](repeating: 0, count: n), v = m
      var rw = doubles(w0), rm = [Double](repeating: 0, count: n), rv = rm
      // Weight decay coupled (Adam's), decoupled (AdamW's) and none (the plain step).
      for (coupled, decoupled) in [(Float(0.05), Float(0)), (0, 0.05), (0, 0)] {
        w = w0; m = [Float](repeating: 0, count: n); v = m
        rw = doubles(w0); rm = [Double](repeating: 0, count: n); rv = rm
        for t in 1...3 {
          let g = randomFloats(n, seed: UInt64(72 + t))
          k.ok(nerve_adam_step(k.ctx, &w, &m, &v, g, Int64(n), 0.01, 0.9, 0.999, 1e-7, coupled, decoupled, Int64(t)))
          (rw, rm, rv) = Reference.adam(w: rw, m: rm, v: rv, g: doubles(g), lr: 0.01, beta1: 0.9, beta2: 0.999, eps: Double(Float(1e-7)), decay: Double(coupled + decoupled), decoupled: decoupled > 0, step: t)
        }
        expectClose(w, rw, rtol: 1e-5, atol: 1e-6, "adam, decay \(coupled), \(decoupled), n=\(n) \(k.label)")
        expectClose(m, rm, rtol: 1e-5, atol: 1e-6, "adam m")
        expectClose(v, rv, rtol: 1e-5, atol: 1e-7, "adam v")
      }
      var s = [Float](repeating: 0, count: n), e2 = s
      w = w0
      var rs = [Double](repeating: 0, count: n), re2 = rs
      rw = doubles(w0)
      for t in 1...3 {
        let g = randomFloats(n, seed: UInt64(80 + t))
        k.ok(nerve_rmsprop_step(k.ctx, &w, &s, g, Int64(n), 0.01, 0.9, 1e-7, 0.01))
        (rw, rs) = Reference.rmsprop(w: rw, s: rs, g: doubles(g), lr: 0.01, rho: 0.9, eps: Double(Float(1e-7)), decay: 0.01)
      }
      expectClose(w, rw, rtol: 1e-5, atol: 1e-6, "rmsprop n=\(n) \(k.label)")
      w = w0
      s = [Float](repeating: 0, count: n)
      rw = doubles(w0)
      rs = [Double](repeating: 0, count: n)
      for t in 1...3 {
        let g = randomFloats(n, seed: UInt64(90 + t))
        k.ok(nerve_adadelta_step(k.ctx, &w, &s, &e2, g, Int64(n), 1.0, 0.95, 1e-6, 0.0))
        (rw, rs, re2) = Reference.adadelta(w: rw, eg: rs, ex: re2, g: doubles(g), lr: 1.0, rho: 0.95, eps: Double(Float(1e-6)), decay: 0)
      }
      expectClose(w, rw, rtol: 1e-5, atol: 1e-6, "adadelta n=\(n) \(k.label)")
      w = w0
      var vel = randomFloats(n, seed: 99)
      var rvel = doubles(vel)
      rw = doubles(w0)
      let g = randomFloats(n, seed: 100)
      k.ok(nerve_nesterov_step(k.ctx, &w, &vel, g, Int64(n), 0.1, 0.9, 0.001))
      (rw, rvel) = Reference.nesterov(w: rw, v: rvel, g: doubles(g), lr: 0.1, mu: 0.9, decay: 0.001)
      expectClose(w, rw, "nesterov n=\(n) \(k.label)")
      expectClose(vel, rvel, "nesterov velocity")
    }
  }

  /// The fast recipe's second convolution on 40 images, unpadded and padded: with AVX-512 its
  /// forward's blocks of images are cut smaller for more threads (20, 3 and 2 images at 1, 2
  /// and 3 threads), so the rows meet the products' tiles in different company. (Without
  /// AVX-512 the blocks stay whole, and this is one more thread-independence case.)
  static let blockedGeometries = [
    RefGeometry(n: 40, h: 12, w: 12, c: 24, k: 32, kh: 3, kw: 3, sh: 1, sw: 1, same: false),
    RefGeometry(n: 40, h: 12, w: 12, c: 24, k: 32, kh: 3, kw: 3, sh: 1, sw: 1, same: true),
  ]

  @Test("image kernels are bit-identical at 1, 2 and 3 threads",
        arguments: [convGeometries[8], convGeometries[10]] + blockedGeometries)
  func threadIndependence(_ g: RefGeometry) {
    let x = sparseInputs(g.n * g.h, g.w * g.c, seed: 3), w = randomFloats(g.kh * g.kw * g.c * g.k, seed: 4)
    let dy = randomFloats(g.n * g.oh * g.ow * g.k, seed: 5)
    let sizes = [g.n, g.h, g.w, g.c, g.k, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow].map(Int64.init)
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      var runs: [[Float]] = []
      for threads in [1, 2, 3] {
        let k = Kernels(threads: threads, isa: isa)
        var y = [Float](repeating: 0, count: dy.count), dx = x, dw = w.map { _ in Float(0) }, db = [Float](repeating: 0, count: g.k)
        k.ok(nerve_conv2d_forward(k.ctx, &y, x, w, nil, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7], sizes[8], sizes[9], sizes[10], sizes[11], sizes[12]))
        k.ok(nerve_conv2d_backward(k.ctx, &dx, &dw, &db, dy, x, w, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7], sizes[8], sizes[9], sizes[10], sizes[11], sizes[12]))
        let r = 1000, c = 33
        let bx = randomFloats(r * c, seed: 6)
        var by = bx, mean = [Float](repeating: 0, count: c), inv = mean, rm = mean, rv = mean, bdx = bx, dg = mean, dbb = mean
        k.ok(nerve_batchnorm_forward_train(k.ctx, &by, &mean, &inv, &rm, &rv, bx, [Float](repeating: 1, count: c), [Float](repeating: 0, count: c), Int64(r), Int64(c), 0.99, 1e-3))
        k.ok(nerve_batchnorm_backward(k.ctx, &bdx, &dg, &dbb, bx, bx, [Float](repeating: 1, count: c), mean, inv, Int64(r), Int64(c)))
        var rdx = bx
        k.ok(nerve_batchnorm_backward_relu(k.ctx, &rdx, &dg, &dbb, bx, bx, [Float](repeating: 1, count: c), mean, inv, Int64(r), Int64(c)))
        runs.append(y + dx + dw + db + by + mean + inv + rm + rv + bdx + dg + dbb + rdx)
      }
      #expect(bitwiseEqual(runs[0], runs[1]) && bitwiseEqual(runs[0], runs[2]), "image kernels on \(isa)")
    }
  }

  /// Max pools whose channels are whole 64-byte lines (16 and 32): windows that tile the image,
  /// the last ones cut ("same") or leaving a row and a column no window covers (unpadded on an
  /// odd size). By the kernels' grains, the first two stream their forward and backward at 2
  /// and 3 threads, the third its backward only; the convolution before the pool runs as a team
  /// in the first.
  static let streamedPoolGeometries = [
    RefGeometry(n: 24, h: 24, w: 24, c: 16, k: 16, kh: 2, kw: 2, sh: 2, sw: 2, same: false),
    RefGeometry(n: 24, h: 11, w: 9, c: 32, k: 32, kh: 2, kw: 2, sh: 2, sw: 2, same: true),
    RefGeometry(n: 24, h: 11, w: 9, c: 32, k: 32, kh: 2, kw: 2, sh: 2, sw: 2, same: false),
  ]

  /// A team of threads writes a max pool's outputs with streaming stores where they are whole
  /// lines at 64-byte boundaries (pool.c's streams_outputs) and its context streams
  /// (nerve_context_set_stores; with AVX-512 only), and with ordinary stores 4 bytes off a
  /// boundary or where the context caches; one thread always stores ordinarily. Every way
  /// gives the same bits: the pool forward alone and after a convolution
  /// (nerve_conv2d_forward_maxpool), and the backward with -0 gradients (written 0 + -0 = +0).
  @Test("max pools streamed by a team write one thread's bits", arguments: streamedPoolGeometries)
  func streamedPool(_ g: RefGeometry) {
    let inCount = g.n * g.h * g.w * g.c, outCount = g.n * g.oh * g.ow * g.c
    let sizes = [g.n, g.h, g.w, g.c, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow].map(Int64.init)
    let x = randomFloats(inCount, seed: 81)
    var dy = randomFloats(outCount, seed: 82)
    for i in stride(from: 5, to: outCount, by: 9) { dy[i] = -0.0 }
    // The convolution before the pool: 3x3 over one channel, unpadded, to the pool's input size.
    let image = randomFloats(g.n * (g.h + 2) * (g.w + 2), seed: 83), w = randomFloats(9 * g.c, seed: 84)
    let conv = [g.n, g.h + 2, g.w + 2, 1, g.c, 3, 3, 1, 1, 0, 0, g.h, g.w].map(Int64.init)
    let ref = Reference.maxPoolForward(x: doubles(x), g: g)
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      var runs: [[Float]] = []
      forEachStoreWay(isa: isa) { k, offset, stores in
        let y = alignedBuffer(outCount, Float.nan), am = alignedBuffer(outCount, Int32(-7))
        let dx = alignedBuffer(inCount, Float.nan)
        let pooled = alignedBuffer(outCount, Float.nan), convAm = alignedBuffer(outCount, Int32(-7))
        defer { for p in [UnsafeMutableRawPointer(y), UnsafeMutableRawPointer(am), UnsafeMutableRawPointer(dx), UnsafeMutableRawPointer(pooled), UnsafeMutableRawPointer(convAm)] { nerve_free(p) } }
        k.ok(nerve_maxpool2d_forward(
          k.ctx, y + offset, am + offset, x, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7], sizes[8],
          sizes[9], sizes[10], sizes[11]))
        k.ok(nerve_maxpool2d_backward(
          k.ctx, dx + offset, dy, am + offset, sizes[0], sizes[1], sizes[2], sizes[3], sizes[4], sizes[5], sizes[6], sizes[7], sizes[8],
          sizes[9], sizes[10], sizes[11]))
        k.ok(nerve_conv2d_forward_maxpool(
          k.ctx, nil, pooled + offset, convAm + offset, image, w, nil, conv[0], conv[1], conv[2], conv[3], conv[4], conv[5], conv[6], conv[7],
          conv[8], conv[9], conv[10], conv[11], conv[12], sizes[4], sizes[5], sizes[6], sizes[7], sizes[8], sizes[9], sizes[10], sizes[11]))
        let ys = Array(UnsafeBufferPointer(start: y + offset, count: outCount))
        let ams = Array(UnsafeBufferPointer(start: am + offset, count: outCount))
        let convAms = Array(UnsafeBufferPointer(start: convAm + offset, count: outCount))
        let dxs = Array(UnsafeBufferPointer(start: dx + offset, count: inCount))
        expectClose(dxs, Reference.maxPoolBackward(dy: doubles(dy), argmax: ref.argmax, g: g), "max pool backward \(g) \(k.label), stores \(stores.rawValue)")
        expectClose(ys, ref.y, rtol: 0, atol: 0, "max pool \(g) \(k.label) at offset \(offset), stores \(stores.rawValue)")
        #expect(ams.map(Int.init) == ref.argmax, "argmax \(g) \(k.label) at offset \(offset), stores \(stores.rawValue)")
        runs.append(
          ys + ams.map { Float($0) } + dxs + Array(UnsafeBufferPointer(start: pooled + offset, count: outCount)) + convAms.map { Float($0) })
      }
      #expect(runs.allSatisfy { bitwiseEqual($0, runs[0]) }, "max pools by 1, 2 and 3 threads on \(isa), \(g)")
      let dx = runs[0][(2 * outCount)..<(2 * outCount + inCount)]
      #expect(!dx.contains { $0.bitPattern == (-0.0 as Float).bitPattern }, "no -0 in the pool's input gradient")
    }
  }

  /// Batch norm's input gradient is written by a team with streaming stores where its rows are
  /// whole lines at 64-byte boundaries and its context streams (norm.c's streams_din: under AUTO
  /// only while the cores are far apart, always under NERVE_STORES_STREAMED; AVX-512 only), and
  /// with ordinary stores 4 bytes off a boundary or where the context caches; one thread always
  /// stores ordinarily. Every way gives the same bits: from a whole gradient, and from the max
  /// pool's after it with and without the ReLU before it (the geometries of streamedPool: the
  /// first runs at up to 3 threads, the other two at 2, with a last buffer of fewer rows).
  @Test("batch norm's input gradient streamed by a team is one thread's bits", arguments: streamedPoolGeometries)
  func streamedBatchNormGradient(_ g: RefGeometry) {
    let r = g.n * g.h * g.w, c = g.c, outCount = g.n * g.oh * g.ow * c
    let pool = [g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow].map(Int64.init)
    let x = randomFloats(r * c, seed: 91, low: -2, high: 3), gamma = randomFloats(c, seed: 92), beta = randomFloats(c, seed: 93)
    let dy = randomFloats(r * c, seed: 94), dp = randomFloats(outCount, seed: 95)
    // The statistics and the pool's winners, from one thread: every run below takes them.
    let one = Kernels(threads: 1, isa: .best)
    var y = [Float](repeating: .nan, count: r * c), mean = [Float](repeating: 0, count: c), invstd = mean, rm = mean, rv = mean
    one.ok(nerve_batchnorm_forward_train(one.ctx, &y, &mean, &invstd, &rm, &rv, x, gamma, beta, Int64(r), Int64(c), 0.9, 1e-3))
    var pooled = [Float](repeating: .nan, count: outCount), am = [Int32](repeating: -7, count: outCount)
    one.ok(nerve_maxpool2d_forward(
      one.ctx, &pooled, &am, y, Int64(g.n), Int64(g.h), Int64(g.w), Int64(c), pool[0], pool[1], pool[2], pool[3], pool[4], pool[5],
      pool[6], pool[7]))
    let back = Reference.batchNormBackward(dy: doubles(dy), x: doubles(x), gamma: doubles(gamma), r: r, c: c, eps: 1e-3)
    for isa in InstructionSet.allCases where isa.rawValue <= InstructionSet.best.rawValue {
      var runs: [[Float]] = []
      forEachStoreWay(isa: isa) { k, offset, stores in
        var run: [Float] = []
        for form in 0..<3 {  // whole gradient; from the pool's, without and with the ReLU
          let dx = alignedBuffer(r * c, Float.nan)
          defer { nerve_free(dx) }
          var dgamma = [Float](repeating: 1, count: c), dbeta = dgamma
          k.ok(form == 0
            ? nerve_batchnorm_backward(k.ctx, dx + offset, &dgamma, &dbeta, dy, x, gamma, mean, invstd, Int64(r), Int64(c))
            : nerve_batchnorm_backward_maxpool2d(
              k.ctx, dx + offset, &dgamma, &dbeta, dp, am, x, gamma, mean, invstd, Int64(g.n), Int64(g.h), Int64(g.w), Int64(c),
              pool[0], pool[1], pool[2], pool[3], pool[4], pool[5], pool[6], pool[7], form == 2 ? 1 : 0))
          let dxs = Array(UnsafeBufferPointer(start: dx + offset, count: r * c))
          if form == 0 {
            expectClose(dxs, back.dx, rtol: 1e-3, atol: 1e-4, "batch norm input gradient \(g) \(k.label), stores \(stores.rawValue)")
          }
          #expect(!dxs.contains { $0.isNaN }, "every row of din written \(g) \(k.label), form \(form)")
          run += dxs + dgamma + dbeta
        }
        runs.append(run)
      }
      #expect(runs.allSatisfy { bitwiseEqual($0, runs[0]) }, "batch norm input gradients by 1, 2 and 3 threads on \(isa), \(g)")
    }
  }

  @Test("image kernels reject bad geometry with a message")
  func badGeometry() {
    let k = Kernels(threads: 1, isa: .best)
    var out = [Float](repeating: 0, count: 100), am = [Int32](repeating: 0, count: 100)
    let x = [Float](repeating: 1, count: 100)
    // Padding as large as the kernel.
    #expect(nerve_conv2d_forward(k.ctx, &out, x, x, nil, 1, 5, 5, 1, 1, 3, 3, 1, 1, 3, 0, 5, 3) == NERVE_ERROR_BAD_ARGUMENT)
    #expect(String(cString: nerve_context_last_error(k.ctx)).contains("padding"))
    // An output too large for the input.
    #expect(nerve_conv2d_forward(k.ctx, &out, x, x, nil, 1, 5, 5, 1, 1, 3, 3, 1, 1, 0, 0, 9, 3) == NERVE_ERROR_BAD_SIZE)
    #expect(nerve_maxpool2d_forward(k.ctx, &out, &am, x, 1, 4, 4, 1, 0, 2, 2, 2, 0, 0, 2, 2) == NERVE_ERROR_BAD_SIZE)
    // Sizes whose products overflow are refused before any is taken (N * H * W wraps to 0).
    #expect(nerve_maxpool2d_forward(k.ctx, &out, &am, x, 1 << 62, 2, 2, 1, 2, 2, 2, 2, 0, 0, 1, 1) == NERVE_ERROR_BAD_SIZE)
    // A window whose area overflows (2^32 x 2^32) over a 1x1 image: refused, not divided by.
    #expect(nerve_maxpool2d_forward(k.ctx, &out, &am, x, 1, 1, 1, 1, 1 << 32, 1 << 32, 1, 1, 0, 0, 1, 1) == NERVE_ERROR_BAD_SIZE)
    #expect(nerve_maxpool2d_backward(k.ctx, &out, x, am, 1, 1, 1, 1, 1 << 32, 1 << 32, 1, 1, 0, 0, 1, 1) == NERVE_ERROR_BAD_SIZE)
    #expect(nerve_avgpool2d_forward(k.ctx, &out, x, 1, 1, 1, 1, 1 << 32, 1 << 32, 1, 1, 0, 0, 1, 1) == NERVE_ERROR_BAD_SIZE)
    #expect(nerve_avgpool2d_forward(k.ctx, &out, nil, 1, 4, 4, 1, 2, 2, 2, 2, 0, 0, 2, 2) == NERVE_ERROR_NULL_POINTER)
    var m = [Float](repeating: 0, count: 2), i = m, rm = m, rv = m
    #expect(nerve_batchnorm_forward_train(k.ctx, &out, &m, &i, &rm, &rv, x, x, x, 2, 2, 1.5, 1e-3) == NERVE_ERROR_BAD_ARGUMENT)
    #expect(nerve_conv2d_workspace_size(0, 5, 5, 1, 1, 3, 3, 1, 1, 0, 0, 3, 3) == 0)
    #expect(nerve_conv2d_workspace_size(4, 28, 28, 1, 32, 3, 3, 1, 1, 1, 1, 28, 28) > 0)
    var am1 = [Float](repeating: 0, count: 4), am2 = am1
    #expect(nerve_adam_step(k.ctx, &out, &am1, &am2, x, 4, 0.1, 0.9, 0.999, 1e-7, 0, 0, 0) == NERVE_ERROR_BAD_ARGUMENT, "step 0")
  }
}


/// A first convolution, its ReLU, a batch norm and a 2x2 max pool over `g`'s output, their
/// forward made once, for the calls that take the first layer's and the norm's gradients.
struct NormedConvolution {
  let g: RefGeometry, p: RefGeometry
  let x: [Float], w: [Float], out: [Float], gamma: [Float], mean: [Float], invstd: [Float], dp: [Float]
  let am: [Int32], conv: [Int64], pool: [Int64], rows: Int
  /// dw, db, dgamma and dbeta before a call.
  let start: [Float]

  init(_ k: Kernels, _ g: RefGeometry) {
    self.g = g
    p = RefGeometry(n: g.n, h: g.oh, w: g.ow, c: g.k, k: g.k, kh: 2, kw: 2, sh: 2, sw: 2, same: false)
    x = sparseInputs(g.n * g.h, g.w * g.c, seed: 31)
    w = randomFloats(g.kh * g.kw * g.c * g.k, seed: 32)
    conv = [g.n, g.h, g.w, g.c, g.k, g.kh, g.kw, g.sh, g.sw, g.pt, g.pl, g.oh, g.ow].map(Int64.init)
    pool = [p.kh, p.kw, p.sh, p.sw, p.pt, p.pl, p.oh, p.ow].map(Int64.init)
    rows = g.n * g.oh * g.ow
    let pooledCount = g.n * p.oh * p.ow * g.k, c = conv, q = pool
    // The norm's input: the convolution's output through a ReLU (about half zeros).
    var out = [Float](repeating: .nan, count: rows * g.k)
    k.ok(nerve_conv2d_forward(k.ctx, &out, x, w, nil, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]))
    self.out = out.map { max($0, 0) }
    gamma = randomFloats(g.k, seed: 33)
    var y = self.out, mean = [Float](repeating: 0, count: g.k), invstd = mean, runMean = mean, runVar = mean
    k.ok(nerve_batchnorm_forward_train(
      k.ctx, &y, &mean, &invstd, &runMean, &runVar, self.out, gamma, randomFloats(g.k, seed: 34), Int64(rows), Int64(g.k),
      0.9, 1e-3))
    self.mean = mean
    self.invstd = invstd
    var pooled = [Float](repeating: .nan, count: pooledCount), am = [Int32](repeating: -7, count: pooledCount)
    k.ok(nerve_maxpool2d_forward(k.ctx, &pooled, &am, y, c[0], c[11], c[12], c[4], q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]))
    self.am = am
    var dp = randomFloats(pooledCount, seed: 35)
    for i in stride(from: 4, to: pooledCount, by: 9) { dp[i] = -0.0 }
    self.dp = dp
    start = randomFloats(w.count + 3 * g.k, seed: 36)
  }

  /// nerve_conv2d_backward_batchnorm_maxpool over the first `images` (all if nil), its four
  /// gradients from `from`.
  func oneCall(_ k: Kernels, relu: Bool, from: [Float], images: Int? = nil) -> [Float] {
    var all = from
    let c = conv, q = pool, n = Int64(images ?? g.n)
    all.withUnsafeMutableBufferPointer { t in
      let dw = t.baseAddress!, db = dw + w.count, dgamma = db + g.k, dbeta = dgamma + g.k
      k.ok(nerve_conv2d_backward_batchnorm_maxpool(
        k.ctx, dw, db, dgamma, dbeta, dp, am, out, gamma, mean, invstd, relu ? 1 : 0, x, n, c[1], c[2], c[3], c[4], c[5],
        c[6], c[7], c[8], c[9], c[10], c[11], c[12], q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7]), "\(g) relu \(relu)")
    }
    return all
  }

  /// The two calls it stands for, the norm's input gradient left in din.
  func twoCalls(_ k: Kernels, relu: Bool, from: [Float], din: inout [Float], images: Int? = nil) -> [Float] {
    var all = from
    let c = conv, q = pool, n = Int64(images ?? g.n)
    all.withUnsafeMutableBufferPointer { t in
      let dw = t.baseAddress!, db = dw + w.count, dgamma = db + g.k, dbeta = dgamma + g.k
      k.ok(nerve_batchnorm_backward_maxpool2d(
        k.ctx, &din, dgamma, dbeta, dp, am, out, gamma, mean, invstd, n, c[11], c[12], c[4], q[0], q[1], q[2], q[3], q[4],
        q[5], q[6], q[7], relu ? 1 : 0))
      k.ok(nerve_conv2d_backward(
        k.ctx, nil, dw, db, din, x, w, n, c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]))
    }
    return all
  }

  /// nerve_conv2d_backward_sliced from the stored din, share after share of the batch (each a
  /// call on its images, the whole batch set as ranks set it), the weight and bias from `start`.
  func sliced(_ k: Kernels, din: [Float], shares: [(Int, Int)]) -> [Float] {
    var sums = Array(start[..<(w.count + g.k)])
    let c = conv, perImage = g.oh * g.ow * g.k, perInput = g.h * g.w * g.c
    k.ok(nerve_context_set_whole_batch(k.ctx, Int64(g.n)))
    for (n0, n1) in shares {
      sums.withUnsafeMutableBufferPointer { t in
        k.ok(nerve_conv2d_backward_sliced(
          k.ctx, t.baseAddress!, t.baseAddress! + w.count, Array(din[(n0 * perImage)...]), Array(x[(n0 * perInput)...]),
          Int64(n1 - n0), c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9], c[10], c[11], c[12]), "\(g) images \(n0)..<\(n1)")
      }
    }
    k.ok(nerve_context_set_whole_batch(k.ctx, 0))
    return sums
  }

  /// Overlapping windows and a pool that does not fit are refused, and nothing is written.
  func expectRefusals(_ k: Kernels) {
    let c = conv, overlapping = (3, 2, (g.oh - 3) / 2 + 1, (g.ow - 3) / 2 + 1, NERVE_ERROR_BAD_ARGUMENT)
    for (window, stride, rows, columns, error) in [overlapping, (2, 2, g.oh + 1, p.ow, NERVE_ERROR_BAD_SIZE)] {
      var all = [Float](repeating: 5, count: w.count + 3 * g.k)
      let status = all.withUnsafeMutableBufferPointer { t in
        let dw = t.baseAddress!, db = dw + w.count, dgamma = db + g.k, dbeta = dgamma + g.k
        return nerve_conv2d_backward_batchnorm_maxpool(
          k.ctx, dw, db, dgamma, dbeta, dp, am, out, gamma, mean, invstd, 1, x, c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
          c[8], c[9], c[10], c[11], c[12], Int64(window), Int64(window), Int64(stride), Int64(stride), 0, 0, Int64(rows),
          Int64(columns))
      }
      #expect(status == error && all.allSatisfy { $0 == 5 }, "refused \(window)x\(window) windows, \(rows) rows: \(status)")
    }
  }
}
