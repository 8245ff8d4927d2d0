"""The dynamic policy callback: Sandbox(policy_fn=fn) (README "Policy callback").

The supervisor asks `fn(event, ctx)` about an exec, an open for writing, a
connect or send to an IP destination and a bind of an IP port, once its own
static check has allowed the operation and before it acts: the callback can
only refuse what the static policy allows, never the reverse.  `event`
holds the supervisor's own copy of the arguments (str, int, tuples), the
copy the supervisor then acts on; `ctx` (`Narrowing`) narrows the policy
for the rest of the run.

The callback runs in one thread of the supervisor's process made by the
confined supervising thread, so under the same Landlock domain and seccomp
filter as the supervisor; one call at a time; each call is bounded by
`policy_fn_timeout` seconds (DEFAULT_TIMEOUT): a call that raises, returns
something that is not a verdict, or does not return in time denies (EPERM),
with one line on stderr.  A callback still running when a new event comes
makes that event wait for the rest of its own bound, then deny.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
import time
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    import queue
    from typing import Any, Callable, List, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # signal's C module: the same calls, without enum (README "Start-up")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _syscalls
from ._errors import PolicyError, os_error
from ._notif import PATH_MAX, Call, Context, parent_of, read_mem, read_string, tgid_of

DEFAULT_TIMEOUT = 1.0   # seconds a call of the callback may take before its event is denied
ARGV_MAX = 1 << 16      # arguments read for an exec event (the kernel's own limit is larger: E2BIG beyond)
ARGV_BYTES = 2 << 20    # bytes of argument strings read for an exec event (E2BIG beyond)


class Event(NamedTuple):
    """What the command is about to do, as the supervisor will do it (README "Policy callback")."""
    kind: str                                # "exec", "open", "connect", "sendto", "bind"
    pid: int                                 # the calling thread's id
    path: Optional[str] = None               # exec, open: the file (the supervisor's resolved name)
    argv: Optional[Tuple[str, ...]] = None   # exec: the arguments the program gets
    host: Optional[str] = None               # connect, sendto, bind: the IP address
    port: Optional[int] = None
    protocol: Optional[str] = None           # "tcp", "udp", "icmp"


class Narrowing:
    """The callback's `ctx`: narrows the policy for the rest of the run, never widens it."""

    def __init__(self, gate: "Gate") -> None:
        self._gate = gate

    def deny_path(self, path: "os.PathLike[str] | str | bytes") -> None:
        """Refuse (EACCES) every open, exec and metadata call the supervisor decides under
        `path` (an absolute host path) from now on; fds already open stay open."""
        name = os.fsencode(path)
        if not name.startswith(b"/"):
            raise PolicyError(f"deny_path: expected an absolute path, got {path!r}")
        name = os.path.normpath(name).rstrip(b"/") or b"/"
        self._gate.denied = self._gate.denied + (name,)

    def restrict_network(self, allow: "List[str] | Tuple[str, ...]" = (), bind: "Optional[List[str]]" = None) -> None:
        """Destinations from now on: those the static policy allows AND some of `allow`
        (--net-allow grammar) matches; `bind` (--net-allow-bind grammar), if given, the
        same for binds.  Each call narrows further."""
        from . import _netpolicy
        if isinstance(allow, (str, bytes)):
            raise PolicyError("restrict_network: allow is a list of --net-allow specs")
        rules = _netpolicy.NetRules(tuple(_netpolicy.parse_rule("restrict_network", s) for s in allow), (),
                                    tuple(_netpolicy.parse_bind("restrict_network", s) for s in (bind or ())), ())
        self._gate.networks = self._gate.networks + ((rules, bind is not None),)

    def set_max_processes(self, n: int) -> None:
        """Lower the number of processes the sandbox may hold (never raises it)."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise PolicyError(f"set_max_processes: expected a positive int, got {n!r}")
        gate = self._gate
        gate.max_processes = n if gate.max_processes is None else min(gate.max_processes, n)

    def set_max_memory(self, size: int) -> None:
        """Lower the memory limit of the sandbox, in bytes (never raises it); a sandbox
        already above it is killed at the next measurement, as with max_memory."""
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise PolicyError(f"set_max_memory: expected a positive int of bytes, got {size!r}")
        gate = self._gate
        gate.max_memory = size if gate.max_memory is None else min(gate.max_memory, size)


class NarrowedRules:
    """A run's filesystem rules (_resolve.FsRules) with the callback's deny_path
    prefixes: every path decision of the supervisor goes through check()."""

    def __init__(self, rules: Any, gate: "Gate") -> None:
        self._rules = rules
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        return getattr(self._rules, name)

    def check(self, path: bytes, need: str) -> None:
        if self._gate.denied and self._gate.path_denied(path):
            raise os_error(errno.EACCES)
        self._rules.check(path, need)


class _Job:
    __slots__ = ("event", "answer", "done")

    def __init__(self, event: Event) -> None:
        self.event = event
        self.answer = errno.EPERM
        self.done = threading.Event()


class Gate:
    """A run's callback, its narrowings and its thread."""

    def __init__(self, fn: Callable[[Event, Narrowing], Any], timeout: float, max_processes: Optional[int],
                 max_memory: Optional[int]) -> None:
        self.fn = fn
        self.timeout = timeout
        self.denied: Tuple[bytes, ...] = ()          # deny_path prefixes (host names)
        self.networks: Tuple[Tuple[Any, bool], ...] = ()  # (NetRules, restricts binds) of restrict_network
        self.max_processes = max_processes
        self.max_memory = max_memory
        self.narrowing = Narrowing(self)
        # here, not at the top: only runs with a callback need it (README "Start-up").  The Gate
        # is made in the supervising thread, before it confines itself, or from the fork server,
        # confined from its start, once the caller's thread imported it (_supervisor.preload):
        # nothing is imported once confined.
        import queue
        self._jobs: "queue.Queue[Optional[_Job]]" = queue.Queue(1)
        self._idle = threading.Semaphore(1)
        self._thread: Optional[threading.Thread] = None

    # --- narrowings, decided before the callback is asked ---------------------------------------

    def path_denied(self, name: bytes) -> bool:
        return any(name == p or name.startswith(p + b"/") or p == b"/" for p in self.denied)

    def net_denied(self, proto: str, packed: bytes, port: int, names_of: Callable[[Any], Any]) -> bool:
        return any(not rules.allows_packed(proto, packed, port, names_of) for rules, _ in self.networks)

    def bind_denied(self, proto: str, port: int) -> bool:
        return any(binds and not rules.allows_bind(proto, port) for rules, binds in self.networks)

    # --- the callback -----------------------------------------------------------------------------

    def ask(self, event: Event) -> int:
        """0 if the callback allows `event`, else the errno to answer with."""
        deadline = time.monotonic() + self.timeout
        if not self._idle.acquire(timeout=self.timeout):
            _warn(f"policy_fn is still busy after {self.timeout:g} s: {event.kind} denied")
            return errno.EPERM
        job = _Job(event)
        if self._thread is None:
            # made by the supervising thread: the callback runs confined as it is
            self._thread = threading.Thread(target=self._serve, name="sandlock-policy-fn", daemon=True)
            self._thread.start()
        self._jobs.put(job)
        if not job.done.wait(max(0.0, deadline - time.monotonic())):
            _warn(f"policy_fn took more than {self.timeout:g} s: {event.kind} {event.path or event.host or ''} denied")
            return errno.EPERM
        return job.answer

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                job.answer = verdict(self.fn(job.event, self.narrowing))
            except BaseException as exc:  # fail closed: whatever the callback raised
                _warn(f"policy_fn raised {type(exc).__name__}: {exc}: {job.event.kind} denied")
                job.answer = errno.EPERM
            finally:
                job.done.set()
                self._idle.release()

    def close(self) -> None:
        """End the thread once it is idle (a callback that never returns keeps it)."""
        if self._thread is not None and self._idle.acquire(blocking=False):
            self._jobs.put(None)


