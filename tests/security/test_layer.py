"""Moves out of the copy-on-write layer (README "Copy-on-write workdir", SECURITY.md "The copy-on-write layer").

The upper layer's files are hard links to the workdir's own until the command
writes them.  A rename or a link of such a file (or of a directory holding
some) to a writable place outside the layer on the same filesystem would
carry the workdir's inode out, where writing it changes the workdir, even
with --dry-run.  The probe (tests/security/progs/layer_moves.c) tries every
spelling against every writable place: a -w directory next to the workdir,
/dev/shm of the emulated root, a -w directory of a --root whose subdirectory
is the workdir, and a read-write --fs-mount; then the workdir must be byte for
byte as it was.  The control makes the same moves inside the layer and
commits them.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Dict, Iterator, List

import pytest

from conftest import SYSTEM_READ, tree_snapshot
from .conftest import Guest, SecProgs

FILE_WAYS = ("rename", "renameat", "renameat-dirfd", "renameat2", "noreplace", "exchange-out", "exchange-in",
             "moved-twice", "link", "linkat", "linkat-follow", "linkat-symlink", "linkat-empty-path",
             "linkat-proc-fd")
DIR_WAYS = ("rename-dir", "exchange-dir-out", "exchange-dir-in")
PLACES = ("host-w", "host-shm", "root-w", "root-shm", "root-mount")


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def arrived(way: str) -> str:
    """Where the probe's `way` leaves W's entry in O."""
    return f"x-{way}" if way.startswith("exchange") else f"m-{way}"


def snapshot(top: Path) -> Dict[str, tuple]:
    st = os.lstat(top)
    snap = tree_snapshot(top)
    snap["."] = (st.st_mode, st.st_uid, st.st_gid, st.st_mtime_ns, sorted(os.listdir(top)))
    return snap


class Place(Guest):
    """One workdir and one writable place O outside its layer (or inside it, for the control)."""

    def __init__(self, kind: str, who, scratch: Path, progs: SecProgs,  # type: ignore[no-untyped-def]
                 guest, inside: bool = False) -> None:
        super().__init__(who, scratch, progs, guest if kind.startswith("root") else None, ("layer_moves",))
        self.kind = kind
        if self.guest is not None:
            for path in [self.guest, *self.guest.rglob("*")]:
                who.own(path)
        self.options: List[str] = []
        if kind == "root-shm":  # the root is the workdir: everything but /dev/shm is in the layer
            self.workdir, self.w = self.guest, Path("/")
            self.options = ["--root", str(self.guest), "--workdir", str(self.guest), "-w", "/"]
        elif self.guest is not None:  # the workdir is a directory of the root
            self.w = Path("/wd")
            self.workdir = who.make_dir(self.host(self.w))
            self.options = ["--root", str(self.guest), "--workdir", str(self.workdir), "-w", "/wd"]
        else:
            self.workdir = self.w = who.make_dir(scratch / "wd")
            self.options = [*SYSTEM_READ, "-r", str(progs.host_dir), "-r", "/proc",
                            "--workdir", str(self.w), "-w", str(self.w)]
        self.outside: Path = Path("/dev/shm")
        if inside:
            self.o = self.w / "inside"
            who.make_dir(self.workdir / "inside")
        elif kind == "host-w":
            self.o = self.outside = who.make_dir(scratch / "o")
            self.options += ["-w", str(self.o)]
        elif kind == "root-w":
            self.o = Path("/o")
            self.outside = who.make_dir(self.host(self.o))
            self.options += ["-w", "/o"]
        elif kind == "root-mount":
            self.o = Path("/m")
            self.outside = who.make_dir(scratch / "mounted")
            self.options += ["--fs-mount", f"/m:{self.outside}"]
        else:
            self.o = Path("/dev/shm")
        for way in FILE_WAYS:
            who.make_file(self.workdir / f"f-{way}", f"orig-{way}\n")
        for way in DIR_WAYS:
            who.make_file(who.make_dir(self.workdir / f"d-{way}") / "g", f"orig-{way}\n")

    def run(self, *end: str) -> subprocess.CompletedProcess:
        prog = str(self.progs.host("layer_moves")) if self.guest is None else "/probe/layer_moves"
        return self.who.run([*self.options, *end, "--", prog, str(self.w), str(self.o)], timeout=60)


def verdicts(r: subprocess.CompletedProcess) -> Dict[str, str]:
    return {line.split()[1]: " ".join(line.split()[:1] + line.split()[2:])
            for line in r.stdout.splitlines() if line.split()[:1] != ["DONE"]}


@pytest.fixture(params=PLACES)
def place(request: pytest.FixtureRequest, who, scratch: Path, secprogs: SecProgs) -> Iterator[Place]:  # type: ignore[no-untyped-def]
    guest = request.getfixturevalue("busybox_root") if request.param.startswith("root") else None
    yield Place(request.param, who, scratch, secprogs, guest)


@pytest.mark.parametrize("end", [["--dry-run"], ["--on-exit", "abort"]], ids=["dry-run", "abort"])
def test_no_rename_or_link_out_of_the_layer_changes_the_workdir(place: Place, end: List[str]) -> None:
    before = snapshot(place.workdir)
    r = place.run(*end)
    assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
    assert snapshot(place.workdir) == before, f"a move out of the layer changed the workdir:\n{show(r)}"
    got = verdicts(r)
    # a shared file leaves the layer as a copy of its own; a directory gets EXDEV, as
    # between two filesystems (mv then copies); RENAME_WHITEOUT needs CAP_MKNOD
    want = {way: "MOVED" for way in FILE_WAYS}
    want.update({way: "REFUSED EXDEV" for way in DIR_WAYS})
    want["whiteout"] = "REFUSED EPERM"
    assert got == want, show(r)
    if place.o != Path("/dev/shm"):  # what left the layer is a file of its own, written
        for way in FILE_WAYS:
            assert (place.outside / arrived(way)).read_text() == f"orig-{way}\nTAMPERED\n", show(r)


def test_the_same_moves_inside_the_layer_work_and_are_committed(who, scratch: Path, secprogs: SecProgs,  # type: ignore[no-untyped-def]
                                                                  busybox_root: Path) -> None:
    for kind in ("host-w", "root-w"):
        top = who.make_dir(scratch / kind)
        guest = None
        if kind == "root-w":
            guest = top / "root"
            subprocess.run(["cp", "-a", str(busybox_root), str(guest)], check=True)
        place = Place(kind, who, top, secprogs, guest, inside=True)
        r = place.run()
        assert r.returncode == 0 and r.stdout.rstrip().endswith("DONE"), show(r)
        got = verdicts(r)
        want = {way: "MOVED" for way in FILE_WAYS + DIR_WAYS}
        want["whiteout"] = "REFUSED EPERM"
        assert got == want, f"{kind}:\n{show(r)}"
        inside = place.workdir / "inside"
        for way in FILE_WAYS:
            assert (inside / arrived(way)).read_text() == f"orig-{way}\nTAMPERED\n", f"{kind} {way}:\n{show(r)}"
        for way in DIR_WAYS:
            assert (inside / arrived(way) / "g").read_text() == f"orig-{way}\nTAMPERED\n", f"{kind} {way}:\n{show(r)}"
        for way in ("rename", "renameat2", "noreplace", "moved-twice", "rename-dir"):
            assert not (place.workdir / f"f-{way}").exists() and not (place.workdir / f"d-{way}").exists(), way
