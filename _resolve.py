"""Path resolution on behalf of a tracee, and the filesystem policy decision.

`lookup` turns the tracee's (dirfd, path) into an O_PATH fd held by the
supervisor: relative paths start from the tracee's own cwd or dirfd (fetched
as fds, never as strings), absolute ones from "/".  The kernel resolves with
openat2(2) under the supervisor thread's own Landlock domain and
RESOLVE_NO_MAGICLINKS, so a magic link of the supervisor itself can never be
followed; the only magic links followed are /proc/<pid>/{fd/N,cwd,exe,root}
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
import os
import re
import stat
from typing import Callable, Iterable, Optional, Set, Tuple

import _structs as S
import _syscalls
from _notif import AT_EMPTY_PATH, AT_FDCWD, Call, Tracees, tgid_of

_O_PATH = os.O_PATH | os.O_CLOEXEC
_O_PATH_NOFOLLOW = _O_PATH | os.O_NOFOLLOW
_MAGIC = re.compile(rb"^/proc/(\d+)/(?:task/\d+/)?(?:fd/\d+|cwd|exe|root)(?:/|$)")
_PROC_PID = re.compile(rb"^/proc/(\d+)(/.*)?$")


class Held(bytes):
    """The real path of an object reached through a magic link of the sandbox's
    own process (/proc/self/fd/N, cwd, exe): its metadata may be read like
    fstat's, but writes and content are decided on the path as usual."""


def _eacces() -> OSError:
    return OSError(errno.EACCES, os.strerror(errno.EACCES))


class FsRules:
    """The filesystem part of a policy, as decisions on real paths."""

    def __init__(self, readable: Iterable[str], writable: Iterable[str], denied: Iterable[str]) -> None:
        self.writable = frozenset(os.fsencode(p) for p in writable)
        self.readable = frozenset(os.fsencode(p) for p in readable) | self.writable
        self.denied = frozenset(os.fsencode(p) for p in denied)
        self.ancestors = frozenset(a for p in self.readable for a in _ancestors(p))
        self.denied_inodes: Set[Tuple[int, int]] = set()
        for path in self.denied:
            try:
                st = os.stat(path)
            except OSError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                self.denied_inodes.add((st.st_dev, st.st_ino))

    @staticmethod
    def _covered(path: bytes, tops: frozenset) -> bool:
        if not tops:
            return False
        while True:
            if path in tops:
                return True
            if path == b"/":
                return False
            path = path[:path.rindex(b"/")] or b"/"

    def is_denied(self, path: bytes) -> bool:
        return self._covered(path, self.denied)

    def check(self, path: bytes, need: str) -> None:
        """Raise EACCES unless `need` ("meta", "read", "write") is allowed on `path`."""
        if self.denied and self._covered(path, self.denied):
            raise _eacces()
        if need == "write":
            ok = self._covered(path, self.writable)
        elif need == "read":
            ok = self._covered(path, self.readable)
        else:
            ok = self._covered(path, self.readable) or path in self.ancestors
        if not ok:
            raise _eacces()

    def check_inode(self, st_dev: int, st_ino: int) -> None:
        if (st_dev, st_ino) in self.denied_inodes:
            raise _eacces()


def _ancestors(path: bytes) -> Iterable[bytes]:
    while path != b"/":
        path = path[:path.rindex(b"/")] or b"/"
        yield path


def d_path(fd: int) -> bytes:
    """The kernel's name for what fd refers to (readlink of /proc/self/fd/N)."""
    name = os.readlink(f"/proc/self/fd/{fd}".encode())
    if name.endswith(b" (deleted)"):
        name = name[: -len(b" (deleted)")]
    return name


