"""Red team of the trapped-call fast paths (issue 14, target 3; SECURITY.md "Trapped-call
fast paths"), attacked as a hostile command would, INSIDE a sandbox on the host, as root
and as the unprivileged user (docs/design.md "Security rules": decide on a private copy,
act on behalf, fail closed).

- The read open reopened from its probe (_fsops._open_maybe_fifo, Resolver.reopen): the
  access it grants is what the command would get itself (mode 0000 / 0200, O_NOATIME on
  a file not owned, O_TRUNC never counted as a read), and a name swapped between two
  inodes while the command opens it never gives the content of the denied one.
- The fd installed and announced (Notifier._send_fd): FD_CLOEXEC as asked by open,
  openat, openat2 and creat, read and write opens; a full fd table (EMFILE) on the
  reopen path leaves sandlock's own fd count bounded.
- Resolver.stat_plain: symlinks (final, intermediate), `..`, /proc, /dev, a hard link to
  a denied file, AT_EMPTY_PATH, statx, and a path past the 256-byte first read whose tail
  another thread flips while it is read: every answer is one a whole private copy gives.
- The interruptions: a signal storm at the command (SA_RESTART or not), a process that
  execs while a thread waits in an open, threads killed mid-open by exit_group.
- block_signals' side effect (found here, fixed): a run launched directly from a fork-
  server pooled thread that had run a notification loop forked its stub with every
  signal blocked, PDEATHSIG included, so the sandbox outlived a killed sandlock.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import IS_ROOT, SYSTEM_PYTHON, find_processes, kill_marked, unique_marker, wait_for
from sandlock import _notif


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


OPENS = r'''
import json, os, sys
out = {}
for name in sys.argv[2:]:
    path = os.path.join(sys.argv[1], name.split(":")[0])
    flags = 0
    for f in name.split(":")[1:]:
        flags |= getattr(os, "O_" + f)
    try:
        fd = os.open(path, flags)
        try:
            data = os.read(fd, 20).decode()
        except OSError as exc:
            data = "read:" + str(exc.errno)
        os.close(fd)
        out[name] = data
    except OSError as exc:
        out[name] = "errno:" + str(exc.errno)
print(json.dumps(out))
'''

EACCES, EPERM = "errno:13", "errno:1"


def test_a_read_open_grants_only_what_the_file_mode_gives_the_command(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "m0000", "secret0000\n", 0o000)
    who.make_file(w / "m0200", "secret0200\n", 0o200)
    who.make_file(w / "mine", "mine\n", 0o644)
    other = w / "other"
    other.write_text("other\n")
    other.chmod(0o644)
    if IS_ROOT:  # owned by neither the command nor root-as-the-command
        os.chown(other, 65534 if not who.is_user else 0, 65534 if not who.is_user else 0)
    names = ["m0000", "m0000:NONBLOCK", "m0000:APPEND", "m0000:DIRECT", "m0200", "m0200:NOATIME",
             "other:NOATIME", "other", "mine:NOATIME", "mine:NONBLOCK:APPEND"]
    r = who.run(["-w", str(w), "--", SYSTEM_PYTHON, "-c", OPENS, str(w), *names])
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    assert got == {"m0000": EACCES, "m0000:NONBLOCK": EACCES, "m0000:APPEND": EACCES, "m0000:DIRECT": EACCES,
                   "m0200": EACCES, "m0200:NOATIME": EACCES, "other:NOATIME": EPERM,
                   # controls: readable files open, O_NOATIME on one's own file too
                   "other": "other\n", "mine:NOATIME": "mine\n", "mine:NONBLOCK:APPEND": "mine\n"}, show(r)


def test_a_read_only_open_with_o_trunc_truncates_nothing_without_write_permission(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "d", 0o755)
    who.make_file(d / "f", "keep me\n", 0o644)
    r = who.run(["-r", str(d), "--", SYSTEM_PYTHON, "-c", OPENS, str(d), "f:TRUNC", "f:TRUNC:NONBLOCK"])
    assert r.returncode == 0, show(r)
    assert json.loads(r.stdout) == {"f:TRUNC": EACCES, "f:TRUNC:NONBLOCK": EACCES}, show(r)
    assert (d / "f").read_text() == "keep me\n"
    # control: where the directory is writable, the same open truncates
    r = who.run(["-w", str(d), "--", SYSTEM_PYTHON, "-c", OPENS, str(d), "f:TRUNC"])
    assert json.loads(r.stdout) == {"f:TRUNC": ""}, show(r)
    assert (d / "f").read_text() == ""


READ_LOOP = r'''
import os, sys, time
open(sys.argv[3] + "/ready", "w").close()   # the names are swapped from now on
seen = set()
end = time.monotonic() + float(sys.argv[2])
n = 0
while time.monotonic() < end:
    try:
        fd = os.open(sys.argv[1], os.O_RDONLY)
        seen.add(os.read(fd, 20).decode().strip())
        os.close(fd)
    except OSError as exc:
        seen.add("errno:%d" % exc.errno)
    n += 1
print(" ".join(sorted(seen)), n)
'''


def _swap_while(w: Path, stop: threading.Event, ready: Path) -> None:
    """Exchange the names pub and sec (three renames) until stop is set, from the moment
    the command runs (while sandlock plans its rules, a name of the -r tree that is
    renamed away makes it stop with exit 125: fail closed, not this test's subject)."""
    while not ready.exists():
        if stop.wait(0.01):
            return
    while not stop.is_set():
        os.rename(w / "pub", w / "tmp")
        os.rename(w / "sec", w / "pub")
        os.rename(w / "tmp", w / "sec")


@pytest.mark.parametrize("deny", [True, False], ids=["denied", "control"])
def test_a_name_swapped_between_two_inodes_never_opens_the_denied_one(who, scratch: Path, deny: bool) -> None:
    # The decision is on the probe's inode; the reopen must give that inode, not
    # whatever the name points at by then.  The swapping is done outside the sandbox.
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "pub", "PUBLIC\n", 0o644)
    who.make_file(w / "sec", "SECRET\n", 0o644)
    os.link(w / "sec", w / "keep")  # a name that stays: the denial is of the inode
    deny_args = ["--fs-deny", str(w / "keep")] if deny else []
    m = who.make_dir(scratch / "m", 0o777)
    stop = threading.Event()
    racer = threading.Thread(target=_swap_while, args=(w, stop, m / "ready"))
    racer.start()
    try:
        r = who.run(["-r", str(w), "-w", str(m), *deny_args, "--", SYSTEM_PYTHON, "-c", READ_LOOP, str(w / "pub"), "3",
                     str(m)])
    finally:
        stop.set()
        racer.join()
    assert r.returncode == 0, show(r)
    seen = set(r.stdout.split()[:-1])
    assert "PUBLIC" in seen, show(r)
    if deny:
        assert "SECRET" not in seen, show(r)
    else:
        assert "SECRET" in seen, show(r)  # the race is real: the name did point at it


