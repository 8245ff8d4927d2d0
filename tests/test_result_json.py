"""The machine-readable result: --result-json FILE, --status-fd N and Result.as_dict()
(README "Results and denials"), validated against docs/result.schema.json.

As root and as the unprivileged user (`who`); the API through a script that
imports sandlock and prints what it saw (the test process is never confined).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict

import schema
from conftest import SYSTEM_PATH, SYSTEM_PYTHON


def valid(report: Dict[str, Any]) -> Dict[str, Any]:
    problems = schema.errors(report, schema.load())
    assert problems == [], problems
    return report


def read_report(path: Path) -> Dict[str, Any]:
    return valid(json.loads(path.read_text()))


def test_the_validator_refuses_what_the_schema_forbids() -> None:
    good = {"schema": "sandlock-result/1", "argv": ["true"], "exit_code": 0, "returncode": 0, "signal": None,
            "signal_name": None, "timed_out": False, "reason": "", "duration": 0.1, "peak_memory": None,
            "processes_started": None, "changes": [], "workdir_note": "", "denials": [], "denials_dropped": {},
            "filter_denied": ["mount"], "not_seen": "..."}
    assert schema.errors(good, schema.load()) == []
    assert schema.errors(dict(good, exit_code="0"), schema.load())
    assert schema.errors(dict(good, extra=1), schema.load())
    assert schema.errors({k: v for k, v in good.items() if k != "denials"}, schema.load())
    assert schema.errors(dict(good, denials=[{"syscall": "openat", "target": "/x", "errno": 13}]), schema.load())
    assert schema.errors(dict(good, changes=[{"kind": "X", "path": "a"}]), schema.load())


def test_result_json_of_a_plain_run_holds_its_status_and_no_denial(who, scratch: Path) -> None:
    out = scratch / "r.json"
    r = who.run(["--result-json", str(out), "--", "sh", "-c", "exit 3"])
    assert r.returncode == 3, r.stderr
    report = read_report(out)
    assert (report["exit_code"], report["returncode"], report["signal"], report["timed_out"]) == (3, 3, None, False)
    assert report["argv"] == ["sh", "-c", "exit 3"] and report["reason"] == ""
    assert 0 < report["duration"] < 30
    assert report["denials"] == [] and report["denials_dropped"] == {}
    assert "mount" in report["filter_denied"] and "ptrace" in report["filter_denied"]
    assert "Landlock" in report["not_seen"]


def test_result_json_says_a_death_by_signal_and_a_timeout(who, scratch: Path) -> None:
    out = scratch / "r.json"
    r = who.run(["--result-json", str(out), "--", "sh", "-c", "kill -TERM $$"])
    assert r.returncode == 128 + 15, r.stderr
    report = read_report(out)
    assert (report["exit_code"], report["returncode"], report["signal"], report["signal_name"]) == \
        (143, -15, 15, "SIGTERM")
    r = who.run(["--result-json", str(out), "-t", "0.5", "--", "sleep", "30"])
    assert r.returncode == 124, r.stderr
    report = read_report(out)
    assert report["timed_out"] is True and report["exit_code"] == 124 and report["reason"]


def test_a_death_by_a_real_time_signal_is_reported_by_its_name(who, scratch: Path) -> None:
    """signal.Signals names SIGRTMIN and SIGRTMAX only: the signals between (RTMIN+6 is 40 on
    glibc) made the report raise ValueError, a traceback and no file."""
    out = scratch / "r.json"
    for sig, name in ((40, "SIGRTMIN+6"), (34, "SIGRTMIN"), (64, "SIGRTMAX"), (6, "SIGABRT"), (29, "SIGIO")):
        r = who.run(["--result-json", str(out), "--", "sh", "-c", f"kill -{sig} $$"])
        assert r.returncode == 128 + sig and "Traceback" not in r.stderr, r.stderr
        report = read_report(out)
        assert (report["returncode"], report["signal"], report["signal_name"]) == (-sig, sig, name)
    r = who.python("import sandlock, json\n"
                   "r = sandlock.Sandbox().run(['sh', '-c', 'kill -40 $$'])\n"
                   "print(json.dumps(r.as_dict()))", env={"PATH": SYSTEM_PATH})
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    report = valid(json.loads(r.stdout.decode().splitlines()[-1]))
    assert (report["returncode"], report["signal_name"]) == (-40, "SIGRTMIN+6")


def test_status_fd_writes_the_same_object_to_an_inherited_fd(who, scratch: Path) -> None:
    path = scratch / "status.json"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.fchown(fd, who.uid, who.gid) if os.getuid() == 0 else None
        r = who.run(["--status-fd", str(fd), "--", "ls", f"/proc/self/fd/{fd}"], pass_fds=(fd,))
    finally:
        os.close(fd)
    # the command does not get the status fd (ls fails), and the report says so
    assert r.returncode != 0, r.stdout
    report = read_report(path)
    assert report["exit_code"] == r.returncode and report["argv"][0] == "ls"


def test_bad_result_sinks_are_refused_before_the_run(who, scratch: Path) -> None:
    marker = scratch / "ran"
    for args in (["--result-json", str(scratch / "missing" / "r.json")], ["--status-fd", "999"],
                 ["--status-fd", "x"]):
        r = who.run(args + ["--", "sh", "-c", f"touch {marker}"])
        assert r.returncode == 125 and r.stderr.count("\n") == 1 and args[0] in r.stderr, r.stderr
        assert not marker.exists()


def test_a_missing_command_still_writes_its_report(who, scratch: Path) -> None:
    out = scratch / "r.json"
    r = who.run(["--result-json", str(out), "--", "/nonexistent/prog"])
    assert r.returncode == 127, r.stderr
    report = read_report(out)
    assert report["exit_code"] == 127 and "not found" in report["reason"]


def test_peak_memory_and_processes_are_measured_under_their_limits(who, scratch: Path) -> None:
    out = scratch / "r.json"
    code = "x = bytearray(64 << 20); import time; time.sleep(0.4)"
    r = who.run(["--result-json", str(out), "-m", "512M", "-P", "10", "--", "sh", "-c",
                 f"true; true; {SYSTEM_PYTHON} -c '{code}'"])
    assert r.returncode == 0, r.stderr
    report = read_report(out)
    assert report["peak_memory"] is not None and report["peak_memory"] >= 64 << 20
    assert report["processes_started"] is not None and report["processes_started"] >= 2
    r = who.run(["--result-json", str(out), "--", "true"])
    report = read_report(out)
    assert report["peak_memory"] is None and report["processes_started"] is None


def test_workdir_changes_are_kind_and_path(who, scratch: Path) -> None:
    work = who.make_dir(scratch / "work", 0o777)
    who.make_file(work / "old", "1")
    out = scratch / "r.json"
    r = who.run(["--result-json", str(out), "--workdir", str(work), "-w", str(work), "--dry-run", "--",
                 "sh", "-c", f"echo 2 > {work}/new; rm {work}/old"])
    assert r.returncode == 0, r.stderr
    assert read_report(out)["changes"] == [{"kind": "A", "path": "new"}, {"kind": "D", "path": "old"}]


API = r"""
import json, os, sys, pickle
import sandlock
work, out = sys.argv[1], sys.argv[2]
r = sandlock.Sandbox(workdir=work, fs_writable=[work], dry_run=True).run(
    ["sh", "-c", 'echo 2 > "$0/new"; cat /etc/shadow "$0/../outside" 2>/dev/null; exit 0', work])
