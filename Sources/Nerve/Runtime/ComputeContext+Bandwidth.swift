// How fast this machine streams memory through an optimizer step, and how fast Nerve's own
// products run on it: the floors under training whose time goes to moving parameters and
// their optimizer state, or to multiply-adds.
import CNerve

extension ComputeContext {
  /// Bytes per second an Adam step moves over `floats` parameters at this context's thread
  /// count (it reads weights, gradients and two moments and writes three arrays: 28 bytes per
  /// parameter); the fastest of `runs` steps, since other work on the machine only slows a step
  /// and a floor is what the machine can do. The arrays should be much larger than the caches.
  public func adamStepBandwidth(floats: Int = 32 << 20, runs: Int = 5) throws -> Double {
    let seconds = try fastestAdamStep(floats: floats, steps: 1, runs: runs, for: "measuring memory bandwidth")
    return Double(28 * floats) / seconds
  }

  /// Parameters per second an Adam step updates where its arrays stay in cache: the step's own
  /// arithmetic, which memory does not limit (its square root and division bound it: on an AMD
  /// Zen 4, 0.285 ns a parameter a thread, the same as for arrays a tenth the size). Each of this
  /// context's threads gets `perThread` parameters, 16 bytes each over the four arrays: 1 MB by
  /// default, since a step shares out no fewer than 65,536 parameters a thread, and within the
  /// caches' reach of each core (1-2 MB of L2, a shared L3 beyond) on the machines measured.
  /// The fastest of `runs` runs of `steps` steps each.
  public func adamStepRate(perThread: Int = 1 << 16, steps: Int = 20, runs: Int = 5) throws -> Double {
    precondition(perThread > 0, "perThread must be positive")
    let floats = perThread * threads
    return Double(floats) / (try fastestAdamStep(floats: floats, steps: steps, runs: runs, for: "measuring the Adam step's rate"))
  }

  /// Seconds an Adam step over `floats` parameters takes: of `runs` runs of `steps` steps each
  /// (after one untimed run), the fastest run's average, the moments carried on from step to step.
  private func fastestAdamStep(floats: Int, steps: Int, runs: Int, for purpose: String) throws -> Double {
    precondition(floats > 0, "floats must be positive")
    try Memory.check(floats: 4 * floats, for: purpose, at: "bench")
    let w = FloatBuffer(count: floats), m = FloatBuffer(count: floats), v = FloatBuffer(count: floats)
    let g = FloatBuffer(count: floats)
    g.pointer.update(repeating: 1e-3, count: floats)
    var step: Int64 = 0
    let steps = max(steps, 1)
    return try fastestSeconds(runs: runs) {
      for _ in 0..<steps {
        step += 1
        try check(
          nerve_adam_step(
            raw, w.pointer, m.pointer, v.pointer, g.pointer, Int64(floats), 1e-4, 0.9, 0.999, 1e-7, 0, 0, step))
      }
    } / Double(steps)
  }

  /// Floating-point operations per second of a `size`^3 dense product (nerve_dense_forward)
  /// at this context's thread count: the fastest of `runs` after one warm-up (as for the
  /// bandwidth: a floor from a median measured in a slow minute can lie above the workload).
  public func productRate(size: Int = 2048, runs: Int = 5) throws -> Double {
    try Memory.check(floats: 3 * size * size, for: "measuring the product rate", at: "bench")
    let a = FloatBuffer(count: size * size), b = FloatBuffer(count: size * size)
    let c = FloatBuffer(count: size * size)
    for i in 0..<(size * size) {
      a.pointer[i] = Float(i % 7) * 0.01
      b.pointer[i] = Float(i % 5) * 0.01
    }
    let seconds = try fastestSeconds(runs: runs) {
      try check(nerve_dense_forward(raw, c.pointer, a.pointer, b.pointer, nil, Int64(size), Int64(size), Int64(size)))
    }
    return 2 * Double(size) * Double(size) * Double(size) / seconds
  }

  /// The fewest seconds of `runs` calls of `body` after one untimed call (which touches the
  /// pages and warms the caches).
  private func fastestSeconds(runs: Int, _ body: () throws -> Void) throws -> Double {
    let clock = ContinuousClock()
    try body()
    var seconds: [Double] = []
    for _ in 0..<max(runs, 1) {
      let started = clock.now
      try body()
      seconds.append((clock.now - started).seconds)
    }
    return seconds.min()!
  }
}