CLOEXEC = r'''
import ctypes, fcntl, json, os, platform, sys
libc = ctypes.CDLL(None, use_errno=True)
NR_OPENAT2 = 437
class how(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]
d = sys.argv[1]
dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
out = {}
def rec(name, fd):
    if fd < 0:
        out[name] = "errno:%d" % ctypes.get_errno()
        return
    out[name] = bool(fcntl.fcntl(fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC)
    os.close(fd)
for acc, accn in ((os.O_RDONLY, "r"), (os.O_WRONLY, "w")):
    for ce in (0, os.O_CLOEXEC):
        tag = "%s%s" % (accn, "+ce" if ce else "")
        rec("open " + tag, libc.open(os.fsencode(d + "/f"), acc | ce))
        rec("openat " + tag, libc.openat(dfd, b"f", acc | ce))
        h = how(acc | ce, 0, 0)
        rec("openat2 " + tag, libc.syscall(NR_OPENAT2, dfd, b"f", ctypes.byref(h), ctypes.sizeof(h)))
rec("creat", libc.creat(os.fsencode(d + "/g"), 0o644))
print(json.dumps(out))
'''


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="openat2's number in the probe is x86_64's")
def test_the_fd_installed_on_behalf_has_fd_cloexec_exactly_as_asked(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "f", "x\n", 0o644)
    r = who.run(["-w", str(w), "--", SYSTEM_PYTHON, "-c", CLOEXEC, str(w)])
    assert r.returncode == 0, show(r)
    want = {f"{call} {acc}{ce}": bool(ce) for call in ("open", "openat", "openat2")
            for acc in ("r", "w") for ce in ("", "+ce")}
    want["creat"] = False
    assert json.loads(r.stdout) == want, show(r)


