"""Another sandbox and a workdir's upper layer (README "Where sandlock keeps its own files",
SECURITY.md "A workdir through its layer").

The farm of a `--workdir DIR` run holds hard links to DIR's own inodes (and
copies where a link is not possible) for as long as the run lives, or for
good with `--on-exit keep`.  Landlock decides by path, so any name of DIR's
inodes outside DIR would defeat a policy that denies DIR.  The probe below is
another sandbox, started while such a layer exists: it walks every directory
its rules let it list under a top directory and, for every regular file that
is one of DIR's secret inodes (compared by device and inode number, so the
probe does not depend on where sandlock puts its layers) or holds the secret
text, tries to read it and to write it.  Each probe has a control: the same
sandbox writes where its rules allow, and a policy granting DIR still reads
and writes DIR's files.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from conftest import wait_for

SECRET = "LAYER-SECRET-7c02e1"

# argv: top dev ino secret [direct path...]; prints DIRECT WRITE, READ, WROTE and LISTED (a
# directory named secret listed) for each way in that got through.
HUNT = r"""
import os, sys
top, dev, ino = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
secret = sys.argv[4].encode()
for direct in sys.argv[5:]:
    try:
        open(direct, "r+").write("DIRECT")
        print("DIRECT WRITE", direct)
    except OSError as e:
        print("direct refused", e.errno)
files = 0
for dirpath, dirnames, filenames in os.walk(top):
    if os.path.basename(dirpath) == "secret":
        print("LISTED", dirpath, filenames)
    for name in filenames:
        path = os.path.join(dirpath, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        files += 1
        same = (st.st_dev, st.st_ino) == (dev, ino)
        try:
            with open(path, "rb") as f:
                if secret in f.read():
                    print("READ", path)
        except OSError as e:
            if same:
                print("read refused", path, e.errno)
        if same:
            try:
                with open(path, "r+") as f:
                    f.write("THROUGH-THE-LAYER")
                print("WROTE", path)
            except OSError as e:
                print("write refused", path, e.errno)
print("files", files)
"""


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def hunt(who, policy, top: Path, target: Path, *direct: Path,  # type: ignore[no-untyped-def]
         secret: str = SECRET) -> subprocess.CompletedProcess:
    st = os.stat(target)
    return who.run([*policy, "--", "/usr/bin/python3", "-c", HUNT, str(top), str(st.st_dev), str(st.st_ino),
                    secret, *map(str, direct)])


def project(who, parent: Path) -> Path:  # type: ignore[no-untyped-def]
    work = who.make_dir(parent / "proj", 0o755)
    who.make_file(work / "f", SECRET + "\n")
    who.make_dir(work / "secret", 0o755)
    who.make_file(work / "secret" / "s", SECRET + "-s\n")
    who.make_file(work / "open", "open\n")
    return work


def test_a_denied_workdir_can_be_neither_read_nor_written_through_a_kept_layer(who, scratch: Path) -> None:
    parent = who.make_dir(scratch / "parent", 0o755)
    work = project(who, parent)
    who.make_file(parent / "other" / "g", "g\n")
    kept = who.run(["--workdir", str(work), "-w", str(work), "--on-exit", "keep", "--", "/bin/true"])
    assert kept.returncode == 0 and "changes kept at" in kept.stderr, show(kept)
    r = hunt(who, ["-r", "/", "-w", str(parent), "--fs-deny", str(work)], parent, work / "f", work / "f",
             parent / "other" / "g")
    assert r.returncode == 0, show(r)
    assert "direct refused 13" in r.stdout, show(r)                       # the deny holds for DIR's path
    assert (parent / "other" / "g").read_text() == "DIRECT", show(r)     # control: -w parent writes
    assert "READ" not in r.stdout and "WROTE" not in r.stdout, f"DIR reached through its layer:\n{show(r)}"
    assert "LISTED" not in r.stdout, f"DIR listed through its layer:\n{show(r)}"
    assert (work / "f").read_text() == SECRET + "\n"
    # control: a policy that grants DIR reads and writes it, its kept layer notwithstanding
    granted = hunt(who, ["-r", "/", "-w", str(work)], work, work / "f", work / "open")
    assert granted.returncode == 0 and "DIRECT WRITE" in granted.stdout, show(granted)
    assert f"READ {work}/f" in granted.stdout and f"WROTE {work}/f" in granted.stdout, show(granted)


def test_a_denied_workdir_can_be_neither_read_nor_written_through_a_running_layer(who, scratch: Path) -> None:
    parent = who.make_dir(scratch / "parent", 0o755)
    work = project(who, parent)
    who.make_file(parent / "other" / "g", "g\n")
    signals = who.make_dir(scratch / "signals", 0o755)
    live = who.popen(["--workdir", str(work), "-w", str(work), "-w", str(signals), "--on-exit", "abort", "--",
                      "sh", "-c", f"echo new > {work}/new && touch {signals}/ready && "
                      f"while [ ! -e {signals}/go ]; do sleep 0.05; done"])
    try:
        assert wait_for(lambda: (signals / "ready").exists(), 30), "the workdir run did not start"
        r = hunt(who, ["-r", "/", "-w", str(parent), "--fs-deny", str(work)], parent, work / "f", work / "f",
                 parent / "other" / "g")
    finally:
        (signals / "go").touch()
        out, err = live.communicate(timeout=60)
    assert live.returncode == 0, (out, err)
    assert r.returncode == 0, show(r)
    assert "direct refused 13" in r.stdout and (parent / "other" / "g").read_text() == "DIRECT", show(r)
    assert "READ" not in r.stdout and "WROTE" not in r.stdout, f"DIR reached through its layer:\n{show(r)}"
    assert "LISTED" not in r.stdout, f"DIR listed through its layer:\n{show(r)}"
    assert (work / "f").read_text() == SECRET + "\n" and not (work / "new").exists()


def test_a_denied_directory_inside_a_workdir_is_not_reached_through_the_workdirs_kept_layer(
        who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    # The layer lives in DIR: a policy granting DIR but denying DIR/secret must not
    # reach DIR/secret's files through it (a cut of DIR never grants sandlock's own).
    # DIR/f is granted: its name in the layer is the same inode, readable (Landlock
    # attaches a file's rule to its inode), so the hunt is for DIR/secret/s only.
    parent = who.make_dir(scratch / "parent", 0o755)
    work = project(who, parent)
    kept = who.run(["--workdir", str(work), "-w", str(work), "--on-exit", "keep", "--", "/bin/true"])
    assert kept.returncode == 0 and "changes kept at" in kept.stderr, show(kept)
    r = hunt(who, ["-r", "/", "-w", str(work), "--fs-deny", str(work / "secret")], parent, work / "secret" / "s",
             work / "secret" / "s", work / "open", secret=SECRET + "-s")
    assert r.returncode == 0, show(r)
    assert "direct refused 13" in r.stdout, show(r)
    assert (work / "open").read_text() == "DIRECT", show(r)              # control: the rest of DIR is writable
    assert "READ" not in r.stdout and "WROTE" not in r.stdout, f"DIR/secret reached through the layer:\n{show(r)}"
    assert "LISTED" not in r.stdout, f"DIR/secret listed through the layer:\n{show(r)}"
    assert (work / "secret" / "s").read_text() == SECRET + "-s\n"
