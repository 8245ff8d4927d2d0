"""Deterministic runs (README "Deterministic runs"): --random-seed, --time-start,
--deterministic-dirs (--no-randomize-memory is a personality flag: _launch).

--deterministic-dirs: getdents64(2) is answered on behalf with the entries sorted
by name (`do_getdents64`; at most DIR_ENTRIES entries a directory, DIRS_KEPT
listings kept).

--random-seed N: every random byte the command can ask the kernel for comes from
one stream per kind, SHAKE-256 (hashlib) of the seed, the kind and a counter:

- getrandom(2) is trapped and answered on behalf: call k of the sandbox
  (counted in the order the supervisor receives them) gets the first bytes of
  stream ("getrandom", k); at most CHUNK bytes a call, as the kernel itself may
  return fewer than asked for large requests.  Threads or processes that race
  make the order of their calls, and so who gets which bytes, the scheduler's.
- /dev/urandom and /dev/random opened read-only are a sealed memfd of the run
  (DEVICE_SIZE bytes of stream ("device", 0), made at the first open): open k
  gets its own file description of it at offset (k mod DEVICE_STARTS) *
  DEVICE_STRIDE, so a reader gets at least DEVICE_SIZE - (DEVICE_STARTS - 1) *
  DEVICE_STRIDE bytes (4 MiB), then end of file.  The memory is bounded: one
  memfd a run, whatever the command opens.  fstat shows a regular file, not a
  character device (a library that insists on one, libsodium's sysrandom,
  refuses it).  An open for writing is the real device.
- AT_RANDOM, the 16 bytes the kernel puts in each new image's auxiliary vector
  (glibc seeds its stack protector and pointer guard from them, getauxval(3)
  reads them), is rewritten with stream ("at_random", k) for exec k, at the
  first trapped syscall of the new image (`after_exec`).

--time-start T: CLOCK_REALTIME (and its COARSE, ALARM and TAI spellings),
gettimeofday(2), time(2) and the time in adjtimex(2)'s struct read T plus the time elapsed since the run
started (the supervisor's CLOCK_MONOTONIC); other clocks, CLOCK_MONOTONIC
first, are the kernel's.  The syscalls are trapped (clock_gettime only for
those clock ids, by the filter) and answered on behalf.  The vDSO, where libc
reads the clocks without a syscall, is patched in each new image at its first
trapped syscall: its clock_gettime, gettimeofday and time make the syscall
(x86-64; `VDSO_CODE`), and with --random-seed its getrandom says ENOSYS so
libc falls back to the syscall.  The first trapped syscall comes early:
set_tid_address(2), which glibc's and musl's start-up code make before main
(dynamic or static), is trapped under these options for that alone.  Until
then (the dynamic loader's first instructions) the image is the kernel's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import threading
import time
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _procfs
from . import _structs as S
from . import _syscalls
from ._errors import os_error
from ._structs import AT_RANDOM, AT_SYSINFO_EHDR
from ._notif import CONTINUE, Call, Context, Errno, Reply, Value, read_mem, tgid_of, write_mem

GRND_NONBLOCK, GRND_RANDOM, GRND_INSECURE = 1, 2, 4
CHUNK = 1 << 16                      # bytes of one getrandom answered at most
DEVICE_SIZE = 8 << 20                # the /dev/urandom memfd of a run
DEVICE_STRIDE = 256 << 10
DEVICE_STARTS = 16
RANDOM_DEVICES = frozenset((os.makedev(1, 8), os.makedev(1, 9)))  # /dev/random, /dev/urandom
REALTIME_CLOCKS = (0, 5, 8, 11)      # CLOCK_REALTIME, _COARSE, _ALARM, CLOCK_TAI
PENDING = 1024                       # images waiting for their first trapped syscall, at most

NR_X86_64 = {"clock_gettime": 228, "gettimeofday": 96, "time": 201}


def _syscall_x86_64(nr: int) -> bytes:
    return bytes((0xB8, nr, 0, 0, 0, 0x0F, 0x05, 0xC3))  # mov eax, nr; syscall; ret


# the vDSO's functions -> the code put at their entry (x86-64 only)
VDSO_CODE: Dict[str, bytes] = {
    "__vdso_clock_gettime": _syscall_x86_64(NR_X86_64["clock_gettime"]),
    "__vdso_gettimeofday": _syscall_x86_64(NR_X86_64["gettimeofday"]),
    "__vdso_time": _syscall_x86_64(NR_X86_64["time"]),
}
VDSO_ENOSYS = bytes((0x48, 0xC7, 0xC0, 0xDA, 0xFF, 0xFF, 0xFF, 0xC3))  # mov rax, -ENOSYS; ret


def stream(seed: int, kind: bytes, number: int, size: int) -> bytes:
    """`size` bytes of the stream (`kind`, `number`) of `seed`."""
    import hashlib  # imported before confinement (_supervisor.preload): only deterministic runs need it
    return hashlib.shake_256(b"sandlock %s %d %d" % (kind, seed, number)).digest(size)


def vdso_symbols(image: bytes) -> Dict[bytes, int]:
    """Name -> offset from the image's start of the defined symbols of a vDSO (ELF64
    little-endian, read through its section headers)."""
    if image[:6] != b"\x7fELF\x02\x01":
        raise os_error(errno.ENOEXEC, "not an ELF64 little-endian vDSO")
    phoff, shoff = struct.unpack_from("<QQ", image, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", image, 0x36)
    base = min((struct.unpack_from("<IIQQ", image, phoff + i * phentsize)[3] for i in range(phnum)
                if struct.unpack_from("<I", image, phoff + i * phentsize)[0] == 1), default=0)  # PT_LOAD vaddr
    sections = [struct.unpack_from("<IIQQQQII", image, shoff + i * shentsize) for i in range(shnum)]
    out: Dict[bytes, int] = {}
    for _, kind, _, _, offset, size, link, _ in sections:
        if kind != 11:  # SHT_DYNSYM
            continue
        strings = sections[link][4]
        for at in range(offset, offset + size, 24):
            name, _, _, shndx, value, _ = struct.unpack_from("<IBBHQQ", image, at)
            if shndx and name:
                label = image[strings + name:image.index(b"\0", strings + name)]
                out[label] = value - base
    return out


VDSO_MAX = 1 << 16  # bytes of a vDSO image read at most


def own_vdso_symbols() -> Dict[bytes, int]:
    """vdso_symbols of this process's vDSO ({} if it has none or it cannot be read)."""
    try:
        with open("/proc/self/auxv", "rb") as f:
            raw = f.read()
        size = struct.calcsize("@LL")
        base = dict(struct.iter_unpack("@LL", raw[:len(raw) - len(raw) % size])).get(AT_SYSINFO_EHDR)
        if not base:
            return {}
        with open("/proc/self/mem", "rb", buffering=0) as f:
            f.seek(base)
            head = f.read(64)
            shoff, = struct.unpack_from("<Q", head, 0x28)
            shentsize, shnum = struct.unpack_from("<HH", head, 0x3A)
            end = shoff + shentsize * shnum
            if end > VDSO_MAX:
                return {}
            f.seek(base)
            return vdso_symbols(f.read(end))
    except (OSError, struct.error, ValueError, IndexError):
        return {}


