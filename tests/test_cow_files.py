"""The copy-on-write workdir, `--workdir DIR`: a real filesystem seen through the layer,
symlinks out of the workdir, several runs at once, and with --root.  Fixtures and the
idea of these tests: tests/cowcase.py.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path
from typing import Dict

import pytest

from conftest import IS_ROOT, wait_for
from rootcase import show
from cowcase import shape, diff, snapshot, cow, bare, change_lines, layers, layers_left
from cowcase import base, wd, twin, canary, signals, busybox_shared, broot  # noqa: F401  (fixtures)


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
    # The command has no capabilities (docs/design.md "Capabilities and inherited state"):
    # what it may do to another owner's files must not grow because the supervisor does
    # the work (compare: the same script in a plain sandbox with -w on a copy).
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
