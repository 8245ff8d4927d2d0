"""Fake root (README "Fake root"): inside an emulated root, with `--fake-root`, the
command is uid 0 with root's authority over the files of the root -- virtually.

Nothing here grants a real privilege.  The ids the command sets (setuid and
friends) live in the supervisor only and are what get*id report.  chown and
chmod are recorded per inode (dev, ino and birth time) in `Owners`, and every
stat spelling reports the recorded owner, group and mode; the host file keeps
its real owner, and its real mode is the requested one without the set-id bits
and with the owner's read/write (and search, for directories) kept, so the user
who runs sandlock, who owns the root's files, keeps root's access to them.  A
device node made by mknod is an empty regular file of mode 0600 on the host,
recorded as the device; opening it is refused (EACCES) and executing it too.

The record persists across runs in DIR.sandlock-fakeroot/owners next to the
root DIR (outside the command's reach: a sibling of the root, never granted),
written by the supervisor at the end of each run (a temporary file renamed over
the old one through a directory fd opened before the supervisor confines
itself) and parsed line by line against a strict format; it holds at most
RECORD_MAX inodes (beyond, chown/chmod/mknod fail with EDQUOT).
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import os
import re
import stat
import struct
import threading
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, List, Optional, Set, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _syscalls
from ._syscalls import closed_on_error
from ._errors import os_error
from ._structs import STATX_BTIME
from ._notif import AT_EMPTY_PATH, AT_SYMLINK_NOFOLLOW, Call, Context, Errno, Fd, Reply, Value, proc_status, read_mem, write_mem

RECORD_MAX = 100_000       # inodes recorded per root (memory ~ 25 MB at most, file ~ 6 MB)
RECORD_FILE = b"owners"
_LINE = re.compile(rb"(\d{1,20}) (\d{1,20}) (\d{1,10}) (\d{1,10}) (\d{1,6}) (\d{1,20})")
_ID_MAX = 0xFFFFFFFE       # (uid_t)-1 means "unchanged", never an id
CREDS_MAX = 4096           # threads with ids of their own (dead ones are dropped past it)
NGROUPS_MAX = 65536
GROUPS_HELD_MAX = 1 << 20  # supplementary groups kept over all threads (~40 MB at most)

# struct stat offsets (mode, uid, gid, rdev) per architecture; statx's are fixed
_STAT_AT = {"x86_64": (24, 28, 32, 40), "aarch64": (16, 24, 28, 32)}
_U32, _U64, _U16 = struct.Struct("=I"), struct.Struct("=Q"), struct.Struct("=H")


def record_dir(chroot: str) -> str:
    """DIR.sandlock-fakeroot, next to the root DIR."""
    return chroot.rstrip("/") + ".sandlock-fakeroot"


def make_record_dir(chroot: str) -> str:
    """Create (0700) or check the record directory before the supervisor's Landlock
    domain is made (the domain grants it); OSError with a message if unusable."""
    path = record_dir(chroot)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise OSError(exc.errno, f"{path}: {exc.strerror} (the record of a fake root lies next to the root)") from None
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise os_error(errno.EPERM, f"{path}: not a directory of this user that others cannot write")
    return path


# --- the record -------------------------------------------------------------------

class Owners:
    """(dev, ino) -> (btime, uid, gid, mode, rdev) of the inodes whose owner or mode
    the command changed; mode 0: the real one.  Unrecorded files of the invoking
    user (uid and gid) are shown as root's."""

    def __init__(self, dirfd: int, root_dev: int, uid: int, gid: int) -> None:
        self.dirfd, self.root_dev, self.uid, self.gid = dirfd, root_dev, uid, gid
        self.records: Dict[Tuple[int, int], Tuple[int, int, int, int, int]] = {}
        self.lock = threading.Lock()
        self.creds: Dict[int, "Creds"] = {}
        self.changed: Dict[Tuple[int, int], Optional[Tuple[int, int, int, int, int]]] = {}  # since the load
        self.saved: Set[Tuple[int, int]] = set()  # keys in the record file as last read or written (a removal to save)
        self.path = ""

    @classmethod
    def open(cls, chroot: str) -> "Owners":
        """Load DIR.sandlock-fakeroot/owners (before the supervisor confines itself)."""
        path = make_record_dir(chroot)
        dirfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        with closed_on_error(dirfd):
            st = os.fstat(dirfd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                raise os_error(errno.EPERM, f"{path}: others may write it")
            owners = cls(dirfd, os.stat(chroot).st_dev, os.getuid(), os.getgid())
            owners._load(path)
            return owners

    def _load(self, path: str) -> None:
        self.path = path
        with _locked(self.dirfd, fcntl.LOCK_SH):
            self.records = self._read()
        self.saved = set(self.records)

    def _read(self) -> Dict[Tuple[int, int], Tuple[int, int, int, int, int]]:
        """Parse the record file; OSError(EINVAL) with a one-line message if it is not one."""
        out: Dict[Tuple[int, int], Tuple[int, int, int, int, int]] = {}
        try:
            fd = os.open(RECORD_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, dir_fd=self.dirfd)
        except FileNotFoundError:
            return out
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > RECORD_MAX * 80:
                raise os_error(errno.EINVAL, f"{self.path}/owners: not a record file of sandlock "
                                            "(remove it to start afresh)")
            data = b""
            while len(data) < st.st_size:
                chunk = os.read(fd, st.st_size - len(data))
                if not chunk:
                    break
                data += chunk
        finally:
            os.close(fd)
        lines = data.split(b"\n") if data else []
        if data.endswith(b"\n"):
            lines.pop()
        for number, line in enumerate(lines, 1):
            m = _LINE.fullmatch(line)
            values = [int(v) for v in m.groups()] if m else []
            if (not m or values[2] > _ID_MAX or values[3] > _ID_MAX or values[4] > 0o177777
                    or len(out) >= RECORD_MAX):
                raise os_error(errno.EINVAL, f"{self.path}/owners: line {number} is not a record "
                                            "(remove the file to start afresh)")
            ino, btime, uid, gid, mode, rdev = values
            out[(self.root_dev, ino)] = (btime, uid, gid, mode, rdev)
        return out

    def save(self) -> None:
        """Merge this run's changes into the record file as it is now (another run on the
        same root may have saved since: the lock serialises the merges) and write it to a
        temporary file renamed over the old one.  Only the root's device is kept."""
        with self.lock:
            changed, self.changed = self.changed, {}
        if not changed:
            return
        with _locked(self.dirfd, fcntl.LOCK_EX):
            merged = self._read()
            for key, value in changed.items():
                if value is None:
                    merged.pop(key, None)
                elif key in merged or len(merged) < RECORD_MAX:
                    merged[key] = value
            lines = [b"%d %d %d %d %d %d\n" % ((ino,) + value) for (dev, ino), value in merged.items()
                     if dev == self.root_dev]
            tmp = RECORD_FILE + b".tmp"
            try:
                os.unlink(tmp, dir_fd=self.dirfd)
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=self.dirfd)
            try:
                data = memoryview(b"".join(lines))
                while data:
                    data = data[os.write(fd, data):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, RECORD_FILE, src_dir_fd=self.dirfd, dst_dir_fd=self.dirfd)
        with self.lock:
            self.saved = {key for key in merged if key[0] == self.root_dev}

    def _drop(self, key: Tuple[int, int]) -> None:
        """Forget a record (self.lock held): a removal to save only if the file has it,
        so a loop of files chowned and removed leaves nothing pending (tmpfs never
        reuses an inode number: one pending removal per loop grew without bound)."""
        if self.records.pop(key, None) is not None or key in self.changed:
            if key in self.saved:
                self.changed[key] = None
            else:
                self.changed.pop(key, None)

    def close(self) -> None:
        if self.dirfd >= 0:
            os.close(self.dirfd)
            self.dirfd = -1

    # -- looking up --

    def _btime(self, fd: int) -> int:
        raw = _syscalls.statx(fd, b"", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_BTIME)
        if not _U32.unpack_from(raw, 0)[0] & STATX_BTIME:
            return 0
        return struct.unpack_from("=qI", raw, 80)[0] * 1_000_000_000 + struct.unpack_from("=qI", raw, 80)[1]

    def find(self, fd: int, dev: int, ino: int) -> Optional[Tuple[int, int, int, int, int]]:
        """The record of the object of `fd`, if it is that very inode (birth time)."""
        record = self.records.get((dev, ino))
        if record is None:
            return None
        if record[0] != self._btime(fd):
            with self.lock:  # an inode number used again since: the record is stale
                if self.records.get((dev, ino)) == record:
                    self._drop((dev, ino))
            return None
        return record

    def view(self, fd: int, st: _syscalls.Stat, uid: int, gid: int, rdev: int) -> Tuple[int, int, int, int]:
        """(uid, gid, mode, rdev) the command sees for an object with these real values."""
        record = self.find(fd, st.dev, st.ino)
        if record is not None:
            return record[1], record[2], record[3] or st.mode, record[4] if record[3] else rdev
        return (0 if uid == self.uid else uid), (0 if gid == self.gid else gid), st.mode, rdev

    def is_device(self, fd: int, st: _syscalls.Stat) -> bool:
        record = self.find(fd, st.dev, st.ino)
        return record is not None and (stat.S_ISCHR(record[3]) or stat.S_ISBLK(record[3]))

    def set(self, fd: int, st: _syscalls.Stat, uid: int, gid: int, mode: int, rdev: int) -> None:
        """Record the view of an object (mode 0: the real one); a view equal to the
        default one is no record at all."""
        if st.dev != self.root_dev:
            raise os_error(errno.EPERM)  # another mount: nothing is recorded
        key = (st.dev, st.ino)
        plain = (mode in (0, st.mode) and rdev == 0 and uid == (0 if _real(st, 1) == self.uid else _real(st, 1))
                 and gid == (0 if _real(st, 2) == self.gid else _real(st, 2)))
        btime = self._btime(fd)
        with self.lock:
            if plain:
                self._drop(key)
                return
            if key not in self.records and len(self.records) >= RECORD_MAX:
                raise os_error(errno.EDQUOT)
            self.records[key] = self.changed[key] = (btime, uid, gid, 0 if mode == st.mode else mode, rdev)

    def forget(self, dev: int, ino: int) -> None:
        with self.lock:
            self._drop((dev, ino))


