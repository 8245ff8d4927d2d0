"""A fake handler context: one row of the handler table driven in process, no fork.

The unit tests of handlers (tests/test_handlers_*_unit.py) call

    reply = drive(ctx, "openat", AT_FDCWD, ctx.mem.cstr(path), os.O_RDONLY, 0)

which does what the supervisor does with one notification: the raw registers
are decoded by the row's layout (`_notif.decode`, paths read from the fake
memory), the row's handler decides and acts (on the real filesystem of a test
directory, through the real `_resolve.Resolver` / `_rootfs.RootResolver`
and `FsRules`), and its answer is turned into what the calling program
would see:

    Errno(n)           the call fails with errno n
    Value(v)           the call returns v (an fd handed over is installed in
                       the fake fd table first: Value(its number there))
    CONTINUE           the kernel would run the call itself
    None               nobody answers (the caller is gone)

What is fake:

- the command's memory: `Memory`, a bytes buffer at a made-up address;
  process_vm_readv/writev become reads and writes of it (EFAULT outside it,
  and for a write into a read-only piece);
- the command's fds: `FdTable`, fd numbers of the command -> fds of the test
  (pidfd_getfd becomes a dup; an injected fd gets the lowest free number);
- the notification itself: always still valid; replies are recorded, not
  sent to a listener; the caller's tid is the test's own thread (so its
  /proc/TID/status, umask and stack are real), its cwd `FakeContext.cwd`
  (host mode) or the virtual cwd of the emulated root.

Handlers answer today in three ways: a returned reply; a worker of the pool
that answers later through `reply_later` (FIFO opens, locks, blocking
connects: `_notif.Workers`, real threads here); and the emulated root's exec
that sends CONTINUE itself (`ctx.send`) before it returns None.  `drive`
folds them into the one answer the caller gets, and also understands the
return values `Later(work, abandon, busy)` and `Then(reply, after)` of a
single reply path, should `_notif` define them; the steps before every
handler are run as `_table.steps_for` declares them where it exists (else as
the loop hard-codes them), and sandlock's modules are reached through
`module()` (the package sandlock, else the flat modules).  Adapting these
tests to a new handler interface or layout is a change in this file only.

When both reply paths are gone from the supervisor, what may go from here:
the `reply_later`/`send` recording for handlers that answer by themselves,
`_legacy_steps`, and the `argv_fixups` attribute (then on the resolver).
"""

from __future__ import annotations

import errno
import importlib
import os
import threading
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import pytest



def module(name: str):  # type: ignore[no-untyped-def]
    """sandlock's module `name` ("_notif"): sandlock._notif where the modules are the package
    sandlock, else the flat module (the one place these tests say how sandlock is laid out)."""
    try:
        return importlib.import_module("sandlock." + name)
    except ImportError:
        return importlib.import_module(name)


_netlink = module("_netlink")
_netpolicy = module("_netpolicy")
_notif = module("_notif")
_policy = module("_policy")
_resolve = module("_resolve")
_syscalls = module("_syscalls")
_table = module("_table")
AT_FDCWD, AT_SYMLINK_NOFOLLOW = _notif.AT_FDCWD, _notif.AT_SYMLINK_NOFOLLOW
CONTINUE, Call, Errno, Fd, Value = _notif.CONTINUE, _notif.Call, _notif.Errno, _notif.Fd, _notif.Value
compile_layout, decode = _notif.compile_layout, _notif.decode
Policy = _policy.Policy
FsRules, Resolver = _resolve.FsRules, _resolve.Resolver

MASK64 = (1 << 64) - 1
ANSWER_TIMEOUT = 10.0   # seconds drive() waits for a worker's answer

Later = getattr(_notif, "Later", None)   # a single reply path (see the module docstring)
Then = getattr(_notif, "Then", None)


def efault() -> OSError:
    return OSError(errno.EFAULT, os.strerror(errno.EFAULT))