class Resolver:
    """Looks paths up for tracees and decides on the objects found."""

    emulated_root = False  # _rootfs.RootResolver: every path is virtual

    def __init__(self, rules: FsRules, tracees: Tracees, is_member: Callable[[int], bool],
                 hot: "_syscalls.HotCalls") -> None:
        self.hot = hot
        self.rules = rules
        self.tracees = tracees
        self.is_member = is_member
        self.root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.proc_dev = os.stat("/proc").st_dev
        self.dev_links = _dev_links()

    def close(self) -> None:
        os.close(self.root)

    # -- bases ----------------------------------------------------------------------

    def base(self, call: Call, dirfd: int) -> int:
        """An fd for the directory a relative path starts from (caller closes it)."""
        if dirfd == AT_FDCWD:
            fd = os.open(f"/proc/{call.tid}/cwd", os.O_PATH | os.O_CLOEXEC)
            try:
                self.tracees.confirm()  # the caller's cwd, not that of a task with its tid
            except OSError:
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
        if path.startswith(b"/proc/self") and (len(path) == 10 or path[10:11] == b"/"):
            return b"/proc/%d" % tgid_of(call.tid) + path[10:]
        if path.startswith(b"/proc/thread-self") and (len(path) == 17 or path[17:18] == b"/"):
            return b"/proc/%d/task/%d" % (tgid_of(call.tid), call.tid) + path[17:]
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
                raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
            fd = self.base(call, dirfd)
            try:
                return fd, self._name_of(fd)
            except BaseException:
                os.close(fd)
                raise
        open_flags = os.O_PATH | os.O_CLOEXEC | extra | (os.O_NOFOLLOW if nofollow else 0)
        return self.open(call, dirfd, path, open_flags, 0, 0)

    def open_plain(self, path: bytes, nofollow: bool) -> int:
        """O_PATH fd of an absolute, clean, symlink-free path outside /proc, else -1.

        A path that passes is its own real path, so the caller may decide on
        it without asking the kernel for the object's name.
        """
        if not _clean(path) or path.startswith(b"/proc/"):
            return -1
        flags = _O_PATH_NOFOLLOW if nofollow else _O_PATH
        try:
            return self.hot.openat2(self.root, path, flags, 0, S.RESOLVE_NO_SYMLINKS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return -1
            raise

    def open(self, call: Call, dirfd: int, path: bytes, flags: int, mode: int,
             resolve: int) -> Tuple[int, Optional[bytes]]:
        """openat2(2) of the tracee's (dirfd, path) by the supervisor: (fd, real path or None)."""
        if not path:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
        flags |= os.O_CLOEXEC
        scoped = resolve & (S.RESOLVE_BENEATH | S.RESOLVE_IN_ROOT)
        if path[:1] == b"/" and not scoped:
            path = self._rewrite_self(call, path)
            if _clean(path) and not path.startswith(b"/proc/") and not resolve:
                try:
                    fd = self.hot.openat2(self.root, path, flags, mode, S.RESOLVE_NO_SYMLINKS)
                    return fd, path
                except OSError as exc:
                    if exc.errno != errno.ELOOP:
                        raise
            base, owned = self.root, False
        else:
            base, owned = self.base(call, dirfd), True
        try:
            magic = S.RESOLVE_NO_MAGICLINKS
            match = _MAGIC.match(path) if path[:1] == b"/" and not scoped else None
            if match and self.is_member(int(match.group(1))):
                magic = 0  # a magic link of the sandbox's own process
            fd = self.hot.openat2(base, path, flags, mode, resolve | magic)
        finally:
            if owned:
                os.close(base)
        try:
            name = self._name_of(fd)
        except BaseException:
            os.close(fd)
            raise
        if not magic and match and match.end() == len(path) and not flags & os.O_NOFOLLOW and name:
            # What a process of the sandbox holds (its fd, cwd, exe): reading
            # its metadata is like fstat; anything else is decided on its
            # real path as usual (see check).
            return fd, Held(name)
        return fd, name

    def parent(self, call: Call, dirfd: int, path: bytes) -> Tuple[int, bytes, Optional[bytes]]:
        """(O_PATH fd of the parent directory, last component, host name of the parent) for
        namespace operations (mkdir, unlink, rename, ...).  The caller closes the fd."""
        if not path:
            raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
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
        name = d_path(fd)
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
        match = _PROC_PID.match(name)
        if match and match.group(2) and not self.is_member(int(match.group(1))):
            raise _eacces()  # inside another process's /proc directory


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
