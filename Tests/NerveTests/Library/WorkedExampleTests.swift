// The labs' hand-worked examples, through the Swift API (model, trainer, optimizer).
import Nerve
import Testing

@Suite("Worked examples from the labs")
struct WorkedExampleTests {
  /// 2-2-1, sigmoid + MSE, lr 5; weights with the bias row last in the lab's notation.
  func twoTwoOne() throws -> (Sequential, Dataset) {
    let model = try Sequential(input: 2) {
      Dense(2, activation: .sigmoid, weights: .values([0.3, -0.5, 0.8, 0.2]), bias: .values([0.2, -0.4]))
      Dense(1, activation: .sigmoid, weights: .values([-0.6, 0.4]), bias: .values([0.5]))
    }
    let data = try Dataset(
      name: "lab example", features: Tensor(shape: [1, 2], values: [0.8, 0.2]),
      targets: Tensor(shape: [1, 1], values: [0.4]))
    return (model, data)
  }

  @Test("2-2-1 network: output before and after one step of gradient descent", arguments: [true, false])
  func twoTwoOneStep(fused: Bool) throws {
    let (model, data) = try twoTwoOne()
    let before = try model.outputs(for: data.features)
    #expect(abs(before[flat: 0] - 0.5597295991) < 1e-6, "output before: \(before[flat: 0])")
    let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 5), threads: 1)
    trainer.fusesOptimizerSteps = fused
    try trainer.fit(data, epochs: 1, batchSize: .full)
    let w1 = try model.parameter(layer: 0, "weight").scalars + model.parameter(layer: 0, "bias").scalars
    let expectedW1: [Double] = [0.34322654, -0.52734731, 0.81080664, 0.19316317, 0.25403318, -0.43418414]
    expectClose(w1, expectedW1, rtol: 0, atol: 1e-6, "W1 after the step (fused \(fused))")
    let w2 = try model.parameter(layer: 1, "weight").scalars + model.parameter(layer: 1, "bias").scalars
    expectClose(w2, [-0.85414675, 0.27457272, 0.10637456], rtol: 0, atol: 1e-6, "W2 after the step (fused \(fused))")
    let after = try model.outputs(for: data.features)
    #expect(abs(after[flat: 0] - 0.40648824) < 1e-6, "output after: \(after[flat: 0])")
  }

  @Test("2-3-2 network: softmax cross-entropy gradients")
  func twoThreeTwo() throws {
    let model = try Sequential(input: 2) {
      Dense(3, activation: .sigmoid, weights: .values([1, 1, 1, -1, -1, -1]), bias: .zeros)
      Dense(2, activation: .softmax, weights: .values([1, 1, -1, -1, -1, -1]), bias: .zeros)
    }
    let data = try Dataset(features: Tensor(shape: [1, 2], values: [1, -1]), labels: [0], classes: 2)
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 1))
    let grads = try trainer.gradients(for: data)
    func grad(_ layer: Int, _ name: String) -> [Float] {
      grads.first { $0.layer == layer && $0.name == name }!.value.scalars
    }
    let g = 0.44039853898894116
    expectClose(grad(1, "weight"), [-g, g, -g, g, -g, g], rtol: 1e-6, atol: 1e-7, "dV")
    expectClose(grad(1, "bias"), [-0.5, 0.5], rtol: 0, atol: 1e-7, "output bias gradient")
    expectClose(grad(0, "weight"), [0, 0, 0, 0, 0, 0], rtol: 0, atol: 1e-7, "dW")
    expectClose(grad(0, "bias"), [0, 0, 0], rtol: 0, atol: 1e-7, "hidden bias gradient")
    // The model itself is unchanged by computing gradients.
    #expect(try model.parameter(layer: 0, "weight").scalars == [1, 1, 1, -1, -1, -1])
  }

  @Test("gradients agree with finite differences of the loss")
  func finiteDifferences() throws {
    let model = try Sequential(input: 5, seed: 3) {
      Dense(4, activation: .tanh)
      Dense(3, activation: .lecunTanh)
      Dense(3, activation: .softmax)
    }
    let data = try Dataset(
      features: Tensor(shape: [6, 5], values: randomFloats(30, seed: 5)), labels: [0, 1, 2, 0, 1, 2], classes: 3)
    let trainer = Trainer(model: model, loss: .crossEntropy, optimizer: SGD(learningRate: 1), threads: 1)
    for g in try trainer.gradients(for: data) {
      var p = try model.parameter(layer: g.layer, g.name)
      for i in stride(from: 0, to: p.count, by: 3) {
        let original = p[flat: i]
        let h: Float = 1e-2
        p[flat: i] = original + h
        try model.setParameter(layer: g.layer, g.name, to: p)
        let up = try trainer.evaluate(data).loss
        p[flat: i] = original - h
        try model.setParameter(layer: g.layer, g.name, to: p)
        let down = try trainer.evaluate(data).loss
        p[flat: i] = original
        try model.setParameter(layer: g.layer, g.name, to: p)
        let numeric = (up - down) / Double(2 * h)
        #expect(abs(numeric - Double(g.value[flat: i])) < 2e-3, "layer \(g.layer) \(g.name)[\(i)]: analytic \(g.value[flat: i]) numeric \(numeric)")
      }
    }
  }
}
