"""sandlock's own scratch and leftovers (README "Where sandlock keeps its own files", SECURITY.md
"Scratch and leftovers").

sandlock's scratch lives in the user's base `/var/tmp/.sandlock-<euid>`, layers
in per-user containers `.sandlock-<euid>-<random>` (and the scratch did too, in
$TMPDIR, before the base: those are still cleaned up); sandlock verifies both
(lstat: a real directory, owner = euid, mode 0700, and its marker file) and
the entries it cleans up must pass the same checks.  The
probes plant what an attacker can plant (a symlink at a container's or a
leftover's name, a directory of another owner or mode, the names the old
releases used) and check that nothing behind them changes; the controls are
genuine leftovers of a dead sandlock, which the next run removes or reports.
Trees of any depth (10,000 levels, made by the command in the layer, in
/dev/shm of a --root run, or left in a stale scratch directory) are removed
or reported, and neither the run nor the next one crashes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Iterator, List, Set

import pytest

from sandlock import _scratch
from conftest import IS_ROOT, SYSTEM_READ, TEST_USER, tree_snapshot
from .conftest import SecProgs

DEAD = 999_999_999  # above every pid_max: never a live process
DEPTH = 10_000
LEFTOVER = "an earlier run's upper layer is left at "
DEEP = ("import os, sys\nos.chdir(sys.argv[1])\nos.mkdir('d')\n"
        "for i in range(int(sys.argv[2])):\n    os.mkdir('n'); os.rename('d', 'n/d'); os.rename('n', 'd')\n")


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr[-3000:]}"


def mark(who, directory: Path, note: bytes = b"") -> Path:  # type: ignore[no-untyped-def]
    """Give directory the marker sandlock writes in its own directories, as who."""
    (directory / _scratch.MARKER).write_bytes(_scratch.MARK + note)
    who.own(directory / _scratch.MARKER)
    return directory


def fake_layers(who, parent: Path, workdir: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    """What a killed sandlock leaves for workdir in parent: a layers directory of a dead pid."""
    layer = who.make_dir(parent / name, 0o700)
    mark(who, layer, os.fsencode(str(workdir)))
    run = who.make_dir(layer / "1", 0o700)
    who.make_file(run / "state", "running\n")
    who.make_file(who.make_dir(run / "tree") / "precious", "precious\n")
    return layer


def container(who, parent: Path, name: str) -> Path:  # type: ignore[no-untyped-def]
    return mark(who, who.make_dir(parent / name, 0o700))


def remove(path: Path) -> None:
    """Clean up a tree of any depth (shutil.rmtree recurses)."""
    if path.is_symlink() or path.exists():
        _scratch.remove_tree(str(path))


@pytest.fixture
def place(scratch: Path, who) -> Iterator[Path]:  # type: ignore[no-untyped-def]
    """A directory of who's: parent of the workdir, and the TMPDIR of its runs."""
    d = who.make_dir(scratch / "place")
    yield d
    for name in os.listdir(d):
        remove(d / name)


def run(who, place: Path, args: List[str], timeout: float = 300) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    return who.run(args, env={"TMPDIR": str(place / "tmp")}, timeout=timeout)


def base_of(who) -> Path:  # type: ignore[no-untyped-def]
    """who's base (README "Where sandlock keeps its own files"), made by a first run if need be."""
    path = Path("/var/tmp") / f".sandlock-{who.uid}"
    if not path.exists():
        r = who.run(["--", "true"])
        assert r.returncode == 0, show(r)
    assert path.is_dir() and not path.is_symlink() and path.stat().st_uid == who.uid
    return path


def in_base(who) -> Set[str]:  # type: ignore[no-untyped-def]
    """The names in who's base now (none if it is not made yet)."""
    try:
        return set(os.listdir(base_of(who)))
    except FileNotFoundError:
        return set()


def left_in_base(who, before: Set[str]) -> List[str]:  # type: ignore[no-untyped-def]
    """Scratch directories in who's base whose sandlock is gone, made since `before`
    (in_base() at the test's start): what the test's runs failed to remove.  Older ones
    are another run's (a directory of a run killed before it wrote its marker is
    never taken for sandlock's, so no later run removes it)."""
    out = []
    for name in sorted(in_base(who) - before):
        kind, _, rest = name.partition("-")
        pid = rest.split("-", 1)[0]
        if kind in ("root", "proc") and pid.isdigit() and not _scratch.alive(int(pid)):
            out.append(name)
    return out


