// The forward and backward passes of a Sequential model over a batch, and the plan of buffers
// they run in. Shapes: every buffer is [batch, values per sample] row-major.
import CNerve

/// A point in a model's forward pass: the output of layer `layer`, or its output before the
/// layer's own activation (the logits a loss with a fused softmax reads).
struct LayerPoint: Equatable {
  var layer: Int
  var beforeActivation = false
}

extension Sequential {
  /// Activations, gradients and scratch for batches of up to `capacity` samples, allocated
  /// once so that passes allocate nothing.
  final class Plan {
    let capacity: Int
    /// outputs[i]: layer i's output, after its own activation.
    let outputs: [UnsafeMutablePointer<Float>]
    /// gradients[i] = dLoss/d(outputs[i]); empty for inference plans.
    let gradients: [UnsafeMutablePointer<Float>]
    /// Layer i's output before its own activation (the same buffer as outputs[i] if it has none).
    let coreOutputs: [UnsafeMutablePointer<Float>]
    /// dLoss/d(coreOutputs[i]) (the same buffer as gradients[i] without an activation).
    let coreGradients: [UnsafeMutablePointer<Float>]
    let scratch: [UnsafeMutablePointer<Float>]
    private let storage: FloatBuffer
    /// Floats for a chunk of images given as bytes, made on first use (see `pixelFloats`).
    private var pixelStorage: FloatBuffer?

    /// Bytes of layer workspace the model's layers need at this capacity.
    let workspaceBytes: Int

    /// Where each buffer lies in one allocation of `total` floats.
    struct Layout {
      var outputs: [Int] = [], gradients: [Int] = [], coreOutputs: [Int] = [], coreGradients: [Int] = []
      var scratch: [Int] = []
      var total = 0
    }

    /// The buffers' layout for batches of `capacity`: per layer its core's output, gradient
    /// and scratch, then its activation's output and gradient (a flatten shares its input's;
    /// in inference a relu shares its layer's, and a batch norm its input's).
    /// Sizes are checked as they add up.
    static func layout(model: Sequential, capacity: Int, training: Bool) throws -> Layout {
      var l = Layout()
      func take(_ dims: [Int]) throws -> Int {
        let n = try Sizes.product(dims, of: "a batch's activations", at: "batch of \(capacity)")
        defer { l.total += (n + 15) / 16 * 16 }
        guard Sizes.product([l.total + n + 16]) != nil else {
          throw NerveError(.badValue, at: "batch of \(capacity)", "the activations of a batch are too many to count")
        }
        return l.total
      }
      for (index, layer) in model.layers.enumerated() {
        if index > 0, layer is Flatten, layer.activationLayer == nil {
          // A flatten changes the shape, not the values: its buffers are its input's (copying
          // Lab E's 6272 values a sample took 4-7% of predicting with it, on one thread).
          l.coreOutputs.append(l.outputs[index - 1])
          if training { l.coreGradients.append(l.gradients[index - 1]) }
          l.scratch.append(try take([layer.scratchCount(batch: capacity)]))
          l.outputs.append(l.outputs[index - 1])
          if training { l.gradients.append(l.gradients[index - 1]) }
          continue
        }
        if !training, index > 0, layer is BatchNorm, layer.activationLayer == nil {
          // Inference normalises in place (its kernel reads each value before it writes it),
          // or not at all where the max pool after it normalises as it reads (`normPooled`):
          // Lab E's CNN then takes about 215 images a chunk instead of about 130, so its
          // 6272 -> 784 product copies its weights for more rows at a time. A pass reads only
          // its last layer's outputs, so the input's values may go.
          l.coreOutputs.append(l.outputs[index - 1])
          l.scratch.append(try take([layer.scratchCount(batch: capacity)]))
          l.outputs.append(l.outputs[index - 1])
          continue
        }
        let out = [capacity] + layer.outputShape
        let core = [capacity] + (layer.activationLayer?.inputShape ?? layer.outputShape)
        l.coreOutputs.append(try take(core))
        if training { l.coreGradients.append(try take(core)) }
        l.scratch.append(try take([layer.scratchCount(batch: capacity)]))
        if !training, (layer.activationLayer as? ActivationLayer)?.function == .relu {
          // Inference keeps no pre-activation values: relu runs in place (its kernel has an
          // in-place loop; the others are written for separate buffers).
          l.outputs.append(l.coreOutputs.last!)
        } else if layer.activationLayer != nil {
          l.outputs.append(try take(out))
          if training { l.gradients.append(try take(out)) }
        } else {
          l.outputs.append(l.coreOutputs.last!)
          if training { l.gradients.append(l.coreGradients.last!) }
        }
      }
      return l
    }

