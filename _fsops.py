"""Filesystem operations performed on behalf of the sandbox (docs/design.md
"Acting on behalf", "What Landlock does not cover", "Filesystem policy").

Landlock does not cover metadata reads (stat, access, readlink, xattrs,
statfs, inotify, O_PATH opens) nor metadata writes (chmod, chown, utimes,
xattrs).  Each of those is trapped, decided by `Resolver.check` on the object
the supervisor itself looked up, and carried out by the supervisor on that
object; the result is written back or the fd injected.  The supervisor
thread runs with the tracee's credentials (no capabilities) and under a
Landlock domain no wider than the policy, so the kernel also checks what it
does.  With --fs-deny, opens are performed on behalf too (hard links to a
denied file are refused by inode, directories above a denied path can still
be listed), and execve is checked before it goes on.

Every operation acts on fds (`*at` calls, /proc/self/fd/N for the calls that
have no fd form); no host path string is rebuilt and resolved again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import struct
import time
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Callable, List, Optional, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _syscalls
from ._syscalls import closed_after, closed_on_error
from ._errors import os_error
from ._structs import AT_NO_AUTOMOUNT, AT_STATX_SYNC_TYPE, AT_SYMLINK_FOLLOW, STATX__RESERVED
from ._notif import (AT_EACCESS, AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, CONTINUE, Call, Context, Errno, Fd, Later,
                     Reply, Then, Value, proc_status, read_mem, umask_of as _umask, write_mem)

R_OK, W_OK, X_OK = 4, 2, 1
O_LARGEFILE = {"x86_64": 0o100000, "aarch64": 0o400000}
_OPEN_FLAGS = (os.O_ACCMODE | os.O_CREAT | os.O_EXCL | os.O_NOCTTY | os.O_TRUNC | os.O_APPEND
               | os.O_NONBLOCK | os.O_DSYNC | os.O_DIRECT | os.O_DIRECTORY | os.O_NOFOLLOW
               | os.O_NOATIME | os.O_CLOEXEC | os.O_SYNC | os.O_PATH | getattr(os, "O_TMPFILE", 0)
               | 0o20000)  # FASYNC
_O_PATH_FLAGS = os.O_PATH | os.O_CLOEXEC | os.O_DIRECTORY | os.O_NOFOLLOW
_O_TMPFILE = getattr(os, "O_TMPFILE", 0o20200000)
IN_DONT_FOLLOW = 0x02000000
SETID = stat.S_ISUID | stat.S_ISGID
TIMES_TIMESPEC, TIMES_TIMEVAL, TIMES_UTIMBUF = 0, 1, 2
UTIME_NOW, UTIME_OMIT = (1 << 30) - 1, (1 << 30) - 2
_TIMESPEC2 = struct.Struct("=qqqq")
_TIMEVAL2 = struct.Struct("=qqqq")
_UTIMBUF = struct.Struct("=qq")


# The AT_* flags the kernel accepts per call (fs/stat.c, open.c, utimes.c); any other
# bit is EINVAL there, before anything is looked up or written.
STAT_FLAGS = AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT | AT_EMPTY_PATH | AT_STATX_SYNC_TYPE
NOFOLLOW_OR_EMPTY = AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH


def _check_flags(call: Call, valid: int) -> None:
    """EINVAL for a flag the kernel refuses: the call must not be done on behalf."""
    if call.flags & ~valid:
        raise os_error(errno.EINVAL)


def _proc_fd(fd: int) -> bytes:
    return b"/proc/self/fd/%d" % fd


def _object(ctx: Context, call: Call, need: str, nofollow: Optional[bool] = None, extra: int = 0) -> Tuple[int, _syscalls.Stat]:
    """Look up call.dirfd/call.path, decide `need`, return (O_PATH fd, its stat)."""
    if nofollow is None:
        nofollow = bool(call.flags & AT_SYMLINK_NOFOLLOW)
    fd, name = ctx.resolver.lookup(call, call.dirfd, call.path or b"", nofollow, call.flags, extra)
    try:
        st = ctx.hot.fstat(fd)
        if call.path or need != "meta" or call.dirfd == AT_FDCWD or _is_o_path(fd):
            ctx.resolver.check(fd, name, need, st)
        if need == "write" and _is_device(st.mode):
            raise os_error(errno.EPERM)  # see _is_device
        if need == "write":
            fresh = ctx.resolver.writable(fd, name, meta=True)
            if fresh != fd:
                fd, st = fresh, ctx.hot.fstat(fresh)
        # else: metadata of a file the tracee opened (Landlock checked that
        # open) or inherited: fstat and friends need no rule
        return fd, st
    except BaseException:  # by hand, not closed_on_error: the path of every stat (~0.2 us)
        os.close(fd)
        raise


def _is_device(mode: int) -> bool:
    """Device files are granted for reading and writing their content only: their mode,
    owner, times and xattrs are the host's (a sandboxed root must never chmod the
    host's /dev/null; the supervisor acting for it would have the uid to)."""
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def no_new_setid(new: int, current: int = 0) -> None:
    """EPERM if a file would become set-user-id or set-group-id (README "What the
    sandbox allows"); a directory may keep the S_ISGID it has (`current`: its mode)."""
    keep = current & stat.S_ISGID if stat.S_ISDIR(current) else 0
    if new & SETID & ~keep:
        raise os_error(errno.EPERM)


def _is_o_path(fd: int) -> bool:
    """An O_PATH fd was opened with a CONTINUE (see _open): decide on its object again."""
    return bool(fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_PATH)


def _fd_object(ctx: Context, call: Call, need: str) -> int:
    """A private duplicate of the tracee's fd call.fd, decided for `need`."""
    fd = ctx.tracees.getfd(call.tid, call.fd)
    with closed_on_error(fd):
        if (need == "write" and fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_PATH) in (os.O_WRONLY, os.O_RDWR)
                and stat.S_ISREG(ctx.hot.fstat(fd).mode)):
            # a regular file open for writing: that open was decided for writing (a
            # write rule covers it; with a workdir it is the layer's own copy), which
            # covers its metadata.  Devices are not: /dev/null is writable, not chmod-able.
            return fd
        name = ctx.resolver._name_of(fd)
        ctx.resolver.check(fd, name, need)
        if need == "write" and _is_device(ctx.hot.fstat(fd).mode):
            raise os_error(errno.EPERM)
        return ctx.resolver.writable(fd, name, meta=True) if need == "write" else fd


