"""The handler table: each trapped syscall, its argument layout and its operation.

One row per syscall name.  Legacy spellings (stat, lstat, open, creat, chmod,
utimes, ...) are rows with a different layout or fixed values, not
functions of their own.  `traps_for` picks the rows a policy needs and, for
each, the register tests that decide whether the filter must notify at all;
the BPF filter is built from its result, so a syscall is never trapped
without a handler nor handled without being trapped.
"""

from __future__ import annotations

import os
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Callable, Dict, Optional, Sequence, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _fsops as F
from . import _identity as I
from . import _netlink as NL
from . import _netops as N
from . import _netpolicy
from . import _procops as P
from . import _syscalls
from ._filter import SOCKET_NETLINK_ROUTE, Rule, Test, Trap
from ._notif import AT_SYMLINK_NOFOLLOW, Call, Context, Reply, compile_layout
from ._policy import Policy, deterministic
from ._structs import CLONE_THREAD as P_CLONE_THREAD

NOFOLLOW = {"flags": AT_SYMLINK_NOFOLLOW}


class Row(NamedTuple):
    op: Callable
    layout: Tuple[str, ...]
    fixed: Dict[str, object]


def _row(op: Callable, layout: Sequence[str], **fixed: object) -> Row:
    return Row(op, tuple(layout), dict(fixed))


def _sched_setaffinity(ctx: Context, call: Call) -> Reply:
    """With --cpu-cores or --num-cpus, narrowed and done on behalf (_identity); else only
    aimed at the sandbox's own threads (_procops)."""
    if ctx.policy.cpu_cores is not None or ctx.policy.num_cpus is not None:
        return I.do_sched_setaffinity(ctx, call)
    return P.do_pid_target(ctx, call)


