"""The copy-on-write workdir, `--workdir DIR`: real programs (tar, git) give the tree they
give on a real filesystem.  Fixtures and the idea of these tests: tests/cowcase.py.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
from pathlib import Path
from typing import Dict

import pytest

from conftest import SYSTEM_PATH
from rootcase import show
from cowcase import shape, diff, cow, bare
from cowcase import base, wd, twin, canary, signals, busybox_shared, broot  # noqa: F401  (fixtures)


# --- 3. real programs -----------------------------------------------------------------------------------

def make_archive(path: Path, dirs: int = 40, per_dir: int = 50) -> None:
    """A tar of dirs x per_dir small files, with varied modes, mtimes and some symlinks."""
    with tarfile.open(path, "w") as tar:
        for d in range(dirs):
            info = tarfile.TarInfo(f"d{d:02d}")
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 1600000000 + d
            tar.addfile(info)
            for f in range(per_dir):
                name = f"d{d:02d}/f{f:03d}"
                if f % 25 == 24:
                    info = tarfile.TarInfo(name)
                    info.type, info.linkname, info.mtime = tarfile.SYMTYPE, f"f{f - 1:03d}", 1500000000
                    info.mode = 0o777
                    tar.addfile(info)
                    continue
                data = f"{name}\n".encode() * (1 + f % 7)
                info = tarfile.TarInfo(name)
                info.size, info.mode, info.mtime = len(data), (0o644, 0o600, 0o755)[f % 3], 1500000000 + f
                tar.addfile(info, io.BytesIO(data))


def times(top: Path) -> Dict[str, int]:
    """Modification times of everything below top (not top itself), symlinks not followed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            out[os.path.relpath(path, top)] = os.lstat(path).st_mtime_ns
    return out


def test_tar_extraction_of_two_thousand_files_commits_the_same_tree_as_a_real_one(
        who, base: Path, wd: Path) -> None:
    archive = base / "files.tar"
    make_archive(archive)
    shutil.copyfile(archive, wd / "files.tar")
    who.own(wd / "files.tar")
    real_dir = who.make_dir(base / "real")
    script = 'cd "$1" && mkdir out && tar --no-same-owner -xf files.tar -C out && find out | wc -l'
    r = cow(who, wd, ["sh", "-c", script, "sh", str(wd)])
    real = bare(who, ["tar", "--no-same-owner", "-xf", str(archive), "-C", str(real_dir)])
    assert real.returncode == 0, show(real)
    assert (r.returncode, r.stdout.strip()) == (0, "2041"), show(r)
    got, want = shape(wd / "out"), shape(real_dir)
    assert len(want) == 2040
    assert got == want, f"the committed extraction differs from a real one:\n{diff(got, want)[:3000]}"
    assert times(wd / "out") == times(real_dir), "modification times differ from a real extraction"


def test_git_init_add_commit_in_the_workdir_gives_a_repository_git_fsck_accepts(who, wd: Path) -> None:
    git = shutil.which("git", path=SYSTEM_PATH)
    if git is None:
        pytest.skip("git is missing on the host (Debian package git): .ci/run would need to install it")
    env = {"HOME": str(wd), "GIT_CONFIG_NOSYSTEM": "1"}  # HOME outside DIR is not readable in the sandbox
    script = ('cd "$1" && git init -q && git add -A && '
              'git -c user.name=T -c user.email=t@example.com commit -qm first-commit && git log --format=%s')
    r = cow(who, wd, ["sh", "-c", script, "sh", str(wd)], env=env)
    assert (r.returncode, r.stdout) == (0, "first-commit\n"), show(r)
    fsck = bare(who, ["env", f"HOME={wd.parent}", "GIT_CONFIG_NOSYSTEM=1", git, "-C", str(wd), "fsck", "--strict"])
    assert fsck.returncode == 0, show(fsck)
    log = bare(who, ["env", f"HOME={wd.parent}", git, "-C", str(wd), "log", "--format=%s", "--name-only"])
    assert log.returncode == 0 and log.stdout.startswith("first-commit\n"), show(log)
    assert "full/sub/b" in log.stdout and "keep.txt" in log.stdout, show(log)
    status = bare(who, ["env", f"HOME={wd.parent}", git, "-C", str(wd), "status", "--porcelain"])
    assert (status.returncode, status.stdout) == (0, ""), show(status)
