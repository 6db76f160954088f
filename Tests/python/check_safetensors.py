"""Reads a Nerve model with Python's safetensors package and runs it with NumPy.

Checks that the weights, the architecture in the metadata and the preprocessing are usable
from Python: the NumPy forward pass must predict the first MNIST test images exactly as
`nerve predict` did (their classes are in the file given as the second argument).

    python check_safetensors.py model.safetensors predicted.txt
"""
import gzip
import json
import os
import sys

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file

path = sys.argv[1]
tensors = load_file(path)
with safe_open(path, framework="np") as f:
    meta = f.metadata()
assert meta["format"] == "nerve", meta
arch = json.loads(meta["nerve.architecture"])
pre = json.loads(meta["nerve.preprocessing"])
assert arch["input"] == [784], arch

root = os.path.join(os.path.dirname(__file__), "..", "..", "Data", "mnist")
with gzip.open(os.path.join(root, "t10k-images-idx3-ubyte.gz")) as f:
    x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 784)[:1000].astype(np.float32)
with gzip.open(os.path.join(root, "t10k-labels-idx1-ubyte.gz")) as f:
    y = np.frombuffer(f.read(), np.uint8, offset=8)[:1000]
x = x * np.float32(pre["scale"])



def activate(x, name):
    if name in (None, "identity"):
        return x
    if name == "relu":
        return np.maximum(x, 0)
    if name == "sigmoid":
        return 1 / (1 + np.exp(-x))
    if name == "softmax":
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise SystemExit(f"activation {name} not handled by this check")


# Format 2: a dense layer carries its activation; tensors are named by layer index.
assert meta["nerve.format_version"] == "2", meta["nerve.format_version"]
for i, layer in enumerate(arch["layers"]):
    t = layer["type"]
    if t == "dense":
        x = x @ tensors[f"layers.{i}.weight"] + tensors.get(f"layers.{i}.bias", 0)
        x = activate(x, layer.get("activation"))
    else:
        x = activate(x, t)
predicted = x.argmax(axis=1)
expected = [int(line) for line in open(sys.argv[2]) if line.strip()]
assert len(expected) == 100, f"expected 100 predictions from nerve, got {len(expected)}"
mismatches = [i for i, c in enumerate(expected) if predicted[i] != c]
assert not mismatches, f"NumPy and nerve predict differ on images {mismatches}"
accuracy = float((predicted == y).mean())
print(f"safetensors: {len(tensors)} tensors; NumPy predicts the first 100 test images as nerve does; "
      f"accuracy {accuracy:.3f} on 1,000")
assert accuracy > 0.75, accuracy
