"""The emulated root's scratch directory and its anchors (docs/design.md "Emulated root").

`Scratch` is the run's private host directory: anchors (cwd/), the guest's
/dev (dev/, the DEVICES and DEV_LINKS) and /dev/shm (shm/).  `Cwd` keeps
every process's virtual cwd (chdir and fchdir never reach the kernel) and
makes the symbolic links in the anchor, every process's real cwd, through
which the kernel resolves a rewritten exec (_rootexec.do_execve).
"""

from __future__ import annotations

import itertools
import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple


if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _threads
from ._notif import proc_stat, process_of, start_of

# /dev inside the root: name -> host device (docs/design.md "/dev and /proc in a root")
DEVICES = ("null", "zero", "full", "random", "urandom", "tty", "ptmx")
DEV_LINKS = {b"fd": b"/proc/self/fd", b"stdin": b"/proc/self/fd/0", b"stdout": b"/proc/self/fd/1",
             b"stderr": b"/proc/self/fd/2"}


class Scratch:
    """The run's private host directory: anchors (cwd/), the guest's /dev (dev/) and /dev/shm (shm/).

    Made once per prepared policy, so the Landlock rules can name it; each
    run gets its own /dev/shm directory and an anchor directory no other run
    has at the same time (one a finished run left, or a new one: new_run).
    It is a directory `root-<pid>-<random>`
    of the user's base (see _scratch.base), which every rule of the command is
    cut around: only dev/ and the run's own shm/ directory are granted to it;
    those of dead sandlock processes are removed first.
    """

    def __init__(self) -> None:
        from . import _scratch
        self.path = _scratch.new_scratch("root-")
        self.cwd = os.path.join(self.path, "cwd")
        self.shm = os.path.join(self.path, "shm")
        self.dev = os.path.join(self.path, "dev")
        os.mkdir(self.cwd, 0o700)
        os.mkdir(self.shm, 0o700)
        os.mkdir(self.dev, 0o755)
        for name in DEVICES + ("pts", "shm"):
            if os.path.exists("/dev/" + name):
                os.symlink("/dev/" + name, os.path.join(self.dev, name))
        for link, target in DEV_LINKS.items():
            os.symlink(target, os.path.join(os.fsencode(self.dev), link))
        self._runs = itertools.count(1)
        self._spare: List[Tuple[str, Dict[bytes, bytes]]] = []   # anchor directories of runs over (keep)
        self._spare_lock = _threads.Lock()

    SPARE_MAX = 4   # anchor directories kept for later runs (runs at once each need their own)

    def new_run(self) -> Tuple[str, str, Dict[bytes, bytes]]:
        """(anchor directory, /dev/shm directory, the stable links the anchor holds) for one
        run.  The anchor directory is one an earlier run left (keep) if there is one, with
        its links: only the supervisor writes there and Landlock grants the command nothing
        in it, so no run sees what another left, and the next exec of a program into the
        same fd number finds its link made (Cwd.link): no mkdir, symlink or removal on the
        scratch's filesystem per run (about 1 ms on a VM's ext4).  /dev/shm is new."""
        n = next(self._runs)
        shm = os.path.join(self.shm, f"{os.getpid()}-{n}")
        os.mkdir(shm, 0o1777)
        with self._spare_lock:
            kept = self._spare.pop() if self._spare else None
        if kept is not None:
            return kept[0], shm, kept[1]
        anchors = os.path.join(self.cwd, f"{os.getpid()}-{n}")
        try:
            os.mkdir(anchors, 0o755)
        except OSError:
            os.rmdir(shm)
            raise
        return anchors, shm, {}

    def keep(self, anchors: str, links: Dict[bytes, bytes]) -> bool:
        """Keep the anchor directory of a run that is over (every process of its sandbox
        gone) for a later run, with its stable links (Cwd.kept_links); False: SPARE_MAX are
        kept already, the caller removes it."""
        with self._spare_lock:
            if len(self._spare) >= self.SPARE_MAX:
                return False
            self._spare.append((anchors, links))
            return True

    def close(self) -> None:
        from . import _scratch
        _scratch.remove_ours(self.path)  # the base stays (see _scratch.base)


