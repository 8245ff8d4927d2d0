#!/usr/bin/env python3
"""The machine the command sees (README "CPU", "Uptime and load"): what each view costs,
and how close --cpu PCT holds busy processes to PCT.

    python3 bench/bench_machine.py [--runs N] [--seconds S]

1. A python3 start under `sandlock.Sandbox()` with each machine option, against the same
   sandbox without it, runs interleaved (medians and ratios).  The program reads what the
   options change: os.cpu_count(), sched_getaffinity, /proc/uptime, /proc/loadavg and
   sysinfo(2) once each.
2. sysinfo(2) in a loop of 2000 calls (trapped under every policy), µs per call, bare
   and sandboxed.
3. --cpu at 25 % and 50 % with one and two busy processes for S seconds: the share of
   one core they got, and the bare share of the same loop in the same run (a shared
   machine gives less than asked; never more is the property).
Not a test: timings never decide pass/fail.  Unset PYTHONDONTWRITEBYTECODE when measuring.
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
READ = ("import os, ctypes\n"
        "os.cpu_count(); os.sched_getaffinity(0)\n"
        "open('/proc/uptime').read(); open('/proc/loadavg').read()\n"
        "ctypes.CDLL(None).sysinfo(ctypes.create_string_buffer(112))\n")
SYSINFO_LOOP = ("import ctypes, time\n"
                "f = ctypes.CDLL(None).sysinfo; b = ctypes.create_string_buffer(112)\n"
                "t = time.perf_counter()\n"
                "for _ in range(2000): f(b)\n"
                "print((time.perf_counter() - t) / 2000 * 1e6)\n")
BUSY = ("import os, sys, time\n"
        "n, secs = int(sys.argv[1]), float(sys.argv[2])\n"
        "start = time.monotonic()\n"
        "for _ in range(n):\n"
        "    if os.fork() == 0:\n"
        "        while time.monotonic() - start < secs: pass\n"
        "        os._exit(0)\n"
        "for _ in range(n): os.wait()\n"
        "t = os.times()\n"
        "print(100 * (t.children_user + t.children_system) / (time.monotonic() - start))\n")
CORE = str(min(os.sched_getaffinity(0)))
OPTIONS = (("--num-cpus 4", dict(num_cpus=4)), ("--cpu-cores " + CORE, dict(cpu_cores=CORE)),
           ("--cpu 100", dict(cpu=100)), ("all three", dict(num_cpus=4, cpu_cores=CORE, cpu=100)))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000


def starts(runs: int) -> None:
    plain = sandlock.Sandbox()
    argv = [PYTHON, "-c", READ]
    print(f"python3 start reading the CPU count, uptime, load, sysinfo ({runs} runs, ms, median):")
    for label, kw in OPTIONS:
        box = sandlock.Sandbox(**kw)
        box.run(argv)
        base, timed_box = [], []
        for _ in range(runs):
            base.append(timed(lambda: plain.run(argv)))
            timed_box.append(timed(lambda: box.run(argv)))
        a, b = statistics.median(base), statistics.median(timed_box)
        print(f"  {label:24} {b:7.1f}  sandbox without it {a:7.1f}  ratio {b / a:.3f}")


def sysinfo_cost() -> None:
    bare = float(subprocess.run([PYTHON, "-c", SYSINFO_LOOP], capture_output=True, text=True).stdout)
    boxed = float(sandlock.Sandbox().run([PYTHON, "-c", SYSINFO_LOOP]).stdout)
    print(f"sysinfo(2): bare {bare:.2f} µs, sandboxed (answered on behalf) {boxed:.1f} µs per call")


def throttle(seconds: float) -> None:
    print(f"--cpu: share of one core used by busy loops over {seconds:g} s (%):")
    for pct in (25, 50):
        for n in (1, 2):
            argv = [PYTHON, "-c", BUSY, str(n), str(seconds)]
            got = float(sandlock.Sandbox(cpu=pct).run(argv).stdout)
            bare = float(subprocess.run(argv, capture_output=True, text=True).stdout)
            print(f"  --cpu {pct:3} {n} process(es): {got:5.1f}  (error {got - pct:+5.1f})  bare {bare:5.1f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    starts(args.runs)
    sysinfo_cost()
    throttle(args.seconds)


if __name__ == "__main__":
    main()
