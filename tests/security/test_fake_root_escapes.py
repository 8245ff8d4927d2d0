"""Probes against --fake-root (README "Fake root", SECURITY.md "Fake root"): the
command's virtual authority never becomes a real one.

- a fake chown/chmod u+s/g+s never makes a real set-id file nor a real file of
  another owner on the host (every spelling: chmod, fchmod, a creating open, tar);
- a fake device node is an empty regular file on the host and is never opened
  (read, write, O_PATH, exec) as a device;
- the record lies outside the command's reach, an --fs-mount that would reach it
  is refused, and a hostile or broken record file is a one-line error, never parsed
  into anything else;
- the record stays bounded: a loop of chowns of one file, and of files created,
  chowned and removed, leaves a small record; past RECORD_MAX inodes, EDQUOT.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IS_ROOT, build_fixture

import rootfs


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


@pytest.fixture
def bbroot(who, scratch: Path) -> Path:  # type: ignore[no-untyped-def]
    src = build_fixture(rootfs.busybox_rootfs)
    dest = scratch / "bbroot"
    subprocess.run(["cp", "-a", str(src), str(dest)], check=True)
    if IS_ROOT:
        subprocess.run(["chown", "-R", "-h", f"{who.uid}:{who.gid}", str(dest)], check=True)
    return dest


def fake(who, root: Path, script: str, *options: str) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return who.run(["--root", str(root), "-w", "/", "--fake-root", *options, "--", "/bin/sh", "-c", script])


def setid_or_foreign(root: Path, uid: int, gid: int) -> list:
    """Host files under root that are set-id or not owned by uid:gid."""
    bad = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_mode & 0o6000 and not stat.S_ISDIR(st.st_mode) or (st.st_uid, st.st_gid) != (uid, gid):
                bad.append((os.path.join(dirpath, name), oct(st.st_mode), st.st_uid, st.st_gid))
    return bad


SETID_SCRIPT = """cd /tmp && cp /bin/busybox a && cp a b && cp a c
chown 0:0 a && chmod 4755 a && chmod u+s,g+s b && chown 1234:5678 c && chmod 6777 c
(umask 0; : > d) && chmod 2755 d && mkdir e && chown 42:42 e && chmod 6777 e
stat -c '%n %a %u:%g' a b c d e"""


def test_fake_set_id_bits_and_owners_never_reach_the_host(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = fake(who, bbroot, SETID_SCRIPT)
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["a 4755 0:0", "b 6755 0:0", "c 6777 1234:5678", "d 2755 0:0", "e 6777 42:42"], show(r)
    assert setid_or_foreign(bbroot / "tmp", who.uid, who.gid) == []
    assert not (bbroot / "tmp/e").stat().st_mode & 0o4000


def test_without_fake_root_the_same_set_id_chmod_is_refused(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = who.run(["--root", str(bbroot), "-w", "/", "--", "/bin/sh", "-c", "cp /bin/busybox /tmp/a && chmod 4755 /tmp/a"])
    assert r.returncode != 0 and "Operation not permitted" in r.stderr, show(r)


def test_a_fake_device_node_is_never_opened_as_a_device(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    script = ("mknod /tmp/mem c 1 1 && mknod /tmp/disk b 8 0 && chmod 777 /tmp/mem && "
              "stat -c '%n %F %t:%T' /tmp/mem /tmp/disk; "
              "head -c 1 /tmp/mem; echo r=$?; echo x > /tmp/mem; echo w=$?; head -c 1 /tmp/disk; echo b=$?; "
              "/tmp/mem; echo x=$?; ls /proc/self/fd/ > /dev/null; exec 3</tmp/mem; echo fd=$?")
    r = fake(who, bbroot, script)
    out = r.stdout.splitlines()
    assert out[:2] == ["/tmp/mem character special file 1:1", "/tmp/disk block special file 8:0"], show(r)
    assert out[2:6] == ["r=1", "w=1", "b=1", "x=126"], show(r)
    assert r.returncode != 0 and "fd=" not in r.stdout, show(r)  # exec 3< fails: the shell exits
    for name in ("mem", "disk"):
        host = (bbroot / "tmp" / name).lstat()
        assert stat.S_ISREG(host.st_mode) and host.st_size == 0 and host.st_mode & 0o777 == 0o600


def test_a_python_o_path_open_of_a_fake_device_is_refused(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    from test_fake_root import py_root  # type: ignore[import-not-found]
    root, mounts = py_root(who, scratch)
    code = ("import os, errno\nos.mknod('/tmp/n', 0o20666, os.makedev(1, 3))\n"
            "for flags in (os.O_RDONLY, os.O_WRONLY, os.O_PATH, os.O_RDWR | os.O_NONBLOCK):\n"
            "    try:\n        os.open('/tmp/n', flags); print('opened')\n"
            "    except OSError as e:\n        print(errno.errorcode[e.errno])\n")
    r = who.run(["--root", str(root), "-w", "/tmp", "--fake-root", *mounts, "--", "/usr/bin/python3", "-c", code])
    assert r.stdout.split() == ["EACCES"] * 4, show(r)
    # control: a regular file beside it opens
    r = who.run(["--root", str(root), "-w", "/tmp", "--fake-root", *mounts, "--", "/usr/bin/python3", "-c",
                 "import os; open('/tmp/f', 'w').close(); os.open('/tmp/f', os.O_RDONLY); print('opened')"])
    assert r.stdout.split() == ["opened"], show(r)


# --- the record ----------------------------------------------------------------------------------

def test_the_record_is_not_in_the_commands_reach(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    fake(who, bbroot, "echo x > /tmp/f; chown 9:9 /tmp/f")
    record = bbroot.parent / "bbroot.sandlock-fakeroot/owners"
    assert record.read_text().count("\n") == 1
    before = record.read_bytes()
    r = fake(who, bbroot, "ls -a /.. /../bbroot.sandlock-fakeroot; cat /../bbroot.sandlock-fakeroot/owners; "
                          "echo 1 2 3 4 5 6 > /../bbroot.sandlock-fakeroot/owners; ls /")
    assert "bbroot.sandlock-fakeroot" not in r.stdout and "9 9" not in r.stdout, show(r)
    assert record.read_bytes() == before
    assert not (bbroot / "bbroot.sandlock-fakeroot").exists()


def test_an_fs_mount_that_would_reach_the_record_is_refused(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = who.run(["--root", str(bbroot), "--fake-root", "--fs-mount", f"/mnt:{bbroot.parent}", "--", "/bin/true"])
    assert r.returncode == 125 and len(r.stderr.splitlines()) == 1, show(r)
    assert "--fake-root: its record" in r.stderr, show(r)
    # control: the same mount without --fake-root runs
    r = who.run(["--root", str(bbroot), "--fs-mount", f"/mnt:{bbroot.parent}", "--", "/bin/true"])
    assert r.returncode == 0, show(r)


@pytest.mark.parametrize("content", [b"1 2 3\n", b"1 2 99999999999 4 5 6\n", b"-1 0 0 0 0 0\n",
                                     b"__import__('os') 0 0 0 0 0\n", b"1 2 3 4 5 6\n" * 3 + b"\xff\n"])
def test_a_broken_record_is_a_one_line_error(who, bbroot: Path, content: bytes) -> None:  # type: ignore[no-untyped-def]
    fake(who, bbroot, "true")
    record = bbroot.parent / "bbroot.sandlock-fakeroot/owners"
    record.write_bytes(content)
    r = fake(who, bbroot, "echo ran")
    assert r.returncode == 125 and r.stdout == "", show(r)
    assert r.stderr.startswith("sandlock: --fake-root: ") and len(r.stderr.splitlines()) == 1, show(r)
    assert "Traceback" not in r.stderr


def test_a_record_that_is_a_symlink_or_a_fifo_is_refused(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    fake(who, bbroot, "true")
    record = bbroot.parent / "bbroot.sandlock-fakeroot/owners"
    record.unlink(missing_ok=True)
    record.symlink_to("/etc/passwd")
    r = fake(who, bbroot, "echo ran")
    assert r.returncode == 125 and "Traceback" not in r.stderr, show(r)
    record.unlink()
    os.mkfifo(record)
    r = who.run(["--root", str(bbroot), "-w", "/", "--fake-root", "-t", "20", "--", "/bin/true"])
    assert r.returncode == 125 and "Traceback" not in r.stderr, show(r)


def test_the_record_stays_small_under_a_loop_of_chowns(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    script = ("cd /tmp && : > f && i=0; while [ $i -lt 400 ]; do chown $i:$i f; "
              ": > g$i; chown 7:7 g$i; mv g$i h; i=$((i+1)); done; rm h; stat -c %u f")
    r = fake(who, bbroot, script)
    assert r.returncode == 0 and r.stdout.split() == ["399"], show(r)
    record = (bbroot.parent / "bbroot.sandlock-fakeroot/owners").read_text().splitlines()
    assert len(record) == 1, record


def test_a_record_emptied_by_the_command_is_read_again(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = fake(who, bbroot, "echo x > /tmp/f && chown 5:5 /tmp/f")
    assert r.returncode == 0, show(r)
    r = fake(who, bbroot, "chown 0:0 /tmp/f")  # the default view again: no record left
    assert r.returncode == 0, show(r)
    assert (bbroot.parent / "bbroot.sandlock-fakeroot/owners").read_bytes() == b""
    r = fake(who, bbroot, "stat -c %u:%g /tmp/f")
    assert r.returncode == 0 and r.stdout.split() == ["0:0"], show(r)


def test_past_record_max_inodes_chown_fails_with_edquot(tmp_path: Path) -> None:
    from sandlock import _fakeroot
    from sandlock import _syscalls
    hot = _syscalls.HotCalls()
    owners = _fakeroot.Owners(os.open(tmp_path, os.O_RDONLY), os.stat(tmp_path).st_dev, os.getuid(), os.getgid())
    old = _fakeroot.RECORD_MAX
    _fakeroot.RECORD_MAX = 3
    try:
        for i in range(4):
            (tmp_path / f"f{i}").write_text("")
            fd = os.open(tmp_path / f"f{i}", os.O_PATH)
            st = hot.fstat(fd)
            if i < 3:
                owners.set(fd, st, 1000 + i, 1000, 0, 0)
            else:
                with pytest.raises(OSError) as exc:
                    owners.set(fd, st, 1000 + i, 1000, 0, 0)
                assert exc.value.errno == 122  # EDQUOT
            os.close(fd)
    finally:
        _fakeroot.RECORD_MAX = old
        owners.close()
    assert len(owners.records) == 3


def test_two_runs_saving_the_same_record_keep_both_changes(tmp_path: Path) -> None:
    from sandlock import _fakeroot
    from sandlock import _syscalls
    hot = _syscalls.HotCalls()
    root = tmp_path / "root"
    root.mkdir()
    first, second = _fakeroot.Owners.open(str(root)), _fakeroot.Owners.open(str(root))
    try:
        for owners, name, uid in ((first, "a", 11), (second, "b", 22)):
            (root / name).write_text("")
            fd = os.open(root / name, os.O_PATH)
            owners.set(fd, hot.fstat(fd), uid, uid, 0, 0)
            os.close(fd)
        first.save()
        second.save()
    finally:
        first.close()
        second.close()
    again = _fakeroot.Owners.open(str(root))
    again.close()
    assert sorted(v[1] for v in again.records.values()) == [11, 22]
