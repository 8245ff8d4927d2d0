"""Decisions about other processes: membership, process count, signals (docs/design.md
"The command cannot reach the supervisor", "Resources").

The sandbox is the tree below the stub (see _launch): every process the
command starts stays in it, orphans included, because the stub is their
child subreaper.  A pid is a member when its ancestry reaches the stub.

- prlimit64, sched_set*, setpriority, ioprio_set aimed at another pid (the
  filter lets pid 0, "myself", through): allowed only on members.  Landlock
  does not cover them (it hooks ptrace access, not these).
- kill and friends when Landlock has no signal scope (ABI < 6): performed on
  behalf, through a pidfd taken after the membership check, on members only.
- fork, vfork and clone without CLONE_THREAD when --max-processes is set:
  EAGAIN once the sandbox holds that many processes.

Man pages: pidfd_open(2), pidfd_send_signal(2), proc(5) (/proc/PID/task/TID/children).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
import time
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # signal's C module: the same calls, without enum (README "Start-up")
from . import _threads  # threading's parts, without its import (README "Start-up")
from . import _syscalls
from ._syscalls import closed_on_error
from ._errors import os_error
from ._structs import PIDFD_NONBLOCK, PIDFD_THREAD, SIOCOUTQ
from ._notif import CONTINUE, Call, Context, Errno, Fd, Reply, Value, parent_of, proc_stat, tgid_of

PRIO_PROCESS = 0
IOPRIO_WHO_PROCESS = 1


class Members:
    """The sandbox's processes, as the tree below the stub."""

    def __init__(self, stub: int) -> None:
        self.stub = stub
        self.pending: Dict[int, float] = {}  # tid -> when its fork was let through
        self.started = 1   # the command, and every fork do_fork let through (trapped under -P only)

    def contains(self, pid: int) -> bool:
        """Whether pid (a process or thread id) belongs to the sandbox."""
        if pid <= 0 or pid == self.stub:
            return False
        for _ in range(4096):
            parent = parent_of(pid)
            if parent == self.stub:
                return True
            if parent <= 1:
                return False
            pid = parent
        return False

    def processes(self, strict: bool = False) -> List[int]:
        """Every process of the sandbox (walking /proc/PID/task/TID/children).

        strict: an error other than a process exiting meanwhile raises (OSError)
        instead of leaving that process's children out (see memory_used)."""
        out: List[int] = []
        todo = [self.stub]
        seen: Set[int] = set()
        while todo:
            pid = todo.pop()
            for child in _children(pid, strict):
                if child not in seen:
                    seen.add(child)
                    out.append(child)
                    todo.append(child)
        return out

    def settle(self, tid: int) -> None:
        """A thread that notifies again has finished any fork it was let through."""
        self.pending.pop(tid, None)


def settle(ctx: Context, call: Call) -> None:
    """Before every handler under --max-processes (_table.steps_for): the caller's fork,
    if do_fork let one through, is done (it counts among the processes now)."""
    if ctx.members.pending:
        ctx.members.settle(call.tid)


