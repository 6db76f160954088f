#!/usr/bin/env bash
# Nerve's workloads on a machine that is doing something else too: each measurement is taken
# quiet, then with BUSY processes that each keep a core busy (a browser, another job, a
# neighbour on a shared host). Static shares of the work wait for the slowest thread; the heavy
# products take their work in chunks as threads become free, so they degrade gracefully.
#
#   bench/contended.sh                                  # lab-a,predict-mlp,fast-99, 2 threads
#   WORKLOADS=lab-e REPEATS=1 bench/contended.sh
#   NERVE="/tmp/nerve-old .build/release/nerve" bench/contended.sh   # two builds, alternated
#
# Prints `nerve bench`'s rows for each build, quiet and beside the busy processes.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
REPEATS=${REPEATS:-3}
BUSY=${BUSY:-1}
WORKLOADS=${WORKLOADS:-lab-a,predict-mlp,fast-99}
if [ -z "${NERVE:-}" ]; then
  swift build -c release --product nerve >/dev/null
  NERVE=.build/release/nerve
fi

spinners=()
stop_busy() {
  for p in "${spinners[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${spinners[@]}"; do wait "$p" 2>/dev/null || true; done
  spinners=()
}
trap stop_busy EXIT

measure() { # binary, label
  "$1" bench --workloads "$WORKLOADS" --threads "$THREADS" --repeats "$REPEATS" |
    awk -v who="$1" -v how="$2" 'NF == 4 && $2 ~ /^[0-9]+$/ { printf "%-28s %-16s %s\n", who, how, $0 }'
}

for nerve in $NERVE; do
  measure "$nerve" quiet
  for _ in $(seq "$BUSY"); do
    bash -c 'while :; do :; done' &
    spinners+=($!)
  done
  measure "$nerve" "$BUSY busy beside"
  stop_busy
done