# --- metadata reads -----------------------------------------------------------------

_DONE = Value(0)


def do_stat(ctx: Context, call: Call) -> Reply:
    _check_flags(call, STAT_FLAGS)
    path = call.path
    if not path and call.flags & AT_EMPTY_PATH and call.dirfd >= 0:
        # fstat of an fd the caller holds: the kernel checked its open; an O_PATH
        # fd (opened by a CONTINUE) is decided again on its object (_object)
        fd = ctx.tracees.getfd(call.tid, call.dirfd)
        try:
            if not _is_o_path(fd):
                write_mem(ctx.tracees, call.tid, call.ptr, ctx.resolver.reported(ctx.hot.fstat(fd)).raw)
                return Value(0)
        finally:
            os.close(fd)
    resolver = ctx.resolver
    if path and path[0] == 47 and not (resolver.rules.denied_inodes or call.flags & AT_EMPTY_PATH):
        # The hot path: an absolute path openat2 proves symlink-free is its own real path.
        st = resolver.stat_plain(path, bool(call.flags & AT_SYMLINK_NOFOLLOW))
        if st is not None:
            resolver.rules.check(path, "meta")
            write_mem(ctx.tracees, call.tid, call.ptr, resolver.reported(st).raw)
            return _DONE
    fd, st = _object(ctx, call, "meta")
    os.close(fd)
    write_mem(ctx.tracees, call.tid, call.ptr, ctx.resolver.reported(st).raw)
    return Value(0)


def _write_back(ctx: Context, call: Call, fd: int, fetch: Callable[[int], bytes]) -> Reply:
    """fetch(fd) (then close fd) and write the bytes to the tracee's result buffer."""
    try:
        raw = fetch(fd)
    finally:
        os.close(fd)
    write_mem(ctx.tracees, call.tid, call.ptr, raw)
    return Value(0)


def do_statx(ctx: Context, call: Call) -> Reply:
    _check_flags(call, STAT_FLAGS)
    if call.flags & AT_STATX_SYNC_TYPE == AT_STATX_SYNC_TYPE or call.mask & STATX__RESERVED:
        return Errno(errno.EINVAL)
    fd, st = _object(ctx, call, "meta")
    return _write_back(ctx, call, fd, lambda f: ctx.resolver.reported_statx(
        st, _syscalls.statx(f, b"", AT_EMPTY_PATH | (call.flags & 0x6000), call.mask)))


def do_statfs(ctx: Context, call: Call) -> Reply:
    fd, _ = _object(ctx, call, "meta", nofollow=False)
    return _write_back(ctx, call, fd, _syscalls.statfs)


def do_fstatfs(ctx: Context, call: Call) -> Reply:
    fd = ctx.tracees.getfd(call.tid, call.fd)
    with closed_on_error(fd):
        if _is_o_path(fd):
            ctx.resolver.check(fd, ctx.resolver._name_of(fd), "meta")
    return _write_back(ctx, call, fd, _syscalls.statfs)


def do_access(ctx: Context, call: Call) -> Reply:
    if call.mode & ~7:
        return Errno(errno.EINVAL)
    _check_flags(call, AT_EACCESS | NOFOLLOW_OR_EMPTY)
    need = "write" if call.mode & W_OK else "read" if call.mode & (R_OK | X_OK) else "meta"
    fd, st = _object(ctx, call, need)
    try:
        if call.mode and not _dac_allows(fd, st, call.mode, call.flags):
            return Errno(errno.EACCES)
    finally:
        os.close(fd)
    return Value(0)


def _dac_allows(fd: int, st: _syscalls.Stat, mode: int, flags: int) -> bool:
    # The supervisor thread has the tracee's credentials (and no capabilities),
    # so the kernel's own answer for it is the tracee's answer.
    if stat.S_ISLNK(st.mode):
        return True
    try:
        return os.access(_proc_fd(fd), mode, effective_ids=bool(flags & AT_EACCESS))
    except NotImplementedError:
        return os.access(_proc_fd(fd), mode)


def do_readlink(ctx: Context, call: Call) -> Reply:
    if call.size <= 0 or call.size > 0x7FFFFFFF:
        return Errno(errno.EINVAL)
    if call.path == b"":
        call.flags |= AT_EMPTY_PATH  # readlinkat(fd, "") reads the link fd itself
    # what the resolver shows: the link as it is on the host; in an emulated root,
    # /proc/self and the /proc magic links as virtual paths (RootResolver.shown_link)
    target = ctx.resolver.self_link(call)
    if target is None:
        fd, st = _object(ctx, call, "meta", nofollow=True)
        try:
            if not stat.S_ISLNK(st.mode):
                return Errno(errno.EINVAL)
            target = ctx.resolver.shown_link(fd, st, os.readlink(b"", dir_fd=fd))
        finally:
            os.close(fd)
    data = target[: call.size]
    write_mem(ctx.tracees, call.tid, call.ptr, data)
    return Value(len(data))


def do_chdir(ctx: Context, call: Call) -> Reply:
    fd, st = _object(ctx, call, "meta", nofollow=False)
    os.close(fd)
    if not stat.S_ISDIR(st.mode):
        return Errno(errno.ENOTDIR)
    # CONTINUE: the kernel re-reads the path and may land in another directory
    # if a thread rewrote it, but a cwd grants nothing: every later access
    # from it is checked again by Landlock or by this supervisor.
    return CONTINUE


def do_getxattr(ctx: Context, call: Call) -> Reply:
    fd, _ = _object(ctx, call, "meta")
    try:
        value = os.getxattr(_proc_fd(fd), call.name or b"")
    finally:
        os.close(fd)
    return _write_sized(ctx, call, value)


def do_listxattr(ctx: Context, call: Call) -> Reply:
    fd, _ = _object(ctx, call, "meta")
    try:
        names = os.listxattr(_proc_fd(fd))
    finally:
        os.close(fd)
    return _write_sized(ctx, call, b"".join(os.fsencode(n) + b"\0" for n in names))


