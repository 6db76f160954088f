// MNIST: the handwritten-digit dataset, split 50,000 / 10,000 / 10,000 as the labs use it.
import Foundation

/// MNIST (or any dataset in the same four IDX files): training, validation and test sets.
///
/// ```swift
/// let mnist = try MNIST.load()                 // the copy bundled in Data/mnist
/// let small = mnist.train.prefix(1000)         // the labs' first 1,000 images
/// ```
public struct MNIST: Sendable {
  /// The first `trainCount` images of the training file.
  public var train: Dataset
  /// The rest of the training file (the last 10,000 images by default).
  public var validation: Dataset
  /// The test file's 10,000 images.
  public var test: Dataset
  /// How raw bytes were turned into inputs (divided by 255 unless asked otherwise).
  public var preprocessing: Preprocessing

  /// The file names looked for, each also with `.gz` appended.
  public static let fileNames = (
    trainImages: "train-images-idx3-ubyte", trainLabels: "train-labels-idx1-ubyte",
    testImages: "t10k-images-idx3-ubyte", testLabels: "t10k-labels-idx1-ubyte"
  )

  /// Loads the four IDX files from `directory` (or the bundled `Data/mnist`).
  /// - Parameters:
  ///   - directory: a folder with the four files under MNIST's names, raw or `.gz`.
  ///   - validationCount: images taken from the end of the training file for validation.
  ///   - imageShape: `.flat` gives samples of [784]; `.channels` gives [28, 28, 1] for CNNs.
  ///   - preprocessing: applied to the raw bytes; by default they are scaled to [0, 1].
  ///   - trainLimit: if set, only the first `trainLimit` images of the training split become
  ///     inputs (a run on a subset then neither converts nor holds the rest).
  ///   - threads: threads that convert the pixels (nil: `OMP_NUM_THREADS` or all CPUs).
  /// - Throws: `NerveError` naming the file for missing, truncated or corrupt files, and for
  ///   image and label counts that differ.
  public static func load(
    from directory: String? = nil, validationCount: Int = 10_000, imageShape: ImageShape = .flat,
    preprocessing: Preprocessing = .unitScale, trainLimit: Int? = nil, threads: Int? = nil
  ) throws -> MNIST {
    let dir = try folder(directory)
    let trainFile = try ImageFile(dir: dir, images: fileNames.trainImages, labels: fileNames.trainLabels, shape: imageShape)
    let testFile = try ImageFile(dir: dir, images: fileNames.testImages, labels: fileNames.testLabels, shape: imageShape)
    guard validationCount >= 0, validationCount < trainFile.count else {
      throw NerveError(
        .badValue, at: "validation",
        "validation count must be in 0..<\(trainFile.count), got \(validationCount)")
    }
    let cut = trainFile.count - validationCount
    let trainEnd = min(cut, max(trainLimit ?? cut, 0))
    // Each split is converted straight from the file's bytes: no copy of the whole file as floats.
    let context = ComputeContext(threads: threads)
    let train = try trainFile.dataset(
      rows: 0..<trainEnd, name: "MNIST train", preprocessing: preprocessing, context: context)
    let validation = try trainFile.dataset(
      rows: cut..<trainFile.count, name: "MNIST validation", preprocessing: preprocessing, context: context)
    let test = try testFile.dataset(
      rows: 0..<testFile.count, name: "MNIST test", preprocessing: preprocessing, context: context)
    return MNIST(train: train, validation: validation, test: test, preprocessing: preprocessing)
  }

  /// The test file's images as the file stores them ([10,000, 28, 28] unsigned bytes, checked
  /// against its labels), for running a model on them as bytes
  /// (`Sequential.outputs(forPixels:scale:count:into:)`, `Sequential.predict(pixels:scale:)`).
  public static func testImages(from directory: String? = nil) throws -> IDXArray {
    return try ImageFile(dir: folder(directory), images: fileNames.testImages, labels: fileNames.testLabels, shape: .flat).images
  }

  /// `directory`, or the bundled `Data/mnist`.
  static func folder(_ directory: String?) throws -> String {
    guard let dir = directory ?? BundledData.directory("mnist") else {
      throw NerveError(
        .badFile, at: "Data/mnist",
        "cannot find the bundled MNIST; pass a directory or set NERVE_DATA to the Data folder")
    }
    return dir
  }

