"""Faults and load against the supervisor (issue 5; docs/design.md
"Notification mechanics", "Launch", "A bounded supervisor").

Each test runs real Python programs inside sandlock, as root and as the
unprivileged user (the `who` fixture), without `--root` ("host": -w on a
scratch directory) and, where the supervisor keeps per-process state, inside
the Debian rootfs (`--root`, the scratch directory shown as /w).  It extends
tests/test_cli_process.py (SIGKILL of an idle sandlock, timeout, -P/-m/--max-open-files
with a handful of calls) with the faults that happen while trapped syscalls
are in flight:

- sandlock SIGKILLed while threads hammer trapped syscalls, with a sleeping
  and a stopped process beside them: all gone within 1 s;
- the child SIGKILLed while its trapped syscall is pending (sandlock stopped
  with SIGSTOP, so the notification stays unanswered; or a thread blocked in
  a connect performed on behalf): sandlock exits 137 promptly, nothing left;
- thread and process churn, so notifying tids are reused between a
  notification and its reply: every stat answered correctly, per process cwd;
- a tid reused between a notification and its handling, made certain with
  ns_last_pid in a private namespace (progs/tid_reuse.py, not sandboxed): the
  supervisor's pidfds and /proc/TID handles never reach the successor;
- 1000 threads issuing trapped syscalls at once;
- signal storms (SIGWINCH, SIGCONT, SIGUSR1) at sandlock, which forwards them
  to the child (the child counts or ignores them): no error, correct results;
  and storms of default-ignored signals from sandlock's start to its exit
  (every blocking call of the launch and the end of the run interrupted);
- a fork bomb under -P 50, 64 MiB of memory spread over processes under -m 64M,
  10^5 open attempts under --max-open-files 256.

Every sandboxed process carries a unique marker argument; `find_processes`
proves nothing is left; every run has a timeout.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import List, Tuple

import pytest

from conftest import SYSTEM_PYTHON, find_processes, kill_marked, process_state, unique_marker, wait_for

from .conftest import SECURITY

GUEST_PYTHON = "/usr/bin/python3"  # inside the Debian rootfs


@pytest.fixture(params=["host", "root"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def box(mode: str, who, scratch: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    """(sandlock options, python, the writable directory as the command names it, its host path).

    The command finds the directory in $W: its argv holds only the marker.
    """
    wdir = who.make_dir(scratch / "w", 0o777)
    if mode == "host":
        return ["-w", str(wdir), "--env", f"W={wdir}"], SYSTEM_PYTHON, str(wdir), wdir
    deb = request.getfixturevalue("deb_root")
    return ["--root", str(deb), "--fs-mount", f"/w:{wdir}", "--env", "W=/w"], GUEST_PYTHON, "/w", wdir


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout[-3000:]}\n--- stderr\n{r.stderr[-3000:]}"


def states(marker: str) -> List[Tuple[int, str]]:
    return [(pid, process_state(pid)) for pid in find_processes(marker)]


def finish(proc: subprocess.Popen, marker: str, timeout: float = 30) -> Tuple[str, str]:
    """Wait for sandlock; on a hang kill it and everything marked, then fail."""
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        kill_marked(marker)
        pytest.fail(f"sandlock did not finish within {timeout} s (hang)\n--- stdout\n{out[-2000:]}\n"
                    f"--- stderr\n{err[-2000:]}\n--- left: {states(marker)}")


def read_line(proc: subprocess.Popen, marker: str, timeout: float = 20) -> str:
    """The first stdout line of the command (it prints one when it is ready)."""
    result: List[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    reader.start()
    reader.join(timeout)
    if not result or not result[0]:
        proc.kill()
        out, err = proc.communicate()
        kill_marked(marker)
        pytest.fail(f"the command never got ready\n--- stdout\n{out}\n--- stderr\n{err}")
    return result[0]


def assert_nothing_left(marker: str, within: float = 1.0) -> None:
    gone = wait_for(lambda: not find_processes(marker), within, 0.01)
    left = states(marker)
    kill_marked(marker)
    assert gone, f"left running or stopped {within} s later: {left}"


def clean_up(proc: subprocess.Popen, marker: str) -> None:
    """After a test, passed or not: sandlock (continued if stopped) and everything marked are gone."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
    proc.communicate()
    kill_marked(marker)


