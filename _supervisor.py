"""One sandboxed run: prepare, launch, supervise, collect (docs/design.md "Security rules",
"Launch").

The phases, each with its owner:

    prepare   prepare(policy) -> Prepared: host rules, Landlock plans, the filter
              program and rulesets; built once per Sandbox (close_prepared)
    launch    Session.run(): the launch plan, the upper layer, the supervising
              thread confined (see _launch.confine_supervisor), the stub forked,
              the command's seccomp listener taken with pidfd_getfd(2)
    run       Watch: an epoll loop (Poller) in the supervising thread over the
              stub's pidfd, the status and error pipes, captured output and
              input, forwarded signals, and the timers (--timeout, memory, disk);
              Notifier: the one owner of the listener, in its own thread, which
              blocks in SECCOMP_IOCTL_NOTIF_RECV (a waiter blocked in RECV gets
              the kernel's synchronous wake-up, on the caller's CPU; one woken
              through epoll may land on the other CPU, 10-15 us more per
              wake-up: README "How it works"),
              dispatches through the handler table with a RunContext (the
              handlers' _notif.Context) and sends the reply each handler returns
    finish    Session._end_workdir (commit, keep, abort), then everything the
              run opened is released; Session.clean_up removes its directories

Notifications: the receive buffer is zeroed before every RECV; ENOENT from
ID_VALID, SEND or ADDFD means the caller went away and is not an error; a
handler's OSError becomes its errno and any other exception EPERM (logged
with --debug): nothing fails open.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import struct
import sys
import time
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal  # signal's C module: the same calls, without enum (README "Start-up")
from . import _threads  # threading's parts, without its import (README "Start-up")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _filter
from . import _identity
from . import _landlock
from . import _launch
from . import _netlink
from . import _netpolicy
from . import _policy
from . import _structs as S
from . import _syscalls
from ._syscalls import closed_on_error
from . import _table
from ._structs import CLONE_FS
from ._errors import SetupError, exec_error, os_error, shown
from ._notif import (AT_FDCWD, CONTINUE, Call, Context, Denial, Denials, Errno, Fd, Later, Receivers, Reply, Then,
                     Tracees, Value, Workers, block_signals, current_umask, decode, forget_exited, listener_ioctl,
                     proc_stat, proc_status, tgid_of, write_mem)
from ._policy import PTYS, Policy, deterministic, device_paths, terminals
from ._procops import (CPU_PERIOD, CpuThrottle, InFlight, MeasureError, Members, cpu_seconds, memory_devices,
                       memory_used, thread_states)
from ._resolve import Devices, FsRules, Resolver

if TYPE_CHECKING:  # only named in annotations: imported where they are used
    from . import _cow
    from . import _determinism
    from . import _dns
    from . import _fakeroot
    from . import _forkserver
    from . import _policyfn
    from . import _rootfs
    from . import _rootexec
    from . import _rootscratch
    from . import _scratch

_ZERO_NOTIF = bytes(S.NOTIF.size)
_RESP, _SEND = S.NOTIF_RESP, S.SECCOMP_IOCTL_NOTIF_SEND
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
             signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)
ENDING = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
MEMORY_POLL = 0.05
DISK_POLL = 0.2   # walks of the upper layer: at least; longer when a walk takes long
DISK_HOT_POLL = 0.02  # the files opened for writing since the last walk (_check_disk)
DISK_WALK_SLICE = 0.005  # seconds of the walk of the layer per DISK_HOT_POLL

# The stub is forked while sandlock's own threads (the cleanup thread, a Sandbox's
# other runs) wait: what it runs touches no lock they could hold (os.* calls on
# fds and data prepared before the fork, then exec), so Python 3.12's warning
# about fork() in a multi-threaded process is not for this call.
_launch.ignore_fork_warning(r".*_supervisor$")  # sandlock._supervisor, or wherever it is vendored


class Outcome(NamedTuple):
    status: Optional[int]      # the command's wait status (None: killed by sandlock)
    timed_out: bool
    reason: str                # why sandlock ended it ("" if it ended by itself)
    stdout: Optional[bytes]
    stderr: Optional[bytes]
    changes: Tuple = ()        # with a workdir: the _cow.Change list (applied, kept or previewed)
    workdir_note: str = ""     # with a workdir: what happened to the changes, for the user
    # the report (README "Results and denials")
    duration: float = 0.0      # seconds from launch to the end of the last process
    peak_memory: Optional[int] = None   # bytes, the highest -m measurement (None without -m)
    processes: Optional[int] = None     # processes started, the command included (None without -P)
    denials: Tuple = ()        # _notif.Denial, the first DENIALS_MAX
    denials_more: Tuple = ()   # (syscall, count) of the refusals past them
    filter_denied: Tuple = ()  # syscalls the BPF filter refuses by number (never seen per call)


class Prepared(NamedTuple):
    """Everything built from a policy before any run; reusable by many runs.

    The ruleset fds stay open as long as the Prepared is used: a Sandbox
    closes them when it is collected (close_prepared), the CLI at exit.
    """
    abi: int
    arch: str
    child_plan: _landlock.Plan
    supervisor_plan: _landlock.Plan
    traps: Dict[str, _filter.Trap]
    program: bytes
    child_ruleset: int
    scope_ruleset: int
    supervisor_ruleset: int
    devices: Tuple[str, ...]   # device files granted, visible to stat and friends
    filter_counts: Dict[str, int]  # syscalls per filter action, for --verbose
    root: Optional["_rootscratch.Scratch"] = None   # the emulated root's scratch directory
    host_rules: Tuple[Tuple[str, ...], Tuple[str, ...], Tuple[str, ...]] = ((), (), ())  # with a root
    layers: Optional["_cow.Layers"] = None     # with a workdir: where upper layers go
    leftovers: Tuple[str, ...] = ()            # upper layers of interrupted earlier runs
    devices_rw: Tuple[str, ...] = ()           # the devices granted for writing too
    proc_scratch: Optional["_scratch.Listings"] = None  # without a root: where /proc listings go (_procfs)
    net_rules: Optional[_netpolicy.NetRules] = None   # the network policy, parsed once (README "Network")
    hidden: Tuple[str, ...] = ()               # sandlock's own directories, cut out of every rule (_scratch.hidden)
    filter_denied: Tuple[str, ...] = ()        # syscalls the filter refuses by number (the denial report)


def close_prepared(prepared: Prepared) -> None:
    for fd in (prepared.child_ruleset, prepared.scope_ruleset, prepared.supervisor_ruleset):
        if fd >= 0:
            _close(fd)
    if prepared.root is not None:
        prepared.root.close()
    if prepared.proc_scratch is not None:
        prepared.proc_scratch.close()
    if prepared.layers is not None:
        prepared.layers.close()


def _host_paths(policy: Policy, paths: Sequence[str]) -> List[str]:
    """Host paths of the policy's virtual paths (outside /proc and /dev), existing ones only."""
    from . import _rootpolicy
    out = []
    for virt in paths:
        if virt == "/dev" or virt.startswith(("/dev/", "/proc")) or virt == "/proc":
            continue
        host = _rootpolicy.host_path(policy.chroot or "/", policy.fs_mount, virt)
        if host is not None and host not in out:
            out.append(host)
    return out


def _host_policy(policy: Policy, scratch: "_rootscratch.Scratch", layers: Optional["_cow.Layers"],
                 cut_workdir: bool = True) -> Policy:
    """An emulated root's policy in host terms, for Landlock.

    Readable: the root (or the -r paths inside it), every --fs-mount, the
    scratch /dev; writable: -w paths, read-write mounts, the private
    /dev/shm and the devices (the supervisor opens the sandbox's own
    pseudo-terminals in /dev/pts for it, see _landlock.plans); denied: --fs-deny inside the root.  With
    a workdir, what lies in it is granted on the upper layers' directory
    instead, and the workdir itself is cut out of any wider grant: the
    command never reaches it (the supervisor commits).  cut_workdir=False:
    the supervisor's own rules, where that cut is not made — a cut takes the
    create right from the directories above it (`-w /tmp` around a workdir in
    /tmp), and the supervisor creates for the command; what it reaches stays
    within the policy, the workdir being writable (README "Copy-on-write workdir").
    """
    def cow(paths: List[str], above: bool = False) -> List[str]:
        # above: a grant of a directory above the workdir grants its layers too (they
        # are in the workdir, which is cut out of that grant: see README "Where
        # sandlock keeps its own files"), unless a deny covers the workdir
        if layers is None:
            return paths
        out = []
        for host in paths:
            inside = host == layers.workdir or host.startswith(layers.workdir.rstrip("/") + "/")
            mapped = [layers.path] if inside else [host] + ([layers.path] if above and _under(layers.workdir, host)
                                                            else [])
            out += [path for path in mapped if path not in out]
        return out
    denied_host = _host_paths(policy, policy.fs_denied)
    above = layers is not None and not any(_under(layers.workdir, d) for d in denied_host)
    readable = cow(_host_paths(policy, policy.readable_paths()), above) + [h for _, h, _ in policy.fs_mount]
    readable.append(scratch.dev)
    writable = cow(_host_paths(policy, policy.fs_writable), above) + [h for _, h, ro in policy.fs_mount if not ro]
    writable.append(scratch.shm)
    writable += [d for d in _policy.DEVICES_RW + terminals() if os.path.exists(d)]
    denied = cow(denied_host)
    if cut_workdir and layers is not None and any(_under(layers.workdir, top) and top != layers.workdir
                                                  for top in readable + writable):
        denied.append(layers.workdir)
    return policy.replace(chroot=None, fs_mount=(), default_view=False, fs_readable=tuple(readable),
                          fs_writable=tuple(writable), fs_denied=tuple(denied), workdir=None, on_exit=None,
                          on_error=None, dry_run=False)


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


def _scratch_error(exc: OSError) -> SetupError:
    where = f"{exc.filename}: " if exc.filename else ""
    return SetupError(exc.errno or errno.EIO, f"cannot make sandlock's own directory: {where}{exc.strerror}",
                      step="scratch", hint="sandlock keeps its own files in /var/tmp/.sandlock-<uid> "
                      "(README \"Where sandlock keeps its own files\")")


def _fake_record_dir(policy: Policy) -> str:
    from . import _fakeroot
    try:
        return _fakeroot.make_record_dir(policy.chroot or "/")
    except OSError as exc:
        raise SetupError(exc.errno or errno.EIO, f"--fake-root: {exc.strerror}", step="fake-root") from None


def preload(policy: Policy, net_rules: _netpolicy.NetRules, debug: bool = False, callback: bool = False) -> None:
    """Import now every module a run of `policy` may use once the supervisor is confined.

    Confined, the supervisor may no longer read Python's library (with a root,
    Landlock grants it the root, not the host's /usr), and an import that
    fails there would fail a handler.  So nothing is imported after
    Session._confine: modules that only some policies need are imported
    where they are first needed, before confinement, and here, by feature,
    for the ones handlers use lazily (tests/test_confined_imports.py).
    """
    if policy.chroot is not None or policy.workdir is not None:
        from . import _elf  # noqa: F401  (/proc/PID/maps in a root)
        from . import _rootfs  # noqa: F401
        from . import _rootops  # noqa: F401  (namespace operations, bind in a root)
        from . import _rootexec  # noqa: F401  (exec, vfork in a root)
    if policy.fake_root:
        from . import _fakeroot  # noqa: F401
    if policy.workdir is not None:
        from . import _cow  # noqa: F401
    if net_rules.any_network():
        from . import _dns  # noqa: F401  (DNS policing, _netops._check_dns)
        _netpolicy.warm()  # ipaddress, for the matching of addresses
    if deterministic(policy) or policy.deterministic_dirs:
        from . import _determinism  # noqa: F401  (ctx.open: its streams, clocks, listings)
    if deterministic(policy):
        import hashlib  # noqa: F401  (_determinism's streams)
    if debug:
        import traceback  # noqa: F401  (handler failures, Notifier)
    if callback:
        import queue  # noqa: F401  (_policyfn.Gate, made by the run's thread)
        from . import _policyfn  # noqa: F401  (the handlers' checks; runs without a callback never load it)