@contextlib.contextmanager
def _locked(fd: int, how: int):  # type: ignore[no-untyped-def]
    """flock on the record directory: one run's merge at a time."""
    fcntl.flock(fd, how)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _real(st: _syscalls.Stat, which: int) -> int:
    """The real uid (1) or gid (2) in a raw struct stat."""
    at = _STAT_AT[_syscalls.machine()]
    return _U32.unpack_from(st.raw, at[which])[0]


def _rdev(st: _syscalls.Stat) -> int:
    return _U64.unpack_from(st.raw, _STAT_AT[_syscalls.machine()][3])[0]


def _owners(ctx: Context) -> Owners:
    owners = getattr(ctx.resolver, "fake", None)
    if owners is None:  # fake-root rows without a record: never act (fail closed)
        raise os_error(errno.EPERM)
    return owners


# --- stat spellings -------------------------------------------------------------------

def _patched_stat(owners: Owners, fd: int, st: _syscalls.Stat) -> bytes:
    uid, gid, mode, rdev = owners.view(fd, st, _real(st, 1), _real(st, 2), _rdev(st))
    mode_at, uid_at, gid_at, rdev_at = _STAT_AT[_syscalls.machine()]
    raw = bytearray(st.raw)
    _U32.pack_into(raw, mode_at, mode)
    _U32.pack_into(raw, uid_at, uid)
    _U32.pack_into(raw, gid_at, gid)
    _U64.pack_into(raw, rdev_at, rdev)
    return bytes(raw)


