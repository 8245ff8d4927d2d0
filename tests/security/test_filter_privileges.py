"""Filter bypasses, reaching the supervisor, and privileges (docs/design.md
"The command cannot reach the supervisor" to "Capabilities and inherited state", "Launch").

Every probe is tests/security/progs/filt_probe.c, run INSIDE a sandbox as root
and as the unprivileged user (the `who` fixture), without `--root` ("host":
the gcc build, -r on the system directories) and with `--root` ("root": the
static musl build copied into a private busybox root).  A probe prints one
line per attempt:

    ESCAPED <name> <detail>   the operation succeeded (or passed the kernel's
                              permission check, e.g. EFAULT after it)
    HELD <name> <ERRNO>       it was refused

Names starting with ``ctl_`` are allowed variants of the same syscalls, run in
the same sandbox: they must report ESCAPED, which shows the probe sees a
success when there is one.  Each class also has a control OUTSIDE the sandbox
that must see the refused operations succeed: run only as the unprivileged
user, or, for operations on the probe's own children, fds and environment,
as either identity.  No escape probe ever runs outside a sandbox as root.

Classes:

1. filter bypasses: x32 numbers, ``int 0x80``, clone/clone3/unshare with
   namespace flags, io_uring, a nested seccomp listener, personality, prctl,
   ioctl TIOCSTI/TIOCLINUX on the controlling terminal (a pty) and with the
   high 32 bits of the command set;
2. reaching the supervisor: ptrace, process_vm_readv, kill/SIGSTOP/SIGKILL,
   pidfd, kcmp, prlimit, setpriority and affinity of sandlock itself, of pid 1
   and of a host process of the same identity; abstract unix sockets of a host
   listener; fds and environment inherited from sandlock;
3. privileges: a setuid binary, capability sets, mount, chroot, raw and
   packet sockets, DAC on files of another uid (4242).
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import pty
import select
import shutil
import signal
import socket
import subprocess
import termios
import time
import tty
import uuid
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from conftest import IS_ROOT, SYSTEM_READ, process_state

from .conftest import Guest, SecProgs

RUN_TIMEOUT = 30
OTHER_UID = 4242
PROBE = "filt_probe"

x86_only = pytest.mark.skipif(platform.machine() != "x86_64", reason="x32 and int 0x80 exist on x86_64 only")


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def parse(stdout: str) -> Dict[str, Tuple[str, str]]:
    """{name: (ESCAPED|HELD, detail)} from the probe's verdict lines."""
    found: Dict[str, Tuple[str, str]] = {}
    for line in stdout.splitlines():
        parts = line.split(maxsplit=2)
        if len(parts) >= 2 and parts[0] in ("ESCAPED", "HELD"):
            found[parts[1]] = (parts[0], parts[2] if len(parts) > 2 else "")
    return found


def lines_starting(stdout: str, word: str) -> List[str]:
    return [line for line in stdout.splitlines() if line.startswith(word)]


