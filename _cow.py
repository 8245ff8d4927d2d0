"""Copy-on-write workdir (docs/design.md "Workdir"): the upper layer, the change list, the commit.

The upper layer of a run is a *farm*: a private directory tree made at start
with the lower directory's shape, whose regular files are hard links to the
lower ones (a copy where a link is not possible).  The child sees the farm
at the workdir's path (the emulated-root resolver mounts it there), so reads,
listings, renames, unlinks, mkdir and rmdir are the kernel's own, on a real
filesystem.  The only thing to emulate is that a file still shared with the
lower directory must be *copied up* (a new inode in the farm, renamed over
the link) before anything writes it or its metadata; every such operation is
performed on behalf in an emulated root, and `_rootfs.RootResolver.writable`
is asked first.

At the end, `changes` compares the farm with the lower directory (a shared
inode is unchanged; a copied-up one is compared by type, content, mode,
owner, times) and `commit` applies them: each file is linked into the
lower directory under a temporary name and renamed over its old one (never
a torn file), directories are made before and removed after.  The upper
layer is kept if a commit fails, with a state file saying how far it went.
Every supervisor-side operation walks the two trees with
openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) and acts on the last component
with *at calls that do not follow it (docs/design.md "The supervisor is confined too").
"""

from __future__ import annotations

import errno
import os
import stat
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, Iterator, List, Optional, Set, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from ._errors import os_error, quote_path
from . import _scratch
from . import _threads
from . import _structs as S
from . import _syscalls

BENEATH = S.RESOLVE_BENEATH | S.RESOLVE_NO_SYMLINKS | S.RESOLVE_NO_MAGICLINKS
STATE = "state"          # in the run's directory: building, running, committing, committed, kept
TREE = "tree"            # the farm, in the run's directory
PATH_MAX = 4096          # linux/limits.h: the longest path openat2 takes, with its NUL


class Change(NamedTuple):
    kind: str   # "A", "M" or "D"
    path: str   # relative to the workdir

    def __str__(self) -> str:
        return f"{self.kind} {self.path}"

    def line(self) -> str:
        """The --dry-run line: the path quoted (see quote_path), so no name forges a line."""
        return f"{self.kind} {quote_path(self.path)}"


def _open_dir(top: int, rel: str) -> int:
    """O_PATH fd of directory rel under the fd top, refusing any symlink on the way."""
    if rel in ("", "."):
        return os.dup(top)
    return _syscalls.openat2(top, os.fsencode(rel), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, 0, BENEATH)


def _split(rel: str) -> Tuple[str, str]:
    head, _, tail = rel.rpartition("/")
    return head, tail


class Layers:
    """Where the upper layers of one prepared policy live: inside the workdir itself.

    The layers of a run go in a directory `cow-<pid>-<random>` (its marker
    names the workdir) of a verified per-user container (see _scratch) made
    in the workdir, `DIR/.sandlock-<euid>-<random>`: a hard link needs DIR's
    filesystem, and there every rule about DIR covers the layer too, so a
    policy that denies DIR (or does not grant it) reaches no name of DIR's
    inodes (README "Where sandlock keeps its own files").  Such names
    (`_scratch.reserved`) are never shown in the farm, never compared, never
    committed; the container holds a `.gitignore` of `*` so that git does
    not list it, and DIR's modification time is put back after the container
    is made and after it goes.
    """

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        with _times_kept(workdir):
            self.container, self.path = _scratch.new_dir(workdir, f"cow-{os.getpid()}-", os.fsencode(workdir))
            _ignore_file(self.container)
        self._runs = 0

    def new_run(self) -> "Upper":
        """A run's directory `<n>-<random>` (0700): another sandbox that may write DIR
        may make and remove names in the container's directories (mkdir, rmdir are not
        trapped in a host sandbox), so a guessable path would let its EEXIST tell which
        names this run wrote (SECURITY.md "Another run's layer")."""
        self._runs += 1
        run = _scratch.mkdtemp(f"{self._runs}-", self.path)
        return Upper(self.workdir, run)

    def close(self) -> None:
        """Remove the directory unless a kept upper layer is in it."""
        if _kept_runs(self.path):
            return
        with _times_kept(self.workdir):
            _scratch.remove_tree(self.path)
            _release(self.container)