class Determinism:
    """The streams and the clock of one run (bounded: a few counters, one memfd, at
    most PENDING tids)."""

    def __init__(self, seed: Optional[int], time_start: Optional[int], arch: str) -> None:
        self.seed = seed
        self.time_start = time_start
        self.started = time.monotonic_ns()
        self.lock = threading.Lock()
        self.counts = {b"getrandom": 0, b"at_random": 0, b"open": 0}
        self.device = -1
        self.pending: Dict[int, None] = {}
        code: Dict[str, bytes] = {}
        if arch == "x86_64":
            code = dict(VDSO_CODE) if time_start is not None else {}
            if seed is not None:
                code["__vdso_getrandom"] = VDSO_ENOSYS
        self.vdso_code = {os.fsencode(name): data for name, data in code.items()}
        self.vdso: Optional[Dict[bytes, int]] = None   # symbol offsets, read from the first image

    def _next(self, kind: bytes) -> int:
        with self.lock:
            number = self.counts[kind]
            self.counts[kind] = number + 1
            return number

    def random(self, size: int) -> bytes:
        assert self.seed is not None
        return stream(self.seed, b"getrandom", self._next(b"getrandom"), size)

    def now(self) -> Tuple[int, int]:
        """The wall clock of the run: (seconds, nanoseconds)."""
        assert self.time_start is not None
        return divmod(self.time_start + time.monotonic_ns() - self.started, 10**9)

    def device_open(self, rdev: int) -> Optional[int]:
        """For an open for reading of the character device `rdev`: a new read-only
        description of the run's random-device memfd, at its offset; None for
        another device, or without a seed."""
        if self.seed is None or rdev not in RANDOM_DEVICES:
            return None
        with self.lock:
            if self.device < 0:
                self.device = _procfs.memfd(b"urandom", stream(self.seed, b"device", 0, DEVICE_SIZE))
        number = self._next(b"open")
        fd = os.open(b"/proc/self/fd/%d" % self.device, os.O_RDONLY | os.O_CLOEXEC)
        os.lseek(fd, (number % DEVICE_STARTS) * DEVICE_STRIDE, os.SEEK_SET)
        return fd

    def close(self) -> None:
        if self.device >= 0:
            os.close(self.device)
            self.device = -1

    # --- exec: the new image's auxv and vDSO ---------------------------------------

    def exec_seen(self, tid: int) -> None:
        """`tid` is about to exec: its new image is fixed at its first trapped call (by
        its tid, or its process's id when a thread other than the leader execs)."""
        with self.lock:
            while len(self.pending) >= PENDING:
                del self.pending[next(iter(self.pending))]  # the oldest: it died before any call
            self.pending[tid] = None
        try:
            tgid = tgid_of(tid)
        except (OSError, ValueError):
            return
        if tgid != tid:
            with self.lock:
                self.pending[tgid] = None

    def after_exec(self, ctx: Context, tid: int) -> None:
        """AT_RANDOM and the vDSO of the image `tid` runs (stopped in a trapped call)."""
        with open(b"/proc/%d/auxv" % tid, "rb") as f:
            raw = f.read()
        ctx.tracees.confirm()  # read from the caller itself, not from a reuse of its tid
        auxv = dict(struct.iter_unpack("@LL", raw[:len(raw) - len(raw) % struct.calcsize("@LL")]))
        if self.seed is not None and auxv.get(AT_RANDOM):
            write_mem(ctx.tracees, tid, auxv[AT_RANDOM],
                      stream(self.seed, b"at_random", self._next(b"at_random"), 16))
        if self.vdso_code and auxv.get(AT_SYSINFO_EHDR):
            self._patch_vdso(ctx, tid, auxv[AT_SYSINFO_EHDR])

    def _patch_vdso(self, ctx: Context, tid: int, base: int) -> None:
        if self.vdso is None:
            # the supervisor's own vDSO: the kernel's same image (never one a command
            # could have written to before its first trapped call)
            self.vdso = own_vdso_symbols()
        done = set()
        for name, code in self.vdso_code.items():
            offset = self.vdso.get(name)
            if offset is None or offset in done:
                continue
            done.add(offset)
            if read_mem(ctx.tracees, tid, base + offset, len(code)) != code:  # a failed exec: patched already
                # through /proc/PID/mem (ctx.memory), where process_vm_writev cannot: the
                # vDSO's pages are read-only; the write makes the process's own copy of them
                ctx.memory.write(ctx.is_member, tid, base + offset, code)
        ctx.tracees.confirm()  # the caller was still there: written to it, not to a reuse of its tid