class Box(Guest):
    """One sandbox configuration: host (no --root) or root (a private busybox root)."""

    def __init__(self, mode: str, who, scratch: Path, progs: SecProgs,  # type: ignore[no-untyped-def]
                 guest: Optional[Path]) -> None:
        super().__init__(who, scratch, progs, guest, (PROBE,))
        self.mode = mode
        self.w = scratch / "w"  # the sandbox's name of the writable directory
        who.make_dir(self.host(self.w), 0o755)

    def binary(self) -> Path:
        """Host path of the probe built for where it runs."""
        return self.progs.host(PROBE) if self.guest is None else self.progs.musl(PROBE)

    def prog(self) -> str:
        return str(self.progs.host(PROBE)) if self.guest is None else f"/probe/{PROBE}"

    def rules(self, *extra: str) -> List[str]:
        if self.guest is None:
            return [*SYSTEM_READ, "-r", str(self.progs.host_dir), "-r", "/proc", "-w", str(self.w), *extra]
        return ["--root", str(self.guest), "-w", str(self.w), *extra]

    def args(self, command: Sequence[str], *extra: str) -> List[str]:
        return [*self.rules(*extra), "--", *command]

    def run(self, command: Sequence[str], *extra: str, **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
        return self.who.run(self.args(command, *extra), timeout=RUN_TIMEOUT, **kwargs)


@pytest.fixture(params=["host", "root"])
def box(request: pytest.FixtureRequest, who, scratch: Path, secprogs: SecProgs) -> Box:  # type: ignore[no-untyped-def]
    guest = request.getfixturevalue("busybox_root") if request.param == "root" else None
    return Box(request.param, who, scratch, secprogs, guest)


def bare_as_user(test_user, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """A control OUTSIDE any sandbox, as the unprivileged user only."""
    return subprocess.run(test_user.wrap(list(argv)), capture_output=True, text=True, timeout=RUN_TIMEOUT,
                          cwd="/", **kwargs)


def bare_as(who, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """A control OUTSIDE any sandbox as `who`: only for modes touching the probe's own children/fds/env."""
    if who.is_user:
        argv = who._cli.user.wrap(list(argv))
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd="/", **kwargs)


# --- running on a terminal ---------------------------------------------------------------------

def run_on_pty(argv: Sequence[str], env: Dict[str, str], timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """Run argv with a fresh pty as stdin, stdout and controlling terminal (raw mode: no echo)."""
    master, slave = pty.openpty()
    tty.setraw(slave)

    def controlling_tty() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    try:
        proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=subprocess.PIPE, cwd="/", env=env,
                                preexec_fn=controlling_tty)
    finally:
        os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if proc.poll() is not None and not select.select([master], [], [], 0.2)[0]:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError as e:  # EIO: every holder of the slave is gone
                if e.errno != errno.EIO:
                    raise
                break
            if not data:
                break
            out += data
        else:
            proc.kill()
        proc.wait(timeout=10)
        stderr = proc.stderr.read() if proc.stderr else b""
    finally:
        os.close(master)
        if proc.stderr:
            proc.stderr.close()
    return subprocess.CompletedProcess(list(argv), proc.returncode, out.decode(errors="replace").replace("\r", ""),
                                       stderr.decode(errors="replace"))


def sandlock_on_pty(who, args: Sequence[str]) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    cli = who._cli
    return run_on_pty(cli.command(args, who.is_user), cli.environment(who.is_user, None))


# --- 1. filter bypasses ---------------------------------------------------------------------------

# name -> errno the sandbox must answer
BYPASS_REFUSED = {
    "x32_getpid": "EPERM", "x32_open": "EPERM", "x32_openat": "EPERM",
    "clone_newuser": "EPERM", "clone_newns": "EPERM", "clone_newpid": "EPERM", "clone_newns_only": "EPERM",
    "unshare_newuser": "EPERM",
    "clone3": "ENOSYS", "clone3_newuser": "ENOSYS",
    "io_uring_setup": "EPERM", "io_uring_register": "EPERM",
    "seccomp_listener": "EPERM", "seccomp_listener_log": "EPERM", "seccomp_listener_hi": "EPERM",
    "personality_linux32": "EPERM", "personality_read_implies_exec": "EPERM", "personality_hi": "EPERM",
    "prctl_set_dumpable": "EPERM", "prctl_set_dumpable_hi": "EPERM", "prctl_set_securebits": "EPERM",
    "prctl_set_ptracer": "EPERM", "prctl_set_mm": "EPERM",
    "tiocsti_tty": "EPERM", "tiocsti_tty_hi": "EPERM", "tioclinux_tty": "EPERM", "tioclinux_tty_hi": "EPERM",
    "tiocsti_devnull": "EPERM", "tiocsti_devnull_hi": "EPERM",
}
BYPASS_CONTROLS = ("ctl_getpid", "ctl_clone_plain", "ctl_seccomp_filter", "ctl_personality_query",
                   "ctl_prctl_get_dumpable", "ctl_tcgets_tty", "ctl_tcgets_tty_hi", "ctl_tiocgwinsz_tty")


@x86_only
def test_filter_bypasses_are_refused(box: Box) -> None:
    r = sandlock_on_pty(box.who, box.args([box.prog(), "bypass"]))
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    found = parse(r.stdout)
    holes = {n: v for n, v in found.items() if not n.startswith("ctl_") and v[0] == "ESCAPED"}
    assert not holes, f"ESCAPE: the filter let these through: {holes}\n{show(r)}"
    for name, want in BYPASS_REFUSED.items():
        assert name in found, f"{name} missing\n{show(r)}"
        assert found[name] == ("HELD", want), f"{name}: {found[name]}, expected HELD {want}\n{show(r)}"
    for name in BYPASS_CONTROLS:  # allowed variants of the same syscalls work in the same sandbox
        assert found.get(name, ("?",))[0] == "ESCAPED", f"control {name}: {found.get(name)}\n{show(r)}"


@x86_only
def test_filter_bypass_probes_succeed_outside_a_sandbox(test_user, secprogs: SecProgs) -> None:
    """Control, unsandboxed and only as the unprivileged user: the same probes succeed."""
    argv = test_user.wrap([str(secprogs.host(PROBE)), "bypass"])
    env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
    r = run_on_pty(argv, env)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    found = parse(r.stdout)
    for name in ("clone_newuser", "clone_newns", "clone_newpid", "unshare_newuser", "clone3", "clone3_newuser",
                 "io_uring_setup", "seccomp_listener", "seccomp_listener_log", "seccomp_listener_hi",
                 "personality_linux32", "personality_read_implies_exec", "personality_hi",
                 "prctl_set_dumpable", "prctl_set_dumpable_hi", "prctl_set_mm",
                 "tiocsti_tty", "tiocsti_tty_hi", *BYPASS_CONTROLS):
        assert found.get(name, ("?",))[0] == "ESCAPED", f"control {name}: {found.get(name)}\n{show(r)}"
    # What the kernel itself answers where the sandbox answers EPERM (so EPERM is the filter's):
    assert found["tiocsti_devnull"] == ("HELD", "ENOTTY"), show(r)
    assert found["tiocsti_devnull_hi"] == ("HELD", "ENOTTY"), show(r)
    assert found["tioclinux_tty"][1] != "EPERM", show(r)
    assert found["prctl_set_ptracer"] != ("HELD", "EPERM"), show(r)
    assert found["io_uring_register"] != ("HELD", "EPERM"), show(r)
    # x32: this kernel may lack the x32 ABI (ENOSYS); the sandbox's answer is EPERM either way.
    assert found["x32_getpid"][0] == "ESCAPED" or found["x32_getpid"][1] == "ENOSYS", show(r)


@x86_only
def test_int_0x80_kills_the_process(box: Box) -> None:
    r = box.run([box.prog(), "int80"])
    assert "BEFORE int80" in r.stdout, show(r)
    assert not lines_starting(r.stdout, "ESCAPED"), f"ESCAPE: an i386 syscall ran in the sandbox\n{show(r)}"
    assert "DONE" not in r.stdout, show(r)
    assert r.returncode in (128 + signal.SIGSYS, -signal.SIGSYS), f"not killed by SIGSYS\n{show(r)}"


@x86_only
def test_int_0x80_works_outside_a_sandbox(test_user, secprogs: SecProgs) -> None:
    """Control, only as the unprivileged user: the i386 getpid really runs and is seen."""
    r = bare_as_user(test_user, [str(secprogs.host(PROBE)), "int80"])
    assert r.returncode == 0, show(r)
    assert lines_starting(r.stdout, "ESCAPED int80_getpid"), show(r)


# --- 2. reaching the supervisor -----------------------------------------------------------------

class HostSockets:
    """Abstract unix sockets outside the sandbox: a listening stream socket and a datagram socket."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:12]
        self.stream_name, self.dgram_name = f"sandlock-filt-{tag}-s", f"sandlock-filt-{tag}-d"
        self.stream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.stream.bind("\0" + self.stream_name)
        self.stream.listen(16)
        self.stream.setblocking(False)
        self.dgram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.dgram.bind("\0" + self.dgram_name)
        self.dgram.setblocking(False)

    def reached(self) -> List[str]:
        got = []
        try:
            conn, _ = self.stream.accept()
            conn.close()
            got.append("stream connection")
        except BlockingIOError:
            pass
        try:
            got.append(f"datagram {self.dgram.recv(100)!r}")
        except BlockingIOError:
            pass
        return got

    def close(self) -> None:
        self.stream.close()
        self.dgram.close()


@pytest.fixture
def host_sockets() -> Iterator[HostSockets]:
    s = HostSockets()
    yield s
    s.close()


@pytest.fixture
def host_process(who) -> Iterator[subprocess.Popen]:  # type: ignore[no-untyped-def]
    """A process outside the sandbox, of the same identity (so only the sandbox stands in the way)."""
    p = who.spawn_outside(["sleep", "120"])
    yield p
    p.kill()
    p.wait()


REACH_TARGET_OPS = ("ptrace_seize", "ptrace_attach", "vm_readv", "kill0", "kcmp", "prlimit_read", "proc_environ",
                    "proc_mem", "proc_fd0", "proc_cwd")
REACH_DESTRUCTIVE_OPS = ("prlimit_set", "setpriority", "sched_setaffinity", "sigstop", "sigkill")


def test_the_sandbox_cannot_reach_the_supervisor_init_or_host_processes(
        box: Box, host_sockets: HostSockets, host_process: subprocess.Popen) -> None:
    pidfile_virtual = box.w / "sup.pid"
    proc = box.who.popen(box.args([box.prog(), "reach", str(pidfile_virtual), str(host_process.pid),
                                   host_sockets.stream_name, host_sockets.dgram_name]))
    try:
        tmp = box.host(box.w) / "sup.pid.tmp"
        tmp.write_text(f"{proc.pid}\n")
        tmp.chmod(0o644)
        tmp.rename(box.host(pidfile_virtual))
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    r = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    assert f"INFO supervisor={proc.pid} " in r.stdout, show(r)
    found = parse(r.stdout)
    holes = {n: v for n, v in found.items() if v[0] == "ESCAPED"}
    assert not holes, f"ESCAPE: the sandbox reached outside processes or sockets: {holes}\n{show(r)}"
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), f"the supervisor did not survive\n{show(r)}"
    for label, ops in (("init", REACH_TARGET_OPS + ("sigstop", "sigkill")),
                       ("host", REACH_TARGET_OPS + REACH_DESTRUCTIVE_OPS),
                       ("sup", REACH_TARGET_OPS + REACH_DESTRUCTIVE_OPS)):
        for op in ops:
            name = f"{op}_{label}"
            assert name in found, f"{name} missing\n{show(r)}"
        for op in ("ptrace_seize", "ptrace_attach", "vm_readv"):  # the filter's EPERM
            assert found[f"{op}_{label}"] == ("HELD", "EPERM"), f"{op}_{label}: {found[f'{op}_{label}']}\n{show(r)}"
    for label in ("sup", "host", "init"):
        for op in ("kill0", "sigstop", "sigkill"):
            name = f"{op}_{label}"
            assert found[name] == ("HELD", "EPERM"), f"{name}: {found[name]}\n{show(r)}"
    # ECONNREFUSED: the listeners are up, but the sandbox's abstract names are a
    # namespace of their own (README), in which the host's names do not exist.
    for name in ("abstract_connect_host", "abstract_sendto_host", "abstract_dgram_connect_host"):
        assert found.get(name) == ("HELD", "ECONNREFUSED"), f"{name}: {found.get(name)}\n{show(r)}"
    assert not host_sockets.reached(), f"ESCAPE: the host's abstract sockets were reached\n{show(r)}"
    assert host_process.poll() is None, "the host process died"
    assert process_state(host_process.pid) not in ("T", "t", ""), "the host process was stopped or traced"
    assert process_state(1) not in ("T", "t", ""), "pid 1 was stopped or traced"


def test_the_reach_probe_sees_its_own_children_and_sockets(box: Box) -> None:
    """Control: inside the sandbox, signals and abstract sockets of the sandbox's own work."""
    r = box.run([box.prog(), "reach-control"])
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    found = parse(r.stdout)
    for name in ("abstract_connect_own", "abstract_sendto_own", "abstract_dgram_connect_own", "kill0_child",
                 "sigstop_child", "sigkill_child", "proc_environ_child", "proc_mem_child", "proc_fd0_child",
                 "proc_cwd_child"):
        assert found.get(name, ("?",))[0] == "ESCAPED", f"control {name}: {found.get(name)}\n{show(r)}"
    # ptrace and process_vm_* are refused by the filter even on the sandbox's own processes
    assert found["ptrace_seize_child"] == ("HELD", "EPERM"), show(r)
    assert found["vm_readv_child"] == ("HELD", "EPERM"), show(r)


def test_the_reach_probe_detects_every_operation_on_its_own_child_outside(who, secprogs: SecProgs) -> None:  # type: ignore[no-untyped-def]
    """Control outside the sandbox: ptrace, process_vm_readv, signals... of the probe's own child succeed."""
    r = bare_as(who, [str(secprogs.host(PROBE)), "reach-control"])
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    found = parse(r.stdout)
    for op in REACH_TARGET_OPS + REACH_DESTRUCTIVE_OPS + ("pidfd_signal0", "pidfd_getfd"):
        if op == "ptrace_attach":
            continue  # only tried when SEIZE is refused
        assert found.get(f"{op}_child", ("?",))[0] == "ESCAPED", f"control {op}: {found.get(f'{op}_child')}\n{show(r)}"
    for name in ("abstract_connect_own", "abstract_sendto_own", "abstract_dgram_connect_own"):
        assert found.get(name, ("?",))[0] == "ESCAPED", show(r)


# --- 2b. inherited fds and environment ---------------------------------------------------------

SECRET_VALUE = "tok-" + uuid.uuid4().hex


@pytest.fixture
def inherited_fds(scratch: Path) -> Iterator[List[int]]:
    """Two open fds of the test runner (a secret file and a socket) to hand to sandlock."""
    secret = scratch / "fd-secret"
    secret.write_text(SECRET_VALUE)
    secret.chmod(0o600)
    fd1 = os.open(secret, os.O_RDONLY)
    a, b = socket.socketpair()
    fd2 = a.detach()
    yield [fd1, fd2]
    os.close(fd1)
    os.close(fd2)
    b.close()


def test_inherited_fds_and_the_environment_do_not_reach_the_command(box: Box, inherited_fds: List[int]) -> None:
    r = box.run([box.prog(), "inherit", "SECRET_TOKEN", *map(str, inherited_fds)], "--clean-env",
                env={"SECRET_TOKEN": SECRET_VALUE}, pass_fds=inherited_fds)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    assert SECRET_VALUE not in r.stdout, f"ESCAPE: the secret reached the command\n{show(r)}"
    found = parse(r.stdout)
    assert found["env_SECRET_TOKEN"] == ("HELD", "ABSENT"), show(r)
    assert lines_starting(r.stdout, "FDS ") == ["FDS 0 1 2"], f"ESCAPE: extra fds in the command\n{show(r)}"
    for fd in inherited_fds:
        assert found[f"fd_{fd}"] == ("HELD", "EBADF"), f"ESCAPE: fd {fd} reached the command\n{show(r)}"
    # control in the same run: an fd the probe opens is seen
    assert lines_starting(r.stdout, "FDS_AFTER_OPEN ") == ["FDS_AFTER_OPEN 0 1 2 42"], show(r)
    assert found["ctl_fd_42"][0] == "ESCAPED", show(r)


def test_without_clean_env_the_variable_arrives(box: Box) -> None:
    """Control: the same probe sees the variable when the policy passes the environment."""
    r = box.run([box.prog(), "inherit", "SECRET_TOKEN"], env={"SECRET_TOKEN": SECRET_VALUE})
    assert r.returncode == 0, show(r)
    assert parse(r.stdout)["env_SECRET_TOKEN"] == ("ESCAPED", SECRET_VALUE), show(r)


def test_the_inherit_probe_sees_passed_fds_outside(who, secprogs: SecProgs, inherited_fds: List[int]) -> None:  # type: ignore[no-untyped-def]
    """Control outside the sandbox: the same fds, passed the same way, are seen."""
    r = bare_as(who, [str(secprogs.host(PROBE)), "inherit", "SECRET_TOKEN", *map(str, inherited_fds)],
                pass_fds=inherited_fds, env={"SECRET_TOKEN": SECRET_VALUE, "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, show(r)
    found = parse(r.stdout)
    assert found["env_SECRET_TOKEN"][0] == "ESCAPED", show(r)
    for fd in inherited_fds:
        assert found[f"fd_{fd}"][0] == "ESCAPED", show(r)
        assert str(fd) in lines_starting(r.stdout, "FDS ")[0].split(), show(r)


# --- 3. privileges --------------------------------------------------------------------------------

def test_a_setuid_binary_gains_nothing(box: Box, test_user) -> None:  # type: ignore[no-untyped-def]
    """NO_NEW_PRIVS: setuid-root run by the user, setuid-4242 run by root, keep the caller's euid."""
    owner = OTHER_UID if box.who.name == "root" else 0
    suid = box.host(box.w) / "suid"
    shutil.copy(box.binary(), suid)
    if IS_ROOT:
        os.chown(suid, owner, owner)
    suid.chmod(0o4755)
    assert suid.stat().st_mode & 0o4000 and suid.stat().st_uid == owner
    r = box.run([str(box.w / "suid"), "ids"])
    assert r.returncode == 0, show(r)
    uid = box.who.uid
    assert lines_starting(r.stdout, "IDS ") == [f"IDS {uid} {uid} {uid}"], \
        f"ESCAPE: the setuid bit took effect in the sandbox\n{show(r)}"
    assert parse(r.stdout)["setuid"][0] == "HELD", show(r)
    # Control, outside the sandbox and as the unprivileged user only: the same file's setuid bit works.
    c = bare_as_user(test_user, [str(suid), "ids"])
    assert c.returncode == 0, show(c)
    assert lines_starting(c.stdout, "IDS ") == [f"IDS {test_user.uid} {owner} {owner}"], show(c)
    assert parse(c.stdout)["setuid"][0] == "ESCAPED", show(c)


PRIVS_REFUSED = {
    "mount_tmpfs": "EPERM", "chroot": "EPERM", "socket_packet_raw": "EPERM", "socket_packet_dgram": "EPERM",
    "socket_packet_hi": "EPERM", "socket_inet_raw": "EPERM", "socket_inet6_raw": "EPERM",
    "read_other_0600": "EACCES", "write_other_0644": "EACCES", "chown_to_4242": "EPERM",
    "mknod_chardev": "EPERM", "setuid_4242": "EPERM",
}


def make_other_files(directory: Path) -> Tuple[Path, Path]:
    """Files of uid 4242 (needs root to create): 0600 and 0644."""
    other, other_ro = directory / "other", directory / "other_ro"
    for path, mode in ((other, 0o600), (other_ro, 0o644)):
        path.write_text("owned by 4242\n")
        os.chown(path, OTHER_UID, OTHER_UID)
        path.chmod(mode)
    return other, other_ro


def status_lines(stdout: str) -> Dict[str, str]:
    out = {}
    for line in lines_starting(stdout, "STATUS "):
        key, _, value = line[len("STATUS "):].partition(":")
        out[key.strip()] = value.strip()
    return out


def test_no_capabilities_and_no_privileged_operations(box: Box) -> None:
    if not IS_ROOT:
        pytest.skip("files of another uid need the suite to run as root")
    make_other_files(box.host(box.w))
    w = str(box.w)
    r = box.run([box.prog(), "privs", w, f"{w}/other", f"{w}/other_ro"])
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    found = parse(r.stdout)
    status = status_lines(r.stdout)
    zero = "0000000000000000"
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert status.get(cap) == zero, f"ESCAPE: {cap} = {status.get(cap)}\n{show(r)}"
    assert status.get("NoNewPrivs") == "1", show(r)
    assert lines_starting(r.stdout, "NO_NEW_PRIVS ") == ["NO_NEW_PRIVS 1"], show(r)
    assert found["capget"] == ("HELD", "ZERO"), show(r)
    assert found["proc_caps"] == ("HELD", "ZERO"), show(r)  # inheritable, permitted, effective, ambient
    # The bounding set: only root can empty it (CAP_SETPCAP); the user keeps the kernel's default.
    if box.who.name == "root":
        assert status.get("CapBnd") == zero, f"root keeps a bounding set: {status.get('CapBnd')}\n{show(r)}"
        assert found["capbset"] == ("HELD", "ZERO"), show(r)
        securebits = int(lines_starting(r.stdout, "SECUREBITS ")[0].split()[1])
        # NOROOT, NO_SETUID_FIXUP and KEEP_CAPS, each locked (linux/securebits.h)
        assert securebits & 0x2F == 0x2F, f"securebits not locked: {securebits:#x}\n{show(r)}"
    for name, want in PRIVS_REFUSED.items():
        assert name in found, f"{name} missing\n{show(r)}"
        assert found[name] == ("HELD", want), f"ESCAPE? {name}: {found[name]}, expected HELD {want}\n{show(r)}"
    for name in ("ctl_socket_inet_stream", "ctl_read_other_0644"):
        assert found[name][0] == "ESCAPED", f"control {name}: {found[name]}\n{show(r)}"
    assert not (box.host(box.w) / "chardev").exists()
    assert (box.host(box.w) / "mine").stat().st_uid == box.who.uid


def test_the_privs_probe_sees_privileges_where_it_has_them(test_user, secprogs: SecProgs, scratch: Path) -> None:
    """Control, outside the sandbox and as the unprivileged user, in a new user, mount and network
    namespace (private to the control): capabilities, mount, chroot and raw sockets are seen working."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is missing")
    d = scratch / "ctl"
    d.mkdir()
    if IS_ROOT:
        os.chown(d, test_user.uid, test_user.gid)
        make_other_files(d)
    else:
        (d / "other").write_text("x")
        (d / "other_ro").write_text("x")
    r = bare_as_user(test_user, ["unshare", "-Urmn", "--", str(secprogs.host(PROBE)), "privs", str(d),
                                 str(d / "other"), str(d / "other_ro")])
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    found = parse(r.stdout)
    for name in ("proc_caps", "capget", "capbset", "mount_tmpfs", "chroot", "socket_packet_raw",
                 "socket_packet_dgram", "socket_packet_hi", "socket_inet_raw", "socket_inet6_raw",
                 "ctl_socket_inet_stream", "ctl_read_other_0644"):
        assert found.get(name, ("?",))[0] == "ESCAPED", f"control {name}: {found.get(name)}\n{show(r)}"
