"""Fixtures and helpers of the emulated-root tests (tests/test_root_*.py, `--root DIR`, README
"Emulated root (`--root DIR`, alias `--chroot`)").

Each test runs real programs under `python -m sandlock --root ...`, as root and as the
unprivileged user (the `who` fixture), and asserts what the user of a real chroot(8)
would see: exit status, stdout, errno, files on disk.  Where the sandbox deliberately
differs from a root chroot (nothing writable without `-w`, no capabilities, a private
/dev/shm, only the sandbox's processes in /proc) the test says so.

Targets (tests/rootfs.py, cached outside the repository):

- the Debian bookworm minbase rootfs (`deb`): shared by every test and only
  ever read; a test writes through `--fs-mount /work:<scratch dir>` or the
  private /dev/shm, and the `deb` fixture checks afterwards that the rootfs
  directories a mistake would touch are unchanged;
- the busybox rootfs, copied per test into the scratch directory (`bb`) when a
  test changes the root itself;
- the musl programs: legacy-static (the legacy non-*at syscalls) and
  hello-dynamic (a dynamic binary that needs the root's own ELF interpreter).

Canaries live in the scratch directory on the host, outside every root: no
spelling of a path inside the root may read them.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Dict, Iterator, Sequence

import pytest

import rootfs
from conftest import build_fixture, tree_snapshot

SECRET = "CANARY-root-4e1d7b"
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PY = "/usr/bin/python3"  # inside the Debian rootfs
# Syscall numbers the guest Python calls through ctypes (no libc wrapper in Python 3.11).
NR = {"x86_64": {"renameat2": 316, "openat2": 437}, "aarch64": {"renameat2": 276, "openat2": 437}}


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def deb_shared() -> Path:
    return build_fixture(rootfs.debian_rootfs)


# Directories of the shared Debian rootfs a stray write would change (mtime and entries).
WATCHED = ("", "tmp", "etc", "dev", "dev/shm", "root", "usr", "usr/lib", "usr/bin", "var/tmp", "work")


def _watch(root: Path) -> Dict[str, object]:
    state: Dict[str, object] = {}
    for rel in WATCHED:
        p = root / rel
        try:
            st = os.lstat(p)
        except FileNotFoundError:
            state[rel] = None
            continue
        state[rel] = (st.st_mode, st.st_uid, st.st_mtime_ns,
                      sorted(os.listdir(p)) if stat.S_ISDIR(st.st_mode) else None)
    return state


@pytest.fixture
def deb(deb_shared: Path) -> Iterator[Path]:
    """The shared Debian rootfs; the test fails if it changed the rootfs."""
    before = _watch(deb_shared)
    yield deb_shared
    assert _watch(deb_shared) == before, "the test changed the shared Debian rootfs"


@pytest.fixture(scope="session")
def busybox_shared() -> Path:
    return build_fixture(rootfs.busybox_rootfs)


@pytest.fixture(scope="session")
def musl() -> Dict[str, Path]:
    return build_fixture(rootfs.musl_programs)


def copy_root(src: Path, dest: Path) -> Path:
    """cp -a src dest: a private root a test may change."""
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return dest


@pytest.fixture
def bb(busybox_shared: Path, scratch: Path) -> Iterator[Path]:
    """A private copy of the busybox rootfs (root-owned like the original, /tmp 1777)."""
    before = tree_snapshot(busybox_shared)
    yield copy_root(busybox_shared, scratch / "bbroot")
    assert tree_snapshot(busybox_shared) == before, "the test changed the shared busybox rootfs"


@pytest.fixture
def work(scratch: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """A host directory owned by the identity, shown inside the root with --fs-mount /work:<it>."""
    return who.make_dir(scratch / "work", 0o755)


@pytest.fixture
def canary(scratch: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """A world-readable host file outside every root: nothing inside a root may read it."""
    return who.make_file(scratch / "outside" / "canary", SECRET + "\n", 0o644)


# --- helpers --------------------------------------------------------------------------------------

def show(r: subprocess.CompletedProcess) -> str:
    """Exit status, stdout and stderr of a run, for assertion messages."""
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def in_root(who, root: Path, command: Sequence[str], *options: str,  # type: ignore[no-untyped-def]
            **kwargs) -> subprocess.CompletedProcess:
    """Run `sandlock --root ROOT OPTIONS -- COMMAND` as who."""
    return who.run(["--root", str(root), *options, "--", *command], **kwargs)


def assert_no_host_path(r: subprocess.CompletedProcess, *paths: Path) -> None:
    for path in paths:
        assert str(path) not in r.stdout + r.stderr, f"host path {path} leaked:\n{show(r)}"


def one_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr:\n{show(r)}"
    assert lines[0].startswith("sandlock: "), show(r)
    return lines[0]


def guest_file(root: Path, virtual: str) -> str:
    return (root / virtual.lstrip("/")).read_text()


def python_version_name(deb: Path) -> str:
    """'/usr/bin/python3.11': what /usr/bin/python3 of the rootfs points to."""
    return "/usr/bin/" + os.readlink(deb / "usr/bin/python3")
