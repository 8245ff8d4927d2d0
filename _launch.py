"""Launching the sandboxed command (docs/design.md "Launch").

Everything is prepared before fork(): argv, environment, PATH candidates,
Landlock ruleset fds, the BPF program, pipes.  Three parties take part:

    supervisor thread   drops its capabilities, NO_NEW_PRIVS, restricts
                        itself with the supervisor ruleset, then forks
    stub                (not confined by the policy, runs only this module's
                        code) own process group, PDEATHSIG, child subreaper,
                        a Landlock scope-only layer, then forks the command
                        and reaps; when the command ends, or the supervisor
                        dies, it kills every process of the sandbox
    command             cwd, rlimits, Landlock, seccomp with a listener,
                        reports (pid, listener fd), waits for "go", closes
                        fds >= 3, execs

The stub exists so that every sandboxed process stays inside one tree
(orphans are reparented to it) and so that the sandbox dies with the
supervisor even when the supervisor is SIGKILLed: the stub gets PDEATHSIG and
kills everything with kill(-1) — which the Landlock signal scope limits to
the sandbox's own domain (ABI >= 6), or with killpg when the kernel has no
scopes (setsid and setpgid are then refused by the filter, so nobody leaves
the group).  The command's own domain is nested in the stub's, so sandboxed
processes cannot signal the stub.

The code between fork and exec is straight-line calls of prepared
functions: no import, no logging, no lock.  A failure there travels to the
supervisor over a close-on-exec pipe as b"step:errno:message" and becomes a
SetupError (or ExecError for the exec itself).
"""

from __future__ import annotations

import errno
import os
import struct
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, NoReturn, Optional, Set, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # signal's C module: the same calls, without enum (README "Start-up")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _structs as S
from . import _syscalls
from ._errors import os_error


def ignore_fork_warning(module: str) -> None:
    """Ignore Python 3.12's warning about fork() in a multi-threaded process where the
    module named by the pattern `module` forks (a child that runs only prepared os.*
    calls on fds, then exec, touches no lock another thread could hold).  Before 3.12
    fork() does not warn, and nothing is done: filterwarnings would import re to compile
    the patterns, and re imports enum (README "Start-up")."""
    if sys.version_info >= (3, 12):
        import warnings
        warnings.filterwarnings("ignore", message=r"This process \(pid=\d+\) is multi-threaded",
                                category=DeprecationWarning, module=module)


PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38
ADDR_NO_RANDOMIZE = S.ADDR_NO_RANDOMIZE
PR_SET_CHILD_SUBREAPER = 36
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PR_SET_SECUREBITS = 28
# SECBIT_NOROOT | _LOCKED | NO_SETUID_FIXUP | _LOCKED | KEEP_CAPS_LOCKED |
# NO_CAP_AMBIENT_RAISE | _LOCKED  (linux/securebits.h)
LOCKED_SECUREBITS = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80

_confined = False   # in a stub: it has confined itself (confine_stub), so _doom may kill
DOOM_SIGNAL = signal.SIGRTMAX  # supervisor -> stub, and PDEATHSIG: kill the sandbox
READY = struct.Struct("=iii")  # command pid, listener fd, 0

STUB_BLOCKED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2,
                signal.SIGWINCH, signal.SIGTSTP, signal.SIGTTIN, signal.SIGTTOU)


# Signals sandlock itself set to SIG_IGN (the CLI's SIGINT and SIGQUIT while the command
# shares its process group: _supervisor.Watch.install_signal_wakeup): the command gets them back.
OWN_IGNORED: Set[int] = set()


def ignored_signals() -> Tuple[int, ...]:
    """Signals the command sets back to default: an ignored disposition survives execve.

    As subprocess does: SIGPIPE and SIGXFSZ, which Python ignores for itself; and what
    sandlock ignored itself (OWN_IGNORED).  A signal the caller already ignored (nohup's
    SIGHUP, a background job's SIGINT) stays ignored in the command, as it would bare."""
    out = []
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, *sorted(OWN_IGNORED)):
        if int(sig) not in out and signal.getsignal(sig) == signal.SIG_IGN:
            out.append(int(sig))  # plain ints: they travel to the fork server (marshal)
    return tuple(out)


