"""Landlock rulesets for a policy: the hard wall (landlock(7)).

Two rulesets are built in the parent before anything is forked:

- the child's: exactly the policy.  Read rules get EXECUTE | READ_FILE |
  READ_DIR, write rules every filesystem right of the ABI, device files the
  file rights they need.  Landlock has no deny rule, so a ``--fs-deny`` path
  inside a granted tree is cut out by granting the tree's other entries one
  by one, down the path to the denied object ("hole punching"); the
  directories on that path get no right at all.
- the supervisor thread's: the same, plus reading /proc (to reach the
  children's memory and fds) and listing the directories on the way to a
  denied path (so it can open them for the child on its behalf), with the
  abstract unix socket scope (its connects on behalf reach only sockets of
  the sandbox).  Its own operations can never exceed that (docs/design.md
  "The supervisor is confined too").

Every ABI from 1 to 7 is handled: rights an ABI lacks are not asked for, and
the supervisor traps what they would have covered (truncate below ABI 3,
signals and abstract sockets below ABI 6), so no policy silently loses a
guarantee.  ABI 0 (no Landlock) is an error unless best_effort.

Kernel docs: Documentation/userspace-api/landlock.rst; samples/landlock.
"""

from __future__ import annotations

import errno
import os
import stat
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Dict, Iterable, List, Optional, Sequence, Tuple

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._records import NamedTuple  # typing's, without its cost at import (README "Start-up")
from . import _scratch
from . import _structs as S
from . import _syscalls
from ._syscalls import closed_on_error
from ._errors import SetupError
from ._policy import PTYS, Policy, device_paths

READ = S.LANDLOCK_ACCESS_FS_EXECUTE | S.LANDLOCK_ACCESS_FS_READ_FILE | S.LANDLOCK_ACCESS_FS_READ_DIR
FILE_ONLY = (S.LANDLOCK_ACCESS_FS_EXECUTE | S.LANDLOCK_ACCESS_FS_WRITE_FILE | S.LANDLOCK_ACCESS_FS_READ_FILE
             | S.LANDLOCK_ACCESS_FS_TRUNCATE | S.LANDLOCK_ACCESS_FS_IOCTL_DEV)
DEVICE_RW = (S.LANDLOCK_ACCESS_FS_READ_FILE | S.LANDLOCK_ACCESS_FS_WRITE_FILE
             | S.LANDLOCK_ACCESS_FS_TRUNCATE | S.LANDLOCK_ACCESS_FS_IOCTL_DEV)
DEVICE_RO = S.LANDLOCK_ACCESS_FS_READ_FILE

_FS_BITS_BY_ABI = {1: 13, 2: 14, 3: 15, 4: 15, 5: 16, 6: 16, 7: 16}

RIGHT_NAMES = {
    S.LANDLOCK_ACCESS_FS_EXECUTE: "execute", S.LANDLOCK_ACCESS_FS_WRITE_FILE: "write_file",
    S.LANDLOCK_ACCESS_FS_READ_FILE: "read_file", S.LANDLOCK_ACCESS_FS_READ_DIR: "read_dir",
    S.LANDLOCK_ACCESS_FS_REMOVE_DIR: "remove_dir", S.LANDLOCK_ACCESS_FS_REMOVE_FILE: "remove_file",
    S.LANDLOCK_ACCESS_FS_MAKE_CHAR: "make_char", S.LANDLOCK_ACCESS_FS_MAKE_DIR: "make_dir",
    S.LANDLOCK_ACCESS_FS_MAKE_REG: "make_reg", S.LANDLOCK_ACCESS_FS_MAKE_SOCK: "make_sock",
    S.LANDLOCK_ACCESS_FS_MAKE_FIFO: "make_fifo", S.LANDLOCK_ACCESS_FS_MAKE_BLOCK: "make_block",
    S.LANDLOCK_ACCESS_FS_MAKE_SYM: "make_sym", S.LANDLOCK_ACCESS_FS_REFER: "refer",
    S.LANDLOCK_ACCESS_FS_TRUNCATE: "truncate", S.LANDLOCK_ACCESS_FS_IOCTL_DEV: "ioctl_dev",
}


def fs_rights(abi: int) -> int:
    """Every filesystem right Landlock ABI `abi` knows."""
    return (1 << _FS_BITS_BY_ABI[abi]) - 1 if abi > 0 else 0


def scopes(abi: int) -> int:
    return S.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET | S.LANDLOCK_SCOPE_SIGNAL if abi >= 6 else 0


