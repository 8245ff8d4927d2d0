"""The Rust sandlock's PyPI wheel, driven from the benchmarks in bench/.

The wheel has the same import name as this project, so it lives in a venv of
its own (VENV, made on first use by rust_venv()) and runs in a driver process
with that venv's python: RustPeer starts the driver and sends it one request a
run; the driver times Sandbox.run() itself, so no pipe or JSON cost is in the
milliseconds it reports.

    peer = RustPeer(kwargs={"chroot": rootfs}, timeout=300)   # one Sandbox for every run
    r = peer.run(["/bin/true"])                                 # or peer.run(argv, kwargs={...}):
    r["ms"], r["rc"], r["stdout"], r["stderr"], r["changes"]    #   a Sandbox of its own, built untimed
    peer.close()

Imported by bench_cow.py, bench_root.py and bench_peers.py (the script's own
directory is on sys.path), which also take Skip, tail() and import_ours() (this
project's sandlock, for their in-process runner) from here.  Stdlib only.
"""

import json
import os
import select
import subprocess
import sys
import time

VENV = os.path.join(os.path.expanduser("~"), ".cache", "sandlock-bench", "rust-venv")
VENV_PY = os.path.join(VENV, "bin", "python")
# The driver's environment (and so that of the commands it runs): no
# PYTHONPATH/PYTHONHOME of the host, and .pyc files may be written.
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONDONTWRITEBYTECODE")}


class Skip(Exception):
    """This runner (or this runner on this workload) cannot be measured."""


def tail(data, n=300):
    """The last n characters of data (bytes or str), on one line."""
    if isinstance(data, bytes):
        data = data.decode(errors="replace")
    return " ".join((data or "").strip()[-n:].split())


def import_ours(root):
    """This project's sandlock, imported from the checkout at root (not from the venv or site-packages)."""
    if root not in sys.path:
        sys.path.insert(0, root)  # kept: sandlock imports its _modules lazily
    try:
        import sandlock
    except Exception as e:  # noqa: BLE001
        raise Skip(f"cannot import this project's sandlock: {type(e).__name__}: {e}")
    if os.path.dirname(os.path.abspath(sandlock.__file__)) != root:
        raise Skip(f"imported sandlock from {sandlock.__file__}, not from {root}")
    return sandlock


def rust_venv(tail_n=300):
    """The venv holding the PyPI sandlock wheel, made on first use; returns its python."""
    probe = [VENV_PY, "-I", "-c", "import sandlock, sys; sys.exit(0 if hasattr(sandlock.Sandbox, 'run') else 1)"]
    if os.path.exists(VENV_PY) and subprocess.run(probe, capture_output=True, cwd="/").returncode == 0:
        return VENV_PY
    print(f"# making {VENV} and installing the PyPI sandlock wheel there (once)...", flush=True)
    try:
        if not os.path.exists(VENV_PY):
            subprocess.run([sys.executable, "-m", "venv", VENV], check=True, capture_output=True, timeout=300)
        p = subprocess.run([VENV_PY, "-m", "pip", "install", "-q", "--disable-pip-version-check", "sandlock"],
                           capture_output=True, timeout=600)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        raise Skip(f"cannot make the venv {VENV}: {e}")
    if p.returncode != 0:
        raise Skip("pip install sandlock failed: " + tail(p.stderr, tail_n))
    if subprocess.run(probe, capture_output=True, cwd="/").returncode != 0:
        raise Skip("the PyPI sandlock installed but its Sandbox has no run()")
    return VENV_PY


# Runs with the venv's python in isolated mode (-I: neither the cwd nor
# PYTHONPATH on sys.path), so `import sandlock` is the wheel, never this
# checkout.  argv[1] is JSON {"kwargs": {...} or null, "timeout": seconds or
# null}: with kwargs, one Sandbox is built at start and serves every request
# that brings none.  Requests (one JSON line each: {"argv": [...]}, with
# "kwargs": {...} for a Sandbox of its own, built before the timing) come on
# fd 0 and replies go to fd 1; both are moved off 0 and 1 first so that neither
# the sandboxed commands nor the library can touch the control channel.
DRIVER = r"""
import json, os, sys, time
ctl_in = os.fdopen(os.dup(0), "r")
ctl_out = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
os.dup2(2, 1)

def reply(obj):
    ctl_out.write(json.dumps(obj) + "\n")
    ctl_out.flush()

spec = json.loads(sys.argv[1])
try:
    import sandlock
except Exception as e:
    reply({"error": "import sandlock: %s: %s" % (type(e).__name__, e)})
    raise SystemExit(0)
shared = None
if spec["kwargs"] is not None:
    try:
        shared = sandlock.Sandbox(**spec["kwargs"])
    except Exception as e:
        reply({"error": "Sandbox(%r): %s: %s" % (spec["kwargs"], type(e).__name__, e)})
        raise SystemExit(0)
reply({"version": getattr(sandlock, "__version__", "?"), "file": sandlock.__file__})
for line in ctl_in:
    req = json.loads(line)
    try:
        box = shared if req.get("kwargs") is None else sandlock.Sandbox(**req["kwargs"])
        t = time.perf_counter()
        r = box.run(req["argv"], timeout=spec["timeout"])
        ms = (time.perf_counter() - t) * 1000
        del box
        reply({"ms": ms, "rc": r.exit_code if r.success or r.exit_code not in (0, None) else -1,
               "success": bool(r.success), "changes": len(getattr(r, "changes", None) or []),
               "stdout": (r.stdout or b"").decode(errors="replace"),
               "stderr": (r.stderr or b"").decode(errors="replace") + (r.error or "")})
    except Exception as e:
        err = "%s: %s" % (type(e).__name__, e)
        reply({"ms": 0, "rc": -1, "success": False, "changes": 0, "stdout": "", "stderr": err})
"""


class RustPeer:
    """The driver process: run(argv, kwargs=None) -> its reply, a dict with ms (of Sandbox.run() alone),
    rc (-1 when the run failed with exit 0), success, changes (of a workdir), stdout and stderr (with the
    library's error after it).  kwargs: the Sandbox every run shares (None: each run brings its own);
    timeout: Sandbox.run()'s, in seconds; deadline: seconds from start after which the driver is killed
    (None: no limit).  Raises Skip when the driver cannot be had, dies or passes the deadline."""

    def __init__(self, kwargs=None, timeout=None, deadline=None, tail_n=300):
        self.python = rust_venv(tail_n)
        self.tail_n = tail_n
        self.deadline = None if deadline is None else time.monotonic() + deadline
        self.proc = subprocess.Popen([self.python, "-I", "-c", DRIVER,
                                      json.dumps({"kwargs": kwargs, "timeout": timeout})],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd="/", env=ENV, text=True)
        hello = self._read()
        if "error" in hello:
            self.close()
            raise Skip(hello["error"])
        if not hello["file"].startswith(VENV):
            self.close()
            raise Skip(f"the driver imported sandlock from {hello['file']}, not from the venv")
        self.version = hello["version"]

    def _read(self):
        # One reply a request, so nothing waits in the pipe's text buffer while select() looks at the fd.
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                self.proc.kill()
                self.proc.wait()
                raise Skip("the Rust sandlock driver timed out")
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            err = self.proc.stderr.read()
            raise Skip("the Rust sandlock driver died: " + tail(err, self.tail_n))
        return json.loads(line)

    def run(self, argv, kwargs=None):
        req = {"argv": list(argv)}
        if kwargs is not None:
            req["kwargs"] = kwargs
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
