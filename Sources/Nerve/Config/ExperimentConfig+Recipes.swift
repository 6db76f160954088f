// Recipes the library knows by name: the fast one is `nerve train`'s default model.

extension ExperimentConfig {
  /// The fast MNIST recipe of `examples/fast-99.toml` (a test keeps the two equal): conv 5x5 16
  /// -> max pool -> conv 3x3 32 -> max pool -> dense 256 -> 10, Adam 0.01 (betas 0.7, 0.9) with a
  /// one-cycle schedule, batches of 192, one epoch on all 60,000 training images. About 99% test
  /// accuracy in a few seconds on two cores.
  public static var fastRecipe: ExperimentConfig {
    // The text parses by construction; a failure here is a bug in this file.
    try! ExperimentConfig(table: TOMLParser.parse(fastRecipeTOML, file: "ExperimentConfig.fastRecipe"), file: "ExperimentConfig.fastRecipe")
  }

  static let fastRecipeTOML = """
    name = "fast-99"

    [data]
    set = "mnist"
    validation = 0

    [[layer]]
    type = "conv2d"
    filters = 16
    kernel = 5
    activation = "relu"

    [[layer]]
    type = "maxpool2d"
    pool = 2

    [[layer]]
    type = "conv2d"
    filters = 32
    kernel = 3
    activation = "relu"

    [[layer]]
    type = "maxpool2d"
    pool = 2

    [[layer]]
    type = "flatten"

    [[layer]]
    type = "dense"
    units = 256
    activation = "relu"

    [[layer]]
    type = "dense"
    units = 10
    activation = "softmax"

    [train]
    loss = "cross_entropy"
    optimizer = "adam"
    learning_rate = 0.01
    beta1 = 0.7
    beta2 = 0.9
    batch_size = 192
    epochs = 1
    schedule = "one_cycle"
    """
}