class Prepared(NamedTuple):
    """Everything the stub and the command need, built before fork()."""
    candidates: Tuple[bytes, ...]   # executable paths to try, in PATH order
    argv: Tuple[bytes, ...]
    envp: Dict[bytes, bytes]
    cwd: Optional[str]
    rlimits: Tuple[Tuple[int, int], ...]   # (resource, limit)
    child_ruleset: int                   # -1: no Landlock (best effort)
    scope_ruleset: int                   # -1: no scopes (ABI < 6)
    filter_ptr: object                   # byref(sock_fprog); its buffers kept alive by the caller
    filter_flags: int
    stdio: Tuple[int, int, int]          # fds to become 0, 1, 2 (-1: inherit)
    own_group: bool
    foreground_tty: int                  # fd of the terminal to hand over, or -1
    umask: int                           # the caller's umask (the supervisor thread runs with 0)
    reset_signals: Tuple[int, ...]       # ignored here, set back to default in the command
    personality: int = 0                 # flags added to the command's personality (ADDR_NO_RANDOMIZE)
    affinity: Optional[Tuple[int, ...]] = None  # --cpu-cores: the command's CPUs (README "CPU")


class Pipes(NamedTuple):
    err_r: int
    err_w: int
    ready_r: int
    ready_w: int
    go_r: int
    go_w: int
    status_r: int
    status_w: int


def make_pipes() -> Pipes:
    fds: List[int] = []
    for _ in range(4):
        fds.extend(os.pipe2(os.O_CLOEXEC))
    return Pipes(*fds)


def exec_candidates(command: bytes, env_path: Optional[bytes]) -> Tuple[bytes, ...]:
    """Where execvp(3) would look for `command` (nowhere for an empty one: not found, 127)."""
    if not command:
        return ()
    if b"/" in command:
        return (command,)
    path = env_path if env_path is not None else b"/usr/local/bin:/usr/bin:/bin"
    return tuple(os.path.join(d or b".", command) for d in path.split(b":"))


def confine_supervisor(ruleset_fd: int) -> None:
    """Restrict the calling thread: no capabilities, NO_NEW_PRIVS, the supervisor ruleset.

    Only this thread changes (capabilities, no_new_privs and Landlock are
    per-thread); the stub and the command inherit all of it.
    """
    _syscalls.prctl(PR_SET_NO_NEW_PRIVS, 1)
    if ruleset_fd >= 0:
        _syscalls.landlock_restrict_self(ruleset_fd)
    effective, permitted, inheritable = _syscalls.capget()
    if effective or permitted or inheritable:
        drop_capabilities()


def drop_capabilities() -> None:
    """Empty bounding, ambient, inheritable, permitted, effective; lock securebits."""
    cap = 0
    while True:
        try:
            _syscalls.prctl(PR_CAPBSET_DROP, cap)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                break
            raise
        cap += 1
    _syscalls.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    _syscalls.prctl(PR_SET_SECUREBITS, LOCKED_SECUREBITS)
    _syscalls.capset_empty()


class ChildCalls(NamedTuple):
    """Raw syscalls bound before fork (see _syscalls.bound)."""
    prctl: Callable[..., int]
    restrict: Callable[..., int]
    seccomp: Callable[..., int]
    close_range: Callable[..., int]
    personality: Callable[..., int]
    all_fds: object   # ~0 as a C unsigned int, for close_range
    prlimit: Callable[..., int]   # prlimit64(2): the policy's limits (_set_rlimit)
    rlimit: "Any"     # its struct rlimit64 (_syscalls.rlimit_buffer)
    fork: Callable[[], int]   # the stub's fork of its command (_syscalls.bound_fork)


def bind_calls() -> ChildCalls:
    return ChildCalls(_syscalls.bound("prctl"), _syscalls.bound("landlock_restrict_self"),
                      _syscalls.bound("seccomp"), _syscalls.bound("close_range"),
                      _syscalls.bound("personality"), _syscalls.c_uint(0xFFFFFFFF),
                      _syscalls.bound("prlimit64"), _syscalls.rlimit_buffer(), _syscalls.bound_fork())


# --- after fork: the stub ---------------------------------------------------------------

def _report(fd: int, step: str, err: int, message: str = "") -> None:
    try:
        os.write(fd, f"{step}:{err}:{message}".encode("utf-8", "surrogateescape"))
    except OSError:
        pass


