#!/usr/bin/env bash
# Runs a command with bench/region_times.c preloaded and prints each parallel region's calls,
# wall time, the first two threads' busy time and the serial time before it, in milliseconds,
# named from the binary's or library's symbols (nm). Timed with gcc -O2 and -fopenmp.
#   bench/region_times.sh .build/release/nerve train --config examples/fast-99.toml --threads 2
# REGION_TIMES_INNER=1 counts each parallel loop apart (range_member>its range function; only
# where every OpenMP region is libnerve's, see region_times.c).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
gcc -O2 -shared -fPIC -fopenmp bench/region_times.c -o "$out/region_times.so" -ldl
LD_PRELOAD="$out/region_times.so" "$@" 2> "$out/regions" || { cat "$out/regions" >&2; exit 1; }
grep -v '^region ' "$out/regions" >&2 || true
binary=$(command -v "$1")
python3 - "$out/regions" "$binary" <<'PY'
import re, subprocess, sys, os
regions, binary = sys.argv[1], sys.argv[2]
names = {}
def symbols(path):
    if path not in names:
        table = {}
        for line in subprocess.run(["nm", path], capture_output=True, text=True).stdout.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[1] in "tT":
                table[int(parts[0], 16)] = parts[2]
        names[path] = table
    return names[path]
rows = []
for line in open(regions):
    m = re.match(r"region (\S+) calls (\d+) wall (\S+) busy (\S+) (\S+) gap (\S+)", line)
    if not m:
        continue
    parts = []
    for address in m.group(1).split(">"):
        module, offset = address.rsplit("+", 1)
        offset = int(offset, 16)
        path = module if os.path.exists(module) else binary
        parts.append(symbols(path).get(offset, f"{os.path.basename(module)}+{offset:#x}"))
    rows.append((float(m.group(3)), ">".join(parts), int(m.group(2)), float(m.group(4)), float(m.group(5)),
                 float(m.group(6))))
print(f"{'region':44s} {'calls':>7s} {'wall ms':>9s} {'busy 0':>8s} {'busy 1':>8s} {'gap ms':>7s}")
for wall, name, calls, b0, b1, gap in sorted(rows, reverse=True):
    print(f"{name[:44]:44s} {calls:7d} {wall*1e3:9.1f} {b0*1e3:8.1f} {b1*1e3:8.1f} {gap*1e3:7.1f}")
PY
