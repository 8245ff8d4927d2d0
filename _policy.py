"""The sandbox policy: validated, normalised, immutable.

Everything a user can ask for is checked here, before anything is forked:
a wrong type, a negative limit, a size that does not parse, a path that does
not exist, an unknown field each raise PolicyError naming the field (the API
keyword, or the CLI flag when the CLI passes its flag names).

Paths are made absolute and resolved (os.path.realpath) once, so the
supervisor's decisions and the Landlock rules speak about the same objects.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING: `import sandlock` imports neither typing nor re (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from ._errors import PolicyError, PolicyTypeError, shown

if TYPE_CHECKING:
    PathArg = Union[str, bytes, "os.PathLike[str]", "os.PathLike[bytes]"]

# The documented default view (README "Default filesystem view"): used for
# reading and executing when the policy names no readable path.
DEFAULT_READABLE = ("/usr", "/lib", "/lib32", "/lib64", "/libx32", "/bin", "/sbin", "/etc", "/opt", "/proc")
# Device files every policy can use (docs/design.md "Devices"), and no other device
# (README "What the sandbox allows"): the terminals sandlock's stdin, stdout
# and stderr are (terminals()) and the pseudo-terminals the sandbox allocates
# through /dev/ptmx, which the supervisor opens for it in PTYS.
DEVICES_RW = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty", "/dev/ptmx")
DEVICES_RO = ("/dev/random", "/dev/urandom")
PTYS = "/dev/pts"



def terminals() -> Tuple[str, ...]:
    """The terminal devices our stdin/stdout/stderr are (usable by the command too)."""
    out = []
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                name = os.path.realpath(os.ttyname(fd))
                if name not in out:
                    out.append(name)
        except OSError:
            continue
    return tuple(out)


def deterministic(policy: object) -> bool:
    """A seed or a start time (README "Deterministic runs"): the run needs _determinism's
    streams and clocks, and the vDSO of its commands patched."""
    return getattr(policy, "random_seed", None) is not None or getattr(policy, "time_start", None) is not None


def device_paths(policy: "Policy", ttys: Tuple[str, ...] = ()) -> Tuple[Tuple[str, bool], ...]:
    """(device, writable) pairs every sandbox gets, minus denied ones."""
    out = []
    for path, writable in [(p, True) for p in DEVICES_RW + ttys] + [(p, False) for p in DEVICES_RO]:
        if os.path.exists(path) and not any(path == d or path.startswith(d + "/") for d in policy.fs_denied):
            out.append((path, writable))
    return tuple(out)


# Environment kept by --clean-env (docs/design.md "Environment").
CLEAN_ENV_KEEP = ("PATH", "HOME", "USER", "TERM", "LANG")

# A size's unit letters and the i of KiB, in any case (and what re's IGNORECASE took too:
# the Kelvin sign for k, dotted and dotless i): README "Start-up", _size_parts
_UNIT_LETTERS = {"k": "k", "K": "k", "\u212a": "k", "m": "m", "M": "m", "g": "g", "G": "g", "t": "t", "T": "t"}
_I_LETTERS = frozenset("iI\u0130\u0131")
_DIGITS = "0123456789"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz_" + _DIGITS)  # of a syscall's name
INT_MAX = (1 << 31) - 1  # processes and open files: far past what a kernel allows
SIZE_MAX = (1 << 63) - 1  # what setrlimit(2) takes
_SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


_FIELDS: Tuple[Tuple[str, object], ...] = (
    ("fs_readable", ()), ("fs_writable", ()), ("fs_denied", ()), ("default_view", True),
    ("max_memory", None), ("max_processes", None), ("max_open_files", None), ("timeout", None),
    ("env", ()), ("clean_env", False), ("cwd", None), ("best_effort", False), ("extra_deny_syscalls", ()),
    ("chroot", None), ("fs_mount", ()),
    ("workdir", None), ("on_exit", None), ("on_error", None), ("dry_run", False), ("max_disk", None),
    ("net_allow", ()), ("net_deny", ()), ("net_allow_bind", ()), ("net_deny_bind", ()),
    ("fake_root", False),
    ("hostname", None), ("no_coredump", False),
    ("random_seed", None), ("time_start", None), ("no_randomize_memory", False), ("deterministic_dirs", False),
    ("cpu_cores", None), ("num_cpus", None), ("cpu", None),
)
END_ACTIONS = ("commit", "abort", "keep")

# PATH inside an emulated root unless --env/--clean-env say otherwise (docs/design.md "Environment").
GUEST_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class Policy:
    """What a sandbox may do.  Build it with make_policy(), never directly.

    A plain immutable record (dataclasses would cost the CLI's start-up
    several milliseconds).
    """

    __slots__ = tuple(name for name, _ in _FIELDS) + ("labels",)
    fs_readable: Tuple[str, ...]
    fs_writable: Tuple[str, ...]
    fs_denied: Tuple[str, ...]
    default_view: bool
    max_memory: Optional[int]
    max_processes: Optional[int]
    max_open_files: Optional[int]
    timeout: Optional[float]
    env: Tuple[Tuple[str, str], ...]
    clean_env: bool
    cwd: Optional[str]
    best_effort: bool
    extra_deny_syscalls: Tuple[str, ...]
    chroot: Optional[str]                       # host path of the emulated root
    fs_mount: Tuple[Tuple[str, str, bool], ...]  # (virtual path, host path, read-only)
    workdir: Optional[str]                      # host path of the copy-on-write directory
    on_exit: Optional[str]                      # commit/abort/keep after exit 0 (default commit)
    on_error: Optional[str]                     # ... after any other end (default abort)
    dry_run: bool
    max_disk: Optional[int]                     # bytes the upper layer may hold
    net_allow: Tuple[str, ...]                  # raw specs as given (README "Network"; _netpolicy)
    net_deny: Tuple[str, ...]
    net_allow_bind: Tuple[str, ...]
    net_deny_bind: Tuple[str, ...]
    fake_root: bool                             # uid 0 over the root's files, recorded (_fakeroot)
    hostname: Optional[str]                     # what uname(2) and the hostname files show (_identity)
    no_coredump: bool                           # RLIMIT_CORE 0, soft and hard
    random_seed: Optional[int]                  # getrandom, /dev/[u]random, AT_RANDOM from it (_determinism)
    time_start: Optional[int]                   # the wall clock starts there, in ns since the epoch (_determinism)
    no_randomize_memory: bool                   # ADDR_NO_RANDOMIZE for the command
    deterministic_dirs: bool                    # getdents64 sorted by name (_determinism)
    cpu_cores: Optional[Tuple[int, ...]]        # the CPUs the command may run on (README "CPU")
    num_cpus: Optional[int]                     # how many CPUs the machine the command sees has
    cpu: Optional[int]                          # percent of one core the whole sandbox may use
    labels: Mapping[str, str]

    def __init__(self, labels: Optional[Mapping[str, str]] = None, **values: object) -> None:
        for name, default in _FIELDS:
            object.__setattr__(self, name, values.pop(name, default))
        if values:
            raise TypeError(f"unknown Policy fields {sorted(values)}")
        object.__setattr__(self, "labels", dict(labels or {}))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Policy is immutable; use replace()")

    def replace(self, **changes: object) -> "Policy":
        values = {name: getattr(self, name) for name, _ in _FIELDS}
        values.update(changes)
        return Policy(self.labels, **values)

    def _key(self) -> Tuple[object, ...]:
        return tuple(getattr(self, name) for name, _ in _FIELDS)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Policy) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        fields = ", ".join(f"{name}={getattr(self, name)!r}" for name, default in _FIELDS
                           if getattr(self, name) != default)
        return f"Policy({fields})"

    def readable_paths(self) -> Tuple[str, ...]:
        """Paths readable and executable: the default view (unless default_view is
        False) plus the user's.  With an emulated root these are virtual paths and
        the default view is "/" (the whole root)."""
        if not self.default_view:
            return self.fs_readable
        if self.chroot is not None:
            return ("/",) + tuple(p for p in self.fs_readable if p != "/")
        view = tuple(p for p in DEFAULT_READABLE if os.path.exists(p))
        return view + tuple(p for p in self.fs_readable if p not in view)

    def with_timeout(self, timeout: Optional[float]) -> "Policy":
        if timeout is None:
            return self
        return self.replace(timeout=_positive_number("timeout", timeout, self.labels))


def _size_parts(value: str) -> Optional[Tuple[str, str]]:
    """(number, unit letter or "") of a size such as ' 1.5 GiB': a decimal number, spaces,
    a unit, an optional i and b, spaces around.  What the pattern
    ^\\s*(\\d+(?:\\.\\d+)?)\\s*([kmgt]?)(i?b)?\\s*$ matched ignoring case, by hand: without re,
    whose import (and enum's) costs every CLI start that sets a size (README "Start-up";
    tests/test_start_matchers_unit.py holds the two equal)."""
    text = value.strip()
    end = 0
    while end < len(text) and text[end].isdecimal():
        end += 1
    if end == 0:
        return None
    if text[end:end + 1] == "." and text[end + 1:end + 2].isdecimal():
        end += 2
        while end < len(text) and text[end].isdecimal():
            end += 1
    number, rest = text[:end], text[end:].lstrip()
    unit = _UNIT_LETTERS.get(rest[:1], "")
    if unit:
        rest = rest[1:]
    if rest[:1] in _I_LETTERS:
        rest = rest[1:]
        if rest not in ("b", "B"):
            return None
    elif rest not in ("", "b", "B"):
        return None
    return number, unit


def parse_size(name: str, value: object, labels: Mapping[str, str] = {}) -> int:
    """Parse a size: an int of bytes, or a string like '512M', '1.5G', '64MiB'."""
    if isinstance(value, bool):
        raise _err(name, labels, f"expected a size, got {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise _err(name, labels, f"must be positive, got {value}")
        if value > SIZE_MAX:
            raise _err(name, labels, f"{value} is too large (at most 8388607T)")
        return value
    if not isinstance(value, str):
        raise _err(name, labels, f"expected a size like 512M, got {type(value).__name__}")
    parts = _size_parts(value)
    if parts is None:
        raise _err(name, labels, f"invalid size {value!r} (use a number with an optional K, M, G or T suffix)")
    size = int(float(parts[0]) * _SIZE_UNITS[parts[1]])
    if size <= 0:
        raise _err(name, labels, f"must be positive, got {value!r}")
    if size > SIZE_MAX:
        raise _err(name, labels, f"{value!r} is too large (at most 8388607T)")
    return size


def make_policy(labels: Optional[Mapping[str, str]] = None, **kwargs: object) -> Policy:
    """Validate keyword arguments into a Policy.

    Args:
        labels: how to name each field in messages (the CLI passes flag names).
        **kwargs: the policy fields (see Policy); `root` is an alias of `chroot`.

    Raises:
        PolicyError: naming the first wrong field.
    """
    labels = dict(labels or {})
    known = {name for name, _ in _FIELDS}
    if "root" in kwargs:
        if kwargs.get("chroot") is not None:
            raise PolicyError("root and chroot name the same thing: pass one")
        kwargs = dict(kwargs)
        kwargs["chroot"] = kwargs.pop("root")
    for key in kwargs:
        if key not in known:
            raise PolicyError(f"unknown policy field {key!r}")
    chroot = _optional(kwargs.get("chroot"), lambda v: _directory("chroot", v, labels))
    if chroot is not None:
        from . import _rootpolicy  # only emulated roots need it (keeps the CLI's start small)
        mounts = _rootpolicy.parse_mounts("fs_mount", kwargs.get("fs_mount", ()), labels)

        def guest(name: str) -> Tuple[str, ...]:
            return _rootpolicy.guest_paths(chroot, mounts, name, kwargs.get(name, ()), labels)
        readable, writable, denied = guest("fs_readable"), guest("fs_writable"), guest("fs_denied")
        cwd = _optional(kwargs.get("cwd"), lambda v: _rootpolicy.guest_directory(chroot, mounts, "cwd", v, labels))
    else:
        if kwargs.get("fs_mount"):
            raise _err("fs_mount", labels, "needs an emulated root (chroot)")
        mounts = ()
        readable = _paths("fs_readable", kwargs.get("fs_readable", ()), labels)
        writable = _paths("fs_writable", kwargs.get("fs_writable", ()), labels)
        denied = _paths("fs_denied", kwargs.get("fs_denied", ()), labels)
        cwd = _optional(kwargs.get("cwd"), lambda v: _directory("cwd", v, labels))
    values: Dict[str, Any] = dict(
        fs_readable=readable,
        fs_writable=writable,
        fs_denied=denied,
        default_view=_bool("default_view", kwargs.get("default_view", True), labels),
        max_memory=_optional(kwargs.get("max_memory"), lambda v: parse_size("max_memory", v, labels)),
        max_processes=_optional(kwargs.get("max_processes"), lambda v: _positive_int("max_processes", v, labels)),
        max_open_files=_optional(kwargs.get("max_open_files"), lambda v: _positive_int("max_open_files", v, labels)),
        timeout=_optional(kwargs.get("timeout"), lambda v: _positive_number("timeout", v, labels)),
        env=_env(kwargs.get("env", ()), labels),
        clean_env=_bool("clean_env", kwargs.get("clean_env", False), labels),
        cwd=cwd,
        best_effort=_bool("best_effort", kwargs.get("best_effort", False), labels),
        extra_deny_syscalls=_names("extra_deny_syscalls", kwargs.get("extra_deny_syscalls", ()), labels),
        chroot=chroot,
        fs_mount=mounts,
        workdir=_optional(kwargs.get("workdir"), lambda v: _workdir(v, chroot, labels)),
        on_exit=_optional(kwargs.get("on_exit"), lambda v: _choice("on_exit", v, END_ACTIONS, labels)),
        on_error=_optional(kwargs.get("on_error"), lambda v: _choice("on_error", v, END_ACTIONS, labels)),
        dry_run=_bool("dry_run", kwargs.get("dry_run", False), labels),
        max_disk=_optional(kwargs.get("max_disk"), lambda v: parse_size("max_disk", v, labels)),
        fake_root=_bool("fake_root", kwargs.get("fake_root", False), labels),
        hostname=_optional(kwargs.get("hostname"), lambda v: _hostname(v, labels)),
        no_coredump=_bool("no_coredump", kwargs.get("no_coredump", False), labels),
        random_seed=_optional(kwargs.get("random_seed"), lambda v: _seed(v, labels)),
        time_start=_optional(kwargs.get("time_start"), lambda v: _time_start(v, labels)),
        no_randomize_memory=_bool("no_randomize_memory", kwargs.get("no_randomize_memory", False), labels),
        deterministic_dirs=_bool("deterministic_dirs", kwargs.get("deterministic_dirs", False), labels),
        cpu_cores=_optional(kwargs.get("cpu_cores"), lambda v: _cpu_list("cpu_cores", v, labels)),
        num_cpus=_optional(kwargs.get("num_cpus"), lambda v: _bounded_int("num_cpus", v, CPUS_MAX, labels)),
        cpu=_optional(kwargs.get("cpu"), lambda v: _bounded_int("cpu", v, 100 * len(os.sched_getaffinity(0)),
                                                                 labels)),
    )
    if values["fake_root"]:
        if chroot is None:
            raise _err("fake_root", labels, "needs an emulated root (--root)")
        if values["workdir"] is not None:
            raise _err("fake_root", labels, "is not supported with a workdir (README \"Fake root\")")
        if chroot.rstrip("/") == "":
            raise _err("fake_root", labels, "needs a root other than / (its record lies next to the root)")
        record = chroot.rstrip("/") + ".sandlock-fakeroot"  # _fakeroot.record_dir: out of the command's reach
        for _, host, _ in mounts:
            if record == host or record.startswith(host.rstrip("/") + "/"):
                raise _err("fake_root", labels, f"its record {record} would be in reach of --fs-mount {host}")
    values.update(_network(kwargs, labels))
    if values["workdir"] is not None:
        values["fs_writable"] = _with_workdir(values["fs_writable"], values["workdir"], chroot)
    if values["workdir"] is None:
        for name in ("on_exit", "on_error", "max_disk"):
            if values[name] is not None:
                raise _err(name, labels, "needs a workdir")
        if values["dry_run"]:
            raise _err("dry_run", labels, "needs a workdir")
    return Policy(labels, **values)


def _network(kwargs: Mapping[str, object], labels: Mapping[str, str]) -> Dict[str, Tuple[str, ...]]:
    names = ("net_allow", "net_deny", "net_allow_bind", "net_deny_bind")
    if all(kwargs.get(name) in (None, (), []) for name in names):
        return {}
    from . import _netpolicy  # only policies that name the network parse specs (CLI start-up)
    raw: List[Any] = [kwargs.get(name) or () for name in names]
    return dict(zip(names, _netpolicy.validate(raw[0], raw[1], raw[2], raw[3], labels=dict(labels))))


# --- field validators ------------------------------------------------------------

def _err(name: str, labels: Mapping[str, str], message: str) -> PolicyError:
    return PolicyError(f"{labels.get(name, name)}: {message}")


def _optional(value: object, convert: Callable[[Any], Any]) -> Any:
    return None if value is None else convert(value)


def _bool(name: str, value: object, labels: Mapping[str, str]) -> bool:
    if not isinstance(value, bool):
        raise _err(name, labels, f"expected True or False, got {value!r}")
    return value


def _positive_int(name: str, value: object, labels: Mapping[str, str]) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _err(name, labels, f"expected a positive integer, got {value!r}")
    if value <= 0:
        raise _err(name, labels, f"must be a positive integer, got {value}")
    if value > INT_MAX:
        raise _err(name, labels, f"{value} is too large (at most {INT_MAX})")
    return value


def _positive_number(name: str, value: object, labels: Mapping[str, str]) -> float:
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise _err(name, labels, f"expected a number of seconds, got {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _err(name, labels, f"expected a number of seconds, got {value!r}")
    if not value > 0 or value != value or value == float("inf"):
        raise _err(name, labels, f"must be a positive number of seconds, got {value}")
    return float(value)


def _one_path(name: str, value: object, labels: Mapping[str, str]) -> str:
    try:
        raw = os.fspath(value)  # type: ignore[arg-type,call-overload]
    except TypeError:
        raise _err(name, labels, f"expected a path, got {value!r}") from None
    text = os.fsdecode(raw)
    if not text or "\0" in text:
        raise _err(name, labels, f"invalid path {text!r}")
    resolved = os.path.realpath(os.path.abspath(text))
    if not os.path.lexists(text) or not os.path.exists(resolved):
        raise _err(name, labels, f"{shown(text)}: No such file or directory")
    return resolved


def _paths(name: str, value: object, labels: Mapping[str, str]) -> Tuple[str, ...]:
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        value = [value]
    import _collections_abc  # collections.abc's classes, without importing collections (README "Start-up")
    if not isinstance(value, _collections_abc.Iterable):
        raise _err(name, labels, f"expected a list of paths, got {value!r}")
    out = []
    for item in value:
        path = _one_path(name, item, labels)
        if path not in out:
            out.append(path)
    return tuple(out)


def _directory(name: str, value: object, labels: Mapping[str, str]) -> str:
    path = _one_path(name, value, labels)
    if not os.path.isdir(path):
        raise _err(name, labels, f"{shown(os.fsdecode(os.fspath(value)))}: Not a directory")  # type: ignore[arg-type,call-overload]
    return path


def _workdir(value: object, chroot: Optional[str], labels: Mapping[str, str]) -> str:
    """The copy-on-write directory: an existing directory the caller may write;
    with an emulated root, the root itself or a directory inside it (host path)."""
    path = _directory("workdir", value, labels)
    if chroot is None and (path in ("/", "/dev", "/proc") or path.startswith(("/dev/", "/proc/"))):
        raise _err("workdir", labels, f"{path}: / , /dev and /proc cannot be a workdir without --root")
    if not os.access(path, os.W_OK | os.X_OK):
        raise _err("workdir", labels, f"{shown(os.fsdecode(os.fspath(value)))}: Permission denied (not writable)")  # type: ignore[arg-type,call-overload]
    if chroot is not None and not (path == chroot or path.startswith(chroot.rstrip("/") + "/")):
        raise _err("workdir", labels, f"{path}: not inside the root {chroot}")
    return path


def _with_workdir(writable: Tuple[str, ...], workdir: str, chroot: Optional[str]) -> Tuple[str, ...]:
    """A workdir is writable (its writes go to the layer, README "Copy-on-write workdir"):
    its path as the command sees it joins the write rules unless one already covers it."""
    if chroot is None:
        seen = workdir
    else:
        seen = "/" if workdir == chroot else "/" + os.path.relpath(workdir, chroot)
    if any(seen == w or seen.startswith(w.rstrip("/") + "/") for w in writable):
        return writable
    return writable + (seen,)


def _hostname(value: object, labels: Mapping[str, str]) -> str:
    """A host name uname(2) can carry (64 bytes) and a resolver would accept:
    letters, digits, '-', '_' and '.', starting with a letter or a digit."""
    import re  # where a policy is validated: import sandlock stays small
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", value):
        raise _err("hostname", labels, f"invalid host name {value!r} (1 to 64 letters, digits, '-', '_', '.', "
                                       "starting with a letter or a digit)")
    return value


def _seed(value: object, labels: Mapping[str, str]) -> int:
    """A seed: an integer from 0 to 2**64 - 1 (a decimal string on the command line)."""
    import re  # where a policy is validated: import sandlock stays small
    if isinstance(value, str) and re.fullmatch(r"[0-9]{1,20}", value.strip()):
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise _err("random_seed", labels, f"invalid seed {value!r} (an integer from 0 to 2**64-1)")
    return value


def _time_start(value: object, labels: Mapping[str, str]) -> int:
    """Where the wall clock starts, in ns since the epoch: a Unix time (a number, or its
    decimal spelling) or an ISO 8601 date ("2000-01-01", "2000-01-01T12:00:00+02:00";
    UTC unless it names an offset), from 1970 to 9999."""
    import re  # where a policy is validated: import sandlock stays small
    import datetime
    seconds: Union[int, float, None] = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value
    elif isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"[0-9]{1,12}(\.[0-9]{1,9})?", text):
            seconds = float(text) if "." in text else int(text)
        else:
            when: Optional[datetime.datetime] = None
            try:
                when = datetime.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
            except ValueError:
                when = None
            if when is not None:
                if when.tzinfo is None:
                    when = when.replace(tzinfo=datetime.timezone.utc)
                seconds = when.timestamp()
    if seconds is None or not 0 <= seconds < 253402300800:  # 10000-01-01
        raise _err("time_start", labels, f"invalid start time {value!r} (a Unix time or an ISO 8601 date, "
                                         "e.g. 2000-01-01T00:00:00Z)")
    return int(seconds) * 10**9 if isinstance(seconds, int) else round(seconds * 10**9)
CPUS_MAX = 1024  # glibc's CPU_SETSIZE: what sched_getaffinity(2) callers size their masks for


def _bounded_int(name: str, value: object, most: int, labels: Mapping[str, str]) -> int:
    number = _positive_int(name, value, labels)
    if number > most:
        raise _err(name, labels, f"{number} is too large (at most {most})")
    return number


def _cpu_list(name: str, value: object, labels: Mapping[str, str]) -> Tuple[int, ...]:
    """CPU numbers, as a list like "0,2-3" (taskset -c) or a list of ints; each one the
    caller may run on itself (its own affinity: sandlock cannot hand out more)."""
    import re  # where a policy is validated: import sandlock stays small
    numbers: List[int] = []
    if isinstance(value, str):
        for part in value.split(","):
            match = re.fullmatch(r"\s*(\d{1,4})\s*(?:-\s*(\d{1,4})\s*)?", part)
            if not match or (match.group(2) is not None and int(match.group(2)) < int(match.group(1))):
                raise _err(name, labels, f"invalid CPU list {value!r} (use numbers and ranges: 0,2-3)")
            first = int(match.group(1))
            numbers.extend(range(first, int(match.group(2) or first) + 1))
    elif isinstance(value, (list, tuple)) and value:
        for item in value:
            if isinstance(item, bool) or not isinstance(item, int) or item < 0:
                raise _err(name, labels, f"expected CPU numbers, got {item!r}")
            numbers.append(item)
    else:
        raise _err(name, labels, f"expected a CPU list like \"0,2-3\", got {value!r}")
    mine = os.sched_getaffinity(0)
    for cpu in numbers:
        if cpu not in mine:
            raise _err(name, labels, f"CPU {cpu} is not one this process may use ({_cpu_ranges(sorted(mine))})")
    return tuple(sorted(set(numbers)))


def _cpu_ranges(cpus: Sequence[int]) -> str:
    """0,2-3 for (0, 2, 3): the kernel's list format (/sys/devices/system/cpu/online)."""
    out: List[str] = []
    for cpu in cpus:
        if out and cpus[cpus.index(cpu) - 1] == cpu - 1:
            out[-1] = out[-1].split("-")[0] + f"-{cpu}"
        else:
            out.append(str(cpu))
    return ",".join(out)