# --- sandlock killed mid-run ----------------------------------------------------------------------

HAMMER = r"""
import os, signal, sys, threading, time
marker, wdir = sys.argv[1], os.environ["W"]
if os.fork() == 0:                 # a stopped process
    os.kill(os.getpid(), signal.SIGSTOP)
    os._exit(0)
if os.fork() == 0:                 # a sleeping one
    time.sleep(300)
    os._exit(0)
def loop():
    while True:
        for p in ("/etc/passwd", wdir + "/nope", "/nonexistent/x"):
            try:
                os.stat(p)
            except OSError:
                pass
for _ in range(4):
    threading.Thread(target=loop, daemon=True).start()
if os.fork() == 0:                 # a second process in trapped syscalls
    loop()
print("ready", flush=True)
loop()
"""


def test_killing_sandlock_mid_syscalls_kills_running_sleeping_and_stopped_processes(who, box) -> None:
    options, python, _, _ = box
    marker = unique_marker(400)
    proc = who.popen([*options, "--", python, "-c", HAMMER, marker])
    try:
        read_line(proc, marker)
        assert wait_for(lambda: len(find_processes(marker)) >= 4 and "T" in {s for _, s in states(marker)}, 10), \
            f"not all processes started: {states(marker)}"
        time.sleep(0.2)  # let the threads have notifications in flight
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert_nothing_left(marker, 1.0)
    finally:
        clean_up(proc, marker)


# --- the child killed while its trapped syscall is pending ----------------------------------------

STAT_LOOP = r"""
import os, sys
marker = sys.argv[1]
print("ready", flush=True)
while True:
    try:
        os.stat("/nonexistent/x")
    except OSError:
        pass
"""


def test_the_child_killed_while_sandlock_holds_its_syscall_gives_137_and_leaves_nothing(who, box) -> None:
    options, python, _, _ = box
    marker = unique_marker(400)
    proc = who.popen([*options, "--", python, "-c", STAT_LOOP, marker])
    try:
        read_line(proc, marker)
        children = find_processes(marker)
        assert children, "the command is not running"
        os.kill(proc.pid, signal.SIGSTOP)  # the supervisor is held: the next stat stays pending
        time.sleep(0.3)
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGCONT)
        out, err = finish(proc, marker, 10)
        elapsed = time.monotonic() - started
        assert proc.returncode == 137, f"exit {proc.returncode}\n{err}"
        assert elapsed < 3, f"sandlock took {elapsed:.1f} s to notice"
        assert "Traceback" not in err, err
        assert_nothing_left(marker, 1.0)
    finally:
        clean_up(proc, marker)


BLOCKED_CONNECT = r"""
import os, signal, socket, sys, threading, time
marker, wdir = sys.argv[1], os.environ["W"]
path = wdir + "/s"
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(0)
fill = []
while len(fill) < 64:              # fill the backlog: the next blocking connect waits
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.setblocking(False)
    try:
        c.connect(path)
    except BlockingIOError:
        break
    fill.append(c)
def blocked():
    socket.socket(socket.AF_UNIX, socket.SOCK_STREAM).connect(path)
    print("connect returned", flush=True)
threading.Thread(target=blocked, daemon=True).start()
time.sleep(0.5)
t0 = time.monotonic()
try:                               # the supervisor still answers other calls meanwhile
    os.stat(wdir + "/missing")
except FileNotFoundError:
    pass
print("ready backlog=%d stat=%.3f" % (len(fill), time.monotonic() - t0), flush=True)
time.sleep(0.2)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_the_child_killed_during_a_blocked_connect_on_behalf_gives_137_promptly(who, box) -> None:
    options, python, _, _ = box
    marker = unique_marker(400)
    started = time.monotonic()
    proc = who.popen([*options, "--", python, "-c", BLOCKED_CONNECT, marker])
    try:
        out, err = finish(proc, marker, 30)
        elapsed = time.monotonic() - started
        m = re.search(r"ready backlog=(\d+) stat=([\d.]+)", out)
        assert m, f"exit {proc.returncode}\n{out}\n{err}"
        assert "connect returned" not in out, out
        assert float(m.group(2)) < 1.0, f"a pending connect on behalf held up the other calls: {out}"
        assert proc.returncode == 137, f"exit {proc.returncode}\n{out}\n{err}"
        assert elapsed < 15, f"sandlock took {elapsed:.1f} s"
        assert "Traceback" not in err, err
        assert_nothing_left(marker, 1.0)
    finally:
        clean_up(proc, marker)


# --- tid reuse between notification and reply -----------------------------------------------------

CHURN = r"""
import json, os, sys, threading, time
marker, wdir = sys.argv[1], os.environ["W"]
for sub in ("a", "b"):
    os.makedirs(f"{wdir}/{sub}", exist_ok=True)
    for i in range(10):
        with open(f"{wdir}/{sub}/f{i}", "wb") as f:
            f.write(b"x" * (i + (100 if sub == "b" else 0)))
