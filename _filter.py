"""The seccomp-bpf filter of a policy (docs/design.md "The seccomp filter", "The deny list").

Every syscall the architecture's table knows is classified here explicitly:
ALLOW, DENY (EPERM), ENOSYS, or an argument rule.  Numbers the table does not
know (syscalls of newer kernels) get ENOSYS, so they fail closed.  The
syscalls the supervisor handles come in as `traps` from the handler table:
the filter notifies exactly those (optionally only when register values say
the call needs a decision) and nothing else.

Program shape (assembled by _bpf):

    ld arch; jeq AUDIT_ARCH, or ret KILL_PROCESS  wrong arch (i386 int 0x80)
    ld nr;   jset X32_SYSCALL_BIT: ret EPERM       x86_64 only
    jeq ioctl, jeq fcntl: ja their blocks         HOT: decided on arguments, frequent
    binary search over the number ranges          each leaf: ret or ja block
    blocks: argument tests, first match wins      ld args[i]; jeq/jset; ret

The decisions that depend on the number only never load an argument, so the
kernel's seccomp action cache (Linux 5.11) learns them and an allowed syscall
such as read, write, mmap, futex or getppid never runs the filter: it costs
the kernel's seccomp entry alone (bench/bench_untrapped.py).  The syscalls
decided on their arguments run it every time, so the frequent ones (HOT)
are tested before the search, and a block's run of equality tests on one
argument word loads it once and finds its value by a binary search
(_search) instead of a test after a test.  ioctl commands are compared on
their low 32 bits (the kernel truncates them).
"""

from __future__ import annotations

import errno
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _bpf as B
from . import _structs as S
from . import _syscalls
from ._structs import (IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP,
                       SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_SET_MODE_FILTER)

# --- classification ---------------------------------------------------------------

# SysV IPC and POSIX message queues: their objects are found by a number or a
# name, not by a path or a process Landlock knows, so a sandboxed process
# could attach to a host process's shared memory, semaphores or queues.
IPC = frozenset("""
shmget shmat shmctl shmdt msgget msgsnd msgrcv msgctl semget semop semctl semtimedop mq_open mq_unlink
mq_timedsend mq_timedreceive mq_notify mq_getsetattr
""".split())

# The default deny list (docs/design.md "The deny list"), and a few more that only administer the host;
# sysfs(2) lists the host's filesystem types; memfd_secret takes memory out of
# the kernel's direct map (unswappable, uncounted by -m).
DENY = frozenset("""
mount umount2 pivot_root chroot swapon swapoff reboot sethostname setdomainname kexec_load
kexec_file_load init_module finit_module delete_module unshare setns perf_event_open bpf
userfaultfd keyctl add_key request_key ptrace process_vm_readv process_vm_writev open_by_handle_at
name_to_handle_at ioperm iopl modify_ldt quotactl quotactl_fd acct lookup_dcookie io_uring_setup
io_uring_enter io_uring_register fsopen fsmount fsconfig fspick move_mount open_tree
open_tree_attr mount_setattr fanotify_init fanotify_mark uselib statmount listmount syslog vhangup
lsm_set_self_attr file_getattr file_setattr
sysfs memfd_secret
""".split()) | IPC

# Never implemented, obsolete, or refused so that libc falls back: clone3 to
# clone, the *xattrat family (Linux 6.13) to the older xattr calls; io_setup
# as on a kernel without AIO (it reserves events of the system-wide
# fs.aio-max-nr pool; glibc's POSIX aio uses threads and never calls it).
ENOSYS = frozenset("""
clone3 afs_syscall tuxcall security vserver getpmsg putpmsg create_module get_kernel_syms
query_module nfsservctl _sysctl epoll_ctl_old epoll_wait_old
setxattrat getxattrat listxattrat removexattrat
io_setup
""".split())