    /// Floats a plan for `capacity` samples needs (checked against memory before allocating).
    static func floats(model: Sequential, capacity: Int, training: Bool) throws -> Int {
      try layout(model: model, capacity: capacity, training: training).total
    }

    init(model: Sequential, capacity: Int, training: Bool) throws {
      self.capacity = capacity
      workspaceBytes = model.layers.map { $0.workspaceBytes(batch: capacity) }.max() ?? 0
      let l = try Self.layout(model: model, capacity: capacity, training: training)
      try Memory.check(floats: l.total, for: "the activations of a batch of \(capacity)", at: "model")
      storage = FloatBuffer(count: l.total)
      let base = storage.pointer
      outputs = l.outputs.map { base + $0 }
      gradients = l.gradients.map { base + $0 }
      coreOutputs = l.coreOutputs.map { base + $0 }
      coreGradients = l.coreGradients.map { base + $0 }
      scratch = l.scratch.map { base + $0 }
    }

    /// Room for `count` floats, kept from call to call: a chunk of images given as bytes, made
    /// floats for a first layer that does not read bytes (count 0: a pointer no layer reads,
    /// for one that does).
    func pixelFloats(count: Int) throws -> UnsafeMutablePointer<Float> {
      if pixelStorage == nil || pixelStorage!.count < max(count, 1) {
        try Memory.check(floats: count, for: "a chunk of images made floats", at: "model")
        pixelStorage = FloatBuffer(count: max(count, 1))
      }
      return pixelStorage!.pointer
    }
  }

  /// The point after the last layer.
  var end: LayerPoint { LayerPoint(layer: layers.count - 1) }