def new_upper(prepared: Prepared, policy: Policy) -> "_cow.Upper":
    """A run's upper layer in the workdir's layers, built (SetupError if it cannot be);
    from a thread not confined yet (the farm is made with the caller's own rights)."""
    assert prepared.layers is not None
    try:
        upper = prepared.layers.new_run()
        upper.limit = policy.max_disk
        try:
            upper.build()
        except OSError:
            upper.discard()
            raise
    except OSError as exc:
        raise SetupError(exc.errno or errno.EIO, f"cannot make the upper layer: {exc}", step="workdir") from None
    return upper


def writes_pages(policy: Policy, prepared: Prepared) -> bool:
    """Does a run write into read-only pages of its commands (MemoryWriter)?  In a root or
    a workdir (an exec's path in .rodata), and for the vDSO of README "Deterministic runs"."""
    return prepared.root is not None or deterministic(policy)


def fake_owners(policy: Policy) -> Optional["_fakeroot.Owners"]:
    """With --fake-root: the record of owners and modes next to the root (_fakeroot), read
    before the run's thread confines itself; SetupError if it cannot be."""
    if not policy.fake_root:
        return None
    from . import _fakeroot
    try:
        return _fakeroot.Owners.open(policy.chroot or "/")
    except OSError as exc:
        raise SetupError(exc.errno or errno.EIO, f"--fake-root: {exc.strerror}", step="fake-root") from None


def run_dns(policy: Policy, net_rules: _netpolicy.NetRules) -> "_dns.Dns":
    """A run's DNS policing (_dns): the resolvers and hosts of the command's view (the host's
    /etc, or the root's, through a --fs-mount that covers it), read once, bounded, before
    anything runs, from a thread not confined yet."""
    from . import _dns  # network policies only; before the supervisor confines itself
    def read(virt: str) -> Optional[bytes]:
        if policy.chroot is None:
            return _dns.read_host_file(virt)
        from . import _rootpolicy
        for v, host, _ in sorted(policy.fs_mount, key=lambda m: -len(m[0])):
            if virt == v or virt.startswith(v + "/"):
                return _rootpolicy.read_guest_file(host, virt[len(v):] or "/", _dns.FILE_MAX)
        return _rootpolicy.read_guest_file(policy.chroot, virt, _dns.FILE_MAX)
    return _dns.Dns(net_rules, read("/etc/resolv.conf"), read("/etc/hosts"))


def prepare(policy: Policy, counted: bool = False) -> Prepared:
    """Plans and filter for `policy`; raises SetupError if the kernel cannot enforce it.
    counted: forks are counted even without max_processes (a policy_fn may lower it)."""
    arch = _syscalls.machine()
    if not _syscalls.has_user_notif():
        raise SetupError(errno.ENOSYS, "seccomp user notification is not available (needs Linux >= 5.0)",
                         step="seccomp", hint="run python -m sandlock --check")
    if not _syscalls.has_addfd_send():
        raise SetupError(errno.ENOSYS, "seccomp fd injection (SECCOMP_ADDFD_FLAG_SEND) is not available "
                         "(needs Linux >= 5.14)", step="seccomp", hint="run python -m sandlock --check")
    if not _syscalls.has_openat2() or not _syscalls.has_pidfd():
        raise SetupError(errno.ENOSYS, "openat2 and pidfd are needed (Linux >= 5.6)", step="probe",
                         hint="run python -m sandlock --check")
    abi = _landlock.check_kernel(policy)
    ttys = terminals()
    scratch: Any = None   # _rootscratch.Scratch with a root or workdir, else _scratch.Listings
    layers: Optional[_cow.Layers] = None
    leftovers: Tuple[str, ...] = ()
    landlock_policy = policy
    emulated = policy.chroot is not None or policy.workdir is not None
    with _Undo() as undo:  # an error releases what was made so far
        if emulated:
            from . import _rootfs  # noqa: F401  (imported now: the confined supervisor makes the resolver)
            from . import _rootscratch
            if policy.workdir is not None:
                from . import _cow
                leftovers = tuple(_cow.leftovers(policy.workdir, policy.chroot))
                try:
                    layers = _cow.Layers(policy.workdir)
                except OSError as exc:
                    raise SetupError(exc.errno or errno.EIO, f"{policy.workdir}: {exc.strerror}",
                                     step="workdir") from None
                undo.callback(layers.close)
            try:
                scratch = _rootscratch.Scratch()
            except OSError as exc:
                raise _scratch_error(exc) from None
            undo.callback(scratch.close)
            landlock_policy = _host_policy(policy, scratch, layers)
        else:
            from . import _scratch
            try:
                scratch = _scratch.Listings()  # the private listings of /proc (_procfs)
            except OSError as exc:
                raise _scratch_error(exc) from None
            undo.callback(scratch.close)
        from . import _scratch
        hidden = _scratch.hidden()  # after the scratch is made: its base is among them
        own: Tuple[str, ...] = (scratch.dev, scratch.shm) if emulated else ()  # the run's own pieces (see _host_policy)
        if layers is not None:  # its upper layers, which a workdir in /var/tmp puts in a hidden container
            own += (layers.path,)
        if abi:
            child_plan, supervisor_plan = _landlock.plans(landlock_policy, abi, ttys, hidden=hidden, own=own)
            if layers is not None:
                supervisor_plan = _landlock.plans(_host_policy(policy, scratch, layers, cut_workdir=False),
                                                  abi, ttys, hidden=hidden, own=own)[1]
            if scratch is not None:  # the supervisor makes the anchors (see _rootscratch), or the /proc listings
                extra = [scratch.cwd] + ([layers.path, layers.workdir] if layers is not None else [])
                if policy.fake_root:  # the supervisor writes the record of a fake root (_fakeroot)
                    extra.append(_fake_record_dir(policy))
                supervisor_plan = supervisor_plan._replace(rules=supervisor_plan.rules + tuple(
                    _landlock.Rule(path, _landlock.fs_rights(abi)) for path in extra))
            # TCP connect and bind are done on behalf (_netops): the command's own are
            # refused by the kernel (no port rule); the supervisor's domain does not handle them
            child_plan = child_plan._replace(handled_net=_landlock.net_rights(abi))
        else:
            child_plan = supervisor_plan = _landlock.Plan(0, 0, 0, ())
        traps = _table.traps_for(policy, abi, arch, counted=counted)
        net_rules = _netpolicy.NetRules.from_policy(policy)
        rules = _filter.rules_for(arch, traps, policy.extra_deny_syscalls, _table.extra_denials(abi),
                                  _table.argument_rules(policy, net_rules))
        program = _filter.build(arch, rules)
        rulesets = [-1, -1, -1]  # the command's, the stub's scope layer, the supervisor's
        for index, plan in enumerate((child_plan, _landlock.stub_plan(child_plan), supervisor_plan) if abi else ()):
            if plan.handled_fs or plan.scoped:
                rulesets[index] = _landlock.create_ruleset(plan)
                undo.callback(_close, rulesets[index])
        child, scope, supervisor = rulesets
        devices = tuple(path for path, _ in device_paths(landlock_policy, ttys))
        devices_rw = tuple(path for path, writable in device_paths(landlock_policy, ttys) if writable)
        counts: Dict[str, int] = {}
        for rule in rules.values():
            key = rule if isinstance(rule, str) else "decided on arguments"
            counts[key] = counts.get(key, 0) + 1
        host_rules: Tuple[Tuple[str, ...], Tuple[str, ...], Tuple[str, ...]] = ((), (), ())
        if emulated:  # the resolver's rules: host paths, the workdir not yet mapped to a run's layer
            plain = _host_policy(policy, scratch, None)
            host_rules = (plain.fs_readable, plain.fs_writable, plain.fs_denied)
        prepared = Prepared(abi, arch, child_plan, supervisor_plan, traps, program, child, scope, supervisor,
                            devices, counts, scratch if emulated else None, host_rules, layers, leftovers, devices_rw,
                            None if emulated else scratch, net_rules, hidden,
                            tuple(sorted(_syscalls.names(arch)[nr] for nr, rule in rules.items() if rule == "eperm")))
        undo.pop_all()  # made: close_prepared releases it all
    return prepared


class _Undo:
    """What prepare has made so far, released in reverse order if it fails: the part of
    contextlib.ExitStack prepare uses, without importing contextlib at start-up (README
    "Start-up").  A release that fails does not stop the others; the last such error is
    raised, chained to the one that failed prepare."""

    def __init__(self) -> None:
        self._calls: List[Tuple[Callable[..., object], Tuple[object, ...]]] = []

    def callback(self, fn: Callable[..., object], *args: object) -> None:
        self._calls.append((fn, args))

    def pop_all(self) -> None:
        """Made: nothing is released on the way out."""
        self._calls = []

    def __enter__(self) -> "_Undo":
        return self

    def __exit__(self, *exc_info: object) -> None:
        calls, self._calls = self._calls, []
        error: Optional[BaseException] = None
        for fn, args in reversed(calls):
            try:
                fn(*args)
            except BaseException as exc:
                error = exc
        if error is not None:
            raise error


READ_HERE = object()  # RunContext's net_dns: read by the run's own thread