def _write_sized(ctx: Context, call: Call, data: bytes) -> Reply:
    if call.size == 0:
        return Value(len(data))
    if len(data) > call.size:
        return Errno(errno.ERANGE)
    write_mem(ctx.tracees, call.tid, call.ptr, data)
    return Value(len(data))


def do_inotify_add_watch(ctx: Context, call: Call) -> Reply:
    fd, _ = _object(ctx, call, "meta", nofollow=bool(call.mask & IN_DONT_FOLLOW))
    try:
        inotify = ctx.tracees.getfd(call.tid, call.fd)
        try:
            wd = _syscalls._call("inotify_add_watch", inotify, _proc_fd(fd), call.mask & ~IN_DONT_FOLLOW)
        finally:
            os.close(inotify)
    finally:
        os.close(fd)
    return Value(wd)


# --- opens ----------------------------------------------------------------------------

def do_open(ctx: Context, call: Call) -> Reply:
    """open/openat/creat, done on behalf under every policy (/proc is opened only so: _procfs)."""
    return _open(ctx, call, call.flags, call.mode, 0)


def do_openat2(ctx: Context, call: Call):
    if call.size < 24 or call.size > 4096:
        return Errno(errno.EINVAL if call.size < 24 else errno.E2BIG)
    raw = read_mem(ctx.tracees, call.tid, call.ptr, call.size)
    if any(raw[24:]):
        return Errno(errno.E2BIG)
    flags, mode, resolve = struct.unpack_from("=QQQ", raw)
    if flags >> 32 or mode >> 12 or resolve & ~0x3F:
        return Errno(errno.EINVAL)
    return _open(ctx, call, flags, mode, resolve)


class _Looked(Fd):
    """An Fd reopened from a regular file looked up and decided first (_open_maybe_fifo):
    the same inode, so _handing_over has nothing to look at again."""
    __slots__ = ()


def _open(ctx: Context, call: Call, flags: int, mode: int, resolve: int) -> Reply:
    reply = _open_object(ctx, call, flags, mode, resolve)
    if type(reply) is Fd:
        _handing_over(ctx, reply.fd)  # type: ignore[union-attr]
    return reply


def _handing_over(ctx: Context, fd: int) -> None:
    """The last look at an fd the sandbox is about to get: a device must be one it may
    use (decided before opening where the object was looked up first, and here again
    on what was opened); a /dev/ptmx master makes its pseudo-terminal the sandbox's."""
    try:
        kind = ctx.hot.fstat(fd).mode
        ctx.resolver.devices.check(fd, kind)
        ctx.resolver.devices.allocated(fd, kind)
    except BaseException:  # by hand, not closed_on_error: the path of every open (~0.2 us)
        os.close(fd)
        raise


def _open_object(ctx: Context, call: Call, flags: int, mode: int, resolve: int) -> Reply:
    flags &= _OPEN_FLAGS | O_LARGEFILE.get(_syscalls.machine(), 0)
    creating = bool(flags & os.O_CREAT) or (flags & getattr(os, "O_TMPFILE", 0)) == getattr(os, "O_TMPFILE", -1)
    if flags & os.O_PATH:
        # the resolver's flags for it: the same (the host), or a read-only open
        # of the object in an emulated root (RootResolver.path_only_flags)
        flags = ctx.resolver.path_only_flags(call, flags, resolve)
        if flags & os.O_PATH:
            return _open_path_only(ctx, call, flags, resolve)
    accmode = flags & os.O_ACCMODE
    writes = accmode in (os.O_WRONLY, os.O_RDWR) or flags & (os.O_TRUNC | os.O_CREAT)
    need = "write" if writes else "read"
    if creating:
        mode &= ~_umask(call.tid) & 0o7777
    else:
        mode = 0
    flags |= os.O_NOCTTY  # the supervisor must never gain a controlling terminal
    if need == "write":
        fd = _open_for_writing(ctx, call, flags, mode, resolve)
        return Fd(fd, bool(flags & os.O_CLOEXEC)) if isinstance(fd, int) else fd
    if flags & (os.O_ACCMODE | os.O_DIRECTORY) == os.O_RDONLY:
        # A read that would block if the object is a FIFO: look it up first
        # (opening a FIFO, even without blocking, wakes a writer waiting for it;
        # opening a device may do something: it is decided before it is opened)
        found = _open_maybe_fifo(ctx, call, flags, resolve)
        if found is not _NOT_PLAIN:
            return found
    fd, name = ctx.resolver.open(call, call.dirfd, call.path or b"", flags, mode, resolve)
    try:
        ctx.resolver.check(fd, name, need)
    except BaseException:  # by hand, not closed_on_error: the path of every open (~0.2 us)
        os.close(fd)
        raise
    return Fd(fd, bool(flags & os.O_CLOEXEC))


_NOT_PLAIN = Errno(0)  # _open_maybe_fifo: open it the usual way


def _open_maybe_fifo(ctx: Context, call: Call, flags: int, resolve: int) -> Reply:
    """O_RDONLY open, found by an O_PATH lookup: a FIFO goes to a worker of the pool
    (_fifo_later); a file or device is opened again through our fd of it;
    directories and /proc files (made-up listings and content, _procfs) the usual way."""
    probe, name = ctx.resolver.open(call, call.dirfd, call.path or b"", os.O_PATH | (flags & os.O_NOFOLLOW), 0,
                                    resolve)
    try:
        st = ctx.hot.fstat(probe)
        ctx.resolver.check(probe, name, "read", st)
        kind = stat.S_IFMT(st.mode)
        if kind == stat.S_IFLNK:
            raise os_error(errno.ELOOP)  # O_NOFOLLOW on a symlink
        if kind == stat.S_IFIFO:
            fd = _fifo_later(ctx, call, os.dup(probe), flags)
            return Fd(fd, bool(flags & os.O_CLOEXEC)) if isinstance(fd, int) else fd
        if kind == stat.S_IFDIR or st.dev == ctx.resolver.proc_dev:
            return _NOT_PLAIN
        ctx.resolver.devices.check(probe, st.mode)
        made = ctx.resolver.made_up_file(st, name) if kind == stat.S_IFREG else None
        determinism = ctx.resolver.determinism
        if kind == stat.S_IFCHR and determinism is not None:  # README "Deterministic runs"
            made = determinism.device_open(os.fstat(probe).st_rdev)
        if made is not None:
            return Fd(made, bool(flags & os.O_CLOEXEC))
        fd = ctx.resolver.reopen(probe, flags & ~os.O_NOFOLLOW | os.O_CLOEXEC)
        return (_Looked if kind == stat.S_IFREG else Fd)(fd, bool(flags & os.O_CLOEXEC))
    finally:
        os.close(probe)


