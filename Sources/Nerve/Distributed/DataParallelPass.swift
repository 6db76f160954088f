// DataParallelPass: one rank's part in a data-parallel step, and how it keeps the result
// byte-identical to one process training on the whole batch.
//
// Each rank runs forward and backward on its own contiguous rows of the global batch (rank
// order = row order). Three things would otherwise depend on the split:
// - Parameter gradients are sums over the batch's rows. The kernels add rows one after another
//   into the gradient they are given (dense and convolution products are one chain of fused
//   multiply-adds per element; bias sums add rows in order). So the sums are passed along the
//   ranks as an ordered reduction: rank r receives layer i's partial sum from rank r - 1, adds
//   its rows and hands it on; the last rank holds exactly what one process computes, and
//   broadcasts it. Each rank computes its input gradients before waiting, so rank r's chain
//   work overlaps rank r - 1's. A dense layer that takes plain SGD's step inside backward
//   (fused) passes its parameters along the chain instead, as one process updates them row by
//   row. A first convolution with a max pool after it sums its gradients slice by slice of the
//   batch instead (nerve_conv2d_backward_maxpool, each slice's chain from zero): there each
//   rank's share is whole slices (Sequential.shareGranularity), and the chain carries the sum
//   of the slices before it, as one process adds them. So too where a batch norm lies between
//   the two (Lab E): one process makes the norm's input gradient inside the same slices' sums
//   (nerve_conv2d_backward_batchnorm_maxpool), each rank sums its slices from the gradient the
//   norm's whole-batch backward gave it (nerve_conv2d_backward_sliced), the same bits.
// - Batch statistics (batch normalisation) need every row: such layers gather the whole
//   batch's input (and, backward, output gradient) on every rank and run on all of it.
// - Dropout masks are drawn by the global row (LayerIO.firstRow).
// Loss values and correct counts are added over ranks for the metrics; the loss sum can differ
// from one process's in its last bits (its kernel sums in chunks of its own rows).
import CNerve

final class DataParallelPass {
  let ranks: Communicator
  let model: Sequential
  /// This rank's rows of the current batch, and the batch's size.
  private(set) var rows: Range<Int> = 0..<0
  private(set) var batchRows = 0
  /// Layers that need the whole batch: their gathered inputs, outputs, gradients and scratch
  /// (nil for other layers), sized for the largest batch.
  private let whole: [WholeBatchBuffers?]
  private let counts: UnsafeMutablePointer<Int32>
  private let offsets: UnsafeMutablePointer<Int32>

  struct WholeBatchBuffers {
    let input, output, inputGradient, outputGradient, scratch: FloatBuffer
  }

  init(ranks: Communicator, model: Sequential, batchCapacity: Int) throws {
    self.ranks = ranks
    self.model = model
    whole = try model.layers.map { layer in
      guard layer.needsWholeBatch else { return nil }
      let inCount = layer.inputShape.reduce(1, *), outCount = layer.outputShape.reduce(1, *)
      let floats = try Sizes.product([batchCapacity, 2 * (inCount + outCount)], of: "a gathered batch", at: "training")
      try Memory.check(floats: floats, for: "gathering batches of \(batchCapacity) for \(layer.typeName)", at: "training")
      return WholeBatchBuffers(
        input: FloatBuffer(count: batchCapacity * inCount), output: FloatBuffer(count: batchCapacity * outCount),
        inputGradient: FloatBuffer(count: batchCapacity * inCount),
        outputGradient: FloatBuffer(count: batchCapacity * outCount),
        scratch: FloatBuffer(count: max(layer.scratchCount(batch: batchCapacity), 1)))
    }
    counts = .allocate(capacity: ranks.size)
    offsets = .allocate(capacity: ranks.size)
  }

  deinit {
    counts.deallocate()
    offsets.deallocate()
  }

  /// Starts a step over a batch of `rows` rows; returns this rank's share: whole slices of the
  /// batch where the model sums its first layer's gradients slice by slice
  /// (Sequential.shareGranularity), so each rank adds whole slices to the chain as one process does.
  func begin(batchRows rows: Int) -> Range<Int> {
    batchRows = rows
    self.rows = ranks.share(of: rows, granularity: model.shareGranularity(batchRows: rows))
    return self.rows
  }

  var isLast: Bool { ranks.rank == ranks.size - 1 }

  // MARK: Layers that need the whole batch

  func needsWholeBatch(_ layer: Int) -> Bool { whole[layer] != nil }

  /// Gathers every rank's rows of `local` (`width` floats a row) into `all`.
  private func gather(_ local: UnsafePointer<Float>, into all: UnsafeMutablePointer<Float>, width: Int) throws {
    let granularity = model.shareGranularity(batchRows: batchRows)
    for r in 0..<ranks.size {
      let share = rankShare(of: batchRows, rank: r, size: ranks.size, granularity: granularity)
      counts[r] = Int32(share.count * width)
      offsets[r] = Int32(share.lowerBound * width)
    }
    try ranks.allGather(local, into: all, counts: counts, offsets: offsets)
  }

