"""Helpers of the CLI integration tests (tests/test_cli_*.py, `python -m sandlock`).

Every test runs real programs under the CLI, as root and as the unprivileged
user (the `who` fixture), and asserts what a user sees: exit status, stdout,
the one-line message on stderr, errno, and the files on disk.  Nothing there
confines the test runner itself.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path
from typing import Dict, List

import pytest

SECRET = "TOPSECRET-7f3a9c"


def one_line(stderr: str) -> str:
    """stderr must be exactly one line; return it."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    return lines[0]


def parse_probes(stdout: str) -> Dict[str, List[int]]:
    """'NAME rc errno' lines of the C helpers, by NAME."""
    out: Dict[str, List[int]] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and re.fullmatch(r"-?\d+", fields[1]) and fields[2].isdigit():
            out[fields[0]] = [int(fields[1]), int(fields[2])]
    return out


def errname(n: int) -> str:
    return errno.errorcode.get(n, str(n))


@pytest.fixture
def data(scratch: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """scratch/data with pub (PUBLIC) and sec (the secret), sub/, and a writable scratch/w."""
    d = who.make_dir(scratch / "data")
    who.make_file(d / "pub", "PUBLIC\n")
    who.make_file(d / "sec", SECRET + "\n")
    who.make_dir(d / "sub")
    who.make_dir(scratch / "w", 0o777)
    return d
