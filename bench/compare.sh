#!/usr/bin/env bash
# Nerve beside PyTorch on the labs' workloads, in one run, on this machine.
#
#   bench/compare.sh                 # threads 1,2; 5 timed repetitions each
#   THREADS=2 REPEATS=9 bench/compare.sh
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

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
  echo "installing torch==$TORCH_VERSION into $venv (first run only)..." >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==$TORCH_VERSION" numpy
fi
swift build -c release >/dev/null

results=$(mktemp)
trap 'rm -f "$results"' EXIT
for w in ${WORKLOADS//,/ }; do
  .build/release/nerve bench --json --workloads "$w" --threads "$THREADS" --repeats "$REPEATS" >>"$results"
  "$venv/bin/python" bench/torch_bench.py --workloads "$w" --threads "$THREADS" --repeats "$REPEATS" >>"$results"
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
cells = {}
for r in rows:
    tool = "nerve" if r["tool"] == "nerve" else "torch"
    cells[(r["workload"], r["threads"], tool)] = r
    if tool == "torch": torch_name = r["tool"]
units = {"lab-a": "s/epoch (50,000 images)", "minibatch": "s/epoch (50,000 images)", "per-sample": "s/10,000 images"}
print(f"{'workload':<12}{'threads':>8}{'nerve':>11}{torch_name:>22}{'speed-up':>10}   unit")
for (w, t, tool), r in sorted(cells.items()):
    if tool != "nerve" or (w, t, "torch") not in cells: continue
    n, p = r["median_seconds"], cells[(w, t, "torch")]["median_seconds"]
    print(f"{w:<12}{t:>8}{n:>11.4f}{p:>22.4f}{p / n:>9.1f}x   {units.get(w, 's')}")
print("medians of the timed runs; each tool's first run is a warm-up and not counted")
PY
