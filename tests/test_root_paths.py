"""Integration tests of the emulated root, `--root DIR` (SPEC section 4, with section 1).

The child sees DIR as "/", unprivileged, without namespaces.  Each test runs
real programs under `python -m sandlock --root ...`, as root and as the
unprivileged user (the `who` fixture), and asserts what the user of a real
chroot(8) would see: exit status, stdout, errno, files on disk.  Where the
sandbox deliberately differs from a root chroot (nothing writable without
`-w`, no capabilities, a private /dev/shm, only the sandbox's processes in
/proc) the test says so.

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

import ast
import errno
import json
import os
import re
import shutil
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Sequence

import pytest

import rootfs
from conftest import SYSTEM_READ, build_fixture, tree_snapshot


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
            "print(r.returncode, [t.name for t in threading.enumerate() if t.name.startswith('sandlock')])\n")
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


# --- 2. confinement of every path spelling ----------------------------------------------------------

SPELLINGS_CODE = r'''
import errno, os, sys
p = sys.argv[1]           # host path of the canary
good = "/etc/debian_version"
os.chdir("/usr/lib")
paths = {
    "absolute": p, "relative": "../../.." + p, "dotdot": "/../../../.." + p,
    "proc_root": "/proc/self/root" + p, "proc_cwd": "/proc/self/cwd/../../../.." + p,
    "proc_pid_root": "/proc/%d/root%s" % (os.getpid(), p),
    "proc_thread_root": "/proc/thread-self/root" + p,
    "proc_task_cwd": "/proc/self/task/%d/cwd/../../.." % os.getpid() + p,
    "good_dotdot": "/../../../.." + good, "good_relative": "../../../../.." + good,
    "good_proc_root": "/proc/self/root" + good, "good_proc_cwd": "/proc/self/cwd/../.." + good,
    "good_proc_pid_root": "/proc/%d/root%s" % (os.getpid(), good),
    "good_proc_thread_root": "/proc/thread-self/root" + good,
    "good_proc_task_cwd": "/proc/%d/task/%d/cwd/../.." % (os.getpid(), os.getpid()) + good,
}
root_fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY)
lib_fd = os.open("/usr/lib", os.O_RDONLY | os.O_DIRECTORY)
dirfd = {"dirfd_root": (root_fd, p.lstrip("/")), "dirfd_dotdot": (lib_fd, "../../../.." + p),
         "good_dirfd_root": (root_fd, good.lstrip("/")), "good_dirfd_dotdot": (lib_fd, "../.." + good)}

def result(fn):
    try:
        return "READ " + fn().strip()
    except OSError as e:
        return errno.errorcode[e.errno]

def read_at(fd, path):
    f = os.open(path, os.O_RDONLY, dir_fd=fd)
    try:
        return os.read(f, 200).decode()
    finally:
        os.close(f)

for name, path in paths.items():
    print(name, "open", result(lambda: open(path).read()))
    print(name, "stat", result(lambda: str(os.stat(path).st_size)))
for name, (fd, path) in dirfd.items():
    print(name, "open", result(lambda: read_at(fd, path)))
    print(name, "stat", result(lambda: str(os.stat(path, dir_fd=fd).st_size)))
print("parent listdir", result(lambda: " ".join(os.listdir(os.path.dirname(p)))))
print("canary access", os.access(p, os.F_OK))
'''


def test_no_path_spelling_reaches_a_host_file_outside_the_root(who, deb: Path, canary: Path) -> None:
    r = in_root(who, deb, [PY, "-c", SPELLINGS_CODE, str(canary)])
    assert r.returncode == 0, show(r)
    assert SECRET not in r.stdout + r.stderr, show(r)
    version = guest_file(deb, "/etc/debian_version").strip()
    size = (deb / "etc/debian_version").stat().st_size
    lines = dict((" ".join(line.split()[:2]), " ".join(line.split()[2:])) for line in r.stdout.splitlines()
                 if len(line.split()) >= 3)
    for name in ("absolute", "relative", "dotdot", "proc_root", "proc_cwd", "proc_pid_root", "proc_thread_root",
                 "proc_task_cwd", "dirfd_root", "dirfd_dotdot"):
        for op in ("open", "stat"):
            assert lines.get(f"{name} {op}") in ("ENOENT", "EACCES"), f"{name} {op}:\n{show(r)}"
        assert lines[f"{name} open"] == "ENOENT", f"{name}: the host file exists, but not in the root:\n{show(r)}"
    for name in ("good_dotdot", "good_relative", "good_proc_root", "good_proc_cwd", "good_proc_pid_root",
                 "good_proc_thread_root", "good_proc_task_cwd", "good_dirfd_root", "good_dirfd_dotdot"):
        assert lines.get(f"{name} open") == f"READ {version}", f"{name}:\n{show(r)}"
        assert lines.get(f"{name} stat") == f"READ {size}", f"{name}:\n{show(r)}"
    assert lines.get("parent listdir") == "ENOENT", show(r)
    assert lines.get("canary access") == "False", show(r)
    assert_no_host_path(r, deb)


def test_dot_dot_past_the_root_stays_at_the_root(who, deb: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", "cat /../../../../etc/debian_version; ls /..; echo --; ls /; echo --; "
                                       "cd /usr/lib/../../../.. && pwd && ls"])
    assert r.returncode == 0, show(r)
    listing = "".join(f"{n}\n" for n in sorted(os.listdir(deb)))
    assert r.stdout == (guest_file(deb, "/etc/debian_version") + listing + "--\n" + listing + "--\n/\n" + listing), \
        show(r)


def test_symlinks_inside_the_root_resolve_inside_it(who, bb: Path, canary: Path) -> None:
    os.symlink("/", bb / "abs")
    os.symlink("../../..", bb / "usr/bin/up")  # from /usr/bin: three levels up is past "/"
    os.symlink(str(canary), bb / "direct")  # an absolute host path: inside the root it does not exist
    os.symlink(str(bb / "etc/group"), bb / "selfref")  # the host path of a guest file
    lines = ["cat /abs/etc/group", "cat /usr/bin/up/etc/group", "cat /abs/../../etc/group",
             f"cat /abs{canary}", f"cat /usr/bin/up{canary}", "cat /direct", "cat /selfref",
             f"cat /usr/bin/up/../../..{canary}", "cat /etc/passwd"]
    r = in_root(who, bb, ["sh", "-c", "; ".join(f"{c}; echo rc=$?" for c in lines)])
    group = guest_file(bb, "/etc/group")
    expected = (group + "rc=0\n") * 3 + "rc=1\n" * 5 + guest_file(bb, "/etc/passwd") + "rc=0\n"
    assert r.stdout == expected, show(r)
    assert r.stderr.count("No such file or directory") == 5, show(r)
    assert SECRET not in r.stdout + r.stderr
    assert_no_host_path(r, bb)


# --- 3. coverage of the path syscalls ---------------------------------------------------------------

COVERAGE_CODE = r'''
import ctypes, errno, json, os, platform, socket, stat, sys

NR = json.loads(sys.argv[1])[platform.machine()]
os.umask(0o022)
os.chdir("/work")
out = {}
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]

def probe(name, fn):
    try:
        out[name] = fn()
    except OSError as e:
        out[name] = errno.errorcode.get(e.errno, str(e.errno))

def put(path, data):
    with open(path, "w") as f:
        f.write(data)
    return True

def get(path):
    with open(path) as f:
        return f.read()

def check(rc):
    if rc < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return rc

def renameat2(old, new, flags):
    return check(libc.syscall(ctypes.c_long(NR["renameat2"]), ctypes.c_long(-100), old.encode(),
                              ctypes.c_long(-100), new.encode(), ctypes.c_ulong(flags)))

class open_how(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]

def openat2_read(path, resolve=0):
    how = open_how(os.O_RDONLY | os.O_CLOEXEC, 0, resolve)
    fd = check(libc.syscall(ctypes.c_long(NR["openat2"]), ctypes.c_long(-100), path.encode(),
                            ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))))
    try:
        return os.read(fd, 200).decode()
    finally:
        os.close(fd)

def fstat_kind(fd):
    m = os.stat(fd).st_mode  # fstat: newfstatat(fd, "", AT_EMPTY_PATH)
    return "fifo" if stat.S_ISFIFO(m) else "sock" if stat.S_ISSOCK(m) else "reg" if stat.S_ISREG(m) else oct(m)

def fchdir_to(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    os.fchdir(fd)
    os.close(fd)
    here = os.getcwd()
    os.chdir("/work")
    return here

def inotify(path):
    fd = check(libc.inotify_init1(os.O_CLOEXEC))
    try:
        return check(libc.inotify_add_watch(fd, path.encode(), 0x100)) >= 1  # IN_CREATE
    finally:
        os.close(fd)

def xattr():
    os.setxattr("b", "user.sandlock", b"v")
    names = [n for n in os.listxattr("b") if n.startswith("user.")]
    value = os.getxattr("b", "user.sandlock").decode()
    os.removexattr("b", "user.sandlock")
    return "%s %s" % (value, ",".join(names))

# stat, readlink, openat2
probe("stat_size", lambda: os.stat("/etc/debian_version").st_size)
probe("lstat_bin_is_link", lambda: stat.S_ISLNK(os.lstat("/bin").st_mode))
probe("stat_bin_is_dir", lambda: stat.S_ISDIR(os.stat("/bin").st_mode))
probe("stat_missing", lambda: bool(os.stat("/etc/nosuch")))
probe("stat_missing_parent", lambda: bool(os.stat("/nosuch/x")))
probe("stat_through_a_file", lambda: bool(os.stat("/etc/debian_version/x")))
probe("readlink_bin", lambda: os.readlink("/bin"))
probe("readlink_not_a_link", lambda: os.readlink("/etc/debian_version"))
probe("openat2", lambda: openat2_read("/etc/debian_version"))
probe("openat2_beneath_escape", lambda: openat2_read("../etc/debian_version", 0x08))  # RESOLVE_BENEATH
probe("openat2_beneath_absolute", lambda: openat2_read("/etc/debian_version", 0x08))
here = os.getcwd()
os.chdir("/etc")
probe("openat2_in_root_cwd", lambda: openat2_read("/debian_version", 0x10))  # RESOLVE_IN_ROOT: the cwd is "/"
probe("openat2_in_root_cwd_up", lambda: openat2_read("/../../etc/debian_version", 0x10))
os.chdir(here)
# access (faccessat2 with AT_EACCESS through effective_ids)
probe("access_r", lambda: os.access("/etc/debian_version", os.R_OK))
probe("access_w_of_a_read_only_file", lambda: os.access("/etc/debian_version", os.W_OK))
probe("access_x_sh", lambda: os.access("/bin/sh", os.X_OK))
probe("access_x_plain_file", lambda: os.access("/etc/debian_version", os.X_OK))
probe("access_missing", lambda: os.access("/etc/nosuch", os.F_OK))
probe("access_noread_r", lambda: os.access("noread", os.R_OK))
probe("faccessat2_noread_r", lambda: os.access("noread", os.R_OK, effective_ids=True))
probe("faccessat2_noread_w", lambda: os.access("noread", os.W_OK, effective_ids=True))
probe("open_noread", lambda: get("noread") and True)
# create, remove, rename, link
probe("mkdir", lambda: os.mkdir("d", 0o777) or oct(os.stat("d").st_mode & 0o777))
probe("rmdir", lambda: os.mkdir("d2") or os.rmdir("d2") or os.path.exists("d2"))
probe("rmdir_not_empty", lambda: os.rmdir("full") or True)
probe("unlink", lambda: put("u", "u") and (os.unlink("u") or os.path.exists("u")))
probe("unlink_of_a_directory", lambda: os.unlink("d") or True)
probe("rename", lambda: put("a", "A") and (os.rename("a", "b") or get("b")))
probe("open_excl_of_an_existing_file", lambda: os.open("b", os.O_WRONLY | os.O_CREAT | os.O_EXCL) and True)
probe("open_directory_of_a_file", lambda: os.open("b", os.O_RDONLY | os.O_DIRECTORY) and True)
probe("renameat2_noreplace", lambda: put("x", "X") and put("y", "Y") and renameat2("x", "y", 1))
probe("renameat2_exchange", lambda: renameat2("x", "y", 2) == 0 and get("x") + get("y"))
probe("link", lambda: os.link("b", "b_hard") or os.stat("b").st_nlink)
probe("symlink", lambda: os.symlink("/etc/debian_version", "sl") or os.readlink("sl"))
probe("mkfifo", lambda: os.mknod("fifo", stat.S_IFIFO | 0o644) or stat.S_ISFIFO(os.lstat("fifo").st_mode))
# attributes
probe("xattr", xattr)
probe("getxattr_missing", lambda: os.getxattr("b", "user.nosuch") and True)
probe("utime", lambda: os.utime("b", (1000000000, 1000000000)) or os.stat("b").st_mtime_ns // 10**9)
probe("truncate", lambda: put("t", "truncate me") and (os.truncate("t", 3) or get("t")))
probe("statvfs_root", lambda: os.statvfs("/").f_bsize > 0)
probe("statvfs_work", lambda: os.statvfs("/work").f_bsize > 0)
probe("chmod", lambda: os.chmod("b", 0o640) or oct(os.stat("b").st_mode & 0o777))
probe("chown_to_own_ids", lambda: os.chown("b", os.getuid(), os.getgid()) or True)
probe("chown_to_another_uid", lambda: os.chown("b", 4242, -1) or True)
# fd-based and the rest
r, w = os.pipe()
s1, s2 = socket.socketpair()
probe("fstat_pipe", lambda: fstat_kind(r))
probe("fstat_socket", lambda: fstat_kind(s1.fileno()))
probe("fstat_file", lambda: fstat_kind(os.open("/etc/debian_version", os.O_RDONLY)))
probe("fchdir", lambda: fchdir_to("/usr/share"))
probe("inotify_add_watch", lambda: inotify("/etc"))
probe("inotify_add_watch_missing", lambda: inotify("/etc/nosuch"))
print(json.dumps(out, sort_keys=True))
'''


def host_xattr_result(directory: Path) -> str:
    """What setxattr of a user.* attribute gives on the host filesystem under /work."""
    probe = directory / ".xattr-probe"
    probe.write_text("")
    try:
        os.setxattr(probe, "user.sandlock", b"v")
        return "v user.sandlock"
    except OSError as e:
        return errno.errorcode[e.errno]
    finally:
        probe.unlink()


def test_path_syscalls_behave_as_in_a_real_root(who, deb: Path, work: Path) -> None:
    who.make_file(work / "noread", "no\n", 0o200)
    who.make_file(work / "full" / "x", "x")
    version = guest_file(deb, "/etc/debian_version")
    xattr = host_xattr_result(work)
    r = in_root(who, deb, [PY, "-c", COVERAGE_CODE, json.dumps(NR)], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    expected = {
        "stat_size": len(version.encode()), "lstat_bin_is_link": True, "stat_bin_is_dir": True,
        "stat_missing": "ENOENT", "stat_missing_parent": "ENOENT", "stat_through_a_file": "ENOTDIR",
        "readlink_bin": "usr/bin", "readlink_not_a_link": "EINVAL",
        "openat2": version, "openat2_beneath_escape": "EXDEV", "openat2_beneath_absolute": "EXDEV",
        "openat2_in_root_cwd": version, "openat2_in_root_cwd_up": "ENOENT",
        "access_r": True, "access_w_of_a_read_only_file": False, "access_x_sh": True,
        "access_x_plain_file": False, "access_missing": False,
        # no capabilities in the sandbox, not even for root: mode 0200 is unreadable for both
        "access_noread_r": False, "faccessat2_noread_r": False, "faccessat2_noread_w": True,
        "open_noread": "EACCES",
        "mkdir": "0o755", "rmdir": False, "rmdir_not_empty": "ENOTEMPTY", "unlink": False,
        "unlink_of_a_directory": "EISDIR", "rename": "A", "open_excl_of_an_existing_file": "EEXIST",
        "open_directory_of_a_file": "ENOTDIR", "renameat2_noreplace": "EEXIST", "renameat2_exchange": "YX",
        "link": 2, "symlink": "/etc/debian_version", "mkfifo": True,
        "xattr": xattr, "getxattr_missing": "ENODATA", "utime": 1000000000, "truncate": "tru",
        "statvfs_root": True, "statvfs_work": True, "chmod": "0o640", "chown_to_own_ids": True,
        "chown_to_another_uid": "EPERM",
        "fstat_pipe": "fifo", "fstat_socket": "sock", "fstat_file": "reg", "fchdir": "/usr/share",
        "inotify_add_watch": True, "inotify_add_watch_missing": "ENOENT",
    }
    assert got == expected, show(r)
    # ... and the host directory holds what a real root would have left there
    assert sorted(os.listdir(work)) == ["b", "b_hard", "d", "fifo", "full", "noread", "sl", "t", "x", "y"]
    assert (work / "d").stat().st_mode & 0o7777 == 0o755 and (work / "d").stat().st_uid == who.uid
    st = (work / "b").stat()
    assert (st.st_mode & 0o7777, st.st_uid, st.st_mtime_ns, st.st_nlink) == (0o640, who.uid, 10**18, 2)
    assert (work / "b").read_text() == "A" and (work / "b").stat().st_ino == (work / "b_hard").stat().st_ino
    assert os.readlink(work / "sl") == "/etc/debian_version"  # stored verbatim: a guest path
    assert stat.S_ISFIFO((work / "fifo").lstat().st_mode)
    assert ((work / "x").read_text(), (work / "y").read_text(), (work / "t").read_text()) == ("Y", "X", "tru")
    assert_no_host_path(r, deb, work)


def test_legacy_syscalls_of_a_static_musl_binary_work_inside_the_root(who, bb: Path, musl: Dict[str, Path],
                                                                     scratch: Path) -> None:
    shutil.copy(musl["legacy-static"], bb / "bin/legacy")
    (bb / "bin/legacy").chmod(0o755)
    inside = who.make_dir(bb / "tmp/ld", 0o755)
    r = in_root(who, bb, ["/bin/legacy", "/tmp/ld"], "-w", "/tmp")
    assert r.returncode == 0, show(r)
    got = [line.split() for line in r.stdout.splitlines()]
    assert [line[0] for line in got] == list(rootfs.LEGACY_CALLS), show(r)
    for name, rc, err in got:
        assert err == ("2" if name == "open_enoent" else "0"), f"{name}:\n{show(r)}"
    assert dict((n, rc) for n, rc, _ in got)["getcwd"] == str(len("/tmp/ld") + 1), show(r)  # virtual cwd
    # the same program, bare, on a host directory prints the same (but for getcwd's length)
    bare_dir = scratch / "bare"
    bare_dir.mkdir()
    bare = subprocess.run([str(musl["legacy-static"]), str(bare_dir)], capture_output=True, text=True, timeout=60)
    bare_lines = [line.split() for line in bare.stdout.splitlines()]
    assert [x for x in got if x[0] != "getcwd"] == [x for x in bare_lines if x[0] != "getcwd"], show(r)
    assert sorted(p.name for p in inside.iterdir()) == ["f", "p", "s"]
    assert stat.S_ISFIFO((inside / "p").lstat().st_mode) and os.readlink(inside / "s") == "f"
    assert (inside / "f").stat().st_mode & 0o7777 == 0o600 and (inside / "f").stat().st_uid == who.uid


# --- 4. no-follow calls act on the link -------------------------------------------------------------

NOFOLLOW_CODE = r'''
import os, stat, subprocess
os.chdir("/work")
print("lstat", stat.S_ISLNK(os.lstat("link").st_mode), "stat", stat.S_ISREG(os.stat("link").st_mode))
print("readlink", os.readlink("link"), os.readlink("dirlink"))
print("listdir_nofollow", os.path.islink("dirlink"), sorted(os.listdir("dirlink")))
os.lchown("link", os.getuid(), os.getgid())
print("lchown ok")
os.rename("link", "moved")
print("rename", sorted(os.listdir(".")))
os.unlink("moved")
print("unlink", sorted(os.listdir(".")))
print("rm", subprocess.run(["rm", "dirlink"]).returncode, sorted(os.listdir(".")))
'''


def test_no_follow_calls_act_on_the_link_not_its_target(who, deb: Path, work: Path) -> None:
    who.make_file(work / "target", "T\n")
    who.make_file(work / "dir" / "inner", "I\n")
    os.symlink("target", work / "link")
    os.symlink("dir", work / "dirlink")
    for name in ("link", "dirlink"):
        who.own(work / name)
    r = in_root(who, deb, [PY, "-c", NOFOLLOW_CODE], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == [
        "lstat True stat True",
        "readlink target dir",
        "listdir_nofollow True ['inner']",
        "lchown ok",
        "rename ['dir', 'dirlink', 'moved', 'target']",
        "unlink ['dir', 'dirlink', 'target']",
        "rm 0 ['dir', 'target']",
    ], show(r)
    assert (work / "target").read_text() == "T\n" and (work / "dir" / "inner").read_text() == "I\n"
    assert sorted(os.listdir(work)) == ["dir", "target"]


def test_an_absolute_symlink_in_a_mounted_directory_resolves_in_the_guest_root(who, deb: Path, work: Path) -> None:
    # /etc/debian_version differs between the host and the root; the link is resolved as a chroot would
    os.symlink("/etc/debian_version", work / "abs")
    os.symlink("/usr", work / "absdir")
    r = in_root(who, deb, ["sh", "-c", "cat /work/abs; ls /work/absdir/; ln -s /etc/debian_version /work/new; "
                                       "cat /work/new; cd /work/absdir/lib && pwd -P"], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    version = guest_file(deb, "/etc/debian_version")
    usr = "".join(f"{n}\n" for n in sorted(os.listdir(deb / "usr")))
    assert r.stdout == version + usr + version + "/usr/lib\n", show(r)
    assert os.readlink(work / "new") == "/etc/debian_version"


# --- 5. exec ------------------------------------------------------------------------------------------

def test_path_search_happens_inside_the_root(who, deb: Path, scratch: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", "command -v ls; ls / >/dev/null && echo ran"])
    assert (r.returncode, r.stdout) == (0, "/usr/bin/ls\nran\n"), show(r)
    # candidates that exist only on the host, or nowhere, are skipped (ENOENT), not run
    hostbin = scratch / "hostbin"
    hostbin.mkdir()
    (hostbin / "ls").write_text("#!/bin/sh\necho HOST-LS\n")
    (hostbin / "ls").chmod(0o755)
    hostbin.chmod(0o755)
    r = in_root(who, deb, ["ls", "/usr"], "--env", f"PATH={hostbin}:/nonexistent:/usr/bin")
    assert r.returncode == 0, show(r)
    assert "HOST-LS" not in r.stdout and r.stdout.split() == sorted(os.listdir(deb / "usr")), show(r)
    r = in_root(who, deb, ["sh", "-c", "command -v ls; ls /usr >/dev/null && echo ran"],
                "--env", f"PATH={hostbin}:/nonexistent:/usr/bin")
    assert (r.returncode, r.stdout) == (0, "/usr/bin/ls\nran\n"), show(r)


def test_argv0_is_what_the_caller_passed(who, deb: Path, bb: Path) -> None:
    inner = 'import sys; print(sys.orig_argv[0] if hasattr(sys, "orig_argv") else sys.argv[0])'
    r = in_root(who, deb, [PY, "-c", f'import os; os.execv("/usr/bin/python3", ["custom0", "-c", {inner!r}])'])
    assert (r.returncode, r.stdout) == (0, "custom0\n"), show(r)
    # busybox picks its applet from argv[0]: each symlink name must reach it unchanged
    r = in_root(who, bb, ["sh", "-c", "/bin/echo via-echo; basename /a/b/c; exec -a echo /bin/busybox via-a"])
    assert (r.returncode, r.stdout) == (0, "via-echo\nc\nvia-a\n"), show(r)


def musl_root(src: Path, dest: Path, musl: Dict[str, Path], with_loader: bool) -> Path:
    """A busybox copy with hello-dynamic at /bin/hello and at /bin/hello-opt (interpreter /opt/ld-musl...).

    With the loader: /lib/ld-musl-x86_64.so.1 is an absolute symlink to musl's libc at its real path
    (as on the host), and /opt/ld-musl-x86_64.so.1, a path the host does not have, is a copy of it.
    """
    root = copy_root(src, dest)
    hello = musl["hello-dynamic"].read_bytes()
    interp = rootfs.elf_interpreter(musl["hello-dynamic"])
    assert interp == "/lib/ld-musl-x86_64.so.1"
    patched = hello.replace(b"/lib/ld-musl-x86_64.so.1\0", b"/opt/ld-musl-x86_64.so.1\0", 1)
    for name, data in (("hello", hello), ("hello-opt", patched)):
        (root / "bin" / name).write_bytes(data)
        (root / "bin" / name).chmod(0o755)
    assert rootfs.elf_interpreter(root / "bin/hello-opt") == "/opt/ld-musl-x86_64.so.1"
    if with_loader:
        libc = rootfs.libc_musl()
        real = root / str(libc).lstrip("/")
        real.parent.mkdir(parents=True)
        shutil.copy(libc, real)
        (root / "lib").mkdir()
        os.symlink(str(libc), root / "lib/ld-musl-x86_64.so.1")
        (root / "opt").mkdir()
        shutil.copy(libc, root / "opt/ld-musl-x86_64.so.1")
        for d in (root / "lib", root / "opt", *[p for p in real.parents if str(p).startswith(str(root) + "/")]):
            d.chmod(0o755)
    return root


def test_a_dynamic_musl_binary_runs_with_the_roots_own_interpreter(who, busybox_shared: Path, scratch: Path,
                                                                    musl: Dict[str, Path]) -> None:
    assert not Path("/opt/ld-musl-x86_64.so.1").exists(), "the host must not have the patched interpreter"
    root = musl_root(busybox_shared, scratch / "with", musl, with_loader=True)
    for prog in ("/bin/hello", "/bin/hello-opt"):
        r = in_root(who, root, [prog])
        assert (r.returncode, r.stdout) == (0, "hello from musl\n"), f"{prog}:\n{show(r)}"


def test_a_dynamic_binary_fails_when_the_root_lacks_its_interpreter(who, busybox_shared: Path, scratch: Path,
                                                                    musl: Dict[str, Path]) -> None:
    assert rootfs.musl_loader().exists()  # the host has it: the root's view must not borrow it
    root = musl_root(busybox_shared, scratch / "without", musl, with_loader=False)
    r = in_root(who, root, ["/bin/hello"])
    assert r.returncode == 127, show(r)
    assert "hello from musl" not in r.stdout
    r = in_root(who, root, ["sh", "-c", "/bin/hello; echo rc=$?"])
    assert r.stdout == "rc=127\n" and "hello from musl" not in r.stdout, show(r)
    assert_no_host_path(r, root)


def test_shebang_scripts_run_the_roots_interpreter(who, bb: Path) -> None:
    assert not Path("/opt/bin/sh").exists(), "the host must not have /opt/bin/sh"
    (bb / "opt/bin").mkdir(parents=True)
    shutil.copy(bb / "bin/busybox", bb / "opt/bin/sh")  # busybox runs its "sh" applet by that name
    for d in (bb / "opt", bb / "opt/bin"):
        d.chmod(0o755)
    body = 'echo script "$0" "$1"; readlink /proc/$$/exe\n'
    for name, interp in (("s1", "/bin/sh"), ("s2", "/opt/bin/sh")):
        (bb / "bin" / name).write_text(f"#!{interp}\n{body}")
        (bb / "bin" / name).chmod(0o755)
    r = in_root(who, bb, ["/bin/s1", "a1"])
    assert (r.returncode, r.stdout) == (0, "script /bin/s1 a1\n/bin/busybox\n"), show(r)
    r = in_root(who, bb, ["/bin/s2", "a2"])
    assert (r.returncode, r.stdout) == (0, "script /bin/s2 a2\n/opt/bin/sh\n"), show(r)
    r = in_root(who, bb, ["sh", "-c", "s2 a3"])  # found through PATH, inside the root
    assert (r.returncode, r.stdout) == (0, "script /bin/s2 a3\n/opt/bin/sh\n"), show(r)
    assert_no_host_path(r, bb)


FAILED_EXEC_CODE = r'''
import errno, os
for path in ("/nonexistent", "/etc/debian_version", "/etc", "/usr/bin/nosuch", "/etc/debian_version/x"):
    try:
        os.execv(path, [path, "arg"])
    except OSError as e:
        print(path, errno.errorcode[e.errno])
data = {i: str(i) for i in range(100000)}
print("alive", sum(data), len("".join(data.values())), os.getcwd())
'''


def test_a_failed_exec_leaves_the_caller_intact(who, deb: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", "nosuch; echo still-here"])
    assert (r.returncode, r.stdout) == (0, "still-here\n"), show(r)
    assert "nosuch: not found" in r.stderr, show(r)
    r = in_root(who, deb, [PY, "-c", FAILED_EXEC_CODE])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["/nonexistent ENOENT", "/etc/debian_version EACCES", "/etc EACCES",
                                     "/usr/bin/nosuch ENOENT", "/etc/debian_version/x ENOTDIR",
                                     "alive 4999950000 488890 /"], show(r)


def test_the_exec_fd_does_not_stay_open_in_the_new_program(who, deb: Path) -> None:
    code = 'import os; print(sorted(os.listdir("/proc/self/fd"), key=int))'
    r = in_root(who, deb, [PY, "-c", code])
    assert (r.returncode, r.stdout) == (0, "['0', '1', '2', '3']\n"), show(r)
    # an exec made inside the sandbox, from Python and from a shell
    r = in_root(who, deb, [PY, "-c", 'import os; os.execv("/usr/bin/ls", ["ls", "/proc/self/fd"])'])
    assert (r.returncode, r.stdout) == (0, "0\n1\n2\n3\n"), show(r)
    r = in_root(who, deb, ["sh", "-c", "ls /proc/self/fd; exec ls /proc/self/fd"])
    assert (r.returncode, r.stdout) == (0, "0\n1\n2\n3\n" * 2), show(r)


EXEC_RACE_CODE = r'''
import ctypes, os, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
host, guest = sys.argv[1].encode(), b"/usr/bin/true"
size = max(len(host), len(guest)) + 1
for attempt in range(int(sys.argv[2])):
    pid = os.fork()
    if pid == 0:
        path = ctypes.create_string_buffer(size)
        a, b = ctypes.create_string_buffer(host, size), ctypes.create_string_buffer(guest, size)
        def flip():
            while True:
                ctypes.memmove(path, a, size)
                ctypes.memmove(path, b, size)
        threading.Thread(target=flip, daemon=True).start()
        argv = (ctypes.c_char_p * 2)(b"racer", None)
        envp = (ctypes.c_char_p * 1)(None)
        for i in range(20):
            libc.execve(path, argv, envp)
        os._exit(0)
    os.waitpid(pid, 0)
print("done")
'''


def test_a_thread_rewriting_the_exec_path_cannot_run_a_host_program(who, deb: Path, scratch: Path) -> None:
    # the host program exists only outside the root; /usr/bin/true exists in both
    hostprog = who.make_file(scratch / "outside" / "hostprog", f"#!/bin/sh\necho {SECRET}\n", 0o755)
    (scratch / "outside").chmod(0o755)
    r = in_root(who, deb, [PY, "-c", EXEC_RACE_CODE, str(hostprog), "100"], timeout=120)
    assert (r.returncode, r.stdout) == (0, "done\n"), show(r)
    assert SECRET not in r.stdout + r.stderr, show(r)


def test_fexecve_of_an_fd_opened_in_the_root_runs_it(who, deb: Path) -> None:
    code = ('import os; fd = os.open("/usr/bin/echo", os.O_RDONLY); '
            'os.execve(fd, ["echo", "fexecve-ok"], {})')
    r = in_root(who, deb, [PY, "-c", code])
    assert (r.returncode, r.stdout) == (0, "fexecve-ok\n"), show(r)


SPAWN_CODE = r'''
import os, subprocess
shown = [os.system("echo sys") for i in range(3)] + [subprocess.run(["echo", "x"]).returncode for i in range(3)]
# a spawn right after the previous one: the parent's memory must already be as it was
system = [i for i in range(300) if os.system(":") != 0]
run = [i for i in range(100) if subprocess.run(["true"]).returncode != 0]
# the path string the parent handed to posix_spawn (an immutable bytes object) stays as it was
path = b"/usr/bin/true"
spawned = []
for i in range(5):
    try:
        spawned.append(os.waitpid(os.posix_spawn(path, [b"true"], {}), 0)[1])
    except (OSError, ValueError) as e:
        spawned.append(type(e).__name__)
intact = path == b"/usr/bin/" + b"true"
out = subprocess.run(["cat", "/etc/debian_version"], capture_output=True, text=True).stdout.strip()
print("shown", shown, "failed", system, run, "posix_spawn", spawned, intact, "out", out)
'''


def test_system_and_subprocess_work_again_and_again_in_one_process(who, deb: Path) -> None:
    # posix_spawn and subprocess use vfork: the child's exec must not change the parent's memory
    r = in_root(who, deb, [PY, "-c", SPAWN_CODE])
    assert r.returncode == 0, show(r)
    version = guest_file(deb, "/etc/debian_version").strip()
    last = f"shown {[0] * 6} failed [] [] posix_spawn {[0] * 5} True out {version}"
    assert r.stdout.splitlines() == ["sys"] * 3 + ["x"] * 3 + [last], show(r)


# --- 6. virtual cwd and identity ----------------------------------------------------------------------

def test_pwd_and_getcwd_print_virtual_paths_short_and_long(who, deb: Path, work: Path) -> None:
    parts = [f"{i}-" + "x" * 46 for i in range(6)]  # /work/... is 300 characters long
    long_host = work.joinpath(*parts)
    for i in range(1, len(parts) + 1):
        who.make_dir(work.joinpath(*parts[:i]))
    long_virtual = "/work/" + "/".join(parts)
    assert len(long_virtual) >= 200
    script = ("cd /usr/lib && pwd && /bin/pwd -P; cd /tmp && /bin/pwd -P; cd / && /bin/pwd -P; "
              f"cd {long_virtual} && /bin/pwd -P && python3 -c 'import os; print(os.getcwd())' && "
              "readlink /proc/self/cwd; cd .. && /bin/pwd -P")
    r = in_root(who, deb, ["sh", "-c", script], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["/usr/lib", "/usr/lib", "/tmp", "/", long_virtual, long_virtual,
                                     long_virtual, long_virtual.rsplit("/", 1)[0]], show(r)
    assert long_host.is_dir()
    assert_no_host_path(r, deb, work)


IDENTITY_CODE = r'''
import os
fd = os.open("/etc/debian_version", os.O_RDONLY)
sh = os.open("/bin/sh", os.O_RDONLY)
for p in ("/proc/self/cwd", "/proc/self/exe", "/proc/self/fd/%d" % fd, "/proc/self/fd/%d" % sh, "/proc/self/root"):
    print(os.readlink(p))
print(os.getcwd())
print(os.path.realpath("."))
print(os.path.realpath("/proc/self/fd/%d" % fd))
'''


def test_cwd_option_and_proc_self_links_show_virtual_paths(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", IDENTITY_CODE], "--cwd", "/usr/share")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["/usr/share", python_version_name(deb), "/etc/debian_version",
                                     "/usr/bin/dash", "/", "/usr/share", "/usr/share",
                                     "/etc/debian_version"], show(r)
    assert_no_host_path(r, deb)
    r = in_root(who, deb, ["sh", "-c", "cat /nosuch; cd /nosuch; ls /etc/nosuch; readlink -f /bin/sh; "
                                       "realpath /usr/lib/../bin/ls"])
    assert r.stdout == "/usr/bin/dash\n/usr/bin/ls\n", show(r)
    assert r.stderr.count("No such file or directory") + r.stderr.count("can't cd to") >= 3, show(r)
    assert_no_host_path(r, deb)


# --- 7. policy in virtual terms -------------------------------------------------------------------------

def test_nothing_in_the_root_is_writable_without_a_write_rule(who, bb: Path) -> None:
    before = tree_snapshot(bb)
    probes = ["touch /tmp/x", "echo y > /tmp/y", "mkdir /tmp/d", "rm /etc/group", "mv /etc/group /etc/g2",
              "ln -s x /tmp/l", "chmod 600 /etc/passwd", "chown 0:0 /etc/passwd", "touch -c /etc/passwd",
              "truncate -s 0 /etc/passwd"]
    r = in_root(who, bb, ["sh", "-c", "; ".join(f"{p}; echo rc=$?" for p in probes)])
    codes = [line for line in r.stdout.splitlines() if line.startswith("rc=")]
    assert len(codes) == len(probes) and "rc=0" not in codes, show(r)
    assert "Permission denied" in r.stderr, show(r)
    assert tree_snapshot(bb) == before, "a file of the root changed without a write rule"


def test_a_write_rule_makes_only_that_directory_writable(who, bb: Path) -> None:
    who.make_dir(bb / "tmp/sub", 0o755)
    r = in_root(who, bb, ["sh", "-c", "echo in > /tmp/sub/in; echo rc=$?; echo out > /tmp/out; echo rc=$?; "
                                      "echo etc > /etc/out; echo rc=$?"], "-w", "/tmp/sub")
    assert r.stdout.splitlines()[0] == "rc=0", show(r)
    assert "rc=0" not in r.stdout.splitlines()[1:], show(r)
    assert r.stderr.count("Permission denied") == 2, show(r)
    assert (bb / "tmp/sub/in").read_text() == "in\n"
    assert not (bb / "tmp/out").exists() and not (bb / "etc/out").exists()


def test_fs_deny_names_guest_paths_and_holds_against_links_and_dot_dot(who, bb: Path) -> None:
    (bb / "etc/secret").write_text(SECRET + "\n")
    (bb / "srv/vault").mkdir(parents=True)
    (bb / "srv/vault/deep").write_text(SECRET + "\n")
    for p in (bb / "srv", bb / "srv/vault"):
        p.chmod(0o755)
    for p in (bb / "etc/secret", bb / "srv/vault/deep"):
        p.chmod(0o644)
    os.symlink("/etc/secret", bb / "tmp/abs-link")
    os.symlink("../etc/secret", bb / "tmp/rel-link")
    reads = ["cat /etc/secret", "cat /srv/vault/deep", "ls /srv/vault", "cat /tmp/abs-link", "cat /tmp/rel-link",
             "cat /tmp/../etc/secret", "cd /etc && cat secret", "stat -c %s /etc/secret"]
    r = in_root(who, bb, ["sh", "-c", "cat /etc/passwd; " + "; ".join(f"{c}; echo rc=$?" for c in reads)],
                "--fs-deny", "/etc/secret", "--fs-deny", "/srv/vault")
    assert r.stdout.startswith(guest_file(bb, "/etc/passwd")), show(r)
    assert SECRET not in r.stdout and "deep" not in r.stdout, show(r)
    codes = [line for line in r.stdout.splitlines() if line.startswith("rc=")]
    assert len(codes) == len(reads) and "rc=0" not in codes, show(r)
    assert r.stderr.count("Permission denied") == len(reads), show(r)


def test_created_files_get_the_mode_and_umask_of_the_command(who, bb: Path) -> None:
    r = in_root(who, bb, ["sh", "-c", "umask 027; touch /tmp/f; mkdir /tmp/d; umask 077; echo > /tmp/g"],
                "-w", "/tmp")
    assert r.returncode == 0, show(r)
    modes = {n: (bb / "tmp" / n).stat().st_mode & 0o7777 for n in ("f", "d", "g")}
    assert modes == {"f": 0o640, "d": 0o750, "g": 0o600}
    assert {(bb / "tmp" / n).stat().st_uid for n in ("f", "d", "g")} == {who.uid}


def test_read_rules_name_guest_paths_and_without_the_default_view_limit_what_is_readable(who, bb: Path) -> None:
    r = in_root(who, bb, ["sh", "-c", "cat /etc/group; ls /usr; echo rc=$?"], "--no-default-view",
                "-r", "/bin", "-r", "/etc")
    assert r.stdout == guest_file(bb, "/etc/group") + "rc=1\n", show(r)
    assert "Permission denied" in r.stderr, show(r)


def test_read_rules_in_a_root_add_to_the_whole_root(who, bb: Path) -> None:
    r = in_root(who, bb, ["sh", "-c", "cat /etc/group; ls /usr >/dev/null; echo rc=$?"], "-r", "/bin", "-r", "/etc")
    assert r.stdout == guest_file(bb, "/etc/group") + "rc=0\n", show(r)


# --- 8. /dev and /proc -------------------------------------------------------------------------------

DEV_SCRIPT = """cat /dev/null; echo rc=$?
echo gone > /dev/null; echo rc=$?
head -c 4 /dev/urandom | wc -c
head -c 4 /dev/random | wc -c
head -c 5 /dev/zero | tr '\\0' z; echo
ls /dev/fd/
echo hi | cat /dev/stdin
{ echo to-stdout > /dev/stdout; } | cat
{ echo to-stderr > /dev/stderr; } 2>&1 | cat
ls /nosuch 2>/dev/null; echo rc=$?
python3 -c 'import errno, os
try: os.write(os.open("/dev/full", os.O_WRONLY), b"x")
except OSError as e: print("full", errno.errorcode[e.errno])'
"""


def test_dev_offers_null_zero_full_random_urandom_fd_and_std_streams(who, deb: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", DEV_SCRIPT])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["rc=0", "rc=0", "4", "4", "zzzzz", "0", "1", "2", "3", "hi", "to-stdout",
                                     "to-stderr", "rc=2", "full ENOSPC"], show(r)
    assert r.stderr == "", show(r)


def test_dev_shm_is_writable_private_and_multiprocessing_works(who, deb: Path) -> None:
    name = f"sandlock-probe-{uuid.uuid4().hex[:12]}"
    r = in_root(who, deb, ["sh", "-c", f"echo s > /dev/shm/{name} && cat /dev/shm/{name} && ls /dev/shm"])
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "s" and name in r.stdout.split(), show(r)
    assert not Path("/dev/shm", name).exists(), "the sandbox wrote the host's /dev/shm"
    assert not (deb / "dev/shm" / name).exists()
    r = in_root(who, deb, ["ls", "/dev/shm"])
    assert r.returncode == 0 and name not in r.stdout.split(), f"/dev/shm outlived its sandbox:\n{show(r)}"
    r = in_root(who, deb, [PY, "-c", 'import multiprocessing as m; l = m.Lock(); l.acquire(); print("lock")'])
    assert (r.returncode, r.stdout) == (0, "lock\n"), show(r)


PROC_CODE = r'''
import errno, json, os, sys

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        return errno.errorcode[e.errno]

pids = [e for e in os.listdir("/proc") if e.isdigit()]
print(json.dumps({
    "status": read("/proc/self/status").splitlines()[0],
    "comm": read("/proc/self/comm").strip(),
    "maps_exe": sorted({l.split()[-1] for l in read("/proc/self/maps").splitlines()
                        if l.split()[-1].rsplit("/", 1)[-1] == sys.argv[2].rsplit("/", 1)[-1]}),
    "mountinfo": read("/proc/self/mountinfo"),
    "maps": read("/proc/self/maps"),
    "self_listed": str(os.getpid()) in pids,
    "init_listed": "1" in pids,
    "runner_listed": sys.argv[1] in pids,
    "init_environ": read("/proc/1/environ"),
    "runner_cmdline": read("/proc/%s/cmdline" % sys.argv[1]),
}))
'''


def test_proc_self_status_maps_and_mountinfo_show_guest_names(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", PROC_CODE, str(os.getpid()), python_version_name(deb)])
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    # as in a chroot: the name is the one exec'd (/usr/bin/python3), the mapping the file behind it
    assert (got["status"], got["comm"]) == ("Name:\tpython3", "python3"), show(r)
    assert got["maps_exe"] == [python_version_name(deb)], show(r)
    assert got["mountinfo"] not in ("ENOENT", "EACCES") and got["maps"] not in ("ENOENT", "EACCES"), show(r)
    assert_no_host_path(r, deb)
    r = in_root(who, deb, ["sh", "-c", "cat /proc/self/maps; cat /proc/self/mountinfo"])
    assert r.returncode == 0, show(r)
    assert any(line.endswith(" /usr/bin/cat") for line in r.stdout.splitlines()), show(r)
    assert_no_host_path(r, deb)


def test_proc_lists_only_the_sandboxs_processes(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", PROC_CODE, str(os.getpid()), python_version_name(deb)])
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    assert got["self_listed"], show(r)
    assert got["init_environ"] in ("ENOENT", "EACCES"), show(r)
    assert got["runner_cmdline"] in ("ENOENT", "EACCES"), show(r)
    assert not got["init_listed"] and not got["runner_listed"], f"/proc lists processes outside:\n{show(r)}"
    r = in_root(who, deb, ["ps", "-e", "-o", "comm="])
    assert (r.returncode, r.stdout.split()) == (0, ["ps"]), show(r)


# --- 9. listings ----------------------------------------------------------------------------------------

LISTING_CODE = r'''
import json, os, sys
out = {"many": len(list(os.scandir("/work/many"))),
       "many_names": sorted(e.name for e in os.scandir("/work/many")) == sorted(json.loads(sys.argv[1])),
       "usr_bin": sorted(os.listdir("/usr/bin"))}
# the same fd number, reused for another directory, lists that directory
a = os.open("/etc", os.O_RDONLY | os.O_DIRECTORY)
etc = sorted(os.listdir(a))
os.close(a)
b = os.open("/usr", os.O_RDONLY | os.O_DIRECTORY)
out["same_fd"] = a == b
out["etc"] = etc
out["usr"] = sorted(os.listdir(b))
out["by_path"] = [sorted(os.listdir(p)) for p in ("/etc", "/usr", "/")]
print(json.dumps(out))
'''


def test_listings_come_from_the_root_reach_eof_and_never_go_stale(who, deb: Path, work: Path) -> None:
    many = who.make_dir(work / "many")
    names = [f"{i:03d}-" + "n" * 200 for i in range(300)]  # ~70 KiB of entries: several getdents calls
    for n in names:
        (many / n).write_bytes(b"")
    r = in_root(who, deb, [PY, "-c", LISTING_CODE, json.dumps(names)], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    assert (got["many"], got["many_names"]) == (300, True), show(r)
    listing = {p: sorted(os.listdir(deb / p.lstrip("/"))) for p in ("/etc", "/usr", "/usr/bin")}
    assert got["usr_bin"] == listing["/usr/bin"]
    assert got["same_fd"] and got["etc"] == listing["/etc"] and got["usr"] == listing["/usr"], show(r)
    assert got["by_path"][:2] == [listing["/etc"], listing["/usr"]]
    assert set(got["by_path"][2]) - {"work"} == set(os.listdir(deb)), show(r)
    r = in_root(who, deb, ["ls", "-a", "/"])
    assert r.returncode == 0, show(r)
    assert r.stdout.split() == [".", ".."] + sorted(os.listdir(deb)), show(r)


# --- 10. root and the user --------------------------------------------------------------------------------

def test_a_root_only_file_is_readable_by_root_only_as_on_a_real_system(who, bb: Path) -> None:
    (bb / "etc/rootonly").write_text(SECRET + "\n")
    os.chown(bb / "etc/rootonly", 0, 0)
    (bb / "etc/rootonly").chmod(0o600)
    r = in_root(who, bb, ["sh", "-c", "id -u; cat /etc/rootonly"])
    if who.name == "root":
        assert (r.returncode, r.stdout) == (0, f"0\n{SECRET}\n"), show(r)
    else:
        assert (r.returncode, r.stdout) == (1, f"{who.uid}\n"), show(r)
        assert "Permission denied" in r.stderr, show(r)


# --- 11. bad input --------------------------------------------------------------------------------------------

def test_a_missing_root_exits_125_naming_it(who, scratch: Path) -> None:
    missing = scratch / "no-such-root"
    r = who.run(["--root", str(missing), "--", "true"])
    assert r.returncode == 125, show(r)
    assert str(missing) in one_line(r)


def test_a_root_that_is_a_regular_file_exits_125_naming_it(who, scratch: Path) -> None:
    plain = who.make_file(scratch / "plain-file", "x\n")
    r = who.run(["--root", str(plain), "--", "true"])
    assert r.returncode == 125, show(r)
    assert str(plain) in one_line(r)


@pytest.mark.parametrize("command", [["/nosuch"], ["nosuch-command"], ["/usr/bin/python3", "-c", "1"],
                                     ["python3", "-c", "1"]])
def test_a_command_missing_in_the_root_exits_127(who, bb: Path, command: List[str]) -> None:
    # python3 exists on the host, not in the busybox root
    r = in_root(who, bb, command)
    assert r.returncode == 127, show(r)
    assert command[0] in one_line(r)
    assert_no_host_path(r, bb)


def test_a_command_that_is_not_executable_exits_126(who, bb: Path) -> None:
    (bb / "bin/noexec").write_text("#!/bin/sh\necho ran\n")
    (bb / "bin/noexec").chmod(0o644)
    r = in_root(who, bb, ["/bin/noexec"])
    assert (r.returncode, r.stdout) == (126, ""), show(r)
    assert "/bin/noexec" in one_line(r)
    assert_no_host_path(r, bb)


@pytest.mark.parametrize("option", ["-w", "-r", "--fs-deny", "--cwd", "--fs-mount"])
def test_a_policy_path_missing_in_the_root_exits_125_naming_it(who, deb: Path, work: Path, option: str) -> None:
    # the work directory exists on the host, not in the root: policy paths are virtual
    path = {"-w": "/nosuch-dir", "-r": str(work), "--fs-deny": "/etc/nosuch", "--cwd": str(work),
            "--fs-mount": f"/data:{work}/nosuch-host-dir"}[option]
    r = in_root(who, deb, ["sh", "-c", "echo ran"], option, path)
    assert (r.returncode, r.stdout) == (125, ""), show(r)
    assert path.split(":")[-1] in one_line(r)


def test_a_symlink_loop_in_the_root_gives_eloop(who, bb: Path) -> None:
    os.symlink("b", bb / "a")
    os.symlink("a", bb / "b")
    r = in_root(who, bb, ["cat", "/a"])
    assert r.returncode != 0 and r.stdout == "", show(r)
    assert "Too many levels of symbolic links" in r.stderr, show(r)
    assert_no_host_path(r, bb)


def test_a_root_symlink_to_slash_lists_the_guest_root(who, bb: Path) -> None:
    os.symlink("/", bb / "host")
    r = in_root(who, bb, ["ls", "/host/"])
    assert (r.returncode, r.stdout.split()) == (0, sorted(os.listdir(bb))), show(r)
    r = in_root(who, bb, ["sh", "-c", "cat /host/etc/passwd"])
    assert (r.returncode, r.stdout) == (0, guest_file(bb, "/etc/passwd")), show(r)


UNIX_SOCKET_CODE = r'''
import os, socket, stat, threading
os.umask(0o027)
server = socket.socket(socket.AF_UNIX)
server.bind("/work/sock")
server.listen()
print("mode", oct(stat.S_IMODE(os.stat("/work/sock").st_mode)), stat.S_ISSOCK(os.stat("/work/sock").st_mode))
print("name", server.getsockname())
def serve():
    conn, _ = server.accept()
    conn.sendall(conn.recv(16).upper())
    conn.close()
threading.Thread(target=serve).start()
os.chdir("/work")
client = socket.socket(socket.AF_UNIX)
client.connect("sock")                       # relative to the virtual cwd
client.sendall(b"ping")
print("reply", client.recv(16), "peer", client.getpeername())
dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
dgram.bind("dg")
socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM).sendto(b"datagram", "/work/dg")
print("dgram", dgram.recv(16))
try:
    socket.socket(socket.AF_UNIX).bind("/etc/sock")
except OSError as e:
    print("etc", e.errno)
'''


def test_unix_sockets_with_pathnames_live_in_the_guest_tree(who, deb: Path, work: Path) -> None:
    r = in_root(who, deb, [PY, "-c", UNIX_SOCKET_CODE], "--fs-mount", f"/work:{work}")
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["mode 0o750 True", "name /work/sock", "reply b'PING' peer /work/sock",
                                     "dgram b'datagram'", "etc 13"], show(r)
    assert stat.S_ISSOCK((work / "sock").lstat().st_mode) and stat.S_ISSOCK((work / "dg").lstat().st_mode)
    assert not (deb / "etc/sock").exists()
    assert_no_host_path(r, deb, work)