ROWS: Dict[str, Row] = {
    # metadata reads Landlock does not cover
    "stat": _row(F.do_stat, ("path", "ptr")),
    "lstat": _row(F.do_stat, ("path", "ptr"), **NOFOLLOW),
    "newfstatat": _row(F.do_stat, ("dirfd", "path", "ptr", "flags")),
    "statx": _row(F.do_statx, ("dirfd", "path", "flags", "mask", "ptr")),
    "statfs": _row(F.do_statfs, ("path", "ptr")),
    "fstatfs": _row(F.do_fstatfs, ("fd", "ptr")),
    "access": _row(F.do_access, ("path", "mode")),
    "faccessat": _row(F.do_access, ("dirfd", "path", "mode")),
    "faccessat2": _row(F.do_access, ("dirfd", "path", "mode", "flags")),
    "readlink": _row(F.do_readlink, ("path", "ptr", "size")),
    "readlinkat": _row(F.do_readlink, ("dirfd", "path", "ptr", "size")),
    "chdir": _row(F.do_chdir, ("path",)),
    "getxattr": _row(F.do_getxattr, ("path", "name", "ptr", "size")),
    "lgetxattr": _row(F.do_getxattr, ("path", "name", "ptr", "size"), **NOFOLLOW),
    "listxattr": _row(F.do_listxattr, ("path", "ptr", "size")),
    "llistxattr": _row(F.do_listxattr, ("path", "ptr", "size"), **NOFOLLOW),
    "inotify_add_watch": _row(F.do_inotify_add_watch, ("fd", "path", "mask")),
    # opens and execs: trapped under every policy (traps_for)
    "open": _row(F.do_open, ("path", "flags", "mode")),
    "openat": _row(F.do_open, ("dirfd", "path", "flags", "mode")),
    "creat": _row(F.do_open, ("path", "mode"), flags=os.O_CREAT | os.O_WRONLY | os.O_TRUNC),
    "openat2": _row(F.do_openat2, ("dirfd", "path", "ptr", "size")),
    "truncate": _row(F.do_truncate, ("path", "size")),
    # renames and links: nothing leaves another run's workdir container (F.do_rename)
    "rename": _row(F.do_rename, ("path", "path2")),
    "renameat": _row(F.do_rename, ("dirfd", "path", "dirfd2", "path2")),
    "renameat2": _row(F.do_rename, ("dirfd", "path", "dirfd2", "path2", "flags")),
    "link": _row(F.do_link, ("path", "path2")),
    "linkat": _row(F.do_link, ("dirfd", "path", "dirfd2", "path2", "flags")),
    "execve": _row(F.do_exec_check, ("path", "ptr")),  # argv: Sandbox(policy_fn=)
    "execveat": _row(F.do_exec_check, ("dirfd", "path", "ptr", "_", "flags")),
    # metadata writes Landlock does not cover
    "chmod": _row(F.do_chmod, ("path", "mode")),
    "fchmodat": _row(F.do_chmod, ("dirfd", "path", "mode")),
    "fchmodat2": _row(F.do_chmod, ("dirfd", "path", "mode", "flags")),
    "chown": _row(F.do_chown, ("path", "uid", "gid")),
    "lchown": _row(F.do_chown, ("path", "uid", "gid"), **NOFOLLOW),
    "fchownat": _row(F.do_chown, ("dirfd", "path", "uid", "gid", "flags")),
    "setxattr": _row(F.do_setxattr, ("path", "name", "ptr", "size", "xflags")),
    "lsetxattr": _row(F.do_setxattr, ("path", "name", "ptr", "size", "xflags"), **NOFOLLOW),
    "removexattr": _row(F.do_removexattr, ("path", "name")),
    "lremovexattr": _row(F.do_removexattr, ("path", "name"), **NOFOLLOW),
    "utime": _row(F.do_utimes, ("path", "ptr"), mask=F.TIMES_UTIMBUF),
    "utimes": _row(F.do_utimes, ("path", "ptr"), mask=F.TIMES_TIMEVAL),
    "futimesat": _row(F.do_utimes, ("dirfd", "path", "ptr"), mask=F.TIMES_TIMEVAL),
    "utimensat": _row(F.do_utimes, ("dirfd", "optpath", "ptr", "flags"), mask=F.TIMES_TIMESPEC),
    "fchmod": _row(F.do_fchmod, ("fd", "mode")),
    "fchown": _row(F.do_fchown, ("fd", "uid", "gid")),
    "fsetxattr": _row(F.do_fsetxattr, ("fd", "name", "ptr", "size", "xflags")),
    "fremovexattr": _row(F.do_fremovexattr, ("fd", "name")),
    # sockets
    "connect": _row(N.do_connect, ("fd", "ptr", "size")),
    "sendto": _row(N.do_sendto, ("fd", "ptr", "size", "flags", "ptr2", "mask")),
    "sendmsg": _row(N.do_sendmsg, ("fd", "ptr", "flags")),
    "sendmmsg": _row(N.do_sendmmsg, ("fd", "ptr", "size", "flags")),
    "bind": _row(N.do_bind_host, ("fd", "ptr", "size")),
    "listen": _row(N.do_listen, ("fd", "size")),
    "getsockname": _row(N.do_sockname, ("fd", "ptr", "ptr2")),
    "getpeername": _row(N.do_sockname, ("fd", "ptr", "ptr2")),
    "socket": _row(NL.do_socket, ("which", "flags", "mode")),  # domain, type, protocol
    "recvfrom": _row(NL.do_recv, ("fd", "_", "_", "flags")),
    "recvmsg": _row(NL.do_recv, ("fd", "_", "flags")),
    "recvmmsg": _row(NL.do_recv, ("fd", "_", "_", "flags")),
    "ioctl": _row(NL.do_ioctl, ("fd", "flags", "ptr")),  # request, argument
    # other processes
    "prlimit64": _row(P.do_pid_target, ("pid",)),
    "sched_setaffinity": _row(_sched_setaffinity, ("pid", "size", "ptr")),
    "sched_setparam": _row(P.do_pid_target, ("pid",)),
    "sched_setscheduler": _row(P.do_pid_target, ("pid",)),
    "sched_setattr": _row(P.do_pid_target, ("pid",)),
    "setpriority": _row(P.do_which_who, ("which", "pid")),
    "ioprio_set": _row(P.do_which_who, ("which", "pid")),
    "fork": _row(P.do_fork, ()),
    "vfork": _row(P.do_fork, ()),
    "clone": _row(P.do_fork, ()),
    "kill": _row(P.do_kill, ("pid", "sig")),
    "tkill": _row(P.do_tkill, ("pid", "sig")),
    "tgkill": _row(P.do_tgkill, ("pid", "pid2", "sig")),
    "rt_sigqueueinfo": _row(P.do_sigqueue, ("pid",)),
    "rt_tgsigqueueinfo": _row(P.do_sigqueue, ("pid",)),
    "pidfd_send_signal": _row(P.do_pidfd_send_signal, ("fd", "sig", "ptr", "flags")),
    "pidfd_open": _row(P.do_pidfd_open, ("pid", "flags")),
    # locks and kernel pools (README "Locks and kernel pools")
    "flock": _row(F.do_flock, ("fd", "flags")),
    "fcntl": _row(F.do_fcntl, ("fd", "flags", "ptr")),
    "inotify_init": _row(F.do_inotify_init, (), flags=0),
    "inotify_init1": _row(F.do_inotify_init, ("flags",)),
    # the machine (README "Host name")
    "uname": _row(I.do_uname, ("ptr",)),
    "sysinfo": _row(I.do_sysinfo, ("ptr",)),
    "sched_getaffinity": _row(I.do_sched_getaffinity, ("pid", "size", "ptr")),  # README "CPU"
}