class Cwd:
    """The virtual cwd of every process, kept by the supervisor.

    chdir and fchdir never reach the kernel: the supervisor checks the
    directory and records it for the caller's process.  A process it has
    not seen yet inherits its parent's entry (a child forked before its
    parent changed directory is given the old one at that moment, see
    `set`), as the kernel's fork would.  Entries are keyed by pid and the
    process's start time, so a reused pid never inherits a stale entry.

    The real cwd of every process is the run's *anchor* directory, a
    private directory holding the symbolic links the supervisor points where
    an exec must go (`link`, see _rootexec.do_execve).  Landlock grants nothing
    there.
    """

    NAMES = [bytes([c]) for c in range(0x21, 0x7F) if c not in (0x2E, 0x2F)]  # not "." nor "/"
    ENTRIES_MIN = 1024  # entries kept before the first sweep of processes gone (_sweep)
    MADE_MAX = 4096    # names _place remembers having made (_remember_made)

    def __init__(self, top: str, initial: bytes, processes, is_member,
                 stable_links: Optional[Dict[bytes, bytes]] = None) -> None:
        """top: the anchor directory; stable_links: those an earlier run left in it (Scratch.new_run)."""
        self.top = os.fsencode(top)
        self.anchor = self.top  # everyone's real cwd
        self.anchor_fd = os.open(self.top, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        self.initial = initial
        self._processes = processes   # () -> pids of the sandbox
        self._is_member = is_member
        self._entries: Dict[int, Tuple[bytes, bytes]] = {}
        self._sweep_at = self.ENTRIES_MIN
        self._sweeping = _threads.Lock()
        self._entries_lock = _threads.Lock()  # an entry written vs the sweep's look-up and drop (_sweep)
        self._turn = 0
        self._lock = _threads.Lock()
        self._made: Set[object] = set()  # subdirs and (subdir, name) made in the anchor (_place)
        self._stable_links: Dict[bytes, bytes] = dict(stable_links or {})  # stable name -> its target (b"": being made)
        for key in self._stable_links:
            self._made.update((key[:1], (key[:1], key[2:])))

    def kept_links(self) -> Dict[bytes, bytes]:
        """The stable links made in the anchor, for the run that gets it next (Scratch.keep)."""
        with self._lock:
            return {key: target for key, target in self._stable_links.items() if target}

    def close(self) -> None:
        os.close(self.anchor_fd)

    def get(self, pid: int) -> bytes:
        """The virtual cwd of process `pid` (a tgid)."""
        return self._of(pid, 0)[1]

    def of_thread(self, tid: int) -> bytes:
        """The virtual cwd of the process of thread `tid` (get of its tgid), with no /proc
        read while the thread's ids are kept (_notif.Known: its tgid and its process's start
        time, trusted under a pidfd of that very task): a getcwd and every relative path
        ask it.  chdir and fchdir change only the entry (set), which is read on every call."""
        tgid, start = process_of(tid)
        return self._of(tgid, 0, start)[1]

    def _of(self, pid: int, depth: int, known_start: Optional[bytes] = None) -> Tuple[bytes, bytes]:
        """(start time of process pid, its virtual cwd); start is b"" if it is gone.
        known_start: pid's start time, where the caller has it already (of_thread)."""
        entry = self._entries.get(pid)
        if entry is not None and entry[0] and entry[0] == (start_of(pid) if known_start is None else known_start):
            return entry  # (the start kept per thread: _notif.Known)
        start, parent = _start_and_parent(pid)
        if start and depth < 64 and parent > 1 and (parent in self._entries or self._is_member(parent)):
            virt = self._of(parent, depth + 1)[1]
        else:
            virt = self.initial
        if start:
            with self._entries_lock:
                self._entries[pid] = (start, virt)
            self._sweep()
        return start, virt

    def set(self, pid: int, virt: bytes) -> None:
        """Process `pid` changes directory; the others keep what they have now."""
        for other in self._processes():
            if other != pid:
                self._of(other, 0)
        start = start_of(pid)
        if start:
            with self._entries_lock:
                self._entries[pid] = (start, virt)
            self._sweep()

    def _sweep(self) -> None:
        """Bounded: past twice the entries left by the last sweep (ENTRIES_MIN at least),
        drop those of processes gone (a different start time, or none, under that pid):
        a command that forks forever keeps one entry per live process, amortised one
        /proc read per entry made.  An entry replaced meanwhile (set, or _of for a new
        process with that pid) stays: it is looked up and dropped under _entries_lock,
        as entries are written (a look-up and a drop apart could drop a fresh entry)."""
        if len(self._entries) <= self._sweep_at or not self._sweeping.acquire(blocking=False):
            return
        try:
            for pid, entry in list(self._entries.items()):
                if _start_and_parent(pid)[0] != entry[0]:  # not _notif.Known: no pidfd for the dead
                    with self._entries_lock:
                        if self._entries.get(pid) is entry:
                            del self._entries[pid]
            self._sweep_at = max(self.ENTRIES_MIN, 2 * len(self._entries))
        finally:
            self._sweeping.release()

    def same_length_link(self, target: bytes, original: bytes) -> Optional[bytes]:
        """A relative name as long as `original`, ending in its last component, that is now
        a symlink (in the anchor) to `target`; None if original is too short or too long.

        The kernel hands a #! interpreter the path of its script and its own path
        as written: with names of the same length the originals can be put back
        into the new program's argv (see _rootexec.fix_argv).
        """
        base = original.rpartition(b"/")[2]
        room = len(original) - 1 - len(base)
        if b"/" not in original or not base or base in (b".", b"..") or not 1 <= room <= 200 or len(base) > 255:
            return None
        turn = self._next_turn()
        prefix = self.NAMES[turn % len(self.NAMES)] + b"~" * (room - 1)
        self._place(prefix, base, target, turn)
        return prefix + b"/" + base

    def named_link(self, basename: bytes, target: bytes) -> bytes:
        """A host path ending in /basename that is now a symlink to `target`.

        For a #! interpreter: the kernel passes the interpreter's path as its
        argv[0], and multi-call programs (busybox) choose by its last name.
        """
        turn = self._next_turn()
        directory = b".i%d" % (turn % 256)
        self._place(directory, basename, target, turn)
        return self.anchor + b"/" + directory + b"/" + basename

    STABLE_MAX = 4096  # stable links kept per run (see link); past it, rotating names

    def link(self, target: bytes, basename: bytes = b"", room: int = 1) -> bytes:
        """A relative name (at most `room` bytes) in the anchor that is now a symlink to `target`.

        With room for it the name is C/basename (C one byte, a directory of
        the anchor): the kernel names a process after the last component of
        the path it executed (comm, /proc/PID/status).  Else it is one byte.

        A target /proc/self/fd/N (what an exec is pointed at) gets a stable
        name, made once per run and never changed: byte 0x80 + N % 128 (no
        rotating name uses those bytes), then /basename; the next exec of
        that program into the same fd number finds it made, with no write to
        the anchor's filesystem (a symlink and a rename cost 1-2 ms on a busy
        disk).  When that name holds another fd number, or STABLE_MAX are
        made, a rotating name is used as before.
        """
        stable = self._stable(target, basename, room)
        if stable is not None:
            return stable
        turn = self._next_turn()
        char = self.NAMES[turn % len(self.NAMES)]
        if basename and b"/" not in basename and len(basename) + 2 <= room:
            self._place(char, basename, target, turn)
            return char + b"/" + basename
        self._place(None, char, target, turn)
        return char

    def _remember_made(self, subdir: Optional[bytes], name: bytes) -> None:
        """subdir and subdir/name exist in the anchor now (a hint for _place: it saves
        a mkdir, or an unlink and a rename, on the anchor's filesystem).  Bounded: forgotten
        past MADE_MAX, as _place never depends on it."""
        with self._lock:
            if len(self._made) >= self.MADE_MAX:
                self._made.clear()
            if subdir is not None:
                self._made.add(subdir)
            self._made.add((subdir, name))

    def _stable(self, target: bytes, basename: bytes, room: int) -> Optional[bytes]:
        """The stable name of `target` (see link), made now if it is not yet; None: none fits."""
        prefix = b"/proc/self/fd/"
        number = target[len(prefix):]
        if (not target.startswith(prefix) or not number.isdigit() or not basename or b"/" in basename
                or len(basename) + 2 > room):
            return None
        directory = bytes([0x80 + int(number) % 128])
        key = directory + b"/" + basename
        with self._lock:
            made = self._stable_links.get(key)
            mine = made is None and len(self._stable_links) < self.STABLE_MAX
            if mine:
                self._stable_links[key] = b""  # claimed: only this target ever goes there
        if made == target:
            return key
        if not mine:
            return None  # another fd number has it, it is being made, or too many: a rotating name
        try:
            self._place(directory, basename, target, self._next_turn())
        except BaseException:
            with self._lock:
                del self._stable_links[key]
            raise
        with self._lock:
            self._stable_links[key] = target
        return key

    def _next_turn(self) -> int:
        with self._lock:
            turn = self._turn
            self._turn += 1
        return turn

    def _place(self, subdir: Optional[bytes], name: bytes, target: bytes, turn: int) -> None:
        """Make `name` (in the anchor, or in its directory `subdir`) a symlink to `target`,
        replacing it atomically (a rename over it)."""
        if subdir is None:
            directory = self.anchor_fd
        else:
            if subdir not in self._made:
                try:
                    os.mkdir(subdir, 0o755, dir_fd=self.anchor_fd)
                except FileExistsError:
                    pass
            directory = os.open(subdir, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.anchor_fd)
        try:
            if (subdir, name) not in self._made:
                # a name not made yet is made in one step (only the supervisor writes
                # the anchor; if it is there after all, it is replaced as below)
                try:
                    os.symlink(target, name, dir_fd=directory)
                    self._remember_made(subdir, name)
                    return
                except FileExistsError:
                    pass
            temp = b".t%d" % turn
            try:
                os.unlink(temp, dir_fd=directory)
            except FileNotFoundError:
                pass
            os.symlink(target, temp, dir_fd=directory)
            os.rename(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
            self._remember_made(subdir, name)
        finally:
            if directory != self.anchor_fd:
                os.close(directory)


def _start_and_parent(pid: int) -> Tuple[bytes, int]:
    """(start time, parent pid) from /proc/PID/stat; (b"", 0) if gone."""
    try:
        fields = proc_stat(pid)
    except OSError:
        return b"", 0
    return fields[19], int(fields[1])
