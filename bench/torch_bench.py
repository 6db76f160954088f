"""PyTorch versions of the workloads `nerve bench` times, run the same way.

Each workload mirrors Nerve's exactly: same network, loss, optimizer, batch size, data (MNIST,
first 50,000 training images, pixels / 255), and the timed region is one epoch of forward,
loss, backward and step. Prints one JSON object per measurement, like `nerve bench --json`.

    python bench/torch_bench.py --threads 1,2 --repeats 5 --workloads lab-a,minibatch,per-sample
    python bench/torch_bench.py --threads 2 --repeats 1 --workloads lab-e,lab-e-default-adam
    python bench/torch_bench.py --threads 1,2 --workloads predict-mlp,predict-cnn,latency-mlp
"""
import argparse
import gzip
import json
import os
import statistics
import time

import numpy as np
import torch


def idx(path):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir):
    x = idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz"))[:50000].reshape(50000, 784)
    y = idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz"))[:50000]
    x = torch.from_numpy(x.astype(np.float32) / 255.0)
    y = torch.from_numpy(y.astype(np.int64))
    return x, y


def load_test(data_dir):
    x = idx(os.path.join(data_dir, "t10k-images-idx3-ubyte.gz")).reshape(-1, 784)
    return torch.from_numpy(x.astype(np.float32) / 255.0)


def lab_a_model():
    """784-30-10 sigmoid, weights uniform in [-0.1, 0.1]."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 30), torch.nn.Sigmoid(),
                                torch.nn.Linear(30, 10), torch.nn.Sigmoid())
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.uniform_(m.weight, -0.1, 0.1)
            torch.nn.init.zeros_(m.bias)
    return model


def lab_a(x, y, epochs):
    """784-30-10 sigmoid, MSE (sum over outputs, mean over batch), full batch, lr 1."""
    model = lab_a_model()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    target = torch.nn.functional.one_hot(y, 10).float()
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        opt.zero_grad()
        out = model(x)
        loss = ((out - target) ** 2).sum(dim=1).mean()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    return times, len(x)


def timed_minibatch_epochs(model, opt, x, y, epochs, batch):
    """Shuffled minibatch epochs of softmax cross-entropy; the seconds of each epoch."""
    lossf = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    times = []
    for _ in range(epochs):
        t = time.perf_counter()
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), batch):
            i = order[s:s + batch]
            opt.zero_grad()
            loss = lossf(model(x[i]), y[i])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t)
    return times, len(x)


def lab_c(x, y, epochs, batch, lr):
    """784-300-10 sigmoid + softmax cross-entropy, shuffled minibatches."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(784, 300), torch.nn.Sigmoid(), torch.nn.Linear(300, 10))
    for m in model:
        if isinstance(m, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(m.weight)
            torch.nn.init.zeros_(m.bias)
    return timed_minibatch_epochs(model, torch.optim.SGD(model.parameters(), lr=lr), x, y, epochs, batch)


def lab_e_model():
    """Conv 32 3x3 same + ReLU -> BatchNorm -> MaxPool 2 -> Flatten -> Dense 784 ReLU -> Dense 10,
    Glorot-normal weights."""
    torch.manual_seed(1)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.BatchNorm2d(32, momentum=0.01, eps=1e-3),
        torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(32 * 14 * 14, 784), torch.nn.ReLU(),
        torch.nn.Linear(784, 10))
    for m in model:
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)):
            torch.nn.init.xavier_normal_(m.weight)
            torch.nn.init.zeros_(m.bias)
    return model


def lab_e(x, y, epochs, fused):
    """Lab E's CNN, Adam lr 1e-4, batch 32, shuffled."""
    model = lab_e_model()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-7, fused=fused)
    return timed_minibatch_epochs(model, opt, x.reshape(-1, 1, 28, 28), y, epochs, 32)


