"""Kernel pools and locks (issue 10 item 7): what a sandboxed command may take from the host.

Each probe runs INSIDE a sandbox, as root and as the unprivileged user (the
`who` fixture), in host mode (the system python, `-r` on the system
directories, a read-only directory R and a writable directory W) and, where
paths matter, in an emulated root (the Debian rootfs, R and W mounted as
/r (read-only) and /w).  The test process itself plays the host: it takes or
tries the conflicting lock, opens the file for writing, connects to the name
the sandbox bound.  Every probe has a control where the same call is allowed.

1. locks and leases: flock, POSIX record locks, OFD locks on a file the
   command may only read are refused (EACCES) and never hold up the host;
   on a writable file they work and conflict with the host as locks do;
   leases are refused everywhere; sqlite3 and fcntl.lockf still work;
2. io_setup (the system-wide AIO event pool) is refused with ENOSYS;
3. inotify instances are capped per sandbox (EMFILE beyond 32);
4. abstract unix names the sandbox binds live in a private per-run
   namespace: host clients cannot reach them, the sandbox's own processes can;
5. SOCK_PACKET, memfd_secret, sysfs(2) and pidfd_open of a non-member are refused.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import socket
import struct
import subprocess
import time
from pathlib import Path
from typing import List, NamedTuple, Optional

import pytest

from conftest import SYSTEM_PYTHON, SYSTEM_READ, unique_marker

GUEST_PYTHON = "/usr/bin/python3"  # inside the Debian rootfs
RUN_TIMEOUT = 60
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_SETLEASE, F_GETLEASE = 1024, 1025
FLOCK = struct.Struct("=hh4xqqi4x")  # struct flock on x86_64 and aarch64


class Box(NamedTuple):
    options: List[str]
    python: str
    r: str            # the read-only directory as the command names it
    w: str            # the writable directory as the command names it
    host_r: Path
    host_w: Path


@pytest.fixture(params=["host", "root"])
def box(request: pytest.FixtureRequest, who, scratch: Path) -> Box:  # type: ignore[no-untyped-def]
    rdir = who.make_dir(scratch / "r", 0o755)
    wdir = who.make_dir(scratch / "w", 0o777)
    if request.param == "host":
        return Box([*SYSTEM_READ, "-r", str(rdir), "-w", str(wdir)], SYSTEM_PYTHON, str(rdir), str(wdir), rdir, wdir)
    deb = request.getfixturevalue("deb_root")
    return Box(["--root", str(deb), "--fs-mount", f"/r:{rdir}:ro", "--fs-mount", f"/w:{wdir}"], GUEST_PYTHON,
               "/r", "/w", rdir, wdir)


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"


# --- 1. locks and leases -------------------------------------------------------------------------

LOCKER = r"""
import errno, fcntl, os, struct, sys, time
path, kind, release = sys.argv[1], sys.argv[2], sys.argv[3]
FLOCK = struct.Struct("=hh4xqqi4x")
fd = os.open(path, os.O_RDWR if kind.startswith("posix_wr") else os.O_RDONLY)
def take():
    if kind == "flock_sh_nb": fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    elif kind == "flock_ex_nb": fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    elif kind == "flock_sh": fcntl.flock(fd, fcntl.LOCK_SH)
    elif kind == "flock_ex": fcntl.flock(fd, fcntl.LOCK_EX)
    elif kind == "posix_rd": fcntl.fcntl(fd, fcntl.F_SETLK, FLOCK.pack(fcntl.F_RDLCK, 0, 0, 0, 0))
    elif kind == "posix_rd_wait": fcntl.fcntl(fd, fcntl.F_SETLKW, FLOCK.pack(fcntl.F_RDLCK, 0, 0, 0, 0))
    elif kind == "posix_wr": fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    elif kind == "ofd_rd": fcntl.fcntl(fd, 37, FLOCK.pack(fcntl.F_RDLCK, 0, 0, 0, 0))
    elif kind == "ofd_rd_wait": fcntl.fcntl(fd, 38, FLOCK.pack(fcntl.F_RDLCK, 0, 0, 0, 0))
    elif kind == "lease_rd": fcntl.fcntl(fd, 1024, fcntl.F_RDLCK)
    else: raise SystemExit("unknown kind " + kind)