class Rule(NamedTuple):
    path: str
    access: int


class Plan(NamedTuple):
    """A ruleset to build: what it handles and which paths it grants."""
    abi: int
    handled_fs: int
    scoped: int
    rules: Tuple[Rule, ...]
    handled_net: int = 0      # TCP bind/connect handled with no port rule: all refused (net_rights)


def describe(access: int) -> str:
    """'read_file|read_dir|...' for --verbose."""
    return "|".join(name for bit, name in RIGHT_NAMES.items() if access & bit) or "none"


def _under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


DEV = "/dev"


def _punch(top: str, access: int, denied: Sequence[str], out: List[Rule], ancestors: List[str]) -> None:
    """Grant `top` minus the `denied` paths inside it, entry by entry.

    /dev is always cut like a denied path: a grant that covers it (`-r /`,
    `-w /dev`) reaches its directories, files and other mounts (/dev/shm,
    /dev/mqueue) but no device node; the devices a sandbox may use get rules
    of their own (device_paths).  See _punch_dev.
    """
    if any(d == top for d in denied):
        return
    if _under(top, DEV):
        _punch_dev(top, access, denied, out, ancestors)
        return
    inside = [d for d in denied if _under(d, top)]
    if not inside and not _under(DEV, top):
        out.append(Rule(top, access if os.path.isdir(top) else access & FILE_ONLY))
        return
    for name in _walked(top, "a denied path", ancestors):
        child = os.path.join(top, name)
        try:
            mode = os.lstat(child).st_mode
        except FileNotFoundError:
            continue  # gone since the listing (a shared /var/tmp): nothing to grant
        if stat.S_ISLNK(mode):
            continue  # a link grants nothing itself; its target has its own rules
        if stat.S_ISDIR(mode) and _scratch.reserved(name):
            continue  # sandlock's own: a workdir's layers link its files, denied ones too
        _punch(child, access, inside, out, ancestors)


def _punch_dev(top: str, access: int, denied: Sequence[str], out: List[Rule], ancestors: List[str]) -> None:
    """`top` at or below /dev, without its device nodes: a directory of the /dev
    filesystem or of devpts (where device nodes come and go) is walked and gets
    no right itself, like the directories above a denied path; another
    filesystem mounted there (/dev/shm) is granted as usual."""
    try:
        st = os.lstat(top)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return
    if not stat.S_ISDIR(st.st_mode) or st.st_dev not in _device_filesystems():
        inside = [d for d in denied if _under(d, top)]
        if not inside:
            out.append(Rule(top, access if stat.S_ISDIR(st.st_mode) else access & FILE_ONLY))
            return
    for name in _walked(top, "its devices", ancestors):
        _punch(os.path.join(top, name), access, denied, out, ancestors)


def _walked(top: str, what: str, ancestors: List[str]) -> List[str]:
    """The entries of `top`, a directory cut around `what`: it gets no right of its
    own, only READ_DIR for the supervisor thread (ancestors)."""
    ancestors.append(top)
    try:
        return sorted(os.listdir(top))
    except OSError as exc:
        raise SetupError(exc.errno or errno.EIO, f"{top}: cannot list to cut out {what}: {exc.strerror}") from None


def _device_filesystems() -> Tuple[int, ...]:
    """st_dev of /dev and of /dev/pts: the filesystems whose device nodes change."""
    out = []
    for path in (DEV, PTYS):
        try:
            out.append(os.stat(path).st_dev)
        except OSError:
            continue
    return tuple(out)


def procfs_mounts() -> Tuple[str, ...]:
    """Where procfs is mounted (/proc, and any other mount of it), outermost first."""
    points: List[str] = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            data = f.read()
    except OSError:
        data = b""
    for line in data.splitlines():
        left, _, right = line.partition(b" - ")
        fields = left.split(b" ")
        if right.split(b" ", 1)[0] == b"proc" and len(fields) > 4:
            points.append(os.fsdecode(_unescape(fields[4])))
    points.append("/proc")
    out: List[str] = []
    for point in sorted(set(points), key=len):
        if not any(_under(point, top) for top in out):
            out.append(point)
    return tuple(out)