  /// Runs the layers up to `stop` (the whole model by default) on `batch` samples at `input`;
  /// layer i writes `plan.coreOutputs[i]` and, through its activation, `plan.outputs[i]`.
  /// `listed`: the same input as non-zero entries, for the first layer to read if it can;
  /// `pixels`: the same input as bytes, for a first layer that reads them (`readsPixels`).
  func forward(
    _ input: UnsafeMutablePointer<Float>, batch: Int, plan: Plan, context: ComputeContext,
    training: Bool, step: UInt64 = 0, firstRow: Int = 0, through stop: LayerPoint? = nil,
    ranks: DataParallelPass? = nil, listed: SparseSlice? = nil, pixels: PixelRows? = nil
  ) throws {
    let stop = stop ?? end
    var x = input
    for i in 0...stop.layer {
      let layer = layers[i]
      let poolsRelu = i > 0 && poolsBeforeRelu(i - 1, through: stop, ranks: ranks)
      let reluInside = convolutionTakesRelu(i, through: stop, ranks: ranks)
      let activationInside = denseTakesActivation(i, through: stop, ranks: ranks)
      var core = io(
        i, context: context, batch: batch, input: poolsRelu ? plan.coreOutputs[i - 1] : x,
        output: reluInside || activationInside ? plan.outputs[i] : plan.coreOutputs[i], plan: plan,
        training: training, step: step, firstRow: firstRow)
      if i == 0 { core.sparseInput = listed; core.pixelInput = pixels }
      if i > 0 && (convolutionPools(i - 1, through: stop, ranks: ranks)
        || normPooled(i - 1, through: stop, ranks: ranks))
      {
        // Done: the convolution or batch norm before it pooled its output.
      } else if normPooled(i, through: stop, ranks: ranks), let norm = layer as? BatchNorm,
        let pool = layers[i + 1] as? MaxPool2D
      {
        if training { try norm.forwardStatistics(core) } else { norm.inferenceStatistics(core) }
        try pool.forwardNormalized(
          io(i + 1, context: context, batch: batch, input: plan.outputs[i], output: plan.coreOutputs[i + 1],
             plan: plan, training: training, step: step, firstRow: firstRow),
          by: norm, normIO: core)
      } else if reluInside, let conv = layer as? Conv2D {
        try conv.forwardThroughRelu(core)
      } else if activationInside, let dense = layer as? Dense {
        try dense.forwardThroughActivation(core)
      } else if let ranks, ranks.needsWholeBatch(i) {
        try ranks.forwardWholeBatch(i, core)
      } else if convolutionPools(i, through: stop, ranks: ranks), let conv = layer as? Conv2D,
        let pool = layers[i + 1] as? MaxPool2D
      {
        try conv.forward(core, pooledBy: pool, into: plan.coreOutputs[i + 1], scratch: plan.scratch[i + 1])
      } else {
        try layer.forward(core)
      }
      if poolsRelu {
        try context.check(
          nerve_activation_forward(
            context.raw, NERVE_ACTIVATION_RELU, plan.outputs[i], plan.outputs[i], Int64(batch * layer.outputShape.reduce(1, *))))
      }
      if let activation = layer.activationLayer, !(i == stop.layer && stop.beforeActivation),
        !poolsBeforeRelu(i, through: stop, ranks: ranks), !reluInside, !activationInside
      {
        try activation.forward(
          io(i, context: context, batch: batch, input: plan.coreOutputs[i], output: plan.outputs[i],
             plan: plan, training: training, step: step, firstRow: firstRow, activation: true))
      }
      x = plan.outputs[i]
    }
  }

  /// Whether a pass up to `stop` swaps layer `i`'s relu and the max pool after it: pooling the
  /// pre-activation output and applying relu to the pooled values gives the same values
  /// (max and relu commute) and the same gradients (a window's gradient passes to its maximum
  /// only if that maximum is positive), but skips a pass over the larger maps each way, and
  /// layer `i`'s `outputs` and `gradients` are never written. So a pass swaps nothing at its
  /// `stop` layer, whose outputs its caller reads (inference stops at the layer asked for).
  /// The one difference: a window whose maximum is -0.0 pools to -0.0 instead of +0.0, which
  /// changes no sum that follows.
  func poolsBeforeRelu(_ i: Int, through stop: LayerPoint, ranks: DataParallelPass?) -> Bool {
    (layers[i].activationLayer as? ActivationLayer)?.function == .relu && poolFollows(i, through: stop, ranks: ranks)
  }

  /// Whether a pass up to `stop` runs layer `i`, a convolution, and the max pool after it as
  /// one call (nerve_conv2d_forward_maxpool: each block of images pooled while the
  /// convolution's output for it is in cache; the same values). Only where the pool reads the
  /// convolution's own output: without an activation, or with a relu moved after the pool.
  func convolutionPools(_ i: Int, through stop: LayerPoint, ranks: DataParallelPass?) -> Bool {
    guard layers[i] is Conv2D else { return false }
    return layers[i].activationLayer == nil
      ? poolFollows(i, through: stop, ranks: ranks) : poolsBeforeRelu(i, through: stop, ranks: ranks)
  }