c = r.changes[0]
d = [x for x in r.denials if x.target.endswith("/outside")]
print(json.dumps({
    "changes": r.changes, "is_str": isinstance(c, str), "kind": c.kind, "path": c.path,
    "eq": c == "A new", "str": str(c), "pickled": pickle.loads(pickle.dumps(c)) == "A new",
    "denial": [d[0].syscall, d[0].errno, d[0].rule] if d else None,
    "dict": r.as_dict(), "duration": r.duration,
}))
"""


def test_the_api_result_has_changes_as_strings_with_kind_and_path_and_denials(who, scratch: Path) -> None:
    work = who.make_dir(scratch / "work", 0o777)
    who.make_file(scratch / "outside", "secret")
    r = who.python(API, args=[str(work), str(scratch / "out")], env={"PATH": SYSTEM_PATH})
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    seen = json.loads(r.stdout.decode().splitlines()[-1])
    assert seen["changes"] == ["A new"] and seen["is_str"] and seen["eq"] and seen["pickled"]
    assert (seen["kind"], seen["path"], seen["str"]) == ("A", "new", "A new")
    assert seen["denial"] is not None and seen["denial"][0] in ("openat", "open") and seen["denial"][1] == 13
    assert "rule" in seen["denial"][2] or "-r" in seen["denial"][2]
    valid(seen["dict"])
    assert seen["dict"]["changes"] == [{"kind": "A", "path": "new"}] and seen["duration"] > 0


def test_verbose_lists_the_denials_after_the_run(who, scratch: Path) -> None:
    secret = who.make_file(scratch / "secret", "s")
    r = who.run(["-v", "--", "cat", str(secret)])
    assert r.returncode == 1
    assert f"sandlock: denied openat {secret}: EACCES" in r.stderr, r.stderr
    assert "operation(s) denied by the supervisor" in r.stderr


def test_help_shows_an_example_of_each_report_option(who) -> None:
    r = who.run(["--help"])
    assert r.returncode == 0
    examples = r.stdout.split("examples:")[1]
    assert "--result-json run.json" in examples and "--status-fd 3" in examples
