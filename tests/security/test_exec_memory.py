"""A failed exec in an emulated root leaves the caller exactly as the kernel would (issue 10).

An exec in a root is continued by the kernel after the supervisor injected an
fd and rewrote the caller's path string (and, when argv[0] is that very
string, pointed argv[0] at a copy below the stack pointer): README "How exec
works".  When the kernel then refused the exec, the caller was left with the
rewritten bytes, a changed argv[0] and one more fd.  Now every refusal the
kernel makes before loading the program is foreseen on the supervisor's own
reading of argv and envp (_rootexec.arguments_fit), before anything is
written.

The probe (progs/exec_fail.c, static musl, mounted at /probe) calls execve
with argv[0] the path string's own pointer and: (a) argv on an unmapped page,
argv[1] on one; (b) a string of 128 KiB + 1; (c) 70 strings of 100,000 bytes, a million pointers;
(d) strings that fill the room the stack limit gives to the byte, plus one
(and exactly, the control: the exec runs); (e) a program on a tmpfs mounted
noexec (root only: the test mounts it).  It prints its errno and whether its
path string, argv and fd table are byte-identical to before.  Each is
compared with the same probe run bare on the host and, as root, in a real
chroot of the busybox root.  Controls: valid execs still run, with $0 as
given, in a busybox and a Debian root.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, List

import pytest

from conftest import IS_ROOT

from .conftest import SecProgs

PROBE = "exec_fail"
INTACT = "path=same argv=same fds=same"
FAILURES = [("efault-array", "EFAULT"), ("efault-string", "EFAULT"), ("efault-cross", "EFAULT"),
            ("long", "E2BIG"), ("total", "E2BIG"),
            ("many", "E2BIG"), ("edge 1", "E2BIG")]


def _bare(progs: SecProgs, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(progs.host(PROBE)), *args], capture_output=True, text=True, timeout=60)


def _in_root(who, root: Path, progs: SecProgs, *args: str, extra: List[str] = ()) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def,assignment]
    return who.run(["--root", str(root), "--fs-mount", f"/probe:{progs.musl_dir}:ro", *extra, "--",
                    f"/probe/{PROBE}", *args], timeout=60)


@pytest.fixture(params=["busybox", "debian"])
def guest_root(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue("busybox_root" if request.param == "busybox" else "deb_root")


@pytest.mark.parametrize("case,expected", FAILURES, ids=[c for c, _ in FAILURES])
def test_an_exec_the_kernel_refuses_leaves_the_path_argv_and_fds_untouched(who, secprogs: SecProgs, guest_root: Path,
                                                                            case: str, expected: str) -> None:
    mode, *extra = case.split()
    bare = _bare(secprogs, mode, "/bin/true", *extra)
    assert (bare.returncode, bare.stdout) == (0, f"errno={expected} {INTACT}\n"), bare
    r = _in_root(who, guest_root, secprogs, mode, "/bin/true", *extra)
    assert (r.returncode, r.stdout, r.stderr) == (0, bare.stdout, ""), r


def test_arguments_that_fill_the_room_to_the_byte_still_run(who, secprogs: SecProgs, guest_root: Path) -> None:
    bare = _bare(secprogs, "edge", "/bin/true", "0")
    assert (bare.returncode, bare.stdout) == (0, ""), bare  # /bin/true ran
    r = _in_root(who, guest_root, secprogs, "edge", "/bin/true", "0")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r


def test_a_valid_exec_still_runs_with_the_name_it_was_given(who, secprogs: SecProgs, request) -> None:  # type: ignore[no-untyped-def]
    for root in (request.getfixturevalue("busybox_root"), request.getfixturevalue("deb_root")):
        r = _in_root(who, root, secprogs, "valid", "/bin/sh")  # argv[0] is the path string itself
        assert (r.returncode, r.stdout) == (0, "/bin/sh ran\n"), r
    r = _in_root(who, request.getfixturevalue("deb_root"), secprogs, "named", "/bin/sh")
    assert (r.returncode, r.stdout) == (0, "named-sh ran\n"), r


def test_argument_strings_crossing_page_boundaries_reach_the_program_whole(who, secprogs: SecProgs,
                                                                            guest_root: Path) -> None:
    """_rootexec._arg_length reads the strings a page at a time and keeps a few pages: a
    string starting 7 bytes before a page's end and the next one starting on the same
    page and ending two pages on are measured whole (efault-cross is the failing twin)."""
    bare = _bare(secprogs, "cross", "/bin/sh")
    assert (bare.returncode, bare.stdout) == (0, "4100 5000\n"), bare
    r = _in_root(who, guest_root, secprogs, "cross", "/bin/sh")
    assert (r.returncode, r.stdout, r.stderr) == (0, bare.stdout, ""), r


def test_the_same_failures_in_a_real_chroot_give_the_same_errno(secprogs: SecProgs, busybox_root: Path) -> None:
    if not IS_ROOT:
        pytest.skip("chroot(2) needs root")
    shutil.copy2(secprogs.musl(PROBE), busybox_root / PROBE)
    for case, expected in FAILURES:
        mode, *extra = case.split()
        r = subprocess.run(["chroot", str(busybox_root), f"/{PROBE}", mode, "/bin/true", *extra],
                           capture_output=True, text=True, timeout=60)
        assert (r.returncode, r.stdout) == (0, f"errno={expected} {INTACT}\n"), (case, r)
    r = subprocess.run(["chroot", str(busybox_root), f"/{PROBE}", "cross", "/bin/sh"],
                       capture_output=True, text=True, timeout=60)
    assert (r.returncode, r.stdout) == (0, "4100 5000\n"), r


@pytest.fixture
def noexec_dir(scratch: Path, secprogs: SecProgs, deb_root: Path) -> Iterator[Path]:
    """A tmpfs mounted noexec holding a static program, a dynamic one and a script."""
    if not IS_ROOT:
        pytest.skip("mounting a noexec tmpfs needs root")
    mnt = scratch / "nx"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,mode=755", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=True)


def _fill(directory: Path, secprogs: SecProgs, deb_root: Path) -> None:
    shutil.copy2(secprogs.musl("say_ok"), directory / "static")
    shutil.copy2(deb_root / "usr/bin/true", directory / "dyn")
    (directory / "script").write_text("#!/bin/sh\necho script ran\n")
    for name in ("static", "dyn", "script"):
        (directory / name).chmod(0o755)


def test_a_program_on_a_noexec_mount_is_refused_and_changes_nothing(who, secprogs: SecProgs, guest_root: Path,
                                                                     deb_root: Path, noexec_dir: Path,
                                                                     scratch: Path) -> None:
    _fill(noexec_dir, secprogs, deb_root)
    for name in ("static", "dyn", "script"):
        bare = _bare(secprogs, "plain", str(noexec_dir / name))
        assert (bare.returncode, bare.stdout) == (0, f"errno=EACCES {INTACT}\n"), bare
        r = _in_root(who, guest_root, secprogs, "plain", f"/nx/{name}", extra=["--fs-mount", f"/nx:{noexec_dir}"])
        assert (r.returncode, r.stdout, r.stderr) == (0, bare.stdout, ""), (name, r)
    # control: the same programs on a mount that allows exec do run
    ok = who.make_dir(scratch / "x", 0o755)
    _fill(ok, secprogs, deb_root)
    outputs = {"static": "ALLOWED\n", "script": "script ran\n"}
    if guest_root == deb_root:
        outputs["dyn"] = ""  # Debian's /usr/bin/true needs Debian's loader
    for name, output in outputs.items():
        r = _in_root(who, guest_root, secprogs, "plain", f"/x/{name}", extra=["--fs-mount", f"/x:{ok}"])
        assert (r.returncode, r.stdout) == (0, output), (name, r)


def test_an_execveat_name_too_short_for_the_rewrite_is_refused_before_any_fd_is_injected(
        who, secprogs: SecProgs, guest_root: Path, scratch: Path) -> None:
    # README: in a root, execveat(dirfd, NAME) with NAME shorter than /proc/self/fd/N
    # is ENAMETOOLONG; it used to be refused only after the fd was injected
    r = _in_root(who, guest_root, secprogs, "at-short", "/bin/true")
    assert (r.returncode, r.stdout, r.stderr) == (0, f"errno=ENAMETOOLONG {INTACT}\n", ""), r
    # control: a name long enough for the rewrite runs
    x = who.make_dir(scratch / "x", 0o755)
    shutil.copy2(secprogs.musl("say_ok"), x / "a-program-with-a-long-name")
    r = _in_root(who, guest_root, secprogs, "at-short", "/x/a-program-with-a-long-name",
                 extra=["--fs-mount", f"/x:{x}"])
    assert (r.returncode, r.stdout) == (0, "ALLOWED\n"), r
