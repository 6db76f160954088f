#!/usr/bin/env bash
# `mpirun nerve sweep`: rank 0 hands cells to the other ranks, whose results arrive over MPI
# and land in rank 0's folder as a local sweep writes them (the same records and per-cell
# summaries; runs are deterministic); a rerun skips the finished runs.
# Usage: Tests/mpi/sweep.sh NERVE_BINARY OUTPUT_DIR
set -euo pipefail
nerve=$1 out=$2
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
args=(--config examples/lab-a-sweep-hidden-lr.toml --set train.epochs=3 --runs 2 --threads 1)
rm -rf "$out/local" "$out/ranks"

"$nerve" sweep "${args[@]}" --jobs 1 --out "$out/local" > "$out/sweep-local.log"
# Workers write their scratch files in their own temporary folder, not in rank 0's.
mpirun --oversubscribe --bind-to none -np 3 "$nerve" sweep "${args[@]}" --out "$out/ranks" > "$out/sweep-ranks.log"
grep -q "2 rank(s) training one run at a time" "$out/sweep-ranks.log" || { echo "FAILED: not a distributed sweep"; cat "$out/sweep-ranks.log"; exit 1; }
for r in 1 2; do grep -q "rank $r)" "$out/sweep-ranks.log" || { echo "FAILED: rank $r trained nothing"; exit 1; }; done

# The same runs with the same results (seconds aside), and the same cell summaries.
python3 - "$out/local" "$out/ranks" <<'PY'
import json, sys
def runs(d):
    lines = [json.loads(l) for l in open(f"{d}/sweep.jsonl")][1:]
    for r in lines:
        r.pop("seconds"); r.pop("training_seconds", None)
    return {r["key"]: r for r in lines}
def cells(d):
    out = {}
    for l in open(f"{d}/summary.jsonl"):
        c = json.loads(l); c.pop("seconds_mean", None); out[c["id"]] = c
    return out
a, b = runs(sys.argv[1]), runs(sys.argv[2])
assert len(a) == 18 and a == b, f"run records differ: {len(a)} local, {len(b)} over ranks"
assert cells(sys.argv[1]) == cells(sys.argv[2]), "cell summaries differ"
# Each run's metrics file came over MPI whole: its epochs' losses and accuracies as local.
def epochs(path):
    return [{k: v for k, v in json.loads(l).items() if k != "seconds"} for l in open(path) if '"epoch"' in l]
for k in a:
    m = a[k]["metrics"]
    assert epochs(f"{sys.argv[1]}/{m}") == epochs(f"{sys.argv[2]}/{m}"), m
print(f"ok: {len(a)} runs over 2 ranks: records and cell summaries equal the local sweep's")
PY

# Run again: nothing left to do.
mpirun --oversubscribe --bind-to none -np 2 "$nerve" sweep "${args[@]}" --out "$out/ranks" > "$out/sweep-again.log"
grep -q "18 of 18 already done" "$out/sweep-again.log" || { echo "FAILED: the rerun did not skip the finished runs"; cat "$out/sweep-again.log"; exit 1; }
echo "ok: a rerun skips the 18 finished runs"