class Memory:
    """The command's memory: one buffer at address `base`; put() hands out pieces of it."""

    def __init__(self, size: int = 1 << 20, base: int = 0x7F3A00000000) -> None:
        self.base = base
        self.data = bytearray(size)
        self._top = 0
        self._readonly: List[Tuple[int, int]] = []
        # called after each read by the supervisor: a test plays a thread of the command
        # that rewrites its memory in between (readv(address, size) -> None)
        self.after_read: Optional[Callable[[int, int], None]] = None

    def put(self, data: bytes, readonly: bool = False) -> int:
        """The address of a fresh copy of `data` (16-byte aligned)."""
        self._top = (self._top + 15) & ~15
        start = self._top
        if start + len(data) > len(self.data):
            raise MemoryError("fake memory full")
        self.data[start:start + len(data)] = data
        self._top = start + max(len(data), 1)
        if readonly:
            self._readonly.append((self.base + start, self.base + start + len(data)))
        return self.base + start

    def cstr(self, text: Union[str, bytes], readonly: bool = False) -> int:
        """The address of a NUL-terminated copy of `text`."""
        return self.put(os.fsencode(text) + b"\0", readonly)

    def buffer(self, size: int, readonly: bool = False) -> int:
        """The address of `size` zero bytes (a result buffer)."""
        return self.put(bytes(size), readonly)

    def pointers(self, *addresses: int) -> int:
        """The address of a NULL-terminated array of pointers (argv, envp)."""
        return self.put(b"".join(a.to_bytes(8, "little") for a in addresses + (0,)))

    def read(self, address: int, size: int) -> bytes:
        start = address - self.base
        if start < 0 or start + size > len(self.data):
            raise efault()
        return bytes(self.data[start:start + size])

    def string(self, address: int) -> bytes:
        start = address - self.base
        return bytes(self.data[start:self.data.index(0, start)])

    def u32(self, address: int) -> int:
        return int.from_bytes(self.read(address, 4), "little")

    # process_vm_readv/writev of the command's memory (_syscalls.HotCalls)
    def readv(self, address: int, size: int) -> bytes:
        start = address - self.base
        if start < 0 or start >= len(self.data):
            raise efault()
        data = bytes(self.data[start:start + size])
        if self.after_read is not None:
            self.after_read(address, size)
        return data

    def writev(self, address: int, data: bytes, force: bool = False) -> int:
        start = address - self.base
        if start < 0 or start + len(data) > len(self.data):
            raise efault()
        if not force and any(a < address + len(data) and address < b for a, b in self._readonly):
            raise efault()
        self.data[start:start + len(data)] = data
        return len(data)