# Allowed on the number alone.  A name here may still be trapped by a policy
# (it then appears in `traps`), e.g. stat under every policy.
ALLOW = frozenset("""
read write open close stat fstat lstat poll lseek mmap mprotect munmap brk rt_sigaction
rt_sigprocmask rt_sigreturn pread64 pwrite64 readv writev access pipe select sched_yield mremap
msync mincore madvise dup dup2 pause nanosleep getitimer alarm setitimer getpid sendfile
connect accept sendto recvfrom sendmsg recvmsg shutdown bind listen getsockname getpeername
socketpair getsockopt fork vfork execve exit wait4 kill uname flock
fsync fdatasync truncate ftruncate getdents getcwd chdir fchdir rename mkdir rmdir creat link
unlink symlink readlink chmod fchmod chown fchown lchown umask gettimeofday getrlimit getrusage
sysinfo times getuid getgid setuid setgid geteuid getegid setpgid getppid getpgrp setsid
setreuid setregid getgroups setgroups setresuid getresuid setresgid getresgid getpgid setfsuid
setfsgid getsid capget capset rt_sigpending rt_sigtimedwait rt_sigqueueinfo rt_sigsuspend
sigaltstack utime ustat statfs fstatfs getpriority setpriority sched_setparam
sched_getparam sched_setscheduler sched_getscheduler sched_get_priority_max
sched_get_priority_min sched_rr_get_interval mlock munlock mlockall munlockall arch_prctl
adjtimex setrlimit sync settimeofday gettid readahead setxattr lsetxattr fsetxattr getxattr
lgetxattr fgetxattr listxattr llistxattr flistxattr removexattr lremovexattr fremovexattr tkill
time futex sched_setaffinity sched_getaffinity set_thread_area io_destroy io_getevents
io_submit io_cancel get_thread_area epoll_create remap_file_pages getdents64 set_tid_address
restart_syscall fadvise64 timer_create timer_settime timer_gettime timer_getoverrun
timer_delete clock_settime clock_gettime clock_getres clock_nanosleep exit_group epoll_wait
epoll_ctl tgkill utimes mbind set_mempolicy get_mempolicy waitid ioprio_set ioprio_get
inotify_init inotify_add_watch inotify_rm_watch migrate_pages openat mkdirat fchownat
futimesat newfstatat unlinkat renameat linkat symlinkat readlinkat fchmodat faccessat pselect6
ppoll set_robust_list get_robust_list splice tee sync_file_range vmsplice move_pages utimensat
epoll_pwait signalfd timerfd_create eventfd fallocate timerfd_settime timerfd_gettime accept4
signalfd4 eventfd2 epoll_create1 dup3 pipe2 inotify_init1 preadv pwritev rt_tgsigqueueinfo
recvmmsg prlimit64 clock_adjtime syncfs sendmmsg getcpu kcmp sched_setattr
sched_getattr renameat2 getrandom memfd_create membarrier mlock2 copy_file_range preadv2
pwritev2 pkey_mprotect pkey_alloc pkey_free statx io_pgetevents rseq pidfd_send_signal
pidfd_open close_range openat2 pidfd_getfd faccessat2 process_madvise epoll_pwait2
landlock_create_ruleset landlock_add_rule landlock_restrict_self process_mrelease
futex_waitv set_mempolicy_home_node cachestat fchmodat2 map_shadow_stack futex_wake futex_wait
futex_requeue lsm_get_self_attr lsm_list_modules mseal execveat
""".split())


class Test(NamedTuple):
    """One argument test of a block: if it matches, the block returns `action`.

    op: "eq" / "ne" (the 32-bit word equals / differs from k), "set" (word & k
    is non-zero), "maskeq" ((word & mask) == k).  `high` picks the upper half
    of the 64-bit argument.  `also`, another Test (its action unused), must
    match too (and its own `also`, and so on).
    """
    arg: int
    op: str
    k: int
    action: str
    mask: int = 0
    high: bool = False
    also: Optional["Test"] = None


if TYPE_CHECKING:
    Rule = Union[str, Tuple[Sequence[Test], str]]  # an action, or (tests, default action)
else:
    Rule = object  # only annotations name it (strings): typing stays unimported (README "Start-up")