try:
    take()
    print("LOCKED", flush=True)
except OSError as exc:
    print("REFUSED", errno.errorcode.get(exc.errno, exc.errno), flush=True)
    raise SystemExit(0)
deadline = time.monotonic() + 30
while not os.path.exists(release) and time.monotonic() < deadline:
    time.sleep(0.02)
print("RELEASED", flush=True)
"""

KINDS = ["flock_sh_nb", "flock_ex_nb", "flock_sh", "flock_ex", "posix_rd", "posix_rd_wait", "ofd_rd", "ofd_rd_wait"]


def host_conflicts(path: Path, kind: str) -> Optional[str]:
    """Try, from the host (this test process, never blocking), what a lock of `kind`
    held by the sandbox must hold up; the errno name if held up, None if it went through."""
    fd = os.open(path, os.O_RDWR)
    try:
        if kind.startswith("flock"):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        elif kind.startswith("lease"):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))  # breaks a lease: EWOULDBLOCK while held
        else:  # a POSIX write lock of this process conflicts with any lock of another owner
            fcntl.fcntl(fd, fcntl.F_SETLK, FLOCK.pack(fcntl.F_WRLCK, 0, 0, 0, 0))
        return None
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc.errno))
    finally:
        os.close(fd)  # drops this process's own locks


def first_line(p: subprocess.Popen, timeout: float = 20) -> str:
    """The first line the sandbox prints, or '' after `timeout` seconds (no hang)."""
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    return p.stdout.readline().strip() if ready else ""


def run_locker(who, box: Box, directory: str, host_dir: Path, kind: str):  # type: ignore[no-untyped-def]
    """Start the locker in the sandbox on DIR/f; (popen, first line, release file)."""
    (box.host_w / "release").unlink(missing_ok=True)
    release = f"{box.w}/release"
    p = who.popen([*box.options, "--", box.python, "-c", LOCKER, f"{directory}/f", kind, release])
    line = first_line(p)
    return p, line, box.host_w / "release"


def finish(p: subprocess.Popen, release: Path, who) -> str:  # type: ignore[no-untyped-def]
    release.write_text("")
    who.own(release)
    try:
        out, err = p.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return f"exit {p.returncode} stdout {out!r} stderr {err[-2000:]!r}"


@pytest.mark.parametrize("kind", KINDS + ["lease_rd"])
def test_a_lock_on_a_file_the_command_may_only_read_is_refused_and_never_holds_up_the_host(who, box: Box,
                                                                                             kind: str) -> None:
    target = who.make_file(box.host_r / "f", "read only\n", 0o644)
    p, line, release = run_locker(who, box, box.r, box.host_r, kind)
    try:
        held = host_conflicts(target, kind)
    finally:
        rest = finish(p, release, who)
    assert line == "REFUSED EACCES", f"ESCAPE: the sandbox took {kind} on a read-only file: {line!r}; {rest}"
    assert held is None, f"the host was held up ({held}) by {kind} of the sandbox; {rest}"
    assert p.returncode == 0, rest


@pytest.mark.parametrize("kind", KINDS + ["posix_wr"])
def test_a_lock_on_a_writable_file_is_taken_and_conflicts_with_the_host(who, box: Box, kind: str) -> None:
    target = who.make_file(box.host_w / "f", "writable\n", 0o666)
    p, line, release = run_locker(who, box, box.w, box.host_w, kind)
    try:
        held = host_conflicts(target, kind)
    finally:
        rest = finish(p, release, who)
    assert line == "LOCKED", f"{kind} on a writable file: {line!r}; {rest}"
    assert held in ("EAGAIN", "EACCES"), f"the sandbox's {kind} did not conflict with the host ({held}); {rest}"
    assert p.returncode == 0 and "RELEASED" in rest, rest
    assert host_conflicts(target, kind) is None, "the lock outlived the sandbox"


def test_with_a_workdir_a_file_still_shared_with_it_cannot_be_locked_until_written(who, scratch: Path) -> None:
    wd = who.make_dir(scratch / "wd", 0o755)
    target = who.make_file(wd / "f", "shared\n", 0o644)
    code = ("import errno, fcntl, os, sys, time\n"
            "def lock(fd):\n"
            "    try: fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); return 'LOCKED'\n"
            "    except OSError as e: return errno.errorcode[e.errno]\n"
            "print('read-only', lock(os.open(sys.argv[1], os.O_RDONLY)), flush=True)\n"
            "time.sleep(1)\n"
            "print('written', lock(os.open(sys.argv[1], os.O_RDWR)), flush=True)\n")
    p = who.popen([*SYSTEM_READ, "--workdir", str(wd), "-w", str(wd), "--dry-run", "--", SYSTEM_PYTHON, "-c", code,
                   str(target)])
    first = first_line(p)
    held = host_conflicts(target, "flock")   # the workdir's own file, while the sandbox runs
    out, err = p.communicate(timeout=RUN_TIMEOUT)
    assert (first, held) == ("read-only EACCES", None), f"{first!r} {held!r} {err[-2000:]!r}"
    assert out == "written LOCKED\n" and p.returncode == 0, f"{out!r} {err[-2000:]!r}"
    assert target.read_text() == "shared\n"


def test_a_lease_on_a_writable_file_is_refused_but_reading_and_dropping_a_lease_work(who, box: Box) -> None:
    who.make_file(box.host_w / "f", "writable\n", 0o666)
    code = ("import errno, fcntl, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "print('get', fcntl.fcntl(fd, 1025))\n"
            "try: print('unlock', fcntl.fcntl(fd, 1024, fcntl.F_UNLCK))\n"
            "except OSError as e: print('unlock', errno.errorcode[e.errno])\n"  # the kernel's: no lease held
            "for t in (fcntl.F_RDLCK, fcntl.F_WRLCK):\n"
            "    try: fcntl.fcntl(fd, 1024, t); print('lease', t, 'TAKEN')\n"
            "    except OSError as e: print('lease', t, errno.errorcode[e.errno])\n")
    r = who.run([*box.options, "--", box.python, "-c", code, f"{box.w}/f"], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["get 2", "unlock EAGAIN", "lease 0 EACCES", "lease 1 EACCES"], show(r)


def test_f_getlk_reports_the_host_lock_that_would_conflict(who, box: Box) -> None:
    target = who.make_file(box.host_w / "f", "writable\n", 0o666)
    code = ("import fcntl, os, struct, sys\n"
            "F = struct.Struct('=hh4xqqi4x')\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "t, w, start, length, pid = F.unpack(fcntl.fcntl(fd, fcntl.F_GETLK, F.pack(fcntl.F_RDLCK, 0, 0, 0, 0)))\n"
            "print(t == fcntl.F_WRLCK, start, length, pid)\n"
            "t, *_ = F.unpack(fcntl.fcntl(fd, 36, F.pack(fcntl.F_RDLCK, 0, 0, 0, 0)))\n"
            "print(t == fcntl.F_WRLCK)\n")
    host = os.open(target, os.O_RDWR)
    try:
        fcntl.fcntl(host, fcntl.F_SETLK, FLOCK.pack(fcntl.F_WRLCK, 0, 2, 5, 0))
        r = who.run([*box.options, "--", box.python, "-c", code, f"{box.w}/f"], timeout=RUN_TIMEOUT)
    finally:
        os.close(host)
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == [f"True 2 5 {os.getpid()}", "True"], show(r)


def test_a_blocking_flock_waits_for_the_host_without_stopping_the_rest_of_the_sandbox(who, box: Box) -> None:
    target = who.make_file(box.host_w / "f", "writable\n", 0o666)
    code = ("import fcntl, os, sys, threading, time\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "t = threading.Thread(target=lambda: (fcntl.flock(fd, fcntl.LOCK_EX), print('LOCKED', flush=True)))\n"
            "t.start(); time.sleep(0.3)\n"
            "os.stat(sys.argv[1]); print('ALIVE', flush=True)\n"   # a trapped call still answered
            "t.join(30); print('DONE', flush=True)\n")
    host = os.open(target, os.O_RDONLY)
    try:
        fcntl.flock(host, fcntl.LOCK_EX)
        p = who.popen([*box.options, "--", box.python, "-c", code, f"{box.w}/f"])
        first = first_line(p)
        time.sleep(0.2)
    finally:
        os.close(host)  # releases the host's lock: the sandbox's flock goes through
    out, err = p.communicate(timeout=RUN_TIMEOUT)
    assert first == "ALIVE", f"the sandbox stopped while one thread waited for a lock: {first!r} {out!r} {err!r}"
    assert out.split() == ["LOCKED", "DONE"] and p.returncode == 0, f"{out!r} {err!r}"


INTERRUPTED = r"""
import fcntl, os, signal, sys, time
class Alarm(Exception): pass
def ring(*_): raise Alarm()
signal.signal(signal.SIGALRM, ring)
fd = os.open(sys.argv[1], os.O_RDONLY)
signal.setitimer(signal.ITIMER_REAL, 0.5)
try:
    fcntl.flock(fd, fcntl.LOCK_EX) if sys.argv[3] == "flock" else fcntl.lockf(fd, fcntl.LOCK_SH)
    print("LOCKED", flush=True)
