#!/usr/bin/env python3
"""Predicted data-parallel speed-up on a cluster, from one machine's step time.

    python3 bench/mpi_model.py                       # the table in bench/README.md
    python3 bench/mpi_model.py --step-ms 11 --params 4926266 --latency-us 5

Per step with N nodes (each node as fast as the measured machine):
  compute        t_c / N
  ring all-reduce (order-free): 2 (N-1)/N * G / B + 2 (N-1) * L
  Nerve's ordered chain (byte-identical): the gradient travels rank to rank, each adding its
                 rows; layer by layer the ranks overlap, but the largest layer's sum still
                 crosses N-1 links one after another, then the result is broadcast; batch-norm
                 layers gather the whole batch's inputs (forward) and output gradients (backward),
                 A bytes per step in all, of which each rank receives (N-1)/N:
                 (N-1) * (G_max / B + L) + ceil(log2 N) * (G / B + L) + (N-1)/N * A / B
  speed-up S(N) = t_c / (t_c / N + t_comm)
G: gradient bytes (4 per parameter), G_max: the largest layer's, B: link bandwidth, L: latency.
(An order-free run would synchronise batch norm with per-channel sums only; the ring column
leaves that out.)
"""
import argparse, math

# Step time measured here (2 threads, an AMD Zen 4 machine of this kind, 2026-12-04: Lab E from
# bench/lab_e_step.c and nerve bench, the others from nerve train on 12,800 images, 2 epochs),
# parameters, the largest layer's parameters, and the bytes batch norm gathers per step (2 x
# batch x the values per sample its layers see).
WORKLOADS = {
    "Lab E (batch 32)": (10.0, 4_926_266, 4_918_032, 2 * 32 * 28 * 28 * 32 * 4),
    "Lab H (batch 256)": (30.0, 431_754, 409_856, 0),
    "fast recipe (batch 256)": (8.4, 215_194, 205_056, 0),
}

def speedup(step_ms, params, largest, gathered, nodes, gbit, latency_us, ordered):
    t_c = step_ms / 1e3
    bw = gbit * 1e9 / 8
    g, g_max, lat = 4 * params, 4 * largest, latency_us / 1e6
    if nodes == 1:
        return 1.0
    if ordered:
        comm = (nodes - 1) * (g_max / bw + lat) + math.ceil(math.log2(nodes)) * (g / bw + lat)
        comm += (nodes - 1) / nodes * gathered / bw
    else:
        comm = 2 * (nodes - 1) / nodes * g / bw + 2 * (nodes - 1) * lat
    return t_c / (t_c / nodes + comm)

def main():
    p = argparse.ArgumentParser()
    p.add_argument("--step-ms", type=float)
    p.add_argument("--params", type=int)
    p.add_argument("--largest", type=int)
    p.add_argument("--gathered", type=int, default=0, help="bytes batch norm gathers per step")
    p.add_argument("--latency-us", type=float, default=5.0)
    a = p.parse_args()
    work = WORKLOADS if a.step_ms is None else {"yours": (a.step_ms, a.params, a.largest or a.params, a.gathered)}
    nodes = [2, 4, 8, 16, 32, 64]
    for name, (ms, params, largest, gathered) in work.items():
        print(f"\n{name}: {ms} ms per step, {params:,} parameters ({4 * params / 1e6:.1f} MB of gradient), "
              f"{gathered / 1e6:.1f} MB gathered for batch norm")
        print("| link | reduction | " + " | ".join(f"{n} nodes" for n in nodes) + " |")
        print("|---|---|" + "---|" * len(nodes))
        for gbit in (10, 25, 100):
            for ordered in (False, True):
                row = [f"{speedup(ms, params, largest, gathered, n, gbit, a.latency_us, ordered):.1f}x" for n in nodes]
                kind = "ordered chain (identical)" if ordered else "ring all-reduce"
                print(f"| {gbit} Gbit/s | {kind} | " + " | ".join(row) + " |")

if __name__ == "__main__":
    main()
