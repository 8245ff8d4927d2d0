"""A warm fork server: launches from a small process instead of the caller's (README "Fork server").

Forking the caller, a large Python process, twice per run (the stub, then the
command) costs about 3 ms here, mostly in copying page tables.  A Sandbox's
later runs start instead from a small `python3 -I -S` (the server) that runs
only _structs, _syscalls, _launch and this module, and forks the stub, which
confines itself and forks the command exactly as in the direct launch
(_launch.run_stub).

Who is who (one server and one home thread per Sandbox, from its second run):

    home thread     a thread of sandlock, confined once exactly as a supervising
                    thread confines itself (_launch.confine_supervisor); it
                    starts the server and every supervising thread of the
                    Sandbox's runs, so all of them share one Landlock domain,
                    and the stubs and commands of the server are nested in it
                    (the supervisor may read their memory and take fds from
                    them: Landlock allows ptrace-mode access only downwards)
    server          fork + execve of sys.executable -I -S from the home thread:
                    fd 3 a socketpair end, 0-2 /dev/null, nothing else of the
                    caller; PR_SET_PDEATHSIG(SIGKILL) on the home thread; it
                    receives a launch request with its fds (SCM_RIGHTS), forks
                    the stub and answers (stub pid, pidfd of the stub)
    stub, command   as in the direct launch: the stub's PDEATHSIG is the
                    server's death, so SIGKILL to sandlock kills the home thread,
                    the server, then every sandbox (the stubs' _launch._doom)

The server runs with the caller's uid and no more privilege than a supervising
thread (no capabilities, NO_NEW_PRIVS, the supervisor's Landlock domain); it
accepts requests only on its socketpair.  What the direct launch takes from
the caller at each run and a server has from its own start is checked at each
run (rlimits and ids: a change falls back to the direct launch) or sent with
the request (stdio, cwd, umask, environment, ignored signals).
SANDLOCK_FORK_SERVER=0 turns the server off (every run is launched directly).
"""

from __future__ import annotations

import array
import errno
import marshal
import os
import resource
import select
import signal
import socket
import struct
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _launch
from . import _syscalls
from ._errors import os_error
from ._structs import CLONE_FS

# The server is forked from the home thread while other threads of the caller run:
# what the child runs before execve touches no lock they could hold (as in _launch),
# so Python 3.12's warning about fork() in a multi-threaded process is not for it.
_launch.ignore_fork_warning(r".*_forkserver$")

