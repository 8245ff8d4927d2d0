"""The emulated root at policy time: a policy's paths checked in guest terms, before anything is forked.

`--root` names a directory that is the command's "/" (docs/design.md
"Emulated root"); `-r/-w/--fs-deny`, `--cwd` and `--fs-mount` then name
virtual paths.  Here they are checked against the image (resolved inside it,
openat2 RESOLVE_IN_ROOT from an fd of the root, no magic links) and turned
into host paths where the policy needs one; files of the image that sandlock
reads itself (/etc/passwd for HOME) are read the same way.  The CLI imports
this module alone: the run-time resolver is _rootfs.
"""

from __future__ import annotations

import _collections_abc  # collections.abc without importing collections (README "Start-up")
import os
import posixpath
import stat
TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Iterable, List, Mapping, Optional, Sequence, Tuple


if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")
from . import _structs as S
from . import _syscalls
from ._errors import PolicyError, PolicyTypeError, shown

IN_ROOT = S.RESOLVE_IN_ROOT | S.RESOLVE_NO_MAGICLINKS


def _err(name: str, labels: Mapping[str, str], message: str) -> PolicyError:
    return PolicyError(f"{labels.get(name, name)}: {message}")


def _virtual(name: str, value: object, labels: Mapping[str, str]) -> str:
    try:
        text = os.fsdecode(os.fspath(value))  # type: ignore[arg-type,call-overload]
    except TypeError:
        raise _err(name, labels, f"expected a path, got {value!r}") from None
    if not text or "\0" in text:
        raise _err(name, labels, f"invalid path {text!r}")
    if not text.startswith("/"):
        raise _err(name, labels, f"{text}: must be an absolute path inside the root")
    return posixpath.normpath(text).replace("//", "/")


def parse_mounts(name: str, value: object, labels: Mapping[str, str]) -> Tuple[Tuple[str, str, bool], ...]:
    """--fs-mount VIRT:HOST[:ro] (or a {virt: host} mapping) -> ((virt, host realpath, ro), ...)."""
    if isinstance(value, _collections_abc.Mapping):
        entries = [f"{os.fsdecode(os.fspath(k))}:{os.fsdecode(os.fspath(v))}" for k, v in value.items()]
    elif isinstance(value, (str, bytes)):
        entries = [os.fsdecode(value)]
    elif isinstance(value, (list, tuple)):
        entries = [_mount_entry(name, v, labels) for v in value]
    else:
        raise _err(name, labels, f"expected VIRT:HOST[:ro] strings, got {value!r}")
    out: List[Tuple[str, str, bool]] = []
    for entry in entries:
        virt, sep, rest = entry.partition(":")
        readonly = False
        if rest.endswith(":ro"):
            rest, readonly = rest[:-3], True
        elif rest.endswith(":rw"):
            rest = rest[:-3]
        if not sep or not virt or not rest:
            raise _err(name, labels, f"expected VIRT:HOST[:ro], got {entry!r}")
        virt = _virtual(name, virt, labels)
        if virt == "/" or virt == "/proc" or virt.startswith(("/proc/", "/dev/")) or virt == "/dev":
            raise _err(name, labels, f"{virt}: cannot mount over / , /proc or /dev")
        host = os.path.realpath(os.path.abspath(rest))
        if not os.path.isdir(host):
            why = "Not a directory (only directories can be mounted)" if os.path.exists(host) else "No such file or directory"
            raise _err(name, labels, f"{shown(rest)}: {why}")
        if any(v == virt for v, _, _ in out):
            raise _err(name, labels, f"{virt}: mounted twice")
        out.append((virt, host, readonly))
    return tuple(out)


def _mount_entry(name: str, value: object, labels: Mapping[str, str]) -> str:
    """One mount: "VIRT:HOST[:ro]", or a (virt, host) or (virt, host, "ro"/"rw") tuple."""
    if isinstance(value, tuple) and len(value) in (2, 3):
        if len(value) == 3 and value[2] not in ("ro", "rw"):
            raise _err(name, labels, f"expected (VIRT, HOST[, 'ro' or 'rw']), got {value!r}")
        try:
            virt, host = (os.fsdecode(os.fspath(v)) for v in value[:2])
        except TypeError:
            raise PolicyTypeError(f"{labels.get(name, name)}: expected paths in {value!r}") from None
        return f"{virt}:{host}" + (f":{value[2]}" if len(value) == 3 else "")
    try:
        return os.fsdecode(os.fspath(value))  # type: ignore[arg-type,call-overload]
    except TypeError:
        raise PolicyTypeError(f"{labels.get(name, name)}: expected \"VIRT:HOST[:ro]\" or a (VIRT, HOST) tuple, "
                              f"got {value!r}") from None


