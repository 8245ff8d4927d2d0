#!/usr/bin/env python3
"""The copy-on-write workdir (--workdir / workdir=) against bare runs and the Rust sandlock, in one run.

    python3 bench/bench_cow.py [--runs N] [--dir PARENT] [--only py-api,py-abort]

Workload: extract a tarball of 5000 small files (1-4 KiB, in 50 directories;
made once per invocation with tarfile in a temporary directory) into an
empty workdir, then read every file back:

    sh -c 'cd DIR && tar xf ARCHIVE && find . -type f | xargs cat > /dev/null'

Everything (archive, workdirs, upper layers in them) lives in a
temporary directory under --dir (default: the system temp dir, usually
/tmp).  File creation speed differs a lot between filesystems (and between
directories of an aged ext4: compare /tmp with /var/tmp), so the bare time
is printed along with where it was measured.  Not under /dev: this
project's emulated root (which the workdir uses) shows a private /dev, so a
workdir in /dev/shm is not visible to the command; mount a tmpfs elsewhere
to measure on tmpfs.
Every run gets a fresh empty DIR (BASE/runs/<runner>-<i>/w, removed after
the run, untimed); the upper layer of this project lives in DIR (releases
before put it next to DIR), so DIR and its parent are checked for leftovers.  The archive is in its own
directory, made readable with fs_readable / -r together with the default
system directories (fs_readable replaces the default view).
Runners (each one that cannot run prints "n/a (reason)"; one failing never
loses the others):
  bare        subprocess.run of the sh -c line above: the baseline of every ratio;
  py-api      this project in process: sandlock.Sandbox(workdir=DIR,
              fs_writable=[DIR], fs_readable=[system dirs, archive dir]).run(argv),
              wall time of run(), which includes building the policy's filter,
              Landlock rulesets and upper layer (the policy names DIR, so one
              Sandbox per run) and the commit into DIR at exit 0;
  py-abort    the same with on_exit="abort": nothing is committed, so
              py-api - py-abort ~ the commit (and the change list it applies);
  py-cli      python3 -m sandlock --workdir DIR -w DIR -r ... -- sh -c ...
              (PYTHONPATH=repo root), wall time of the subprocess;
  rust        the Rust sandlock's PyPI wheel in its own venv
              (~/.cache/sandlock-bench/rust-venv, made on first use by
              bench/_rustpeer.py): Sandbox(workdir=DIR, fs_writable=[DIR, /dev/null],
              fs_readable=[...]).run(argv) (on_exit defaults to COMMIT), timed
              inside a driver process running that venv's python.  /dev/null
              is in its fs_writable because it does not grant it by default
              (this project does).
After each sandboxed run DIR must hold exactly the 5000 files (0 after
py-abort) with the archive's total size: a warning line is printed if not.
Runs are interleaved (run i of every runner, then run i+1), after one untimed
warm-up each.  Prints medians (ms) and ratios to bare; the target (<= 6x bare,
issue 14) is printed for reference, and the commit (Upper.changes + Upper.commit,
timed inside py-api's run by wrapping them in this process; target <= 200 ms).  Not a test: timings never fail anything; the exit
status is 0 unless the archive or the bare runs fail.
"""

import argparse
import gc
import importlib
import io
import os
import random
import shlex
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # for _rustpeer, also when not run as a script
from _rustpeer import ENV as RUST_ENV, RustPeer, Skip, import_ours, tail  # noqa: E402

TIMEOUT = 300  # seconds, one run
FILES, DIRS = 5000, 50
TARGET = 6.0  # ratio to bare, for this project's runners (issue 14, target 5)
COMMIT_TARGET = 200.0  # ms: the commit of the 5000 files (changes + commit, timed inside py-api)

# The default view of this project (_policy.DEFAULT_READABLE), those that exist.
SYSTEM_DIRS = [d for d in ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin",
                           "/etc", "/opt", "/proc") if os.path.exists(d)]
