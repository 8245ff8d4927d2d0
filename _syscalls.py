"""Raw syscall wrappers, kernel feature probes and the supervisor's hot path (HotCalls,
sendmsg): the ctypes side of sandlock, with _structs.  The syscall numbers they use
are _systable's.

Wrappers are named after the syscall, keep its argument order, raise
``OSError(errno, strerror)`` read only after a failed return, and retry EINTR
in one place (``_call``).  Importing this module makes no syscall: libc is
loaded and every probe runs on first use, then cached.

Man pages: syscall(2), seccomp(2), seccomp_unotify(2), landlock(7),
landlock_create_ruleset(2), openat2(2), pidfd_open(2), pidfd_getfd(2),
process_vm_readv(2), prctl(2), capget(2), close_range(2), statx(2).
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _structs as S
from ._errors import os_error
from ._structs import STAT_SIZE, STATX_SIZE  # noqa: F401  (_syscalls.STATX_SIZE for its users)
from ._systable import any_arch_names, cached, machine, names, nr, table  # noqa: F401  (used here, and by callers as _syscalls.X)

# (st_dev, st_ino, st_mode) inside the raw struct stat of each architecture.
_STAT_IDS = {"x86_64": struct.Struct("=QQ8xI"), "aarch64": struct.Struct("=QQI")}


class Stat(NamedTuple):
    """The parts of a raw struct stat sandlock decides on, and the raw bytes."""
    dev: int
    ino: int
    mode: int
    raw: bytes


# --- owned fds ---------------------------------------------------------------------

class closed_on_error:
    """`with closed_on_error(fd):` closes fd if the block raises and leaves it open
    otherwise, for the caller to hand on.  `fds` is an fd or a list of them the
    block may still fill (negative entries are skipped).  A close-and-reraise
    written by hand is a leak waiting for the next edit; the few left are on the
    path of every open or stat, where this costs ~0.2 us (each says so)."""
    __slots__ = ("fds",)

    def __init__(self, fds: Union[int, List[int]]) -> None:
        self.fds = fds

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        if kind is not None:
            for fd in [self.fds] if isinstance(self.fds, int) else self.fds:
                if fd >= 0:
                    os.close(fd)


class closed_after(closed_on_error):
    """`with closed_after(fd):` closes fd (or each of a list) when the block ends,
    however it ends."""
    __slots__ = ()

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        for fd in [self.fds] if isinstance(self.fds, int) else self.fds:
            if fd >= 0:
                os.close(fd)


# --- raw calls -----------------------------------------------------------------

_UNWINDER: List[object] = []


def load_unwinder() -> None:
    """Load libgcc_s now, while the supervisor may still read the system's libraries.

    glibc loads it on the first thread exit that unwinds (pthread_exit, which
    CPython calls for a daemon thread that wakes up during interpreter
    shutdown, e.g. a worker released at the end of the run); once the thread
    is confined by Landlock that dlopen fails and glibc aborts the process
    ("libgcc_s.so.1 must be installed for pthread_exit to work").  Loaded
    once and kept, the later dlopen finds it in memory.  Absent (a static
    build, musl's own unwinding): nothing to preload.
    """
    if not _UNWINDER:
        try:
            _UNWINDER.append(ctypes.CDLL("libgcc_s.so.1"))
        except OSError:
            _UNWINDER.append(None)


@cached
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    return libc


_NUMBERS: Dict[str, Any] = {}  # name -> its syscall number as a C long, looked up once


def _call(name: str, *args: object) -> int:
    """syscall(2) by name; returns the result, raises OSError, retries EINTR.  bytes
    are passed as they are (the kernel copies them in).  The number is looked up once
    per name (a utimensat on behalf, a tar's one per file: 7.3 -> 4.6 us here)."""
    number = _NUMBERS.get(name)
    if number is None:
        number = _NUMBERS[name] = ctypes.c_long(nr(name))
    fn = _libc().syscall
    # syscall(3) is variadic: ctypes would pass a Python int as a 32-bit int
    # and leave the upper half of the register undefined.
    wide = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    while True:
        ret = fn(number, *wide)
        if ret != -1:
            return ret
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise os_error(err)


def bound(name: str) -> Callable[..., int]:
    """A prepared raw caller for syscall `name` returning -errno on failure.

    For code that runs between fork and exec: it does no lookup, raises
    nothing and touches no lock, so it can be called in a forked child of a
    multi-threaded program.  Arguments must already be ctypes-compatible.
    """
    number = ctypes.c_long(nr(name))
    fn = _libc().syscall
    get_errno = ctypes.get_errno
    long = ctypes.c_long

    def call(*args: object) -> int:
        ret = fn(number, *[long(a) if a.__class__ is int else a for a in args])
        return -get_errno() if ret == -1 else ret

    return call


@cached
def bound_fork() -> Callable[[], int]:
    """libc's fork(), prepared once per process; returns the pid (0 in the child) or -errno.

    For the stub, which forks its command (_launch.start_command, the fork
    server's stub): a process of one thread, forked itself by os.fork, that
    holds no lock but the GIL.  os.fork would run Python's at-fork work in
    the command: threading's handler alone took ~100 copy-on-write faults,
    ~0.3 ms here, and handlers a caller of the API registered would run in
    the sandbox's process.  This is libc's fork, called with the GIL held
    (a PyDLL function), as os.fork calls it: the kernel's fork and glibc's
    own at-fork work, nothing of Python's, which a process of one thread
    that execs or exits soon needs none of (README "Start-up").
    """
    fn = ctypes.PyDLL(None, use_errno=True).fork
    fn.restype = ctypes.c_int
    fn.argtypes = ()
    get_errno = ctypes.get_errno

    def call() -> int:
        ret = fn()
        return -get_errno() if ret == -1 else ret

    return call


def rlimit_buffer() -> object:
    """A struct rlimit64 ({soft, hard}, two u64) for prlimit64(2), indexable."""
    return (ctypes.c_uint64 * 2)()


def c_ulong(value: int) -> ctypes.c_ulong:
    return ctypes.c_ulong(value)


def c_uint(value: int) -> ctypes.c_uint:
    return ctypes.c_uint(value)


# seccomp(2) -------------------------------------------------------------------

def seccomp_filter_pointer(program: bytes) -> Tuple[object, object]:
    """(pointer to a sock_fprog, keep-alive) for seccomp(SECCOMP_SET_MODE_FILTER, ...).

    The caller keeps the second item alive as long as the pointer is used.
    """
    count = len(program) // ctypes.sizeof(S.sock_filter)
    insns = (S.sock_filter * count).from_buffer_copy(program)
    prog = S.sock_fprog(count, ctypes.cast(insns, ctypes.POINTER(S.sock_filter)))
    return ctypes.byref(prog), (prog, insns)


def seccomp(operation: int, flags: int, args: object) -> int:
    """seccomp(2)."""
    return _call("seccomp", ctypes.c_uint(operation), ctypes.c_uint(flags), args)


def seccomp_notif_sizes() -> S.seccomp_notif_sizes:
    sizes = S.seccomp_notif_sizes()
    seccomp(S.SECCOMP_GET_NOTIF_SIZES, 0, ctypes.byref(sizes))
    return sizes


# Landlock ----------------------------------------------------------------------

def landlock_create_ruleset(attr: Optional[S.landlock_ruleset_attr], size: int, flags: int) -> int:
    """landlock_create_ruleset(2)."""
    ptr = ctypes.byref(attr) if attr is not None else None
    return _call("landlock_create_ruleset", ptr, ctypes.c_size_t(size), ctypes.c_uint32(flags))


def landlock_add_rule(ruleset_fd: int, rule_type: int, attr: object, flags: int = 0) -> None:
    """landlock_add_rule(2)."""
    _call("landlock_add_rule", ruleset_fd, ctypes.c_int(rule_type), ctypes.byref(attr),  # type: ignore[arg-type]
          ctypes.c_uint32(flags))


def landlock_restrict_self(ruleset_fd: int, flags: int = 0) -> None:
    """landlock_restrict_self(2): this thread only (no TSYNC).

    The C library's unwinder is loaded first: a thread that ends through
    pthread_exit (CPython's daemon threads at exit do) makes glibc dlopen
    libgcc_s.so.1 then, which a confined thread may not be able to read
    (`libgcc_s.so.1 must be installed for pthread_exit to work`, abort).
    """
    load_unwinder()
    _call("landlock_restrict_self", ruleset_fd, ctypes.c_uint32(flags))


# files -------------------------------------------------------------------------

def openat2(dirfd: int, path: bytes, flags: int, mode: int = 0, resolve: int = 0) -> int:
    """openat2(2); returns the new fd."""
    how = S.open_how(flags, mode, resolve)
    return _call("openat2", dirfd, ctypes.c_char_p(path), ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how)))


