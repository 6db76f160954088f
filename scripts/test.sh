#!/usr/bin/env bash
# Runs every test: the Swift suite (kernels against their Swift references, training, data,
# model files, configs, the CLI), the C library's CMake build and CTest, and a check that
# Python's safetensors package reads Nerve's model files. Reports are checked in a headless
# Chromium, which this installs (with Python's venv) if missing.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NERVE_TEST_PACKAGES="chromium python3-venv" scripts/setup.sh

echo "== swift test"
swift test -c release

echo "== C library: cmake, ctest"
cmake -S . -B .build-cmake -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build .build-cmake -j"$(nproc)" >/dev/null
ctest --test-dir .build-cmake --output-on-failure

echo "== Python reads a saved model with safetensors"
venv=.build/python-check
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q safetensors numpy
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
.build/release/nerve train --layers 784,32,10 --activation relu --subset 5000 --validation 0 --epochs 2 \
  --quiet --save "$tmp/model.safetensors" >/dev/null
# Nerve's own predictions for the first 100 test images, which Python must reproduce.
.build/release/nerve predict "$tmp/model.safetensors" --count 100 | sed -n 's/^[0-9]*: predicted \([0-9]\).*/\1/p' >"$tmp/predicted.txt"
"$venv/bin/python" Tests/python/check_safetensors.py "$tmp/model.safetensors" "$tmp/predicted.txt"
echo "all tests passed"
