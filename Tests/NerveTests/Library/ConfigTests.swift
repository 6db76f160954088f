// Config files: the TOML subset, the run description built from it, and errors that name the
// file, the line and the field.
import Foundation
import Nerve
import Testing

@Suite("Config files")
struct ConfigTests {
  @Test("the TOML subset: tables, arrays of tables, every value type, comments")
  func toml() throws {
    let text = """
      # a comment
      name = "x" # trailing comment
      title = 'literal \\n kept'
      [data]
      count = 1_000
      rate = 1e-4
      flag = true
      list = [1, 2,
        3,]  # across lines
      inline = { a = 1, b = "two" }
      [[layer]]
      type = "dense"
      [[layer]]
      type = "relu"
      esc = "tab\\there \\u00e9"
      """
    let t = try TOMLParser.parse(text, file: "t.toml")
    #expect(t["name"] == .string("x"))
    #expect(t["title"] == .string("literal \\n kept"))
    guard case .table(let data)? = t["data"] else { Issue.record("no data table"); return }
    #expect(data["count"] == .integer(1000) && data["rate"] == .float(1e-4) && data["flag"] == .boolean(true))
    #expect(data["list"] == .array([.integer(1), .integer(2), .integer(3)]))
    #expect(data.line(of: "rate") == 6)
    guard case .table(let inline)? = data["inline"] else { Issue.record("no inline table"); return }
    #expect(inline["b"] == .string("two"))
    guard case .array(let layers)? = t["layer"], layers.count == 2, case .table(let second) = layers[1] else {
      Issue.record("layers not parsed")
      return
    }
    #expect(second["esc"] == .string("tab\there é"))
    // Windows line endings count lines too.
    let crlf = try TOMLParser.parse("a = 1\r\nb = 2\r\n", file: "w.toml")
    #expect(crlf.line(of: "b") == 2)
  }

  @Test("TOML syntax errors name the file and line", arguments: [
    ("a = \n", 1, "expected a value"), ("a = 1\nb = fast\n", 2, "not a value"), ("a = \"open\n", 1, "unterminated"),
    ("[t]\nx = 1\n[t]\n", 3, "defined twice"), ("a = 1\na = 2\n", 2, "defined twice"), ("a = [1, 2\n", 2, "unterminated"),
    ("a = 1 2\n", 1, "after the value"), ("= 3\n", 1, "expected a key"),
  ])
  func tomlErrors(text: String, line: Int, words: String) {
    do {
      _ = try TOMLParser.parse(text, file: "bad.toml")
      Issue.record("parsed: \(text)")
    } catch let e as NerveError {
      #expect(e.location == "bad.toml:\(line)", "\(e)")
      #expect(e.message.contains(words), "\(e)")
    } catch { Issue.record("\(error)") }
  }

  func config(_ text: String) throws -> ExperimentConfig {
    try ExperimentConfig(table: TOMLParser.parse(text, file: "c.toml"), file: "c.toml")
  }

  @Test("a config sets data, layers and training")
  func fields() throws {
    let c = try config("""
      name = "demo"
      [data]
      set = "digits"
      subset = 500
      standardize = true
      [[layer]]
      type = "dense"
      units = 30
      activation = "lecun_tanh"
      weights = "gaussian(0.01)"
      [[layer]]
      type = "dense"
      units = 10
      activation = "softmax"
      [train]
      loss = "nll"
      optimizer = "momentum"
      learning_rate = 0.05
      momentum = 0.8
      batch_size = "full"
      epochs = 7
      seed = 42
      threads = 2
      """)
    #expect(c.name == "demo" && c.dataSet == .digits && c.trainCount == 500 && c.standardize)
    #expect(c.layers.count == 2 && c.layers[0].activation == "lecun_tanh" && c.layers[0].weights == "gaussian(0.01)")
    #expect(c.loss == .negativeLogLikelihood() && c.optimizer == "momentum" && c.learningRate == 0.05)
    #expect(c.momentum == 0.8 && c.batchSize == .full && c.epochs == 7 && c.seed == 42 && c.threads == 2)
    let model = try Experiment(config: c).makeModel(inputShape: [64])
    #expect(model.layers.map(\.typeName) == ["dense", "dense"] && model.layers.map { ($0 as! Dense).activation } == [.lecunTanh, .softmax])
    #expect(model.parameterCount == 64 * 30 + 30 + 30 * 10 + 10)
  }

