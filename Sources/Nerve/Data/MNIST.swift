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
  /// - Throws: `NerveError` naming the file for missing, truncated or corrupt files, and for
  ///   image and label counts that differ.
  public static func load(
    from directory: String? = nil, validationCount: Int = 10_000, imageShape: ImageShape = .flat,
    preprocessing: Preprocessing = .unitScale
  ) throws -> MNIST {
    guard let dir = directory ?? BundledData.directory("mnist") else {
      throw NerveError(
        .badFile, at: "Data/mnist",
        "cannot find the bundled MNIST; pass a directory or set NERVE_DATA to the Data folder")
    }
    let trainAll = try loadPair(
      dir: dir, images: fileNames.trainImages, labels: fileNames.trainLabels, name: "MNIST train",
      shape: imageShape, preprocessing: preprocessing)
    let test = try loadPair(
      dir: dir, images: fileNames.testImages, labels: fileNames.testLabels, name: "MNIST test",
      shape: imageShape, preprocessing: preprocessing)
    guard validationCount >= 0, validationCount < trainAll.count else {
      throw NerveError(
        .badValue, at: "validation",
        "validation count must be in 0..<\(trainAll.count), got \(validationCount)")
    }
    let cut = trainAll.count - validationCount
    var train = trainAll.slice(0..<cut)
    train.name = "MNIST train"
    var validation = trainAll.slice(cut..<trainAll.count)
    validation.name = "MNIST validation"
    return MNIST(train: train, validation: validation, test: test, preprocessing: preprocessing)
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
    preprocessing: Preprocessing = .unitScale
  ) throws -> Dataset {
    let imagePath = try locate(images, in: dir)
    let labelPath = try locate(labels, in: dir)
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
    let classes = max(10, (values.max() ?? 0) + 1)
    let rows = img.dimensions[1], cols = img.dimensions[2]
    let sample = shape == .flat ? [rows * cols] : [rows, cols, 1]
    try Memory.check(floats: img.count, for: "the \(img.dimensions[0]) images of \(imagePath)", at: imagePath)
    var features = Tensor(shape: [img.dimensions[0]] + sample, values: img.floats())
    try preprocessing.apply(to: &features)
    return try Dataset(
      name: name, features: features, labels: values.map { Int32($0) }, classes: classes)
  }
}
