#!/usr/bin/env bash
# Runs every test: the Swift suite (kernels against their Swift references, training, data,
# model files, configs, records, the CLI), the C library's CMake build and CTest (kernels,
# refused calls), an installed Nerve used through find_package and pkg-config, the model-level
# C example, the Rust example, and the Python package's tests (API, byte identity with the CLI,
# ONNX in onnxruntime, Ctrl-C), a check that Python's safetensors reads Nerve's files, and
# `nerve serve` over HTTP and in a headless Chromium, data-parallel training under Open MPI's
# mpirun (2 and 3 ranks, byte-identical models, a killed rank); then the C tests and the Swift suite under
# sanitizers. Installs what it needs if missing (Chromium and chromedriver, Python's venv; numpy,
# pytest, onnx, onnxruntime, safetensors and selenium into .build/python-check). Screenshots of
# the drawing page land in .build/test-output/serve.
#   scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
NERVE_TEST_PACKAGES="chromium chromium-driver python3-venv openmpi-bin libopenmpi-dev" scripts/setup.sh
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

echo "== disk trouble: a full disk and a read-only folder leave the previous files intact"
Tests/disk-trouble.sh .build/release/nerve

echo "== Python: the nerve package (pytest), safetensors"
venv=.build/python-check
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import onnxruntime, onnx, pytest, safetensors, selenium" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q numpy pytest onnx onnxruntime safetensors selenium
fi
"$venv/bin/pip" install -q --force-reinstall --no-deps ./python
(cd "$tmp" && "$root/$venv/bin/python" -m pytest -q "$root/python/tests" -p no:cacheprovider)
# Nerve's own predictions for the first 100 test images, which NumPy must reproduce.
.build/release/nerve predict "$tmp/model.safetensors" --count 100 | sed -n 's/^[0-9]*: predicted \([0-9]\).*/\1/p' >"$tmp/predicted.txt"
"$venv/bin/python" Tests/python/check_safetensors.py "$tmp/model.safetensors" "$tmp/predicted.txt"

echo "== nerve serve: the API over HTTP, the drawing page in headless Chromium"
mkdir -p .build/test-output/serve
(cd "$tmp" && NERVE="$root/.build/release/nerve" SERVE_OUTPUT="$root/.build/test-output/serve" \
  "$root/$venv/bin/python" -m pytest -q "$root/Tests/serve" -p no:cacheprovider)

echo "== MPI: data-parallel training byte-identical to one process (2 and 3 ranks), a killed rank, a sweep over ranks"
# Its own build folder with the MPI trait (and without Serve, which it does not need). SwiftPM
# 6.3 fails to reuse a build plan made with traits ("unknown build description"), and to build
# one --product with them: plan afresh (the compiled objects are reused), build everything.
rm -f .build-mpi/*.yaml .build-mpi/build.db
swift build -c release --traits MPI --scratch-path .build-mpi
Tests/mpi/identity.sh .build-mpi/release/nerve "$tmp/mpi"
Tests/mpi/faults.sh .build-mpi/release/nerve "$tmp/mpi"
Tests/mpi/sweep.sh .build-mpi/release/nerve "$tmp/mpi"

echo "== sanitizers: the C tests under AddressSanitizer and UndefinedBehaviorSanitizer"
cmake -S . -B .build-cmake-asan -DCMAKE_BUILD_TYPE=Debug -DNERVE_MODEL_LIBRARY=OFF \
  -DCMAKE_C_FLAGS="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" >/dev/null
cmake --build .build-cmake-asan -j"$(nproc)" >/dev/null
ctest --test-dir .build-cmake-asan --output-on-failure

echo "== sanitizers: the Swift suite (and the CLI it runs) under AddressSanitizer, the C core also under UBSan"
# A debug build, its Swift optimised (-O) so the reference-kernel tests finish in minutes.
# SwiftPM 6.3 cannot reuse its build plan with sanitizer flags ("unknown build description"):
# it plans afresh, reusing the compiled objects.
rm -f .build-asan/build.db .build-asan/*.yaml
# Without the Serve trait: the server's dependencies (SwiftNIO and more) would double the build.
swift build --build-tests --disable-default-traits --sanitize=address -Xswiftc -O -Xcc -O1 \
  -Xcc -fsanitize=undefined -Xcc -fno-sanitize-recover=undefined --scratch-path .build-asan >/dev/null
ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$root/Tests/lsan-suppressions.txt \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  .build-asan/debug/NervePackageTests.xctest --testing-library swift-testing >"$tmp/asan.log" 2>&1 || {
  grep -E "ERROR|runtime error|SUMMARY|✘" "$tmp/asan.log" | head -40
  echo "the sanitizer run failed (full log above in part)"
  exit 1
}
grep "Test run with" "$tmp/asan.log"
echo "all tests passed"