# --- the handlers ----------------------------------------------------------------------

def do_getrandom(ctx: Context, call: Call) -> Reply:
    """getrandom(2) with --random-seed: the next bytes of the run's stream, written on behalf."""
    if call.flags & ~(GRND_NONBLOCK | GRND_RANDOM | GRND_INSECURE) or \
            call.flags & (GRND_RANDOM | GRND_INSECURE) == GRND_RANDOM | GRND_INSECURE:
        return Errno(errno.EINVAL)
    size = min(call.size, CHUNK)
    if size == 0:
        return Value(0)
    data = ctx.resolver.determinism.random(size)
    ctx.tracees.confirm()
    write_mem(ctx.tracees, call.tid, call.ptr, data)
    return Value(size)


def _timespec(seconds: int, nanoseconds: int) -> bytes:
    return struct.pack("=qq", seconds, nanoseconds)


def do_clock_gettime(ctx: Context, call: Call) -> Reply:
    """clock_gettime(2) of a wall clock (the only ids the filter notifies) with --time-start."""
    if call.which not in REALTIME_CLOCKS:
        return Errno(errno.EINVAL)  # cannot happen (the filter): fail closed, never the supervisor's clocks
    seconds, nanoseconds = ctx.resolver.determinism.now()
    ctx.tracees.confirm()
    write_mem(ctx.tracees, call.tid, call.ptr, _timespec(seconds, nanoseconds))
    return Value(0)