  /// Whether a pass up to `stop` runs layer `i`, a convolution, and its relu as one call
  /// (nerve_conv2d_forward_relu), writing `outputs[i]` and never `coreOutputs[i]`, which
  /// nothing then reads (relu's backward needs its output only). Not at a `stop` before the
  /// activation, whose caller reads the pre-activation values, nor where the relu moves after
  /// a max pool.
  func convolutionTakesRelu(_ i: Int, through stop: LayerPoint, ranks: DataParallelPass?) -> Bool {
    guard layers[i] is Conv2D, (layers[i].activationLayer as? ActivationLayer)?.function == .relu else {
      return false
    }
    return !(i == stop.layer && stop.beforeActivation) && !poolsBeforeRelu(i, through: stop, ranks: ranks)
      && !(ranks?.needsWholeBatch(i) ?? false)
  }

  /// Whether a pass up to `stop` runs layer `i`, a dense layer, and its activation as one call
  /// (nerve_dense_forward_activation and its sparse form: each thread's rows taken through the
  /// activation as the product leaves them), writing `outputs[i]` and never `coreOutputs[i]`,
  /// which nothing then reads: for activations whose backward needs their output alone, not at a
  /// `stop` before the activation, and in one process.
  func denseTakesActivation(_ i: Int, through stop: LayerPoint, ranks: DataParallelPass?) -> Bool {
    guard let dense = layers[i] as? Dense, dense.activation.derivativeFromOutput else { return false }
    return !(i == stop.layer && stop.beforeActivation) && !poolsBeforeRelu(i, through: stop, ranks: ranks)
      && ranks == nil
  }

  /// Whether a pass up to `stop` joins layer `i`, a batch norm, to the max pool after it: the
  /// norm's statistics only (in inference, its running averages as it normalises by them),
  /// then the pool normalising as it reads the norm's input (nerve_maxpool2d_forward_normalized),
  /// so the norm's `outputs` are never written (nothing else reads them: the norm's backward
  /// reads its input); and backward, the norm's from the pool's gradient
  /// (nerve_batchnorm_backward_maxpool2d), so the pool's backward writes nothing. For windows
  /// apart (each pixel's gradient from one window) and neither layer with an activation of its
  /// own. (In inference, Lab E's CNN wrote and read its 28 x 28 x 32 normalised maps.)
  func normPooled(_ i: Int, through stop: LayerPoint, ranks: DataParallelPass?) -> Bool {
    guard layers[i] is BatchNorm, layers[i].activationLayer == nil,
      poolFollows(i, through: stop, ranks: ranks), let pool = layers[i + 1] as? MaxPool2D
    else { return false }
    return pool.activationLayer == nil && pool.windowsApart
  }

  /// Whether a training pass up to `stop` takes layer `i`'s parameter gradients, a first
  /// convolution's, from the gradient of the max pool after it (Conv2D.parameterBackward): where
  /// the forward ran the two as one call (`convolutionPools`) and nothing needs the input
  /// gradient (layer 0, the data). The pool's backward then writes nothing, and the
  /// convolution's output gradient, the largest map of a first layer, is never written where
  /// the pool's windows tile it. Not with an activation on the pool, whose gradient the pool's
  /// own backward would read, nor where the kernel would write the output gradient after all
  /// (overlapping windows, more than one panel of filters, neither AVX-512 nor AVX2): there the
  /// layers' own calls write it to the plan's buffers. The sums go slice by slice of the batch,
  /// so across ranks each rank's share is whole slices (`shareGranularity`), and so is each
  /// chunk of a large batch (TrainingStep).
  func convolutionTakesPool(
    _ i: Int, through stop: LayerPoint, ranks: DataParallelPass?, context: ComputeContext
  ) -> Bool {
    guard i == 0, convolutionPools(i, through: stop, ranks: ranks), let conv = layers[i] as? Conv2D,
      let pool = layers[i + 1] as? MaxPool2D
    else { return false }
    return pool.activationLayer == nil && conv.takesPoolGradientDirectly(pool, context: context)
  }