bad = []
def one(i, base=wdir + "/a/", extra=0):
    try:
        size = os.stat(f"{base}f{i % 10}").st_size
        if size != i % 10 + extra:
            bad.append(f"{i}: size {size}")
    except OSError as e:
        bad.append(f"{i}: errno {e.errno}")
    try:
        os.stat(f"{base}missing{i}")
        bad.append(f"{i}: missing exists")
    except FileNotFoundError:
        pass
    except OSError as e:
        bad.append(f"{i}: errno {e.errno} for missing")
threads = 0
deadline = time.monotonic() + 3
while threads < 4000 and time.monotonic() < deadline:
    batch = [threading.Thread(target=one, args=(threads + k,)) for k in range(16)]
    for t in batch:
        t.start()
    for t in batch:
        t.join()
    threads += 16
procs = badprocs = 0
deadline = time.monotonic() + 3
while procs < 600 and time.monotonic() < deadline:
    pids = []
    for k in range(8):
        sub = "ab"[(procs + k) % 2]
        pid = os.fork()
        if pid == 0:               # its own cwd: a relative stat resolves against this process's
            os.chdir(f"{wdir}/{sub}")
            bad.clear()
            one(procs + k, "", 100 if sub == "b" else 0)
            os._exit(1 if bad else 0)
        pids.append(pid)
    for pid in pids:
        if os.waitpid(pid, 0)[1] != 0:
            badprocs += 1
    procs += 8
print(json.dumps({"threads": threads, "bad": bad[:10], "nbad": len(bad), "procs": procs, "badprocs": badprocs}))
"""


def test_short_lived_threads_and_processes_each_get_their_own_answer(who, box) -> None:
    options, python, _, _ = box
    marker = unique_marker(400)
    try:
        r = who.run([*options, "--", python, "-c", CHURN, marker], timeout=60)
    finally:
        kill_marked(marker)
    assert r.returncode == 0, show(r)
    report = json.loads(r.stdout)
    assert report["nbad"] == 0 and report["badprocs"] == 0, show(r)
    assert report["threads"] >= 500 and report["procs"] >= 100, show(r)
    assert_nothing_left(marker)


def test_a_tid_reused_after_its_caller_died_is_never_reached_by_the_supervisor(who, scratch: Path) -> None:
    """Pid reuse between notification and reply, forced (ns_last_pid), on the supervisor's own
    objects: a pidfd or /proc/TID handle taken for a dead caller must not be its successor's."""
    workdir = who.make_dir(scratch / "reuse", 0o755)
    r = who.python((SECURITY / "progs" / "tid_reuse.py").read_text(), args=[str(workdir)], timeout=60)
    where = f"exit {r.returncode}\n--- stdout\n{r.stdout.decode()}\n--- stderr\n{r.stderr.decode()}"
    assert r.returncode == 0, where
    got = json.loads(r.stdout)
    # the scenario happened: A's notification, the control read A's fd, B got A's pid
    assert got["notified_by_a"] and got["reused"], where
    assert got["control"] == str(workdir / "A"), where
    assert got["cached_pidfd"] == "ESRCH", f"the supervisor reached the successor's fd: {where}"
    assert got["fresh_pidfd"] == "ESRCH", f"the supervisor reached the successor's fd: {where}"
    assert got["cwd"] == "ESRCH", f"the supervisor reached the successor's cwd: {where}"
    # control: what was kept for A was A's; after the reuse it is B's (start time, umask)
    assert got["known_a"] == [True, True, "0o77"], where
    assert got["known_b"] == [True, "B", "0o22"], f"a value kept for the dead caller was used: {where}"
    assert (got["id_valid"], got["send"]) == ("ENOENT", "ENOENT"), where