BASE_ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
RUNNERS = ["bare", "py-api", "py-abort", "py-cli", "rust"]
OURS = ("py-api", "py-cli")


def ends(text, n=300):
    """The start and the end of a long stderr, on one line."""
    text = " ".join((text or "").split())
    return text if len(text) <= 2 * n + 5 else f"{text[:n]} ... {text[-n:]}"


def make_archive(directory):
    """BASE/archive/files.tar: FILES files of 1-4 KiB in DIRS directories; returns (path, total bytes)."""
    rnd = random.Random(5000)
    path = os.path.join(directory, "files.tar")
    total = 0
    now = int(time.time())
    uid, gid = os.getuid(), os.getgid()
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        for d in range(DIRS):
            dname = f"dir{d:02d}"
            ti = tarfile.TarInfo(dname)
            ti.type, ti.mode, ti.mtime, ti.uid, ti.gid = tarfile.DIRTYPE, 0o755, now, uid, gid
            tf.addfile(ti)
            for i in range(FILES // DIRS):
                size = rnd.randint(1024, 4096)
                data = bytes(rnd.getrandbits(8) for _ in range(64)) * (size // 64) + b"x" * (size % 64)
                ti = tarfile.TarInfo(f"{dname}/file{i:03d}.dat")
                ti.size, ti.mode, ti.mtime, ti.uid, ti.gid = len(data), 0o644, now, uid, gid
                tf.addfile(ti, io.BytesIO(data))
                total += len(data)
    return path, total


def count_tree(top):
    """(regular files, their total bytes) under top."""
    n = size = 0
    for dirpath, _, names in os.walk(top):
        for name in names:
            st = os.lstat(os.path.join(dirpath, name))
            n += 1
            size += st.st_size
    return n, size


def fs_of(path):
    """'on TYPE (DEVICE)' of the mount holding path, from /proc/self/mounts."""
    best = ("", "?", "?")
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                dev, mnt, typ = line.split()[:3]
                if (path == mnt or path.startswith(mnt.rstrip("/") + "/")) and len(mnt) >= len(best[0]):
                    best = (mnt, typ, dev)
    except OSError:
        pass
    return f"on {best[1]} ({best[2]} at {best[0]})"


# ---------------------------------------------------------------- runners
# A runner has run(workdir) -> (ms, returncode, stderr str) and close().

class Bare:
    def __init__(self, ctx):
        self.ctx = ctx

    def run(self, workdir):
        argv = self.ctx.argv(workdir)
        t = time.perf_counter()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=BASE_ENV, cwd="/",
                           timeout=TIMEOUT)
        return (time.perf_counter() - t) * 1000, p.returncode, p.stderr.decode(errors="replace")

    def close(self):
        pass


class PyApi:
    def __init__(self, ctx, on_exit="commit"):
        self.ctx, self.on_exit = ctx, on_exit
        self.sandlock = import_ours(ROOT)
        self.phases = {}  # "changes"/"commit" -> [ms of each timed run]
        if on_exit == "commit":
            self._time_phases()

    def _time_phases(self):
        """Time _cow.Upper.changes and .commit inside run() (wrapped in this process only)."""
        cow = importlib.import_module(self.sandlock.__name__ + "._cow")
        self.last = {}

        def timed(name, f):
            def wrapper(*a, **k):
                t = time.perf_counter()
                try:
                    return f(*a, **k)
                finally:
                    self.last[name] = self.last.get(name, 0.0) + (time.perf_counter() - t) * 1000
            return wrapper
        for name in ("changes", "commit"):
            setattr(cow.Upper, name, timed(name, getattr(cow.Upper, name)))

    def run(self, workdir):
        try:
            box = self.sandlock.Sandbox(workdir=workdir, fs_writable=[workdir], on_exit=self.on_exit,
                                        fs_readable=self.ctx.readable)
        except Exception as e:  # noqa: BLE001
            raise Skip(f"Sandbox(workdir=...): {type(e).__name__}: {e}")
        if hasattr(self, "last"):
            self.last.clear()
        t = time.perf_counter()
        r = box.run(self.ctx.argv(workdir), timeout=TIMEOUT)
        ms = (time.perf_counter() - t) * 1000
        for name, value in getattr(self, "last", {}).items():
            self.phases.setdefault(name, []).append(value)
        rc = getattr(r, "returncode", getattr(r, "exit_code", None))
        err = (r.stderr or b"").decode(errors="replace")
        note = getattr(r, "workdir_note", "")
        if note:
            err += f" [workdir note: {note}]"
        del box, r  # the prepared policy (and its upper-layer directory) goes with the Sandbox
        gc.collect()
        return ms, rc, err

    def close(self):
        pass


class PyCli:
    def __init__(self, ctx):
        self.ctx = ctx
        self.env = dict(BASE_ENV, PYTHONPATH=ROOT)
        self.env.pop("PYTHONDONTWRITEBYTECODE", None)  # let the CLI's own modules come from .pyc
        subprocess.run([sys.executable, "-m", "compileall", "-q", ROOT], env=self.env, capture_output=True)

    def run(self, workdir):
        argv = [sys.executable, "-m", "sandlock", "--workdir", workdir, "-w", workdir]
        for d in self.ctx.readable:
            argv += ["-r", d]
        argv += ["--", *self.ctx.argv(workdir)]
        t = time.perf_counter()
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, env=self.env, cwd="/",
                           timeout=TIMEOUT)
        return (time.perf_counter() - t) * 1000, p.returncode, p.stderr.decode(errors="replace")

    def close(self):
        pass