  /// Where a backward pass takes the first layer's parameter sums other than by its own backward.
  struct FirstLayerSums {
    /// From the gradient of the max pool after it (`convolutionTakesPool`): layer 1's backward
    /// is then skipped.
    var fromPool: ((LayerIO) throws -> Void)?
    /// In one process, in the batch norm's call (nerve_conv2d_backward_batchnorm_maxpool), given
    /// the norm's buffers, then its own: the norm's input gradient is never written, and layer
    /// 0's backward is skipped.
    var throughNorm: ((LayerIO, LayerIO) throws -> Void)?
    /// Across ranks, where that call sums in slices (the pool's windows read directly,
    /// `Conv2D.takesPoolGradientDirectly`), each rank's share in the same slices from the
    /// norm's stored gradient (`Conv2D.parameterBackwardSliced`), for that process's bits.
    var sliced: ((LayerIO) throws -> Void)?
  }

  /// The first layer's ways for a backward pass up to `stop`; none where layer 0 (or 1, for
  /// the norm's) steps its parameters itself (`fused`) or the input is listed.
  func firstLayerSums(
    through stop: LayerPoint, ranks: DataParallelPass?, fused: (Bool, Bool), listed: Bool, plan: Plan,
    context: ComputeContext
  ) -> FirstLayerSums {
    var sums = FirstLayerSums()
    guard !fused.0, !listed, let conv = layers.first as? Conv2D else { return sums }
    if convolutionTakesPool(0, through: stop, ranks: ranks, context: context), let pool = layers[1] as? MaxPool2D {
      sums.fromPool = { io in
        try conv.parameterBackward(io, pooledBy: pool, pooledGradient: plan.gradients[1], poolScratch: plan.scratch[1])
      }
    }
    guard !fused.1, let (pool, relu) = normThenPool(through: stop) else { return sums }
    if ranks == nil {
      sums.throughNorm = { norm, io in
        try conv.parameterBackward(
          io, normalizedBy: norm, pooledBy: pool, pooledGradient: plan.gradients[2], poolScratch: plan.scratch[2],
          relu: relu)
      }
    } else if conv.takesPoolGradientDirectly(pool, context: context) {
      sums.sliced = { io in try conv.parameterBackwardSliced(io) }
    }
    return sums
  }

  /// Whether layer 0, a convolution with a ReLU or no activation, is followed by a batch norm
  /// that one process joins to the max pool after it (`normPooled`) within a pass up to
  /// `stop`: that pool, and whether the ReLU is there.
  private func normThenPool(through stop: LayerPoint) -> (pool: MaxPool2D, relu: Bool)? {
    guard layers.count > 2, let conv = layers[0] as? Conv2D, normPooled(1, through: stop, ranks: nil),
      let pool = layers[2] as? MaxPool2D
    else { return nil }
    let relu = (conv.activationLayer as? ActivationLayer)?.function == .relu
    return relu || conv.activationLayer == nil ? (pool, relu) : nil
  }

  /// The groups of rows ranks share a batch of `batchRows` out in: the slices
  /// nerve_conv2d_backward_maxpool sums a first convolution's gradients by, where a max pool
  /// follows it, directly or after a batch norm (whether or not a pass then takes that path: any
  /// split serves the other layers, whose sums run over rows in order); otherwise single rows.
  func shareGranularity(batchRows: Int) -> Int {
    let pooled = layers.count > 1 && layers[1] is MaxPool2D
    let normPooled = layers.count > 2 && layers[1] is BatchNorm && layers[2] is MaxPool2D
    guard layers.first is Conv2D, pooled || normPooled else { return 1 }
    return Int(nerve_conv2d_pooled_slice_images(Int64(batchRows)))
  }

  /// Whether a max pool follows layer `i` within a pass up to `stop`, and both run on this
  /// process's rows alone (so a pass may reorder or join them).
  private func poolFollows(_ i: Int, through stop: LayerPoint, ranks: DataParallelPass?) -> Bool {
    guard i + 1 <= stop.layer, layers[i + 1] is MaxPool2D else { return false }
    guard let ranks else { return true }
    return !ranks.needsWholeBatch(i) && !ranks.needsWholeBatch(i + 1)
  }

