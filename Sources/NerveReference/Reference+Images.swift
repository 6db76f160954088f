// Reference convolution, pooling, batch norm, dropout and optimizer steps: plain loops in
// Double, written from the definitions (direct convolution, scatter-form backward passes).

#if canImport(Glibc)
  import Glibc
#endif

/// Sizes of a convolution or pooling: channels-last images [N, H, W, C].
public struct RefGeometry: Sendable, CustomStringConvertible {
  public var n, h, w, c: Int
  /// Filters (convolution) or channels (pooling).
  public var k: Int
  public var kh, kw, sh, sw, pt, pl, oh, ow: Int

  public init(n: Int, h: Int, w: Int, c: Int, k: Int, kh: Int, kw: Int, sh: Int, sw: Int, pt: Int, pl: Int, oh: Int, ow: Int) {
    (self.n, self.h, self.w, self.c, self.k) = (n, h, w, c, k)
    (self.kh, self.kw, self.sh, self.sw, self.pt, self.pl, self.oh, self.ow) = (kh, kw, sh, sw, pt, pl, oh, ow)
  }

  /// "same" (output = ceil(input / stride)) or "valid" padding, as Keras computes them.
  public init(n: Int, h: Int, w: Int, c: Int, k: Int, kh: Int, kw: Int, sh: Int, sw: Int, same: Bool) {
    let oh = same ? (h + sh - 1) / sh : (h - kh) / sh + 1
    let ow = same ? (w + sw - 1) / sw : (w - kw) / sw + 1
    let pt = same ? max(0, ((oh - 1) * sh + kh - h)) / 2 : 0
    let pl = same ? max(0, ((ow - 1) * sw + kw - w)) / 2 : 0
    self.init(n: n, h: h, w: w, c: c, k: k, kh: kh, kw: kw, sh: sh, sw: sw, pt: pt, pl: pl, oh: oh, ow: ow)
  }

  public var description: String {
    "N\(n) \(h)x\(w)x\(c) k\(k) \(kh)x\(kw) s\(sh)x\(sw) p\(pt),\(pl) -> \(oh)x\(ow)"
  }
  func input(_ n: Int, _ y: Int, _ x: Int, _ ch: Int) -> Int { ((n * h + y) * w + x) * c + ch }
  func output(_ n: Int, _ y: Int, _ x: Int, _ ch: Int, channels: Int) -> Int { ((n * oh + y) * ow + x) * channels + ch }
}

extension Reference {
  // MARK: Convolution

  /// out[n,oh,ow,k] = b[k] + sum over kh, kw, c of in[n, oh*sh-pt+kh, ow*sw-pl+kw, c] w[kh,kw,c,k]
  public static func convForward(x: [Double], w: [Double], b: [Double]?, g: RefGeometry) -> [Double] {
    var y = [Double](repeating: 0, count: g.n * g.oh * g.ow * g.k)
    for n in 0..<g.n { for oy in 0..<g.oh { for ox in 0..<g.ow { for f in 0..<g.k {
      var s = b?[f] ?? 0
      for ky in 0..<g.kh { for kx in 0..<g.kw {
        let iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx
        guard iy >= 0, iy < g.h, ix >= 0, ix < g.w else { continue }
        for ch in 0..<g.c { s += x[g.input(n, iy, ix, ch)] * w[((ky * g.kw + kx) * g.c + ch) * g.k + f] }
      } }
      y[g.output(n, oy, ox, f, channels: g.k)] = s
    } } } }
    return y
  }

  /// Gradients of convForward given dy: scattered back through every product.
  public static func convBackward(dy: [Double], x: [Double], w: [Double], g: RefGeometry) -> (dx: [Double], dw: [Double], db: [Double]) {
    var dx = [Double](repeating: 0, count: x.count), dw = [Double](repeating: 0, count: w.count)
    var db = [Double](repeating: 0, count: g.k)
    for n in 0..<g.n { for oy in 0..<g.oh { for ox in 0..<g.ow { for f in 0..<g.k {
      let d = dy[g.output(n, oy, ox, f, channels: g.k)]
      db[f] += d
      for ky in 0..<g.kh { for kx in 0..<g.kw {
        let iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx
        guard iy >= 0, iy < g.h, ix >= 0, ix < g.w else { continue }
        for ch in 0..<g.c {
          let wi = ((ky * g.kw + kx) * g.c + ch) * g.k + f, xi = g.input(n, iy, ix, ch)
          dx[xi] += d * w[wi]
          dw[wi] += d * x[xi]
        }
      } }
    } } } }
    return (dx, dw, db)
  }

