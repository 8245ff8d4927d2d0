#!/usr/bin/env python3
"""The emulated root (--root / chroot=) against bare chroot, proot and the Rust sandlock, in one run.

    python3 bench/bench_root.py [--runs N] [--only WORKLOAD,...] [--rootfs PATH]

Every workload runs inside a Debian bookworm minbase rootfs (tests/rootfs.py
debian_rootfs(): debootstrap, cached under /var/cache/sandlock-tests; --rootfs
overrides it).  Workloads (--only takes the names or the numbers):
  1 pystart  /usr/bin/python3 -c pass
  2 imports  /usr/bin/python3 -c 'import json, email, http.client, sqlite3'
  3 find     /bin/sh -c 'find /usr -type f | wc -l'     (metadata heavy)
  4 stat     python3 timing 20000 os.stat("/etc/passwd"): the us per call it
             prints (and its wall time)
Runners (each one that cannot run prints "n/a (reason)"; one failing never
loses the others):
  chroot   bare `chroot ROOTFS CMD` (needs root): the baseline of every ratio;
  proot    `proot -r ROOTFS CMD` (Debian package proot; apt-get installs it
           when missing and we are root);
  rust     the Rust sandlock's PyPI wheel in its own venv
           (~/.cache/sandlock-bench/rust-venv, made on first use by
           bench/_rustpeer.py): Sandbox(chroot=ROOTFS, fs_readable=["/"]).run(argv),
           timed inside a driver process running that venv's python (its
           fs_readable paths are inside the chroot; without one, exec is EACCES);
  py-api   this project in process: sandlock.Sandbox(chroot=ROOTFS).run(argv),
           one Sandbox reused, wall time of run();
  py-cli   this project's CLI: python3 -m sandlock --root ROOTFS -- CMD, wall
           time of the subprocess (run through runpy with the checkout on
           sys.path rather than PYTHONPATH, which would leak into the rootfs).
Before measuring, each runner must show it runs inside the rootfs (the host
path of the rootfs is not visible, /usr/bin/python3 is).  Runs of the runners
are interleaved (run i of every runner, then run i+1), after one untimed
warm-up each.  Prints medians and ratios to bare chroot; the targets are
printed for reference.  Not a test: timings never fail anything; the exit
status is 0 unless the rootfs cannot be had.
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
from _rustpeer import RustPeer, Skip, import_ours, tail  # noqa: E402

TIMEOUT = 300  # seconds, one run

STAT_CODE = ('import os,time; t=time.perf_counter(); [os.stat("/etc/passwd") for _ in range(20000)]; '
             'print((time.perf_counter()-t)/20000*1e6)')
# name -> (number, title, argv, default runs, target ratio to chroot or None, target us/stat or None);
# the targets are issue 14's
WORKLOADS = {
    "pystart": (1, "python3 -c pass", ["/usr/bin/python3", "-c", "pass"], 7, 1.5, None),
    "imports": (2, "python3 importing json, email, http.client, sqlite3",
                ["/usr/bin/python3", "-c", "import json, email, http.client, sqlite3"], 7, 1.4, None),
    "find": (3, "sh -c 'find /usr -type f | wc -l' (metadata heavy)",
             ["/bin/sh", "-c", "find /usr -type f | wc -l"], 7, 5.0, None),
    "stat": (4, "python3: 20000 x os.stat(\"/etc/passwd\")", ["/usr/bin/python3", "-c", STAT_CODE], 3, None, 10.0),
}
RUNNERS = ["chroot", "proot", "rust", "py-api", "py-cli"]
OURS = ("py-api", "py-cli")  # the runners the targets are for
# The environment every runner passes on: no PYTHONPATH/PYTHONHOME of the host
# reaching the rootfs's python.
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


# ---------------------------------------------------------------- runners
# A runner is an object with run(argv) -> (ms, returncode, stdout str, stderr str)
# and close().

class Subprocess:
    def __init__(self, prefix, env=None):
        self.prefix = list(prefix)
        self.env = BASE_ENV if env is None else env

    def run(self, argv):
        t = time.perf_counter()
        p = subprocess.run(self.prefix + list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                           env=self.env, cwd="/", timeout=TIMEOUT)
        ms = (time.perf_counter() - t) * 1000
        return ms, p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")

    def close(self):
        pass


def setup_chroot(rootfs):
    if os.geteuid() != 0:
        raise Skip("bare chroot needs root")
    exe = shutil.which("chroot") or "/usr/sbin/chroot"
    if not os.path.exists(exe):
        raise Skip("no chroot binary (coreutils)")
    return Subprocess([exe, rootfs])


def setup_proot(rootfs):
    exe = shutil.which("proot")
    if not exe:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise Skip("proot not installed (apt-get install -y proot)")
        print("# proot is missing: apt-get install -y proot", flush=True)
        p = subprocess.run(["apt-get", "install", "-y", "proot"], capture_output=True, timeout=600,
                           env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        exe = shutil.which("proot")
        if not exe:
            raise Skip("apt-get install -y proot failed: " + tail(p.stderr or p.stdout))
    return Subprocess([exe, "-r", rootfs])


def setup_py_cli(rootfs):
    # python3 -m sandlock, with the checkout first on sys.path without PYTHONPATH
    # (which the sandboxed python in the rootfs would inherit).
    boot = ("import runpy, sys; sys.path.insert(0, %r); "
            "runpy.run_module('sandlock', run_name='__main__', alter_sys=True)" % ROOT)
    env = dict(BASE_ENV)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # let the CLI's own modules come from .pyc
    subprocess.run([sys.executable, "-m", "compileall", "-q", ROOT], env=env, capture_output=True)
    return Subprocess([sys.executable, "-c", boot, "--root", rootfs, "--"], env=env)


class PyApi:
    def __init__(self, rootfs):
        sandlock = import_ours(ROOT)
        try:
            self.box = sandlock.Sandbox(chroot=rootfs)
        except Exception as e:  # noqa: BLE001
            raise Skip(f"Sandbox(chroot=...): {type(e).__name__}: {e}")

    def run(self, argv):
        t = time.perf_counter()
        r = self.box.run(list(argv), timeout=TIMEOUT)
        ms = (time.perf_counter() - t) * 1000
        rc = getattr(r, "returncode", getattr(r, "exit_code", None))
        out, err = getattr(r, "stdout", None) or b"", getattr(r, "stderr", None) or b""
        return ms, rc, out.decode(errors="replace"), err.decode(errors="replace")

    def close(self):
        pass


class Rust:
    def __init__(self, rootfs):
        self.peer = RustPeer(kwargs={"chroot": rootfs, "fs_readable": ["/"]}, timeout=TIMEOUT)  # one Sandbox
        self.version = self.peer.version

    def run(self, argv):
        r = self.peer.run(argv)
        return r["ms"], r["rc"], r["stdout"], r["stderr"]

    def close(self):
        self.peer.close()


SETUPS = {"chroot": setup_chroot, "proot": setup_proot, "rust": Rust, "py-api": PyApi, "py-cli": setup_py_cli}


def check_inside(runner, rootfs):
    """Raise Skip unless the runner's commands see the rootfs as /."""
    probe = ["/usr/bin/python3", "-S", "-c", "import os, sys; sys.exit(3 if os.path.exists(sys.argv[1]) else 0)",
             rootfs]
    ms, rc, out, err = runner.run(probe)
    if rc == 3:
        raise Skip("not inside the rootfs: the rootfs's host path is visible")
    if rc != 0:
        raise Skip(f"probe /usr/bin/python3 -S -c ... exited {rc}: {tail(err)}")


