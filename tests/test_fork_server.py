"""The fork server (README "Fork server"): a Sandbox's later runs start from a small
`python3 -I -S` process and keep every property of the direct launch."""

import errno
import gc
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import rootfs
import sandlock
from sandlock import _threads
from conftest import at_once, build_fixture, find_processes, unique_marker, wait_for
from cowcase import base, broot, busybox_shared  # noqa: F401  (fixtures)

# Shared by the scripts: a Sandbox whose fork server is up, and the tree of a pid.
PRELUDE = r"""
import json, os, signal, sys, threading, time
import sandlock

def warm(box):
    for _ in range(2):
        assert box.run(["/bin/true"]).returncode == 0
    deadline = time.monotonic() + 30
    while not (box._server is not None and box._server.usable()):
        assert time.monotonic() < deadline, "the fork server never started"
        time.sleep(0.01)
    return box._server.pid

def argv_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode("utf-8", "surrogateescape") for a in f.read().rstrip(b"\0").split(b"\0")]
    except OSError:
        return []

def parent(pid):
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])

def marked(marker):
    return [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid() and marker in argv_of(int(p))]

def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in "ZX"
    except OSError:
        return False

def wait(predicate, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True

def in_thread(fn):
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=fn()))
    thread.start()
    return thread, out

def tree(box, server, sleep, marker):
    # [the args of the stub's parent, that parent is the server, the server is our child]
    # for a run of `sleep marker`, killed once seen
    thread, out = in_thread(lambda: box.run([sleep, marker]))
    assert wait(lambda: marked(marker)), "the command never started"
    (command,) = marked(marker)
    stub = parent(command)
    found = [argv_of(parent(stub))[1:3], parent(stub) == server, parent(server) == os.getpid()]
    os.kill(command, signal.SIGKILL)
    thread.join()
    return found
"""

SAME_AS_THE_FIRST = PRELUDE + r"""
marker, work = sys.argv[1], sys.argv[2]
box = sandlock.Sandbox(fs_writable=[work])
def runs():
    os.chdir(work)
    os.umask(0o027)
    echo = box.run(["sh", "-c", "echo out; echo err >&2; pwd; umask; exit 3"], input=b"")
    cat = box.run(["cat"], input=b"in")
    died = box.run(["sh", "-c", "kill -TERM $$"])
    slow = box.run(["sleep", "5"], timeout=0.3)
    missing = None
    try:
        box.run(["/nonexistent-program"])
    except sandlock.ExecError as exc:
        missing = exc.errno
    os.chdir("/")
    os.umask(0o022)
    return [echo.stdout.decode(), echo.stderr.decode(), echo.returncode, cat.stdout.decode(),
            died.returncode, slow.timed_out, slow.returncode, missing]
first = runs()  # launched directly (a Sandbox's first runs)
server = warm(box)
later = runs()
print(json.dumps({"first": first, "later": later, "tree": tree(box, server, "sleep", marker)}))
"""


def test_runs_from_the_fork_server_give_what_the_first_direct_runs_give(who, scratch: Path) -> None:
    work = who.make_dir(scratch / "work", 0o777)
    r = who.python(SAME_AS_THE_FIRST, args=[unique_marker(), str(work)])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["first"] == ["out\n" + f"{work}\n0027\n", "err\n", 3, "in", -signal.SIGTERM, True, 124, 2]
    assert out["later"] == out["first"]
    # the command's stub was forked by the server, a python3 -I -S child of the caller
    assert out["tree"] == [["-I", "-S"], True, True]


NO_FD_LEAK = PRELUDE + r"""
fd = os.open("/etc/hostname", os.O_RDONLY)
os.set_inheritable(fd, True)
r, w = os.pipe()
os.set_inheritable(r, True)
control = subprocess_out = __import__("subprocess").run(["ls", "/proc/self/fd"], close_fds=False,
                                                         capture_output=True).stdout.decode().split()
box = sandlock.Sandbox()
server = warm(box)
def listing():
    out = {}
    for n in os.listdir(f"/proc/{server}/fd"):
        try:
            out[int(n)] = os.readlink(f"/proc/{server}/fd/{n}")
        except OSError:
            pass
    return out
# once the next stub is forked (the server holds its pidfd, its socket and its command's;
# while it forks, two socketpairs' ends for a moment; until the last run's stub has ended,
# that stub's pidfd and no next stub)
wait(lambda: sum(t.startswith("socket:") for t in listing().values()) == 3
     and list(listing().values()).count("anon_inode:[pidfd]") == 1, 5)
server_fds = listing()
command = box.run(["ls", "/proc/self/fd"]).stdout.decode().split()
print(json.dumps({"control": control, "fd": fd, "r": r, "server": server_fds, "command": command}))
"""


def test_no_fd_of_the_caller_reaches_the_fork_server_or_the_command(who) -> None:
    r = who.python(NO_FD_LEAK)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    # control: a child that inherits the caller's fds sees both
    assert str(out["fd"]) in out["control"] and str(out["r"]) in out["control"]
    server = out["server"]
    assert {server[n] for n in ("0", "1", "2")} == {"/dev/null"}
    assert server["3"].startswith("socket:")
    others = {n: target for n, target in server.items() if n not in ("0", "1", "2", "3")}
    # and the command's and the stub's Landlock rulesets, and the next stub's pidfd and
    # sockets (the stub's and its command's)
    rulesets = [n for n, target in others.items() if target == "anon_inode:[landlock-ruleset]"]
    sockets = [n for n, target in others.items() if target.startswith("socket:")]
    pidfds = [n for n, target in others.items() if target == "anon_inode:[pidfd]"]
    assert len(rulesets) <= 2 and len(sockets) == 2 and len(pidfds) == 1, server
    assert len(others) == len(rulesets) + len(sockets) + len(pidfds), server
    assert out["command"] == ["0", "1", "2", "3"]  # ls's own directory fd is 3