def _waits_for_a_peer(ctx: Context, fd: int, flags: int) -> bool:
    """Would a blocking open of this object wait (a FIFO opened for reading or writing only)?"""
    return flags & os.O_ACCMODE != os.O_RDWR and stat.S_ISFIFO(ctx.hot.fstat(fd).mode)


def _fifo_later(ctx: Context, call: Call, held: int, flags: int) -> Union[int, Later]:
    """A blocking open of a FIFO waits until the other end is opened, maybe by another
    process of the sandbox whose open the notification loop must answer first: so it
    is done by a worker of the pool, which answers the notification (Later; an fd
    when it is opened at once).  `held` is our O_PATH fd of the FIFO (decided already;
    closed here).  The end of the run releases a worker still waiting
    (RunContext.release_waits).

    An open that would not wait takes no worker: a writer is first tried without
    blocking (it succeeds when the FIFO has a reader, and one waiting in a worker
    counts, as the kernel counts a blocked reader), and a reader of a FIFO whose
    writer waits in a worker is opened without blocking (an fd is returned).  So
    a worker waiting for the other end never waits for an open refused for want
    of a worker.  Every worker busy: EAGAIN (see _notif.Workers).
    """
    reopen = flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_TRUNC | os.O_DIRECTORY) | os.O_CLOEXEC
    accmode = flags & os.O_ACCMODE
    st = ctx.hot.fstat(held)
    fifo = (st.dev, st.ino)
    with closed_on_error(held):
        with ctx.waits_lock:  # a reader when a writer waits in a worker: it would not wait
            peer_waits = (fifo, os.O_WRONLY if accmode == os.O_RDONLY else os.O_RDONLY) in ctx.waits.values()
        if accmode == os.O_WRONLY or peer_waits:
            fd = _open_at_once(held, reopen)
            if fd >= 0:
                os.close(held)
                return fd
    with ctx.waits_lock:
        ctx.waits[held] = (fifo, accmode)

    def release() -> None:
        with ctx.waits_lock:
            ctx.waits.pop(held, None)
            os.close(held)

    def work() -> Reply:
        try:
            return Fd(os.open(_proc_fd(held), reopen), bool(flags & os.O_CLOEXEC))
        finally:
            release()
    return Later(work, release)  # every worker busy: EAGAIN (_notif.Workers)


