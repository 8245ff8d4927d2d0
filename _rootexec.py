"""execve and execveat in an emulated root (docs/design.md "Emulated root").

execve cannot be done on behalf: the kernel must do it.  Its path string is
rewritten, in the caller's memory, to a relative name in the run's anchor
directory (every process's real cwd, see _rootscratch.Cwd.link) that is a
symbolic link to /proc/self/fd/N, N the fd of the executable the supervisor
injected (execveat relative to a directory fd gets /proc/self/fd/N itself).
The name is never longer than the caller's string and, where it
fits, ends in the same last component (the process keeps its name).  The
original bytes are put back when the kernel is done with them, which
matters only for an exec from a vfork child, whose memory is its parent's:
once the child has its own (`VforkHolder`).  Landlock grants execute only
inside the root, so a thread racing the rewrite cannot make the kernel run
a host binary.

A dynamic program whose PT_INTERP names a loader the kernel would look up on
the host is run from a sealed memfd copy naming the root's loader (_elf);
the copies are kept for reuse, process-wide and bounded (COPIES_MAX,
COPIES_BYTES).  The namespace operations of a root are _rootops'.
"""

from __future__ import annotations

import errno
import os
import stat
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, List, Optional, Set, Tuple


if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _elf
from . import _structs as S
from . import _syscalls
from . import _threads
from ._errors import os_error as _oserror
from ._fsops import X_OK, _proc_fd
from ._notif import AT_EMPTY_PATH, AT_FDCWD, AT_SYMLINK_NOFOLLOW, CONTINUE, Call, Context, Errno, Reply, Then, \
    proc_stat, read_mem, tgid_of, parent_of, read_string, write_mem
from ._resolve import d_path


KCMP_VM = 1
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
MAX_INTERP_DEPTH = 4  # the kernel allows 5 binfmt levels (BINPRM_MAX_RECURSION + 1)


class _Target(NamedTuple):
    fd: int              # what the kernel executes (a file of the root or a memfd copy)
    host: bytes          # its host name when it is a plain file of the root, else b""