KILLED_SANDLOCK = PRELUDE + r"""
marker = sys.argv[1]
box = sandlock.Sandbox()
server = warm(box)
thread, out = in_thread(lambda: box.run(["sh", "-c", f"sleep {marker} & sleep {marker}"]))
assert wait(lambda: len(marked(marker)) == 2), "the commands never started"
children = lambda: open(f"/proc/{server}/task/{server}/children").read().split()
# the run's stub and the next one's (forked ahead once a run has lasted PREFORK_AFTER)
assert wait(lambda: len(children()) == 2), children()
stubs = children()
# and what they forked: the run's command, the command forked ahead, waiting
of = lambda stub: open(f"/proc/{stub}/task/{stub}/children").read().split()
assert wait(lambda: all(len(of(stub)) == 1 for stub in stubs)), [of(stub) for stub in stubs]
forked = [c for stub in stubs for c in of(stub)]
print(server, *stubs, flush=True)
print(*forked, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_sigkill_to_sandlock_kills_its_fork_server_and_every_sandbox_it_started(who) -> None:
    marker = unique_marker()
    r = who.python(KILLED_SANDLOCK, args=[marker])
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-3000:]
    first, second = r.stdout.decode().splitlines()[:2]
    server, *stubs = [int(pid) for pid in first.split()]
    forked = [int(pid) for pid in second.split()]
    assert len(stubs) == 2 and len(forked) == 2

    def gone(pid: int) -> bool:
        try:
            return not open(f"/proc/{pid}/cmdline", "rb").read()  # a zombie's is empty
        except OSError:
            return True
    assert wait_for(lambda: gone(server), 5), "the fork server outlived sandlock"
    assert wait_for(lambda: all(gone(stub) for stub in stubs), 5), "a stub outlived sandlock"
    assert wait_for(lambda: all(gone(pid) for pid in forked), 5), "a command outlived sandlock"
    assert wait_for(lambda: not find_processes(marker), 5), f"left running: {find_processes(marker)}"


KILLED_SERVER = PRELUDE + r"""
marker = sys.argv[1]
box = sandlock.Sandbox()
server = warm(box)
thread, out = in_thread(lambda: box.run(["sh", "-c", f"sleep {marker} & sleep {marker}"]))
assert wait(lambda: len(marked(marker)) == 2), "the commands never started"
started = time.monotonic()
os.kill(server, signal.SIGKILL)
thread.join(10)
ended = [not thread.is_alive(), round(time.monotonic() - started) < 5, out["result"].returncode,
         wait(lambda: not marked(marker), 2)]
after = box.run(["echo", "after"]).stdout.decode()
restarted = wait(lambda: box._server.usable() and box._server.pid != server, 30)
again = box.run(["echo", "again"]).stdout.decode()
print(json.dumps({"ended": ended, "after": after, "restarted": restarted, "again": again,
                  "new_parent": box._server.pid != server}))
"""


def test_the_fork_server_killed_mid_run_ends_that_sandbox_and_the_next_runs_still_work(who) -> None:
    r = who.python(KILLED_SERVER, args=[unique_marker()])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["ended"] == [True, True, -signal.SIGKILL, True]
    assert out["after"] == "after\n"   # launched directly while a new server starts
    assert out["restarted"] and out["again"] == "again\n"



STALE_STUB = PRELUDE + r"""
box = sandlock.Sandbox()
server = warm(box)
children = lambda pid: open(f"/proc/{pid}/task/{pid}/children").read().split()
# the next run's stub, forked ahead, and the command it forked ahead
assert wait(lambda: len(children(server)) == 1 and len(children(children(server)[0])) == 1), children(server)
stub = children(server)[0]
waiting = int(children(stub)[0])
os.kill(waiting, signal.SIGKILL)   # the waiting command dies: that stub is stale
# once it is a zombie its fds are closed (a request sent before that finds it alive, and
# that run fails in its setup: under load, os.kill returned well before the death)
assert wait(lambda: not alive(waiting)), "the waiting command never died"
cat = box.run(["cat"], input=b"through", timeout=20)
after = box.run(["cat"], input=b"again", timeout=20)
print(json.dumps([cat.returncode, cat.stdout.decode(), after.returncode, after.stdout.decode(),
                  box._server.pid == server]))
"""


def test_a_run_that_finds_the_waiting_command_killed_gets_a_fresh_stub_and_the_end_of_its_input(who) -> None:
    # the fresh stub is forked while the server holds the request's fds (the caller's pipes
    # among them): it must keep none, or cat would wait for the end of its input for ever
    r = who.python(STALE_STUB)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert json.loads(r.stdout) == [0, "through", 0, "again", True]

ORPHANS_AND_SIGNALS = PRELUDE + r"""
marker = sys.argv[1]
box = sandlock.Sandbox()
server = warm(box)
# an orphan (its shell exits at once) stays in the sandbox and dies with it
orphan = box.run(["sh", "-c", f"(sleep {marker} &) ; echo started"])
orphan_left = marked(marker)
for pid in orphan_left:
    os.kill(pid, signal.SIGKILL)
# the command cannot signal its stub nor the server; it can signal its own child (control)
signals = box.run(["sh", "-c", f"sleep 5 & kill $! && echo own-child; kill -KILL $PPID || echo stub-refused; "
                               f"kill -KILL {server} || echo server-refused"])
print(json.dumps({"orphan": [orphan.stdout.decode(), orphan.returncode, orphan_left],
                  "signals": signals.stdout.decode().split(), "server_alive": alive(server),
                  "still_used": box._server.pid == server and box.run(["echo", "ok"]).stdout.decode()}))
"""


def test_on_the_fork_server_orphans_stay_in_and_no_command_can_signal_its_stub_or_the_server(who) -> None:
    marker = unique_marker()
    r = who.python(ORPHANS_AND_SIGNALS, args=[marker])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["orphan"] == ["started\n", 0, []]
    assert out["signals"] == ["own-child", "stub-refused", "server-refused"]
    assert out["server_alive"] and out["still_used"] == "ok\n"
    assert not find_processes(marker)


STUB_FDS = PRELUDE + r"""
import subprocess
PROBE = '''
import ctypes, json, os, sys
target = int(sys.argv[1]) if len(sys.argv) > 1 else os.getppid()
out = {}
try:
    out["listed"] = len(os.listdir(f"/proc/{target}/fd"))
except OSError as exc:
    out["listed"] = -exc.errno
out["opened"] = []
for fd in range(64):
    try:
        os.close(os.open(f"/proc/{target}/fd/{fd}", os.O_WRONLY))
        out["opened"].append(fd)
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
out["taken"] = []
try:
    pidfd = os.pidfd_open(target)
    for fd in range(64):
        if libc.syscall(438, pidfd, fd, 0) >= 0:   # pidfd_getfd
            out["taken"].append(fd)
except OSError as exc:
    out["taken"] = -exc.errno
print(json.dumps(out))
'''
# control: the probe reaches the pipe a process of this user holds, where nothing forbids it
holder = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE)
control = json.loads(subprocess.run([sys.executable, "-c", PROBE, str(holder.pid)], capture_output=True).stdout)
holder.kill()
holder.wait()
box = sandlock.Sandbox()
first = box.run(["python3", "-c", PROBE])   # a direct launch: the stub forked from here
warm(box)
served = box.run(["python3", "-c", PROBE])   # from the server
print(json.dumps({"control": [1 in control["opened"], 1 in control["taken"]],
                  "direct": json.loads(first.stdout), "served": json.loads(served.stdout)}))