RUST_HAS_WORKDIR = r"""
import dataclasses, inspect, sys
import sandlock
from sandlock import sandbox
fields = {f.name for f in dataclasses.fields(sandbox.Sandbox)} if dataclasses.is_dataclass(sandbox.Sandbox) else set()
try:
    fields |= set(inspect.signature(sandlock.Sandbox).parameters)
except (TypeError, ValueError):
    pass
sys.exit(0 if "workdir" in fields else 3)
"""


class Rust:
    def __init__(self, ctx):
        self.ctx = ctx
        self.peer = RustPeer(timeout=TIMEOUT, tail_n=400)  # a Sandbox per run: its policy names the workdir
        p = subprocess.run([self.peer.python, "-I", "-c", RUST_HAS_WORKDIR], capture_output=True, cwd="/",
                           env=RUST_ENV)
        if p.returncode != 0:
            self.peer.close()
            if p.returncode == 3:
                raise Skip("the PyPI sandlock's Sandbox has no workdir= parameter")
            raise Skip("cannot inspect the PyPI sandlock's Sandbox: " + tail(p.stderr, 400))
        self.version = self.peer.version

    def kwargs(self, workdir):
        return {"workdir": workdir, "fs_writable": [workdir, "/dev/null"], "fs_readable": self.ctx.readable}

    def run(self, workdir):
        r = self.peer.run(self.ctx.argv(workdir), kwargs=self.kwargs(workdir))
        return r["ms"], r["rc"], r["stderr"]

    def close(self):
        self.peer.close()


SETUPS = {"bare": Bare, "py-api": PyApi, "py-abort": lambda ctx: PyApi(ctx, on_exit="abort"),
          "py-cli": PyCli, "rust": Rust}


# ---------------------------------------------------------------- measuring

class Context:
    def __init__(self, base, archive, total):
        self.base, self.archive, self.total = base, archive, total
        self.readable = SYSTEM_DIRS + [os.path.dirname(archive)]
        self.serial = 0

    def argv(self, workdir):
        return ["sh", "-c", f"cd {shlex.quote(workdir)} && tar xf {shlex.quote(self.archive)} && "
                            f"find . -type f | xargs cat > /dev/null"]

    def fresh(self, name):
        """A fresh empty workdir in a parent of its own: (parent, workdir)."""
        self.serial += 1
        parent = os.path.join(self.base, "runs", f"{name}-{self.serial}")
        workdir = os.path.join(parent, "w")
        os.makedirs(workdir)
        return parent, workdir