# --- 1000 threads at once --------------------------------------------------------------------------

THOUSAND = r"""
import json, os, sys, threading, time
marker, wdir, n = sys.argv[1], os.environ["W"], int(sys.argv[2])
for i in range(10):
    with open(f"{wdir}/f{i}", "wb") as f:
        f.write(b"x" * i)
threading.stack_size(256 * 1024)
barrier = threading.Barrier(n, timeout=60)
bad, done = [], []
def worker(i):
    barrier.wait()
    for k in range(5):
        try:
            if os.stat(f"{wdir}/f{(i + k) % 10}").st_size != (i + k) % 10:
                bad.append(i)
        except OSError as e:
            bad.append((i, e.errno))
        try:
            os.stat(f"{wdir}/missing{i}")
            bad.append((i, "exists"))
        except FileNotFoundError:
            pass
    done.append(i)
threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"done": len(done), "bad": bad[:10], "seconds": round(time.monotonic() - t0, 2)}))
"""


def test_a_thousand_threads_issuing_trapped_syscalls_at_once_are_all_answered(who, box) -> None:
    options, python, _, _ = box
    marker = unique_marker(400)
    try:
        r = who.run([*options, "--", python, "-c", THOUSAND, marker, "1000"], timeout=90)
    except subprocess.TimeoutExpired:
        kill_marked(marker)
        pytest.fail("1000 threads with trapped syscalls did not finish within 90 s (deadlock?)")
    finally:
        kill_marked(marker)
    assert r.returncode == 0, show(r)
    report = json.loads(r.stdout)
    assert report == {"done": 1000, "bad": [], "seconds": report["seconds"]}, show(r)
    assert report["seconds"] < 30, show(r)


# --- signal storms (EINTR in the supervisor's blocking calls) --------------------------------------

STORM_CHILD = r"""
import json, os, signal, sys, time
marker, wdir = sys.argv[1], os.environ["W"]
got = {"USR1": 0, "WINCH": 0}
signal.signal(signal.SIGUSR1, lambda *a: got.__setitem__("USR1", got["USR1"] + 1))
signal.signal(signal.SIGWINCH, lambda *a: got.__setitem__("WINCH", got["WINCH"] + 1))
# SA_RESTART, as a C program's handlers usually have: the kernel restarts a trapped
# syscall interrupted before the supervisor received it (without it, even stat can
# fail with EINTR under seccomp user notification, where the bare kernel never does).
signal.siginterrupt(signal.SIGUSR1, False)
signal.siginterrupt(signal.SIGWINCH, False)
for i in range(10):
    with open(f"{wdir}/f{i}", "wb") as f:
        f.write(b"x" * i)
print("ready", flush=True)
bad = []
n = 0
deadline = time.monotonic() + 3
while time.monotonic() < deadline:
    i = n % 10
    try:
        if os.stat(f"{wdir}/f{i}").st_size != i:
            bad.append(n)
        with open(f"{wdir}/f{i}", "rb") as f:
            if f.read() != b"x" * i:
                bad.append(n)
        if os.getcwd() != "/":
            bad.append(("cwd", os.getcwd()))
    except OSError as e:
        bad.append((n, e.errno))
    try:
        os.stat(f"{wdir}/missing")
        bad.append((n, "exists"))
    except FileNotFoundError:
        pass
    except OSError as e:
        bad.append((n, e.errno))
    n += 1
print(json.dumps({"rounds": n, "bad": bad[:10], "nbad": len(bad), "got": got}), flush=True)
signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # interpreter shutdown restores SIG_DFL: a late
signal.signal(signal.SIGWINCH, signal.SIG_IGN)  # signal of the storm would kill the command
os._exit(0)
"""


def storm_until_exit(proc: subprocess.Popen, marker: str, storm: Tuple[int, ...], every: int, pause: float,
                     timeout: float, wait_ready: bool) -> Tuple[int, str, str]:
    """Send sandlock the signals of `storm` in turn until it exits (pausing `pause` s every
    `every` signals), after the command's first line if wait_ready: (signals sent, stdout, stderr)."""
    sent = 0
    try:
        if wait_ready:
            read_line(proc, marker)
        while proc.poll() is None:
            try:
                os.kill(proc.pid, storm[sent % len(storm)])
            except ProcessLookupError:
                break
            sent += 1
            if sent % every == 0:
                time.sleep(pause)
        out, err = finish(proc, marker, timeout)
    finally:
        clean_up(proc, marker)
    return sent, out, err