def test_planted_names_never_lead_a_cleanup_to_what_they_point_at(who, place: Path) -> None:
    wd = who.make_dir(place / "wd")
    tmp = who.make_dir(place / "tmp")
    canary = who.make_dir(place / "canary")
    # what a container of ours looks like, as the target of planted symlinks
    container(who, canary, "box")
    fake_layers(who, canary / "box", wd, f"cow-{DEAD}-x")
    scratch_dir = mark(who, who.make_dir(canary / "box" / f"root-{DEAD}-x", 0o700))
    who.make_file(scratch_dir / "precious", "precious\n")
    uid = who.uid
    planted = [
        (place / f".sandlock-cow-wd-{DEAD}-x", canary / "box"),      # the name the old releases used
        (place / f".sandlock-{uid}-planted", canary / "box"),        # a container's name
        (tmp / f"sandlock-root-{DEAD}-x", canary / "box"),           # the old scratch name
        (tmp / f".sandlock-{uid}-planted", canary / "box"),
        (wd / f".sandlock-{uid}-planted", canary / "box"),           # where a workdir's layers now go
    ]
    home = base_of(who)
    planted += [(home / f"root-{DEAD}-p", scratch_dir), (home / f"proc-{DEAD}-p", scratch_dir)]
    for link, target in planted:
        os.symlink(target, link)
        who.own(link)
    # a real container of ours holding symlinks at a leftover's names
    box = container(who, place, f".sandlock-{uid}-real")
    os.symlink(canary / "box" / f"cow-{DEAD}-x", box / f"cow-{DEAD}-y")
    who.own(box / f"cow-{DEAD}-y")
    tbox = container(who, tmp, f".sandlock-{uid}-real")
    os.symlink(scratch_dir, tbox / f"root-{DEAD}-y")
    who.own(tbox / f"root-{DEAD}-y")
    # containers that are not ours: wrong mode; when root, another owner
    loose = container(who, place, f".sandlock-{uid}-loose")
    loose.chmod(0o755)
    fake_layers(who, loose, wd, f"cow-{DEAD}-z")
    others = []
    if IS_ROOT:
        import pwd
        other_uid = 0 if who.is_user else pwd.getpwnam(TEST_USER).pw_uid
        theirs = place / f".sandlock-{uid}-theirs"
        theirs.mkdir(0o700)
        (theirs / _scratch.MARKER).write_bytes(_scratch.MARK)
        layer = theirs / f"cow-{DEAD}-w"
        layer.mkdir(0o700)
        (layer / _scratch.MARKER).write_bytes(_scratch.MARK + os.fsencode(str(wd)))
        (layer / "1").mkdir()
        (layer / "1" / "state").write_text("running\n")
        for p in (theirs, theirs / _scratch.MARKER, layer, layer / _scratch.MARKER, layer / "1", layer / "1" / "state"):
            os.lchown(p, other_uid, other_uid)
        others.append(theirs)
    before = {p: tree_snapshot(p) for p in [canary, loose, *others]}
    links = {link: os.readlink(link) for link, _ in planted}
    for args in (["--workdir", str(wd), "-w", str(wd), "--", "sh", "-c", f"echo x > {wd}/x"],
                 ["--root", "/", "--", "true"], ["--", "true"]):
        r = run(who, place, args)
        assert r.returncode == 0 and "Traceback" not in r.stderr, show(r)
        assert LEFTOVER not in r.stderr, f"a planted entry was reported as a layer:\n{show(r)}"
    assert (wd / "x").read_text() == "x\n"
    for path, snap in before.items():
        assert tree_snapshot(path) == snap, f"{path} changed: a cleanup followed a planted entry"
    for link, target in links.items():
        assert os.readlink(link) == target, f"{link} was touched"
    assert os.path.islink(box / f"cow-{DEAD}-y") and os.path.islink(tbox / f"root-{DEAD}-y")
    for name in (f"root-{DEAD}-p", f"proc-{DEAD}-p"):
        (home / name).unlink()


