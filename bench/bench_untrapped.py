#!/usr/bin/env python3
"""Untrapped syscalls: in the sandbox against the kernel's seccomp entry alone, in one run.

    python3 bench/bench_untrapped.py [--runs N] [--calls N]

bench/untrapped_loop.c (compiled here with cc) times tight loops of getpid,
read of /dev/zero, write to /dev/null, a futex wake, mmap+munmap, and two
calls sandlock's filter decides on their arguments (fcntl F_GETFL, ioctl
TCGETS), in nanoseconds per call, under four runners, interleaved:
  bare     no filter;
  floor    a seccomp filter that allows everything, loaded by the program
           itself (NO_NEW_PRIVS + prctl): what any filter costs, the kernel's
           seccomp entry (the action cache never runs that filter);
  run      a two-instruction filter that loads an argument, so the kernel
           runs it on every call: the floor of a syscall decided on its
           arguments (fcntl, ioctl here), which no cache can skip;
  sandlock the same program in sandlock.Sandbox() (default policy).
Printed per syscall: medians, floor/bare (the seccomp entry), sandlock/floor
(the issue's target: at most 1.05) and sandlock/run, and the instructions the
sandbox's filter runs for it (tests/bpfinterp.py), "cached" when it loads
only the syscall number and the architecture: the kernel's seccomp action
cache (Linux 5.11) then never runs the filter for that syscall.  The 1 GiB
loopback transfer through untrapped read/write is bench/bench_net.py's.
Not a test: timings never decide pass/fail.  Machine: see the first line.
"""

import argparse
import fcntl
import os
import statistics
import subprocess
import sys
import tempfile
import termios

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tests"))  # bpfinterp: the filter's path per syscall
import sandlock  # noqa: E402

# syscall name in the loop's output -> (name in the table, arguments the loop passes)
CALLS = {"getpid": ("getpid", ()), "read": ("read", ()), "write": ("write", ()), "futex": ("futex", ()),
         "mmap+munmap": ("mmap", ()), "fcntl": ("fcntl", (0, fcntl.F_GETFL)),
         "ioctl": ("ioctl", (0, termios.TCGETS))}


def filter_paths():
    """name -> (instructions run, cached?) in the default policy's filter; and its length."""
    from bpfinterp import trace
    from sandlock import _filter, _policy, _structs, _syscalls, _table
    arch = os.uname().machine
    pol = _policy.make_policy()
    abi = 7
    rules = _filter.rules_for(arch, _table.traps_for(pol, abi, arch), pol.extra_deny_syscalls,
                              _table.extra_denials(abi), _table.argument_rules(pol))
    code = _filter.build(arch, rules)
    table = _syscalls.table(arch)
    out = {}
    for shown, (name, args) in CALLS.items():
        path = trace(code, table[name], _structs.AUDIT_ARCH[arch], list(args))
        cached = set(path.loads) <= {_structs.SECCOMP_DATA_NR, _structs.SECCOMP_DATA_ARCH}
        out[shown] = (path.steps, cached)
    return out, len(code) // 8


def parse(text):
    values = {}
    for line in text.splitlines():
        name, _, ns = line.rpartition(" ")
        values[name] = float(ns)
    if set(values) != set(CALLS):
        raise RuntimeError(f"unexpected output of the loop: {text!r}")
    return values


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="rounds of the four runners (default 5)")
    ap.add_argument("--calls", type=int, default=200000, help="calls per loop (default 200000)")
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="bench-untrapped-")
    try:
        exe = os.path.join(work, "untrapped_loop")
        try:
            subprocess.run(["cc", "-O2", "-o", exe, os.path.join(HERE, "untrapped_loop.c")], check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError) as exc:
            sys.exit(f"bench_untrapped: cannot compile untrapped_loop.c: {exc}")
        os.chmod(work, 0o755)
        box = sandlock.Sandbox(fs_readable=[work])
        runners = {
            "bare": lambda: subprocess.run([exe, "none", str(args.calls)], capture_output=True, check=True).stdout,
            "floor": lambda: subprocess.run([exe, "allow", str(args.calls)], capture_output=True, check=True).stdout,
            "run": lambda: subprocess.run([exe, "run", str(args.calls)], capture_output=True, check=True).stdout,
            "sandlock": lambda: box.run([exe, "none", str(args.calls)], check=True).stdout,
        }
        load = os.getloadavg()
        print(f"# {os.uname().release} {os.uname().machine}, {os.cpu_count()} CPUs, load {load[0]:.1f}; "
              f"{args.runs} rounds of {args.calls} calls per syscall, ns per call (medians)")
        times = {name: {call: [] for call in CALLS} for name in runners}
        for _ in range(args.runs):
            for name, fn in runners.items():
                for call, ns in parse(fn().decode()).items():
                    times[name][call].append(ns)
        paths, length = filter_paths()
        print(f"# sandlock's filter (default policy): {length} instructions")
        print(f"{'syscall':12} {'bare':>7} {'floor':>7} {'run':>7} {'sandlock':>8}   {'floor/bare':>10} "
              f"{'sandlock/floor':>14} {'sandlock/run':>12}   filter path")
        for call in CALLS:
            bare, floor, ran, box_ns = (statistics.median(times[n][call]) for n in ("bare", "floor", "run", "sandlock"))
            steps, cached = paths[call]
            where = "cached: never run" if cached else f"{steps} instructions"
            print(f"{call:12} {bare:7.1f} {floor:7.1f} {ran:7.1f} {box_ns:8.1f}   {floor / bare:9.2f}x "
                  f"{box_ns / floor:13.2f}x {box_ns / ran:11.2f}x   {where}")
        load = os.getloadavg()
        print(f"# load at the end {load[0]:.1f}")
    finally:
        subprocess.run(["rm", "-rf", work], check=False)


if __name__ == "__main__":
    main()
