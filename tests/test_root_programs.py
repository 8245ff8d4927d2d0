"""The emulated root, `--root DIR`: real programs (sh, python3, dpkg) in a Debian or busybox
root, FIFOs, --fs-mount, the API, the environment and the default command.  Fixtures
and the idea of these tests: tests/rootcase.py.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
from pathlib import Path

from conftest import SYSTEM_READ, tree_snapshot
from rootcase import GUEST_PATH, PY, show, in_root, assert_no_host_path, guest_file
from rootcase import deb_shared, deb, busybox_shared, musl, bb, work, canary  # noqa: F401  (fixtures)


# --- 1. the examples of the issue ---------------------------------------------------------------

def test_sh_in_a_debian_root_reads_guest_files_and_prints_guest_paths(who, deb: Path) -> None:
    r = in_root(who, deb, ["/bin/sh", "-c", "cat /etc/debian_version; cd /usr/lib && pwd && ls .. | head -3"])
    usr = sorted(os.listdir(deb / "usr"))[:3]
    assert r.returncode == 0, show(r)
    assert r.stdout == guest_file(deb, "/etc/debian_version") + "/usr/lib\n" + "".join(f"{n}\n" for n in usr), show(r)
    assert r.stdout.startswith("12."), show(r)
    assert_no_host_path(r, deb)


def test_python3_in_a_debian_root_starts_at_slash_and_lists_the_guest_root(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", 'import json, sqlite3, email, os; print(os.getcwd(), os.listdir("/")[:3])'])
    assert r.returncode == 0, show(r)
    cwd, listing = r.stdout.rstrip("\n").split(" ", 1)
    assert cwd == "/", show(r)
    entries = ast.literal_eval(listing)
    assert len(entries) == 3 and set(entries) <= set(os.listdir(deb)), show(r)
    assert_no_host_path(r, deb)


def test_dpkg_l_lists_the_packages_of_the_root(who, deb: Path) -> None:
    r = in_root(who, deb, ["dpkg", "-l"])
    assert r.returncode == 0, show(r)
    assert re.search(r"^ii\s+python3(:\w+)?\s", r.stdout, re.M), show(r)
    assert re.search(r"^ii\s+procps(:\w+)?\s", r.stdout, re.M), show(r)


def test_a_write_to_tmp_of_a_private_root_lands_in_its_tmp_on_the_host(who, bb: Path) -> None:
    r = in_root(who, bb, ["sh", "-c", "echo x > /tmp/f && ls -l /tmp/f"], "-w", "/tmp")
    assert r.returncode == 0, show(r)
    assert r.stdout.rstrip("\n").endswith(" /tmp/f"), show(r)
    assert (bb / "tmp/f").read_text() == "x\n"
    assert (bb / "tmp/f").stat().st_uid == who.uid
    assert_no_host_path(r, bb)


FIFO_THREADS = r"""
import os, threading, time
p = "/tmp/fifo"
os.mkfifo(p)
got = []
t = threading.Thread(target=lambda: got.append(os.read(os.open(p, os.O_RDONLY), 10)))
t.start()
time.sleep(0.3)          # the reader's open is waiting for a writer: other calls go on
t0 = time.monotonic()
os.stat("/etc/hostname")
print("stat answered", time.monotonic() - t0 < 1, flush=True)
fd = os.open(p, os.O_WRONLY)
os.write(fd, b"hi")
os.close(fd)
t.join(10)
print("read", got)
"""


def test_fifo_opens_wait_for_their_other_end_without_holding_up_the_sandbox(who, bb: Path, deb: Path,
                                                                             work: Path) -> None:
    """A blocking open of a FIFO is done on behalf in a root: it must wait for the other
    end like in the kernel, while every other process and thread goes on (it held up the
    whole sandbox: a reader waiting for a writer whose open was never answered)."""
    for script in ("mkfifo /tmp/p; cat /tmp/p & sleep 0.2; echo hello > /tmp/p; wait",
                   "mkfifo /tmp/p; echo hello > /tmp/p & sleep 0.2; cat /tmp/p; wait",
                   "mkfifo /tmp/p; exec 3<>/tmp/p; echo hello >&3; head -n1 <&3"):
        shutil.rmtree(bb / "tmp", ignore_errors=True)
        (bb / "tmp").mkdir(mode=0o777)
        (bb / "tmp").chmod(0o1777)
        r = in_root(who, bb, ["sh", "-c", script], "-w", "/tmp", "--timeout", "20")
        assert (r.returncode, r.stdout) == (0, "hello\n"), f"{script}\n{show(r)}"
    r = in_root(who, deb, [PY, "-c", FIFO_THREADS], "--fs-mount", f"/tmp:{work}", "--timeout", "20")
    assert (r.returncode, r.stdout) == (0, "stat answered True\nread [b'hi']\n"), show(r)
    # the same without a root: a workdir, and --fs-deny (every open done on behalf)
    for index, extra in enumerate((["--workdir"], ["--fs-deny"])):
        d, e = who.make_dir(work / f"plain{index}"), who.make_dir(work / f"other{index}")
        options = ["-w", str(d), "-w", str(e), extra[0],
                   str(who.make_file(e / "x", "x\n") if extra == ["--fs-deny"] else d)]
        script = f"cd {d}; mkfifo p; cat p & sleep 0.2; echo hello > p; wait"
        r = who.run([*SYSTEM_READ, *options, "--timeout", "20", "--", "sh", "-c", script])
        assert (r.returncode, r.stdout) == (0, "hello\n"), f"{options}\n{show(r)}"


def test_a_fifo_open_still_waiting_when_the_run_ends_leaves_no_thread_behind(who, bb: Path) -> None:
    code = ("import sys, threading, sandlock\n"
            "box = sandlock.Sandbox(chroot=sys.argv[1], fs_writable=['/tmp'])\n"
            "r = box.run(['sh', '-c', 'mkfifo /tmp/q; cat /tmp/q'], timeout=1)\n"
            "threading.Event().wait(0.5)\n"
            "from sandlock import _threads\n"
            "print(r.returncode, [t.name for t in threading.enumerate() + _threads.running() if t.name.startswith('sandlock')])\n")
    r = who.python(code, args=[str(bb)], timeout=60)
    assert (r.returncode, r.stdout.decode()) == (0, "124 []\n"), r.stdout.decode() + r.stderr.decode()


def test_fs_mount_shows_a_host_directory_inside_the_root(who, deb: Path, work: Path) -> None:
    who.make_file(work / "one", "1\n")
    who.make_file(work / "two", "2\n")
    r = in_root(who, deb, ["ls", "/work"], "--fs-mount", f"/work:{work}")
    assert (r.returncode, r.stdout) == (0, "one\ntwo\n"), show(r)
    r = in_root(who, deb, ["sh", "-c", "cat /work/one && echo new > /work/three"], "--fs-mount", f"/work:{work}")
    assert (r.returncode, r.stdout) == (0, "1\n"), show(r)
    assert (work / "three").read_text() == "new\n"
    assert (work / "three").stat().st_uid == who.uid


def test_a_read_only_fs_mount_can_be_read_but_not_written(who, deb: Path, work: Path) -> None:
    who.make_file(work / "one", "1\n")
    before = tree_snapshot(work)
    r = in_root(who, deb, ["sh", "-c", "cat /data/one; echo new > /data/two; echo rc=$?"],
                "--fs-mount", f"/data:{work}:ro")
    assert r.stdout == "1\nrc=2\n", show(r)
    assert "Permission denied" in r.stderr or "Read-only file system" in r.stderr, show(r)
    assert tree_snapshot(work) == before
    assert_no_host_path(r, work)


READ_ONLY_MOUNT_CODE = r'''
import os, errno, ctypes
libc = ctypes.CDLL(None, use_errno=True)
def t(name, fn):
    try:
        fn(); print("ESCAPED", name)
    except OSError as e:
        print("HELD", name, errno.errorcode[e.errno])
R, W = "/ro", "/rw"
def exch(a, b):
    if libc.syscall(316, -100, a.encode(), -100, b.encode(), 2) != 0:
        e = ctypes.get_errno(); raise OSError(e, os.strerror(e))
ops = {
 "open_w": lambda: os.close(os.open(R+"/f", os.O_WRONLY)),
 "open_trunc": lambda: os.close(os.open(R+"/f", os.O_RDONLY|os.O_TRUNC)),
 "open_creat": lambda: os.close(os.open(R+"/new", os.O_WRONLY|os.O_CREAT, 0o644)),
 "open_w_via_link": lambda: os.close(os.open(R+"/lnk", os.O_WRONLY)),
 "truncate": lambda: os.truncate(R+"/f", 0),
 "chmod": lambda: os.chmod(R+"/f", 0o600),
 "chown": lambda: os.chown(R+"/f", os.getuid(), os.getgid()),
 "utime": lambda: os.utime(R+"/f", (1, 1)),
 "setxattr": lambda: os.setxattr(R+"/f", "user.x", b"1"),
 "mkdir": lambda: os.mkdir(R+"/d"),
 "mkfifo": lambda: os.mkfifo(R+"/p"),
 "symlink": lambda: os.symlink("x", R+"/s"),
 "unlink": lambda: os.unlink(R+"/f"),
 "rmdir": lambda: os.rmdir(R+"/sub"),
 "rename_within": lambda: os.rename(R+"/f", R+"/f2"),
 "rename_out": lambda: os.rename(R+"/f", W+"/f"),
 "rename_in": lambda: os.rename(W+"/g", R+"/g"),
 "link_out": lambda: os.link(R+"/f", W+"/hl"),
 "link_in": lambda: os.link(W+"/g", R+"/hl"),
 "exchange": lambda: exch(R+"/f", W+"/g"),
 "fd_fchmod": lambda: (lambda fd: (os.fchmod(fd, 0o600), os.close(fd)))(os.open(R+"/f", os.O_RDONLY)),
 "fd_fchown": lambda: (lambda fd: (os.fchown(fd, os.getuid(), os.getgid()), os.close(fd)))(os.open(R+"/f", os.O_RDONLY)),
 "fd_utime": lambda: (lambda fd: (os.utime(fd, (1, 1)), os.close(fd)))(os.open(R+"/f", os.O_RDONLY)),
 "fd_setxattr": lambda: (lambda fd: (os.setxattr(fd, "user.x", b"1"), os.close(fd)))(os.open(R+"/f", os.O_RDONLY)),
 "fd_ftruncate": lambda: (lambda fd: (os.ftruncate(fd, 0), os.close(fd)))(os.open(R+"/f", os.O_RDONLY)),
 "dirfd_mkdir": lambda: (lambda fd: os.mkdir("d2", dir_fd=fd))(os.open(R, os.O_RDONLY)),
 "proc_fd_open_w": lambda: (lambda fd: os.close(os.open("/proc/self/fd/%d" % fd, os.O_WRONLY)))(os.open(R+"/f", os.O_RDONLY)),
 "opath_reopen_w": lambda: (lambda fd: os.close(os.open("/proc/self/fd/%d" % fd, os.O_WRONLY)))(os.open(R+"/f", os.O_PATH)),
}
for k, fn in ops.items():
    t(k, fn)
'''


def test_a_read_only_fs_mount_refuses_every_kind_of_write(who, deb: Path, work: Path) -> None:
    """Every way of changing a :ro mount, through paths, a symlink, fds, a dirfd and
    /proc/self/fd re-opens, and moves between it and a writable mount."""
    ro, rw = who.make_dir(work / "ro"), who.make_dir(work / "rw")
    who.make_file(ro / "f", "data\n")
    who.make_dir(ro / "sub")
    os.symlink("f", ro / "lnk")
    who.own(ro / "lnk")
    who.make_file(rw / "g", "x\n")
    before = tree_snapshot(work)
    r = in_root(who, deb, [PY, "-c", READ_ONLY_MOUNT_CODE], "--fs-mount", f"/ro:{ro}:ro", "--fs-mount", f"/rw:{rw}")
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    assert len(lines) == 28 and all(line.startswith("HELD ") for line in lines), show(r)
    assert tree_snapshot(work) == before


def test_proc_self_and_dev_null_work_and_show_guest_paths(who, deb: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", "ls /proc/self/fd; readlink /proc/self/exe; cat /dev/null; "
                                       "echo ok > /dev/null"])
    assert r.returncode == 0, show(r)
    # ls has its directory open as fd 3; nothing else is inherited
    assert r.stdout.splitlines() == ["0", "1", "2", "3", "/usr/bin/readlink"], show(r)
    assert_no_host_path(r, deb)


def test_the_chroot_alias_and_the_api_run_in_the_root(who, deb: Path, bb: Path) -> None:
    r = who.run(["--chroot", str(deb), "--", "cat", "/etc/debian_version"])
    assert (r.returncode, r.stdout) == (0, guest_file(deb, "/etc/debian_version")), show(r)
    code = ("import json, sys, sandlock\n"
            "a = sandlock.Sandbox(chroot=sys.argv[1]).run(['cat', '/etc/debian_version'])\n"
            "b = sandlock.Sandbox(root=sys.argv[2], fs_writable=['/tmp'])"
            ".run(['sh', '-c', 'echo api > /tmp/api; pwd'])\n"
            "print(json.dumps([a.returncode, a.stdout.decode(), b.returncode, b.stdout.decode(),"
            " b.stderr.decode()]))\n")
    out = who.python(code, args=[str(deb), str(bb)])
    assert out.returncode == 0, out.stderr.decode()
    got = json.loads(out.stdout)
    assert got[:4] == [0, guest_file(deb, "/etc/debian_version"), 0, "/\n"], got
    assert (bb / "tmp/api").read_text() == "api\n"


# --- environment and the default command ------------------------------------------------------

def test_path_and_home_are_the_guests_unless_env_sets_them(who, deb: Path) -> None:
    host_path = "/opt/host-only/bin:/usr/bin:/bin"
    r = in_root(who, deb, ["sh", "-c", 'echo "$PATH"; echo "$HOME"'], env={"PATH": host_path})
    home = "/root" if who.name == "root" else "/"  # /root exists in the rootfs; the user has no home there
    assert (r.returncode, r.stdout) == (0, f"{GUEST_PATH}\n{home}\n"), show(r)
    r = in_root(who, deb, ["sh", "-c", 'echo "$PATH"'], "--env", "PATH=/bin:/opt/x", env={"PATH": host_path})
    assert (r.returncode, r.stdout) == (0, "/bin:/opt/x\n"), show(r)


def test_without_a_command_the_roots_shell_runs(who, bb: Path) -> None:
    script = "echo shell $((6*7)); readlink /proc/$$/exe; exit 3\n"
    r = who.run(["--root", str(bb)], input=script)
    assert (r.returncode, r.stdout) == (3, "shell 42\n/bin/busybox\n"), show(r)
    # a $SHELL the root does not have (bash is the host's) falls back to the root's /bin/sh
    r = who.run(["--root", str(bb)], input=script, env={"SHELL": "/bin/bash"})
    assert (r.returncode, r.stdout) == (3, "shell 42\n/bin/busybox\n"), show(r)