# Deterministic runs (README "Deterministic runs"): these rows are built on first use (by
# handlers_for, before anything is forked): _determinism is not imported by runs without
# --random-seed, --time-start or --deterministic-dirs (CLI start-up).
DETERMINISM_NAMES = "getrandom clock_gettime gettimeofday time adjtimex clock_adjtime set_tid_address getdents64".split()
_DETERMINISM_ROWS: Dict[str, Row] = {}


def determinism_rows() -> Dict[str, Row]:
    if not _DETERMINISM_ROWS:
        from . import _determinism as D
        _DETERMINISM_ROWS.update({
            "getrandom": _row(D.do_getrandom, ("ptr", "size", "flags")),
            "clock_gettime": _row(D.do_clock_gettime, ("which", "ptr")),
            "gettimeofday": _row(D.do_gettimeofday, ("ptr", "ptr2")),
            "time": _row(D.do_time, ("ptr",)),
            "adjtimex": _row(D.do_adjtimex, ("ptr",), which=0),
            "clock_adjtime": _row(D.do_adjtimex, ("which", "ptr")),
            "set_tid_address": _row(D.do_set_tid_address, ()),
            "getdents64": _row(D.do_getdents64, ("fd", "ptr", "size")),
        })
        assert sorted(_DETERMINISM_ROWS) == sorted(DETERMINISM_NAMES)
    return _DETERMINISM_ROWS


def row(name: str, root: bool = False) -> Row:
    """The row of a trapped name (an emulated root's where it has its own)."""
    if root and name in ROOT_NAMES:
        return root_rows()[name]
    if name in DETERMINISM_NAMES:
        return determinism_rows()[name]
    return ROWS[name]


# With an emulated root, every path syscall is trapped; these rows are added
# and these handlers replace the ones above (docs/design.md "Coverage").  Built on first
# use: _rootops and _rootexec are not imported by runs without a root (CLI start-up).
ROOT_NAMES = ("newfstatat mkdir mkdirat mknod mknodat unlink unlinkat rmdir rename renameat renameat2 link linkat symlink "
              "symlinkat getcwd chdir fchdir execve execveat bind getsockname "
              "getpeername").split()
_ROOT_ROWS: Dict[str, Row] = {}