def _choice(name: str, value: object, choices: Sequence[str], labels: Mapping[str, str]) -> str:
    if value not in choices:
        raise _err(name, labels, f"expected one of {', '.join(choices)}, got {value!r}")
    return str(value)


def _env(value: object, labels: Mapping[str, str]) -> Tuple[Tuple[str, str], ...]:
    import _collections_abc  # as in _paths
    if isinstance(value, _collections_abc.Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)):
        items = []
        for entry in value:
            if not isinstance(entry, str) or "=" not in entry:
                raise _err("env", labels, f"expected KEY=VALUE, got {entry!r}")
            key, _, val = entry.partition("=")
            items.append((key, val))
    else:
        raise _err("env", labels, f"expected a mapping or KEY=VALUE strings, got {value!r}")
    for key, val in items:
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise _err("env", labels, f"invalid variable name {key!r}")
        if not isinstance(val, str) or "\0" in val:
            raise _err("env", labels, f"invalid value for {key}: {val!r}")
    return tuple(items)


def _names(name: str, value: object, labels: Mapping[str, str]) -> Tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise _err(name, labels, f"expected a list of syscall names, got {value!r}")
    for item in value:
        # [a-z_][a-z0-9_]*, without re (README "Start-up")
        if not isinstance(item, str) or not item or item[0] in _DIGITS or not set(item) <= _NAME_CHARS:
            raise _err(name, labels, f"invalid syscall name {item!r}")
    if value:
        from . import _syscalls
        unknown = sorted(set(value) - _syscalls.any_arch_names())
        if unknown:
            raise _err(name, labels, f"unknown syscall name {unknown[0]!r}")
    return tuple(value)