def _unescape(field: bytes) -> bytes:
    """A mount point as mountinfo escapes it (octal \\NNN for space, tab, newline, backslash):
    each backslash followed by three octal digits is that byte, any other is kept (what
    re.sub(rb"\\\\([0-7]{3})", ...) gave; without re, README "Start-up")."""
    out = bytearray()
    start = 0
    while True:
        at = field.find(b"\\", start)
        if at < 0:
            return field if not start else bytes(out + field[start:])
        digits = field[at + 1:at + 4]
        if len(digits) == 3 and all(0x30 <= d <= 0x37 for d in digits):
            out += field[start:at]
            out.append(int(digits, 8) & 0xFF)
            start = at + 4
        else:
            out += field[start:at + 1]
            start = at + 1


def plans(policy: Policy, abi: int, ttys: Tuple[str, ...] = (), keep_proc: bool = False,
          hidden: Optional[Tuple[str, ...]] = None, own: Tuple[str, ...] = ()) -> Tuple[Plan, Plan]:
    """(the child's ruleset, the supervising thread's), from one walk of the rules.

    `ttys` are the caller's terminal devices, granted like /dev/tty.  No rule of
    the child reaches into procfs, whatever the policy grants: a grant that
    covers /proc (the default view, `-r /`) is cut around it like a denied path.
    The supervisor opens /proc for the command (_procfs).  keep_proc: grant it
    as the policy says (sandlock.confine, where no supervisor opens anything).

    No rule reaches sandlock's own directories either: the `hidden` paths
    (default: _scratch.hidden(), the users' bases) are cut out of every grant
    that covers them, and a rule naming a path inside one is dropped, unless
    it lies in one of `own` (the run's own pieces, which the caller grants).
    """
    everything = fs_rights(abi)
    rules: List[Rule] = []
    ancestors: List[str] = []
    procfs = procfs_mounts() if not keep_proc else ()
    if hidden is None:
        from . import _scratch
        hidden = _scratch.hidden()
    cut = tuple(policy.fs_denied) + procfs + hidden

    def granted(path: str) -> bool:
        return (not any(_under(path, p) for p in procfs)
                and (not any(_under(path, h) for h in hidden) or any(_under(path, o) for o in own)))
    for path in policy.readable_paths():
        if path not in policy.fs_writable and granted(path):
            _punch(path, READ & everything, cut, rules, ancestors)
    for path in policy.fs_writable:
        if granted(path):
            _punch(path, everything, cut, rules, ancestors)
    for path, writable in device_paths(policy, ttys):
        rules.append(Rule(path, (DEVICE_RW if writable else DEVICE_RO) & everything))
    child = Plan(abi, everything, scopes(abi), tuple(rules))
    # The supervisor thread reads /proc, lists the directories on the way to
    # a denied path for the child, and connects sockets on behalf of the
    # sandbox: with the abstract-socket scope those reach only the sandbox.
    # It also opens, for the sandbox, the pseudo-terminals the sandbox allocated
    # itself (the child's ruleset grants no other: see _resolve.Devices).
    extra = [Rule("/proc", READ & everything)] + [Rule(a, S.LANDLOCK_ACCESS_FS_READ_DIR) for a in ancestors]
    if os.path.isdir(PTYS):
        extra.append(Rule(PTYS, DEVICE_RW & everything))
    supervisor = Plan(abi, everything, S.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET if abi >= 6 else 0,
                      tuple(rules + extra))
    return child, supervisor


def interpreter_rules() -> Tuple[Rule, ...]:
    """Reading (and running) what this interpreter is made of: every file it has mapped
    executable (itself, the dynamic loader, its libraries and extension modules, as
    /proc/self/maps names them) and its standard library's directory.

    The fork server of a run in a root is `sys.executable -I -S`, started from the
    domain its supervising threads share (_forkserver.home_ruleset), where the root's
    supervisor ruleset alone hides the host's /usr.  Only reading: the interpreter's
    code, which this process already runs; never the command's (its own layer grants
    the root only)."""
    import socket  # a module of the standard library's directory, never frozen
    code = S.LANDLOCK_ACCESS_FS_READ_FILE | S.LANDLOCK_ACCESS_FS_EXECUTE
    rules: List[Rule] = []
    seen = set()
    with open("/proc/self/maps", "rb") as maps:
        for line in maps:
            fields = line.split(None, 5)
            if len(fields) < 6 or b"x" not in fields[1] or not fields[5].startswith(b"/"):
                continue
            path = os.fsdecode(fields[5].rstrip(b"\n"))
            if path not in seen and os.path.isfile(path):  # not " (deleted)", not a device
                seen.add(path)
                rules.append(Rule(path, code))
    library = os.path.dirname(socket.__file__)
    rules.append(Rule(library, S.LANDLOCK_ACCESS_FS_READ_FILE | S.LANDLOCK_ACCESS_FS_READ_DIR))
    return tuple(rules)


