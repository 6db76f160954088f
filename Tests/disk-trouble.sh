#!/usr/bin/env bash
# Saving to a full disk or a read-only folder fails with an error naming the file, and leaves
# the previous file as it was (models, checkpoints, metrics, reports). Mounts a 64 KB tmpfs and
# a read-only bind mount, which needs root (CI runs as root); elsewhere it says it cannot.
#   Tests/disk-trouble.sh path/to/nerve
set -euo pipefail
nerve=$(realpath "$1")
cd "$(dirname "$0")/.."
work=$(mktemp -d)
full=$work/full ro=$work/ro src=$work/src
mkdir -p "$full" "$ro" "$src"
cleanup() { umount "$full" 2>/dev/null || true; umount "$ro" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
if ! mount -t tmpfs -o size=64k tmpfs "$full" 2>/dev/null; then
  echo "disk trouble: cannot mount a small tmpfs here (needs root); not checked" >&2
  exit 1
fi
# A small model that fits, then one that does not: the first must survive the second's failure.
"$nerve" train --layers 784,4,10 --subset 100 --epochs 1 --quiet --save "$full/m.safetensors" >/dev/null
before=$(md5sum <"$full/m.safetensors")
set +e
out=$("$nerve" train --layers 784,64,10 --subset 100 --epochs 1 --quiet --save "$full/m.safetensors" 2>&1)
status=$?
set -e
[ $status -ne 0 ] || { echo "saving to a full disk succeeded?"; exit 1; }
echo "$out" | grep -q "m.safetensors: cannot write" || { echo "unexpected message: $out"; exit 1; }
[ "$(md5sum <"$full/m.safetensors")" = "$before" ] || { echo "the previous model was damaged"; exit 1; }
[ -z "$(ls -A "$full" | grep -v '^m.safetensors$')" ] || { echo "temporary files left: $(ls -A "$full")"; exit 1; }
echo "full disk: refused ('$(echo "$out" | tail -1)'), previous model intact, nothing left behind"
# A checkpoint that no longer fits: training stops with the error, the old checkpoint is kept.
rm -f "$full"/*
"$nerve" train --layers 784,4,10 --subset 100 --epochs 1 --quiet --checkpoint "$full/ck" >/dev/null
before=$(md5sum <"$full/ck")
set +e
out=$("$nerve" train --layers 784,24,10 --subset 100 --epochs 1 --quiet --checkpoint "$full/ck" 2>&1)
status=$?
set -e
[ $status -ne 0 ] && [ "$(md5sum <"$full/ck")" = "$before" ] || { echo "checkpoint on a full disk: status $status, $out"; exit 1; }
echo "full disk: a checkpoint that does not fit is refused, the previous one kept"
# A read-only folder.
"$nerve" train --layers 784,4,10 --subset 100 --epochs 1 --quiet --save "$src/m.safetensors" --metrics "$src/m.jsonl" >/dev/null
mount --bind "$src" "$ro" && mount -o remount,bind,ro "$ro"
before=$(md5sum <"$ro/m.safetensors")
set +e
out=$("$nerve" train --layers 784,8,10 --subset 100 --epochs 1 --quiet --save "$ro/m.safetensors" 2>&1)
status=$?
out2=$("$nerve" train --layers 784,8,10 --subset 100 --epochs 1 --quiet --metrics "$ro/m.jsonl" 2>&1)
status2=$?
set -e
[ $status -ne 0 ] && echo "$out" | grep -q "Read-only" || { echo "read-only save: status $status, $out"; exit 1; }
[ $status2 -ne 0 ] && echo "$out2" | grep -q "m.jsonl" || { echo "read-only metrics: status $status2, $out2"; exit 1; }
[ "$(md5sum <"$ro/m.safetensors")" = "$before" ] || { echo "the previous model was damaged"; exit 1; }
echo "read-only folder: model and metrics refused with the reason, previous files intact"
