"""Integration tests of the copy-on-write workdir, `--workdir DIR` (SPEC section 5, with 1.4).

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

import io
import json
import re
import os
import shutil
import signal
import stat
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

import rootfs
from conftest import IS_ROOT, SYSTEM_PATH, SYSTEM_PYTHON, build_fixture, tree_snapshot, wait_for
from rootcase import copy_root, show

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


# --- 1. a real filesystem, seen through the layer ---------------------------------------------------

OPERATIONS = r"""
set -e
cd "$1"
cat keep.txt
echo created > new.txt
echo over > over.txt
echo more >> app.txt
: > trunc.txt
truncate -s 3 trunc2.txt
chmod 600 mode.txt
chmod 700 sub
touch -m -d @1000000000 time.txt
mkdir -p newdir/inner
echo deep > newdir/inner/f
rmdir emptydir
rm gone.txt
rm gone2.txt
echo recreated > gone2.txt
rm -r full
mkdir full
ls -A full
mv ren_src.txt ren_dst.txt
mv ren_over_src ren_over_dst
mv movedir movedir2
echo changed >> movedir2/x
mv over.txt sub/over-moved.txt
mv hl_b hl_c
ln new.txt new-link.txt
echo via-new-link >> new-link.txt
ln -s keep.txt sym_rel
ln -s ../keep.txt sub/sym_up
ln -s /nonexistent/target sym_dangling
rm symold
ln -sfn new-target symrepl
mkdir short-lived
echo x > short-lived/f
rm -r short-lived
cat new.txt sub/over-moved.txt app.txt trunc2.txt ren_dst.txt ren_over_dst gone2.txt movedir2/x movedir2/deep/y
cat sub/sym_up sym_rel
ls -A . sub movedir2 newdir/inner
stat -c '%n %F %a %s' keep.txt new.txt mode.txt trunc.txt trunc2.txt sub full newdir sym_rel symrepl time.txt
stat -c '%n %Y' time.txt
readlink symrepl sym_dangling
for p in gone.txt emptydir movedir full/a ren_src.txt symold short-lived; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "still there: $p"; fi
done
"""


def test_file_operations_give_the_same_tree_and_output_as_on_a_real_filesystem(who, wd: Path, twin: Path) -> None:
    r = cow(who, wd, ["sh", "-c", OPERATIONS, "sh", str(wd)])
    real = bare(who, ["sh", "-c", OPERATIONS, "sh", str(twin)])
    assert real.returncode == 0, show(real)
    assert r.returncode == 0, show(r)
    assert r.stdout == real.stdout.replace(str(twin), str(wd)), f"sandbox:\n{show(r)}\nreal:\n{show(real)}"
    got, want = shape(wd), shape(twin)
    assert got == want, f"the committed tree differs from a real run:\n{diff(got, want)}\n{show(r)}"
    assert os.lstat(wd / "time.txt").st_mtime == 1000000000, show(r)
    assert layers_left(wd) == [], f"upper layers left behind: {layers_left(wd)}"


ERRNO_PROBES = r"""
import errno, json, os, shutil, sys
os.chdir(sys.argv[1])
out = {}

def attempt(name, fn):
    try:
        value = fn()
        out[name] = "ok" if value is None or isinstance(value, int) else value
    except OSError as e:
        out[name] = errno.errorcode[e.errno]

def write(name, data):
    with open(name, "w") as f:
        f.write(data)