"""


def test_no_command_reaches_its_stub_s_fds_so_none_can_write_the_status_that_ends_a_run(who) -> None:
    # a run from the server ends at the stub's status (README "Fork server"): a command
    # that could write it would end its run while the sandbox went on
    r = who.python(STUB_FDS)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["control"] == [True, True]
    for launch in ("direct", "served"):
        assert out[launch]["listed"] < 0 and out[launch]["opened"] == [], (launch, out[launch])
        assert out[launch]["taken"] == [] or out[launch]["taken"] < 0, (launch, out[launch])


def _warm(box: sandlock.Sandbox) -> int:
    for _ in range(2):
        assert box.run(["/bin/true"]).returncode == 0
    assert wait_for(lambda: box._server is not None and box._server.usable(), 30), "no fork server"
    return box._server.pid


def _settled() -> None:
    """Before counting this process's fds: the Sandboxes earlier tests left to the garbage
    collector are collected now, and the home threads of their servers (closed by then),
    which close the servers' fds as they end, have ended; then the count holds still
    (else it may drop mid-test)."""
    from sandlock import _forkserver
    gc.collect()
    closing = [o for o in gc.get_objects() if isinstance(o, _forkserver.Server) and o._closed]
    assert wait_for(lambda: not any(o._home.is_alive() for o in closing), 30)

    def still() -> bool:
        before = len(os.listdir("/proc/self/fd"))
        time.sleep(0.2)
        return len(os.listdir("/proc/self/fd")) == before
    assert wait_for(still, 30)


def test_eight_threads_at_once_on_one_fork_server_each_get_their_own_output() -> None:
    box = sandlock.Sandbox()
    server = _warm(box)
    _settled()
    from sandlock import _notif

    def fds() -> int:
        # the ids kept per thread (at most 64 pidfds, some of earlier tests' live threads,
        # evicted by these runs' own) are not this test's to count: forget them all first
        with _notif._KNOWN_LOCK:
            for known in _notif._KNOWN.values():
                known.close()
            _notif._KNOWN.clear()
        return len(os.listdir("/proc/self/fd"))
    fds_before = fds()
    results = at_once(8, lambda i: [box.run(["/bin/echo", f"thread-{i}-run-{j}"]).stdout for j in range(15)], 120)
    assert results == {i: [f"thread-{i}-run-{j}\n".encode() for j in range(15)] for i in range(8)}
    assert box._server.pid == server
    # (a supervisor thread of the last runs may still be closing its copies: wait, with margin)
    assert wait_for(lambda: fds() == fds_before, 30), os.listdir("/proc/self/fd")
    # the server reaped every stub: its one child is the next stub, waiting, whose one child
    # is the command it forked ahead, waiting too (no child of its own)
    def children(pid: int) -> list:
        try:
            return open(f"/proc/{pid}/task/{pid}/children").read().split()
        except OSError:
            return []

    def idle() -> list:  # [stub, its command] once the server's one child is the next stub
        kids = children(server)  # (the last run's stub, still ending, has no command: the
        if len(kids) != 1:       # next is forked only once it has ended: look again)
            return []
        grandkids = children(int(kids[0]))
        return [int(kids[0]), int(grandkids[0])] if len(grandkids) == 1 else []
    assert wait_for(lambda: idle() != [], 30), (children(server), [children(int(k)) for k in children(server)])
    pair = idle()
    assert pair and not children(pair[1]), pair


def test_sandlock_fork_server_0_launches_every_run_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDLOCK_FORK_SERVER", "0")
    box = sandlock.Sandbox()
    for _ in range(3):
        assert box.run(["echo", "direct"]).stdout == b"direct\n"
    assert box._server is None
    monkeypatch.delenv("SANDLOCK_FORK_SERVER")
    assert _warm(sandlock.Sandbox()) > 0  # control: the same without the variable has one


def test_a_fork_server_that_cannot_start_leaves_every_run_launched_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    from sandlock import _forkserver
    monkeypatch.setattr(_forkserver, "_interpreters", lambda: ["/bin/false"])
    box = sandlock.Sandbox()
    for _ in range(2):
        assert box.run(["echo", "x"]).stdout == b"x\n"
    assert wait_for(lambda: box._server.ready.is_set(), 30)
    assert not box._server.usable()
    assert box.run(["sh", "-c", "echo $0"]).stdout == b"sh\n"


WORKDIR_SAME_AS_THE_FIRST = PRELUDE + r"""
marker, work = sys.argv[1], sys.argv[2]
# a copy-on-write workdir (README "Copy-on-write workdir"): each run's upper layer is built
# in the caller's thread, the commit and the --max-disk walks are done by the confined
# supervising thread (the fork server's from the third run)
box = sandlock.Sandbox(workdir=work, fs_writable=[work], max_disk="4M")
def state(i):
    return {n.replace(f"-{i}", "-I"): open(os.path.join(work, n)).read()
            for n in sorted(os.listdir(work)) if n.endswith(f"-{i}")}
def runs(i):
    for name, text in ((f"keep-{i}", "old\n"), (f"gone-{i}", "bye\n")):
        with open(os.path.join(work, name), "w") as f:
            f.write(text)
    ok = box.run(["sh", "-c", f"echo new > made-{i}; echo more >> keep-{i}; rm gone-{i}; cat keep-{i}; pwd"],
                 cwd=work)
    failed = box.run(["sh", "-c", f"echo x > failed-{i}; rm keep-{i}; exit 3"], cwd=work)  # aborted
    big = box.run(["sh", "-c", f"head -c 3000000 /dev/zero > a-{i}; head -c 3000000 /dev/zero > b-{i}; sleep 30"],
                  cwd=work)
    return [ok.returncode, ok.stdout.decode(), [str(c).replace(f"-{i}", "-I") for c in ok.changes],
            failed.returncode, big.returncode, big.reason.split(" (")[0], state(i)]
first = runs(0)  # launched directly (a Sandbox's first runs)
server = warm(box)
later = [runs(i) for i in (1, 2)]
print(json.dumps({"first": first, "later": later, "tree": tree(box, server, "sleep", marker),
                  "served": box._server.pid == server and box._server.usable()}))
