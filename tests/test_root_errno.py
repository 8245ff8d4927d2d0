"""In an emulated root, a name the command may not write still gets the errno the
kernel finds first (issue 15, item 2): EEXIST for making a name that exists,
ENOENT for removing or renaming one that does not, before EACCES, as a chroot
and a host-mode sandbox (Landlock's checks come after the kernel's lookups)
give.  `mkdir -p`-style programs and cleanup code that ignores only
FileNotFoundError depend on it."""

from __future__ import annotations

from pathlib import Path

import pytest

import rootfs
from conftest import build_fixture

SCRIPT = r"""
import errno, os, sys
base, w, d, f = sys.argv[1:5]   # base: not writable; d a directory and f a file in it; w writable
def t(name, fn, *a):
    try:
        fn(*a); r = "ok"
    except OSError as e:
        r = errno.errorcode[e.errno]
    print(name, r)
t("mkdir-existing", os.mkdir, base + "/" + d)
t("mkdir-new", os.mkdir, base + "/new")
t("mkdir-root", os.mkdir, "/")
t("mkdir-dot", os.mkdir, base + "/" + d + "/.")
t("mkdir-dotdot", os.mkdir, base + "/" + d + "/..")
t("mkfifo-existing", os.mkfifo, base + "/" + d)
t("mkfifo-new", os.mkfifo, base + "/newf")
t("symlink-existing", os.symlink, "x", base + "/" + d)
t("symlink-new", os.symlink, "x", base + "/news")
t("unlink-missing", os.unlink, base + "/nosuch")
t("unlink-existing", os.unlink, base + "/" + f)
t("rmdir-missing", os.rmdir, base + "/nosuch")
t("rmdir-existing", os.rmdir, base + "/" + d)
t("rename-missing", os.rename, base + "/nosuch", base + "/x")
t("rename-missing-to-writable", os.rename, base + "/nosuch", w + "/x")
t("rename-writable-missing-to-unwritable", os.rename, w + "/nosuch", base + "/x")
t("rename-existing", os.rename, base + "/" + f, base + "/x")
t("link-to-existing", os.link, w + "/src", base + "/" + d)
t("link-to-new", os.link, w + "/src", base + "/newl")
t("open-excl-existing", os.open, base + "/" + f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
t("open-excl-new", os.open, base + "/newo", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
"""

KERNEL = """mkdir-existing EEXIST
mkdir-new EACCES
mkdir-root EEXIST
mkdir-dot EEXIST
mkdir-dotdot EEXIST
mkfifo-existing EEXIST
mkfifo-new EACCES
symlink-existing EEXIST
symlink-new EACCES
unlink-missing ENOENT
unlink-existing EACCES
rmdir-missing ENOENT
rmdir-existing EACCES
rename-missing ENOENT
rename-missing-to-writable ENOENT
rename-writable-missing-to-unwritable ENOENT
rename-existing EACCES
link-to-existing EEXIST
link-to-new EACCES
open-excl-existing EEXIST
open-excl-new EACCES
"""


@pytest.fixture(scope="module")
def deb_shared() -> Path:
    return build_fixture(rootfs.debian_rootfs)


def _workspace(who, scratch: Path) -> Path:  # type: ignore[no-untyped-def]
    w = who.make_dir(scratch / "w")
    who.make_file(w / "src", "s\n")
    who.make_file(w / "errno.py", SCRIPT)
    return w


def test_host_mode_gives_the_kernels_errno_order(who, scratch: Path) -> None:
    w = _workspace(who, scratch)
    host = who.make_dir(scratch / "ro")
    who.make_dir(host / "d")
    who.make_file(host / "f", "f\n")
    r = who.run(["-r", "/", "-w", str(w), "--", "python3", str(w / "errno.py"), str(host), str(w), "d", "f"])
    assert (r.returncode, r.stdout) == (0, KERNEL), r.stderr


def test_an_emulated_root_gives_the_kernels_errno_order(who, scratch: Path, deb_shared: Path) -> None:
    w = _workspace(who, scratch)
    r = who.run(["--root", str(deb_shared), "--fs-mount", f"/work:{w}", "--",
                 "/usr/bin/python3", "/work/errno.py", "/etc", "/work", "apt", "hostname"])
    assert (r.returncode, r.stdout) == (0, KERNEL), r.stderr
    assert sorted(p.name for p in w.iterdir()) == ["errno.py", "src"]
