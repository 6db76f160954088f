"""The `nerve bench` workloads run from Python through the nerve package (python/), timed
from Python: the wall-clock time between the ends of successive epochs, as a notebook user
sees it (callbacks and the crossing into the library included). Prints one JSON object per
measurement, like `nerve bench --json`, with tool "nerve-python".

    python bench/python_bench.py --threads 1,2 --repeats 5 --workloads lab-a,minibatch
"""
import argparse
import json
import statistics
import time

import nerve


def epoch_times(model, x, y, repeats, threads, **fit):
    """Seconds of each epoch after the first (a warm-up), from Python's clock."""
    ends = []
    start = time.perf_counter()
    model.fit(x, y, epochs=repeats + 1, threads=threads, on_epoch=lambda m: ends.append(time.perf_counter()), **fit)
    marks = [start] + ends
    return [b - a for a, b in zip(marks, marks[1:])][1:]


def workload(name, x, y, repeats, threads):
    if name == "lab-a":
        model = nerve.Sequential([nerve.Dense(30, activation="sigmoid", weights="uniform(-0.1, 0.1)"),
                                  nerve.Dense(10, activation="sigmoid", weights="uniform(-0.1, 0.1)")], input_shape=(784,))
        return epoch_times(model, x, y, repeats, threads, batch_size="full", loss="mse",
                           optimizer=nerve.SGD(learning_rate=1.0)), len(y)
    if name == "minibatch":
        model = nerve.Sequential([nerve.Dense(300, activation="sigmoid"), nerve.Dense(10, activation="softmax")],
                                 input_shape=(784,))
        return epoch_times(model, x, y, repeats, threads, batch_size=100, loss="cross_entropy",
                           optimizer=nerve.SGD(learning_rate=0.1)), len(y)
    raise SystemExit(f"unknown workload {name}; expected lab-a or minibatch")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workloads", default="lab-a,minibatch")
    args = parser.parse_args()
    (x, y), _, _ = nerve.datasets.mnist()
    for name in args.workloads.split(","):
        for t in map(int, args.threads.split(",")):
            seconds, samples = workload(name, x, y, args.repeats, t)
            m = statistics.median(seconds)
            print(json.dumps({"tool": "nerve-python", "workload": name, "threads": t, "median_seconds": m,
                              "samples_per_second": samples / m, "runs": seconds}), flush=True)


if __name__ == "__main__":
    main()