def close_range(first: int, last: int, flags: int = 0) -> None:
    """close_range(2)."""
    _call("close_range", ctypes.c_uint(first), ctypes.c_uint(last), ctypes.c_uint(flags))


def statx(dirfd: int, path: bytes, flags: int, mask: int) -> bytes:
    """statx(2) returning the raw struct statx."""
    buf = ctypes.create_string_buffer(STATX_SIZE)
    _call("statx", dirfd, ctypes.c_char_p(path), flags, ctypes.c_uint(mask), buf)
    return buf.raw


def utimensat(dirfd: int, path: bytes, times: Optional[bytes], flags: int) -> None:
    """utimensat(2) with times as two raw struct timespec (None: now)."""
    _call("utimensat", dirfd, path, times, flags)


_CONNECT: List[Any] = []   # (syscall, its number), prepared on the first connect


def connect(fd: int, address: bytes) -> None:
    """connect(2) with a raw struct sockaddr (the bytes themselves are passed: the kernel
    copies them in); EINTR retried.  Prepared once: _call's lookups and conversions cost
    a connect on behalf 5-8 us (bench/bench_net.py)."""
    if not _CONNECT:
        _CONNECT[:] = [_libc().syscall, ctypes.c_long(nr("connect"))]
    fn, number = _CONNECT
    size = ctypes.c_long(len(address))
    while fn(number, ctypes.c_long(fd), address, size) == -1:
        err = ctypes.get_errno()
        if err != errno.EINTR:
            raise os_error(err)


