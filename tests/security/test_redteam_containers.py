"""Red team of the workdir's container, seen from ANOTHER sandbox (SECURITY.md
"Another run's layer").

A `--workdir W --dry-run` run (A) keeps what it writes in its upper layer,
inside W (`W/.sandlock-<euid>-*/cow-*/<run>/tree/`).  Nothing it writes may
reach another sandbox (B) that may read or write W: not by reading the layer,
not through a symlink to it, not by renaming the container or hard-linking a
file out of it first, and not from an emulated root that holds W.  Every probe
runs INSIDE sandbox B, as root and as the unprivileged user; each has a
control showing that B reads W itself.  The attacker is assumed to know the
layer's path (the test looks it up from outside and hands it over).
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Iterator, Sequence

import pytest

import rootfs
from conftest import SYSTEM_READ, build_fixture, wait_for


class DryRun:
    """Run A: a dry run that writes SECRET-A into its layer and waits."""

    def __init__(self, who, work: Path, signals: Path, options: Sequence[str], inside: str) -> None:  # type: ignore[no-untyped-def]
        self.work, self.signals = work, signals
        script = (f"echo SECRET-A > {inside}/new && echo SECRET-A >> {inside}/f && touch {signals}/ready"
                  f" && while [ ! -e {signals}/go ]; do sleep 0.05; done; cat {inside}/new")
        self.live = who.popen([*options, "-w", str(signals), "--", "sh", "-c", script])
        self.out = ""

    def __enter__(self) -> "DryRun":
        if not wait_for(lambda: (self.signals / "ready").exists(), 30):
            self.live.kill()
            raise AssertionError("the dry run did not start: " + self.live.communicate()[1])
        return self

    def tree(self) -> Path:
        found = sorted(self.work.glob(".sandlock-*/cow-*/*/tree"))
        assert len(found) == 1, found
        return found[0]

    def __exit__(self, *exc: object) -> None:
        (self.signals / "go").touch()
        out, err = self.live.communicate(timeout=60)
        self.out = out
        assert self.live.returncode == 0, err


@pytest.fixture
def host_work(who, scratch: Path) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    work = who.make_dir(scratch / "work", 0o755)
    who.make_file(work / "f", "base\n")
    yield work


def _dry_run(who, scratch: Path, work: Path) -> DryRun:  # type: ignore[no-untyped-def]
    signals = who.make_dir(scratch / "signals", 0o777)
    return DryRun(who, work, signals, ["--workdir", str(work), "--dry-run", "-w", str(work)], str(work))


def _assert_untouched(work: Path, a: DryRun) -> None:
    assert not (work / "new").exists() and (work / "f").read_text() == "base\n"  # the dry run changed nothing
    assert a.out == "SECRET-A\n", a.out  # control: run A reads its own writes


def test_a_sandbox_that_may_read_a_workdir_does_not_read_a_dry_runs_writes(who, scratch, host_work) -> None:  # type: ignore[no-untyped-def]
    with _dry_run(who, scratch, host_work) as a:
        tree = a.tree()
        r = who.run([*SYSTEM_READ, "-r", str(host_work), "--", "sh", "-c",
                     f"cat {host_work}/f; grep -rh SECRET-A {host_work}; cat {tree}/new; cat {tree}/f; true"])
    assert r.returncode == 0 and "base" in r.stdout, r.stdout + r.stderr   # control: it reads DIR itself
    _assert_untouched(host_work, a)
    assert "SECRET-A" not in r.stdout, r.stdout + r.stderr
    assert "Permission denied" in r.stderr, r.stderr  # refused, not merely missing


def test_a_symlink_into_a_dry_runs_layer_does_not_read_it(who, scratch, host_work) -> None:  # type: ignore[no-untyped-def]
    with _dry_run(who, scratch, host_work) as a:
        tree = a.tree()
        r = who.run([*SYSTEM_READ, "-w", str(host_work), "--", "sh", "-c",
                     f"ln -s {tree}/new {host_work}/s && cat {host_work}/f {host_work}/s; "
                     f"ln -s {tree} {host_work}/t && cat {host_work}/t/new; true"])
    assert "base" in r.stdout, r.stdout + r.stderr  # control
    _assert_untouched(host_work, a)
    assert "SECRET-A" not in r.stdout, r.stdout + r.stderr


def test_a_sandbox_that_may_write_a_workdir_cannot_move_a_dry_runs_container_out_to_read_it(
        who, scratch, host_work) -> None:  # type: ignore[no-untyped-def]
    with _dry_run(who, scratch, host_work) as a:
        a.tree()
        r = who.run([*SYSTEM_READ, "-w", str(host_work), "--", "sh", "-c",
                     f"cat {host_work}/f; for d in {host_work}/.sandlock-*; do mv \"$d\" {host_work}/moved; done; "
                     f"cat {host_work}/moved/*/*/tree/new; true"])
        assert not (host_work / "moved").exists()
    assert "base" in r.stdout, r.stdout + r.stderr  # control
    _assert_untouched(host_work, a)
    assert "SECRET-A" not in r.stdout, r.stdout + r.stderr
    assert "Permission denied" in r.stderr, r.stderr


def test_a_sandbox_that_may_write_a_workdir_cannot_hard_link_a_dry_runs_file_out_to_read_it(
        who, scratch, host_work) -> None:  # type: ignore[no-untyped-def]
    with _dry_run(who, scratch, host_work) as a:
        tree = a.tree()
        r = who.run([*SYSTEM_READ, "-w", str(host_work), "--", "sh", "-c",
                     f"ln {host_work}/f {host_work}/control && cat {host_work}/control; "
                     f"ln {tree}/new {host_work}/g; cat {host_work}/g; "
                     f"ln -L {host_work}/.sandlock-nonexistent {host_work}/h 2>/dev/null; "
                     f"ln -s {tree}/new {host_work}/s && ln -L {host_work}/s {host_work}/h; cat {host_work}/h; true"])
    assert "base" in r.stdout, r.stdout + r.stderr  # control: a hard link in W works
    _assert_untouched(host_work, a)
    assert "SECRET-A" not in r.stdout, r.stdout + r.stderr
    assert not (host_work / "g").exists() and not (host_work / "h").exists()


def test_renames_and_links_in_a_writable_directory_still_work(who, scratch) -> None:  # type: ignore[no-untyped-def]
    """Control for the renames and links the supervisor now makes for a host sandbox:
    the kernel's answers, errnos included."""
    w = who.make_dir(scratch / "w", 0o755)
    ro = who.make_dir(scratch / "ro", 0o755)
    who.make_file(ro / "x", "x\n")
    script = (f"cd {w} && echo 1 > a && mv a b && mkdir d && mv b d/c && ln d/c e && mv -T d dd && cat dd/c e"
              f" && ln -s e sl && mv sl sl2 && readlink sl2 && python3 -c '"
              "import os, errno\n"
              "def e(f, *a):\n"
              "    try: f(*a); return \"ok\"\n"
              "    except OSError as x: return errno.errorcode[x.errno]\n"
              f"print(e(os.rename, \"missing\", \"z\"), e(os.rename, \"e\", \"dd\"), e(os.rename, \"e/\", \"z\"),"
              f" e(os.rename, \"{ro}/x\", \"z\"), e(os.link, \"{ro}/x\", \"z\"), e(os.rename, \"e\", \"{ro}/z\"),"
              " e(os.link, \"e\", \"dd/c\"), e(os.rename, \"dd\", \"dd/sub\"), e(os.rename, \".\", \"z\"))'")
    r = who.run([*SYSTEM_READ, "-r", str(ro), "-w", str(w), "--", "sh", "-c", script])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split("\n") == ["1", "1", "e",
                                    "ENOENT EISDIR ENOTDIR EACCES EXDEV EACCES EEXIST EINVAL EBUSY", ""], r.stdout
    assert sorted(p.name for p in w.iterdir()) == ["dd", "e", "sl2"]


