"""sandlock's own directories on their own (_scratch.py): containers, markers, removal at any depth.

No sandbox is started: these drive the functions on temporary trees and
check what is left on disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sandlock import _cow
from sandlock import _scratch

DEPTH = 10_000


def deep(top: Path, levels: int) -> Path:
    """top/d/d/.../d, `levels` below top/d, made without naming a long path."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.mkdir("d", dir_fd=fd)
        for _ in range(levels):
            os.mkdir("n", dir_fd=fd)
            os.rename("d", "n/d", src_dir_fd=fd, dst_dir_fd=fd)
            os.rename("n", "d", src_dir_fd=fd, dst_dir_fd=fd)
    finally:
        os.close(fd)
    return top / "d"


def test_a_tree_ten_thousand_levels_deep_is_removed_without_recursion(tmp_path: Path) -> None:
    top = deep(tmp_path, DEPTH)
    (top / "file").write_text("x")
    _scratch.remove_tree(str(top))
    assert os.listdir(tmp_path) == []


def test_removal_never_follows_a_symlink_and_empties_unreadable_directories(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "c").write_text("c")
    top = tmp_path / "top"
    (top / "a" / "b").mkdir(parents=True)
    os.symlink(canary, top / "a" / "link")
    os.symlink(canary / "c", top / "a" / "b" / "flink")
    (top / "a" / "b" / "f").write_text("f")
    (top / "a" / "b").chmod(0)
    (top / "a").chmod(0o500)
    _scratch.remove_tree(str(top))
    assert sorted(os.listdir(tmp_path)) == ["canary"] and (canary / "c").read_text() == "c"


def test_a_symlink_given_to_remove_tree_is_removed_not_its_target(tmp_path: Path) -> None:
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "c").write_text("c")
    os.symlink(canary, tmp_path / "link")
    _scratch.remove_tree(str(tmp_path / "link"))
    assert os.listdir(tmp_path) == ["canary"] and (canary / "c").exists()


def test_a_container_is_made_mode_0700_with_its_marker_and_found_again(tmp_path: Path) -> None:
    box = _scratch.container(str(tmp_path))
    st = os.lstat(box)
    assert os.path.basename(box).startswith(f".sandlock-{os.geteuid()}-") and len(os.path.basename(box)) > 16
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert (Path(box) / ".sandlock").read_bytes() == _scratch.MARK
    assert _scratch.container(str(tmp_path)) == box
    box2, made = _scratch.new_dir(str(tmp_path), "root-1-", b"note")
    assert box2 == box and _scratch.entries(box, "root-") == [(made, 1, b"note")]
    _scratch.remove_tree(made)
    _scratch.release(box)
    assert os.listdir(tmp_path) == []


def _plant(tmp_path: Path, name: Path, plant: str) -> Path:
    """Something at `name` that is not a container of ours; returns the directory a
    planted symlink points to (which must stay untouched)."""
    target = tmp_path / "target"
    target.mkdir(mode=0o700)
    (target / ".sandlock").write_bytes(_scratch.MARK)
    if plant == "symlink":
        os.symlink(target, name)
        return target
    name.mkdir(mode=0o700)
    if plant == "mode":
        (name / ".sandlock").write_bytes(_scratch.MARK)
        name.chmod(0o755)
    elif plant == "marker-symlink":
        os.symlink(target / ".sandlock", name / ".sandlock")
    elif plant == "bad-marker":
        (name / ".sandlock").write_bytes(b"not ours\n")
    return target


@pytest.mark.parametrize("plant", ["symlink", "mode", "no-marker", "marker-symlink", "bad-marker"])
def test_a_planted_container_is_neither_used_nor_touched(tmp_path: Path, plant: str) -> None:
    name = tmp_path / f".sandlock-{os.geteuid()}-planted"
    target = _plant(tmp_path, name, plant)
    before = sorted(os.listdir(tmp_path))
    assert _scratch.containers(str(tmp_path)) == []
    box = _scratch.container(str(tmp_path))
    assert box != str(name) and sorted(os.listdir(tmp_path)) == sorted(before + [os.path.basename(box)])
    assert os.listdir(target) == [".sandlock"]


def test_the_base_is_made_once_mode_0700_with_its_marker_and_kept(tmp_path: Path) -> None:
    places = (str(tmp_path),)
    home = _scratch.base(places)
    assert home == str(tmp_path / f".sandlock-{os.geteuid()}")
    st = os.lstat(home)
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700 and st.st_uid == os.geteuid()
    assert (Path(home) / ".sandlock").read_bytes() == _scratch.MARK
    made = _scratch.make_dir(home, "root-1-")
    _scratch.remove_tree(made)
    assert _scratch.base(places) == home and os.lstat(home).st_ino == st.st_ino  # the same, kept
    assert os.listdir(tmp_path) == [os.path.basename(home)]  # nothing half made left beside it


