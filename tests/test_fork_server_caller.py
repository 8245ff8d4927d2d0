"""The fork server and a caller that changes between runs (README "Fork server").

The commands of a Sandbox's later runs are forked by its fork server (started at
the second run), ahead of their request.  A direct launch forks the caller at
each run, so its command inherits the caller's state of that moment; a command
from the server must get the same: the caller's current ignored signals, and
nothing less confined than the caller is now (its Landlock domain or seccomp
filters, added after the server started: such a run is launched directly).
"""

import json

from apicase import run_script

WARM = r"""
def warm(box):
    for _ in range(3):
        assert box.run(["/bin/true"]).returncode == 0
    deadline = time.monotonic() + 30
    while not (box._server is not None and box._server.usable()):
        assert time.monotonic() < deadline, "the fork server never started"
        time.sleep(0.01)
    served = []   # the runs launched from the fork server
    launch = box._server.launch
    box._server.launch = lambda request, fds: (served.append(1), launch(request, fds))[1]
    return served
"""

SIGNALS = WARM + r"""
def ignored(data):
    line = [l for l in data.decode().splitlines() if l.startswith("SigIgn:")][0]
    mask = int(line.split()[1], 16)
    return [n for n in (signal.SIGHUP, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGTERM,
                        signal.SIGRTMIN + 3) if mask & (1 << (n - 1))]
argv = ["grep", "SigIgn", "/proc/self/status"]
signal.signal(signal.SIGUSR1, signal.SIG_IGN)   # ignored when the fork server starts
box = sandlock.Sandbox()
served = warm(box)
out["server"] = box._server.pid
for step in ("start", "changed", "back"):
    if step == "changed":   # after the server started: the caller ignores others, and no more SIGUSR1
        signal.signal(signal.SIGUSR1, signal.SIG_DFL)
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGRTMIN + 3):
            signal.signal(sig, signal.SIG_IGN)
    if step == "back":
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGRTMIN + 3):
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    out[step] = {"bare": ignored(subprocess.run(argv, capture_output=True).stdout),
                 "api": [ignored(box.run(argv).stdout) for _ in range(3)]}
out["same_server"] = box._server.usable() and box._server.pid == out["server"]
out["served"] = len(served)
"""


def test_a_command_from_the_fork_server_ignores_the_signals_the_caller_ignores_at_its_run(who) -> None:  # type: ignore[no-untyped-def]
    out = run_script(who, SIGNALS)
    # control: subprocess gives the caller's dispositions of the moment
    assert out["start"]["bare"] == [10]
    assert out["changed"]["bare"] == [1, 15, 37]
    assert out["back"]["bare"] == [10]
    for step in ("start", "changed", "back"):
        assert out[step]["api"] == [out[step]["bare"]] * 3, (step, out)
    assert out["same_server"] and out["served"] == 9   # every run was from the fork server


CONFINED = WARM + r"""
work = sys.argv[1]
box = sandlock.Sandbox(fs_writable=[work])
def write(name):
    r = box.run(["sh", "-c", f"echo x > {work}/{name}"], capture_output=True)
    return r.returncode
served = warm(box)
out["before"] = [write(f"before{i}") for i in range(2)]   # control: from the fork server, allowed
out["served"] = [len(served)]
sandlock.confine(fs_readable=["/"], fs_writable=[])      # the caller gives up writing anywhere
try:
    open(f"{work}/caller", "w")
    out["caller"] = "written"
except OSError as exc:
    out["caller"] = exc.errno
out["after"] = [write(f"after{i}") for i in range(3)]
out["served"].append(len(served))
out["files"] = sorted(os.listdir(work))
"""


def test_a_caller_that_confines_itself_after_its_fork_server_started_keeps_its_commands_inside(who, scratch) -> None:  # type: ignore[no-untyped-def]
    work = who.make_dir(scratch / "work", 0o777)
    out = run_script(who, CONFINED, str(work))
    assert out["before"] == [0, 0]
    assert out["caller"] == 13   # EACCES: the caller itself may not write there any more
    assert out["after"] == [2, 2, 2], out   # sh: cannot create
    assert out["served"] == [2, 2]   # launched directly, from the confined thread
    assert out["files"] == ["before0", "before1"]


