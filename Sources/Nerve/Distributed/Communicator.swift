// Communicator: what data-parallel training and distributed sweeps ask of the processes they
// run in. `MPICommunicator` (built with the MPI trait) is the one implementation; the protocol
// keeps the trainer free of MPI, so the default build and apps need no MPI at all.

/// A group of processes ("ranks") that exchange messages: one per process of an `mpirun` job.
///
/// Every collective call (`broadcast`, `allGather`, `sum`, `maximum`, `barrier`) must be made
/// by every rank, in the same order. Point-to-point calls pair a `send` on one rank with a
/// `receive` on another.
public protocol Communicator: AnyObject {
  /// This process's number, 0 ..< `size`.
  var rank: Int { get }
  /// How many processes the group has.
  var size: Int { get }

  /// Starts sending `count` floats to `rank` (tag `tag`); the buffer must stay untouched until
  /// `waitForSends()` returns.
  func send(_ buffer: UnsafePointer<Float>, count: Int, to rank: Int, tag: Int) throws
  /// Waits until every send started since the last call has completed.
  func waitForSends() throws
  /// Receives `count` floats from `rank` with tag `tag` (blocks until they arrive).
  func receive(_ buffer: UnsafeMutablePointer<Float>, count: Int, from rank: Int, tag: Int) throws

  /// Copies `bytes` bytes at `buffer` on rank `root` to `buffer` on every rank.
  func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws
  /// Every rank's `counts[rank]` floats at `local`, placed one after another in rank order at
  /// `all` on every rank.
  func allGather(
    _ local: UnsafePointer<Float>, into all: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>,
    offsets: UnsafePointer<Int32>) throws
  /// The sum of `value` over the ranks, added in rank order (the same on every rank).
  func sum(_ value: Double) throws -> Double
  /// The largest `value` of any rank.
  func maximum(_ value: Int64) throws -> Int64

  /// Sends a message of bytes (sweeps' requests and results).
  func sendMessage(_ bytes: [UInt8], to rank: Int, tag: Int) throws
  /// The next message of bytes from any rank: its sender, tag and bytes.
  func receiveMessage() throws -> (from: Int, tag: Int, bytes: [UInt8])

  /// Ends every rank of the job with `code`: what a rank does after an error the others cannot
  /// know of (they would wait for it for ever).
  func abort(code: Int32) -> Never
}

extension Communicator {
  /// Whether this is rank 0, the one that prints and writes files.
  public var isRoot: Bool { rank == 0 }

  /// The rows `begin ..< end` of a batch of `rows` that this rank works on: contiguous, in rank
  /// order, whole groups of `granularity` rows (the last may be short), numbers of groups
  /// differing by at most one.
  func share(of rows: Int, granularity: Int = 1) -> Range<Int> {
    rankShare(of: rows, rank: rank, size: size, granularity: granularity)
  }
}

/// Rank `rank`'s rows of a batch of `rows` split over `size` ranks in groups of `granularity`.
func rankShare(of rows: Int, rank: Int, size: Int, granularity: Int = 1) -> Range<Int> {
  let g = max(granularity, 1), groups = (rows + g - 1) / g
  return min(rows, g * (groups * rank / size))..<min(rows, g * (groups * (rank + 1) / size))
}

/// The most rows `rankShare` gives a rank of any batch of up to `rows` rows whose groups are at
/// most `granularity` rows: ceil(rows / size) for single rows, up to about two groups more.
func largestRankShare(of rows: Int, size: Int, granularity: Int) -> Int {
  let g = max(granularity, 1)
  return min(rows, (rows + size - 1) / size + (g > 1 ? 2 * g : 0))
}
