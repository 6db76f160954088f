#!/usr/bin/env python3
"""thread_idle.py: where a multi-threaded Nerve run leaves a thread waiting.

A speed-up from 1 to 2 threads below 2x has two kinds of cause: the code (serial stretches,
shares of unequal length) and the machine (a second core the host gives at a lower speed). A
timed ratio mixes them; this separates them. It samples the run with `perf record -e cpu-clock`
(a timer, so it works in virtual machines without hardware counters), then counts, over the
span in which the team's second thread lives:

  busy  CPU seconds in Nerve's kernels and everything else but the OpenMP runtime;
  idle  CPU seconds inside libgomp (a thread spinning at a barrier, or for its next region);

(and the same over the whole run and every thread, to compare one thread count with another)

and, for each idle sample, what the other thread was running at that moment: the kernel whose
share was longer, or the serial work the team waited for. Busy CPU that grows from 1 thread to
2 is the machine (or memory); idle is the code's to remove.

  bench/thread_idle.py                       # nerve train (the fast recipe) at 2 threads
  bench/thread_idle.py --threads 1           # the same at 1 thread, to compare busy CPU
  bench/thread_idle.py -- .build/release/nerve train --config examples/lab-e-cnn.toml \\
      --set data.subset=12000 --epochs 1 --threads 2

Needs perf (Debian: apt-get install linux-perf). Standard library only.
"""
import argparse
import bisect
import collections
import os
import re
import subprocess
import sys
import tempfile

RATE = 2000  # samples a second a thread
HEADER = re.compile(r"^\s*(\d+)\s+([\d.]+):\s*$")  # perf script: a sample's tid and time


def record(command, data):
    run = subprocess.run(["perf", "record", "-q", "-e", "cpu-clock", "-F", str(RATE), "-g", "-o",
                          data, "--"] + command, check=True, stdout=subprocess.PIPE, text=True)
    print(run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "(no output)")
    out = subprocess.run(["perf", "script", "-i", data, "-F", "tid,time,ip,sym,dso"],
                         check=True, capture_output=True, text=True).stdout
    return parse(out)


def parse(text):
    """{tid: [(time, [(symbol, dso), ...leaf first])]}"""
    threads = collections.defaultdict(list)
    frames = None
    for line in text.splitlines():
        if not line.strip():
            continue
        header = HEADER.match(line)
        if header:
            tid, time = header.groups()
            frames = []
            threads[int(tid)].append((float(time), frames))
        elif frames is not None:
            ip_rest = line.split(None, 1)  # "ip symbol (dso)"
            if len(ip_rest) == 2:
                symbol, _, dso = ip_rest[1].rpartition(" (")
                frames.append((symbol, dso.rstrip(")")) if symbol else (dso, ""))
    return threads


def waiting(frames):
    """In the OpenMP runtime itself (or the kernel under it: a futex), not in work it runs."""
    user = [dso for _, dso in frames if dso != "[kernel.kallsyms]"]
    return bool(user) and "libgomp" in os.path.basename(user[0])


def what(frames):
    """The leaf and the team member or entry point it runs under."""
    names = [s for s, _ in frames if s != "[unknown]"]
    if not names:
        return "?"
    for n in names[1:]:
        if n.endswith("_member") or (n.startswith("nerve_") and not n.startswith("nerve__")):
            return f"{names[0]} < {n}"
    return " < ".join(names[:2])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="for the default command (default 2)")
    ap.add_argument("--top", type=int, default=12, help="rows of the waits' table (default 12)")
    ap.add_argument("command", nargs="*", help="the run to sample (after --)")
    args = ap.parse_args()
    command = args.command or [".build/release/nerve", "train", "--threads", str(args.threads)]
    with tempfile.TemporaryDirectory() as tmp:
        threads = record(command, os.path.join(tmp, "perf.data"))
    # The team: the two threads with most samples (the main thread only waits for the run).
    team = sorted(threads, key=lambda t: -len(threads[t]))[:2]
    # The whole run, every thread: comparable between thread counts.
    everything = [f for t in threads for _, f in threads[t]]
    print(f"whole run: busy {sum(not waiting(f) for f in everything) / RATE:.3f} CPU s, "
          f"idle {sum(waiting(f) for f in everything) / RATE:.3f} CPU s")
    # A second thread with a small fraction of the first's samples is not a team member (OpenBLAS
    # starts one that spins for 0.1 s and sleeps).
    if len(team) == 1 or 4 * len(threads[team[1]]) < len(threads[team[0]]):
        return
    start, end = threads[team[1]][0][0], threads[team[1]][-1][0]
    span = {t: [s for s in threads[t] if start <= s[0] <= end] for t in team}
    busy = sum(1 for t in team for _, f in span[t] if not waiting(f))
    idle = sum(1 for t in team for _, f in span[t] if waiting(f))
    print(f"second thread's span {end - start:.3f} s: busy {busy / RATE:.3f} CPU s, "
          f"idle {idle / RATE:.3f} CPU s ({100 * idle / max(busy + idle, 1):.1f}%)")
    for me, other in (team, team[::-1]):
        times = [s[0] for s in span[other]]
        meanwhile = collections.Counter()
        for time, frames in span[me]:
            if not waiting(frames) or not times:
                continue
            i = bisect.bisect_left(times, time)
            j = min((k for k in (i - 1, i) if 0 <= k < len(times)), key=lambda k: abs(times[k] - time))
            meanwhile["(both waiting)" if waiting(span[other][j][1]) else what(span[other][j][1])] += 1
        waits = sum(meanwhile.values())
        print(f"thread {me}: {waits / RATE:.3f} s waiting; the other thread meanwhile ran:")
        for name, n in meanwhile.most_common(args.top):
            print(f"  {n / RATE * 1e3:8.1f} ms  {name}")


if __name__ == "__main__":
    sys.exit(main())
