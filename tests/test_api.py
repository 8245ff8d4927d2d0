"""Integration tests of the Python API: sandlock.Sandbox(...).run(...) (docs/design.md "Interfaces", "Launch").

The API forks: the policy only ever applies to the child, so most tests call
it in the test process itself, and an autouse fixture checks after each test
that the test process was not confined by accident.  The tests named
"..._as_root_and_as_the_user" run a small script as both identities.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, Iterator

import pytest

from conftest import SYSTEM_DIRS, SYSTEM_PATH, SYSTEM_PYTHON, find_processes, kill_marked, unique_marker, wait_for

SECRET = b"TOPSECRET-api-51c2"

sandlock = pytest.importorskip("sandlock", reason="sandlock.py is not importable")


def _status_fields() -> Dict[str, str]:
    with open("/proc/self/status") as f:
        return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)


@pytest.fixture(autouse=True)
def caller_stays_unconfined(session_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The command is confined, never the caller: no seccomp, no NO_NEW_PRIVS, files still readable."""
    monkeypatch.setenv("PATH", SYSTEM_PATH)
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    probe = session_dir / "caller-probe"
    probe.write_bytes(b"caller\n")
    yield
    fields = _status_fields()
    assert fields.get("Seccomp", "0").strip() == "0", "the test process got a seccomp filter"
    assert fields.get("NoNewPrivs", "0").strip() == "0", "the test process got NO_NEW_PRIVS"
    assert probe.read_bytes() == b"caller\n", "the test process lost access to its own files"


@pytest.fixture
def data(scratch: Path) -> Path:
    d = scratch / "data"
    d.mkdir()
    (d / "pub").write_bytes(b"PUBLIC\n")
    (d / "sec").write_bytes(SECRET + b"\n")
    return d


def test_run_returns_bytes_and_a_completed_process(scratch: Path) -> None:
    r = sandlock.Sandbox(fs_writable=[str(scratch)]).run(["echo", "hi"])
    assert isinstance(r, subprocess.CompletedProcess)
    assert r.stdout == b"hi\n"
    assert r.stderr == b""
    assert r.exit_code == 0 and r.returncode == 0
    assert r.success is True and r.timed_out is False and r.signal is None
    assert list(r.args) == ["echo", "hi"]


def test_paths_accept_pathlib_paths(scratch: Path) -> None:
    work = scratch / "work"
    work.mkdir()
    r = sandlock.Sandbox(fs_writable=[work]).run(["sh", "-c", "pwd; echo made > f"], cwd=work)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == f"{work}\n".encode()
    assert (work / "f").read_bytes() == b"made\n"


def test_the_command_is_confined_but_the_caller_is_not(data: Path) -> None:
    r = sandlock.Sandbox().run(["cat", str(data / "sec")])
    assert r.exit_code == 1
    assert b"Permission denied" in r.stderr
    assert SECRET not in r.stdout
    assert (data / "sec").read_bytes() == SECRET + b"\n"


def test_fs_denied_refuses_a_file_the_readable_rules_cover(data: Path) -> None:
    box = sandlock.Sandbox(fs_readable=[*SYSTEM_DIRS, data], fs_denied=[data / "sec"])
    r = box.run(["sh", "-c", f"cat {data}/pub {data}/sec"])
    assert r.exit_code == 1
    assert r.stdout == b"PUBLIC\n"
    assert b"Permission denied" in r.stderr


def test_a_death_by_signal_gives_a_negative_returncode_and_the_signal() -> None:
    r = sandlock.Sandbox().run(["sh", "-c", "kill -KILL $$"])
    assert r.returncode == -signal.SIGKILL
    assert r.signal == signal.SIGKILL
    assert r.exit_code == 128 + signal.SIGKILL
    assert r.success is False and r.timed_out is False


def test_timeout_sets_timed_out_and_exit_code_124() -> None:
    marker = unique_marker()
    start = time.monotonic()
    try:
        r = sandlock.Sandbox().run(["sh", "-c", f"sleep {marker} & sleep {marker}"], timeout=1)
        assert time.monotonic() - start < 4
        assert r.timed_out is True
        assert r.exit_code == 124
        assert r.success is False
        assert wait_for(lambda: not find_processes(marker), 1.0), "a sleep survived the timeout"
    finally:
        kill_marked(marker)