def _is_o_path(fd: int) -> bool:
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH)


def do_stat(ctx: Context, call: Call) -> Reply:
    """stat, lstat, newfstatat: as _fsops.do_stat, reporting the recorded view."""
    from . import _fsops as F
    F._check_flags(call, F.STAT_FLAGS)
    owners = _owners(ctx)
    if not call.path and call.flags & AT_EMPTY_PATH and call.dirfd >= 0:
        fd = ctx.tracees.getfd(call.tid, call.dirfd)
        try:
            if not _is_o_path(fd):
                write_mem(ctx.tracees, call.tid, call.ptr, _patched_stat(owners, fd, ctx.hot.fstat(fd)))
                return Value(0)
        finally:
            os.close(fd)
    fd, st = F._object(ctx, call, "meta")
    try:
        raw = _patched_stat(owners, fd, st)
    finally:
        os.close(fd)
    write_mem(ctx.tracees, call.tid, call.ptr, raw)
    return Value(0)


def do_fstat(ctx: Context, call: Call) -> Reply:
    """fstat(2) (musl and static programs): newfstatat(fd, "", AT_EMPTY_PATH)."""
    call.dirfd, call.path, call.flags = call.fd, b"", AT_EMPTY_PATH
    return do_stat(ctx, call)


def do_statx(ctx: Context, call: Call) -> Reply:
    from . import _fsops as F
    F._check_flags(call, F.STAT_FLAGS)
    if call.flags & F.AT_STATX_SYNC_TYPE == F.AT_STATX_SYNC_TYPE or call.mask & F.STATX__RESERVED:
        return Errno(errno.EINVAL)
    owners = _owners(ctx)
    fd, st = F._object(ctx, call, "meta")
    try:
        raw = bytearray(_syscalls.statx(fd, b"", AT_EMPTY_PATH | (call.flags & 0x6000), call.mask))
        uid, gid, mode, rdev = owners.view(fd, st, _real(st, 1), _real(st, 2), _rdev(st))
    finally:
        os.close(fd)
    _U32.pack_into(raw, 20, uid)
    _U32.pack_into(raw, 24, gid)
    _U16.pack_into(raw, 28, mode & 0xFFFF)
    _U32.pack_into(raw, 128, os.major(rdev))
    _U32.pack_into(raw, 132, os.minor(rdev))
    write_mem(ctx.tracees, call.tid, call.ptr, bytes(raw))
    return Value(0)


