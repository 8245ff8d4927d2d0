"""/proc as the sandbox sees it, with or without an emulated root (README, "What the sandbox allows").

The command's Landlock domain grants nothing in any procfs mount
(_landlock.procfs_mounts), and every open, stat, readlink and chdir of a
path is trapped: the supervisor opens /proc for the command and decides
here, on the kernel's name of what it opened (d_path), never on the spelling
(`/proc//1`, `/proc/self/../1`, a dirfd of /proc, a cwd in /proc):

- /proc/PID and everything below it exist only for the sandbox's own
  processes (and their threads): any other pid is ENOENT, as with
  hidepid=invisible, for opens, stats, readlink, chdir and listings;
- host-wide files that name other users' objects are absent (ENOENT, not
  listed): HIDDEN at the top, HIDDEN_PER_PROCESS in a process directory;
- some files are made up (the resolver builds them, see MADE_UP): boot_id
  is a random UUID per run, mountinfo/mounts list only what the command can
  reach;
- /proc/PID/net (README "Network views", `net_view`): the socket tables
  list only the sandbox's own sockets under the kernel's header line; the
  interface files show only lo when the policy allows no network; every
  other file there (host-wide counters, routes, neighbours, netfilter) is
  refused (EACCES);
- /proc itself, opened to be listed, is a private directory in the run's
  scratch directory holding only the sandbox's processes (`make_listing`);
  lookups relative to it are mapped back to /proc by the resolver.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._errors import os_error
from ._syscalls import closed_on_error

HIDDEN = frozenset((b"keys", b"key-users", b"locks", b"timer_list", b"slabinfo", b"cmdline", b"sysvipc"))
HIDDEN_PER_PROCESS = frozenset((b"mountstats",))
BOOT_ID = b"sys/kernel/random/boot_id"
HOSTNAME = b"sys/kernel/hostname"  # --hostname (_identity)
MEMINFO = b"meminfo"               # with --max-memory: meminfo_view
MADE_UP = frozenset((b"mountinfo", b"mounts"))  # below /proc/PID or /proc/PID/task/TID (and net/: net_view)
LISTING = b"/.proc"   # listings are <top>/.proc<N>
KEEP_LISTINGS = 8     # older listings are removed (a listing fd still works after)
READ_CAP = 16 << 20   # the most the supervisor reads of a /proc file it rewrites


def is_proc(name: bytes) -> bool:
    return name == b"/proc" or name.startswith(b"/proc/")


def classify(name: bytes, is_member: Callable[[int], bool]) -> Tuple[Optional[int], bytes]:
    """(pid or None, what) for the kernel's name of an object of /proc.

    `what` is the path below /proc/PID (or /proc/PID/task/TID), or below /proc
    when pid is None (b"" for /proc itself).

    Raises:
        OSError(ENOENT): a process outside the sandbox, or a hidden file.
    """
    rest = name[6:]
    first, _, below = rest.partition(b"/")
    if first.isdigit():
        if not is_member(int(first)):
            raise os_error(errno.ENOENT)
        if below.startswith(b"task/"):
            below = below[5:].partition(b"/")[2]  # the kernel found the thread in that process
        if below in HIDDEN_PER_PROCESS:
            raise os_error(errno.ENOENT)
        return int(first), below
    if first in HIDDEN:
        raise os_error(errno.ENOENT)
    return None, rest


def rewrite_links(path: bytes, tgid: int, tid: int) -> bytes:
    """/proc/self, /proc/thread-self, /proc/net and /proc/mounts name the caller's own
    (the supervisor opening them would get its own): rewritten to its pid.
    Empty and "." components are dropped first ("/proc//self/./fd"), and
    "D/.." after it (so the path names its pid where the kernel would find it)."""
    if b"//" in path or b"/./" in path or path.endswith(b"/."):
        trailing = path.endswith((b"/", b"/."))
        path = b"/" + b"/".join(c for c in path.split(b"/") if c and c != b".") + (b"/" if trailing else b"")
    for link, target in ((b"/proc/self", b"/proc/%d" % tgid), (b"/proc/thread-self", b"/proc/%d/task/%d" % (tgid, tid)),
                         (b"/proc/net", b"/proc/%d/net" % tgid), (b"/proc/mounts", b"/proc/%d/mounts" % tgid)):
        if path.startswith(link) and path[len(link):len(link) + 1] in (b"", b"/"):
            path = target + path[len(link):]
            break
    while True:  # "/proc/D/.." is /proc when D is a directory (a process's, sys, ...), not a link
        parts = path.split(b"/", 4)
        if len(parts) < 4 or parts[3] != b".." or not (parts[2].isdigit() or _plain_dir(b"/proc/" + parts[2])):
            return path
        path = b"/proc" + (b"/" + parts[4] if len(parts) > 4 else b"")


def _plain_dir(path: bytes) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def listing_of(name: bytes, top: Optional[bytes]) -> Optional[bytes]:
    """The /proc path a name inside a listing directory stands for (None: not in one)."""
    if top is None or not name.startswith(top + LISTING):
        return None
    rest = name[len(top) + len(LISTING):]
    digits = len(rest) - len(rest.lstrip(b"0123456789"))
    if not digits or rest[digits:digits + 1] not in (b"", b"/"):
        return None
    return b"/proc" + rest[digits:]


def make_listing(top: bytes, number: int, members: Iterable[int], tgid: int, tid: int) -> int:
    """A private directory standing for /proc: its entries but only the sandbox's processes
    (empty directories), no HIDDEN file; an O_RDONLY fd of it for the caller.

    Made with *at calls on our fd of it.  Listing number - KEEP_LISTINGS is removed.
    """
    path = top + LISTING + b"%d" % number
    os.mkdir(path, 0o755)
    try:
        here = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with closed_on_error(here):
            with os.scandir(b"/proc") as entries:
                for entry in entries:
                    name = entry.name
                    if name.isdigit() or name in HIDDEN:
                        continue
                    if name == b"self":
                        os.symlink(b"%d" % tgid, name, dir_fd=here)
                    elif name == b"thread-self":
                        os.symlink(b"%d/task/%d" % (tgid, tid), name, dir_fd=here)
                    elif entry.is_symlink():
                        os.symlink(os.readlink(entry.path), name, dir_fd=here)
                    elif entry.is_dir(follow_symlinks=False):
                        os.mkdir(name, 0o555, dir_fd=here)
                    else:
                        os.close(os.open(name, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o444, dir_fd=here))
            for pid in members:
                os.mkdir(b"%d" % pid, 0o555, dir_fd=here)
        return here
    finally:
        if number > KEEP_LISTINGS:
            remove_listing(top + LISTING + b"%d" % (number - KEEP_LISTINGS))


def remove_listing(path: bytes) -> None:
    """Remove a listing: one level of empty directories, files and links (never followed)."""
    try:
        here = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return
    try:
        for name in os.listdir(here):
            try:
                os.unlink(name, dir_fd=here)
            except IsADirectoryError:
                os.rmdir(name, dir_fd=here)
            except OSError:
                pass
    except OSError:
        pass
    finally:
        os.close(here)
    try:
        os.rmdir(path)
    except OSError:
        pass


def new_boot_id() -> bytes:
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40   # version 4
    raw[8] = raw[8] & 0x3F | 0x80   # RFC 4122 variant
    h = raw.hex().encode()
    return b"%s-%s-%s-%s-%s\n" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])


def read_fd(fd: int) -> bytes:
    """What a /proc file of ours holds (at most READ_CAP bytes: EFBIG beyond)."""
    chunks: List[bytes] = []
    size = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > READ_CAP:
            raise os_error(errno.EFBIG)
        chunks.append(chunk)


def memfd(name: bytes, data: bytes) -> int:
    """A read-only, sealed, close-on-exec fd holding `data` (made-up /proc content).

    (Not _elf.sealed_memfd: the supervisor thread is confined by now and may
    not read Python's library to import a module.)
    """
    label = "sandlock-proc-" + os.fsdecode(name).replace("/", "-")
    try:
        fd = os.memfd_create(label, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING | _MFD_NOEXEC_SEAL)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        fd = os.memfd_create(label, os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)  # before Linux 6.3
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        fcntl.fcntl(fd, _F_ADD_SEALS, _SEALS)
        return os.open(b"/proc/self/fd/%d" % fd, os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(fd)


_MFD_NOEXEC_SEAL = 0x0008
_F_ADD_SEALS = 1033
_SEALS = 0x0001 | 0x0002 | 0x0004 | 0x0008  # F_SEAL_SEAL | SHRINK | GROW | WRITE (fcntl(2))


# With --max-memory, /proc/meminfo describes a machine of that size (meminfo_view):
# no page cache, no swap, no shared memory of its own.
_MEMINFO_ZERO = frozenset((b"Buffers", b"Cached", b"SwapCached", b"SwapTotal", b"SwapFree", b"Shmem",
                           b"SReclaimable", b"Zswap", b"Zswapped", b"Active(file)", b"Inactive(file)"))
_MEMINFO_AS = {b"Active": b"Active(anon)", b"Inactive": b"Inactive(anon)"}  # without the page cache


def meminfo_view(data: bytes, limit: int, used: int) -> bytes:
    """The host's /proc/meminfo as a machine of `limit` bytes whose sandbox uses `used`
    (the supervisor's last measure): MemTotal the limit (at most the host's),
    MemFree and MemAvailable what is left of it (at most the host's MemAvailable),
    no cache, swap or shared memory (so `free` adds up: used + free = total), every
    other size the host's, at most MemTotal.  Lines keep the kernel's layout."""
    fields = {}
    for line in data.splitlines():
        key, _, rest = line.partition(b":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == b"kB" and parts[0].isdigit():
            fields[key] = int(parts[0])
    total = min(limit >> 10, fields.get(b"MemTotal", limit >> 10))
    left = max(0, min(total - (used >> 10), fields.get(b"MemAvailable", total)))
    out = []
    for line in data.splitlines(keepends=True):
        key, colon, rest = line.partition(b":")
        if key not in fields:
            out.append(line)
            continue
        if key == b"MemTotal":
            value = total
        elif key in (b"MemFree", b"MemAvailable"):
            value = left
        elif key in _MEMINFO_ZERO:
            value = 0
        elif key in _MEMINFO_AS:
            value = min(fields.get(_MEMINFO_AS[key], 0), total)
        else:
            value = min(fields[key], total)
        width = len(rest) - len(rest.lstrip()) + len(str(fields[key]))  # the kernel's padding
        out.append(key + colon + str(value).encode().rjust(width) + b" kB\n")
    return b"".join(out)


def unescape(field: bytes) -> bytes:
    """A mount point as the kernel escapes it in mountinfo (\\040 for a space, ...)."""
    if b"\\" not in field:
        return field
    out, i = bytearray(), 0
    while i < len(field):
        if field[i:i + 1] == b"\\" and field[i + 1:i + 4].isdigit():
            out.append(int(field[i + 1:i + 4], 8) & 0xFF)
            i += 4
        else:
            out += field[i:i + 1]
            i += 1
    return bytes(out)


def filter_mounts(data: bytes, field: int, reachable: Callable[[bytes], bool]) -> bytes:
    """The lines of a host mountinfo (field 4) or mounts (field 1) table whose mount point
    the command can reach, and /proc itself; nothing mounted inside /proc."""
    out = []
    for line in data.splitlines(keepends=True):
        fields = line.split(b" ")
        if len(fields) <= field:
            continue
        point = unescape(fields[field])
        if point == b"/proc" or (not point.startswith(b"/proc/") and reachable(point)):
            out.append(line)
    return b"".join(out)


# --- made up for an emulated root (_rootfs.RootResolver._made_up) ---------------------------------

def root_mount_points(mounts: Iterable[Any]) -> List[Tuple[bytes, bytes, bytes, bytes]]:
    """(source, mount point, type, options) the guest of an emulated root sees: its "/",
    /proc, /dev, /dev/shm, /dev/pts, and `mounts` (_rootfs.Mount: .virt, .readonly)."""
    points = [(b"rootfs", b"/", b"rootfs", b"rw"), (b"proc", b"/proc", b"proc", b"rw,nosuid,nodev,noexec"),
              (b"dev", b"/dev", b"tmpfs", b"rw,nosuid"), (b"shm", b"/dev/shm", b"tmpfs", b"rw,nosuid,nodev"),
              (b"devpts", b"/dev/pts", b"devpts", b"rw,nosuid,noexec")]
    for m in sorted(mounts, key=lambda m: m.virt):
        points.append((b"none", m.virt, b"bind", b"ro" if m.readonly else b"rw"))
    return points


def mounts_table(points: Iterable[Tuple[bytes, bytes, bytes, bytes]]) -> bytes:
    """/proc/PID/mounts of root_mount_points."""
    return b"".join(b"%s %s %s %s 0 0\n" % point for point in points)


def mountinfo_table(points: Iterable[Tuple[bytes, bytes, bytes, bytes]]) -> bytes:
    """/proc/PID/mountinfo of root_mount_points."""
    lines = []
    for index, (source, point, kind, options) in enumerate(points, 1):
        parent = 1 if index > 1 else 0
        lines.append(b"%d %d 0:%d / %s %s - %s %s %s\n" % (index, parent, index, point, options, kind, source,
                                                          options))
    return b"".join(lines)


def rewrite_maps(lines: Iterable[bytes], fd: int, guest_name: Callable[[bytes], bytes]) -> None:
    """Write `lines` of a maps file to fd with guest_name(path) for each host path (a line
    is at most a few hundred bytes plus a path of at most PATH_MAX: bounded memory)."""
    from . import _elf  # (already imported with a root: the supervisor is confined by now)
    out = b""
    for line in lines:
        end = b"\n" if line.endswith(b"\n") else b""
        line = line[:len(line) - len(end)]
        slash = line.find(b" /")
        if slash > 0 and line[:slash].count(b" ") >= 4:
            path = line[slash + 1:]
            line = line[:slash + 1] + guest_name(path)
        out += line + end
        if len(out) >= 65536:
            _elf.write_all(fd, out)
            out = b""
    _elf.write_all(fd, out)


# --- /proc/PID/net (README "Network views") ----------------------------------------------------------
#
# The files below /proc/PID/net describe the whole network namespace, which
# the sandbox shares with the host.  Socket tables: the header line and the
# rows whose inode is a socket some process of the sandbox holds (an fd
# linking to socket:[N]), byte for byte as the kernel wrote them.  Interface
# files: with no network allowed, what a namespace holding only lo shows
# (counters zero); with some network, the real file.  Anything else: EACCES.

SOCKET_TABLES = {  # file -> index of the inode among a row's whitespace-separated fields
    b"tcp": 9, b"tcp6": 9, b"udp": 9, b"udp6": 9, b"udplite": 9, b"udplite6": 9, b"raw": 9, b"raw6": 9,
    b"icmp": 9, b"icmp6": 9, b"unix": 6, b"packet": 8, b"netlink": 9,
}
INTERFACE_FILES = frozenset((b"dev", b"if_inet6", b"route", b"ipv6_route", b"arp"))
SOCKETS_CAP = 1 << 16   # socket inodes collected for one read (EFBIG beyond)
_LO_DEV = b"%6s:%8d %7d %4d %4d %4d %5d %10d %9d %8d %7d %4d %4d %4d %5d %7d %10d\n" % ((b"lo",) + (0,) * 16)
_LO_INET6 = b"00000000000000000000000000000001 01 80 10 80       lo\n"


def net_view(what: bytes, fd: int, processes: Callable[[], Iterable[int]], network_allowed: bool,
             socket_names: Optional[Dict[bytes, bytes]] = None) -> Optional[int]:
    """Content of /proc/PID/net/`what` (`what` below net/) from our fd of the real file:
    a sealed memfd, or None to hand out the real file.  `socket_names`: the guest's
    names of unix sockets bound on behalf in an emulated root (the kernel's name ->
    the guest's), shown in the unix table's Path column.

    Raises:
        OSError(EACCES): a file that shows host state and has no view.
        OSError(EFBIG): more than SOCKETS_CAP sockets in the sandbox.
    """
    if what in SOCKET_TABLES:
        inodes = socket_inodes(processes())
        rows = _rows(fd, lambda row: _inode(row, SOCKET_TABLES[what]) in inodes)
        if what == b"unix" and socket_names:
            rows = (_unix_path(row, socket_names) for row in rows)
        return memfd(what, b"".join(rows))
    if what in INTERFACE_FILES:
        if network_allowed:
            return None
        if what == b"dev":
            return memfd(what, b"".join(_rows(fd, lambda row: False, header=2)) + _LO_DEV)
        if what == b"if_inet6":
            return memfd(what, _LO_INET6)
        if what == b"ipv6_route":
            return memfd(what, b"")
        return memfd(what, b"".join(_rows(fd, lambda row: False)))  # route, arp: the header line
    raise os_error(errno.EACCES)


# /proc/sys/net names the host's interfaces: a directory per interface under conf/ and
# neigh/ of ipv4 and ipv6.  With no network allowed the sandbox sees lo only (as the
# interface files above): those directories cannot be listed (EACCES) and an entry
# other than all, default and lo is absent (ENOENT), for every open, O_PATH included.
SYS_NET_PER_INTERFACE = (b"sys/net/ipv4/conf", b"sys/net/ipv6/conf", b"sys/net/ipv4/neigh", b"sys/net/ipv6/neigh")
SYS_NET_SHOWN = frozenset((b"all", b"default", b"lo"))


def sys_net_check(what: bytes, flags: int) -> None:
    """Raise for /proc/`what` (below /proc) if it names or lists a host interface (see above)."""
    for top in SYS_NET_PER_INTERFACE:
        if what == top:
            if not flags & os.O_PATH:
                raise os_error(errno.EACCES)
        elif what.startswith(top + b"/") and what[len(top) + 1:].split(b"/", 1)[0] not in SYS_NET_SHOWN:
            raise os_error(errno.ENOENT)


def socket_inodes(pids: Iterable[int]) -> Set[int]:
    """Inodes of the sockets the processes `pids` hold (their fds linking to socket:[N])."""
    out = set()
    for pid in pids:
        try:
            entries = os.scandir(b"/proc/%d/fd" % pid)
        except OSError:
            continue  # gone meanwhile
        with entries:
            for entry in entries:
                try:
                    link = os.readlink(entry.path)
                except OSError:
                    continue
                if link.startswith(b"socket:[") and link.endswith(b"]") and link[8:-1].isdigit():
                    out.add(int(link[8:-1]))
                    if len(out) > SOCKETS_CAP:
                        raise os_error(errno.EFBIG)
    return out


def _unix_path(row: bytes, names: Dict[bytes, bytes]) -> bytes:
    """A unix table row with the guest's name in its Path column (after the 7th field)."""
    line = row.rstrip(b"\n")
    parts = line.split(None, 7)
    if len(parts) < 8 or parts[7] not in names:
        return row
    return line[:len(line) - len(parts[7])] + names[parts[7]] + b"\n"


def _inode(row: bytes, index: int) -> int:
    fields = row.split(None, index + 1)
    return int(fields[index]) if len(fields) > index and fields[index].isdigit() else -1


def _rows(fd: int, keep: Callable[[bytes], bool], header: int = 1) -> Iterable[bytes]:
    """The first `header` lines of the file and the other lines `keep` accepts, read in
    pieces (a host with many sockets has a long table: only kept lines are held)."""
    rest = b""
    seen = 0
    while True:
        chunk = os.read(fd, 1 << 16)
        if chunk:
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            if len(rest) > 1 << 16:
                raise os_error(errno.EFBIG)  # no line of these files is that long
        else:
            lines = [rest] if rest else []
        for line in lines:
            seen += 1
            if seen <= header or keep(line):
                yield line + b"\n"
        if not chunk:
            return


# --- the machine's CPUs and its time (README "CPU", "Uptime and load") ---------------------------
#
# With --num-cpus N the machine has CPUs 0..N-1; view CPU k stands for the real CPU
# base[k % len(base)] (base: --cpu-cores, else the CPUs sandlock may use), so N may be
# more or fewer than the host has.

def cpu_list(count: int) -> bytes:
    """/sys/devices/system/cpu/online (possible, present) of a machine of `count` CPUs."""
    return b"0\n" if count == 1 else b"0-%d\n" % (count - 1)


def cpuinfo_view(data: bytes, base: Tuple[int, ...], count: int) -> bytes:
    """/proc/cpuinfo of `count` CPUs: view CPU k is the block of real CPU base[k % len],
    numbered k, one package of `count` cores (siblings, cpu cores, core id, apicid agree).
    A block is the lines from one "processor" line to the next; lines before the first
    and after the last block (arm64's, s390's) stay as they are."""
    lines = data.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.split(b":")[0].strip() == b"processor"]
    if not starts:
        return data
    blocks: Dict[int, List[bytes]] = {}
    tail: List[bytes] = []
    for n, start in enumerate(starts):
        block = lines[start:starts[n + 1] if n + 1 < len(starts) else len(lines)]
        number = block[0].split(b":", 1)[1].strip()
        if n + 1 == len(starts):  # the last block ends at its blank line
            end = next((i + 1 for i, line in enumerate(block) if not line.strip()), len(block))
            block, tail = block[:end], block[end:]
        if number.isdigit():
            blocks[int(number)] = block
    first = next(iter(blocks.values()))
    out = lines[:starts[0]]
    for k in range(count):
        for line in blocks.get(base[k % len(base)], first):
            key, colon, _ = line.partition(b":")
            name = key.strip()
            value = {b"processor": k, b"core id": k, b"apicid": k, b"initial apicid": k,
                     b"siblings": count, b"cpu cores": count, b"physical id": 0}.get(name)
            out.append(line if value is None or not colon else key + b": %d\n" % value)
    return b"".join(out + tail)


def stat_view(data: bytes, base: Tuple[int, ...], count: int) -> bytes:
    """/proc/stat of `count` CPUs: lines cpu0..cpu<count-1> (view CPU k the line of real
    CPU base[k % len]) and the "cpu" line their sum; every other line the kernel's."""
    lines = data.splitlines(keepends=True)
    real: Dict[int, List[int]] = {}
    for line in lines:
        head, _, rest = line.partition(b" ")
        if head.startswith(b"cpu") and head[3:].isdigit():
            real[int(head[3:])] = [int(x) for x in rest.split()]
    if not real:
        return data
    width = len(next(iter(real.values())))
    rows = [real.get(base[k % len(base)], [0] * width) for k in range(count)]
    total = [sum(row[i] for row in rows) for i in range(width)]
    cpus = [b"cpu  " + b" ".join(b"%d" % x for x in total) + b"\n"]
    cpus += [b"cpu%d " % k + b" ".join(b"%d" % x for x in row) + b"\n" for k, row in enumerate(rows)]
    out: List[bytes] = []
    for line in lines:
        if line.startswith(b"cpu"):
            out.extend(cpus)
            cpus = []
        else:
            out.append(line)
    return b"".join(out)


def uptime_file(uptime: float, idle: float) -> bytes:
    """/proc/uptime: seconds since the start and idle CPU-seconds, two decimals."""
    return b"%.2f %.2f\n" % (uptime, idle)


def loadavg_file(loads: Tuple[float, float, float], running: int, threads: int, last_pid: int) -> bytes:
    """/proc/loadavg: three loads, running/threads and the last pid."""
    return b"%.2f %.2f %.2f %d/%d %d\n" % (loads + (running, threads, last_pid))


def btime_view(data: bytes, shift: float) -> bytes:
    """/proc/stat with btime moved `shift` seconds later (the sandbox's start: README
    "Uptime and load"); every other line as given."""
    out = []
    for line in data.splitlines(keepends=True):
        if line.startswith(b"btime ") and line[6:].strip().isdigit():
            line = b"btime %d\n" % (int(line[6:]) + round(shift))
        out.append(line)
    return b"".join(out)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
STARTTIME = 19  # index of starttime (field 22 of proc(5)) among the fields after the comm


def pid_stat_view(data: bytes, shift_ticks: int) -> bytes:
    """/proc/PID/stat with its start time counted from the sandbox's start, `shift_ticks`
    clock ticks after the host's boot (at least 0); the rest byte for byte."""
    end = data.rfind(b")")
    if end < 0:
        return data
    fields = data[end + 2:].split(b" ")
    if len(fields) <= STARTTIME or not fields[STARTTIME].isdigit():
        return data
    fields[STARTTIME] = b"%d" % max(0, int(fields[STARTTIME]) - shift_ticks)
    return data[:end + 2] + b" ".join(fields)