except Alarm:
    print("INTERRUPTED", flush=True)
deadline = time.monotonic() + 30
while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:
    time.sleep(0.02)
"""


@pytest.mark.parametrize("call", ["flock", "lockf"])
def test_a_waiting_lock_interrupted_by_a_signal_is_never_taken_later(who, box: Box, call: str) -> None:
    target = who.make_file(box.host_w / "f", "writable\n", 0o666)
    host = os.open(target, os.O_RDWR)
    release = box.host_w / "release"
    try:
        if call == "flock":
            fcntl.flock(host, fcntl.LOCK_EX)
        else:
            fcntl.fcntl(host, fcntl.F_SETLK, FLOCK.pack(fcntl.F_WRLCK, 0, 0, 0, 0))
        p = who.popen([*box.options, "--", box.python, "-c", INTERRUPTED, f"{box.w}/f", f"{box.w}/release", call])
        line = first_line(p)
    finally:
        os.close(host)  # the host lets go: a worker still trying would now take the lock
    try:
        time.sleep(0.5)
        held = host_conflicts(target, call)
    finally:
        rest = finish(p, release, who)
    assert line == "INTERRUPTED", f"{line!r}; {rest}"
    assert held is None, f"the lock was taken after the caller gave up ({held}); {rest}"


def test_flock_with_a_timeout_gives_up_while_the_host_holds_the_lock(who, box: Box) -> None:
    """util-linux `flock -w` times a lock out with a timer signal: the waiting lock must end."""
    target = who.make_file(box.host_w / "f", "writable\n", 0o666)
    host = os.open(target, os.O_RDWR)
    try:
        fcntl.flock(host, fcntl.LOCK_EX)
        started = time.monotonic()
        r = who.run([*box.options, "--", "flock", "-w", "1", f"{box.w}/f", "echo", "got it"], timeout=RUN_TIMEOUT)
        took = time.monotonic() - started
    finally:
        os.close(host)
    assert (r.returncode, r.stdout) == (1, ""), show(r)
    assert took < 20, f"flock -w 1 took {took:.1f} s"


RESTARTED = r"""
import fcntl, os, signal, sys
hits = []
signal.signal(signal.SIGALRM, lambda *_: hits.append(1))
signal.siginterrupt(signal.SIGALRM, False)   # SA_RESTART: the kernel restarts the wait
signal.setitimer(signal.ITIMER_REAL, 0.3)
fd = os.open(sys.argv[1], os.O_RDONLY)
print("waiting", flush=True)
fcntl.flock(fd, fcntl.LOCK_EX) if sys.argv[2] == "flock" else fcntl.lockf(fd, fcntl.LOCK_SH)
print("LOCKED", len(hits), flush=True)
"""


@pytest.mark.parametrize("call", ["flock", "lockf"])
def test_a_waiting_lock_restarts_after_a_sa_restart_handler_and_is_taken(who, box: Box, call: str) -> None:
    target = who.make_file(box.host_w / "f", "writable\n", 0o666)
    host = os.open(target, os.O_RDWR)
    try:
        if call == "flock":
            fcntl.flock(host, fcntl.LOCK_EX)
        else:
            fcntl.fcntl(host, fcntl.F_SETLK, FLOCK.pack(fcntl.F_WRLCK, 0, 0, 0, 0))
        p = who.popen([*box.options, "--", box.python, "-c", RESTARTED, f"{box.w}/f", call])
        first = first_line(p)
        time.sleep(1.0)  # the alarm rings while the lock is held
    finally:
        os.close(host)
    out, err = p.communicate(timeout=RUN_TIMEOUT)
    assert (first, out, p.returncode) == ("waiting", "LOCKED 1\n", 0), f"{first!r} {out!r} {err[-2000:]!r}"


def test_a_lock_still_waiting_when_the_run_ends_leaves_no_worker_behind(who, scratch: Path) -> None:
    target = who.make_file(who.make_dir(scratch / "w", 0o777) / "f", "x\n", 0o666)
    code = ("import fcntl, os, sys, threading, sandlock\n"
            "host = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(host, fcntl.LOCK_EX)\n"
            "box = sandlock.Sandbox(fs_writable=[os.path.dirname(sys.argv[1])])\n"
            "r = box.run(['python3', '-c', 'import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), "
            "fcntl.LOCK_EX); print(1)', sys.argv[1]], timeout=1)\n"
            "threading.Event().wait(0.5)\n"
            "from sandlock import _threads\n"
            "print(r.returncode, [t.name for t in threading.enumerate() + _threads.running() if t.name.startswith('sandlock')])\n")
    r = who.python(code, args=[str(target)], timeout=60)
    assert (r.returncode, r.stdout.decode()) == (0, "124 []\n"), r.stdout.decode() + r.stderr.decode()


SQLITE = r"""
import fcntl, os, sqlite3, sys
path = sys.argv[1] + "/db-" + sys.argv[2]
con = sqlite3.connect(path, timeout=5)
con.execute("PRAGMA journal_mode=" + sys.argv[2])
con.execute("create table t (x)")
with con:
    con.executemany("insert into t values (?)", [(i,) for i in range(100)])