def do_access(ctx: Context, call: Call) -> Reply:
    """access, faccessat, faccessat2 as root decides them on the recorded mode: read and
    write always (where the policy lets the command write), execute when some x bit is
    set or for a directory."""
    from . import _fsops as F
    if call.mode & ~7:
        return Errno(errno.EINVAL)
    F._check_flags(call, F.AT_EACCESS | F.NOFOLLOW_OR_EMPTY)
    owners = _owners(ctx)
    need = "write" if call.mode & F.W_OK else "read" if call.mode & (F.R_OK | F.X_OK) else "meta"
    fd, st = F._object(ctx, call, need)
    try:
        mode = owners.view(fd, st, _real(st, 1), _real(st, 2), _rdev(st))[2]
    finally:
        os.close(fd)
    if call.mode & F.X_OK and not stat.S_ISDIR(mode) and not mode & 0o111:
        return Errno(errno.EACCES)
    return Value(0)


# --- ownership and modes ---------------------------------------------------------------------

def _real_mode(virtual: int, current: int) -> int:
    """The host mode for a requested one: no set-id bit (a directory keeps the S_ISGID it
    has), the owner's read and write kept (and search, for a directory)."""
    if stat.S_ISDIR(current):
        return (virtual & 0o1777) | 0o700 | (current & stat.S_ISGID)
    return (virtual & 0o1777) | 0o600


def _chmod(ctx: Context, owners: Owners, fd: int, st: _syscalls.Stat, mode: int) -> None:
    if stat.S_ISLNK(st.mode):
        raise os_error(errno.EOPNOTSUPP)
    if st.dev != owners.root_dev:  # another mount: nothing is recorded, as without --fake-root
        from . import _fsops as F
        F.no_new_setid(mode, st.mode)
        os.chmod(b"/proc/self/fd/%d" % fd, mode & 0o7777)
        return
    uid, gid, current, rdev = owners.view(fd, st, _real(st, 1), _real(st, 2), _rdev(st))
    virtual = stat.S_IFMT(current) | (mode & 0o7777)
    if stat.S_IFMT(current) == stat.S_IFMT(st.mode):  # a placeholder device keeps 0600
        os.chmod(b"/proc/self/fd/%d" % fd, _real_mode(virtual, st.mode))
        st = ctx.hot.fstat(fd)
    owners.set(fd, st, uid, gid, virtual, rdev)


