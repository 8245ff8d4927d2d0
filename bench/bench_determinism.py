#!/usr/bin/env python3
"""The cost of the determinism options (README "Deterministic runs"), as ratios in one run.

    python3 bench/bench_determinism.py [--runs N]

Prints medians, interleaved (bare, plain sandbox, each option):
  1. a 10^5-call clock_gettime(CLOCK_REALTIME) loop in C (through libc, so through the
     vDSO where it is not patched), in microseconds per call;
  2. a python3 -c pass start, in milliseconds.
Not a test: timings never decide pass/fail.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
LOOP_C = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(int argc, char **argv) {
    long n = atol(argv[1]);
    struct timespec ts, a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++) clock_gettime(CLOCK_REALTIME, &ts);
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%f\n", ((b.tv_sec - a.tv_sec) * 1e9 + (b.tv_nsec - a.tv_nsec)) / n / 1e3);
    return 0;
}
"""
VARIANTS = [("bare", None), ("sandbox", []), ("--random-seed 1", ["--random-seed", "1"]),
            ("--time-start 0", ["--time-start", "0"]), ("--deterministic-dirs", ["--deterministic-dirs"]),
            ("--no-randomize-memory", ["--no-randomize-memory"])]


def command(options, argv, readable):
    if options is None:
        return argv
    return [sys.executable, "-m", "sandlock", "-r", readable] + options + ["--"] + argv


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--calls", type=int, default=100000)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sandlock-bench-det-")
    try:
        os.chmod(work, 0o755)
        with open(os.path.join(work, "loop.c"), "w") as f:
            f.write(LOOP_C)
        loop = os.path.join(work, "loop")
        subprocess.run(["gcc", "-O2", "-o", loop, loop + ".c"], check=True)
        per_call = {name: [] for name, _ in VARIANTS}
        start = {name: [] for name, _ in VARIANTS}
        for _ in range(args.runs):
            for name, options in VARIANTS:
                out = subprocess.run(command(options, [loop, str(args.calls)], work), capture_output=True,
                                     text=True, check=True).stdout
                per_call[name].append(float(out))
                t = time.perf_counter()
                subprocess.run(command(options, [PYTHON, "-c", "pass"], work), check=True)
                start[name].append((time.perf_counter() - t) * 1000)
        bare_call, bare_start = statistics.median(per_call["bare"]), statistics.median(start["bare"])
        print(f"{'':24} {'clock_gettime us/call':>22} {'ratio':>8} {'python3 -c pass ms':>19} {'ratio':>7}")
        for name, _ in VARIANTS:
            call, ms = statistics.median(per_call[name]), statistics.median(start[name])
            print(f"{name:24} {call:22.3f} {call / bare_call:8.1f} {ms:19.1f} {ms / bare_start:7.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
