"""Path resolution on behalf of a tracee, and the filesystem policy decision.

`lookup` turns the tracee's (dirfd, path) into an O_PATH fd held by the
supervisor: relative paths start from the tracee's own cwd or dirfd (fetched
as fds, never as strings), absolute ones from "/".  The kernel resolves with
openat2(2) under the supervisor thread's own Landlock domain and
RESOLVE_NO_MAGICLINKS, so a magic link of the supervisor itself can never be
followed; the only magic links followed are /proc/<pid>/{fd/N,cwd,exe,root,ns/*}
of processes of the sandbox, recognised lexically (with /proc/self and
/proc/thread-self rewritten to the tracee).

`FsRules` decides on the object's real path (d_path of the fd, or the path
itself when openat2 proved it has no symlink): what Landlock would allow
if it covered the operation.  Metadata (stat, readlink, access F_OK, chdir,
xattr reads) is allowed on objects under a read or write rule and on the
directories above a rule (so path walks, getcwd and realpath work); writes of
metadata (chmod, chown, utimes, xattrs) need a write rule; a denied path
loses everything, including through a hard link (same device and inode).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Optional, Set, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _threads  # threading's parts, without its import (README "Start-up")
from . import _procfs
from . import _scratch
from . import _structs as S
from . import _syscalls
from ._syscalls import closed_on_error
from ._errors import os_error
from ._notif import AT_EMPTY_PATH, AT_FDCWD, Call, Tracees, tgid_of

if TYPE_CHECKING:
    from . import _fakeroot

_O_PATH = os.O_PATH | os.O_CLOEXEC
_O_PATH_NOFOLLOW = _O_PATH | os.O_NOFOLLOW
_DIGITS = b"0123456789"
_NS_NAME = b"abcdefghijklmnopqrstuvwxyz_"


def _span(path: bytes, start: int, chars: bytes) -> int:
    """The end of the run of `chars` in path from `start` (start itself when there is none)."""
    end = start
    while end < len(path) and path[end] in chars:
        end += 1
    return end


def _magic(path: bytes) -> Optional[Tuple[int, int]]:
    """(pid, end) when path starts with a magic link of /proc/PID, [task/TID/] fd/N, cwd,
    exe, root or ns/NAME, followed by '/' (end after it) or nothing (a final newline may
    follow, as re's $ allows): what the pattern ^/proc/(\\d+)/(?:task/\\d+/)?(?:fd/\\d+|cwd|
    exe|root|ns/[a-z_]+)(?:/|$) matched, its group and end (without re, README "Start-up";
    tests/test_start_matchers_unit.py holds the two equal)."""
    if not path.startswith(b"/proc/"):
        return None
    at = _span(path, 6, _DIGITS)
    if at == 6 or path[at:at + 1] != b"/":
        return None
    pid = int(path[6:at])
    at += 1
    if path.startswith(b"task/", at):
        end = _span(path, at + 5, _DIGITS)
        if end > at + 5 and path[end:end + 1] == b"/":
            at = end + 1
    if path.startswith(b"fd/", at):
        end = _span(path, at + 3, _DIGITS)
        if end == at + 3:
            return None
    elif path.startswith((b"cwd", b"exe"), at):
        end = at + 3
    elif path.startswith(b"root", at):
        end = at + 4
    elif path.startswith(b"ns/", at):
        end = _span(path, at + 3, _NS_NAME)
        if end == at + 3:
            return None
    else:
        return None
    if end == len(path) or path[end:] == b"\n":
        return pid, end
    return (pid, end + 1) if path[end:end + 1] == b"/" else None


def _proc_pid(name: bytes) -> Optional[int]:
    """PID when name is /proc/PID or a path under it, without a newline but a final one: what
    ^/proc/(\\d+)(/.*)?$ matched (without re, README "Start-up"; tests/test_start_matchers_unit.py)."""
    if not name.startswith(b"/proc/"):
        return None
    at = _span(name, 6, _DIGITS)
    rest = name[at:-1] if name.endswith(b"\n") else name[at:]
    if at == 6 or (rest and (rest[:1] != b"/" or b"\n" in rest)):
        return None
    return int(name[6:at])


class Held(bytes):
    """The real path of an object reached through a magic link of the sandbox's
    own process (/proc/self/fd/N, cwd, exe): its metadata may be read like
    fstat's, but writes and content are decided on the path as usual."""


