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
"""

import argparse
import os
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
    args = ap.parse_args()
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
