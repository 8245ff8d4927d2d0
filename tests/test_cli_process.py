"""`python -m sandlock`: the command as a process.  Its identity, timeout, exit statuses,
refused syscalls, inherited fds, lifecycle and signals, resource limits, environment
and cwd, capabilities, processes and sockets outside the sandbox.  Helpers and the
idea of these tests: tests/clicase.py.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import re
import signal
import time
from pathlib import Path

import pytest

from conftest import SYSTEM_PYTHON, SYSTEM_READ, find_processes, kill_marked, unique_marker, wait_for
from clicase import parse_probes, errname


def test_the_command_runs_with_the_callers_uid_and_gid(sandlock_cli, test_user) -> None:
    r = sandlock_cli(["--", "id", "-u", "-r"], as_user=True)
    assert (r.returncode, r.stdout) == (0, f"{test_user.uid}\n"), r.stderr
    r = sandlock_cli(["--", "sh", "-c", "echo $(id -u) $(id -g)"], as_user=False)
    assert r.stdout.split() == [str(os.getuid()), str(os.getgid())], r.stdout + r.stderr


# --- timeout -------------------------------------------------------------------------------------

def test_timeout_kills_the_command_with_exit_124_and_leaves_no_process(who) -> None:
    marker = unique_marker()
    start = time.monotonic()
    try:
        r = who.run(["-t", "2", "--", "sh", "-c", f"sleep {marker} & sleep {marker}; wait"], timeout=30)
        elapsed = time.monotonic() - start
        assert r.returncode == 124, r.stderr
        assert 1.9 <= elapsed <= 5.0, elapsed
        assert "sandlock: timeout after 2" in r.stderr
        assert r.stdout == ""
        assert wait_for(lambda: not find_processes(marker), 1.0), "a sleep survived the timeout"
    finally:
        kill_marked(marker)


# --- exit statuses -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 7, 42])
def test_the_command_exit_status_is_passed_through(who, code: int) -> None:
    r = who.run(["--", "sh", "-c", f"exit {code}"])
    assert r.returncode == code, r.stderr
    assert r.stderr == ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1], ids=lambda s: s.name)
def test_death_by_signal_exits_128_plus_n(who, sig: signal.Signals) -> None:
    r = who.run(["--", "sh", "-c", f"kill -{sig.name[3:]} $$"])
    # docs/design.md "Exit status": 128+N, or sandlock re-raises N on itself as timeout(1) does.
    assert r.returncode in (128 + sig, -sig), (r.returncode, r.stderr)
    assert r.returncode != 255


# --- refused syscalls --------------------------------------------------------------------------------

REFUSED_EPERM = ["ptrace_parent", "ptrace_init", "ptrace_traceme", "vm_readv_parent", "vm_readv_self", "mount",
                 "unshare_user", "unshare_ns", "chroot", "io_uring_setup", "bpf_prog_load", "clone_newuser",
                 "pidfd_getfd_parent", "prctl_set_dumpable", "prctl_set_ptracer", "socket_sock_diag", "keyctl",
                 "userfaultfd", "perf_event_open", "personality_linux32", "name_to_handle_at", "setns_own_uts",
                 "sethostname_same"]
CONTROLS = ["getpid", "getppid", "uname", "fork", "prctl_get_dumpable", "personality_query", "socket_unix"]


def test_dangerous_syscalls_are_refused_with_eperm_while_harmless_ones_work(who, progs) -> None:
    r = who.run([*SYSTEM_READ, "-r", "/proc", "-r", str(progs.dir), "--", progs["syscalls"], *CONTROLS,
                 *REFUSED_EPERM])
    assert r.returncode == 0, r.stderr
    probes = parse_probes(r.stdout)
    for op in CONTROLS:
        assert op in probes and probes[op][0] >= 0, f"control {op} failed: {r.stdout}"
    wrong = {op: probes.get(op) for op in REFUSED_EPERM
             if probes.get(op) is None or probes[op][0] != -1 or probes[op][1] != errno.EPERM}
    assert not wrong, "not refused with EPERM: " + ", ".join(
        f"{op}: rc={v[0]} errno={errname(v[1])}" if v else f"{op}: no result" for op, v in wrong.items())


def test_clone3_fails_with_enosys_so_libc_falls_back_to_clone(who, progs) -> None:
    r = who.run([*SYSTEM_READ, "-r", str(progs.dir), "--", progs["syscalls"], "clone3", "fork"])
    assert r.returncode == 0, r.stderr
    probes = parse_probes(r.stdout)
    assert probes["clone3"] == [-1, errno.ENOSYS], r.stdout
    assert probes["fork"][0] == 0, r.stdout


if platform.machine() == "x86_64":
    def test_an_x32_syscall_number_is_refused(who, progs) -> None:
        r = who.run([*SYSTEM_READ, "-r", str(progs.dir), "--", progs["syscalls"], "getpid", "x32_getpid"])
        probes = parse_probes(r.stdout)
        assert probes["getpid"][0] > 0, r.stdout
        if r.returncode == 128 + signal.SIGSYS or r.returncode == -signal.SIGSYS:
            return  # killed by the filter: refused
        assert r.returncode == 0, r.stderr
        rc, err = probes["x32_getpid"]
        assert rc == -1 and err in (errno.EPERM, errno.ENOSYS), f"x32 getpid gave rc={rc} errno={errname(err)}"


# --- inherited file descriptors ------------------------------------------------------------------

def test_fds_left_open_by_the_caller_are_not_visible_inside(who, scratch: Path) -> None:
    leaked = os.open(str(scratch), os.O_RDONLY)
    high = fcntl.fcntl(leaked, fcntl.F_DUPFD, 37)  # the lowest free number >= 37 (dup2 would take 37
    # from whatever of this process holds it: the ids sandlock keeps per thread, once)
    try:
        os.set_inheritable(leaked, True)
        os.set_inheritable(high, True)
        r = who.run(["--", "ls", "/proc/self/fd"], pass_fds=(leaked, high))
        assert r.returncode == 0, r.stderr
        fds = set(r.stdout.split())
        assert {"0", "1", "2"} <= fds
        extra = fds - {"0", "1", "2"}
        assert len(extra) <= 1 and str(high) not in fds, f"fds inside: {sorted(fds, key=int)}"
    finally:
        os.close(leaked)
        os.close(high)


# --- lifecycle ----------------------------------------------------------------------------------------

def test_killing_sandlock_kills_every_sandboxed_process(who) -> None:
    m1, m2 = unique_marker(300), unique_marker(300)
    proc = who.popen(["--", "sh", "-c", f"sleep {m1} & sleep {m2} & wait"])
    try:
        assert wait_for(lambda: find_processes(m1) and find_processes(m2), 10), "the sleeps never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        gone = wait_for(lambda: not find_processes(m1) and not find_processes(m2), 1.0, 0.01)
        assert gone, f"left running: {find_processes(m1) + find_processes(m2)}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        kill_marked(m1)
        kill_marked(m2)


def test_sigterm_to_sandlock_is_forwarded_and_the_inner_trap_decides_the_status(who) -> None:
    marker = unique_marker()
    proc = who.popen(["--", "sh", "-c", f"trap 'exit 3' TERM; sleep {marker} & wait"])
    try:
        assert wait_for(lambda: find_processes(marker), 10), "the sleep never started"
        time.sleep(0.1)  # let sh reach `wait` with its trap installed
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 3, err
        assert wait_for(lambda: not find_processes(marker), 2.0), "the sleep survived"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_marked(marker)


# --- resource limits ----------------------------------------------------------------------------------

FORKER = """
import errno, os, sys, time
marker = sys.argv[1]
ok = failed = 0
errors = set()
children = []
for i in range(20):
    try:
        pid = os.fork()
    except OSError as e:
        failed += 1
        errors.add(errno.errorcode[e.errno] + ":" + e.strerror)
        continue
    if pid == 0:
        time.sleep(1.5)
        os._exit(0)
    ok += 1
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print("ok", ok, "failed", failed)
print("errors", sorted(errors))
"""


def test_max_processes_caps_concurrent_processes_and_fork_gets_eagain(who) -> None:
    marker = unique_marker()
    proc = who.popen(["-P", "5", "--", SYSTEM_PYTHON, "-c", FORKER, marker])
    peak = 0
    try:
        while proc.poll() is None:
            peak = max(peak, len(find_processes(marker)))
            time.sleep(0.02)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_marked(marker)
    assert proc.returncode == 0, err
    m = re.search(r"ok (\d+) failed (\d+)", out)
    assert m, out + err
    ok, failed = int(m.group(1)), int(m.group(2))
    assert 1 <= ok <= 4, out
    assert failed == 20 - ok
    assert "EAGAIN:Resource temporarily unavailable" in out
    assert peak <= 5, f"{peak} sandboxed processes at once"


def test_max_processes_makes_a_shell_fail_to_start_more_background_jobs(who) -> None:
    marker = unique_marker(3)
    r = who.run(["-P", "5", "--", "sh", "-c",
                 f"for i in $(seq 20); do sleep {marker} & done; wait; echo done"], timeout=60)
    # dash says "Cannot fork", bash "fork: Resource temporarily unavailable".
    assert re.search(r"Resource temporarily unavailable|Cannot fork", r.stderr), r.stderr


def test_max_open_files_gives_emfile(who) -> None:
    code = ("import os\nfds = []\ntry:\n    for i in range(100): fds.append(os.open('/dev/null', os.O_RDONLY))\n"
            "except OSError as e: print('error', e.strerror)\nprint('opened', len(fds))\n")
    r = who.run(["--max-open-files", "16", "--", SYSTEM_PYTHON, "-c", code])
    assert r.returncode == 0, r.stderr
    assert "error Too many open files" in r.stdout
    opened = int(r.stdout.split("opened")[1])
    assert 0 < opened < 16


def test_max_memory_stops_a_512_mib_allocation(who) -> None:
    code = ("import time\nb = b'\\x01' * (512 << 20)\nprint('allocated', flush=True)\n"
            "time.sleep(1)\nprint('survived', len(b))\n")
    r = who.run(["-m", "64M", "--", SYSTEM_PYTHON, "-c", code], timeout=60)
    assert r.returncode != 0
    assert "survived" not in r.stdout
    assert "MemoryError" in r.stderr or re.search(r"^sandlock: .*memory", r.stderr, re.M | re.I), r.stderr


# --- environment and cwd --------------------------------------------------------------------------------

def test_env_sets_a_variable(who) -> None:
    r = who.run(["--env", "FOO=bar", "--env", "EMPTY=", "--", "sh", "-c", 'echo "[$FOO] [${EMPTY-unset}]"'])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "[bar] []\n"


def test_clean_env_hides_parent_variables_but_keeps_path_and_home(who) -> None:
    r = who.run(["--clean-env", "--", "env"], env={"SANDLOCK_TEST_SECRET": "s3cr3t"})
    assert r.returncode == 0, r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert "SANDLOCK_TEST_SECRET" not in env and "s3cr3t" not in r.stdout
    assert "PYTHONPATH" not in env
    assert env.get("PATH") and env.get("HOME") == str(who.home) and env.get("LANG") == "C.UTF-8"
    r = who.run(["--", "env"], env={"SANDLOCK_TEST_SECRET": "s3cr3t"})
    assert "SANDLOCK_TEST_SECRET=s3cr3t" in r.stdout.splitlines()  # control: passed without --clean-env


def test_clean_env_with_env_adds_only_the_given_variable(who) -> None:
    r = who.run(["--clean-env", "--env", "FOO=bar", "--", "sh", "-c", 'echo "$FOO:$SANDLOCK_TEST_SECRET"'],
                env={"SANDLOCK_TEST_SECRET": "s3cr3t"})
    assert r.stdout == "bar:\n"


def test_cwd_starts_the_command_in_the_directory(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "work", 0o777)
    r = who.run(["-w", str(d), "--cwd", str(d), "--", "sh", "-c", "pwd; echo x > relative"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{d}\n"
    assert (d / "relative").read_text() == "x\n"


# --- capabilities, NO_NEW_PRIVS, seccomp (docs/design.md "Capabilities and inherited state") ----------------------

SECBITS_CODE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("securebits", libc.prctl(27, 0, 0, 0, 0))  # PR_GET_SECUREBITS
for line in open("/proc/self/status"):
    if line.startswith(("Cap", "NoNewPrivs", "Seccomp:")):
        print(line.strip().replace(":", "", 1))
"""


