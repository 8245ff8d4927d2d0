"""Fixtures and helpers of the copy-on-write workdir tests (tests/test_cow_*.py, `--workdir DIR`,
README "Copy-on-write workdir (`--workdir DIR`)").

The command sees DIR at its own path (or at its virtual path with `--root`);
its writes go to a private upper layer next to DIR, and at the end they are
committed, discarded, kept or only listed (`--dry-run`).  Each test runs real
programs under `python -m sandlock`, as root and as the unprivileged user (the
`who` fixture), in directories owned by that identity, and asserts what a user
sees: the files on disk after the run, exit codes, the lines on stderr.

"Behaves as a real filesystem" is checked by running the same script bare
(not sandboxed, same identity) on a second copy of the same tree and
comparing the two trees afterwards: names, types, contents, modes, owners,
symlink targets and which names share an inode.

Canaries live next to the workdir on the host: a symlink the command plants
in DIR must never make the supervisor (or the command) write outside.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Sequence

import pytest

import rootfs
from conftest import IS_ROOT, build_fixture, tree_snapshot
from rootcase import copy_root

SECRET = "CANARY-cow-2b9e51"
LEFTOVER = "an earlier run's upper layer is left at "
BARE = "import subprocess, sys\nsys.exit(subprocess.run(sys.argv[1:]).returncode)\n"


# --- fixtures -----------------------------------------------------------------------------------

@pytest.fixture
def base(scratch: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """A directory of the identity's own: the workdir's parent, where its upper layer goes."""
    return who.make_dir(scratch / "cow", 0o755)


@pytest.fixture
def wd(base: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """The workdir, holding the standard tree (see populate)."""
    return populate(who, base / "wd")


@pytest.fixture
def twin(base: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """A second copy of the standard tree, for the same script run bare."""
    return populate(who, base / "bare")


@pytest.fixture
def canary(base: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """A host directory next to the workdir that nothing in the sandbox may change."""
    d = who.make_dir(base / "canary", 0o755)
    who.make_file(d / "c", SECRET + "\n")
    return d


@pytest.fixture
def signals(base: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """A plain writable directory (given with -w) where a command says 'ready' and reads 'go'."""
    return who.make_dir(base / "signals", 0o755)


@pytest.fixture(scope="session")
def busybox_shared() -> Path:
    return build_fixture(rootfs.busybox_rootfs)


@pytest.fixture
def broot(busybox_shared: Path, base: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """A private busybox root owned by the identity (so it may be a workdir), /tmp 1777."""
    root = copy_root(busybox_shared, base / "root")
    if IS_ROOT:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                os.lchown(os.path.join(dirpath, name), who.uid, who.gid)
        os.lchown(root, who.uid, who.gid)
    return root


# --- helpers --------------------------------------------------------------------------------------

def populate(who, d: Path) -> Path:  # type: ignore[no-untyped-def]
    """The standard lower tree: files, directories, symlinks and a pair of hard links."""
    who.make_dir(d)
    for name, data in (("keep.txt", "keep\n"), ("over.txt", "old contents, longer than the new\n"),
                       ("app.txt", "line1\n"), ("trunc.txt", "truncate me\n"), ("trunc2.txt", "0123456789\n"),
                       ("mode.txt", "m\n"), ("time.txt", "t\n"), ("gone.txt", "gone\n"), ("gone2.txt", "old\n"),
                       ("ren_src.txt", "r\n"), ("ren_over_src", "src\n"), ("ren_over_dst", "dst\n"),
                       ("hl_a", "hl\n"), ("full/a", "a\n"), ("full/sub/b", "b\n"), ("movedir/x", "x\n"),
                       ("movedir/deep/y", "y\n"), ("sub/s", "s\n")):
        for parent in reversed(Path(name).parents[:-1]):
            who.make_dir(d / parent)
        who.make_file(d / name, data)
    who.make_dir(d / "emptydir")
    os.link(d / "hl_a", d / "hl_b")
    for name, target in (("symold", "keep.txt"), ("symrepl", "keep.txt")):
        os.symlink(target, d / name)
        who.own(d / name)
    return d


def shape(top: Path) -> Dict[str, list]:
    """Every entry under top: type, mode, owner, content or link target, names sharing its inode."""
    out: Dict[str, list] = {}
    inodes: Dict[int, List[str]] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, top)
            st = os.lstat(path)
            data: object = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    data = f.read()
                inodes.setdefault(st.st_ino, []).append(rel)
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(path)
            out[rel] = [stat.filemode(st.st_mode), st.st_uid, st.st_gid, data]
    for names in inodes.values():
        for rel in names:
            out[rel].append(sorted(names))
    return out


def diff(a: Dict[str, list], b: Dict[str, list]) -> str:
    """The entries where two shapes differ, one per line, for assertion messages."""
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key) != b.get(key):
            lines.append(f"  {key}: sandbox {a.get(key)!r} / real {b.get(key)!r}")
    return "\n".join(lines)


def sandlocks(name: str) -> bool:
    """A name of sandlock's containers, .sandlock-UID-XXXX (a workdir's layers are in one in it)."""
    return name.startswith(".sandlock-") and name[len(".sandlock-"):].split("-", 1)[0].isdigit()


def snapshot(top: Path) -> Dict[str, tuple]:
    """tree_snapshot plus the top directory itself: 'byte for byte unchanged', but for
    sandlock's own containers at the top (a run's layers: see layers)."""
    st = os.lstat(top)
    snap = tree_snapshot(top, skip=sandlocks)
    snap["."] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, sorted(n for n in os.listdir(top)
                                                                          if not sandlocks(n)))
    return snap


def cow(who, workdir: Path, command: Sequence[str], *options: str,  # type: ignore[no-untyped-def]
        **kwargs) -> subprocess.CompletedProcess:
    """`sandlock --workdir DIR -w DIR OPTIONS -- COMMAND` as who."""
    return who.run(["--workdir", str(workdir), "-w", str(workdir), *options, "--", *command], **kwargs)


def bare(who, argv: Sequence[str]) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """argv run as who, not sandboxed; stdout and stderr as text."""
    r = who.python(BARE, args=list(argv), timeout=60)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


def change_lines(stderr: str) -> List[str]:
    """The lines of stderr that are not sandlock's own messages (the --dry-run listing)."""
    return [line for line in stderr.splitlines() if not line.startswith("sandlock: ")]


def layers(base: Path) -> List[str]:
    """sandlock's upper layers in base (a workdir, where they are made, or its parent, where
    releases before put them): what its per-user containers (.sandlock-UID-XXXX) hold."""
    out = []
    for name in sorted(os.listdir(base)):
        if sandlocks(name) and (base / name).is_dir():
            out += [f"{name}/{inner}" for inner in sorted(os.listdir(base / name))
                    if inner not in (".sandlock", ".gitignore")]
    return out


def layers_left(wd: Path) -> List[str]:
    """Layers or containers of sandlock left in the workdir or beside it."""
    return layers(wd) + layers(wd.parent) + [n for n in os.listdir(wd) if sandlocks(n)]


def kept_path(stderr: str) -> Path:
    """The path of 'sandlock: changes kept at PATH ...'."""
    for line in stderr.splitlines():
        if line.startswith("sandlock: changes kept at "):
            return Path(line[len("sandlock: changes kept at "):].split(" ")[0])
    raise AssertionError(f"no 'changes kept at' line on stderr:\n{stderr}")