ENV_SWITCH = "SANDLOCK_FORK_SERVER"
MODULES = ("_errors", "_records", "_structs", "_systable", "_syscalls", "_launch", "_forkserver")  # the server's code, in import order
SERVER_FD = 3
START_TIMEOUT = 20.0   # seconds for the server to start (import ctypes, socket) and say ready
REPLY_TIMEOUT = 10.0   # seconds for an answer to a launch request
MAX_STARTS = 3         # a server that keeps dying: the Sandbox launches directly from then on
MAX_MESSAGE = 1 << 20
POOL_IDLE = 10.0       # seconds the idle supervising thread of the pool waits for another run before it ends
POOL_KEPT = 2          # idle threads kept (a run's supervising and notification threads): others end with their run
PID = struct.Struct("=i")
KCMP_VM = 1
_RLIMITS = tuple(getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_"))

# The interpreter's whole program: it loads the modules it is sent as the package
# `sandlock` (so their relative imports and guards work) and serves.
BOOT = r"""
import fcntl, marshal, socket, sys, types
sock = socket.socket(fileno=3)
data, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
for fd in fds:
    fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)  # recv_fds drops its flags argument
sources, rest = marshal.loads(data)
package = types.ModuleType("sandlock")
package.__path__ = []
sys.modules["sandlock"] = package
for name, source in sources:
    module = types.ModuleType("sandlock." + name)
    module.__package__ = "sandlock"
    sys.modules[module.__name__] = module
    exec(compile(source, "<sandlock/" + name + ".py>", "exec"), module.__dict__)
    setattr(package, name, module)
sys.modules["sandlock._forkserver"].serve(sock, fds, rest)
"""


def enabled() -> bool:
    return os.environ.get(ENV_SWITCH, "1") != "0"


def home_ruleset(prepared: Any, chroot: bool) -> Tuple[int, bool]:
    """(the home thread's ruleset, whether it is the server's own to close): the supervisor's,
    and in a root (chroot) the supervisor's with reading the interpreter
    (_landlock.interpreter_rules): the root's supervisor ruleset alone would not let the
    home thread start `python3 -I -S`.  A workdir without a root keeps the host's view, as
    host mode does: the supervisor's ruleset alone (_interpreters: /usr/bin/python3 when
    the domain does not let it run ours).  Raises SetupError (no server: every run
    launches directly)."""
    if not chroot or prepared.supervisor_ruleset < 0:
        return prepared.supervisor_ruleset, False
    from . import _landlock
    plan = prepared.supervisor_plan
    return _landlock.create_ruleset(plan._replace(rules=plan.rules + _landlock.interpreter_rules())), True


NAMESPACES = ("mnt", "net", "user", "ipc", "pid_for_children", "cgroup", "uts", "time_for_children")


def snapshot() -> Tuple[int, Tuple[object, ...]]:
    """(the signals this process ignores, as /proc's SigIgn mask; what the command would
    inherit from the caller that a server keeps from its own start), read in the caller's
    thread (raises OSError if it cannot be).

    A direct launch forks the caller at each run, so its command inherits all of it as it
    is then: ids, rlimits, the calling thread's seccomp filters, root directory and
    namespaces, CPUs and priority, its cgroups.  A caller that changed any since its
    server started gets its runs launched directly (Server.usable): inside the seccomp
    filters it added, in the namespaces, root or cgroup it moved to.  The ignored signals
    are sent with the request instead (_command)."""
    proc = os.open("/proc/thread-self", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        status = _read_at("status", proc)
        namespaces = tuple(_readlink_or_none("ns/" + name, proc) for name in NAMESPACES)
        cgroups = _read_at("cgroup", proc)
    finally:
        os.close(proc)
    ignored = -1
    seccomp = []
    for line in status.splitlines():
        if line.startswith(b"SigIgn:"):
            ignored = int(line.split()[1], 16)
        elif line.startswith(b"Seccomp"):   # Seccomp: (the mode) and Seccomp_filters: (how many)
            seccomp.append(line)
    if ignored < 0:
        raise os_error(errno.EIO, "no SigIgn in the calling thread's status")
    root = os.stat("/")
    return ignored, (os.getresuid(), os.getresgid(), tuple(sorted(os.getgroups())),
                     tuple(resource.getrlimit(r) for r in _RLIMITS), tuple(seccomp), (root.st_dev, root.st_ino),
                     namespaces, cgroups, tuple(sorted(os.sched_getaffinity(0))),
                     os.getpriority(os.PRIO_PROCESS, 0))


def _read_at(name: str, where: int) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=where)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def _readlink_or_none(name: str, where: int) -> Optional[str]:
    """A namespace's link ("net:[4026531840]"); None where the kernel has no such namespace."""
    try:
        return os.readlink(name, dir_fd=where)
    except FileNotFoundError:
        return None


def ignored_mask() -> int:
    """The signals this process ignores, as SigIgn's mask (the server: its own dispositions,
    all set from Python)."""
    return sum(1 << (sig - 1) for sig in signal.valid_signals() if signal.getsignal(sig) == signal.SIG_IGN)


class Handoff:
    """What the caller's thread gives a run that starts on the server (its own state at the call).

    ignored: the caller's ignored signals now (snapshot()); writer: the run writes into
    read-only pages of its commands (a root, a workdir, determinism: the server's memory
    writer is taken here).  Raises OSError where the run must be launched directly: the
    calling thread is in a Landlock domain the server is not in (Server.check_reachable).
    Made in the caller's thread by sandlock._handoff, which then sets what the run's
    Session takes: `upper` (a workdir's upper layer, take_upper), `net_dns`, `fake` (a fake
    root's record, take_fake); what no run took goes with the hand-off (close)."""

    def __init__(self, server: "Server", ignored: int, writer: bool = False) -> None:
        self.server = server
        self.ignored = ignored
        server.check_reachable()
        # its writer of read-only pages, started from this (the caller's) thread
        self.memory = server.memory_writer() if writer else None
        from ._notif import current_umask  # the caller's side only: the server's code has no _notif
        self.umask = current_umask()
        self.cwd = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # the caller's 0, 1, 2 as the command inherits them (-1: closed)
        self.stdio = tuple(_dup_or_closed(fd) for fd in range(3))
        self.upper: Any = None   # _cow.Upper, set by sandlock._handoff with a workdir
        self.net_dns: Any = None  # _dns.Dns, set by sandlock._handoff with network rules
        self.fake: Any = None     # _fakeroot.Owners, set by sandlock._handoff with a fake root

    def take_upper(self) -> Any:
        """The workdir's upper layer, now the run's (None without a workdir)."""
        upper, self.upper = self.upper, None
        return upper

    def take_fake(self) -> Any:
        """The fake root's record of owners, now the run's (None without a fake root)."""
        fake, self.fake = self.fake, None
        return fake

    def close(self) -> None:
        """Idempotent; only ever called in the run's supervising thread (or, when no thread
        could be started for it, the home thread, or the caller's before it asked for one):
        never two threads on one fd number.  An upper layer no run took is removed, a
        record of owners no run took closed unsaved."""
        fds, self.cwd, self.stdio = (self.cwd,) + self.stdio, -1, (-1, -1, -1)
        for fd in fds:
            if fd >= 0:
                os.close(fd)
        upper, fake = self.take_upper(), self.take_fake()
        if upper is not None:
            upper.discard()
        if fake is not None:
            fake.close()

    @property
    def closed(self) -> bool:
        return self.cwd < 0

    def spawn(self, target: Callable[[], None], failed: Callable[[BaseException], None]) -> Optional["Job"]:
        """The run's supervising thread (Server.spawn); the hand-off is closed if none starts.
        None (the hand-off closed): the server was closed meanwhile, launch directly."""
        def fail(exc: BaseException) -> None:
            self.close()
            failed(exc)
        job = self.server.spawn(target, fail)
        if job is None:
            self.close()
        return job


class Job:
    """One run's supervising work, handed to a thread of the pool; join()ed as a thread is
    (_process.Process).  target reports its own errors; failed(exc) is called instead of
    target when no thread could be started for it."""

    def __init__(self, target: Callable[[], None], failed: Callable[[BaseException], None]) -> None:
        import threading
        self.target: Optional[Callable[[], None]] = target
        self.failed: Optional[Callable[[BaseException], None]] = failed
        self.done = threading.Event()

    def run(self) -> None:
        try:
            if self.target is not None:
                self.target()
        except BaseException:  # noqa: BLE001 - target hands its errors on itself
            pass
        finally:
            # as threading.Thread drops its target: what the run held (a Process nobody
            # waits for) goes now, in this thread, not when the pooled thread next runs
            self.target = self.failed = None
            self.done.set()

    def fail(self, exc: BaseException) -> None:
        try:
            if self.failed is not None:
                self.failed(exc)
        finally:
            self.target = self.failed = None
            self.done.set()

    def join(self, timeout: Optional[float] = None) -> None:
        self.done.wait(timeout)


class Gone(Exception):
    """The server cannot launch this run (dead, or refused): launch directly."""


class Server:
    """The client side: one home thread and one server process for one Sandbox's rulesets."""

    def __init__(self, supervisor_ruleset: int, child_ruleset: int, scope_ruleset: int, program: bytes,
                 own_ruleset: bool = False) -> None:
        """own_ruleset: supervisor_ruleset is the server's (home_ruleset), closed once the home
        thread is confined by it."""
        import queue
        import threading
        self.rulesets = (supervisor_ruleset, child_ruleset, scope_ruleset)
        self._own_ruleset = own_ruleset
        self.program = program
        self.lock = threading.Lock()        # one request at a time on the socket
        self.ready = threading.Event()      # set once the first start is over (server or not)
        self.sock: Optional[socket.socket] = None
        self.pid = -1
        self.pidfd = -1
        self.starts = 0
        # the creating thread's (the home thread's, and the server's); unknown: equal to nothing
        self.state: Tuple[object, ...] = (object(),)
        try:
            self.state = snapshot()[1]
        except OSError:
            pass
        self.owner = os.getpid()   # a forked copy of the caller has neither the threads nor the server
        self._queue: "queue.SimpleQueue[Any]" = queue.SimpleQueue()   # the home thread's work
        self._jobs: "queue.SimpleQueue[Optional[Job]]" = queue.SimpleQueue()  # runs for the pool's idle threads
        self._pool_lock = threading.Lock()
        self._idle = 0   # threads of the pool waiting for a run
        self._closed = False
        self.failure: Optional[BaseException] = None   # what ended the home thread, if not close()
        self._sources = [(name, _source(name)) for name in MODULES]
        self._memory: Any = None   # the runs' memory writer in a root (memory_writer)
        self._null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
        self._home = threading.Thread(target=self._home_loop, name="sandlock-home", daemon=True)
        try:
            self._home.start()
        except BaseException:
            os.close(self._null)
            self._close_ruleset()
            raise

    def _close_ruleset(self) -> None:
        if self._own_ruleset:
            self._own_ruleset = False
            _close_quietly(self.rulesets[0])

    # --- from any thread --------------------------------------------------------------------

    def usable(self, state: Optional[Tuple[object, ...]] = None) -> bool:
        """The server is up (without waiting for a start under way) and the calling thread is as
        the server's creator was (state: snapshot()[1], read now if not given)."""
        if not (self.ready.is_set() and self.sock is not None and os.getpid() == self.owner):
            return False
        if state is None:
            try:
                state = snapshot()[1]
            except OSError:
                return False
        return state == self.state

    def memory_writer(self) -> Any:
        """The memory writer of this server's runs in a root (_supervisor.MemoryWriter), started
        at the first call, which must come from the caller's thread: the writer opens
        /proc/PID/mem for writing, which the home thread's domain does not allow.  One thread
        for every run of the Sandbox; it ends with close().  Raises OSError once closed (the
        run launches directly): a writer started then would have nobody to end it."""
        with self._pool_lock:
            if self._closed:
                raise os_error(errno.ESRCH, "the fork server is closed")
            if self._memory is None:
                from ._supervisor import MemoryWriter
                self._memory = MemoryWriter()
            return self._memory

    def check_reachable(self) -> None:
        """Raise OSError unless the calling thread may read the server as a debugger would
        (kcmp: PTRACE_MODE_READ).  Landlock allows that only into its own domain or one
        nested in it: a thread that restricted itself after the server started (its domain
        is not the home thread's) fails here, and its run is launched directly, inside it."""
        pid = self.pid
        if pid <= 0:
            raise os_error(errno.ESRCH, "no fork server")
        me = os.getpid()
        try:
            _syscalls.kcmp(me, pid, KCMP_VM, 0, 0)
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.ENOSYS) or (exc.errno == errno.EPERM and not _kcmp_filtered(me)):
                raise
            os.readlink(f"/proc/{pid}/exe")   # no kcmp: the same check through procfs

    def spawn(self, target: Callable[[], None], failed: Callable[[BaseException], None]) -> Optional["Job"]:
        """Run target in a supervising thread of the home thread's (so confined as it): an
        idle one of the pool, else a new one; join() the Job returned.  None once the
        server is closed."""
        job = Job(target, failed)
        with self._pool_lock:  # under the lock: a worker timing out sees the job (_worker),
            if self._closed:   # and close() comes after every job queued for the home thread
                return None
            if self._idle:
                self._idle -= 1
                self._jobs.put(job)
            else:
                self._queue.put(lambda: self._new_worker(job))
        return job

    def pooled(self, target: Callable[[], None]) -> "Job":
        """target in a thread of the pool: an idle one, else a new one started by the calling
        thread, which must be one of the pool's (a run's supervising thread: confined as the
        home thread).  A run's notification loop (_supervisor.Notifier.start): a thread
        started per run cost 0.1-0.3 ms.  Raises what threading.Thread.start raises."""
        import threading
        job = Job(target, _ignore)
        with self._pool_lock:
            if self._idle and not self._closed:
                self._idle -= 1
                self._jobs.put(job)
                return job
        threading.Thread(target=self._worker, args=(job,), name="sandlock-notifications", daemon=True).start()
        return job

    def _new_worker(self, job: "Job") -> None:
        """In the home thread: a supervising thread for job, kept in the pool after it."""
        import threading
        try:
            threading.Thread(target=self._worker, args=(job,), name="sandlock-supervisor", daemon=True).start()
        except BaseException as exc:  # noqa: BLE001 - the caller's join() raises it
            job.fail(exc)

    def _worker(self, job: "Job") -> None:
        """A pooled supervising thread: its job, then the next one, until POOL_IDLE seconds
        pass idle, the pool holds POOL_KEPT idle threads already, or the server is closed."""
        import queue
        while True:
            job.run()
            with self._pool_lock:
                if self._closed or self._idle >= POOL_KEPT:
                    return
                self._idle += 1
            try:
                next_job = self._jobs.get(timeout=POOL_IDLE)
            except queue.Empty:
                with self._pool_lock:
                    try:
                        next_job = self._jobs.get_nowait()  # given to this thread as it timed out
                    except queue.Empty:
                        self._idle -= 1
                        return
            if next_job is None:  # closed (close() took this thread off the idle count)
                return
            job, next_job = next_job, None

    def close(self) -> None:
        """Stop the home thread and the idle pooled threads; the server dies with the home
        thread (PDEATHSIG), and the sandboxes it still holds with it."""
        with self._pool_lock:
            if self._closed:
                return
            self._closed = True
            if self._memory is not None:
                self._memory.close()
            for _ in range(self._idle):
                self._jobs.put(None)
            self._idle = 0
            self._queue.put(None)

    # --- from a supervising thread ----------------------------------------------------------

    def launch(self, request: Tuple[Any, ...], fds: List[int]) -> Tuple[int, int]:
        """Send one launch request; returns (stub pid, pidfd of the stub).  Raises Gone."""
        with self.lock:
            sock = self.sock
            if sock is None:
                raise Gone("the fork server is not running")
            if _exited(self.pidfd):
                self._lost()
                raise Gone("the fork server died")
            try:
                socket.send_fds(sock, [marshal.dumps(request)], fds)
                if not _readable(sock, REPLY_TIMEOUT):
                    raise TimeoutError(f"no answer in {REPLY_TIMEOUT} s")
                data, got = _recv_fds(sock, 256, 1)
            except OSError as exc:  # a timeout too: a late answer must never be taken for the next one
                self._lost()
                raise Gone(f"the fork server did not answer: {exc}") from None
            if not data:
                self._lost()
        if len(data) != PID.size or len(got) != 1:
            for fd in got:
                os.close(fd)
            raise Gone(data.decode("utf-8", "replace") or "the fork server went away")
        return PID.unpack(data)[0], got[0]

    def _lost(self) -> None:
        """The server is dead or does not answer (lock held): end it (the sandboxes it still
        holds die with it, as on its death), and have the home thread start another."""
        if self.sock is None:
            return
        self.sock.close()
        self.sock = None
        self._end_server()
        if self.starts < MAX_STARTS:
            self.ready.clear()
            self._queue.put(self._start)

    def _end_server(self) -> None:
        """SIGKILL the server and reap it (lock held)."""
        if self.pidfd >= 0:
            try:
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            except OSError:
                pass
            os.close(self.pidfd)
            self.pidfd = -1
        if self.pid > 0:
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass
            self.pid = -1

    # --- the home thread --------------------------------------------------------------------

    def _home_loop(self) -> None:
        try:
            self._home_serve()
        except BaseException as exc:  # noqa: BLE001 - confined, this thread cannot even report it
            self.failure = exc        # (threading.excepthook imports); no run waits on it past ready
            self.ready.set()

    def _home_serve(self) -> None:
        try:
            _syscalls.unshare(CLONE_FS)
            os.umask(0)
            _syscalls.load_unwinder()
            _launch.confine_supervisor(self.rulesets[0])
        except Exception:  # noqa: BLE001 - never usable: every run launches directly
            _close_quietly(self._null)
            self.ready.set()
            return
        finally:
            self._close_ruleset()   # only ever restricted to once, here
        jobs: List[Any] = [self._start]
        while True:
            job = jobs.pop() if jobs else self._queue.get()
            if job is None:
                break
            try:  # the loop outlives any job's failure: a caller waits on it (spawn)
                job()
            except Exception:  # noqa: BLE001 - a start that failed: no server, runs launch directly
                self.ready.set()
            job = None
        with self.lock:
            try:
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
            finally:
                self._end_server()
        _close_quietly(self._null)

    def _start(self) -> None:
        """Start a server (in the home thread: its PDEATHSIG is this thread's end) with the
        first interpreter the supervisor's Landlock domain lets it run; or none."""
        self.starts += 1
        for interpreter in _interpreters():
            if self._start_with(interpreter):
                break
        self.ready.set()

    def _start_with(self, interpreter: str) -> bool:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            pid = self._fork_exec(interpreter, theirs.fileno())
        except OSError:
            ours.close()
            return False
        finally:
            theirs.close()
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            ours.close()
            _reap(pid)
            return False
        child, scope = self.rulesets[1:]
        try:
            fds = [fd for fd in (child, scope) if fd >= 0]
            rest = (self.program, child >= 0, scope >= 0)
            socket.send_fds(ours, [marshal.dumps((self._sources, rest))], fds)
            ok = _readable(ours, START_TIMEOUT) and ours.recv(64) == b"ready"
        except OSError:
            ok = False
        if not ok:
            ours.close()
            os.close(pidfd)
            _reap(pid)
            return False
        with self.lock:
            self.sock, self.pid, self.pidfd = ours, pid, pidfd
        return True

    def _fork_exec(self, interpreter: str, theirs: int) -> int:
        """fork + execve of the interpreter with fd 3 = theirs, 0-2 = /dev/null, nothing else."""
        calls = _launch.bind_calls()
        parent = os.getpid()
        argv = [os.fsencode(interpreter), b"-I", b"-S", b"-c", BOOT.encode()]
        null = self._null
        pid = os.fork()
        if pid == 0:  # straight-line calls only, as in _launch (a multi-threaded parent)
            try:
                if calls.prctl(_launch.PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) < 0 or os.getppid() != parent:
                    os._exit(127)
                for target in range(3):
                    os.dup2(null, target)
                os.dup2(theirs, SERVER_FD)
                calls.close_range(SERVER_FD + 1, calls.all_fds, 0)
                os.execve(argv[0], argv, {})
            finally:
                os._exit(127)
        return pid


