// SparseRows: a matrix kept as its non-zero entries (the C core's nerve_sparse).
import CNerve

/// The rows of a matrix listed as their non-zero entries, once: a training set of images,
/// whose first dense layer then reads only the pixels that are not zero, epoch after epoch,
/// instead of finding them again among the zeros. Holds the same values as the matrix it was
/// made from; with the AVX-512 or AVX2 kernels and finite weights, the products over it give
/// the same bits as over the stored rows (training lists inputs only there).
final class SparseRows {
  let raw: OpaquePointer
  let rows: Int
  let columns: Int
  let nonzeros: Int

  /// Lists `values` [rows, columns] if at most `density` of its entries are not zero (nil
  /// otherwise, or for an empty matrix).
  static func listing(
    _ values: UnsafePointer<Float>, rows: Int, columns: Int, ifDensityAtMost density: Double,
    context: ComputeContext
  ) throws -> SparseRows? {
    guard rows > 0, columns > 0 else { return nil }
    var count: Int64 = 0
    try context.check(nerve_sparse_count(context.raw, &count, values, Int64(rows), Int64(columns)))
    guard Double(count) <= density * Double(rows) * Double(columns) else { return nil }
    // A column index and a value per entry, and a start per row.
    try Memory.check(floats: 2 * Int(count) + 2 * (rows + 1), for: "the non-zero inputs listed", at: "training")
    var made: OpaquePointer?
    try context.check(nerve_sparse_create(context.raw, &made, values, Int64(rows), Int64(columns)))
    guard let made else { return nil }
    return SparseRows(raw: made, rows: rows, columns: columns, nonzeros: Int(count))
  }

  private init(raw: OpaquePointer, rows: Int, columns: Int, nonzeros: Int) {
    self.raw = raw
    self.rows = rows
    self.columns = columns
    self.nonzeros = nonzeros
  }

  deinit { nerve_sparse_destroy(raw) }
}

/// Rows `first ..< first + batch` of a `SparseRows`: a layer's input, listed.
struct SparseSlice {
  let rows: SparseRows
  let first: Int

  /// The slice `offset` rows further on.
  func advanced(by offset: Int) -> SparseSlice { SparseSlice(rows: rows, first: first + offset) }
}
