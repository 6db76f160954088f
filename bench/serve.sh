#!/usr/bin/env bash
# `nerve serve` under load: wrk (Debian's `wrk`) on loopback posting a 28x28 PNG of a test
# digit, for the Lab A MLP and the Lab E CNN; then a soak that reports the server's memory.
#
#   bench/serve.sh                       # 64 connections, 30 s per model, 2 wrk threads
#   DURATION=10 CONNECTIONS=32 bench/serve.sh
#   SOAK=300 bench/serve.sh              # also a 5-minute soak of the MLP (RSS at start and end)
#   MODELS=mlp bench/serve.sh
#
# Trains the two models first (Lab A: 784-30-10 sigmoid/MSE from examples/lab-a-mlp-mse.toml with
# fewer epochs; Lab E: examples/lab-e-cnn.toml, one epoch): what is measured is serving, and a
# model's weights do not change its speed. wrk and the server share this machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-30}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}
SERVE_THREADS=${SERVE_THREADS:-1}
MODELS=${MODELS:-mlp,cnn}
SOAK=${SOAK:-0}
command -v wrk >/dev/null || { echo "bench/serve.sh needs wrk: apt-get install wrk" >&2; exit 1; }
swift build -c release >/dev/null
nerve=.build/release/nerve
work=$(mktemp -d)
server=""
trap '[ -n "$server" ] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

# The request body: test image 0 (a 7) as an 8-bit grayscale PNG, written by Python's zlib.
python3 - "$work/digit.png" <<'EOF'
import gzip, struct, sys, zlib
with gzip.open("Data/mnist/t10k-images-idx3-ubyte.gz") as f:
    pixels = f.read()[16:16 + 784]
raw = b"".join(b"\0" + pixels[28 * y:28 * y + 28] for y in range(28))
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
open(sys.argv[1], "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0))
                              + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
EOF
cat >"$work/post.lua" <<EOF
local f = io.open("$work/digit.png", "rb")
wrk.method = "POST"
wrk.body = f:read("*all")
wrk.headers["Content-Type"] = "image/png"
f:close()
-- Any answer but 200 counts as an error in the summary.
local bad = 0
response = function(status, headers, body) if status ~= 200 then bad = bad + 1 end end
done = function(summary, latency, requests)
  io.write(string.format("RESULT requests=%d seconds=%.2f rate=%.0f p50_ms=%.3f p99_ms=%.3f max_ms=%.3f socket_errors=%d non200=%d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    summary.errors.status))
end
EOF

train() {
  case $1 in
    mlp) $nerve train --config examples/lab-a-mlp-mse.toml --epochs 20 --quiet --save "$work/mlp.safetensors" >/dev/null ;;
    cnn) $nerve train --config examples/lab-e-cnn.toml --epochs 1 --quiet --save "$work/cnn.safetensors" >/dev/null ;;
  esac
}

start_server() {
  $nerve serve "$work/$1.safetensors" --port 0 --threads "$SERVE_THREADS" >"$work/serve.log" 2>&1 &
  server=$!
  for _ in $(seq 100); do
    url=$(sed -n 's/.*listening on \(http[^ ]*\).*/\1/p' "$work/serve.log")
    [ -n "$url" ] && return
    sleep 0.1
  done
  cat "$work/serve.log" >&2
  exit 1
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$server/status"; }

stop_server() {
  kill -TERM "$server"
  wait "$server" || true
  server=""
}

echo "nerve serve under wrk: $CONNECTIONS connections, $DURATION s, server --threads $SERVE_THREADS, $(nproc) cores"
printf "%-5s %10s %9s %9s %9s %8s %8s\n" model "pred/s" "p50 ms" "p99 ms" "max ms" errors "RSS MB"
for model in ${MODELS//,/ }; do
  train "$model"
  start_server "$model"
  # A short warm-up so first-touch costs are not in the numbers.
  wrk -t1 -c4 -d2s -s "$work/post.lua" "${url}predict" >/dev/null
  line=$(wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$work/post.lua" "${url}predict" | grep RESULT)
  eval "$(echo "$line" | sed 's/RESULT //')"
  printf "%-5s %10s %9s %9s %9s %8s %8.1f\n" "$model" "$rate" "$p50_ms" "$p99_ms" "$max_ms" \
    "$((socket_errors + non200))" "$(echo "$(rss_kb) / 1024" | bc -l)"
  stop_server
done

if [ "$SOAK" -gt 0 ]; then
  train mlp
  start_server mlp
  wrk -t1 -c4 -d2s -s "$work/post.lua" "${url}predict" >/dev/null
  before=$(rss_kb)
  wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${SOAK}s" --latency -s "$work/post.lua" "${url}predict" >"$work/soak.txt" &
  load=$!
  samples=""
  for ((t = 30; t <= SOAK; t += 30)); do sleep 30; samples+=" $(rss_kb)"; done
  wait "$load"
  line=$(grep RESULT "$work/soak.txt")
  echo "soak, mlp, ${SOAK} s: ${line#RESULT }"
  echo "server RSS (kB): ${before} after warm-up; every 30 s:${samples}"
  stop_server
fi
