// TrainingWorkspace: what one `fit` call prepares before its first step, so that no step
// allocates: the model's plan for a batch, the batch and gradient buffers, and the choices that
// depend on the model and the optimizer (chunking, which layers update inside backward).

/// The buffers and decisions of one training run. Steps (TrainingStep.swift) and epochs
/// (TrainingEpoch.swift) run in it.
final class TrainingWorkspace {
  let model: Sequential
  let optimizer: Optimizer
  let head: LossHead
  let settings: TrainingSettings
  let train: Dataset
  var context: ComputeContext { model.context }

  /// Samples per step, and per forward/backward pass within a step.
  let batchCapacity: Int
  let chunkCapacity: Int
  /// Activations and their gradients for one chunk.
  let plan: Sequential.Plan
  /// The training set's one-hot targets, and one batch gathered in the epoch's order (empty
  /// when batches keep the stored order).
  let targets: FloatBuffer
  let batchFeatures: FloatBuffer
  let batchTargets: FloatBuffer
  let batchLabels: UnsafeMutablePointer<Int32>
  /// Whether batches are slices of the training set as stored (no gathering needed).
  let keepsOrder: Bool
  /// The training set's features as their non-zero entries, when the first layer is a dense
  /// one that reads them (see `listsInputs`); nil otherwise.
  var listedFeatures: SparseRows? { listing?.rows }
  /// That listing and what it was made from (also when the features proved too dense to list),
  /// for the trainer to hand to its next run; nil where the first layer reads no list.
  let listing: FeatureListing?
  /// dLoss/dparameters, laid out like the model's parameters.
  let gradients: FloatBuffer
  let penalty: L2Penalty
  /// Parameter tensors whose gradients are stored and stepped by the optimizer.
  let steppedGroups: [ParameterGroup]
  /// Layers that apply the optimizer's step inside their backward pass.
  let fusedLayers: [Bool]
  /// This rank's part in data-parallel steps (nil when training alone).
  let ranks: DataParallelPass?

  /// Prepares a run; reserves the context's workspace and binds the optimizer's state. A
  /// `previous` run's listing of these same features is taken as it is instead of listing them
  /// again.
  init(
    model: Sequential, loss: Loss, optimizer: Optimizer, train: Dataset, settings: TrainingSettings,
    fusesOptimizerSteps: Bool, chunkRows: Int, communicator: Communicator? = nil, previous: FeatureListing? = nil
  ) throws {
    self.model = model
    self.optimizer = optimizer
    self.settings = settings
    self.train = train
    head = try LossHead(loss: loss, model: model)
    let width = model.outputCount
    batchCapacity = settings.batchSize.resolved(count: train.count)
    // Batch statistics need the whole batch in one pass.
    let chunked = batchCapacity > chunkRows && !model.layers.contains(where: \.needsWholeBatch)
    // Across ranks, each rank runs its share of a batch in one pass (the choices below stay
    // those of one process, whose results the ranks reproduce).
    let spread = communicator.map { $0.size > 1 } ?? false
    chunkCapacity =
      spread
      ? largestRankShare(
        of: batchCapacity, size: communicator!.size, granularity: model.shareGranularity(batchRows: batchCapacity))
      : chunked ? max(chunkRows, 1, model.shareGranularity(batchRows: batchCapacity)) : batchCapacity
    keepsOrder = settings.keepsOrder(count: train.count)
    // Batches in the stored order are slices of the training set: nothing to gather into.
    let gathered = keepsOrder ? 0 : batchCapacity
    // Everything a run allocates, checked against memory before any of it is.
    let needed = try Sizes.product(
      [try Sequential.Plan.floats(model: model, capacity: chunkCapacity, training: true)
        + gathered * (model.inputCount + width) + train.count * width
        + (1 + optimizer.stateArrays) * model.parameterStorage.count],
      of: "training", at: "training")
    try Memory.check(floats: needed, for: "training with batches of \(batchCapacity)", at: "training")
    plan = try Sequential.Plan(model: model, capacity: chunkCapacity, training: true)
    try model.context.reserve(bytes: plan.workspaceBytes)
    targets = train.oneHot(width: width)
    batchFeatures = FloatBuffer(count: gathered * model.inputCount)
    batchTargets = FloatBuffer(count: gathered * width)
    batchLabels = .allocate(capacity: batchCapacity)
    batchLabels.initialize(repeating: 0, count: batchCapacity)
    gradients = FloatBuffer(count: model.parameterStorage.count)
    penalty = L2Penalty(model: model)
    optimizer.bind(parameterFloats: model.parameterStorage.count)
    let fused = Self.fusedLayers(
      model: model, optimizer: optimizer,
      // A step inside backward would change the weights between chunks of one batch, and
      // diagnostics need the gradients themselves.
      allowed: fusesOptimizerSteps && !chunked && settings.gradientDiagnostics == nil)
    fusedLayers = fused
    ranks = spread ? try DataParallelPass(ranks: communicator!, model: model, batchCapacity: batchCapacity) : nil
    listing =
      Self.listsInputs(model: model, keepsOrder: keepsOrder, spread: spread, fused: fused)
      ? try FeatureListing.of(train.features, columns: model.inputCount, context: model.context, reusing: previous)
      : nil
    steppedGroups = model.parameterGroups.filter { !fused[$0.layer] }.map {
      ParameterGroup(offset: $0.offset, count: $0.info.count, l2Decay: $0.info.decay, isWeight: $0.info.isWeight)
    }
  }