def storm_the_child(who, box, storm: Tuple[int, ...], every: int, pause: float, timeout: float) -> Tuple[dict, str]:
    """Run STORM_CHILD under sandlock while `storm` is sent to sandlock; its report, once the
    run ended with exit 0, nothing on stderr, no wrong result and enough of both.  (report, where)"""
    options, python, _, _ = box
    marker = unique_marker(400)
    proc = who.popen([*options, "--", python, "-c", STORM_CHILD, marker])
    sent, out, err = storm_until_exit(proc, marker, storm, every, pause, timeout, wait_ready=True)
    where = f"exit {proc.returncode}, {sent} signals sent\n--- stdout\n{out}\n--- stderr\n{err}"
    assert proc.returncode == 0, where
    assert err == "", where
    report = json.loads(out)
    assert report["nbad"] == 0, where
    assert report["rounds"] >= 200, where
    assert sent > 500, where
    assert_nothing_left(marker)
    return report, where


def test_signal_storms_to_sandlock_cause_no_error_and_no_wrong_result(who, box) -> None:
    report, where = storm_the_child(who, box, (signal.SIGWINCH, signal.SIGCONT, signal.SIGUSR1), 20, 0.001, 30)
    assert report["got"]["USR1"] > 0 and report["got"]["WINCH"] > 0, f"signals were not forwarded: {where}"


def test_stopping_and_continuing_sandlock_gives_no_open_a_wrong_fd(who, box) -> None:
    """Job control (Ctrl-Z, fg) or a debugger attaching stops sandlock's whole process,
    its notification threads included, whatever signals they block: an fd being handed
    over at that moment must still reach the command as the number its open returns.
    Installed and announced in one step (SECCOMP_ADDFD_FLAG_SEND), a stop withdrew the
    request with the call already marked answered, and the open returned 0."""
    # STOP then CONT, a pause after each pair: sandlock is never left stopped
    storm_the_child(who, box, (signal.SIGSTOP, signal.SIGCONT), 2, 0.001, 60)


SHORT_WORK = r"""
import os, sys
marker, wdir = sys.argv[1], os.environ["W"]
with open(f"{wdir}/f", "w") as f:
    f.write("x" * 7)
n = sum(os.stat(f"{wdir}/f").st_size == 7 for _ in range(2000))
print("stats", n, flush=True)
"""


@pytest.mark.parametrize("run", range(3))
def test_a_signal_storm_from_launch_to_exit_changes_nothing(who, box, run: int) -> None:
    """Signals whose default is to be ignored (so they may come before sandlock installs its
    handlers), from the moment sandlock starts until it exits: every blocking call of the
    launch, the supervision loop and the end of the run is interrupted again and again."""
    options, python, _, _ = box
    marker = unique_marker(400)
    proc = who.popen([*options, "--", python, "-c", SHORT_WORK, marker])
    sent, out, err = storm_until_exit(proc, marker, (signal.SIGWINCH, signal.SIGCONT, signal.SIGCHLD, signal.SIGURG),
                                      50, 0.0005, 60, wait_ready=False)
    where = f"exit {proc.returncode}, {sent} signals sent\n--- stdout\n{out}\n--- stderr\n{err}"
    assert (proc.returncode, out, err) == (0, "stats 2000\n", ""), where
    assert sent > 100, where
    assert_nothing_left(marker)


# --- resource exhaustion ---------------------------------------------------------------------------

FORK_BOMB = r"""
import errno, os, sys, time
marker = sys.argv[1]
r, w = os.pipe()
top = os.getpid()
depth = 0
children = 0
while children < 3 and depth < 5:      # bounded even without a limit: at most 364 processes
    try:
        pid = os.fork()
    except OSError as e:
        os.write(w, b"E" if e.errno == errno.EAGAIN else b"?")
        time.sleep(0.05)
        children += 1
        continue
    if pid == 0:
        depth += 1
        children = 0
        continue
    children += 1
if os.getpid() != top:
    time.sleep(3)
    os._exit(0)
time.sleep(2)
os.close(w)
seen = b""
os.set_blocking(r, False)
try:
    seen = os.read(r, 1 << 20)
except BlockingIOError:
    pass
print("eagain", seen.count(b"E"), "other", seen.count(b"?"), flush=True)
"""