def statfs(fd: int) -> bytes:
    """fstatfs(2) returning the raw struct statfs (120 bytes on both arches)."""
    buf = ctypes.create_string_buffer(120)
    _call("fstatfs", fd, buf)
    return buf.raw


# processes -----------------------------------------------------------------------

def pidfd_getfd(pidfd: int, targetfd: int) -> int:
    """pidfd_getfd(2): a duplicate of another process's fd (close-on-exec)."""
    return _call("pidfd_getfd", pidfd, targetfd, 0)


def getdents64(fd: int, size: int = 1 << 16) -> bytes:
    """getdents64(2): the next linux_dirent64 records of the directory fd (b"" at its end)."""
    buf = ctypes.create_string_buffer(size)
    got = _call("getdents64", fd, buf, size)
    return buf.raw[:got]


def kcmp(pid1: int, pid2: int, kind: int, idx1: int, idx2: int) -> int:
    """kcmp(2): 0 when the two kernel objects are the same one."""
    return _call("kcmp", pid1, pid2, kind, idx1, idx2)


def inotify_init1(flags: int) -> int:
    """inotify_init1(2)."""
    return _call("inotify_init1", flags)


def unshare(flags: int) -> None:
    """unshare(2) (here only CLONE_FS: a thread's own cwd and umask)."""
    _call("unshare", flags)