# --- the server ---------------------------------------------------------------------------

def serve(sock: socket.socket, rulesets: List[int], rest: Tuple[bytes, bool, bool]) -> None:
    """The server's loop: one request, one stub; ends when the socket does.

    The next request's stub is forked ahead (_prefork), and forks its command
    ahead too: both confine themselves and wait, so a request costs the caller
    no fork.  That is done once the last run's stub has ended, or PREFORK_AFTER
    seconds after its request (the run is long), not while the last run's
    command starts: on two CPUs the forks took the CPU from it.  A request that
    finds no stub waiting forks one at once.
    """
    program, has_child, has_scope = rest
    got = list(rulesets)
    child = got.pop(0) if has_child else -1
    scope = got.pop(0) if has_scope else -1
    calls = _launch.bind_calls()
    filter_ptr, keep = _syscalls.seccomp_filter_pointer(program)
    own_ignored = _launch.ignored_signals()
    signal.signal(signal.SIGCHLD, _reap_all)
    # what a command forked ahead ignores before it takes the caller's: the server's, but for
    # SIGCHLD (the stub's own SIG_DFL) and the stub's DOOM_SIGNAL handler (_stub, _command)
    own_mask = ignored_mask() & ~(1 << (signal.SIGCHLD - 1)) & ~(1 << (_launch.DOOM_SIGNAL - 1))
    sock.send(b"ready")
    me = os.getpid()
    shared = (child, scope, filter_ptr, own_ignored, own_mask, calls, me)
    idle: Optional[Idle] = None    # the next run's stub and command, waiting
    last = -1                      # pidfd of the last run's stub, until it ends or PREFORK_AFTER
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    sample = b""   # the last request: what a command forked while no run waits rehearses (_rehearse)
    while True:
        if idle is None and last < 0:
            idle = _prefork(sock, shared, sample)
        if idle is None and last >= 0:
            poller.register(last, select.POLLIN)
            try:
                ready = {fd for fd, _ in poller.poll(PREFORK_AFTER * 1000)}
            finally:
                poller.unregister(last)
            if sock.fileno() not in ready:
                os.close(last)   # the last run is over, or long: fork the next stub now
                last = -1
                continue
            idle = _prefork(sock, shared)   # a request: its stub, before its fds are here
        try:
            data, fds = _recv_fds(sock, MAX_MESSAGE, 16)
        except OSError:
            break
        if not data:
            break
        sample = data
        if idle is not None and idle.stale():
            idle.discard()
            idle = None
        if idle is None:
            idle = _prefork(sock, shared)
        if idle is None:
            sock.send(b"fork server: cannot fork a stub")
        else:
            one, idle = idle, None
            if last >= 0:
                os.close(last)
            last = one.hand_over(sock, data, fds)
        for fd in fds:
            os.close(fd)
    del keep
    os._exit(0)