PR_SET_DUMPABLE, PR_SET_SECUREBITS, PR_SET_MM, PR_SET_PTRACER = 4, 28, 35, 0x59616D61
CLONE_NEW_MASK = 0x7E020000  # NEWNS NEWCGROUP NEWUTS NEWIPC NEWUSER NEWPID NEWNET
S_SETID = 0o6000  # S_ISUID | S_ISGID
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET, NETLINK_ROUTE, NETLINK_SOCK_DIAG = 1, 2, 10, 16, 17, 0, 4
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_PACKET, SOCK_TYPE_MASK = 1, 2, 3, 10, 0xF
SOL_IP, IP_OPTIONS, SOL_IPV6, IPV6_2292RTHDR, IPV6_2292PKTOPTIONS, IPV6_RTHDR = 0, 4, 41, 5, 6, 57
F_SETLEASE, F_UNLCK = 1024, 2  # uapi linux/fcntl.h, asm-generic/fcntl.h
ADDR_NO_RANDOMIZE = 0x0040000
# linux/fs.h: FS_IOC_SETFLAGS and FS_IOC_SETVERSION (long and 32-bit int
# argument spellings), FS_IOC_FSSETXATTR (struct fsxattr, 28 bytes).
FS_IOC_SETTERS = (S._IOW(ord("f"), 2, 8), S._IOW(ord("f"), 2, 4), S._IOW(ord("v"), 2, 8), S._IOW(ord("v"), 2, 4),
                  S._IOW(ord("X"), 32, 28))

ARGUMENT_RULES: Dict[str, Rule] = {
    # Namespaces are refused; threads and plain forks go on.
    "clone": ([Test(0, "set", CLONE_NEW_MASK, "eperm")], "allow"),
    # Faking terminal input or console control; changing inode flags (chattr),
    # which works on a file opened read-only and which Landlock does not see.
    "ioctl": ([Test(1, "eq", code, "eperm") for code in (S.TIOCSTI, S.TIOCLINUX) + FS_IOC_SETTERS],
              "allow"),
    "prctl": ([Test(0, "eq", PR_SET_DUMPABLE, "eperm"), Test(0, "eq", PR_SET_SECUREBITS, "eperm"),
               Test(0, "eq", PR_SET_PTRACER, "eperm"), Test(0, "eq", PR_SET_MM, "eperm")], "allow"),
    # Options that send a socket's packets first to another address than the one
    # connect/sendto named and the policy decided: IPv4 source routing (IP_OPTIONS
    # with LSRR/SSRR, no capability needed) and IPv6 routing headers (IPV6_RTHDR:
    # type 2 and segment routing need none either; the 2292 spellings alike).
    "setsockopt": ([Test(1, "eq", SOL_IP, "eperm", also=Test(2, "eq", IP_OPTIONS, "")),
                    Test(1, "eq", SOL_IPV6, "eperm", also=Test(2, "eq", IPV6_RTHDR, "")),
                    Test(1, "eq", SOL_IPV6, "eperm", also=Test(2, "eq", IPV6_2292RTHDR, "")),
                    Test(1, "eq", SOL_IPV6, "eperm", also=Test(2, "eq", IPV6_2292PKTOPTIONS, ""))], "allow"),
    "socket": None,  # type: ignore[dict-item]  # set below to socket_rule() (no network); the policy shapes it (rules_for)
    # No set-user-id or set-group-id file (README "What the sandbox allows");
    # device nodes need CAP_MKNOD, which the sandbox never has.
    "mknod": ([Test(1, "set", S_SETID, "eperm")], "allow"),
    "mknodat": ([Test(2, "set", S_SETID, "eperm")], "allow"),
    # Leases hold up every host process that opens the file for writing: refused
    # (EACCES); dropping one (F_UNLCK) is fine.  Other commands: see _table (locks).
    "fcntl": ([Test(1, "eq", F_SETLEASE, "eacces", also=Test(2, "ne", F_UNLCK, ""))], "allow"),
    "personality": ([Test(0, "eq", 0, "allow"), Test(0, "eq", 0xFFFFFFFF, "allow"),
                     Test(0, "eq", ADDR_NO_RANDOMIZE, "allow")], "eperm"),
    # A listener of the child's own would receive the notifications meant for
    # the supervisor (the newest filter wins ties) and could CONTINUE them.
    "seccomp": ([Test(0, "ne", SECCOMP_SET_MODE_FILTER, "allow"),
                 Test(1, "set", SECCOMP_FILTER_FLAG_NEW_LISTENER, "eperm")], "allow"),
}

