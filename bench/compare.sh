#!/usr/bin/env bash
# Nerve beside PyTorch on the labs' workloads, in one run, on this machine.
#
#   bench/compare.sh                 # threads 1,2; 5 timed repetitions each (lab-a and
#                                    # minibatch also from Python, through python/)
#   THREADS=2 REPEATS=9 bench/compare.sh
#   WORKLOADS=predict-mlp,predict-cnn,latency-mlp bench/compare.sh   # inference
#   WORKLOADS=fast-99 THREADS=2 REPEATS=5 bench/compare.sh   # the fast recipe, 5 seeds each
#   WORKLOADS=lab-e THREADS=2 REPEATS=1 bench/compare.sh   # Lab E's CNN, one epoch each
#       (PyTorch twice: with Adam(fused=True), and with its default Adam)
#
# Installs PyTorch (CPU use of the PyPI wheel) into bench/.venv on first use. The two tools are
# run alternately workload by workload, so machine noise hits both alike; medians are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-1,2}
REPEATS=${REPEATS:-5}
WORKLOADS=${WORKLOADS:-lab-a,minibatch,per-sample}
TORCH_VERSION=${TORCH_VERSION:-2.15.0}
venv=${VENV:-bench/.venv}
# predict-mlp-pixels has no PyTorch counterpart of its own: it is printed under predict-mlp's row
# (PyTorch is given floats), so asking for it runs that row; each workload runs once.
WORKLOADS=$(tr ',' '\n' <<<"${WORKLOADS//predict-mlp-pixels/predict-mlp}" | awk 'NF && !seen[$0]++' | paste -sd,)

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing torch==$TORCH_VERSION into $venv (first run only)..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$TORCH_VERSION" numpy
fi
swift build -c release >/dev/null
# Nerve from Python too (the package over this build's libNerveModel).
"$venv/bin/pip" install -q --force-reinstall --no-deps ./python

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for w in ${WORKLOADS//,/ }; do
  .build/release/nerve bench --json --workloads "$w" --threads "$THREADS" --repeats "$REPEATS" >>"$results"
  "$venv/bin/python" bench/torch_bench.py --workloads "$w" --threads "$THREADS" --repeats "$REPEATS" >>"$results"
  if [ "$w" = lab-a ] || [ "$w" = minibatch ]; then
    "$venv/bin/python" bench/python_bench.py --workloads "$w" --threads "$THREADS" --repeats "$REPEATS" >>"$results"
  fi
  if [ "$w" = predict-mlp ]; then
    .build/release/nerve bench --json --workloads predict-mlp-pixels --threads "$THREADS" --repeats "$REPEATS" >>"$results"
  fi
  if [ "$w" = lab-e ]; then
    "$venv/bin/python" bench/torch_bench.py --workloads lab-e-default-adam --threads "$THREADS" --repeats "$REPEATS" >>"$results"
  fi
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cells = {}
torch_name = "pytorch"
for r in rows:
    tool = r["tool"] if r["tool"] in ("nerve", "nerve-python") else "torch"
    w = r["workload"]
    if w == "lab-e-default-adam":
        cells[("lab-e", r["threads"], "torch-default")] = r
        continue
    if w == "predict-mlp-pixels":
        cells[("predict-mlp", r["threads"], "nerve-pixels")] = r
        continue
    cells[(w, r["threads"], tool)] = r
    if tool == "torch": torch_name = r["tool"]
units = {"lab-a": "s/epoch (50,000 images)", "minibatch": "s/epoch (50,000 images)", "per-sample": "s/10,000 images",
         "lab-e": "s/epoch (50,000 images); PyTorch with Adam(fused=True)",
         "predict-mlp": "s to predict the 10,000 test images (Lab A MLP), from a float tensor made before timing",
         "predict-cnn": "s to predict the 10,000 test images (Lab E CNN)",
         "latency-mlp": "s for 10,000 one-image calls (x100 = microseconds per image)",
         "fast-99": "s of training, one epoch of 60,000 images (examples/fast-99.toml's recipe)"}
print(f"{'workload':<12}{'threads':>8}{'nerve':>11}{torch_name:>22}{'speed-up':>10}   unit")
for (w, t, tool), r in sorted(cells.items()):
    if tool != "nerve" or (w, t, "torch") not in cells: continue
    n, p = r["median_seconds"], cells[(w, t, "torch")]["median_seconds"]
    print(f"{w:<12}{t:>8}{n:>11.4f}{p:>22.4f}{p / n:>9.1f}x   {units.get(w, 's')}")
    if "accuracy" in r:
        print(f"{'':<12}{'':>8}{100 * r['accuracy']:>10.2f}%{100 * cells[(w, t, 'torch')].get('accuracy', 0):>21.2f}%"
              f"{'':>10}   mean test accuracy of the timed runs")
    if (w, t, "nerve-python") in cells:
        q = cells[(w, t, "nerve-python")]["median_seconds"]
        print(f"{'':<12}{'':>8}{q:>11.4f}{p:>22.4f}{p / q:>9.1f}x   nerve from Python (python/), {q / n:.2f}x the CLI's time")
    if (w, t, "nerve-pixels") in cells:
        q = cells[(w, t, "nerve-pixels")]["median_seconds"]
        print(f"{'':<12}{'':>8}{q:>11.4f}{p:>22.4f}{p / q:>9.1f}x   nerve from the test file's bytes (predict-mlp-pixels)")
    if (w, t, "torch-default") in cells:
        q = cells[(w, t, "torch-default")]["median_seconds"]
        print(f"{'':<12}{'':>8}{'':>11}{q:>22.4f}{q / n:>9.1f}x   with PyTorch's default (unfused) Adam")
print("medians of the timed runs; each tool's first run is a warm-up and not counted (except nerve's lab-e epochs, all timed)")
PY