other = sqlite3.connect(path, timeout=5)
print("rows", other.execute("select count(*) from t").fetchone()[0])
with con:
    con.execute("delete from t where x >= 50")
print("rows", other.execute("select count(*) from t").fetchone()[0])
con.close(); other.close()
fd = os.open(sys.argv[1] + "/lockf", os.O_RDWR | os.O_CREAT, 0o644)
fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
fcntl.lockf(fd, fcntl.LOCK_UN)
fcntl.lockf(fd, fcntl.LOCK_SH)
print("lockf ok")
"""


@pytest.mark.parametrize("journal", ["wal", "delete"])
def test_sqlite3_and_lockf_work_on_a_writable_file(who, box: Box, journal: str) -> None:
    r = who.run([*box.options, "--", box.python, "-c", SQLITE, box.w, journal], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, show(r)
    assert r.stdout.split("\n")[:3] == ["rows 100", "rows 50", "lockf ok"], show(r)


# --- 2. AIO ------------------------------------------------------------------------------------

AIO = r"""
import ctypes, errno, os, platform
libc = ctypes.CDLL(None, use_errno=True)
nr = {"x86_64": (206, 207), "aarch64": (0, 1)}[platform.machine()]
ctx = ctypes.c_ulong(0)
r = libc.syscall(nr[0], 60000, ctypes.byref(ctx))
print("io_setup", r, errno.errorcode.get(ctypes.get_errno(), 0) if r < 0 else "OK")
if r == 0:
    libc.syscall(nr[1], ctx)