  // MARK: Pooling (g.k is unused; channels are g.c)

  /// Window maxima and the winning input position (first in scan order on ties).
  public static func maxPoolForward(x: [Double], g: RefGeometry) -> (y: [Double], argmax: [Int]) {
    var y = [Double](repeating: 0, count: g.n * g.oh * g.ow * g.c), am = [Int](repeating: -1, count: y.count)
    for n in 0..<g.n { for oy in 0..<g.oh { for ox in 0..<g.ow { for ch in 0..<g.c {
      var best = -Double.infinity, pos = -1
      for ky in 0..<g.kh { for kx in 0..<g.kw {
        let iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx
        guard iy >= 0, iy < g.h, ix >= 0, ix < g.w else { continue }
        let v = x[g.input(n, iy, ix, ch)]
        if pos < 0 || v > best { best = v; pos = iy * g.w + ix }
      } }
      let o = g.output(n, oy, ox, ch, channels: g.c)
      y[o] = best
      am[o] = pos
    } } } }
    return (y, am)
  }

  public static func maxPoolBackward(dy: [Double], argmax: [Int], g: RefGeometry) -> [Double] {
    var dx = [Double](repeating: 0, count: g.n * g.h * g.w * g.c)
    for n in 0..<g.n { for oy in 0..<g.oh { for ox in 0..<g.ow { for ch in 0..<g.c {
      let o = g.output(n, oy, ox, ch, channels: g.c), p = argmax[o]
      dx[g.input(n, p / g.w, p % g.w, ch)] += dy[o]
    } } } }
    return dx
  }

  /// Mean of each window's in-image inputs.
  public static func avgPoolForward(x: [Double], g: RefGeometry) -> [Double] {
    var y = [Double](repeating: 0, count: g.n * g.oh * g.ow * g.c)
    for n in 0..<g.n { for oy in 0..<g.oh { for ox in 0..<g.ow { for ch in 0..<g.c {
      var s = 0.0, count = 0
      for ky in 0..<g.kh { for kx in 0..<g.kw {
        let iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx
        guard iy >= 0, iy < g.h, ix >= 0, ix < g.w else { continue }
        s += x[g.input(n, iy, ix, ch)]
        count += 1
      } }
      y[g.output(n, oy, ox, ch, channels: g.c)] = s / Double(count)
    } } } }
    return y
  }

  public static func avgPoolBackward(dy: [Double], g: RefGeometry) -> [Double] {
    var dx = [Double](repeating: 0, count: g.n * g.h * g.w * g.c)
    for n in 0..<g.n { for oy in 0..<g.oh { for ox in 0..<g.ow { for ch in 0..<g.c {
      var cells: [Int] = []
      for ky in 0..<g.kh { for kx in 0..<g.kw {
        let iy = oy * g.sh - g.pt + ky, ix = ox * g.sw - g.pl + kx
        if iy >= 0, iy < g.h, ix >= 0, ix < g.w { cells.append(g.input(n, iy, ix, ch)) }
      } }
      for cell in cells { dx[cell] += dy[g.output(n, oy, ox, ch, channels: g.c)] / Double(cells.count) }
    } } } }
    return dx
  }

  // MARK: Batch normalisation over rows of [r, c]

  public static func batchNormTrain(x: [Double], gamma: [Double], beta: [Double], r: Int, c: Int, eps: Double)
    -> (y: [Double], mean: [Double], variance: [Double])
  {
    var mean = [Double](repeating: 0, count: c), variance = mean
    for j in 0..<c {
      for i in 0..<r { mean[j] += x[i * c + j] }
      mean[j] /= Double(r)
      for i in 0..<r { variance[j] += (x[i * c + j] - mean[j]) * (x[i * c + j] - mean[j]) }
      variance[j] /= Double(r)
    }
    var y = x
    for i in 0..<r { for j in 0..<c {
      y[i * c + j] = gamma[j] * (x[i * c + j] - mean[j]) / (variance[j] + eps).squareRoot() + beta[j]
    } }
    return (y, mean, variance)
  }

