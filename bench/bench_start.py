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
pass/fail.  Unset PYTHONDONTWRITEBYTECODE when measuring.  The last lines are
the start of sandlock itself, each against `python3 -c pass` in the same
loop, as a difference and a ratio (README "Start-up"): `import sandlock`
(target: at most 8 ms more), `python -m sandlock -- /bin/true` and the
installed `sandlock` script (the entry point pip writes) running /bin/true
(target: at most 20 ms more).  --cli-only prints only those.

    python3 bench/bench_start.py --split [--against DIR] [--runs N] [--cli-args ARGS]

splits `python -m sandlock [ARGS] -- /bin/true` (ARGS e.g. "--root DIR" or
"--workdir DIR": the modules those runs import are timed in prepare and the
launch) into its phases, timed inside fresh
processes (whole-process wall times on a shared VM vary by more than a
millisecond; a phase's own clock much less): `import sandlock`, the
supervisor's import, prepare (filter, rulesets, scratch), the rest of main
(the launch and the run), the whole process's wall time over `python3 -c
pass`, and the page faults of the process and the sandbox's (wait4).  With
--against DIR (another checkout of sandlock, e.g. `git worktree add /tmp/base
COMMIT`) both trees are run in turn, and the differences printed.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
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
    ap.add_argument("--cli-only", action="store_true", help="only the start of sandlock itself")
    ap.add_argument("--split", action="store_true", help="the CLI's start in phases (see above)")
    ap.add_argument("--against", metavar="DIR", help="with --split: another checkout, run in turn")
    ap.add_argument("--cli-args", default="", metavar="ARGS",
                    help='with --split: options of the run, e.g. "--root DIR" (split as a shell would)')
    args = ap.parse_args()
    if args.split:
        split(args.runs, args.against, shlex.split(args.cli_args))
        return
    if not args.cli_only:
        programs(args.runs)
    cli(args.runs)


def installed_script() -> str:
    """The `sandlock` script the wheel ships for `sandlock = sandlock:cli` (pyproject.toml;
    build_backend/sandlock_build.py's _SCRIPT, tests/test_packaging.py), as pip installs it."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "build_backend"))
    import sandlock_build
    return sandlock_build._SCRIPT.format(module="sandlock", function="cli").replace("#!python", "#!" + PYTHON, 1)


def cli(runs: int) -> None:
    """import sandlock, python -m sandlock and the installed script, each against python -c pass."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode caches, as users have them
    subprocess.run([PYTHON, "-m", "compileall", "-q", root], env=env, capture_output=True)
    with tempfile.TemporaryDirectory() as tmp:
        script = os.path.join(tmp, "sandlock")
        with open(script, "w") as f:
            f.write(installed_script())
        cases = (("import sandlock", [PYTHON, "-c", "import sandlock"], 8.0),
                 ("python -m sandlock -- /bin/true", [PYTHON, "-m", "sandlock", "--", "/bin/true"], 20.0),
                 ("installed sandlock -- /bin/true", [PYTHON, script, "--", "/bin/true"], 20.0))
        bare: list = []
        times: dict = {label: [] for label, _, _ in cases}
        for argv in [[PYTHON, "-c", "pass"]] + [argv for _, argv, _ in cases]:
            subprocess.run(argv, env=env, cwd="/")  # warm the caches
        for _ in range(runs):
            bare.append(timed(lambda: subprocess.run([PYTHON, "-c", "pass"], env=env, cwd="/")))
            for label, argv, _ in cases:
                times[label].append(timed(lambda: subprocess.run(argv, env=env, cwd="/")))
        b = statistics.median(bare)
        print(f"python3 -c pass: {b:.1f} ms (median of {runs}, fastest {min(bare):.1f} ms)")
        for label, _, target in cases:
            s = statistics.median(times[label])
            print(f"{label}: {s:.1f} ms, +{s - b:.1f} ms over python3 -c pass (target +{target:.0f} ms), "
                  f"ratio {s / b:.2f}; fastest {min(times[label]):.1f} ms, +{min(times[label]) - min(bare):.1f} ms")


# The phases of `python -m sandlock -- /bin/true`, timed inside the process (sys.argv[1]: the tree)
PHASES = r"""
import os, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[1])
import sandlock
t1 = time.perf_counter()
from sandlock import _supervisor
t2 = time.perf_counter()
spent = []
prepare = _supervisor.prepare
def timed_prepare(*args, **kwargs):
    t = time.perf_counter()
    try:
        return prepare(*args, **kwargs)
    finally:
        spent.append(time.perf_counter() - t)
_supervisor.prepare = timed_prepare
code = sandlock.main(sys.argv[2:] + ["--", "/bin/true"])
t3 = time.perf_counter()
os.write(3, ("%f %f %f %f" % (t1 - t0, t2 - t1, spent[0], t3 - t2 - spent[0])).encode())
os._exit(code)
"""
SPLIT = ("import sandlock", "import _supervisor", "prepare", "the launch and run")


def split(runs: int, against: "str | None", options: "list") -> None:
    """The CLI's start in phases, for this tree and (in turn) another."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trees = {"this tree": here}
    if against:
        trees["--against"] = os.path.abspath(against)
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # bytecode caches, as users have them
    env.pop("PYTHONPATH", None)
    for tree in trees.values():
        subprocess.run([PYTHON, "-m", "compileall", "-q", tree], env=env, capture_output=True)
    rows: dict = {name: [] for name in trees}
    bare: list = []

    def one(argv: list, fd_out: bool) -> "tuple":
        r, w = os.pipe()
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            os.dup2(w, 3)
            os.execve(argv[0], argv, env)
        os.close(w)
        _, status, usage = os.wait4(pid, 0)
        wall = (time.perf_counter() - t) * 1000
        data = os.read(r, 200) if fd_out else b""
        os.close(r)
        assert os.waitstatus_to_exitcode(status) == 0, argv
        return wall, usage.ru_minflt, data
    for _ in range(3):  # warm the caches
        one([PYTHON, "-c", "pass"], False)
        for tree in trees.values():
            one([PYTHON, "-c", PHASES, tree] + options, True)
    for _ in range(runs):
        bare.append(one([PYTHON, "-c", "pass"], False)[:2])
        for name, tree in trees.items():
            wall, faults, data = one([PYTHON, "-c", PHASES, tree] + options, True)
            rows[name].append([float(x) * 1000 for x in data.split()] + [wall, faults])
    base_wall = statistics.median(w for w, _ in bare)
    base_faults = statistics.median(f for _, f in bare)
    print(f"python3 -c pass: {base_wall:.1f} ms, {base_faults:.0f} page faults (medians of {runs})")
    medians = {}
    for name, values in rows.items():
        med = [statistics.median(v[i] for v in values) for i in range(6)]
        medians[name] = med
        phases = ", ".join(f"{label} {m:.2f}" for label, m in zip(SPLIT, med))
        print(f"{name}: {phases} ms; whole process {med[4]:.1f} ms (+{med[4] - base_wall:.1f} over pass), "
              f"{med[5]:.0f} page faults (+{med[5] - base_faults:.0f})")
    if against:
        a, b = medians["this tree"], medians["--against"]
        print("this tree - --against: " + ", ".join(f"{label} {x - y:+.2f}" for label, x, y in zip(SPLIT, a, b))
              + f" ms; whole process {a[4] - b[4]:+.1f} ms; page faults {a[5] - b[5]:+.0f}")


def programs(runs: int) -> None:
    """python3 programs under Sandbox() against bare."""
    box = sandlock.Sandbox()
    box.run(["/bin/true"])  # warm up imports and probes
    for label, code in PROGRAMS:
        argv = [PYTHON, "-c", code]
        subprocess.run(argv)
        bare, boxed = [], []
        for _ in range(runs):
            bare.append(timed(lambda: subprocess.run(argv)))
            boxed.append(timed(lambda: box.run(argv, capture_output=False)))
        report(label, bare, boxed)


def report(label: str, bare: list, boxed: list) -> None:
    b, s = statistics.median(bare), statistics.median(boxed)
    print(f"{label}: bare {b:.1f} ms, sandboxed {s:.1f} ms, ratio {s / b:.2f} "
          f"(fastest: {min(bare):.1f} / {min(boxed):.1f} ms, ratio {min(boxed) / min(bare):.2f})")


if __name__ == "__main__":
    main()