def test_genuine_leftovers_of_a_dead_sandlock_are_removed_or_reported(who, place: Path) -> None:
    """Control: the same structures, real and ours, are cleaned up (a kept layer is reported)."""
    wd = who.make_dir(place / "wd")
    tmp = who.make_dir(place / "tmp")
    box = container(who, place, f".sandlock-{who.uid}-real")
    stale = fake_layers(who, box, wd, f"cow-{DEAD}-x")
    kept = fake_layers(who, box, wd, f"cow-{DEAD}-k")
    (kept / "1" / "state").write_text("kept\n")
    other_wd = fake_layers(who, box, place / "elsewhere", f"cow-{DEAD}-o")  # another workdir's: not ours to judge
    wbox = container(who, wd, f".sandlock-{who.uid}-real")  # in the workdir, where layers are made now
    wstale = fake_layers(who, wbox, wd, f"cow-{DEAD}-w")
    tbox = container(who, tmp, f".sandlock-{who.uid}-real")
    stale_root = mark(who, who.make_dir(tbox / f"root-{DEAD}-x", 0o700))
    who.make_file(stale_root / "f", "f\n")
    stale_in_base = [mark(who, who.make_dir(base_of(who) / f"{kind}-{DEAD}-x", 0o700)) for kind in ("root", "proc")]
    for path in stale_in_base:
        who.make_file(who.make_dir(path / "cwd") / "f", "f\n")
    r = run(who, place, ["--workdir", str(wd), "-w", str(wd), "--", "true"])
    assert r.returncode == 0, show(r)
    assert not stale.exists() and not wstale.exists(), f"a stale layer of a dead sandlock was left:\n{show(r)}"
    assert (kept / "1" / "tree" / "precious").exists(), show(r)
    notes = [line for line in r.stderr.splitlines() if LEFTOVER in line]
    assert notes == [f"sandlock: {LEFTOVER}{kept}/1 (kept): inspect it, then remove it"], show(r)
    assert other_wd.exists()
    assert not stale_root.exists(), f"a stale scratch directory of a dead sandlock was left:\n{show(r)}"
    assert not tbox.exists(), f"the emptied container of the old layout was left:\n{show(r)}"
    assert [p for p in stale_in_base if p.exists()] == [], f"stale scratch left in the base:\n{show(r)}"


@pytest.mark.parametrize("end", ["--dry-run", "--on-exit=commit"])  # abort takes the dry run's way
def test_a_tree_ten_thousand_levels_deep_in_the_layer_crashes_neither_this_run_nor_the_next(
        who, place: Path, secprogs: SecProgs, end: str) -> None:
    wd = who.make_dir(place / "wd")
    who.make_dir(place / "tmp")
    who.make_file(wd / "keep", "keep\n")
    before = _snapshot(wd)
    rules = [*SYSTEM_READ, "-r", str(secprogs.host_dir), "--workdir", str(wd), "-w", str(wd)]
    r = run(who, place, [*rules, end, "--", str(secprogs.host("deep_tree")), str(wd), str(DEPTH)])
    assert r.returncode == 0 and r.stdout == f"DEEP {DEPTH}\n", show(r)
    assert "Traceback" not in r.stderr, show(r)
    assert _snapshot(wd) == before, f"{end} changed the workdir:\n{show(r)}"
    if end == "--on-exit=commit":  # too deep to apply: kept, and said so
        assert "cannot compare the upper layer (directories nested too deep" in r.stderr, show(r)
        assert "kept at " in r.stderr, show(r)
    else:
        assert "cannot list the changes (directories nested too deep" in r.stderr, show(r)
        assert _layers(place) + _layers(wd) == [], f"the layer was left behind:\n{show(r)}"
    again = run(who, place, [*rules, "--", "sh", "-c", f"cat {wd}/keep"])
    assert again.returncode == 0 and again.stdout == "keep\n" and "Traceback" not in again.stderr, show(again)
    notes = [line for line in again.stderr.splitlines() if LEFTOVER in line]
    assert len(notes) == (1 if end == "--on-exit=commit" else 0), show(again)


