"""What every handler works with: decoded calls, replies, the tracee's memory and fds.

A handler receives a `Call` whose arguments were decoded once (paths read as
bytes, page by page, up to PATH_MAX) and returns a reply value:

    Errno(n)    fail the syscall with errno n
    Value(v)    return v without running it
    Fd(fd)      install fd in the caller as the syscall's result
                (SECCOMP_IOCTL_NOTIF_ADDFD, then SEND of its number)
    CONTINUE    let the kernel run it; every use carries a comment saying why
                the kernel itself enforces the policy on what it re-reads
    Later(work, abandon, busy)
                an operation that may block (a FIFO open, a lock, a
                connect): the thread that received the call runs work()
                once another thread receives in its stead (`Receivers`),
                and the notifier sends what it returns; when no thread of
                the pool is left, abandon() runs and the call fails with
                `busy`
    Then(reply, after)
                send `reply`, then run after() (exec from a vfork child: the
                parent's bytes are put back once the kernel has the new path)

That is the only way out of a handler: the notifier (_supervisor.Notifier)
sends every reply, and nothing else answers a notification.  Steps that
come before any handler (a fork settled, a #! exec's argv put back) are
declared by the table (`_table.Table.before`), not by the handlers.

Handlers raise OSError for an errno and never touch raw `args` except
through `decode` (a row that needs the address of a path, exec's rewrite,
names it in its layout: "exepath" fills `path` and `path_at`).  Memory is reached with process_vm_readv/writev(2), which
find the thread's current address space at each call (an execve replaces
it) and honour page protections, so a read-only result buffer gets EFAULT
as it would from the kernel.  The supervisor confirms the notification is
still valid after decoding (SECCOMP_IOCTL_NOTIF_ID_VALID), so a thread that
died, and whose tid was reused, in between is never acted on.

Man pages: seccomp_unotify(2), process_vm_readv(2), pidfd_getfd(2).
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, FrozenSet, Optional, Protocol, Sequence, Set, Tuple, Union
else:
    Protocol = object  # Context is a plain class at run time: only annotations name it

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # signal's C module: the same calls, without enum (README "Start-up")
from . import _threads  # threading's parts, without its import (README "Start-up")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _structs as S
from . import _syscalls
from ._syscalls import closed_on_error
from ._errors import os_error
from ._procfs import read_fd
from ._structs import AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, PIDFD_THREAD  # noqa: F401  (handlers take them from here)

PATH_MAX = 4096
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_ID_VALID, _U64 = S.SECCOMP_IOCTL_NOTIF_ID_VALID, S.U64.pack
FIRST_READ = 256   # bytes of a string read first (read_string): 4 KiB cost 2-3 us more a read


class Errno(NamedTuple):
    errno: int


class Value(NamedTuple):
    value: int


class Fd(NamedTuple):
    fd: int          # the supervisor's fd; closed after it is installed
    cloexec: bool


class _Continue:
    __slots__ = ()

    def __repr__(self) -> str:
        return "CONTINUE"


CONTINUE = _Continue()


def _nothing() -> None:
    pass


class Later(NamedTuple):
    """An operation that may block: work() runs off the receiving path (the
    receiving thread, once another receives; Notifier.answer: a worker) and its
    reply is sent (None: the caller is gone, nobody to answer).  If no thread
    can take it, abandon() releases what work() would have (it runs instead of
    work, never with it) and the call fails with `busy`."""
    work: Callable[[], "Reply"]
    abandon: Callable[[], None] = _nothing
    busy: int = errno.EAGAIN


class Then(NamedTuple):
    """Send `reply`, then run after() (also when sending failed)."""
    reply: Union[Errno, Value, Fd, _Continue]
    after: Callable[[], None]


class Denial(NamedTuple):
    """One operation the supervisor refused by policy (README "Results and denials")."""
    syscall: str
    target: str      # the path, address, fd or pid the call named ("" if none)
    errno: int
    rule: str        # the rule or default that refused it

    def as_dict(self) -> Dict[str, object]:
        return {"syscall": self.syscall, "target": self.target, "errno": self.errno,
                "errno_name": errno.errorcode.get(self.errno, str(self.errno)), "rule": self.rule}


DENIALS_MAX = 1000   # denials kept in full per run; past it only a count per syscall (Denials)


class Denials:
    """The run's denial report: the first `limit` refusals in full, then a count per
    syscall name (bounded by the number of syscall names), so a command that fails a
    call in a loop cannot grow the supervisor.  Filled by Notifier.send (replies) from
    the notification thread and the workers."""

    def __init__(self, limit: int = DENIALS_MAX) -> None:
        self.limit = limit
        self.items: List[Denial] = []
        self.more: Dict[str, int] = {}   # syscall -> refusals past the limit
        self._lock = _threads.Lock()

    def add(self, denial: Denial) -> None:
        with self._lock:
            if len(self.items) < self.limit:
                self.items.append(denial)
            else:
                self.more[denial.syscall] = self.more.get(denial.syscall, 0) + 1

    def snapshot(self) -> Tuple[Tuple[Denial, ...], Dict[str, int]]:
        with self._lock:
            return tuple(self.items), dict(self.more)


# What a handler returns (the only way a reply leaves it).  A worker's work()
# returns one of the first four, or None when its caller is gone.
if TYPE_CHECKING:
    Reply = Union[Errno, Value, Fd, _Continue, Later, Then, None]
else:
    Reply = object  # only annotations name it (strings): typing stays unimported (README "Start-up")


class Context(Protocol):
    """Everything a handler (and a table step) may use of the supervisor: the one
    handler context type (implemented by _supervisor.RunContext; a unit test may
    pass any object with these members).  Replies are not sent through it: a
    handler returns them (see the module docstring).
    """

    policy: Any        # _policy.Policy
    names: Dict[int, str]   # syscall number -> name, for this architecture
    tracees: "Tracees"
    hot: "_syscalls.HotCalls"
    resolver: Any      # _resolve.Resolver or _rootfs.RootResolver (handler modules do not import each other)
    members: Any       # _procops.Members (the sandbox's processes)
    abstract_scoped: bool   # Landlock scopes abstract unix sockets (ABI >= 6)
    abstract_prefix: bytes  # the run's private namespace of abstract unix names (_netops)
    waits: Dict[int, Any]  # O_PATH fd of a FIFO a worker is opening -> ((dev, ino), access mode)
    waits_lock: Any    # a lock for waits (a worker closes its fd under it)
    in_flight: Any     # _procops.InFlight under --max-memory, else None
    netlink: Any       # _netlink.Netlink of the run, made (assigned) on its first netlink socket, or None
    net_rules: Any     # _netpolicy.NetRules of the policy (README "Network")
    net_dns: Any       # _dns.Dns of the run (DNS policing), None without network or with --net-deny
    memory: Any        # _supervisor.MemoryWriter with an emulated root, else None
    policy_gate: Any   # _policyfn.Gate of Sandbox(policy_fn=), else None (README "Policy callback")

    @property
    def vfork(self) -> Any:
        """The _rootexec.VforkHolder of the run (emulated root; made on first use)."""
        ...

    def names_to_numbers(self) -> Dict[str, int]:
        """Syscall name -> number, for this architecture."""
        ...

    def net_names(self, ip: Any) -> Tuple[str, ...]:
        """The hostnames `ip` was learned for (DNS policing), for hostname rules."""
        ...

    def inject(self, call: "Call", fd: int, cloexec: bool = True, at: int = -1) -> int:
        """Install a copy of our fd in the caller now, its number there (at >= 0: as that
        number, replacing the caller's fd); the reply still leaves by the return value."""
        ...

    def force_write(self, tid: int, address: int, data: bytes) -> bool:
        """Write the caller's memory, read-only pages too; True if the page was read-only."""
        ...

    def pending(self, call: "Call") -> bool:
        """Is `call` still waiting for its answer?  (For a Later's work that waits.)"""
        ...

    def is_member(self, pid: int) -> bool:
        """Is process pid one of the sandbox's?"""
        ...


WORKERS_MAX = 64    # threads of the pool for blocking operations done on behalf (Workers)
WORKER_IDLE = 5.0   # seconds an idle worker waits for another job before it ends


class Workers:
    """The one bounded pool of threads for operations done on behalf that may block
    (a FIFO open waiting for its other end, a connect, a send on a full socket).

    A handler returns its operation as a Later; the notifier hands it over with
    submit(), and the worker runs it and answers with what it returns
    (`answer`, i.e. Notifier.answer_later).
    At most `bound` operations run at once; when all workers are busy the next one
    is refused at once with EAGAIN, never queued: a queued operation could be the
    very one a busy worker waits for (the writer of a FIFO whose reader holds a
    worker), so a queue could deadlock the sandbox; EAGAIN cannot.  Threads are
    started when needed and end after WORKER_IDLE seconds without work.
    """

    def __init__(self, answer: Callable[["Call", Reply], None], bound: int = WORKERS_MAX) -> None:
        self._answer = answer
        self._bound = bound
        self._cond = _threads.Condition()
        self._jobs: List[Tuple["Call", Callable[[], Reply]]] = []
        self._threads = 0
        self._idle = 0
        self._starting = 0  # threads started that have not taken their first job yet
        self._closed = False

    def submit(self, call: "Call", work: Callable[[], Reply]) -> None:
        """Run work() in a worker, which answers `call` with what it returns (an
        exception: EPERM, failing closed; None: nobody is left to answer).

        Raises:
            OSError(EAGAIN): all `bound` workers are busy, or the run is over.
        """
        with self._cond:
            # operations under way (threads in a job) and waiting (queued, among them
            # those a thread just started will take)
            if self._closed or self._threads - self._idle - self._starting + len(self._jobs) >= self._bound:
                raise os_error(errno.EAGAIN, "every worker of the supervisor is busy")
            self._jobs.append((call, work))
            if self._idle + self._starting >= len(self._jobs):
                self._cond.notify()
                return
            self._threads += 1
            self._starting += 1
        try:
            _threads.start(self._serve, (), "sandlock-worker")
        except BaseException:
            with self._cond:
                self._threads -= 1
                self._starting -= 1
                self._jobs.remove((call, work))
            raise

    def close(self) -> None:
        """The run is over: idle workers end, busy ones end after their job."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _serve(self) -> None:
        block_signals()  # it may answer with an fd (see block_signals)
        starting = True
        while True:
            with self._cond:
                if starting:  # from now on counted as idle or busy
                    starting = False
                    self._starting -= 1
                self._idle += 1
                if not self._jobs and not self._closed:
                    self._cond.wait(WORKER_IDLE)
                self._idle -= 1
                if not self._jobs:
                    self._threads -= 1
                    return
                call, work = self._jobs.pop(0)
            try:
                reply = work()
            except OSError as exc:
                reply = Errno(exc.errno or errno.EIO)
            except BaseException:  # fail closed, never leave the caller waiting
                reply = Errno(errno.EPERM)
            if reply is not None:  # None: the caller is gone, nobody to answer
                self._answer(call, reply)


def block_signals() -> "Set[Union[int, signal.Signals]]":
    """Block every signal in the calling thread (one of the notifier's: a receiving
    loop or a worker) while it answers; the process's signals go to its other threads.

    Where the kernel has no killable waits (Linux < 6.0) an fd is installed and announced
    in one step (SECCOMP_IOCTL_NOTIF_ADDFD with SECCOMP_ADDFD_FLAG_SEND,
    Notifier._send_fd), and the kernel marks the call answered before the caller has
    taken the fd: if a signal interrupts the supervisor's wait there and the request is
    withdrawn, the call stays marked answered with no answer (a retry gets EINPROGRESS,
    and the caller returns 0).  With no signal deliverable to the thread the wait cannot
    be interrupted by one (a stop still can: there is no cure for that but two steps).

    Returns the mask it replaced: a thread that goes on to other work (a pooled thread
    of the fork server, Notifier._receive) restores it, or what it starts or forks
    next inherits every signal blocked (a stub's PDEATHSIG among them).

    The set blocked is valid_signals() (the C library's sigfillset, fixed for the
    life of the process) as plain ints, made on the first call: building it anew
    made a set of Signals enums at every thread start (~70 us)."""
    if not _ALL_SIGNALS:
        _ALL_SIGNALS.append(frozenset(int(sig) for sig in signal.valid_signals()))
    return signal.pthread_sigmask(signal.SIG_BLOCK, _ALL_SIGNALS[0])


_ALL_SIGNALS: List[FrozenSet[int]] = []  # [valid_signals() as ints], once made (block_signals)


class Receivers:
    """Which of the notifier's threads wait in SECCOMP_IOCTL_NOTIF_RECV (Notifier._receive).

    An operation that may block (a Later: a connect, a FIFO open, a lock) is
    done by the thread that received it, once another thread receives in its
    stead (hand_over): one already waiting in RECV, else the spare parked on
    a lock (woken by releasing it: no Python code of its own before it is
    back in RECV), else a new one started by `start` in the bounded pool.  So
    the operation starts at once, with no other thread woken on its path.
    After its operation a thread receives again while fewer than two do
    (back-to-back connects then need no thread woken at all), else parks as
    the spare (at most one), else ends; after a call answered at once, with
    two receiving, the one that answered parks or ends, so that one thread
    waits in RECV for the other calls.  Threads: the first, plus at most the
    pool's bound (_notif.Workers); a new one cannot start: `hand_over` is
    False and the operation is refused (Later.busy).

    Decisions are "receive", "park" or "end", taken under a lock and acted on
    with go_on() (which may wait on the spare's lock).  `over` is set once no
    thread receives any more (the sandbox has no process left, or the
    notifier failed); the spare then ends.
    """

    def __init__(self) -> None:
        self._lock = _threads.Lock()
        self.receiving = 1          # threads receiving, not in an operation (read unlocked as a hint)
        self._parked = False        # a spare waits on _unpark
        self._unpark = _threads.Lock()
        self._unpark.acquire()
        self.over = _threads.Event()

    def hand_over(self, start: Callable[[], bool]) -> bool:
        """The calling thread leaves receiving for an operation: another one receives
        (False: none could; start() starts a new one, False if it cannot)."""
        with self._lock:
            if self.receiving > 1:
                self.receiving -= 1
                return True
            if self._parked:
                self._parked = False
                self._unpark.release()  # the spare receives in this one's stead
                return True
            return start()  # the new one receives in this one's stead

    def after_act(self) -> str:
        """What a thread does once its operation is done (decided before it answers:
        the caller's next call may come at once and should find a thread receiving)."""
        with self._lock:
            if self.over.is_set():
                return "end"
            if self.receiving < 2:
                self.receiving += 1
                return "receive"
            return self._park_or_end()

    def fewer(self) -> str:
        """What a thread does after a call answered at once while another may receive too."""
        with self._lock:
            if self.receiving < 2:
                return "receive"
            self.receiving -= 1
            return self._park_or_end()

    def _park_or_end(self) -> str:  # under _lock, the thread no longer counted as receiving
        if not self._parked:
            self._parked = True
            return "park"
        return "end"

    def go_on(self, decision: str) -> bool:
        """Act on a decision: False if the thread ends."""
        if decision == "park":
            self._unpark.acquire()  # until an operation needs this thread to receive, or the end
            return not self.over.is_set()
        return decision == "receive"

    def stop(self) -> None:
        """A receiving thread ends (RECV found no process left, or failed)."""
        with self._lock:
            self.receiving -= 1
            if self.receiving <= 0:
                self.over.set()
                if self._parked:  # the run is over: the spare ends too
                    self._parked = False
                    self._unpark.release()


class Call:
    """One trapped syscall, its arguments decoded by its table row's layout.

    Decoded fields default to the class attributes below; decode() sets the
    ones the row's layout names (cheaper than initialising all of them).
    """

    dirfd = AT_FDCWD
    dirfd2 = AT_FDCWD
    path: Optional[bytes] = None
    path_at = 0          # the address of `path` in the caller ("exepath" layouts only)
    path2: Optional[bytes] = None
    flags = 0
    mode = 0
    ptr = 0
    ptr2 = 0
    size = 0
    fd = -1
    uid = -1
    gid = -1
    name: Optional[bytes] = None
    mask = 0
    pid = 0
    pid2 = 0
    sig = 0
    which = 0
    # set only when a call is refused (the denial report, Notifier.send): the rule that
    # refused it and what it named, where the decoded fields do not say it
    why = ""
    what: Optional[str] = None

    def __init__(self, id_: int, tid: int, nr: int, args: Sequence[int]) -> None:
        self.id = id_
        self.tid = tid
        self.nr = nr
        self.args = args


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def read_mem(tracees: "Tracees", tid: int, address: int, size: int) -> bytes:
    """Exactly `size` bytes of the tracee's memory, else EFAULT."""
    if address == 0:
        raise os_error(errno.EFAULT)
    hot = tracees.hot
    out = b""
    while len(out) < size:
        try:
            data = hot.readv(tid, address + len(out), min(size - len(out), hot.READ_MAX))
        except OSError:
            raise os_error(errno.EFAULT) from None
        if not data:
            raise os_error(errno.EFAULT)
        out += data
    return out


def write_mem(tracees: "Tracees", tid: int, address: int, data: bytes) -> None:
    """Write to the tracee's memory, or EFAULT."""
    if address == 0:
        raise os_error(errno.EFAULT)
    hot = tracees.hot
    step = hot.READ_MAX
    if len(data) <= step:  # a struct stat, statx, a sockaddr: one write
        try:
            if hot.writev(tid, address, data) == len(data):
                return
        except OSError:
            pass
        raise os_error(errno.EFAULT)
    for start in range(0, len(data), step):
        chunk = data[start:start + step]
        try:
            if hot.writev(tid, address + start, chunk) != len(chunk):
                raise os_error(errno.EFAULT)
        except OSError:
            raise os_error(errno.EFAULT) from None


def read_string(tracees: "Tracees", tid: int, address: int, limit: int = PATH_MAX) -> bytes:
    """A NUL-terminated string, read page by page (its first FIRST_READ bytes alone
    first); ENAMETOOLONG past `limit` bytes."""
    if address == 0:
        raise os_error(errno.EFAULT)
    hot = tracees.hot
    out = b""
    first = FIRST_READ  # most paths are short: copying the rest of the page costs more than a second read
    while len(out) < limit:
        chunk = min(PAGE - (address % PAGE), first)
        first = PAGE
        try:
            data = hot.readv(tid, address, min(chunk, limit - len(out)))
        except OSError:
            raise os_error(errno.EFAULT) from None
        if not data:
            raise os_error(errno.EFAULT)
        end = data.find(b"\0")
        if end >= 0:
            return out + data[:end]
        out += data
        address += len(data)
    raise os_error(errno.ENAMETOOLONG)


# --- decoding ----------------------------------------------------------------------------

def _path(tracees, tid: int, raw: int) -> bytes:
    return read_string(tracees, tid, raw)


def _optpath(tracees, tid: int, raw: int) -> Optional[bytes]:
    return None if raw == 0 else read_string(tracees, tid, raw)


def _xattr_name(tracees, tid: int, raw: int) -> bytes:
    return read_string(tracees, tid, raw, 256)


def _int32(hot, tid: int, raw: int) -> int:
    return _s32(raw)


def _uint32(hot, tid: int, raw: int) -> int:
    return raw & 0xFFFFFFFF


def _raw(hot, tid: int, raw: int) -> int:
    return raw


def _id(hot, tid: int, raw: int) -> int:
    """uid_t/gid_t: (uid_t)-1 means "unchanged", every other value is unsigned."""
    raw &= 0xFFFFFFFF
    return -1 if raw == 0xFFFFFFFF else raw


# layout kind -> (attribute, converter(hot, tid, raw))
_KINDS: Dict[str, Tuple[str, Callable[[object, int, int], object]]] = {
    "dirfd": ("dirfd", _int32), "dirfd2": ("dirfd2", _int32), "fd": ("fd", _int32),
    "path": ("path", _path), "path2": ("path2", _path), "optpath": ("path", _optpath),
    "flags": ("flags", _uint32), "mode": ("mode", _uint32), "mask": ("mask", _uint32),
    "xflags": ("mode", _uint32), "sig": ("sig", _uint32), "which": ("which", _uint32),
    "ptr": ("ptr", _raw), "ptr2": ("ptr2", _raw), "size": ("size", _raw),
    "uid": ("uid", _id), "gid": ("gid", _id), "pid": ("pid", _int32), "pid2": ("pid2", _int32),
    "name": ("name", _xattr_name),
    "_": ("", _raw),
}


# layout kinds that fill two attributes from one argument: exec's path, whose address
# the emulated root's exec rewrites in place (_rootexec._redirect_exec)
_WIDE: Dict[str, Tuple[Tuple[str, Callable[[object, int, int], object]], ...]] = {
    "exepath": (("path_at", _raw), ("path", _path)),
}


def compile_layout(layout: Sequence[str]) -> Tuple[Tuple[int, str, Callable[[object, int, int], object]], ...]:
    """Precompute (arg index, attribute, converter) for a table row's layout."""
    out = []
    for index, kind in enumerate(layout):
        for attr, convert in _WIDE.get(kind) or (_KINDS[kind],):
            if attr:
                out.append((index, attr, convert))
    return tuple(out)


def decode(tracees: "Tracees", call: Call, layout: Sequence[Tuple[int, str, Callable[[object, int, int], object]]],
           fixed: Dict[str, object]) -> Call:
    """Fill `call` from its raw arguments: the only place that reads args[i]."""
    args, tid = call.args, call.tid
    for index, attr, convert in layout:
        setattr(call, attr, convert(tracees, tid, args[index]))
    for attr, value in fixed.items():
        setattr(call, attr, value)
    return call


def listener_ioctl(listener: int, request: int, arg, mutate: bool = False):  # type: ignore[no-untyped-def]
    """fcntl.ioctl on the seccomp listener, again while a signal interrupts it.

    Every listener ioctl can fail with EINTR (the filter's lock is taken
    interruptibly; ADDFD waits for the target interruptibly and withdraws an
    unserved request), and none has acted when it does, so retrying is exact.
    Giving up instead would leave a notification unanswered: a hang.
    """
    while True:
        try:
            return fcntl.ioctl(listener, request, arg, mutate) if mutate else fcntl.ioctl(listener, request, arg)
        except InterruptedError:
            continue


# --- the tracee's fds ------------------------------------------------------------------------

class Tracees:
    """pidfds of the threads that notified, to fetch their fds with pidfd_getfd(2).

    A cached pidfd always refers to the task (struct pid) it was opened for:
    if that task is gone and its tid reused, pidfd_getfd fails with ESRCH and
    the pidfd is opened anew, so a reused tid never reaches a stale task.
    A pidfd opened while a notification is handled is kept only if that
    notification is still valid afterwards (SECCOMP_IOCTL_NOTIF_ID_VALID on
    `listener` for `current`): the caller was alive after the open, so the
    pidfd is the caller's and not that of a task that got its tid after it
    died (seccomp_unotify(2)).  `confirm` is the same check for the other
    handles taken by tid (/proc/TID/cwd).
    Memory is not cached at all: process_vm_readv/writev(2) find the
    thread's current address space at each call (an execve replaces it).
    """

    LIMIT = 512

    def __init__(self, hot: "_syscalls.HotCalls") -> None:
        self.hot = hot
        self._pidfds: Dict[int, int] = {}
        self._owner = _threads.get_ident()  # self.hot's buffers belong to this thread
        self._thread_flag = PIDFD_THREAD if _syscalls.kernel_version() >= (6, 9) else 0
        self.listener = -1   # set by the supervisor once it holds the listener
        self.current = 0     # the id of the notification being handled

    def still_valid(self) -> bool:
        """Is the notification being handled still pending?  False once its caller is
        gone (ENOENT); any other error is raised, so the call is answered with it
        rather than left waiting."""
        while True:  # listener_ioctl, written out: the path of every call
            try:
                fcntl.ioctl(self.listener, _ID_VALID, _U64(self.current))
                return True
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    return False
                raise

    def confirm(self) -> None:
        """ESRCH unless the notification being handled is still pending (its caller alive)."""
        if self.listener >= 0 and not self.still_valid():
            raise os_error(errno.ESRCH)

    def _open(self, tid: int) -> int:
        if len(self._pidfds) >= self.LIMIT:
            self.close()
        pid = tid if self._thread_flag else tgid_of(tid)
        pidfd = os.pidfd_open(pid, self._thread_flag)
        with closed_on_error(pidfd):
            self.confirm()
        self._pidfds[tid] = pidfd
        return pidfd

    def claim(self) -> None:
        """The calling thread is the one that uses self.hot (see getfd)."""
        self._owner = _threads.get_ident()

    @property
    def owner(self) -> int:
        """The thread that uses self.hot (claim)."""
        return self._owner

    def getfd(self, tid: int, fd: int) -> int:
        """A duplicate (close-on-exec) of the tracee's fd, or EBADF."""
        if fd < 0:
            raise os_error(errno.EBADF)
        pidfd = self._pidfds.get(tid)
        if pidfd is not None and _threads.get_ident() == self._owner:
            try:
                return self.hot.getfd(pidfd, fd)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
                self.forget(tid)
        elif pidfd is not None:
            try:
                return _syscalls.pidfd_getfd(pidfd, fd)
            except OSError as exc:
                if exc.errno != errno.ESRCH:
                    raise
                self.forget(tid)
        return _syscalls.pidfd_getfd(self._open(tid), fd)

    def forget(self, tid: int) -> None:
        pidfd = self._pidfds.pop(tid, None)
        if pidfd is not None:
            os.close(pidfd)

    def close(self) -> None:
        for tid in list(self._pidfds):
            self.forget(tid)


# /proc/PID/stat and /proc/PID/status are parsed here and nowhere else.

def proc_stat(pid: int, task: Optional[int] = None) -> List[bytes]:
    """The fields of /proc/PID/stat (of /proc/PID/task/TASK/stat, one thread's, with
    `task`) that follow the command name: [0] is the state, [1] the ppid, [19] the
    start time, [45]/[46] arg_start/arg_end (proc(5) numbers them from 3).  OSError
    if the process is gone."""
    data = _read_proc(b"/proc/%d/stat" % pid if task is None else b"/proc/%d/task/%d/stat" % (pid, task))
    # the comm field may hold spaces and parentheses: the fields follow the last ')'
    return data[data.rindex(b")") + 2:].split()


def proc_status(pid: Union[int, str], keys: Tuple[bytes, ...]) -> Dict[bytes, bytes]:
    """The fields `keys` (b"Tgid", b"Umask", ...) of /proc/PID/status (pid may be
    "self"), values stripped; those absent are missing.  Reading stops at the
    last one wanted.  OSError if the process is gone."""
    found: Dict[bytes, bytes] = {}
    for line in _read_proc(b"/proc/%s/status" % str(pid).encode()).split(b"\n"):
        key, _, value = line.partition(b":")
        if key in keys:
            found[key] = value.strip()
            if len(found) == len(keys):
                break
    return found


def _read_proc(path: bytes) -> bytes:
    """The whole of a /proc file, read with os.read (_procfs.read_fd): a buffered file
    object costs an fstat, an ioctl and an lseek more per open (~5-9 us)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return read_fd(fd)
    finally:
        os.close(fd)


def proc_status_field(pid: int, key: bytes) -> bytes:
    """A field of /proc/PID/status (e.g. b"Tgid", b"Umask"); ESRCH if gone."""
    try:
        value = proc_status(pid, (key,)).get(key)
    except FileNotFoundError:
        raise os_error(errno.ESRCH) from None
    if value is None:
        raise os_error(errno.ESRCH)
    return value


def current_umask() -> int:
    """This process's umask, read without changing it (os.umask would race other threads)."""
    umask = proc_status("self", (b"Umask",)).get(b"Umask")
    return 0o022 if umask is None else int(umask, 8)


def umask_of(tid: int) -> int:
    """The umask of thread tid (creations done on behalf apply it themselves): read
    anew at every call (umask(2) is not trapped), through the thread's own
    /proc/TID/status kept open while it lives (`Known`), else opened for it."""
    known = _known(tid)
    if known is not None:
        try:
            with _KNOWN_LOCK:  # (alive: _known just polled; an fd kept open reads no other task)
                data = known.status_data() if _KNOWN.get(tid) is known else b""
        except OSError:
            data = b""  # gone: the usual way says so
        if data:
            return int(_status_field(data, b"Umask"), 8)
    return int(proc_status_field(tid, b"Umask"), 8)


def tgid_of(tid: int) -> int:
    """The thread-group id (pid) of thread tid; ESRCH if it is gone."""
    known = _known(tid)
    return known.tgid if known is not None else int(proc_status_field(tid, b"Tgid"))


def process_of(tid: int) -> Tuple[int, bytes]:
    """(tgid_of(tid), start_of(that tgid)) from one kept entry (one poll of its pidfd):
    the thread's process and when it started; start b"" if it is gone."""
    known = _known(tid)
    if known is not None:
        return known.tgid, known.start
    tgid = int(proc_status_field(tid, b"Tgid"))
    return tgid, start_of(tgid)


def start_of(pid: int) -> bytes:
    """The start time of process pid (a tgid: field 22 of /proc/PID/stat), b"" if it is gone."""
    known = _known(pid)
    if known is not None and known.tgid == pid:
        return known.start
    try:
        return proc_stat(pid)[19]
    except (OSError, IndexError):
        return b""


def _status_field(data: bytes, key: bytes) -> bytes:
    start = data.find(b"\n" + key + b":")
    if start < 0:
        raise os_error(errno.ESRCH)
    start += len(key) + 2
    end = data.find(b"\n", start)
    return data[start:end if end >= 0 else len(data)].strip()


# --- what does not change while a thread lives --------------------------------------------
#
# A thread's thread-group id and its process's start time never change while the
# thread lives (an exec by another thread of the group gives it the leader's tid
# and start time: fs/exec.c de_thread), so they are read once per thread and kept
# (`Known`).  A kept entry is trusted only while a pidfd opened for that very task
# says it has not exited (poll(2) on a pidfd: readable once it has): a tid is
# reused only after its task is reaped, and the reused tid is another task, whose
# entry is read anew.  The pidfd is opened before the reads and checked after them,
# so what was read belongs to its task.  Entries are bounded (KNOWN_MAX, the oldest
# goes first), dropped when their task is found exited, and those of exited tasks
# all go at the end of a run (forget_exited).  Without thread pidfds (PIDFD_THREAD,
# Linux 6.9) only a process's main thread has an entry; other threads are read
# every time, as before.

KNOWN_MAX = 64       # threads whose ids are kept (each holds a pidfd, a poll object, maybe a /proc fd)


class Known:
    """What does not change while thread `tid` lives (see above), and its /proc/TID/status."""

    __slots__ = ("pidfd", "poller", "tgid", "start", "status", "tid")

    def __init__(self, tid: int, pidfd: int, tgid: int, start: bytes) -> None:
        self.tid, self.pidfd, self.tgid, self.start = tid, pidfd, tgid, start
        self.poller = select.poll()
        self.poller.register(pidfd, select.POLLIN)
        self.status = -1  # /proc/TID/status, opened on the first umask read

    def alive(self) -> bool:
        """Has the task not exited?  (Under _KNOWN_LOCK: a poll object is not shared.)"""
        try:
            return not self.poller.poll(0)
        except (OSError, RuntimeError):
            return False

    def status_data(self) -> bytes:
        """/proc/TID/status as it is now (under _KNOWN_LOCK, the entry alive), read through
        an fd opened for this very task: a /proc file of a task that is gone fails with
        ESRCH, whoever has its tid since."""
        if self.status < 0:
            fd = os.open(b"/proc/%d/status" % self.tid, os.O_RDONLY | os.O_CLOEXEC)
            if not self.alive():  # the tid may be another task's since the check before
                os.close(fd)
                raise os_error(errno.ESRCH)
            self.status = fd
        return os.pread(self.status, 4096, 0)

    def close(self) -> None:
        """Under _KNOWN_LOCK, once out of the table (its fds are used only under the lock)."""
        for fd in (self.pidfd, self.status):
            if fd >= 0:
                os.close(fd)
        self.pidfd = self.status = -1


_KNOWN: Dict[int, Known] = {}
_KNOWN_LOCK = _threads.Lock()
_THREAD_PIDFD: List[int] = []  # [PIDFD_THREAD or 0], once known


def _known(tid: int) -> Optional[Known]:
    """The kept entry of thread tid, made on first use; None where none can be made
    (no thread pidfd, the thread is gone): the caller reads /proc as before."""
    with _KNOWN_LOCK:
        known = _KNOWN.get(tid)
        if known is not None:
            if known.alive():
                return known
            del _KNOWN[tid]
            known.close()
    if not _THREAD_PIDFD:
        _THREAD_PIDFD.append(PIDFD_THREAD if _syscalls.kernel_version() >= (6, 9) else 0)
    try:
        pidfd = os.pidfd_open(tid, _THREAD_PIDFD[0])
    except OSError:
        return None  # gone, or a thread without PIDFD_THREAD
    try:
        tgid = int(proc_status_field(tid, b"Tgid"))
        start = proc_stat(tgid)[19]
    except (OSError, ValueError, IndexError):
        os.close(pidfd)
        return None
    known = Known(tid, pidfd, tgid, start)
    with _KNOWN_LOCK:
        if not known.alive() or tid in _KNOWN:  # exited meanwhile: what was read may be another's
            known.close()
            return _KNOWN.get(tid)
        while len(_KNOWN) >= KNOWN_MAX:
            _KNOWN.pop(next(iter(_KNOWN))).close()
        _KNOWN[tid] = known
    return known


def forget_exited() -> None:
    """Drop the kept entries of threads that have exited (the end of a run)."""
    with _KNOWN_LOCK:
        for tid, known in list(_KNOWN.items()):
            if not known.alive():
                del _KNOWN[tid]
                known.close()


def parent_of(pid: int) -> int:
    """The parent pid from /proc/PID/stat (0 if gone)."""
    try:
        fields = proc_stat(pid)
    except OSError:
        return 0
    return int(fields[1])