def root_rows() -> Dict[str, Row]:
    if not _ROOT_ROWS:
        from . import _rootexec as RX
        from . import _rootops as RO
        _ROOT_ROWS.update({
            "newfstatat": _row(RO.do_fstatat, ("dirfd", "path", "ptr", "flags")),
            "mkdir": _row(RO.do_mkdir, ("path", "mode")),
            "mkdirat": _row(RO.do_mkdir, ("dirfd", "path", "mode")),
            "mknod": _row(RO.do_mknod, ("path", "mode", "_")),
            "mknodat": _row(RO.do_mknod, ("dirfd", "path", "mode", "_")),
            "unlink": _row(RO.do_unlink, ("path",)),
            "unlinkat": _row(RO.do_unlink, ("dirfd", "path", "flags")),
            "rmdir": _row(RO.do_unlink, ("path",), flags=RO.AT_REMOVEDIR),
            "rename": _row(RO.do_rename, ("path", "path2")),
            "renameat": _row(RO.do_rename, ("dirfd", "path", "dirfd2", "path2")),
            "renameat2": _row(RO.do_rename, ("dirfd", "path", "dirfd2", "path2", "flags")),
            "link": _row(RO.do_link, ("path", "path2")),
            "linkat": _row(RO.do_link, ("dirfd", "path", "dirfd2", "path2", "flags")),
            "symlink": _row(RO.do_symlink, ("path", "path2")),
            "symlinkat": _row(RO.do_symlink, ("path", "dirfd2", "path2")),
            "getcwd": _row(RO.do_getcwd, ("ptr", "size")),
            "chdir": _row(RO.do_chdir, ("path",)),
            "fchdir": _row(RO.do_chdir, ("fd",)),
            "execve": _row(RX.do_execve, ("exepath", "ptr", "ptr2")),  # argv, envp
            "execveat": _row(RX.do_execve, ("dirfd", "exepath", "ptr", "ptr2", "flags")),
            "bind": _row(N.do_bind, ("fd", "ptr", "size")),
            "getsockname": _row(N.do_sockname, ("fd", "ptr", "ptr2")),
            "getpeername": _row(N.do_sockname, ("fd", "ptr", "ptr2")),
        })
        assert sorted(_ROOT_ROWS) == sorted(ROOT_NAMES)
    return _ROOT_ROWS


ALWAYS = ("stat lstat newfstatat statx statfs fstatfs access faccessat faccessat2 readlink readlinkat chdir "
          "getxattr lgetxattr listxattr llistxattr inotify_add_watch openat2 chmod fchmodat fchmodat2 "
          "chown lchown fchownat setxattr lsetxattr removexattr lremovexattr utime utimes futimesat "
          "utimensat fchmod fchown fsetxattr fremovexattr connect sendmsg sendmmsg pidfd_open inotify_init "
          "inotify_init1 bind listen getsockname getpeername").split()
OTHER_PID = "prlimit64 sched_setaffinity sched_setparam sched_setscheduler sched_setattr".split()
SIGNALS = "kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_send_signal".split()

_ALWAYS_NOTIFY = Test(0, "maskeq", 0, "notify", mask=0)  # (x & 0) == 0: true for every call