  /// Which layers can take the optimizer's step inside backward (those with parameters whose
  /// kernel has the optimizer's fused form).
  private static func fusedLayers(model: Sequential, optimizer: Optimizer, allowed: Bool) -> [Bool] {
    guard allowed, let probe = optimizer.fusedStep(learningRate: optimizer.learningRate) else {
      return model.layers.map { _ in false }
    }
    return model.layers.map { $0.parameterCount > 0 && $0.supportsFused(probe) }
  }

  /// Whether the first layer reads the training set listed as non-zero entries: a dense layer
  /// from many inputs to one panel of outputs (at most 32) whose gradient is stored (not
  /// stepped inside backward), in a run whose batches are slices of the set as stored, in one
  /// process, on the AVX-512 or AVX2 kernels (where the products over the list give the dense
  /// products' bits). For sparse inputs such as images, listing them once saves finding each
  /// row's non-zero inputs again, among floats read from memory, in every product of every
  /// epoch. Not for shuffled batches: rows just gathered are in cache, and finding their
  /// non-zero inputs there measured faster than reading their entries from the list (784 -> 30
  /// at batch 100: 0.10 s an epoch against 0.115 s); nor for wider layers, whose products share
  /// one list among 8 rows across all panels (784 -> 300 at batch 100: 0.30-0.37 s against
  /// 0.36-0.39 s).
  private static func listsInputs(model: Sequential, keepsOrder: Bool, spread: Bool, fused: [Bool]) -> Bool {
    guard keepsOrder, !spread, model.context.instructionSet != .baseline,
      let first = model.layers.first as? Dense
    else { return false }
    return !fused[0] && first.inputs >= 128 && first.units <= 32
  }

  deinit { batchLabels.deallocate() }

  /// Whether any layer updates its parameters inside backward.
  var fuses: Bool { fusedLayers.contains(true) }

  /// The rows of each chunk of a batch of `rows`: all of them if they fit, else as many whole
  /// groups of `Sequential.shareGranularity` as fit, so that chunks end where ranks' shares
  /// may (a first convolution's slices), and one process adds what the ranks add.
  func chunkRows(ofBatch rows: Int) -> Int {
    guard rows > chunkCapacity else { return rows }
    let group = model.shareGranularity(batchRows: rows)
    return max(chunkCapacity / group, 1) * group
  }

  /// Steps in one pass over the training set.
  var stepsPerEpoch: Int { (train.count + batchCapacity - 1) / batchCapacity }
}