"""


def test_runs_in_a_workdir_from_the_fork_server_give_what_the_first_direct_runs_give(who, base: Path) -> None:
    work = who.make_dir(base / "wd", 0o755)
    r = who.python(WORKDIR_SAME_AS_THE_FIRST, args=[unique_marker(), str(work)])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["first"] == [0, f"old\nmore\n{work}\n", ["D gone-I", "M keep-I", "A made-I"], 3,
                            -signal.SIGKILL, "disk limit exceeded", {"keep-I": "old\nmore\n", "made-I": "new\n"}]
    assert out["later"] == [out["first"]] * 2
    # the command's stub was forked by the server, a python3 -I -S child of the caller
    assert out["tree"] == [["-I", "-S"], True, True]
    assert out["served"] is True
    assert sorted(os.listdir(work)) == sorted(f"{n}-{i}" for n in ("keep", "made") for i in range(3))


def test_a_workdir_s_upper_layer_no_run_took_goes_with_its_hand_off(tmp_path: Path) -> None:
    """The upper layer a run from the server gets is built in the caller's thread
    (sandlock._handoff); a hand-off that is closed before a run took it (the server closed
    meanwhile, no thread for the run) removes it."""
    work = tmp_path / "w"
    (work / "src").mkdir(parents=True)
    (work / "src" / "f").write_text("lower\n")
    with sandlock.Sandbox(workdir=str(work), fs_writable=[str(work)]) as box:  # its server ends with it
        _warm(box)
        prepared = box._prepare()
        layers = sorted(os.listdir(prepared.layers.path))   # no run's layer: the runs are over
        handoff = sandlock._handoff(box._server, box.policy, prepared)
        run, farm = Path(handoff.upper.run), Path(handoff.upper.tree)
        assert (farm / "src" / "f").read_text() == "lower\n"   # the farm: the lower tree, linked
        assert (farm / "src" / "f").stat().st_ino == (work / "src" / "f").stat().st_ino
        handoff.close()
        assert not run.exists() and handoff.upper is None
        assert sorted(os.listdir(prepared.layers.path)) == layers
        assert box.run(["cat", "src/f"], cwd=str(work)).stdout == b"lower\n"   # the next run builds its own


def test_a_workdir_s_upper_layer_that_cannot_be_built_fails_the_run_on_the_fork_server_and_changes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandlock import _cow
    work = tmp_path / "w"
    work.mkdir()
    (work / "keep").write_text("old\n")

    def full(self: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    with sandlock.Sandbox(workdir=str(work), fs_writable=[str(work)]) as box:  # its server ends with it
        _warm(box)
        _settled()
        before = sorted(os.listdir(work)), (work / "keep").read_text()
        layers = sorted(os.listdir(box._prepared.layers.path))
        fds = len(os.listdir("/proc/self/fd"))
        with monkeypatch.context() as patched:
            patched.setattr(_cow.Upper, "build", full)
            for _ in range(3):
                with pytest.raises(sandlock.SetupError, match="cannot make the upper layer") as raised:
                    box.run(["sh", "-c", "echo new > keep"], cwd=str(work), input=b"")
                assert raised.value.errno == errno.ENOSPC
        assert len(os.listdir("/proc/self/fd")) == fds   # nothing of the runs left open
        assert (sorted(os.listdir(work)), (work / "keep").read_text()) == before
        assert sorted(os.listdir(box._prepared.layers.path)) == layers
        # control: the same run once the layer can be built, on the same server
        assert box.run(["sh", "-c", "echo new > keep"], cwd=str(work)).returncode == 0
        assert (work / "keep").read_text() == "new\n"
        assert box._server.usable()


@pytest.fixture(scope="module")
def debian() -> Path:
    return build_fixture(rootfs.debian_rootfs)


ROOT_SAME_AS_THE_FIRST = PRELUDE + r"""
marker, root = sys.argv[1], sys.argv[2]
box = sandlock.Sandbox(chroot=root)
# system(3) execs "/bin/sh" from libc's read-only pages: the supervisor rewrites that
# string through the memory writer (README "Emulated root"), the fork server's in its runs
SYSTEM = "import os, sys; status = os.system('echo sys; cd /etc && pwd'); sys.exit(status >> 8)"
def runs():
    sh = box.run(["/bin/sh", "-c", "echo out; echo err >&2; pwd; cd /usr && pwd; exit 3"], input=b"")
    cat = box.run(["/bin/cat"], input=b"in")
    system = box.run(["/usr/bin/python3", "-c", SYSTEM])
    missing = None
    try:
        box.run(["/nonexistent-program"])
    except sandlock.ExecError as exc:
        missing = exc.errno
    return [sh.stdout.decode(), sh.stderr.decode(), sh.returncode, cat.stdout.decode(),
            system.stdout.decode(), system.returncode, missing]
first = runs()  # launched directly (a Sandbox's first runs)
server = warm(box)
later = [runs() for _ in range(3)]
seen = tree(box, server, "/bin/sleep", marker)
from sandlock import _threads
writers = [t.name for t in _threads.running()].count("sandlock-memory")
print(json.dumps({"first": first, "later": later, "tree": seen, "writers": writers,
                  "served": box._server.pid == server and box._server.usable()}))
"""


def test_runs_in_a_root_from_the_fork_server_give_what_the_first_direct_runs_give(who, debian: Path) -> None:
    r = who.python(ROOT_SAME_AS_THE_FIRST, args=[unique_marker(), str(debian)])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["first"] == ["out\n/\n/usr\n", "err\n", 3, "in", "sys\n/etc\n", 0, 2]
    assert out["later"] == [out["first"]] * 3
    # the command's stub was forked by the server, a python3 -I -S child of the caller
    assert out["tree"] == [["-I", "-S"], True, True]
    assert out["served"] is True
    assert out["writers"] == 1   # the server's one memory writer, for all its runs


ROOT_HOME_DOMAIN = PRELUDE + r"""
import socket
root, secret = sys.argv[1], sys.argv[2]
box = sandlock.Sandbox(chroot=root)
warm(box)
def probe():
    out = {}
    for name, path in (("interpreter", os.path.realpath(sys.executable)), ("library", socket.__file__),
                       ("secret", secret), ("listing", os.path.dirname(secret))):
        try:
            if name == "listing":
                os.listdir(path)
            else:
                with open(path, "rb") as f:
                    f.read(1)
            out[name] = "read"
        except OSError as exc:
            out[name] = exc.errno
    return out
