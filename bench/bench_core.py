#!/usr/bin/env python3
"""Core sandbox overhead, measured as ratios against bare runs in the same invocation.

    python3 bench/bench_core.py [--runs N]

Prints medians of:
  1. launch: Sandbox().run(["/bin/true"]) against subprocess.run(["/bin/true"]), from the
     fork server (a Sandbox's later runs), launched directly (SANDLOCK_FORK_SERVER=0)
     and, where its wheel can be had (bench/_rustpeer.py), the Rust sandlock's SDK,
     all interleaved; the overheads are medians of the per-round differences;
  2. untrapped syscalls inside the sandbox against outside (10^5 getppid, 10^5
     pread of an open file): the filter decides these on the number alone, so
     the kernel's seccomp action cache should make them cost nothing;
  3. trapped syscalls: 20000 os.stat("/etc/passwd") (trapped under every
     policy, docs/design.md "What Landlock does not cover"), in microseconds per call, inside against outside;
     with --loops only this item, as two loops (os.stat, and os.open+os.close of
     /etc/passwd: an open done on behalf and its fd injected), each in us per call
     and as a ratio to bare, side by side with the Rust sandlock's SDK and PRoot
     (`proot CMD`, host root) where they can be had, all interleaved, with the
     caller's migrations between CPUs per call (/proc/self/sched);
  4. CLI start: `python -m sandlock -- /bin/true` against `python -c pass`;
  5. real programs: python3 -c pass, and python3 importing json, email,
     http.client and sqlite3 (hundreds of trapped stats between pauses).
Not a test: timings never decide pass/fail.
"""

import argparse
import os
import shutil
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
def moved():  # this thread's migrations between CPUs so far (-1: /proc/self/sched unreadable)
    try:
        with open("/proc/self/sched") as f:
            return int([l for l in f if l.startswith("se.nr_migrations")][0].split()[-1])
    except (OSError, IndexError, ValueError):
        return -1
m = moved()
if kind == "getppid":
    f = os.getppid
    t = time.perf_counter()
    for _ in range(n): f()
elif kind == "pread":
    f = os.pread
    t = time.perf_counter()
    for _ in range(n): f(fd, 1, 0)
elif kind == "open":
    f, c, r = os.open, os.close, os.O_RDONLY
    t = time.perf_counter()
    for _ in range(n): c(f("/etc/passwd", r))
else:
    f = os.stat
    t = time.perf_counter()
    for _ in range(n): f("/etc/passwd")
took = (time.perf_counter() - t) / n * 1e6
after = moved()
print(took, (after - m) / n if m >= 0 and after >= 0 else -1)
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
        values.append(float(out.split()[0]))
    return statistics.median(values)


def launch(runs, rust):
    """Item 1; returns the Sandbox (its fork server up) for the rest."""
    box = sandlock.Sandbox()
    for _ in range(2):
        box.run(["/bin/true"])  # warm up imports and probes; the second run starts the fork server
    deadline = time.monotonic() + 30
    while not (box._server is not None and box._server.usable()) and time.monotonic() < deadline:
        time.sleep(0.01)
    os.environ["SANDLOCK_FORK_SERVER"] = "0"
    direct = sandlock.Sandbox()
    for _ in range(2):
        direct.run(["/bin/true"])
    del os.environ["SANDLOCK_FORK_SERVER"]
    peer = None
    if rust:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _rustpeer import RustPeer, Skip
        try:
            peer = RustPeer(kwargs={}, deadline=600)
            peer.run(["/bin/true"])
        except Skip as e:
            print(f"# Rust sandlock: not measured ({e})")
    rows = {"bare": [], "fork server": [], "direct": [], "Rust SDK": []}
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(["/bin/true"])
        rows["bare"].append((time.perf_counter() - t) * 1000)
        for name, one in (("fork server", box), ("direct", direct)):
            t = time.perf_counter()
            one.run(["/bin/true"], capture_output=False)
            rows[name].append((time.perf_counter() - t) * 1000)
        if peer is not None:
            rows["Rust SDK"].append(peer.run(["/bin/true"])["ms"])
    if peer is not None:
        peer.close()
    bare = rows["bare"]
    print(f"launch /bin/true, per run (median of {runs}; overhead = median of run - bare of the same round):")
    print(f"  bare subprocess.run {statistics.median(bare):.2f} ms (fastest {min(bare):.2f} ms)")
    for name in ("fork server", "direct", "Rust SDK"):
        if rows[name]:
            over = statistics.median([a - b for a, b in zip(rows[name], bare)])
            print(f"  {name:19s} {statistics.median(rows[name]):.2f} ms, overhead {over:.2f} ms, "
                  f"ratio {statistics.median(rows[name]) / statistics.median(bare):.2f} "
                  f"(fastest {min(rows[name]):.2f} ms, overhead {min(rows[name]) - min(bare):.2f} ms)")
    return box


SYSTEM_DIRS = [d for d in ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin",
                           "/etc", "/opt", "/proc") if os.path.exists(d)]


def loops(repeats, rust, n=20000):
    """Item 3 alone: the stat and open loops, bare, sandlock, Rust SDK and PRoot interleaved."""
    box = sandlock.Sandbox()
    box.run(["/bin/true"])
    runners = {"bare": lambda argv: subprocess.run(argv, capture_output=True, check=True).stdout,
               "sandlock": lambda argv: box.run(argv).stdout}
    if rust:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from _rustpeer import RustPeer, Skip
        try:
            peer = RustPeer(kwargs={"fs_readable": SYSTEM_DIRS}, deadline=600)
            runners["Rust SDK"] = lambda argv: peer.run(argv)["stdout"]
        except Skip as e:
            print(f"# Rust sandlock: not measured ({e})")
    proot = shutil.which("proot")
    if proot:
        runners["PRoot"] = lambda argv: subprocess.run([proot] + argv, capture_output=True, check=True).stdout
    else:
        print("# PRoot: not measured (not installed)")
    for kind in ("stat", "open"):
        argv = [PYTHON, "-S", "-c", LOOP, kind, str(n)]
        rows = {name: [] for name in runners}
        moves = {name: [] for name in runners}
        for _ in range(repeats):
            for name, run in runners.items():
                took, moved = map(float, run(argv).split())
                rows[name].append(took)
                moves[name].append(moved)
        bare = statistics.median(rows["bare"])
        line = "  ".join(f"{name} {statistics.median(v):.2f} us ({statistics.median(v) / bare:.1f}x)"
                         for name, v in rows.items() if name != "bare")
        print(f"{kind:4s} x{n} per call (median of {repeats}): bare {bare:.2f} us  {line}", flush=True)
        # a call that moves its caller between CPUs costs two wake-ups across them (README "How it works")
        print("     CPU migrations per call: " + "  ".join(
            f"{name} {statistics.median(v):.2f}" if min(v) >= 0 else f"{name} ?" for name, v in moves.items()),
            flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rust", action=argparse.BooleanOptionalAction, default=True,
                    help="the Rust SDK's launch side by side (a venv with its wheel, made on first use)")
    ap.add_argument("--launch-only", action="store_true", help="item 1 only")
    ap.add_argument("--loops", action="store_true", help="item 3 only: stat and open loops, with the Rust SDK and PRoot")
    args = ap.parse_args()
    if args.loops:
        loops(args.repeats, args.rust)
        return
    box = launch(args.runs, args.rust)
    if args.launch_only:
        return
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
