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


def test_closed_on_error_closes_the_fds_only_when_the_block_raises():
    import os

    import pytest

    from sandlock import _syscalls
    kept = os.open("/dev/null", os.O_RDONLY)
    with _syscalls.closed_on_error(kept):
        pass
    os.fstat(kept)  # still open
    os.close(kept)
    one, many = os.open("/dev/null", os.O_RDONLY), []
    with pytest.raises(ValueError):
        with _syscalls.closed_on_error(one):
            raise ValueError
    with pytest.raises(ValueError):
        with _syscalls.closed_on_error(many):
            many.extend((os.open("/dev/null", os.O_RDONLY), -1))
            raise ValueError
    for fd in (one, many[0]):
        with pytest.raises(OSError):
            os.fstat(fd)


def test_a_close_and_reraise_written_by_hand_says_why():
    """`except: os.close(fd); raise` is closed_on_error's job, except where its cost counts."""
    found = []
    for path in MODULES:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.match(r"\s*except\b[^:]*:", line) and "by hand" not in line:
                body = [b.strip() for b in lines[number + 1:number + 3]]
                if body[0].startswith("os.close(") and body[1] == "raise":
                    found.append(f"{path.name}:{number + 1}")
    assert found == []


def test_closed_after_closes_the_fd_however_the_block_ends():
    import os

    import pytest

    from sandlock import _syscalls
    ended, failed = os.open("/dev/null", os.O_RDONLY), os.open("/dev/null", os.O_RDONLY)
    with _syscalls.closed_after(ended):
        pass
    with pytest.raises(ValueError):
        with _syscalls.closed_after(failed):
            raise ValueError
    for fd in (ended, failed):
        with pytest.raises(OSError):
            os.fstat(fd)
