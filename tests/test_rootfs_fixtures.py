"""Self-test of tests/rootfs.py: each cached fixture builds and is sane.

The first run builds the Debian rootfs with debootstrap (a minute or two).
A missing Debian package skips, or fails under SANDLOCK_TEST_STRICT=1.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import rootfs
from conftest import build_fixture


def test_apt_mirror_is_a_url() -> None:
    assert rootfs.apt_mirror().startswith(("http://", "https://", "file:", "mirror+"))


def test_debian_rootfs() -> None:
    root = build_fixture(rootfs.debian_rootfs)
    assert root.parent == rootfs.shared_cache_dir()
    assert root.name == "debian-bookworm-minbase-python3-procps-v1"
    assert (root / "etc/debian_version").read_text().startswith("12")
    assert os.access(root / "usr/bin/python3", os.X_OK)
    assert (root / "usr/bin/ps").exists()
    status = (root / "var/lib/dpkg/status").read_text()
    assert "\nPackage: python3\n" in status and "\nPackage: procps\n" in status
    # world-readable where Debian has it so: the unprivileged test user reads it
    for path in (rootfs.shared_cache_dir(), root, root / "usr", root / "etc/passwd"):
        want = 0o005 if path.is_dir() else 0o004
        assert stat.S_IMODE(path.stat().st_mode) & want == want, path
    assert not list(root.parent.glob(f".{root.name}.tmp-*"))


def test_busybox_rootfs() -> None:
    root = build_fixture(rootfs.busybox_rootfs)
    assert os.readlink(root / "bin/sh") == "busybox"
    assert os.readlink(root / "bin/ls") == "busybox"
    assert rootfs.elf_interpreter(root / "bin/busybox") is None
    assert stat.S_IMODE((root / "tmp").stat().st_mode) == 0o1777
    for d in ("sbin", "usr/bin", "dev", "proc"):
        assert (root / d).is_dir()
    assert "nobody:x:65534" in (root / "etc/passwd").read_text()
    assert (root / "etc/group").read_text().startswith("root:x:0:")
    # the copied busybox runs, through its applet symlink
    out = subprocess.run([str(root / "bin/echo"), "hi"], capture_output=True, text=True, check=True)
    assert out.stdout == "hi\n"


def test_musl_legacy_static(tmp_path: Path) -> None:
    progs = build_fixture(rootfs.musl_programs)
    assert rootfs.elf_interpreter(progs["legacy-static"]) is None
    out = subprocess.run([str(progs["legacy-static"]), str(tmp_path)], capture_output=True,
                         text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = [line.split() for line in out.stdout.splitlines()]
    assert [line[0] for line in lines] == list(rootfs.LEGACY_CALLS)
    result = {name: (int(rc), int(err)) for name, rc, err in lines}
    for name in ("chdir", "mkdir", "creat", "open", "stat", "access", "chmod", "chown",
                 "symlink", "lstat", "lchown", "link", "rename", "utimes", "mknod",
                 "unlink", "rmdir"):
        assert result[name] == (0, 0), name
    assert result["getcwd"] == (len(str(tmp_path)) + 1, 0)  # length with the NUL
    assert result["readlink"] == (1, 0)  # s -> f
    assert result["getdents64"] == (7, 0)  # . .. d f s h2 p
    assert result["open_enoent"] == (-1, 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "p", "s"]
    assert stat.S_ISFIFO((tmp_path / "p").lstat().st_mode)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o600


def test_musl_hello_dynamic() -> None:
    progs = build_fixture(rootfs.musl_programs)
    assert rootfs.elf_interpreter(progs["hello-dynamic"]) == "/lib/ld-musl-x86_64.so.1"
    assert rootfs.musl_loader() == Path("/lib/ld-musl-x86_64.so.1")
    assert rootfs.libc_musl().is_file() and not rootfs.libc_musl().is_symlink()
    out = subprocess.run([str(progs["hello-dynamic"])], capture_output=True, text=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, "hello from musl\n")


def test_apt_packages_constant() -> None:
    assert rootfs.APT_PACKAGES == ["debootstrap", "busybox-static", "musl-tools",
                                   "debian-archive-keyring"]
