import Nerve
import Foundation
let t0 = Date()
let mnist = try MNIST.load()
print("loaded in", Date().timeIntervalSince(t0), mnist.train.count, mnist.validation.count, mnist.test.count)
let model = try Sequential(input: 784) {
  Dense(30, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
  Dense(10, activation: .sigmoid, weights: .uniform(low: -0.1, high: 0.1))
}
let epochs = Int(CommandLine.arguments.count > 1 ? CommandLine.arguments[1] : "20")!
let trainer = Trainer(model: model, loss: .meanSquaredError, optimizer: SGD(learningRate: 1), threads: 2)
let h = try trainer.fit(mnist.train, validation: mnist.validation, epochs: epochs, batchSize: .full, onEpoch: { m in
  if m.epoch % 50 == 0 || m.epoch <= 3 { print(m.epoch, m.seconds, m.trainLoss, m.trainAccuracy, m.validAccuracy!) }
  return true
})
let e = try trainer.evaluate(mnist.test)
print("test", e.correct, e.accuracy, "train seconds", h.trainingSeconds, "median epoch", h.epochs.map(\.seconds).sorted()[h.epochs.count/2])