def stub_plan(child: Plan) -> Plan:
    """The stub's layer: the signal and abstract-socket scopes, nothing else.

    Every Landlock layer denies reparenting (a rename or link into another
    directory: EXDEV) unless a rule of that layer grants REFER, handled or
    not, so this layer handles REFER and grants it wherever the child's
    ruleset does; the child's own layer still decides everything.  Below
    ABI 6 there is nothing to scope and no layer is made.
    """
    if not scopes(child.abi):
        return Plan(child.abi, 0, 0, ())
    refer = S.LANDLOCK_ACCESS_FS_REFER
    return Plan(child.abi, refer, scopes(child.abi),
                tuple(Rule(rule.path, refer) for rule in child.rules if rule.access & refer))


def plan(policy: Policy, abi: int, supervisor: bool = False, ttys: Tuple[str, ...] = (),
         keep_proc: bool = False) -> Plan:
    """The ruleset for the child (or, with supervisor=True, for the supervising thread)."""
    return plans(policy, abi, ttys, keep_proc)[1 if supervisor else 0]


def create_ruleset(p: Plan) -> int:
    """Build the ruleset fd for a plan (close-on-exec); the caller restricts with it.

    Raises:
        SetupError: naming the path whose rule the kernel refused.
    """
    attr = S.landlock_ruleset_attr(p.handled_fs, p.handled_net, p.scoped)
    try:
        fd = _syscalls.landlock_create_ruleset(attr, S.LANDLOCK_RULESET_ATTR_SIZE[p.abi], 0)
    except OSError as exc:
        raise SetupError(exc.errno or errno.EIO, f"landlock_create_ruleset: {exc.strerror}",
                         step="landlock_create_ruleset", hint="run python -m sandlock --check") from None
    with closed_on_error(fd):
        for rule in p.rules:
            _add_path_rule(fd, rule)
    return fd


def _add_path_rule(ruleset_fd: int, rule: Rule) -> None:
    try:
        parent = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except OSError as exc:
        raise SetupError(exc.errno or errno.EIO, f"{rule.path}: {exc.strerror}", step="landlock_add_rule") from None
    try:
        attr = S.landlock_path_beneath_attr(rule.access, parent)
        _syscalls.landlock_add_rule(ruleset_fd, S.LANDLOCK_RULE_PATH_BENEATH, attr)
    except OSError as exc:
        raise SetupError(exc.errno or errno.EIO, f"{rule.path}: landlock_add_rule: {exc.strerror}", step="landlock_add_rule") from None
    finally:
        os.close(parent)


def check_kernel(policy: Policy) -> int:
    """The ABI to use for `policy`; SetupError if Landlock is missing (unless best_effort)."""
    abi = _syscalls.landlock_abi()
    if abi == 0 and not policy.best_effort:
        raise SetupError(95, "Landlock is not available on this kernel (needs Linux >= 5.13 with lsm=landlock)",
                         step="landlock", hint="run python -m sandlock --check, or pass --best-effort")
    return abi


def net_rights(abi: int) -> int:
    """TCP bind and connect (ABI >= 4): the command's domain handles them with no port
    rule, so the kernel refuses every TCP bind and connect the command makes itself;
    the supervisor, whose domain does not handle them, makes the allowed ones on
    behalf (README "Network")."""
    if abi < 4:
        return 0
    return S.LANDLOCK_ACCESS_NET_BIND_TCP | S.LANDLOCK_ACCESS_NET_CONNECT_TCP


def gaps(abi: int) -> Dict[str, str]:
    """What this ABI lacks and how sandlock covers it (for --verbose and --check)."""
    out = {}
    if abi < 2:
        out["refer"] = "renames and links across directories are refused by Landlock ABI 1"
    if abi < 3:
        out["truncate"] = "truncate and O_TRUNC opens are decided by the supervisor"
    if abi < 4:
        out["net_tcp"] = "TCP connect and bind are decided by the supervisor alone (no kernel wall)"
    if abi < 5:
        out["ioctl_dev"] = "device ioctls are not restricted beyond the BPF filter"
    if abi < 6:
        out["scopes"] = "signals and abstract unix sockets are decided by the supervisor"
    return out


def rule_lines(p: Plan) -> Iterable[str]:
    for rule in p.rules:
        yield f"  {rule.path}: {describe(rule.access)}"