"""


def test_io_setup_is_refused_so_the_system_wide_aio_pool_stays_untouched(who, box: Box) -> None:
    r = who.run([*box.options, "--", box.python, "-c", AIO], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, show(r)
    assert r.stdout.strip() == "io_setup -1 ENOSYS", f"ESCAPE: AIO events reserved: {show(r)}"


def test_io_setup_outside_the_sandbox_works(who) -> None:
    """Control: the probe sees a reservation when there is one."""
    r = who.python(AIO.replace("60000", "16"))
    assert r.returncode == 0 and r.stdout.decode().strip() == "io_setup 0 OK", r


# --- 3. inotify ---------------------------------------------------------------------------------

INOTIFY = r"""
import ctypes, errno, os, socket, sys
libc = ctypes.CDLL(None, use_errno=True)
def make():
    fd = libc.inotify_init1(0)
    return fd if fd >= 0 else -ctypes.get_errno()
mode = sys.argv[1]
if mode == "many":
    fds = []
    while len(fds) < 200:
        fd = make()
        if fd < 0:
            print("refused after", len(fds), errno.errorcode[-fd]); break
        fds.append(fd)
    else:
        print("took", len(fds))
elif mode == "few":
    fds = [make() for _ in range(5)]
    print("few", sum(fd >= 0 for fd in fds))
    wd = libc.inotify_add_watch(fds[0], sys.argv[2].encode(), 0x100)
    print("watch", wd >= 0)