def test_the_command_has_no_capabilities_no_new_privs_and_a_seccomp_filter(who) -> None:
    r = who.run(["--", SYSTEM_PYTHON, "-c", SECBITS_CODE])
    assert r.returncode == 0, r.stderr
    status = dict(line.split()[:2] for line in r.stdout.splitlines())
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[cap], 16) == 0, f"{cap} = {status[cap]}"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    if who.name == "root":
        assert int(status["CapBnd"], 16) == 0, f"bounding set kept: {status['CapBnd']}"
        bits = int(status["securebits"])
        assert bits & 0b11 == 0b11, f"SECBIT_NOROOT not set and locked: securebits={bits:#x}"


# --- processes outside the sandbox are out of reach (docs/design.md "The command cannot reach the supervisor") ----

@pytest.fixture
def outside_sleep(who):  # type: ignore[no-untyped-def]
    """A process of the same identity, not sandboxed: what the command must not touch."""
    marker = unique_marker()
    proc = who.spawn_outside(["sleep", marker])
    assert wait_for(lambda: find_processes(marker), 5)
    yield proc.pid
    proc.kill()
    proc.wait()


def test_signals_to_a_process_outside_the_sandbox_are_refused(who, outside_sleep: int) -> None:
    r = who.run(["--", "sh", "-c", f"kill -0 {outside_sleep}; echo zero=$?; kill -TERM {outside_sleep}; "
                                   f"echo term=$?; kill -0 $$; echo self=$?"])
    assert "zero=1" in r.stdout and "term=1" in r.stdout, r.stdout + r.stderr
    assert "self=0" in r.stdout
    assert "Operation not permitted" in r.stderr
    time.sleep(0.1)
    assert process_state_alive(outside_sleep), "the outside process was killed from inside the sandbox"


