"""In an emulated root, a name the command may not write still gets the errno the
kernel finds first (issue 15, item 2): EEXIST for making a name that exists,
ENOENT for removing or renaming one that does not, before EACCES, as a chroot
and a host-mode sandbox (Landlock's checks come after the kernel's lookups)
give.  `mkdir -p`-style programs and cleanup code that ignores only
FileNotFoundError depend on it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import rootfs
from conftest import build_fixture
from rootcase import bb, busybox_shared  # noqa: F401  (fixtures)

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


DOTDOT_SCRIPT = r"""
import errno, os, sys
b = sys.argv[1]
for p in ("/usr/lib/../../etc/hostname", "/usr/lib/../../etc/nothere", "/etc/passwd/../hostname",
          "/etc/passwd/../nothere", "/etc/hostname/..", "/nothere/../etc", "/usr/nothere/../lib", "/usr/lib/../"):
    out = []
    for name, fn in (("stat", os.stat), ("open", lambda q: os.close(os.open(q, os.O_RDONLY)))):
        try:
            fn(b + p); out.append("ok")
        except OSError as e:
            out.append(errno.errorcode[e.errno])
    print(p, *out)
"""

DOTDOT_KERNEL = """/usr/lib/../../etc/hostname ok ok
/usr/lib/../../etc/nothere ENOENT ENOENT
/etc/passwd/../hostname ENOTDIR ENOTDIR
/etc/passwd/../nothere ENOTDIR ENOTDIR
/etc/hostname/.. ENOTDIR ENOTDIR
/nothere/../etc ENOENT ENOENT
/usr/nothere/../lib ENOENT ENOENT
/usr/lib/../ ok ok
"""


def test_a_path_with_dotdot_gets_the_kernels_answer_in_a_root_as_on_the_host(who, scratch: Path,
                                                                            deb_shared: Path) -> None:
    """README "Emulated root": a path whose '..' components pass no symlink, /proc, /dev
    or mount takes the kernel's own walk from the root, as a chroot would: ENOENT for a
    name missing on the way (a compiler's probes), ENOTDIR for a file before '..'
    (before: the lexical walk went up from the file, and found /etc/hostname)."""
    w = _workspace(who, scratch)
    who.make_file(w / "dotdot.py", DOTDOT_SCRIPT)
    host = who.make_dir(scratch / "tree")
    for d in ("etc", "usr", "usr/lib"):
        who.make_dir(host / d)
    for f in ("etc/passwd", "etc/hostname"):
        who.make_file(host / f, "x\n")
    r = who.run(["-r", "/", "--", "python3", str(w / "dotdot.py"), str(host)])
    assert (r.returncode, r.stdout) == (0, DOTDOT_KERNEL), r.stderr
    r = who.run(["--root", str(deb_shared), "--fs-mount", f"/work:{w}", "--", "/usr/bin/python3", "/work/dotdot.py", ""])
    assert (r.returncode, r.stdout) == (0, DOTDOT_KERNEL), r.stderr


def test_a_path_with_dotdot_through_dev_proc_a_mount_or_a_symlink_to_one_is_still_walked(  # type: ignore[no-untyped-def]
        who, scratch: Path, bb: Path) -> None:
    """The other side of the test above: where the lexical walk passes /dev, /proc, a
    mount, or a symlink leads into one, on its way to a name outside them, the root's
    own tree does not hold the names (the busybox root has an empty /dev and /proc, no
    /work): the component walk finds them (and a name missing in the mount)."""
    root = bb
    os.symlink("/work", root / "lnk")
    w = who.make_dir(scratch / "w")
    who.make_dir(w / "sub")
    who.make_file(w / "src", "s\n")
    paths = ["/work/sub/../../bin/sh", "/lnk/sub/../../bin/sh", "/dev/shm/../../bin/sh", "/proc/self/../../bin/sh",
             "/work/nothere/../../bin/sh"]
    script = "".join(f"if [ -e {p} ]; then echo {p} ok; else echo {p} missing; fi\n" for p in paths)
    r = who.run(["--root", str(root), "--fs-mount", f"/work:{w}", "--", "/bin/sh", "-c", script])
    assert (r.returncode, r.stdout) == (0, "".join(f"{p} {'missing' if 'nothere' in p else 'ok'}\n" for p in paths)), \
        r.stderr
