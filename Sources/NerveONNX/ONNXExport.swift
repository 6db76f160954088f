// ONNX export: a trained Sequential model as an ONNX graph that onnxruntime and other runtimes
// run. Nerve keeps images channels-last (NHWC); ONNX's convolutions and pools want NCHW, so the
// graph transposes at the first spatial layer and back before Flatten (which must see Nerve's
// NHWC order for the dense weights after it to line up).
import Foundation
import Nerve
import SwiftProtobuf

/// The ONNX file format as Nerve writes it.
///
/// Opset 13 with IR version 7: opset 13 is the first whose Softmax works on one axis (earlier
/// ones flatten to 2-D first), every operator Nerve needs (Gemm, MatMul, Conv, MaxPool,
/// AveragePool, BatchNormalization, Flatten, Transpose, Relu, Sigmoid, Tanh, Mul, Add, Softmax)
/// has its current form there, and every maintained runtime reads it (onnxruntime since 1.6).
/// IR 7 is the version opset 13 was published with; a newer IR would add nothing Nerve uses and
/// shut out older runtimes.
public enum ONNXFormat {
  public static let opset: Int64 = 13
  public static let irVersion: Int64 = 7
}

extension Sequential {
  /// Writes the model to `path` as ONNX (atomically). The graph's input is named `input`,
  /// shaped like Nerve's samples with a batch dimension first (`[batch, 784]` or
  /// `[batch, 28, 28, 1]`, channels last); its output, `output`, is the model's outputs
  /// (probabilities when it ends with a softmax). Dropout is left out (inference), batch norm
  /// uses its running statistics. Inputs are expected prepared as the model's
  /// `preprocessing` says (stored in the file's metadata as `nerve.preprocessing`).
  /// - Throws: `NerveError` naming the layer if ONNX cannot express it (nothing is written).
  public func exportONNX(to path: String) throws {
    try AtomicFile.write(try onnxData(), to: path)
  }

  /// The model as the bytes of an ONNX file.
  public func onnxData() throws -> Data {
    var graph = ONNXGraph(model: self)
    try graph.build()
    return try graph.modelProto().serializedData()
  }
}

/// Builds an ONNX graph layer by layer, tracking the current tensor and its layout.
struct ONNXGraph {
  enum Layout { case flat, nhwc, nchw }

  let model: Sequential
  var nodes: [Onnx_NodeProto] = []
  var initializers: [Onnx_TensorProto] = []
  /// The name of the tensor the next layer reads, and how its values are laid out.
  var current = "input"
  var layout: Layout
  private var counter = 0

  init(model: Sequential) {
    self.model = model
    layout = model.inputShape.count == 3 ? .nhwc : .flat
  }

  mutating func build() throws {
    for (i, layer) in model.layers.enumerated() {
      try add(layer, index: i)
    }
    if layout == .nchw { transpose(to: .nhwc) }
    // The last node writes the graph's output.
    if nodes.isEmpty || nodes[nodes.count - 1].output != [current] {
      node("Identity", [current])
    }
    nodes[nodes.count - 1].output = ["output"]
    current = "output"
  }

  /// The ModelProto holding the graph.
  func modelProto() -> Onnx_ModelProto {
    var g = Onnx_GraphProto()
    g.name = "nerve"
    g.node = nodes
    g.initializer = initializers
    g.input = [valueInfo("input", shape: model.inputShape)]
    g.output = [valueInfo("output", shape: model.outputShape)]
    var m = Onnx_ModelProto()
    m.irVersion = ONNXFormat.irVersion
    var opset = Onnx_OperatorSetIdProto()
    opset.version = ONNXFormat.opset
    m.opsetImport = [opset]
    m.producerName = "nerve"
    m.producerVersion = nerveVersion
    m.graph = g
    var pre = Onnx_StringStringEntryProto()
    pre.key = "nerve.preprocessing"
    pre.value = (try? String(decoding: JSONEncoder().encode(self.model.preprocessing), as: UTF8.self)) ?? "{}"
    m.metadataProps = [pre]
    return m
  }

  // MARK: Layers

  private mutating func add(_ layer: Layer, index i: Int) throws {
    let where_ = "layer \(i) (\(layer.typeName))"
    switch layer {
    case let dense as Dense:
      try requireFlat(where_)
      let w = try model.parameter(layer: i, "weight")
      let wName = constant("layers.\(i).weight", w)
      if dense.useBias {
        node("Gemm", [current, wName, constant("layers.\(i).bias", try model.parameter(layer: i, "bias"))])
      } else {
        node("MatMul", [current, wName])
      }
      try activation(dense.activation, where_)
    case let conv as Conv2D:
      if layout == .nhwc { transpose(to: .nchw) }
      let w = try model.parameter(layer: i, "weight")  // [KH, KW, C, K] -> ONNX's [K, C, KH, KW]
      var inputs = [current, constant("layers.\(i).weight", permuted(w, [3, 2, 0, 1]))]
      if conv.useBias { inputs.append(constant("layers.\(i).bias", try model.parameter(layer: i, "bias"))) }
      let p = conv.appliedPadding
      node("Conv", inputs, [
        ints("kernel_shape", [conv.kernel.height, conv.kernel.width]),
        ints("strides", [conv.stride.height, conv.stride.width]),
        ints("pads", [p.top, p.left, p.bottom, p.right]),
      ])
      try activation(conv.activation, where_)
    case let pool as Pooling2D:
      if layout == .nhwc { transpose(to: .nchw) }
      let p = pool.appliedPadding
      var attributes = [
        ints("kernel_shape", [pool.pool.height, pool.pool.width]),
        ints("strides", [pool.stride.height, pool.stride.width]),
        ints("pads", [p.top, p.left, p.bottom, p.right]),
      ]
      // Nerve's average never counts padding (ONNX's default too; said here to be plain).
      if pool is AvgPool2D { attributes.append(int("count_include_pad", 0)) }
      node(pool is MaxPool2D ? "MaxPool" : "AveragePool", [current], attributes)
    case let norm as BatchNorm:
      if layout == .nhwc { transpose(to: .nchw) }
      node("BatchNormalization", [
        current, constant("layers.\(i).gamma", try model.parameter(layer: i, "gamma")),
        constant("layers.\(i).beta", try model.parameter(layer: i, "beta")),
        constant("layers.\(i).running_mean", try model.state(layer: i, "running_mean")),
        constant("layers.\(i).running_var", try model.state(layer: i, "running_var")),
      ], [float("epsilon", norm.epsilon)])
    case is Dropout:
      break  // Inference: dropout passes its input through.
    case is Flatten:
      if layout == .nchw { transpose(to: .nhwc) }
      if layout == .nhwc { node("Flatten", [current], [int("axis", 1)]) }
      layout = .flat
    case is Softmax:
      try requireFlat(where_)
      node("Softmax", [current], [int("axis", -1)])
    case let a as ActivationLayer:
      try activation(a.function, where_)
    default:
      throw NerveError(.badValue, at: where_, "has no ONNX form in this version of Nerve; the model was not exported")
    }
  }