def child_environment(policy: Policy, base: Mapping[str, str], overrides: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment the command gets: base (or its clean subset) plus --env."""
    if policy.clean_env:
        env = {k: base[k] for k in CLEAN_ENV_KEEP if k in base}
    else:
        env = dict(base)
    if policy.chroot is not None:
        from . import _rootpolicy
        env["PATH"] = GUEST_PATH
        env["HOME"] = _rootpolicy.guest_home(policy.chroot, os.getuid())
    env.update(policy.env)
    if overrides:
        env.update(overrides)
    return env


def normalise_argv(argv: Sequence[object]) -> Tuple[bytes, ...]:
    """argv as bytes, refusing what execve(2) cannot take."""
    if isinstance(argv, (str, bytes)) or not argv:
        raise PolicyError(f"argv: expected a non-empty list of strings, got {argv!r}")
    out = []
    for index, arg in enumerate(argv):
        if not isinstance(arg, (str, bytes, os.PathLike)):
            raise PolicyTypeError(f"argv[{index}]: expected str, bytes or a path, got {type(arg).__name__} ({arg!r})")
        raw = os.fsencode(os.fspath(arg))
        if b"\0" in raw:
            raise PolicyError(f"argv: embedded NUL in {arg!r}")
        out.append(raw)
    return tuple(out)