def do_execve(ctx: Context, call: Call) -> Reply:
    resolver = ctx.resolver
    path = call.path or b""
    if call.flags & ~(AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW):
        return Errno(errno.EINVAL)
    if not path:
        if not call.flags & AT_EMPTY_PATH:
            return Errno(errno.ENOENT)
        return _fexecve(ctx, call)
    probe, name = resolver.lookup(call, call.dirfd, path, bool(call.flags & AT_SYMLINK_NOFOLLOW))
    try:
        st = os.fstat(probe)
        if stat.S_ISLNK(st.st_mode):
            return Errno(errno.ELOOP)
        if not stat.S_ISREG(st.st_mode):
            return Errno(errno.EACCES)
        resolver.check(probe, name, "read")
        if not os.access(_proc_fd(probe), X_OK):
            return Errno(errno.EACCES)
        virt = resolver.virtual_of_host(name or b"") or path
        # Sandbox(policy_fn=) (README "Policy callback")
        decided = _check_exec(ctx, call, name or virt)
        fd = os.open(_proc_fd(probe), os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(probe)
    try:
        # what the kernel refuses next (it reads argv and envp before the file's
        # format), foreseen before anything is injected or written
        relative_at = call.dirfd != AT_FDCWD and path[:1] != b"/"
        arguments_fit(ctx, call, len(b"/dev/fd/%d/" % call.dirfd) + len(path) if relative_at else len(path))
        if relative_at and not _fd_name_fits(call.tid, len(path) - len(b"/proc/self/fd/")):
            return Errno(errno.ENAMETOOLONG)  # README: execveat(dirfd, short relative path)
        target, script = _plan(ctx, call, fd, virt, 0)
    finally:
        os.close(fd)
    try:
        watch = None
        if decided is not None:  # the exec must run as decided: watched from here (_policyfn)
            st = os.fstat(target.fd)
            watch = _watch_exec(call, decided, (st.st_dev, st.st_ino), b"" if script else None)
        number = ctx.inject(call, target.fd)
    except OSError as exc:
        return _unwatched(watch, exc)
    finally:
        os.close(target.fd)
    try:
        reply = _exec_at(ctx, call, path, number, script, virt)
    except OSError as exc:
        return _unwatched(watch, exc)
    if watch is None:
        return reply
    if isinstance(reply, Then):
        then = reply.after

        def both() -> None:
            try:
                watch()  # the exec is checked (the kernel has the rewritten path) ...
            finally:
                then()   # ... before the vfork parent's bytes are put back
        return Then(CONTINUE, both)
    return Then(reply, watch)  # type: ignore[arg-type]


def _check_exec(ctx: Context, call: Call, name: bytes) -> "Optional[list]":
    """Sandbox(policy_fn=) (README "Policy callback"): the argv the callback allowed the
    exec of `name`, None without a callback (_policyfn.check_exec)."""
    if getattr(ctx, "policy_gate", None) is None:
        return None
    from . import _policyfn  # imported by preload (runs without a callback never load it)
    return _policyfn.check_exec(ctx, call, name, call.ptr)


def _watch_exec(call: Call, decided: list, ident: "Tuple[int, int]", script: Optional[bytes]):  # type: ignore[no-untyped-def]
    """The exec `decided` by the callback, seized and watched (_policyfn.watch_exec)."""
    from . import _policyfn  # imported by preload with the callback that decided it
    return _policyfn.watch_exec(call, decided, ident, script)


def _unwatched(watch, exc: OSError) -> Reply:
    """The exec fails after its caller was seized (policy_fn): let it go once answered."""
    if watch is None:
        raise exc
    return Then(Errno(exc.errno or errno.EPERM), watch)


def _exec_at(ctx: Context, call: Call, path: bytes, number: int, script, virt: bytes) -> Reply:
    """Point the caller's exec at its injected fd `number` (do_execve)."""
    resolver = ctx.resolver
    tgid = tgid_of(call.tid)
    link = b"/proc/self/fd/%d" % number
    address = call.path_at
    relative_ok = call.dirfd == AT_FDCWD or path[:1] == b"/"
    parent = parent_of(tgid)
    shared = _shares_memory_with(tgid, parent)
    if script:
        # the interpreter gets our name for the script as its argument: map it back
        resolver.scripts[tgid] = {}
    else:
        resolver.scripts.pop(tgid, None)
    held = ctx.vfork.hold(parent) if shared else None
    try:
        return _redirect_exec(ctx, call, address, path, link, relative_ok, script, virt, tgid, held)
    except BaseException:
        if held is not None:
            ctx.vfork.release(held, ())
        raise


def _redirect_exec(ctx, call, address, path, link, relative_ok, script, virt, tgid, held) -> Reply:
    resolver = ctx.resolver
    same = resolver.cwd.same_length_link(link, path) if script and relative_ok else None
    if same:
        name = same
        resolver.argv_fixups[tgid] = [(a, b) for a, b in script if a] + [(same, path)]
    elif relative_ok:
        name = resolver.cwd.link(link, path.rpartition(b"/")[2], len(path))
    elif len(link) <= len(path):
        name = link
    else:
        return Errno(errno.ENAMETOOLONG)  # README: execveat(dirfd, short relative path)
    if script:
        resolver.scripts[tgid] = {name: virt}
    new = name + b"\0"
    patches = [(address, new, read_mem(ctx.tracees, call.tid, address, len(new)))]
    moved = _keep_argv0(ctx, call, call.ptr, address, len(new))
    if moved is not None:
        patches.append(moved)
    for where, ours, _ in patches:
        ctx.force_write(call.tid, where, ours)
    # CONTINUE: the kernel re-reads the rewritten path; if a thread changes it
    # again, Landlock grants execute only inside the root (and the layers), so
    # no host program can be run that way (module docstring)
    if held is None:
        return CONTINUE
    # A vfork child runs in its parent's memory, and the parent thread is held
    # (ptrace) until the child has its own: its bytes are put back once the
    # kernel has the rewritten path, i.e. after the CONTINUE is sent.
    vfork = ctx.vfork
    return Then(CONTINUE, lambda: vfork.release(held, patches))


def _keep_argv0(ctx, call, argv: int, address: int, size: int):
    """When argv[0] is the path string itself (busybox's shell passes one pointer
    for both), copy it below the caller's stack pointer and point argv[0] there,
    so the program still gets the name it was called by.  Returns the patch
    (slot address, new pointer bytes, old pointer bytes) or None."""
    if not argv:
        return None
    try:
        raw = read_mem(ctx.tracees, call.tid, argv, 8)
    except OSError:
        return None
    first = int.from_bytes(raw, "little")
    if not address <= first < address + size:
        return None
    text = _read_cstring(ctx, call.tid, first)
    sp = _stack_pointer(call.tid)
    if sp is None:
        return None
    copy = (sp - 2048 - len(text) - 1) & ~15  # below the red zone and any signal frame in flight
    ctx.force_write(call.tid, copy, text + b"\0")
    return argv, copy.to_bytes(8, "little"), raw


MAX_ARG_STRLEN = 32 * PAGE_SIZE     # one argument or environment string, its NUL included
ARG_MAX = 32 * PAGE_SIZE            # the least the kernel grants all of them together
STK_LIM = 8 << 20                   # _STK_LIM


def arguments_fit(ctx, call: Call, filename_len: int) -> None:
    """Raise what the kernel's exec would for the caller's argv and envp (EFAULT, E2BIG).

    The exec is continued after the caller's path string is rewritten and an
    fd injected (_redirect_exec), which the caller keeps if the kernel then
    refuses the exec: so every refusal the kernel makes before it loads the
    program is foreseen here, on the supervisor's own reading of the
    arguments, in the kernel's order (fs/exec.c: count(), bprm_stack_limits(),
    then copy_strings() from the last environment string to the first
    argument, the program's name copied first).  Memory stays bounded: the
    pointer arrays are read again by chunks instead of kept, and no string is
    kept (only its length; the strings are read a page at a time, at most
    PAGES_KEPT pages held at once).  A thread of the caller changing the arrays after
    this check can still make the exec fail; then only the caller's own
    memory holds the rewritten bytes (README, SECURITY.md).
    """
    tid, argv, envp = call.tid, call.ptr, call.ptr2
    limit = max(min(STK_LIM // 4 * 3, _stack_rlimit(tid) // 4), ARG_MAX)
    most = limit // 8  # more pointers than that can never fit: E2BIG without reading on
    argc = _count(ctx, tid, argv, most)
    envc = _count(ctx, tid, envp, most - max(argc, 1))
    pointers = (max(argc, 1) + envc) * 8
    if limit <= pointers:
        raise _oserror(errno.E2BIG)
    room = limit - pointers - (filename_len + 1)
    if room < 0:
        raise _oserror(errno.E2BIG)
    page: Dict[int, bytes] = {}  # the pages of strings read (at most PAGES_KEPT): neighbours share them
    unit = min(PAGE_SIZE, ctx.tracees.hot.READ_MAX)  # _arg_length's unit of reading
    for base, count in ((envp, envc), (argv, argc)):
        for address in _pointers_backwards(ctx, tid, base, count):
            # a string whose NUL lies in a unit read for its neighbours: measured here
            # (what _arg_length finds in the same bytes, without its loop), else by it
            offset = address % unit
            whole = page.get(address - offset) if address else None
            end = whole.find(b"\0", offset) if whole is not None else -1
            room -= end - offset + 1 if end >= 0 else _arg_length(ctx, tid, address, page)
            if room < 0:
                raise _oserror(errno.E2BIG)
    if argc == 0 and room < 1:
        raise _oserror(errno.E2BIG)  # the kernel adds an empty argv[0]


def _count(ctx, tid: int, array: int, most: int) -> int:
    """count(): the pointers before the NULL one; EFAULT if one cannot be read, E2BIG
    past `most` (the kernel would read on, up to 2^31 pointers, to say E2BIG or EFAULT)."""
    if array == 0:
        return 0
    count = 0
    address = array
    while True:
        chunk = min(PAGE_SIZE - address % PAGE_SIZE, ctx.tracees.hot.READ_MAX)
        raw = read_mem(ctx.tracees, tid, address, max(chunk - chunk % 8, 8))
        words = memoryview(raw).cast("Q")
        if 0 in words:
            return count + words.tolist().index(0)
        count += len(words)
        if count > most:
            raise _oserror(errno.E2BIG)
        address += len(raw)


def _pointers_backwards(ctx, tid: int, array: int, count: int):
    """The `count` pointers of an array counted before, from the last one."""
    end = count
    while end > 0:
        start = max(0, end - 512)
        words = memoryview(read_mem(ctx.tracees, tid, array + start * 8, (end - start) * 8)).cast("Q")
        yield from reversed(words.tolist())  # (native order: x86_64 and aarch64 are little-endian)
        end = start


PAGES_KEPT = 16  # pages of argument strings kept while one exec's are measured (64 KiB)


def _arg_length(ctx, tid: int, address: int, page: Optional[Dict[int, bytes]] = None) -> int:
    """strnlen_user(address, MAX_ARG_STRLEN): its length with the NUL; EFAULT, or E2BIG past the limit.

    page: start -> bytes of the whole pages read so far (updated, at most
    PAGES_KEPT): the strings of one exec mostly lie near each other, so one
    read of a page serves all of its strings."""
    if address == 0:
        raise _oserror(errno.EFAULT)
    length = 0
    hot = ctx.tracees.hot
    unit = min(PAGE_SIZE, hot.READ_MAX)  # a power of two: an aligned unit never crosses a page
    while length < MAX_ARG_STRLEN:
        at = address + length
        want = min(PAGE_SIZE - at % PAGE_SIZE, MAX_ARG_STRLEN - length)
        offset = at % unit
        data = b""
        if page is not None:
            want = min(want, unit - offset)
            whole = page.get(at - offset)
            if whole is None:
                try:
                    whole = hot.readv(tid, at - offset, unit)
                except OSError:
                    whole = b""
                if len(whole) == unit:
                    if len(page) >= PAGES_KEPT:
                        page.clear()
                    page[at - offset] = whole
            if len(whole) == unit:
                data = whole[offset:offset + want]
        if not data:  # no page, or its start is not readable: from the string on, as the kernel reads
            try:
                data = hot.readv(tid, at, want)
            except OSError:
                data = b""
        if not data:
            raise _oserror(errno.EFAULT)
        end = data.find(b"\0")
        if end >= 0:
            return length + end + 1
        length += len(data)
    raise _oserror(errno.E2BIG)


def _stack_rlimit(tid: int) -> int:
    """The caller's soft RLIMIT_STACK (the kernel sizes the arguments' room by it): asked
    with prlimit(2), else (a caller of other credentials) read from /proc/TID/limits."""
    try:
        limits = _syscalls.rlimit_buffer()
        _syscalls._call("prlimit64", tid, S.RLIMIT_STACK, None, limits)
        limit: int = limits[0]  # type: ignore[index]
        return 1 << 64 if limit == S.RLIM64_INFINITY else limit
    except OSError:
        pass
    try:
        with open(b"/proc/%d/limits" % tid, "rb") as f:
            for line in f:
                if line.startswith(b"Max stack size"):
                    soft = line.split()[3]
                    return 1 << 64 if soft == b"unlimited" else int(soft)
    except (OSError, ValueError, IndexError):
        pass
    raise _oserror(errno.EFAULT)  # fail closed: the caller is gone or unreadable


def _fd_name_fits(tid: int, digits: int) -> bool:
    """Will the number of the next fd injected into the caller (its lowest free
    one) have at most `digits` digits?  Streamed: the caller may hold many fds."""
    if digits < 1:
        return False
    if digits >= 10:
        return True
    bound = 10 ** digits
    used = 0
    with os.scandir(b"/proc/%d/fd" % tid) as entries:
        for entry in entries:
            if int(entry.name) < bound:
                used += 1
    return used < bound


def _read_cstring(ctx, tid: int, address: int) -> bytes:
    return read_string(ctx.tracees, tid, address, 131072)


def _syscall_fields(path: bytes) -> List[bytes]:
    """The fields of /proc/PID[/task/TID]/syscall (the call's number, its arguments, the
    stack pointer, the pc), or none where it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return []
    try:
        return os.read(fd, 256).split()
    except OSError:
        return []
    finally:
        os.close(fd)


def _stack_pointer(tid: int):
    """The thread's user stack pointer while it waits in the syscall (/proc/TID/syscall)."""
    try:
        return int(_syscall_fields(b"/proc/%d/syscall" % tid)[-2], 16)
    except (ValueError, IndexError):
        return None


def _shares_memory_with(pid: int, parent: int) -> bool:
    """Is pid a vfork child (CLONE_VM without CLONE_THREAD) of parent?"""
    if parent <= 1:
        return False
    try:
        return _syscalls._call("kcmp", pid, parent, KCMP_VM, 0, 0) == 0
    except OSError:
        return False


def _fexecve(ctx: Context, call: Call) -> Reply:
    """execveat(fd, "", AT_EMPTY_PATH) (fexecve): the fd is the child's own.

    A static ELF runs as it is.  For a dynamic ELF or a #! script, the
    child's fd is replaced (SECCOMP_ADDFD_FLAG_SETFD, same number, same
    close-on-exec flag) by what the kernel must run, then the exec goes on
    with no path to read.
    """
    fd = ctx.tracees.getfd(call.tid, call.dirfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return Errno(errno.EACCES)
        if not os.access(_proc_fd(fd), X_OK):
            return Errno(errno.EACCES)
        arguments_fit(ctx, call, len(b"/dev/fd/%d" % call.dirfd))  # before the fd is replaced
        # Sandbox(policy_fn=) (README "Policy callback"): asked, and the exec watched
        decided = _check_exec(ctx, call, ctx.resolver._name_of(fd) or b"/dev/fd/%d" % call.dirfd) \
            if getattr(ctx, "policy_gate", None) is not None else None
        head = os.pread(fd, _elf.HEADER_SIZE, 0)
        if head[:4] == b"\x7fELF":
            elf = _elf.parse_elf(lambda off, size: os.pread(fd, size, off), _syscalls.machine())
            if elf.interp is None:
                # CONTINUE: the kernel runs the fd the child holds, no path is read,
                # and Landlock's EXECUTE right decides whether it may
                if decided is not None:
                    return Then(CONTINUE, _watch_exec(call, decided, (st.st_dev, st.st_ino), None))
                return CONTINUE
        virt = ctx.resolver.virtual_of_host(ctx.resolver._name_of(fd) or b"") or b"/dev/fd/%d" % call.dirfd
        target, script = _plan(ctx, call, fd, virt, 0)
    finally:
        os.close(fd)
    try:
        watch = None
        if decided is not None:
            mine = os.fstat(target.fd)
            watch = _watch_exec(call, decided, (mine.st_dev, mine.st_ino), b"" if script else None)
        ctx.inject(call, target.fd, _child_cloexec(call.tid, call.dirfd), at=call.dirfd)
    except OSError as exc:
        return _unwatched(watch, exc)
    finally:
        os.close(target.fd)
    # CONTINUE: as above, the kernel runs the fd, now our copy; nothing is re-read
    return CONTINUE if watch is None else Then(CONTINUE, watch)


def _child_cloexec(tid: int, fd: int) -> bool:
    try:
        with open(b"/proc/%d/fdinfo/%d" % (tid, fd), "rb") as f:
            for line in f:
                if line.startswith(b"flags:"):
                    return bool(int(line.split()[1], 8) & os.O_CLOEXEC)
    except (OSError, ValueError):
        pass
    return True


def _plan(ctx: Context, call: Call, fd: int, virt: bytes, depth: int) -> Tuple[_Target, list]:
    """What the kernel must execute for the file `fd` (virtual path virt): (target, argv fixups).

    A #! script yields fixups: (our name, the script's) pairs of equal length
    to write back into the interpreter's argv (see fix_argv); an ELF none.
    """
    head = os.pread(fd, _elf.HEADER_SIZE, 0)
    if head[:4] == b"\x7fELF":
        return _plan_elf(ctx, call, fd, virt), []
    if head[:2] == b"#!":
        if depth >= MAX_INTERP_DEPTH:
            raise _oserror(errno.ELOOP)
        bang = _elf.parse_shebang(head)
        if bang is None:
            raise _oserror(errno.ENOEXEC)
        interp_fd, interp_virt = _open_executable(ctx, call, bang.interp)
        try:
            inner, _ = _plan(ctx, call, interp_fd, interp_virt, depth + 1)
        finally:
            os.close(interp_fd)
        if inner.host:
            target = inner.host
            os.close(inner.fd)
        else:
            try:
                target = b"/proc/self/fd/%d" % ctx.inject(call, inner.fd)
            finally:
                os.close(inner.fd)
        interp_name = ctx.resolver.cwd.same_length_link(target, bang.interp)
        fixups = [(interp_name, bang.interp)] if interp_name else []
        if not interp_name:
            basename = bang.interp.rstrip(b"/").rpartition(b"/")[2] or b"interpreter"
            interp_name = ctx.resolver.cwd.named_link(basename, target)
        line = _elf.rewrite_shebang(b"#!", interp_name, bang.arg)  # the new first line alone
        size = os.fstat(fd).st_size
        rest = _line_end(fd, size) + 1 or size  # the script after its first line (none: no newline)

        def fill(copy: int) -> None:
            os.write(copy, line)
            _elf.copy_range(fd, copy, rest, max(rest, size), len(line))
        return _Target(_elf.sealed_memfd_filled("sandlock:" + os.fsdecode(virt), fill), b""), fixups or [(b"", b"")]
    raise _oserror(errno.ENOEXEC)


def _line_end(fd: int, size: int) -> int:
    """Offset of the first newline of the file fd, -1 if none (read a page at a time)."""
    offset = 0
    while offset < size:
        chunk = os.pread(fd, 65536, offset)
        if not chunk:
            break
        at = chunk.find(b"\n")
        if at >= 0:
            return offset + at
        offset += len(chunk)
    return -1


def _open_executable(ctx: Context, call: Call, path: bytes) -> Tuple[int, bytes]:
    """Open an interpreter named by a #! line or PT_INTERP, as execve would check it.

    Looked up with O_PATH and its type checked before it is opened for reading
    (through our fd of it): an open for reading of a FIFO or a device of the
    image would wait, or read what is not a file, in the notification thread."""
    resolver = ctx.resolver
    probe, name = resolver.lookup(call, AT_FDCWD, path, False)
    try:
        st = os.fstat(probe)
        if not stat.S_ISREG(st.st_mode):
            raise _oserror(errno.EACCES)
        resolver.check(probe, name, "read")
        if not os.access(_proc_fd(probe), X_OK):
            raise _oserror(errno.EACCES)
        fd = os.open(_proc_fd(probe), os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    finally:
        os.close(probe)
    return fd, resolver.virtual_of_host(name or b"") or path


# Copies of dynamic programs whose PT_INTERP names the root's loader, reused while the
# file is unchanged (its device, inode, size and ctime: a write changes the ctime and no
# call sets it back, where utimensat sets an mtime back): at most COPIES_MAX of them,
# holding at most COPIES_BYTES together.
# Process-wide on purpose: a copy serves every later run of every Sandbox of this
# process (a run of python3 in a root would otherwise copy it again); bounded as said,
# the oldest evicted first, and released when the process exits.
COPIES_MAX = 64
COPIES_BYTES = 256 << 20
_COPIES: Dict[Tuple[int, int, int, int, bytes], Tuple[int, int]] = {}  # key -> (memfd, bytes it holds)
_COPIES_LOCK = _threads.Lock()


def _plan_elf(ctx: Context, call: Call, fd: int, virt: bytes) -> _Target:
    elf = _elf.parse_elf(lambda off, size: os.pread(fd, size, off), _syscalls.machine())
    if elf.interp is None:
        return _Target(os.dup(fd), d_path(fd))
    loader, _ = _open_executable(ctx, call, elf.interp)
    try:
        _elf.parse_elf(lambda off, size: os.pread(loader, size, off), _syscalls.machine())
        loader_host = d_path(loader)
    finally:
        os.close(loader)
    if loader_host == elf.interp:
        # the kernel would find this very loader by the program's own PT_INTERP
        # (a workdir without --root: the guest's root is the host's)
        return _Target(os.dup(fd), d_path(fd))
    st = os.fstat(fd)
    key = (st.st_dev, st.st_ino, st.st_ctime_ns, st.st_size, loader_host)
    with _COPIES_LOCK:
        cached = _COPIES.get(key)
        if cached is not None:
            return _Target(os.dup(cached[0]), b"")

    def fill(copy: int) -> None:  # in the kernel, holes kept; then checked and patched on our copy
        _elf.copy_range(fd, copy, 0, st.st_size, 0)
        _elf.patch_interp_in(copy, loader_host)
    made = _elf.sealed_memfd_filled("sandlock:" + os.fsdecode(virt), fill)
    _keep_copy(key, made)
    return _Target(made, b"")


def _keep_copy(key: Tuple[int, int, int, int, bytes], fd: int) -> None:
    """Cache a duplicate of the copy fd, the oldest copies evicted to stay within
    COPIES_MAX and COPIES_BYTES (a copy larger than that is not kept)."""
    size = os.fstat(fd).st_blocks * 512
    if size > COPIES_BYTES:
        return
    with _COPIES_LOCK:
        if key in _COPIES:
            return
        while _COPIES and (len(_COPIES) >= COPIES_MAX or sum(n for _, n in _COPIES.values()) + size > COPIES_BYTES):
            os.close(_COPIES.pop(next(iter(_COPIES)))[0])
        _COPIES[key] = (os.dup(fd), size)


PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 17, 0x4206, 0x4207
WALL = 0x40000000
_FORK_CALLS = ("clone", "vfork", "clone3", "fork")


class VforkHolder:
    """Keeps a vfork parent thread from running until its child's exec is done.

    The exec of a vfork child rewrites a path string in memory it shares with
    its parent (see _redirect_exec); the parent must find its bytes as they
    were when it resumes.  So the parent thread is seized with ptrace(2)
    and interrupted while it waits for the child: it stops the moment it
    would return to its code, the bytes are put back, and it is let go.
    A ptrace stop is not reported to the parent's own parent (a shell sees
    nothing).  One thread does all of it (ptrace requests come from the
    tracer thread), polling the held threads, so no request waits for one.
    """

    def __init__(self, ctx) -> None:
        self._ctx = ctx
        self._requests = _threads.Queue()
        self._held: Dict[int, Optional[list]] = {}    # tid -> patches to put back (None: not released yet)
        self._thread = _threads.start(self._serve, (), "sandlock-vfork")

    def close(self) -> None:
        self._requests.put(None)

    def hold(self, parent: int) -> Optional[int]:
        """Seize and interrupt the thread of `parent` that waits in vfork; its tid or None."""
        tid = _vfork_thread(parent, self._ctx.names_to_numbers())
        if tid is None:
            return None
        answer: list = []
        done = _threads.Event()
        self._requests.put(("hold", tid, answer, done))
        done.wait(2.0)
        return tid if answer == [True] else None

    def release(self, tid: int, patches) -> None:
        self._requests.put(("release", tid, list(patches), None))

    def _serve(self) -> None:
        while True:
            try:
                request = self._requests.get(timeout=0.0002 if self._waiting() else None)
            except _threads.Empty:
                request = ()
            if request is None:
                for tid in list(self._held):
                    self._let_go(tid, 0)
                return
            if request:
                kind, tid, payload, done = request
                if kind == "hold":
                    payload.append(self._seize(tid))
                    done.set()
                else:
                    self._held[tid] = payload
            self._poll()

    def _waiting(self) -> bool:
        return any(p is not None for p in self._held.values())

    def _seize(self, tid: int) -> bool:
        try:
            _syscalls._call("ptrace", PTRACE_SEIZE, tid, 0, 0)
        except OSError:
            return False
        try:
            _syscalls._call("ptrace", PTRACE_INTERRUPT, tid, 0, 0)
        except OSError:
            self._detach(tid, 0)
            return False
        self._held[tid] = None
        return True

    def _poll(self) -> None:
        for tid, patches in list(self._held.items()):
            if patches is None:
                continue
            try:
                pid, status = os.waitpid(tid, os.WNOHANG | WALL)
            except ChildProcessError:
                del self._held[tid]  # gone
                continue
            if pid == 0:
                continue
            if os.WIFSTOPPED(status):
                for address, ours, saved in patches:
                    self._write(tid, address, saved)
                stop = os.WSTOPSIG(status)
                self._let_go(tid, 0 if stop == 5 or status >> 16 else stop)
            else:
                del self._held[tid]  # it died

    def _write(self, tid: int, address: int, data: bytes) -> None:
        # Not ctx.force_write: the notification thread's HotCalls buffers are its own.
        try:
            if _syscalls.process_vm_writev(tid, address, data) == len(data):
                return
        except OSError as exc:
            if exc.errno != errno.EFAULT:
                return
        memory = self._ctx.memory
        if memory is not None:
            try:
                memory.write(self._ctx.is_member, tid, address, data)
            except OSError:
                pass

    def _let_go(self, tid: int, signum: int) -> None:
        self._held.pop(tid, None)
        self._detach(tid, signum)

    @staticmethod
    def _detach(tid: int, signum: int) -> None:
        try:
            _syscalls._call("ptrace", PTRACE_DETACH, tid, 0, signum)
        except OSError:
            pass


def _vfork_thread(pid: int, numbers: Dict[str, int]) -> Optional[int]:
    """The thread of process pid that sits in a fork-like syscall (the vfork parent)."""
    wanted = {numbers[n] for n in _FORK_CALLS if n in numbers}
    if _in_call(b"/proc/%d/task/%d/syscall" % (pid, pid), wanted):
        return pid  # the main thread, listed first (a shell's, most often): no listing needed
    try:
        tids = os.listdir(b"/proc/%d/task" % pid)
    except OSError:
        return None
    for name in tids:
        if name != b"%d" % pid and _in_call(b"/proc/%d/task/%s/syscall" % (pid, name), wanted):
            return int(name)
    return None


def _in_call(syscall_file: bytes, wanted: Set[int]) -> bool:
    """Does /proc/PID/task/TID/syscall say the thread sits in one of the `wanted` calls?"""
    first = (_syscall_fields(syscall_file) or [b""])[0]  # the number comes first
    return first.isdigit() and int(first) in wanted


def fix_argv(ctx: Context, call: Call) -> None:
    """Put the names a #! exec was given back into the new program's argv.

    A step before every handler in a root (_table.steps_for): at the first
    trapped syscall of the process (its only thread then,
    so tid is its pid), before that syscall is decoded: the interpreter got
    our same-length names for its own path and the script's (see
    _redirect_exec); they are replaced in place in its argument strings,
    which the kernel copied to its stack ([arg_start, arg_end) of
    /proc/PID/stat).  A process whose exec failed has no such names: nothing
    is written.
    """
    fixups = ctx.resolver.argv_fixups
    if not fixups:
        return
    tid = call.tid
    pairs = fixups.pop(tid, None)
    if not pairs:
        return
    try:
        fields = proc_stat(tid)
        start, end = int(fields[45]), int(fields[46])
        # only the first strings matter: interpreter, its argument, the script (each < PATH_MAX)
        area = read_mem(ctx.tracees, tid, start, min(end - start, 4 * _elf.PATH_MAX))
    except (OSError, ValueError, IndexError):
        return
    offset = 0
    strings = []
    for text in area.split(b"\0"):
        strings.append((offset, text))
        offset += len(text) + 1
    for ours, original in pairs:
        for at, text in strings[:4]:  # interpreter, its argument, the script
            if text == ours and len(original) == len(ours):
                try:
                    write_mem(ctx.tracees, tid, start + at, original)
                except OSError:
                    pass
                break