class _iovec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


def process_vm_writev(pid: int, address: int, data: bytes) -> int:
    """process_vm_writev(2) of one range; returns the bytes written."""
    buf = ctypes.create_string_buffer(data, len(data))
    local = _iovec(ctypes.addressof(buf), len(data))
    remote = _iovec(address, len(data))
    return _call("process_vm_writev", pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)


def sockname(fd: int, which: str) -> bytes:
    """getsockname(2) or getpeername(2): the raw struct sockaddr."""
    buf = ctypes.create_string_buffer(128)
    size = ctypes.c_uint(128)
    _call(which, fd, buf, ctypes.byref(size))
    return buf.raw[:min(size.value, 128)]


def bind(fd: int, address: bytes) -> int:
    """bind(2) with a raw sockaddr."""
    buf = ctypes.create_string_buffer(address, len(address))
    return _call("bind", fd, buf, ctypes.c_uint(len(address)))


def prctl(option: int, arg2: int = 0, arg3: int = 0, arg4: int = 0, arg5: int = 0) -> int:
    """prctl(2)."""
    return _call("prctl", option, ctypes.c_ulong(arg2), ctypes.c_ulong(arg3), ctypes.c_ulong(arg4), ctypes.c_ulong(arg5))


def uname() -> bytes:
    """uname(2): the struct new_utsname the kernel writes, as its bytes."""
    buf = S.new_utsname()
    _call("uname", ctypes.byref(buf))
    return bytes(buf)


def adjtimex_read() -> Tuple[int, bytes]:
    """adjtimex(2) with modes 0 (reads only): the clock state and the struct timex."""
    buf = ctypes.create_string_buffer(S.TIMEX_SIZE)
    state = _call("adjtimex", buf)
    return state, buf.raw


def sysinfo() -> bytes:
    """sysinfo(2): the struct sysinfo the kernel writes, as its bytes."""
    buf = S.sysinfo()
    _call("sysinfo", ctypes.byref(buf))
    return bytes(buf)


def capget() -> Tuple[int, int, int]:
    """capget(2) of this thread: (effective, permitted, inheritable) as 64-bit masks."""
    header = S.cap_user_header(S._LINUX_CAPABILITY_VERSION_3, 0)
    data = (S.cap_user_data * S._LINUX_CAPABILITY_U32S_3)()
    _call("capget", ctypes.byref(header), data)
    join = lambda field: getattr(data[0], field) | (getattr(data[1], field) << 32)  # noqa: E731
    return join("effective"), join("permitted"), join("inheritable")


def capset_empty() -> None:
    """capset(2) clearing effective, permitted and inheritable of this thread."""
    header = S.cap_user_header(S._LINUX_CAPABILITY_VERSION_3, 0)
    data = (S.cap_user_data * S._LINUX_CAPABILITY_U32S_3)()
    _call("capset", ctypes.byref(header), data)


# --- probes ----------------------------------------------------------------------

LANDLOCK_ABI_MAX = 7
_ABI_OVERRIDE_ENV = "SANDLOCK_TEST_LANDLOCK_ABI"


@cached
def kernel_landlock_abi() -> int:
    """The Landlock ABI version the kernel offers (0 when Landlock is off)."""
    try:
        return landlock_create_ruleset(None, 0, S.LANDLOCK_CREATE_RULESET_VERSION)
    except OSError as exc:
        if exc.errno in (errno.ENOSYS, errno.EOPNOTSUPP):
            return 0
        raise


def landlock_abi() -> int:
    """The Landlock ABI sandlock uses: the kernel's, capped at what sandlock knows.

    The test suite may lower it with SANDLOCK_TEST_LANDLOCK_ABI=N to exercise
    what sandlock does on older kernels; it can never raise it.
    """
    abi = min(kernel_landlock_abi(), LANDLOCK_ABI_MAX)
    override = os.environ.get(_ABI_OVERRIDE_ENV)
    if override:
        abi = min(abi, int(override))
    return abi


