"""The copy-on-write layer on its own (_cow.py): farm, changes, commit, symlink safety.

No sandbox is started: these drive Layers/Upper directly on temporary trees,
as the supervisor does, and compare what lands on disk.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, Tuple

import pytest

from sandlock import _cow
from sandlock import _scratch


def tree(top: Path) -> Dict[str, Tuple[str, str]]:
    """{relative path: (kind, content or target)} without following symlinks, sandlock's
    own containers (the layers, in the workdir) left out."""
    out = {}
    for root, dirs, files in os.walk(top):
        dirs[:] = [d for d in dirs if not _scratch.reserved(d)]
        for name in dirs + files:
            path = Path(root) / name
            rel = str(path.relative_to(top))
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                out[rel] = ("link", os.readlink(path))
            elif stat.S_ISDIR(mode):
                out[rel] = ("dir", oct(stat.S_IMODE(mode)))
            else:
                out[rel] = ("file", path.read_text() + oct(stat.S_IMODE(mode)))
    return out


@pytest.fixture
def work(tmp_path: Path) -> Path:
    lower = tmp_path / "proj"
    (lower / "sub").mkdir(parents=True)
    (lower / "a").write_text("a")
    (lower / "sub" / "b").write_text("b")
    os.chmod(lower / "sub" / "b", 0o644)
    (lower / "gone").mkdir()
    (lower / "gone" / "x").write_text("x")
    os.symlink("a", lower / "l")
    return lower


def upper_for(lower: Path) -> Tuple[_cow.Layers, _cow.Upper]:
    layers = _cow.Layers(str(lower))
    upper = layers.new_run()
    upper.build()
    return layers, upper


def test_the_farm_shows_the_lower_tree_and_shares_its_files(work: Path) -> None:
    layers, upper = upper_for(work)
    try:
        assert tree(Path(upper.tree)) == tree(work)
        farm_a, lower_a = os.stat(Path(upper.tree) / "a"), os.stat(work / "a")
        assert (farm_a.st_dev, farm_a.st_ino) == (lower_a.st_dev, lower_a.st_ino)
        assert upper.changes() == []
        assert str(layers.path).startswith(f"{work}/.sandlock-{os.geteuid()}-")  # in DIR: DIR's rules cover it
    finally:
        upper.discard()
        layers.close()
    assert not Path(layers.path).exists() and not Path(layers.container).exists()


def test_the_layer_in_the_workdir_is_in_no_farm_change_or_commit_and_git_ignores_it(work: Path) -> None:
    os.utime(work, ns=(1_000_000_000 * 10**9, 1_000_000_000 * 10**9))
    (work / "sub" / ".sandlock-7-old").mkdir()   # another container, deeper (a nested workdir's)
    (work / "sub" / ".sandlock-7-old" / "x").write_text("x")
    mtime = os.stat(work).st_mtime_ns
    layers, upper = upper_for(work)
    try:
        box = Path(layers.container)
        assert box.parent == work and os.stat(work).st_mtime_ns == mtime   # DIR's time put back
        assert (box / ".gitignore").read_text().splitlines()[-1] == "*"
        farm = Path(upper.tree)
        assert sorted(os.listdir(farm)) == ["a", "gone", "l", "sub"]        # neither container is shown
        assert sorted(os.listdir(farm / "sub")) == ["b"]
        (farm / ".sandlock-0-made").mkdir()                                   # names a command may not commit
        (farm / "sub" / ".sandlock-12-x").write_text("x")
        (farm / "new").write_text("n")
        assert [str(c) for c in upper.changes()] == ["A new"]
        upper.commit(upper.changes())
        assert sorted(os.listdir(work)) == sorted(["a", "gone", "l", "new", "sub", box.name])
        assert sorted(os.listdir(work / "sub")) == [".sandlock-7-old", "b"]
    finally:
        upper.discard()
        layers.close()
    assert sorted(os.listdir(work)) == ["a", "gone", "l", "new", "sub"]


def test_a_kept_layer_in_a_git_workdir_is_not_listed_by_git_status(work: Path) -> None:
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    env = dict(os.environ, GIT_CONFIG_GLOBAL="/dev/null", GIT_CONFIG_SYSTEM="/dev/null", HOME=str(work.parent))
    subprocess.run([git, "init", "-q", str(work)], check=True, env=env)
    layers, upper = upper_for(work)
    (Path(upper.tree) / "new").write_text("n")
    upper.keep()
    status = subprocess.run([git, "-C", str(work), "status", "--porcelain", "--untracked-files=all"],
                            capture_output=True, text=True, env=env, check=True).stdout
    assert ".sandlock" not in status and "?? a" in status.splitlines(), status
    layers.close()
    assert Path(layers.path).is_dir()  # kept


def test_changes_are_listed_then_committed_exactly(work: Path, tmp_path: Path) -> None:
    before = tree(work)
    layers, upper = upper_for(work)
    farm = Path(upper.tree)
    upper.copy_up(os.fsencode(farm / "a"))
    assert os.stat(farm / "a").st_ino != os.stat(work / "a").st_ino
    (farm / "a").write_text("a2")
    (farm / "new").write_text("n")
    (farm / "gone" / "x").unlink()
    (farm / "gone").rmdir()
    os.unlink(farm / "l")
    os.symlink("new", farm / "l")
    (farm / "d" / "e").mkdir(parents=True)
    assert tree(work) == before  # nothing reached the lower tree yet
    changes = [str(c) for c in upper.changes()]
    assert changes == ["M a", "A d", "A d/e", "D gone", "D gone/x", "M l", "A new"]
    expected = tree(farm)
    upper.commit(upper.changes())
    assert tree(work) == expected
    upper.discard()
    layers.close()
    assert not [p for p in os.listdir(work) if p.startswith(".sandlock-")]


def test_a_copy_up_never_changes_the_lower_file(work: Path) -> None:
    layers, upper = upper_for(work)
    farm = Path(upper.tree)
    upper.copy_up(os.fsencode(farm / "sub" / "b"))
    (farm / "sub" / "b").write_text("changed")
    os.chmod(farm / "sub" / "b", 0o600)
    assert (work / "sub" / "b").read_text() == "b"
    assert stat.S_IMODE(os.stat(work / "sub" / "b").st_mode) == 0o644
    upper.discard()
    layers.close()


def test_a_planted_symlink_is_committed_as_a_symlink_and_never_followed(work: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    layers, upper = upper_for(work)
    farm = Path(upper.tree)
    os.symlink(str(outside), farm / "abs")
    os.symlink("../../outside", farm / "rel")
    # a directory of the lower tree replaced by a symlink to the outside, with a
    # removal of what was in it: the commit must not reach through the link
    (farm / "gone" / "x").unlink()
    (farm / "gone").rmdir()
    os.symlink(str(outside), farm / "gone")
    upper.commit(upper.changes())
    assert os.readlink(work / "abs") == str(outside) and os.readlink(work / "gone") == str(outside)
    assert sorted(os.listdir(outside)) == ["secret"] and (outside / "secret").read_text() == "s"
    upper.discard()
    layers.close()


def test_a_directory_replaced_by_a_file_takes_its_entries_with_it(work: Path) -> None:
    layers, upper = upper_for(work)
    farm = Path(upper.tree)
    (farm / "sub" / "b").unlink()
    (farm / "sub").rmdir()
    (farm / "sub").write_text("now a file")
    upper.commit(upper.changes())
    assert (work / "sub").read_text() == "now a file"
    upper.discard()
    layers.close()


def test_an_interrupted_commit_is_reported_by_the_next_run(work: Path) -> None:
    layers, upper = upper_for(work)
    (Path(upper.tree) / "new").write_text("n")
    upper._state("committing")  # as if killed here
    left = _cow.leftovers(str(work))
    # the layer's owner (this process) is alive: not a leftover yet
    assert left == []
    upper.keep()
    layers_path = layers.path
    os.rename(layers_path, layers_path.replace(f"-{os.getpid()}-", "-999999999-"))
    left = _cow.leftovers(str(work))
    assert len(left) == 1 and left[0].endswith("(kept)")


def test_full_layer_refuses_new_space(work: Path) -> None:
    layers, upper = upper_for(work)
    upper.limit = 4096
    (Path(upper.tree) / "big").write_bytes(b"x" * 65536)
    upper.measure()
    with pytest.raises(OSError) as info:
        upper.need_space()
    assert info.value.errno == 28  # ENOSPC
    upper.discard()
    layers.close()


def test_a_layer_kept_beside_the_workdir_by_an_earlier_release_is_still_reported(work: Path) -> None:
    # releases before kept layers in a container in the workdir's parent
    box, old = _scratch.new_dir(str(work.parent), "cow-999999999-", os.fsencode(str(work)))
    os.mkdir(os.path.join(old, "1"), 0o700)
    Path(old, "1", "state").write_text("kept\n")
    assert _cow.leftovers(str(work)) == [f"{old}/1 (kept)"]
    assert Path(old).is_dir()


def placed(monkeypatch) -> list:
    """Names _cow._place (the usual way, a temporary name renamed) is called for."""
    names: list = []
    real = _cow._place

    def spy(src, dst, name, st, upper):
        names.append(name)
        return real(src, dst, name, st, upper)
    monkeypatch.setattr(_cow, "_place", spy)
    return names


def test_a_new_file_is_committed_by_a_link_of_the_layers_own_file(work: Path, monkeypatch) -> None:
    """The fast way (_cow._link_new): one link(2) to its final name; the layer stays whole."""
    usual = placed(monkeypatch)
    layers, upper = upper_for(work)
    farm = Path(upper.tree)
    (farm / "sub" / "new").write_text("new")
    os.symlink("new", farm / "sub" / "newlink")
    os.utime(farm / "sub", ns=(10**18, 10**18))  # the directory's time, as the run left it
    upper.commit(upper.changes())
    assert (work / "sub" / "new").read_text() == "new"
    assert os.stat(work / "sub" / "new").st_ino == os.stat(farm / "sub" / "new").st_ino
    assert os.readlink(work / "sub" / "newlink") == "new"
    assert os.stat(work / "sub").st_mtime_ns == 10**18
    assert [n for n in os.listdir(work / "sub") if n.startswith(".sandlock")] == []
    assert "new" not in usual and "newlink" not in usual
    assert (farm / "sub" / "new").read_text() == "new"  # the layer is whole
    upper.discard()
    layers.close()


def test_a_new_name_someone_made_meanwhile_is_replaced_whole_by_the_usual_way(work: Path, monkeypatch) -> None:
    """The link finds the name taken (made in the workdir during the run, not by it): the
    run's file is renamed over it from a temporary name (_place), never torn."""
    usual = placed(monkeypatch)
    layers, upper = upper_for(work)
    farm = Path(upper.tree)
    (farm / "new").write_text("the run's")
    (work / "new").write_text("someone else's")
    upper.commit(upper.changes())
    assert (work / "new").read_text() == "the run's"
    assert [n for n in os.listdir(work) if n.startswith(".sandlock-new")] == []
    assert usual == ["new"]
    upper.discard()
    layers.close()
