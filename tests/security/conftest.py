"""Shared fixtures of the security tests (tests/security).

tests/conftest.py applies here too (pytest layers conftest files by
directory): ``who``, ``scratch``, ``session_dir`` and strict mode come from it.

- ``secprogs``: every tests/security/progs/*.c compiled twice, once with gcc
  for the host (dynamic, in the default view) and once with ``musl-gcc
  -static`` for use inside a busybox root, plus the variants in ``VARIANTS``;
  cached under ``~/.cache/sandlock-tests/security-progs-<hash of sources and
  flags>`` and copied into the session directory so the unprivileged user can
  run them.
- ``busybox_root``: a private copy of the cached busybox rootfs (tests/rootfs.py).
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import pytest

import rootfs
from conftest import SYSTEM_PYTHON, SYSTEM_READ, build_fixture, tree_snapshot
from netservers import Servers

SECURITY = Path(__file__).resolve().parent
PROGS_SRC = SECURITY / "progs"

# What the exec racer's forbidden program prints: a canary of its own.
SECRET = "CANARY-security-5b2e90"

# Extra builds: output name -> (source stem, extra compiler flags).
VARIANTS: Dict[str, Tuple[str, List[str]]] = {
    "say_ok": ("say", ['-DWORD="ALLOWED"']),
    "say_secret": ("say", [f'-DWORD="{SECRET}"']),
}


class SecProgs:
    """Paths of the compiled helpers: .host(name) (gcc) and .musl(name) (musl-gcc -static)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.host_dir = directory / "host"
        self.musl_dir = directory / "musl"

    def host(self, name: str) -> Path:
        path = self.host_dir / name
        assert path.exists(), f"helper {name!r} of tests/security/progs was not built"
        return path

    def musl(self, name: str) -> Path:
        path = self.musl_dir / name
        assert path.exists(), f"static musl helper {name!r} of tests/security/progs was not built"
        return path


def _builds() -> Dict[str, Tuple[Path, List[str]]]:
    builds = {src.stem: (src, []) for src in sorted(PROGS_SRC.glob("*.c"))}
    for name, (stem, flags) in VARIANTS.items():
        builds[name] = (PROGS_SRC / f"{stem}.c", flags)
    return builds


def _compile(cache: Path, builds: Dict[str, Tuple[Path, List[str]]], musl_gcc: str) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=cache.name + ".tmp-", dir=cache.parent))
    try:
        for sub, cc, extra in (("host", "gcc", []), ("musl", musl_gcc, ["-static"])):
            (tmp / sub).mkdir()
            for name, (src, flags) in builds.items():
                cmd = [cc, "-O1", "-Wall", "-pthread", *extra, *flags, "-o", str(tmp / sub / name), str(src)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                if done.returncode != 0:
                    raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stderr}")
        tmp.rename(cache)
    except OSError:  # another session won the race to the cache
        shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def secprogs(session_dir: Path) -> SecProgs:
    for tool, package in (("gcc", "gcc"), ("musl-gcc", "musl-tools")):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is missing (Debian package {package}): tests/security/progs cannot be built")
    musl_gcc = shutil.which("musl-gcc")
    builds = _builds()
    digest = hashlib.sha256(platform.machine().encode())
    for name, (src, flags) in sorted(builds.items()):
        digest.update(f"{name} {src.name} {' '.join(flags)}\0".encode() + src.read_bytes() + b"\0")
    cache = Path.home() / ".cache" / "sandlock-tests" / f"security-progs-{digest.hexdigest()[:16]}"
    cache.parent.mkdir(parents=True, exist_ok=True)
    if not cache.is_dir():
        _compile(cache, builds, str(musl_gcc))
    target = session_dir / "security-progs"
    shutil.copytree(cache, target)
    for p in [target, *target.rglob("*")]:
        p.chmod(0o755)
    return SecProgs(target)


@pytest.fixture(scope="session")
def busybox_shared_root() -> Path:
    return build_fixture(rootfs.busybox_rootfs)


@pytest.fixture(scope="session")
def deb_root() -> Path:
    """The cached Debian rootfs (with python3), shared: tests must not change it."""
    return build_fixture(rootfs.debian_rootfs)


class Guest:
    """Where a security probe runs: the host's view (guest None) or a private root.

    In a root the probes (static musl builds) are copied to /probe, and a
    path the sandbox names has its host twin below the root (`host`).
    """

    def __init__(self, who, scratch: Path, progs: SecProgs, guest: Optional[Path],  # type: ignore[no-untyped-def]
                 probes: Sequence[str]) -> None:
        self.who, self.scratch, self.progs, self.guest = who, scratch, progs, guest
        if guest is not None:
            probe_dir = guest / "probe"
            probe_dir.mkdir(mode=0o755)
            for name in probes:
                shutil.copy(progs.musl(name), probe_dir / name)
                (probe_dir / name).chmod(0o755)

    def host(self, virtual: Path) -> Path:
        """Host path of a path as the sandbox names it (the same string without --root)."""
        if self.guest is None:
            return virtual
        path = self.guest / str(virtual).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@pytest.fixture
def busybox_root(busybox_shared_root: Path, scratch: Path) -> Iterator[Path]:
    """A private copy of the busybox rootfs (cp -a) in the scratch directory."""
    before = tree_snapshot(busybox_shared_root)
    dest = scratch / "bbroot"
    subprocess.run(["cp", "-a", str(busybox_shared_root), str(dest)], check=True)
    yield dest
    assert tree_snapshot(busybox_shared_root) == before, "the test changed the shared busybox rootfs"


class Greeter:
    """A unix socket in `directory` that sends `greeting` to every connection and counts them."""

    def __init__(self, directory: Path, name: str, greeting: bytes) -> None:
        self.path = directory / name
        self.greeting = greeting
        self.accepted = 0
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        dfd = os.open(directory, os.O_PATH | os.O_DIRECTORY)
        try:  # through /proc/self/fd: the host path may be longer than sun_path
            self.sock.bind(f"/proc/self/fd/{dfd}/{name}")
        finally:
            os.close(dfd)
        os.chmod(self.path, 0o777)
        self.sock.listen(128)
        self.sock.settimeout(0.1)
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.accepted += 1
            try:
                conn.sendall(self.greeting)
            except OSError:
                pass
            conn.close()

    def close(self) -> None:
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


# --- the network tests' two places and echo server (test_network, test_network_connect) -------------

GUEST_PYTHON = "/usr/bin/python3"  # inside the Debian rootfs


class Box(NamedTuple):
    """Where a network probe runs: host mode, or the Debian root (`box` fixture)."""
    options: List[str]
    python: str


@pytest.fixture(params=["host", "root"])
def box(request: pytest.FixtureRequest, who) -> Box:  # type: ignore[no-untyped-def]
    if request.param == "host":
        return Box(list(SYSTEM_READ), SYSTEM_PYTHON)
    return Box(["--root", str(request.getfixturevalue("deb_root"))], GUEST_PYTHON)


@pytest.fixture
def echo() -> Iterator[Servers]:
    """TCP and UDP echo on one port of 127.0.0.1."""
    server = Servers(["127.0.0.1"])
    yield server
    server.close()