@cached
def kernel_version() -> Tuple[int, ...]:
    release = os.uname().release
    parts = []
    for piece in release.split("-")[0].split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


@cached
def has_user_notif() -> bool:
    """Whether seccomp knows SECCOMP_RET_USER_NOTIF (SECCOMP_GET_ACTION_AVAIL)."""
    action = ctypes.c_uint32(S.SECCOMP_RET_USER_NOTIF)
    try:
        seccomp(S.SECCOMP_GET_ACTION_AVAIL, 0, ctypes.byref(action))
        return True
    except OSError:
        return False


def _filter_flag_known(flag: int) -> bool:
    # With a NULL program, a known flag gets EFAULT (the program is copied
    # after the flags are checked); an unknown one gets EINVAL.
    try:
        seccomp(S.SECCOMP_SET_MODE_FILTER, flag, None)
    except OSError as exc:
        return exc.errno == errno.EFAULT
    return False


@cached
def has_wait_killable_recv() -> bool:
    """SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 6.0)."""
    return _filter_flag_known(S.SECCOMP_FILTER_FLAG_NEW_LISTENER | S.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)


def has_addfd() -> bool:
    """SECCOMP_IOCTL_NOTIF_ADDFD (Linux 5.9)."""
    return kernel_version() >= (5, 9)


def has_addfd_send() -> bool:
    """SECCOMP_ADDFD_FLAG_SEND (Linux 5.14)."""
    return kernel_version() >= (5, 14)


def has_sync_wake_up() -> bool:
    """SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP via SECCOMP_IOCTL_NOTIF_SET_FLAGS (Linux 6.6)."""
    return kernel_version() >= (6, 6)


@cached
def has_openat2() -> bool:
    try:
        os.close(openat2(-100, b"/", os.O_PATH | os.O_CLOEXEC, 0, S.RESOLVE_NO_MAGICLINKS))
        return True
    except OSError:
        return False


@cached
def has_pidfd() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (OSError, AttributeError):
        return False


@cached
def has_close_range() -> bool:
    try:
        close_range(2**31 - 2, 2**31 - 2)
        return True
    except OSError:
        return False


def legacy_tiocsti() -> Optional[int]:
    """dev.tty.legacy_tiocsti (Linux 6.2), or None if the kernel has no such knob."""
    try:
        with open("/proc/sys/dev/tty/legacy_tiocsti") as f:
            return int(f.read().strip())
    except OSError:
        return None


# --- the supervisor's hot path --------------------------------------------------------

class CpuHold:
    """Keep a trapped thread on this thread's CPU while it takes an fd (SECCOMP_IOCTL_NOTIF_ADDFD).

    SEND wakes the caller on the supervisor's CPU (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP), but
    ADDFD wakes it with a plain wake-up, and a caller woken more than a few microseconds
    after it trapped (a decision in Python takes 10-40) is put on an idle CPU by the
    scheduler: 0.9 migrations per open, each a wake-up across CPUs, both ways (README "How
    it works").  take() makes the thread's affinity this CPU alone, read first; give_back()
    sets what was read.  Nothing is held where the thread's affinity is one CPU already or
    leaves this one out (it never runs where it may not); a refusal (EPERM: another owner)
    turns it off.  Both are called by whichever notification thread sends the fd.
    """

    def __init__(self) -> None:
        self._cpu: Callable[[], int] = lambda: -1  # a C library without sched_getcpu: nothing held
        try:
            self._cpu = _libc().sched_getcpu  # the vDSO (rseq): no syscall
        except AttributeError:
            pass
        self.on = True

    def take(self, tid: int) -> Optional[Set[int]]:
        """Hold `tid` on this CPU; its affinity to give back, or None (nothing held)."""
        if not self.on:
            return None
        try:
            mask = os.sched_getaffinity(tid)
            here = self._cpu()
            if len(mask) < 2 or here not in mask:
                return None
            os.sched_setaffinity(tid, (here,))
        except OSError as exc:  # ESRCH: it is gone (its call too)
            if exc.errno in (errno.EPERM, errno.EACCES):
                self.on = False
            return None
        return mask

    def give_back(self, tid: int, mask: Set[int]) -> None:
        try:
            os.sched_setaffinity(tid, mask)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                # its cpuset no longer holds any of those CPUs (changed meanwhile): every CPU,
                # which the kernel narrows to the cpuset, as it would have narrowed the mask
                try:
                    os.sched_setaffinity(tid, range(1024))
                except OSError:
                    pass