SECCOMP = WARM + r"""
import ctypes, struct
from sandlock import _syscalls
work = sys.argv[1]
box = sandlock.Sandbox(fs_writable=[work])
def mkdir(name):
    return box.run(["mkdir", f"{work}/{name}"], capture_output=True).returncode
served = warm(box)
out["before"] = [mkdir(f"before{i}") for i in range(2)]   # control: from the fork server, allowed
out["served"] = [len(served)]
numbers = []
for name in ("mkdir", "mkdirat"):
    try:
        numbers.append(_syscalls.nr(name))
    except (KeyError, OSError, ValueError):
        pass
# the calling thread refuses mkdir and mkdirat itself (EPERM), everything else allowed
code = [struct.pack("=HBBI", 0x20, 0, 0, 0)]   # ld [0] (the syscall's number)
for i, number in enumerate(numbers):
    code.append(struct.pack("=HBBI", 0x15, len(numbers) - i, 0, number))   # jeq number -> deny
code.append(struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000))   # allow
code.append(struct.pack("=HBBI", 0x06, 0, 0, 0x00050000 | 1))   # errno EPERM
program = ctypes.create_string_buffer(b"".join(code))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(code), ctypes.addressof(program))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0   # PR_SET_NO_NEW_PRIVS
assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0, ctypes.get_errno()   # PR_SET_SECCOMP, filter
try:
    os.mkdir(f"{work}/caller")
    out["caller"] = "made"
except OSError as exc:
    out["caller"] = exc.errno
out["after"] = [mkdir(f"after{i}") for i in range(3)]
out["served"].append(len(served))
out["files"] = sorted(os.listdir(work))
"""


def test_a_caller_that_adds_a_seccomp_filter_after_its_fork_server_started_keeps_its_commands_under_it(who, scratch) -> None:  # type: ignore[no-untyped-def]
    work = who.make_dir(scratch / "work", 0o777)
    out = run_script(who, SECCOMP, str(work))
    assert out["before"] == [0, 0]
    assert out["caller"] == 1   # EPERM: the caller's own filter
    assert out["after"] == [1, 1, 1], out   # mkdir: cannot create directory
    assert out["served"] == [2, 2]   # launched directly, from the filtered thread
    assert out["files"] == ["before0", "before1"]


NEXT_COMMAND = WARM + r"""
box = sandlock.Sandbox()
served = warm(box)
server = box._server.pid
def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []
code = r'''
import ctypes, os, signal, subprocess, sys
libc = ctypes.CDLL(None, use_errno=True)
def probe(pid):
    def ptrace():
        if libc.ptrace(16, pid, 0, 0) != 0:   # PTRACE_ATTACH
            raise OSError(ctypes.get_errno(), "ptrace")
        libc.ptrace(17, pid, 0, 0)
    out = {}
    for name, fn in [("kill", lambda: os.kill(pid, 0)), ("mem", lambda: open(f"/proc/{pid}/mem", "rb").close()),
                     ("status", lambda: open(f"/proc/{pid}/status").close()),
                     ("pidfd_signal", lambda: signal.pidfd_send_signal(os.pidfd_open(pid), 0)),
                     ("ptrace", ptrace)]:
        try:
            fn()
            out[name] = "ok"
        except OSError as exc:
            out[name] = exc.errno
    return out
child = subprocess.Popen(["sleep", "30"])
own = probe(child.pid)
child.kill()
child.wait()
waiting = int(sys.stdin.readline())
seen = probe(waiting)
try:
    os.kill(waiting, signal.SIGKILL)
    kill = "ok"
except OSError as exc:
    kill = exc.errno
print(json.dumps([own, seen, kill]))
'''.replace("import ctypes", "import ctypes, json")
p = box.popen([PY, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
deadline = time.monotonic() + 10
waiting = []
while not waiting and time.monotonic() < deadline:   # the next run's command, forked ahead
    time.sleep(0.02)
    waiting = [c for stub in children(server) for c in children(stub) if c != p.pid]
stdout, _ = p.communicate(f"{waiting[0]}\n".encode())
out["probes"] = json.loads(stdout) if p.returncode == 0 else stdout.decode()
out["waiting_alive"] = os.path.exists(f"/proc/{waiting[0]}")
out["next"] = box.run(["echo", "next"]).stdout.decode()
out["served"] = len(served)
"""