elif mode == "fork":
    fds = [make() for _ in range(20)]
    pids = []
    for _ in range(3):   # children inherit the same 20 instances: still 20
        pid = os.fork()
        if pid == 0:
            import time; time.sleep(3); os._exit(0)
        pids.append(pid)
    more = [make() for _ in range(10)]
    print("fork", sum(fd >= 0 for fd in fds + more))
    for pid in pids: os.kill(pid, 9); os.waitpid(pid, 0)
elif mode == "hide":
    a, b = socket.socketpair()
    hidden = 0
    for _ in range(200):
        fd = make()
        if fd < 0:
            print("hide refused make", errno.errorcode[-fd]); break
        try:
            socket.send_fds(a, [b"x"], [fd])
        except OSError as e:
            print("hide refused send", errno.errorcode[e.errno]); break
        os.close(fd)
        hidden += 1
    else:
        print("hid", hidden)
"""


def test_inotify_instances_are_capped_per_sandbox(who, box: Box) -> None:
    r = who.run([*box.options, "--", box.python, "-c", INOTIFY, "many"], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, show(r)
    assert r.stdout.strip() == "refused after 32 EMFILE", f"the sandbox took the user's inotify instances: {show(r)}"


def test_inotify_instances_cannot_be_hidden_in_a_socket_to_escape_the_cap(who, box: Box) -> None:
    r = who.run([*box.options, "--", box.python, "-c", INOTIFY, "hide"], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, show(r)
    assert r.stdout.strip() == "hide refused send EPERM", show(r)


def test_a_few_inotify_instances_work_and_inherited_ones_count_once(who, box: Box) -> None:
    r = who.run([*box.options, "--", box.python, "-c", INOTIFY, "few", box.r], timeout=RUN_TIMEOUT)
    assert r.returncode == 0 and r.stdout.split("\n")[:2] == ["few 5", "watch True"], show(r)
    r = who.run([*box.options, "--", box.python, "-c", INOTIFY, "fork"], timeout=RUN_TIMEOUT)
    assert r.returncode == 0 and r.stdout.strip() == "fork 30", show(r)


# --- 4. abstract unix names ---------------------------------------------------------------------

ABSTRACT_SERVER = r"""
import os, socket, sys, time
name, release = sys.argv[1].encode(), sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(b"\0" + name)
s.listen(8)
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
d.bind(b"\0" + name + b"-dgram")
d.setblocking(False)
print("BOUND", s.getsockname() == b"\0" + name, flush=True)
s.settimeout(0.05)
deadline = time.monotonic() + 30
while not os.path.exists(release) and time.monotonic() < deadline:
    try:
        c, _ = s.accept()
        c.sendall(b"SQUATTED\n"); c.close()
    except socket.timeout:
        pass
