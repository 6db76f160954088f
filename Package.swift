// swift-tools-version: 6.1
//
// Nerve: neural networks for handwritten digits and other small image tasks.
//
// The manifest carries no unsafe flags, so an app can depend on Nerve by version. Parallelism
// still works there: the C core calls the OpenMP runtime's entry point (GOMP_parallel) directly
// instead of using #pragma omp, which would need -fopenmp. It links libgomp and OpenBLAS as
// ordinary system libraries (Debian: libopenblas-dev; libgomp comes with gcc).
import PackageDescription

let package = Package(
  name: "Nerve",
  // MARK: Public products
  products: [
    .library(name: "Nerve", targets: ["Nerve"]),
    // Models written as ONNX files (depends on SwiftProtobuf's runtime).
    .library(name: "NerveONNX", targets: ["NerveONNX"]),
    .library(name: "NerveReference", targets: ["NerveReference"]),
    // The model-level C API (include/nerve_model.h) as libNerveModel.so, for C, Python and Rust.
    .library(name: "NerveModel", type: .dynamic, targets: ["NerveModel"]),
    .executable(name: "nerve", targets: ["nerve"]),
  ],
  // MARK: Traits
  // Serve: the `nerve serve` HTTP server (Hummingbird). On by default so `swift build` gives the
  // whole CLI; it only adds a dependency of the `nerve` executable, so an app that uses the Nerve
  // library never builds it (and with `traits: []` on its dependency never even fetches it).
  // MPI: data-parallel training and distributed sweeps under Open MPI's mpirun. Off by default:
  // it needs Open MPI installed (Debian: libopenmpi-dev), which neither the default build nor an
  // app using Nerve should. `swift build -c release --traits MPI,Serve` (scripts/setup.sh --mpi).
  traits: [
    .trait(name: "Serve", description: "`nerve serve`: the drawing page and the prediction service"),
    .trait(name: "MPI", description: "Data-parallel training and distributed sweeps over MPI (Open MPI)"),
    .default(enabledTraits: ["Serve"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
  ],
  targets: [
    // MARK: Implementation
    // The C core. CMakeLists.txt builds the same csrc/ as libnerve for C users.
    .target(
      name: "CNerve",
      path: ".",
      exclude: ["CMakeLists.txt"],
      sources: ["csrc"],
      publicHeadersPath: "include",
      linkerSettings: [
        .linkedLibrary("openblas"),
        .linkedLibrary("gomp"),
        .linkedLibrary("m"),
      ]
    ),
    .systemLibrary(
      name: "CZlib",
      path: "Sources/CZlib",
      providers: [.apt(["zlib1g-dev"])]
    ),
    // Whole-buffer gzip decompression for loading data sets (zlib streams everything else).
    .systemLibrary(
      name: "CDeflate",
      path: "Sources/CDeflate",
      providers: [.apt(["libdeflate-dev"])]
    ),
    // The MPI C API, found by pkg-config; only the MPI trait brings it in.
    .systemLibrary(
      name: "CMPI",
      path: "Sources/CMPI",
      pkgConfig: "ompi-c",
      providers: [.apt(["libopenmpi-dev"])]
    ),
    .target(
      name: "Nerve",
      dependencies: ["CNerve", "CZlib", "CDeflate", .target(name: "CMPI", condition: .when(traits: ["MPI"]))],
      path: "Sources/Nerve"
    ),
    // The ONNX writer: Schema/ holds the message subset it uses and the code protoc made of it.
    .target(
      name: "NerveONNX",
      dependencies: ["Nerve", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
      path: "Sources/NerveONNX",
      exclude: ["Schema/onnx-subset.proto"]
    ),
    // @_cdecl functions behind include/nerve_model.h: the model logic stays in Swift.
    .target(name: "NerveModel", dependencies: ["Nerve", "NerveONNX", "CNerve"], path: "Sources/NerveModel"),
    // Plain-loop Double implementations of every kernel: the oracle the tests compare against.
    .target(name: "NerveReference", path: "Sources/NerveReference"),
    // Every reader of outside bytes as a fuzz target, and the program that runs them (under
    // libFuzzer with scripts/fuzz.sh; built normally it replays files).
    .target(name: "NerveFuzzing", dependencies: ["Nerve"], path: "Sources/NerveFuzzing"),
    .executableTarget(name: "nerve-fuzz", dependencies: ["NerveFuzzing"], path: "Sources/nerve-fuzz"),
    .executableTarget(
      name: "nerve",
      dependencies: [
        "Nerve", "NerveONNX", .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Hummingbird", package: "hummingbird", condition: .when(traits: ["Serve"])),
      ],
      path: "Sources/nerve"
    ),
    // MARK: Tests
    // The CLI tests run the `nerve` executable: depending on it rebuilds it before them.
    .testTarget(
      name: "NerveTests",
      dependencies: ["Nerve", "NerveReference", "NerveFuzzing", "CNerve", "CZlib", "nerve"],
      path: "Tests/NerveTests",
      exclude: ["Fixtures"]
    ),
  ]
)