def test_a_policy_timeout_applies_to_every_run() -> None:
    r = sandlock.Sandbox(timeout=1).run(["sleep", "30"])
    assert r.timed_out is True and r.exit_code == 124


def test_input_reaches_stdin() -> None:
    payload = b"hello\x00world\n" * 1000
    r = sandlock.Sandbox().run(["cat"], input=payload)
    assert r.exit_code == 0, r.stderr
    assert r.stdout == payload


def test_check_true_raises_a_called_process_error_subclass() -> None:
    box = sandlock.Sandbox()
    with pytest.raises(subprocess.CalledProcessError) as info:
        box.run(["sh", "-c", "echo out; echo err >&2; exit 3"], check=True)
    assert info.value.returncode == 3
    assert info.value.stdout == b"out\n" and info.value.stderr == b"err\n"
    assert box.run(["true"], check=True).returncode == 0


def test_forty_mib_on_stdout_and_stderr_at_once_do_not_deadlock() -> None:
    code = ("import os\nchunk = b'x' * (1 << 20)\n"
            "for i in range(40):\n"
            "    for fd in (1, 2):\n        view = memoryview(chunk)\n"
            "        while view: view = view[os.write(fd, view):]\n")
    box: Dict[str, object] = {}

    def run() -> None:
        try:
            box["r"] = sandlock.Sandbox().run([SYSTEM_PYTHON, "-c", code], timeout=170)
        except BaseException as exc:
            box["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(180)
    assert not t.is_alive(), "run() did not return within 180 s: deadlock"
    if "error" in box:
        raise box["error"]  # type: ignore[misc]
    r = box["r"]
    assert r.timed_out is False, "the command was stuck writing: deadlock"  # type: ignore[attr-defined]
    assert r.exit_code == 0, r.stderr[-500:]  # type: ignore[attr-defined]
    assert len(r.stdout) == 40 << 20 and len(r.stderr) == 40 << 20  # type: ignore[attr-defined]


def test_check_true_on_a_timeout_raises() -> None:
    with pytest.raises(subprocess.CalledProcessError):
        sandlock.Sandbox().run(["sleep", "30"], timeout=0.5, check=True)


CONFINE_SCRIPT = """
import os, sys
import sandlock
allowed, other = sys.argv[1], sys.argv[2]
sandlock.confine(fs_readable=["/usr", "/lib", "/etc", allowed])
print("allowed", open(os.path.join(allowed, "f")).read().strip())
try:
    open(os.path.join(other, "f")).read()
    print("other read")
except PermissionError:
    print("other denied")
"""


def test_confine_applies_landlock_to_the_calling_process(who, scratch: Path) -> None:
    allowed = who.make_dir(scratch / "allowed")
    other = who.make_dir(scratch / "other")
    who.make_file(allowed / "f", "A\n")
    who.make_file(other / "f", "B\n")
    r = who.python(CONFINE_SCRIPT, args=[str(allowed), str(other)])
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    assert r.stdout.decode().split("\n")[:2] == ["allowed A", "other denied"]


def test_env_is_the_base_environment_plus_the_policy_env() -> None:
    r = sandlock.Sandbox(env={"FROM_POLICY": "p"}).run(
        ["sh", "-c", 'echo "$FROM_ARG:$FROM_POLICY:${HOME-unset}"'], env={"FROM_ARG": "a", "PATH": SYSTEM_PATH})
    assert r.stdout == b"a:p:unset\n"


def test_clean_env_hides_the_callers_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDLOCK_API_SECRET", "s3cr3t")
    r = sandlock.Sandbox(clean_env=True).run(["env"])
    assert r.exit_code == 0
    assert b"s3cr3t" not in r.stdout
    assert b"PATH=" in r.stdout


def test_a_path_entry_outside_the_rules_does_not_break_the_command_search(scratch: Path) -> None:
    (scratch / "bin").mkdir()
    r = sandlock.Sandbox().run(["echo", "found"], env={"PATH": f"{scratch}/bin:{SYSTEM_PATH}"})
    assert r.stdout == b"found\n"


def test_max_open_files_gives_emfile() -> None:
    code = ("import os\ntry:\n    [os.open('/dev/null', 0) for i in range(100)]\n"
            "except OSError as e: print(e.strerror)\n")
    r = sandlock.Sandbox(max_open_files=16).run([SYSTEM_PYTHON, "-c", code])
    assert r.stdout == b"Too many open files\n", r.stderr


def test_capture_output_false_passes_the_output_through(capfd: pytest.CaptureFixture) -> None:
    r = sandlock.Sandbox().run(["echo", "passed-through"], capture_output=False)
    assert r.exit_code == 0
    assert r.stdout is None
    assert "passed-through" in capfd.readouterr().out


def test_a_missing_command_raises_or_gives_127() -> None:
    try:
        r = sandlock.Sandbox().run(["nosuchcmd-api"])
    except OSError as exc:  # docs/design.md "Interfaces": setup failures raise
        assert "nosuchcmd-api" in str(exc) or exc.filename == "nosuchcmd-api"
        assert "not found" in str(exc) or exc.errno == 2
    else:
        assert r.exit_code == 127 and r.success is False


API_SCRIPT = r"""
import json, os, signal, sys, tempfile
import sandlock
d = sys.argv[1]
out = {}
r = sandlock.Sandbox(fs_writable=[d]).run(["sh", "-c", "echo hi; echo hi > %s/f" % d])
out["echo"] = [r.stdout.decode(), r.exit_code, r.returncode, r.success, open(d + "/f").read()]
r = sandlock.Sandbox(fs_readable=["/usr", "/lib", "/bin", "/etc", d], fs_denied=[d + "/f"]).run(["cat", d + "/f"])
out["denied"] = [r.stdout.decode(), r.exit_code, "Permission denied" in r.stderr.decode()]
r = sandlock.Sandbox().run(["sh", "-c", "kill -TERM $$"])
out["signal"] = [r.returncode, r.signal, r.exit_code]
r = sandlock.Sandbox().run(["sleep", "20"], timeout=0.5)
out["timeout"] = [r.timed_out, r.exit_code]
r = sandlock.Sandbox().run(["cat"], input=b"in")
out["input"] = r.stdout.decode()
try:
    sandlock.Sandbox(max_processes=-1)
    out["validation"] = "accepted"
except Exception as e:
    out["validation"] = "max_processes" in str(e)
print(json.dumps(out))
"""


def test_the_api_behaves_the_same_as_root_and_as_the_user(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "api", 0o777)
    r = who.python(API_SCRIPT, args=[str(d)], env={"PATH": SYSTEM_PATH})
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["echo"] == ["hi\n", 0, 0, True, "hi\n"]
    assert out["denied"] == ["", 1, True]
    assert out["signal"] == [-signal.SIGTERM, signal.SIGTERM, 128 + signal.SIGTERM]
    assert out["timeout"] == [True, 124]
    assert out["input"] == "in"
    assert out["validation"] is True


def test_each_run_lists_its_own_proc_and_leaves_no_listing_behind() -> None:
    """Listings of /proc are private directories of the run (README, /proc), removed at its end."""
    box = sandlock.Sandbox()
    seen = []
    for _ in range(2):
        r = box.run(["sh", "-c", "echo $$; ls /proc"])
        assert r.returncode == 0, r.stderr
        shell, *names = r.stdout.decode().split()
        assert shell in names and "self" in names, r.stdout
        seen.append([n for n in names if n.isdigit()])
        scratch = box._prepare().proc_scratch
        assert scratch is not None and os.listdir(scratch.cwd) == [], os.listdir(scratch.cwd)
    assert seen[0] != seen[1] and all(len(pids) == 2 for pids in seen), seen  # sh and ls, new each run


def test_the_results_of_every_run_are_of_the_one_class_sandlock_result() -> None:
    box = sandlock.Sandbox()
    first, second = box.run(["/bin/true"]), box.run(["/bin/false"])
    assert type(first) is type(second) is sandlock.Result
    assert isinstance(first, sandlock.Result) and isinstance(first, subprocess.CompletedProcess)
    assert (first.returncode, second.returncode) == (0, 1)