try:
    print("DATAGRAM", d.recv(64), flush=True)
except BlockingIOError:
    pass
print("DONE", flush=True)
"""


def test_a_host_client_cannot_reach_an_abstract_name_the_sandbox_bound(who, box: Box) -> None:
    name = f"sandlock-squat-{unique_marker()}"
    release = box.host_w / "release"
    p = who.popen([*box.options, "--", box.python, "-c", ABSTRACT_SERVER, name, f"{box.w}/release"])
    try:
        line = first_line(p)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(5)
        try:
            client.connect(b"\0" + name.encode())
            got = client.recv(64)
            reached = f"connected, read {got!r}"
        except OSError as exc:
            reached = errno.errorcode.get(exc.errno or 0, str(exc))
        finally:
            client.close()
        sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sender.sendto(b"SQUATTED", b"\0" + name.encode() + b"-dgram")
            sent = "delivered"
        except OSError as exc:
            sent = errno.errorcode.get(exc.errno or 0, str(exc))
        finally:
            sender.close()
    finally:
        rest = finish(p, release, who)
    assert line == "BOUND True", f"{line!r}; {rest}"
    assert reached == "ECONNREFUSED", f"ESCAPE: a host client reached the sandbox's @{name}: {reached}; {rest}"
    assert sent == "ECONNREFUSED" and "DATAGRAM" not in rest, f"ESCAPE: a host datagram reached the sandbox: {rest}"


ABSTRACT_PAIR = r"""
import os, socket, sys
name = b"\0" + sys.argv[1].encode()
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind(name); srv.listen(1)
pid = os.fork()
if pid == 0:
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect(name)
    c.sendall(b"ping"); print("child got", c.recv(16).decode(), "peer ok", c.getpeername() == name, flush=True)
    os._exit(0)
conn, _ = srv.accept(); conn.sendall(conn.recv(16).upper()); conn.close(); os.waitpid(pid, 0)
# datagrams: an autobound client, and the server answers to the address it received
d = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); d.bind(name + b"-dgram")
c = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); c.bind("")
auto = c.getsockname()
print("autobind", auto[:1] == b"\0" and len(auto) == 6, flush=True)
c.sendto(b"hello", name + b"-dgram")
data, sender = d.recvfrom(16)   # the sender's name as the kernel has it (README)
d.sendto(data.upper(), sender)
print("reply", c.recv(16).decode(), flush=True)
"""


def test_processes_in_the_sandbox_talk_over_abstract_names_and_autobind_works(who, box: Box) -> None:
    name = f"sandlock-pair-{unique_marker()}"
    r = who.run([*box.options, "--", box.python, "-c", ABSTRACT_PAIR, name], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["child got PING peer ok True", "autobind True", "reply HELLO"], show(r)


PATHNAMES = r"""
import errno, os, socket, sys
os.chdir(sys.argv[1]); os.umask(0o027)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); srv.bind("rel.sock"); srv.listen(1)
print("bound", srv.getsockname(), oct(os.stat("rel.sock").st_mode & 0o777))
c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); c.connect("rel.sock")
print("connected", c.getpeername())
try:
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).bind(sys.argv[2] + "/out.sock"); print("outside bound")
except OSError as e:
    print("outside", errno.errorcode[e.errno])
