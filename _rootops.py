"""Path syscalls of an emulated root, performed on behalf of the child
(docs/design.md "Acting on behalf", "Emulated root").

With --root nothing path-shaped may CONTINUE (the kernel would resolve it
against the host's "/"), so besides the handlers of _fsops (which work
through RootResolver) this module does the namespace operations (mkdir,
mknod, unlink, rmdir, rename, link, symlink) with *at calls on directory fds
the supervisor resolved, plus getcwd and chdir.

execve and execveat are _rootexec's: the kernel does them, on a rewritten
path.  chdir and fchdir never reach the kernel: the supervisor records the
virtual cwd (`do_chdir`, _rootscratch.Cwd).
"""

from __future__ import annotations

import errno
import os
import stat
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _syscalls
from ._syscalls import closed_after, closed_on_error
from ._structs import AT_NO_AUTOMOUNT, AT_REMOVEDIR, AT_SYMLINK_FOLLOW, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT
from ._errors import os_error as _oserror
from ._fsops import STAT_FLAGS, X_OK, _check_flags, _lookup_error, _object, _proc_fd, _umask, do_stat, link_fd
from ._notif import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, Call, Context, Errno, Reply, Value, tgid_of, write_mem
from ._resolve import d_path



def _parent_for_write(ctx: Context, call: Call, dirfd: int, path: bytes, grows: bool = False,
                      kernel_first: Optional[str] = None) -> Tuple[int, bytes]:
    """(parent dir fd, last name) of a name to create or remove, decided for writing
    (grows: making something new, refused in a full upper layer).

    kernel_first: the error the kernel finds in its lookup, before any permission
    or space check, so it wins over EACCES/ENOSPC as in a real chroot: "exists"
    (making a name: EEXIST when it is there) or "missing" (removing or renaming
    one: ENOENT when it is not)."""
    fd, last, name = ctx.resolver.parent(call, dirfd, path)
    with closed_on_error(fd):
        if name is None:
            raise _oserror(errno.ENOTDIR)
        try:
            ctx.resolver.rules.check(name.rstrip(b"/") + b"/" + last if last != b"." else name, "write")
            if grows:
                ctx.resolver.need_space(name)
        except OSError as exc:
            if kernel_first == "exists" and last in (b".", b".."):
                raise _oserror(errno.EEXIST) from None  # "/", "." and ".." always are (mkdir -p /a/b)
            if kernel_first is not None and last not in (b".", b".."):
                _lookup_error(fd, last, kernel_first)
            raise exc
        return fd, last


def do_mkdir(ctx: Context, call: Call) -> Reply:
    fd, last = _parent_for_write(ctx, call, call.dirfd, call.path or b"", grows=True, kernel_first="exists")
    try:
        if last in (b".", b".."):
            raise _oserror(errno.EEXIST)
        os.mkdir(last, call.mode & 0o7777 & ~_umask(call.tid), dir_fd=fd)
    finally:
        os.close(fd)
    return Value(0)


def do_mknod(ctx: Context, call: Call) -> Reply:
    kind = stat.S_IFMT(call.mode) or stat.S_IFREG
    if kind not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
        return Errno(errno.EINVAL)
    if kind in (stat.S_IFCHR, stat.S_IFBLK) or call.mode & (stat.S_ISUID | stat.S_ISGID):
        return Errno(errno.EPERM)  # no CAP_MKNOD in a sandbox; no set-id file (README)
    fd, last = _parent_for_write(ctx, call, call.dirfd, call.path or b"", grows=True, kernel_first="exists")
    try:
        if last in (b".", b".."):
            raise _oserror(errno.EEXIST)
        os.mknod(last, kind | (call.mode & 0o7777 & ~_umask(call.tid)), 0, dir_fd=fd)
    finally:
        os.close(fd)
    return Value(0)


