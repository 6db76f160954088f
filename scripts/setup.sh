#!/usr/bin/env bash
# Installs what building Nerve needs on Debian/Ubuntu (if missing) and builds it in release mode.
#   scripts/setup.sh            # then: .build/release/nerve train
#   scripts/setup.sh --mpi      # also Open MPI, and the build with the MPI trait (mpirun ... nerve train)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libopenblas-dev zlib1g-dev libdeflate-dev cmake pkg-config gcc)
mpi=false
[ "${1:-}" = "--mpi" ] && mpi=true
$mpi && packages+=(openmpi-bin libopenmpi-dev)
# scripts/test.sh adds what only the tests need (a headless browser for reports, Python's venv).
read -r -a extra <<<"${NERVE_TEST_PACKAGES:-}"
packages+=("${extra[@]}")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
if ! command -v swift >/dev/null; then
  echo "error: swift is not on PATH; install a Swift 6 toolchain from https://www.swift.org/install/linux/" >&2
  exit 1
fi
if $mpi; then
  # SwiftPM 6.3 may fail to reuse a build plan made with other traits ("unknown build
  # description"): plan afresh, reusing the compiled objects.
  rm -f .build/*.yaml .build/build.db
  swift build -c release --traits MPI,Serve
else
  swift build -c release
fi