class RunContext:
    """What the handlers of one run work with: the `_notif.Context` they are given.

    The run's view of the sandbox (its processes, the tracee handles, the
    resolver, the network state), and the two listener operations a handler
    may use (inject, pending), which the notifier carries out: it owns the
    listener, and the context gets those two of its methods, not the notifier
    (which holds the context: no cycle).  `open()` makes what the supervising thread makes once it is
    confined (HotCalls, Tracees, the resolver); `close()` releases it all.
    """

    def __init__(self, policy: Policy, prepared: Prepared, names: Dict[int, str],
                 inject: Callable[[Call, int, bool, int], int], pending: Callable[[Call], bool],
                 net_dns: Any = READ_HERE) -> None:
        """net_dns: the run's DNS state (None: no DNS policing), read in the caller's thread
        for a run from the fork server, whose thread is confined from its start; READ_HERE:
        read now (run_dns), before this thread confines itself."""
        self.policy = policy
        self.prepared = prepared
        self.names = names
        self._numbers: Optional[Dict[str, int]] = None  # names_to_numbers, made on first use
        self._inject = inject    # Notifier.inject
        self._pending = pending  # Notifier.pending
        self.abstract_scoped = prepared.abi >= 6
        # unguessable, so no host client reaches a name the sandbox binds (_netops.abstract_name)
        self.abstract_prefix = b"sandlock-%s/" % os.urandom(6).hex().encode()
        self.netlink = None  # _netlink.Netlink, made on the first netlink socket
        # FIFOs a worker is opening: our O_PATH fd -> ((st_dev, st_ino), O_RDONLY or O_WRONLY)
        self.waits: Dict[int, Tuple[Tuple[int, int], int]] = {}  # (_fsops._fifo_later)
        self.waits_lock = _threads.Lock()
        self.net_rules = prepared.net_rules or _netpolicy.NetRules.from_policy(policy)
        if self.net_rules.any_network():
            _netpolicy.warm()  # before this thread is confined (Landlock)
        if net_dns is READ_HERE:
            net_dns = (run_dns(policy, self.net_rules) if self.net_rules.any_network()
                       and not self.net_rules.deny_mode else None)
        self.net_dns: Optional[_dns.Dns] = net_dns
        self.members: Optional[Members] = None  # once the stub is forked
        self.hot = _syscalls.HotCalls()   # used by the notification thread (Tracees.claim)
        self.tracees = Tracees(self.hot)
        self.resolver: Optional[Resolver] = None  # once confined (open)
        self.upper: Optional[_cow.Upper] = None   # this run's upper layer, with a workdir
        # with a root: started before the thread confines itself, or the fork server's
        # (Server.memory_writer: in the caller's thread); closed with the run if own_memory
        self.memory: Optional[MemoryWriter] = None
        self.own_memory = False
        self.fake: Optional[_fakeroot.Owners] = None  # with --fake-root: read before the thread confines itself
        self._vfork: Optional[_rootexec.VforkHolder] = None  # made on the first exec from a vfork child
        self.determinism: Optional[_determinism.Determinism] = None  # README "Deterministic runs"
        self.run_dirs: Tuple[str, ...] = ()  # this run's directories in the scratch, removed after it
        self.anchors: Optional[str] = None   # with a root: its anchor directory, kept for a later run
        self.cwd = None      # _rootscratch.Cwd with an emulated root
        self.shm: Optional[str] = None   # host directory of a root's private /dev/shm
        self.start_dir: Optional[bytes] = None  # with a root: the anchor of the command's first cwd
        if prepared.root is not None:
            from . import _rootscratch
            anchors, shm, links = prepared.root.new_run()
            self.run_dirs = (shm,)
            self.anchors = anchors
            self.shm = shm
            start = policy.cwd or ("/" if policy.chroot is not None else os.getcwd())
            self.cwd = _rootscratch.Cwd(anchors, os.fsencode(start), self.processes, self.is_member, links)
            self.start_dir = self.cwd.anchor
        # memory files passed in SCM_RIGHTS messages, counted by -m (_procops.InFlight)
        self.in_flight = InFlight((self.shm,) if self.shm else ()) if policy.max_memory else None
        self.policy_gate: Optional[_policyfn.Gate] = None  # Sandbox(policy_fn=) (README "Policy callback")

    # --- what handlers call ------------------------------------------------------------------

    def inject(self, call: Call, fd: int, cloexec: bool = True, at: int = -1) -> int:
        """Install a copy of our fd in the caller; its number there (Notifier.inject)."""
        return self._inject(call, fd, cloexec, at)

    def pending(self, call: Call) -> bool:
        """Is `call` still waiting for its answer (Notifier.pending)?"""
        return self._pending(call)

    def force_write(self, tid: int, address: int, data: bytes) -> bool:
        """Write the tracee's memory, read-only pages too (a path in .rodata; see
        MemoryWriter); True if the page was read-only."""
        try:
            write_mem(self.tracees, tid, address, data)
            return False
        except OSError as exc:
            if exc.errno != errno.EFAULT or self.memory is None:
                raise
            self.memory.write(self.is_member, tid, address, data)
            return True

    @property
    def vfork(self) -> "_rootexec.VforkHolder":
        if self._vfork is None:
            from . import _rootexec
            self._vfork = _rootexec.VforkHolder(self)
        return self._vfork

    def names_to_numbers(self) -> Dict[str, int]:
        """names inverted, made when a handler first asks (a few rare ones do): not at every
        run's start (~20 us)."""
        if self._numbers is None:
            self._numbers = {name: nr for nr, name in self.names.items()}
        return self._numbers

    def net_names(self, ip: object) -> Tuple[str, ...]:
        """The hostnames `ip` was learned for (DNS answers and /etc/hosts, _dns.Learned)."""
        return self.net_dns.names(ip) if self.net_dns is not None else ()  # type: ignore[arg-type]

    def processes(self) -> List[int]:
        return self.members.processes() if self.members is not None else []

    def _cpu_used(self) -> float:
        """CPU seconds the sandbox has used (_identity.Machine)."""
        return cpu_seconds(self.members) if self.members is not None else 0.0

    def _thread_states(self) -> Tuple[int, int, int]:
        """(runnable threads, threads, highest pid) of the sandbox (_identity.Machine)."""
        return thread_states(self.members) if self.members is not None else (0, 0, 0)

    def is_member(self, pid: int) -> bool:
        return self.members is not None and self.members.contains(pid)

    # --- made once confined, released at the end ----------------------------------------------

    def open(self) -> None:
        """The resolver, made by the supervising thread once confined."""
        prepared, policy = self.prepared, self.policy
        if prepared.root is not None:
            resolver = self._root_resolver()
        else:
            readable = policy.readable_paths() + prepared.devices + (PTYS,)
            writable = policy.fs_writable + prepared.devices_rw + (PTYS,)
            resolver = Resolver(FsRules(readable, writable, policy.fs_denied, prepared.hidden),
                                self.tracees, self.is_member, self.hot, self.processes,
                                self._proc_listings if prepared.proc_scratch is not None else None)
        # /proc/PID/net (_procfs.net_view): the sandbox's sockets, loopback only without network
        resolver.net_processes = self.processes
        resolver.network_allowed = _netlink.network_allowed(policy)
        resolver.memory_limit = policy.max_memory  # /proc/meminfo (README "Memory")
        if self.policy_gate is not None:  # its deny_path narrowings, for this run's decisions
            from ._policyfn import NarrowedRules  # imported by preload
            resolver.rules = NarrowedRules(resolver.rules, self.policy_gate)  # type: ignore[assignment]
        # README "CPU", "Uptime and load"
        base = _identity.cpu_base(policy)
        if policy.num_cpus is not None:
            resolver.cpu_view = (base, policy.num_cpus)
        resolver.machine = _identity.Machine(self._cpu_used, self._thread_states, policy.num_cpus or len(base))
        if policy.hostname is not None:  # README "Host name"
            resolver.hostname = _identity.contents(policy.hostname)
            top = getattr(resolver, "root_fd", resolver.root)
            resolver.hostname_path = _identity.hostname_path(getattr(resolver, "root_host", b"/"))
            resolver.hostname_file = _identity.hostname_file(top)
        if deterministic(policy):  # README "Deterministic runs" (imported by preload)
            from ._determinism import Determinism
            resolver.determinism = self.determinism = Determinism(policy.random_seed, policy.time_start, prepared.arch)
        if policy.deterministic_dirs:
            from ._determinism import Listings
            resolver.listings = Listings()
        # which devices: Devices decides on the object (PTYS only holds the sandbox's own)
        resolver.devices = Devices(prepared.devices, PTYS)
        resolver.fake = self.fake
        # opened now, not inside the first call the command waits on (from the server this
        # runs while the command starts; in the direct launch, before the stub is forked)
        resolver.own_fd_table()
        self.resolver = resolver

    def release_waits(self) -> None:
        """End the blocking FIFO opens still waiting for their other end (the sandbox
        is over): an open for reading and writing is that other end, and never waits."""
        with self.waits_lock:
            for held in self.waits:
                try:
                    os.close(os.open(f"/proc/self/fd/{held}", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC))
                except OSError:
                    pass

    def close(self) -> None:
        for one in (self.netlink, self.resolver, self.tracees, self.memory if self.own_memory else None,
                    self._vfork, self.in_flight, self.determinism):
            if one is not None:
                one.close()
        forget_exited()  # the ids kept for this run's threads (_notif.Known)

    def _proc_listings(self) -> str:
        """This run's directory for /proc listings, made on the first one (most runs list
        no /proc; the supervisor thread may write in the scratch directory)."""
        assert self.prepared.proc_scratch is not None
        listings = self.prepared.proc_scratch.new_run()
        self.run_dirs = (listings,)
        return listings

    def _root_resolver(self) -> Resolver:
        readable, writable, denied = self.prepared.host_rules
        scratch = self.prepared.root
        assert scratch is not None and self.cwd is not None and self.shm is not None
        root = self.policy.chroot or "/"
        mounts = self.policy.fs_mount
        upper = self.upper
        if upper is not None:  # what lies in the workdir is in this run's upper layer
            workdir = upper.lower.rstrip("/")

            def cow(paths: Tuple[str, ...]) -> Tuple[str, ...]:
                return tuple(upper.tree + p[len(workdir):] if p == workdir or p.startswith(workdir + "/") else p
                             for p in paths)
            readable, writable, denied = cow(readable), cow(writable), cow(denied)
            if self.policy.chroot is not None and workdir == self.policy.chroot.rstrip("/"):
                root = upper.tree
            else:
                virtual = workdir[len(self.policy.chroot.rstrip("/")):] if self.policy.chroot else workdir
                mounts = mounts + ((virtual, upper.tree, False),)
        rules = FsRules(readable + self.prepared.devices + (self.shm, "/proc", scratch.dev, PTYS),
                        writable + (PTYS,), denied, self.prepared.hidden,
                        (self.shm, scratch.dev) + ((upper.tree,) if upper is not None else ()))
        from . import _rootfs
        resolver = _rootfs.RootResolver(rules, self.tracees, self.is_member, self.hot, root, mounts, self.cwd,
                                        self.shm, scratch.dev)
        resolver.upper = upper
        return resolver


if TYPE_CHECKING:
    def _is_a_handler_context(ctx: RunContext) -> Context:
        return ctx  # mypy checks that RunContext has everything _notif.Context lists


_REFUSALS = frozenset((errno.EACCES, errno.EPERM))  # the errnos of a refusal (Notifier.send)
_SIGNALS = ("kill", "tkill", "tgkill", "pidfd_send_signal", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open",
            "pidfd_getfd")
_NETWORK = ("socket", "socketpair", "connect", "sendto", "sendmsg", "sendmmsg")
# The rule named in the denial report for a refusal whose handler gave none (README
# "Results and denials"): by syscall; anything else gets _ON_BEHALF.
DEFAULT_RULES: Dict[str, str] = dict(
    [(name, "signals and process handles reach only the sandbox's own processes") for name in _SIGNALS]
    + [(name, "the network policy (--net-allow / --net-deny)") for name in _NETWORK]
    + [(name, "binds and listens (--net-allow-bind / --net-deny-bind)") for name in ("bind", "listen")]
    + [(name, "--max-processes") for name in ("fork", "vfork", "clone", "clone3")]
    + [(name, "only the sandbox's own processes") for name in
       ("prlimit64", "sched_setaffinity", "sched_setscheduler", "sched_setparam", "sched_setattr",
        "setpriority", "ioprio_set")]
    + [(name, "no device nodes or set-id files in a sandbox") for name in ("mknod", "mknodat")]
    + [(name, "the filesystem rules (-r/-w/--fs-deny, the default view)") for name in
       ("open", "openat", "openat2", "creat", "execve", "execveat")]
    + [(name, "the filesystem rules, applied by Landlock to the supervisor's call made on behalf "
              "(or file permissions)") for name in ("rename", "renameat", "renameat2", "link", "linkat")])
_ON_BEHALF = "the filesystem rules or the kernel's answer to the supervisor's call made on behalf " \
             "(Landlock, file permissions)"


def denial_rule(name: str, code: int, why: str) -> str:
    """The rule the report names for a refusal of syscall `name` with errno `code`."""
    if why and why != os.strerror(code):
        return why
    return DEFAULT_RULES.get(name, _ON_BEHALF)


def denial_target(call: Call) -> str:
    """What a refused call named: the handler's word for it, else the decoded path, fd or pid."""
    if call.what is not None:
        return call.what
    if call.path is not None:
        path = os.fsdecode(call.path)
        path = path if path.startswith("/") or call.dirfd == AT_FDCWD else f"fd {call.dirfd}: {path}"
        if call.path2 is not None:  # rename, link, symlink: both names
            path2 = os.fsdecode(call.path2)
            shown2 = path2 if path2.startswith("/") or call.dirfd2 == AT_FDCWD else f"fd {call.dirfd2}: {path2}"
            path += " -> " + shown2
        return path
    if call.fd >= 0:
        return f"fd {call.fd}"
    if call.pid:
        return f"pid {call.pid}"
    return ""


class _Handed:
    """One fd handed from one thread to another that waits for it (a lock held until then)."""

    def __init__(self) -> None:
        self._fd = -1
        self._ready = _threads.Lock()
        self._ready.acquire()

    def hand(self, fd: int) -> None:
        self._fd = fd
        self._ready.release()

    def take(self) -> int:
        with self._ready:
            return self._fd


