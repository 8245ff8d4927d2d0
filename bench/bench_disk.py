#!/usr/bin/env python3
"""--max-disk: what writing costs under it, and how far past the limit a layer gets.

    python3 bench/bench_disk.py [--dir PARENT] [--files N]

Cases (each a fresh workdir under a temporary directory of --dir, default the
system temp dir; the upper layer lives in it):

  write speed   dd of 1 GiB (bs=1M) into the workdir without --max-disk and
                under a limit it never reaches (--max-disk 10G): MB/s;
  stopped at    the same dd under --max-disk 100M (one file: RLIMIT_FSIZE stops
                it at the limit, the command says how much it wrote), and 1 GiB
                in 16 files of 64 MiB: what sandlock had measured when it
                stopped the run ("disk limit exceeded (N KiB ...)"), the
                overshoot past the limit, and the seconds the run took;
  large lower   the same with N (default 100,000) files already in the workdir:
                a walk of the layer then takes long, which is what the
                incremental accounting (README, --max-disk) is for;
  many files    the command makes N files of 8 KiB under --max-disk 100M:
                how many it made before it was stopped, the overshoot, the
                seconds.

Not a test: timings never fail anything.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIMIT = 100 << 20
DD = "dd if=/dev/zero of={w}/big bs=1M count=1024 2>/dev/null; echo $(stat -c %s {w}/big) bytes written"
# 1 GiB in files of 64 MiB, each under the limit (RLIMIT_FSIZE does not stop them)
SPREAD = ("i=0; while [ $i -lt 16 ]; do dd if=/dev/zero of={w}/part$i bs=1M count=64 2>/dev/null || break; "
          "i=$((i+1)); done; echo $i parts")
MANY = ("python3 -c 'import sys\nfor i in range({n}):\n"
        "    try:\n        open(\"{w}/f%d\" % i, \"wb\").write(bytes(8192))\n"
        "    except OSError as e:\n        print(\"made\", i, e.strerror); sys.exit(1)\n"
        "print(\"made\", {n})'")


def sandlock(workdir: str, limit, script: str):
    """(seconds, exit status, stdout, stderr) of sh -c script in a workdir run (aborted at the end)."""
    args = [sys.executable, "-m", "sandlock", "--workdir", workdir, "-w", workdir, "--on-exit", "abort"]
    if limit is not None:
        args += ["--max-disk", str(limit)]
    env = dict(os.environ, PYTHONPATH=REPO)
    t0 = time.monotonic()
    r = subprocess.run(args + ["--", "sh", "-c", script.format(w=workdir)], capture_output=True, text=True, env=env)
    return time.monotonic() - t0, r.returncode, r.stdout, r.stderr


def measured(stderr: str):
    m = re.search(r"disk limit exceeded \((\d+) KiB", stderr)
    return int(m.group(1)) << 10 if m else None


def fresh(base: str, name: str, files: int = 0) -> str:
    w = os.path.join(base, name, "w")
    os.makedirs(w)
    for i in range(files):
        with open(os.path.join(w, f"old{i}"), "wb") as f:
            f.write(b"x")
    return w


def mib(n) -> str:
    return "-" if n is None else f"{n / (1 << 20):.0f} MiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dir", default=None, help="parent of the temporary directory")
    parser.add_argument("--files", type=int, default=100_000, help="files of the large cases")
    opts = parser.parse_args()
    base = tempfile.mkdtemp(prefix="sandlock-bench-disk-", dir=opts.dir)
    try:
        print(f"in {base}; limit {mib(LIMIT)}")
        for label, limit in (("no --max-disk", None), ("--max-disk 10G", 10 << 30)):
            w = fresh(base, label.replace(" ", "_"))
            secs, status, out, err = sandlock(w, limit, DD)
            print(f"write speed, {label:15}: {1024 / secs:7.0f} MB/s ({secs:.2f} s, exit {status})")
        for label, files in (("empty workdir", 0), (f"{opts.files} files in it", opts.files)):
            for what, script in (("1 file", DD), ("16 files of 64M", SPREAD)):
                w = fresh(base, f"dd-{files}-{what.split()[0]}", files)
                secs, status, out, err = sandlock(w, LIMIT, script)
                used = measured(err)
                over = None if used is None else used - LIMIT
                print(f"dd 1 GiB under 100M, {what}, {label}: stopped by the poll at {mib(used)} "
                      f"(overshoot {mib(over)}), {secs:.2f} s, exit {status}; {out.strip() or 'no output'}")
        w = fresh(base, "many")
        secs, status, out, err = sandlock(w, LIMIT, MANY.replace("{n}", str(opts.files)))
        used = measured(err)
        made = len([n for n in os.listdir(w)])
        print(f"{opts.files} files of 8 KiB under 100M: stopped at {mib(used)} "
              f"(overshoot {mib(None if used is None else used - LIMIT)}), {secs:.2f} s, exit {status}, "
              f"{out.strip() or 'no output'}{'' if made == 0 else f', {made} left in the workdir'}")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