  private func requireFlat(_ where_: String) throws {
    guard layout == .flat else {
      throw NerveError(.shapeMismatch, at: where_, "needs flat input but the model gives it images; ONNX export needs a Flatten before it")
    }
  }

  /// The element-wise activation (or softmax) applied to the current tensor.
  private mutating func activation(_ f: Activation, _ where_: String) throws {
    switch f {
    case .identity: break
    case .sigmoid: node("Sigmoid", [current])
    case .tanh: node("Tanh", [current])
    case .relu: node("Relu", [current])
    case .softmax:
      try requireFlat(where_)
      node("Softmax", [current], [int("axis", -1)])
    case .lecunTanh:
      // 1.7159 tanh(2x/3) + 0.01x, as the C kernel computes it.
      let x = current
      node("Mul", [x, scalar(2.0 / 3.0)])
      node("Tanh", [current])
      node("Mul", [current, scalar(1.7159)])
      let scaled = current
      node("Mul", [x, scalar(0.01)])
      node("Add", [scaled, current])
    }
  }

  private mutating func transpose(to target: Layout) {
    node("Transpose", [current], [ints("perm", target == .nchw ? [0, 3, 1, 2] : [0, 2, 3, 1])])
    layout = target
  }

  // MARK: Graph pieces

  /// Adds a node reading `inputs`; its output becomes the current tensor.
  private mutating func node(_ op: String, _ inputs: [String], _ attributes: [Onnx_AttributeProto] = []) {
    counter += 1
    var n = Onnx_NodeProto()
    n.opType = op
    n.name = "\(op.lowercased())_\(counter)"
    n.input = inputs
    n.output = ["t\(counter)"]
    n.attribute = attributes
    nodes.append(n)
    current = "t\(counter)"
  }

  /// Adds an initializer holding `tensor`; returns its name.
  private mutating func constant(_ name: String, _ tensor: Tensor) -> String {
    var t = Onnx_TensorProto()
    t.name = name
    t.dataType = Int32(Onnx_TensorProto.DataType.float.rawValue)
    t.dims = tensor.shape.map(Int64.init)
    t.rawData = tensor.scalars.withUnsafeBufferPointer { Data(buffer: $0) }  // little-endian here
    initializers.append(t)
    return name
  }

  private mutating func scalar(_ value: Float) -> String {
    constant("const_\(initializers.count)", Tensor(shape: [], values: [value]))
  }

  private func valueInfo(_ name: String, shape: [Int]) -> Onnx_ValueInfoProto {
    var batch = Onnx_TensorShapeProto.Dimension()
    batch.dimParam = "batch"
    var t = Onnx_TypeProto.Tensor()
    t.elemType = Int32(Onnx_TensorProto.DataType.float.rawValue)
    t.shape.dim = [batch] + shape.map { d in
      var dim = Onnx_TensorShapeProto.Dimension()
      dim.dimValue = Int64(d)
      return dim
    }
    var v = Onnx_ValueInfoProto()
    v.name = name
    v.type.tensorType = t
    return v
  }

  private func ints(_ name: String, _ values: [Int]) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .ints
    a.ints = values.map(Int64.init)
    return a
  }

  private func int(_ name: String, _ value: Int) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .int
    a.i = Int64(value)
    return a
  }

  private func float(_ name: String, _ value: Float) -> Onnx_AttributeProto {
    var a = Onnx_AttributeProto()
    a.name = name
    a.type = .float
    a.f = value
    return a
  }

  /// `t` with its axes reordered: axis k of the result is axis `order[k]` of `t`.
  private func permuted(_ t: Tensor, _ order: [Int]) -> Tensor {
    let shape = t.shape, rank = shape.count
    let newShape = order.map { shape[$0] }
    var strides = [Int](repeating: 1, count: rank)
    for k in stride(from: rank - 2, through: 0, by: -1) { strides[k] = strides[k + 1] * shape[k + 1] }
    let values = t.scalars
    var out = [Float](repeating: 0, count: values.count)
    var index = [Int](repeating: 0, count: rank)
    for flat in 0..<values.count {
      var source = 0
      for k in 0..<rank { source += index[k] * strides[order[k]] }
      out[flat] = values[source]
      var k = rank - 1
      while k >= 0 {
        index[k] += 1
        if index[k] < newShape[k] { break }
        index[k] = 0
        k -= 1
      }
    }
    return Tensor(shape: newShape, values: out)
  }
}