def do_unlink(ctx: Context, call: Call) -> Reply:
    """unlink, unlinkat (AT_REMOVEDIR too) and rmdir (a row with flags=AT_REMOVEDIR)."""
    if call.flags & ~AT_REMOVEDIR:
        return Errno(errno.EINVAL)
    path = call.path or b""
    removing_dir = bool(call.flags & AT_REMOVEDIR)
    fd, last = _parent_for_write(ctx, call, call.dirfd, path, kernel_first="missing")
    try:
        if removing_dir:
            if last == b".":
                raise _oserror(errno.EINVAL)
            if last == b"..":
                raise _oserror(errno.ENOTEMPTY)
            os.rmdir(last, dir_fd=fd)
        else:
            if last in (b".", b".."):
                raise _oserror(errno.EISDIR)
            if path.endswith(b"/"):
                st = os.stat(last, dir_fd=fd, follow_symlinks=False)
                raise _oserror(errno.EISDIR if stat.S_ISDIR(st.st_mode) else errno.ENOTDIR)
            os.unlink(last, dir_fd=fd)
    finally:
        os.close(fd)
    return Value(0)


def do_rename(ctx: Context, call: Call) -> Reply:
    if call.flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE | RENAME_WHITEOUT):
        return Errno(errno.EINVAL)
    if call.flags & RENAME_WHITEOUT:
        return Errno(errno.EPERM)
    old, old_last = _parent_for_write(ctx, call, call.dirfd, call.path or b"", kernel_first="missing")
    with closed_after(old):
        try:
            new, new_last = _parent_for_write(ctx, call, call.dirfd2, call.path2 or b"",
                                              kernel_first="exists" if call.flags & RENAME_NOREPLACE else None)
        except OSError:
            if old_last not in (b".", b".."):
                _lookup_error(old, old_last, "missing")  # the kernel looks the source up first
            raise
        with closed_after(new):
            if b"." in (old_last, new_last) or b".." in (old_last, new_last):
                raise _oserror(errno.EBUSY if old_last in (b".", b"..") else errno.EISDIR)
            upper = getattr(ctx.resolver, "upper", None)
            if upper is not None:
                _leave_layer(upper, old, old_last, new, new_last, call.flags)
            if call.flags:
                _syscalls._call("renameat2", old, old_last, new, new_last, call.flags)
            else:
                os.rename(old_last, new_last, src_dir_fd=old, dst_dir_fd=new)
    return Value(0)