PREFORK_AFTER = 0.05   # seconds after a request at most before the next stub is forked (serve)


class Idle(NamedTuple):
    """A stub forked ahead, and its command: the stub's pid and pidfd, the server's ends of
    the stub's and the command's sockets."""
    pid: int
    pidfd: int
    stub: socket.socket
    command: socket.socket

    def stale(self) -> bool:
        """The stub ended, or its command did (killed from outside while it waited)."""
        poller = select.poll()
        poller.register(self.pidfd, select.POLLIN)
        poller.register(self.command.fileno(), select.POLLIN)
        return bool(poller.poll(0))

    def discard(self) -> None:
        """The stub dooms its sandbox (the command waiting) and leaves."""
        try:
            signal.pidfd_send_signal(self.pidfd, _launch.DOOM_SIGNAL)
        except OSError:
            pass
        self.close()

    def close(self) -> None:
        os.close(self.pidfd)
        self.stub.close()
        self.command.close()

    def hand_over(self, sock: socket.socket, data: bytes, fds: List[int]) -> int:
        """Answer the caller (stub pid, pidfd), then give the command its request and the
        stub its pipes; a pidfd of the stub for the server (the last run's).

        The answer first: woken, the stub and command took the CPU from the server before
        it answered, and the caller waited for the command's setup twice (2 ms here).
        Then the command, whose setup the caller waits for.  A stub that cannot be given
        its pipes is doomed (the command is in its signal scope, or its process group
        without the scope); a command that cannot be given its request leaves (its
        socket is closed), and its stub reports it dead: the caller's launch fails.
        """
        try:
            mine = os.dup(self.pidfd)
        except OSError:
            mine = -1   # the next stub is forked at once
        try:
            socket.send_fds(sock, [PID.pack(self.pid)], [self.pidfd])
            try:
                socket.send_fds(self.command, [data], fds)
            except OSError:
                pass
            socket.send_fds(self.stub, [b"s"], [fds[0], fds[1], fds[3]])   # err_w, ready_w, status_w
        except OSError:
            try:
                signal.pidfd_send_signal(self.pidfd, _launch.DOOM_SIGNAL)
            except OSError:
                pass
        self.close()
        return mine