def _chown(owners: Owners, fd: int, st: _syscalls.Stat, new_uid: int, new_gid: int) -> None:
    uid, gid, mode, rdev = owners.view(fd, st, _real(st, 1), _real(st, 2), _rdev(st))
    if new_uid == -1 and new_gid == -1:
        return
    if not stat.S_ISDIR(mode):  # as the kernel does, for root too since Linux 2.2.13
        mode &= ~stat.S_ISUID
        if mode & stat.S_IXGRP:
            mode &= ~stat.S_ISGID
    owners.set(fd, st, uid if new_uid == -1 else new_uid, gid if new_gid == -1 else new_gid, mode, rdev)


def do_chmod(ctx: Context, call: Call) -> Reply:
    from . import _fsops as F
    F._check_flags(call, F.NOFOLLOW_OR_EMPTY)
    owners = _owners(ctx)
    return F._on_object(ctx, call, "write", lambda fd, st: _chmod(ctx, owners, fd, st, call.mode))


def do_fchmod(ctx: Context, call: Call) -> Reply:
    from . import _fsops as F
    owners = _owners(ctx)
    return F._on_fd(ctx, call, "write", lambda fd: _chmod(ctx, owners, fd, ctx.hot.fstat(fd), call.mode))


def do_chown(ctx: Context, call: Call) -> Reply:
    from . import _fsops as F
    F._check_flags(call, F.NOFOLLOW_OR_EMPTY)
    owners = _owners(ctx)
    return F._on_object(ctx, call, "write", lambda fd, st: _chown(owners, fd, st, call.uid, call.gid))


def do_fchown(ctx: Context, call: Call) -> Reply:
    from . import _fsops as F
    owners = _owners(ctx)
    return F._on_fd(ctx, call, "write", lambda fd: _chown(owners, fd, ctx.hot.fstat(fd), call.uid, call.gid))


# --- device nodes, opens, removals -------------------------------------------------------------

def do_mknod(ctx: Context, call: Call) -> Reply:
    """mknod, mknodat: a character or block device is an empty regular file (0600) on
    the host, recorded as the device; other kinds as _rootops.do_mknod."""
    from . import _fsops as F
    from . import _rootops as RO
    owners = _owners(ctx)
    kind = stat.S_IFMT(call.mode)
    if kind not in (stat.S_IFCHR, stat.S_IFBLK):
        return RO.do_mknod(ctx, call)
    perm = call.mode & 0o777 & ~_umask(call.tid)
    device = copy.copy(call)
    device.mode = stat.S_IFREG | 0o600
    reply = RO.do_mknod(ctx, device)
    if not isinstance(reply, Value):
        return reply
    made = copy.copy(call)
    made.flags = AT_SYMLINK_NOFOLLOW
    fd, st = F._object(ctx, made, "meta")
    try:
        if not stat.S_ISREG(st.mode) or st.dev != owners.root_dev:
            return Errno(errno.EPERM)  # swapped by another thread, or on another mount
        owners.set(fd, st, 0, 0, kind | perm, call.size & 0xFFFFFFFF)
    finally:
        os.close(fd)
    return Value(0)


def _umask(tid: int) -> int:
    from ._notif import umask_of
    return umask_of(tid)


def do_open(ctx: Context, call: Call) -> Reply:
    """Opens as _fsops, refusing (EACCES) a recorded device node: it is no device.  The
    set-id bits of a creating open's mode are dropped (root's tar creates a file with
    its archived mode, then sets owner and mode, which are recorded)."""
    from . import _fsops as F
    call.mode &= ~F.SETID
    return _no_device(ctx, F.do_open(ctx, call))


def do_openat2(ctx: Context, call: Call) -> Reply:
    from . import _fsops as F
    return _no_device(ctx, F.do_openat2(ctx, call))


def _no_device(ctx: Context, reply: Reply) -> Reply:
    if isinstance(reply, Fd):
        with closed_on_error(reply.fd):
            st = ctx.hot.fstat(reply.fd)
            refused = _owners(ctx).is_device(reply.fd, st)
        if refused:
            os.close(reply.fd)
            return Errno(errno.EACCES)
    return reply