  /// The activation of layer `i - 1` that layer `i`, a dense layer, takes its input gradient on
  /// through (nerve_dense_backward_activation, or its plain SGD step's form), so that the
  /// activation's backward is skipped and the gradient of its output never written; nil where it
  /// does not: only in one process, for activations whose derivative comes from their output
  /// (this layer's input), and not where the layer steps Adam itself.
  private func inputActivationTaken(by i: Int, ranks: DataParallelPass?, fused: FusedStep?) -> Activation? {
    guard i > 0, ranks == nil, layers[i] is Dense,
      let activation = (layers[i - 1].activationLayer as? ActivationLayer)?.function, activation.derivativeFromOutput
    else { return nil }
    if case .adam = fused { return nil }
    return activation
  }

  /// Whether layer `i` is a batch norm that takes its input gradient on through the ReLU of
  /// layer `i - 1` (nerve_batchnorm_backward_relu), so that ReLU's backward is skipped: in one
  /// process, and not where the norm's backward steps its parameters itself.
  private func normTakesRelu(_ i: Int, ranks: DataParallelPass?, fused: Bool) -> Bool {
    guard i > 0, ranks == nil, !fused, layers[i] is BatchNorm else { return false }
    return (layers[i - 1].activationLayer as? ActivationLayer)?.function == .relu
  }