def test_a_tree_a_thousand_levels_deep_is_committed_and_the_next_run_builds_its_layer(
        who, place: Path, secprogs: SecProgs) -> None:
    """Deep, but within what a path can name (PATH_MAX): committed whole, and usable afterwards."""
    wd = who.make_dir(place / "wd")
    who.make_dir(place / "tmp")
    rules = [*SYSTEM_READ, "-r", str(secprogs.host_dir), "--workdir", str(wd), "-w", str(wd)]
    r = run(who, place, [*rules, "--", str(secprogs.host("deep_tree")), str(wd), "1100"])
    assert r.returncode == 0 and r.stderr == "", show(r)
    assert (wd / "/".join(["d"] * 1101)).is_dir(), show(r)
    again = run(who, place, [*rules, "--dry-run", "--", "sh", "-c", f"rmdir {wd}/{'/'.join(['d'] * 1101)}"])
    assert again.returncode == 0, show(again)
    assert again.stderr.splitlines() == ["D " + "/".join(["d"] * 1101)], show(again)
    assert (wd / "/".join(["d"] * 1101)).is_dir()


def test_a_tree_ten_thousand_levels_deep_in_dev_shm_of_a_root_crashes_no_run(
        who, place: Path, secprogs: SecProgs, busybox_root: Path) -> None:
    tmp = who.make_dir(place / "tmp")
    before = in_base(who)
    probe = busybox_root / "probe"
    probe.mkdir()
    (probe / "deep_tree").write_bytes(secprogs.musl("deep_tree").read_bytes())
    (probe / "deep_tree").chmod(0o755)
    r = run(who, place, ["--root", str(busybox_root), "-w", "/dev/shm", "--", "/probe/deep_tree", "/dev/shm",
                         str(DEPTH)])
    assert r.returncode == 0 and r.stdout == f"DEEP {DEPTH}\n" and r.stderr == "", show(r)
    again = run(who, place, ["--root", str(busybox_root), "--", "ls", "/dev/shm"])
    assert again.returncode == 0 and again.stdout == "" and again.stderr == "", show(again)
    assert os.listdir(tmp) == [], f"scratch left in TMPDIR: {os.listdir(tmp)}"
    assert left_in_base(who, before) == [], f"scratch left in the base: {left_in_base(who, before)}"


@pytest.mark.parametrize("where", ["base", "old container in TMPDIR"])
def test_a_stale_scratch_directory_ten_thousand_levels_deep_is_removed_by_the_next_run(
        who, place: Path, secprogs: SecProgs, where: str) -> None:
    tmp = who.make_dir(place / "tmp")
    box = base_of(who) if where == "base" else container(who, tmp, f".sandlock-{who.uid}-old")
    stale = mark(who, who.make_dir(box / f"root-{DEAD}-x", 0o700))
    shm = who.make_dir(stale / "shm")
    made = who.python(DEEP, args=[str(shm), str(DEPTH)])
    assert made.returncode == 0, made.stderr
    r = run(who, place, ["--root", "/", "--", "true"])
    assert r.returncode == 0 and r.stderr == "", show(r)
    assert not stale.exists(), "the stale scratch directory is still there"


def _layers(place: Path) -> List[str]:
    out = []
    for name in os.listdir(place):
        if name.startswith(".sandlock-") and (place / name).is_dir():
            out += [n for n in os.listdir(place / name) if n not in (_scratch.MARKER, ".gitignore")]
    return out


def test_a_workdir_in_var_tmp_beside_the_bases_is_still_written_and_committed(who) -> None:  # type: ignore[no-untyped-def]
    """Its layers go in a container of /var/tmp, which is cut out of every rule like a base:
    the run's own layer is granted to it, as everywhere else."""
    wd = who.make_dir(Path("/var/tmp") / f"sandlock-test-wd-{uuid.uuid4().hex[:12]}")
    try:
        who.make_file(wd / "f", "old\n")
        r = who.run(["--workdir", str(wd), "-w", str(wd), "--", "sh", "-c", f"cat {wd}/f; echo new > {wd}/f"])
        assert r.returncode == 0 and r.stdout == "old\n", show(r)
        assert (wd / "f").read_text() == "new\n"
    finally:
        shutil.rmtree(wd, ignore_errors=True)
def _snapshot(wd: Path) -> dict:
    """tree_snapshot of the workdir but for sandlock's containers in it (a kept layer is there)."""
    return tree_snapshot(wd, skip=_scratch.reserved)