class FdTable:
    """The command's fds: its numbers -> fds of the test process (owned: closed by close())."""

    def __init__(self) -> None:
        self.fds: Dict[int, int] = {}

    def add(self, fd: int, number: Optional[int] = None) -> int:
        """Give the command `fd` (owned from now on) as `number`, or the lowest free one >= 3."""
        if number is None:
            number = 3
            while number in self.fds:
                number += 1
        if number in self.fds:
            os.close(self.fds[number])
        self.fds[number] = fd
        return number

    def open(self, path: Union[str, Path], flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
        """The command's number of a new open file description of `path`."""
        return self.add(os.open(path, flags | os.O_CLOEXEC, mode))

    def __getitem__(self, number: int) -> int:
        return self.fds[number]

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()


class FakeHot(_syscalls.HotCalls):
    """The real prepared calls (openat2, fstat) but memory reads and writes go to `memory`."""

    def __init__(self, memory: Memory) -> None:
        super().__init__()
        self.memory = memory

    def readv(self, pid: int, address: int, size: int) -> bytes:
        return self.memory.readv(address, size)

    def writev(self, pid: int, address: int, data: bytes) -> int:
        return self.memory.writev(address, data)


class FakeTracees(_notif.Tracees):
    """The command's fds from `table` (pidfd_getfd: a dup); the notification is always valid."""

    def __init__(self, hot: FakeHot, table: FdTable) -> None:
        super().__init__(hot)
        self.table = table

    def getfd(self, tid: int, fd: int) -> int:
        if fd not in self.table.fds:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return os.dup(self.table.fds[fd])

    def still_valid(self) -> bool:
        return True

    def confirm(self) -> None:
        pass


class HostResolver(Resolver):
    """The host-mode Resolver, with the command's cwd taken from the context (not /proc/TID/cwd,
    which is the test process's own)."""

    cwd_fd = -1

    def base(self, call: Call, dirfd: int) -> int:
        if dirfd == AT_FDCWD:
            return os.dup(self.cwd_fd)
        return super().base(call, dirfd)


class Members:
    """The sandbox's processes: the test process itself and `others`."""

    def __init__(self, others: Sequence[int] = ()) -> None:
        self.pids = {os.getpid(), *others}
        self.pending: Dict[int, float] = {}
        self.started = 1   # the command and the forks let through (_procops.Members.started)

    def contains(self, pid: int) -> bool:
        return pid in self.pids or (pid > 0 and _tgid(pid) in self.pids)

    def processes(self, strict: bool = False) -> List[int]:
        return sorted(self.pids)

    def settle(self, tid: int) -> None:
        self.pending.pop(tid, None)


def _tgid(pid: int) -> int:
    try:
        return _notif.tgid_of(pid)
    except OSError:
        return -1


class FakeContext:
    """What a handler sees of the supervisor (_notif.Context), for one test.

    mem, fds: the command's memory and fds; answers: call id -> the reply sent
    for it (by a worker, or by a handler itself); driven: the rows driven.
    """

    def __init__(self, tmp: Path, root: Optional[Path] = None, readable: Sequence[Union[str, Path]] = (),
                 writable: Sequence[Union[str, Path]] = (), denied: Sequence[Union[str, Path]] = (),
                 abi: int = 6, **policy: Any) -> None:
        self.mem = Memory()
        self.fds = FdTable()
        self.hot = FakeHot(self.mem)
        self.tracees = FakeTracees(self.hot, self.fds)
        self.tid = threading.get_native_id()
        self.members = Members()
        self.policy = Policy(chroot=str(root) if root is not None else None, **policy)
        self.names = _syscalls.names()
        self.abstract_scoped = abi >= 6
        self.abstract_prefix = b"sandlock-test%d/" % os.getpid()
        self.waits: Dict[int, Any] = {}
        self.waits_lock = threading.Lock()
        self.answers: Dict[int, Any] = {}
        self._answered = threading.Condition()
        self._over = False
        self.workers = _notif.Workers(self.reply_later, bound=4)
        self.in_flight = None
        self.netlink = None
        self.net_rules = _netpolicy.NetRules.from_policy(self.policy)
        self.net_dns = None
        self.policy_gate = None  # Sandbox(policy_fn=)'s _policyfn.Gate, set by a test
        self.argv_fixups: Dict[int, list] = {}
        self.execve_nr = self.names_to_numbers().get("execve", -1)
        self.listener = -1
        self._memory = None
        self.driven: set = set()
        self.bugs: List[str] = []   # exceptions other than OSError a handler raised (a bug)
        self._next_id = 1
        self.emulated = root is not None
        paths = lambda items: tuple(str(p) for p in items)  # noqa: E731
        if root is None:
            self.cwd = tmp
            self.resolver = HostResolver(FsRules(paths(readable), paths(writable), paths(denied)), self.tracees,
                                         self.members.contains, self.hot, self.members.processes)
            self.resolver.cwd_fd = os.open(tmp, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        else:
            _rootfs = module("_rootfs")
            run = tmp / "run"
            for d in ("anchors", "shm", "dev"):
                (run / d).mkdir(parents=True, exist_ok=True)
            cwd = module("_rootscratch").Cwd(str(run / "anchors"), b"/", self.members.processes, self.members.contains)
            rules = FsRules(paths([root, *readable, run / "shm", "/proc", run / "dev"]), paths(writable),
                            paths(denied), (), paths([run / "shm", run / "dev"]))
            self.resolver = _rootfs.RootResolver(rules, self.tracees, self.members.contains, self.hot, str(root),
                                                 (), cwd, str(run / "shm"), str(run / "dev"))

    # --- what the supervisor offers handlers ---------------------------------------------------

    def names_to_numbers(self) -> Dict[str, int]:
        return {name: nr for nr, name in self.names.items()}

    def net_names(self, ip: object) -> Tuple[str, ...]:
        return self.net_dns.names(ip) if self.net_dns is not None else ()

    def send(self, call: Call, reply: Any) -> None:
        with self._answered:
            if call.id in self.answers:
                raise AssertionError(f"call {call.id} answered twice: {self.answers[call.id]!r}, then {reply!r}")
            self.answers[call.id] = reply
            self._answered.notify_all()

    def reply_later(self, call: Call, reply: Any) -> None:
        if self._over:
            if isinstance(reply, Fd):
                os.close(reply.fd)
            return
        self.send(call, reply)

    def pending(self, call: Call) -> bool:
        return not self._over and call.id not in self.answers

    def inject(self, call: Call, fd: int, cloexec: bool = True) -> int:
        return self.fds.add(os.dup(fd))

    def force_write(self, tid: int, address: int, data: bytes) -> bool:
        self.mem.writev(address, data, force=True)
        return False

    @property
    def vfork(self):  # type: ignore[no-untyped-def]
        raise AssertionError("a vfork child's exec is not driven in process")

    def close(self) -> None:
        self._over = True
        self.workers.close()
        self.fds.close()
        if not self.emulated and self.resolver.cwd_fd >= 0:
            os.close(self.resolver.cwd_fd)
        if self.netlink is not None and hasattr(self.netlink, "close"):
            self.netlink.close()
        self.resolver.close()

    # --- helpers for tests ---------------------------------------------------------------------

    def wait_answer(self, call_id: int, timeout: float = ANSWER_TIMEOUT) -> Any:
        with self._answered:
            self._answered.wait_for(lambda: call_id in self.answers, timeout)
            return self.answers.get(call_id)


def row_of(name: str, root: bool) -> "_table.Row":
    """The row the supervisor uses for `name` (an emulated root's replaces the host's)."""
    return _table.row(name, root)


def start(ctx: FakeContext, name: str, *args: int) -> Call:
    """The notification for `name(*args)` from the command (registers as the kernel gives them)."""
    raw = [a & MASK64 for a in args] + [0] * (6 - len(args))
    call = Call(ctx._next_id, ctx.tid, ctx.names_to_numbers().get(name, -1), raw)
    ctx._next_id += 1
    return call


def _legacy_steps(ctx: FakeContext, call: Call) -> None:
    """The steps before every handler where the supervisor's loop hard-codes them."""
    if ctx.members.pending:
        ctx.members.settle(call.tid)
    if ctx.argv_fixups and call.tid in ctx.argv_fixups:
        module("_rootexec").fix_argv(ctx, call.tid)


def steps(ctx: FakeContext) -> Tuple[Callable[[Any, Call], None], ...]:
    """The steps every call goes through before its handler: as the table declares them
    (_table.steps_for, where it exists), else as the loop hard-codes them."""
    if hasattr(_table, "steps_for"):
        return tuple(_table.steps_for({n: None for n in ("fork", "vfork", "clone", "execve", "execveat")},
                                      root=ctx.emulated))
    return (_legacy_steps,)


def handle(ctx: FakeContext, name: str, call: Call) -> Any:
    """What the supervisor's loop does with one notification (Session.handle): the steps
    before any handler, decode, the handler's own return value (an exception: its errno,
    or EPERM for a bug: fail closed)."""
    row = row_of(name, ctx.emulated)
    ctx.driven.add(("root" if ctx.emulated else "host", name))
    op = _netlink_hook(name, row.op)
    try:
        for step in steps(ctx):
            step(ctx, call)
        decode(ctx.tracees, call, compile_layout(row.layout), row.fixed)
        return op(ctx, call)
    except OSError as exc:
        return Errno(exc.errno or errno.EPERM)
    except Exception as exc:  # fail closed, as the supervisor does; the test fails on it (fake)
        ctx.bugs.append(f"{name}: {exc!r}")
        return Errno(errno.EPERM)


def _netlink_hook(name: str, op: Callable) -> Callable:
    return _netlink.hook(name, op)


def begin(ctx: FakeContext, name: str, *args: int) -> Call:
    """Hand `name(*args)` to its handler; its answer may come later (answer())."""
    call = start(ctx, name, *args)
    reply = handle(ctx, name, call)
    if Then is not None and isinstance(reply, Then):
        ctx.send(call, reply.reply)
        reply.after()
    elif Later is not None and isinstance(reply, Later):
        try:
            ctx.workers.submit(call, reply.work)
        except OSError:
            reply.abandon()
            ctx.send(call, Errno(reply.busy))
    elif reply is not None:
        ctx.send(call, reply)
    return call


def answer(ctx: FakeContext, call: Call, timeout: float = ANSWER_TIMEOUT) -> Any:
    """The answer the command gets for `call` (see the module docstring); None if nobody
    answered within `timeout` seconds."""
    reply = ctx.wait_answer(call.id, timeout)
    if isinstance(reply, Fd):
        with ctx._answered:
            ctx.answers[call.id] = Value(ctx.fds.add(reply.fd))  # the fd is the command's now
            return ctx.answers[call.id]
    return reply


def answered(ctx: FakeContext, call: Call) -> bool:
    return call.id in ctx.answers


def drive(ctx: FakeContext, name: str, *args: int) -> Any:
    """The answer the command gets for `name(*args)` (see the module docstring)."""
    return answer(ctx, begin(ctx, name, *args))


# --- the fixture ------------------------------------------------------------------------------

@pytest.fixture
def fake(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., FakeContext]]:
    """fake(**kw): a new FakeContext (root=PATH for an emulated root; readable, writable,
    denied: the rules; other keywords: Policy fields).  After the test, every row the test
    declares (@pytest.mark.rows(...) for host rows, @pytest.mark.root_rows(...) for an
    emulated root's) must have been driven by it (tests/test_handlers_table_unit.py)."""
    made: List[FakeContext] = []
    failed_before = request.session.testsfailed
    real_writev = _syscalls.process_vm_writev

    def process_vm_writev(pid: int, address: int, data: bytes) -> int:
        # a handler that writes the command's memory without HotCalls (sendmmsg's
        # msg_len from a worker thread): the fake memory of the context it runs for
        for ctx in made:
            if pid == ctx.tid and ctx.mem.base <= address < ctx.mem.base + len(ctx.mem.data):
                return ctx.mem.writev(address, data)
        return real_writev(pid, address, data)
    monkeypatch.setattr(_syscalls, "process_vm_writev", process_vm_writev)

    def make(**kw: Any) -> FakeContext:
        ctx = FakeContext(tmp_path, **kw)
        made.append(ctx)
        return ctx
    yield make
    for ctx in made:
        ctx.close()
    if request.session.testsfailed != failed_before:
        return  # the test failed already: its own message says why
    bugs = [bug for c in made for bug in c.bugs]
    assert not bugs, f"handlers raised (answered EPERM, as the supervisor fails closed): {bugs}"
    driven = set().union(*(c.driven for c in made)) if made else set()
    declared = [("host", n) for m in request.node.iter_markers("rows") for n in m.args]
    declared += [("root", n) for m in request.node.iter_markers("root_rows") for n in m.args]
    missing = [d for d in declared if d not in driven]
    assert not missing, f"rows declared but not driven: {missing}"
