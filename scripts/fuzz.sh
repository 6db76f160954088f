#!/usr/bin/env bash
# Fuzzes every reader of outside bytes (IDX, digits CSV, model files, PNG, PGM, TOML configs,
# metrics and sweep records, checkpoints) with libFuzzer under AddressSanitizer, starting from
# the committed seed corpus (Tests/Fuzz/Corpus). Exits non-zero on any crash, leak, timeout or
# out-of-memory; each finding is saved under .build-fuzz/findings/TARGET/ (copy it to
# Tests/Fuzz/Regressions/TARGET/ once fixed: the tests replay those).
#   scripts/fuzz.sh [SECONDS] [TARGET...]     # default: 60 s for each target
#   FUZZ_JOBS=2 scripts/fuzz.sh 600           # two targets at a time
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(idx csv model png pgm toml metrics sweep checkpoint)
jobs=${FUZZ_JOBS:-1}

# SwiftPM (6.3) fails to reuse its build plan with these flags ("unknown build description"):
# planning afresh each time works, and the compiled objects are still reused.
rm -f .build-fuzz/build.db .build-fuzz/release.yaml
swift build -c release --disable-default-traits --scratch-path .build-fuzz --product nerve-fuzz \
  -Xswiftc -DNERVE_FUZZ -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library >/dev/null
exe=.build-fuzz/release/nerve-fuzz

fuzz() {
  local t=$1 work=.build-fuzz/corpus/$1 found=.build-fuzz/findings/$1 log=.build-fuzz/logs/$1.log
  mkdir -p "$work" "$found" .build-fuzz/logs
  set +e
  # Any allocation past 256 MB counts as a failure: readers must refuse sizes they cannot back.
  NERVE_FUZZ_TARGET=$t NERVE_MEMORY_LIMIT=256M ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
    "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$found/" "$work" "Tests/Fuzz/Corpus/$t" >"$log" 2>&1
  local status=$?
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  if [ $status -eq 0 ]; then
    echo "$t: ${runs:-?} inputs in ${seconds} s, no findings (corpus $(ls "$work" | wc -l) files)"
  else
    echo "$t: FAILED after ${runs:-?} inputs (status $status): $(grep -m1 -E 'ERROR|SUMMARY|==[0-9]+==' "$log" || tail -1 "$log")"
    echo "   findings: $(ls "$found")   log: $log"
  fi
  return $status
}

failed=0
running=0
for t in "${targets[@]}"; do
  fuzz "$t" &
  running=$((running + 1))
  if [ $running -ge "$jobs" ]; then
    wait -n || failed=1
    running=$((running - 1))
  fi
done
while [ $running -gt 0 ]; do
  wait -n || failed=1
  running=$((running - 1))
done
exit $failed