  /// Layer `i`'s forward on the whole batch; `io` describes this rank's rows, whose outputs
  /// are copied back.
  func forwardWholeBatch(_ i: Int, _ io: LayerIO) throws {
    let layer = model.layers[i], w = whole[i]!
    let inCount = layer.inputShape.reduce(1, *), outCount = layer.outputShape.reduce(1, *)
    try gather(io.input, into: w.input.pointer, width: inCount)
    try layer.forward(
      io.replacing(batch: batchRows, input: w.input.pointer, output: w.output.pointer, scratch: w.scratch.pointer, firstRow: 0))
    io.output.update(from: w.output.pointer + rows.lowerBound * outCount, count: rows.count * outCount)
  }

  /// Layer `i`'s backward on the whole batch: every rank computes the same parameter
  /// gradients in full, and keeps its rows of the input gradient.
  func backwardWholeBatch(_ i: Int, _ io: LayerIO) throws {
    let layer = model.layers[i], w = whole[i]!
    let inCount = layer.inputShape.reduce(1, *), outCount = layer.outputShape.reduce(1, *)
    try gather(io.outputGradient!, into: w.outputGradient.pointer, width: outCount)
    try layer.backward(
      io.replacing(
        batch: batchRows, input: w.input.pointer, output: w.output.pointer, scratch: w.scratch.pointer, firstRow: 0,
        inputGradient: io.inputGradient == nil ? nil : w.inputGradient.pointer,
        outputGradient: w.outputGradient.pointer))
    if let din = io.inputGradient {
      din.update(from: w.inputGradient.pointer + rows.lowerBound * inCount, count: rows.count * inCount)
    }
  }

  // MARK: Parameter gradients along the ranks

  /// Layer `i`'s backward with its parameter sums passed along the ranks (see the top of the
  /// file). `fused` is the step the layer takes inside backward in one process, if it does:
  /// SGD's travels along the chain; Adam's is taken from the complete gradient afterwards.
  /// `parameterBackward`, if given, computes the parameter sums in place of the layer's own
  /// backward (a first convolution's from its pool's gradient).
  func backwardChained(
    _ i: Int, _ io: LayerIO, fused: FusedStep?, parameterBackward: ((LayerIO) throws -> Void)? = nil
  ) throws {
    let layer = model.layers[i]
    let chain = io.parameterGradients!, count = layer.parameterCount
    // This rank's input gradient first, with the parameters the step started from.
    if io.inputGradient != nil { try layer.backwardInput(io, fused: fused) }
    let sgd: FusedStep? = if case .sgd = fused { fused } else { nil }
    if ranks.rank > 0 {
      try ranks.receive(chain, count: count, from: ranks.rank - 1, tag: i)
    } else if sgd != nil {
      chain.update(from: io.parameters, count: count)
    }
    if let sgd {
      try layer.backwardUpdate(io.replacing(parameters: chain, inputGradient: .some(nil)), step: sgd)
    } else if let parameterBackward {
      try parameterBackward(io.replacing(inputGradient: .some(nil)))
    } else {
      try layer.backward(io.replacing(inputGradient: .some(nil)))
    }
    if !isLast { try ranks.send(chain, count: count, to: ranks.rank + 1, tag: i) }
  }

  /// Ends the backward pass: the last rank's sums (and fused layers' parameters) go to every
  /// rank, into `gradients`.
  func finishBackward(gradients: UnsafeMutablePointer<Float>, count: Int) throws {
    try ranks.waitForSends()
    try ranks.broadcast(gradients, bytes: count * MemoryLayout<Float>.stride, from: ranks.size - 1)
  }
}

extension LayerIO {
  /// This call's description with some buffers or sizes replaced (`.some(nil)` removes an
  /// optional buffer).
  func replacing(
    batch: Int? = nil, input: UnsafeMutablePointer<Float>? = nil, output: UnsafeMutablePointer<Float>? = nil,
    scratch: UnsafeMutablePointer<Float>? = nil, firstRow: Int? = nil, parameters: UnsafeMutablePointer<Float>? = nil,
    inputGradient: UnsafeMutablePointer<Float>?? = nil, outputGradient: UnsafeMutablePointer<Float>?? = nil,
    parameterGradients: UnsafeMutablePointer<Float>?? = nil
  ) -> LayerIO {
    var io = LayerIO(
      context: context, batch: batch ?? self.batch, input: input ?? self.input, output: output ?? self.output,
      inputGradient: inputGradient ?? self.inputGradient, outputGradient: outputGradient ?? self.outputGradient,
      parameters: parameters ?? self.parameters, parameterGradients: parameterGradients ?? self.parameterGradients,
      state: state, scratch: scratch ?? self.scratch, training: training, stepSeed: stepSeed)
    io.firstRow = firstRow ?? self.firstRow
    return io
  }
}