def _target(ctx: Context, call: Call, dirfd: int, path: Optional[bytes]) -> Optional[_syscalls.Stat]:
    """lstat of a name a removal or rename replaces (None: there is none)."""
    from . import _fsops as F
    probe = copy.copy(call)
    probe.dirfd, probe.path, probe.flags = dirfd, path or b"", AT_SYMLINK_NOFOLLOW
    try:
        fd, st = F._object(ctx, probe, "meta")
    except OSError:
        return None
    os.close(fd)
    return st


def _nlink(st: _syscalls.Stat) -> int:
    if _syscalls.machine() == "x86_64":
        return _U64.unpack_from(st.raw, 16)[0]
    return _U32.unpack_from(st.raw, 20)[0]


def do_unlink(ctx: Context, call: Call) -> Reply:
    """As _rootops.do_unlink; the record of the last name of an inode goes with it."""
    from . import _rootops as RO
    owners = _owners(ctx)
    st = _target(ctx, call, call.dirfd, call.path) if owners.records else None
    reply = RO.do_unlink(ctx, call)
    if st is not None and isinstance(reply, Value) and (_nlink(st) <= 1 or stat.S_ISDIR(st.mode)):
        owners.forget(st.dev, st.ino)
    return reply


def do_rename(ctx: Context, call: Call) -> Reply:
    """As _rootops.do_rename; the record of a file it replaces goes with it."""
    from . import _rootops as RO
    owners = _owners(ctx)
    st = _target(ctx, call, call.dirfd2, call.path2) if owners.records else None
    moved = _target(ctx, call, call.dirfd, call.path) if st is not None else None
    reply = RO.do_rename(ctx, call)
    if (st is not None and isinstance(reply, Value) and not call.flags & 2  # RENAME_EXCHANGE
            and (moved is None or (moved.dev, moved.ino) != (st.dev, st.ino))
            and (_nlink(st) <= 1 or stat.S_ISDIR(st.mode))):
        owners.forget(st.dev, st.ino)
    return reply


# --- identities -----------------------------------------------------------------------------------

class Creds:
    """Virtual ids of one thread: real, effective, saved, fs; and the groups."""
    __slots__ = ("uid", "gid", "groups")

    def __init__(self, uid: List[int], gid: List[int], groups: Tuple[int, ...]) -> None:
        self.uid, self.gid, self.groups = uid, gid, groups


def _status_field(tid: int, field: bytes) -> Optional[int]:
    try:
        value = proc_status(tid, (field,)).get(field)
        return None if value is None else int(value)
    except (OSError, ValueError):
        return None


def _creds(owners: Owners, tid: int) -> Creds:
    """The thread's ids: its own, else its thread group's, else its nearest ancestor's
    (a new thread or child inherits them, unseen by the supervisor), else root's."""
    creds = owners.creds
    if creds:
        seen = tid
        for _ in range(16):
            found = creds.get(seen)
            if found is not None:
                return Creds(list(found.uid), list(found.gid), found.groups)
            tgid = _status_field(seen, b"Tgid")
            if tgid is not None and tgid != seen and tgid in creds:
                seen = tgid
                continue
            parent = _status_field(seen, b"PPid")
            if not parent:
                break
            seen = parent
    return Creds([0, 0, 0, 0], [0, 0, 0, 0], ())


def _store(owners: Owners, tid: int, new: Creds) -> None:
    """Keep a thread's ids: at most CREDS_MAX threads (EAGAIN) and GROUPS_HELD_MAX
    groups over all of them (ENOMEM): 4096 threads of 65536 groups each were ~10 GB."""
    creds = owners.creds
    with owners.lock:
        old = creds.get(tid)
        held = sum(len(c.groups) for c in creds.values()) - (len(old.groups) if old else 0)
        if (len(creds) >= CREDS_MAX and old is None) or held + len(new.groups) > GROUPS_HELD_MAX:
            for dead in [t for t in creds if t != tid and not os.path.exists(b"/proc/%d" % t)]:
                held -= len(creds.pop(dead).groups)
            if len(creds) >= CREDS_MAX and old is None:
                raise os_error(errno.EAGAIN)
            if held + len(new.groups) > GROUPS_HELD_MAX:
                raise os_error(errno.ENOMEM)
        creds[tid] = new