def _children(pid: int, strict: bool = False) -> List[int]:
    """Children of every thread of pid; strict: an error other than "gone" raises."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError as exc:
        if strict and not _gone(exc):
            raise
        return []
    out: List[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(x) for x in f.read().split())
        except OSError as exc:
            if strict and not _gone(exc):
                raise
            continue
    return out


def _gone(exc: OSError) -> bool:
    """An error that only says the process (or thread) has exited meanwhile."""
    return exc.errno in (errno.ENOENT, errno.ESRCH)


class MeasureError(Exception):
    """A limit could not be measured (--max-memory): the run must be stopped, never
    the amount counted as 0 (the reason is str(self))."""


# Filesystems whose files live in memory: a file of one of them held by an fd
# of the sandbox counts towards --max-memory (statfs(2) f_type names).
_MEMORY_FS = (b"tmpfs", b"ramfs", b"hugetlbfs")


def memory_devices() -> Set[int]:
    """st_dev of every memory filesystem mounted in our mount namespace (proc(5) mountinfo)."""
    devices: Set[int] = set()
    with open("/proc/self/mountinfo", "rb") as f:
        for line in f:
            fields = line.split()
            try:
                fstype = fields[fields.index(b"-") + 1]
                major, minor = fields[2].split(b":")
            except (ValueError, IndexError):
                continue
            if fstype in _MEMORY_FS:
                devices.add(os.makedev(int(major), int(minor)))
    return devices


def memory_used(members: "Members", memory_devs: Set[int], memory_dirs: Tuple[str, ...] = (),
                in_flight: "Optional[InFlight]" = None) -> int:
    """Bytes of memory the sandbox holds: the resident pages of every process
    (statm: anonymous, file and shared memory it has mapped) plus every memfd
    and file of a memory filesystem (tmpfs, /dev/shm) one of its fds holds,
    counted once per inode by the blocks it has allocated (memory_dirs: host
    directories whose files count too, a root's private /dev/shm), plus those
    it passed into sockets and holds by no fd and no mapping (in_flight).  A
    shared-memory file both mapped and held by an fd counts twice (at most),
    erring on the side of the limit.

    Raises:
        MeasureError: an error other than a member exiting meanwhile (EMFILE,
            ENOMEM, an unreadable /proc file of a live process).
    """
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    held: Set[Tuple[int, int]] = set()
    try:
        for pid in members.processes(strict=True):
            try:
                with open(f"/proc/{pid}/statm", "rb") as f:
                    fields = f.read().split()
                if int(fields[0]) == 0:  # no memory map: exiting, its fds closed or closing
                    continue
                total += int(fields[1]) * page
                total += _held_memory(pid, memory_devs, memory_dirs, held)
                total += _mapped_memory(pid, memory_devs, memory_dirs, held)
            except OSError as exc:
                if not (_gone(exc) or (exc.errno == errno.EACCES and _exited(pid))):
                    raise
        if in_flight is not None:
            total += in_flight.unheld(held)
    except OSError as exc:
        raise MeasureError(f"cannot measure memory: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise MeasureError(f"cannot measure memory: {exc}") from None
    return total


_TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int, task: Optional[int] = None) -> List[bytes]:
    """_notif.proc_stat of the process (of its thread `task`), state first; [] if gone."""
    try:
        return proc_stat(pid, task)
    except OSError:
        return []


def cpu_seconds(members: "Members") -> float:
    """CPU time the sandbox has used, in seconds (clock ticks of /proc/PID/stat): user and
    system time of every process (all its threads) and of the children they have reaped,
    plus the stub's reaped children (orphans end there, and the command itself)."""
    ticks = 0
    stub = _stat_fields(members.stub)
    if stub:
        ticks += int(stub[13]) + int(stub[14])  # cutime, cstime
    for pid in members.processes():
        fields = _stat_fields(pid)
        if fields:
            ticks += int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    return ticks / _TICK


def thread_states(members: "Members") -> Tuple[int, int, int]:
    """(runnable threads, threads, highest pid) of the sandbox: what /proc/loadavg counts."""
    running = threads = last = 0
    for pid in members.processes():
        last = max(last, pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            fields = _stat_fields(pid, int(tid))
            if fields:
                threads += 1
                running += fields[0] in (b"R", b"D")  # the kernel's load counts both
                last = max(last, int(tid))
    return running, threads, last


CPU_PERIOD = 0.05   # --cpu: seconds between two measures of the sandbox's CPU time
CPU_BURST = 0.1     # --cpu: the most CPU-seconds of credit an idle sandbox saves up, in periods of one core


class CpuThrottle:
    """--cpu PCT (README "CPU"): the sandbox's CPU time held to PCT percent of one core.

    Every CPU_PERIOD the supervisor adds what the sandbox may have used since (PCT % of
    the time gone) to a credit and takes away what it used (cpu_seconds); the credit is
    capped at CPU_BURST x PCT %, so an idle sandbox saves up little.  Below zero, every
    process of the sandbox is stopped (SIGSTOP through a pidfd, after the membership
    check) until the credit is back (debt / PCT % seconds), then continued (SIGCONT).
    Measures are in clock ticks (10 ms at USER_HZ 100): the error is a tick per
    measure, and it does not add up, the credit carries it over."""

    def __init__(self, members: "Members", percent: int) -> None:
        self.members = members
        self.rate = percent / 100.0
        self.cap = CPU_BURST * self.rate
        self.credit = 0.0
        self.used = cpu_seconds(members)
        self.when = time.monotonic()
        self.stopped = False

    def tick(self, now: float) -> float:
        """Measure, stop or continue the sandbox; when to tick again."""
        used = cpu_seconds(self.members)
        self.credit = min(self.cap, self.credit + self.rate * (now - self.when) - (used - self.used))
        self.used, self.when = used, now
        if self.credit < 0:
            self.signal(signal.SIGSTOP)  # processes forked since the last stop, too
            self.stopped = True
            return now + max(CPU_PERIOD / 5, -self.credit / self.rate)
        if self.stopped:
            self.signal(signal.SIGCONT)
            self.stopped = False
        return now + CPU_PERIOD

    def signal(self, sig: int) -> None:
        """Send sig to every process of the sandbox (checked through a pidfd held meanwhile)."""
        for pid in self.members.processes():
            pidfd = _pidfd(pid)
            if pidfd < 0:
                continue
            try:
                if self.members.contains(pid):
                    signal.pidfd_send_signal(pidfd, sig)
            except OSError:
                pass  # gone meanwhile
            finally:
                os.close(pidfd)


def _exited(pid: int) -> bool:
    """A process that has let go of its memory map since (the kernel refuses its /proc/PID/fd
    with EACCES once it is a zombie)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[0]) == 0
    except OSError as exc:
        if _gone(exc):
            return True
        raise


def _mapped_memory(pid: int, memory_devs: Set[int], memory_dirs: Tuple[str, ...],
                   seen: Set[Tuple[int, int]]) -> int:
    """Bytes of the memfds and memory-filesystem files pid maps shared whose fd it
    closed (so _held_memory did not see them), not in seen yet.  Their pages are
    counted by statm only once touched through the mapping, and following
    /proc/PID/map_files needs a capability, so each counts the extent of its
    mappings (offset + length, the most of the file they can reach), erring on
    the side of the limit.  /proc/PID/maps is read line by line (bounded)."""
    extent: Dict[Tuple[int, int], int] = {}
    with open(f"/proc/{pid}/maps", "rb") as f:
        for line in f:
            fields = line.split(None, 5)
            if len(fields) < 6 or fields[1][3:4] != b"s" or fields[4] == b"0":
                continue  # private, or not backed by a file
            path = fields[5].rstrip(b"\n")
            major, _, minor = fields[3].partition(b":")
            dev = os.makedev(int(major, 16), int(minor, 16))
            if not (path.startswith(b"/memfd:") or dev in memory_devs
                    or any(path.startswith(os.fsencode(d) + b"/") for d in memory_dirs)):
                continue
            start, _, end = fields[0].partition(b"-")
            key = (dev, int(fields[4]))
            reach = int(fields[2], 16) + int(end, 16) - int(start, 16)
            extent[key] = max(extent.get(key, 0), reach)
    total = 0
    for key, reach in extent.items():
        if key not in seen:
            seen.add(key)
            total += reach
    return total


def _held_memory(pid: int, memory_devs: Set[int], memory_dirs: Tuple[str, ...], seen: Set[Tuple[int, int]]) -> int:
    """Blocks of the memfds and memory-filesystem files pid's fds hold, not in seen yet."""
    total = 0
    for name in os.listdir(f"/proc/{pid}/fd"):
        link = f"/proc/{pid}/fd/{name}"
        try:
            target = os.readlink(link)
            if not target.startswith("/"):  # pipes, sockets, anon inodes
                continue
            st = os.stat(link)
        except OSError as exc:
            if _gone(exc) or exc.errno == errno.EBADF:  # closed meanwhile
                continue
            raise
        if not _is_memory_file(target, st, memory_devs, memory_dirs):
            continue
        key = (st.st_dev, st.st_ino)
        if key not in seen:
            seen.add(key)
            total += st.st_blocks * 512
    return total


def _is_memory_file(target: str, st: os.stat_result, memory_devs: Set[int], memory_dirs: Tuple[str, ...]) -> bool:
    """Whether an fd whose /proc link reads `target` holds a memfd or a regular file of a memory
    filesystem (or of one of memory_dirs)."""
    return stat.S_ISREG(st.st_mode) and (target.startswith("/memfd:") or st.st_dev in memory_devs
                                         or any(target.startswith(d + "/") for d in memory_dirs))


# --- memory in sockets' queues (--max-memory) --------------------------------------------

# statfs(2) f_type of the filesystems of _MEMORY_FS (include/uapi/linux/magic.h)
_MEMORY_MAGIC = (0x01021994, 0x858458F6, 0x958458F6)  # TMPFS_MAGIC, RAMFS_MAGIC, HUGETLBFS_MAGIC
IN_FLIGHT_FILES = 256  # memory files the supervisor holds for the sandbox's socket queues
IN_FLIGHT_SOCKETS = 64  # sockets they were sent on


class InFlight:
    """Memory files the sandbox passed in SCM_RIGHTS messages (--max-memory).

    A memfd (or tmpfs, /dev/shm, hugetlbfs file) sent into a socket and then
    closed is held by the message alone: by no fd and no mapping of any
    process, where memory_used looks.  Every send with SCM_RIGHTS is made on
    behalf (_netops), so before it the supervisor takes its own reference to
    each memory file passed (one per inode, however often it is sent) and to
    the socket it is sent on; memory_used counts by its blocks every such file
    that no fd and no mapping of the sandbox holds (so never twice).

    A file is let go once every socket it was sent on has nothing queued any
    more (SIOCOUTQ 0: each message that socket sent was received, or freed
    with the queue that held it) and no send on it is under way, checked at
    each measurement and before each send on that socket.  Until then
    the file is counted even if no message holds it any more (the supervisor's
    own reference keeps it in memory).  The reference to a socket keeps its
    own receive queue alive after the sandbox closed it: memory files in it
    that the sandbox sent stay counted until the run ends, when everything is
    closed.  Bounded: at most IN_FLIGHT_FILES files and IN_FLIGHT_SOCKETS
    sockets (their fds and nothing else); a send that would pass more is
    refused with ETOOMANYREFS, the kernel's errno for too many fds in flight.
    """

    def __init__(self, memory_dirs: Tuple[str, ...] = (), files_max: int = IN_FLIGHT_FILES,
                 sockets_max: int = IN_FLIGHT_SOCKETS) -> None:
        self._dirs = memory_dirs
        self._devs: Optional[Set[int]] = None
        self._files_max, self._sockets_max = files_max, sockets_max
        self._lock = _threads.Lock()
        self._files: Dict[Tuple[int, int], Tuple[int, Set[int]]] = {}  # (dev, ino) -> (our fd, sockets)
        self._sockets: Dict[int, List[int]] = {}  # socket inode -> [our fd, sends under way]
        self._closed = False

    def sending(self, sock: int, fds: List[int]) -> Optional[int]:
        """Before a send on our socket fd `sock` passing our fds `fds`: hold the memory
        files among them.  Returns a key for sent() (None: no memory file passed).

        Raises:
            OSError: ETOOMANYREFS when the table is full of files still in flight.
        """
        memory = [(key, fd) for fd in fds for key in (self._memory_key(fd),) if key is not None]
        if not memory:
            return None
        sock_key = os.fstat(sock).st_ino
        with self._lock:
            if self._closed:
                raise os_error(errno.ESRCH, "the run is over")
            entry = self._sockets.get(sock_key)
            if entry is not None and all(sock_key in self._files.get(key, (0, ()))[1] for key, _ in memory):
                entry[1] += 1  # the same files again on the same socket (a loop): nothing new to hold
                return sock_key
            if entry is not None:  # what it sent before may be out of its queue: let go first
                self._release((sock_key,))
            new = {key for key, _ in memory if key not in self._files}
            if not self._room(len(new), sock_key):
                self._release()
                new = {key for key, _ in memory if key not in self._files}
                if not self._room(len(new), sock_key):
                    raise os_error(errno.ETOOMANYREFS, "too many memory files in flight under --max-memory")
            sock_ref = -1  # our new references: all taken, or none
            file_refs: Dict[Tuple[int, int], int] = {}
            try:
                if sock_key not in self._sockets:
                    sock_ref = os.dup(sock)
                for key, fd in memory:
                    if key in new and key not in file_refs:
                        file_refs[key] = os.dup(fd)
            except BaseException:
                for fd in [sock_ref, *file_refs.values()]:
                    if fd >= 0:
                        os.close(fd)
                raise
            self._sockets.setdefault(sock_key, [sock_ref, 0])[1] += 1
            for key, _ in memory:
                self._files.setdefault(key, (file_refs.get(key, -1), set()))[1].add(sock_key)
        return sock_key

    def sent(self, sock_key: Optional[int]) -> None:
        """The send sending() was called for is over (done or failed)."""
        if sock_key is None:
            return
        with self._lock:
            entry = self._sockets.get(sock_key)
            if entry is not None:
                entry[1] -= 1

    def unheld(self, held: Set[Tuple[int, int]]) -> int:
        """Blocks of the files still in flight that are not in `held` (the inodes the
        sandbox's fds and mappings hold, counted already)."""
        with self._lock:
            self._release()
            return sum(os.fstat(fd).st_blocks * 512 for key, (fd, _) in self._files.items() if key not in held)

    def __len__(self) -> int:
        return len(self._files)

    def close(self) -> None:
        """The run is over: let go of everything."""
        with self._lock:
            self._closed = True
            for fd, _ in self._files.values():
                os.close(fd)
            for fd, _ in self._sockets.values():
                os.close(fd)
            self._files.clear()
            self._sockets.clear()

    def _room(self, files: int, sock_key: int) -> bool:
        return (len(self._files) + files <= self._files_max
                and (sock_key in self._sockets or len(self._sockets) < self._sockets_max))

    def _release(self, keys: Optional[Tuple[int, ...]] = None) -> None:
        """Let go of the sockets (all, or those of `keys`) with nothing queued and no send
        under way, and of the files sent on no other socket (under the lock)."""
        empty = [key for key in (self._sockets if keys is None else keys)
                 for fd, sending in (self._sockets[key],) if not sending and _queued(fd) == 0]
        for key in empty:
            os.close(self._sockets.pop(key)[0])
        if not empty:
            return
        gone = set(empty)
        for file_key, (file_fd, sockets) in list(self._files.items()):
            sockets -= gone
            if not sockets:
                del self._files[file_key]
                os.close(file_fd)

    def _memory_key(self, fd: int) -> Optional[Tuple[int, int]]:
        """(st_dev, st_ino) of our fd if it holds a memory file, else None.  By the
        filesystem's f_type (statfs(2)), which also names memfds (tmpfs, or hugetlbfs
        with MFD_HUGETLB) without a readlink; the name only for memory_dirs."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        key = (st.st_dev, st.st_ino)
        if int.from_bytes(_syscalls.statfs(fd)[:8], sys.byteorder) in _MEMORY_MAGIC:
            return key
        if not self._dirs:
            return None
        if self._devs is None:
            self._devs = memory_devices()
        target = os.readlink(f"/proc/self/fd/{fd}")
        return key if _is_memory_file(target, st, self._devs, self._dirs) else None


def _queued(sock: int) -> int:
    """Bytes the socket sent that are still queued (SIOCOUTQ; for a unix socket, the
    messages not yet received, with the fds they carry)."""
    buf = bytearray(4)
    fcntl.ioctl(sock, SIOCOUTQ, buf)
    return int.from_bytes(buf, sys.byteorder, signed=True)


def do_fork(ctx: Context, call: Call) -> Reply:
    """fork/vfork/clone of a new process under --max-processes."""
    members: Members = ctx.members
    now = time.monotonic()
    for tid, since in list(members.pending.items()):
        if now - since > 0.5:
            del members.pending[tid]
    gate = getattr(ctx, "policy_gate", None)  # lowered by a policy_fn (README "Policy callback")
    limit = gate.max_processes if gate is not None else ctx.policy.max_processes
    if limit is None:
        return CONTINUE
    if len(members.processes()) + len(members.pending) >= limit:
        call.why = f"--max-processes {limit}"
        return Errno(errno.EAGAIN)
    members.pending[call.tid] = now
    members.started += 1
    # CONTINUE: the decision used register values (the clone flags) and the
    # supervisor's own count only; nothing the kernel re-reads can change it.
    return CONTINUE


def do_pid_target(ctx: Context, call: Call) -> Reply:
    """prlimit64 / sched_set* (args[0] = pid): only on the sandbox's own processes."""
    return _on_member(ctx, call, call.pid)


def do_which_who(ctx: Context, call: Call) -> Reply:
    """setpriority / ioprio_set (which, who): one process of the sandbox, or EPERM."""
    process = IOPRIO_WHO_PROCESS if ctx.names[call.nr] == "ioprio_set" else PRIO_PROCESS
    if call.which != process:
        return Errno(errno.EPERM)  # a process group or a user reaches beyond the sandbox
    return _on_member(ctx, call, call.pid)


def _on_member(ctx: Context, call: Call, pid: int) -> Reply:
    if pid == 0 or pid == call.tid:
        return _continue_self()
    pidfd = _pidfd(pid)
    try:
        if not ctx.members.contains(pid):
            return Errno(errno.ESRCH if not _alive(pid) else errno.EPERM)
        # CONTINUE: the target is a register value, checked to be a process of
        # the sandbox while we hold a pidfd on it; the kernel also applies its
        # own permission checks.
        return CONTINUE
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _continue_self() -> Reply:
    # CONTINUE: the call acts on the caller itself (pid 0 or its own tid), a
    # register value the kernel reads again unchanged.
    return CONTINUE


def _pidfd(pid: int) -> int:
    try:
        return os.pidfd_open(pid)
    except OSError:
        return -1


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


# --- signals without Landlock scopes ---------------------------------------------------

def do_kill(ctx: Context, call: Call) -> Reply:
    pid, sig = call.pid, call.sig
    if pid > 0:
        return _signal_one(ctx, pid, sig, thread=False)
    sender = tgid_of(call.tid)
    if pid == 0:
        group = os.getpgid(sender)
        targets = [p for p in ctx.members.processes() if _pgid(p) == group]
    elif pid == -1:
        targets = [p for p in ctx.members.processes() if p != sender]
    else:
        targets = [p for p in ctx.members.processes() if _pgid(p) == -pid]
    if not targets:
        return Errno(errno.ESRCH)
    for target in targets:
        _send(target, sig, thread=False)
    return Value(0)


def do_tkill(ctx: Context, call: Call) -> Reply:
    return _signal_one(ctx, call.pid, call.sig, thread=True)


def do_tgkill(ctx: Context, call: Call) -> Reply:
    tgid, tid = call.pid, call.pid2
    if tgid <= 0 or tid <= 0:
        return Errno(errno.EINVAL)
    try:
        if tgid_of(tid) != tgid:
            return Errno(errno.ESRCH)
    except OSError:
        return Errno(errno.ESRCH)
    return _signal_one(ctx, tid, call.sig, thread=True)


def do_sigqueue(ctx: Context, call: Call) -> Reply:
    """rt_sigqueueinfo / rt_tgsigqueueinfo: only to the sandbox's own processes."""
    if call.pid <= 0 or not ctx.members.contains(call.pid):
        return Errno(errno.EPERM)
    # CONTINUE: the target pid is a register value checked above; the siginfo
    # the kernel re-reads is data, and the kernel refuses forged si_code.
    return CONTINUE


def do_pidfd_send_signal(ctx: Context, call: Call) -> Reply:
    pidfd = ctx.tracees.getfd(call.tid, call.fd)
    try:
        pid = _pidfd_pid(pidfd)
        if pid <= 0 or not ctx.members.contains(pid):
            return Errno(errno.EPERM)
        if call.ptr:
            return Errno(errno.EPERM)  # a forged siginfo on behalf is not supported
        signal.pidfd_send_signal(pidfd, call.sig, None, call.flags)
    finally:
        os.close(pidfd)
    return Value(0)


def _signal_one(ctx: Context, pid: int, sig: int, thread: bool) -> Reply:
    if not ctx.members.contains(pid):
        return Errno(errno.ESRCH if not _alive(pid) else errno.EPERM)
    _send(pid, sig, thread)
    return Value(0)


def _send(pid: int, sig: int, thread: bool) -> None:
    pidfd = os.pidfd_open(pid, os.O_EXCL if thread else 0)
    try:
        signal.pidfd_send_signal(pidfd, sig)
    finally:
        os.close(pidfd)




def do_pidfd_open(ctx: Context, call: Call) -> Reply:
    """pidfd_open(2) of the sandbox's own processes only (EPERM for any other).

    The pidfd is opened first, then the process it pins is checked: a pid
    that dies and is reused between the two is seen as gone (its pidfd then
    names a dead process) rather than checked under one identity and opened
    under another.  The caller gets our pidfd (pidfds are close-on-exec)."""
    if call.flags & ~(PIDFD_NONBLOCK | PIDFD_THREAD):
        return Errno(errno.EINVAL)
    if call.pid <= 0:
        return Errno(errno.EINVAL)
    pidfd = os.pidfd_open(call.pid, call.flags)
    with closed_on_error(pidfd):
        if _pidfd_pid(pidfd) != call.pid:
            return Errno(errno.ESRCH)  # already reaped: the pid may be another's now
        member = ctx.members.contains(call.pid)
        if _pidfd_pid(pidfd) != call.pid:
            return Errno(errno.ESRCH)  # it died while we looked: the walk may have seen its successor
        if not member:
            return Errno(errno.EPERM)
    return Fd(pidfd, True)


def _pidfd_pid(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}", "rb") as f:
        for line in f:
            if line.startswith(b"Pid:"):
                return int(line.split()[1])
    return -1


def _pgid(pid: int) -> int:
    try:
        return os.getpgid(pid)
    except OSError:
        return -2