def process_state_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


SCHED_CODE = """
import os, resource, sys
pid = int(sys.argv[1])
def attempt(name, call):
    try:
        call(); print(name, 0)
    except OSError as e:
        print(name, e.errno)
attempt("prlimit", lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (10, 10)))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, pid, 15))
attempt("sched_setaffinity", lambda: os.sched_setaffinity(pid, {0}))
attempt("self_prlimit", lambda: resource.prlimit(0, resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)))
attempt("self_setpriority", lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))
"""


def test_prlimit_setpriority_and_affinity_of_an_outside_process_are_refused(who, outside_sleep: int) -> None:
    def observe() -> tuple:
        limits = [l for l in Path(f"/proc/{outside_sleep}/limits").read_text().splitlines() if "open files" in l]
        return (limits, os.getpriority(os.PRIO_PROCESS, outside_sleep), os.sched_getaffinity(outside_sleep))

    before = observe()
    r = who.run(["--", SYSTEM_PYTHON, "-c", SCHED_CODE, str(outside_sleep)])
    assert r.returncode == 0, r.stderr
    results = dict(line.split() for line in r.stdout.splitlines())
    for name in ("prlimit", "setpriority", "sched_setaffinity"):
        assert results[name] != "0", f"{name} on an outside process succeeded: {r.stdout}"
        assert int(results[name]) in (errno.EPERM, errno.EACCES, errno.ESRCH), r.stdout
    assert results["self_prlimit"] == "0" and results["self_setpriority"] == "0", r.stdout
    assert observe() == before


