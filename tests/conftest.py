"""Shared fixtures of the sandlock test suite.

What lives here:

- the repository root on sys.path, so unit tests can ``from sandlock import _syscalls``
  (the helpers load only as sandlock._name: README "Installing and vendoring");
- strict mode: with ``SANDLOCK_TEST_STRICT=1`` (CI) a skipped test is a
  failure, so a missing compiler, user or interpreter cannot hide a result;
- ``who``: every integration test runs twice, as root and as the unprivileged
  system user ``sandlock-test`` (README "Tests": both must agree).  The user runs a
  world-readable copy of the product with the system interpreter
  ``/usr/bin/python3``, because the repository and pyenv may live under
  ``/root`` (mode 0700);
- ``scratch``: a per-test directory both identities can use;
- ``progs``: the C helpers of tests/progs, compiled once per set of sources
  into ``~/.cache/sandlock-tests/progs-<hash>``;
- small helpers to find processes by a unique marker argument in /proc.

Nothing here confines anything: every sandboxed command runs in a child
process started through ``python -m sandlock``.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Mapping, Optional, Sequence, TypeVar, Union

import pytest

REPO = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
PROGS_SRC = TESTS / "progs"

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STRICT = os.environ.get("SANDLOCK_TEST_STRICT") == "1"
T = TypeVar("T")
TEST_USER = "sandlock-test"
SYSTEM_PYTHON = "/usr/bin/python3"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IS_ROOT = os.geteuid() == 0

# Read rules giving a command the system runtime, for tests that name their
# own -r paths (any -r replaces the default view).  Only existing paths: a
# nonexistent -r path is an error by design (docs/design.md "Filesystem policy").
SYSTEM_DIRS = [p for p in ("/usr", "/lib", "/lib64", "/bin", "/sbin", "/etc") if os.path.exists(p)]
SYSTEM_READ: List[str] = [arg for p in SYSTEM_DIRS for arg in ("-r", p)]


# --- strict mode ------------------------------------------------------------------

@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Under SANDLOCK_TEST_STRICT=1 a skip is reported as a failure, with its reason."""
    outcome = yield
    report = outcome.get_result()
    if not STRICT or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    report.outcome = "failed"
    report.longrepr = f"SANDLOCK_TEST_STRICT=1: a skipped test is a failure here: {reason}"


def pytest_report_header(config: pytest.Config) -> List[str]:
    return [f"sandlock tests: strict={STRICT} root={IS_ROOT} kernel={platform.release()} "
            f"landlock_abi={kernel_landlock_abi()}"]


# --- kernel facts the tests compare against -------------------------------------------

