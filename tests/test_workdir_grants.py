"""A workdir never takes rights away from the rest of a -w tree it lies in
(README "Copy-on-write workdir"): `--workdir tree/proj -w tree` still creates
files and directories in `tree` itself (mktemp in /tmp, gcc's temporaries),
while what is written under the workdir still goes to its layer."""

from __future__ import annotations

from pathlib import Path


def test_a_workdir_inside_a_writable_tree_leaves_the_tree_its_create_rights(who, scratch: Path) -> None:
    tree = who.make_dir(scratch / "tree")
    proj = who.make_dir(tree / "proj")
    who.make_file(proj / "old", "old\n")
    script = ("set -e; echo sib > tree/sibling; mkdir tree/newdir; t=$(mktemp -p tree); echo made; rm $t; "
              "echo new > tree/proj/new; echo changed > tree/proj/old; cat tree/proj/new tree/proj/old")
    r = who.run(["--dry-run", "--workdir", str(proj), "-w", str(tree), "--cwd", str(scratch), "--",
                 "sh", "-c", script])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "made\nnew\nchanged\n"
    assert (tree / "sibling").read_text() == "sib\n"  # the tree: real, created in its top directory
    assert (tree / "newdir").is_dir()
    assert not (proj / "new").exists()  # the workdir: only in its layer, discarded (--dry-run)
    assert (proj / "old").read_text() == "old\n"
    assert sorted(line for line in r.stderr.splitlines() if line[:2] in ("A ", "M ")) == ["A new", "M old"]


def test_a_workdir_inside_a_writable_tree_is_still_written_only_through_its_layer_without_a_commit(
        who, scratch: Path) -> None:
    tree = who.make_dir(scratch / "tree")
    proj = who.make_dir(tree / "proj")
    who.make_file(proj / "f", "one\n")
    r = who.run(["--workdir", str(proj), "-w", str(tree), "--on-exit", "abort", "--cwd", str(tree), "--",
                 "sh", "-c", "echo two > proj/f; ln proj/f hard && echo three > hard; cat proj/f"])
    assert r.returncode == 0, r.stderr
    assert (proj / "f").read_text() == "one\n"