class Notifier:
    """The one owner of the command's seccomp listener (seccomp_unotify(2)).

    receive    a thread blocks in SECCOMP_IOCTL_NOTIF_RECV (see _receive; a
               second one while the first does an operation that may block)
    dispatch   the table's steps, decode, ID_VALID, the row's handler (handle)
    send       the reply value the handler returns (answer): an errno, a value,
               CONTINUE, an fd to inject, a Later whose work the receiving
               thread does once another receives (its reply goes through
               answer_later), a Then whose step runs after the send
    inject     an fd into the caller, for handlers (RunContext.inject)
    fail closed  a handler's OSError becomes its errno and any other exception
               EPERM (logged with --debug); a reply that cannot be sent kills
               the sandbox (on_fail), so nothing waits for ever

    The receive buffer is zeroed before every RECV; ENOENT from ID_VALID, SEND
    or ADDFD means the caller went away and is not an error.
    """

    def __init__(self, handlers: Dict[int, "_table.Handler"], before: Tuple["_table.Step", ...],
                 names: Dict[int, str], on_fail: Callable[[str], None], debug: bool = False) -> None:
        self.handlers = handlers
        self.before = before
        self.names = names
        self.debug = debug
        self._format_exc: Callable[[], str] = lambda: ""
        if debug:  # imported now: once confined, the supervisor may not read Python's library
            import traceback
            self._format_exc = traceback.format_exc
        self._on_fail = on_fail
        self.listener = -1
        # an fd is installed, then announced (_send_fd): the filter makes a caller wait killably
        self._addfd_then_send = _syscalls.has_wait_killable_recv()
        self._hold = _syscalls.CpuHold()  # the caller kept on our CPU while it takes an fd (_addfd)
        self.ctx: Optional[RunContext] = None    # the handlers' context (take)
        self.tracees: Optional[Tracees] = None   # ctx.tracees
        self.workers = Workers(self.answer_later)  # the pool for blocking operations done on behalf
        self._lock = _threads.Lock()  # workers' answers vs the end of the run
        self._over = False             # the run is over: workers must not answer
        self._thread: Optional[object] = None   # the first loop's thread, or its pool job (start)
        self._waiting: Optional[_Handed] = None  # that thread, started early, waits for the listener
        self.receivers = Receivers()       # which loops receive (_receive)
        self._handling = _threads.Lock()  # one call handled at a time, whichever loop received it
        self.denials = Denials()  # the run's denial report (send)

    def take(self, listener: int, ctx: RunContext) -> None:
        """The command's listener is ours (closed by close()); handlers get `ctx`."""
        self.listener = listener
        self.ctx = ctx
        self.tracees = ctx.tracees
        assert self.tracees is not None
        self.tracees.listener = listener
        if _syscalls.has_sync_wake_up():
            try:
                listener_ioctl(listener, S.SECCOMP_IOCTL_NOTIF_SET_FLAGS, S.SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP)
            except OSError:
                pass  # older kernel: the default wake-up works, only slower

    def start_early(self) -> None:
        """Start the first loop's thread before the listener exists; start() hands it the
        listener (stop() an end, if it never comes).  The direct launch calls it once the stub
        is forked, so that the thread's start (~0.4 ms here) overlaps the stub's and the
        command's set-up instead of delaying the command's first call (README "Start-up")."""
        waiting = _Handed()
        self._thread = _threads.start(self._receive_handed, (waiting,), "sandlock-notifications")
        self._waiting = waiting

    def _receive_handed(self, waiting: "_Handed") -> None:
        listener = waiting.take()
        if listener < 0:  # no command to answer: the launch failed (stop)
            self.receivers.stop()
            return
        self._receive(listener)

    def start(self, pooled: Optional[Callable[[Callable[[], None]], object]] = None) -> None:
        """Start the first loop: in a thread of its own, or given to pooled(target) (a
        thread of the fork server's pool, _forkserver.Server.pooled); or hand the
        listener to the thread start_early started."""
        listener = fcntl.fcntl(self.listener, fcntl.F_DUPFD_CLOEXEC, 3)
        if self._waiting is not None:
            waiting, self._waiting = self._waiting, None
            waiting.hand(listener)
            return
        try:
            if pooled is not None:
                self._thread = pooled(lambda: self._receive(listener))
                return
            self._thread = _threads.start(self._receive, (listener,), "sandlock-notifications")
        except BaseException:
            self._thread = None
            os.close(listener)
            raise

    def stop(self) -> None:
        """The run is over: the receiving threads end by themselves once no process is
        left (a thread still in an operation ends after it); from now on a late answer
        goes to nobody, and idle workers end."""
        if self._waiting is not None:  # started early, and no listener came: it ends
            waiting, self._waiting = self._waiting, None
            waiting.hand(-1)
        if self._thread is not None:
            self.receivers.over.wait(2.0)
        with self._lock:
            self._over = True
        self.workers.close()

    def close(self) -> None:
        if self.listener >= 0:
            _close(self.listener)
            self.listener = -1

    def _receive(self, listener: int) -> None:
        """A notification loop: block in SECCOMP_IOCTL_NOTIF_RECV, answer, repeat.

        The first runs in its own thread (created by the confined supervisor
        thread, so it has the same Landlock domain and no capabilities)
        because a waiter blocked in RECV itself gets the kernel's synchronous
        wake-up (SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP) on the caller's CPU, where a
        wake-up through epoll may land on the other CPU and cost 10-15 us
        more (README "How it works", bench/notif_floor.c).  Loops end when the
        filter has no process left: RECV then fails with ENOENT and the
        listener reports POLLHUP.

        Calls are handled one at a time (self._handling: the HotCalls
        buffers, tracees.current), whichever loop received them.  A Later (an
        operation that may block: a connect, a FIFO open, a lock) is done by
        the loop that received it, outside that lock, once another loop
        receives in its stead (_notif.Receivers: which loop receives, the
        bound on them).  Every loop works on its own duplicate of the
        listener (`listener`, closed when it ends): one that ends its
        operation after the run is over never reaches an fd number the run
        has closed and reused.  Answers are sent by answer() and answer_later()
        only.
        """
        mask = None
        try:
            mask = block_signals()  # it answers with fds (_notif.block_signals)
            self._loop(listener)
        except BaseException as exc:  # a bug: fail closed, nothing may wait unanswered
            self._on_fail(f"the notification loop failed: {exc!r}")
            self.receivers.stop()
        finally:
            os.close(listener)
            if mask is not None:  # a pooled thread goes back as it came (block_signals)
                signal.pthread_sigmask(signal.SIG_SETMASK, mask)

    def _start_loop(self, call: Call) -> bool:
        """Start another loop in the pool (False: it cannot: every worker busy)."""
        try:
            listener = fcntl.fcntl(self.listener, fcntl.F_DUPFD_CLOEXEC, 3)
        except OSError:
            return False
        try:
            self.workers.submit(call, lambda: self._receive(listener))  # returns None: answers nothing
        except Exception:  # OSError(EAGAIN): every worker is busy; no thread could be started
            os.close(listener)
            return False
        return True

    def _loop(self, listener: int) -> None:
        buf = bytearray(S.NOTIF.size)
        recv = S.SECCOMP_IOCTL_NOTIF_RECV
        poller = select.poll()
        poller.register(listener, select.POLLIN)
        handling, tracees, receivers, me = self._handling, self.tracees, self.receivers, _threads.get_ident()
        assert tracees is not None
        ioctl, unpack, handle, answer = fcntl.ioctl, S.NOTIF.unpack, self.handle, self.answer  # bound once
        while True:
            buf[:] = _ZERO_NOTIF
            try:
                ioctl(listener, recv, buf, True)
            except OSError as exc:
                if exc.errno == errno.EINTR:
                    continue
                if _hung_up(poller):
                    receivers.stop()
                    return  # no process left: nothing more to answer
                if exc.errno == errno.ENOENT:
                    continue  # the caller went away before we received it
                # processes are left whose calls nobody would answer
                self._on_fail(f"cannot receive trapped calls: {exc.strerror}")
                receivers.stop()
                return
            fields = unpack(buf)
            call = Call(fields[0], fields[1], fields[3], fields[6:])
            act: Optional[Later] = None
            with handling:
                if tracees.owner != me:
                    tracees.claim()  # this thread uses the HotCalls buffers now
                reply = handle(call)
                if type(reply) is Later:
                    if receivers.hand_over(lambda: self._start_loop(call)):
                        act = reply  # type: ignore[assignment]
                    else:  # no thread could receive in this one's stead
                        reply.abandon()  # type: ignore[union-attr]
                        reply = Errno(reply.busy)  # type: ignore[union-attr]
                if act is None and reply is not None:
                    answer(call, reply)
            if act is None:
                # after a call answered at once, one loop receiving is enough (read without
                # the lock, decided under it)
                if receivers.receiving > 1 and not receivers.go_on(receivers.fewer()):
                    return
                continue
            try:  # the operation that may block: another loop receives meanwhile
                done = act.work()
            except OSError as exc:
                done = Errno(exc.errno or errno.EIO)
            except BaseException:  # fail closed, never leave the caller waiting
                done = Errno(errno.EPERM)
            after = receivers.after_act()  # before the answer: the caller's next call may come at once
            if done is not None:  # None: the caller is gone, nobody to answer
                self.answer_later(call, done)
            if not receivers.go_on(after):
                return

    def handle(self, call: Call) -> Reply:
        """Steps, decode, check, act: the reply for one notification (None: its caller is gone)."""
        handler = self.handlers.get(call.nr)
        if handler is None:
            return Errno(errno.ENOSYS)  # cannot happen: the filter notifies table rows only
        tracees = self.tracees
        assert tracees is not None
        try:
            for step in self.before:  # declared by the table (_table.steps_for)
                step(self.ctx, call)
            tracees.current = call.id
            decode(tracees, call, handler.layout, handler.fixed)
            if not tracees.still_valid():
                return None
            return handler.op(self.ctx, call)  # type: ignore[no-any-return]
        except OSError as exc:
            if exc.strerror and exc.errno and exc.strerror != os.strerror(exc.errno):
                call.why = exc.strerror  # the rule the handler named (the denial report: send)
            if isinstance(exc.filename, str):
                call.what = exc.filename
            return Errno(exc.errno or errno.EPERM)
        except Exception:  # fail closed: a handler bug refuses the syscall
            if self.debug:
                sys.stderr.write(f"sandlock: handler for {self.names.get(call.nr)} failed:\n{self._format_exc()}")
            call.why = "an error of the supervisor's handler (failing closed)"
            return Errno(errno.EPERM)

    def answer(self, call: Call, reply: Reply) -> None:
        """Carry out the reply a handler returned: the one way a notification is answered."""
        kind = type(reply)
        if kind is Later:
            reply = self._hand_over(call, reply)  # type: ignore[arg-type]
            if reply is None:
                return
        elif kind is Then:
            try:
                self._answer_now(call, reply.reply)  # type: ignore[union-attr]
            finally:
                reply.after()  # type: ignore[union-attr]
            return
        self._answer_now(call, reply)

    def _answer_now(self, call: Call, reply: Reply) -> None:
        try:
            self.send(call, reply)
        except OSError as exc:  # the caller would wait for ever
            self._on_fail(f"cannot answer {self.names.get(call.nr)}: {exc.strerror}")

    def _hand_over(self, call: Call, later: Later) -> Optional[Errno]:
        """Give a Later's work to the pool (None: a worker answers), or, when the pool takes
        no more, release what it holds and return the error to answer with."""
        try:
            self.workers.submit(call, later.work)
            return None
        except OSError as exc:
            code = later.busy if exc.errno == errno.EAGAIN else exc.errno or errno.EPERM
        except Exception:  # fail closed (a thread that cannot start)
            code = errno.EPERM
        later.abandon()
        return Errno(code)

    def answer_later(self, call: Call, reply: Reply) -> None:
        """answer() for worker threads (blocking operations done on behalf, Later).

        send() builds its own buffers, so threads may answer concurrently;
        once the run is over (stop) an answer is dropped.
        """
        with self._lock:
            if self._over:
                if isinstance(reply, Fd):
                    os.close(reply.fd)
                return
            self._answer_now(call, reply)

    def send(self, call: Call, reply: Reply) -> None:
        """Answer one notification; a vanished caller (ENOENT) is not an error."""
        kind = type(reply)
        if kind is Value:  # the most frequent answer first (a stat, an access)
            resp = _RESP.pack(call.id, reply.value, 0, 0)  # type: ignore[union-attr]
        elif isinstance(reply, Fd):
            self._send_fd(call, reply)
            return
        elif reply is CONTINUE:
            if self.debug:
                sys.stderr.write(f"sandlock: continue {self.names.get(call.nr)}\n")
            resp = S.NOTIF_RESP.pack(call.id, 0, 0, S.SECCOMP_USER_NOTIF_FLAG_CONTINUE)
        elif isinstance(reply, Value):
            resp = S.NOTIF_RESP.pack(call.id, reply.value, 0, 0)
        else:
            code = reply.errno or errno.EPERM  # type: ignore[union-attr]
            if code in _REFUSALS or call.why:
                self._deny(call, code)
            resp = S.NOTIF_RESP.pack(call.id, 0, -code, 0)
        while True:  # listener_ioctl, written out: the path of every answer
            try:
                fcntl.ioctl(self.listener, _SEND, resp)
                return
            except InterruptedError:
                continue
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    raise
                return

    def _deny(self, call: Call, code: int) -> None:
        """Record a refusal for the report (README "Results and denials"); --debug prints it."""
        name = self.names.get(call.nr, str(call.nr))
        denial = Denial(name, denial_target(call), code, denial_rule(name, code, call.why))
        self.denials.add(denial)
        if self.debug:
            sys.stderr.write(f"sandlock: denied {name} {denial.target!r}: "
                             f"{errno.errorcode.get(code, code)} ({denial.rule})\n")

    def _send_fd(self, call: Call, reply: Fd) -> None:
        # The fd is installed (ADDFD), then its number sent (SEND).  The caller cannot be
        # interrupted in between: once its call is received it waits killably
        # (SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, Linux 6.0), so only a fatal signal ends
        # the wait, and the fd goes with the process.  Both steps survive a stop of this
        # process (job control, a debugger attaching): an ADDFD interrupted before the caller
        # took the fd is withdrawn and made again, one interrupted after returns the number.
        # One step (SECCOMP_ADDFD_FLAG_SEND) does not: the kernel marks the call answered
        # when the request is queued, and a stop that interrupts the wait withdraws the
        # request without undoing that, so the caller's open returned 0 (Linux 6.18,
        # SECURITY.md "Trapped-call fast paths").  It is kept for kernels without killable
        # waits, where a caller interrupted between two steps would keep an fd it was not
        # told of.  If the install fails (EMFILE in the caller) the call is answered with
        # that errno.
        cloexec = os.O_CLOEXEC if reply.cloexec else 0
        try:
            if self._addfd_then_send:
                number = self._addfd(call, bytearray(S.NOTIF_ADDFD.pack(call.id, 0, reply.fd, 0, cloexec)))
                self.send(call, Value(number))
            else:  # (not held: the caller would be back in its own code before its affinity)
                listener_ioctl(self.listener, S.SECCOMP_IOCTL_NOTIF_ADDFD, S.NOTIF_ADDFD.pack(
                    call.id, S.SECCOMP_ADDFD_FLAG_SEND, reply.fd, 0, cloexec))
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                self.send(call, Errno(exc.errno or errno.EMFILE))
        finally:
            os.close(reply.fd)

    def inject(self, call: Call, fd: int, cloexec: bool = True, at: int = -1) -> int:
        """Install a copy of our fd in the caller (close-on-exec) and return its number there;
        at >= 0: as that very number, replacing what the caller had there (SETFD)."""
        how = (S.SECCOMP_ADDFD_FLAG_SETFD, at) if at >= 0 else (0, 0)
        return self._addfd(call, bytearray(S.NOTIF_ADDFD.pack(call.id, how[0], fd, how[1],
                                                              os.O_CLOEXEC if cloexec else 0)))

    def _addfd(self, call: Call, request: bytearray) -> int:
        """SECCOMP_IOCTL_NOTIF_ADDFD, the caller held on this CPU while it takes the fd
        (_syscalls.CpuHold: 104-127 -> 77-85 us per open of a python3 loop here).  Its
        affinity is back before the SEND that ends its call, so its own code never sees
        the hold."""
        held = self._hold.take(call.tid)
        try:
            return listener_ioctl(self.listener, S.SECCOMP_IOCTL_NOTIF_ADDFD, request, True)  # type: ignore[no-any-return]
        finally:
            if held is not None:
                self._hold.give_back(call.tid, held)

    def pending(self, call: Call) -> bool:
        """Is `call` still waiting for its answer?  For worker threads that wait on
        behalf of a caller (_fsops._lock_later): False once the caller was
        interrupted or died, or the run is over (any error of the check)."""
        if self._over:
            return False
        try:
            listener_ioctl(self.listener, S.SECCOMP_IOCTL_NOTIF_ID_VALID, S.U64.pack(call.id))
            return True
        except OSError:
            return False


