#!/usr/bin/env bash
# Data-parallel training on this machine: 1 process x 2 threads against 2 ranks x 1 thread
# (mpirun), for the minibatch-100 MLP and Lab E's CNN, side by side, REPEATS times each in
# alternation; prints the median seconds per epoch of each and their ratio.
#   bench/mpi.sh                      # needs the MPI build: scripts/setup.sh --mpi
#   NERVE=.build-mpi/release/nerve REPEATS=5 WORKLOADS=minibatch bench/mpi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
nerve=${NERVE:-.build/release/nerve}
repeats=${REPEATS:-3}
workloads=${WORKLOADS:-minibatch,lab-e}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

args_for() {
  case $1 in
    minibatch) echo "--config examples/lab-c-minibatch-100.toml --epochs 3" ;;
    lab-e) echo "--config examples/lab-e-cnn.toml --epochs 1 --subset 20000" ;;
  esac
}
# The median of the per-epoch seconds a run's metrics file holds.
epoch_seconds() { python3 -c 'import json,sys,statistics as s; print(s.median([r["seconds"] for r in map(json.loads, open(sys.argv[1])) if "epoch" in r and "seconds" in r]))' "$1"; }
median() { python3 -c 'import sys,statistics as s; print(s.median(float(x) for x in sys.argv[1:]))' "$@"; }

printf "%-10s %22s %22s %8s\n" workload "1 process x 2 threads" "2 ranks x 1 thread" ratio
for w in ${workloads//,/ }; do
  read -r -a args <<<"$(args_for "$w")"
  one=() two=()
  for _ in $(seq "$repeats"); do
    "$nerve" train "${args[@]}" --threads 2 --quiet --metrics "$out/one.jsonl" >/dev/null
    one+=("$(epoch_seconds "$out/one.jsonl")")
    mpirun --oversubscribe --bind-to none -np 2 "$nerve" train "${args[@]}" --threads 1 --quiet \
      --metrics "$out/two.jsonl" >/dev/null
    two+=("$(epoch_seconds "$out/two.jsonl")")
  done
  a=$(median "${one[@]}") b=$(median "${two[@]}")
  printf "%-10s %20.3f s %20.3f s %7.2fx\n" "$w" "$a" "$b" "$(python3 -c "print($a / $b)")"
done