def test_a_fork_bomb_under_p50_gets_eagain_and_leaves_nothing(who) -> None:
    marker = unique_marker(400)
    proc = who.popen(["-P", "50", "--", SYSTEM_PYTHON, "-c", FORK_BOMB, marker])
    peak = 0  # every process of the bomb is a fork of the command: all carry the marker
    try:
        while proc.poll() is None:
            peak = max(peak, len(find_processes(marker)))
            time.sleep(0.02)
        out, err = finish(proc, marker, 60)
    finally:
        clean_up(proc, marker)
    assert proc.returncode == 0, f"{out}\n{err}"
    m = re.search(r"eagain (\d+) other (\d+)", out)
    assert m, f"{out}\n{err}"
    assert int(m.group(1)) > 0 and int(m.group(2)) == 0, out
    assert peak <= 50, f"{peak} sandboxed processes at once under -P 50"
    assert_nothing_left(marker)
    assert subprocess.run(["/bin/true"], timeout=10).returncode == 0  # the host can still fork


MEMORY_HOG = r"""
import os, sys, time
marker = sys.argv[1]
for _ in range(4):
    if os.fork() == 0:
        b = bytearray(40 << 20)        # 40 MiB each, under RLIMIT_DATA, touched
        for i in range(0, len(b), 4096):
            b[i] = 1
        time.sleep(30)
        os._exit(0)
time.sleep(30)
print("survived", flush=True)
"""


def test_memory_spread_over_processes_beyond_m64m_kills_the_sandbox_with_the_message(who) -> None:
    marker = unique_marker(400)
    started = time.monotonic()
    proc = who.popen(["-m", "64M", "--", SYSTEM_PYTHON, "-c", MEMORY_HOG, marker])
    try:
        out, err = finish(proc, marker, 40)
    finally:
        clean_up(proc, marker)
    assert "survived" not in out, out
    assert proc.returncode != 0, err
    assert re.search(r"^sandlock: memory limit exceeded", err, re.M), f"exit {proc.returncode}\n{err}"
    assert "Traceback" not in err, err
    assert time.monotonic() - started < 20
    assert_nothing_left(marker)


OPENER = r"""
import errno, json, os, sys
marker, target, flags = sys.argv[1], os.environ["W"] + "/f", int(sys.argv[2])
fds, counts, peak = [], {}, 0
for i in range(100_000):
    try:
        fds.append(os.open(target, flags))
        peak = max(peak, len(fds))
        counts["ok"] = counts.get("ok", 0) + 1
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        counts[name] = counts.get(name, 0) + 1
    if i % 5000 == 4999:                   # free some, so opens succeed again
        for fd in fds[: len(fds) // 2]:
            os.close(fd)
        del fds[: len(fds) // 2]
print(json.dumps({"counts": counts, "peak": peak, "fds": len(os.listdir("/proc/self/fd"))}), flush=True)
"""


def test_1e5_open_attempts_under_max_open_files_256_get_emfile(who, box, mode: str) -> None:
    # With --root every open is trapped and its fd injected (ADDFD into a full table);
    # on the host O_PATH opens are the trapped ones.
    options, python, _, wdir = box
    who.make_file(wdir / "f", "x")
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_PATH if mode == "host" else 0)
    marker = unique_marker(400)
    proc = who.popen(["--max-open-files", "256", *options, "--", python, "-c", OPENER, marker, str(flags)])
    supervisor_fds = 0
    try:
        while proc.poll() is None:
            try:
                supervisor_fds = max(supervisor_fds, len(os.listdir(f"/proc/{proc.pid}/fd")))
            except OSError:
                pass
            time.sleep(0.05)
        out, err = finish(proc, marker, 120)
    finally:
        clean_up(proc, marker)
    assert proc.returncode == 0, f"{out}\n{err}"
    assert err == "", err
    report = json.loads(out)
    counts = report["counts"]
    assert set(counts) == {"ok", "EMFILE"}, report
    assert sum(counts.values()) == 100_000 and counts["EMFILE"] > 50_000, report
    assert 200 <= report["peak"] <= 253, report
    assert supervisor_fds < 64, f"sandlock held {supervisor_fds} fds"
    assert_nothing_left(marker)