def _prefork(sock: socket.socket, shared: Tuple[Any, ...], sample: bytes = b"") -> Optional[Idle]:
    """Fork the next stub, which confines itself, forks its command and waits for its
    pipes (the command for its request); None if it cannot.  sample: a request its
    command rehearses while none has come (b"": a run waits for it, no rehearsal)."""
    stub_ours, stub_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    cmd_ours, cmd_theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        pid = os.fork()
    except OSError:
        for one in (stub_ours, stub_theirs, cmd_ours, cmd_theirs):
            one.close()
        return None
    if pid == 0:
        stub_ours.close()
        cmd_ours.close()
        _stub(sock, stub_theirs, cmd_theirs, shared, sample)
    stub_theirs.close()
    cmd_theirs.close()
    try:
        return Idle(pid, os.pidfd_open(pid), stub_ours, cmd_ours)
    except OSError:
        os.kill(pid, signal.SIGKILL)
        stub_ours.close()
        cmd_ours.close()
        return None


def _stub(sock: socket.socket, ctl: socket.socket, cmd: socket.socket, shared: Tuple[Any, ...], sample: bytes) -> None:
    """The forked stub: confine itself as a directly launched one does (_launch.confine_stub),
    fork the command (_command), which waits for its request, then wait for its own pipes
    and reap (_launch.start_command's end).  A failure before the command is forked is
    reported on the request's error pipe, as the direct launch reports it.  shared: serve's."""
    child, scope, filter_ptr, own_ignored, own_mask, calls, server = shared
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    sock.close()
    # what the server held as it forked (a request's fds: a stub forked in place of a stale
    # one) is no business of this stub's sandbox
    _close_all_but((ctl.fileno(), cmd.fileno(), child, scope), calls)
    base = _launch.Prepared(candidates=(), argv=(), envp={}, cwd=None, rlimits=(), child_ruleset=child,
                            scope_ruleset=scope, filter_ptr=filter_ptr, filter_flags=0, stdio=(-1, -1, -1),
                            own_group=True, foreground_tty=-1, umask=0o022, reset_signals=())
    where = ["stub"]
    failed: Optional[Tuple[str, int, str]] = None
    pid = -1
    try:
        _launch.confine_stub(base, calls, server, where)
        where[0] = "fork"
        pid = calls.fork()  # libc's: none of Python's at-fork work (_syscalls.bound_fork)
        _launch._check(pid)
        if pid == 0:
            ctl.close()
            _command(cmd, base, own_ignored, own_mask, calls, sample)
    except BaseException as exc:  # noqa: BLE001 - reported below, once there is a pipe for it
        failed = (where[0], getattr(exc, "errno", 0) or errno.EIO, str(exc))
    cmd.close()
    try:
        data, fds = _recv_fds(ctl, 64, 4)
    except BaseException:  # noqa: BLE001 - the server is gone: so is this stub
        _launch._doom(base)
    if not data or len(fds) < 3:
        _launch._doom(base)
    ctl.close()
    err_w, ready_w, status_w = fds[:3]
    if failed is not None:
        _launch._report(err_w, failed[0], failed[1], failed[2])
        os._exit(125)
    os.close(err_w)
    os.close(ready_w)
    _launch._reap(base, pid, status_w)