def _eacces(rule: str = "", path: bytes = b"") -> OSError:
    """EACCES; `rule` and `path` name the refusal in the denial report (README "Results and denials")."""
    return os_error(errno.EACCES, rule or None, os.fsdecode(path) if path else None)


_NOT_GRANTED = {"write": "no write rule (-w) covers it", "read": "no read rule (-r, the default view) covers it",
                "meta": "no rule covers it"}


class Tops(frozenset):
    """Directories (real paths, as the rules name them) a rule covers with all below them.

    covers(path) is one C call (bytes.startswith with a tuple) where walking up the
    path's components took one slice and lookup each (a file deep in a git tree: ~10).
    """

    __slots__ = ("_all", "_below")

    def __init__(self, paths: Iterable[bytes] = ()) -> None:  # (frozenset.__new__ took paths)
        super().__init__()
        self._all = b"/" in self
        self._below = tuple(top + b"/" for top in self if top != b"/")

    def covers(self, path: bytes) -> bool:
        """Is the absolute `path` one of these or below one?"""
        return self._all or path in self or path.startswith(self._below)


class FsRules:
    """The filesystem part of a policy, as decisions on real paths."""

    def __init__(self, readable: Iterable[str], writable: Iterable[str], denied: Iterable[str],
                 hidden: Iterable[str] = (), own: Iterable[str] = ()) -> None:
        # hidden: sandlock's own directories (_scratch.hidden), refused for every need
        # whatever the rules say, except the run's own pieces in them (own)
        self.hidden = Tops(os.fsencode(p) for p in hidden)
        self.own = Tops(os.fsencode(p) for p in own)
        self.writable = Tops(os.fsencode(p) for p in writable)
        self.readable = Tops([os.fsencode(p) for p in readable] + list(self.writable))
        self.denied = Tops(os.fsencode(p) for p in denied)
        self.ancestors = frozenset(a for p in self.readable for a in _ancestors(p))
        self.cut = frozenset(a for p in self.denied for a in _ancestors(p))  # directories cut around a deny
        # the rules that name a path in one of sandlock's containers (see foreign)
        self.boxed = tuple(p for p in self.readable | self.own if _boxed(p))
        self.denied_inodes: Set[Tuple[int, int]] = set()
        for path in self.denied:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                self.denied_inodes.add((st.st_dev, st.st_ino))

    def is_denied(self, path: bytes) -> bool:
        return self.denied.covers(path) or self.foreign(path)

    def foreign(self, path: bytes, itself: bool = False) -> bool:
        """Is path in a container of sandlock's (_scratch.reserved) that is not this run's?

        A workdir's container (README "Where sandlock keeps its own files") holds
        what a run wrote and has not committed (a --dry-run's changes, a kept
        run's): no other sandbox reaches below it, whatever its rules cover, unless
        a rule of its own names a path inside (the run's own upper layer does).  The
        container itself may be seen (ls -l of the workdir lists it); one held by a
        directory cut around a denied path is cut out whole, as _landlock cuts it: it
        may hold hard links to the denied files.  itself: the container itself
        counts too (a name a rename or link would change).
        """
        if b"/.sandlock-" not in path:
            return False
        for top in self.boxed:
            if path == top or path.startswith(top + b"/"):
                return False  # a rule of its own inside (checked by the caller like any path)
        at = 0
        while True:
            at = path.find(b"/.sandlock-", at)
            if at < 0:
                return False
            end = path.find(b"/", at + 1)
            if _scratch.reserved(os.fsdecode(path[at + 1:] if end < 0 else path[at + 1:end])):
                return end >= 0 or itself or (path[:at] or b"/") in self.cut
            at += 1

    def check(self, path: bytes, need: str) -> None:
        """Raise EACCES unless `need` ("meta", "read", "write") is allowed on `path`."""
        if self.denied and self.denied.covers(path):
            raise _eacces("--fs-deny", path)
        if self.foreign(path, itself=need == "write"):
            raise _eacces("sandlock's own directories are hidden", path)
        if self.hidden and self.hidden.covers(path) and not self.own.covers(path):
            raise _eacces("sandlock's own directories are hidden", path)
        if need == "write":
            ok = self.writable.covers(path)
        elif need == "read":
            ok = self.readable.covers(path)
        else:
            ok = self.readable.covers(path) or path in self.ancestors
        if not ok:
            raise _eacces(_NOT_GRANTED[need], path)

    def check_inode(self, st_dev: int, st_ino: int) -> None:
        if (st_dev, st_ino) in self.denied_inodes:
            raise _eacces("--fs-deny (a hard link or another name of a denied file)")