confined = {}
box._server.spawn(lambda: confined.update(probe()), lambda exc: None).join(30)
print(json.dumps({"confined": confined, "control": probe()}))
"""


def test_the_home_thread_of_a_root_s_fork_server_reads_the_interpreter_and_nothing_else_of_the_host(
        who, debian: Path, scratch: Path) -> None:
    """Its runs' supervising threads share its domain: the root's supervisor ruleset and
    reading the interpreter the server runs (_landlock.interpreter_rules), no more."""
    secret = who.make_file(who.make_dir(scratch / "host", 0o755) / "secret", b"s", 0o644)
    r = who.python(ROOT_HOME_DOMAIN, args=[str(debian), str(secret)])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["confined"] == {"interpreter": "read", "library": "read",
                               "secret": errno.EACCES, "listing": errno.EACCES}
    assert out["control"] == {"interpreter": "read", "library": "read", "secret": "read", "listing": "read"}


def test_threads_at_once_on_a_root_s_fork_server_each_get_their_own_system_output(debian: Path) -> None:
    box = sandlock.Sandbox(chroot=str(debian))
    _warm(box)
    results = at_once(4, lambda i: [box.run(["/usr/bin/python3", "-c", f"import os; os.system('echo {i}-{j}')"]).stdout
                                    for j in range(4)], 120)
    assert results == {i: [f"{i}-{j}\n".encode() for j in range(4)] for i in range(4)}
    assert [t.name for t in _threads.running()].count("sandlock-memory") <= 1


def test_a_root_s_runs_one_after_another_reuse_one_anchor_directory_and_each_gets_a_fresh_dev_shm(
        debian: Path) -> None:
    """The anchor directory (every process's real cwd, where the supervisor puts the links an
    exec goes through) passes from run to run; what a run leaves in /dev/shm never does."""
    box = sandlock.Sandbox(chroot=str(debian))
    script = ("ls -A /dev/shm; echo made > /dev/shm/left-$1; cd /usr && pwd; "
              "/usr/bin/python3 -c 'import os; os.system(\"echo sys\")'")
    outs = [box.run(["/bin/sh", "-c", script, "sh", str(i)]) for i in range(5)]
    assert [(r.returncode, r.stdout, r.stderr) for r in outs] == [(0, b"/usr\nsys\n", b"")] * 5
    anchors = os.listdir(box._prepared.root.cwd)
    assert len(anchors) == 1, anchors   # one directory, made by the first run
    assert os.listdir(box._prepared.root.shm) == []   # each run's /dev/shm removed after it


def test_a_root_s_fork_server_ends_its_memory_writer_when_closed_and_starts_none_after(debian: Path) -> None:
    box = sandlock.Sandbox(chroot=str(debian))
    _warm(box)
    server = box._server
    assert box.run(["/bin/true"]).returncode == 0   # from the server: its writer is started
    writer = server._memory
    assert writer is not None and writer._thread.is_alive()
    server.close()
    writer._thread.join(10)
    assert not writer._thread.is_alive()
    with pytest.raises(OSError):   # a hand-off now would start a writer nobody ends
        server.memory_writer()
    assert server._memory is writer


def test_the_rehearsal_of_a_command_forked_ahead_acts_on_nothing() -> None:
    """A command the server forked while no run waited goes through the last request
    (_forkserver._rehearse) to take its copy-on-write faults early: it must change none of
    what the command then sets up from its own request (dispositions, mask, umask, cwd,
    fds, limits), nor fail on a sample it cannot decode."""
    import marshal
    import resource
    from sandlock import _forkserver, _launch
    request = (["/bin/true"], ["/bin/true", "x"], {b"HOME": b"/h"}, "/", [[resource.RLIMIT_NOFILE, 64]], 8, 0o27,
               [int(signal.SIGPIPE), int(signal.SIGXFSZ)], [0, 5, 6], 0, [0], 1 << (signal.SIGHUP - 1))
    base = _launch.Prepared(candidates=(), argv=(), envp={}, cwd=None, rlimits=(), child_ruleset=-1,
                            scope_ruleset=-1, filter_ptr=None, filter_flags=0, stdio=(-1, -1, -1), own_group=True,
                            foreground_tty=-1, umask=0o022, reset_signals=())

    def state() -> tuple:
        mask = os.umask(0o022)
        os.umask(mask)
        return (mask, signal.pthread_sigmask(signal.SIG_BLOCK, []),
                [signal.getsignal(sig) for sig in sorted(signal.valid_signals())], os.getcwd(),
                sorted(os.listdir("/proc/self/fd")), resource.getrlimit(resource.RLIMIT_NOFILE))
    # in a child of one thread, as the command forked ahead is: in this process another
    # thread (an earlier test's pool, a collected resolver) may open or close an fd meanwhile
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            before = state()
            _forkserver._rehearse(marshal.dumps(request), base, (signal.SIGPIPE,))
            _forkserver._rehearse(b"not a request", base, ())
            after = state()
            os.write(w, b"same" if after == before else repr((before, after)).encode()[:60000])
        finally:
            os._exit(0)
    os.close(w)
    chunks = []
    while True:
        chunk = os.read(r, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    os.close(r)
    os.waitpid(pid, 0)
    assert b"".join(chunks) == b"same", b"".join(chunks).decode()
    # the plan it goes through is the command's own (_command)
    plan = _forkserver._prepared(base, request, (signal.SIGUSR1,))
    assert (plan.argv, plan.cwd, plan.umask, plan.rlimits, plan.affinity) == (
        ("/bin/true", "x"), "/", 0o27, ([resource.RLIMIT_NOFILE, 64],), (0,))
    assert plan.reset_signals == tuple(sorted({signal.SIGPIPE, signal.SIGXFSZ, signal.SIGUSR1}))


def test_the_caller_changing_its_rlimits_gets_a_direct_launch_with_them() -> None:
    import resource
    box = sandlock.Sandbox()
    _warm(box)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (100, hard))
    try:
        assert not box._server.usable()
        assert box.run(["sh", "-c", "ulimit -n"]).stdout == b"100\n"
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert box._server.usable()
    assert box.run(["sh", "-c", "ulimit -n"]).stdout == f"{soft}\n".encode()


def test_runs_one_after_another_reuse_one_supervising_thread_which_ends_when_idle(monkeypatch) -> None:
    from sandlock import _forkserver
    monkeypatch.setattr(_forkserver, "POOL_IDLE", 0.5)
    box = sandlock.Sandbox()
    _warm(box)

    others = {t for t in threading.enumerate() if t.name == "sandlock-supervisor"}  # earlier tests' pools

    def supervisors() -> list:
        return [t for t in threading.enumerate() if t.name == "sandlock-supervisor" and t not in others]
    for i in range(20):
        assert box.run(["echo", str(i)]).stdout == f"{i}\n".encode()
        assert len(supervisors()) <= 1
    assert wait_for(lambda: not supervisors(), 10), supervisors()
    assert box.run(["echo", "later"]).stdout == b"later\n"  # a new one is made


def test_a_forked_copy_of_the_caller_launches_directly_and_leaves_the_parents_server_alone() -> None:
    box = sandlock.Sandbox()
    server = _warm(box)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no home thread, no pool; the server is its parent's
        try:
            out = box.run(["echo", "child"]).stdout
            os.write(w, out + (b"usable" if box._server.usable() else b"not usable"))
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        got = f.read()
    os.waitpid(pid, 0)
    assert got == b"child\nnot usable"
    assert box._server.pid == server and box.run(["echo", "parent"]).stdout == b"parent\n"


def test_a_stopped_fork_server_is_replaced_and_the_run_launched_directly(monkeypatch) -> None:
    from sandlock import _forkserver
    monkeypatch.setattr(_forkserver, "REPLY_TIMEOUT", 0.5)
    box = sandlock.Sandbox()
    server = _warm(box)
    os.kill(server, signal.SIGSTOP)
    started = time.monotonic()
    assert box.run(["echo", "direct"]).stdout == b"direct\n"
    assert time.monotonic() - started < 5
    assert not os.path.exists(f"/proc/{server}")  # killed and reaped, not left stopped
    assert wait_for(lambda: box._server.usable() and box._server.pid != server, 30)
    assert box.run(["echo", "again"]).stdout == b"again\n"


def test_a_start_that_raises_leaves_the_home_thread_serving_and_runs_launched_directly(monkeypatch) -> None:
    from sandlock import _forkserver

    def fails(self, interpreter: str) -> bool:
        raise OSError(24, "Too many open files")
    monkeypatch.setattr(_forkserver.Server, "_start_with", fails)
    box = sandlock.Sandbox()
    for _ in range(2):
        assert box.run(["echo", "x"]).stdout == b"x\n"
    assert wait_for(lambda: box._server.ready.is_set(), 30)
    assert not box._server.usable() and box._server._home.is_alive()
    assert box.run(["echo", "y"]).stdout == b"y\n"


# A stub whose parent (the supervisor, or the fork server: it exits as soon as its Sandbox
# goes, just after forking the next stub) dies before the stub has confined itself.  Its
# kill(-1) is not yet held by the signal scope: found killing every process of the
# machine when run as root.  os.kill is replaced by a recorder: nothing is signalled.
ORPHANED_STUB = r'''
import os, sys
from sandlock import _launch
calls = _launch.bind_calls()
killed = []
os.kill = lambda pid, sig: killed.append(["kill", pid, sig])
os.killpg = lambda pg, sig: killed.append(["killpg", pg, sig])
real_exit = os._exit
def leave(code):
    sys.stdout.write(repr([code, killed]) + "\n")
    sys.stdout.flush()
    real_exit(0)
os._exit = leave
prep = _launch.Prepared((), (), {}, None, (), -1, 99, None, 0, (-1, -1, -1), True, -1, 0o22, ())
if sys.argv[1] == "orphaned":  # the parent died before the stub confined itself
    _launch.confine_stub(prep, calls, os.getppid() + 4000000, ["stub"])
else:  # control: a confined stub's doom
    _launch._confined = True
    _launch._doom(prep)
'''


def test_a_stub_orphaned_before_it_confined_itself_only_leaves(who) -> None:
    r = who.python(ORPHANED_STUB, args=["orphaned"])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert r.stdout.decode() == "[137, []]\n"
    # control: a stub that has confined itself kills the sandbox with kill(-1) (the scope holds it)
    r = who.python(ORPHANED_STUB, args=["control"])
    assert r.stdout.decode() == "[137, [['kill', -1, 9]]]\n", r.stderr.decode()[-3000:]


RECORDER = PRELUDE + r"""
late = []