  /// Backpropagates from `start` (its gradient buffer already holding dLoss/d(that point))
  /// down to layer 0, accumulating parameter gradients into `gradients`; layers marked in
  /// `fusedLayers` apply `fused` to their parameters directly instead.
  func backward(
    _ input: UnsafeMutablePointer<Float>, batch: Int, plan: Plan, context: ComputeContext,
    gradients: UnsafeMutablePointer<Float>, from start: LayerPoint, step: UInt64 = 0, firstRow: Int = 0,
    fused: FusedStep? = nil, fusedLayers: [Bool] = [], ranks: DataParallelPass? = nil,
    listed: SparseSlice? = nil
  ) throws {
    func fusedAt(_ i: Int) -> Bool { fused != nil && i < fusedLayers.count && fusedLayers[i] }
    /// Whether layer `i`, a batch norm, takes its gradient from the max pool after it (see
    /// `normPooled`); not where its backward steps its parameters itself.
    func normTakesPool(_ i: Int) -> Bool {
      !fusedAt(i) && normPooled(i, through: start, ranks: ranks)
    }
    let first = firstLayerSums(
      through: start, ranks: ranks, fused: (fusedAt(0), fusedAt(1)), listed: listed != nil, plan: plan, context: context)
    let firstFromPool = first.fromPool, firstFromNorm = first.throughNorm
    for i in stride(from: start.layer, through: 0, by: -1) {
      let layer = layers[i]
      if i > 0 && normTakesPool(i - 1) { continue }  // the batch norm before it takes its gradient
      if i == 0 && firstFromNorm != nil { continue }  // the norm's call made this layer's sums
      let reluTaken = i < start.layer && normTakesRelu(i + 1, ranks: ranks, fused: fusedAt(i + 1))
      let activationTaken =
        i < start.layer && inputActivationTaken(by: i + 1, ranks: ranks, fused: fusedAt(i + 1) ? fused : nil) != nil
      if let activation = layer.activationLayer, !(i == start.layer && start.beforeActivation),
        !poolsBeforeRelu(i, through: start, ranks: ranks), !reluTaken, !activationTaken
      {
        try activation.backward(
          io(i, context: context, batch: batch, input: plan.coreOutputs[i], output: plan.outputs[i],
             plan: plan, training: true, step: step, firstRow: firstRow, activation: true,
             inputGradient: plan.coreGradients[i], outputGradient: plan.gradients[i]))
      }
      let poolsRelu = i > 0 && poolsBeforeRelu(i - 1, through: start, ranks: ranks)
      let takesRelu = normTakesRelu(i, ranks: ranks, fused: fusedAt(i))
      let inputActivation = inputActivationTaken(by: i, ranks: ranks, fused: fusedAt(i) ? fused : nil)
      if poolsRelu {
        try context.check(
          nerve_activation_backward(
            context.raw, NERVE_ACTIVATION_RELU, plan.gradients[i], plan.gradients[i], nil, plan.outputs[i],
            Int64(batch * layer.outputShape.reduce(1, *))))
      }
      var core = io(
        i, context: context, batch: batch, input: i == 0 ? input : plan.outputs[i - 1],
        output: plan.coreOutputs[i], plan: plan, training: true, step: step, firstRow: firstRow,
        inputGradient: i == 0
          ? nil : poolsRelu || takesRelu || inputActivation != nil ? plan.coreGradients[i - 1] : plan.gradients[i - 1],
        outputGradient: plan.coreGradients[i], parameterGradients: gradients + layer.parameterOffset)
      if i == 0 { core.sparseInput = listed }
      let fusedHere = fusedAt(i)
      if i == 1 && firstFromPool != nil {
        continue  // the convolution before it takes the gradient this pool's backward would write
      } else if let ranks, ranks.needsWholeBatch(i) {
        try ranks.backwardWholeBatch(i, core)
      } else if let ranks, layer.parameterCount > 0 {
        try ranks.backwardChained(
          i, core, fused: fusedHere ? fused : nil, parameterBackward: i == 0 ? firstFromPool ?? first.sliced : nil)
      } else if let inputActivation, let dense = layer as? Dense {
        try dense.backward(core, throughInput: inputActivation, step: fusedHere ? fused : nil)
      } else if let fused, fusedHere {
        try layer.backwardUpdate(core, step: fused)
      } else if i == 1, let firstFromNorm {
        try firstFromNorm(
          core,
          io(0, context: context, batch: batch, input: input, output: plan.coreOutputs[0], plan: plan, training: true,
             step: step, firstRow: firstRow, parameterGradients: gradients + layers[0].parameterOffset))
      } else if normTakesPool(i), let norm = layer as? BatchNorm, let pool = layers[i + 1] as? MaxPool2D {
        try norm.backward(
          core, pooledBy: pool, pooledGradient: plan.gradients[i + 1], poolScratch: plan.scratch[i + 1],
          relu: takesRelu)
      } else if i == 0, let firstFromPool {
        try firstFromPool(core)
      } else if takesRelu, let norm = layer as? BatchNorm {
        try norm.backwardThroughRelu(core)
      } else {
        try layer.backward(core)
      }
    }
  }

  /// The buffers layer `i` (or its activation) works on in one call.
  private func io(
    _ i: Int, context: ComputeContext, batch: Int, input: UnsafeMutablePointer<Float>,
    output: UnsafeMutablePointer<Float>, plan: Plan, training: Bool, step: UInt64, firstRow: Int,
    activation: Bool = false, inputGradient: UnsafeMutablePointer<Float>? = nil,
    outputGradient: UnsafeMutablePointer<Float>? = nil,
    parameterGradients: UnsafeMutablePointer<Float>? = nil
  ) -> LayerIO {
    let layer = layers[i]
    let stream = layer.streamIndex + (activation ? 1 : 0)
    var io = LayerIO(
      context: context, batch: batch, input: input, output: output, inputGradient: inputGradient,
      outputGradient: outputGradient, parameters: parameterStorage.pointer + layer.parameterOffset,
      parameterGradients: parameterGradients, state: stateStorage.pointer + stateOffsets[i],
      scratch: plan.scratch[i], training: training, stepSeed: step &* 0x9E37_79B9 &+ UInt64(stream))
    io.firstRow = firstRow
    return io
  }
}