def _command(cmd: socket.socket, base: "_launch.Prepared", own_ignored: Tuple[int, ...], own_mask: int,
             calls: "_launch.ChildCalls", sample: bytes = b"") -> None:
    """The command forked ahead by its stub: wait for the request, take its fds as the
    caller's (cwd, stdio), then set up, confine and exec exactly as directly launched
    (_launch.run_command).  While no request has come, it rehearses the last one (_rehearse)."""
    if sample and not select.select([cmd], [], [], 0)[0]:
        _rehearse(sample, base, own_ignored)
    try:
        data, fds = _recv_fds(cmd, MAX_MESSAGE, 16)
    except BaseException:  # noqa: BLE001 - the server is gone: so is this command
        os._exit(0)
    if not data or len(fds) < 5:
        os._exit(0)
    cmd.close()
    request = marshal.loads(data)
    stdio, ignored = request[8], request[11]   # request_for's
    err_w, ready_w, go_r, status_w, cwd_fd = fds[:5]
    try:
        os.close(status_w)   # the stub's
        # the caller's ignored signals at its run, not the server's at its start (an ignored
        # disposition survives execve): where they differ, as the caller's
        differ = ignored ^ own_mask
        valid = signal.valid_signals() if differ else ()   # usually none differ
        while differ:
            sig = (differ & -differ).bit_length()
            differ &= differ - 1
            if sig in valid and sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_IGN if ignored >> (sig - 1) & 1 else signal.SIG_DFL)
        os.fchdir(cwd_fd)
        for target, index in enumerate(stdio):  # the command's 0, 1, 2 (the caller's, or the run's pipes)
            if index >= 0:
                os.dup2(fds[index], target)
            else:
                os.close(target)
    except BaseException as exc:  # noqa: BLE001 - report, never unwind into the server's loop
        _launch._report(err_w, "fork server", getattr(exc, "errno", 0) or errno.EIO, str(exc))
        os._exit(125)
    prep = _prepared(base, request, own_ignored)
    _launch.run_command(prep, _launch.Pipes(-1, err_w, -1, ready_w, go_r, -1, -1, -1), calls)


