"""No set-id files: nothing the command does makes a file set-user-id or set-group-id.

Found by the red-team run of issue 10: started as root, sandlock let the
command (capabilities dropped, still uid 0) make ``-rwsr-sr-x root`` files
in a ``-w`` directory (chmod, fchmod, creation modes, mknod) and a workdir
commit install them; any user who ran one got euid 0.  progs/setid.c tries
every spelling and prints one line per way ("<way> ok" or "<way> err N");
the test then looks at the files on disk.  Controls: chmod 755, a sticky
directory, keeping the S_ISGID a directory has, a new directory inheriting
it from its set-gid parent (README "What the sandbox allows").
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from conftest import SYSTEM_READ

from .conftest import SecProgs

SETID_WAYS = ("chmod_suid", "chmod_sgid", "fchmod", "fchmodat", "fchmodat2", "fchmod_procfd", "open_creat",
              "openat_creat", "creat", "openat2_creat", "tmpfile", "mknod", "mknodat", "mknod_fifo",
              "chmod_dir_sgid", "setcap")
CONTROLS = ("chmod_755", "chmod_sticky_dir", "chmod_keep_sgid_dir", "mkdir_in_sgid")


def results(r: subprocess.CompletedProcess) -> Dict[str, List[str]]:
    return {line.split()[0]: line.split()[1:] for line in r.stdout.splitlines() if line.strip()}


def setid_files(top: Path, allowed_dirs=()) -> List[str]:
    """Every set-uid or set-gid entry under top, except the set-gid directories in allowed_dirs."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            mode = os.lstat(path).st_mode
            if mode & (stat.S_ISUID | stat.S_ISGID):
                if stat.S_ISDIR(mode) and not mode & stat.S_ISUID and path in allowed_dirs:
                    continue
                found.append(f"{path} {stat.filemode(mode)}")
    return found


class Place:
    """Where the probe runs: host mode (-w), a busybox root (-w inside it) or a workdir."""

    def __init__(self, mode: str, who, secprogs: SecProgs, scratch: Path,  # type: ignore[no-untyped-def]
                 guest: Optional[Path]) -> None:
        self.mode, self.who, self.guest = mode, who, guest
        if guest is not None:
            shutil.copy(secprogs.musl("setid"), guest / "setid")
            (guest / "setid").chmod(0o755)
            self.prog, self.top, self.virtual = "/setid", guest / "w", Path("/w")
        else:
            self.prog, self.top = str(secprogs.host("setid")), scratch / "w"
            self.virtual = self.top
        self.progs_dir = str(secprogs.host_dir)
        who.make_dir(self.top)
        who.make_dir(self.top / "out")
        sgid = who.make_dir(self.top / "sg", 0o2775)
        sgid.chmod(0o2775)

    def options(self) -> List[str]:
        if self.mode == "root":
            return ["--root", str(self.guest), "-w", "/w"]
        if self.mode == "host":
            return [*SYSTEM_READ, "-r", "/proc", "-r", self.progs_dir, "-w", str(self.top)]
        return ["-r", "/", "--workdir", str(self.top), "-w", str(self.top)]

    def run(self, *command: str) -> subprocess.CompletedProcess:
        return self.who.run([*self.options(), "--", *command], timeout=120)

    def probe(self) -> subprocess.CompletedProcess:
        return self.run(self.prog, str(self.virtual / "out"), str(self.virtual / "sg"))


@pytest.fixture(params=["host", "root", "workdir"])
def place(request: pytest.FixtureRequest, who, secprogs: SecProgs, scratch: Path) -> Place:  # type: ignore[no-untyped-def]
    guest = request.getfixturevalue("busybox_root") if request.param == "root" else None
    return Place(request.param, who, secprogs, scratch, guest)


def test_no_way_makes_a_set_id_file(place: Place) -> None:
    r = place.probe()
    assert r.returncode == 0, r.stderr
    seen = results(r)
    assert all(way in seen for way in SETID_WAYS + CONTROLS), r.stdout
    failed_controls = {way: seen[way] for way in CONTROLS if seen[way] != ["ok"]}
    assert not failed_controls, f"controls failed: {failed_controls}\n{r.stdout}"
    got_through = {way: seen[way] for way in SETID_WAYS if seen[way] != ["err", str(errno.EPERM)]}
    assert not got_through, f"not refused with EPERM: {got_through}\n{r.stdout}"
    leftovers = setid_files(place.top, allowed_dirs=(place.top / "sg", place.top / "sg" / "sub"))
    assert not leftovers, f"set-id files on disk: {leftovers}"
    assert os.stat(place.top / "sg" / "sub").st_mode & stat.S_ISGID  # inherited from its parent (control)


def test_a_commit_never_installs_a_set_id_file_the_run_changed(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    work = who.make_dir(scratch / "work")
    who.make_file(work / "appended", "a\n", 0o755).chmod(0o4755)
    who.make_file(work / "touched", "b\n", 0o755).chmod(0o6755)
    who.make_file(work / "untouched", "c\n", 0o755).chmod(0o4755)
    r = who.run(["-r", "/", "--workdir", str(work), "-w", str(work), "--", "sh", "-c",
                 f"echo x >> {work}/appended && touch {work}/touched && chmod 755 {work}/touched.new 2>/dev/null;"
                 f" cp -p {work}/untouched {work}/copied; echo done"], timeout=120)
    assert r.returncode == 0 and "done" in r.stdout, r.stderr
    assert (work / "appended").read_text() == "a\nx\n" and (work / "copied").exists(), r.stderr
    assert sorted(setid_files(work)) == [f"{work / 'untouched'} -rwsr-xr-x"]  # the run did not change it