def run_stub(prep: Prepared, pipes: Pipes, calls: ChildCalls, supervisor_pid: int) -> None:
    """The stub's whole life; never returns."""
    where = ["stub"]
    try:
        for fd in (pipes.err_r, pipes.ready_r, pipes.go_w, pipes.status_r):
            if fd >= 0:  # -1: forked by the fork server, which never had them (_forkserver)
                os.close(fd)
        confine_stub(prep, calls, supervisor_pid, where)
        start_command(prep, pipes, calls, where)
    except BaseException as exc:  # report, never unwind into the caller's code
        _report(pipes.err_w, where[0], getattr(exc, "errno", 0) or errno.EIO, str(exc))
    os._exit(125)


def confine_stub(prep: Prepared, calls: ChildCalls, parent: int, where: List[str]) -> None:
    """The stub's own setup, before it forks the command (where[0]: the step, for an error).
    The fork server runs it ahead of the request (_forkserver): it uses only own_group,
    foreground_tty and scope_ruleset of prep."""
    if prep.own_group:
        where[0] = "setpgid"
        os.setpgid(0, 0)
        if prep.foreground_tty >= 0:
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)
            os.tcsetpgrp(prep.foreground_tty, os.getpgrp())
    # Signals forwarded to the group, and the terminal's stop signals, stay
    # pending in the stub (one call); the command unblocks everything.  Set, not
    # added to: a stub forked by a thread that blocks every signal (a pooled thread
    # that ran a notification loop, _notif.block_signals) must still take DOOM_SIGNAL.
    signal.pthread_sigmask(signal.SIG_SETMASK, STUB_BLOCKED)
    signal.signal(DOOM_SIGNAL, lambda *_: _doom(prep))
    where[0] = "prctl(PR_SET_PDEATHSIG)"
    _check(calls.prctl(PR_SET_PDEATHSIG, DOOM_SIGNAL, 0, 0, 0))
    if os.getppid() != parent:
        _doom(prep)
    where[0] = "prctl(PR_SET_CHILD_SUBREAPER)"
    _check(calls.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0))
    if prep.scope_ruleset >= 0:
        where[0] = "landlock_restrict_self(scopes)"
        _check(calls.restrict(prep.scope_ruleset, 0))
    global _confined
    _confined = True


def start_command(prep: Prepared, pipes: Pipes, calls: ChildCalls, where: List[str]) -> None:
    """In the confined stub: fork the command, keep only the status pipe, reap."""
    # The stub reaps its command: an ignored SIGCHLD (the caller's) would have the kernel reap
    # it for nobody, and the run end as killed.  The command ignores it again, as subprocess's does.
    chld_ignored = signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN
    if chld_ignored:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    where[0] = "fork"
    pid = calls.fork()
    _check(pid)
    if pid == 0:
        if chld_ignored:
            signal.signal(signal.SIGCHLD, signal.SIG_IGN)
        run_command(prep, pipes, calls)
    where[0] = "close_range"
    _check(calls.close_range(3, pipes.status_w - 1, 0) if pipes.status_w > 3 else 0)
    _check(calls.close_range(pipes.status_w + 1, calls.all_fds, 0))
    _reap(prep, pid, pipes.status_w)


def _check(ret: int) -> None:
    if ret < 0:
        raise os_error(-ret)


def _doom(prep: Prepared) -> NoReturn:
    """Kill every process of the sandbox, then leave.

    Only a stub that has confined itself kills (_confined, set by confine_stub):
    before, no process of the sandbox exists yet, and its kill(-1) would not be
    held by the signal scope: it would reach every process of the user (of the
    machine, as root) when the supervisor or the fork server dies just then.
    """
    if _confined and prep.scope_ruleset >= 0:
        _kill_scope()
    elif _confined:
        try:
            os.killpg(0, signal.SIGKILL)  # its own group (setpgid): setsid and setpgid are refused below
        except OSError:
            pass
    os._exit(137)


def _kill_scope() -> None:
    """kill(-1, SIGKILL) of a confined stub: the signal scope keeps it inside the sandbox,
    and it never reaches the stub itself."""
    try:
        os.kill(-1, signal.SIGKILL)
    except OSError:
        pass