# NETLINK_ROUTE sockets are emulated by the supervisor (_netlink; README "Network
# views"): the one test of socket_rule that notifies (_table.traps_for traps socket).
SOCKET_NETLINK_ROUTE = Test(0, "eq", AF_NETLINK, "notify", also=Test(2, "eq", NETLINK_ROUTE, ""))


def socket_rule(udp: bool = False, icmp: bool = False) -> Rule:
    """socket(2) on register values (README "Network").  Unix sockets as before;
    NETLINK_ROUTE notified (emulated), NETLINK_SOCK_DIAG EPERM (on the deny list: it lists host sockets), other
    netlink protocols EPROTONOSUPPORT (README "Network views"); of the IP families
    only TCP, UDP when some rule could allow UDP, and ICMP "ping" sockets when an
    icmp:// rule exists (EACCES otherwise); raw IP and packet sockets (and the
    obsolete SOCK_PACKET type) EPERM, as without CAP_NET_RAW; other families
    (AF_VSOCK, AF_SMC, AF_BLUETOOTH, ...) EAFNOSUPPORT, other protocols (MPTCP,
    whose peer may make the kernel open subflows to addresses it announces; SCTP,
    UDP-Lite, DCCP) EPROTONOSUPPORT, as on a kernel without them (programs fall
    back to TCP)."""
    def kind(k: int) -> Test:
        return Test(1, "maskeq", k, "", mask=SOCK_TYPE_MASK)

    def proto(p: int, action: str, k: int) -> Test:
        return Test(2, "eq", p, action, also=kind(k))
    dgram = "allow" if udp else "eacces"
    ping = "allow" if icmp else "eacces"
    return ([Test(1, "maskeq", SOCK_PACKET, "eperm", mask=SOCK_TYPE_MASK),
             Test(0, "eq", AF_UNIX, "allow"),
             Test(0, "eq", AF_NETLINK, "eperm", also=Test(2, "eq", NETLINK_SOCK_DIAG, "")),  # lists host sockets
             SOCKET_NETLINK_ROUTE,
             Test(0, "eq", AF_NETLINK, "eprotonosupport"),
             Test(0, "eq", AF_PACKET, "eperm"),
             Test(0, "ne", AF_INET, "eafnosupport", also=Test(0, "ne", AF_INET6, "")),
             Test(1, "maskeq", SOCK_RAW, "eperm", mask=SOCK_TYPE_MASK),
             proto(0, "allow", SOCK_STREAM), proto(IPPROTO_TCP, "allow", SOCK_STREAM),
             proto(0, dgram, SOCK_DGRAM), proto(IPPROTO_UDP, dgram, SOCK_DGRAM),
             proto(IPPROTO_ICMP, ping, SOCK_DGRAM), proto(IPPROTO_ICMPV6, ping, SOCK_DGRAM)],
            "eprotonosupport")


ARGUMENT_RULES["socket"] = socket_rule()

_RET = {
    "allow": B.SECCOMP_RET_ALLOW,
    "eperm": B.SECCOMP_RET_ERRNO | errno.EPERM,
    "eacces": B.SECCOMP_RET_ERRNO | errno.EACCES,
    "eafnosupport": B.SECCOMP_RET_ERRNO | errno.EAFNOSUPPORT,
    "eprotonosupport": B.SECCOMP_RET_ERRNO | errno.EPROTONOSUPPORT,
    "enosys": B.SECCOMP_RET_ERRNO | errno.ENOSYS,
    "notify": B.SECCOMP_RET_USER_NOTIF,
    "kill": B.SECCOMP_RET_KILL_PROCESS,
}


def classify(name: str) -> Rule:
    """The base rule of a syscall (before the policy's traps and denials)."""
    if name in DENY:
        return "eperm"
    if name in ENOSYS:
        return "enosys"
    if name in ARGUMENT_RULES:
        return ARGUMENT_RULES[name]
    if name in ALLOW:
        return "allow"
    raise KeyError(f"syscall {name!r} is not classified")


if TYPE_CHECKING:
    Trap = Optional[Sequence[Test]]  # None: always notify; else tests whose action is "notify"
else:
    Trap = object  # only annotations name it (strings): typing stays unimported (README "Start-up")