  /// Per-sample shape of image datasets.
  public enum ImageShape: Sendable {
    /// [rows * columns], for dense networks.
    case flat
    /// [rows, columns, 1] (channels-last), for convolutional networks.
    case channels
  }

  /// Finds `name` or `name.gz` in `dir`.
  static func locate(_ name: String, in dir: String) throws -> String {
    for candidate in [name, name + ".gz"] {
      let path = (dir as NSString).appendingPathComponent(candidate)
      if FileManager.default.fileExists(atPath: path) { return path }
    }
    throw NerveError(
      .badFile, at: (dir as NSString).appendingPathComponent(name),
      "no such file (also tried \(name).gz)")
  }

  /// Reads an image file and its label file as one dataset.
  public static func loadPair(
    dir: String, images: String, labels: String, name: String, shape: ImageShape = .flat,
    preprocessing: Preprocessing = .unitScale, threads: Int? = nil
  ) throws -> Dataset {
    let file = try ImageFile(dir: dir, images: images, labels: labels, shape: shape)
    return try file.dataset(
      rows: 0..<file.count, name: name, preprocessing: preprocessing, context: ComputeContext(threads: threads))
  }

  /// An image file and its label file, checked against each other, with their rows not yet
  /// converted to floats.
  struct ImageFile {
    let images: IDXArray
    let imagePath: String
    let labels: [Int32]
    let classes: Int
    let sample: [Int]
    var count: Int { labels.count }

    init(dir: String, images imageName: String, labels labelName: String, shape: ImageShape) throws {
      imagePath = try locate(imageName, in: dir)
      let labelPath = try locate(labelName, in: dir)
      let img = try IDXArray(contentsOf: imagePath)
      let lab = try IDXArray(contentsOf: labelPath)
      guard img.dimensions.count == 3 else {
        throw NerveError(
          .badFile, at: imagePath,
          "expected images as 3 dimensions [count, rows, columns], found \(img.dimensions)")
      }
      guard lab.dimensions.count == 1 else {
        throw NerveError(
          .badFile, at: labelPath, "expected labels as 1 dimension [count], found \(lab.dimensions)")
      }
      guard img.dimensions[0] == lab.dimensions[0] else {
        throw NerveError(
          .shapeMismatch, at: imagePath,
          "has \(img.dimensions[0]) images but \(labelPath) has \(lab.dimensions[0]) labels")
      }
      // Pixels are scaled as bytes (1/255): other element types would be scaled wrongly.
      guard img.type == .uint8 else {
        throw NerveError(
          .badFile, at: imagePath,
          "holds \(img.type) values; MNIST-format images must be unsigned bytes (IDX type 0x08)")
      }
      let values = try lab.integers()
      if let bad = values.firstIndex(where: { $0 < 0 || $0 > 255 }) {
        throw NerveError(.badFile, at: labelPath, "label \(values[bad]) at index \(bad) is not a class index")
      }
      images = img
      labels = values.map { Int32($0) }
      classes = max(10, (values.max() ?? 0) + 1)
      let rows = img.dimensions[1], cols = img.dimensions[2]
      sample = shape == .flat ? [rows * cols] : [rows, cols, 1]
    }

    /// Rows `rows` as a dataset, the bytes scaled (and standardised) by `preprocessing`.
    func dataset(
      rows: Range<Int>, name: String, preprocessing: Preprocessing, context: ComputeContext
    ) throws -> Dataset {
      let size = sample.reduce(1, *)
      try Memory.check(floats: rows.count * size, for: "\(rows.count) images of \(imagePath)", at: imagePath)
      var features = try Tensor(shape: [rows.count] + sample) { out in
        try images.write(
          elements: rows.lowerBound * size..<rows.upperBound * size, into: out, scale: preprocessing.scale,
          context: context)
      }
      // The scale went into the conversion; the rest of the preprocessing follows.
      var rest = preprocessing
      rest.scale = 1
      try rest.apply(to: &features)
      return try Dataset(name: name, features: features, labels: Array(labels[rows]), classes: classes)
    }
  }
}