def kernel_landlock_abi() -> int:
    """landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION), 0 if absent."""
    nr = {"x86_64": 444, "aarch64": 444}.get(platform.machine())
    if nr is None:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    abi = libc.syscall(ctypes.c_long(nr), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(int(abi), 0)


# --- processes by marker ----------------------------------------------------------------

def unique_marker(base: int = 100) -> str:
    """A sleep duration no other process on the machine uses, e.g. '100.482913'."""
    return f"{base}.{uuid.uuid4().int % 10**6:06d}"


def process_argv(pid: int) -> Optional[List[str]]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    if not raw:
        return None  # a zombie or a kernel thread
    return [os.fsdecode(a) for a in raw.rstrip(b"\0").split(b"\0")]


def process_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return ""


def build_fixture(build: "Callable[[], T]") -> "T":
    """A cached fixture of tests/rootfs.py: a missing Debian package skips the test,
    or fails it under SANDLOCK_TEST_STRICT."""
    import rootfs
    try:
        return build()
    except rootfs.MissingPackage as e:
        if STRICT:
            pytest.fail(str(e))
        pytest.skip(str(e))


def runs_sandlock(argv: List[str]) -> bool:
    """Is this the argv of sandlock itself (or of what launched it, e.g. setpriv), whose
    argv also holds the command?  `python3 -m sandlock` or a sandlock/sandlock.py
    program; an argument that merely mentions sandlock (a scratch path) is not."""
    for index, arg in enumerate(argv):
        if arg == "-m" and argv[index + 1:index + 2] == ["sandlock"]:
            return True
        if os.path.basename(arg) in ("sandlock", "sandlock.py"):
            return True
        if arg == "--":
            break  # the command starts here
    return False


def fuzz_seeds(fixed: Sequence[int]) -> Sequence[int]:
    """SANDLOCK_FUZZ_SEED: unset, the fixed seeds (CI is deterministic); `random`, one fresh
    seed; N[,M...], those (README "Tests")."""
    wanted = os.environ.get("SANDLOCK_FUZZ_SEED", "").strip()
    if not wanted:
        return tuple(fixed)
    if wanted == "random":
        import random
        return (random.SystemRandom().randrange(1 << 32),)
    try:
        return tuple(int(x) for x in wanted.split(","))
    except ValueError:
        raise pytest.UsageError(f"SANDLOCK_FUZZ_SEED={wanted!r}: 'random' or seeds N[,M...]") from None


def find_processes(marker: str) -> List[int]:
    """Live, non-zombie processes having `marker` as one whole argument.

    sandlock's own process (whose argv also holds the command) is left out.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        argv = process_argv(int(entry))
        if not argv or marker not in argv or runs_sandlock(argv):
            continue
        if process_state(int(entry)) in ("Z", "X", ""):
            continue
        found.append(int(entry))
    return found


def wait_for(predicate, timeout: float, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll predicate() until it is true or timeout seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def at_once(count: int, work, timeout: float) -> dict:  # type: ignore[no-untyped-def]
    """{i: work(i)} from `count` threads started together (a barrier); every thread is
    joined within timeout seconds and none may raise (the first errors are reported)."""
    import threading
    results: dict = {}
    errors: list = []
    barrier = threading.Barrier(count)

    def worker(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "threads hung"
    assert not errors, errors[:3]
    return results


def kill_marked(marker: str) -> None:
    """Clean up after a failed test: SIGKILL the processes carrying our marker, by pid."""
    for pid in find_processes(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


# --- session directories ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def session_dir() -> Iterator[Path]:
    """A world-readable directory for this session: product copy, helpers, homes."""
    base = Path(tempfile.mkdtemp(prefix="sandlock-tests-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def product_copy(session_dir: Path) -> Path:
    """sandlock.py and _*.py copied where the unprivileged user can read them."""
    lib = session_dir / "lib"
    lib.mkdir()
    lib.chmod(0o755)
    for src in [REPO / "sandlock.py", *sorted(REPO.glob("_*.py"))]:
        if src.is_file():
            shutil.copyfile(src, lib / src.name)
            (lib / src.name).chmod(0o644)
    return lib


@pytest.fixture(scope="session")
def pycache_dir(session_dir: Path) -> Path:
    """PYTHONPYCACHEPREFIX for both identities: fast reruns, no __pycache__ in the repo."""
    d = session_dir / "pycache"
    d.mkdir()
    d.chmod(0o1777)
    return d


# --- the unprivileged user ------------------------------------------------------------------------

class TestUser:
    """The system user sandlock-test, and how to run a command as it."""

    def __init__(self, uid: int, gid: int, home: Path) -> None:
        self.uid = uid
        self.gid = gid
        self.home = home

    def wrap(self, argv: Sequence[str]) -> List[str]:
        if not IS_ROOT:
            return list(argv)
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--", *argv]


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(TEST_USER)
    except KeyError:
        pass
    if shutil.which("useradd") is None:
        pytest.skip("useradd is missing (Debian package passwd): cannot create the test user")
    subprocess.run(["useradd", "--system", "--no-create-home", "--user-group",
                    "--shell", "/usr/sbin/nologin", TEST_USER], check=True, capture_output=True)
    return pwd.getpwnam(TEST_USER)


@pytest.fixture(scope="session")
def test_user(session_dir: Path) -> TestUser:
    """The unprivileged identity; verified to really run with its uid, gid and no capabilities."""
    if IS_ROOT:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv is missing (Debian package util-linux): cannot drop to the test user")
        entry = _ensure_user()
        uid, gid = entry.pw_uid, entry.pw_gid
    else:
        uid, gid = os.getuid(), os.getgid()
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is missing (Debian package python3): the test user needs an interpreter")
    home = session_dir / "home-user"
    home.mkdir()
    if IS_ROOT:
        os.chown(home, uid, gid)
    home.chmod(0o755)
    user = TestUser(uid, gid, home)
    probe = ("import os;"
             "caps=[l.split()[1] for l in open('/proc/self/status') if l.startswith('CapEff')][0];"
             "print(os.getuid(), os.geteuid(), os.getgid(), os.getegid(), len(os.getgroups()), caps)")
    out = subprocess.run(user.wrap([SYSTEM_PYTHON, "-c", probe]), capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, f"cannot run {SYSTEM_PYTHON} as uid {uid}: {out.stderr}"
    fields = out.stdout.split()
    assert fields[:4] == [str(uid), str(uid), str(gid), str(gid)], out.stdout
    if IS_ROOT:
        assert fields[4] == "0" and int(fields[5], 16) == 0, f"test user keeps groups or capabilities: {out.stdout}"
    return user


# --- running the CLI -----------------------------------------------------------------------------

class CLI:
    """Runs `python -m sandlock ARGS` as root (the repo) or as the test user (the copy)."""

    def __init__(self, product: Path, pycache: Path, user: Optional[TestUser]) -> None:
        self.product = product
        self.pycache = pycache
        self.user = user

    def command(self, args: Sequence[str], as_user: bool) -> List[str]:
        if as_user:
            assert self.user is not None
            return self.user.wrap([SYSTEM_PYTHON, "-m", "sandlock", *args])
        return [sys.executable, "-m", "sandlock", *args]

    def environment(self, as_user: bool, env: Optional[Mapping[str, Optional[str]]]) -> Dict[str, str]:
        """A small, predictable environment: system PATH, C locale, the product on PYTHONPATH."""
        if as_user:
            assert self.user is not None
            home, pythonpath = str(self.user.home), str(self.product)
        else:
            home, pythonpath = os.environ.get("HOME", "/root"), str(REPO)
        base = {"PATH": SYSTEM_PATH, "HOME": home, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
                "PYTHONPATH": pythonpath, "PYTHONPYCACHEPREFIX": str(self.pycache)}
        if "TERM" in os.environ:
            base["TERM"] = os.environ["TERM"]
        for key, value in (env or {}).items():
            if value is None:
                base.pop(key, None)
            else:
                base[key] = value
        return base

    def run(self, args: Sequence[str], *, as_user: bool = False, input: Union[str, bytes, None] = None,
            timeout: float = 60, cwd: Union[str, Path, None] = None,
            env: Optional[Mapping[str, Optional[str]]] = None, text: bool = True,
            pass_fds: Sequence[int] = ()) -> subprocess.CompletedProcess:
        """Run sandlock to completion; stdin is /dev/null unless input is given.

        env is laid over the default test environment (a None value removes a key).
        """
        if isinstance(input, str) and not text:
            input = input.encode()
        kwargs = dict(input=input) if input is not None else dict(stdin=subprocess.DEVNULL)
        return subprocess.run(self.command(args, as_user), capture_output=True, timeout=timeout,
                              preexec_fn=default_signals,
                              cwd=str(cwd) if cwd else "/", env=self.environment(as_user, env), text=text,
                              errors="surrogateescape" if text else None, pass_fds=tuple(pass_fds),
                              **kwargs)

    def popen(self, args: Sequence[str], *, as_user: bool = False, cwd: Union[str, Path, None] = None,
              env: Optional[Mapping[str, Optional[str]]] = None) -> subprocess.Popen:
        """Start sandlock in the background; the Popen's pid is sandlock itself (setpriv execs)."""
        return subprocess.Popen(self.command(args, as_user), preexec_fn=default_signals,
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=str(cwd) if cwd else "/",
                                env=self.environment(as_user, env), text=True, errors="surrogateescape")


def default_signals() -> None:
    """In the child, before exec: the signals a shell ignores for a background job or
    nohup (SIGHUP, SIGINT, SIGQUIT) back to default, so sandlock starts as from a
    terminal whatever started pytest (an ignored signal stays ignored in the command,
    as bare, and `trap` cannot catch it there)."""
    for sig in (signal.SIGHUP, signal.SIGINT, signal.SIGQUIT):
        signal.signal(sig, signal.SIG_DFL)


@pytest.fixture(scope="session")
def cli(request: pytest.FixtureRequest, product_copy: Path, pycache_dir: Path) -> CLI:
    return CLI(product_copy, pycache_dir, None)


@pytest.fixture
def sandlock_cli(cli: CLI, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """sandlock_cli(args, *, as_user=False, input=None, timeout=60, cwd=None, env=None, text=True)."""
    def run(args: Sequence[str], *, as_user: bool = False, **kwargs):  # type: ignore[no-untyped-def]
        if as_user and cli.user is None:
            cli.user = request.getfixturevalue("test_user")
        return cli.run(args, as_user=as_user, **kwargs)
    return run


class Who:
    """One identity a test runs as: `root` or `user` (the unprivileged sandlock-test)."""

    def __init__(self, name: str, cli: CLI, user: Optional[TestUser]) -> None:
        self.name = name
        self.is_user = name == "user"
        self._cli = cli
        self.uid = user.uid if (self.is_user and user) else os.getuid()
        self.gid = user.gid if (self.is_user and user) else os.getgid()
        self.home = user.home if (self.is_user and user) else Path(os.environ.get("HOME", "/root"))

    def __repr__(self) -> str:
        return f"Who({self.name})"

    def run(self, args: Sequence[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return self._cli.run(args, as_user=self.is_user, **kwargs)

    def popen(self, args: Sequence[str], **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
        return self._cli.popen(args, as_user=self.is_user, **kwargs)

    def spawn_outside(self, argv: Sequence[str]) -> subprocess.Popen:
        """Start a process NOT in any sandbox, as this identity (a target for cross-sandbox probes)."""
        if self.is_user:
            argv = self._cli.user.wrap(argv)  # type: ignore[union-attr]
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, cwd="/")

    def own(self, path: Union[str, Path]) -> Path:
        """Give path to this identity (files the command changes must be its own)."""
        if IS_ROOT:
            os.lchown(path, self.uid, self.gid)
        return Path(path)

    def make_file(self, path: Union[str, Path], data: Union[str, bytes] = b"", mode: int = 0o644) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        path.chmod(mode)
        return self.own(path)

    def make_dir(self, path: Union[str, Path], mode: int = 0o755) -> Path:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        path.chmod(mode)
        return self.own(path)

    def python(self, code: str, *, args: Sequence[str] = (), timeout: float = 120,
               env: Optional[Mapping[str, str]] = None, input: Optional[bytes] = None) -> subprocess.CompletedProcess:
        """Run Python code (not sandboxed itself) as this identity, with the product importable.

        For the API: the code imports sandlock and sandboxes children of its own.
        """
        if self.is_user:
            argv = self._cli.user.wrap([SYSTEM_PYTHON, "-c", code, *args])  # type: ignore[union-attr]
        else:
            argv = [sys.executable, "-c", code, *args]
        full_env = self._cli.environment(self.is_user, env)
        return subprocess.run(argv, capture_output=True, timeout=timeout, cwd="/", env=full_env, preexec_fn=default_signals,
                              input=input if input is not None else b"")


@pytest.fixture(params=["root", "user"])
def who(request: pytest.FixtureRequest, cli: CLI) -> Who:
    """Parametrises a test over root and the unprivileged test user."""
    if request.param == "root":
        if not IS_ROOT:
            pytest.skip("the root variant needs the suite to run as root")
        return Who("root", cli, None)
    user = request.getfixturevalue("test_user")
    cli.user = user
    return Who("user", cli, user)



def musl_static(session_dir: Path, source: str) -> str:
    """tests/progs/SOURCE built static with musl-gcc into the session directory (a skip names
    the Debian package when musl-gcc is missing; SANDLOCK_TEST_STRICT makes that a failure)."""
    musl_gcc = shutil.which("musl-gcc")
    if musl_gcc is None:
        pytest.skip("musl-gcc is missing (Debian package musl-tools)")
    out = session_dir / (Path(source).stem + "-musl")
    subprocess.run([musl_gcc, "-static", "-O1", "-Wall", "-o", str(out), str(PROGS_SRC / source)], check=True)
    out.chmod(0o755)
    return str(out)


def probe_lines(stdout: str) -> Dict[str, str]:
    """A probe's "key value" lines as a mapping (the first word is the key)."""
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in stdout.splitlines() if " " in line}


# --- scratch directories ------------------------------------------------------------------------

@pytest.fixture
def scratch(session_dir: Path) -> Iterator[Path]:
    """A fresh directory (mode 0777) outside every default rule, removed afterwards.

    It lives under the session directory in /tmp: not in sandlock's default view.
    """
    path = Path(tempfile.mkdtemp(prefix="scratch-", dir=session_dir))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def tree_snapshot(root: Path, skip: Optional[Callable[[str], bool]] = None) -> Dict[str, tuple]:
    """Every entry under root with its type, mode, owner, size, mtime and content: 'nothing changed'.

    skip: names of root's own entries left out (and not walked into)."""
    snap: Dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        if skip is not None and dirpath == str(root):
            dirnames[:] = [n for n in dirnames if not skip(n)]
            filenames = [n for n in filenames if not skip(n)]
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            content = b""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    content = f.read()
            snap[os.path.relpath(p, root)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns,
                                               content)
    return snap


# --- compiled helpers -------------------------------------------------------------------------------

class Progs:
    """The compiled tests/progs helpers, in a directory every identity can read and run."""

    def __init__(self, directory: Path, static: bool) -> None:
        self.dir = directory
        self.static = static

    def __getitem__(self, name: str) -> str:
        path = self.dir / name
        assert path.exists(), f"helper program {name!r} of tests/progs was not built"
        return str(path)


# The helpers the CLI tests need; a compile failure of one of these is a failure.
REQUIRED_PROGS = ("syscalls", "race", "dirfd")


def _compile_all(cache: Path) -> bool:
    """Compile every tests/progs/*.c into cache; static if the static libc is there."""
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".tmp-", dir=cache.parent))
    static = True
    try:
        for src in sorted(PROGS_SRC.glob("*.c")):
            out = tmp / src.stem
            base = ["gcc", "-O1", "-Wall", "-pthread", "-o", str(out), str(src)]
            res = subprocess.run(base[:1] + ["-static"] + base[1:], capture_output=True, text=True)
            if res.returncode != 0:
                static = False
                res = subprocess.run(base, capture_output=True, text=True)
            if res.returncode != 0 and src.stem in REQUIRED_PROGS:
                raise AssertionError(f"gcc failed on {src.name}:\n{res.stderr}")
            # Other helpers (e.g. musl programs built by their own tests) are best-effort here.
        (tmp / ".static").write_text("1" if static else "0")
        tmp.chmod(0o755)
        try:
            tmp.rename(cache)
        except OSError:  # another session won the race
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return static


@pytest.fixture(scope="session")
def progs(session_dir: Path) -> Progs:
    """Compile tests/progs once per source hash; copy the binaries into the session dir."""
    if shutil.which("gcc") is None:
        pytest.skip("gcc is missing: the C helper programs of tests/progs cannot be built")
    digest = hashlib.sha256()
    for src in sorted(PROGS_SRC.glob("*.c")):
        digest.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    digest.update(platform.machine().encode())
    cache = Path.home() / ".cache" / "sandlock-tests" / f"progs-{digest.hexdigest()[:16]}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not (cache / ".static").exists():
        shutil.rmtree(cache, ignore_errors=True)
        _compile_all(cache)
    static = (cache / ".static").read_text() == "1"
    target = session_dir / "progs"
    shutil.copytree(cache, target)
    target.chmod(0o755)
    for p in target.iterdir():
        p.chmod(0o755)
    return Progs(target, static)


@pytest.fixture
def system_python() -> str:
    """The interpreter sandboxed commands use: in the default view, for both identities."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} is missing (Debian package python3)")
    return SYSTEM_PYTHON