def traps_for(policy: Policy, abi: int, arch: Optional[str] = None, counted: bool = False) -> Dict[str, Trap]:
    """The syscalls `policy` traps on `arch`, each with its register tests (None: always);
    counted: forks are counted without max_processes too (a policy_fn may set a limit)."""
    table = _syscalls.table(arch)
    emulated = policy.chroot is not None or policy.workdir is not None
    traps: Dict[str, Trap] = {name: None for name in ALWAYS}
    # Opens and execs are trapped and done on behalf under every policy: the
    # supervisor refuses device nodes the sandbox may not use wherever they
    # lie (README "What the sandbox allows"), which Landlock cannot tell apart,
    # and the command's Landlock domain grants nothing in /proc: the supervisor
    # opens it for the command (_procfs).  Below ABI 3 this also decides
    # O_TRUNC opens and creat, which Landlock cannot refuse there.
    for name in ("open", "openat", "creat", "execve", "execveat"):
        traps[name] = None
    # Renames and links are made on behalf under every policy: none may move or
    # link what another run's workdir container holds (_fsops.do_rename)
    for name in ("rename", "renameat", "renameat2", "link", "linkat"):
        traps[name] = None
    if emulated:
        for name in ROOT_NAMES:
            traps[name] = None
        traps["truncate"] = None
        # fstatfs is trapped for O_PATH fds opened by a CONTINUE; in a root no
        # open continues (O_PATH opens are served read-only), so it needs no check.
        del traps["fstatfs"]
    if abi < 3:
        traps["truncate"] = None
    # socket(AF_NETLINK, *, NETLINK_ROUTE) is emulated (_netlink); the filter refuses
    # other netlink protocols (_filter.ARGUMENT_RULES)
    traps["socket"] = [SOCKET_NETLINK_ROUTE]
    # ... and answered before a non-blocking read (MSG_DONTWAIT) of it; other reads are not trapped
    for name, arg in (("recvfrom", 3), ("recvmsg", 2), ("recvmmsg", 3)):
        traps[name] = [Test(arg, "set", NL.MSG_DONTWAIT, "notify")]
    if not NL.network_allowed(policy):
        # interface ioctls answer for lo only (README "Network views"); a socket's own
        # (0x8900-0x890f) and every other request are not trapped
        traps["ioctl"] = [Test(1, "maskeq", NL.SIOC_FIRST, "allow", mask=0xFFFFFFF0),
                          Test(1, "maskeq", NL.SIOC_FIRST, "notify", mask=0xFFFFFF00),
                          Test(1, "maskeq", 0x8B00, "notify", mask=0xFFFFFF00)]
    # sendto with a destination address (a non-NULL pointer in args[4]); when DNS is
    # policed, also glibc's resolver's send() without one: flags MSG_NOSIGNAL exactly
    # and len < 512 (a query on a UDP socket "connected" to a resolver, _dns; any other
    # socket continues; other sends to such a socket fail, EDESTADDRREQ)
    sendto = traps["sendto"] = [Test(4, "ne", 0, "notify"), Test(4, "ne", 0, "notify", high=True)]
    if _polices_dns(_netpolicy.NetRules.from_policy(policy)):
        from . import _dns
        sendto.append(Test(3, "eq", _dns.MSG_NOSIGNAL, "notify", also=Test(
            2, "maskeq", 0, "", mask=0xFFFFFE00, also=Test(2, "eq", 0, "", high=True))))
    for name in OTHER_PID:
        traps[name] = [Test(0, "ne", 0, "notify")]
    traps["setpriority"] = [Test(0, "ne", P.PRIO_PROCESS, "notify"), Test(1, "ne", 0, "notify")]
    traps["ioprio_set"] = [Test(0, "ne", P.IOPRIO_WHO_PROCESS, "notify"), Test(1, "ne", 0, "notify")]
    # locks: every flock but an unlock, and fcntl's lock commands only (args[1])
    traps["flock"] = [Test(1, "maskeq", F.LOCK_UN, "allow", mask=0xFFFFFFFF & ~F.LOCK_NB), _ALWAYS_NOTIFY]
    traps["fcntl"] = [Test(1, "eq", cmd, "notify") for cmd in F.LOCK_COMMANDS]
    if policy.max_processes is not None or counted:
        traps["fork"] = None
        traps["vfork"] = None
        traps["clone"] = [Test(0, "set", P_CLONE_THREAD, "allow"), _ALWAYS_NOTIFY]
    if abi < 6:
        for name in SIGNALS:
            traps[name] = None
    if getattr(policy, "hostname", None) is not None:  # answered on behalf (_identity)
        traps["uname"] = None
    # the sandbox's uptime and load, and under --max-memory the memory of a machine of that size (_identity)
    traps["sysinfo"] = None
    # README "CPU": a mask never wider than the allowed CPUs; the view of --num-cpus
    if getattr(policy, "cpu_cores", None) is not None or getattr(policy, "num_cpus", None) is not None:
        traps["sched_setaffinity"] = None
    if getattr(policy, "num_cpus", None) is not None:
        traps["sched_getaffinity"] = None
    if getattr(policy, "random_seed", None) is not None:  # README "Deterministic runs"
        traps["getrandom"] = None
    if getattr(policy, "time_start", None) is not None:
        from ._determinism import REALTIME_CLOCKS
        # the wall clocks only (the low word, as the kernel reads a clockid_t)
        traps["clock_gettime"] = [Test(0, "eq", clock, "notify") for clock in REALTIME_CLOCKS]
        traps["gettimeofday"] = None
        traps["time"] = None
        traps["adjtimex"] = None  # its struct timex holds the time too
        traps["clock_adjtime"] = [Test(0, "eq", 0, "notify")]
    if getattr(policy, "deterministic_dirs", False):
        traps["getdents64"] = None
    if deterministic(policy):  # the first trapped call of every image fixes it (_determinism.fix_image)
        traps["set_tid_address"] = None
    if getattr(policy, "fake_root", False):  # README "Fake root"
        from . import _fakeroot
        for name in _fakeroot.traps():
            traps[name] = None
    return {name: trap for name, trap in traps.items() if name in table}




