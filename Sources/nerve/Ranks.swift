// The ranks of an mpirun job, for the commands that work across them (train, sweep).
import Foundation
import Nerve

/// The job's ranks when this process was started by `mpirun` with more than one process; nil
/// when it runs alone.
/// - Throws: when started by mpirun with several processes but built without MPI (each would
///   otherwise train alone and write the same files).
func jobRanks() throws -> Communicator? {
  #if MPI
  guard let world = try MPICommunicator.world(), world.size > 1 else { return nil }
  JobRanks.current = world
  return world
  #else
  let size = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"].flatMap(Int.init) ?? 1
  guard size <= 1 else {
    throw NerveError(
      .badValue, at: "mpirun",
      "this nerve was built without MPI, so its \(size) processes cannot work together; build it with `swift build -c release --traits MPI` (or scripts/setup.sh --mpi)")
  }
  return nil
  #endif
}

/// The ranks of this job once a command has joined them; an error on one rank then ends them
/// all (reportingErrors), since the others would wait for it for ever.
enum JobRanks {
  nonisolated(unsafe) static var current: Communicator?
}