EVENT_READ, EVENT_WRITE = 1, 2  # selectors' values


class PollKey(NamedTuple):
    fd: int
    events: int   # EVENT_READ, EVENT_WRITE
    data: Any     # the caller's, as selectors' keys


class Poller:
    """select.epoll with the part of selectors.EpollSelector's interface Watch uses
    (register, unregister, get_map, get_key, select, close), and its behaviour: a timeout
    rounded up to the millisecond, a hang-up or error reported as ready both ways, an
    interrupted wait returning no event, an fd closed before its unregister forgotten
    quietly.  Without importing selectors at start-up (README "Start-up")."""

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._keys: Dict[int, PollKey] = {}

    def register(self, fd: int, events: int, data: object) -> PollKey:
        if fd in self._keys:
            raise KeyError(f"{fd} is already registered")
        self._epoll.register(fd, (select.EPOLLIN if events & EVENT_READ else 0)
                             | (select.EPOLLOUT if events & EVENT_WRITE else 0))
        key = self._keys[fd] = PollKey(fd, events, data)
        return key

    def unregister(self, fd: int) -> PollKey:
        key = self._keys.pop(fd)
        try:
            self._epoll.unregister(fd)
        except OSError:
            pass  # closed already: epoll forgot it
        return key

    def get_map(self) -> Dict[int, PollKey]:
        """The registered keys by fd (live: it follows register and unregister)."""
        return self._keys

    def get_key(self, fd: int) -> PollKey:
        return self._keys[fd]

    def select(self, timeout: Optional[float] = None) -> List[Tuple[PollKey, int]]:
        if timeout is None:
            wait = -1.0
        elif timeout <= 0:
            wait = 0.0
        else:
            wait = -(-timeout * 1e3 // 1) * 1e-3  # epoll waits whole milliseconds: at least `timeout`
        try:
            ready = self._epoll.poll(wait, max(len(self._keys), 1))
        except InterruptedError:
            return []
        out = []
        for fd, event in ready:
            key = self._keys.get(fd)
            if key is not None:
                events = ((EVENT_WRITE if event & ~select.EPOLLIN else 0)
                          | (EVENT_READ if event & ~select.EPOLLOUT else 0))
                out.append((key, events & key.events))
        return out

    def close(self) -> None:
        self._epoll.close()
        self._keys.clear()


class Watch:
    """The run phase: one epoll loop (Poller) in the supervising thread over

        the stub's pidfd      the sandbox is over (the stub outlives every process)
        the status pipe       the command's wait status, sent by the stub (from the
                              fork server, under the signal scope: the sandbox is over,
                              see ends_at_status)
        the error pipe        a setup or exec failure of the command
        capture pipes         stdout/stderr of the API's captured mode, stdin input
        a signal wakeup fd    signals to forward (CLI)

    and timers for --timeout and the memory and disk limits.  It kills the
    sandbox (kill_all) on a timer, a limit, or when the notifier fails.
    """

    def __init__(self, policy: Policy, ctx: RunContext, stub: int, stub_pidfd: int, own_group: bool, *,
                 forward_signals: bool, restore_signals: bool, input: Optional[bytes],
                 scoped: bool = False, ends_at_status: bool = False) -> None:
        self.policy = policy
        self.ctx = ctx
        self.stub = stub
        self.stub_pidfd = stub_pidfd
        self.own_group = own_group
        self.scoped = scoped  # the stub kills with kill(-1) under the signal scope (_launch._doom)
        # the status is sent once the rest of the sandbox is killed (_launch._reap, under the
        # scope): the run is over there, the stub's own exit not waited for (a stub of the
        # fork server, which reaps it, or the CLI's, which exits; one of a Sandbox's direct
        # launches would be left a zombie)
        self.ends_at_status = ends_at_status and scoped
        self.forward_signals = forward_signals
        # The CLI is about to exit when the run ends: a forwarded signal arriving
        # after that must not kill it with its default action (restore_signals=False
        # leaves them ignored instead of putting the old handlers back).
        self.restore_signals = restore_signals
        self.out: Dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.status: Optional[int] = None   # the command's wait status
        self.error = b""                    # the command's setup or exec failure
        self.timed_out = False
        self.reason = ""                    # why sandlock ended the run
        self._stub_gone = False
        self._pending_input = memoryview(input or b"")
        self._fds: List[int] = []           # the run's fds (an input pipe is closed when written)
        self._wakeup: Optional[Tuple[int, int, Dict[int, Any], int]] = None
        self.command_pidfd = -1             # the command's first process, once started (Session._start)
        self._deadline: Optional[float] = None
        self._next_memory_poll: Optional[float] = None
        self._next_disk_poll: Optional[float] = None
        self._next_cpu_tick: Optional[float] = None   # --cpu (_procops.CpuThrottle)
        self._throttle: Optional[CpuThrottle] = None
        self._memory_devs: Optional[set] = None   # memory filesystems (_procops.memory_devices)
        self.peak_memory: Optional[int] = None   # the highest -m measurement (the report)
        self._next_disk_walk = 0.0   # when _check_disk walks the whole upper layer again
        self._disk_walk: Optional[Iterator[None]] = None  # the walk under way (_cow.Upper.walk)
        # kill_all and signal_all may come from other threads (the API's Process): the
        # stub's pid and pidfd are used only while it is not reaped (retire)
        self._lock = _threads.Lock()
        self._retired = False
        self.on_exec: Optional[Callable[[bytes], None]] = None  # the exec's result is known (Session)

    def run(self, pipes: _launch.Pipes, ends: Dict[str, int], fds: List[int]) -> None:
        """Watch until the stub is gone (the command is started: Session._start)."""
        now = time.monotonic()
        self._deadline = (now + self.policy.timeout) if self.policy.timeout else None
        self._next_memory_poll = (now + MEMORY_POLL if self.policy.max_memory or self.ctx.policy_gate is not None
                                  else None)
        self._next_disk_poll = (now + DISK_HOT_POLL
                                if self.policy.max_disk is not None and self.ctx.upper is not None else None)
        if self.policy.cpu is not None and self.ctx.members is not None:
            self._throttle = CpuThrottle(self.ctx.members, self.policy.cpu)
            self._next_cpu_tick = now + CPU_PERIOD
        self._fds = fds
        sel = Poller()
        try:
            sel.register(self.stub_pidfd, EVENT_READ, "stub")
            sel.register(pipes.status_r, EVENT_READ, "status")
            sel.register(pipes.err_r, EVENT_READ, "error")
            for name, fd in ends.items():
                # O_NONBLOCK by fcntl: os.set_blocking is an ioctl (FIONBIO), and the
                # tests inject EINTR into every ioctl of sandlock (tests/security/test_eintr.py)
                fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
                sel.register(fd, EVENT_WRITE if name == "stdin" else EVENT_READ, name)
            if self._wakeup is not None:
                sel.register(self._wakeup[0], EVENT_READ, "signal")
            self._loop(sel)
        finally:
            sel.close()

    def wait_ready(self, ready: int) -> None:
        """Wait until `ready` is readable (the command's listener is there), forwarding
        signals meanwhile, so a stuck setup can still be interrupted (the stub dies
        with its parent, and the command with it)."""
        wakeup_fd = self._wakeup[0] if self._wakeup is not None else -1
        waiting = Poller()
        try:
            waiting.register(ready, EVENT_READ, "ready")
            if wakeup_fd >= 0:
                waiting.register(wakeup_fd, EVENT_READ, "signal")
            while not any(key.data == "ready" for key, _ in waiting.select()):
                self._on_signal(waiting, waiting.get_key(wakeup_fd))
        finally:
            waiting.close()

    def fail(self, reason: str) -> None:
        """The supervisor cannot go on answering (an error the kernel should never give):
        fail closed, so nothing waits for ever: kill the sandbox and say why."""
        if not self.reason:
            self.reason = f"{reason}; the sandbox was killed"
        self.kill_all()

    def kill_all(self) -> None:
        """Kill every process of the sandbox (the stub does it, see _launch._doom).  Under
        the signal scope the stub's kill(-1) reaches every process of the sandbox, and
        the command cannot stop the stub: a SIGKILL to the stub's group sent now would
        kill the stub before it does, and a process that left the group (setsid) would
        outlive the run.  Without the scope the group is all either can reach.
        Any thread may call it, at any time: after the run it does nothing."""
        with self._lock:
            if not self._retired:
                self._kill_all()

    def cancel(self, reason: str) -> None:
        """kill_all for the API's Process.kill, from any thread: the run ends with `reason`."""
        with self._lock:
            if not self._retired:
                if self.status is None:  # not when the command had ended by itself already
                    self.reason = self.reason or reason
                self._kill_all()

    def _kill_all(self) -> None:
        try:
            signal.pidfd_send_signal(self.stub_pidfd, _launch.DOOM_SIGNAL)
            signal.pidfd_send_signal(self.stub_pidfd, signal.SIGCONT)  # a stub stopped from outside does it too
        except OSError:
            pass
        if self.own_group and not self.scoped:
            try:
                os.killpg(self.stub, signal.SIGKILL)
            except OSError:
                pass

    def reap_stub(self) -> None:
        with self._lock:
            self._retired = True
            try:
                os.waitpid(self.stub, 0)
            except ChildProcessError:
                pass

    def retire(self) -> None:
        """From now on kill_all and signal_all do nothing (the stub is reaped, or its
        pidfd is about to be closed): no signal reaches a process that reused a pid."""
        with self._lock:
            self._retired = True

    def signal_all(self, signum: int) -> int:
        """Send signum to every process of the sandbox but the stub (the API's pause and
        resume: SIGSTOP, SIGCONT); how many got it.  The tree below the stub (every
        orphan is reparented to it, a subreaper) is walked again until a walk finds no
        process it has not signalled: a child forked while its parent was being stopped
        is found by the next walk, and a stopped process forks no more.  Each process is
        signalled through a pidfd opened, then checked to be of the sandbox, so a pid
        reused meanwhile is never signalled.  A SIGSTOP returns once each process has
        stopped or ended (a signal is delivered when its process next runs; at most
        STOP_WAIT seconds: one blocked in the kernel stops when it comes back).  Any
        thread may call it; after the run it does nothing."""
        done: set = set()
        held: List[int] = []   # pidfds of the processes signalled, to see them stop
        try:
            with self._lock:
                if self._retired:
                    return 0
                members = Members(self.stub)
                for _ in range(SIGNAL_ROUNDS):
                    fresh = [pid for pid in members.processes() if pid not in done]
                    if not fresh:
                        break
                    for pid in fresh:
                        done.add(pid)
                        pidfd = _signal_member(members, pid, signum)
                        if pidfd >= 0 and len(held) < STOP_WATCHED:
                            held.append(pidfd)
                        elif pidfd >= 0:
                            os.close(pidfd)
            if signum == signal.SIGSTOP:
                deadline = time.monotonic() + STOP_WAIT
                while not all(_stopped_or_gone(fd) for fd in held) and time.monotonic() < deadline:
                    time.sleep(0.002)
        finally:
            for fd in held:
                _close(fd)
        return len(done)

    # --- signals ---------------------------------------------------------------------------------

    def install_signal_wakeup(self) -> None:
        if not self.forward_signals:
            return
        r, w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        previous: Dict[int, Any] = {}
        ignore = (signal.SIGINT, signal.SIGQUIT) if not self.own_group else ()
        # in the command's process group, Ctrl-Z stops sandlock once the command is (_stop_after)
        for signum in FORWARDED + ((signal.SIGTSTP,) if not self.own_group else ()):
            previous[signum] = signal.signal(signum, signal.SIG_IGN if signum in ignore else _noop)
            if signum in ignore and previous[signum] != signal.SIG_IGN:
                _launch.OWN_IGNORED.add(signum)  # the command gets it back (_launch.ignored_signals)
        old_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        self._wakeup = (r, w, previous, old_fd)

    def uninstall_signal_wakeup(self) -> None:
        if self._wakeup is None:
            return
        r, w, previous, old_fd = self._wakeup
        self._wakeup = None
        for signum, handler in previous.items():
            if self.restore_signals:
                signal.signal(signum, handler)
            else:
                _ignore_now(signum)
            _launch.OWN_IGNORED.discard(signum)
        signal.set_wakeup_fd(old_fd if self.restore_signals else -1)
        os.close(r)
        os.close(w)

    def _stop_after(self) -> None:
        """Ctrl-Z with the command in sandlock's process group (README "Terminal"): the
        terminal sent SIGTSTP to both, and the shell shows its prompt once sandlock, its
        job, stops.  sandlock stops only after the command's first process has, as a
        shell's own job would: stopping first, it let the prompt come back while the
        command could still read, before its stop, what was typed at that prompt.  A
        command that does not stop on SIGTSTP (it ignores or handles it) leaves sandlock
        running, as the shell's job would be; at most SUSPEND_WAIT is spent waiting."""
        if self.command_pidfd >= 0:
            deadline = time.monotonic() + SUSPEND_WAIT
            while not _stopped_or_gone(self.command_pidfd) and time.monotonic() < deadline:
                time.sleep(0.002)
            if not _stopped_or_gone(self.command_pidfd):
                return
        os.kill(os.getpid(), signal.SIGSTOP)

    # --- the loop and its timers ---------------------------------------------------------------

    def _loop(self, sel: Poller) -> None:
        handlers = {"stub": self._on_stub, "status": self._on_status,
                    "error": self._on_error, "stdout": self._on_output, "stderr": self._on_output,
                    "stdin": self._on_input, "signal": self._on_signal}
        select, registered = sel.select, sel.get_map()
        timed = (self._deadline is not None or self._next_memory_poll is not None
                 or self._next_disk_poll is not None or self._next_cpu_tick is not None)
        while not self._stub_gone:  # outputs are drained when the stub goes (_on_stub)
            events = select(self._wait_time() if timed else None)
            for key, _ in events:
                if key.fd in registered:  # an earlier event of this batch may have closed it
                    handlers[key.data](sel, key)
            if timed:
                self._on_timers()

    def _wait_time(self) -> Optional[float]:
        now = time.monotonic()
        times = [t for t in (self._deadline, self._next_memory_poll, self._next_disk_poll, self._next_cpu_tick)
                 if t is not None]
        # at most an hour a wait: select() refuses timeouts past ~24 days (-t 1e300 is valid)
        return min(3600.0, max(0.0, min(times) - now)) if times else None

    def _on_timers(self) -> None:
        now = time.monotonic()
        if self._deadline is not None and now >= self._deadline and not self._stub_gone:
            self._deadline = None
            self.timed_out = True
            self.reason = f"timeout after {_seconds(self.policy.timeout)}s"
            self.kill_all()
        if self._next_memory_poll is not None and now >= self._next_memory_poll:
            self._next_memory_poll = now + MEMORY_POLL
            self._check_memory()
        if self._next_disk_poll is not None and now >= self._next_disk_poll:
            self._check_disk(now)
        if self._next_cpu_tick is not None and now >= self._next_cpu_tick and self._throttle is not None:
            self._next_cpu_tick = None if self._stub_gone else self._throttle.tick(now)

    def _check_disk(self, now: float) -> None:
        """--max-disk: past the limit (written through an fd opened before it was full), the
        sandbox is killed like on the memory limit.  Every DISK_HOT_POLL the files opened
        for writing since the last walk are measured (a stat each, _cow.Upper.estimate),
        after a slice of at most DISK_WALK_SLICE of the walk of the whole layer, which
        starts again DISK_POLL after it ends."""
        upper, limit = self.ctx.upper, self.policy.max_disk or 0
        if self._stub_gone or upper is None:
            self._next_disk_poll = None
            return
        try:
            if self._disk_walk is None and now >= self._next_disk_walk:
                self._disk_walk = upper.walk()
            if self._disk_walk is not None:
                for _ in self._disk_walk:  # a slice of the walk, then the files being written
                    if time.monotonic() - now >= DISK_WALK_SLICE:
                        break
                else:
                    self._disk_walk = None
                    self._next_disk_walk = time.monotonic() + DISK_POLL
            used = upper.estimate()
        except OSError as exc:
            self._stop(f"cannot measure the upper layer: {exc.strerror or exc}")
            return
        self._next_disk_poll = time.monotonic() + DISK_HOT_POLL
        if used > limit:
            self._stop(f"disk limit exceeded ({used >> 10} KiB > {limit >> 10} KiB in the upper layer)")

    def _check_memory(self) -> None:
        """--max-memory: see _procops.memory_used; a failed measurement stops the run."""
        ctx = self.ctx
        if self._stub_gone or ctx.members is None:
            return
        gate = ctx.policy_gate
        limit = (gate.max_memory if gate is not None else self.policy.max_memory) or 0
        if not limit:
            return  # a policy_fn may set one later (README "Policy callback")
        try:
            if self._memory_devs is None:
                self._memory_devs = memory_devices()
            total = memory_used(ctx.members, self._memory_devs, (ctx.shm,) if ctx.shm else (), ctx.in_flight)
        except (OSError, MeasureError) as exc:
            self._stop(str(exc) if isinstance(exc, MeasureError) else f"cannot measure memory: {exc.strerror}")
            return
        if ctx.resolver is not None:
            ctx.resolver.memory_used = total  # what /proc/meminfo shows as used
        self.peak_memory = max(self.peak_memory or 0, total)
        if total > limit:
            self._stop(f"memory limit exceeded ({total >> 20} MiB > {limit >> 20} MiB)")

    def _stop(self, reason: str) -> None:
        """A limit is exceeded or cannot be measured: kill the sandbox with the reason."""
        self.reason = reason
        self._next_memory_poll = None
        self._next_disk_poll = None
        self.kill_all()

    # --- events ------------------------------------------------------------------------------

    def _on_stub(self, sel, key) -> None:
        sel.unregister(key.fd)
        self.reap_stub()
        self._over(sel)

    def _over(self, sel) -> None:
        """The stub is gone, or said every other process of the sandbox is killed
        (ends_at_status): take what is left in the pipes and end the loop."""
        self._stub_gone = True
        for other in list(sel.get_map().values()):
            if other.data in ("stub", "stdin", "signal"):
                sel.unregister(other.fd)
        for k in list(sel.get_map().values()):
            if k.data == "status" and self.status is None:
                self._on_status(sel, k)  # the command's status may still sit in the pipe
            elif k.data in ("stdout", "stderr"):
                # Every process of the sandbox is gone, so all it wrote is in
                # the pipe: read that and stop, without waiting for an EOF that
                # a process forked elsewhere in this program could delay.
                self.out[k.data] += _drain(k.fd)
                sel.unregister(k.fd)

    def _on_status(self, sel, key) -> None:
        # one write of 4 bytes, or none before the stub's end: its EOF (under
        # ends_at_status, read at once: the stub is still there)
        data = os.read(key.fd, 4) if self.ends_at_status else _drain(key.fd)
        sel.unregister(key.fd)
        if len(data) >= 4:
            self.status = struct.unpack("=i", data[:4])[0]
            if self.ends_at_status and not self._stub_gone:
                self.retire()
                self._over(sel)

    def _on_error(self, sel, key) -> None:
        data = _drain(key.fd)
        sel.unregister(key.fd)
        if data:
            self.error = data
        if self.on_exec is not None:
            self.on_exec(data)

    def _on_output(self, sel, key) -> None:
        try:
            chunk = os.read(key.fd, 1 << 16)
        except BlockingIOError:
            return
        if chunk:
            self.out[key.data] += chunk
        else:
            sel.unregister(key.fd)

    def _on_input(self, sel, key) -> None:
        try:
            written = os.write(key.fd, self._pending_input[:1 << 16])
        except BrokenPipeError:
            written = len(self._pending_input)
        except BlockingIOError:
            return
        self._pending_input = self._pending_input[written:]
        if not self._pending_input:
            sel.unregister(key.fd)
            self._fds.remove(key.fd)
            os.close(key.fd)

    def _on_signal(self, sel, key) -> None:
        try:
            data = os.read(key.fd, 512)
        except BlockingIOError:
            return
        for signum in data:
            if signum == signal.SIGTSTP and not self.own_group:
                self._stop_after()
            elif self.own_group:
                try:
                    os.killpg(self.stub, signum)
                    if signum in ENDING:  # a stopped command gets it too, as kill(1) does for jobs
                        os.killpg(self.stub, signal.SIGCONT)
                except OSError:
                    pass


# A Sandbox's runs share their handler table (built in ~0.2 ms): by the Prepared's traps
# (kept here, so its id is not reused), the last few only.
_TABLES: Dict[Tuple[int, bool, bool], Tuple[object, Dict[int, "_table.Handler"], Tuple["_table.Step", ...]]] = {}
_TABLES_KEPT = 8


def _run_tables(prepared: Prepared, fake: bool) -> Tuple[Dict[int, "_table.Handler"], Tuple["_table.Step", ...]]:
    """The handler table and steps of prepared's traps (_table.handlers_for, steps_for)."""
    root = prepared.root is not None
    key = (id(prepared.traps), root, fake)
    kept = _TABLES.get(key)
    if kept is not None and kept[0] is prepared.traps:
        return kept[1], kept[2]
    handlers = _table.handlers_for(prepared.traps, prepared.arch, root=root, fake=fake)
    steps = _table.steps_for(prepared.traps, root=root)
    while len(_TABLES) >= _TABLES_KEPT:
        _TABLES.pop(next(iter(_TABLES)), None)
    _TABLES[key] = (prepared.traps, handlers, steps)
    return handlers, steps


class Session:
    """One run of one command under one policy, in phases:

    prepare   prepare() (policy -> plans, filter, rulesets; once per Sandbox)
    launch    the launch plan, the upper layer, the supervising thread confined,
              the stub forked, the command's listener taken (_launch)
    run       Watch's loop in this thread; the Notifier answers trapped calls
              in its own thread, with a RunContext for the handlers
    finish    the workdir's end (commit, keep, abort), everything the run
              opened released; clean_up() then removes the run's directories
    """

    def __init__(self, policy: Policy, prepared: Prepared, argv: Sequence[bytes], env: Dict[bytes, bytes],
                 *, capture: bool = False, input: Optional[bytes] = None, interactive: bool = False,
                 forward_signals: bool = False, debug: bool = False, restore_signals: bool = True,
                 leave_stub: bool = False,
                 stdio: Tuple[int, int, int] = (-1, -1, -1),
                 on_exec: Optional[Callable[["Session", bytes], None]] = None,
                 policy_fn: Optional[Tuple[Callable, float]] = None,
                 handoff: Optional["_forkserver.Handoff"] = None) -> None:
        self.policy = policy
        self.handoff = handoff  # launched by the Sandbox's fork server, from its home thread (_forkserver)
        self.prepared = prepared
        self.argv = tuple(argv)
        self.env = env
        self.capture = capture
        self.input = input
        self.interactive = interactive
        self.forward_signals = forward_signals
        self.restore_signals = restore_signals  # see Watch
        # the caller exits once the run is over (the CLI): a stub it forked need not be
        # reaped, so the run may end at the stub's status as a fork server's does (Watch)
        self.leave_stub = leave_stub
        self.stdio = stdio        # the caller's fds to become the command's 0, 1, 2 (-1: inherit)
        # called in this thread once the exec's result is known (b"" or the error's report):
        # the API's popen returns then (the session's watch, command_pid and command_pidfd are set)
        self.on_exec = on_exec
        self.command_pid = -1
        names = _syscalls.names(prepared.arch)
        handlers, steps = _run_tables(prepared, policy.fake_root)
        self.notifier = Notifier(handlers, steps, names, self._fail, debug)
        self.ctx = RunContext(policy, prepared, names, self.notifier.inject, self.notifier.pending,
                              handoff.net_dns if handoff is not None else READ_HERE)
        if policy_fn is not None:  # README "Policy callback"
            from . import _policyfn
            self.ctx.policy_gate = _policyfn.Gate(policy_fn[0], policy_fn[1], policy.max_processes, policy.max_memory)
        self.stub = -1
        self.stub_pidfd = -1
        self.own_group = True
        self.watch: Optional[Watch] = None   # once the stub is forked
        self._keep_filter: object = None     # keeps the filter program alive until the fork
        # Directories of this run to remove once it is over, by clean_up from a thread
        # that is not confined: under Landlock every step down a tree of depth d costs
        # O(d), so the command's deep trees would cost sandlock O(d^2) to remove.
        self._later: List[str] = []
        # a root's anchor directory and its stable links, once the run is over: clean_up hands
        # it to the scratch for a later run (_rootscratch.Scratch.keep)
        self._anchors: Optional[Tuple[str, Dict[bytes, bytes]]] = None
        self._started = 0.0   # time.monotonic() at launch (Outcome.duration)

    def run(self) -> Outcome:
        """Launch and supervise; returns when every process of the sandbox is gone."""
        fds: List[int] = []
        ctx = self.ctx
        self._started = time.monotonic()
        try:
            launch, pipes, stdio_parent = self._launch_plan(fds)
            if self.prepared.layers is not None:  # from the server: built in the caller's thread
                upper = self.handoff.take_upper() if self.handoff is not None else None
                ctx.upper = upper if upper is not None else new_upper(self.prepared, self.policy)
            if self.handoff is not None:  # taken in the caller's thread (sandlock._handoff)
                ctx.memory = self.handoff.memory   # the server's writer, where the run needs one
                ctx.fake = self.handoff.take_fake()
            else:  # before we confine ourselves
                if writes_pages(self.policy, self.prepared):
                    ctx.memory, ctx.own_memory = MemoryWriter(), True
                ctx.fake = fake_owners(self.policy)
            if self.handoff is None:
                # nothing is imported once confined
                preload(self.policy, ctx.net_rules, self.notifier.debug, callback=ctx.policy_gate is not None)
                self._confine()
            else:  # confined as the home thread that started this one (preloaded in the caller's
                # thread: sandlock._handoff); its own cwd, the caller's
                _syscalls.unshare(CLONE_FS)
                os.fchdir(self.handoff.cwd)
            started = self._launch_on_server(launch, pipes) if self.handoff is not None else None
            if started is not None:
                self.stub, self.stub_pidfd = started
            ctx.open()  # from the server: while the stub forks the command
            if started is None:
                if self.handoff is not None:  # the server could not: a fresh plan, launched directly
                    for fd in fds:
                        _close(fd)
                    fds.clear()
                    launch, pipes, stdio_parent = self._launch_plan(fds)
                calls = _launch.bind_calls()
                supervisor_pid = os.getpid()
                self.stub = os.fork()
                if self.stub == 0:
                    _launch.run_stub(launch, pipes, calls, supervisor_pid)
                self.stub_pidfd = os.pidfd_open(self.stub)
                if self.handoff is None:  # not the server's pool: a thread of its own, started now
                    self.notifier.start_early()
            if self.handoff is not None:
                self.handoff.close()  # the stub has its copies
            ctx.members = Members(self.stub)
            for fd in (pipes.err_w, pipes.ready_w, pipes.go_r, pipes.status_w) + tuple(stdio_parent[1]):
                fds.remove(fd)
                os.close(fd)
            self.watch = Watch(self.policy, ctx, self.stub, self.stub_pidfd, self.own_group,
                               forward_signals=self.forward_signals, restore_signals=self.restore_signals,
                               input=self.input, scoped=launch.scope_ruleset >= 0,
                               ends_at_status=self.handoff is not None or self.leave_stub)
            if self.on_exec is not None:
                on_exec, session = self.on_exec, self
                self.watch.on_exec = lambda data: on_exec(session, data)
            outcome = self._supervise(self.watch, pipes, stdio_parent[0], fds)
            if ctx.upper is not None:
                # the layer is read once no handler of the sandbox is at work in it: the
                # notification loop ends when the filter has no process left (a process
                # killed at the run's end may have had a call on behalf under way)
                self.notifier.stop()
                outcome = self._end_workdir(outcome)
            return outcome
        finally:
            self.notifier.stop()
            ctx.release_waits()
            for fd in fds:
                _close(fd)
            if ctx.fake is not None:  # saved and closed whatever ended the run
                fake, ctx.fake = ctx.fake, None
                _save_fake(fake)
            ctx.close()
            if ctx.policy_gate is not None:
                ctx.policy_gate.close()
            if ctx.upper is not None:  # the run failed before it ended: nothing to keep
                self._later.append(ctx.upper.run)
            self._later.extend(ctx.run_dirs)
            if ctx.anchors is not None and ctx.cwd is not None:
                self._anchors = (ctx.anchors, ctx.cwd.kept_links())
            self.notifier.close()
            if self.watch is not None:
                self.watch.retire()
            if self.stub_pidfd >= 0:
                _close(self.stub_pidfd)
            if self.watch is not None and self.watch.command_pidfd >= 0:
                _close(self.watch.command_pidfd)
            if self.handoff is not None:
                self.handoff.close()

    def clean_up(self) -> None:
        """Remove this run's directories (its anchors, /dev/shm and discarded upper layer).

        Call it after run() from a thread that is not confined; where none is
        left (the CLI), close_prepared removes them with the rest.
        """
        from . import _scratch
        later, self._later = self._later, []
        anchors, self._anchors = self._anchors, None
        root = self.prepared.root
        if anchors is not None and (root is None or not root.keep(*anchors)):  # a later run's, if it can be
            later.append(anchors[0])
        for path in later:
            _scratch.remove_tree(path)  # iterative: the command's trees may be of any depth

    def _fail(self, reason: str) -> None:
        """The notifier cannot go on (Watch.fail)."""
        if self.watch is not None:
            self.watch.fail(reason)

    # --- launch ------------------------------------------------------------------------------

    def _launch_plan(self, fds: List[int]) -> Tuple[_launch.Prepared, _launch.Pipes, Tuple[Dict[str, int], List[int]]]:
        policy, prep = self.policy, self.prepared
        filter_ptr, self._keep_filter = _syscalls.seccomp_filter_pointer(prep.program)
        flags = S.SECCOMP_FILTER_FLAG_NEW_LISTENER
        if _syscalls.has_wait_killable_recv():
            flags |= S.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
        pipes = _launch.make_pipes()
        fds.extend(pipes)
        stdio, parent_ends, child_ends = self._stdio(fds)
        rlimits = []
        if policy.max_open_files is not None:
            rlimits.append((S.RLIMIT_NOFILE, policy.max_open_files))
        if policy.max_memory is not None:
            rlimits.append((S.RLIMIT_DATA, policy.max_memory))
        if policy.max_disk is not None and self.prepared.layers is not None:
            # no single file grows past the layer's limit, however fast it is written
            # between two measurements (README, --max-disk)
            rlimits.append((S.RLIMIT_FSIZE, policy.max_disk))
        if policy.no_coredump:  # soft and hard 0: without CAP_SYS_RESOURCE it stays 0
            rlimits.append((S.RLIMIT_CORE, 0))
        own_group = not self.interactive or prep.abi < 6
        # the terminal is handed to the command's own group only from the foreground
        tty = 0 if self.interactive and own_group and _foreground(0) else -1
        start_dir = self.ctx.start_dir
        launch = _launch.Prepared(
            candidates=_launch.exec_candidates(self.argv[0], self.env.get(b"PATH")),
            argv=self.argv, envp=self.env,
            cwd=os.fsdecode(start_dir) if start_dir is not None else policy.cwd, rlimits=tuple(rlimits),
            child_ruleset=prep.child_ruleset, scope_ruleset=prep.scope_ruleset, filter_ptr=filter_ptr,
            filter_flags=flags, stdio=stdio, own_group=own_group, foreground_tty=tty,
            umask=self.handoff.umask if self.handoff is not None else current_umask(),
            reset_signals=_launch.ignored_signals(), affinity=policy.cpu_cores,
            personality=_launch.ADDR_NO_RANDOMIZE if policy.no_randomize_memory else 0)
        self.own_group = own_group
        return launch, pipes, (parent_ends, child_ends)

    def _launch_on_server(self, launch: _launch.Prepared, pipes: _launch.Pipes) -> Optional[Tuple[int, int]]:
        """(stub pid, its pidfd) forked by the fork server, or None: launch directly."""
        from . import _forkserver
        assert self.handoff is not None
        request, fds = _forkserver.request_for(launch, pipes, self.handoff)
        try:
            return self.handoff.server.launch(request, fds)
        except _forkserver.Gone:
            return None

    def _stdio(self, fds: List[int]) -> Tuple[Tuple[int, int, int], Dict[str, int], List[int]]:
        """(fds for the command's 0,1,2; our ends {name: fd}; ends to close after fork)."""
        stdio = list(self.stdio)
        parent: Dict[str, int] = {}
        child: List[int] = []
        if self.input is not None:
            r, w = os.pipe2(os.O_CLOEXEC)
            stdio[0], parent["stdin"] = r, w
            child.append(r)
            fds.extend((r, w))
        if self.capture:
            for index, name in ((1, "stdout"), (2, "stderr")):
                r, w = os.pipe2(os.O_CLOEXEC)
                stdio[index], parent[name] = w, r
                child.append(w)
                fds.extend((r, w))
        return (stdio[0], stdio[1], stdio[2]), parent, child

    def _confine(self) -> None:
        """Confine the supervising thread (and so everything it forks)."""
        try:
            os.unshare(CLONE_FS) if hasattr(os, "unshare") else _syscalls._call("unshare", CLONE_FS)
            os.umask(0)  # on-behalf creations apply the tracee's umask themselves
            _syscalls.load_unwinder()  # before Landlock hides the system's libraries in a root
            _launch.confine_supervisor(self.prepared.supervisor_ruleset)
        except OSError as exc:
            raise SetupError(exc.errno or errno.EPERM, f"cannot confine the supervisor: {exc.strerror}",
                             step="confine") from None

    def _start(self, watch: Watch, pipes: _launch.Pipes) -> None:
        """Wait for the command's listener, hand it to the notifier, and say go."""
        watch.wait_ready(pipes.ready_r)
        data = _read_all_until(pipes.ready_r, _launch.READY.size)
        if len(data) != _launch.READY.size:
            error = _drain(pipes.err_r)
            watch.reap_stub()
            self._raise_child_error(error or b"launch:5:the sandbox process died during setup")
        pid, listener_fd, _ = _launch.READY.unpack(data)
        pidfd = os.pidfd_open(pid)
        with closed_on_error(pidfd):
            listener = _syscalls.pidfd_getfd(pidfd, listener_fd)
        watch.command_pidfd = pidfd  # closed at the end of run()
        self.command_pid = pid
        self.notifier.take(listener, self.ctx)
        os.write(pipes.go_w, b"g")
        self.notifier.start(self.handoff.server.pooled if self.handoff is not None else None)

    # --- run ---------------------------------------------------------------------------------

    def _supervise(self, watch: Watch, pipes: _launch.Pipes, ends: Dict[str, int], fds: List[int]) -> Outcome:
        watch.install_signal_wakeup()
        try:
            self._start(watch, pipes)
            watch.run(pipes, ends, fds)
        finally:
            watch.uninstall_signal_wakeup()
        if watch.error:
            self._raise_child_error(watch.error)
        denials, more = self.notifier.denials.snapshot()
        members = self.ctx.members
        return Outcome(watch.status, watch.timed_out, watch.reason,
                       bytes(watch.out["stdout"]) if self.capture else None,
                       bytes(watch.out["stderr"]) if self.capture else None,
                       duration=time.monotonic() - self._started, peak_memory=watch.peak_memory,
                       processes=members.started if members is not None and self.policy.max_processes else None,
                       denials=denials, denials_more=tuple(sorted(more.items())),
                       filter_denied=self.prepared.filter_denied)

    def _raise_child_error(self, data: bytes) -> None:
        step, _, rest = data.decode("utf-8", "replace").partition(":")
        code, _, message = rest.partition(":")
        err = int(code) if code.isdigit() else errno.EIO
        if step == "exec":
            name = os.fsdecode(self.argv[0])
            reason = "not found" if err == errno.ENOENT else os.strerror(err)
            raise exec_error(err, f"{shown(name)}: {reason}", name)
        raise SetupError(err, f"{step}: {message or os.strerror(err)}", step=step)

    # --- finish ------------------------------------------------------------------------------

    def _end_workdir(self, outcome: Outcome) -> Outcome:
        """Commit, abort or keep this run's upper layer (docs/design.md "Workdir"); a dry run only lists."""
        upper, policy = self.ctx.upper, self.policy
        assert upper is not None
        self.ctx.upper = None
        ok = (outcome.status is not None and os.WIFEXITED(outcome.status) and os.WEXITSTATUS(outcome.status) == 0
              and not outcome.timed_out)
        action = "abort" if policy.dry_run else (policy.on_exit or "commit") if ok else (policy.on_error or "abort")
        try:
            changes = tuple(upper.changes())
        except OSError as exc:
            if action == "abort":  # nothing to apply: the layer goes, what was lost is said
                self._later.append(upper.run)
                return outcome._replace(workdir_note=f"cannot list the changes ({exc.strerror}); "
                                                     f"the upper layer is discarded, {upper.lower} is unchanged")
            upper.keep()
            return outcome._replace(workdir_note=f"cannot compare the upper layer ({exc.strerror}); "
                                                 f"kept at {upper.tree}")
        note = ""
        if action == "commit" and changes:
            try:
                upper.commit(list(changes))
            except OSError as exc:
                upper.keep()
                return outcome._replace(changes=changes, workdir_note=(
                    f"commit to {upper.lower} failed ({exc.strerror}); the upper layer is kept at {upper.tree}"))
        elif action == "keep":
            upper.keep()
            return outcome._replace(changes=changes, workdir_note=f"changes kept at {upper.tree} (not applied)")
        elif action == "abort" and changes and not policy.dry_run:
            note = f"{len(changes)} change(s) to {upper.lower} discarded"
        self._later.append(upper.run)
        return outcome._replace(changes=changes, workdir_note=note)


class MemoryWriter:
    """Writes into a tracee's read-only pages through /proc/PID/mem.

    Only exec and chdir in an emulated root need it: their path string may
    sit in .rodata (system(3) passes "/bin/sh") and must be rewritten, then
    restored (see _rootexec).  process_vm_writev(2) honours page protections;
    /proc/PID/mem does not, but opening it for writing needs a Landlock
    write right on /proc that the supervisor thread must not have.  So this
    one thread, started before the supervisor confines itself (one per run,
    or one for every run of a fork server: _forkserver.Server.memory_writer),
    opens /proc/PID/mem of processes of the asking run's sandbox (checked)
    for writing, and nothing else.
    """

    def __init__(self) -> None:
        self._requests = _threads.Queue()
        self._closed = False
        self._thread = _threads.start(self._serve, (), "sandlock-memory")

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                return
            is_member, tid, address, data, answer, done = request
            try:
                if not is_member(tgid_of(tid)):
                    raise os_error(errno.EPERM, "not a process of the sandbox")
                fd = os.open(f"/proc/{tid}/mem", os.O_RDWR | os.O_CLOEXEC)
                try:
                    if os.pwrite(fd, data, address) != len(data):
                        raise os_error(errno.EFAULT)
                finally:
                    os.close(fd)
            except OSError as exc:
                answer.append(exc)
            finally:
                done.set()

    def write(self, is_member: Callable[[int], bool], tid: int, address: int, data: bytes) -> None:
        """Write data at address in thread tid, if is_member(its process) (the run's RunContext)."""
        if self._closed:
            raise os_error(errno.ESRCH, "memory writer closed")
        answer: List[OSError] = []
        done = _threads.Event()
        self._requests.put((is_member, tid, address, data, answer, done))
        if not done.wait(5.0):
            raise os_error(errno.ETIMEDOUT, "memory writer did not answer")
        if answer:
            raise answer[0]

    def close(self) -> None:
        self._closed = True
        self._requests.put(None)


def _save_fake(owners: "_fakeroot.Owners") -> None:
    """Write the fake root's record at the end of the run (README "Fake root")."""
    try:
        owners.save()
    except OSError as exc:
        sys.stderr.write(f"sandlock: --fake-root: cannot save the record of owners: {exc.strerror}\n")
    finally:
        owners.close()


def _hung_up(poller: "select.poll") -> bool:
    return any(events & select.POLLHUP for _, events in poller.poll(0))


def _noop(signum: int, frame: object) -> None:
    pass


SUSPEND_WAIT = 3.0  # seconds Ctrl-Z waits for the command to stop (Watch._stop_after)
SIGNAL_ROUNDS = 1000  # walks of the tree at most per Watch.signal_all (each stops what it finds)
STOP_WAIT = 2.0       # seconds Watch.signal_all waits for the processes it sent SIGSTOP to stop
STOP_WATCHED = 256    # of which at most this many are watched (a pidfd each)


def _signal_member(members: Members, pid: int, signum: int) -> int:
    """signum to pid through a pidfd, if the process it names is of the sandbox; the
    pidfd (the caller closes it), or -1 when nothing was signalled."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return -1  # gone (any other error, EMFILE, is the caller's: never a process skipped)
    try:
        if members.contains(pid):  # checked after the pidfd is open: the pidfd's process
            signal.pidfd_send_signal(pidfd, signum)
            return pidfd
    except OSError:
        pass  # exited meanwhile
    os.close(pidfd)
    return -1


def _stopped_or_gone(pidfd: int) -> bool:
    """Is the process of `pidfd` stopped (state T or t), or no longer running at all?
    The pidfd makes the pid's /proc entry its own: read, then checked still alive."""
    try:
        pid = _pidfd_pid(pidfd)
        state = proc_stat(pid)[0]
    except (OSError, ValueError):
        return True
    if select.select([pidfd], [], [], 0)[0]:
        return True  # it exited: the pid may be another process's now
    return state in (b"T", b"t", b"Z", b"X")


def _pidfd_pid(pidfd: int) -> int:
    with open(f"/proc/self/fdinfo/{pidfd}", "rb") as f:
        for line in f:
            if line.startswith(b"Pid:"):
                return int(line.split()[1])
    raise ValueError("no Pid in the pidfd's fdinfo")


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


# struct sigaction as the kernel takes it: SIG_IGN, no flags, no restorer, an empty mask (the
# x86_64 layout; aarch64's has no restorer, and its mask is then the zero that follows)
_SIG_IGN_ACTION = struct.pack("=4Q", 1, 0, 0, 0)


def _ignore_now(signum: int) -> None:
    """SIG_IGN for signum, the kernel's disposition first, then Python's.

    signal.signal(signum, SIG_IGN) first runs the Python handlers of signals already
    caught, then changes the disposition; one caught in between finds SIG_IGN as its
    Python handler, and CPython prints "Signal N ignored due to race condition" on
    stderr (seen under the CLI's signal storm tests).  Ignored by the kernel first, no
    signal is caught after that, and signal.signal's own first step runs the Python
    handler (_noop) of any caught before."""
    _syscalls._call("rt_sigaction", signum, _SIG_IGN_ACTION, None, 8)
    signal.signal(signum, signal.SIG_IGN)


def _drain(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except (BlockingIOError, InterruptedError):
            break
        if not chunk:
            break
        out += chunk
    return out


def _read_all_until(fd: int, size: int) -> bytes:
    """Read `size` bytes from fd, or stop early when it reaches EOF."""
    out = b""
    while len(out) < size:
        chunk = os.read(fd, size - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _foreground(fd: int) -> bool:
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False


def _seconds(value: Optional[float]) -> str:
    if value is None:
        return "0"
    return str(int(value)) if float(value).is_integer() else str(value)