def _boxed(path: bytes) -> bool:
    """Does path pass through a container of sandlock's (_scratch.reserved)?"""
    return any(_scratch.reserved(os.fsdecode(c)) for c in path.split(b"/") if c.startswith(b".sandlock-"))


def _ancestors(path: bytes) -> Iterable[bytes]:
    while path != b"/":
        path = path[:path.rindex(b"/")] or b"/"
        yield path


def d_path(fd: int, fds: int = -1) -> bytes:
    """The kernel's name for what fd refers to (readlink of /proc/self/fd/N; fds: an fd of
    our /proc/self/fd to read it from, Resolver.fd_name)."""
    name = os.readlink(b"%d" % fd, dir_fd=fds) if fds >= 0 else os.readlink(f"/proc/self/fd/{fd}".encode())
    if name.endswith(b" (deleted)"):
        name = name[: -len(b" (deleted)")]
    return name


class Devices:
    """The device nodes the sandbox may open (README "What the sandbox allows").

    Decided on the object itself (fstat of the fd the supervisor holds, so
    no name can be swapped):

    - the host's allowed nodes by (st_dev, st_ino), which a copy made with
      mknod (in a root image, a workdir, any granted tree) never has;
    - sandlock's own terminals: the ptys its stdin, stdout, stderr are now
      (it holds them open, so their numbers stay theirs for the whole run);
    - the ptys the sandbox allocated through /dev/ptmx in this run
      (`allocated`): the supervisor keeps an O_PATH fd of each one's node.
      When a pty goes, the kernel unlinks its node (st_nlink 0), and only
      then may its number be given to another session: so a number is the
      sandbox's while the node we hold is still linked.  At most KEPT are
      kept (gone ones are dropped first, then the oldest, which can then no
      longer be opened by name).
    """

    KEPT = 64
    PTMX_RDEV = os.makedev(5, 2)      # TTYAUX_MAJOR, minor 2: /dev/ptmx
    PTS_MAJORS = range(136, 144)      # UNIX98_PTY_SLAVE_MAJOR, 8 majors of 256 minors

    def __init__(self, paths: Iterable[str], ptys: str) -> None:
        self.ptys_dir = os.fsencode(ptys)
        try:
            self.pts_dev = os.stat(ptys).st_dev
        except OSError:
            self.pts_dev = -1
        ours = set()
        for fd in (0, 1, 2):
            try:
                st = os.fstat(fd)
            except OSError:
                continue
            number = self._pty_number(st)
            if number is not None:
                ours.add(number)
        self.nodes: Set[Tuple[int, int]] = set()
        self._terminals: Set[int] = set()
        for path in paths:
            try:
                st = os.stat(path)
            except OSError:
                continue
            number = self._pty_number(st)
            if number is not None:
                if number in ours:  # (a pty of the prepared policy sandlock no longer holds: not ours)
                    self._terminals.add(number)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                self.nodes.add((st.st_dev, st.st_ino))
        self._ptys: Dict[int, int] = {}  # number -> O_PATH fd, oldest first
        self._lock = _threads.Lock()

    def close(self) -> None:
        with self._lock:
            while self._ptys:
                os.close(self._ptys.popitem()[1])

    def _pty_number(self, st: os.stat_result) -> Optional[int]:
        """The number of a /dev/pts/N node, else None."""
        if stat.S_ISCHR(st.st_mode) and st.st_dev == self.pts_dev and os.major(st.st_rdev) in self.PTS_MAJORS:
            return (os.major(st.st_rdev) - self.PTS_MAJORS[0]) * 256 + os.minor(st.st_rdev)
        return None

    def check(self, fd: int, mode: int) -> None:
        """EACCES unless fd (of file type `mode`) is no device or an allowed one."""
        if not (stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            return
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in self.nodes:
            return
        number = self._pty_number(st)
        if number is not None:
            if number in self._terminals:
                return
            with self._lock:
                held = self._ptys.get(number)
                # fd was opened before this check: if our node is still linked now,
                # the number was ours all along, so fd is our pty
                if held is not None and os.fstat(held).st_nlink > 0:
                    return
        raise _eacces("a device the policy does not grant")

    def allocated(self, fd: int, mode: int) -> None:
        """fd is about to be handed to the sandbox: if it is a /dev/ptmx master, its
        pseudo-terminal is the sandbox's (the master we hold keeps the number ours
        while we take its node)."""
        if not stat.S_ISCHR(mode) or os.fstat(fd).st_rdev != self.PTMX_RDEV:
            return
        raw = bytearray(4)
        fcntl.ioctl(fd, S.TIOCGPTN, raw)
        number = int.from_bytes(raw, sys.byteorder)
        node = os.open(self.ptys_dir + b"/%d" % number, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        with self._lock:
            old = self._ptys.pop(number, None)
            if old is not None:
                os.close(old)
            self._ptys[number] = node
            for gone in [n for n, held in self._ptys.items() if os.fstat(held).st_nlink == 0]:
                if len(self._ptys) <= self.KEPT:
                    break
                os.close(self._ptys.pop(gone))
            while len(self._ptys) > self.KEPT:
                os.close(self._ptys.pop(next(iter(self._ptys))))  # the oldest


_MACHINE_FILES = frozenset((b"uptime", b"loadavg", b"cpuinfo", b"stat"))
_CPU_LISTS = frozenset(b"/sys/devices/system/cpu/" + name for name in (b"online", b"possible", b"present"))


class Resolver:
    """Looks paths up for tracees and decides on the objects found."""

    fake: Optional["_fakeroot.Owners"] = None  # with --fake-root (README "Fake root")
    # with --hostname (_identity): what /proc/sys/kernel/hostname and the hostname file
    # (by its host path, or the (device, inode) it had at the start) hold when read
    hostname: Optional[bytes] = None
    hostname_path: Optional[bytes] = None
    hostname_file: Optional[Tuple[int, int]] = None
    determinism: Optional[Any] = None  # _determinism.Determinism with --random-seed / --time-start
    listings: Optional[Any] = None     # _determinism.Listings with --deterministic-dirs
    # with --max-memory: /proc/meminfo is a machine of this size (_procfs.meminfo_view),
    # using what the supervisor measured last
    memory_limit: Optional[int] = None
    memory_used = 0
    # /proc/uptime and /proc/loadavg of the sandbox (_identity.Machine, README "Uptime and load")
    machine: Any = None
    # with --num-cpus: (real CPUs the view stands on, N) for /proc/cpuinfo, /proc/stat and
    # /sys/devices/system/cpu/{online,possible,present} (README "CPU")
    cpu_view: Optional[Tuple[Tuple[int, ...], int]] = None

    def __init__(self, rules: FsRules, tracees: Tracees, is_member: Callable[[int], bool],
                 hot: "_syscalls.HotCalls", processes: Optional[Callable[[], List[int]]] = None,
                 listing_top: "Union[bytes, Callable[[], str], None]" = None) -> None:
        self.hot = hot
        self.rules = rules
        self.tracees = tracees
        self.is_member = is_member
        self.root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        # our own fd table, to reopen an O_PATH fd by its number (reopen; made on first use,
        # closed by close(), or by __del__ for a resolver let go without it)
        self._own_fds = -1
        self._own_fds_lock = _threads.Lock()  # two receiving threads' first reopen make one
        self.proc_dev = os.stat("/proc").st_dev
        self.dev_links = _dev_links()
        self.devices = Devices((), "/dev/pts")  # the run's (see _supervisor): none until then
        # /proc (see _procfs): listings are made in listing_top, a directory of the
        # run's scratch (or made by it on the first listing); boot_id is this run's own
        self.processes = processes if processes is not None else lambda: []
        self._make_listing_top = listing_top if callable(listing_top) else None
        self.listing_top = os.fsencode(listing_top) if isinstance(listing_top, (bytes, str)) else None
        self.boot_id = _procfs.new_boot_id()
        # /proc/PID/net (_procfs.net_view): the sandbox's processes, and whether the
        # policy allows some network (set by the supervisor)
        self.net_processes: Callable[[], List[int]] = lambda: []
        self.network_allowed = False
        # an emulated root's (_rootfs.RootResolver); the same for every handler, empty here:
        self.socket_names: Dict[bytes, bytes] = {}  # name a unix socket was bound as -> guest path
        self.upper: Any = None  # _cow.Upper with a workdir
        self._listings = 0
        self._listings_lock = _threads.Lock()

    def close(self) -> None:
        os.close(self.root)
        with self._own_fds_lock:
            own, self._own_fds = self._own_fds, -1
            if own >= 0:
                os.close(own)
        self.devices.close()

    def __del__(self, _close: Callable[[int], None] = os.close) -> None:
        # (not weakref.finalize: the start path does not import weakref, README "Start-up")
        own = getattr(self, "_own_fds", -1)  # -1: closed, never made, or __init__ failed first
        if own >= 0:
            self._own_fds = -1
            try:
                _close(own)
            except OSError:
                pass

    def own_fd_table(self) -> int:
        """Our /proc/self/fd, made on first use (reopen, fd_name; RunContext.open makes it)."""
        own = self._own_fds
        if own < 0:
            with self._own_fds_lock:
                own = self._own_fds
                if own < 0:
                    # one handle (two threads making theirs at once would leave one of
                    # them to a close of whatever fd had its number by then)
                    own = os.open("/proc/self/fd", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                    self._own_fds = own
        return own

    def reopen(self, fd: int, flags: int) -> int:
        """open(/proc/self/fd/FD, flags): the object of our O_PATH fd, opened for real (the
        walk starts at our /proc/self/fd: ~1 us less than the whole path)."""
        return os.open(b"%d" % fd, flags, dir_fd=self.own_fd_table())

    def fd_name(self, fd: int) -> bytes:
        """d_path(fd), read from our /proc/self/fd (2.8 us here against 3.8 for the
        whole path): the name of a directory fd of the command's, on every open of
        a path relative to one and every lstat of an entry in a root (find, ls -l)."""
        return d_path(fd, self.own_fd_table())

    def self_link(self, call: Call) -> Optional[bytes]:
        """readlink's answer for the caller's own /proc/self without a lookup (None:
        look it up; on the host it is the link itself)."""
        return None

    def shown_link(self, fd: int, st: "_syscalls.Stat", target: bytes) -> bytes:
        """What readlink shows of the symlink `fd` (target: its content): on the host, that."""
        return target

    def path_only_flags(self, call: Call, flags: int, resolve: int) -> int:
        """The open flags an O_PATH open is done with: on the host, its own (the
        kernel opens it after the supervisor decided, _fsops._open_path_only)."""
        return flags

    def reported(self, st: "_syscalls.Stat") -> "_syscalls.Stat":
        """The stat the command is given for an object whose kernel stat is st
        (_rootfs.RootResolver: the emulated /dev's own device number)."""
        return st

    def reported_statx(self, st: "_syscalls.Stat", raw: bytes) -> bytes:
        """reported() for the struct statx raw of the same object."""
        return raw

    # -- bases ----------------------------------------------------------------------

    def base(self, call: Call, dirfd: int) -> int:
        """An fd for the directory a relative path starts from (caller closes it)."""
        if dirfd == AT_FDCWD:
            fd = os.open(f"/proc/{call.tid}/cwd", os.O_PATH | os.O_CLOEXEC)
            try:
                self.tracees.confirm()  # the caller's cwd, not that of a task with its tid
            except OSError:  # by hand, not closed_on_error: the path of every relative path (~0.2 us)
                os.close(fd)
                raise
            return fd
        return self.tracees.getfd(call.tid, dirfd)

    def _rewrite_self(self, call: Call, path: bytes) -> bytes:
        if path.startswith(b"/dev/") and self.dev_links:
            # /dev/fd/N, /dev/stdin: links into /proc/self, which the supervisor
            # must not resolve as itself (it would get ELOOP: no magic links)
            for link, target in self.dev_links:
                if path.startswith(link) and path[len(link):len(link) + 1] in (b"", b"/"):
                    path = target + path[len(link):]
                    break
        if path.startswith(b"/proc/"):
            return _procfs.rewrite_links(path, tgid_of(call.tid), call.tid)
        return path

    # -- lookup -----------------------------------------------------------------------

    def lookup(self, call: Call, dirfd: int, path: bytes, nofollow: bool, flags: int = 0,
               extra: int = 0) -> Tuple[int, Optional[bytes]]:
        """(O_PATH fd, real path or None for a non-path object) of what the tracee names.

        `flags` are the syscall's AT_* flags (AT_EMPTY_PATH is honoured);
        `extra` adds open flags (O_DIRECTORY).  The caller closes the fd.
        """
        if not path:
            if not flags & AT_EMPTY_PATH:
                raise os_error(errno.ENOENT)
            fd = self.base(call, dirfd)
            try:
                return fd, self._name_of(fd)
            except BaseException:  # by hand, not closed_on_error: the path of every fstat (~0.2 us)
                os.close(fd)
                raise
        open_flags = os.O_PATH | os.O_CLOEXEC | extra | (os.O_NOFOLLOW if nofollow else 0)
        return self.open(call, dirfd, path, open_flags, 0, 0)

    def stat_plain(self, path: bytes, nofollow: bool) -> Optional["_syscalls.Stat"]:
        """The stat of an absolute, clean, symlink-free path outside /proc, else None
        (look it up the general way): open_plain and fstat in one prepared call."""
        if not _clean(path) or path.startswith(b"/proc/"):
            return None
        while True:
            try:
                return self.hot.stat_plain(self.root, path, nofollow)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    return None
                if exc.errno != errno.EINTR:
                    raise

    def open(self, call: Call, dirfd: int, path: bytes, flags: int, mode: int,
             resolve: int) -> Tuple[int, Optional[bytes]]:
        """openat2(2) of the tracee's (dirfd, path) by the supervisor: (fd, real path or None).

        What lies in /proc is what the sandbox may see of it (_procfs): a path of
        another process is ENOENT, /proc itself a listing of the sandbox's processes.
        """
        if not path:
            raise os_error(errno.ENOENT)
        flags |= os.O_CLOEXEC
        scoped = resolve & (S.RESOLVE_BENEATH | S.RESOLVE_IN_ROOT)
        if path[:1] == b"/" and not scoped:
            path = self._rewrite_self(call, path)
            if _clean(path) and not _procfs.is_proc(path) and not resolve:
                try:
                    fd = self.hot.openat2(self.root, path, flags, mode, S.RESOLVE_NO_SYMLINKS)
                    return fd, path
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        raise
            fd, name = self._open_from(self.root, path, flags, mode, resolve, scoped)
        else:
            base = self.base(call, dirfd)
            try:
                try:
                    fd, name = self._open_from(base, path, flags, mode, resolve, scoped)
                    if name is not None and not scoped and self.listing_top is not None:
                        mapped = _procfs.listing_of(name, self.listing_top)
                        if mapped is not None and not (flags & os.O_NOFOLLOW and stat.S_ISLNK(os.fstat(fd).st_mode)):
                            os.close(fd)  # an entry of a listing: the /proc object it stands for
                            return self.open(call, AT_FDCWD, mapped, flags, mode, resolve)
                    if name is not None and _procfs.is_proc(name):
                        return self._proc_view(call, fd, name, flags)
                    return fd, name
                except OSError as exc:
                    if scoped or exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                        raise
                    top = self._proc_dir(base)
                    if top is None:
                        raise
                    # relative to a directory of /proc or of a listing: "self", "net" and
                    # the pids must be the caller's, so the path is made absolute
                    return self.open(call, AT_FDCWD, top + b"/" + path, flags, mode, resolve)
            finally:
                os.close(base)
        if name is not None and _procfs.is_proc(name):
            return self._proc_view(call, fd, name, flags)
        return fd, name

    def _open_from(self, base: int, path: bytes, flags: int, mode: int, resolve: int,
                   scoped: int) -> Tuple[int, Optional[bytes]]:
        magic = S.RESOLVE_NO_MAGICLINKS
        match = _magic(path) if path[:1] == b"/" and not scoped else None
        if match:
            if not self.is_member(match[0]):
                raise os_error(errno.ENOENT)  # another process (_procfs)
            magic = 0  # a magic link of the sandbox's own process
        fd = self.hot.openat2(base, path, flags, mode, resolve | magic)
        try:
            name = self._name_of(fd)
        except BaseException:  # by hand, not closed_on_error: the path of every open (~0.2 us)
            os.close(fd)
            raise
        if not magic and match and match[1] == len(path) and not flags & os.O_NOFOLLOW and name:
            # What a process of the sandbox holds (its fd, cwd, exe): reading
            # its metadata is like fstat; anything else is decided on its
            # real path as usual (see check).
            return fd, Held(name)
        return fd, name

    def _proc_dir(self, base: int) -> Optional[bytes]:
        """The /proc path of a directory fd in /proc or in a listing, else None."""
        name = self._name_of(base)
        if name is None:
            return None
        if _procfs.is_proc(name) and os.fstat(base).st_dev == self.proc_dev:
            return name
        return _procfs.listing_of(name, self.listing_top)

    # -- /proc ------------------------------------------------------------------------------

    def _proc_view(self, call: Call, fd: int, name: bytes, flags: int) -> Tuple[int, Optional[bytes]]:
        """What the command gets for `fd`, our fd of the /proc object `name` (see _procfs).

        ENOENT for what it may not see; a listing for /proc itself and made-up
        content for a few files, when opened for reading; else fd itself.
        """
        with closed_on_error(fd):
            if self.hot.fstat(fd).dev != self.proc_dev:
                return fd, name
            pid, what = _procfs.classify(name, self.is_member)
            if pid is None and not self.network_allowed:
                _procfs.sys_net_check(what, flags)
            self.rules.check(name, "meta" if flags & os.O_PATH else "read")
            if flags & os.O_PATH or flags & os.O_ACCMODE != os.O_RDONLY or flags & (os.O_CREAT | os.O_TRUNC):
                return fd, name  # a lookup, or a write the rules decide
            if pid is None and not what:
                made = self._listing(call)
            elif pid is None and what == _procfs.BOOT_ID:
                made = _procfs.memfd(b"boot_id", self.boot_id)
            elif pid is None and what == _procfs.HOSTNAME and self.hostname is not None:
                made = _procfs.memfd(b"hostname", self.hostname)
            elif pid is None and what == _procfs.MEMINFO and self.memory_limit is not None:
                made = _procfs.memfd(what, _procfs.meminfo_view(_procfs.read_fd(fd), self.memory_limit,
                                                                self.memory_used))
            elif pid is None and what in _MACHINE_FILES and (self.machine is not None or self.cpu_view is not None):
                made = self._machine_file(what, fd)
                if made < 0:
                    return fd, name
            elif pid is not None:
                found = self._made_up(what, fd)
                if found is None:
                    return fd, name
                made = found
            else:
                return fd, name
        os.close(fd)
        return made, None

    def made_up_file(self, st: "_syscalls.Stat", name: Optional[bytes]) -> Optional[int]:
        """A memfd to hand out instead of the regular file `st` (host path `name`) opened
        for reading, or None: the hostname file with --hostname (_identity)."""
        if self.hostname is not None and (name == self.hostname_path or (st.dev, st.ino) == self.hostname_file):
            return _procfs.memfd(b"hostname", self.hostname)
        if self.cpu_view is not None and name in _CPU_LISTS:
            return _procfs.memfd(b"cpu-list", _procfs.cpu_list(self.cpu_view[1]))
        return None

    def _machine_file(self, what: bytes, fd: int) -> int:
        """/proc/uptime, /proc/loadavg (always), /proc/cpuinfo and /proc/stat (--num-cpus)
        as a sealed memfd, or -1 to hand out the real file."""
        machine, view = self.machine, self.cpu_view
        if what == b"uptime" and machine is not None:
            return _procfs.memfd(what, _procfs.uptime_file(*machine.uptime()))
        if what == b"loadavg" and machine is not None:
            return _procfs.memfd(what, _procfs.loadavg_file(*machine.loadavg()))
        if what == b"cpuinfo" and view is not None:
            return _procfs.memfd(what, _procfs.cpuinfo_view(_procfs.read_fd(fd), *view))
        if what == b"stat":
            data = _procfs.read_fd(fd)
            if view is not None:
                data = _procfs.stat_view(data, *view)
            if machine is not None:
                data = _procfs.btime_view(data, machine.shift())
            return _procfs.memfd(what, data)
        return -1

    def _listing(self, call: Call) -> int:
        if self.listing_top is None and self._make_listing_top is not None:
            self.listing_top = os.fsencode(self._make_listing_top())
        if self.listing_top is None:
            raise os_error(errno.EACCES)  # no scratch to list /proc in
        with self._listings_lock:
            self._listings += 1
            number = self._listings
        return _procfs.make_listing(self.listing_top, number, self.processes(), tgid_of(call.tid), call.tid)

    def _made_up(self, what: bytes, fd: int) -> Optional[int]:
        """Content of /proc/PID/`what` made from our fd of the real file, or None to keep it."""
        if what.startswith(b"net/"):
            return _procfs.net_view(what[4:], fd, self.net_processes, self.network_allowed,
                                    getattr(self, "socket_names", None))  # RootResolver's
        if what in (b"mountinfo", b"mounts"):
            data = _procfs.filter_mounts(_procfs.read_fd(fd), 4 if what == b"mountinfo" else 1, self._reachable)
            return _procfs.memfd(what, data)
        if what == b"stat" and self.machine is not None:  # start times from the sandbox's start
            ticks = round(self.machine.shift() * _procfs.CLOCK_TICKS)
            return _procfs.memfd(what, _procfs.pid_stat_view(_procfs.read_fd(fd), ticks))
        return None

    def _reachable(self, point: bytes) -> bool:
        """A mount point the command can reach: under a rule, or a directory above one."""
        rules = self.rules
        return point in rules.ancestors or rules.readable.covers(point)

    def parent(self, call: Call, dirfd: int, path: bytes) -> Tuple[int, bytes, Optional[bytes]]:
        """(O_PATH fd of the parent directory, last component, host name of the parent) for
        namespace operations (mkdir, unlink, rename, ...).  The caller closes the fd."""
        if not path:
            raise os_error(errno.ENOENT)
        stripped = path.rstrip(b"/") or b"/"
        head, _, last = stripped.rpartition(b"/")
        if stripped == b"/" or last in (b".", b".."):
            last = b"." if stripped == b"/" else last
            head = stripped if stripped == b"/" else head
        if not head:
            head = b"/" if stripped.startswith(b"/") else b"."
        fd, name = self.open(call, dirfd, head, os.O_PATH | os.O_DIRECTORY, 0, 0)
        return fd, last, name

    def writable(self, fd: int, name: Optional[bytes], meta: bool = False) -> int:
        """The fd to modify the object through (see _rootfs.RootResolver.writable)."""
        return fd

    def need_space(self, name: Optional[bytes]) -> None:
        """ENOSPC when the upper layer is full (see _rootfs.RootResolver.need_space)."""

    def note_written(self, fd: int, name: Optional[bytes], new: bool) -> None:
        """A file opened for writing on behalf (see _rootfs.RootResolver.note_written)."""

    def _name_of(self, fd: int) -> Optional[bytes]:
        name = self.fd_name(fd)
        return name if name[:1] == b"/" else None

    # -- decisions ---------------------------------------------------------------------

    def check(self, fd: int, name: Optional[bytes], need: str, st: Optional[_syscalls.Stat] = None) -> None:
        """Raise EACCES unless the object behind fd may be used for `need`."""
        if name is None:
            return  # a pipe, socket or anon inode the sandbox already holds
        if need == "meta" and isinstance(name, Held):
            return
        if st is None:
            st = self.hot.fstat(fd)
        if st.dev == self.proc_dev:
            self._check_proc(name)
        self.rules.check(name, need)
        if self.rules.denied_inodes:
            self.rules.check_inode(st.dev, st.ino)

    def _check_proc(self, name: bytes) -> None:
        pid = _proc_pid(name)
        if pid is not None and not self.is_member(pid):
            raise os_error(errno.ENOENT)  # another process's /proc directory (_procfs)


def _dev_links() -> Tuple[Tuple[bytes, bytes], ...]:
    """The host's /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr links that point into
    /proc/self (as made by udev/systemd), with their targets."""
    links = []
    for name in (b"/dev/fd", b"/dev/stdin", b"/dev/stdout", b"/dev/stderr"):
        try:
            target = os.readlink(name)
        except OSError:
            continue
        if target.startswith(b"/proc/self/") and _clean(target):
            links.append((name, target))
    return tuple(links)


def _clean(path: bytes) -> bool:
    """True when the absolute path has no '.', '..' or empty component (so it is its own real path)."""
    if path == b"/":
        return True
    if b"//" in path or path.endswith(b"/"):
        return False
    return b"/." not in path or all(c not in (b".", b"..") for c in path.split(b"/"))