@pytest.fixture(scope="module")
def busybox_shared() -> Path:
    return build_fixture(rootfs.busybox_rootfs)


def test_an_emulated_root_that_holds_a_workdir_does_not_read_a_dry_runs_writes(who, scratch, busybox_shared) -> None:  # type: ignore[no-untyped-def]
    root = scratch / "bb"
    subprocess.run(["cp", "-a", str(busybox_shared), str(root)], check=True)
    work = who.make_dir(root / "wd", 0o755)
    who.make_file(work / "f", "base\n")
    signals = who.make_dir(scratch / "signals", 0o777)
    with DryRun(who, work, signals, ["--root", str(root), "--workdir", str(work), "--dry-run", "-w", "/wd",
                                     "--fs-mount", f"{signals}:{signals}"], "/wd") as a:
        tree = a.tree()
        inner = "/wd/" + str(tree.relative_to(work))
        r = who.run(["--root", str(root), "--", "sh", "-c",
                     f"cat /wd/f; grep -rh SECRET-A /wd; cat {inner}/new; ls {inner}; true"])
        moved = who.run(["--root", str(root), "-w", "/wd", "--", "sh", "-c",
                         "cat /wd/f; for d in /wd/.sandlock-*; do mv $d /wd/moved; done; "
                         "cat /wd/moved/*/*/tree/new; true"])
        assert not (work / "moved").exists()
    assert "base" in r.stdout and "base" in moved.stdout, r.stdout + r.stderr + moved.stdout  # control
    _assert_untouched(work, a)
    assert "SECRET-A" not in r.stdout and "new" not in r.stdout.split(), r.stdout + r.stderr
    assert "SECRET-A" not in moved.stdout and "Permission denied" in moved.stderr, moved.stdout + moved.stderr
