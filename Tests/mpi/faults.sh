#!/usr/bin/env bash
# A rank killed mid-run stops the whole mpirun job (no hang) with a message naming the rank
# and where training was; the run then resumes from its checkpoint on another number of ranks
# and ends with the model of an uninterrupted run, byte for byte.
# Usage: Tests/mpi/faults.sh NERVE_BINARY OUTPUT_DIR
set -euo pipefail
nerve=$1 out=$2
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi=(mpirun --oversubscribe --bind-to none)
args=(--config examples/lab-c-minibatch-100.toml --subset 20000 --epochs 8 --threads 1 --quiet)
rm -f "$out"/fault.* "$out"/whole.*

"$nerve" train "${args[@]}" --save "$out/whole.safetensors" > "$out/whole.log"

# Two ranks; rank 1 is killed with SIGKILL once a few checkpoints exist.
"${mpi[@]}" -np 2 "$nerve" train "${args[@]}" --checkpoint "$out/fault.ckpt" --checkpoint-every 40 \
  --save "$out/fault.safetensors" > "$out/fault-killed.log" 2>&1 &
job=$!
for _ in $(seq 200); do [ -f "$out/fault.ckpt" ] && break; sleep 0.1; done
sleep 1
rank1=$(pgrep -f "nerve train .*fault.ckpt" | sort -n | tail -1)
kill -9 "$rank1"
started=$(date +%s)
status=0; wait $job || status=$?
took=$(( $(date +%s) - started ))
[ $status -ne 0 ] || { echo "FAILED: the job went on after a rank was killed"; exit 1; }
[ $took -le 30 ] || { echo "FAILED: the job took ${took}s to stop"; exit 1; }
grep -q "process rank 1 .* exited on signal 9" "$out/fault-killed.log" \
  || { echo "FAILED: no message naming rank 1"; cat "$out/fault-killed.log"; exit 1; }
grep -q "nerve: rank 0 was stopped in epoch [0-9]*, after step [0-9]*" "$out/fault-killed.log" \
  || { echo "FAILED: no message saying where training was"; cat "$out/fault-killed.log"; exit 1; }
echo "ok: killed rank 1 stopped the job in ${took}s: $(grep -o 'rank 0 was stopped in epoch [0-9]*, after step [0-9]*' "$out/fault-killed.log")"

# An error on one rank alone (only rank 0 writes the metrics file) ends the whole job.
status=0
timeout 60 "${mpi[@]}" -np 2 "$nerve" train "${args[@]}" --metrics /nonexistent/metrics.jsonl \
  > "$out/fault-error.log" 2>&1 || status=$?
[ $status -ne 0 ] && [ $status -ne 124 ] || { echo "FAILED: an error on rank 0 did not end the job (status $status)"; cat "$out/fault-error.log"; exit 1; }
grep -q "nerve: rank 0 stops the job" "$out/fault-error.log" || { echo "FAILED: no message"; cat "$out/fault-error.log"; exit 1; }
echo "ok: an error on rank 0 alone ended the job: $(grep -m1 'nerve: error' "$out/fault-error.log")"

# Resume on three ranks: the same model as the uninterrupted run.
"${mpi[@]}" -np 3 "$nerve" train --resume "$out/fault.ckpt" --threads 1 --quiet > "$out/fault-resumed.log" 2>&1
cmp "$out/whole.safetensors" "$out/fault.safetensors" \
  || { echo "FAILED: the resumed model differs from the uninterrupted one"; exit 1; }
echo "ok: resumed on 3 ranks, model byte-identical to the uninterrupted run"