IGNORE = ".gitignore"  # in a container inside a workdir: git lists none of it
IGNORE_TEXT = b"# sandlock's own directory (README \"Where sandlock keeps its own files\")\n*\n"


def _ignore_file(box: str) -> None:
    try:
        fd = os.open(os.path.join(box, IGNORE), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, IGNORE_TEXT)
    finally:
        os.close(fd)


def _release(box: str) -> None:
    """_scratch.release for a container in a workdir: its .gitignore goes with its marker."""
    try:
        if sorted(os.listdir(box)) == sorted([_scratch.MARKER, IGNORE]):
            os.unlink(os.path.join(box, IGNORE))
    except OSError:
        return
    _scratch.release(box)
    try:
        if os.path.isdir(box) and not os.path.islink(box):  # another run's layers are in it now
            _ignore_file(box)
    except OSError:
        pass


class _times_kept:
    """DIR's modification time as it was, after sandlock made or removed its container there
    (best effort: utimensat needs DIR's owner or CAP_FOWNER; a change another program made
    to DIR in that instant gets the old time too).  A `with` statement's context: a class,
    not contextlib's decorator (contextlib is not imported at start-up: README "Start-up")."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._fd = -1
        self._mtime = 0

    def __enter__(self) -> None:
        try:
            self._fd = os.open(self._path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            self._mtime = os.fstat(self._fd).st_mtime_ns
        except BaseException:
            os.close(self._fd)
            self._fd = -1
            raise

    def __exit__(self, kind: "Optional[type]", *_: object) -> None:
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        try:
            if kind is None:  # (after a body that raised, the time is left as it is)
                now = os.fstat(fd)
                if now.st_mtime_ns != self._mtime:
                    try:
                        os.utime(fd, ns=(now.st_atime_ns, self._mtime))
                    except OSError:
                        pass
        finally:
            os.close(fd)


HOT_MAX = 256  # files of the layer opened for writing that --max-disk measures between walks


def _blocks_of(path: bytes, key: Tuple[int, int]) -> int:
    """Bytes allocated to the file at path if it is still the inode key, else 0 (renamed or
    removed: the next walk finds it, or it is gone)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    return st.st_blocks * 512 if (st.st_dev, st.st_ino) == key else 0