class Recorder:
    # consulted for every module not yet in sys.modules, by every thread
    def find_spec(self, name, path=None, target=None):
        if recording and threading.current_thread().name.startswith("sandlock-"):
            late.append(name)
        return None


recording = False
sys.meta_path.insert(0, Recorder())
"""

CONFINED_IMPORTS = RECORDER + r"""
box = sandlock.Sandbox(fs_writable=["/tmp"], max_memory="256M", timeout=60)
server = warm(box)
recording = True  # from here every supervising thread is one of the fork server's, confined
runs = [box.run(["sh", "-c", "cat; echo err >&2; exit 3"], input=b"in").returncode,
        box.run(["sleep", "5"], timeout=0.3).timed_out]
with box.popen(["cat"], stdin=sandlock.PIPE, stdout=sandlock.PIPE, text=True) as p:
    p.pause()
    p.resume()
    runs.append(p.communicate("x\n")[0])
with box.popen(["sleep", "30"]) as p:
    p.send_signal(signal.SIGTERM)
    runs.append(p.wait())
p = box.popen(["sleep", "30"])
p.kill()
runs.append(p.wait())
try:
    box.run(["/nonexistent-program"])
except sandlock.ExecError as exc:
    runs.append(type(exc).__name__)
if sys.argv[1] == "control":  # an import in a pooled supervising thread is seen
    box._server.spawn(lambda: __import__("colorsys"), lambda exc: None).join()
print(json.dumps({"late": late, "runs": runs, "served": box._server.pid == server and box._server.usable()}))
"""


def test_nothing_is_imported_in_the_confined_threads_of_the_fork_server(who) -> None:
    r = who.python(CONFINED_IMPORTS, args=["test"])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().splitlines()[-1])
    assert out["served"] is True
    assert out["runs"] == [3, True, "x\n", -signal.SIGTERM, -signal.SIGKILL, "CommandNotFoundError"]
    assert out["late"] == []
    # control: the recorder sees an import made in a pooled supervising thread
    r = who.python(CONFINED_IMPORTS, args=["control"])
    assert json.loads(r.stdout.decode().splitlines()[-1])["late"] == ["colorsys"], r.stderr.decode()[-3000:]


def test_a_wrong_stream_argument_leaves_nothing_open_and_no_upper_layer_from_the_fork_server(tmp_path: Path) -> None:
    """popen() takes the hand-off first (a workdir's layer is built there), then its streams:
    a wrong stream raises PolicyTypeError with the layer removed and no fd of it left."""
    work = tmp_path / "w"
    work.mkdir()
    with sandlock.Sandbox(workdir=str(work), fs_writable=[str(work)]) as box:  # its server ends with it
        _warm(box)
        _settled()
        layers = sorted(os.listdir(box._prepared.layers.path))
        fds = sorted(os.listdir("/proc/self/fd"))
        for _ in range(3):
            with pytest.raises(sandlock.PolicyTypeError, match="stderr: expected PIPE"):
                box.popen(["true"], stdout=sandlock.PIPE, stderr=object())
        assert sorted(os.listdir("/proc/self/fd")) == fds
        assert sorted(os.listdir(box._prepared.layers.path)) == layers
        assert box.run(["true"]).returncode == 0   # control: the next run starts as ever


WORKDIR_CONFINED_IMPORTS = RECORDER + r"""
ends = []
for index, options in enumerate(({}, {"on_exit": "keep"}, {"dry_run": True})):
    work = os.path.join(sys.argv[1], str(index))
    os.mkdir(work)
    for name in ("keep", "gone"):
        with open(os.path.join(work, name), "w") as f:
            f.write("old\n")
    box = sandlock.Sandbox(workdir=work, fs_writable=[work], max_disk="4M", **options)
    server = warm(box)
    recording = True  # from here every supervising thread is one of the fork server's, confined
    for script in ("echo a > made; echo b >> keep; rm -f gone; ls -R > /dev/null", "echo x > failed; exit 3",
                   "head -c 3000000 /dev/zero > a; head -c 3000000 /dev/zero > b; sleep 30"):
        result = box.run(["sh", "-c", script], cwd=work, timeout=60)
        ends.append([result.returncode, [str(c) for c in result.changes]])
    recording = False
    assert box._server.pid == server and box._server.usable()
print(json.dumps({"late": late, "ends": ends}))
"""


def test_nothing_is_imported_in_the_confined_threads_of_a_workdir_s_fork_server(who, base: Path) -> None:
    """Commit, abort, keep, a dry run and the --max-disk walks, from the server's threads."""
    r = who.python(WORKDIR_CONFINED_IMPORTS, args=[str(who.make_dir(base / "wd", 0o755))])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().splitlines()[-1])
    # each Sandbox: committed (kept, listed), aborted, killed past --max-disk
    assert out["ends"] == [[0, ["D gone", "M keep", "A made"]], [3, ["A failed"]], [-signal.SIGKILL, ["A a", "A b"]]] * 3
    assert out["late"] == []