def _open_at_once(held: int, flags: int) -> int:
    """Open the FIFO `held` without waiting, as a blocking open would when its other end
    is there (then clear O_NONBLOCK); -1 when a writer finds no reader (ENXIO)."""
    try:
        fd = os.open(_proc_fd(held), flags | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            return -1
        raise
    with closed_on_error(fd):
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def _open_for_writing(ctx: Context, call: Call, flags: int, mode: int, resolve: int) -> Union[int, Later]:
    """An open that may change a file is decided before it happens (Later: a FIFO's
    open is left to a worker of the pool, see _fifo_later).

    (O_RDONLY|O_TRUNC truncates as soon as the file is opened, and below
    Landlock ABI 3 nothing but this check stands in the way.)  The object is
    looked up, decided, then opened again through our own fd of it, so a
    racing rename cannot swap it; a file to create is decided on its
    directory and created there with O_NOFOLLOW.
    """
    path = call.path or b""
    if flags & os.O_CREAT and path.endswith(b"/"):
        raise os_error(errno.EISDIR)
    if (flags & os.O_CREAT and flags & os.O_EXCL and ctx.policy_gate is None
            and path.rpartition(b"/")[2] not in (b"", b".", b"..")):
        # a file that must not exist yet (tar's files, git's objects and locks): made at
        # once in its directory, no lookup of it first (an existing name is EEXIST there)
        return _create(ctx, call, path, flags, mode, resolve, exclusive=True)
    try:
        probe, name = ctx.resolver.open(call, call.dirfd, path, os.O_PATH | (flags & (os.O_NOFOLLOW | os.O_DIRECTORY)),
                                        0, resolve)
    except FileNotFoundError:
        if not flags & os.O_CREAT or path.endswith(b"/"):
            raise
        return _create(ctx, call, path, flags, mode, resolve)
    try:
        if flags & os.O_CREAT and flags & os.O_EXCL:
            raise os_error(errno.EEXIST)
        ctx.resolver.check(probe, name, "write")
        ctx.resolver.devices.check(probe, ctx.hot.fstat(probe).mode)
        if ctx.policy_gate is not None:  # Sandbox(policy_fn=), on the object looked up
            from . import _policyfn  # imported by preload
            _policyfn.check_open(ctx, call, name or b"")
        probe = ctx.resolver.writable(probe, name)
        if not flags & os.O_NONBLOCK and _waits_for_a_peer(ctx, probe, flags):
            return _fifo_later(ctx, call, os.dup(probe), flags)
        keep = 0
        if flags & _O_TMPFILE == _O_TMPFILE:
            no_new_setid(mode)
            keep = os.O_EXCL  # O_TMPFILE|O_EXCL: a file never to be linked (open(2))
        fd = os.open(_proc_fd(probe), flags & ~(os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW) | (flags & keep), mode)
        if flags & os.O_ACCMODE != os.O_RDONLY:
            with closed_on_error(fd):
                ctx.resolver.note_written(fd, name, False)
        return fd
    finally:
        os.close(probe)


def _create(ctx: Context, call: Call, path: bytes, flags: int, mode: int, resolve: int,
            exclusive: bool = False) -> int:
    """Create the file `path` names in its directory, decided on that directory's real
    path.  exclusive (O_EXCL, not looked up first): a refusal of the rules or of the
    space left answers EEXIST where the name exists, as the kernel checks that first."""
    parent, _, base = path.rpartition(b"/")
    if not base or base in (b".", b".."):
        raise os_error(errno.EISDIR)
    parent = parent or (b"/" if path.startswith(b"/") else b".")
    no_new_setid(mode)
    directory, name = ctx.resolver.open(call, call.dirfd, parent, os.O_PATH | os.O_DIRECTORY, 0, resolve)
    try:
        if name is not None:
            try:
                ctx.resolver.rules.check(name.rstrip(b"/") + b"/" + base, "write")
                if ctx.policy_gate is not None:  # Sandbox(policy_fn=)
                    from . import _policyfn
                    _policyfn.check_open(ctx, call, name.rstrip(b"/") + b"/" + base)
                ctx.resolver.need_space(name)
            except OSError:
                if exclusive:
                    _lookup_error(directory, base, "exists")
                raise
        fd = os.open(base, flags | os.O_NOFOLLOW, mode, dir_fd=directory)
        if name is not None:
            with closed_on_error(fd):
                ctx.resolver.note_written(fd, name.rstrip(b"/") + b"/" + base, True)
        return fd
    finally:
        os.close(directory)


def _lookup_error(fd: int, last: bytes, kind: str) -> None:
    """Raise EEXIST ("exists") or ENOENT ("missing") when the name `last` in directory fd
    says so, as the kernel's lookup would before any permission or space check (an
    error of that stat: nothing raised, the refusal stands)."""
    try:
        os.stat(last, dir_fd=fd, follow_symlinks=False)
        there = True
    except FileNotFoundError:
        there = False
    except OSError:
        return
    if kind == "exists" and there:
        raise os_error(errno.EEXIST)
    if kind == "missing" and not there:
        raise os_error(errno.ENOENT)


def _open_path_only(ctx: Context, call: Call, flags: int, resolve: int) -> Reply:
    """O_PATH: decided on our own lookup, then opened by the kernel.

    SECCOMP_IOCTL_NOTIF_ADDFD refuses O_PATH files (fget skips them), so
    this open cannot be done on behalf.
    """
    fd, name = ctx.resolver.open(call, call.dirfd, call.path or b"", flags & _O_PATH_FLAGS, 0, resolve)
    try:
        ctx.resolver.check(fd, name, "meta")
        ctx.resolver.devices.check(fd, ctx.hot.fstat(fd).mode)
    finally:
        os.close(fd)
    # CONTINUE: the kernel re-reads the path, and a racing thread could make
    # it name another object; but an O_PATH fd carries no access of its own:
    # every metadata call on it (stat, statfs, readlink, xattrs) is trapped
    # and decided on its object again (_is_o_path), and opening content
    # through it (/proc/self/fd/N) is an open done on behalf, decided on the
    # object, and checked by Landlock.
    return CONTINUE


def do_exec_check(ctx: Context, call: Call) -> Reply:
    """execve/execveat: refuse a denied file reached by a hard link, or a host pid's /proc/PID/exe."""
    if call.path == b"" and call.flags & AT_EMPTY_PATH:
        fd = ctx.tracees.getfd(call.tid, call.dirfd)
        name = ctx.resolver._name_of(fd)
    else:
        fd, name = ctx.resolver.lookup(call, call.dirfd, call.path or b"", bool(call.flags & AT_SYMLINK_NOFOLLOW))
    try:
        ctx.resolver.check(fd, name, "read")
        if ctx.policy_gate is not None:  # Sandbox(policy_fn=): the exec must run as it was decided
            from . import _policyfn  # imported by preload (runs without a callback never load it)
            argv = _policyfn.check_exec(ctx, call, name or b"", call.ptr)
            if argv is not None:
                st = os.stat(_proc_fd(fd))
                script = _script_name(fd, call) if stat.S_ISREG(st.st_mode) else None
                return Then(CONTINUE, _policyfn.watch_exec(call, argv, (st.st_dev, st.st_ino), script))
    finally:
        os.close(fd)
    # CONTINUE: Landlock's EXECUTE right is missing on every denied path, so
    # the kernel refuses the exec itself whatever path it re-reads; this check
    # only adds the hard-link (device, inode) test Landlock cannot make.  A
    # re-read path through a host pid's /proc/PID/exe fails in the kernel too:
    # following another process's magic link needs ptrace access, which
    # Landlock refuses outside the sandbox's domain.
    return CONTINUE


def _script_name(fd: int, call: Call) -> Optional[bytes]:
    """For a #! file, the name the kernel gives its interpreter (execve's path, or
    /dev/fd/N/path for execveat relative to a directory fd); None for another file."""
    try:
        with open(os.open(_proc_fd(fd), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            if f.read(2) != b"#!":
                return None
    except OSError:
        return None  # unreadable: a binary (if not, its interpreter is no match: killed)
    path = call.path or b""
    if call.dirfd == AT_FDCWD or path.startswith(b"/"):
        return path
    return b"/dev/fd/%d" % call.dirfd + (b"/" + path if path else b"")


def _on_object(ctx: Context, call: Call, need: str, act: Callable[[int, _syscalls.Stat], object],
               nofollow: Optional[bool] = None):
    """Look up and decide the tracee's path, then act(fd, stat) on the object; Value(0)."""
    fd, st = _object(ctx, call, need, nofollow)
    try:
        act(fd, st)
    finally:
        os.close(fd)
    return Value(0)


def _on_fd(ctx: Context, call: Call, need: str, act: Callable[[int], object]) -> Reply:
    """act(fd) on a private duplicate of the tracee's fd call.fd, decided for `need`; Value(0)."""
    fd = _fd_object(ctx, call, need)
    try:
        act(fd)
    finally:
        os.close(fd)
    return Value(0)


# --- renames and links (host sandboxes; an emulated root has its own: _rootops, which shares link_fd) ---



def _entry(ctx: Context, call: Call, dirfd: int, path: bytes) -> Tuple[int, bytes]:
    """(O_PATH fd of the parent directory, last component) of a name a rename or link
    changes, refused (EACCES) when it lies in another run's container (FsRules.foreign):
    the supervisor's thread then does the operation, under the same Landlock rules
    as the command, so the kernel decides everything else as for the command."""
    fd, last, name = ctx.resolver.parent(call, dirfd, path)
    with closed_on_error(fd):
        if name is None or ctx.resolver.rules.foreign(name.rstrip(b"/") + b"/" + last, itself=True):
            raise os_error(errno.EACCES)
    if path.endswith(b"/") and last not in (b".", b".."):
        last += b"/"  # the kernel's answer for "file/" (ENOTDIR)
    return fd, last


def do_rename(ctx: Context, call: Call) -> Reply:
    """rename, renameat, renameat2 in a host sandbox: a container of another run's
    workdir may not be moved out of its place (nor anything into or out of one),
    where a later open would no longer see it for what it is (README "Where
    sandlock keeps its own files")."""
    old, old_last = _entry(ctx, call, call.dirfd, call.path or b"")
    with closed_after(old):
        new, new_last = _entry(ctx, call, call.dirfd2, call.path2 or b"")
        with closed_after(new):
            _syscalls._call("renameat2", old, old_last, new, new_last, call.flags)
    return Value(0)


def do_link(ctx: Context, call: Call) -> Reply:
    """link, linkat in a host sandbox: no hard link to a file in another run's container
    (it would carry the file out, see do_rename); the source is looked up and
    decided like an open's, the link made through /proc/self/fd (as _rootops)."""
    if call.flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        return Errno(errno.EINVAL)
    follow = bool(call.flags & AT_SYMLINK_FOLLOW)
    source, _ = _object(ctx, call, "meta", nofollow=not follow)
    with closed_after(source):
        new, new_last = _entry(ctx, call, call.dirfd2, call.path2 or b"")
        with closed_after(new):
            if not call.path:  # linkat(fd, "", AT_EMPTY_PATH): the kernel's rule for that spelling
                _syscalls._call("linkat", source, b"", new, new_last, AT_EMPTY_PATH)
            else:
                link_fd(source, new, new_last)
    return Value(0)


def link_fd(source: int, new: int, new_last: bytes) -> None:
    """Make new_last in directory fd `new` a hard link to the object of fd `source`.
    linkat(source fd, "", AT_EMPTY_PATH) needs CAP_DAC_READ_SEARCH; the
    /proc/self/fd spelling with AT_SYMLINK_FOLLOW does not."""
    _syscalls._call("linkat", AT_FDCWD, _proc_fd(source), new, new_last, AT_SYMLINK_FOLLOW)


def do_truncate(ctx: Context, call: Call) -> Reply:
    """truncate(2) when Landlock has no TRUNCATE right (ABI < 3), and in an emulated root."""
    if call.size >= 1 << 63:
        return Errno(errno.EINVAL)  # a negative length
    return _on_object(ctx, call, "write", lambda fd, st: os.truncate(_proc_fd(fd), call.size), nofollow=False)


# --- metadata writes ----------------------------------------------------------------------

def do_chmod(ctx: Context, call: Call) -> Reply:
    _check_flags(call, NOFOLLOW_OR_EMPTY)
    def act(fd: int, st: _syscalls.Stat) -> None:
        if stat.S_ISLNK(st.mode):
            raise os_error(errno.EOPNOTSUPP)
        no_new_setid(call.mode, st.mode)
        os.chmod(_proc_fd(fd), call.mode & 0o7777)
    return _on_object(ctx, call, "write", act)


def do_chown(ctx: Context, call: Call) -> Reply:
    _check_flags(call, NOFOLLOW_OR_EMPTY)
    return _on_object(ctx, call, "write", lambda fd, st: os.chown(_proc_fd(fd), call.uid, call.gid))


def do_utimes(ctx: Context, call: Call) -> Reply:
    times = _read_times(ctx, call)  # the kernel reads the times first (EFAULT before EINVAL)
    _check_flags(call, NOFOLLOW_OR_EMPTY if call.path is not None or call.dirfd == AT_FDCWD else 0)

    def act(fd: int, st: Optional[_syscalls.Stat] = None) -> None:
        if st is not None and stat.S_ISLNK(st.mode):
            # the times of the link itself: /proc/self/fd/N would follow it
            directory, last, _ = ctx.resolver.parent(call, call.dirfd, call.path or b"")
            try:
                _syscalls.utimensat(directory, last, times, AT_SYMLINK_NOFOLLOW)
            finally:
                os.close(directory)
            return
        _syscalls.utimensat(-100, _proc_fd(fd), times, 0)
    if call.path is None:  # utimensat(fd, NULL, ...): the fd itself
        call.fd = call.dirfd
        return _on_fd(ctx, call, "write", act)
    return _on_object(ctx, call, "write", act)


def _read_times(ctx: Context, call: Call) -> Optional[bytes]:
    """The new times as two struct timespec, or None for "now"."""
    if call.ptr == 0:
        return None
    if call.mask == TIMES_UTIMBUF:
        atime, mtime = _UTIMBUF.unpack(read_mem(ctx.tracees, call.tid, call.ptr, _UTIMBUF.size))
        return _TIMESPEC2.pack(atime, 0, mtime, 0)
    if call.mask == TIMES_TIMEVAL:
        a_s, a_us, m_s, m_us = _TIMEVAL2.unpack(read_mem(ctx.tracees, call.tid, call.ptr, _TIMEVAL2.size))
        if not (0 <= a_us < 1000000 and 0 <= m_us < 1000000):
            raise os_error(errno.EINVAL)
        return _TIMESPEC2.pack(a_s, a_us * 1000, m_s, m_us * 1000)
    return read_mem(ctx.tracees, call.tid, call.ptr, _TIMESPEC2.size)


def _xattr_value(ctx: Context, call: Call) -> bytes:
    if call.mode & ~3:  # XATTR_CREATE | XATTR_REPLACE
        raise os_error(errno.EINVAL)
    if call.name == b"security.capability":
        # file capabilities are set-id by another name (README); the supervisor
        # thread has no CAP_SETFCAP, so the kernel says so too
        raise os_error(errno.EPERM)
    if call.size > 65536:
        raise os_error(errno.E2BIG)
    return read_mem(ctx.tracees, call.tid, call.ptr, call.size) if call.size else b""


def do_setxattr(ctx: Context, call: Call) -> Reply:
    value = _xattr_value(ctx, call)
    return _on_object(ctx, call, "write", lambda fd, st: os.setxattr(_proc_fd(fd), call.name or b"", value, call.mode))


def do_removexattr(ctx: Context, call: Call) -> Reply:
    return _on_object(ctx, call, "write", lambda fd, st: os.removexattr(_proc_fd(fd), call.name or b""))


# The fd acted on may be an O_PATH fd of a copied-up file (see _fd_object): act
# through /proc/self/fd/N, which works for both.

def do_fchmod(ctx: Context, call: Call) -> Reply:
    def act(fd: int) -> None:
        no_new_setid(call.mode, ctx.hot.fstat(fd).mode)
        os.chmod(_proc_fd(fd), call.mode & 0o7777)
    return _on_fd(ctx, call, "write", act)


def do_fchown(ctx: Context, call: Call) -> Reply:
    return _on_fd(ctx, call, "write", lambda fd: os.chown(_proc_fd(fd), call.uid, call.gid))


def do_fsetxattr(ctx: Context, call: Call) -> Reply:
    value = _xattr_value(ctx, call)
    return _on_fd(ctx, call, "write", lambda fd: os.setxattr(_proc_fd(fd), call.name or b"", value, call.mode))


def do_fremovexattr(ctx: Context, call: Call) -> Reply:
    return _on_fd(ctx, call, "write", lambda fd: os.removexattr(_proc_fd(fd), call.name or b""))


# --- locks and leases (README "Locks and kernel pools") -----------------------------------------
#
# A lock on a file holds up everyone else who locks it, and a lease holds up
# everyone who opens it for writing: on a host file the command may only read,
# neither is the command's business.  Locks are taken on behalf, on the
# supervisor's duplicate of the caller's fd (the same open file description)
# with its private copy of struct flock, so no racing dup2 or rewrite can
# change what was decided.  POSIX record locks belong to a process and cannot
# be taken on its behalf: they are taken as open file description (OFD)
# locks, which the kernel handles the same way for one process with one fd
# (README lists the differences).  Leases (F_SETLEASE other than F_UNLCK) are
# refused by the filter on register values (_filter.ARGUMENT_RULES).

LOCK_SH, LOCK_EX, LOCK_NB, LOCK_UN, LOCK_MAND = 1, 2, 4, 8, 32
F_GETLK, F_SETLK, F_SETLKW = 5, 6, 7           # uapi asm-generic/fcntl.h (x86_64 and aarch64)
F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW = 36, 37, 38
F_RDLCK, F_WRLCK, F_UNLCK = 0, 1, 2
LOCK_COMMANDS = (F_GETLK, F_SETLK, F_SETLKW, 12, 13, 14, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW)
# (12-14 are F_GETLK64/F_SETLK64/F_SETLKW64 of 32-bit ABIs: the 64-bit fcntl
# answers them EINVAL, and so does do_fcntl, should a kernel ever take them.)
FLOCK = struct.Struct("=hh4xqqi4x")  # struct flock (asm-generic/fcntl.h): type, whence, start, len, pid
LOCK_RETRY_MAX = 0.05  # a waiting lock is retried at most this many seconds apart


def _may_lock(ctx: Context, fd: int) -> None:
    """EACCES unless the policy lets the command write the file behind fd (our duplicate).

    A description open for writing was decided for writing when it was
    opened; pipes, sockets and anonymous inodes are no host file.  With a
    workdir, a file still shared with the workdir is the host's file: EACCES
    until the command writes it (a copy-up)."""
    if fcntl.fcntl(fd, fcntl.F_GETFL) & (os.O_ACCMODE | os.O_PATH) in (os.O_WRONLY, os.O_RDWR):
        return
    name = ctx.resolver._name_of(fd)
    if name is None:
        return
    st = ctx.hot.fstat(fd)
    try:
        ctx.resolver.check(fd, name, "write", st)
    except OSError:
        raise os_error(errno.EACCES) from None
    upper = ctx.resolver.upper
    if upper is not None and upper.is_shared(st.dev, st.ino):
        raise os_error(errno.EACCES)


def _lock_later(ctx: Context, call: Call, fd: int, attempt: Callable[[int], object]) -> Later:
    """A lock that must wait: a worker thread retries `attempt(fd)` (non-blocking: EAGAIN
    or EACCES while another holds the lock) until it is taken, the caller no longer
    waits (its death, the end of the run) or has a signal to handle (_signalled),
    and answers the notification (Later).  It closes fd (our duplicate).  Retrying
    instead of blocking means no worker is ever stuck in the kernel for nobody.

    A lock taken in the instant its caller is interrupted stays with the open
    file description (the caller's restarted call then finds it its own)."""
    def work() -> Reply:
        delay = 0.001
        reply: Reply = None
        try:
            while True:
                try:
                    attempt(fd)
                    reply = Value(0)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        reply = Errno(exc.errno or errno.EIO)
                        break
                if not ctx.pending(call):
                    break  # gone (or the run is over): nobody to answer
                interrupted = _signalled(call.tid)
                if interrupted:
                    reply = Errno(interrupted)
                    break
                time.sleep(delay)
                delay = min(delay * 2, LOCK_RETRY_MAX)
        except BaseException:  # fail closed, never leave the caller waiting
            reply = Errno(errno.EPERM)
        finally:
            os.close(fd)
        return reply  # None: nobody left to answer

    # every worker of the bounded pool (_notif.Workers) busy: no lock record to
    # wait with (flock(2), fcntl(2): ENOLCK)
    return Later(work, lambda: os.close(fd), errno.ENOLCK)


ERESTARTSYS = 512  # include/linux/errno.h: restart if the handler has SA_RESTART, else EINTR


def _signalled(tid: int) -> int:
    """0, or the errno for a waiting lock whose caller has a signal to handle.

    A trapped call waits for its answer killably (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV),
    so a caught signal would stay pending until the lock came, where the kernel's
    own wait ends with ERESTARTSYS (alarm(2) or `flock -w` time a lock out that
    way).  We answer ERESTARTSYS, which the signal code then turns into a restart
    (SA_RESTART) or EINTR, when the signal can only be taken by this thread: its
    own, or the process's when it has no other thread.  Another thread might take
    a process-wide signal first, and ERESTARTSYS without a signal would reach the
    program as errno 512: then EINTR (README)."""
    try:
        fields = proc_status(tid, (b"SigPnd", b"ShdPnd", b"SigBlk", b"SigCgt", b"Threads"))
    except OSError:
        return 0
    try:
        blocked, caught = int(fields[b"SigBlk"], 16), int(fields[b"SigCgt"], 16)
        own = int(fields[b"SigPnd"], 16) & ~blocked & caught
        shared = int(fields[b"ShdPnd"], 16) & ~blocked & caught
        threads = int(fields.get(b"Threads", b"1"))
    except (KeyError, ValueError):
        return 0
    if own or (shared and threads == 1):
        return ERESTARTSYS
    return errno.EINTR if shared else 0


def do_flock(ctx: Context, call: Call) -> Reply:
    """flock(2) other than LOCK_UN (the filter lets that through): on behalf."""
    op = call.flags
    if op & LOCK_MAND:
        return Value(0)  # Linux >= 5.15 ignores LOCK_MAND (and takes no lock)
    kind = op & ~LOCK_NB
    if kind not in (LOCK_SH, LOCK_EX, LOCK_UN):
        return Errno(errno.EINVAL)
    fd = ctx.tracees.getfd(call.tid, call.fd)
    try:
        if kind != LOCK_UN:
            _may_lock(ctx, fd)
        try:
            fcntl.flock(fd, kind | LOCK_NB)
            return Value(0)
        except BlockingIOError:
            if op & LOCK_NB:
                raise
        held, fd = fd, -1
        return _lock_later(ctx, call, held, lambda f: fcntl.flock(f, kind | LOCK_NB))
    finally:
        if fd >= 0:
            os.close(fd)


def do_fcntl(ctx: Context, call: Call) -> Reply:
    """fcntl(2) lock commands (the filter lets every other command through): on behalf,
    as OFD locks on our duplicate of the caller's open file description."""
    cmd = call.flags
    if cmd not in (F_GETLK, F_SETLK, F_SETLKW, F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW):
        return Errno(errno.EINVAL)
    ltype, whence, start, length, pid = FLOCK.unpack(read_mem(ctx.tracees, call.tid, call.ptr, FLOCK.size))
    if cmd in (F_OFD_GETLK, F_OFD_SETLK, F_OFD_SETLKW) and pid != 0:
        return Errno(errno.EINVAL)
    if ltype not in (F_RDLCK, F_WRLCK, F_UNLCK):
        return Errno(errno.EINVAL)
    mine = FLOCK.pack(ltype, whence, start, length, 0)
    fd = ctx.tracees.getfd(call.tid, call.fd)
    try:
        if cmd in (F_GETLK, F_OFD_GETLK):
            result = fcntl.fcntl(fd, F_OFD_GETLK, mine)
            write_mem(ctx.tracees, call.tid, call.ptr, result)
            return Value(0)
        if ltype != F_UNLCK:
            _may_lock(ctx, fd)
        try:
            fcntl.fcntl(fd, F_OFD_SETLK, mine)
            return Value(0)
        except OSError as exc:
            if cmd in (F_SETLK, F_OFD_SETLK) or exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
        held, fd = fd, -1
        return _lock_later(ctx, call, held, lambda f: fcntl.fcntl(f, F_OFD_SETLK, mine))
    finally:
        if fd >= 0:
            os.close(fd)


# --- inotify instances (README "Locks and kernel pools") ------------------------------------------

INOTIFY_MAX = 32  # live inotify instances per sandbox (the user's own limit is usually 128)
IN_CLOEXEC, IN_NONBLOCK = os.O_CLOEXEC, os.O_NONBLOCK
KCMP_FILE, KCMP_FILES = 0, 2
_INOTIFY_LINK = b"anon_inode:inotify"


def do_inotify_init(ctx: Context, call: Call) -> Reply:
    """inotify_init/inotify_init1: made on behalf while the sandbox holds fewer than
    INOTIFY_MAX instances, else EMFILE (as the kernel's per-user limit says)."""
    if call.flags & ~(IN_CLOEXEC | IN_NONBLOCK):
        return Errno(errno.EINVAL)
    if count_inotify(ctx.members.processes(), INOTIFY_MAX) >= INOTIFY_MAX:
        return Errno(errno.EMFILE)
    fd = _syscalls.inotify_init1((call.flags & IN_NONBLOCK) | IN_CLOEXEC)
    return Fd(fd, bool(call.flags & IN_CLOEXEC))


def count_inotify(processes: List[int], limit: int) -> int:
    """The inotify instances the fd tables of `processes` hold (up to `limit`).

    Every instance links to the same anonymous inode, so instances are told
    apart with kcmp(KCMP_FILE) against one holder of each instance found;
    threads sharing their leader's fd table are skipped (kcmp KCMP_FILES).
    An instance that cannot be compared (gone meanwhile) counts as new, so a
    race only ever counts too many.  Instances in flight in a unix socket are
    in no table: _netops refuses to send them."""
    found: List[Tuple[int, int]] = []  # (tid, fd) holding each instance seen
    for pid in processes:
        try:
            tids = [int(t) for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            continue
        for tid in tids:
            if tid != pid and _kcmp(pid, tid, KCMP_FILES, 0, 0) in (0, None):
                continue  # its leader's table (or no kcmp: threads are taken to share it)
            for fd in _inotify_fds(tid, pid):
                if not any(_kcmp(tid, other, KCMP_FILE, fd, other_fd) == 0 for other, other_fd in found):
                    found.append((tid, fd))
                    if len(found) >= limit:
                        return len(found)
    return len(found)


def _inotify_fds(tid: int, pid: int) -> List[int]:
    directory = f"/proc/{pid}/task/{tid}/fd"
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    out = []
    for name in names:
        try:
            if os.readlink(f"{directory}/{name}".encode()) == _INOTIFY_LINK:
                out.append(int(name))
        except OSError:
            continue
    return out


def _kcmp(pid1: int, pid2: int, kind: int, idx1: int, idx2: int) -> Optional[int]:
    """kcmp(2): 0 when equal; -1 when it cannot say (a task or fd gone: not equal);
    None on a kernel without kcmp (CONFIG_KCMP), where every fd counts apart."""
    try:
        return _syscalls.kcmp(pid1, pid2, kind, idx1, idx2)
    except OSError as exc:
        return None if exc.errno == errno.ENOSYS else -1