def test_a_running_command_cannot_signal_trace_or_read_the_next_runs_command_waiting_on_the_fork_server(who) -> None:  # type: ignore[no-untyped-def]
    out = run_script(who, NEXT_COMMAND)
    own, waiting, kill = out["probes"]
    # control: the same probes on the command's own child (ptrace is refused by the filter anyway)
    assert own == {"kill": "ok", "mem": "ok", "status": "ok", "pidfd_signal": "ok", "ptrace": 1}
    # the waiting command: outside the signal scope, hidden from the sandbox's /proc
    assert waiting == {"kill": 1, "mem": 2, "status": 2, "pidfd_signal": 1, "ptrace": 1}, out
    assert kill == 1 and out["waiting_alive"]
    assert out["next"] == "next\n" and out["served"] == 2


MOVED = WARM + r"""
from sandlock import _syscalls
work = sys.argv[1]
with open(f"{work}/hidden", "w") as f:
    f.write("seen")
box = sandlock.Sandbox(fs_readable=[work])
argv = ["sh", "-c", f"grep Cpus_allowed_list /proc/self/status; cut -d' ' -f19 /proc/self/stat; "
                    f"readlink /proc/self/ns/net /proc/self/ns/uts /proc/self/ns/mnt; cat {work}/hidden"]
def seen(data):
    return data.decode().split()
served = warm(box)
out["before"] = [seen(subprocess.run(argv, capture_output=True).stdout), seen(box.run(argv).stdout)]
out["served"] = [len(served)]
os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})   # one CPU, a lower priority
os.nice(3)
if os.geteuid() == 0:   # its own network, host name and mounts: the file hidden under a tmpfs
    _syscalls.unshare(0x40000000 | 0x04000000 | 0x00020000)   # CLONE_NEWNET | CLONE_NEWUTS | CLONE_NEWNS
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "none", work], check=True)
out["bare"] = seen(subprocess.run(argv, capture_output=True).stdout)
out["after"] = [seen(box.run(argv).stdout) for _ in range(2)]
out["served"].append(len(served))
"""


def test_a_caller_that_moves_itself_after_its_fork_server_started_gets_runs_where_it_is_now(who, scratch) -> None:  # type: ignore[no-untyped-def]
    work = who.make_dir(scratch / "work", 0o777)
    out = run_script(who, MOVED, str(work))
    bare_before, box_before = out["before"]
    assert box_before == bare_before and bare_before[-1] == "seen"   # control: the same, from the server
    bare = out["bare"]
    assert bare[2] == str(int(bare_before[2]) + 3)   # the caller did move: its nice value
    assert out["after"] == [bare, bare], out
    if who.is_user:
        assert bare[-1] == "seen"
    else:
        assert bare[-1] != "seen" and bare[4] != bare_before[4]   # its own network; the file hidden
    assert out["served"] == [1, 1]   # the control from the server, the later runs launched directly


KCMP_FILTERED = WARM + r"""
import ctypes, struct
from sandlock import _syscalls
work = sys.argv[1]
# as in a container whose seccomp profile refuses kcmp (EPERM), from the start
code = [struct.pack("=HBBI", 0x20, 0, 0, 0), struct.pack("=HBBI", 0x15, 1, 0, _syscalls.nr("kcmp")),
        struct.pack("=HBBI", 0x06, 0, 0, 0x7FFF0000), struct.pack("=HBBI", 0x06, 0, 0, 0x00050000 | 1)]
program = ctypes.create_string_buffer(b"".join(code))
class Fprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
fprog = Fprog(len(code), ctypes.addressof(program))
libc = ctypes.CDLL(None, use_errno=True)
assert libc.prctl(38, 1, 0, 0, 0) == 0 and libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0
box = sandlock.Sandbox(fs_writable=[work])
def write(name):
    return box.run(["sh", "-c", f"echo x > {work}/{name}"], capture_output=True).returncode
served = warm(box)
out["before"] = [write(f"before{i}") for i in range(2)]   # control: from the fork server, allowed
out["served"] = [len(served)]
sandlock.confine(fs_readable=["/"], fs_writable=[])
out["after"] = [write(f"after{i}") for i in range(2)]
out["served"].append(len(served))
out["files"] = sorted(os.listdir(work))
"""


def test_where_kcmp_is_filtered_the_fork_server_still_serves_and_a_caller_confined_since_launches_directly(who, scratch) -> None:  # type: ignore[no-untyped-def]
    work = who.make_dir(scratch / "work", 0o777)
    out = run_script(who, KCMP_FILTERED, str(work))
    assert out["before"] == [0, 0] and out["served"][0] == 2   # the server serves without kcmp
    assert out["after"] == [2, 2], out
    assert out["served"] == [2, 2] and out["files"] == ["before0", "before1"]