"""


def test_pathname_unix_sockets_bound_on_behalf_keep_their_name_cwd_and_umask(who, box: Box) -> None:
    """bind is performed on behalf (so abstract names can be moved): pathnames keep working."""
    r = who.run([*box.options, "--", box.python, "-c", PATHNAMES, box.w, box.r], timeout=RUN_TIMEOUT)
    assert r.returncode == 0, show(r)
    # in a root the name is the virtual path made absolute (README, emulated root)
    name = f"{box.w}/rel.sock" if "--root" in box.options else "rel.sock"
    assert r.stdout.splitlines() == [f"bound {name} 0o750", f"connected {name}", "outside EACCES"], show(r)
    assert (box.host_w / "rel.sock").is_socket() and not (box.host_r / "out.sock").exists()


# --- 5. SOCK_PACKET, memfd_secret, sysfs, pidfd_open -----------------------------------------

MISC = r"""
import ctypes, errno, os, platform, signal, socket, sys, time
libc = ctypes.CDLL(None, use_errno=True)
def res(r):
    return "OK" if r >= 0 else errno.errorcode[ctypes.get_errno()]
for family in (socket.AF_INET, socket.AF_INET6, 17):
    print("packet", family, res(libc.socket(family, 10, 0x0300)))
print("memfd_secret", res(libc.syscall(447, 0)))
if platform.machine() == "x86_64":
    print("sysfs", res(libc.syscall(139, 3)))
else:
    print("sysfs", "EPERM")   # aarch64 has no sysfs(2)
target = int(sys.argv[1])
try:
    fd = os.pidfd_open(target); print("pidfd_open other", "OK")
except OSError as e:
    print("pidfd_open other", errno.errorcode[e.errno])
child = os.fork()
if child == 0:
    time.sleep(30); os._exit(0)
fd = os.pidfd_open(child)
print("pidfd_open child", "OK", "cloexec", not os.get_inheritable(fd))
signal.pidfd_send_signal(fd, signal.SIGTERM)
info = os.waitid(os.P_PIDFD, fd, os.WEXITED)
print("waitid", info.si_pid == child, info.si_status == signal.SIGTERM)
"""


def test_sock_packet_memfd_secret_sysfs_and_pidfd_open_of_a_non_member_are_refused(who, box: Box) -> None:
    outside = who.spawn_outside(["sleep", "60"])
    try:
        r = who.run([*box.options, "--", box.python, "-c", MISC, str(outside.pid)], timeout=RUN_TIMEOUT)
    finally:
        outside.kill()
        outside.wait()
    assert r.returncode == 0, show(r)
    lines = r.stdout.splitlines()
    assert lines[:6] == ["packet 2 EPERM", "packet 10 EPERM", "packet 17 EPERM", "memfd_secret EPERM",
                         "sysfs EPERM", "pidfd_open other EPERM"], show(r)
    # control: a pidfd of the command's own child works with pidfd_send_signal and waitid
    assert lines[6:] == ["pidfd_open child OK cloexec True", "waitid True True"], show(r)


def test_pidfd_open_of_a_host_process_works_outside_the_sandbox(who) -> None:
    """Control: the probe sees a pidfd of another process of this identity when it gets one."""
    outside = who.spawn_outside(["sleep", "60"])
    try:
        r = who.python("import os, sys; os.pidfd_open(int(sys.argv[1])); print('OK')", args=[str(outside.pid)])
    finally:
        outside.kill()
        outside.wait()
    assert r.returncode == 0 and r.stdout.decode().strip() == "OK", r
