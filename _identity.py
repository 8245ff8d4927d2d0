"""The machine the command sees: its name with --hostname NAME (README "Host name"),
its memory through sysinfo(2) with --max-memory (README "Memory": do_sysinfo; the
/proc/meminfo twin is _procfs.meminfo_view).

Every way a program learns the host name answers NAME:

- uname(2) (glibc's and musl's gethostname call it; no vDSO path exists) is
  trapped only when the policy names a host name, and answered on behalf:
  the supervisor makes the call itself, puts NAME in the nodename field and
  writes the struct into the caller's buffer (EFAULT where the kernel would);
- /proc/sys/kernel/hostname opened for reading is a sealed memfd holding
  NAME (Resolver._proc_view, like boot_id; _procfs.HOSTNAME);
- /etc/hostname, the host's or the root's, opened for reading is such a
  memfd too (Resolver.made_up_file), whatever the file holds: the file is
  known by its host path (hostname_path: every spelling of it, and a file
  the command put there) and by the device and inode it had at the start
  (hostname_file: its hard links).  Opened for writing it is the real file.

sethostname(2) stays refused by the filter (the deny list).

The CPUs (README "CPU"): with --num-cpus N the machine has CPUs 0..N-1, view CPU k
standing for the real CPU base[k % len(base)] (base: --cpu-cores, else the CPUs
sandlock itself may use; cpu_base).  sched_getaffinity(2) is then answered on behalf
in view numbers, with the kernel's size rules for a machine of N CPUs;
sched_setaffinity(2) (trapped with --cpu-cores or --num-cpus) is done on behalf with
the mask narrowed to the allowed CPUs, EINVAL when nothing is left: what the kernel
answers inside a cpuset (__sched_setaffinity intersects with cpuset_cpus_allowed).
The /proc and /sys files of the view are _procfs.cpuinfo_view, stat_view, cpu_list.

Uptime and load (README "Uptime and load"): Machine counts from the sandbox's start;
/proc/uptime, /proc/loadavg and, under --max-memory (when sysinfo(2) is trapped),
sysinfo's uptime, loads and procs come from it.
"""

from __future__ import annotations

import errno
import math
import os
import stat
import struct
import sys
import time
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Callable, Optional, Set, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _threads  # threading's parts, without its import (README "Start-up")
from . import _structs as S
from . import _syscalls
from ._errors import os_error
from ._notif import Call, Context, Errno, Reply, Value, read_mem, write_mem

_FIELD = S.NEW_UTS_LEN + 1
_NODENAME = S.new_utsname.nodename.offset


def utsname(hostname: str) -> bytes:
    """This kernel's struct new_utsname with `hostname` as its nodename."""
    raw = bytearray(_syscalls.uname())
    raw[_NODENAME:_NODENAME + _FIELD] = os.fsencode(hostname)[:S.NEW_UTS_LEN].ljust(_FIELD, b"\0")
    return bytes(raw)


def do_uname(ctx: Context, call: Call) -> Reply:
    """uname(2) with --hostname: the struct, written on behalf (nothing of the caller's is read)."""
    data = utsname(ctx.policy.hostname)
    ctx.tracees.confirm()  # the caller is still there: its tid is not another task's yet
    write_mem(ctx.tracees, call.tid, call.ptr, data)
    return Value(0)


_SYSINFO_ZERO = ("sharedram", "bufferram", "totalswap", "freeswap", "totalhigh", "freehigh")


