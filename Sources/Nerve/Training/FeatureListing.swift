// FeatureListing: a training set listed as its non-zero inputs, kept between training runs.

/// A training set's features listed as their non-zero entries (or found too dense to list), with
/// the storage they were listed from: what a trainer keeps from one `fit` to the next, so that
/// `fit(epochs: 1)` called epoch after epoch lists MNIST once, not every call (listing its 50,000
/// images takes as long as several of Lab A's epochs). Holding the storage keeps it as it was: a
/// tensor copies storage it shares before writing to it, and storage held cannot be freed and
/// its address reused.
struct FeatureListing {
  let source: FloatBuffer
  let samples: Int
  let columns: Int
  let instructionSet: InstructionSet
  /// The non-zero entries, or nil for features too dense to be worth listing.
  let rows: SparseRows?

  /// Whether this listing is of `features` [samples, columns] for `context`'s kernels (the
  /// listing's layout depends on the instruction set): made from the same storage, which was not
  /// only borrowed for one call.
  func lists(_ features: Tensor, columns: Int, context: ComputeContext) -> Bool {
    source === features.storage && !source.borrowed && samples == features.shape[0] && self.columns == columns
      && instructionSet == context.instructionSet
  }

  /// `features` [samples, columns] listed, or `previous` where it lists them already.
  static func of(
    _ features: Tensor, columns: Int, context: ComputeContext, reusing previous: FeatureListing?
  ) throws -> FeatureListing {
    if let previous, previous.lists(features, columns: columns, context: context) { return previous }
    let source = features.storage, samples = features.shape[0]
    let rows = try SparseRows.listing(
      source.pointer, rows: samples, columns: columns, ifDensityAtMost: 0.5, context: context)
    return FeatureListing(
      source: source, samples: samples, columns: columns, instructionSet: context.instructionSet, rows: rows)
  }
}