def rules_for(arch: str, traps: Mapping[str, Trap], extra_deny: Sequence[str] = (),
              deny_more: Sequence[str] = (), overrides: Mapping[str, Rule] = {}) -> Dict[int, Rule]:
    """Syscall number -> rule for one architecture and one policy (`overrides`: argument
    rules the policy shapes, e.g. socket_rule)."""
    table = _syscalls.table(arch)
    unknown = [n for n in traps if n not in table and n not in _ANY_ARCH]
    known = _syscalls.any_arch_names() if extra_deny else frozenset()
    unknown += [n for n in extra_deny if n not in known]
    if unknown:
        raise KeyError(f"unknown syscall name(s): {', '.join(sorted(unknown))}")
    out: Dict[int, Rule] = {}
    for name, number in table.items():
        rule: Rule = overrides[name] if name in overrides and name in ARGUMENT_RULES else classify(name)
        if name in extra_deny or name in deny_more:
            rule = "eperm"
        elif name in traps and rule != "eperm" and rule != "enosys":
            rule = _with_trap(rule, traps[name])
        out[number] = rule
    return out


_ANY_ARCH = frozenset(ALLOW | DENY | ENOSYS | set(ARGUMENT_RULES))


def _refuses(t: Test) -> bool:
    return t.action not in ("allow", "notify")


def _with_trap(rule: Rule, trap: Trap) -> Rule:
    if isinstance(rule, tuple) and any(t.action == "notify" for t in rule[0]):
        return rule  # an argument rule that places its own notify tests (socket_rule)
    if trap is None:
        if isinstance(rule, tuple):  # keep the refusals, notify the rest
            return ([t for t in rule[0] if _refuses(t)], "notify")
        return "notify"
    if isinstance(rule, tuple):
        refusals = [t for t in rule[0] if _refuses(t)]
        return (refusals + list(trap) + [t for t in rule[0] if not _refuses(t)], rule[1])
    return (list(trap), rule)


# --- assembly -------------------------------------------------------------------------

def build(arch: str, rules: Mapping[int, Rule]) -> bytes:
    """Assemble the filter program for `arch` from number -> rule."""
    prog: List[Any] = [
        B.ld_abs(B.SECCOMP_DATA_ARCH),
        B.jeq(S.AUDIT_ARCH[arch], jt=1, jf=None),
        B.ret(_RET["kill"]),
        B.ld_abs(B.SECCOMP_DATA_NR),
    ]
    if arch == "x86_64":
        prog += [B.jset(S.X32_SYSCALL_BIT, jt=None, jf=1), B.ret(_RET["eperm"])]
    table = _syscalls.table(arch)
    for name in HOT:  # straight to their blocks (the label _tree gives a one-number range)
        number = table.get(name)
        if number is not None and isinstance(rules.get(number), tuple):
            prog += [B.jeq(number, jt=None, jf=1), B.ja(f"block_{number}")]
    blocks: List[Any] = []
    _tree(_ranges(rules), prog, blocks)
    prog.extend(blocks)
    return B.assemble(prog)


def _ranges(rules: Mapping[int, Rule]) -> List[Tuple[int, int, Rule]]:
    """Contiguous [lo, hi] number ranges with one rule each; gaps are ENOSYS."""
    out: List[Tuple[int, int, Rule]] = []
    top = max(rules)
    get = rules.get
    lo, last = 0, get(0, "enosys")
    for number in range(1, top + 1):
        rule = get(number, "enosys")
        if isinstance(rule, str) and rule == last:  # a rule decided on arguments is never merged
            continue
        out.append((lo, number - 1, last))
        lo, last = number, rule
    out.append((lo, top, last))
    out.append((top + 1, 0xFFFFFFFF, "enosys"))
    return out