def _leave_layer(upper, old: int, old_last: bytes, new: int, new_last: bytes, flags: int) -> None:
    """Before a rename between the upper layer and a place outside it (README "Copy-on-write
    workdir"): what leaves the layer must not be the workdir's own inode, or writing it
    outside would change the workdir.  A file still shared with the workdir is copied up
    first (the copy leaves); a directory gets EXDEV, as between two filesystems (it may
    hold shared files; mv then copies).  RENAME_EXCHANGE moves both ways."""
    tree = os.fsencode(upper.tree)
    where = [(fd, last, d_path(fd)) for fd, last in ((old, old_last), (new, new_last))]
    inside = [name == tree or name.startswith(tree + b"/") for _, _, name in where]
    if inside[0] == inside[1]:
        return  # within the layer, or nowhere near it
    leaving = [where[0]] if inside[0] else []
    if flags & RENAME_EXCHANGE and inside[1]:
        leaving.append(where[1])
    for fd, last, name in leaving:
        try:
            st = os.stat(last, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # the rename itself says ENOENT
        if stat.S_ISDIR(st.st_mode):
            raise _oserror(errno.EXDEV)
        if stat.S_ISREG(st.st_mode) and upper.is_shared(st.st_dev, st.st_ino):
            upper.copy_up(name.rstrip(b"/") + b"/" + last)


def do_link(ctx: Context, call: Call) -> Reply:
    if call.flags & ~(AT_SYMLINK_FOLLOW | AT_EMPTY_PATH):
        return Errno(errno.EINVAL)
    follow = bool(call.flags & AT_SYMLINK_FOLLOW)
    source, st = _object(ctx, call, "write", nofollow=not follow)
    with closed_after(source):
        if stat.S_ISDIR(st.mode):
            raise _oserror(errno.EPERM)
        new, new_last = _parent_for_write(ctx, call, call.dirfd2, call.path2 or b"", kernel_first="exists")
        with closed_after(new):
            if new_last in (b".", b".."):
                raise _oserror(errno.EEXIST)
            link_fd(source, new, new_last)
    return Value(0)


def do_symlink(ctx: Context, call: Call) -> Reply:
    target = call.path or b""
    if not target:
        return Errno(errno.ENOENT)
    fd, last = _parent_for_write(ctx, call, call.dirfd2, call.path2 or b"", grows=True, kernel_first="exists")
    try:
        if last in (b".", b".."):
            raise _oserror(errno.EEXIST)
        os.symlink(target, last, dir_fd=fd)  # the target is stored as written: a guest path
    finally:
        os.close(fd)
    return Value(0)


def do_fstatat(ctx: Context, call: Call) -> Reply:
    """newfstatat in a root: lstat of one entry of a directory fd (find, ls -l) is
    answered from the directory itself (RootResolver.stat_entry), a clean absolute
    path, or one relative to the cwd, from the root (RootResolver.stat_path); the rest
    as on the host (_fsops.do_stat)."""
    path = call.path
    if (call.flags & AT_SYMLINK_NOFOLLOW and call.dirfd >= 0 and path and b"/" not in path
            and path != b"." and path != b".."):
        _check_flags(call, STAT_FLAGS)
        st = ctx.resolver.stat_entry(call, call.dirfd, path)
        if st is not None:
            write_mem(ctx.tracees, call.tid, call.ptr, ctx.resolver.reported(st).raw)
            return Value(0)
    elif path and (path[0] == 47 or call.dirfd == AT_FDCWD) and not call.flags & ~(AT_SYMLINK_NOFOLLOW | AT_NO_AUTOMOUNT):
        # an absolute path (python's imports) or one relative to the cwd (make, gcc, git),
        # which the general way joins to the cwd too: RootResolver.stat_path, or the general way
        st = ctx.resolver.stat_path(call, path, bool(call.flags & AT_SYMLINK_NOFOLLOW))
        if st is not None:
            write_mem(ctx.tracees, call.tid, call.ptr, ctx.resolver.reported(st).raw)
            return Value(0)
    return do_stat(ctx, call)


def do_getcwd(ctx: Context, call: Call) -> Reply:
    path = ctx.resolver.virtual_cwd(call.tid) + b"\0"
    if call.size < len(path):
        return Errno(errno.ERANGE)
    write_mem(ctx.tracees, call.tid, call.ptr, path)
    return Value(len(path))


# --- chdir: recorded by the supervisor, never reaches the kernel ------------------------------

def do_chdir(ctx: Context, call: Call) -> Reply:
    """chdir and fchdir (a row with an fd): recorded by the supervisor, see _rootscratch.Cwd."""
    resolver = ctx.resolver
    if call.path is None:
        fd = ctx.tracees.getfd(call.tid, call.fd)
        st = os.fstat(fd)
        name = resolver._checked_name(fd)
    else:
        fd, st_ = _object(ctx, call, "meta", nofollow=False)
        st, name = os.fstat(fd), d_path(fd)
    try:
        if not stat.S_ISDIR(st.st_mode):
            return Errno(errno.ENOTDIR)
        if not os.access(_proc_fd(fd), X_OK):
            return Errno(errno.EACCES)
    finally:
        os.close(fd)
    virt = resolver.virtual_of_host(name or b"")
    if virt is None:
        return Errno(errno.EACCES)
    resolver.cwd.set(tgid_of(call.tid), virt)
    return Value(0)