# --- unix sockets (docs/design.md "What Landlock does not cover") -------------------------------------------------

CONNECT_CODE = """
import socket, sys
def connect(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address); return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()
for arg in sys.argv[1:]:
    if arg == "own-abstract":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind("\\0sandlock-own-" + str(id(server)))
        server.listen(1)
        print(arg, connect(server.getsockname()))
    elif arg.startswith("@"):
        print(arg, connect("\\0" + arg[1:]))
    else:
        print(arg, connect(arg))
"""


def test_connect_to_a_pathname_unix_socket_outside_the_rules_is_refused(who, scratch: Path) -> None:
    import socket
    d = who.make_dir(scratch / "sockdir", 0o777)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(d / "sock"))
    os.chmod(d / "sock", 0o777)
    server.listen(4)
    server.setblocking(False)
    try:
        r = who.run(["--", SYSTEM_PYTHON, "-c", CONNECT_CODE, str(d / "sock")])
        assert r.stdout.split() == [str(d / "sock"), str(errno.EACCES)], r.stdout + r.stderr
        with pytest.raises(BlockingIOError):
            server.accept()
        r = who.run(["-w", str(d), "--", SYSTEM_PYTHON, "-c", CONNECT_CODE, str(d / "sock")])
        assert r.stdout.split() == [str(d / "sock"), "0"], r.stdout + r.stderr  # control: allowed by -w
    finally:
        server.close()


