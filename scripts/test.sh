#!/usr/bin/env bash
# Runs every test: the Swift suite (kernels against their Swift references, training, data,
# model files, configs, records, the CLI), the C library's CMake build and CTest (kernels,
# refused calls), an installed Nerve used through find_package and pkg-config, the model-level
# C example, the Rust example, and the Python package's tests (API, byte identity with the CLI,
# ONNX in onnxruntime, Ctrl-C), plus a check that Python's safetensors reads Nerve's files.
# Installs what it needs if missing (a headless Chromium for reports, Python's venv; numpy,
# pytest, onnx, onnxruntime and safetensors into .build/python-check).
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NERVE_TEST_PACKAGES="chromium python3-venv" scripts/setup.sh
root=$PWD
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

echo "== swift test"
swift test -c release

echo "== C library: cmake, ctest"
cmake -S . -B .build-cmake -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$tmp/prefix" >/dev/null
cmake --build .build-cmake -j"$(nproc)" >/dev/null
ctest --test-dir .build-cmake --output-on-failure

echo "== installed Nerve: find_package(Nerve) and pkg-config, C examples"
cmake --install .build-cmake >/dev/null
cmake -S Tests/cmake-consumer -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
"$tmp/consumer/xor" >/dev/null
(cd "$tmp" && "$tmp/consumer/model" "$tmp/digits.safetensors" | tail -3)
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
cc -Wall -Werror examples/c/model.c $(pkg-config --cflags --libs nerve-model) -o "$tmp/model-pc"
(cd "$tmp" && "$tmp/model-pc" "$tmp/digits2.safetensors" >/dev/null)
# The model the C program saved is one the command line reads.
.build/release/nerve eval "$tmp/digits.safetensors" --dataset digits

echo "== Rust example: predictions equal nerve predict's"
.build/release/nerve train --layers 784,32,10 --activation relu --subset 5000 --validation 0 --epochs 2 \
  --quiet --save "$tmp/model.safetensors" >/dev/null
(cd examples/rust && cargo build --release --offline -q)
examples/rust/target/release/nerve-predict "$tmp/model.safetensors" 100 2>/dev/null | grep predicted >"$tmp/rust.txt"
.build/release/nerve predict "$tmp/model.safetensors" --count 100 | sed -n 's/^\([0-9]*: predicted [0-9]\).*/\1/p' >"$tmp/cli.txt"
sed -n 's/^\([0-9]*: predicted [0-9]\).*/\1/p' "$tmp/rust.txt" | diff - "$tmp/cli.txt"
echo "rust and the CLI agree on $(wc -l <"$tmp/cli.txt") images"

echo "== Python: the nerve package (pytest), safetensors"
venv=.build/python-check
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import onnxruntime, onnx, pytest, safetensors" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy pytest onnx onnxruntime safetensors
fi
"$venv/bin/pip" install -q --force-reinstall --no-deps ./python
(cd "$tmp" && "$root/$venv/bin/python" -m pytest -q "$root/python/tests" -p no:cacheprovider)
# Nerve's own predictions for the first 100 test images, which NumPy must reproduce.
.build/release/nerve predict "$tmp/model.safetensors" --count 100 | sed -n 's/^[0-9]*: predicted \([0-9]\).*/\1/p' >"$tmp/predicted.txt"
"$venv/bin/python" Tests/python/check_safetensors.py "$tmp/model.safetensors" "$tmp/predicted.txt"
echo "all tests passed"
