"""The emulated root (docs/design.md "Emulated root"): the child sees a directory as "/".

No namespace, no chroot(2): every path syscall of the child is trapped and
resolved here, by the supervisor, in *virtual* terms:

- an absolute path names the guest tree; a relative one is joined to the
  virtual directory of its dirfd or of the caller's cwd (see _rootscratch.Cwd);
- `/proc` is the host's procfs (only the sandbox's own /proc/<pid> are
  reachable; /proc/self is the caller), `/dev` offers a fixed set of host
  devices, /dev/fd and /dev/std* (as links into /proc/self/fd) and a private
  /dev/shm; `--fs-mount` directories appear at their virtual paths;
- anything else is opened with openat2(RESOLVE_IN_ROOT) from an fd of the
  root, so `..`, absolute and relative symlinks stay inside it; the
  supervisor thread also runs under a Landlock domain no wider than the
  policy (docs/design.md "The supervisor is confined too").

The kernel itself resolves only one path for the child: execve's, which
is rewritten to a relative name in the run's *anchor* directory, a
symbolic link to the fd of the executable the supervisor injected (see
_rootexec.do_execve and _rootscratch.Cwd.link).  chdir and fchdir never reach the
kernel: the supervisor records each process's virtual cwd (_rootscratch.Cwd), and the
real cwd of every process is the anchor, a private directory in the run's
scratch directory, so the rewritten name resolves there.  The name is never
longer than the caller's string (no write past it).  Landlock grants
nothing in the anchor.

This module is the resolver only: the policy's paths are checked at policy
time by _rootpolicy, the scratch directory and the virtual cwds are
_rootscratch's.
"""

from __future__ import annotations

import errno
import os
import stat
import struct
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Sequence, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _procfs
from . import _structs as S
from . import _syscalls
from ._errors import os_error as _oserror
from ._notif import AT_FDCWD, Call, Tracees, tgid_of
from ._resolve import Resolver, d_path
from ._rootpolicy import IN_ROOT
from ._rootscratch import DEV_LINKS, DEVICES, Cwd

_ENOENT = errno.ENOENT

# --- run time ---------------------------------------------------------------------------------

def normalise(path: bytes) -> bytes:
    """Lexical normal form of an absolute path, to choose its route ('.', '//' folded,
    '..' too except after /proc/PID/cwd or /proc/PID/root, which are not lexical)."""
    if _clean_absolute(path):
        return path  # (most paths: no loop)
    parts: List[bytes] = []
    items = path.split(b"/")
    for index, part in enumerate(items):
        if part in (b"", b"."):
            continue
        if parts[:1] == [b"proc"] and (len(parts) >= 3 and parts[2] in (b"cwd", b"root")
                                       or len(parts) >= 5 and parts[2] == b"task" and parts[4] in (b"cwd", b"root")):
            parts.extend(p for p in items[index:] if p not in (b"", b"."))
            break
        if part == b"..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return b"/" + b"/".join(parts)


_BELOW = S.RESOLVE_BENEATH | S.RESOLVE_NO_SYMLINKS | S.RESOLVE_NO_MAGICLINKS


def _clean_relative(path: bytes) -> bool:
    """A relative path with no '.', '..' or empty component."""
    return (path[:1] != b"/" and b"//" not in path and not path.endswith(b"/")
            and (b"." not in path or all(c not in (b".", b"..") for c in path.split(b"/"))))


def _clean_absolute(path: bytes) -> bool:
    """An absolute path with no '.', '..' or empty component, no trailing '/' (its own normal form)."""
    return (path[:1] == b"/" and b"//" not in path and b"/./" not in path and b"/../" not in path
            and not path.endswith((b"/", b"/.", b"/..")))