def do_gettimeofday(ctx: Context, call: Call) -> Reply:
    """gettimeofday(2) with --time-start: the run's time, and a zero timezone."""
    seconds, nanoseconds = ctx.resolver.determinism.now()
    ctx.tracees.confirm()
    if call.ptr:
        write_mem(ctx.tracees, call.tid, call.ptr, struct.pack("=qq", seconds, nanoseconds // 1000))
    if call.ptr2:
        write_mem(ctx.tracees, call.tid, call.ptr2, struct.pack("=ii", 0, 0))
    return Value(0)


def do_time(ctx: Context, call: Call) -> Reply:
    """time(2) with --time-start."""
    seconds, _ = ctx.resolver.determinism.now()
    if call.ptr:
        ctx.tracees.confirm()
        write_mem(ctx.tracees, call.tid, call.ptr, struct.pack("=q", seconds))
    return Value(seconds)


def do_adjtimex(ctx: Context, call: Call) -> Reply:
    """adjtimex(2), and clock_adjtime(2) of CLOCK_REALTIME, with --time-start: a read of
    the kernel's clock state (the host's, as without the flag) whose time is the run's;
    a change needs CAP_SYS_TIME, which the command never has: EPERM, as the kernel."""
    if call.which != 0:
        return Errno(errno.EINVAL)  # cannot happen (the filter notifies CLOCK_REALTIME only)
    modes = struct.unpack("=I", read_mem(ctx.tracees, call.tid, call.ptr, 4))[0]
    if modes not in (0, S.ADJ_OFFSET_SS_READ):
        return Errno(errno.EPERM)
    state, raw = _syscalls.adjtimex_read()
    seconds, nanoseconds = ctx.resolver.determinism.now()
    status = struct.unpack_from("=i", raw, S.TIMEX_STATUS)[0]
    fraction = nanoseconds if status & S.STA_NANO else nanoseconds // 1000
    out = bytearray(raw)
    struct.pack_into("=I", out, 0, modes)
    struct.pack_into("=qq", out, S.TIMEX_TIME, seconds, fraction)
    ctx.tracees.confirm()
    write_mem(ctx.tracees, call.tid, call.ptr, bytes(out))
    return Value(state)


def do_set_tid_address(ctx: Context, call: Call) -> Reply:
    """set_tid_address(2), trapped only so that a new image is fixed early (the step
    `fix_image` ran before this): CONTINUE, because nothing is decided, whatever
    the argument; the kernel stores the pointer for the calling thread."""
    return CONTINUE


def fix_image(ctx: Context, call: Call) -> None:
    """A step before every handler (_table.steps_for) under --random-seed or
    --time-start: the first trapped call of a new image fixes it (`after_exec`)."""
    determinism = ctx.resolver.determinism
    if determinism is None or not determinism.pending or call.tid not in determinism.pending:
        return
    with determinism.lock:
        determinism.pending.pop(call.tid, None)
    ctx.tracees.current = call.id  # confirm() below is about this notification
    determinism.after_exec(ctx, call.tid)


def exec_hook(op):  # type: ignore[no-untyped-def]
    """An exec handler that also marks its caller's next image to be fixed."""
    def hooked(ctx: Context, call: Call) -> Reply:
        reply = op(ctx, call)
        determinism = ctx.resolver.determinism
        if determinism is not None and not isinstance(reply, Errno) and reply is not None:
            determinism.exec_seen(call.tid)
        return reply
    hooked.__name__ = getattr(op, "__name__", "exec")
    return hooked


# --- directory listings in a stable order (--deterministic-dirs) -----------------------

DIRENT = struct.Struct("=QqHB")   # struct linux_dirent64: d_ino, d_off, d_reclen, d_type, then d_name
DIR_ENTRIES = 1 << 17             # entries of one directory listed at most (ENOMEM beyond)
DIR_BYTES = 16 << 20              # bytes of its names at most (ENOMEM beyond)
DIRS_KEPT = 4                     # sorted listings kept between calls


if TYPE_CHECKING:
    Entry = Tuple[bytes, int, int]    # name, inode, type


def parse_dirents(raw: bytes) -> "list[Entry]":
    out = []
    at = 0
    while at + DIRENT.size <= len(raw):
        ino, _, reclen, kind = DIRENT.unpack_from(raw, at)
        if reclen < DIRENT.size:
            break
        name = raw[at + DIRENT.size:at + reclen].split(b"\0", 1)[0]
        out.append((name, ino, kind))
        at += reclen
    return out


def pack_dirents(entries: "list[Entry]", first: int, size: int) -> Tuple[bytes, int]:
    """linux_dirent64 records of entries[first:] that fit in `size` bytes, each with
    d_off the index of the next one; and that index."""
    out = bytearray()
    index = first
    while index < len(entries):
        name, ino, kind = entries[index]
        reclen = (DIRENT.size + len(name) + 1 + 7) & ~7
        if len(out) + reclen > size:
            break
        out += DIRENT.pack(ino, index + 1, reclen, kind) + name + bytes(reclen - DIRENT.size - len(name))
        index += 1
    return bytes(out), index


class Listings:
    """Sorted listings of the directories the command reads, by (device, inode), the
    DIRS_KEPT last ones (each at most DIR_ENTRIES entries and DIR_BYTES of names)."""

    def __init__(self) -> None:
        self.kept: Dict[Tuple[int, int], "list[Entry]"] = {}
        self.lock = threading.Lock()

    def listing(self, fd: int, key: Tuple[int, int], fresh: bool) -> "list[Entry]":
        with self.lock:
            found = None if fresh else self.kept.get(key)
        if found is not None:
            return found
        entries: "list[Entry]" = []
        size = 0
        os.lseek(fd, 0, os.SEEK_SET)
        while True:
            raw = _syscalls.getdents64(fd)
            if not raw:
                break
            for entry in parse_dirents(raw):
                entries.append(entry)
                size += len(entry[0])
            if len(entries) > DIR_ENTRIES or size > DIR_BYTES:
                raise os_error(errno.ENOMEM, "directory too large to list in order (README \"Deterministic runs\")")
        entries.sort()
        with self.lock:
            self.kept.pop(key, None)
            while len(self.kept) >= DIRS_KEPT:
                del self.kept[next(iter(self.kept))]
            self.kept[key] = entries
        return entries


def do_getdents64(ctx: Context, call: Call) -> Reply:
    """getdents64(2) with --deterministic-dirs: the entries of the caller's directory
    sorted by name, from the position of its file description (the index of the next
    entry: a listing starts at 0, where the directory is read again), which is moved
    on as the kernel would; done on a duplicate of the caller's fd (the same open
    file description), so only a directory it holds open for reading is listed."""
    fd = ctx.tracees.getfd(call.tid, call.fd)
    try:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH:
            return Errno(errno.EBADF)
        st = os.fstat(fd)
        if not stat.S_ISDIR(st.st_mode):
            return Errno(errno.ENOTDIR)
        listings = ctx.resolver.listings
        position = os.lseek(fd, 0, os.SEEK_CUR)
        entries = listings.listing(fd, (st.st_dev, st.st_ino), position == 0)
        data, after = pack_dirents(entries, position, min(call.size, 1 << 20))
        if not data and after < len(entries):
            return Errno(errno.EINVAL)  # the buffer holds not even one entry
        if data:
            ctx.tracees.confirm()
            write_mem(ctx.tracees, call.tid, call.ptr, data)
        os.lseek(fd, after, os.SEEK_SET)
        return Value(len(data))
    finally:
        os.close(fd)