def one(ctx, name, runner, warnings, label):
    """One run in a fresh workdir: its ms; raises Skip on failure, appends to warnings on a wrong tree."""
    parent, workdir = ctx.fresh(name)
    try:
        try:
            ms, rc, err = runner.run(workdir)
        except subprocess.TimeoutExpired:
            raise Skip(f"timed out after {TIMEOUT} s")
        if rc != 0:
            raise Skip(f"exit {rc}: stderr: {ends(err)}")
        want = (0, 0) if name == "py-abort" else (FILES, ctx.total)
        got = count_tree(workdir)
        if got != want:
            warnings.append(f"WARNING {name} {label}: {workdir} holds {got[0]} files, {got[1]} bytes; "
                            f"expected {want[0]} files, {want[1]} bytes")
        extra = sorted(set(os.listdir(parent)) - {"w"})
        if extra and name != "bare":
            warnings.append(f"WARNING {name} {label}: left next to the workdir: {', '.join(extra[:5])}")
        return ms
    finally:
        shutil.rmtree(parent, ignore_errors=True)


def measure(ctx, runners, runs):
    """{runner: [ms...] or "reason"}, runs interleaved after one warm-up each; also the warnings."""
    res, live, warnings = {}, [], []
    for r, runner in runners.items():
        if isinstance(runner, str):
            res[r] = runner
            continue
        try:
            one(ctx, r, runner, warnings, "warm-up")
        except Exception as e:  # noqa: BLE001
            res[r] = str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}"
            print(f"# {r}: n/a ({res[r]})", flush=True)
            continue
        res[r] = []
        live.append(r)
    for i in range(runs):
        for r in list(live):
            try:
                res[r].append(one(ctx, r, runners[r], warnings, f"run {i + 1}"))
            except Exception as e:  # noqa: BLE001
                res[r] = f"run {i + 1}: " + (str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}")
                print(f"# {r}: n/a ({res[r]})", flush=True)
                live.remove(r)
        print(f"# run {i + 1}/{runs} done", flush=True)
    return res, warnings


