"""The code keeps the layout README's module map describes (issue-free checks on the source)."""

import re
from pathlib import Path

from sandlock import _errors

REPO = Path(_errors.__file__).resolve().parent
MODULES = sorted(REPO.glob("_*.py")) + [REPO / "sandlock.py"]


def _matches(pattern: str, skip: str) -> list:
    found = []
    for path in MODULES:
        if path.name == skip:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(pattern, line):
                found.append(f"{path.name}:{number}: {line.strip()}")
    return found


def test_an_errno_of_sandlock_s_own_is_made_by_errors_os_error_only():
    assert _matches(r"OSError\(errno\.|OSError\(\w+, os\.strerror", "_errors.py") == []


def test_proc_pid_stat_and_status_are_read_by_notif_only():
    assert _matches(r"""/(stat|status)["']""", "_notif.py") == []
