"""Every malformed invocation gets one line, `sandlock: OBJECT: REASON`, and an
exit status of 125 (sandlock refused it), 126 (found, not executable) or 127
(not found): never a traceback, never a second line, nothing on stdout, and
nothing on disk changed (README "Using it").  The cases are flags, values,
paths, encodings, sizes and durations a user can get wrong."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Tuple

LINE = re.compile(r"sandlock: [^\n]*\S: \S[^\n]*\n")


def _cases(wd: str, plain: str) -> List[Tuple[List[str], int]]:
    bad = 125
    cases: List[Tuple[List[str], int]] = []
    # durations
    for value in ("x", "0", "-1", "nan", "inf", "-inf", "1e400", "1e-400", "", " ", "1s", "0x10", "1,5", "--3", "1e", "True"):
        cases.append((["-t", value, "--", "true"], bad))
    cases += [(["-t"], bad), (["--timeout=-3", "--", "true"], bad), (["--timeout="], bad)]
    # sizes
    for value in ("x", "-5M", "0", "0.0001", "99999999999999999999T", "9999999T", "1E", "1P", "1.5.5M", "", "5MB5",
                  "M", "1 M B", "-0", "1e3M", "0x10M", "½M"):
        cases.append((["-m", value, "--", "true"], bad))
    cases += [(["-m", "--", "true"], bad), (["--max-memory=1Q", "--", "true"], bad), (["--max-memory="], bad),
              (["--max-disk", "x", "--workdir", wd, "--", "true"], bad),
              (["--max-disk", "-1M", "--workdir", wd, "--", "true"], bad),
              (["--max-disk", "99999999999999999999T", "--workdir", wd, "--", "true"], bad)]
    # counts
    for flag in ("-P", "--max-open-files"):
        for value in ("0", "-3", "1.5", "x", "", "1e3", "99999999999999999999", "0x10", "٣x"):
            cases.append(([flag, value, "--", "true"], bad))
    # options that need another, or a value from a set
    cases += [(["--max-disk", "1M", "--", "true"], bad), (["--on-exit", "commit", "--", "true"], bad),
              (["--on-exit", "maybe", "--workdir", wd, "--", "true"], bad), (["--on-error", "x", "--", "true"], bad),
              (["--dry-run", "--", "true"], bad), (["--json", "--", "true"], bad), (["--json"], bad),
              (["--check", "--", "true"], bad), (["--check", "x"], bad), (["--fs-mount", "/a:/tmp", "--", "true"], bad),
              (["--root", "/", "--fs-mount", plain, "--", "true"], bad),
              (["--root", "/", "--fs-mount", "/a:" + plain, "--", "true"], bad),
              (["--root", "/", "--fs-mount", "/proc:/tmp", "--", "true"], bad),
              (["--root", "/", "--fs-mount", "/a:/nonexistent", "--", "true"], bad)]
    # unknown options and missing values
    for args in (["--bogus"], ["--bogus", "--", "true"], ["-Z"], ["--fs-rea", "/tmp"], ["--on-exit"], ["--root"],
                 ["-r"], ["-w"], ["--fs-deny"], ["--env"], ["--cwd"], ["--workdir"], ["--deny-syscall"], ["--fs-mount"],
                 ["-t", "-r", "/tmp", "--", "true"]):
        cases.append((args, bad))
    # paths and their encodings
    for flag in ("-r", "-w", "--fs-deny", "--cwd", "--root", "--workdir"):
        for value in ("/nonexistent/x", "", "/tmp/\udcff-none", "/tmp/a\nb-none", "/tmp/\x1b[31m-none"):
            cases.append(([flag, value, "--", "true"], bad))
    cases += [(["--cwd", plain, "--", "true"], bad), (["--root", plain, "--", "true"], bad),
              (["--workdir", plain, "--", "true"], bad), (["--workdir", "/", "--", "true"], bad),
              (["--workdir", "/proc", "--", "true"], bad), (["--workdir", wd, "--root", wd + "/..x", "--", "true"], bad)]
    # environment and syscall names
    for value in ("a", "=x", "", "\udcff"):
        cases.append((["--env", value, "--", "true"], bad))
    for value in ("nosuch", "", "OPEN", "open;", "open read"):
        cases.append((["--deny-syscall", value, "--", "true"], bad))
    # network specs
    for args in (["--net-allow", "tcp://[::1"], ["--net-allow", "icmp://192.0.2.1:7"], ["--net-deny", "example.com"],
                 ["--net-allow", "192.0.2.1:99999"], ["--net-allow", "192.0.2.1:5-3"], ["--net-allow", "ftp://x"],
                 ["--net-allow", "300.1.1.1:80"], ["--net-allow", "[::1]/200"], ["--net-allow", ""],
                 ["--net-allow", "a.example", "--net-deny", "192.0.2.1"], ["--net-allow-bind", "x"],
                 ["--net-allow-bind", "70000"], ["--net-deny-bind", "-1"], ["--net-allow"]):
        cases.append((args + ["--", "true"] if len(args) > 1 else args, bad))
    # commands that cannot run
    cases += [(["--", ""], 127), (["--", "/nonexistent/cmd"], 127), (["--", "nosuchcommand-xyz"], 127),
              (["--", "/tmp/\udcff-none"], 127), (["--", "a\nb"], 127), (["--", "/etc"], 126), (["--", plain], 126)]
    return cases


def _listing(path: Path) -> List[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def test_every_malformed_invocation_gets_one_line_and_a_sandlock_exit_status(who, scratch: Path) -> None:
    wd = who.make_dir(scratch / "wd")
    who.make_file(wd / "kept", "k\n")
    plain = who.make_file(scratch / "plain", "not a directory nor a program\n")
    tmp = who.make_dir(scratch / "tmp", mode=0o700)
    before = _listing(scratch)
    cases = _cases(str(wd), str(plain))
    assert len(cases) >= 100
    wrong = []
    for args, status in cases:
        r = who.run(args, cwd=str(wd), env={"TMPDIR": str(tmp), "SHELL": "/bin/sh"}, text=False, timeout=60)
        err = r.stderr.decode("utf-8", "surrogateescape")
        if r.returncode != status or r.stdout or not LINE.fullmatch(err) or "Traceback" in err:
            wrong.append(f"{args!r}: exit {r.returncode} (want {status}), stdout {r.stdout[:60]!r}, stderr {err[-300:]!r}")
    assert not wrong, f"{len(wrong)} of {len(cases)}:\n" + "\n".join(wrong)
    assert _listing(scratch) == before
    assert (wd / "kept").read_text() == "k\n"


def test_a_name_that_is_not_printable_text_is_quoted_in_the_message(sandlock_cli) -> None:
    r = sandlock_cli(["-r", "/tmp/\udcff\x1b[31m-none", "--", "true"], text=False)
    assert r.returncode == 125
    assert r.stderr == b'sandlock: --fs-read: "/tmp/\\377\\033[31m-none": No such file or directory\n'
    r = sandlock_cli(["--", ""], text=False)
    assert (r.returncode, r.stderr) == (127, b'sandlock: "": not found\n')
