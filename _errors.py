"""Exceptions of sandlock.

A leaf module: under ``python -m sandlock`` the file sandlock.py runs as
``__main__``, so the classes live here, imported by everything else, and
there is only ever one copy of each.
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (README "Start-up")
if TYPE_CHECKING:
    from typing import Any, Optional

if __name__.rpartition(".")[0].rpartition(".")[2] != "sandlock":  # README "Installing and vendoring"
    raise ImportError(f"{__name__} is part of sandlock: import sandlock, not {__name__} (one copy of each module)")


_ESCAPES = {0x07: "\\a", 0x08: "\\b", 0x09: "\\t", 0x0A: "\\n", 0x0B: "\\v", 0x0C: "\\f", 0x0D: "\\r",
            0x22: '\\"', 0x5C: "\\\\"}


def quote_path(path: str) -> str:
    """A path as one line of printable ASCII, the way git's core.quotePath prints it.

    A name of printable ASCII (0x20-0x7E) without a double quote or a backslash,
    and not starting or ending with a space, is printed as it is.  Any other
    name is wrapped in double quotes, with \\a \\b \\t \\n \\v \\f \\r, \\" and \\\\ for
    those bytes and \\ooo (three octal digits) for every other byte below 0x20,
    0x7F and above: control characters, escape sequences and non-UTF-8 bytes
    (the name's bytes, os.fsencode) never reach the terminal raw.
    """
    raw = os.fsencode(path)
    if raw and all(0x20 <= b < 0x7F and b not in _ESCAPES for b in raw) and raw[:1] != b" " and raw[-1:] != b" ":
        return path
    out = []
    for b in raw:
        if b in _ESCAPES:
            out.append(_ESCAPES[b])
        elif 0x20 <= b < 0x7F:
            out.append(chr(b))
        else:
            out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def shown(name: str) -> str:
    """A name in a one-line message: as it is when it is printable text (UTF-8 letters
    included), else quoted like quote_path (empty, control characters, non-UTF-8 bytes)."""
    if name and name.isprintable() and name.strip() == name and '"' not in name and "\\" not in name:
        return name
    return quote_path(name)


def os_error(code: int, why: Optional[str] = None, filename: Optional[object] = None) -> OSError:
    """The one way sandlock makes an OSError: errno `code` with the C library's message,
    as the kernel's own errors come, or sandlock's own reason `why`; `filename` as OSError's."""
    if filename is not None:
        return OSError(code, why or os.strerror(code), filename)
    return OSError(code, why or os.strerror(code))


class SandlockError(Exception):
    """Base class of every error sandlock raises itself."""


class PolicyError(SandlockError, ValueError):
    """A policy value is wrong; raised before anything is forked.

    The message names the field (API keyword or CLI flag) and the value.
    """


class PolicyTypeError(PolicyError, TypeError):
    """A value of the wrong type (an int in env, a tuple where a path goes): caught as
    PolicyError or as the TypeError a Python user expects; the message names the field."""


class SetupError(SandlockError, OSError):
    """The sandbox could not be set up (kernel feature missing, a step failed).

    Attributes:
        step: which launch step failed (e.g. "landlock_restrict_self").
        hint: an optional line telling the user what to do.
    """

    def __init__(self, errno_: int, message: str, step: str = "", hint: str = "") -> None:
        super().__init__(errno_, message)
        self.step = step
        self.hint = hint

    def __str__(self) -> str:
        return self.strerror or ""


class ExecError(SandlockError, OSError):
    """The command could not be executed (not found: 127, not executable: 126)."""

    def __init__(self, errno_: int, message: str, command: str) -> None:
        super().__init__(errno_, message, command)
        self.command = command

    @property
    def exit_code(self) -> int:
        import errno
        return 127 if self.errno == errno.ENOENT else 126

    def __str__(self) -> str:
        return self.strerror or ""


class CommandNotFoundError(ExecError, FileNotFoundError):
    """The command was not found (exit 127): caught as ExecError or FileNotFoundError."""


class CommandNotExecutableError(ExecError, PermissionError):
    """The command was found but may not be executed (EACCES, exit 126): caught as
    ExecError or PermissionError."""


def exec_error(errno_: int, message: str, command: str) -> ExecError:
    """The ExecError for an exec that failed with errno_, of the class subprocess users catch."""
    import errno
    cls = {errno.ENOENT: CommandNotFoundError, errno.EACCES: CommandNotExecutableError,
           errno.EPERM: CommandNotExecutableError}.get(errno_, ExecError)
    return cls(errno_, message, command)


def _called_process_error() -> type:
    import subprocess

    class SandboxCalledProcessError(SandlockError, subprocess.CalledProcessError):
        """Raised by ``run(check=True)`` when the command does not succeed."""

        def __init__(self, returncode: int, cmd: object, output: Optional[bytes] = None,
                     stderr: Optional[bytes] = None, reason: str = "") -> None:
            subprocess.CalledProcessError.__init__(self, returncode, cmd, output, stderr)  # type: ignore[arg-type]
            self.reason = reason

        def __str__(self) -> str:
            text = subprocess.CalledProcessError.__str__(self)
            return f"{text} ({self.reason})" if self.reason else text

    return SandboxCalledProcessError


def __getattr__(name: str) -> Any:
    # SandboxCalledProcessError subclasses subprocess.CalledProcessError;
    # importing subprocess costs the CLI's start-up ~5 ms, so the class is
    # made the first time the API asks for it (PEP 562).
    if name == "SandboxCalledProcessError":
        cls = _called_process_error()
        globals()[name] = cls
        return cls
    raise AttributeError(name)