NETWORK_SAME_AS_THE_FIRST = PRELUDE + r"""
import socket
marker = sys.argv[1]
listeners = []
for _ in range(2):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    listeners.append(listener)
allowed, other = (one.getsockname()[1] for one in listeners)
def serve(listener):
    while True:
        conn, _ = listener.accept()
        conn.sendall(b"hello\n")
        conn.close()
for listener in listeners:
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
CONNECT = '''import socket, sys
out = []
for host, port in (("localhost", int(sys.argv[1])), ("127.0.0.1", int(sys.argv[1])), ("127.0.0.1", int(sys.argv[2]))):
    try:
        out.append(socket.create_connection((host, port), timeout=10).recv(9).decode())
    except OSError as exc:
        out.append(exc.errno)
print(out)'''
# "localhost" is allowed through /etc/hosts, which DNS policing reads (_dns.Dns: in the
# caller's thread for a run from the server); --net-deny has no DNS policing
boxes = {"allow": sandlock.Sandbox(net_allow=[f"localhost:{allowed}"]),
         "deny": sandlock.Sandbox(net_deny=["127.0.0.2"])}
def runs(box):
    return box.run(["python3", "-c", CONNECT, str(allowed), str(other)]).stdout.decode()
out = {}
for name, box in boxes.items():
    first = runs(box)  # launched directly (a Sandbox's first runs)
    server = warm(box)
    out[name] = {"first": first, "later": [runs(box) for _ in range(3)],
                 "served": box._server.pid == server and box._server.usable()}
out["tree"] = tree(boxes["allow"], boxes["allow"]._server.pid, "sleep", marker)
print(json.dumps(out))
"""


def test_runs_with_network_rules_from_the_fork_server_give_what_the_first_direct_runs_give(who) -> None:
    r = who.python(NETWORK_SAME_AS_THE_FIRST, args=[unique_marker()])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["allow"]["first"] == f"['hello\\n', 'hello\\n', {errno.EACCES}]\n"
    assert out["deny"]["first"] == "['hello\\n', 'hello\\n', 'hello\\n']\n"
    for name in ("allow", "deny"):
        assert out[name]["later"] == [out[name]["first"]] * 3
        assert out[name]["served"] is True
    # the command's stub was forked by the server, a python3 -I -S child of the caller
    assert out["tree"] == [["-I", "-S"], True, True]


NETWORK_CONFINED_IMPORTS = RECORDER + r"""
import socket
listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(64)
port = listener.getsockname()[1]
threading.Thread(target=lambda: [listener.accept()[0].close() for _ in iter(int, 1)], daemon=True).start()
with open("/etc/resolv.conf") as f:
    resolvers = [line.split()[1] for line in f if line.startswith("nameserver")] or ["127.0.0.1"]
# connect allowed (by the name /etc/hosts gives 127.0.0.1) and refused, a DNS query for an
# allowed name sent to the resolver (parsed by the DNS policing), a datagram elsewhere refused
CONNECT = '''import socket, struct, sys
out = []
for port in (int(sys.argv[1]), 9):
    try:
        socket.create_connection(("localhost", port), timeout=10).close()
        out.append("connected")
    except OSError as exc:
        out.append(exc.errno)
query = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\\x09localhost\\x00" + struct.pack("!HH", 1, 1)
udp = socket.socket(socket.AF_INET6 if ":" in sys.argv[2] else socket.AF_INET, socket.SOCK_DGRAM)
for where in ((sys.argv[2], 53), (sys.argv[2], 54)):
    try:
        udp.sendto(query, where)
        out.append("sent")
    except OSError as exc:
        out.append(exc.errno)
print(out)'''
box = sandlock.Sandbox(net_allow=[f"localhost:{port}", "udp://localhost:9"], timeout=60)
server = warm(box)
recording = True  # from here every supervising thread is one of the fork server's, confined
runs = [box.run(["python3", "-c", CONNECT, str(port), resolvers[0]]).stdout.decode() for _ in range(2)]
recording = False
print(json.dumps({"late": late, "runs": runs, "served": box._server.pid == server and box._server.usable()}))
"""


def test_nothing_is_imported_in_the_confined_threads_of_a_network_policy_s_fork_server(who) -> None:
    r = who.python(NETWORK_CONFINED_IMPORTS)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout.decode().splitlines()[-1])
    assert out["served"] is True
    assert out["runs"] == [f"['connected', {errno.EACCES}, 'sent', {errno.EACCES}]\n"] * 2
    assert out["late"] == []


POLICY_FN_SAME_AS_THE_FIRST = PRELUDE + r"""
d = sys.argv[1]
asked = []
def fn(event, ctx):  # asked from a thread the run's (confined) thread starts
    if event.kind in ("open", "exec"):
        asked.append([event.kind, os.path.basename(event.path)])
    if event.kind == "open" and event.path.endswith("/trigger"):
        ctx.deny_path(d + "/secret")   # for the rest of this run only
    return event.kind != "open" or not event.path.endswith("/refused")
box = sandlock.Sandbox(fs_writable=[d], policy_fn=fn)
SCRIPT = ("echo a >> ok; (echo b >> refused) 2>/dev/null || echo refused; cat secret/data; : > trigger; "
          "cat secret/data 2>/dev/null || echo denied; /bin/echo end")
def runs():
    del asked[:]
    r = box.run(["/bin/sh", "-c", SCRIPT], cwd=d)
    return [r.returncode, r.stdout.decode(), list(asked)]
first = runs()  # launched directly (a Sandbox's first runs)
server = warm(box)
later = [runs() for _ in range(3)]
print(json.dumps({"first": first, "later": later, "served": box._server.pid == server and box._server.usable()}))
"""


