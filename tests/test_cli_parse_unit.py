"""The CLI's quick reading of a plain command line (sandlock._quick_args, README "Start-up").

A plain command line is read without argparse; anything else goes to argparse,
which also writes every error message and --help.  These tests hold the two
readings equal: for every command line the quick reading accepts, it gives
what argparse gives, and it accepts none that argparse refuses.  In-process,
no sandbox is started (except the last test, which runs /bin/true).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from typing import List, Optional

import pytest

from conftest import REPO

import sandlock


def argparse_reading(argv: List[str]) -> Optional[dict]:
    """What argparse makes of argv, as _main reads it (None: a usage error)."""
    parser = sandlock._parser()
    try:
        return vars(parser.parse_args(sandlock._joined_values(parser, argv)))
    except sandlock._UsageError:
        return None


def corpus() -> List[List[str]]:
    """Each option alone, in each spelling, with good and bad values, and around the command."""
    options, _, _ = sandlock._quick_table()  # type: ignore[misc]
    out: List[List[str]] = []
    for name, (_, action, choices) in options.items():
        if action == "store_true":
            out += [[name], [name, "--", "ls"], [name, "ls", name], [name + "=1", "ls"]]
            continue
        values = list(choices) + ["other"] if choices else ["/tmp", "5", "x=y", "a b"]
        for value in values + ["", "-5M", "--", "-", "-v", "--verbose"]:
            out += [[name, value, "ls"], [name, value], [name, value, "--", "ls"]]
            if name.startswith("--"):
                out += [[f"{name}={value}", "ls"]]
        out += [[name], [name, "x", name, "y", "ls"]]
    words = ["-v", "--", "ls", "-l", "-w", "/tmp", "--fs-read=/usr", "-t10", "-vh", "--unknown", "-5", "-"]
    out += [list(p) for n in range(4) for p in itertools.permutations(words, n)]
    out += [["--fs-rea", "/usr", "ls"], ["--chroot", "/r", "ls"], ["--root", "/r", "--chroot", "/s"]]
    return out


def test_every_command_line_the_quick_reading_accepts_reads_as_argparse_reads_it() -> None:
    accepted = 0
    for argv in corpus():
        quick = sandlock._quick_args(list(argv))
        if quick is None:
            continue
        accepted += 1
        assert vars(quick) == argparse_reading(list(argv)), argv
    assert accepted > 500  # the corpus reaches the quick reading, not only argparse


def test_command_lines_argparse_refuses_are_all_left_to_argparse_and_its_messages() -> None:
    refused = [argv for argv in corpus() if argparse_reading(list(argv)) is None]
    assert len(refused) > 100
    assert [argv for argv in refused if sandlock._quick_args(list(argv)) is not None] == []


@pytest.mark.parametrize("argv", [
    ["--", "/bin/true"], ["ls", "-l", "--", "x"], ["-r", "/usr", "-w", "/tmp", "--", "make", "-j2"],
    ["--root", "/srv/r", "--fs-mount", "/w:/home/w:ro", "--fake-root", "-t", "10", "--", "sh"],
    ["--net-allow", "pypi.org:443", "--net-allow=*.example.com", "--env", "A=1", "--clean-env", "env"],
    ["--workdir", ".", "--on-exit", "keep", "--dry-run", "--max-disk", "1G", "-m", "512M", "-P", "20", "make"],
    ["--check", "--json"], ["-v", "--debug", "--dump-filter"], ["--version"], [],
])
def test_plain_command_lines_are_read_without_argparse(argv: List[str]) -> None:
    quick = sandlock._quick_args(list(argv))
    assert quick is not None
    assert vars(quick) == argparse_reading(list(argv))


def test_an_option_the_quick_reading_does_not_know_is_left_to_argparse(monkeypatch: pytest.MonkeyPatch) -> None:
    real = sandlock._parser

    def with_a_count_option(argparse=None):  # type: ignore[no-untyped-def]
        parser = real(argparse)
        parser.add_argument("--quiet-level", action="count")
        return parser
    monkeypatch.setattr(sandlock, "_parser", with_a_count_option)
    assert sandlock._quick_args(["--", "/bin/true"]) is None


def test_a_plain_run_of_the_cli_does_not_import_argparse() -> None:
    code = ("import os, sys, sandlock\n"
            "code = sandlock.main(['--', '/bin/true'])\n"
            "os.write(1, b'exit %d argparse %d' % (code, 'argparse' in sys.modules))\n")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, cwd="/", timeout=60)
    assert r.stdout == b"exit 0 argparse 0", r.stderr
    r = subprocess.run([sys.executable, "-c", code.replace("'--', '/bin/true'", "'-vh'")], capture_output=True,
                       env=env, cwd="/", timeout=60)
    assert r.stdout.endswith(b"exit 0 argparse 1") and b"--fs-read" in r.stdout, r.stderr  # --help: argparse's