EMFILE_LOOP = r'''
import json, os, sys
counts = {}
held = []
for i in range(int(sys.argv[2])):
    try:
        held.append(os.open(sys.argv[1], os.O_RDONLY | (os.O_CLOEXEC if i % 2 else 0)))
        counts["ok"] = counts.get("ok", 0) + 1
    except OSError as exc:
        name = "EMFILE" if exc.errno == 24 else str(exc.errno)
        counts[name] = counts.get(name, 0) + 1
print(json.dumps({"counts": counts, "held": len(held)}))
'''


def test_thousands_of_read_opens_refused_at_the_install_step_leave_sandlocks_fds_bounded(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "f", "x\n", 0o644)
    proc = who.popen(["--max-open-files", "64", "-r", str(w), "--", SYSTEM_PYTHON, "-c", EMFILE_LOOP,
                      str(w / "f"), "6000"])
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, len(os.listdir(f"/proc/{proc.pid}/fd")))
        except OSError:
            pass
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, f"{out}\n{err}"
    report = json.loads(out)
    assert set(report["counts"]) == {"ok", "EMFILE"}, report
    assert report["counts"]["EMFILE"] > 5000 and 40 <= report["held"] <= 61, report
    assert peak < 64, f"sandlock held {peak} fds"


STATS = r'''
import json, os, sys
w = sys.argv[1]
out = {}
def rec(name, fn):
    try:
        st = fn()
        out[name] = "%o:%d" % (st.st_mode & 0o170000, st.st_size)
    except OSError as exc:
        out[name] = "errno:%d" % exc.errno
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
class St:
    def __init__(self, mode, size):
        self.st_mode, self.st_size = mode, size
def raw(call, *args):
    buf = ctypes.create_string_buffer(256)
    if call(*args, buf) < 0:
        raise OSError(ctypes.get_errno(), "")
    return buf.raw
def statx(spell, flags):  # struct statx: stx_mode u16 at 28, stx_size u64 at 40
    b = raw(libc.statx, -100, spell.encode(), flags, 0x7ff)
    return St(int.from_bytes(b[28:30], "little"), int.from_bytes(b[40:48], "little"))
def fstatat(spell, flags):  # x86_64 struct stat: st_mode u32 at 24, st_size at 48
    b = raw(lambda *a: libc.fstatat(-100, spell.encode(), a[-1], flags))
    return St(int.from_bytes(b[24:28], "little"), int.from_bytes(b[48:56], "little"))
for spell in sys.argv[2:]:
    rec("stat " + spell, lambda: os.stat(spell))
    rec("lstat " + spell, lambda: os.lstat(spell))
    rec("statx " + spell, lambda: statx(spell, 0))
    rec("statx-nofollow " + spell, lambda: statx(spell, 0x100))
    rec("fstatat-noautomount " + spell, lambda: fstatat(spell, 0x800))
fd = os.open(w + "/pub", os.O_RDONLY)
rec("fstat pub", lambda: os.fstat(fd))
rec("fstatat-empty pub", lambda: os.stat(fd))  # glibc: fstatat(fd, "", AT_EMPTY_PATH)
print(json.dumps(out))
'''


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="struct stat's layout in the probe is x86_64's")
@pytest.mark.parametrize("deny", [True, False], ids=["denied", "control"])
def test_stat_through_symlinks_dotdot_and_hard_links_answers_as_the_general_path(who, scratch: Path,
                                                                                deny: bool) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "pub", "PUBLIC\n", 0o644)                   # 7 bytes
    who.make_dir(w / "sec")
    who.make_file(w / "sec/s", "SECRET!!\n", 0o644)                # 9 bytes
    os.link(w / "sec/s", w / "hl")
    for name, target in (("lpub", "pub"), ("lsec", "sec"), ("lproc", "/proc/self"), ("ldev", "/dev")):
        os.symlink(target, w / name)
    deny_args = ["--fs-deny", str(w / "sec/s")] if deny else []  # the file: its hard links too (README)
    spells = [f"{w}/pub", f"{w}/lpub", f"{w}/lsec/s", f"{w}/hl", f"{w}/sec/s", f"{w}/sec/../pub",
              f"{w}/lproc/status", f"{w}/ldev/null", "/dev/null", f"{w}//pub", f"{w}/./hl"]
    r = who.run(["-r", str(w), *deny_args, "--", SYSTEM_PYTHON, "-c", STATS, str(w), *spells])
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    reg, lnk = "100000:", "120000:"
    assert got["stat " + f"{w}/pub"] == reg + "7" and got["stat " + f"{w}/lpub"] == reg + "7", got
    assert got["lstat " + f"{w}/lpub"].startswith(lnk), got
    assert got["stat " + f"{w}/sec/../pub"] == reg + "7", got
    for how in ("statx ", "fstatat-noautomount "):
        assert got[how + f"{w}/pub"] == got[how + f"{w}/lpub"] == got[how + f"{w}/sec/../pub"] == reg + "7", got
    assert got["statx-nofollow " + f"{w}/lpub"].startswith(lnk), got
    assert got["stat /dev/null"] == got["stat " + f"{w}/ldev/null"] == "20000:0", got
    assert got["fstat pub"] == got["fstatat-empty pub"] == reg + "7", got
    hidden = [f"{w}/lsec/s", f"{w}/hl", f"{w}/sec/s", f"{w}/./hl"]
    for spell in hidden:
        for how in ("stat ", "lstat ", "statx ", "statx-nofollow ", "fstatat-noautomount "):
            if deny:
                assert got[how + spell].startswith("errno:"), (spell, got)
            else:
                assert got[how + spell] == reg + "9", (spell, got)