write("made.txt", "made\n")
os.makedirs("nd/inner")
attempt("excl_on_a_lower_file", lambda: os.open("keep.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
attempt("excl_on_a_new_file", lambda: os.open("made.txt", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
attempt("rmdir_of_a_full_lower_dir", lambda: os.rmdir("full"))
attempt("rmdir_of_a_full_new_dir", lambda: os.rmdir("nd"))
attempt("rename_file_over_dir", lambda: os.rename("keep.txt", "sub"))
attempt("rename_dir_over_file", lambda: os.rename("sub", "keep.txt"))
attempt("rename_dir_over_full_dir", lambda: os.rename("emptydir", "full"))
attempt("open_file_as_dir", lambda: os.open("keep.txt/x", os.O_RDONLY))
attempt("stat_file_as_dir", lambda: os.stat("keep.txt/"))
attempt("stat_file_slash_dot", lambda: os.stat("keep.txt/."))
attempt("open_file_with_slash", lambda: os.open("keep.txt/", os.O_RDONLY))
attempt("create_file_with_slash", lambda: os.open("app.txt/", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))
attempt("mkdir_existing", lambda: os.mkdir("sub"))
attempt("unlink_dir", lambda: os.unlink("sub"))
attempt("rmdir_file", lambda: os.rmdir("keep.txt"))
attempt("link_over_existing", lambda: os.link("keep.txt", "app.txt"))
attempt("symlink_over_existing", lambda: os.symlink("x", "keep.txt"))
attempt("open_missing", lambda: os.open("nothing", os.O_RDONLY))
attempt("opath_nofollow_of_a_symlink", lambda: os.open("symold", os.O_PATH | os.O_NOFOLLOW))
attempt("opath_nofollow_of_a_new_symlink", lambda: os.symlink("keep.txt", "newlink") or
        os.open("newlink", os.O_PATH | os.O_NOFOLLOW))
os.unlink("gone.txt")
shutil.rmtree("full")
os.rmdir("emptydir")
out["listing_after_delete"] = sorted(os.listdir("."))
attempt("stat_deleted_file", lambda: os.stat("gone.txt"))
attempt("lstat_deleted_file", lambda: os.lstat("gone.txt"))
attempt("open_deleted_file", lambda: os.open("gone.txt", os.O_RDONLY))
attempt("access_deleted_file", lambda: "yes" if os.access("gone.txt", os.F_OK) else "no")
attempt("stat_inside_deleted_dir", lambda: os.stat("full/a"))
attempt("listdir_deleted_dir", lambda: os.listdir("full"))
write("gone.txt", "again\n")
os.mkdir("full")
out["listing_after_recreate"] = sorted(os.listdir("."))
out["recreated_file"] = [open("gone.txt").read(), os.stat("gone.txt").st_size]
out["recreated_dir"] = sorted(os.listdir("full"))
attempt("stat_in_recreated_dir", lambda: os.stat("full/a"))
out["scandir_types"] = sorted((e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in os.scandir("."))
print(json.dumps(out, sort_keys=True))
"""


def test_errno_and_listings_after_deletes_are_those_of_a_real_filesystem(who, wd: Path, twin: Path,
                                                                          system_python: str) -> None:
    r = cow(who, wd, [system_python, "-c", ERRNO_PROBES, str(wd)])
    real = bare(who, [system_python, "-c", ERRNO_PROBES, str(twin)])
    assert real.returncode == 0, show(real)
    assert r.returncode == 0, show(r)
    got, want = json.loads(r.stdout), json.loads(real.stdout)
    # the user-visible contract first, then everything else against the real run
    pinned = {"excl_on_a_lower_file": "EEXIST", "excl_on_a_new_file": "EEXIST",
              "rmdir_of_a_full_lower_dir": "ENOTEMPTY", "rmdir_of_a_full_new_dir": "ENOTEMPTY",
              "rename_file_over_dir": "EISDIR", "open_file_as_dir": "ENOTDIR", "stat_file_as_dir": "ENOTDIR",
              "open_file_with_slash": "ENOTDIR", "create_file_with_slash": "EISDIR",
              "stat_deleted_file": "ENOENT", "open_deleted_file": "ENOENT", "stat_inside_deleted_dir": "ENOENT",
              "stat_in_recreated_dir": "ENOENT", "opath_nofollow_of_a_symlink": "ok",
              "opath_nofollow_of_a_new_symlink": "ok"}
    for name, code in pinned.items():
        assert want[name] == code, f"the bare run itself gave {want[name]} for {name}"
    # README, emulated root: no fd of a symlink can be handed over (SECCOMP_IOCTL_NOTIF_ADDFD
    # refuses O_PATH files), so O_PATH|O_NOFOLLOW on one gets EOPNOTSUPP, what glibc's
    # fchmodat(AT_SYMLINK_NOFOLLOW) would end with; see test_o_path_of_a_symlink_is_an_fd.
    for name in ("opath_nofollow_of_a_symlink", "opath_nofollow_of_a_new_symlink"):
        assert got.pop(name) == "ENOTSUP", show(r)
        want.pop(name)
    assert "gone.txt" not in got["listing_after_delete"] and "full" not in got["listing_after_delete"], show(r)
    assert got["recreated_dir"] == [], f"lower entries came back in a re-created directory:\n{show(r)}"
    mismatched = {k: (got.get(k), want.get(k)) for k in sorted(set(got) | set(want)) if got.get(k) != want.get(k)}
    assert not mismatched, f"sandbox vs real filesystem (sandbox, real): {mismatched}\n{show(r)}"
    assert shape(wd) == shape(twin), diff(shape(wd), shape(twin))


FD_METADATA = r"""
import os, sys
os.chdir(sys.argv[1])
fd = os.open("mode.txt", os.O_RDONLY)
os.fchmod(fd, 0o640)
os.utime(fd, (1000000000, 1000000000))
os.fchown(fd, os.getuid(), os.getgid())
os.close(fd)
st = os.stat("mode.txt")
print(oct(st.st_mode & 0o7777), int(st.st_mtime))
"""


def test_fchmod_fchown_and_futimens_on_a_read_only_fd_work_as_on_a_real_filesystem(
        who, wd: Path, twin: Path, system_python: str) -> None:
    # The kernel lets the owner change metadata through any fd, O_RDONLY included.
    r = cow(who, wd, [system_python, "-c", FD_METADATA, str(wd)])
    real = bare(who, [system_python, "-c", FD_METADATA, str(twin)])
    assert (real.returncode, real.stdout) == (0, "0o640 1000000000\n"), show(real)
    assert (r.returncode, r.stdout) == (0, real.stdout), show(r)
    assert stat.S_IMODE(os.stat(wd / "mode.txt").st_mode) == 0o640, show(r)
    assert os.stat(wd / "mode.txt").st_mtime == 1000000000, show(r)


HARD_LINKS = r"""
set -e
cd "$1"
stat -c '%n %h' keep.txt hl_a hl_b
echo more >> hl_a
cat hl_b
ln keep.txt keep2.txt
stat -c '%n %h' keep.txt keep2.txt
echo via-keep2 >> keep2.txt
cat keep.txt
chmod 600 keep2.txt
stat -c '%n %a' keep.txt
"""


def test_hard_links_are_one_file_as_on_a_real_filesystem(who, wd: Path, twin: Path) -> None:
    r = cow(who, wd, ["sh", "-c", HARD_LINKS, "sh", str(wd)])
    real = bare(who, ["sh", "-c", HARD_LINKS, "sh", str(twin)])
    assert real.returncode == 0, show(real)
    assert real.stdout == ("keep.txt 1\nhl_a 2\nhl_b 2\nhl\nmore\nkeep.txt 2\nkeep2.txt 2\n"
                           "keep\nvia-keep2\nkeep.txt 600\n"), show(real)
    # link counts of files not yet written include the layer's own links (README);
    # test_link_counts_are_those_of_a_real_filesystem pins that difference
    counts = re.compile(r"^(\S+) \d+$", re.M)
    assert r.returncode == 0 and counts.sub(r"\1 N", r.stdout) == counts.sub(r"\1 N", real.stdout), \
        f"sandbox:\n{show(r)}\nreal:\n{show(real)}"
    got, want = shape(wd), shape(twin)
    assert got == want, f"the committed tree differs from a real run:\n{diff(got, want)}"


@pytest.mark.xfail(strict=True, reason="README, workdir: st_nlink of a file not yet written counts the upper "
                   "layer's hard link to it")
def test_link_counts_are_those_of_a_real_filesystem(who, wd: Path, twin: Path) -> None:
    look = 'cd "$1" && stat -c "%n %h" keep.txt hl_a hl_b'
    r = cow(who, wd, ["sh", "-c", look, "sh", str(wd)])
    real = bare(who, ["sh", "-c", look, "sh", str(twin)])
    assert (r.returncode, r.stdout) == (0, real.stdout), f"sandbox:\n{show(r)}\nreal:\n{show(real)}"


@pytest.mark.xfail(strict=True, reason="README, emulated root: no fd of a symlink can be injected, "
                   "O_PATH|O_NOFOLLOW on a symlink gets EOPNOTSUPP")
def test_o_path_of_a_symlink_is_an_fd(who, wd: Path, system_python: str) -> None:
    code = 'import os, sys; os.chdir(sys.argv[1]); fd = os.open("symold", os.O_PATH | os.O_NOFOLLOW); print("ok")'
    r = cow(who, wd, [system_python, "-c", code, str(wd)])
    assert (r.returncode, r.stdout) == (0, "ok\n"), show(r)


def others_files(who, wd: Path) -> int:  # type: ignore[no-untyped-def]
    """Put a readable and a private file of another owner into wd; the other uid."""
    if not IS_ROOT:
        pytest.skip("making files of another owner needs root")
    other = 0 if who.is_user else 4242
    for name, mode in (("theirs-readable", 0o644), ("theirs-private", 0o600)):
        (wd / name).write_text(name + "\n")
        (wd / name).chmod(mode)
        os.chown(wd / name, other, other)
    return other


def test_files_of_another_owner_are_listed_as_they_are(who, wd: Path, request: pytest.FixtureRequest) -> None:
    if who.is_user:
        request.applymarker(pytest.mark.xfail(strict=True, reason=(
            "README, workdir: an unprivileged user's layer holds copies of other owners' files (no hard "
            "link allowed by fs.protected_hardlinks), shown with the user as owner; unreadable ones as "
            "empty mode-000 placeholders")))
    others_files(who, wd)
    look = 'cd "$1" && ls -A && stat -c "%n %u %g %a %s" theirs-readable theirs-private && cat theirs-readable'
    real = bare(who, ["sh", "-c", look, "sh", str(wd)])
    assert real.returncode == 0, show(real)
    r = cow(who, wd, ["sh", "-c", look, "sh", str(wd)], "--dry-run")
    assert (r.returncode, r.stdout) == (0, real.stdout), f"sandbox:\n{show(r)}\nreal:\n{show(real)}"
    assert change_lines(r.stderr) == [], f"untouched files listed as changed:\n{show(r)}"


def test_files_of_another_owner_are_left_alone_by_a_commit(who, wd: Path) -> None:
    other = others_files(who, wd)
    inode = os.stat(wd / "theirs-readable").st_ino
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", 'echo new > "$1/new"', "sh", str(wd)])
    assert r.returncode == 0 and (wd / "new").read_text() == "new\n", show(r)
    after = snapshot(wd)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert changed == [".", "new"], f"the commit changed files the command never touched: {changed}\n{show(r)}"
    st = os.stat(wd / "theirs-readable")
    assert (st.st_ino, st.st_uid) == (inode, other), show(r)


OTHERS_METADATA = ('cd "$1"; chmod 666 theirs-readable; echo "chmod $?"; chown "$(id -u)" theirs-readable; '
                   'echo "chown $?"; touch -m -d @1000000000 theirs-readable; echo "utime $?"; '
                   'echo x >> theirs-readable; echo "append $?"; cat theirs-private; echo "read private $?"')


def test_the_command_may_not_change_files_of_another_owner_through_the_layer(who, wd: Path, twin: Path) -> None:
    # The command has no capabilities (SPEC 1.9): what it may do to another owner's files
    # must not grow because the supervisor does the work (compare: the same script in a
    # plain sandbox with -w on a copy).
    other = others_files(who, wd)
    others_files(who, twin)
    plain = who.run(["-w", str(twin), "--", "sh", "-c", OTHERS_METADATA, "sh", str(twin)])
    assert plain.stdout == "chmod 1\nchown 1\nutime 1\nappend 2\nread private 1\n", show(plain)
    r = cow(who, wd, ["sh", "-c", OTHERS_METADATA, "sh", str(wd)])
    assert r.stdout == plain.stdout, f"with --workdir:\n{show(r)}\nplain sandbox:\n{show(plain)}"
    st = os.stat(wd / "theirs-readable")
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (other, 0o644), show(r)
    assert (wd / "theirs-readable").read_text() == "theirs-readable\n", show(r)


def test_a_relative_workdir_and_a_cwd_inside_it_work(who, wd: Path) -> None:
    r = who.run(["--workdir", "wd", "-w", "wd", "--", "sh", "-c", "cd wd && echo a > a && pwd"], cwd=wd.parent)
    assert (r.returncode, r.stdout) == (0, f"{wd}\n"), show(r)
    r = who.run(["--workdir", ".", "-w", ".", "--", "sh", "-c", "echo b > b && cat a keep.txt && pwd"], cwd=wd)
    assert (r.returncode, r.stdout) == (0, f"a\nkeep\n{wd}\n"), show(r)
    assert (wd / "a").read_text() == "a\n" and (wd / "b").read_text() == "b\n"


# --- 2. DIR is untouched until the end -------------------------------------------------------------

CHANGES = ("echo new > new.txt; echo more >> app.txt; rm gone.txt; chmod 600 mode.txt; "
           "touch -m -d @1000000000 time.txt; rm -r full; mv movedir movedir2; mkdir nd; ln -s keep.txt sl")


def test_the_workdir_is_untouched_while_the_command_runs_and_changed_after(who, wd: Path, signals: Path) -> None:
    before = snapshot(wd)
    script = (f'cd "$1" && {CHANGES} && touch "$2/ready" && '
              f'while [ ! -e "$2/go" ]; do sleep 0.05; done; ls -A; cat app.txt')
    proc = who.popen(["--workdir", str(wd), "-w", str(wd), "-w", str(signals), "--",
                      "sh", "-c", script, "sh", str(wd), str(signals)])
    try:
        ready = wait_for(lambda: (signals / "ready").exists() or proc.poll() is not None, 60)
        assert ready and proc.poll() is None, f"the command did not get ready: {proc.poll()}"
        during = snapshot(wd)
        (signals / "go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    changed = {k for k in set(before) | set(during) if before.get(k) != during.get(k)}
    assert not changed, f"DIR changed while the command ran: {sorted(changed)}\n{err}"
    assert proc.returncode == 0, err
    assert out.split("\n")[-3:] == ["line1", "more", ""], out
    assert (wd / "new.txt").read_text() == "new\n"
    assert (wd / "app.txt").read_text() == "line1\nmore\n"
    assert not (wd / "gone.txt").exists() and not (wd / "full").exists() and not (wd / "movedir").exists()
    assert (wd / "movedir2/deep/y").read_text() == "y\n"
    assert stat.S_IMODE(os.stat(wd / "mode.txt").st_mode) == 0o600
    assert os.stat(wd / "time.txt").st_mtime == 1000000000
    assert (wd / "nd").is_dir() and os.readlink(wd / "sl") == "keep.txt"


@pytest.mark.parametrize("options,status", [(["--on-exit", "abort"], 0), ([], 3), (["--dry-run"], 0),
                                            (["--dry-run"], 3)],
                         ids=["on-exit-abort", "exit-3", "dry-run", "dry-run-exit-3"])
def test_abort_and_dry_run_leave_the_workdir_byte_for_byte_unchanged(who, wd: Path, options: List[str],
                                                                      status: int) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", f'cd "$1" && {CHANGES} && cat app.txt && exit {status}', "sh", str(wd)],
            *options)
    assert (r.returncode, r.stdout) == (status, "line1\nmore\n"), show(r)
    after = snapshot(wd)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"DIR changed: {changed}\n{show(r)}"
    assert layers_left(wd) == [], f"upper layers left behind: {layers_left(wd)}\n{show(r)}"


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


# --- 4. the end of a run -------------------------------------------------------------------------------

@pytest.mark.parametrize("options,command,status,committed", [
    ([], "exit 0", 0, True),
    ([], "exit 3", 3, False),
    (["--on-exit", "abort"], "exit 0", 0, False),
    (["--on-error", "commit"], "exit 3", 3, True),
    (["--on-exit", "commit", "--on-error", "abort"], "kill -KILL $$", 128 + 9, False),
    (["--on-error", "commit"], "kill -KILL $$", 128 + 9, True),
    (["-t", "1"], "sleep 5", 124, False),
], ids=["default-commit", "default-abort", "on-exit-abort", "on-error-commit", "signal-aborts",
        "signal-on-error-commit", "timeout-aborts"])
def test_the_end_of_a_run_commits_or_aborts_as_asked(who, wd: Path, options: List[str], command: str,
                                                     status: int, committed: bool) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", f'cd "$1" && echo new > new.txt && rm gone.txt && {command}', "sh", str(wd)],
            *options)
    assert r.returncode == status, show(r)
    if committed:
        assert (wd / "new.txt").read_text() == "new\n" and not (wd / "gone.txt").exists(), show(r)
    else:
        assert snapshot(wd) == before, f"an aborted run changed DIR:\n{show(r)}"
    assert layers_left(wd) == [], f"upper layers left behind: {layers_left(wd)}\n{show(r)}"
    assert LEFTOVER not in r.stderr, show(r)


def test_the_layer_in_the_workdir_is_hidden_from_the_command_and_its_names_are_never_committed(
        who, wd: Path) -> None:  # type: ignore[no-untyped-def]
    script = ('ls -A "$1"; mkdir "$1/.sandlock-1-made" && echo x > "$1/.sandlock-1-made/f" && '
              'echo y > "$1/sub/.sandlock-2-f" && echo n > "$1/new"')
    r = cow(who, wd, ["sh", "-c", script, "sh", str(wd)])
    assert r.returncode == 0, show(r)
    assert ".sandlock" not in r.stdout and "keep.txt" in r.stdout, show(r)
    assert (wd / "new").read_text() == "n\n", show(r)
    assert not [n for n in os.listdir(wd) if n.startswith(".sandlock")], show(r)
    assert not (wd / "sub" / ".sandlock-2-f").exists(), show(r)


def test_keep_leaves_the_layer_prints_its_path_and_the_next_run_reports_it(who, wd: Path) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", 'cd "$1" && echo new > new.txt && rm gone.txt', "sh", str(wd)],
            "--on-exit", "keep")
    assert r.returncode == 0, show(r)
    assert snapshot(wd) == before, f"keep changed DIR:\n{show(r)}"
    kept = kept_path(r.stderr)
    assert kept.is_dir() and (kept / "new.txt").read_text() == "new\n", show(r)
    assert not (kept / "gone.txt").exists() and (kept / "keep.txt").read_text() == "keep\n", show(r)
    assert str(kept).startswith(f"{wd}/.sandlock-{who.uid}-"), f"kept outside DIR:\n{show(r)}"
    nxt = cow(who, wd, ["true"])
    assert nxt.returncode == 0, show(nxt)
    notes = [line for line in nxt.stderr.splitlines() if LEFTOVER in line]
    assert len(notes) == 1 and "(kept)" in notes[0], show(nxt)
    reported = notes[0].split(LEFTOVER, 1)[1].split(" (")[0]
    assert str(kept) == reported or str(kept).startswith(reported + "/"), show(nxt)
    assert kept.is_dir(), "the next run removed the kept layer"


def test_a_layer_kept_in_a_workdir_whose_parent_the_user_cannot_write_is_reported_too(  # type: ignore[no-untyped-def]
        sandlock_cli, scratch: Path, test_user) -> None:
    # The user may write DIR but not its parent: the layer is in DIR all the same (releases
    # before put it in ~/.cache or the temporary directory then); the next run reports it.
    locked = scratch / "locked"
    locked.mkdir()
    locked.chmod(0o755)  # root's when the suite runs as root: not writable by the test user
    d = locked / "wd"
    d.mkdir()
    (d / "keep.txt").write_text("keep\n")
    if IS_ROOT:
        for path in (d, d / "keep.txt"):
            os.chown(path, test_user.uid, test_user.gid)
    else:
        locked.chmod(0o555)
    before = snapshot(d)
    r = sandlock_cli(["--workdir", str(d), "-w", str(d), "--on-exit", "keep", "--", "sh", "-c", f"echo new > {d}/new"],
                     as_user=True)
    assert r.returncode == 0, show(r)
    assert snapshot(d) == before, show(r)
    kept = kept_path(r.stderr)
    assert (kept / "new").read_text() == "new\n", show(r)
    assert str(kept).startswith(f"{d}/.sandlock-{test_user.uid}-"), show(r)
    nxt = sandlock_cli(["--workdir", str(d), "-w", str(d), "--", "true"], as_user=True)
    assert nxt.returncode == 0, show(nxt)
    notes = [line for line in nxt.stderr.splitlines() if LEFTOVER in line]
    assert len(notes) == 1 and "(kept)" in notes[0], f"the layer kept at {kept} was not reported:\n{show(nxt)}"


# --- 5. dry run: the change list --------------------------------------------------------------------------

DRY_SCRIPT = ('cd "$0" && echo a > added && echo m >> app.txt && rm -r full && chmod 600 mode.txt && '
              'mkdir -p nd/sub && echo f > nd/sub/f && rm symold && mv ren_src.txt ren_dst.txt && exit 7')
DRY_CHANGES = sorted(["A added", "M app.txt", "D full", "D full/a", "D full/sub", "D full/sub/b", "M mode.txt",
                      "A nd", "A nd/sub", "A nd/sub/f", "D symold", "D ren_src.txt", "A ren_dst.txt"],
                     key=lambda line: line[2:])


def test_dry_run_prints_the_sorted_changes_keeps_the_exit_code_and_changes_nothing(who, wd: Path) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", DRY_SCRIPT, str(wd)], "--dry-run")
    assert r.returncode == 7, show(r)
    assert change_lines(r.stderr) == DRY_CHANGES, show(r)
    assert snapshot(wd) == before, f"--dry-run changed DIR:\n{show(r)}"
    assert layers_left(wd) == [], show(r)


API_COW = r"""
import json, sys
import sandlock
d, script = sys.argv[1], sys.argv[2]
out = {}
r = sandlock.Sandbox(workdir=d, fs_writable=[d], dry_run=True).run(["sh", "-c", script, d])
out["dry"] = [r.changes, r.exit_code, r.workdir_note]
r = sandlock.Sandbox(workdir=d, fs_writable=[d], on_error="commit").run(["sh", "-c", script, d])
out["commit"] = [r.changes, r.exit_code, r.workdir_note]
r = sandlock.Sandbox(workdir=d, fs_writable=[d], on_exit="abort").run(["sh", "-c", "echo x > \"$0\"/x", d])
out["abort"] = [r.changes, r.exit_code, r.workdir_note]
print(json.dumps(out))
"""


def test_the_api_reports_the_same_changes_and_commits_them(who, wd: Path) -> None:
    r = who.python(API_COW, args=[str(wd), DRY_SCRIPT], env={"PATH": SYSTEM_PATH}, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["dry"][:2] == [DRY_CHANGES, 7], out
    assert out["commit"][:3] == [DRY_CHANGES, 7, ""], out
    assert (wd / "added").read_text() == "a\n" and not (wd / "full").exists()
    assert (wd / "nd/sub/f").read_text() == "f\n" and (wd / "ren_dst.txt").read_text() == "r\n"
    assert out["abort"][:2] == [["A x"], 0] and str(wd) in out["abort"][2], out
    assert not (wd / "x").exists()


# --- 6. symlinks out of the workdir, and several runs at once -----------------------------------------------

SYMLINK_PROBES = r"""
import errno, os, sys
d, canary = sys.argv[1], sys.argv[2]
os.chdir(d)
os.symlink(canary, "abs")
os.symlink("../../canary", "sub/rel")
os.symlink(canary + "/c", "abs_file")
import shutil
shutil.rmtree("full")
os.symlink(canary, "full")             # a lower directory replaced by a link out
os.unlink("symold")
os.mkdir("symold")                     # a lower link replaced by a directory
def attempt(name, fn):
    try:
        fn()
        print(name, "ok")
    except OSError as e:
        print(name, errno.errorcode[e.errno])
def write(path, flags=os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
    os.close(os.open(path, flags, 0o644))
attempt("create_through_abs", lambda: write("abs/new"))
attempt("create_through_rel", lambda: write("sub/rel/new"))
attempt("overwrite_through_abs", lambda: write("abs/c"))
attempt("overwrite_through_link", lambda: write("abs_file"))
attempt("mkdir_through_abs", lambda: os.mkdir("full/newdir"))
attempt("chmod_through_link", lambda: os.chmod("abs_file", 0o600))
attempt("utime_through_link", lambda: os.utime("abs_file", (1, 1)))
attempt("unlink_through_abs", lambda: os.unlink("abs/c"))
attempt("rename_into_abs", lambda: os.rename("keep.txt", "abs/stolen"))
attempt("link_into_abs", lambda: os.link("app.txt", "abs/linked"))
write("symold/f")
"""


def test_symlinks_out_of_the_workdir_are_committed_as_links_and_never_written_through(
        who, wd: Path, canary: Path, system_python: str) -> None:
    before = snapshot(canary)
    r = cow(who, wd, [system_python, "-c", SYMLINK_PROBES, str(wd), str(canary)])
    assert r.returncode == 0, show(r)
    results = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    for name, code in results.items():
        assert code in ("EACCES", "EXDEV"), f"{name} through a link out of DIR: {code}\n{show(r)}"
    for name in ("create_through_abs", "create_through_rel", "overwrite_through_abs", "overwrite_through_link",
                 "mkdir_through_abs", "unlink_through_abs"):
        assert results[name] == "EACCES", f"{name}: {results[name]}\n{show(r)}"
    assert snapshot(canary) == before, f"the canary directory changed:\n{show(r)}"
    assert os.readlink(wd / "abs") == str(canary), show(r)
    assert os.readlink(wd / "sub/rel") == "../../canary", show(r)
    assert os.readlink(wd / "abs_file") == str(canary / "c"), show(r)
    assert os.readlink(wd / "full") == str(canary), show(r)
    assert (wd / "symold").is_dir() and not (wd / "symold").is_symlink(), show(r)
    assert (wd / "symold/f").is_file(), show(r)
    assert (wd / "keep.txt").read_text() == "keep\n"


def test_a_lower_symlink_out_of_the_workdir_is_neither_followed_nor_changed(who, wd: Path, canary: Path) -> None:
    os.symlink(canary, wd / "out")
    who.own(wd / "out")
    os.symlink("../canary/c", wd / "outfile")
    who.own(wd / "outfile")
    before = snapshot(canary)
    script = ('cd "$1"; echo x > out/new; echo "rc=$?"; echo y >> outfile; echo "rc=$?"; '
              'rm out; mkdir out; echo z > out/inner; rm outfile; echo plain > outfile')
    r = cow(who, wd, ["sh", "-c", script, "sh", str(wd)])
    assert r.returncode == 0, show(r)
    assert r.stdout == "rc=2\nrc=2\n", show(r)
    assert snapshot(canary) == before, f"the canary directory changed:\n{show(r)}"
    assert (wd / "out").is_dir() and not (wd / "out").is_symlink() and (wd / "out/inner").read_text() == "z\n"
    assert not (wd / "outfile").is_symlink() and (wd / "outfile").read_text() == "plain\n"


def two_at_once(who, wd: Path, signals: Path, commands: Dict[str, str],  # type: ignore[no-untyped-def]
                one_by_one: bool = False) -> Dict[str, str]:
    """Start one sandbox per command on the same workdir and let all reach 'ready'; then
    let them end (all at once, or one_by_one: each ends and commits before the next may end);
    their stdout (the listing of DIR each saw last)."""
    procs = {}
    try:
        for tag, command in commands.items():
            go = f"go-{tag}" if one_by_one else "go"
            script = (f'cd "$1" && {command} && touch "$2/{tag}-ready" && '
                      f'while [ ! -e "$2/{go}" ]; do sleep 0.05; done; ls -A')
            procs[tag] = who.popen(["--workdir", str(wd), "-w", str(wd), "-w", str(signals), "--",
                                    "sh", "-c", script, "sh", str(wd), str(signals)])
        ok = wait_for(lambda: all((signals / f"{t}-ready").exists() or p.poll() is not None
                                  for t, p in procs.items()), 60)
        assert ok and all(p.poll() is None for p in procs.values()), \
            {t: p.poll() for t, p in procs.items()}
        if not one_by_one:
            (signals / "go").touch()
        outs = {}
        for tag, proc in procs.items():
            if one_by_one:
                (signals / f"go-{tag}").touch()
            out, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, f"{tag}: exit {proc.returncode}\n{out}\n{err}"
            outs[tag] = out
        return outs
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_two_sandboxes_on_one_workdir_see_only_their_own_writes(who, wd: Path, signals: Path) -> None:
    outs = two_at_once(who, wd, signals, {"a": "echo a > only-a && rm gone.txt",
                                          "b": "echo b > only-b && rm keep.txt"})
    a, b = outs["a"].split(), outs["b"].split()
    assert "only-a" in a and "only-b" not in a and "gone.txt" not in a and "keep.txt" in a, outs
    assert "only-b" in b and "only-a" not in b and "keep.txt" not in b and "gone.txt" in b, outs


def test_two_sandboxes_on_one_workdir_both_commit_their_own_changes(who, wd: Path, signals: Path) -> None:
    two_at_once(who, wd, signals, {"a": "echo a > only-a && rm gone.txt",
                                   "b": "echo b > only-b && rm keep.txt"}, one_by_one=True)
    # each run changed different files: after both, DIR has both runs' changes, none undone by the other
    listing = sorted(os.listdir(wd))
    assert "only-a" in listing and "only-b" in listing, f"a run's new file is gone: {listing}"
    assert "gone.txt" not in listing and "keep.txt" not in listing, f"a run's deletion was undone: {listing}"
    assert (wd / "only-a").read_text() == "a\n" and (wd / "only-b").read_text() == "b\n"


def test_files_changed_in_the_workdir_by_others_during_the_run_survive_the_commit(
        who, wd: Path, signals: Path) -> None:
    script = ('cd "$1" && echo mine > mine.txt && touch "$2/ready" && '
              'while [ ! -e "$2/go" ]; do sleep 0.05; done')
    proc = who.popen(["--workdir", str(wd), "-w", str(wd), "-w", str(signals), "--",
                      "sh", "-c", script, "sh", str(wd), str(signals)])
    try:
        assert wait_for(lambda: (signals / "ready").exists() or proc.poll() is not None, 60), "not ready"
        assert proc.poll() is None, proc.communicate()
        # another program (an editor, a build) works in DIR meanwhile
        who.make_file(wd / "theirs.txt", "theirs\n")
        tmp = who.make_file(wd / ".app.txt.swp", "edited by someone else\n")
        os.rename(tmp, wd / "app.txt")
        (signals / "go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert (wd / "mine.txt").read_text() == "mine\n", err
    assert (wd / "theirs.txt").exists(), f"the commit deleted a file the command never touched:\n{err}"
    assert (wd / "app.txt").read_text() == "edited by someone else\n", \
        f"the commit reverted a file the command never touched:\n{err}"


# --- 7. with --root ---------------------------------------------------------------------------------------

def test_a_root_that_is_the_workdir_gets_the_commands_changes(who, broot: Path) -> None:
    assert (broot / "bin/yes").is_symlink() or (broot / "bin/yes").exists()
    r = who.run(["--root", str(broot), "--workdir", str(broot), "-w", "/", "--",
                 "sh", "-c", "echo hi > /etc/motd2 && rm /bin/yes && ls /etc/motd2"])
    assert (r.returncode, r.stdout) == (0, "/etc/motd2\n"), show(r)
    assert (broot / "etc/motd2").read_text() == "hi\n", show(r)
    assert not os.path.lexists(broot / "bin/yes"), show(r)
    assert (broot / "bin/busybox").is_file() and os.path.lexists(broot / "bin/sh"), show(r)
    assert layers(broot.parent) == [] and not [n for n in os.listdir(broot) if n.startswith(".sandlock")], show(r)


def test_a_workdir_inside_the_root_commits_only_its_own_changes(who, broot: Path) -> None:
    etc = snapshot(broot / "etc")
    r = who.run(["--root", str(broot), "--workdir", str(broot / "tmp"), "-w", "/tmp", "--",
                 "sh", "-c", "echo t > /tmp/t && cat /tmp/t && { echo e > /etc/x || echo refused; }"])
    assert (r.returncode, r.stdout) == (0, "t\nrefused\n"), show(r)
    assert (broot / "tmp/t").read_text() == "t\n", show(r)
    assert snapshot(broot / "etc") == etc, show(r)
    assert str(broot) not in r.stdout + r.stderr, f"a host path leaked:\n{show(r)}"


def test_dry_run_with_a_root_lists_paths_relative_to_the_workdir(who, broot: Path) -> None:
    before = snapshot(broot)
    r = who.run(["--root", str(broot), "--workdir", str(broot), "-w", "/", "--dry-run", "--",
                 "sh", "-c", "echo hi > /etc/motd2 && rm /bin/yes && mkdir /newdir && echo z > /tmp/z"])
    assert r.returncode == 0, show(r)
    assert change_lines(r.stderr) == ["D bin/yes", "A etc/motd2", "A newdir", "A tmp/z"], show(r)
    assert snapshot(broot) == before, show(r)
    r = who.run(["--root", str(broot), "--workdir", str(broot / "tmp"), "-w", "/tmp", "--dry-run", "--",
                 "sh", "-c", "echo z > /tmp/z && mkdir /tmp/d"])
    assert r.returncode == 0, show(r)
    assert change_lines(r.stderr) == ["A d", "A z"], show(r)
    assert snapshot(broot) == before, show(r)


@pytest.mark.parametrize("inside", ["", "tmp"], ids=["root-is-workdir", "workdir-in-root"])
def test_the_upper_layer_is_not_visible_inside_the_root(who, broot: Path, inside: str) -> None:
    workdir = broot / inside if inside else broot
    virtual = "/" + inside
    root_listing = sorted([".", ".."] + os.listdir(broot) + (["x"] if not inside else []))
    r = who.run(["--root", str(broot), "--workdir", str(workdir), "-w", virtual, "--",
                 "sh", "-c", f"echo x > {virtual.rstrip('/')}/x; ls -a / /tmp {virtual}; cat /proc/self/mountinfo"])
    assert r.returncode == 0, show(r)
    assert ".sandlock" not in r.stdout + r.stderr, show(r)
    assert str(broot) not in r.stdout + r.stderr and str(broot.parent) not in r.stdout, show(r)
    listing = r.stdout.split("\n\n")[0]
    assert sorted(listing.split("\n")[1:]) == root_listing, show(r)


# --- 8. bad input -------------------------------------------------------------------------------------------

def test_a_missing_workdir_exits_125_naming_it(who, base: Path) -> None:
    missing = base / "no-such-dir"
    r = who.run(["--workdir", str(missing), "--", "true"])
    assert r.returncode == 125, show(r)
    assert str(missing) in r.stderr and r.stderr.startswith("sandlock: "), show(r)


def test_a_workdir_that_is_a_file_exits_125_naming_it(who, wd: Path) -> None:
    r = who.run(["--workdir", str(wd / "keep.txt"), "--", "true"])
    assert r.returncode == 125 and str(wd / "keep.txt") in r.stderr, show(r)


def test_a_workdir_the_user_cannot_write_exits_125(sandlock_cli, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    d = scratch / "not-mine"
    d.mkdir()
    (d / "f").write_text("f\n")
    d.chmod(0o755 if IS_ROOT else 0o555)  # root-owned 0755 is not writable by the test user
    before = snapshot(d)
    r = sandlock_cli(["--workdir", str(d), "-w", str(d), "--", "sh", "-c", f"echo x > {d}/g"], as_user=True)
    assert r.returncode == 125, show(r)
    assert str(d) in r.stderr and r.stderr.startswith("sandlock: "), show(r)
    assert snapshot(d) == before
    assert layers(scratch) == [], os.listdir(scratch)


@pytest.mark.parametrize("options,word", [
    (["--on-exit", "abort"], "--on-exit"),
    (["--on-error", "commit"], "--on-error"),
    (["--dry-run"], "--dry-run"),
    (["--workdir", "{wd}", "--on-exit", "bogus"], "bogus"),
    (["--workdir", "{wd}", "--on-error", "bogus"], "bogus"),
], ids=["on-exit-without-workdir", "on-error-without-workdir", "dry-run-without-workdir", "on-exit-bogus",
        "on-error-bogus"])
def test_end_options_without_a_workdir_or_with_a_bad_value_exit_125(who, wd: Path, options: List[str],
                                                                    word: str) -> None:
    before = snapshot(wd)
    args = [o.format(wd=wd) for o in options]
    r = who.run([*args, "--", "sh", "-c", f"echo x > {wd}/x"])
    assert r.returncode == 125, show(r)
    assert word in r.stderr and r.stderr.startswith("sandlock: "), show(r)
    assert snapshot(wd) == before, show(r)


# --- 9. crash safety of the commit -----------------------------------------------------------------------------

WRITER = r"""
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open("%s/f%06d" % (d, i), "wb") as f:
        f.write(b"%07d\n" % i * 512)
"""


def expected_content(name: str) -> Optional[bytes]:
    """What file f000123 must hold (4096 bytes), None for other names."""
    if len(name) == 7 and name[0] == "f" and name[1:].isdigit():
        return b"%07d\n" % int(name[1:]) * 512
    return None


def kill_during_commit(who, base: Path, wd: Path, count: int) -> Optional[Path]:  # type: ignore[no-untyped-def]
    """Run the writer, SIGKILL sandlock once its layer's state says 'committing'.

    Returns the run's layer directory if the kill landed during the commit,
    None if the commit was over first.
    """
    proc = who.popen(["--workdir", str(wd), "-w", str(wd), "--", SYSTEM_PYTHON, "-c", WRITER, str(wd), str(count)])
    prefix = f"cow-{proc.pid}-"
    deadline = time.monotonic() + 60
    run_dir: Optional[Path] = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if run_dir is None:
                found = [n for n in layers(wd) if n.split("/")[1].startswith(prefix)]
                run_dir = wd / found[0] / "1" if found else None
            if run_dir is not None:
                try:
                    state = (run_dir / "state").read_text()
                except OSError:
                    state = ""
                if state.strip() == "committing":
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.communicate(timeout=60)
                    try:
                        landed = (run_dir / "state").read_text().strip() == "committing"
                    except OSError:
                        landed = False
                    return run_dir if landed else None
            time.sleep(0.0005)
        assert proc.poll() is not None, "the writer did not finish in 60 s"
        out, err = proc.communicate()
        assert proc.returncode == 0, f"exit {proc.returncode}\n{err}"
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_commit_killed_halfway_leaves_no_torn_file_and_is_reported(who, base: Path) -> None:
    wd = who.make_dir(base / "crash")
    run_dir = None
    tried = []
    for count in (3000, 9000, 27000):
        if run_dir is None:
            for name in os.listdir(wd):
                if not sandlocks(name):
                    os.unlink(wd / name)
            tried.append(count)
            run_dir = kill_during_commit(who, base, wd, count)
    assert run_dir is not None, f"the SIGKILL never landed during a commit (tried {tried} files)"
    names = [n for n in os.listdir(wd) if not sandlocks(n)]
    for name in names:
        data = (wd / name).read_bytes()
        if name.startswith(".sandlock-new-"):
            target = name.split("-", 3)[3]  # .sandlock-new-PID-NAME
            assert data == expected_content(target), f"temporary {name} is not a whole copy of {target}"
            continue
        assert data == expected_content(name), f"{name}: torn or wrong ({len(data)} bytes) after the kill"
    # the layer is kept whole, so the user can finish the commit by hand
    kept = [n for n in os.listdir(run_dir / "tree") if expected_content(n) is not None]
    assert len(kept) == tried[-1], f"the kept layer has {len(kept)} of {tried[-1]} files"
    r = cow(who, wd, ["true"])
    assert r.returncode == 0, show(r)
    notes = [line for line in r.stderr.splitlines() if LEFTOVER in line]
    assert notes == [f"sandlock: {LEFTOVER}{run_dir} (committing): inspect it, then remove it"], show(r)


MAX_DISK = r"""
cd "$1"
head -c 300000 /dev/zero > a || echo "a failed"
sleep 0.6
head -c 300000 /dev/zero > b 2> /dev/null && echo "b made" || echo "b ENOSPC"
mkdir c 2> /dev/null && echo "c made" || echo "c ENOSPC"
echo more >> keep.txt 2> /dev/null && echo "keep written" || echo "keep ENOSPC"
rm a && echo "a removed"
"""


def test_max_disk_gives_enospc_once_the_layer_is_full(who, wd: Path) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", MAX_DISK, "sh", str(wd)], "--max-disk", "200K", "--on-exit", "abort")
    # 300 kB written through one fd: RLIMIT_FSIZE (= --max-disk) stops the file at the
    # limit (SIGXFSZ); the layer is then full and nothing new may be made in it
    assert r.returncode == 0, show(r)
    assert r.stdout == "a failed\nb ENOSPC\nc ENOSPC\nkeep ENOSPC\na removed\n", show(r)
    assert "File size limit exceeded" in r.stderr, show(r)
    assert snapshot(wd) == before, "an aborted run must not change the workdir"


def test_max_disk_refuses_a_copy_up_that_would_not_fit(who, wd: Path) -> None:
    who.make_file(wd / "big", b"x" * 300_000)
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", 'cd "$1"; echo more >> big; echo "append $?"; echo small > s; echo "new $?"',
                      "sh", str(wd)], "--max-disk", "200K")
    assert r.returncode == 0, show(r)
    assert "append 0" not in r.stdout and "No space left on device" in r.stderr, show(r)
    assert "new 0" in r.stdout, show(r)
    after = snapshot(wd)
    assert after.pop("s", None) is not None and after.pop(".", None) is not None, show(r)
    before.pop(".", None)
    assert after == before, "the refused append must not reach the workdir"
