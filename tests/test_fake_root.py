"""--fake-root (README "Fake root"): inside an emulated root the command is uid 0
over the root's files; owners, modes and device nodes it sets are recorded by the
supervisor, reported by every stat spelling and kept across runs, never made real.

Each test runs as root and as the unprivileged user (`who`), in a private copy of
the busybox root (or of the Debian root) owned by that identity.
"""

from __future__ import annotations

import io
import shutil
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

from chrootcase import chroot_run, copy_root, remove_root
from conftest import IS_ROOT, Who, build_fixture

import rootfs


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def own_tree(who, path: Path) -> Path:  # type: ignore[no-untyped-def]
    """Give a whole copied root to who: the files an unprivileged builder of a root has."""
    if IS_ROOT:
        subprocess.run(["chown", "-R", "-h", f"{who.uid}:{who.gid}", str(path)], check=True)
    return path


@pytest.fixture
def bbroot(who, scratch: Path) -> Path:  # type: ignore[no-untyped-def]
    """A private busybox root owned by who, in a directory (0777) where its record can lie."""
    src = build_fixture(rootfs.busybox_rootfs)
    dest = scratch / "bbroot"
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    return own_tree(who, dest)


def fake(who, root: Path, script: str, *options: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return who.run(["--root", str(root), "-w", "/", "--fake-root", *options, "--", "/bin/sh", "-c", script],
                   **kwargs)


def record_dir(root: Path) -> Path:
    return root.parent / (root.name + ".sandlock-fakeroot")


# --- the flag ------------------------------------------------------------------------------------

def test_fake_root_without_a_root_is_a_one_line_error_with_exit_125(who) -> None:  # type: ignore[no-untyped-def]
    r = who.run(["--fake-root", "--", "/bin/true"])
    assert r.returncode == 125, show(r)
    assert r.stderr.splitlines() == ["sandlock: --fake-root: needs an emulated root (--root)"], show(r)


def test_fake_root_in_the_api_without_a_root_raises_policy_error(who) -> None:  # type: ignore[no-untyped-def]
    r = who.python("import sandlock\n"
                   "try:\n    sandlock.Sandbox(fake_root=True)\n"
                   "except sandlock.PolicyError as e:\n    print('PolicyError', e)\n")
    assert r.stdout.decode().strip() == "PolicyError fake_root: needs an emulated root (--root)", show(r)


def test_fake_root_with_a_workdir_is_refused_until_it_is_supported(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = who.run(["--root", str(bbroot), "--workdir", str(bbroot), "--fake-root", "--", "/bin/true"])
    assert r.returncode == 125, show(r)
    assert "--fake-root" in r.stderr and len(r.stderr.splitlines()) == 1, show(r)


def test_fake_root_where_its_record_cannot_be_made_is_a_one_line_error(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    top = scratch / "ro"
    src = build_fixture(rootfs.busybox_rootfs)
    top.mkdir()
    subprocess.run(["cp", "-a", str(src), str(top / "root")], check=True)
    own_tree(who, top)
    top.chmod(0o555)  # the directory above the root: no place for the record
    try:
        r = who.run(["--root", str(top / "root"), "--fake-root", "--", "/bin/true"])
    finally:
        top.chmod(0o755)
    if who.name == "root":
        assert r.returncode == 0, show(r)  # root (with its capabilities, outside) can make it
        return
    assert r.returncode == 125, show(r)
    assert r.stderr.splitlines() == [f"sandlock: --fake-root: {top}/root.sandlock-fakeroot: Permission denied "
                                     "(the record of a fake root lies next to the root)"], show(r)


# --- identities ----------------------------------------------------------------------------------

def test_id_reports_uid_and_gid_0_with_fake_root(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = fake(who, bbroot, "id -u; id -g; id -G")
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == ["0", "0", "0"], show(r)


def test_id_reports_the_real_uid_without_fake_root(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = who.run(["--root", str(bbroot), "--", "/bin/sh", "-c", "id -u"])
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == [str(who.uid)], show(r)


SETIDS = r"""
import os
os.setgroups([0, 42]); print("groups", sorted(os.getgroups()))
os.setresgid(42, 42, 42); os.setresuid(42, 42, 0)
print("ids", os.getresuid(), os.getresgid(), os.getuid(), os.geteuid(), os.getgid(), os.getegid())
os.seteuid(0); print("euid", os.geteuid())
os.setuid(42); print("all", os.getresuid())
try:
    os.seteuid(0)
except PermissionError:
    print("root cannot be regained")
"""


def py_root(who, scratch: Path) -> Tuple[Path, List[str]]:  # type: ignore[no-untyped-def]
    """A small private root (tmp, work) owned by who, with the Debian root's /usr, /lib
    and /etc mounted read-only: python3 without copying the whole Debian root."""
    deb = build_fixture(rootfs.debian_rootfs)
    root = scratch / "pyroot"
    for d in ("tmp", "usr", "lib", "lib64", "etc", "bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    own_tree(who, root)
    (root / "tmp").chmod(0o1777)
    mounts = [a for d in ("usr", "lib", "lib64", "etc") if (deb / d).exists()
              for a in ("--fs-mount", f"/{d}:{deb / d}:ro")]
    return root, mounts


def test_set_id_calls_succeed_virtually_and_get_id_calls_report_them(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    root, mounts = py_root(who, scratch)
    r = who.run(["--root", str(root), "--fake-root", *mounts, "--", "/usr/bin/python3", "-c", SETIDS])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["groups [0, 42]", "ids (42, 42, 0) (42, 42, 42) 42 42 42 42", "euid 0",
                                     "all (42, 42, 42)", "root cannot be regained"], show(r)


# --- ownership and modes -------------------------------------------------------------------------

def test_chown_is_recorded_shown_by_stat_and_kept_for_the_next_run(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = fake(who, bbroot, "echo x > /tmp/f && chown 1234:5678 /tmp/f && stat -c %u:%g /tmp/f && ls -ln /tmp/f")
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    assert lines[0] == "1234:5678", show(r)
    assert lines[1].split()[2:4] == ["1234", "5678"], show(r)
    host = (bbroot / "tmp/f").stat()
    assert (host.st_uid, host.st_gid) == (who.uid, who.gid)  # never made real
    r = fake(who, bbroot, "stat -c %u:%g /tmp/f; stat -L -c %u:%g /tmp/f; ln /tmp/f /tmp/g; mv /tmp/f /tmp/h; "
                          "stat -c %u:%g /tmp/g /tmp/h")
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == ["1234:5678"] * 4, show(r)


def test_files_of_the_builder_of_the_root_are_shown_owned_by_root(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = fake(who, bbroot, "stat -c %u:%g /bin/busybox; echo y > /tmp/new; stat -c %u:%g /tmp/new")
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == ["0:0", "0:0"], show(r)


def test_chown_without_fake_root_is_refused_for_the_unprivileged_user(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = who.run(["--root", str(bbroot), "-w", "/", "--", "/bin/sh", "-c", "echo x > /tmp/f; chown 1234:5678 /tmp/f"])
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, show(r)


def test_chmod_with_set_id_bits_is_shown_but_the_host_file_has_none(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = fake(who, bbroot, "cp /bin/busybox /tmp/su && chown 0:0 /tmp/su && chmod 4755 /tmp/su && stat -c %a /tmp/su "
                          "&& chmod 0400 /tmp/su && stat -c %a /tmp/su && cat /tmp/su > /dev/null && echo readable")
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == ["4755", "400", "readable"], show(r)
    host = (bbroot / "tmp/su").stat()
    assert host.st_mode & (stat.S_ISUID | stat.S_ISGID) == 0
    assert (host.st_uid, host.st_gid) == (who.uid, who.gid)


def test_every_stat_spelling_reports_the_recorded_owner_and_mode(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    root, mounts = py_root(who, scratch)
    code = ("import os\n"
            "open('/tmp/f','w').close(); os.chown('/tmp/f', 7, 8); os.chmod('/tmp/f', 0o2751)\n"
            "fd = os.open('/tmp/f', os.O_RDONLY)\n"
            "p = os.open('/tmp/f', os.O_PATH)\n"
            "d = os.open('/tmp', os.O_RDONLY)\n"
            "for s in (os.stat('/tmp/f'), os.lstat('/tmp/f'), os.fstat(fd), os.fstat(p),\n"
            "          os.stat('f', dir_fd=d), os.stat('f', dir_fd=d, follow_symlinks=False)):\n"
            "    print(s.st_uid, s.st_gid, oct(s.st_mode))\n")
    r = who.run(["--root", str(root), "-w", "/tmp", "--fake-root", *mounts, "--",
                 "/usr/bin/python3", "-c", code])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["7 8 0o102751"] * 6, show(r)
    r = who.run(["--root", str(root), "--fake-root", *mounts, "--", "/usr/bin/stat", "-c", "%u %g %a", "/tmp/f"])
    assert r.stdout.split() == ["7", "8", "2751"], show(r)  # coreutils' stat uses statx


# --- tar --------------------------------------------------------------------------------------------

def _archive(path: Path) -> None:
    with tarfile.open(path, "w") as tar:
        for name, uid, gid, mode, kind in (("pkg", 0, 0, 0o755, tarfile.DIRTYPE),
                                           ("pkg/daemon", 101, 102, 0o640, tarfile.REGTYPE),
                                           ("pkg/tool", 0, 50, 0o2755, tarfile.REGTYPE),
                                           ("pkg/link", 103, 104, 0o777, tarfile.SYMTYPE)):
            info = tarfile.TarInfo(name)
            info.uid, info.gid, info.mode, info.type = uid, gid, mode, kind
            info.uname = info.gname = ""
            data = b""
            if kind == tarfile.REGTYPE:
                data = name.encode() + b"\n"
                info.size = len(data)
            if kind == tarfile.SYMTYPE:
                info.linkname = "daemon"
            tar.addfile(info, io.BytesIO(data) if data else None)


def test_tar_xpf_restores_the_owners_of_the_archive(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    _archive(bbroot / "tmp/a.tar")
    r = fake(who, bbroot, "cd /tmp && tar xpf a.tar && ls -ln pkg | sed 1d && stat -c '%n %u:%g %a' pkg/*")
    assert r.returncode == 0, show(r)
    listed = {line.split()[-1] if "->" not in line else line.split()[-3]: line.split()[2:4]
              for line in r.stdout.splitlines() if line.startswith(("-", "l"))}
    # busybox tar sets no owner on a symlink (as in a real root); chown -h does, below
    assert listed == {"daemon": ["101", "102"], "tool": ["0", "50"], "link": ["0", "0"]}, show(r)
    stats = [line for line in r.stdout.splitlines() if line.startswith("pkg/")]
    assert stats == ["pkg/daemon 101:102 640", "pkg/link 0:0 777", "pkg/tool 0:50 2755"], show(r)
    r = fake(who, bbroot, "chown -h 103:104 /tmp/pkg/link && stat -c %u:%g /tmp/pkg/link /tmp/pkg/daemon")
    assert r.stdout.split() == ["103:104", "101:102"], show(r)
    for name in ("daemon", "tool"):
        host = (bbroot / "tmp/pkg" / name).stat()
        assert (host.st_uid, host.st_gid) == (who.uid, who.gid) and not host.st_mode & 0o6000


# --- device nodes --------------------------------------------------------------------------------

def test_mknod_of_a_character_device_is_recorded_and_opens_no_device(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = fake(who, bbroot, "mknod /tmp/n c 1 3 && stat -c '%F %t:%T %u' /tmp/n && ls -l /tmp/n | cut -c1; "
                          "echo data > /tmp/n; echo write=$?; cat /tmp/n; echo read=$?")
    assert r.stdout.splitlines()[:2] == ["character special file 1:3 0", "c"], show(r)
    assert "write=1" in r.stdout and "read=1" in r.stdout, show(r)
    assert r.stderr.count("Permission denied") == 2, show(r)
    host = (bbroot / "tmp/n").lstat()
    assert stat.S_ISREG(host.st_mode) and host.st_size == 0  # a placeholder, never a device


# --- dpkg ----------------------------------------------------------------------------------------

@pytest.fixture
def debroot(who, scratch: Path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    src = build_fixture(rootfs.debian_rootfs)
    dest = scratch / "debroot"
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    yield own_tree(who, dest)
    shutil.rmtree(dest, ignore_errors=True)


def _tiny_deb(work: Path) -> Path:
    if shutil.which("dpkg-deb") is None:
        pytest.fail("dpkg-deb is missing (Debian package dpkg)")
    pkg = work / "hello"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/bin").mkdir(parents=True)
    (pkg / "DEBIAN/control").write_text("Package: sandlock-hello\nVersion: 1.0\nArchitecture: all\n"
                                       "Maintainer: t <t@example.org>\nDescription: test\n")
    (pkg / "usr/bin/sandlock-hello").write_text("#!/bin/sh\necho hello from the package\n")
    (pkg / "usr/bin/sandlock-hello").chmod(0o755)
    out = work / "hello.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "--build", str(pkg), str(out)], check=True,
                   capture_output=True)
    return out


def test_dpkg_i_installs_a_local_deb_and_dpkg_l_lists_it(who, debroot: Path, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    deb = _tiny_deb(scratch)
    shutil.copy(deb, debroot / "tmp/hello.deb")
    own_tree(who, debroot / "tmp/hello.deb")
    r = who.run(["--root", str(debroot), "-w", "/", "--fake-root", "--", "/bin/sh", "-c",
                 "dpkg -i /tmp/hello.deb && dpkg -L sandlock-hello && sandlock-hello && stat -c %U /usr/bin/sandlock-hello"],
                timeout=180)
    assert r.returncode == 0, show(r)
    assert "/usr/bin/sandlock-hello" in r.stdout.splitlines(), show(r)
    assert r.stdout.splitlines()[-2:] == ["hello from the package", "root"], show(r)
    r = who.run(["--root", str(debroot), "--fake-root", "--", "dpkg", "-s", "sandlock-hello"])
    assert "Status: install ok installed" in r.stdout, show(r)


def test_apt_get_install_of_a_local_deb_installs_it(who, debroot: Path, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    deb = _tiny_deb(scratch)
    shutil.copy(deb, debroot / "tmp/hello.deb")
    own_tree(who, debroot / "tmp/hello.deb")
    r = who.run(["--root", str(debroot), "-w", "/", "--fake-root", "--", "/bin/sh", "-c",
                 "apt-get install -y /tmp/hello.deb && dpkg -s sandlock-hello | grep Status && sandlock-hello"],
                timeout=240, env={"DEBIAN_FRONTEND": "noninteractive"})
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines()[-2:] == ["Status: install ok installed", "hello from the package"], show(r)
    assert "seteuid" not in r.stderr and "setgroups" not in r.stderr, show(r)


# --- against a chroot ----------------------------------------------------------------------------

PACKAGE_SCRIPT = r"""
set -e
dpkg -i /tmp/hello.deb
dpkg -L sandlock-hello
dpkg -s sandlock-hello
sandlock-hello
stat -c '%n %U:%G %a %F' /usr/bin/sandlock-hello /usr/bin /var/lib/dpkg/info/sandlock-hello.list
dpkg -r sandlock-hello
dpkg -s sandlock-hello 2>&1 | head -2 || true
apt-get install -y -q /tmp/hello.deb
dpkg -l sandlock-hello | tail -1
apt-get remove -y -q sandlock-hello
test ! -e /usr/bin/sandlock-hello && echo removed
ls /var/lib/dpkg/info | grep -c . || true
"""


def test_dpkg_and_apt_get_with_fake_root_print_what_root_in_a_chroot_prints(  # type: ignore[no-untyped-def]
        who, debroot: Path, scratch: Path, cli) -> None:
    """Install, list, query and remove a local package with dpkg and apt-get: stdout, stderr and
    exit status byte for byte those of real root in a bare chroot of the same root (README "Fake root")."""
    if not IS_ROOT:
        pytest.skip("the chroot baseline needs root (chroot, mount)")
    deb = _tiny_deb(scratch)
    baseline_copy = copy_root(build_fixture(rootfs.debian_rootfs), scratch)
    try:
        for root in (baseline_copy, debroot):
            shutil.copy(deb, root / "tmp/hello.deb")
        own_tree(who, debroot / "tmp/hello.deb")
        command = ["/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME=/root", "LANG=C.UTF-8", "DEBIAN_FRONTEND=noninteractive", "/bin/sh", "-c", PACKAGE_SCRIPT]
        base = chroot_run(baseline_copy, command, Who("root", cli, None), timeout=240, errors="surrogateescape")
        assert base.returncode == 0, f"the chroot baseline itself failed:\n{show(base)}"
        got = who.run(["--root", str(debroot), "-w", "/", "--fake-root", "--", *command], timeout=240)
        assert (got.returncode, got.stdout, got.stderr) == (base.returncode, base.stdout, base.stderr), \
            f"chroot:\n{show(base)}\n\nsandlock --fake-root as {who.name}:\n{show(got)}"
    finally:
        remove_root(baseline_copy)
