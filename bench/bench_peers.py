#!/usr/bin/env python3
"""The same workloads under several sandboxes, against bare runs in the same invocation.

    python3 bench/bench_peers.py [--runs N]

Sandboxes (each skipped, with the reason printed, when it cannot be had):
  bare        plain subprocess.run;
  py-api      this project in process: sandlock.Sandbox().run(argv) (default policy);
  py-cli      this project's CLI: python3 -m sandlock -- CMD (PYTHONPATH=repo root);
  rust        the Rust sandlock's Python wheel from PyPI (same import name as this
              project, so it lives in its own venv, ~/.cache/sandlock-bench/rust-venv,
              made on first use by bench/_rustpeer.py; a driver run with that venv's
              python times Sandbox(fs_readable=[system dirs]).run(argv) itself);
  bwrap       bubblewrap with read-only binds of the system dirs and --unshare-all.

Workloads:
  true   /bin/true launch latency: median of N runs, ms;
  stat   python3 -S timing 20000 os.stat("/etc/passwd"): us per call as the
         program prints it, median of a few runs;
  loop   sh running /bin/true 200 times: total ms (fork+exec throughput), median
         of a few runs.
Every sandbox captures the command's output (the Rust SDK always does).
Not a test: timings are noisy and never decide pass/fail.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # for _rustpeer, also when not run as a script
from _rustpeer import RustPeer, Skip, import_ours  # noqa: E402

PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else (shutil.which("python3") or sys.executable)
TIMEOUT = 300

# The system directories this project's default policy makes readable.
SYSTEM_DIRS = [d for d in ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin",
                           "/etc", "/opt", "/proc") if os.path.exists(d)]

STAT_CODE = ('import os,time; t=time.perf_counter(); [os.stat("/etc/passwd") for _ in range(20000)]; '
             'print((time.perf_counter()-t)/20000*1e6)')
WORKLOADS = {
    "true": ["/bin/true"],
    "stat": [PYTHON, "-S", "-c", STAT_CODE],
    "loop": ["sh", "-c", "i=0; while [ $i -lt 200 ]; do /bin/true; i=$((i+1)); done"],
}
UNITS = {"true": "ms", "stat": "us/stat", "loop": "ms"}
TITLES = {"true": "(a) /bin/true launch", "stat": "(b) os.stat in python3", "loop": "(c) sh: 200 x fork+exec /bin/true"}

def timed(fn):
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1000, out


def measure(run, runs, repeats):
    """run(argv) -> (ms, stdout); raises on failure.  Returns {workload: [samples]}."""
    run(WORKLOADS["true"])  # warm up
    res = {"true": [run(WORKLOADS["true"])[0] for _ in range(runs)]}
    res["stat"] = [float(run(WORKLOADS["stat"])[1]) for _ in range(repeats)]
    res["loop"] = [run(WORKLOADS["loop"])[0] for _ in range(repeats)]
    return res


def host_timed(launch):
    """launch(argv) -> stdout, timed here around the whole call: a run() for measure()."""
    return lambda argv: timed(lambda: launch(argv))


def checked(proc, what):
    if proc.returncode != 0:
        raise Skip(f"{what}: {proc.args[:3]}... exited {proc.returncode}: "
                   f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
    return proc.stdout


def bare_launch(argv):
    return checked(subprocess.run(argv, capture_output=True, timeout=TIMEOUT), "bare")


def py_api():
    box = import_ours(ROOT).Sandbox()

    def launch(argv):
        r = box.run(argv, timeout=TIMEOUT)
        if r.exit_code != 0:
            raise Skip(f"py-api: {argv[:3]}... exit {r.exit_code} ({r.reason}): "
                       f"{(r.stderr or b'').decode(errors='replace').strip()[-300:]}")
        return r.stdout
    return launch


def py_cli():
    env = dict(os.environ, PYTHONPATH=ROOT)

    def launch(argv):
        proc = subprocess.run([sys.executable, "-m", "sandlock", "--", *argv], env=env,
                              capture_output=True, timeout=TIMEOUT)
        return checked(proc, "py-cli")
    return launch


def bwrap():
    exe = shutil.which("bwrap")
    if not exe:
        raise Skip("bwrap not installed (apt-get install -y bubblewrap)")
    prefix = [exe]
    for d in ("/usr", "/lib", "/lib64", "/bin", "/etc"):
        if os.path.exists(d):
            prefix += ["--ro-bind", d, d]
    prefix += ["--proc", "/proc", "--dev", "/dev", "--unshare-all", "--"]
    probe = subprocess.run(prefix + ["/bin/true"], capture_output=True, timeout=60)
    if probe.returncode != 0:
        raise Skip("bwrap cannot set up its namespaces here: "
                   + probe.stderr.decode(errors="replace").strip()[-300:])

    def launch(argv):
        return checked(subprocess.run(prefix + list(argv), capture_output=True, timeout=TIMEOUT), "bwrap")
    return launch


def rust_timed(peer):
    """A run() for measure() from the Rust driver: ms as the driver timed Sandbox.run()."""
    def run(argv):
        r = peer.run(argv)
        if not r["success"]:
            raise Skip("rust sandlock: %r failed: exit %s, stderr %r" % (argv, r["rc"], r["stderr"][-300:]))
        return r["ms"], r["stdout"]
    return run


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="launches of /bin/true per sandbox (default 20)")
    args = ap.parse_args()
    runs = max(1, args.runs)
    repeats = max(3, runs // 4)
    start = time.perf_counter()
    print(f"# {os.uname().sysname} {os.uname().release} {os.uname().machine}, {os.cpu_count()} cpus; "
          f"python {sys.version.split()[0]}; runs {runs}, repeats {repeats}", flush=True)

    results, skipped, notes = {}, {}, []
    setups = [("bare", lambda: bare_launch), ("py-api", py_api), ("py-cli", py_cli), ("rust", None), ("bwrap", bwrap)]
    for name, setup in setups:
        t = time.perf_counter()
        try:
            if name == "rust":
                # one Sandbox for every run, no timeout on a run; the driver as a whole gets 2 x TIMEOUT
                peer = RustPeer(kwargs={"fs_readable": SYSTEM_DIRS}, deadline=TIMEOUT * 2)
                try:
                    results[name] = measure(rust_timed(peer), runs, repeats)
                finally:
                    peer.close()
                notes.append(f"rust = PyPI sandlock {peer.version}, Sandbox(fs_readable={SYSTEM_DIRS}).run(argv), "
                             f"timed inside the venv's driver")
            else:
                results[name] = measure(host_timed(setup()), runs, repeats)
        except Exception as e:  # noqa: BLE001 -- one failing sandbox must not lose the others
            skipped[name] = str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}"
            print(f"# {name}: skipped: {e}", flush=True)
            continue
        print(f"# {name}: measured in {time.perf_counter() - t:.1f} s", flush=True)

    if "bare" not in results:
        sys.exit("bare runs failed: no baseline")
    print()
    print(f"{'workload':36s} {'sandbox':8s} {'median':>10s} {'unit':8s} {'x bare':>8s} {'+ bare':>10s}")
    for w in WORKLOADS:
        base = statistics.median(results["bare"][w])
        for name, _ in setups:
            if name not in results:
                continue
            v = statistics.median(results[name][w])
            print(f"{TITLES[w]:36s} {name:8s} {v:10.3f} {UNITS[w]:8s} {v / base:8.2f} {v - base:+10.3f}")
        print()
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    for n in notes:
        print(f"note: {n}")
    print(f"total {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