  @Test("config mistakes name the file, line and field", arguments: [
    ("[train]\nlearning_rate = \"fast\"\n", "c.toml:2", "train.learning_rate: expected a number"),
    ("[train]\nlearnin_rate = 0.1\n", "c.toml:2", "train.learnin_rate: unknown key"),
    ("[train]\nbatch_size = 0\n", "c.toml:2", "positive integer or \"full\""),
    ("[train]\nloss = \"hinge\"\n", "c.toml:2", "unknown loss 'hinge'"),
    ("[train]\nmomentum = 1.5\n", "c.toml:2", "at most"),
    ("[data]\nset = \"cifar\"\n", "c.toml:2", "unknown data set 'cifar'"),
    ("[data]\nindices = [1, -2]\n", "c.toml:2", "at least 0"),
    ("[[layer]]\nunits = 3\n", "c.toml:1", "needs a 'type'"),
    ("[[layer]]\ntype = \"dense\"\nunits = 0\n", "c.toml:3", "at least 1"),
    ("colour = \"blue\"\n", "c.toml:1", "unknown key"),
  ])
  func configErrors(text: String, location: String, words: String) {
    do {
      _ = try config(text)
      Issue.record("accepted: \(text)")
    } catch let e as NerveError {
      #expect(e.location == location, "\(e)")
      #expect(e.message.contains(words), "\(e)")
    } catch { Issue.record("\(error)") }
  }

  @Test("layers that cannot be built are reported with their place in the file")
  func layerErrors() throws {
    let c1 = try config("[[layer]]\ntype = \"dense\"\nunits = 10\nactivation = \"swish\"\n")
    #expect(throws: NerveError.self) { try Experiment(config: c1).makeModel(inputShape: [784]) }
    do { _ = try Experiment(config: c1).makeModel(inputShape: [784]) } catch let e as NerveError {
      #expect(e.location == "c.toml:1 layer 0.activation" && e.message.contains("unknown activation 'swish'"), "\(e)")
    }
    let c2 = try config("[[layer]]\ntype = \"dense\"\nunits = 10\nweights = \"uniform(1)\"\n")
    do { _ = try Experiment(config: c2).makeModel(inputShape: [784]); Issue.record("built") } catch let e as NerveError {
      #expect(e.location.hasSuffix(".weights") && e.message.contains("takes 2 arguments"), "\(e)")
    }
    let c3 = try config("[[layer]]\ntype = \"wobble\"\n")
    #expect(throws: NerveError.self) { try Experiment(config: c3).makeModel(inputShape: [784]) }
    // A dense layer after a shape it cannot take: a multi-dimensional input.
    let c4 = try config("[[layer]]\ntype = \"dense\"\nunits = 10\n")
    do { _ = try Experiment(config: c4).makeModel(inputShape: [28, 28, 1]); Issue.record("built") } catch let e as NerveError {
      #expect(e.message.contains("Flatten"), "\(e)")
    }
  }

  @Test("every example config parses and builds", arguments: exampleConfigs())
  func examples(path: String) throws {
    let c = try ExperimentConfig(contentsOf: path)
    try c.validate()
    let e = Experiment(config: c)
    let model = try e.makeModel(inputShape: e.sampleShape)
    #expect(model.outputShape == [10], "\(path)")
    _ = try e.makeOptimizer()
    let name = (path as NSString).lastPathComponent
    // Lab configs start with their lab's letter; the one recipe beyond the labs is named for its goal.
    if name == "fast-99.toml" {
      #expect(c.schedule == .oneCycle() && c.epochs == 1 && c.validationCount == 0)
      // nerve train's default model is this file's recipe (where each was read from aside).
      var recipe = ExperimentConfig.fastRecipe
      recipe.source = c.source
      recipe.layerLocations = c.layerLocations
      #expect(c == recipe)
    } else {
      #expect(name.range(of: "^lab-[a-z]-", options: .regularExpression) != nil, "\(name) starts with its lab's letter")
    }
  }
}

/// The TOML files in examples/ (found from this source file's location).
func exampleConfigs() -> [String] {
  let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")
  let files = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
  return files.filter { $0.hasSuffix(".toml") }.sorted().map { root.path + "/" + $0 }
}