# ---------------------------------------------------------------- measuring

def one(runner, name, argv):
    """One run: (ms, us per stat for stat / files counted for find / None); raises Skip on failure."""
    try:
        ms, rc, out, err = runner.run(argv)
    except subprocess.TimeoutExpired:
        raise Skip(f"timed out after {TIMEOUT} s")
    if rc != 0:
        raise Skip(f"exit {rc}: {tail(err)}")
    if name == "stat":
        try:
            return ms, float(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise Skip(f"no us/stat printed: stdout {tail(out)!r}, stderr {tail(err)!r}")
    if name == "find":
        if not out.strip().isdigit():
            raise Skip(f"find printed {tail(out)!r}, not a count: {tail(err)}")
        return ms, int(out)
    return ms, None


def measure(name, runners, runs):
    """{runner: {"ms": [...], "us": [...]} or "n/a reason"} for one workload, runs interleaved."""
    argv = WORKLOADS[name][2]
    res = {}
    live = []
    for r, runner in runners.items():
        if isinstance(runner, str):
            res[r] = runner
            continue
        try:
            one(runner, name, argv)  # warm up: page cache, .pyc, the runner's own setup
        except Exception as e:  # noqa: BLE001
            res[r] = str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}"
            continue
        res[r] = {"ms": [], "us": [], "count": None}
        live.append(r)
    for _ in range(runs):
        for r in list(live):
            try:
                ms, us = one(runners[r], name, argv)
            except Exception as e:  # noqa: BLE001
                res[r] = str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}"
                live.remove(r)
                continue
            res[r]["ms"].append(ms)
            if name == "find":
                res[r]["count"] = us  # files found: every runner should find as many as chroot
            elif us is not None:
                res[r]["us"].append(us)
    return res


