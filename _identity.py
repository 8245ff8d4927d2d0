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
"""

from __future__ import annotations

import os
import stat
import struct
from typing import Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _structs as S
from . import _syscalls
from ._notif import Call, Context, Reply, Value, write_mem

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


def memory_sysinfo(raw: bytes, limit: int, used: int) -> bytes:
    """The kernel's struct sysinfo as a machine of `limit` bytes whose sandbox uses `used`:
    totalram the limit (at most the host's), freeram what is left (at most the host's),
    no shared, buffer, swap or high memory; uptime, loads and procs the kernel's."""
    out = bytearray(raw)
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
    """sysinfo(2) with --max-memory (trapped only then): the kernel's answer with the
    memory of a machine of that size, written on behalf."""
    data = memory_sysinfo(_syscalls.sysinfo(), ctx.policy.max_memory, ctx.resolver.memory_used)
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