class Upper:
    """The upper layer of one run (see the module docstring)."""

    def __init__(self, lower: str, run: str) -> None:
        self.lower = lower
        self.run = run
        self.tree = os.path.join(run, TREE)
        self.shared: Set[Tuple[int, int]] = set()   # (dev, ino) of farm files that are lower files
        self.hidden: List[str] = []                  # lower entries the farm does not show (devices, sockets)
        self.snapshot: Dict[str, Tuple[int, int]] = {}  # lower path -> (dev, ino) when the farm was made
        self.names: Dict[Tuple[int, int], List[str]] = {}  # shared inode -> its names in the farm
        self.foreign: Set[Tuple[int, int]] = set()  # farm copies of files of another owner (not ours to change)
        self.copies: Dict[Tuple[int, int], Tuple[int, int]] = {}  # farm copy made at start -> its lower file
        self.limit: Optional[int] = None             # --max-disk: bytes the farm's own files may use
        self.used = 0                                # as last measured (see measure), plus copy-ups since
        # --max-disk between two walks of the layer (see note_written and estimate):
        self.walked = 0                              # bytes the last walk found
        self.extra = 0                               # copy-ups and growth of files that left `hot`, since
        self.hot: Dict[Tuple[int, int], List] = {}   # (dev, ino) -> [host path, blocks the walk counted]
        self.hot_lock = _threads.Lock()              # note_written runs in the notification thread
        self._state("building")

    def _state(self, value: str) -> None:
        with open(os.path.join(self.run, STATE), "w") as f:
            f.write(value + "\n")

    # -- building -----------------------------------------------------------------------

    def build(self) -> None:
        """Make the farm: directories, hard links (or copies), symlinks, FIFOs."""
        os.mkdir(self.tree, 0o700)
        low = os.open(self.lower, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        top = os.open(self.tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            dirs: List[Tuple[str, os.stat_result]] = [("", os.stat(low))]
            self._fill(low, top, dirs)
            for rel, st in reversed(dirs):  # directory modes and times last, deepest first
                fd = _open_dir(top, rel)
                try:
                    _copy_meta(fd, st, is_dir=True)
                finally:
                    os.close(fd)
        finally:
            os.close(low)
            os.close(top)
        self._state("running")

    def _fill(self, low: int, top: int, dirs: List[Tuple[str, os.stat_result]]) -> None:
        """The farm's entries, directory by directory (a stack, not recursion: any depth
        up to the paths openat2 accepts, ENAMETOOLONG beyond)."""
        pending = [""]
        while pending:
            rel = pending.pop()
            src = _open_dir(low, rel)
            dst = _open_dir(top, rel)
            try:
                for entry in os.scandir(f"/proc/self/fd/{src}"):
                    name = entry.name
                    if name.startswith(".sandlock-") and _scratch.reserved(name):
                        continue  # sandlock's own (this run's layer among them): never in a farm
                    path = f"{rel}/{name}" if rel else name
                    st = os.stat(name, dir_fd=src, follow_symlinks=False)
                    self.snapshot[path] = (st.st_dev, st.st_ino)
                    if stat.S_ISDIR(st.st_mode):
                        os.mkdir(name, 0o700, dir_fd=dst)
                        dirs.append((path, st))
                        pending.append(path)
                    elif stat.S_ISLNK(st.st_mode):
                        os.symlink(os.readlink(name, dir_fd=src), name, dir_fd=dst)
                        _lchown(dst, name, st)
                        os.utime(name, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
                    elif stat.S_ISREG(st.st_mode):
                        self._link_or_copy(src, dst, name, path, st)
                    elif stat.S_ISFIFO(st.st_mode):
                        os.mkfifo(name, stat.S_IMODE(st.st_mode), dir_fd=dst)
                    else:
                        self.hidden.append(path)  # devices and sockets are not carried over
            finally:
                os.close(src)
                os.close(dst)

    def _link_or_copy(self, src: int, dst: int, name: str, path: str, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        try:
            os.link(name, name, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
            self.shared.add(key)
            self.names.setdefault(key, []).append(path)
            return
        except OSError:
            pass  # another filesystem, or fs.protected_hardlinks: copy it
        try:
            _copy_file(src, name, dst, name, st)
        except OSError:
            # unreadable too: a placeholder nobody may open (mode 000), as the file is to us
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0, dir_fd=dst)
            os.close(fd)
        copy = os.stat(name, dir_fd=dst, follow_symlinks=False)
        if st.st_uid != os.geteuid() or copy.st_size != st.st_size:
            self.foreign.add((copy.st_dev, copy.st_ino))
        self.copies[(copy.st_dev, copy.st_ino)] = key

    # -- during the run -------------------------------------------------------------------

    def note_written(self, fd: int, host_path: bytes, new: bool) -> None:
        """The supervisor opened host_path (a file of the layer) for writing, as fd: it is
        measured by `estimate` from now on, between walks (HOT_MAX files at most, the
        oldest leaving first).  new: made just now, so no walk has counted it yet."""
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        key = (st.st_dev, st.st_ino)
        with self.hot_lock:
            if key in self.hot:
                self.hot[key][0] = host_path
                return
            while len(self.hot) >= HOT_MAX:
                old_key = next(iter(self.hot))
                path, counted = self.hot.pop(old_key)
                self.extra += max(0, _blocks_of(path, old_key) - counted)
            self.hot[key] = [host_path, 0 if new else st.st_blocks * 512]

    def estimate(self) -> int:
        """Bytes the layer holds now, without a walk: the last walk, plus copy-ups since,
        plus what the files opened for writing since have grown (a stat of each)."""
        with self.hot_lock:
            hot = list(self.hot.items())
            total = self.walked + self.extra
        for key, (path, counted) in hot:
            total += max(0, _blocks_of(path, key) - counted)
        self.used = total
        return total

    def measure(self) -> int:
        """Bytes the farm's own files (not shared with the lower directory) use on disk.

        Raises:
            OSError: the layer could not be walked (EMFILE, ENOMEM, EACCES): never
                counted as 0, the run is stopped (_supervisor.Watch._check_disk).
        """
        for _ in self.walk():
            pass
        return self.estimate()

    def walk(self, step: int = 256) -> Iterator[None]:
        """measure() in steps: yields after every `step` entries, so the caller can measure
        the files being written (estimate) while a large layer is walked; at the end the
        walk's total replaces the last one.  Raises as measure."""
        total = 0
        stack = [self.tree]
        with self.hot_lock:
            extra_before = self.extra
        seen: Dict[Tuple[int, int], int] = {}
        count = 0
        while stack:
            try:
                entries = os.scandir(stack.pop())
            except FileNotFoundError:  # removed meanwhile; any other error: the caller stops the run
                continue
            with entries:  # read as it goes: a directory of 100,000 names is walked in steps too
                for entry in entries:
                    count += 1
                    if count % step == 0:
                        yield
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    key = (st.st_dev, st.st_ino)
                    if stat.S_ISDIR(st.st_mode):
                        stack.append(entry.path)
                    elif key not in self.shared:
                        total += st.st_blocks * 512
                        if key in self.hot:
                            seen[key] = st.st_blocks * 512
        with self.hot_lock:  # from now on the walk counts what it saw of each hot file
            for key, item in list(self.hot.items()):
                if key in seen:
                    item[1] = seen[key]
                elif _blocks_of(item[0], key) == 0:
                    del self.hot[key]  # gone (or empty and never counted)
            # copy-ups and evictions during the walk stay counted (maybe twice, until the next)
            self.walked, self.extra = total, self.extra - extra_before

    def need_space(self, more: int = 0) -> None:
        """ENOSPC if the layer is full (--max-disk): nothing new may be allocated in it."""
        if self.limit is not None and self.used + more >= self.limit:
            raise os_error(errno.ENOSPC)

    def is_shared(self, st_dev: int, st_ino: int) -> bool:
        return (st_dev, st_ino) in self.shared

    def copy_up(self, host_path: bytes) -> None:
        """Give the farm entry at host_path (a file shared with the lower directory) its own inode."""
        tree = os.fsencode(self.tree)
        if not host_path.startswith(tree + b"/"):
            raise os_error(errno.EXDEV, "not in the upper layer")
        rel = os.fsdecode(host_path[len(tree) + 1:])
        head, name = _split(rel)
        top = os.open(self.tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            parent = _open_dir(top, head)
        finally:
            os.close(top)
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
            if not stat.S_ISREG(st.st_mode) or not self.is_shared(st.st_dev, st.st_ino):
                return
            self.need_space(st.st_blocks * 512)
            self.used += st.st_blocks * 512
            with self.hot_lock:
                self.extra += st.st_blocks * 512
            temp = f".sandlock-up-{os.getpid()}-{name}"[:250]
            _copy_file(parent, name, parent, temp, st)
            # every other name of this file in the farm follows (a hard link stays one file)
            key = (st.st_dev, st.st_ino)
            for other in self.names.get(key, ()):
                if other == rel:
                    continue
                ohead, oname = _split(other)
                tree_fd = os.open(self.tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    odir = _open_dir(tree_fd, ohead)
                except OSError:
                    continue
                finally:
                    os.close(tree_fd)
                try:
                    ost = os.stat(oname, dir_fd=odir, follow_symlinks=False)
                    if (ost.st_dev, ost.st_ino) == key:
                        otemp = f".sandlock-up-{os.getpid()}-{oname}"[:250]
                        os.link(temp, otemp, src_dir_fd=parent, dst_dir_fd=odir, follow_symlinks=False)
                        os.rename(otemp, oname, src_dir_fd=odir, dst_dir_fd=odir)
                except OSError:
                    pass
                finally:
                    os.close(odir)
            os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        finally:
            os.close(parent)

    # -- at the end ----------------------------------------------------------------------------

    def changes(self) -> List[Change]:
        out: List[Change] = []
        low = os.open(self.lower, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        top = os.open(self.tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._compare(low, top, out)
        except OSError as exc:
            if exc.errno == errno.ENAMETOOLONG:
                raise os_error(errno.ENAMETOOLONG, "directories nested too deep to compare "
                              f"(paths over {PATH_MAX - 1} bytes)") from None
            raise
        finally:
            os.close(low)
            os.close(top)
        hidden = set(self.hidden)
        return sorted((c for c in out if not (c.kind == "D" and c.path in hidden)), key=lambda c: c.path)

    def _compare(self, low: int, top: int, out: List[Change]) -> None:
        # Only what this run did counts: an entry of the workdir the farm was not
        # made from (created by someone else since) is not ours to remove.
        # Directory by directory from a stack (no recursion: any depth).
        pending = [""]
        while pending:
            rel = pending.pop()
            prefix = f"{rel}/" if rel else ""
            lower = {n: st for n, st in _entries(low, rel).items() if prefix + n in self.snapshot}
            upper = _entries(top, rel)
            for name in sorted(set(lower) | set(upper)):
                path = f"{rel}/{name}" if rel else name
                a, b = lower.get(name), upper.get(name)
                if b is None:
                    out.append(Change("D", path))
                    if a is not None and stat.S_ISDIR(a.st_mode):
                        self._all(low, path, "D", out)
                elif a is None:
                    if path in self.snapshot and (stat.S_ISDIR(b.st_mode)
                                                  or (b.st_dev, b.st_ino) == self.snapshot[path]):
                        continue  # removed from the workdir by someone else during the run: not ours
                    out.append(Change("A", path))
                    if stat.S_ISDIR(b.st_mode):
                        self._all(top, path, "A", out)
                elif stat.S_IFMT(a.st_mode) != stat.S_IFMT(b.st_mode):
                    out.append(Change("M", path))
                    if stat.S_ISDIR(a.st_mode):
                        self._all(low, path, "D", out)
                    if stat.S_ISDIR(b.st_mode):
                        self._all(top, path, "A", out)
                elif stat.S_ISDIR(a.st_mode):
                    if _meta_differs(a, b, times=False):
                        out.append(Change("M", path))
                    pending.append(path)
                elif self._modified(low, top, rel, name, a, b):
                    out.append(Change("M", path))

    def _all(self, top: int, rel: str, kind: str, out: List[Change]) -> None:
        pending = [rel]
        while pending:
            here = pending.pop()
            for name, st in _entries(top, here).items():
                path = f"{here}/{name}"
                out.append(Change(kind, path))
                if stat.S_ISDIR(st.st_mode):
                    pending.append(path)

    def _modified(self, low: int, top: int, rel: str, name: str, a: os.stat_result, b: os.stat_result) -> bool:
        path = f"{rel}/{name}" if rel else name
        farm = (b.st_dev, b.st_ino)
        if farm == self.snapshot.get(path):
            return False  # still the lower file itself (as it was when the run began)
        if farm in self.copies and self.copies[farm] == self.snapshot.get(path) and farm in self.foreign:
            return False  # our copy of a file we may not change, so unchanged
        if stat.S_ISLNK(a.st_mode):
            return _readlink(low, rel, name) != _readlink(top, rel, name)
        if _meta_differs(a, b, times=True) or a.st_size != b.st_size:
            return True
        if stat.S_ISREG(a.st_mode):
            return not _same_content(low, top, rel, name)
        return False

    def commit(self, changes: List[Change]) -> None:
        """Apply `changes` to the lower directory, each file atomically (see the module docstring)."""
        self._state("committing")
        low = os.open(self.lower, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        top = os.open(self.tree, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        pair = _DirPair(top, low)
        try:
            times = self._directory_times(top, changes)
            gone: List[str] = []
            for change in changes:  # sorted: a directory comes before what is in it
                if any(change.path.startswith(g + "/") for g in gone):
                    continue  # inside a directory already removed or replaced as a whole
                head, name = _split(change.path)
                if change.kind == "D":
                    pair.close()  # what is removed may be a directory held open
                    _remove_entry(low, head, name)
                    gone.append(change.path)
                    continue
                src, dst = pair.get(head)
                st = os.stat(name, dir_fd=src, follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    _place_directory(src, dst, name, st)
                elif change.kind != "A" or not _link_new(src, dst, name, st):
                    try:
                        if stat.S_ISDIR(os.stat(name, dir_fd=dst, follow_symlinks=False).st_mode):
                            gone.append(change.path)  # a directory replaced by a file: its entries go with it
                    except FileNotFoundError:
                        pass
                    _place(src, dst, name, st, self)
            pair.close()
            _set_directory_times(low, times)
        finally:
            pair.close()
            os.close(low)
            os.close(top)
        self._state("committed")

    @staticmethod
    def _directory_times(top: int, changes: List[Change]) -> List[Tuple[str, int, int]]:
        """(directory, atime, mtime) in the farm of every directory whose entries changed,
        deepest first, as the run left them."""
        out: List[Tuple[str, int, int]] = []
        for rel in sorted({_split(c.path)[0] for c in changes}, key=len, reverse=True):
            try:
                fd = _open_dir(top, rel)
            except OSError:
                continue
            try:
                st = os.stat(fd)
                out.append((rel, st.st_atime_ns, st.st_mtime_ns))
            finally:
                os.close(fd)
        return out

    def keep(self) -> None:
        self._state("kept")

    def discard(self) -> None:
        _scratch.remove_tree(self.run)


# --- helpers --------------------------------------------------------------------------------


class _DirPair:
    """The O_PATH fds of one directory in the farm and in the lower directory, kept while
    the commit stays in it (its changes are next to each other: they are sorted)."""

    def __init__(self, top: int, low: int) -> None:
        self.top, self.low = top, low
        self.head: Optional[str] = None
        self.fds = (-1, -1)

    def get(self, head: str) -> Tuple[int, int]:
        if head != self.head:
            self.close()
            src = _open_dir(self.top, head)
            with _syscalls.closed_on_error(src):
                dst = _open_dir(self.low, head)
            self.head, self.fds = head, (src, dst)
        return self.fds

    def close(self) -> None:
        for fd in self.fds:
            if fd >= 0:
                os.close(fd)
        self.head, self.fds = None, (-1, -1)


def _link_new(src: int, dst: int, name: str, st: os.stat_result) -> bool:
    """A name new to the lower directory ("A"): the farm's file, symlink or FIFO linked
    there under its own name at once (link(2) makes the whole name or none, and fails
    if one is there: nothing is replaced, nothing torn; the layer stays whole).  False
    where that does not apply (a set-id file, an entry of another kind, a name that is
    there after all, another filesystem, fs.protected_hardlinks): `_place` does it then."""
    kind = stat.S_IFMT(st.st_mode)
    if kind not in (stat.S_IFREG, stat.S_IFLNK, stat.S_IFIFO) or st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        return False
    try:
        os.link(name, name, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
    except OSError:
        return False  # nothing was made
    return True


def _place_directory(src: int, dst: int, name: str, st: os.stat_result) -> None:
    """The farm's directory `name` in the lower directory: made (in place of a non-directory)
    or kept, with the farm's owner, mode and times."""
    try:
        old: Optional[os.stat_result] = os.stat(name, dir_fd=dst, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    if old is not None and not stat.S_ISDIR(old.st_mode):
        os.unlink(name, dir_fd=dst)
        old = None
    if old is None:
        os.mkdir(name, 0o700, dir_fd=dst)
    fd = _open_dir(dst, name)
    try:
        _copy_meta(fd, st, is_dir=True)
    finally:
        os.close(fd)


def _set_directory_times(low: int, times: List[Tuple[str, int, int]]) -> None:
    """Directories whose entries changed get the farm's times (Upper._directory_times)."""
    for rel, atime, mtime in times:
        try:
            dst = _open_dir(low, rel)
        except OSError:
            continue
        try:
            os.utime(f"/proc/self/fd/{dst}", ns=(atime, mtime))
        except OSError:
            pass
        finally:
            os.close(dst)

def _entries(top: int, rel: str) -> Dict[str, os.stat_result]:
    """The entries of directory rel under top, sandlock's own (`_scratch.reserved`) left out."""
    fd = _open_dir(top, rel)
    try:
        listing = os.listdir(f"/proc/self/fd/{fd}")
        return {name: os.stat(name, dir_fd=fd, follow_symlinks=False)
                for name in listing if not (name.startswith(".sandlock-") and _scratch.reserved(name))}
    finally:
        os.close(fd)


def _readlink(top: int, rel: str, name: str) -> str:
    fd = _open_dir(top, rel)
    try:
        return os.readlink(name, dir_fd=fd)
    finally:
        os.close(fd)


def _meta_differs(a: os.stat_result, b: os.stat_result, times: bool) -> bool:
    if stat.S_IMODE(a.st_mode) != stat.S_IMODE(b.st_mode) and not stat.S_ISLNK(a.st_mode):
        return True
    if (a.st_uid, a.st_gid) != (b.st_uid, b.st_gid):
        return True
    return times and not stat.S_ISLNK(a.st_mode) and a.st_mtime_ns != b.st_mtime_ns


def _same_content(low: int, top: int, rel: str, name: str) -> bool:
    a = _open_file(low, rel, name)
    try:
        b = _open_file(top, rel, name)
        try:
            while True:
                x, y = os.read(a, 1 << 16), os.read(b, 1 << 16)
                if x != y:
                    return False
                if not x:
                    return True
        finally:
            os.close(b)
    finally:
        os.close(a)


def _open_file(top: int, rel: str, name: str) -> int:
    path = f"{rel}/{name}" if rel else name
    return _syscalls.openat2(top, os.fsencode(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, 0, BENEATH)


def _copy_file(src_dir: int, src: str, dst_dir: int, dst: str, st: os.stat_result) -> None:
    """A new file dst with src's content, mode, owner (where allowed) and times."""
    fin = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src_dir)
    try:
        fout = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                       dir_fd=dst_dir)
        try:
            while True:
                chunk = os.read(fin, 1 << 20)
                if not chunk:
                    break
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fout, view):]
            _copy_meta(fout, st, is_dir=False)
        finally:
            os.close(fout)
    finally:
        os.close(fin)


def _copy_meta(fd: int, st: os.stat_result, is_dir: bool) -> None:
    path = f"/proc/self/fd/{fd}"
    try:
        os.chown(path, st.st_uid, st.st_gid)
    except OSError:
        pass  # an unprivileged user keeps its own ids
    os.chmod(path, stat.S_IMODE(st.st_mode))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _lchown(dir_fd: int, name: str, st: os.stat_result) -> None:
    try:
        os.chown(name, st.st_uid, st.st_gid, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        pass


def _place(src: int, dst: int, name: str, st: os.stat_result, upper: Upper) -> None:
    """Put the farm's entry `name` into the lower directory, replacing atomically."""
    temp = f".sandlock-new-{os.getpid()}-{name}"[:250]
    try:
        os.unlink(temp, dir_fd=dst)
    except FileNotFoundError:
        pass
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(name, dir_fd=src), temp, dir_fd=dst)
        _lchown(dst, temp, st)
        os.utime(temp, ns=(st.st_atime_ns, st.st_mtime_ns), dir_fd=dst, follow_symlinks=False)
    elif stat.S_ISREG(st.st_mode):
        if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
            st = _without_setid(src, name)
        try:
            os.link(name, temp, src_dir_fd=src, dst_dir_fd=dst, follow_symlinks=False)
        except OSError:
            _copy_file(src, name, dst, temp, st)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(temp, stat.S_IMODE(st.st_mode), dir_fd=dst)
    else:
        return
    try:
        old = os.stat(name, dir_fd=dst, follow_symlinks=False)
        if stat.S_ISDIR(old.st_mode):
            _remove_entry(dst, "", name)
    except FileNotFoundError:
        pass
    os.rename(temp, name, src_dir_fd=dst, dst_dir_fd=dst)


def _without_setid(src: int, name: str) -> os.stat_result:
    """A commit never installs a set-user-id or set-group-id file (README): the
    farm's file loses those bits before it is linked or copied (an error if it
    cannot, so that file is not committed)."""
    fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=src)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode):
            os.chmod(f"/proc/self/fd/{fd}", stat.S_IMODE(st.st_mode) & ~(stat.S_ISUID | stat.S_ISGID))
        return os.fstat(fd)
    finally:
        os.close(fd)


def _remove_entry(top: int, head: str, name: str) -> None:
    """Remove `name` (a whole directory too) in directory head under top, following no symlink."""
    parent = _open_dir(top, head)
    try:
        _scratch.remove_at(parent, name)  # iterative: any depth
    finally:
        os.close(parent)


def _old_places(workdir: str, outside: Optional[str]) -> List[str]:
    """Where earlier releases made the layers of this workdir (beside it, or beside the
    root it is in; ~/.cache; the temporary directory): still looked at by leftovers."""
    return [os.path.dirname((outside or workdir).rstrip("/")) or "/",
            os.path.join(os.path.expanduser("~"), ".cache"), _scratch.gettempdir()]


def leftovers(workdir: str, outside: Optional[str] = None) -> List[str]:
    """Upper layers of earlier runs on this workdir whose commit did not finish or were kept.

    Looked for in the workdir and where earlier releases put them
    (_old_places).  Only directories of ours (see _scratch: owner, mode,
    marker naming this workdir) of a process that is gone are looked at; the
    others go.
    """
    out: List[str] = []
    for parent in dict.fromkeys([workdir] + _old_places(workdir, outside)):
        for box in _scratch.containers(parent):
            removed = False
            for path, pid, note in _scratch.entries(box, "cow-"):
                if note != os.fsencode(workdir) or _scratch.alive(pid):
                    continue
                kept = _kept_runs(path)
                out += [f"{os.path.join(path, run)} ({state})" for run, state in kept]
                if not kept:
                    _scratch.remove_tree(path)
                    removed = True
            if removed and parent == workdir:
                with _times_kept(workdir):
                    _release(box)
    return out


def _kept_runs(path: str) -> List[Tuple[str, str]]:
    """(run, state) of the runs in a layers directory whose layer must stay: kept or committing."""
    out: List[Tuple[str, str]] = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return out
    try:
        for run in sorted(os.listdir(fd)):
            if not run.split("-", 1)[0].isdigit():
                continue
            try:
                run_fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError:
                continue
            try:
                state = _scratch.read_small(run_fd, STATE, 64).decode("ascii", "replace").strip()
            except OSError:
                continue
            finally:
                os.close(run_fd)
            if state in ("committing", "kept"):
                out.append((run, state))
    finally:
        os.close(fd)
    return out