  /// Gradients of the training forward, derived through the batch statistics.
  public static func batchNormBackward(dy: [Double], x: [Double], gamma: [Double], r: Int, c: Int, eps: Double)
    -> (dx: [Double], dgamma: [Double], dbeta: [Double])
  {
    let (_, mean, variance) = batchNormTrain(x: x, gamma: gamma, beta: [Double](repeating: 0, count: c), r: r, c: c, eps: eps)
    var dx = x, dgamma = [Double](repeating: 0, count: c), dbeta = dgamma
    for j in 0..<c {
      let inv = 1 / (variance[j] + eps).squareRoot()
      var dxhat = [Double](repeating: 0, count: r)
      for i in 0..<r {
        let xhat = (x[i * c + j] - mean[j]) * inv
        dbeta[j] += dy[i * c + j]
        dgamma[j] += dy[i * c + j] * xhat
        dxhat[i] = dy[i * c + j] * gamma[j]
      }
      // d var and d mean, straight from var = mean((x - mu)^2), mu = mean(x).
      var dvar = 0.0, dmean = 0.0
      for i in 0..<r { dvar += dxhat[i] * (x[i * c + j] - mean[j]) * -0.5 * pow(variance[j] + eps, -1.5) }
      for i in 0..<r { dmean += -dxhat[i] * inv + dvar * -2 * (x[i * c + j] - mean[j]) / Double(r) }
      for i in 0..<r {
        dx[i * c + j] = dxhat[i] * inv + dvar * 2 * (x[i * c + j] - mean[j]) / Double(r) + dmean / Double(r)
      }
    }
    return (dx, dgamma, dbeta)
  }

  // MARK: Optimizer steps

  public static func nesterov(w: [Double], v: [Double], g: [Double], lr: Double, mu: Double, decay: Double) -> (w: [Double], v: [Double]) {
    var w = w, v = v
    for i in w.indices {
      let step = lr * (g[i] + decay * w[i])
      v[i] = mu * v[i] + step
      w[i] -= mu * v[i] + step
    }
    return (w, v)
  }

  /// Adam (decoupled: AdamW) from step t with bias correction.
  public static func adam(
    w: [Double], m: [Double], v: [Double], g: [Double], lr: Double, beta1: Double, beta2: Double, eps: Double,
    decay: Double, decoupled: Bool, step t: Int
  ) -> (w: [Double], m: [Double], v: [Double]) {
    var w = w, m = m, v = v
    for i in w.indices {
      if decoupled { w[i] -= lr * decay * w[i] }
      let gi = g[i] + (decoupled ? 0 : decay * w[i])
      m[i] = beta1 * m[i] + (1 - beta1) * gi
      v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
      let mhat = m[i] / (1 - pow(beta1, Double(t))), vhat = v[i] / (1 - pow(beta2, Double(t)))
      w[i] -= lr * mhat / (vhat.squareRoot() + eps)
    }
    return (w, m, v)
  }

  public static func rmsprop(w: [Double], s: [Double], g: [Double], lr: Double, rho: Double, eps: Double, decay: Double) -> (w: [Double], s: [Double]) {
    var w = w, s = s
    for i in w.indices {
      let gi = g[i] + decay * w[i]
      s[i] = rho * s[i] + (1 - rho) * gi * gi
      w[i] -= lr * gi / (s[i].squareRoot() + eps)
    }
    return (w, s)
  }

  public static func adadelta(w: [Double], eg: [Double], ex: [Double], g: [Double], lr: Double, rho: Double, eps: Double, decay: Double)
    -> (w: [Double], eg: [Double], ex: [Double])
  {
    var w = w, eg = eg, ex = ex
    for i in w.indices {
      let gi = g[i] + decay * w[i]
      eg[i] = rho * eg[i] + (1 - rho) * gi * gi
      let dx = (ex[i] + eps).squareRoot() / (eg[i] + eps).squareRoot() * gi
      ex[i] = rho * ex[i] + (1 - rho) * dx * dx
      w[i] -= lr * dx
    }
    return (w, eg, ex)
  }
}
