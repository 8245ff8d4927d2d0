"""Exceptions of sandlock.

A leaf module: under ``python -m sandlock`` the file sandlock.py runs as
``__main__``, so the classes live here, imported by everything else, and
there is only ever one copy of each.
"""

from __future__ import annotations

import os
from typing import Any, Optional


def os_error(code: int) -> OSError:
    """OSError(code) with the C library's message, as the kernel's own errors come."""
    return OSError(code, os.strerror(code))


class SandlockError(Exception):
    """Base class of every error sandlock raises itself."""


class PolicyError(SandlockError, ValueError):
    """A policy value is wrong; raised before anything is forked.

    The message names the field (API keyword or CLI flag) and the value.
    """


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


def _called_process_error() -> type:
    import subprocess

    class SandboxCalledProcessError(SandlockError, subprocess.CalledProcessError):
        """Raised by ``run(check=True)`` when the command does not succeed."""

        def __init__(self, returncode: int, cmd: object, output: Optional[bytes] = None,
                     stderr: Optional[bytes] = None, reason: str = "") -> None:
            subprocess.CalledProcessError.__init__(self, returncode, cmd, output, stderr)
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