def fast_99(data_dir, runs):
    """The fast recipe (examples/fast-99.toml in PyTorch): conv 5x5 16 -> max pool -> conv 3x3 32
    -> max pool -> dense 256 -> 10, ReLU, Adam lr 0.01 betas (0.7, 0.9) with a one-cycle schedule
    (cosine, 25% warm-up from lr/25 down to lr/1000), batch 192, one epoch on all 60,000 images,
    PyTorch's default initialisation. Seconds of training per run and the mean test accuracy."""
    x = idx(os.path.join(data_dir, "train-images-idx3-ubyte.gz")).reshape(-1, 1, 28, 28)
    x = torch.from_numpy(x.astype(np.float32) / 255.0)
    y = torch.from_numpy(idx(os.path.join(data_dir, "train-labels-idx1-ubyte.gz")).astype(np.int64))
    xt = load_test(data_dir).reshape(-1, 1, 28, 28)
    yt = torch.from_numpy(idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte.gz")).astype(np.int64))
    times, accuracies = [], []
    for run in range(runs):
        torch.manual_seed(run + 1)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(1, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(16, 32, 3), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
            torch.nn.Linear(800, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
        opt = torch.optim.Adam(model.parameters(), lr=0.01, betas=(0.7, 0.9))
        steps = (len(x) + 191) // 192
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.01, total_steps=steps, pct_start=0.25,
                                                       div_factor=25, final_div_factor=40)
        lossf = torch.nn.CrossEntropyLoss()
        g = torch.Generator().manual_seed(run + 1)
        t = time.perf_counter()
        order = torch.randperm(len(x), generator=g)
        for s in range(0, len(x), 192):
            i = order[s:s + 192]
            opt.zero_grad()
            lossf(model(x[i]), y[i]).backward()
            opt.step()
            schedule.step()
        times.append(time.perf_counter() - t)
        model.eval()
        with torch.inference_mode():
            accuracies.append((model(xt).argmax(1) == yt).float().mean().item())
    return times, len(x), float(np.mean(accuracies[1:]))


def inference(model, x, epochs, one_at_a_time):
    """Seconds of each pass over the test images: all at once, or one image per call (the
    latency an app sees); the outputs as Nerve gives them (softmax probabilities for the CNN)."""
    model.eval()
    times = []
    with torch.inference_mode():
        for _ in range(epochs):
            t = time.perf_counter()
            if one_at_a_time:
                for i in range(len(x)):
                    model(x[i:i + 1])
            else:
                model(x)
            times.append(time.perf_counter() - t)
    return times, len(x)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "Data", "mnist"))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--workloads", default="lab-a,minibatch,per-sample")
    a = p.parse_args()
    x, y = load(a.data)
    for w in a.workloads.split(","):
        for th in [int(t) for t in a.threads.split(",")]:
            torch.set_num_threads(th)
            runs = a.repeats + 1
            if w == "lab-a":
                times, n = lab_a(x, y, runs)
            elif w == "minibatch":
                times, n = lab_c(x, y, runs, 100, 0.1)
            elif w == "per-sample":
                times, n = lab_c(x[:10000], y[:10000], runs, 1, 0.01)
            elif w == "lab-e":
                times, n = lab_e(x, y, runs, fused=True)
            elif w == "lab-e-default-adam":
                times, n = lab_e(x, y, runs, fused=False)
            elif w in ("predict-mlp", "latency-mlp"):
                times, n = inference(lab_a_model(), load_test(a.data), runs, w == "latency-mlp")
            elif w == "fast-99":
                times, n, accuracy = fast_99(a.data, runs)
            elif w == "predict-cnn":
                cnn = torch.nn.Sequential(lab_e_model(), torch.nn.Softmax(dim=1))
                times, n = inference(cnn, load_test(a.data).reshape(-1, 1, 28, 28), runs, False)
            else:
                raise SystemExit(f"unknown workload {w}")
            times = times[1:]
            m = statistics.median(times)
            record = {"tool": "pytorch " + torch.__version__, "workload": w, "threads": th,
                      "median_seconds": m, "samples_per_second": n / m, "runs": times}
            if w == "fast-99":
                record["accuracy"] = accuracy
            print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