TAIL_RACE = r'''
import ctypes, json, os, sys, threading
w = sys.argv[1]
pad = "p" * 250
good = (w + "/" + pad + "/f").encode()
bad = (w + "/" + pad + "/l/f").encode()
buf = ctypes.create_string_buffer(max(len(good), len(bad)) + 1)
buf.value = good
stop = False
def flip():
    while not stop:
        buf.value = bad
        buf.value = good
t = threading.Thread(target=flip)
t.start()
seen = {}
libc = ctypes.CDLL(None, use_errno=True)
st = ctypes.create_string_buffer(256)
for i in range(4000):
    rc = libc.stat(buf, st) if hasattr(libc, "stat") else -1
    key = "ok:%d" % int.from_bytes(st.raw[48:56], "little") if rc == 0 else "errno:%d" % ctypes.get_errno()
    seen[key] = seen.get(key, 0) + 1
stop = True
t.join()
print(json.dumps(seen))
'''


def _tail_race_tree(who, scratch: Path, secret: str) -> Path:  # type: ignore[no-untyped-def]
    """w/<250 p>/f ("PLAIN"), w/sec/f (secret) and w/<250 p>/l -> w/sec: a path past the
    first 256-byte read whose tail names either file."""
    w = who.make_dir(scratch / "w", 0o777)
    pad = w / ("p" * 250)
    who.make_dir(pad)
    who.make_file(pad / "f", "PLAIN\n", 0o644)
    who.make_dir(w / "sec")
    who.make_file(w / "sec/f", secret, 0o644)
    os.symlink(str(w / "sec"), pad / "l")
    return w


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="struct stat's st_size offset in the probe is x86_64's")
def test_a_long_path_whose_tail_flips_while_it_is_read_is_decided_on_one_whole_copy(who, scratch: Path) -> None:
    # The path crosses the 256-byte first read; another thread flips its tail between
    # a plain file and a symlink to a denied file.  Each answer must be one of the two
    # whole paths' answers: the plain file's size, or the denied file's refusal.
    w = _tail_race_tree(who, scratch, "SECRET!!!\n")  # PLAIN 6 bytes, the secret 10
    r = who.run(["-r", str(w), "--fs-deny", str(w / "sec"), "--", SYSTEM_PYTHON, "-c", TAIL_RACE, str(w)],
                timeout=240)  # 4000 trapped stats against a thread busy flipping: slow on a loaded machine
    assert r.returncode == 0, show(r)
    seen = json.loads(r.stdout)
    assert "ok:6" in seen, seen
    assert "ok:10" not in seen, seen
    # ENOTDIR: ".../f/f", the flipping thread's own half-written string (the kernel would see it too)
    assert set(seen) <= {"ok:6", "errno:13", "errno:20"}, seen
    assert "errno:13" in seen, seen  # the flip is real: the denied path was asked for