def memory_sysinfo(raw: bytes, limit: Optional[int], used: int, machine: "Optional[Machine]" = None) -> bytes:
    """The kernel's struct sysinfo as a machine of `limit` bytes whose sandbox uses `used`:
    totalram the limit (at most the host's), freeram what is left (at most the host's),
    no shared, buffer, swap or high memory (limit None: the kernel's memory fields);
    uptime, loads and procs the sandbox's (`machine`, as /proc/uptime and /proc/loadavg
    show them), else the kernel's."""
    out = bytearray(raw)
    if machine is not None:
        loads, _, threads, _ = machine.loadavg(SYSINFO_MAX_AGE)
        struct.pack_into("=q3Q", out, S.sysinfo.uptime.offset, int(boottime() - machine.start),
                         *(int(load * SI_LOAD_SCALE) for load in loads))
        struct.pack_into("=H", out, S.sysinfo.procs.offset, min(threads, 0xFFFF))
    if limit is None:
        return bytes(out)
    unit = struct.unpack_from("=I", raw, S.sysinfo.mem_unit.offset)[0] or 1

    def get(field: str) -> int:
        return int(struct.unpack_from("=Q", raw, getattr(S.sysinfo, field).offset)[0])

    def put(field: str, value: int) -> None:
        struct.pack_into("=Q", out, getattr(S.sysinfo, field).offset, value)
    total = min(limit // unit, get("totalram"))
    put("totalram", total)
    put("freeram", max(0, min(total - used // unit, get("freeram"))))
    for field in _SYSINFO_ZERO:
        put(field, 0)
    return bytes(out)


def do_sysinfo(ctx: Context, call: Call) -> Reply:
    """sysinfo(2), trapped under every policy (README "Uptime and load": about one call per
    process start, glibc's qsort asks for the memory size): the sandbox's uptime, loads and
    thread count, and with --max-memory the memory of a machine of that size, written on
    behalf."""
    data = memory_sysinfo(_syscalls.sysinfo(), ctx.policy.max_memory, ctx.resolver.memory_used,
                          getattr(ctx.resolver, "machine", None))
    ctx.tracees.confirm()
    write_mem(ctx.tracees, call.tid, call.ptr, data)
    return Value(0)


def contents(hostname: str) -> bytes:
    """What /etc/hostname and /proc/sys/kernel/hostname hold."""
    return os.fsencode(hostname) + b"\n"


def hostname_path(top: bytes) -> bytes:
    """The host path of etc/hostname below the host directory `top` (/ or the root)."""
    return top.rstrip(b"/") + b"/etc/hostname"


def hostname_file(top_fd: int) -> Optional[Tuple[int, int]]:
    """(device, inode) of etc/hostname below the directory fd `top_fd` (the host's / or
    the root's), a regular file not followed through a symlink; None if there is none
    (a symlink, whose target would be resolved against the host, is left as it is)."""
    try:
        st = os.stat("etc/hostname", dir_fd=top_fd, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None


# --- CPUs ---------------------------------------------------------------------------------

SI_LOAD_SCALE = 1 << 16  # struct sysinfo's loads are fixed point (SI_LOAD_SHIFT 16)
MASK_MAX = 128           # bytes of a CPU mask read from the caller: 1024 CPUs (_policy.CPUS_MAX)


def cpu_base(policy: object) -> Tuple[int, ...]:
    """The real CPUs the view stands on: --cpu-cores, else the ones sandlock may use."""
    cores = getattr(policy, "cpu_cores", None)
    return tuple(cores) if cores else tuple(sorted(os.sched_getaffinity(0)))


def to_view(real: Set[int], base: Tuple[int, ...], count: int) -> Set[int]:
    """View CPUs whose real CPU is in `real`."""
    return {k for k in range(count) if base[k % len(base)] in real}


def to_real(view: Set[int], base: Tuple[int, ...], count: Optional[int]) -> Set[int]:
    """The real CPUs a mask asks for, narrowed to the allowed ones (count None: no view,
    the numbers are real)."""
    if count is None:
        return view & set(base)
    return {base[k % len(base)] for k in view if k < count}


def mask_bits(raw: bytes) -> Set[int]:
    number = int.from_bytes(raw, "little")  # unsigned longs of a little- or big-endian machine
    if sys.byteorder == "big":
        number = int.from_bytes(b"".join(raw[i:i + 8][::-1] for i in range(0, len(raw), 8)), "little")
    return {bit for bit in range(len(raw) * 8) if number >> bit & 1}


def mask_bytes(cpus: Set[int], size: int) -> bytes:
    raw = sum(1 << cpu for cpu in cpus).to_bytes(size, "little")
    if sys.byteorder == "big":
        raw = b"".join(raw[i:i + 8][::-1] for i in range(0, size, 8))
    return raw


def _target(ctx: Context, call: Call) -> int:
    """The thread a sched_*affinity call names: the caller (pid 0), or one of the sandbox's
    (another pid is ESRCH: not there, as for a pid namespace)."""
    if call.pid == 0 or call.pid == call.tid:
        return call.tid
    if call.pid < 0 or not ctx.members.contains(call.pid):
        raise os_error(errno.ESRCH)
    return call.pid


def do_sched_getaffinity(ctx: Context, call: Call) -> Reply:
    """sched_getaffinity(2) with --num-cpus: the thread's CPUs in view numbers, sized for a
    machine of N CPUs (EINVAL for a mask too small or not a multiple of a long, as the kernel)."""
    count = ctx.policy.num_cpus
    size = (count + 63) // 64 * 8
    if call.size * 8 < count or call.size & 7:
        return Errno(errno.EINVAL)
    view = to_view(os.sched_getaffinity(_target(ctx, call)), cpu_base(ctx.policy), count)
    ctx.tracees.confirm()
    write_mem(ctx.tracees, call.tid, call.ptr, mask_bytes(view, size))
    return Value(size)


def do_sched_setaffinity(ctx: Context, call: Call) -> Reply:
    """sched_setaffinity(2) with --cpu-cores or --num-cpus: done on behalf with the mask
    (read once) narrowed to the allowed CPUs; EINVAL when none is left."""
    raw = read_mem(ctx.tracees, call.tid, call.ptr, min(call.size, MASK_MAX)) if call.size else b""
    real = to_real(mask_bits(raw), cpu_base(ctx.policy), ctx.policy.num_cpus)
    if not real:
        return Errno(errno.EINVAL)
    target = _target(ctx, call)
    ctx.tracees.confirm()  # the mask was the caller's, and its tid is not another task's yet
    os.sched_setaffinity(target, real)
    return Value(0)


# --- uptime and load ----------------------------------------------------------------------

LOAD_PERIODS = (60.0, 300.0, 900.0)
SYSINFO_MAX_AGE = 1.0  # sysinfo(2) may answer a load counted this long ago (a count reads /proc of every thread)


def boottime() -> float:
    """CLOCK_BOOTTIME: the clock of /proc/uptime and of the start times in /proc/PID/stat."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)


class Machine:
    """The sandbox's own clock and load: uptime from its start, idle time of its CPUs not
    used by it, and load averages decayed as the kernel's (exponentially over 1, 5 and 15
    minutes) from the sandbox's runnable threads, sampled when read.  The sandbox's
    machine booted at `start`: the btime of /proc/stat is that moment and the start times
    of /proc/PID/stat count from it (`shift`), so ps and psutil still add up.

    cpu_used() -> CPU seconds used; threads() -> (runnable threads, threads, highest pid):
    two walks of the sandbox's /proc, each made only by what needs it (sysinfo and
    /proc/loadavg the threads, /proc/uptime the CPU time)."""

    def __init__(self, cpu_used: Callable[[], float], threads: Callable[[], Tuple[int, int, int]],
                 cpus: int) -> None:
        self.cpu_used = cpu_used
        self.threads = threads
        self.cpus = cpus
        self.start = boottime()
        self._when: Optional[float] = None  # the last read (None: the start)
        self._loads = (0.0, 0.0, 0.0)
        self._last: Optional[Tuple[int, int, int]] = None  # (runnable, threads, highest pid) of the last read
        self._lock = _threads.Lock()

    def shift(self) -> float:
        """Seconds between the host's boot and the sandbox's start."""
        return self.start

    def uptime(self) -> Tuple[float, float]:
        """(seconds since the start, idle CPU-seconds of its CPUs)."""
        up = boottime() - self.start
        return up, max(0.0, up * self.cpus - self.cpu_used())

    def loadavg(self, max_age: float = 0.0) -> Tuple[Tuple[float, float, float], int, int, int]:
        """((1, 5, 15-minute loads), runnable threads, threads, highest pid); the last
        answer again if it is at most max_age seconds old (sysinfo: SYSINFO_MAX_AGE)."""
        with self._lock:
            if self._last is not None and self._when is not None and boottime() - self._when <= max_age:
                return self._loads, self._last[0], self._last[1], self._last[2]
        running, threads, last = self.threads()
        with self._lock:
            now = boottime()
            gone = now - (self.start if self._when is None else self._when)
            self._when = now
            self._last = (running, threads, last)
            self._loads = tuple(running + (old - running) * math.exp(-gone / period)  # type: ignore[assignment]
                                for old, period in zip(self._loads, LOAD_PERIODS))
            return self._loads, running, threads, last