def test_runs_with_a_policy_callback_from_the_fork_server_give_what_the_first_direct_run_gives(
        who, scratch: Path) -> None:
    d = who.make_dir(scratch / "cb", 0o777)
    for name, text in (("ok", ""), ("refused", ""), ("trigger", ""), ("secret/data", "hidden\n")):
        who.make_file(d / name, text, 0o666)
    r = who.python(POLICY_FN_SAME_AS_THE_FIRST, args=[str(d)])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["first"][:2] == [0, "refused\nhidden\ndenied\nend\n"]
    opens = [name for kind, name in out["first"][2] if kind == "open" and name != "null"]
    assert opens == ["ok", "refused", "trigger"] and out["first"][2][-1] == ["exec", "echo"]
    assert out["later"] == [out["first"]] * 3
    assert out["served"] is True
    assert (d / "ok").read_text() == "a\n" * 4 and (d / "refused").read_text() == ""


DETERMINISM_SAME_AS_THE_FIRST = PRELUDE + r"""
# getrandom and the clock's vDSO (written through the server's memory writer, in read-only pages)
box = sandlock.Sandbox(random_seed=7, time_start="2000-01-01")
CODE = "import os, time; print(os.urandom(6).hex(), int(time.time()) // 60)"
first = box.run(["python3", "-c", CODE]).stdout.decode()  # launched directly (a Sandbox's first runs)
server = warm(box)
later = [box.run(["python3", "-c", CODE]).stdout.decode() for _ in range(3)]
from sandlock import _threads
writers = [t.name for t in _threads.running()].count("sandlock-memory")
print(json.dumps({"first": first, "later": later, "writers": writers,
                  "served": box._server.pid == server and box._server.usable()}))
"""


def test_deterministic_runs_from_the_fork_server_give_what_the_first_direct_run_gives(who) -> None:
    r = who.python(DETERMINISM_SAME_AS_THE_FIRST)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    random_hex, minutes = out["first"].split()
    assert len(random_hex) == 12 and int(minutes) == 946684800 // 60   # 2000-01-01, not the machine's clock
    assert out["later"] == [out["first"]] * 3
    assert out["served"] is True
    assert out["writers"] == 1   # the server's one memory writer


FAKE_ROOT_RUNS = PRELUDE + r"""
root = sys.argv[1]
# each run reads the record of owners in the caller's thread (a run from the server) and saves
# it at its end: what a run chowned, the next runs see
box = sandlock.Sandbox(chroot=root, fake_root=True, fs_writable=["/tmp"])
def run(i):
    script = f"touch /tmp/f{i}; chown {100 + i}:{200 + i} /tmp/f{i}; id -u; stat -c '%n %u:%g' /tmp/f*"
    return box.run(["/bin/sh", "-c", script]).stdout.decode()
outs = [run(0), run(1)]  # launched directly (a Sandbox's first runs)
server = warm(box)
outs += [run(i) for i in range(2, 5)]
print(json.dumps({"outs": outs, "served": box._server.pid == server and box._server.usable()}))
"""


def test_fake_root_runs_from_the_fork_server_read_and_save_the_record_of_owners_as_direct_runs_do(
        who, broot: Path) -> None:
    r = who.python(FAKE_ROOT_RUNS, args=[str(broot)])
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    lines = [f"/tmp/f{i} {100 + i}:{200 + i}\n" for i in range(5)]
    assert out["outs"] == ["0\n" + "".join(lines[:n + 1]) for n in range(5)]
    assert out["served"] is True


def test_leaving_a_sandboxs_with_block_ends_its_fork_server_and_the_next_run_starts_over() -> None:
    with sandlock.Sandbox() as box:
        server = _warm(box)
        home = box._server._home
        assert box.run(["echo", "in"]).stdout == b"in\n"
    assert wait_for(lambda: not home.is_alive(), 10)
    assert wait_for(lambda: not os.path.exists(f"/proc/{server}"), 10)  # killed and reaped
    assert box._server is None
    assert box.run(["echo", "again"]).stdout == b"again\n"  # launched directly, prepared again


def test_runs_from_the_fork_server_keep_the_command_s_cpus_and_personality() -> None:
    box = sandlock.Sandbox(cpu_cores=[0], no_randomize_memory=True)
    code = "grep -E '^Cpus_allowed_list' /proc/self/status; cat /proc/self/personality"
    first = box.run(["sh", "-c", code]).stdout  # launched directly
    server = _warm(box)
    assert box.run(["sh", "-c", code]).stdout == first == b"Cpus_allowed_list:\t0\n00040000\n"
    assert box._server.pid == server


def _notification_threads() -> set:
    return {t for t in _threads.running() if t.name == "sandlock-notifications"}


def test_a_direct_launch_whose_command_fails_before_its_listener_is_handed_leaves_no_notification_thread(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The direct launch starts its notification thread once the stub is forked, before the
    # command has a listener (Notifier.start_early): a command that dies in its set-up never
    # hands one, and the thread must end with the run, not wait for ever.
    from sandlock import _launch
    monkeypatch.setenv("SANDLOCK_FORK_SERVER", "0")
    box = sandlock.Sandbox()
    before = _notification_threads()  # earlier tests' (one may still be ending)
    assert box.run(["echo", "direct"]).stdout == b"direct\n"  # control: a run that gets as far as its command
    assert wait_for(lambda: not _notification_threads() - before, 10)

    def fails(prep, pipes, calls):  # in the forked command, in place of its set-up
        _launch._report(pipes.err_w, "probe", errno.EPERM, "refused in the set-up")
        os._exit(125)
    monkeypatch.setattr(_launch, "run_command", fails)
    for _ in range(3):
        with pytest.raises(sandlock.SetupError, match="probe: refused in the set-up"):
            box.run(["/bin/true"])
    assert wait_for(lambda: not _notification_threads() - before, 10), _notification_threads() - before


AT_FORK = r"""
import json, mmap, os, sys
import sandlock
from sandlock import _launch
os.environ["SANDLOCK_FORK_SERVER"] = "0"   # every run launched directly, from this process
seen = mmap.mmap(-1, 2)   # shared with every child: [in a stub, in a process a confined stub forked]
def after_in_child():
    seen[1 if _launch._confined else 0] += 1
os.register_at_fork(after_in_child=after_in_child)
box = sandlock.Sandbox()
out = [box.run(["sh", "-c", "echo $0"]).stdout.decode() for _ in range(3)]
pid = os.fork()   # control: the handler runs in a child of this process
if pid == 0:
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"out": out, "stub": seen[0], "command": seen[1]}))
"""


def test_the_callers_at_fork_handlers_never_run_in_the_command(who) -> None:
    # A stub forks its command with libc's fork (_syscalls.bound_fork), not os.fork: none of
    # Python's at-fork work, so none of the caller's handlers, runs in a sandbox's command.
    # The stub itself is forked by os.fork from the caller (which may have threads) and runs them.
    r = who.python(AT_FORK)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    assert json.loads(r.stdout) == {"out": ["sh\n"] * 3, "stub": 3 + 1, "command": 0}
