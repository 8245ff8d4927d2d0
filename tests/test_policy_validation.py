"""Bad policy values raise before anything is forked, naming the field (docs/design.md "Bad input").

Each case builds a Sandbox with one wrong value and, if construction does not
already raise, runs a command that would leave a marker file: the exception
must come first, and the marker must not exist.
"""

from __future__ import annotations

import os
import pathlib
from pathlib import Path
from typing import Any, Dict

import pytest

from conftest import SYSTEM_PATH

sandlock = pytest.importorskip("sandlock", reason="sandlock.py is not importable")

MISSING = "/nonexistent/sandlock-validation-probe"


def _expect_refusal(scratch: Path, run_kwargs: Dict[str, Any] = {}, **policy: Any) -> Exception:
    """Sandbox(**policy).run(touch marker, **run_kwargs) must raise before the command runs."""
    marker = scratch / "ran"
    with pytest.raises(Exception) as info:
        box = sandlock.Sandbox(fs_writable=[str(scratch)], **policy) if "fs_writable" not in policy \
            else sandlock.Sandbox(**policy)
        box.run(["sh", "-c", f"touch {marker}"], env={"PATH": SYSTEM_PATH}, **run_kwargs)
    assert not marker.exists(), "the command ran although the policy was invalid"
    exc = info.value
    assert isinstance(exc, (TypeError, ValueError, sandlock.SandlockError)), f"{type(exc).__name__}: {exc}"
    assert "Traceback" not in str(exc)
    return exc


def test_an_unknown_keyword_raises_naming_it(scratch: Path) -> None:
    exc = _expect_refusal(scratch, fs_readabel=["/usr"])
    assert "fs_readabel" in str(exc)


@pytest.mark.parametrize("field,value", [
    ("fs_readable", 5),
    ("fs_writable", 5),
    ("fs_denied", 3.5),
    ("fs_readable", [5]),
    ("max_processes", -1),
    ("max_processes", 0),
    ("max_processes", "many"),
    ("max_processes", True),
    ("max_memory", "12Q"),
    ("max_memory", -5),
    ("max_memory", [1]),
    ("max_open_files", -1),
    ("timeout", -1),
    ("timeout", "soon"),
    ("clean_env", "yes"),
    ("env", {"KEY": 1}),
    ("env", {"": "value"}),
    ("cwd", 5),
])
def test_a_wrong_value_raises_naming_the_field(scratch: Path, field: str, value: object) -> None:
    if field == "fs_writable":
        exc = _expect_refusal(scratch, fs_writable=value)
    else:
        exc = _expect_refusal(scratch, **{field: value})
    assert field in str(exc), f"message does not name {field}: {exc}"


@pytest.mark.parametrize("field", ["fs_readable", "fs_writable", "fs_denied", "cwd"])
def test_a_nonexistent_path_raises_naming_the_path(scratch: Path, field: str) -> None:
    value = MISSING if field == "cwd" else [MISSING]
    if field == "fs_writable":
        exc = _expect_refusal(scratch, fs_writable=[str(scratch), MISSING])
    else:
        exc = _expect_refusal(scratch, **{field: value})
    assert MISSING in str(exc), str(exc)


def test_a_bad_run_timeout_raises_before_the_command_runs(scratch: Path) -> None:
    exc = _expect_refusal(scratch, run_kwargs={"timeout": -1})
    assert "timeout" in str(exc)


def test_a_bad_run_cwd_raises_naming_the_path(scratch: Path) -> None:
    exc = _expect_refusal(scratch, run_kwargs={"cwd": MISSING})
    assert MISSING in str(exc)


def test_input_that_is_not_bytes_raises(scratch: Path) -> None:
    exc = _expect_refusal(scratch, run_kwargs={"input": "text, not bytes"})
    assert "input" in str(exc)


@pytest.mark.parametrize("argv", [[], "echo hi", ["echo", "nul\0byte"]], ids=["empty", "a string", "nul"])
def test_a_bad_argv_raises(argv: object) -> None:
    with pytest.raises((TypeError, ValueError, sandlock.SandlockError)):
        sandlock.Sandbox().run(argv)  # type: ignore[arg-type]


def test_paths_accept_pathlike_and_bytes(scratch: Path) -> None:
    class Custom(os.PathLike):
        def __fspath__(self) -> str:
            return str(scratch)

    for value in (pathlib.Path(scratch), pathlib.PurePosixPath(scratch), Custom(), os.fsencode(str(scratch))):
        box = sandlock.Sandbox(fs_writable=[value], fs_readable=["/usr", "/lib", "/bin", "/etc", value])
        r = box.run(["sh", "-c", f"echo ok > {scratch}/f; cat {scratch}/f"], env={"PATH": SYSTEM_PATH})
        assert r.stdout == b"ok\n", (type(value).__name__, r.stderr)
        (scratch / "f").unlink()


def test_a_valid_policy_is_accepted_with_sizes_in_several_spellings(scratch: Path) -> None:
    for size in ("512M", "1G", "64MiB", 1 << 30):
        sandlock.Sandbox(max_memory=size)
    sandlock.Sandbox(max_processes=5, max_open_files=64, timeout=2.5, clean_env=True, env={"A": "b"}, cwd=scratch)