def _prepared(base: "_launch.Prepared", request: Tuple[Any, ...], own_ignored: Tuple[int, ...]) -> "_launch.Prepared":
    """The command's launch plan: the base's, with what the request says (request_for)."""
    candidates, argv, envp, cwd, rlimits, flags, umask, reset, _, personality, affinity, _ = request
    return base._replace(
        candidates=tuple(candidates), argv=tuple(argv), envp=envp, cwd=cwd, rlimits=tuple(rlimits),
        filter_flags=flags, umask=umask, reset_signals=tuple(sorted(set(reset) | set(own_ignored))),
        personality=personality, affinity=tuple(affinity) if affinity is not None else None)


def _rehearse(sample: bytes, base: "_launch.Prepared", own_ignored: Tuple[int, ...]) -> None:
    """Go through what the command does with a request before it execs, on the last one
    and without acting on it, while none has come: a command forked from the server
    shares its pages, and the first write to each (a reference count, an allocation) is a
    copy-on-write fault, ~3 us here; ~100 of them are taken now instead of between the
    request and the command's start.  It decodes the request, builds the plan and touches
    the calls run_command makes, changing nothing (the last run's data was in this
    process already: forked from the server, which received it).  Best effort."""
    try:
        prep = _prepared(base, marshal.loads(sample), own_ignored)
        for sig in prep.reset_signals:
            signal.getsignal(sig)
        signal.pthread_sigmask(signal.SIG_BLOCK, ())
        _launch.Pipes(-1, -1, -1, -1, -1, -1, -1, -1)
        _launch.READY.pack(os.getpid(), -1, 0)
    except Exception:  # noqa: BLE001 - a rehearsal only: the request is read as ever
        pass