class HotCalls:
    """Prepared raw calls for one supervising thread: no allocation per call.

    process_vm_readv/writev, openat2 and newfstatat are what every trapped
    stat costs; ctypes argument conversion and buffer creation would
    otherwise dominate (see bench/).  Not thread-safe: one per thread.
    """

    READ_MAX = 4096

    def __init__(self) -> None:
        libc = _libc()
        fn = libc.syscall
        long_p = ctypes.c_long
        self._syscall = fn
        self._long = long_p
        self._nr_readv = long_p(nr("process_vm_readv"))
        self._nr_writev = long_p(nr("process_vm_writev"))
        self._nr_openat2 = long_p(nr("openat2"))
        self._nr_fstatat = long_p(nr("newfstatat"))
        self._nr_getfd = long_p(nr("pidfd_getfd"))
        self._buf = ctypes.create_string_buffer(self.READ_MAX)
        self._local = _iovec(ctypes.addressof(self._buf), 0)
        self._remote = _iovec(0, 0)
        self._local_ref = ctypes.byref(self._local)
        self._remote_ref = ctypes.byref(self._remote)
        self._one = long_p(1)
        self._zero = long_p(0)
        self._how = S.open_how()
        self._how_ref = ctypes.byref(self._how)
        # stat_plain's two opens, prepared: O_PATH without and with O_NOFOLLOW, no symlink
        self._how_plain = [ctypes.byref(S.open_how(os.O_PATH | os.O_CLOEXEC | extra, 0, S.RESOLVE_NO_SYMLINKS))
                           for extra in (0, os.O_NOFOLLOW)]
        self._how_size = long_p(ctypes.sizeof(S.open_how))
        self._stat = ctypes.create_string_buffer(STAT_SIZE[machine()])
        self._empty = ctypes.c_char_p(b"")
        self._at_empty = long_p(0x1000)
        self._ids = _STAT_IDS[machine()]

    def _fail(self) -> OSError:
        err = ctypes.get_errno()
        return os_error(err)

    def _transfer(self, number: object, pid: int, address: int, size: int) -> int:
        """process_vm_readv/writev of `size` bytes between our buffer and `address`."""
        self._local.iov_len = size
        self._remote.iov_base = address
        self._remote.iov_len = size
        got = self._syscall(number, self._long(pid), self._local_ref, self._one,
                            self._remote_ref, self._one, self._zero)
        if got < 0:
            raise self._fail()
        return got

    def readv(self, pid: int, address: int, size: int) -> bytes:
        """Up to `size` (<= READ_MAX) bytes of another process's memory."""
        got = self._transfer(self._nr_readv, pid, address, size)  # before the bytes are taken
        return self._buf[:got]  # type: ignore[return-value]  # c_char array: bytes (.raw copies READ_MAX)

    def writev(self, pid: int, address: int, data: bytes) -> int:
        """Write `data` (<= READ_MAX bytes) into another process's memory."""
        ctypes.memmove(self._buf, data, len(data))
        return self._transfer(self._nr_writev, pid, address, len(data))

    def openat2(self, dirfd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
        how = self._how
        how.flags, how.mode, how.resolve = flags, mode, resolve
        while True:
            fd = self._syscall(self._nr_openat2, self._long(dirfd), path, self._how_ref, self._how_size)
            if fd >= 0:
                return fd
            err = self._fail()
            if err.errno != errno.EINTR:
                raise err

    def stat_plain(self, dirfd: int, path: bytes, nofollow: bool) -> Stat:
        """fstat of openat2(dirfd, path, O_PATH [| O_NOFOLLOW], RESOLVE_NO_SYMLINKS), in one
        call (the hot path of every stat: _fsops.do_stat); OSError as openat2's or fstat's."""
        fd = self._syscall(self._nr_openat2, self._long(dirfd), path, self._how_plain[nofollow], self._how_size)
        if fd < 0:
            raise self._fail()
        failed = self._syscall(self._nr_fstatat, self._long(fd), self._empty, self._stat, self._at_empty) < 0
        err = self._fail() if failed else None  # errno before close() may change it
        os.close(fd)
        if err is not None:
            raise err
        raw = self._stat.raw
        dev, ino, mode = self._ids.unpack_from(raw)
        return Stat(dev, ino, mode, raw)

    def getfd(self, pidfd: int, targetfd: int) -> int:
        """pidfd_getfd(2) (see pidfd_getfd)."""
        fd = self._syscall(self._nr_getfd, self._long(pidfd), self._long(targetfd), self._zero)
        if fd < 0:
            raise self._fail()
        return fd

    def fstatat(self, dirfd: int, name: bytes, flags: int) -> Stat:
        """newfstatat(dirfd, name, flags), parsed like fstat."""
        if self._syscall(self._nr_fstatat, self._long(dirfd), name, self._stat, self._long(flags)) < 0:
            raise self._fail()
        raw = self._stat.raw
        dev, ino, mode = self._ids.unpack_from(raw)
        return Stat(dev, ino, mode, raw)

    def fstat(self, fd: int) -> Stat:
        """newfstatat(fd, "", AT_EMPTY_PATH): the raw struct stat, parsed."""
        if self._syscall(self._nr_fstatat, self._long(fd), self._empty, self._stat, self._at_empty) < 0:
            raise self._fail()
        raw = self._stat.raw
        dev, ino, mode = self._ids.unpack_from(raw)
        return Stat(dev, ino, mode, raw)


class _msghdr(ctypes.Structure):
    """struct msghdr (sys/socket.h, 64-bit layout)."""
    _fields_ = [("msg_name", ctypes.c_void_p), ("msg_namelen", ctypes.c_uint32),
                ("msg_iov", ctypes.c_void_p), ("msg_iovlen", ctypes.c_size_t),
                ("msg_control", ctypes.c_void_p), ("msg_controllen", ctypes.c_size_t),
                ("msg_flags", ctypes.c_int)]


MSGHDR_SIZE = 56   # checked by tests/test_structs.py against ctypes.sizeof(_msghdr)
MMSGHDR_SIZE = 64  # struct mmsghdr: msghdr, unsigned msg_len, padding


def sendmsg(fd: int, name: Optional[bytes], data: bytes, control: bytes, flags: int) -> int:
    """sendmsg(2) with a raw sockaddr (or None), one buffer and raw control bytes."""
    name_buf = ctypes.create_string_buffer(name, len(name)) if name else None
    data_buf = ctypes.create_string_buffer(data, len(data))
    control_buf = ctypes.create_string_buffer(control, len(control)) if control else None
    iov = _iovec(ctypes.addressof(data_buf), len(data))
    msg = _msghdr(ctypes.addressof(name_buf) if name_buf else None, len(name) if name else 0,
                  ctypes.addressof(iov), 1, ctypes.addressof(control_buf) if control_buf else None,
                  len(control) if control else 0, 0)
    return _call("sendmsg", fd, ctypes.byref(msg), flags)