def do_getid(ctx: Context, call: Call) -> Reply:
    """getuid (mask 0), geteuid (1), getgid (2), getegid (3)."""
    c = _creds(_owners(ctx), call.tid)
    return Value((c.uid if call.mask < 2 else c.gid)[call.mask % 2])


def do_getresid(ctx: Context, call: Call) -> Reply:
    """getresuid, getresgid (mask 0/2): three ids written to three pointers."""
    c = _creds(_owners(ctx), call.tid)
    ids = c.uid if call.mask == 0 else c.gid
    for value, ptr in zip(ids, (call.ptr, call.ptr2, call.size)):
        write_mem(ctx.tracees, call.tid, ptr, _U32.pack(value))
    return Value(0)


def do_getgroups(ctx: Context, call: Call) -> Reply:
    groups = _creds(_owners(ctx), call.tid).groups
    size = call.size & 0xFFFFFFFF
    if size & 0x80000000:
        return Errno(errno.EINVAL)
    if size == 0:
        return Value(len(groups))
    if size < len(groups):
        return Errno(errno.EINVAL)
    if groups:
        write_mem(ctx.tracees, call.tid, call.ptr, b"".join(_U32.pack(g) for g in groups))
    return Value(len(groups))


def do_setgroups(ctx: Context, call: Call) -> Reply:
    owners = _owners(ctx)
    size = call.size & 0xFFFFFFFF
    if size > NGROUPS_MAX:
        return Errno(errno.EINVAL)
    c = _creds(owners, call.tid)
    if c.uid[1] != 0:
        return Errno(errno.EPERM)
    raw = read_mem(ctx.tracees, call.tid, call.ptr, size * 4) if size else b""
    c.groups = tuple(struct.unpack("=%dI" % size, raw))
    _store(owners, call.tid, c)
    return Value(0)


def _u(value: int) -> int:
    value &= 0xFFFFFFFF
    return -1 if value == 0xFFFFFFFF else value


def do_setresid(ctx: Context, call: Call) -> Reply:
    """setuid/setgid (which 1), setreuid/setregid (2), setresuid/setresgid (3) on the
    virtual ids; `name` of the row: b"u" or b"g".  A virtual euid 0 may set any id;
    any other may set only ids it holds (as the kernel decides without CAP_SETUID)."""
    owners = _owners(ctx)
    c = _creds(owners, call.tid)
    ids = c.uid if call.name == b"u" else c.gid
    privileged = c.uid[1] == 0
    held = ids[:3]
    if call.which == 1:
        new = _u(call.pid)
        if new == -1:
            return Errno(errno.EINVAL)
        if privileged:
            r, e, s = new, new, new
        elif new in (ids[0], ids[2]):
            r, e, s = -1, new, -1
        else:
            return Errno(errno.EPERM)
    elif call.which == 2:
        r, e, s = _u(call.pid), _u(call.pid2), -1
        if r != -1 or (e != -1 and e != ids[0]):
            s = e if e != -1 else ids[1]
    else:
        r, e, s = _u(call.pid), _u(call.pid2), _u(call.mask)
    if not privileged and any(v != -1 and v not in held for v in (r, e, s)):
        return Errno(errno.EPERM)
    for index, value in enumerate((r, e, s)):
        if value != -1:
            ids[index] = value
    ids[3] = ids[1]
    _store(owners, call.tid, c)
    return Value(0)


def do_setfsid(ctx: Context, call: Call) -> Reply:
    """setfsuid, setfsgid: the previous fs id, always (as the kernel answers)."""
    owners = _owners(ctx)
    c = _creds(owners, call.tid)
    ids = c.uid if call.name == b"u" else c.gid
    previous = ids[3]
    new = _u(call.pid)
    if new != -1 and (c.uid[1] == 0 or new in ids):
        ids[3] = new
        _store(owners, call.tid, c)
    return Value(previous)


# --- the table -------------------------------------------------------------------------------------

ID_NAMES = ("getuid geteuid getgid getegid getresuid getresgid getgroups setuid setgid setreuid setregid "
            "setresuid setresgid setgroups setfsuid setfsgid").split()


if TYPE_CHECKING:
    RowSpec = Tuple[Callable[..., Any], Tuple[str, ...], Dict[str, Any]]