STORM = r'''
import ctypes, json, os, signal, sys, time
libc = ctypes.CDLL(None, use_errno=True)
path, restart = os.fsencode(sys.argv[1]), sys.argv[2] == "restart"
want = os.stat(path).st_ino
signal.signal(signal.SIGALRM, lambda *a: None)
signal.siginterrupt(signal.SIGALRM, not restart)
before = set(os.listdir("/proc/self/fd"))
counts = {"ok": 0, "EINTR": 0, "wrong": 0, "other": 0}
signal.setitimer(signal.ITIMER_REAL, 0.0001, 0.0001)
end = time.monotonic() + 2
while time.monotonic() < end:
    fd = libc.open(path, os.O_RDONLY | os.O_CLOEXEC)
    if fd < 0:
        counts["EINTR" if ctypes.get_errno() == 4 else "other"] += 1
        continue
    ok = os.fstat(fd).st_ino == want
    counts["ok" if ok else "wrong"] += 1
    os.close(fd)
signal.setitimer(signal.ITIMER_REAL, 0, 0)
counts["leaked"] = len(set(os.listdir("/proc/self/fd")) - before)
print(json.dumps(counts))
'''


@pytest.mark.parametrize("restart", ["restart", "interrupt"])
def test_a_signal_storm_at_the_command_during_read_opens_gives_no_wrong_and_no_leaked_fd(who, scratch: Path,
                                                                                        restart: str) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "f", "x\n", 0o644)
    r = who.run(["-r", str(w), "--", SYSTEM_PYTHON, "-c", STORM, str(w / "f"), restart], timeout=120)
    assert r.returncode == 0, show(r)
    counts = json.loads(r.stdout)
    assert counts["ok"] > 100 and counts["wrong"] == counts["other"] == counts["leaked"] == 0, counts
    if restart == "restart":
        assert counts["EINTR"] == 0, counts


EXEC_WHILE_WAITING = r'''
import os, sys, threading, time
fifo = sys.argv[1]
if sys.argv[2] == "after":
    # the new image: its writer releases the open the old image's thread was waiting in
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    time.sleep(0.5)  # the supervisor's open completes and its install finds no caller
    print(sorted(int(n) for n in os.listdir("/proc/self/fd")), fd)
    sys.exit(0)
threading.Thread(target=lambda: os.open(fifo, os.O_RDONLY), daemon=True).start()
time.sleep(0.5)  # the thread waits in the open (a worker of the supervisor holds it)
os.execv(sys.executable, [sys.executable, "-c", sys.argv[3], fifo, "after", ""])
'''