def verdict(answer: Any) -> int:
    """True or None: allowed (0); False: EPERM; a positive int: that errno; else EPERM."""
    if answer is None or answer is True:
        return 0
    if answer is False:
        return errno.EPERM
    if isinstance(answer, int) and 0 < answer < 4096:
        return answer
    _warn(f"policy_fn returned {answer!r}, not True/None/False/an errno: denied")
    return errno.EPERM


def _warn(message: str) -> None:
    try:
        sys.stderr.write(f"sandlock: {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):
        pass


# --- what handlers call -----------------------------------------------------------------------------

def gate_of(ctx: Context) -> Optional[Gate]:
    return getattr(ctx, "policy_gate", None)


def check_open(ctx: Context, call: Call, name: bytes) -> None:
    """An open for writing of the host file `name`: EACCES if narrowed away, else the callback."""
    gate = gate_of(ctx)
    if gate is None:
        return
    if gate.path_denied(name):
        raise os_error(errno.EACCES)
    _raise(gate.ask(Event("open", call.tid, path=os.fsdecode(name))))


def check_exec(ctx: Context, call: Call, name: bytes, argv_address: int) -> Optional[List[bytes]]:
    """An exec of `name` (the supervisor's resolved name) with the argv at argv_address:
    the argv the callback allowed (None without a callback), for watch_exec."""
    gate = gate_of(ctx)
    if gate is None:
        return None
    if gate.path_denied(name):
        raise os_error(errno.EACCES)
    argv = read_argv(ctx, call, argv_address)
    _raise(gate.ask(Event("exec", call.tid, path=os.fsdecode(name), argv=tuple(os.fsdecode(a) for a in argv))))
    return argv


# --- an exec runs as it was decided ---------------------------------------------------------------
#
# An exec cannot be done on behalf: the kernel reads the path and argv from the
# command's memory again after the CONTINUE, and another thread (or process
# sharing the pages) may have changed them since the callback saw its copy.
# So the exec the callback allowed is watched: the calling thread is seized
# with ptrace(2) (PTRACE_O_TRACEEXEC) before the CONTINUE, and stops at
# PTRACE_EVENT_EXEC, inside the exec, before one instruction of the new image
# runs.  There the kernel's own copy is compared with the decided one: the
# arguments (/proc/PID/cmdline, written by the kernel into the new image) and
# the file (/proc/PID/exe against the (device, inode) decided; for a #! script,
# the script name the interpreter is given).  Different: SIGKILL.  An exec that
# fails, or is restarted (and so trapped and decided again), stops at the
# PTRACE_INTERRUPT sent after the CONTINUE instead and is let go.  No stop
# within EXEC_BOUND seconds: killed (fail closed).  The process's parent sees
# none of these stops.

PTRACE_CONT, PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 7, 17, 0x4206, 0x4207
PTRACE_O_TRACEEXEC, PTRACE_EVENT_EXEC = 0x10, 4
WALL = 0x40000000
EXEC_BOUND = 5.0   # seconds an allowed exec may take before it is killed


def watch_exec(call: Call, argv: List[bytes], ident: Tuple[int, int], script: Optional[bytes]) -> Callable[[], None]:
    """Seize the caller before its exec is continued; the returned after() (run by the
    same thread once the CONTINUE is sent, _notif.Then) checks the exec that happened.
    ident: (st_dev, st_ino) of the program; script: for a #! file, the name the
    interpreter is given (b"": not checked), else None."""
    tid = call.tid
    tgid = tgid_of(tid)
    if parent_of(tgid) == os.getpid():
        raise os_error(errno.EPERM, "not a process of the command")  # never: our waitpid would reap it
    try:
        _syscalls._call("ptrace", PTRACE_SEIZE, tid, 0, PTRACE_O_TRACEEXEC)
    except OSError as exc:
        _warn(f"cannot watch an exec (ptrace: {exc.strerror}): denied")
        raise os_error(errno.EPERM) from None
    return lambda: _verify(tid, tgid, argv, ident, script)


def _verify(tid: int, tgid: int, argv: List[bytes], ident: Tuple[int, int], script: Optional[bytes]) -> None:
    try:
        _syscalls._call("ptrace", PTRACE_INTERRUPT, tid, 0, 0)
    except OSError:
        pass
    candidates = (tid,) if tid == tgid else (tid, tgid)
    deadline = time.monotonic() + EXEC_BOUND
    pause = 0.0001
    while True:
        ours, got, status = _news(candidates)
        if not ours:
            return
        if not got:
            if time.monotonic() > deadline:
                _warn(f"an allowed exec took more than {EXEC_BOUND:g} s: killed")
                _kill(tgid, candidates)
                return
            time.sleep(pause)
            pause = min(pause * 2, 0.005)
            continue
        if not os.WIFSTOPPED(status):
            return  # it died (now reaped for us, the tracer; its parent is told)
        event = status >> 16
        if event == PTRACE_EVENT_EXEC:
            if _ran_as_decided(got, argv, ident, script):
                _detach(got, 0)
            else:
                _warn("the exec's path or arguments changed after the policy_fn decided: killed")
                _kill(got, (got,))
            return
        # the exec failed or will be restarted (and decided again): let it go, with
        # the signal of a signal-delivery stop
        _detach(got, 0 if event else os.WSTOPSIG(status))
        return


def _ran_as_decided(pid: int, argv: List[bytes], ident: Tuple[int, int], script: Optional[bytes]) -> bool:
    try:
        fd = os.open(f"/proc/{pid}/cmdline", os.O_RDONLY | os.O_CLOEXEC)
        try:
            raw = b""
            while len(raw) <= ARGV_BYTES + PATH_MAX:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                raw += chunk
        finally:
            os.close(fd)
        st = os.stat(f"/proc/{pid}/exe")
    except OSError:
        return False
    got = raw[:-1].split(b"\0") if raw.endswith(b"\0") else raw.split(b"\0")
    want = list(argv) or [b""]  # argc 0: the kernel gives "" as argv[0]
    if script is None:
        return (st.st_dev, st.st_ino) == ident and got == want
    tail = ([script] if script else []) + want[1:]
    return len(got) > len(tail) and (not tail or got[-len(tail):] == tail)


def _detach(pid: int, signum: int) -> None:
    try:
        _syscalls._call("ptrace", PTRACE_DETACH, pid, 0, signum)
    except OSError:
        pass


def _kill(pid: int, candidates: Tuple[int, ...]) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:  # reaped for us, so that its parent learns of its end
        ours, got, status = _news(candidates)
        if not ours or (got and not os.WIFSTOPPED(status)):
            return
        if not got:
            time.sleep(0.001)


def _news(candidates: Tuple[int, ...]) -> Tuple[bool, int, int]:
    """(any candidate is still a tracee of ours, the first one with a wait status or 0, its status)."""
    ours = False
    for pid in candidates:
        try:
            got, status = os.waitpid(pid, os.WNOHANG | WALL)
        except ChildProcessError:
            continue
        ours = True
        if got:
            return True, got, status
    return ours, 0, 0


def check_destination(ctx: Context, call: Call, kind: str, proto: str, packed: bytes, port: int) -> None:
    """A connect or send to packed:port the static rules allowed."""
    gate = gate_of(ctx)
    if gate is None:
        return
    if gate.net_denied(proto, packed, port, ctx.net_names):
        raise os_error(errno.EACCES, "the policy callback restricted the network")
    from . import _netpolicy
    host = str(_netpolicy.unmap(_netpolicy.ip_from_packed(packed)))
    _raise(gate.ask(Event(kind, call.tid, host=host, port=port, protocol=proto)))


def check_bind(ctx: Context, call: Call, proto: str, address: bytes, port: int) -> None:
    """A bind of an IP port the static rules allowed (`address`: the sockaddr)."""
    gate = gate_of(ctx)
    if gate is None:
        return
    if gate.bind_denied(proto, port):
        raise os_error(errno.EACCES, "the policy callback restricted binds")
    host = None
    try:
        from . import _netops
        where = _netops.ip_destination(_family(address), address, False)
        if where is not None:
            from . import _netpolicy
            host = str(_netpolicy.unmap(_netpolicy.ip_from_packed(where[0])))
    except OSError:
        host = None
    _raise(gate.ask(Event("bind", call.tid, host=host, port=port, protocol=proto)))


def _family(address: bytes) -> int:
    return int.from_bytes(address[:2], sys.byteorder) if len(address) >= 2 else 0


def _raise(code: int) -> None:
    if code:
        raise os_error(code)


def read_argv(ctx: Context, call: Call, address: int) -> List[bytes]:
    """The argument strings at `address` (a NULL-terminated array of pointers), read once
    into the supervisor's memory; EFAULT / E2BIG as the kernel would say."""
    out: List[bytes] = []
    if address == 0:
        return out
    total = 0
    while True:
        if len(out) >= ARGV_MAX:
            raise os_error(errno.E2BIG)
        pointer = int.from_bytes(read_mem(ctx.tracees, call.tid, address + 8 * len(out), 8), "little")
        if pointer == 0:
            break
        text = read_string(ctx.tracees, call.tid, pointer, limit=32 * 4096)
        total += len(text) + 1
        if total > ARGV_BYTES:
            raise os_error(errno.E2BIG)
        out.append(text)
    ctx.tracees.confirm()
    return out