def rows() -> Dict[str, RowSpec]:
    """name -> (op, layout, fixed) replacing or adding rows of _table with --fake-root."""
    nofollow: Dict[str, Any] = {"flags": AT_SYMLINK_NOFOLLOW}
    out: Dict[str, RowSpec] = {
        "stat": (do_stat, ("path", "ptr"), {}),
        "lstat": (do_stat, ("path", "ptr"), nofollow),
        "newfstatat": (do_stat, ("dirfd", "path", "ptr", "flags"), {}),
        "fstat": (do_fstat, ("fd", "ptr"), {}),
        "statx": (do_statx, ("dirfd", "path", "flags", "mask", "ptr"), {}),
        "access": (do_access, ("path", "mode"), {}),
        "faccessat": (do_access, ("dirfd", "path", "mode"), {}),
        "faccessat2": (do_access, ("dirfd", "path", "mode", "flags"), {}),
        "chmod": (do_chmod, ("path", "mode"), {}),
        "fchmodat": (do_chmod, ("dirfd", "path", "mode"), {}),
        "fchmodat2": (do_chmod, ("dirfd", "path", "mode", "flags"), {}),
        "fchmod": (do_fchmod, ("fd", "mode"), {}),
        "chown": (do_chown, ("path", "uid", "gid"), {}),
        "lchown": (do_chown, ("path", "uid", "gid"), nofollow),
        "fchownat": (do_chown, ("dirfd", "path", "uid", "gid", "flags"), {}),
        "fchown": (do_fchown, ("fd", "uid", "gid"), {}),
        "mknod": (do_mknod, ("path", "mode", "size"), {}),  # size: the device number
        "mknodat": (do_mknod, ("dirfd", "path", "mode", "size"), {}),
        "open": (do_open, ("path", "flags", "mode"), {}),
        "openat": (do_open, ("dirfd", "path", "flags", "mode"), {}),
        "creat": (do_open, ("path", "mode"), {"flags": os.O_CREAT | os.O_WRONLY | os.O_TRUNC}),
        "openat2": (do_openat2, ("dirfd", "path", "ptr", "size"), {}),
        "unlink": (do_unlink, ("path",), {}),
        "unlinkat": (do_unlink, ("dirfd", "path", "flags"), {}),
        "rmdir": (do_unlink, ("path",), {"flags": 0x200}),  # AT_REMOVEDIR
        "rename": (do_rename, ("path", "path2"), {}),
        "renameat": (do_rename, ("dirfd", "path", "dirfd2", "path2"), {}),
        "renameat2": (do_rename, ("dirfd", "path", "dirfd2", "path2", "flags"), {}),
        "getuid": (do_getid, (), {"mask": 0}),
        "geteuid": (do_getid, (), {"mask": 1}),
        "getgid": (do_getid, (), {"mask": 2}),
        "getegid": (do_getid, (), {"mask": 3}),
        "getresuid": (do_getresid, ("ptr", "ptr2", "size"), {"mask": 0}),
        "getresgid": (do_getresid, ("ptr", "ptr2", "size"), {"mask": 2}),
        "getgroups": (do_getgroups, ("size", "ptr"), {}),
        "setgroups": (do_setgroups, ("size", "ptr"), {}),
        "setuid": (do_setresid, ("pid",), {"which": 1, "name": b"u"}),
        "setgid": (do_setresid, ("pid",), {"which": 1, "name": b"g"}),
        "setreuid": (do_setresid, ("pid", "pid2"), {"which": 2, "name": b"u"}),
        "setregid": (do_setresid, ("pid", "pid2"), {"which": 2, "name": b"g"}),
        "setresuid": (do_setresid, ("pid", "pid2", "mask"), {"which": 3, "name": b"u"}),
        "setresgid": (do_setresid, ("pid", "pid2", "mask"), {"which": 3, "name": b"g"}),
        "setfsuid": (do_setfsid, ("pid",), {"name": b"u"}),
        "setfsgid": (do_setfsid, ("pid",), {"name": b"g"}),
    }
    return out


def traps() -> List[str]:
    """Syscalls trapped (always) with --fake-root, beyond those of an emulated root."""
    return ["fstat", "mknod", "mknodat"] + ID_NAMES
