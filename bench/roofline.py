#!/usr/bin/env python3
"""A roofline for `nerve bench`'s workloads: the work each one does (floating-point operations
and the memory traffic it cannot avoid), the machine's limits, and the share of the limit the
measured time reaches.

    python3 bench/roofline.py --gflops 194 --gbs 36 \\
        --seconds lab-a=0.0402,minibatch=0.1974,lab-e=27.14,fast-99=6.956,predict-mlp=0.0028,predict-cnn=0.889

--gflops: the machine's sgemm peak (2 threads, float32); --gbs: its memory traffic (bytes read
plus written per second, from a large copy); --seconds: `nerve bench --threads 2` medians.

The counts, per epoch (or per call for predict-*), from the networks' shapes:
- FLOPs: 2 per multiply-add of the dense and convolution products: forward, input gradient
  (not for the first layer) and weight gradient, so training is 3x forward (2x for layer 0).
  Zero inputs that the kernels skip (MNIST is about 80% zeros) still count: the effective rate
  can pass the GEMM peak.
- Bytes: what must cross memory at least once: the training images read by the forward pass
  and the first layer's weight gradient; per step, each layer's parameters read for forward
  and input gradient and read+written by its update (SGD 2 arrays, Adam 6: weights, two
  moments); for convolutions, the lowered (im2col) rows written and read for forward and
  weight gradient. Activations that fit in cache are not counted.
The floor is max(FLOPs / peak, bytes / bandwidth); the fraction is floor / measured.
"""
import argparse

F = 4  # bytes per float


def dense(i, o, first=False):
    return {"mac": i * o, "first": first, "params": i * o + o, "lowered": 0}


def conv(h, w, c, k, kh, kw, first=False):
    oh, ow = h - kh + 1, w - kw + 1  # valid padding ("same" passes oh, ow = h, w below)
    return {"mac": oh * ow * k * kh * kw * c, "first": first, "params": kh * kw * c * k + k,
            "lowered": oh * ow * kh * kw * c}


def conv_same(h, w, c, k, kh, kw, first=False):
    return {"mac": h * w * k * kh * kw * c, "first": first, "params": kh * kw * c * k + k,
            "lowered": h * w * kh * kw * c}


# workload: (layers, samples, batch, optimizer state arrays touched per parameter, training?)
WORKLOADS = {
    "lab-a": ([dense(784, 30, True), dense(30, 10)], 50_000, 50_000, 2, True),
    "minibatch": ([dense(784, 300, True), dense(300, 10)], 50_000, 100, 2, True),
    "lab-e": ([conv_same(28, 28, 1, 32, 3, 3, True), dense(6272, 784), dense(784, 10)], 50_000, 32, 6, True),
    "fast-99": ([conv(28, 28, 1, 16, 5, 5, True), conv(12, 12, 16, 32, 3, 3), dense(800, 256), dense(256, 10)],
                60_000, 192, 6, True),
    "predict-mlp": ([dense(784, 30, True), dense(30, 10)], 10_000, 10_000, 0, False),
    "predict-cnn": ([conv_same(28, 28, 1, 32, 3, 3, True), dense(6272, 784), dense(784, 10)], 10_000, 10_000, 0, False),
}


def work(name):
    layers, n, batch, state, training = WORKLOADS[name]
    steps = -(-n // batch)
    passes = lambda l: (2 if l["first"] else 3) if training else 1
    flops = sum(2 * l["mac"] * n * passes(l) for l in layers)
    images = n * 784 * F * (2 if training else 1)
    params = sum(l["params"] for l in layers)
    per_step = params * F * ((2 + state) if training else 1)
    lowered = sum(l["lowered"] * n * F * (4 if training else 2) for l in layers)
    return flops, images + steps * per_step + lowered


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--gflops", type=float, required=True)
    p.add_argument("--gbs", type=float, required=True)
    p.add_argument("--seconds", required=True)
    a = p.parse_args()
    measured = {k: float(v) for k, v in (kv.split("=") for kv in a.seconds.split(","))}
    print(f"| workload | GFLOP | GB moved | floor at {a.gflops:.0f} GFLOP/s, {a.gbs:.1f} GB/s | measured | GFLOP/s reached | fraction of the floor |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, seconds in measured.items():
        flops, moved = work(name)
        compute, memory = flops / (a.gflops * 1e9), moved / (a.gbs * 1e9)
        bound = "compute" if compute >= memory else "memory"
        floor = max(compute, memory)
        print(f"| {name} | {flops / 1e9:.2f} | {moved / 1e9:.2f} | {floor:.4g} s ({bound}) | {seconds:.4g} s | "
              f"{flops / seconds / 1e9:.0f} | {100 * floor / seconds:.0f}% |")


if __name__ == "__main__":
    main()
