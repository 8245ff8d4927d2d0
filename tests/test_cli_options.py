"""`python -m sandlock`: --check, --version, --help, and sandlock's own failures (125,
126, 127, one line, nothing changed).  Helpers and the idea of these tests:
tests/clicase.py.
"""

from __future__ import annotations

import json
import platform
import re
from pathlib import Path
from typing import List

import pytest

from conftest import SYSTEM_READ, kernel_landlock_abi, tree_snapshot
from clicase import one_line


# --- --check, --version, --help ---------------------------------------------------------------

def test_check_exits_0_and_names_the_landlock_abi(who) -> None:
    r = who.run(["--check"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"landlock.?abi", r.stdout, re.IGNORECASE), r.stdout
    assert str(kernel_landlock_abi()) in r.stdout


def test_check_json_prints_valid_json_naming_the_landlock_abi(who) -> None:
    r = who.run(["--check", "--json"])
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert isinstance(report, dict)
    flat = {re.sub(r"[^a-z0-9]", "", k.lower()): v for k, v in report.items()}
    assert flat.get("landlockabi") == kernel_landlock_abi(), report
    for feature in ("notif", "addfd", "openat2", "pidfd", "closerange", "tiocsti"):
        assert any(feature in key for key in flat), f"--check --json does not report {feature}: {sorted(report)}"


def test_check_says_who_enforces_the_network_policy(who) -> None:
    report = json.loads(who.run(["--check", "--json"]).stdout)
    kernel_tcp = "Landlock refuses the command's own TCP connect and bind"
    assert (kernel_tcp in report["network_kernel"]) is (kernel_landlock_abi() >= 4), report
    assert report["landlock_net"] is (kernel_landlock_abi() >= 4)
    assert "connect" in report["network_supervisor"] and "on behalf" in report["network_supervisor"]
    assert "NETLINK_ROUTE" in report["network_supervisor"], report
    text = who.run(["--check"]).stdout
    assert "network_kernel" in text and "network_supervisor" in text


def test_version_prints_one_line_with_python_kernel_and_landlock_abi(who) -> None:
    r = who.run(["--version"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    assert re.search(r"Python 3\.\d+", lines[0]), lines[0]
    assert platform.release() in lines[0]
    m = re.search(r"Landlock ABI\D{0,3}(\d+)", lines[0], re.IGNORECASE)
    assert m and int(m.group(1)) == kernel_landlock_abi(), lines[0]


def test_help_exits_0_and_has_an_exit_status_section(who) -> None:
    r = who.run(["--help"])
    assert r.returncode == 0, r.stderr
    assert "EXIT STATUS" in r.stdout
    for flag in ("--fs-read", "--fs-write", "--fs-deny", "--timeout", "--max-memory", "--check"):
        assert flag in r.stdout


# --- sandlock's own failures: 125, 126, 127, one line, nothing changed ------------------------------

def test_a_nonexistent_command_exits_127_with_one_line(who, scratch: Path) -> None:
    before = tree_snapshot(scratch)
    r = who.run(["-w", str(scratch), "--", "nosuchcmd", "arg"])
    assert r.returncode == 127, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("sandlock: nosuchcmd: "), line
    assert "not found" in line
    assert r.stdout == ""
    assert tree_snapshot(scratch) == before


def test_a_non_executable_file_exits_126(who, scratch: Path) -> None:
    script = who.make_file(scratch / "bin" / "script.sh", "#!/bin/sh\ntouch " + str(scratch / "ran") + "\n", 0o644)
    before = tree_snapshot(scratch)
    r = who.run([*SYSTEM_READ, "-w", str(scratch), "--", str(script)])
    assert r.returncode == 126, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("sandlock: "), line
    assert str(script) in line and "Permission denied" in line
    assert r.stdout == ""
    assert tree_snapshot(scratch) == before


@pytest.mark.parametrize("bad,names", [
    (["-r", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["-w", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["--fs-deny", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["--max-memory", "12Q"], "--max-memory"),
    (["-m", "12Q"], "--max-memory"),
    (["--max-processes", "-3"], "--max-processes"),
    (["--max-open-files", "many"], "--max-open-files"),
    (["--timeout", "soon"], "--timeout"),
    (["--cwd", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["--no-such-option"], "--no-such-option"),
    (["--fs-re", "/usr"], "--fs-re"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_a_bad_option_exits_125_naming_it_and_runs_nothing(who, scratch: Path, bad: List[str], names: str) -> None:
    before = tree_snapshot(scratch)
    r = who.run(["-w", str(scratch), *bad, "--", "sh", "-c", f"touch {scratch}/ran"])
    assert r.returncode == 125, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("sandlock: "), line
    assert names in line
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert tree_snapshot(scratch) == before