def test_a_process_that_execs_while_a_thread_waits_in_an_open_gets_no_fd_of_it(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    os.mkfifo(w / "fifo", 0o666)
    who.own(w / "fifo")
    r = who.run(["-w", str(w), "--", SYSTEM_PYTHON, "-c", EXEC_WHILE_WAITING, str(w / "fifo"), "before",
                 EXEC_WHILE_WAITING])
    assert r.returncode == 0, show(r)
    fds, _, mine = r.stdout.strip().rpartition("] ")
    listed = [int(n) for n in fds.strip("[").split(",")]
    # 0-2, the writer's fd and the listing's own: nothing installed for the exec'd-away thread
    assert sorted(listed) == sorted({0, 1, 2, int(mine), max(listed)}) and len(listed) == 5, show(r)


OPEN_TAIL_RACE = r'''
import ctypes, json, os, sys, threading
w = sys.argv[1]
pad = "p" * 250
good = (w + "/" + pad + "/f").encode()
bad = (w + "/" + pad + "/l/f").encode()
buf = ctypes.create_string_buffer(max(len(good), len(bad)) + 1)
buf.value = good
stop = False
def flip():
    while not stop:
        buf.value = bad
        buf.value = good
t = threading.Thread(target=flip)
t.start()
seen = {}
libc = ctypes.CDLL(None, use_errno=True)
for i in range(4000):
    fd = libc.open(buf, os.O_RDONLY)
    key = "errno:%d" % ctypes.get_errno() if fd < 0 else os.read(fd, 20).decode().strip()
    if fd >= 0:
        os.close(fd)
    seen[key] = seen.get(key, 0) + 1
stop = True
t.join()
print(json.dumps(seen))
'''


def test_a_read_open_of_a_long_path_whose_tail_flips_never_opens_the_denied_file(who, scratch: Path) -> None:
    # The same flip as above on the reopen path: the open is decided and performed on one
    # private copy of the whole path, the part past the first 256 bytes included.
    w = _tail_race_tree(who, scratch, "SECRET\n")
    r = who.run(["-r", str(w), "--fs-deny", str(w / "sec"), "--", SYSTEM_PYTHON, "-c", OPEN_TAIL_RACE, str(w)],
                timeout=240)
    assert r.returncode == 0, show(r)
    seen = json.loads(r.stdout)
    assert "PLAIN" in seen and "errno:13" in seen, seen   # both whole paths were asked for
    assert "SECRET" not in seen and set(seen) <= {"PLAIN", "errno:13", "errno:20"}, seen


API_RUNS = r'''
import json, sys, threading
import sandlock
d = sys.argv[1]
probe = "import os, sys\nfor f in sys.argv[1:]:\n    try:\n        os.open(f, os.O_RDONLY); print('OPEN')\n" \
        "    except OSError as e:\n        print(e.errno)\n"
box = sandlock.Sandbox(fs_writable=[d])
outs = []
def go():
    r = box.run([sys.executable, "-c", probe, d + "/m0000", d + "/m0200", d + "/mine"])
    outs.append(r.stdout.decode().split())
for _ in range(3):  # the second and third from the Sandbox's fork server
    go()
t = threading.Thread(target=go)
t.start()
t.join()
print(json.dumps(outs))
'''


@pytest.mark.skipif(not IS_ROOT, reason="root's capabilities are what the supervisor must not lend")
def test_api_runs_as_root_from_the_fork_server_and_a_thread_reopen_nothing_the_mode_refuses(scratch: Path) -> None:
    w = scratch / "w"
    w.mkdir()
    for name, mode in (("m0000", 0o000), ("m0200", 0o200), ("mine", 0o644)):
        (w / name).write_text(name)
        (w / name).chmod(mode)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    r = subprocess.run([SYSTEM_PYTHON, "-c", API_RUNS, str(w)], capture_output=True, text=True, timeout=120,
                       env=env, cwd="/")
    assert r.returncode == 0, show(r)
    assert json.loads(r.stdout) == [["13", "13", "OPEN"]] * 4, show(r)  # control: mine opens


DYING_OPENERS = r'''
import os, subprocess, sys, threading, time
child = r"""
import os, sys, threading, time
def loop():
    while True:
        try:
            os.close(os.open(sys.argv[1], os.O_RDONLY | (os.O_CLOEXEC if threading.get_ident() % 2 else 0)))
        except OSError:
            pass
for _ in range(6):
    threading.Thread(target=loop, daemon=True).start()
time.sleep(float(sys.argv[2]))
os._exit(0)  # exit_group: the other threads die in the middle of their opens
"""
for i in range(int(sys.argv[2])):
    subprocess.run([sys.executable, "-c", child, sys.argv[1], "0.%d" % (1 + i % 3)], check=True)
print("done")
'''


def test_processes_whose_threads_die_mid_open_leave_sandlocks_fds_bounded(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "f", "x\n", 0o644)
    proc = who.popen(["-r", str(w), "--", SYSTEM_PYTHON, "-c", DYING_OPENERS, str(w / "f"), "25"])
    peak = 0
    while proc.poll() is None:
        try:
            peak = max(peak, len(os.listdir(f"/proc/{proc.pid}/fd")))
        except OSError:
            pass
        time.sleep(0.02)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out == "done\n" and err == "", f"{out}\n{err}"
    # ~30 of its own, and per thread whose ids it keeps (at most KNOWN_MAX) a pidfd and maybe a
    # /proc fd: 150 dying threads must not add more
    assert peak <= 2 * _notif.KNOWN_MAX + 32, f"sandlock held {peak} fds"


DIES_WITH_SANDLOCK = r'''
import os, signal, sys, threading, time
sys.path.insert(0, sys.argv[1])
import sandlock
d, how = sys.argv[2], sys.argv[3]
marker = open(d + "/marker").read()  # not in our own argv: only the sandbox's sleep carries it
box = sandlock.Sandbox(fs_readable=[d])
if how == "fallback":
    for _ in range(4):  # runs 2-4 from the fork server: notification loops in its pooled threads
        box.run(["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do cat %s/f >/dev/null; done" % d])
    me = os.getpid()
    for tid in os.listdir("/proc/%d/task" % me):
        for kid in open("/proc/%d/task/%s/children" % (me, tid)).read().split():
            os.kill(int(kid), signal.SIGKILL)  # our fork server: the next run launches directly
    time.sleep(0.3)
threading.Thread(target=box.run, args=(["sleep", marker],), daemon=True).start()
time.sleep(1000)
'''


@pytest.mark.parametrize("how", ["fallback", "fresh"])
def test_a_run_launched_directly_from_a_pooled_thread_still_dies_with_sandlock(who, scratch: Path, how: str) -> None:
    # The notification loops block every signal (_notif.block_signals) and run in the fork
    # server's pooled threads; a later run whose server is gone is launched directly from
    # such a thread: its stub must not inherit that mask (PDEATHSIG is a blockable signal).
    w = who.make_dir(scratch / "w", 0o777)
    who.make_file(w / "f", "x\n", 0o644)
    marker = unique_marker(900)
    who.make_file(w / "marker", marker)
    repo = str(Path(__file__).resolve().parents[2])
    proc = who.spawn_outside([SYSTEM_PYTHON, "-c", DIES_WITH_SANDLOCK, repo, str(w), how])
    try:
        assert wait_for(lambda: find_processes(marker), 60), "the command never started"
        proc.kill()  # sandlock (the API's process) dies
        proc.wait()
        assert wait_for(lambda: not find_processes(marker), 10), "the sandbox outlived sandlock"
    finally:
        proc.kill()
        kill_marked(marker)
