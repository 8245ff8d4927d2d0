"""The denial report (README "Results and denials"): a run that tries 24 kinds of
forbidden things (tests/progs/forbidden.py) is refused each time, and the
report names each refusal the supervisor made: syscall, target, errno and
rule; the one the filter makes (unshare) is not listed per call but named in
filter_denied.  The list is bounded.  As root and as the unprivileged user.
"""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from typing import Any, Dict, List, Tuple

import schema
from conftest import SYSTEM_PYTHON

PROGS = Path(__file__).resolve().parent / "progs"

# kind -> (errno the command sees, syscalls that may carry it, target under BASE, words of the rule)
EXPECTED: Dict[str, Tuple[int, Tuple[str, ...], str, str]] = {
    "open_outside": (errno.EACCES, ("openat", "open"), "/outside/f", "no read rule"),
    "create_readonly": (errno.EACCES, ("openat", "open", "creat"), "/probe/new", "no write rule"),
    "open_fs_deny": (errno.EACCES, ("openat", "open"), "/secret/key", "--fs-deny"),
    "stat_outside": (errno.EACCES, ("newfstatat", "statx", "stat", "lstat"), "/outside/f", "no rule"),
    "statfs_outside": (errno.EACCES, ("statfs",), "/outside", "no rule"),
    "access_outside": (errno.EACCES, ("access", "faccessat", "faccessat2"), "/outside/f", "no read rule"),
    "chmod_readonly": (errno.EACCES, ("chmod", "fchmodat", "fchmodat2"), "/probe/f", "no write rule"),
    "chown_readonly": (errno.EACCES, ("chown", "fchownat", "lchown"), "/probe/f", "no write rule"),
    "utime_readonly": (errno.EACCES, ("utimensat", "utime", "utimes"), "/probe/f", "no write rule"),
    "setxattr_readonly": (errno.EACCES, ("setxattr",), "/probe/f", "no write rule"),
    "getxattr_outside": (errno.EACCES, ("getxattr",), "/outside/f", "no rule"),
    "rename_readonly": (errno.EACCES, ("rename", "renameat", "renameat2"), "/probe/f -> BASE/probe/g", "Landlock"),
    "link_readonly": (errno.EACCES, ("link", "linkat"), "/probe/f -> BASE/probe/h", "Landlock"),
    "readlink_outside": (errno.EACCES, ("readlink", "readlinkat"), "/outside/link", "no rule"),
    "chdir_outside": (errno.EACCES, ("chdir",), "/outside", "no rule"),
    "exec_outside": (errno.EACCES, ("execve",), "/outside/prog", "rule"),
}
# kinds whose target is not a path under BASE: (errno, syscalls, exact target, words of the rule)
OTHERS: Dict[str, Tuple[int, Tuple[str, ...], str, str]] = {
    "connect_no_network": (errno.EACCES, ("connect",), "tcp://192.0.2.1:80", "network policy"),
    "bind_no_rule": (errno.EACCES, ("bind",), "tcp port 8089", "--net-allow-bind"),
    "prlimit_outside": (errno.EPERM, ("prlimit64",), "pid 1", "sandbox's own processes"),
    "setpriority_outside": (errno.EPERM, ("setpriority",), "pid 1", "sandbox's own processes"),
    "affinity_outside": (errno.EPERM, ("sched_setaffinity",), "pid 1", "sandbox's own processes"),
    "pidfd_outside": (errno.EPERM, ("pidfd_open",), "pid 1", "sandbox's own processes"),
    "fork_over_limit": (errno.EAGAIN, ("clone", "fork", "vfork"), "", "--max-processes 4"),
}


def layout(who, scratch: Path) -> Path:
    base = who.make_dir(scratch / "base", 0o755)
    for name in ("probe", "outside", "secret"):
        who.make_dir(base / name)
    who.make_dir(base / "out", 0o777)
    shutil.copy(PROGS / "forbidden.py", base / "probe" / "forbidden.py")
    who.own(base / "probe" / "forbidden.py")
    who.make_file(base / "probe" / "f", "f")
    who.make_file(base / "outside" / "f", "o")
    who.make_file(base / "secret" / "key", "k", 0o600)
    (base / "outside" / "link").symlink_to("f")
    who.own(base / "outside" / "link")
    shutil.copy("/bin/true", base / "outside" / "prog")
    who.own(base / "outside" / "prog")
    return base


