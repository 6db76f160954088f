// Options shared by several subcommands.
import ArgumentParser
import Nerve

/// Where the data is and how many threads to use.
struct DataOptions: ParsableArguments {
  @Option(
    name: .long,
    help: ArgumentHelp(
      "A folder holding MNIST's four IDX files (train-images-idx3-ubyte[.gz], ...), or the digits CSV; default: the bundled Data/.",
      valueName: "path"))
  var data: String?

  @Option(name: .long, help: ArgumentHelp("Worker threads (default: OMP_NUM_THREADS or all CPUs).", valueName: "n"))
  var threads: Int?

  func validate() throws {
    if let threads, threads < 1 { throw ValidationError("--threads must be at least 1, got \(threads)") }
  }
}