def _reap(prep: Prepared, command: int, status_fd: int) -> NoReturn:
    """Reap until the command ends; kill the rest and report its wait status.

    Under the signal scope the rest is killed first, so a status on the pipe
    says every process of the sandbox has had its SIGKILL: a run from the fork
    server ends there (Watch.ends_at_status), without waiting for this
    process's own exit, the teardown of a copy of a Python process (0.5-0.8 ms
    here).  Without the scope the stub's group is killed, the stub included,
    so it reports first.
    """
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            _doom(prep)
        if pid == command:
            break
    if _confined and prep.scope_ruleset >= 0:
        _kill_scope()
        os.write(status_fd, struct.pack("=i", status))
        os._exit(137)
    os.write(status_fd, struct.pack("=i", status))
    _doom(prep)


# --- after the second fork: the command ------------------------------------------------

def run_command(prep: Prepared, pipes: Pipes, calls: ChildCalls) -> None:
    """Confine this process and exec the command; never returns."""
    step = "setup"
    try:
        if pipes.status_w >= 0:  # -1: forked ahead by the fork server's stub, which never gave it
            os.close(pipes.status_w)
        for sig in prep.reset_signals + ((signal.SIGTTOU,) if prep.foreground_tty >= 0 else ()):
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        step = "dup2"
        for target, fd in enumerate(prep.stdio):
            if fd >= 0 and fd != target:
                os.dup2(fd, target)
            elif fd == target:
                os.set_inheritable(fd, True)
        os.umask(prep.umask)
        if prep.cwd is not None:
            step = "chdir"
            os.chdir(prep.cwd)
        if prep.personality:
            step = "personality"  # kept across its execs (not a set-user-ID one's)
            current = calls.personality(calls.all_fds)
            _check(current if current < 0 else calls.personality(current | prep.personality))
        step = "setrlimit"
        for which, limit in prep.rlimits:
            if which != S.RLIMIT_NOFILE:
                _set_rlimit(calls, which, limit)
        if prep.affinity is not None:
            step = "sched_setaffinity"
            os.sched_setaffinity(0, prep.affinity)
        if prep.child_ruleset >= 0:
            step = "landlock_restrict_self"
            _check(calls.restrict(prep.child_ruleset, 0))
        step = "seccomp"
        listener = calls.seccomp(S.SECCOMP_SET_MODE_FILTER, prep.filter_flags, prep.filter_ptr)
        _check(listener)
        os.write(pipes.ready_w, READY.pack(os.getpid(), listener, 0))
        step = "wait for the supervisor"
        if os.read(pipes.go_r, 1) != b"g":
            os._exit(125)
        os.close(listener)
        step = "close_range"
        keep = pipes.err_w
        _check(calls.close_range(3, keep - 1, 0) if keep > 3 else 0)
        _check(calls.close_range(keep + 1, calls.all_fds, 0))
        step = "setrlimit"
        for which, limit in prep.rlimits:
            if which == S.RLIMIT_NOFILE:  # last: setting up needs fds above a small limit
                _set_rlimit(calls, which, limit)
        step = "exec"
        _exec(prep, pipes.err_w)
    except BaseException as exc:
        _report(pipes.err_w, step, getattr(exc, "errno", 0) or errno.EIO, str(exc))
    os._exit(125)


def _set_rlimit(calls: ChildCalls, which: int, limit: int) -> None:
    """The limit `which` to `limit`: the soft one, and the hard one lowered to it (never
    raised: one the caller holds lower stays, the soft one then at most it)."""
    both = calls.rlimit
    _check(calls.prlimit(0, which, None, both))
    hard = both[1]
    new_hard = limit if hard == S.RLIM64_INFINITY or hard > limit else hard
    both[0], both[1] = min(limit, new_hard), new_hard
    _check(calls.prlimit(0, which, both, None))


def _exec(prep: Prepared, err_fd: int) -> None:
    """execve the first candidate that exists, as execvp(3) does."""
    saved = errno.ENOENT
    for path in prep.candidates:
        try:
            os.execve(path, prep.argv, prep.envp)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ENOTDIR):
                continue
            if exc.errno == errno.EACCES:
                saved = errno.EACCES
                continue
            saved = exc.errno or errno.EIO
            break
    _report(err_fd, "exec", saved, "")
    os._exit(127 if saved == errno.ENOENT else 126)