def _fold_dots(path: bytes) -> bytes:
    """`path` without '.' components and repeated '/' inside it: 'a/./b' and 'a//b' name
    what 'a/b' names whatever 'a' is (a symlink, no directory); a trailing '/' or '/.'
    stays (it asks for a directory)."""
    while b"//" in path:
        path = path.replace(b"//", b"/")
    while b"/./" in path:
        path = path.replace(b"/./", b"/")
    return path


_O_PATH = os.O_PATH | os.O_CLOEXEC
_O_PATH_NOFOLLOW = _O_PATH | os.O_NOFOLLOW


def join(base: bytes, path: bytes) -> bytes:
    if path[:1] == b"/":
        return path
    return (base.rstrip(b"/") + b"/" + path) if path else base


class Mount:
    __slots__ = ("virt", "host", "fd", "readonly")

    def __init__(self, virt: bytes, host: bytes, readonly: bool) -> None:
        self.virt = virt
        self.host = host
        self.readonly = readonly
        self.fd = os.open(host, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


# --- the resolver -----------------------------------------------------------------------------

def _proc_link(path: bytes) -> Optional[Tuple[int, bytes]]:
    """(pid, b"cwd" or b"root") if path is /proc/PID/cwd or /proc/PID/task/TID/cwd (or
    root), else None (RootResolver.shown_link; no re at start-up: README "Start-up")."""
    parts = path.split(b"/")
    if len(parts) == 6 and parts[3] == b"task" and parts[4].isdigit():
        del parts[3:5]
    if len(parts) == 4 and parts[:2] == [b"", b"proc"] and parts[2].isdigit() and parts[3] in (b"cwd", b"root"):
        return int(parts[2]), parts[3]
    return None


class RootResolver(Resolver):
    """Resolver for an emulated root: every path is virtual (see the module docstring).

    Names returned by `open` are still host names (d_path), so FsRules decides
    on host paths of the granted trees exactly as Landlock would.
    """

    def __init__(self, rules, tracees: Tracees, is_member, hot, root: str,
                 mounts: Sequence[Tuple[str, str, bool]], cwd: Cwd, shm: str, dev: str) -> None:
        super().__init__(rules, tracees, is_member, hot, cwd._processes, cwd.top)  # /proc listings in the anchors
        self.root_host = os.fsencode(root)
        self.root_prefix = self.root_host.rstrip(b"/") + b"/"
        self.root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.mounts = sorted((Mount(os.fsencode(v), os.fsencode(h), ro) for v, h, ro in mounts),
                             key=lambda m: -len(m.virt))
        self.cwd = cwd
        self.shm_host = os.fsencode(shm)
        self.shm_fd = os.open(shm, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dev_fd = os.open(dev, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.dev_host = os.fsencode(dev)
        # The emulated /dev is a filesystem of its own, as /dev bind-mounted into a
        # chroot is (`find / -xdev` stays out): the scratch directory and the links
        # in it report the host /dev's device number, that of the nodes shown there.
        dev_st = os.fstat(self.dev_fd)
        self._dev_scratch = dev_st.st_dev
        self._dev_inodes = frozenset([dev_st.st_ino] + [os.lstat(e.path).st_ino for e in os.scandir(dev)])
        self._dev_number = os.stat("/dev").st_dev
        # tgid -> {name the kernel passed a #! interpreter: the script's virtual path}
        self.scripts: Dict[int, Dict[bytes, bytes]] = {}
        # pid -> (our name, the original) to put back in its argv (_rootexec.fix_argv)
        self.argv_fixups: Dict[int, List[Tuple[bytes, bytes]]] = {}
        self._members = cwd._processes
        self._mount_inside = any(m.host.startswith(self.root_prefix) for m in self.mounts)
        # All of the root readable, nothing denied or hidden in it: a read or metadata
        # check of an object found below the root always passes (see check).
        self._all_readable = self.root_host in rules.readable and not rules.denied and not any(
            h.startswith(self.root_prefix) or h == self.root_host for h in rules.hidden)

    def need_space(self, name: Optional[bytes]) -> None:
        """ENOSPC when something new would be made in a full upper layer (--max-disk)."""
        upper = self.upper
        if upper is not None and upper.limit is not None and name is not None and (
                name.startswith(os.fsencode(upper.tree) + b"/") or name == os.fsencode(upper.tree)):
            upper.need_space()

    def note_written(self, fd: int, name: Optional[bytes], new: bool) -> None:
        """fd, opened for writing at host path name, is a file --max-disk watches (_cow.Upper)."""
        upper = self.upper
        if upper is not None and upper.limit is not None and name is not None and \
                name.startswith(os.fsencode(upper.tree) + b"/"):
            upper.note_written(fd, name, new)

    def writable(self, fd: int, name: Optional[bytes], meta: bool = False) -> int:
        """The fd to modify the object behind fd through: with a workdir, a file still
        shared with the lower directory is copied up first (fd is then closed).

        meta: a metadata change (chmod, chown, utimes, xattrs) rather than content.
        A file of another owner is never copied up: the copy would be ours, so
        its owner's rules could not hold; the change is refused as the kernel
        refuses a non-owner (EPERM) or, for content, EACCES (README).
        """
        upper = self.upper
        if upper is None or name is None:
            return fd
        self.need_space(name)
        tree = os.fsencode(upper.tree)
        if not name.startswith(tree + b"/"):
            return fd
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) in upper.foreign:
            raise _oserror(errno.EPERM if meta else errno.EACCES)  # our copy of someone else's file
        if not stat.S_ISREG(st.st_mode) or not upper.is_shared(st.st_dev, st.st_ino):
            return fd
        if st.st_uid != os.geteuid():
            raise _oserror(errno.EPERM if meta else errno.EACCES)
        upper.copy_up(name)
        top = os.open(tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fresh = self.hot.openat2(top, name[len(tree) + 1:], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0, _BELOW)
        finally:
            os.close(top)
        os.close(fd)
        return fresh

    def reported(self, st: _syscalls.Stat) -> _syscalls.Stat:
        if st.dev != self._dev_scratch or st.ino not in self._dev_inodes:
            return st
        return _syscalls.Stat(self._dev_number, st.ino, st.mode,
                              struct.pack("Q", self._dev_number) + st.raw[8:])  # st_dev leads struct stat

    def reported_statx(self, st: _syscalls.Stat, raw: bytes) -> bytes:
        """reported() for a struct statx (stx_dev_major and _minor at offset 136)."""
        if st.dev != self._dev_scratch or st.ino not in self._dev_inodes:
            return raw
        return raw[:136] + struct.pack("II", os.major(self._dev_number), os.minor(self._dev_number)) + raw[144:]

    def check(self, fd: int, name: Optional[bytes], need: str, st=None) -> None:
        if (need != "write" and self._all_readable and name is not None
                and (name.startswith(self.root_prefix) or name == self.root_host)
                and not self.rules.foreign(name)):  # another run's workdir layer in the root
            return
        super().check(fd, name, need, st)

    def close(self) -> None:
        for fd in [self.root_fd, self.shm_fd, self.dev_fd] + [m.fd for m in self.mounts]:
            try:
                os.close(fd)
            except OSError:
                pass
        self.cwd.close()
        super().close()

    # -- virtual <-> host ---------------------------------------------------------------

    def virtual_of_host(self, host: bytes) -> Optional[bytes]:
        """The guest's name for a host path the sandbox can reach (None if none)."""
        for top, virt in ((self.root_host, b"/"),):
            if host == top:
                return virt
        for m in self.mounts:
            if host == m.host or host.startswith(m.host + b"/"):
                return m.virt + host[len(m.host):]
        if host.startswith(self.shm_host + b"/") or host == self.shm_host:
            return b"/dev/shm" + host[len(self.shm_host):]
        if host == b"/proc" or host.startswith(b"/proc/") or host.startswith(b"/dev/pts"):
            return host
        if host.startswith(b"/dev/") and host[5:] in (d.encode() for d in DEVICES):
            return host
        if host == self.dev_host:
            return b"/dev"
        listed = _procfs.listing_of(host, self.cwd.top)  # a /proc listing (_procfs.make_listing)
        if listed is not None:
            return listed
        if host.startswith(b"/memfd:sandlock:"):  # an executable copied by _rootexec (_open_executable)
            name = host[len(b"/memfd:sandlock:"):]
            return name[:-len(b" (deleted)")] if name.endswith(b" (deleted)") else name
        if host.startswith(self.root_prefix):  # last: with "/" as the root, every path is below it
            return b"/" + host[len(self.root_prefix):]
        return None

    def link_target(self, target: bytes) -> bytes:
        """What readlink of a /proc magic link shows: the virtual path where there is one."""
        if target[:1] != b"/":
            return target  # pipe:[N], socket:[N], anon_inode:...
        deleted = target.endswith(b" (deleted)")
        virt = self.virtual_of_host(target[:-10] if deleted else target)
        if virt is None:
            return b"/"  # never show a host path (docs/design.md "Host paths never shown")
        return virt + (b" (deleted)" if deleted and not target.startswith(b"/memfd:") else b"")

    def virtual_cwd(self, tid: int) -> bytes:
        return self.cwd.of_thread(tid)

    def virtual_dir(self, call: Call, dirfd: int) -> bytes:
        if dirfd == AT_FDCWD:
            return self.virtual_cwd(call.tid)
        fd = self.tracees.getfd(call.tid, dirfd)
        try:
            name = d_path(fd)
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise _oserror(errno.ENOTDIR)
        finally:
            os.close(fd)
        virt = self.virtual_of_host(name)
        if virt is None:
            raise _oserror(errno.EACCES)  # a directory outside the guest's view
        return virt

    # -- lookups ------------------------------------------------------------------------

    def base(self, call: Call, dirfd: int) -> int:
        if dirfd == AT_FDCWD:
            fd, _ = self._open_virtual(call, self.virtual_cwd(call.tid), os.O_PATH | os.O_DIRECTORY, 0, 0)
            return fd
        return self.tracees.getfd(call.tid, dirfd)

    def stat_plain(self, path: bytes, nofollow: bool) -> None:
        return None  # no host fast path: every path is virtual

    def open(self, call: Call, dirfd: int, path: bytes, flags: int, mode: int,
             resolve: int) -> Tuple[int, Optional[bytes]]:
        if not path:
            raise _oserror(_ENOENT)
        flags |= os.O_CLOEXEC
        if resolve & S.RESOLVE_BENEATH and path[:1] == b"/":
            raise _oserror(errno.EXDEV)  # as the kernel: an absolute path is never beneath
        if resolve & (S.RESOLVE_BENEATH | S.RESOLVE_IN_ROOT):
            # the caller's own scoping, relative to its own directory fd (IN_ROOT with
            # AT_FDCWD: the cwd is the root, "/" in the path means it)
            base = self.base(call, dirfd)
            try:
                fd = self.hot.openat2(base, path, flags, mode, resolve | S.RESOLVE_NO_MAGICLINKS)
            finally:
                os.close(base)
            return fd, self._checked_name(fd)
        alias = self.scripts.get(call.tid) if self.scripts else None  # after exec: one thread, tid == pid
        if alias and path in alias:
            path = alias[path]
        elif path[:1] != b"/":
            if dirfd != AT_FDCWD and not resolve and _clean_relative(path):
                found = self._open_below(call, dirfd, path, flags, mode)
                if found is not None:
                    return found
            path = join(self.virtual_dir(call, dirfd), path)
        return self._open_virtual(call, path, flags, mode, resolve)

    def _fast_below(self, top: bytes) -> bool:
        """May entries below the host directory `top` be reached straight from it?"""
        if not (top.startswith(self.root_prefix) or top == self.root_host):
            return False
        if top == b"/proc" or top.startswith(b"/proc/"):
            return False  # /proc is decided per process (_open_proc)
        for private in (self.dev_host, self.cwd.top):  # /dev and /proc listings are made up
            if top == private or top.startswith(private + b"/"):
                return False
        return True

    def self_link(self, call: Call) -> Optional[bytes]:
        """/proc/self and /proc/thread-self: the caller's own ids."""
        path = call.path
        if not path or path.rstrip(b"/") not in (b"/proc/self", b"/proc/thread-self"):
            return None
        tgid = tgid_of(call.tid)
        return b"%d" % tgid if path.rstrip(b"/") == b"/proc/self" else b"%d/task/%d" % (tgid, call.tid)

    def shown_link(self, fd: int, st: "_syscalls.Stat", target: bytes) -> bytes:
        """/proc magic links show virtual paths: a cwd as the process sees it, a root as
        "/", an fd's file by its virtual name (link_target)."""
        if st.dev != self.proc_dev:
            return target
        link = _proc_link(d_path(fd))
        if link and link[1] == b"cwd":
            return self.virtual_cwd(link[0])
        if link and link[1] == b"root":
            return b"/"
        return self.link_target(target)

    def path_only_flags(self, call: Call, flags: int, resolve: int) -> int:
        """In a root nothing path-shaped may continue, and SECCOMP_IOCTL_NOTIF_ADDFD
        refuses O_PATH files: the caller gets a read-only fd of the object instead
        (README: needs read permission where O_PATH would not)."""
        if flags & os.O_NOFOLLOW and not flags & os.O_DIRECTORY:
            probe, _ = self.open(call, call.dirfd, call.path or b"", os.O_PATH | os.O_NOFOLLOW, 0, resolve)
            try:
                if stat.S_ISLNK(self.hot.fstat(probe).mode):
                    # no fd of a symlink can be handed over; glibc opens one to
                    # chmod a symlink (fchmodat AT_SYMLINK_NOFOLLOW), which Linux
                    # refuses with EOPNOTSUPP: give that answer (README)
                    raise _oserror(errno.EOPNOTSUPP)
            finally:
                os.close(probe)
        # (O_NONBLOCK: an O_PATH open never waits, not even for a FIFO's writer)
        return (flags & (os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)) | os.O_RDONLY | os.O_NONBLOCK

    def stat_entry(self, call: Call, dirfd: int, name: bytes) -> Optional[_syscalls.Stat]:
        """lstat of one entry `name` of a directory fd of the root tree (find, ls -l):
        a single component without following it crosses nothing, so the kernel's
        own fstatat is exact.  None: take the general way."""
        base = self.tracees.getfd(call.tid, dirfd)
        try:
            top = self.fd_name(base)
            if not self._fast_below(top) or (top == self.root_host and name in (b"dev", b"proc")):
                return None  # (the emulated /dev and /proc, not the root's own directories)
            if not self._all_readable or b"/.sandlock-" in top or name.startswith(b".sandlock-"):
                self.rules.check(top.rstrip(b"/") + b"/" + name, "meta")
            return self.hot.fstatat(base, name, 0x100)  # AT_SYMLINK_NOFOLLOW
        finally:
            os.close(base)

    def stat_path(self, call: Call, path: bytes, nofollow: bool) -> Optional[_syscalls.Stat]:
        """stat (lstat: nofollow) of an absolute virtual path, or one relative to the
        caller's cwd (joined to it, as open does), the short way: a clean path
        (no '..' component or trailing '/' or '/.', once '.' components and repeated
        '/' are folded: _fold_dots) outside /proc, /dev and the mounts, and not a
        #! script's alias, is opened from the root with RESOLVE_IN_ROOT and no symlink
        on the way, checked and fstat'ed, exactly as the general way's first try
        (open -> _open_virtual) does, without its layers.  None: take the general way
        (a symlink on the way, or a path of another route)."""
        if self.scripts and self.scripts.get(call.tid):
            return None  # (an alias is looked up before the cwd is joined)
        if path[:1] != b"/":
            path = join(self.virtual_cwd(call.tid), path)
        path = _fold_dots(path)  # (cp -a src/. dst asks for src/./f)
        if path == b"/":
            rest, name = b".", self.root_host
        elif (not _clean_absolute(path) or path.startswith((b"/proc/", b"/dev/"))
                or path == b"/proc" or path == b"/dev"):
            return None
        else:
            rest, name = path[1:], self.root_prefix + path[1:]
        for m in self.mounts:
            if path == m.virt or path.startswith(m.virt + b"/"):
                return None
        try:
            fd = self.hot.openat2(self.root_fd, rest, _O_PATH_NOFOLLOW if nofollow else _O_PATH, 0,
                                  IN_ROOT | S.RESOLVE_NO_SYMLINKS)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return None
            raise
        try:
            st = self.hot.fstat(fd)
            self.check(fd, name, "meta", st)
        finally:
            os.close(fd)
        return st

    def _open_below(self, call: Call, dirfd: int, path: bytes, flags: int,
                    mode: int) -> Optional[Tuple[int, Optional[bytes]]]:
        """The fast way for a clean relative path under a directory fd of the root tree:
        openat2 from that fd with no symlink and no '..' is exactly what the kernel
        would open (None: take the general way)."""
        base = self.tracees.getfd(call.tid, dirfd)
        try:
            top = self.fd_name(base)
            if not self._fast_below(top):
                return None
            if top == self.root_host and path.split(b"/", 1)[0] in (b"dev", b"proc"):
                return None  # the emulated /dev and /proc, not the root's own directories
            try:
                fd = self.hot.openat2(base, path, flags, mode, _BELOW)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EXDEV):
                    return None
                raise
            return fd, top.rstrip(b"/") + b"/" + path
        finally:
            os.close(base)

    def _checked_name(self, fd: int) -> Optional[bytes]:
        try:
            return self._name_of(fd)
        except BaseException:  # by hand, not closed_on_error: the path of every open in a root (~0.2 us)
            os.close(fd)
            raise

    def _open_virtual(self, call: Call, path: bytes, flags: int, mode: int,
                      resolve: int, depth: int = 0) -> Tuple[int, Optional[bytes]]:
        """Open the absolute virtual `path` (see the module docstring for the routes)."""
        flags |= os.O_CLOEXEC
        norm = normalise(path)
        extra = resolve & (S.RESOLVE_NO_SYMLINKS | S.RESOLVE_NO_XDEV)
        if norm.startswith(b"/proc/") or norm == b"/proc":
            return self._open_proc(call, norm, flags, mode, resolve)
        if norm.startswith(b"/dev/") or norm == b"/dev":
            return self._open_dev(call, norm, flags, mode, resolve)
        for m in self.mounts:
            if norm == m.virt or norm.startswith(m.virt + b"/"):
                rest = norm[len(m.virt):].lstrip(b"/") or b"."
                if path.endswith((b"/", b"/.")) and rest != b".":
                    rest += b"/"  # "file/" and "file/." name a directory: ENOTDIR (EISDIR to create)
                try:
                    fd = self.hot.openat2(m.fd, rest, flags, mode, S.RESOLVE_BENEATH | S.RESOLVE_NO_SYMLINKS
                                          | S.RESOLVE_NO_MAGICLINKS | extra)
                except OSError as exc:
                    if exc.errno != errno.ELOOP or extra & S.RESOLVE_NO_SYMLINKS:
                        raise
                    return self._walk(call, norm, flags, mode, resolve, depth)
                return fd, self._checked_name(fd)
        rest = path.lstrip(b"/") or b"."
        if not depth and (norm == path or _fold_dots(path) == norm):
            # a clean path without symlinks is its own real path: no d_path needed ('.'
            # components and repeated '/' name what the path without them names)
            try:
                fd = self.hot.openat2(self.root_fd, norm.lstrip(b"/") or b".", flags, mode,
                                      IN_ROOT | S.RESOLVE_NO_SYMLINKS)
                return fd, self.root_prefix[:-1] + norm if norm != b"/" else self.root_host
            except OSError as exc:
                if exc.errno != errno.ELOOP or extra & S.RESOLVE_NO_SYMLINKS:
                    raise
        try:
            fd = self.hot.openat2(self.root_fd, rest, flags, mode, IN_ROOT | extra)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR) or extra & S.RESOLVE_NO_SYMLINKS:
                raise
            if b"/.." in path and depth == 0 and self._virtual_on_the_way(path):
                return self._walk(call, path, flags, mode, resolve, depth)  # ".." out of /proc, /dev or a mount
            # A symlink on the way may lead into /proc, /dev or a mount, which
            # RESOLVE_IN_ROOT cannot see: walk it by hand (only when there is one).
            try:
                os.close(self.hot.openat2(self.root_fd, rest, os.O_PATH | os.O_CLOEXEC, 0,
                                          IN_ROOT | S.RESOLVE_NO_SYMLINKS))
            except OSError as again:
                if again.errno == errno.ELOOP:
                    return self._walk(call, path, flags, mode, resolve, depth)
            raise
        return fd, self._checked_name(fd)

    def _virtual_on_the_way(self, path: bytes) -> bool:
        """Does the lexical walk of `path` (as _walk takes its '..': one level up, never
        above "/") reach /proc, /dev or a mount, which the root's own tree does not hold?
        If not, and no symlink is on the way either, the kernel's walk from the root
        (RESOLVE_IN_ROOT) is _walk's, and its ENOENT or ENOTDIR is the answer (a
        compiler's probes of `DIR/../../x` that do not exist: README "Emulated root")."""
        here: List[bytes] = []
        for part in path.split(b"/"):
            if part in (b"", b"."):
                continue
            if part == b"..":
                if here:
                    here.pop()
                continue
            here.append(part)
            if here[0] in (b"proc", b"dev"):
                return True
            if self.mounts:
                now = b"/" + b"/".join(here)
                if any(now == m.virt or now.startswith(m.virt + b"/") for m in self.mounts):
                    return True
        return False

    def _walk(self, call: Call, path: bytes, flags: int, mode: int, resolve: int,
              depth: int) -> Tuple[int, Optional[bytes]]:
        """Resolve `path` component by component, following symlinks in virtual terms."""
        if depth >= 40:
            raise _oserror(errno.ELOOP)
        parts = [c for c in path.split(b"/") if c and c != b"."]
        here = b"/"
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == b"..":
                here = here.rpartition(b"/")[0] or b"/"
                continue
            candidate = join(here, part)
            if last and flags & os.O_NOFOLLOW:
                break
            try:
                fd, _ = self._open_virtual(call, candidate, os.O_PATH | os.O_NOFOLLOW, 0, S.RESOLVE_NO_SYMLINKS,
                                           depth + 1)
            except FileNotFoundError:
                if last:
                    break
                raise
            try:
                if stat.S_ISLNK(os.fstat(fd).st_mode):
                    target = os.readlink(b"", dir_fd=fd)
                    remaining = b"/".join(parts[index + 1:])
                    new = target if target[:1] == b"/" else join(here, target)
                    return self._walk(call, join(new, remaining) if remaining else new, flags, mode, resolve,
                                      depth + 1)
            finally:
                os.close(fd)
            if last:
                break
            here = candidate
        final = join(here, parts[-1]) if parts and parts[-1] != b".." else here
        return self._open_virtual(call, final, flags, mode, resolve | S.RESOLVE_NO_SYMLINKS, depth + 1)

    def _open_proc(self, call: Call, norm: bytes, flags: int, mode: int,
                   resolve: int) -> Tuple[int, Optional[bytes]]:
        host = self._rewrite_self(call, norm)
        parts = host.split(b"/")  # ['', 'proc', pid, what, ...] or ['', 'proc', pid, 'task', tid, what, ...]
        at = 3 if len(parts) >= 4 else 0
        if at and parts[3] == b"task" and len(parts) >= 6 and parts[4].isdigit():
            at = 5
        if at and parts[2].isdigit() and parts[at] in (b"root", b"cwd"):
            pid = int(parts[2])
            if not self.is_member(pid):
                raise _oserror(errno.ENOENT)  # a process outside the sandbox (_procfs)
            if at == 5 and not os.path.isdir(b"/".join(parts[:5])):
                raise _oserror(errno.ENOENT)  # not a thread of that process
            rest = b"/".join(parts[at + 1:])
            if len(parts) == at + 1 and flags & os.O_NOFOLLOW:
                return super().open(call, AT_FDCWD, host, flags, mode, 0)  # the link itself
            top = b"/" if parts[at] == b"root" else self.virtual_cwd(pid)
            return self._open_virtual(call, join(top, rest) if rest else top, flags, mode, resolve)
        # the listing of /proc, hidden and made-up files: Resolver._proc_view
        return super().open(call, AT_FDCWD, host, flags, mode, resolve & S.RESOLVE_NO_SYMLINKS)

    # -- generated /proc content ----------------------------------------------------------

    def _made_up(self, what: bytes, fd: int) -> Optional[int]:
        """maps, smaps, mountinfo, mounts with guest names (see Resolver._made_up)."""
        if what == b"mountinfo":
            return _procfs.memfd(what, _procfs.mountinfo_table(_procfs.root_mount_points(self.mounts)))
        if what == b"mounts":
            return _procfs.memfd(what, _procfs.mounts_table(_procfs.root_mount_points(self.mounts)))
        if what in (b"maps", b"smaps"):
            from . import _elf
            with open(fd, "rb", closefd=False) as f:
                # line by line into the memfd: the command decides how long its maps are
                return _elf.sealed_memfd_filled("sandlock-proc-" + os.fsdecode(what),
                                                lambda out: _procfs.rewrite_maps(f, out, self.link_target))
        return super()._made_up(what, fd)

    def _open_dev(self, call: Call, norm: bytes, flags: int, mode: int,
                  resolve: int) -> Tuple[int, Optional[bytes]]:
        parts = norm.split(b"/", 3)  # ['', 'dev', name, rest]
        name = parts[2] if len(parts) > 2 else b""
        rest = parts[3] if len(parts) > 3 else b""
        if not name:
            fd = self.hot.openat2(self.dev_fd, b".", flags, mode, 0)
            return fd, self._checked_name(fd)
        if name == b"shm":
            fd = self.hot.openat2(self.shm_fd, rest or b".", flags, mode, IN_ROOT)
            return fd, self._checked_name(fd)
        if name in DEV_LINKS:
            if not rest and flags & os.O_NOFOLLOW:
                fd = self.hot.openat2(self.dev_fd, name, flags, mode, S.RESOLVE_NO_SYMLINKS)
                return fd, self._checked_name(fd)
            return self._open_proc(call, join(DEV_LINKS[name], rest) if rest else DEV_LINKS[name], flags, mode, resolve)
        if name == b"pts" or (name.decode("latin-1") in DEVICES and not rest):
            fd = self.hot.openat2(self.root, b"dev/" + name + (b"/" + rest if rest else b""), flags, mode,
                                  S.RESOLVE_NO_SYMLINKS | S.RESOLVE_BENEATH)
            return fd, self._checked_name(fd)
        raise _oserror(_ENOENT)
