"""sandlock's own directories: where they live, how they are found again, how they go.

The scratch of a run (an emulated root's anchors, private /dev and
/dev/shm, generated /proc listings) lives in the user's *base*
``/var/tmp/.sandlock-<euid>`` (`base`): one stable directory per user, made
once and never removed, which every command's Landlock rules are cut around
(`hidden`, used by _landlock.plans and _resolve.FsRules), so that no policy
(``-r /``, ``-w /tmp``, ``-w /var/tmp``) reaches another run's scratch or its
own; each run is then granted only its own pieces.  /var/tmp rather than
$TMPDIR: cutting a directory out of a grant takes the create right from its
parent, and ``-w /tmp`` must keep creating in /tmp (README "Where sandlock
keeps its own files").  The upper layers of a workdir, which must be on the
workdir's filesystem, live in a *container*: a directory
``.sandlock-<euid>-<random>`` in a parent directory (the workdir's parent
first).  The random part makes the name unpredictable in a shared
directory.  A container (and the base) is used only
after checks on lstat and again on the opened directory (open O_NOFOLLOW,
fstat: the same inode): a real directory, owned by our euid, mode exactly
0700, holding the marker file ``.sandlock`` (a regular file of ours that
starts with MARK).  Each directory sandlock makes in a container has a
marker too, which may say what it is for (a layer: the workdir's path).

Scans and cleanups touch only entries that pass those checks, never follow
a symlink, and remove trees of any depth without recursion (`remove_at`:
one directory fd at a time, going back up through ".." checked against the
(dev, ino) recorded on the way down, so a tree moved away during the walk
stops it instead of leading it elsewhere).  An entry that looks like ours
but fails a check is left alone and never used: a new container is made.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import struct
import sys
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import List, Optional, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _structs as S
from . import _syscalls
from ._errors import os_error

MARKER = ".sandlock"
MARK = b"sandlock's own directory\n"
BENEATH = S.RESOLVE_BENEATH | S.RESOLVE_NO_SYMLINKS | S.RESOLVE_NO_MAGICLINKS
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


# Where the bases go, in order: the first one usable (README "Where sandlock keeps its own files").
BASE_PARENTS = ("/var/tmp", "/dev/shm")


def _base_name(name: str) -> bool:
    """.sandlock-UID or .sandlock-UID-anything: a base's name (what the pattern
    \\.sandlock-[0-9]+(-.*)?\\Z matched; without re, README "Start-up")."""
    uid, _, _ = name[len(".sandlock-"):].partition("-")
    return name.startswith(".sandlock-") and uid != "" and all("0" <= c <= "9" for c in uid)


def prefix() -> str:
    return f".sandlock-{os.geteuid()}-"


def base(parents: Tuple[str, ...] = BASE_PARENTS) -> str:
    """The user's base for scratch directories: <parent>/.sandlock-<euid>, verified like a
    container (made if missing, never removed, so its identity is stable).

    The first parent that is a usable directory is the place.  If the name there
    is taken by something that is not ours (another user's directory, a
    symlink), a verified container ``.sandlock-<euid>-<random>`` in the same
    parent is used instead (the first by name, as every run of the user picks
    it); `hidden` cuts those too.
    """
    failure: Optional[OSError] = None
    for parent in parents:
        try:
            st = os.stat(parent)
            if not stat.S_ISDIR(st.st_mode) or not os.access(parent, os.W_OK | os.X_OK):
                raise os_error(errno.EACCES, "not a directory sandlock may write in", parent)
            return _base_in(parent)
        except OSError as exc:
            failure = failure or exc
    assert failure is not None
    raise failure


def _base_in(parent: str) -> str:
    name = prefix()[:-1]
    path = os.path.join(parent, name)
    for _ in range(3):
        if verify(parent, name) is not None:
            return path
        if os.path.lexists(path):
            if verify(parent, name) is not None:
                return path  # another run has just put it in place
            return container(parent)  # the name is taken by something else: never used, never touched
        # made whole under a random name, then renamed into place: nobody sees it half made
        temp = container(parent, fresh=True)
        try:
            os.rename(temp, path)
        except OSError:
            remove_tree(temp)
            continue
        return path
    raise os_error(errno.EAGAIN, "the base of sandlock's directories keeps changing", path)


def hidden(parents: Tuple[str, ...] = BASE_PARENTS) -> Tuple[str, ...]:
    """Every base and base-like container (of any user) in the places bases go: what
    every command's rules are cut around (the run's own pieces are granted apart)."""
    out: List[str] = []
    for parent in parents:
        try:
            names = os.listdir(parent)
        except OSError:
            continue
        if not out and prefix()[:-1] not in names:
            names.append(prefix()[:-1])  # not made yet: cut all the same, so that one made later is not covered
        out += [os.path.join(parent, n) for n in sorted(names) if _base_name(n)]
    return tuple(out)
def reserved(name: str) -> bool:
    """A name of the containers of any user, `.sandlock-<digits>-...`: a workdir's
    layers live in one inside it (_cow.Layers), so no farm shows such a name and
    no commit makes one, at any depth, and no cut of a Landlock grant around a
    denied path grants one (_landlock._punch)."""
    if not name.startswith(".sandlock-"):
        return False
    uid, dash, _ = name[len(".sandlock-"):].partition("-")
    return bool(dash) and uid.isdigit()


def containers(parent: str) -> List[str]:
    """The verified containers of this user in `parent`, sorted by name."""
    mine = prefix()  # once: a temporary directory may hold hundreds of names (each a geteuid)
    try:
        names = sorted(n for n in os.listdir(parent) if n.startswith(mine))
    except OSError:
        return []
    return [os.path.join(parent, n) for n in names if verify(parent, n) is not None]


def mkdtemp(name_prefix: str, parent: str) -> str:
    """tempfile.mkdtemp(prefix=name_prefix, dir=parent) without importing tempfile, which
    brings shutil, bz2, lzma and random into every run (about 3 ms of the CLI's start,
    README "Start-up"): a new directory of mode 0700 under a random name, never one
    that existed."""
    for _ in range(100):
        path = os.path.join(parent, name_prefix + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        return os.path.abspath(path)
    raise FileExistsError(errno.EEXIST, "no unused name for a directory", parent)


def gettempdir() -> str:
    """tempfile.gettempdir(): the module's own answer if a program imported it (it may
    have set tempfile.tempdir), else its first choice ($TMPDIR, $TEMP, $TMP, /tmp,
    /var/tmp, /usr/tmp) that is a directory."""
    tempfile = sys.modules.get("tempfile")
    if tempfile is not None:
        return tempfile.gettempdir()  # type: ignore[no-any-return]
    for candidate in [os.environ.get(k) for k in ("TMPDIR", "TEMP", "TMP")] + ["/tmp", "/var/tmp", "/usr/tmp"]:
        if candidate and os.path.isdir(candidate):
            return os.path.abspath(candidate)
    return os.getcwd()


def container(parent: str, fresh: bool = False) -> str:
    """A verified container in `parent`: the first one there (unless fresh), else a new one."""
    found = containers(parent) if not fresh else []
    if found:
        return found[0]
    path = mkdtemp(prefix(), parent)  # mode 0700, O_EXCL semantics
    os.chmod(path, 0o700)  # whatever the umask
    _write_marker(path, b"")
    return path


def make_dir(box: str, name_prefix: str, note: bytes = b"") -> str:
    """A new directory of ours in the container `box`, with its marker (MARK + note)."""
    path = mkdtemp(name_prefix, box)
    _write_marker(path, note)
    return path


def new_dir(parent: str, name_prefix: str, note: bytes = b"") -> Tuple[str, str]:
    """(container, new directory of ours in it) in `parent` (a container another run
    empties and removes at that moment is passed over)."""
    for _ in range(3):
        box = container(parent)
        try:
            return box, make_dir(box, name_prefix, note)
        except FileNotFoundError:
            continue
    raise os_error(errno.EAGAIN, "the container of sandlock's directories keeps vanishing", parent)


def release(box: str) -> None:
    """Remove the container if nothing but its marker is left in it."""
    try:
        if os.listdir(box) != [MARKER]:
            return
        os.unlink(os.path.join(box, MARKER))
        os.rmdir(box)
    except OSError:
        try:  # someone else's run is in it now: it stays a container
            if os.path.isdir(box) and not os.path.lexists(os.path.join(box, MARKER)):
                _write_marker(box, b"")
        except OSError:
            pass


def entries(box: str, name_prefix: str) -> List[Tuple[str, int, bytes]]:
    """(path, pid, note) of the directories of ours named <name_prefix><pid>-... in a container."""
    out: List[Tuple[str, int, bytes]] = []
    try:
        names = sorted(os.listdir(box))
    except OSError:
        return out
    for name in names:
        if not name.startswith(name_prefix):
            continue
        pid = name[len(name_prefix):].split("-", 1)[0]
        if not pid.isdigit():
            continue
        note = verify(box, name, exact_mode=False)
        if note is not None:
            out.append((os.path.join(box, name), int(pid), note))
    return out


def verify(parent: str, name: str, exact_mode: bool = True) -> Optional[bytes]:
    """The note of the marker of directory parent/name if it is ours, else None.

    Ours: lstat says a directory (not a symlink) owned by our euid (mode 0700
    if exact_mode), the opened directory is the same inode, and its marker is
    a regular file of ours that starts with MARK.
    """
    try:
        st = os.lstat(os.path.join(parent, name))
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
            return None
        if exact_mode and stat.S_IMODE(st.st_mode) != 0o700:
            return None
        fd = os.open(os.path.join(parent, name), _DIR)
    except OSError:
        return None
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return None
        return _read_marker(fd)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_small(dir_fd: int, name: str, limit: int = 4096) -> bytes:
    """At most `limit` bytes of the regular file name in dir_fd (no symlink, no FIFO wait)."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise os_error(errno.EINVAL, "not a regular file", name)
        return os.read(fd, limit)
    finally:
        os.close(fd)


