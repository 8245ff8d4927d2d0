"""Red team of the merge of 2026-12-06 (fake root, host renames and links made on
behalf, vendoring, Ctrl-Z in the command's group, the network verdict cache).

Each probe asserts what the attacker would see; each has a control.  Probes
that found a hole that is closed here say so in their docstring; those that
found nothing stay as cheap regression tests.
"""

from __future__ import annotations

import os
from pathlib import Path


# --- fake root: the supervisor's memory ----------------------------------------------------

def test_a_loop_of_files_made_chowned_and_removed_keeps_the_pending_changes_bounded(tmp_path: Path) -> None:
    """A command that creates a file, chowns it and removes it, again and again,
    leaves no record -- and must leave no pending change per inode number either
    (tmpfs never reuses inode numbers: one entry per loop, never released until
    the end of the run, was memory without bound).  Half the files are kept
    (distinct inode numbers on any filesystem) and chowned back to the default."""
    from sandlock import _fakeroot
    from sandlock import _syscalls
    hot = _syscalls.HotCalls()
    root = tmp_path / "root"
    root.mkdir()
    owners = _fakeroot.Owners.open(str(root))
    try:
        for i in range(300):
            fd = os.open(root / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            st = hot.fstat(fd)
            owners.set(fd, st, 1000, 1000, 0, 0)  # chown 1000:1000
            if i % 2:
                owners.set(fd, st, 0, 0, 0, 0)  # chown 0:0 again: the default view
            os.close(fd)
            if not i % 2:
                os.unlink(root / f"f{i}")
                owners.forget(st.dev, st.ino)  # its last name is gone
        assert owners.records == {}
        assert len(owners.changed) == 0, len(owners.changed)
        # control: a change that outlives the loop is still saved, and one removed
        # that was in the record file is removed from it
        (root / "kept").write_text("")
        (root / "gone").write_text("")
        for name in ("kept", "gone"):
            fd = os.open(root / name, os.O_PATH)
            owners.set(fd, hot.fstat(fd), 42, 42, 0, 0)
            os.close(fd)
        owners.save()
        fd = os.open(root / "gone", os.O_PATH)
        st = hot.fstat(fd)
        os.close(fd)
        owners.forget(st.dev, st.ino)
        owners.save()
    finally:
        owners.close()
    again = _fakeroot.Owners.open(str(root))
    again.close()
    assert [v[1] for v in again.records.values()] == [42]


def test_threads_setting_many_groups_keep_the_supervisors_memory_bounded(tmp_path: Path) -> None:
    """Virtual setgroups keeps a thread's groups in the supervisor: 4096 threads of
    65536 groups each (the kernel's NGROUPS_MAX) were ~10 GB of the supervisor's
    memory.  Past GROUPS_HELD_MAX groups over all live threads, setgroups fails
    with ENOMEM; control: a thread that replaces its own list, and dead threads'
    lists, never count against it."""
    import errno
    import threading
    from sandlock import _fakeroot
    root = tmp_path / "root"
    root.mkdir()
    owners = _fakeroot.Owners.open(str(root))
    release = threading.Event()
    tids: list = []
    started = threading.Barrier(41)

    def live() -> None:
        tids.append(threading.get_native_id())
        started.wait()
        release.wait()

    threads = [threading.Thread(target=live) for _ in range(40)]
    for t in threads:
        t.start()
    started.wait()
    groups = tuple(range(1000, 1000 + _fakeroot.NGROUPS_MAX))  # one tuple: the test stays small
    refused = []
    try:
        for tid in tids:
            try:
                _fakeroot._store(owners, tid, _fakeroot.Creds([0] * 4, [0] * 4, groups))
            except OSError as exc:
                refused.append(exc.errno)
        held = sum(len(c.groups) for c in owners.creds.values())
        assert held <= 1 << 20, held
        assert refused and set(refused) == {errno.ENOMEM}, refused
        # control: the same live thread replaces its list; a dead thread's list goes
        _fakeroot._store(owners, tids[0], _fakeroot.Creds([0] * 4, [0] * 4, groups))
        for tid in tids[:2]:
            _fakeroot._store(owners, tid, _fakeroot.Creds([0] * 4, [0] * 4, (5,)))
        owners.creds[2 ** 22 + 1] = _fakeroot.Creds([0] * 4, [0] * 4, groups)  # no such tid
        _fakeroot._store(owners, tids[-1], _fakeroot.Creds([0] * 4, [0] * 4, groups))
        assert 2 ** 22 + 1 not in owners.creds
    finally:
        release.set()
        for t in threads:
            t.join()
        owners.close()


# --- fake root: nothing real ----------------------------------------------------------------------

def _py_root(who, scratch: Path):  # type: ignore[no-untyped-def]
    """A small private root owned by who with the Debian root's /usr, /lib, /etc mounted
    read-only (as tests/test_fake_root.py's py_root)."""
    import subprocess
    from conftest import IS_ROOT, build_fixture
    import rootfs
    deb = build_fixture(rootfs.debian_rootfs)
    root = scratch / "pyroot"
    for d in ("tmp", "usr", "lib", "lib64", "etc", "bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if IS_ROOT:
        subprocess.run(["chown", "-R", "-h", f"{who.uid}:{who.gid}", str(root)], check=True)
    (root / "tmp").chmod(0o1777)
    mounts = [a for d in ("usr", "lib", "lib64", "etc") if (deb / d).exists()
              for a in ("--fs-mount", f"/{d}:{deb / d}:ro")]
    return root, mounts


PRIVILEGE_PROBES = r"""
import ctypes, errno, os, struct, sys
def tryit(name, fn):
    try:
        fn(); print(name, "ok")
    except OSError as exc:
        print(name, errno.errorcode[exc.errno])
open("/tmp/f", "w").close()
# file capabilities: a v2 security.capability granting cap_setuid (bit 7), effective
cap = struct.pack("<IIIII", 0x02000001, 1 << 7, 1 << 7, 0, 0)
tryit("setcap", lambda: os.setxattr("/tmp/f", "security.capability", cap))
tryit("trusted", lambda: os.setxattr("/tmp/f", "trusted.x", b"1"))
# a set-id directory and a creating openat2 with set-id bits
tryit("mkdir", lambda: os.mkdir("/tmp/d", 0o6777))
tryit("chmod-dir", lambda: os.chmod("/tmp/d", 0o6777))
libc = ctypes.CDLL(None, use_errno=True)
how = struct.pack("QQQ", os.O_CREAT | os.O_WRONLY, 0o6755, 0)
fd = libc.syscall(437, -100, b"/tmp/o2", how, len(how))
print("openat2", "ok" if fd >= 0 else errno.errorcode[ctypes.get_errno()])
# a fake device through a hard link, a rename, the link left alone, and /proc/self/fd
os.mknod("/tmp/mem", 0o20666, os.makedev(1, 1))
os.link("/tmp/mem", "/tmp/mem2"); os.rename("/tmp/mem", "/tmp/mem3"); os.unlink("/tmp/mem3")
tryit("open-link", lambda: os.close(os.open("/tmp/mem2", os.O_RDWR)))
print("kind", oct(os.stat("/tmp/mem2").st_mode))
# virtual ids give nothing real: setuid(1234) then the kernel's view of the process
os.setuid(1234)
print("uid", os.getuid(), [l.split()[1] for l in open("/proc/self/status") if l.startswith("Uid:")][0] != "1234")
"""


def test_fake_root_makes_no_file_capability_set_id_directory_or_device_on_the_host(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """File capabilities are the set-id bits' twin: a real security.capability on a
    host file would be root for whoever runs it outside.  Neither it, nor a set-id
    directory, nor a set-id file by openat2, nor a device through a hard link whose
    first name is gone, is ever real.  Control: the same calls are answered (the
    fake device keeps its kind, the directory and the openat2 file are made)."""
    import stat as st_
    root, mounts = _py_root(who, scratch)
    r = who.run(["--root", str(root), "-w", "/tmp", "--fake-root", *mounts, "--",
                 "/usr/bin/python3", "-c", PRIVILEGE_PROBES])
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert r.returncode == 0, r.stdout + r.stderr
    assert out["setcap"] in ("EPERM", "EACCES", "EOPNOTSUPP") and out["trusted"] in ("EPERM", "EACCES", "EOPNOTSUPP"), out
    assert out["mkdir"] == "ok" and out["chmod-dir"] == "ok", out  # control: made, virtually set-id
    assert out["openat2"] in ("ok", "EPERM"), out
    assert out["open-link"] == "EACCES" and out["kind"] == oct(st_.S_IFCHR | 0o644), out
    assert out["uid"] == "1234 True", out
    tmp = root / "tmp"
    for name in ("f", "d", "o2", "mem2"):
        if (tmp / name).exists():
            assert not os.lstat(tmp / name).st_mode & 0o4000, name
            assert not (os.lstat(tmp / name).st_mode & 0o2000 and not (tmp / name).is_dir()), name
            assert (os.lstat(tmp / name).st_uid, os.lstat(tmp / name).st_gid) == (who.uid, who.gid), name
    assert "security.capability" not in os.listxattr(tmp / "f")
    assert st_.S_ISREG(os.lstat(tmp / "mem2").st_mode) and os.lstat(tmp / "mem2").st_size == 0