def run_forbidden(who, base: Path, extra: List[str]) -> Tuple[Dict[str, int], Dict[str, Any]]:
    report_path = base / "out" / "r.json"
    r = who.run(["-r", str(base / "probe"), "-w", str(base / "out"), "-r", str(base / "secret"),
                 "--fs-deny", str(base / "secret"), "-P", "4", "--result-json", str(report_path)] + extra
                + ["--", SYSTEM_PYTHON, str(base / "probe" / "forbidden.py"), str(base)], timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(report_path.read_text())
    assert schema.errors(report, schema.load()) == []
    return json.loads(r.stdout.splitlines()[-1]), report


def test_twenty_four_kinds_of_forbidden_things_are_refused_and_each_is_reported(who, scratch: Path) -> None:
    base = layout(who, scratch)
    seen, report = run_forbidden(who, base, [])
    assert len(seen) == len(EXPECTED) + len(OTHERS) + 1 == 24
    denials = report["denials"]
    for kind, (code, calls, target, words) in list(EXPECTED.items()) + list(OTHERS.items()):
        assert seen[kind] == code, (kind, seen[kind])
        full = (str(base) + target).replace("BASE", str(base)) if kind in EXPECTED else target
        match = [d for d in denials if d["syscall"] in calls and d["target"] == full]
        assert match, (kind, full, denials)
        assert match[0]["errno"] == code and match[0]["errno_name"] == errno.errorcode[code], (kind, match)
        assert words in match[0]["rule"], (kind, match[0]["rule"])
    # the filter's refusal reached the command but is not a per-call entry: it is named in filter_denied
    assert seen["unshare_filter"] == errno.EPERM
    assert not [d for d in denials if d["syscall"] == "unshare"] and "unshare" in report["filter_denied"]
    assert report["processes_started"] == 5   # the command, the exec probe's child and three forks


def test_allowed_controls_of_the_same_probes_are_not_reported(who, scratch: Path) -> None:
    """Control: with the outside directory readable, the network open and a bind port allowed, those
    probes get through (or fail only at the destination) and the report lists none of them."""
    base = layout(who, scratch)
    seen, report = run_forbidden(who, base, ["-r", str(base / "outside"), "--net-allow-bind", "8089"])
    for kind in ("open_outside", "stat_outside", "statfs_outside", "access_outside", "readlink_outside",
                 "chdir_outside", "exec_outside", "bind_no_rule"):
        assert seen[kind] == 0, (kind, seen[kind])
    assert seen["getxattr_outside"] in (errno.ENODATA, errno.EOPNOTSUPP)   # allowed: the file has no such name
    assert not [d for d in report["denials"] if d["target"].startswith(str(base / "outside"))], report["denials"]
    assert not [d for d in report["denials"] if d["syscall"] == "bind"]
    assert seen["open_fs_deny"] == errno.EACCES   # the rest stays refused and reported
    assert [d for d in report["denials"] if d["target"] == str(base / "secret" / "key")]


def test_the_list_is_bounded_and_counts_the_rest_per_syscall(who, scratch: Path) -> None:
    secret = who.make_file(scratch / "secret", "s")
    out = scratch / "r.json"
    code = ("import os\nfor _ in range(1500):\n    try:\n        open(%r).close()\n    except OSError:\n"
            "        pass\n" % str(secret))
    r = who.run(["--result-json", str(out), "--", SYSTEM_PYTHON, "-c", code], timeout=120)
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert len(report["denials"]) == 1000
    mine = [d for d in report["denials"] if d["target"] == str(secret)]
    assert len(mine) + sum(report["denials_dropped"].values()) >= 1500
    assert set(report["denials_dropped"]) <= {"openat", "open"} and report["denials_dropped"]


def test_the_recorder_keeps_the_first_denials_and_counts_the_rest_in_process() -> None:
    from sandlock import _notif, _supervisor
    denials = _notif.Denials(limit=3)
    for index in range(5):
        denials.add(_notif.Denial("openat" if index % 2 else "connect", f"/x{index}", errno.EACCES, "r"))
    items, more = denials.snapshot()
    assert [d.target for d in items] == ["/x0", "/x1", "/x2"] and more == {"openat": 1, "connect": 1}
    assert _supervisor.denial_rule("openat", errno.EACCES, "--fs-deny") == "--fs-deny"
    assert "filesystem rules" in _supervisor.denial_rule("openat", errno.EACCES, "Permission denied")
    assert "Landlock" in _supervisor.denial_rule("rename", errno.EACCES, "")