def request_for(prep: "_launch.Prepared", pipes: "_launch.Pipes", handoff: Handoff) -> Tuple[Tuple[Any, ...], List[int]]:
    """The launch request of a run and the fds it carries (they stay the caller's to close)."""
    fds = [pipes.err_w, pipes.ready_w, pipes.go_r, pipes.status_w, handoff.cwd]
    stdio = []
    for target, fd in enumerate(prep.stdio):
        fd = fd if fd >= 0 else handoff.stdio[target]
        if fd < 0:
            stdio.append(-1)
        else:
            stdio.append(len(fds))
            fds.append(fd)
    request = (list(prep.candidates), list(prep.argv), prep.envp, prep.cwd, list(prep.rlimits), prep.filter_flags,
               prep.umask, list(prep.reset_signals), stdio, prep.personality,
               list(prep.affinity) if prep.affinity is not None else None, handoff.ignored)
    return request, fds


# --- helpers ------------------------------------------------------------------------------

def _recv_fds(sock: socket.socket, size: int, most: int) -> Tuple[bytes, List[int]]:
    """One message and its fds, received close-on-exec (socket.recv_fds drops its flags
    argument, and another thread of the caller may fork meanwhile).  A large size is first
    cut to the message's own (a peek): a 1 MiB buffer cost 14 us more per message."""
    if size > _PEEK_ABOVE:
        size = max(1, min(size, sock.recv_into(bytearray(1), 1, socket.MSG_PEEK | socket.MSG_TRUNC)))
    data, ancillary, _, _ = sock.recvmsg(size, socket.CMSG_SPACE(most * 4), socket.MSG_CMSG_CLOEXEC)
    fds = array.array("i")
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
    return data, list(fds)


_PEEK_ABOVE = 1 << 16   # _recv_fds


def _close_all_but(keep: Tuple[int, ...], calls: "_launch.ChildCalls") -> None:
    """Close every fd from 3 up but those in keep (-1s ignored)."""
    low = 3
    for fd in sorted(fd for fd in set(keep) if fd >= low):
        if fd > low:
            calls.close_range(low, fd - 1, 0)
        low = fd + 1
    calls.close_range(low, calls.all_fds, 0)


def _kcmp_filtered(me: int) -> bool:
    """kcmp(2) refused by a seccomp filter (a container's), not by the ptrace check: it is
    refused on the caller's own process too, which that check lets through."""
    try:
        _syscalls.kcmp(me, me, KCMP_VM, 0, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return False


def _ignore(exc: BaseException) -> None:
    pass


def _close_quietly(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _reap_all(signum: int, frame: object) -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _reap(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    except (OSError, ChildProcessError):
        pass


def _readable(sock: socket.socket, timeout: float) -> bool:
    """Whether sock has something to read within timeout seconds.  A poll, not
    socket.settimeout: that is an ioctl (FIONBIO), which a signal can interrupt
    (tests/security/test_eintr.py); poll is retried on EINTR by Python."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    return bool(poller.poll(timeout * 1000))


def _exited(pidfd: int) -> bool:
    if pidfd < 0:
        return True
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    return bool(poller.poll(0))


def _source(name: str) -> str:
    import sys
    module = sys.modules[__name__.rpartition(".")[0] + "." + name]
    with open(module.__file__ or "", encoding="utf-8") as f:
        return f.read()


def _interpreters() -> List[str]:
    """This interpreter, then the system's (the supervisor's domain may not let it run ours)."""
    import sys
    out: List[str] = []
    for path in (sys.executable, "/usr/bin/python3"):
        if path and path not in out and os.access(path, os.X_OK):
            out.append(path)
    return out


def _dup_or_closed(fd: int) -> int:
    try:
        return os.dup(fd)  # close-on-exec
    except OSError:
        return -1