def _base_in(parent: str) -> str:
    return _scratch.base((parent,))


def test_runs_that_make_the_base_at_once_all_get_the_same_one(tmp_path: Path) -> None:
    import multiprocessing
    with multiprocessing.get_context("fork").Pool(8) as pool:
        got = set(pool.map(_base_in, [str(tmp_path)] * 64))
    assert got == {str(tmp_path / f".sandlock-{os.geteuid()}")}
    assert os.listdir(tmp_path) == [f".sandlock-{os.geteuid()}"]  # no second base, nothing half made


def test_a_scratch_directory_loses_its_marker_last_so_a_cut_short_removal_is_finished_later(
        tmp_path: Path) -> None:
    home = _scratch.base((str(tmp_path),))
    made = Path(_scratch.make_dir(home, "root-1-"))
    deep(made, 50)
    (made / "z").mkdir()
    (made / "z" / "f").write_text("f")
    os.chmod(made / "z", 0o500)  # the first removal stops here (as a kill half way would)
    if os.geteuid() == 0:
        import unittest.mock
        real = _scratch.remove_at
        with unittest.mock.patch.object(_scratch, "remove_at",
                                        lambda fd, name: real(fd, name) if name != "z" else _raise()):
            _scratch.remove_ours(str(made))
    else:
        _scratch.remove_ours(str(made))
    assert (made / _scratch.MARKER).exists() and not (made / "d").exists()
    assert [p for p, _, _ in _scratch.entries(home, "root-")] == [str(made)]  # still found as ours
    os.chmod(made / "z", 0o700)
    _scratch.remove_stale(home)  # pid 1 is alive: left alone
    assert made.exists()
    _scratch.remove_ours(str(made))
    assert os.listdir(home) == [_scratch.MARKER]


def _raise() -> None:
    raise PermissionError(13, "cut short")


def test_the_base_goes_to_the_next_place_when_the_first_is_unusable(tmp_path: Path) -> None:
    ok = tmp_path / "ok"
    ok.mkdir()
    assert _scratch.base((str(tmp_path / "missing"), str(ok))) == str(ok / f".sandlock-{os.geteuid()}")
    with pytest.raises(OSError):
        _scratch.base((str(tmp_path / "missing"),))


@pytest.mark.parametrize("plant", ["symlink", "mode", "no-marker"])
def test_a_planted_base_is_neither_used_nor_touched_and_still_hidden(tmp_path: Path, plant: str) -> None:
    name = tmp_path / f".sandlock-{os.geteuid()}"
    target = _plant(tmp_path, name, plant)
    home = _scratch.base((str(tmp_path),))
    assert home != str(name) and os.path.basename(home).startswith(f".sandlock-{os.geteuid()}-")
    assert _scratch.base((str(tmp_path),)) == home  # every run of the user picks the same one
    assert os.listdir(target) == [".sandlock"]
    assert set(_scratch.hidden((str(tmp_path),))) == {str(name), home}


def test_hidden_names_the_bases_of_every_user_and_nothing_else(tmp_path: Path) -> None:
    for n in (".sandlock-0", ".sandlock-999-x1", ".sandlock-cow-wd-1-x", ".sandlockx", ".sandlock-", "other",
              "sandlock-root-1-x"):
        (tmp_path / n).mkdir()
    names = {".sandlock-0", ".sandlock-999-x1", f".sandlock-{os.geteuid()}"}  # ours even before it is made
    assert _scratch.hidden((str(tmp_path), str(tmp_path / "missing"))) == tuple(
        str(tmp_path / n) for n in sorted(names))


def test_the_layer_of_a_tree_a_thousand_levels_deep_is_built_compared_and_committed(tmp_path: Path) -> None:
    lower = tmp_path / "proj"
    lower.mkdir()
    deep(lower, 1100)
    layers = _cow.Layers(str(lower))
    upper = layers.new_run()
    upper.build()
    farm = Path(upper.tree)
    leaf = "/".join(["d"] * 1101)
    (farm / leaf / "new").write_text("n")
    assert [str(c) for c in upper.changes()] == [f"A {leaf}/new"]
    upper.commit(upper.changes())
    assert (lower / leaf / "new").read_text() == "n"
    upper.discard()
    layers.close()
    assert os.listdir(tmp_path) == ["proj"]
    _scratch.remove_tree(str(lower))