def _tree(ranges: Sequence[Tuple[int, int, Rule]], prog: List[object], blocks: List[object]) -> None:
    """A binary search over the ranges: a node is `jge k`, which jumps over its left half
    to its right half when nr >= k (one instruction; where the left half is longer than a
    conditional jump reaches, 255, `jge` falls through to a `ja` over it, else skips that),
    then its left half, then its right half; a leaf is a ret, or a jump to its rule's block
    (in `blocks`, after the whole tree).  A half's length depends on its count of ranges
    alone (_tree_length), so the jump over it is a number, not a label."""
    rets = {rule: B.ret(action) for rule, action in _RET.items()}
    stack = [(0, len(ranges))]
    while stack:
        start, end = stack.pop()
        if end - start == 1:
            lo, _, rule = ranges[start]
            if isinstance(rule, str):
                prog.append(rets[rule])
            else:
                label = f"block_{lo}"
                prog.append(B.ja(label))
                blocks.append(B.label(label))
                blocks.extend(_block(rule, label))
            continue
        mid = start + (end - start) // 2
        left = _tree_length(mid - start)
        if left <= JUMP_REACH:
            prog.append(B.jge(ranges[mid][0], jt=left, jf=None))
        else:
            prog += [B.jge(ranges[mid][0], jt=None, jf=1), B.ja(left)]
        stack.append((mid, end))    # after the left half
        stack.append((start, mid))


JUMP_REACH = 255   # instructions a conditional jump skips at most (its 8-bit jt/jf)


@_syscalls.cached
def _tree_length(count: int) -> int:
    """Instructions of _tree's search over `count` ranges."""
    if count == 1:
        return 1
    left = _tree_length(count // 2)
    return (1 if left <= JUMP_REACH else 2) + left + _tree_length(count - count // 2)


# Decided on their arguments and called all the time (fcntl F_GETFL/F_SETFD, ioctl
# TCGETS/FIONREAD): tested before the search over the numbers (see the module doc).
HOT = ("ioctl", "fcntl")
SEARCH_MIN = 4  # equality tests in a row, on one word, from which _block searches


def _block(rule: Tuple[Sequence[Test], str], name: str) -> List[object]:
    tests, default = rule
    out: List[object] = []
    number = 0
    while number < len(tests):
        t = tests[number]
        run = _equality_run(tests, number)
        if len(run) >= SEARCH_MIN:
            after = f"{name}_after_{number}"
            out.append(B.ld_abs(B.seccomp_data_arg(t.arg, high=t.high)))
            _search(sorted((u.k, u.action) for u in run), out, after, f"{name}_s{number}")
            out.append(B.label(after))
            number += len(run)
            continue
        miss = f"{name}_miss_{number}"
        part: Optional[Test] = t
        while part is not None:
            out.extend(_match(part, miss))
            part = part.also
        out += [B.ret(_RET[t.action]), B.label(miss)]
        number += 1
    out.append(B.ret(_RET[default]))
    return out


def _equality_run(tests: Sequence[Test], start: int) -> Sequence[Test]:
    """The tests from `start` on that compare one argument word for equality, each with
    a value of its own and nothing more (no mask, no `also`): at most one of them can
    match, so their order does not matter and a search finds it."""
    first = tests[start]
    seen = set()
    end = start
    while end < len(tests):
        t = tests[end]
        if (t.op != "eq" or t.also is not None or t.mask or (t.arg, t.high) != (first.arg, first.high)
                or t.k in seen):
            break
        seen.add(t.k)
        end += 1
    return tests[start:end]


def _search(items: Sequence[Tuple[int, str]], out: List[object], miss: str, name: str) -> None:
    """A binary search for A among sorted (value, action) pairs: ret the action of the value
    A equals, else jump to `miss`."""
    if len(items) <= 3:
        for k, action in items:
            out += [B.jeq(k, jt=None, jf=1), B.ret(_RET[action])]
        out.append(B.ja(miss))
        return
    mid = len(items) // 2
    right = f"{name}_ge{mid}"
    out.append(B.jge(items[mid][0], jt=right, jf=None))
    _search(items[:mid], out, miss, f"{name}l")
    out.append(B.label(right))
    _search(items[mid:], out, miss, f"{name}r")


def _match(t: Test, miss: str) -> List[object]:
    """Load the argument word and fall through when it matches, else jump to `miss`."""
    out: List[object] = [B.ld_abs(B.seccomp_data_arg(t.arg, high=t.high))]
    if t.op == "maskeq":
        out.append(B.and_(t.mask))
    if t.op == "ne":
        out.append(B.jeq(t.k, jt=miss, jf=None))
    elif t.op == "set":
        out.append(B.jset(t.k, jt=None, jf=miss))
    else:
        out.append(B.jeq(t.k, jt=None, jf=miss))
    return out
