"""The emulated /dev of a root is a filesystem of its own, as /dev bind-mounted into a chroot is.

`find / -xdev` must not walk into it, and every stat spelling of /dev (and of
the links sandlock makes in it) reports one device number: the host /dev's,
which is also the device of /dev/null and the other device nodes shown there.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

import rootfs
from conftest import build_fixture


@pytest.fixture(scope="module")
def busybox() -> Path:
    return build_fixture(rootfs.busybox_rootfs)


@pytest.fixture(scope="module")
def debian() -> Path:
    return build_fixture(rootfs.debian_rootfs)


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def test_find_xdev_from_slash_does_not_walk_into_dev(who, busybox: Path) -> None:
    r = who.run(["--root", str(busybox), "--", "find", "/", "-xdev"])
    assert r.returncode == 0, show(r)
    listed = r.stdout.split()
    assert "/bin/busybox" in listed and "/dev" in listed, show(r)
    assert not [p for p in listed if p.startswith("/dev/")], show(r)


def test_find_dev_lists_the_devices_and_shm(who, busybox: Path) -> None:
    """The control: /dev holds them, and find lists them when asked to walk /dev."""
    r = who.run(["--root", str(busybox), "--", "find", "/dev", "-maxdepth", "1"])
    assert r.returncode == 0, show(r)
    assert {"/dev/null", "/dev/shm", "/dev/zero", "/dev/fd"} <= set(r.stdout.split()), show(r)


STAT_SPELLINGS = r"""
import ctypes, os, struct
libc = ctypes.CDLL(None, use_errno=True)

def statx_dev(dirfd, path, flags):
    buf = ctypes.create_string_buffer(256)
    assert libc.statx(dirfd, path, flags, 0x7ff, buf) == 0, ctypes.get_errno()
    major, minor = struct.unpack_from("II", buf.raw, 136)
    return os.makedev(major, minor)

AT_FDCWD, AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH = -100, 0x100, 0x1000
root = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
dev = os.open("/dev", os.O_RDONLY | os.O_DIRECTORY)
os.chdir("/")
seen = {
    "stat /dev": os.stat("/dev").st_dev,
    "lstat /dev": os.lstat("/dev").st_dev,
    "stat dev (cwd /)": os.stat("dev").st_dev,
    "fstatat(fd of /, dev)": os.stat("dev", dir_fd=root).st_dev,
    "fstatat(fd of /, dev, NOFOLLOW)": os.stat("dev", dir_fd=root, follow_symlinks=False).st_dev,
    "fstat(fd of /dev)": os.fstat(dev).st_dev,
    "fstatat(fd of /dev, .)": os.stat(".", dir_fd=dev).st_dev,
    "statx /dev": statx_dev(AT_FDCWD, b"/dev", 0),
    "statx(fd of /, dev)": statx_dev(root, b"dev", AT_SYMLINK_NOFOLLOW),
    "statx(fd of /dev, '', EMPTY_PATH)": statx_dev(dev, b"", AT_EMPTY_PATH),
    "lstat /dev/fd": os.lstat("/dev/fd").st_dev,
    "lstat /dev/stdin": os.lstat("/dev/stdin").st_dev,
    "fstatat(fd of /dev, stdout, NOFOLLOW)": os.stat("stdout", dir_fd=dev, follow_symlinks=False).st_dev,
    "stat /dev/null": os.stat("/dev/null").st_dev,
}
for k, v in seen.items():
    print(f"{k}: {v}")
print("ROOT", os.stat("/").st_dev, statx_dev(AT_FDCWD, b"/", 0))
"""


def test_every_stat_spelling_of_dev_reports_the_device_of_dev_null_not_the_roots(who, debian: Path) -> None:
    r = who.run(["--root", str(debian), "--", "python3", "-c", STAT_SPELLINGS])
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    seen = dict(line.rsplit(": ", 1) for line in lines if not line.startswith("ROOT "))
    root_dev = [line.split()[1:] for line in lines if line.startswith("ROOT ")][0]
    assert root_dev[0] == root_dev[1], show(r)
    assert set(seen.values()) == {seen["stat /dev/null"]}, show(r)
    assert seen["stat /dev"] != root_dev[0], show(r)
