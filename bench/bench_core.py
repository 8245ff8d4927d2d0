#!/usr/bin/env python3
"""Core sandbox overhead, measured as ratios against bare runs in the same invocation.

    python3 bench/bench_core.py [--runs N]

Prints medians of:
  1. launch: Sandbox().run(["/bin/true"]) against subprocess.run(["/bin/true"]);
  2. untrapped syscalls inside the sandbox against outside (10^5 getppid, 10^5
     pread of an open file): the filter decides these on the number alone, so
     the kernel's seccomp action cache should make them cost nothing;
  3. trapped syscalls: 20000 os.stat("/etc/passwd") (trapped under every
     policy, docs/design.md "What Landlock does not cover"), in microseconds per call, inside against outside;
  4. CLI start: `python -m sandlock -- /bin/true` against `python -c pass`;
  5. real programs: python3 -c pass, and python3 importing json, email,
     http.client and sqlite3 (hundreds of trapped stats between pauses).
Not a test: timings never decide pass/fail.
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
LOOP = r"""
import os, sys, time
kind, n = sys.argv[1], int(sys.argv[2])
fd = os.open("/etc/hostname", os.O_RDONLY)
if kind == "getppid":
    f = os.getppid
    t = time.perf_counter()
    for _ in range(n): f()
elif kind == "pread":
    f = os.pread
    t = time.perf_counter()
    for _ in range(n): f(fd, 1, 0)
else:
    f = os.stat
    t = time.perf_counter()
    for _ in range(n): f("/etc/passwd")
print((time.perf_counter() - t) / n * 1e6)
"""


def median_ms(fn, runs):
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def loop_us(kind, n, sandboxed, repeats):
    argv = [PYTHON, "-S", "-c", LOOP, kind, str(n)]
    values = []
    for _ in range(repeats):
        if sandboxed:
            out = sandlock.Sandbox().run(argv).stdout
        else:
            out = subprocess.run(argv, capture_output=True, check=True).stdout
        values.append(float(out))
    return statistics.median(values)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    box = sandlock.Sandbox()
    box.run(["/bin/true"])  # warm up imports and probes
    bare = median_ms(lambda: subprocess.run(["/bin/true"]), args.runs)
    boxed = median_ms(lambda: box.run(["/bin/true"], capture_output=False), args.runs)
    print(f"launch /bin/true: bare {bare:.2f} ms, sandboxed {boxed:.2f} ms, "
          f"overhead {boxed - bare:.2f} ms, ratio {boxed / bare:.2f}")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", root], env=env, capture_output=True)
    py = median_ms(lambda: subprocess.run([sys.executable, "-c", "pass"], env=env), args.runs)
    cli = median_ms(lambda: subprocess.run([sys.executable, "-m", "sandlock", "--", "/bin/true"], env=env), args.runs)
    print(f"CLI start: python -c pass {py:.1f} ms, python -m sandlock -- /bin/true {cli:.1f} ms, "
          f"difference {cli - py:.1f} ms")
    for label, code in (("python3 -c pass", "pass"), ("python3 imports", "import json, email, http.client, sqlite3")):
        argv = [PYTHON, "-c", code]
        b = median_ms(lambda: subprocess.run(argv), args.runs)
        s = median_ms(lambda: box.run(argv, capture_output=False), args.runs)
        print(f"{label}: bare {b:.1f} ms, sandboxed {s:.1f} ms, ratio {s / b:.2f}")
    for kind, n in (("getppid", 100000), ("pread", 100000), ("stat", 20000)):
        b = loop_us(kind, n, False, args.repeats)
        s = loop_us(kind, n, True, args.repeats)
        print(f"{kind:8s} x{n}: bare {b:.3f} us/call, sandboxed {s:.3f} us/call, ratio {s / b:.2f}")


if __name__ == "__main__":
    main()