def host_path(root: str, mounts: Sequence[Tuple[str, str, bool]], virt: str) -> Optional[str]:
    """The host path of the existing guest path `virt` (symlinks resolved inside the root), or None."""
    for v, host, _ in sorted(mounts, key=lambda m: -len(m[0])):
        if virt == v or virt.startswith(v + "/"):
            base, rest = host, virt[len(v):].lstrip("/") or "."
            break
    else:
        base, rest = root, virt.lstrip("/") or "."
    try:
        dirfd = os.open(base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = _syscalls.openat2(dirfd, os.fsencode(rest), os.O_PATH | os.O_CLOEXEC, 0, IN_ROOT)
    except OSError:
        return None
    finally:
        os.close(dirfd)
    try:
        return os.fsdecode(os.readlink(f"/proc/self/fd/{fd}"))
    finally:
        os.close(fd)


def guest_paths(root: str, mounts: Sequence[Tuple[str, str, bool]], name: str, value: object,
                labels: Mapping[str, str]) -> Tuple[str, ...]:
    """-r/-w/--fs-deny inside a root: virtual paths that must exist there."""
    if isinstance(value, (str, bytes)) or hasattr(value, "__fspath__"):
        value = [value]
    if not isinstance(value, _collections_abc.Iterable):
        raise _err(name, labels, f"expected a list of paths, got {value!r}")
    out: List[str] = []
    for item in value:
        virt = _virtual(name, item, labels)
        if not _is_special(virt) and host_path(root, mounts, virt) is None:
            raise _err(name, labels, f"{virt}: No such file or directory inside the root")
        if virt not in out:
            out.append(virt)
    return tuple(out)


def guest_directory(root: str, mounts: Sequence[Tuple[str, str, bool]], name: str, value: object,
                    labels: Mapping[str, str]) -> str:
    virt = _virtual(name, value, labels)
    host = host_path(root, mounts, virt)
    if host is None:
        raise _err(name, labels, f"{virt}: No such file or directory inside the root")
    if not os.path.isdir(host):
        raise _err(name, labels, f"{virt}: Not a directory")
    return virt


GUEST_FILE_MAX = 1 << 20  # bytes of a file of the image sandlock reads itself (read_guest_file)


def read_guest_file(root: str, virt: str, limit: int = GUEST_FILE_MAX) -> Optional[bytes]:
    """The content of the image's regular file `virt`, read by sandlock itself, or None.

    The image is untrusted: the file is resolved inside it (openat2
    RESOLVE_IN_ROOT from an fd of the root, no magic links) and opened
    O_NONBLOCK, so a FIFO cannot stall the start; anything but a regular file
    (a device such as /dev/zero, a FIFO, a directory) and a file larger than
    `limit` bytes give None, as does any error.
    """
    try:
        top = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fd = _syscalls.openat2(top, os.fsencode(virt.lstrip("/") or "."),
                               os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC, 0, IN_ROOT)
    except OSError:
        return None
    finally:
        os.close(top)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return None
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                return data
            data += chunk
        return None  # it grew past the limit while we read
    except OSError:
        return None
    finally:
        os.close(fd)


def guest_home(root: str, uid: int) -> str:
    """HOME inside the root: the guest's passwd entry for uid if that directory exists, else "/"
    (also when /etc/passwd is not a regular file of at most GUEST_FILE_MAX bytes)."""
    passwd = read_guest_file(root, "/etc/passwd")
    for line in (passwd or b"").split(b"\n"):
        fields = line.split(b":")
        if len(fields) >= 6 and fields[2] == str(uid).encode():
            home = os.fsdecode(fields[5])
            if home.startswith("/") and host_path(root, (), home):
                return home
            break
    return "/"


def _is_special(virt: str) -> bool:
    return virt == "/proc" or virt.startswith("/proc/") or virt == "/dev" or virt.startswith("/dev/")