def report(res, runs, phases=None):
    print(f"tar xf ({FILES} files of 1-4 KiB in {DIRS} dirs) + find | xargs cat, in a fresh workdir  "
          f"[{runs} runs]  (target for sandlock: <= {TARGET:g}x bare)")
    base = res.get("bare")
    base_ms = statistics.median(base) if isinstance(base, list) and base else None
    print(f"   {'runner':9s} {'median ms':>10s} {'x bare':>8s} {'min ms':>9s} {'max ms':>9s}  target")
    for r in RUNNERS:
        v = res.get(r)
        if v is None:
            continue
        if isinstance(v, str):
            print(f"   {r:9s} n/a ({v})")
            continue
        ms = statistics.median(v)
        line = f"   {r:9s} {ms:10.1f} {(f'{ms / base_ms:.2f}x' if base_ms else 'n/a'):>8s} {min(v):9.1f} {max(v):9.1f}"
        if r in OURS:
            line += f"  <= {TARGET:g}x: " + ("n/a" if not base_ms else "met" if ms / base_ms <= TARGET else "not met")
        print(line)
    full, abort = res.get("py-api"), res.get("py-abort")
    if isinstance(full, list) and isinstance(abort, list) and full and abort:
        diffs = [a - b for a, b in zip(full, abort)]
        print(f"   commit    ~ {statistics.median(full) - statistics.median(abort):.1f} ms "
              f"(median py-api - median py-abort; median of the per-run differences "
              f"{statistics.median(diffs):.1f} ms)")
    else:
        print("   commit    n/a (needs both py-api and py-abort)")
    if phases and phases.get("commit"):
        both = [a + b for a, b in zip(phases.get("changes", [0.0] * len(phases["commit"])), phases["commit"])]
        ms = statistics.median(both)
        print(f"   commit    {ms:.1f} ms timed inside py-api (changes {statistics.median(phases.get('changes', [0.0])):.1f}"
              f" + commit {statistics.median(phases['commit']):.1f}; median of {len(both)} runs, warm-up included)"
              f"  <= {COMMIT_TARGET:g} ms: " + ("met" if ms <= COMMIT_TARGET else "not met"))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=5, help="timed runs per runner (default 5)")
    ap.add_argument("--only", metavar="R,R", help=f"these runners only (of {','.join(RUNNERS)}; bare always)")
    ap.add_argument("--dir", metavar="PARENT", help="where to make the temporary directory (default: "
                    f"{tempfile.gettempdir()})")
    args = ap.parse_args()
    runs = max(1, args.runs)
    only = set(args.only.split(",")) | {"bare"} if args.only else set(RUNNERS)
    if only - set(RUNNERS):
        ap.error(f"--only: unknown runner(s) {', '.join(sorted(only - set(RUNNERS)))}")
    start = time.perf_counter()
    u = os.uname()
    if args.dir and not os.path.isdir(args.dir):
        ap.error(f"--dir {args.dir}: not a directory")
    base = tempfile.mkdtemp(prefix="sandlock-bench-cow-", dir=os.path.abspath(args.dir) if args.dir else None)
    runners, notes, res = {}, [], {}
    try:
        os.makedirs(os.path.join(base, "archive"))
        try:
            archive, total = make_archive(os.path.join(base, "archive"))
        except Exception as e:  # noqa: BLE001
            sys.exit(f"cannot make the archive: {type(e).__name__}: {e}")
        print(f"# {u.sysname} {u.release} {u.machine}, {os.cpu_count()} cpus; python {sys.version.split()[0]}; "
              f"uid {os.getuid()}; {fs_of(base)}; archive {archive} ({os.path.getsize(archive) // 1024} KiB, "
              f"{FILES} files, {total // 1024} KiB of data)", flush=True)
        ctx = Context(base, archive, total)
        for r in [r for r in RUNNERS if r in only]:
            t = time.perf_counter()
            try:
                runners[r] = SETUPS[r](ctx)
            except Exception as e:  # noqa: BLE001 -- one failing runner must not lose the others
                runners[r] = str(e) if isinstance(e, Skip) else f"{type(e).__name__}: {e}"
                print(f"# {r}: n/a ({runners[r]})", flush=True)
                continue
            if r == "rust":
                notes.append(f"rust = PyPI sandlock {runners[r].version}: Sandbox(workdir=DIR, "
                             f"fs_writable=[DIR, '/dev/null'], fs_readable=[system dirs, archive dir]).run(argv), "
                             f"on_exit=COMMIT (default); timed inside the venv's driver")
            print(f"# {r}: ready in {time.perf_counter() - t:.1f} s", flush=True)
        notes.append(f"fs_readable / -r: {ctx.readable}")
        print()
        t = time.perf_counter()
        res, warnings = measure(ctx, runners, runs)
        print()
        api = runners.get("py-api")
        report(res, runs, getattr(api, "phases", None))
        print(f"   (measured in {time.perf_counter() - t:.1f} s)")
        for w in warnings:
            print(w)
        print()
    finally:
        for runner in runners.values():
            if not isinstance(runner, str):
                runner.close()
        shutil.rmtree(base, ignore_errors=True)
    for n in notes:
        print(f"note: {n}")
    print(f"total {time.perf_counter() - start:.1f} s")
    return 0 if isinstance(res.get("bare"), list) else 1


if __name__ == "__main__":
    sys.exit(main())
