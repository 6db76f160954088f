// Saving and loading a model (the format is in IO/ModelFile.swift).

extension Sequential {
  /// Saves the model (architecture, parameters, preprocessing) to a safetensors file,
  /// atomically.
  public func save(to path: String) throws { try ModelFile.save(self, to: path) }

  /// Loads a model saved with `save(to:)`.
  public static func load(from path: String) throws -> Sequential {
    try ModelFile.load(from: path)
  }
}