def report(name, res, runs):
    num, title, argv, _, target_ratio, target_us = WORKLOADS[name]
    target = (f"target for sandlock: <= {target_ratio:g}x bare chroot" if target_ratio
              else f"target for sandlock: <= {target_us:g} us per trapped stat")
    print(f"{num}. {title}  [{runs} runs]  ({target})")
    base = res.get("chroot")
    base_ms = statistics.median(base["ms"]) if isinstance(base, dict) else None
    base_us = statistics.median(base["us"]) if isinstance(base, dict) and base["us"] else None
    head = f"   {'runner':8s} {'median ms':>10s} {'x chroot':>9s}"
    if name == "stat":
        head += f" {'us/stat':>9s} {'x chroot':>9s}"
    print(head + "  target")
    for r in RUNNERS:
        v = res.get(r)
        if v is None:
            continue
        if isinstance(v, str):
            print(f"   {r:8s} n/a ({v})")
            continue
        ms = statistics.median(v["ms"])
        line = f"   {r:8s} {ms:10.1f} {(f'{ms / base_ms:.2f}x' if base_ms else 'n/a'):>9s}"
        mark = ""
        if name == "stat":
            us = statistics.median(v["us"])
            line += f" {us:9.2f} {(f'{us / base_us:.1f}x' if base_us else 'n/a'):>9s}"
            if r in OURS:
                mark = f"<= {target_us:g} us: " + ("met" if us <= target_us else "not met")
        elif r in OURS:
            mark = f"<= {target_ratio:g}x: " + ("n/a" if not base_ms else
                                                 "met" if ms / base_ms <= target_ratio else "not met")
        if name == "find" and isinstance(base, dict) and v["count"] != base["count"]:
            mark += f"  (found {v['count']} files, chroot {base['count']})"
        print(line + ("  " + mark if mark else ""))


def get_rootfs(path):
    if path:
        path = os.path.abspath(path)
        if not os.path.isdir(path):
            sys.exit(f"--rootfs {path}: not a directory")
        return path
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    try:
        import rootfs
        print("# getting the Debian rootfs (tests/rootfs.py; debootstrap the first time, a minute or two)...",
              flush=True)
        return str(rootfs.debian_rootfs())
    except Exception as e:  # noqa: BLE001
        sys.exit(f"cannot build the Debian rootfs: {type(e).__name__}: {e}")
    finally:
        sys.path.remove(os.path.join(ROOT, "tests"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, help="timed runs per workload and runner (default 7; 3 for stat)")
    ap.add_argument("--only", help="comma-separated workloads: " + ", ".join(
        f"{w} ({WORKLOADS[w][0]})" for w in WORKLOADS))
    ap.add_argument("--rootfs", help="rootfs to use instead of tests/rootfs.py's Debian bookworm one")
    args = ap.parse_args()
    chosen = list(WORKLOADS)
    if args.only:
        by_num = {str(v[0]): k for k, v in WORKLOADS.items()}
        chosen = []
        for w in args.only.split(","):
            w = by_num.get(w.strip(), w.strip())
            if w not in WORKLOADS:
                ap.error(f"--only: unknown workload {w!r} (one of {', '.join(WORKLOADS)} or 1-4)")
            if w not in chosen:
                chosen.append(w)
        chosen.sort(key=lambda w: WORKLOADS[w][0])
    start = time.perf_counter()
    rootfs = get_rootfs(args.rootfs)
    u = os.uname()
    print(f"# {u.sysname} {u.release} {u.machine}, {os.cpu_count()} cpus; python {sys.version.split()[0]}; "
          f"rootfs {rootfs}", flush=True)

    runners, notes = {}, []
    try:
        for r in RUNNERS:
            t = time.perf_counter()
            try:
                runner = SETUPS[r](rootfs)
            except Exception as e:  # noqa: BLE001 -- one failing runner must not lose the others
                runners[r] = str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}"
                print(f"# {r}: n/a ({runners[r]})", flush=True)
                continue
            try:
                check_inside(runner, rootfs)
            except Exception as e:  # noqa: BLE001
                runner.close()
                runners[r] = str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}"
                print(f"# {r}: n/a ({runners[r]})", flush=True)
                continue
            runners[r] = runner
            if r == "rust":
                notes.append(f"rust = PyPI sandlock {runner.version}: Sandbox(chroot=ROOTFS, "
                             f"fs_readable=['/']).run(argv), timed inside the venv's driver")
            print(f"# {r}: ready in {time.perf_counter() - t:.1f} s", flush=True)
        print()
        for w in chosen:
            runs = max(1, args.runs if args.runs else WORKLOADS[w][3])
            t = time.perf_counter()
            res = measure(w, runners, runs)
            report(w, res, runs)
            print(f"   (measured in {time.perf_counter() - t:.1f} s)\n", flush=True)
    finally:
        for runner in runners.values():
            if not isinstance(runner, str):
                runner.close()
    for n in notes:
        print(f"note: {n}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