def test_connect_to_an_abstract_socket_outside_the_sandbox_is_refused(who) -> None:
    import socket
    name = f"sandlock-test-{unique_marker()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(4)
    server.setblocking(False)
    try:
        r = who.run(["--", SYSTEM_PYTHON, "-c", CONNECT_CODE, "own-abstract", "@" + name])
        results = dict(line.split() for line in r.stdout.splitlines())
        assert results.get("own-abstract") == "0", r.stdout + r.stderr
        # the sandbox's abstract names are a namespace of their own (README): the host's is not in it
        assert results.get("@" + name) == str(errno.ECONNREFUSED), r.stdout + r.stderr
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


# --- memory of all processes together (docs/design.md "Resources") ------------------------------------------------

MANY_ALLOCATORS = """
import os, time
for i in range(4):
    if os.fork() == 0:
        b = b"\\x01" * (60 << 20)
        time.sleep(3)
        os._exit(0)
for i in range(4):
    os.wait()
print("survived")
"""


def test_max_memory_counts_all_processes_together(who) -> None:
    r = who.run(["-m", "128M", "--", SYSTEM_PYTHON, "-c", MANY_ALLOCATORS], timeout=60)
    assert r.returncode != 0
    assert "survived" not in r.stdout
    assert re.search(r"^sandlock: .*memory", r.stderr, re.M | re.I), r.stderr


# --- signals forwarded (docs/design.md "Signals") -----------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGUSR1], ids=lambda s: s.name)
def test_signals_to_sandlock_reach_the_sandboxed_command(who, sig: signal.Signals) -> None:
    marker = unique_marker()
    proc = who.popen(["--", "sh", "-c", f"trap 'exit 5' {sig.name[3:]}; sleep {marker} & wait"])
    try:
        assert wait_for(lambda: find_processes(marker), 10), "the sleep never started"
        time.sleep(0.1)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 5, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_marked(marker)


@pytest.mark.parametrize("closed", ["stdout", "stderr", "both"])
def test_sandlock_with_its_output_closed_runs_the_command_and_exits_with_its_status(who, closed: str) -> None:  # type: ignore[no-untyped-def]
    # sandlock's own stdout/stderr closed (its sys.stdout is then None): it still runs
    # the command and exits with the command's status
    redirect = {"stdout": ">&-", "stderr": "2>&-", "both": ">&- 2>&-"}[closed]
    r = who.python("import shlex, subprocess, sys\n"
                   "sandlock = shlex.join([sys.executable, '-m', 'sandlock', '--', 'sh', '-c', 'exit 3'])\n"
                   f"r = subprocess.run(['sh', '-c', sandlock + ' {redirect}'])\n"
                   "print('exit', r.returncode)\n")
    assert r.stdout.decode().splitlines() == ["exit 3"], r.stderr
