// Reading a config file with some of its keys changed.

extension ExperimentConfig {
  /// Reads a config file and applies `overrides` (as `nerve train --set` does).
  public init(contentsOf path: String, overrides: [ConfigOverride]) throws {
    var table = try TOMLParser.parse(contentsOf: path)
    for o in overrides { table = try o.apply(to: table, source: path) }
    try self.init(table: table, file: path)
  }
}
