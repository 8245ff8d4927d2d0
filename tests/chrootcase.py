"""A bare chroot(8) of a root filesystem: the baseline the emulated root (`--root DIR`) is held to.

Used by tests that run the same command in a chroot and under ``sandlock --root`` and
compare what they give (tests/test_root_tools.py, tests/conformance/test_cpython.py).
Needs root (chroot, mount, unshare).

- ``copy_root(base, where)``: a private ``cp -a`` copy of a root, so each side
  writes into its own (as root, ``-w /`` changes the root itself);
- ``chroot_run(copy, inner, who, ...)``: runs ``inner`` (a command inside the root)
  in ``chroot COPY`` with ``/dev`` and ``/proc`` bind-mounted, in a private mount
  namespace (nothing stays mounted) and a private UTS namespace (a command that
  sets the hostname never changes the host's), as root or, for the unprivileged
  identity of the ``who`` fixture, as that user: ``setpriv`` inside the chroot,
  since chroot itself needs CAP_SYS_CHROOT.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Sequence

from conftest import Who, default_signals


def copy_root(base: Path, where: Path) -> Path:
    """A private copy of the root in a fresh directory under where (mode 0755, like "/")."""
    copy = Path(tempfile.mkdtemp(prefix="root-", dir=where))
    copy.chmod(0o755)
    subprocess.run(["cp", "-a", f"{base}/.", str(copy)], check=True)
    return copy


def remove_root(copy: Path) -> None:
    subprocess.run(["rm", "-rf", "--one-file-system", str(copy)], check=False)


def chroot_run(copy: Path, inner: Sequence[str], who: Who, *, timeout: float,
               errors: str = "replace") -> subprocess.CompletedProcess:
    """Run inner in a bare chroot of copy as who, stdin /dev/null; errors
    decodes its output ("surrogateescape" to compare it byte for byte with ``who.run``'s)."""
    argv = list(inner)
    if who.is_user:
        argv = ["/usr/bin/setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups", "--", *argv]
    script = 'mount --rbind /dev "$0/dev" && mount --bind /proc "$0/proc" && exec chroot "$0" "$@"'
    return subprocess.run(["unshare", "--mount", "--uts", "--propagation", "private", "/bin/sh", "-c", script,
                           str(copy), *argv], capture_output=True, text=True, errors=errors,
                          timeout=timeout, cwd="/", stdin=subprocess.DEVNULL,
                          preexec_fn=default_signals)  # as who.run starts sandlock (conftest)