def _read_marker(fd: int) -> Optional[bytes]:
    try:
        st = os.stat(MARKER, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid():
            return None
        data = read_small(fd, MARKER)
    except OSError:
        return None
    return data[len(MARK):] if data.startswith(MARK) else None


def _write_marker(path: str, note: bytes) -> None:
    fd = os.open(os.path.join(path, MARKER), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 0o600)
    try:
        os.write(fd, MARK + note)
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: alive


# --- removal of a tree of any depth ----------------------------------------------------------

def remove_tree(path: str) -> None:
    """Remove path (a whole tree too) without following a symlink; errors are ignored."""
    head, name = os.path.split(path.rstrip("/"))
    try:
        parent = os.open(head or "/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        remove_at(parent, name)
    except OSError:
        pass
    finally:
        os.close(parent)


def remove_ours(path: str) -> None:
    """Remove a directory of ours (a scratch directory) with its marker last, so that one
    whose removal is cut short (sandlock killed half way) keeps its marker and the next
    run finds it and finishes; errors are ignored."""
    try:
        fd = os.open(path, _DIR)
    except OSError:
        return
    try:
        for name in sorted(os.listdir(fd)):
            if name != MARKER:
                remove_at(fd, name)
        os.unlink(MARKER, dir_fd=fd)
    except OSError:
        return
    finally:
        os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def remove_at(parent: int, name: str) -> None:
    """Remove the entry name of the directory fd parent, a tree of any depth, iteratively.

    Holds two fds at most and 16 bytes per level (the (dev, ino) of each
    directory on the way down).  Raises OSError where it cannot go on (an
    entry it may not remove, or a tree moved away during the walk).
    """
    try:
        # an empty directory (a run's shm/ directory, most often) goes in one call; rmdir
        # never follows a symlink (ENOTDIR) and refuses a non-empty directory (ENOTEMPTY):
        # anything but success goes the general way below
        os.rmdir(name, dir_fd=parent)
        return
    except OSError:
        pass
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(name, dir_fd=parent)
        return
    fd = _open_child(parent, name, st)
    # (dev, ino) of the directories above fd, up to the top one, 16 bytes each (not an
    # array.array: the array module imports collections, ~1.6 ms of the CLI's start)
    ids = bytearray()
    try:
        while True:
            sub = _empty_but_directories(fd)
            if sub is not None:
                child_st = os.stat(sub, dir_fd=fd, follow_symlinks=False)
                child = _open_child(fd, sub, child_st)
                me = os.fstat(fd)
                ids += _DEV_INO.pack(me.st_dev, me.st_ino)
                os.close(fd)
                fd = child
                continue
            me = os.fstat(fd)
            if not ids:
                break
            up = os.open("..", _DIR, dir_fd=fd)
            ust = os.fstat(up)
            dev, ino = _DEV_INO.unpack_from(ids, len(ids) - _DEV_INO.size)
            del ids[-_DEV_INO.size:]
            if (ust.st_dev, ust.st_ino) != (dev, ino):
                os.close(up)
                raise os_error(errno.ESTALE, "the tree moved while it was being removed")
            os.close(fd)
            fd = up
            _rmdir_by_inode(fd, me)
    finally:
        os.close(fd)
    os.rmdir(name, dir_fd=parent)


_DEV_INO = struct.Struct("=QQ")


def _open_child(parent: int, name: str, st: os.stat_result) -> int:
    """A readable fd of the directory name, the inode lstat saw (made searchable if it was not)."""
    try:
        fd = _syscalls.openat2(parent, os.fsencode(name), _DIR, 0, BENEATH)
    except PermissionError:
        # a directory of ours the command made unreadable (chmod 0): make it ours to empty
        path_fd = _syscalls.openat2(parent, os.fsencode(name), os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, 0, BENEATH)
        try:
            if (os.fstat(path_fd).st_ino, os.fstat(path_fd).st_dev) != (st.st_ino, st.st_dev):
                raise os_error(errno.ESTALE, "the tree changed while it was being removed")
            os.chmod(f"/proc/self/fd/{path_fd}", 0o700)
        finally:
            os.close(path_fd)
        fd = _syscalls.openat2(parent, os.fsencode(name), _DIR, 0, BENEATH)
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
        os.close(fd)
        raise os_error(errno.ESTALE, "the tree changed while it was being removed")
    if stat.S_IMODE(now.st_mode) & 0o300 != 0o300:
        os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(now.st_mode) | 0o700)  # to remove its entries
    return fd


def _empty_but_directories(fd: int) -> Optional[str]:
    """Unlink every non-directory in fd; return the name of one subdirectory, or None if empty."""
    with os.scandir(fd) as listing:
        for entry in listing:
            if entry.is_dir(follow_symlinks=False):
                return entry.name
            os.unlink(entry.name, dir_fd=fd)
    return None


def _rmdir_by_inode(fd: int, child: os.stat_result) -> None:
    """rmdir the (now empty) subdirectory of fd that is the inode `child`."""
    for exact in (False, True):  # d_ino first; lstat where a filesystem reports other numbers
        with os.scandir(fd) as listing:
            for entry in listing:
                if not entry.is_dir(follow_symlinks=False):
                    continue
                if exact:
                    st = os.stat(entry.name, dir_fd=fd, follow_symlinks=False)
                    same = (st.st_dev, st.st_ino) == (child.st_dev, child.st_ino)
                else:
                    same = entry.inode() == child.st_ino
                if same:
                    os.rmdir(entry.name, dir_fd=fd)
                    return
    raise os_error(errno.ESTALE, "the tree changed while it was being removed")


def new_scratch(kind: str) -> str:
    """A new scratch directory `kind`<pid>-<random> of this process in the user's base (see
    `base`), after removing those of sandlock processes that are gone (`remove_stale`)."""
    home = base()
    remove_stale(home)
    return make_dir(home, f"{kind}{os.getpid()}-")


SCRATCH_KINDS = ("root-", "proc-")


def remove_stale(home: str) -> None:
    """Remove the scratch directories (root-<pid>-..., proc-<pid>-...) of sandlock processes
    that are gone: in the base `home`, and in the containers of the temporary directory, where
    releases before the base kept them (an emptied one of those goes too).  Only verified
    entries (owner, mode, marker), never through a symlink."""
    for box in [home] + containers(gettempdir()):
        try:
            names = os.listdir(box)
        except OSError:
            continue
        for name in names:  # a live pid first (cheap), then the checks (see entries)
            kind, _, rest = name.partition("-")
            pid = rest.split("-", 1)[0]
            if kind + "-" in SCRATCH_KINDS and pid.isdigit() and not alive(int(pid)) \
                    and verify(box, name, exact_mode=False) is not None:
                remove_ours(os.path.join(box, name))
        if box != home:
            release(box)


class Listings:
    """Without an emulated root: where the supervisor makes the private listings
    of /proc (_procfs), a directory `proc-<pid>-<random>` in the user's base
    (see `base`).  Each run gets a directory of its own in `cwd`, made on the
    first listing (most runs never list /proc); those of a sandlock that was
    killed are removed first.  Lighter than an emulated root's scratch
    (_rootscratch.Scratch), which the CLI would pay for on every start.
    """

    def __init__(self) -> None:
        self.path = new_scratch("proc-")
        self.cwd = os.path.join(self.path, "cwd")  # beside the marker
        os.mkdir(self.cwd, 0o700)
        self._runs = itertools.count(1)

    def new_run(self) -> str:
        """A new directory for one run's listings."""
        path = os.path.join(self.cwd, f"{os.getpid()}-{next(self._runs)}")
        os.mkdir(path, 0o700)
        return path

    def close(self) -> None:
        remove_ours(self.path)  # the base stays (see `base`)
