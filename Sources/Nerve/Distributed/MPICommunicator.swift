// MPICommunicator: a Communicator over MPI_COMM_WORLD (Open MPI), for processes started by
// `mpirun`. Built only with the MPI trait.
#if MPI
import CMPI
import Foundation

/// The processes of an `mpirun` job, as a `Communicator`.
///
///     if let world = try MPICommunicator.world() {   // nil when not started by mpirun
///       let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: Adam(), communicator: world)
///       ...
///     }
public final class MPICommunicator: Communicator {
  public let rank: Int
  public let size: Int
  private let comm: MPI_Comm
  /// Sends in flight (until `waitForSends`); reserved once, so steps do not allocate.
  private var requests: [MPI_Request?]
  nonisolated(unsafe) private static var shared: MPICommunicator?

  private init() throws {
    comm = nerve_mpi_world()
    var r: Int32 = 0, s: Int32 = 0
    MPI_Comm_rank(comm, &r)
    MPI_Comm_size(comm, &s)
    rank = Int(r)
    size = Int(s)
    requests = []
    requests.reserveCapacity(1024)
    gathered = .allocate(capacity: size)
  }

  deinit { gathered.deallocate() }

  /// Every rank's value in `sum`, gathered (reserved once).
  private let gathered: UnsafeMutablePointer<Double>

  /// Whether this process was started by Open MPI's `mpirun` (or `srun` with PMIx).
  public static var launchedByMPI: Bool {
    let env = ProcessInfo.processInfo.environment
    return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil
  }

  /// The job's world, initialising MPI on first use; nil when the process was not started by
  /// mpirun (then it runs alone, as without MPI).
  public static func world() throws -> MPICommunicator? {
    if let shared { return shared }
    guard launchedByMPI else { return nil }
    var ready: Int32 = 0
    MPI_Initialized(&ready)
    if ready == 0 {
      guard MPI_Init(nil, nil) == MPI_SUCCESS else {
        throw NerveError(.communication, at: "mpi", "MPI_Init failed")
      }
      // Errors come back as codes we turn into messages, instead of aborting inside MPI.
      MPI_Comm_set_errhandler(nerve_mpi_world(), nerve_mpi_errors_return())
      atexit { MPICommunicator.finish() }
    }
    shared = try MPICommunicator()
    return shared
  }

  /// Ends MPI (at exit).
  static func finish() {
    var done: Int32 = 0
    MPI_Finalized(&done)
    if done == 0 { MPI_Finalize() }
  }

  /// Ends the whole job now with `code`: what a rank does when it cannot go on alone.
  public func abort(code: Int32) -> Never {
    MPI_Abort(comm, code)
    exit(code)
  }

  private func check(_ code: Int32, _ what: String) throws {
    guard code != MPI_SUCCESS else { return }
    var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
    var length: Int32 = 0
    MPI_Error_string(code, &text, &length)
    throw NerveError(.communication, at: "mpi rank \(rank)", "\(what) failed: \(String(cString: text))")
  }

  public func send(_ buffer: UnsafePointer<Float>, count: Int, to rank: Int, tag: Int) throws {
    var request: MPI_Request? = nerve_mpi_request_null()
    try check(
      MPI_Isend(buffer, Int32(count), nerve_mpi_float(), Int32(rank), Int32(tag), comm, &request),
      "sending \(count) values to rank \(rank)")
    requests.append(request)
  }

  public func waitForSends() throws {
    guard !requests.isEmpty else { return }
    let code = MPI_Waitall(Int32(requests.count), &requests, nerve_mpi_statuses_ignore())
    requests.removeAll(keepingCapacity: true)
    try check(code, "waiting for sends")
  }

  public func receive(_ buffer: UnsafeMutablePointer<Float>, count: Int, from rank: Int, tag: Int) throws {
    try check(
      MPI_Recv(buffer, Int32(count), nerve_mpi_float(), Int32(rank), Int32(tag), comm, nerve_mpi_status_ignore()),
      "receiving \(count) values from rank \(rank)")
  }

  public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, from root: Int) throws {
    // MPI counts are 32-bit: large buffers go in pieces.
    var at = 0
    while at < bytes {
      let n = min(bytes - at, 1 << 30)
      try check(MPI_Bcast(buffer + at, Int32(n), nerve_mpi_byte(), Int32(root), comm), "broadcasting \(bytes) bytes")
      at += n
    }
  }

  public func allGather(
    _ local: UnsafePointer<Float>, into all: UnsafeMutablePointer<Float>, counts: UnsafePointer<Int32>,
    offsets: UnsafePointer<Int32>
  ) throws {
    try check(
      MPI_Allgatherv(
        local, counts[rank], nerve_mpi_float(), all, counts, offsets, nerve_mpi_float(), comm),
      "gathering a batch's rows")
  }

  public func sum(_ value: Double) throws -> Double {
    // Gathered and added in rank order on every rank: the same value everywhere, whatever
    // order MPI_Allreduce would pick. (Steps call this once; ranks are few.)
    var mine = value
    try check(
      MPI_Allgather(&mine, 1, nerve_mpi_double(), gathered, 1, nerve_mpi_double(), comm), "adding a value over ranks")
    var total = 0.0
    for r in 0..<size { total += gathered[r] }
    return total
  }

  public func maximum(_ value: Int64) throws -> Int64 {
    var mine = value, result: Int64 = 0
    try check(MPI_Allreduce(&mine, &result, 1, nerve_mpi_int64(), nerve_mpi_max(), comm), "comparing over ranks")
    return result
  }

  public func sendMessage(_ bytes: [UInt8], to rank: Int, tag: Int) throws {
    try check(
      MPI_Send(bytes, Int32(bytes.count), nerve_mpi_byte(), Int32(rank), Int32(tag), comm),
      "sending a message to rank \(rank)")
  }

  public func receiveMessage() throws -> (from: Int, tag: Int, bytes: [UInt8]) {
    // Polled with pauses: MPI_Probe would spin on a core while a sweep's ranks wait for work.
    var status = MPI_Status()
    var arrived: Int32 = 0
    while true {
      try check(
        MPI_Iprobe(nerve_mpi_any_source(), nerve_mpi_any_tag(), comm, &arrived, &status), "waiting for a message")
      if arrived != 0 { break }
      usleep(2000)
    }
    var count: Int32 = 0
    MPI_Get_count(&status, nerve_mpi_byte(), &count)
    var bytes = [UInt8](repeating: 0, count: Int(count))
    try check(
      MPI_Recv(&bytes, count, nerve_mpi_byte(), status.MPI_SOURCE, status.MPI_TAG, comm, nerve_mpi_status_ignore()),
      "receiving a message from rank \(status.MPI_SOURCE)")
    return (Int(status.MPI_SOURCE), Int(status.MPI_TAG), bytes)
  }
}
#endif