def _polices_dns(rules: _netpolicy.NetRules) -> bool:
    """_dns.polices, importing _dns (and ipaddress) only for a policy with network rules."""
    if not rules.any_network():
        return False
    from . import _dns
    return _dns.polices(rules)


def argument_rules(policy: Policy, net_rules: Optional[object] = None) -> Dict[str, Rule]:
    """Filter rules on register values that the policy shapes: socket(2) admits UDP and
    ICMP sockets only when some network rule could allow them (README "Network")."""
    from . import _filter
    from . import _netpolicy
    rules = net_rules if net_rules is not None else _netpolicy.NetRules.from_policy(policy)
    out: Dict[str, Rule] = {"socket": _filter.socket_rule(rules.may_use("udp"), rules.may_use("icmp"))}  # type: ignore[attr-defined]
    if _polices_dns(rules):  # type: ignore[arg-type]
        from . import _dns
        # A corked UDP socket appends later, untrapped writes to a DNS query the
        # supervisor sent: UDP_CORK is refused (EPERM) while DNS is policed (_dns).
        tests, default = _filter.ARGUMENT_RULES["setsockopt"]  # type: ignore[misc,str-unpack]
        out["setsockopt"] = ([*tests, Test(1, "eq", _dns.SOL_UDP, "eperm", also=Test(2, "eq", _dns.UDP_CORK, ""))],
                             default)
    return out


def extra_denials(abi: int) -> Tuple[str, ...]:
    """Without the signal scope the sandbox's process group must stay whole (see _launch)."""
    return ("setsid", "setpgid") if abi < 6 else ()


class Handler(NamedTuple):
    op: Callable
    layout: Tuple
    fixed: Dict[str, object]


# A step run before any handler (for every trapped call), step(ctx, call) with the call
# not yet decoded: it may read and write the caller's memory, never answer.
if TYPE_CHECKING:
    Step = Callable[..., None]


def handlers_for(traps: Dict[str, Trap], arch: Optional[str] = None, root: bool = False,
                 fake: bool = False) -> Dict[int, Handler]:
    """Syscall number -> compiled handler, for exactly the trapped names (fake: the rows
    of _fakeroot replace or add theirs, README "Fake root")."""
    table = _syscalls.table(arch)
    out = {}
    fake_rows: Dict[str, Row] = {}
    if fake:
        from . import _fakeroot
        fake_rows = {name: Row(op, layout, fixed) for name, (op, layout, fixed) in _fakeroot.rows().items()}
    for name in traps:
        found = fake_rows.get(name) or row(name, root)
        op = found.op
        if name in ("execve", "execveat") and "set_tid_address" in traps:
            from ._determinism import exec_hook
            op = exec_hook(op)  # its next image is fixed (README "Deterministic runs")
        out[table[name]] = Handler(NL.hook(name, op), compile_layout(found.layout), found.fixed)
    return out


def steps_for(traps: Dict[str, Trap], root: bool = False) -> Tuple[Step, ...]:
    """The steps every trapped call goes through before its handler, in order (none
    for most policies), as the rows `traps` names need them:

    - fork, vfork, clone (--max-processes): a thread that notifies again has
      finished the fork it was let through (_procops.settle);
    - an emulated root's execve: the first call of a process started by a #!
      exec puts the names it was given back into its argv (_rootexec.fix_argv).
    """
    before: Tuple[Step, ...] = ()
    if "set_tid_address" in traps:  # README "Deterministic runs"
        from ._determinism import fix_image
        before += (fix_image,)
    if any(name in traps for name in ("fork", "vfork", "clone")):
        before += (P.settle,)
    if root and any(name in traps for name in ("execve", "execveat")):
        from . import _rootexec as RX
        before += (RX.fix_argv,)
    return before
