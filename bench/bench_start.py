#!/usr/bin/env python3
"""Start-up of real programs in host mode (no --root), as ratios against bare runs.

    python3 bench/bench_start.py [--runs N]

Prints the medians of `python3 -c pass` and of `python3 -c 'import json,
email, http.client, sqlite3'` run bare (subprocess.run) and under
`sandlock.Sandbox()` (the default policy), bare and sandboxed runs
interleaved so that a busy machine slows both alike; the fastest runs are
printed too (on a shared machine they vary least).  In host mode every
open and exec is trapped and done on behalf (README, /proc), so these are the
programs whose start-up that costs most.  Not a test: timings never decide
pass/fail.  Unset PYTHONDONTWRITEBYTECODE when measuring.  The last line is
the CLI's own start (imports, policy, scratch directory, launch).
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sandlock  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
PROGRAMS = (("python3 -c pass", "pass"), ("python3 imports", "import json, email, http.client, sqlite3"))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    args = ap.parse_args()
    box = sandlock.Sandbox()
    box.run(["/bin/true"])  # warm up imports and probes
    for label, code in PROGRAMS:
        argv = [PYTHON, "-c", code]
        subprocess.run(argv)
        bare, boxed = [], []
        for _ in range(args.runs):
            bare.append(timed(lambda: subprocess.run(argv)))
            boxed.append(timed(lambda: box.run(argv, capture_output=False)))
        report(label, bare, boxed)
    # the CLI itself: python -m sandlock -- /bin/true against python -c pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", root], env=env, capture_output=True)
    bare, boxed = [], []
    for _ in range(args.runs):
        bare.append(timed(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env)))
        boxed.append(timed(lambda: subprocess.run([sys.executable, "-m", "sandlock", "--", "/bin/true"], env=env)))
    report("CLI start (python -c pass / python -m sandlock -- /bin/true)", bare, boxed)


def report(label: str, bare: list, boxed: list) -> None:
    b, s = statistics.median(bare), statistics.median(boxed)
    print(f"{label}: bare {b:.1f} ms, sandboxed {s:.1f} ms, ratio {s / b:.2f} "
          f"(fastest: {min(bare):.1f} / {min(boxed):.1f} ms, ratio {min(boxed) / min(bare):.2f})")


if __name__ == "__main__":
    main()
