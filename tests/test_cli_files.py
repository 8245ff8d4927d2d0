"""`python -m sandlock`: the filesystem.  The default view, read and write rules, --fs-deny
against every spelling, stat/readlink/existence and metadata changes Landlock does not
cover, links and renames.  Helpers and the idea of these tests: tests/clicase.py.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import time
from pathlib import Path

from conftest import SYSTEM_PYTHON, SYSTEM_READ, tree_snapshot
from clicase import SECRET, one_line
from clicase import data  # noqa: F401  (fixtures)


# --- the default view ------------------------------------------------------------------------

def test_ls_of_usr_works_with_the_default_view(who) -> None:
    r = who.run(["--", "ls", "/usr"])
    assert r.returncode == 0, r.stderr
    assert "bin" in r.stdout.split() and "lib" in r.stdout.split()


def test_cat_of_etc_hostname_works_with_the_default_view(who) -> None:
    target = "/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/os-release"
    r = who.run(["--", "cat", target])
    assert r.returncode == 0, r.stderr
    assert r.stdout == Path(target).read_text()


def test_reading_the_home_directory_without_a_rule_is_denied(who) -> None:
    home = who.home
    probe_dir = home / ".cache" / "sandlock-tests" if who.name == "root" else home
    probe_dir.mkdir(parents=True, exist_ok=True)
    probe = who.make_file(probe_dir / f"home-probe-{os.getpid()}", SECRET + "\n")
    try:
        r = who.run(["--", "cat", str(probe)])
        assert r.returncode != 0
        assert "Permission denied" in r.stderr
        assert SECRET not in r.stdout
    finally:
        probe.unlink()


def test_reading_a_data_directory_without_a_rule_is_denied(who, data: Path) -> None:
    r = who.run(["--", "cat", str(data / "sec")])
    assert r.returncode == 1
    assert "Permission denied" in r.stderr
    assert SECRET not in r.stdout
    r = who.run(["--", "ls", str(data)])
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    assert "sec" not in r.stdout


def test_the_default_view_makes_nothing_writable(who, scratch: Path) -> None:
    before = tree_snapshot(scratch)
    r = who.run(["--", "sh", "-c", f"echo x > {scratch}/new"])
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    assert tree_snapshot(scratch) == before


# --- read and write rules -------------------------------------------------------------------

def test_a_write_rule_lets_the_command_create_a_file(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "out", 0o777)
    r = who.run([*SYSTEM_READ, "-w", str(w), "--", "sh", "-c", f"echo hi > {w}/f"])
    assert r.returncode == 0, r.stderr
    assert (w / "f").read_text() == "hi\n"
    assert (w / "f").stat().st_uid == who.uid


def test_a_write_outside_the_write_rule_fails_and_leaves_nothing_on_disk(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "out", 0o777)
    other = who.make_dir(scratch / "other", 0o777)
    r = who.run([*SYSTEM_READ, "-w", str(w), "--", "sh", "-c", f"echo hi > {other}/f"])
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    assert list(other.iterdir()) == []
    assert list(w.iterdir()) == []


def test_a_read_rule_allows_reading_but_not_writing(who, data: Path) -> None:
    before = tree_snapshot(data)
    r = who.run([*SYSTEM_READ, "-r", str(data), "--", "sh", "-c", f"cat {data}/pub; echo x >> {data}/pub"])
    assert r.stdout == "PUBLIC\n"
    assert r.returncode != 0
    assert "Permission denied" in r.stderr
    assert tree_snapshot(data) == before


# --- --fs-deny -----------------------------------------------------------------------------------

def test_fs_deny_of_a_file_makes_cat_fail_with_permission_denied(who, data: Path) -> None:
    r = who.run([*SYSTEM_READ, "-r", str(data), "--fs-deny", str(data / "sec"), "--",
                 "sh", "-c", f"cat {data}/pub; cat {data}/sec"])
    assert r.returncode == 1
    assert r.stdout == "PUBLIC\n"
    assert "Permission denied" in r.stderr
    assert SECRET not in r.stdout


def test_fs_deny_of_a_file_in_the_default_view_is_refused(who) -> None:
    target = "/etc/hostname" if os.path.exists("/etc/hostname") else "/etc/os-release"
    r = who.run(["--fs-deny", target, "--", "cat", target])
    assert r.returncode == 1
    assert "Permission denied" in r.stderr
    assert r.stdout == ""


def test_fs_deny_holds_for_stat_of_the_denied_file(who, data: Path) -> None:
    code = (f"import os\n"
            f"for p in ({str(data / 'pub')!r}, {str(data / 'sec')!r}):\n"
            f"    try: os.stat(p); print(p, 0)\n"
            f"    except OSError as e: print(p, e.errno)\n")
    r = who.run([*SYSTEM_READ, "-r", str(data), "--fs-deny", str(data / "sec"), "--", SYSTEM_PYTHON, "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:2] == [f"{data}/pub 0", f"{data}/sec {errno.EACCES}"]


def test_fs_deny_holds_against_a_symlink_made_before_the_run(who, data: Path) -> None:
    w = data.parent / "w"
    os.symlink(data / "sec", w / "link")
    r = who.run([*SYSTEM_READ, "-r", str(data), "-w", str(w), "--fs-deny", str(data / "sec"), "--",
                 "cat", str(w / "link")])
    assert r.returncode == 1
    assert "Permission denied" in r.stderr
    assert SECRET not in r.stdout


def test_fs_deny_holds_against_a_symlink_made_by_the_command(who, data: Path) -> None:
    w = data.parent / "w"
    r = who.run([*SYSTEM_READ, "-r", str(data), "-w", str(w), "--fs-deny", str(data / "sec"), "--",
                 "sh", "-c", f"ln -s {data}/sec {w}/l1 && ln -s ../data/sec {w}/l2; cat {w}/l1; cat {w}/l2"])
    assert r.returncode == 1
    assert SECRET not in r.stdout
    assert r.stderr.count("Permission denied") == 2, r.stderr


def test_fs_deny_holds_against_a_hard_link_made_by_the_command(who, data: Path) -> None:
    # The writable directory is the denied file's own directory: Landlock alone
    # allows a same-directory link, so the supervisor has to stop it or the read.
    r = who.run([*SYSTEM_READ, "-w", str(data), "--fs-deny", str(data / "sec"), "--",
                 "sh", "-c", f"ln {data}/sec {data}/hard; cat {data}/hard"])
    assert r.returncode != 0
    assert SECRET not in r.stdout
    assert "Permission denied" in r.stderr or "Operation not permitted" in r.stderr, r.stderr


def test_fs_deny_holds_against_dot_dot_paths(who, data: Path) -> None:
    r = who.run([*SYSTEM_READ, "-r", str(data), "--fs-deny", str(data / "sec"), "--", "sh", "-c",
                 f"cat {data}/sub/../sec; cd {data}/sub && cat ../sec; cat ../../data/./sec"])
    assert SECRET not in r.stdout
    assert r.stderr.count("Permission denied") == 3, r.stderr
    assert r.returncode == 1


def test_fs_deny_holds_against_a_dirfd_relative_open(who, data: Path, progs) -> None:
    r = who.run([*SYSTEM_READ, "-r", str(data), "-r", str(progs.dir), "--fs-deny", str(data / "sec"), "--",
                 progs["dirfd"], str(data), "pub", "sec", "../data/sec", "sub/../sec"])
    assert r.returncode == 0, r.stderr
    rows = {(f[0], f[1]): f[2:] for f in (line.split() for line in r.stdout.splitlines())}
    assert rows[("openat", "pub")][1:] == ["0", "PUBLIC"], r.stdout
    assert rows[("fstatat", "pub")] == ["0", "0"], r.stdout
    for rel in ("sec", "../data/sec", "sub/../sec"):
        assert rows[("openat", rel)] == ["-1", str(errno.EACCES), "-"], r.stdout
        assert rows[("fstatat", rel)] == ["-1", str(errno.EACCES)], r.stdout
    assert SECRET not in r.stdout


def test_fs_deny_holds_against_a_thread_rewriting_the_path(who, data: Path, progs) -> None:
    attempts = 20000
    r = who.run([*SYSTEM_READ, "-r", str(data), "-r", str(progs.dir), "--fs-deny", str(data / "sec"), "--",
                 progs["race"], str(data / "pub"), str(data / "sec"), SECRET, str(attempts)], timeout=300)
    assert r.returncode == 0, r.stderr
    results = {}
    for line in r.stdout.splitlines():
        fields = line.split()
        results[fields[1]] = dict(f.split("=") for f in fields[2:])
    for op in ("open", "stat"):
        assert int(results[op]["leaked"]) == 0, f"{op}: the denied file was reached: {r.stdout}"
        assert int(results[op]["allowed"]) > 0, f"{op}: the probe never reached the allowed file: {r.stdout}"


def test_fs_deny_of_an_executable_refuses_to_run_it(who, scratch: Path) -> None:
    binary = who.make_file(scratch / "bin" / "mytrue", Path("/bin/true").read_bytes(), 0o755)
    r = who.run([*SYSTEM_READ, "-r", str(binary.parent), "--fs-deny", str(binary), "--", str(binary)])
    assert r.returncode == 126, r.stderr
    assert "Permission denied" in one_line(r.stderr)
    r = who.run([*SYSTEM_READ, "-r", str(binary.parent), "--fs-deny", str(binary), "--",
                 "sh", "-c", f"{binary}; echo rc=$?"])
    assert "rc=126" in r.stdout


def test_fs_deny_of_a_directory_covers_its_whole_subtree(who, data: Path) -> None:
    who.make_file(data / "sub" / "deep", SECRET + "\n")
    r = who.run([*SYSTEM_READ, "-r", str(data), "--fs-deny", str(data / "sub"), "--", "sh", "-c",
                 f"cat {data}/pub; cat {data}/sub/deep; ls {data}/sub"])
    assert r.stdout == "PUBLIC\n"
    assert r.stderr.count("Permission denied") == 2, r.stderr
    assert r.returncode != 0


def test_fs_deny_wins_over_a_write_rule(who, data: Path) -> None:
    before = (data / "sec").read_bytes()
    r = who.run([*SYSTEM_READ, "-w", str(data), "--fs-deny", str(data / "sec"), "--", "sh", "-c",
                 f"echo overwritten > {data}/sec; rm -f {data}/sec; echo ok > {data}/pub"])
    assert r.stderr.count("Permission denied") == 2, r.stderr
    assert (data / "sec").read_bytes() == before
    assert (data / "pub").read_text() == "ok\n"


# --- stat, readlink, existence: docs/design.md "What Landlock does not cover" -------------------------------------

STAT_CODE = """
import os, sys
for p in sys.argv[1:]:
    for name, call in (("stat", os.stat), ("lstat", os.lstat), ("access", lambda p: os.access(p, os.F_OK) or 1/0)):
        try:
            call(p); print(name, p, 0)
        except ZeroDivisionError:
            print(name, p, "false")
        except OSError as e:
            print(name, p, e.errno)
"""


def test_stat_of_a_file_outside_the_rules_is_denied(who, data: Path) -> None:
    r = who.run(["--", SYSTEM_PYTHON, "-c", STAT_CODE, str(data / "pub"), "/etc/passwd"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"stat {data}/pub {errno.EACCES}" in lines, r.stdout
    assert f"lstat {data}/pub {errno.EACCES}" in lines, r.stdout
    assert f"access {data}/pub false" in lines, r.stdout
    assert "stat /etc/passwd 0" in lines and "access /etc/passwd 0" in lines, r.stdout


def test_stat_of_a_file_inside_the_rules_works_and_a_missing_one_is_enoent(who, data: Path) -> None:
    r = who.run([*SYSTEM_READ, "-r", str(data), "--", SYSTEM_PYTHON, "-c", STAT_CODE,
                 str(data / "pub"), str(data / "missing")])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert f"stat {data}/pub 0" in lines and f"lstat {data}/pub 0" in lines, r.stdout
    assert f"stat {data}/missing {errno.ENOENT}" in lines, r.stdout
    assert f"lstat {data}/missing {errno.ENOENT}" in lines, r.stdout


def test_the_stat_command_outside_the_rules_says_permission_denied(who, data: Path) -> None:
    r = who.run(["--", "stat", str(data / "pub")])
    assert r.returncode == 1
    assert "Permission denied" in r.stderr
    assert str(data / "pub") not in r.stdout


def test_readlink_ls_and_test_e_outside_the_rules_are_denied(who, data: Path) -> None:
    os.symlink("/etc/hostname", data / "link")
    r = who.run(["--", "sh", "-c", f"readlink {data}/link; echo rl=$?; ls -l {data}/pub; echo ls=$?; "
                                   f"test -e {data}/pub; echo te=$?; test -e /etc/passwd; echo control=$?"])
    assert "/etc/hostname" not in r.stdout
    assert "rl=1" in r.stdout and "ls=2" in r.stdout and "te=1" in r.stdout, r.stdout
    assert "control=0" in r.stdout
    assert "Permission denied" in r.stderr


def test_missing_files_inside_allowed_dirs_report_no_such_file(who, data: Path) -> None:
    r = who.run([*SYSTEM_READ, "-r", str(data), "--", "sh", "-c",
                 f"ls -l {data}/missing; cat {data}/missing; readlink {data}/missing; echo rl=$?; "
                 f"test -e {data}/missing; echo te=$?; readlink {data}/pub; echo rl2=$?"])
    assert r.stderr.count("No such file or directory") >= 2, r.stderr
    assert "Permission denied" not in r.stderr
    assert "rl=1" in r.stdout and "te=1" in r.stdout and "rl2=1" in r.stdout


# --- metadata changes: chmod, chown, utimensat -------------------------------------------------------------

def _meta(p: Path) -> tuple:
    st = os.lstat(p)
    return (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns)


def _meta_script(target: Path) -> str:
    return (f"chmod 600 {target}; echo chmod=$?; chown $(id -u):$(id -g) {target}; echo chown=$?; "
            f"touch -d 2001-01-01 {target}; echo touch=$?")


def test_chmod_chown_touch_under_a_read_only_rule_fail_and_change_nothing(who, data: Path) -> None:
    target = data / "pub"
    before = _meta(target)
    r = who.run([*SYSTEM_READ, "-r", str(data), "--", "sh", "-c", _meta_script(target)])
    assert "chmod=1" in r.stdout and "chown=1" in r.stdout and "touch=1" in r.stdout, r.stdout + r.stderr
    assert re.search(r"Permission denied|Operation not permitted", r.stderr)
    assert _meta(target) == before


def test_chmod_chown_touch_outside_every_rule_fail_and_change_nothing(who, data: Path) -> None:
    target = data / "pub"
    before = _meta(target)
    r = who.run(["--", "sh", "-c", _meta_script(target)])
    assert "chmod=1" in r.stdout and "chown=1" in r.stdout and "touch=1" in r.stdout, r.stdout + r.stderr
    assert _meta(target) == before


def test_chmod_chown_touch_of_a_denied_file_under_a_write_rule_fail(who, data: Path) -> None:
    target = data / "sec"
    before = _meta(target)
    r = who.run([*SYSTEM_READ, "-w", str(data), "--fs-deny", str(target), "--", "sh", "-c", _meta_script(target)])
    assert "chmod=1" in r.stdout and "chown=1" in r.stdout and "touch=1" in r.stdout, r.stdout + r.stderr
    assert _meta(target) == before


def test_chmod_chown_touch_under_a_write_rule_work(who, data: Path) -> None:
    target = data / "pub"
    r = who.run([*SYSTEM_READ, "-w", str(data), "--", "sh", "-c", _meta_script(target)])
    assert "chmod=0" in r.stdout and "chown=0" in r.stdout and "touch=0" in r.stdout, r.stdout + r.stderr
    mode, uid, gid, mtime = _meta(target)
    assert mode == 0o600 and uid == who.uid and gid == who.gid
    assert time.gmtime(mtime / 1e9).tm_year == 2001


# --- more of the filesystem policy (docs/design.md "Filesystem policy") -------------------------------------------

def test_the_default_devices_are_usable(who) -> None:
    r = who.run(["--", "sh", "-c", "echo x > /dev/null && head -c 8 /dev/zero | wc -c && "
                                   "head -c 8 /dev/urandom | wc -c && head -c 8 /dev/random | wc -c"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["8", "8", "8"], r.stdout + r.stderr
    code = ("import os\nfd = os.open('/dev/full', os.O_WRONLY)\n"
            "try: os.write(fd, b'x')\nexcept OSError as e: print(e.strerror)\n")
    r = who.run(["--", SYSTEM_PYTHON, "-c", code])
    assert r.stdout == "No space left on device\n", r.stdout + r.stderr


def test_option_parsing_stops_at_the_first_non_option(who) -> None:
    r = who.run(["echo", "-r", "/nonexistent", "--version", "-t", "1"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "-r /nonexistent --version -t 1\n"


def test_verbose_prints_the_rules_on_stderr_and_nothing_on_stdout(who, scratch: Path) -> None:
    r = who.run(["-v", "-w", str(scratch), "--", "echo", "hi"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "hi\n"
    assert str(scratch) in r.stderr and "/usr" in r.stderr


def test_a_write_rule_allows_mkdir_rename_truncate_link_and_remove(who, scratch: Path) -> None:
    w = who.make_dir(scratch / "w", 0o777)
    script = (f"cd {w} && mkdir a && echo hello > a/f && mv a/f a/g && truncate -s 2 a/g && "
              f"ln -s g a/l && ln a/g a/h && rm a/l && mkdir b && mv a/h b/h && rmdir b 2>/dev/null; echo rc=$?")
    r = who.run([*SYSTEM_READ, "-w", str(w), "--", "sh", "-c", script])
    assert "rc=1" in r.stdout, r.stdout + r.stderr  # rmdir of a non-empty b fails, everything else worked
    assert sorted(p.name for p in (w / "a").iterdir()) == ["g"]
    assert (w / "a" / "g").read_bytes() == b"he"
    assert (w / "b" / "h").read_bytes() == b"he"


def test_rename_and_link_between_directories_of_a_write_rule_are_the_kernels(who, scratch: Path) -> None:
    """rename(2)/link(2) into another directory, without mv's copy fallback: Landlock's
    REFER must be granted in every layer of the sandbox (EXDEV otherwise), and only there."""
    w, other = who.make_dir(scratch / "w", 0o777), who.make_dir(scratch / "w2", 0o777)
    who.make_file(who.make_dir(w / "a") / "f", "moved\n")
    who.make_file(other / "g", "linked\n")
    ro = who.make_file(who.make_dir(scratch / "ro") / "r", "stays\n").parent
    script = (
        "import os\n"
        f"w, o, ro = {str(w)!r}, {str(other)!r}, {str(ro)!r}\n"
        "os.mkdir(w + '/b')\n"
        "os.rename(w + '/a/f', w + '/b/f')\n"
        "os.link(w + '/b/f', w + '/a/hard')\n"
        "os.rename(w + '/a', w + '/b/a')\n"
        "os.rename(o + '/g', w + '/g')\n"  # between two write rules
        "for src, dst in ((w + '/g', ro + '/g'), (ro + '/r', w + '/r')):\n"
        "    try:\n"
        "        os.rename(src, dst)\n"
        "        print('renamed', dst)\n"
        "    except OSError as e:\n"
        "        print('refused', e.errno)\n"
        "print('done')\n")
    r = who.run([*SYSTEM_READ, "-r", str(ro), "-w", str(w), "-w", str(other), "--", "python3", "-c", script])
    assert r.returncode == 0 and r.stdout.splitlines()[-1] == "done", r.stdout + r.stderr
    assert "renamed" not in r.stdout, r.stdout
    assert (w / "b" / "f").read_text() == "moved\n"
    assert os.stat(w / "b" / "f").st_ino == os.stat(w / "b" / "a" / "hard").st_ino
    assert (w / "g").read_text() == "linked\n" and not (other / "g").exists()
    assert sorted(p.name for p in ro.iterdir()) == ["r"] and (ro / "r").read_text() == "stays\n"


def test_moving_a_file_out_of_a_read_only_dir_fails_and_changes_nothing(who, data: Path) -> None:
    w = data.parent / "w"
    before = tree_snapshot(data.parent)
    r = who.run([*SYSTEM_READ, "-r", str(data), "-w", str(w), "--", "sh", "-c",
                 f"mv {data}/pub {w}/pub; echo mv=$?; ln {data}/pub {w}/hard; echo ln=$?"])
    # Landlock answers EXDEV for a link it cannot allow (REFER), EACCES for the rest.
    assert "mv=1" in r.stdout and "ln=1" in r.stdout, r.stdout + r.stderr
    assert tree_snapshot(data.parent) == before


def test_chmod_and_touch_through_a_symlink_to_a_read_only_file_fail(who, data: Path) -> None:
    w = data.parent / "w"
    link = w / "link"
    os.symlink(data / "pub", link)
    who.own(link)
    before = _meta(data / "pub")
    r = who.run([*SYSTEM_READ, "-r", str(data), "-w", str(w), "--", "sh", "-c",
                 f"chmod 600 {link}; echo chmod=$?; touch {link}; echo touch=$?; "
                 f"chown -h $(id -u):$(id -g) {link}; echo lchown=$?"])
    assert "chmod=1" in r.stdout and "touch=1" in r.stdout, r.stdout + r.stderr
    assert "lchown=0" in r.stdout, r.stdout + r.stderr  # the link itself is under -w
    assert _meta(data / "pub") == before


def test_stat_through_a_symlink_to_outside_the_rules_is_denied(who, data: Path, scratch: Path) -> None:
    outside = who.make_file(scratch / "outside" / "file", "OUTSIDE\n")
    os.symlink(outside, data / "out-link")
    r = who.run([*SYSTEM_READ, "-r", str(data), "--", "sh", "-c",
                 f"stat -L {data}/out-link; echo follow=$?; stat {data}/out-link >/dev/null; echo nofollow=$?; "
                 f"cat {data}/out-link; echo cat=$?"])
    assert "follow=1" in r.stdout and "nofollow=0" in r.stdout and "cat=1" in r.stdout, r.stdout + r.stderr
    assert "OUTSIDE" not in r.stdout
    assert r.stderr.count("Permission denied") == 2, r.stderr


def test_a_hard_link_to_a_denied_file_made_before_the_run_is_denied(who, data: Path) -> None:
    w = data.parent / "w"
    os.link(data / "sec", w / "pre-made")
    r = who.run([*SYSTEM_READ, "-r", str(data), "-r", str(w), "--fs-deny", str(data / "sec"), "--",
                 "cat", str(w / "pre-made")])
    assert r.returncode == 1, r.stdout + r.stderr
    assert SECRET not in r.stdout
    assert "Permission denied" in r.stderr


def test_fs_deny_holds_through_proc_self_cwd_and_proc_self_fd(who, data: Path) -> None:
    r = who.run(["-w", str(data), "--fs-deny", str(data / "sec"), "--", "sh", "-c",
                 f"cd {data} && cat /proc/self/cwd/sec; exec 3<{data}; cat /proc/self/fd/3/sec; "
                 f"cat /proc/self/cwd/pub"])
    assert SECRET not in r.stdout
    assert r.stdout == "PUBLIC\n", r.stdout + r.stderr
    assert r.stderr.count("Permission denied") == 2, r.stderr


def test_dev_fd_paths_are_the_callers_own_fds_and_the_rules_still_hold(who, data: Path, scratch: Path) -> None:
    """/dev/fd/N and /dev/stdin lead through /proc/self, which the supervisor resolves for the
    caller: the same answers as /proc/self/fd/N (were ELOOP for stat), and no way out."""
    who.make_file(scratch / "outside" / "canary", SECRET + "\n")
    code = ("import errno, os, sys\n"
            "fd = os.open(sys.argv[1], os.O_RDONLY)\n"
            "def t(name, f):\n"
            "    try:\n"
            "        print(name, f())\n"
            "    except OSError as e:\n"
            "        print(name, errno.errorcode[e.errno])\n"
            "for top in ('/dev/fd/%d' % fd, '/proc/self/fd/%d' % fd):\n"
            "    t('stat', lambda: os.stat(top + '/pub').st_size)\n"
            "    t('read', lambda: open(top + '/pub').read().strip())\n"
            "    t('stat_out', lambda: os.stat(top + '/../outside/canary').st_size)\n"
            "    t('read_out', lambda: open(top + '/../outside/canary').read().strip())\n"
            "t('stdin', lambda: os.stat('/dev/stdin').st_ino == os.fstat(0).st_ino)\n")
    r = who.run([*SYSTEM_READ, "-r", str(data), "--", "python3", "-c", code, str(data)], input="")
    assert r.returncode == 0, r.stdout + r.stderr
    assert SECRET not in r.stdout
    lines = r.stdout.splitlines()
    assert lines == ["stat 7", "read PUBLIC", "stat_out EACCES", "read_out EACCES"] * 2 + ["stdin True"], r.stdout


METADATA_CODE = """
import os, sys
def attempt(name, call):
    try:
        result = call()
        print(name, "false" if result is False else 0)
    except OSError as e:
        print(name, e.errno)
for p in sys.argv[1:]:
    attempt("stat " + p, lambda: os.stat(p))
    attempt("lstat " + p, lambda: os.lstat(p))
    attempt("access " + p, lambda: os.access(p, os.F_OK))
    attempt("exists " + p, lambda: os.path.exists(p))
    attempt("statvfs " + p, lambda: os.statvfs(p))
    attempt("getxattr " + p, lambda: os.getxattr(p, "user.sandlock-test"))
    attempt("listxattr " + p, lambda: os.listxattr(p))
    attempt("opath " + p, lambda: os.close(os.open(p, os.O_PATH)))
    def reopen():
        fd = os.open(p, os.O_PATH)
        try:
            with open("/proc/self/fd/%d" % fd, "rb") as f:
                sys.stdout.write("content " + f.read().decode().strip() + "\\n")
        finally:
            os.close(fd)
    attempt("reopen " + p, reopen)
attempt("chdir", lambda: os.chdir(os.path.dirname(sys.argv[1])))
"""
REACHED = ("0", str(errno.ENODATA), str(errno.ENOTSUP))


def test_metadata_calls_outside_the_rules_are_denied(who, data: Path) -> None:
    target = str(data / "pub")
    r = who.run(["--", SYSTEM_PYTHON, "-c", METADATA_CODE, target])
    assert r.returncode == 0, r.stderr
    results = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in r.stdout.splitlines()}
    assert "PUBLIC" not in r.stdout
    for call in ("stat", "lstat", "statvfs", "getxattr", "listxattr", "opath", "reopen"):
        assert results[f"{call} {target}"] == str(errno.EACCES), f"{call}: {r.stdout}"
    assert results[f"access {target}"] == "false" and results[f"exists {target}"] == "false", r.stdout
    assert results["chdir"] == str(errno.EACCES), r.stdout


def test_metadata_calls_inside_the_rules_work(who, data: Path) -> None:
    target = str(data / "pub")
    r = who.run([*SYSTEM_READ, "-r", str(data), "-r", "/proc", "--", SYSTEM_PYTHON, "-c", METADATA_CODE, target])
    assert r.returncode == 0, r.stderr
    results = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in r.stdout.splitlines()}
    for call in ("stat", "lstat", "access", "exists", "statvfs", "getxattr", "listxattr", "opath", "reopen"):
        assert results[f"{call} {target}"] in REACHED, f"{call}: {r.stdout}"
    assert results["content"] == "PUBLIC" and results["chdir"] == "0", r.stdout


def test_metadata_calls_on_a_denied_file_are_refused(who, data: Path) -> None:
    target = str(data / "sec")
    r = who.run([*SYSTEM_READ, "-r", str(data), "-r", "/proc", "--fs-deny", target, "--",
                 SYSTEM_PYTHON, "-c", METADATA_CODE, target])
    assert r.returncode == 0, r.stderr
    assert SECRET not in r.stdout
    results = {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in r.stdout.splitlines()}
    for call in ("stat", "lstat", "getxattr", "listxattr", "opath", "reopen"):
        assert results[f"{call} {target}"] == str(errno.EACCES), f"{call}: {r.stdout}"
    assert results[f"access {target}"] == "false", r.stdout


def test_times_set_on_a_symlink_change_the_link_not_a_target_outside_the_rules(who, scratch: Path) -> None:
    # utimensat(AT_SYMLINK_NOFOLLOW) is done on behalf (Landlock does not cover it): it must act
    # on the link in the writable directory, never on what it points to
    outside = who.make_dir(scratch / "outside")
    canary = who.make_file(outside / "canary", "c\n")
    os.utime(canary, ns=(1_000_000_000_000_000_000, 1_000_000_000_000_000_000))
    inside = who.make_dir(scratch / "inside")
    os.symlink(str(canary), inside / "link")
    if who.is_user:
        os.lchown(inside / "link", who.uid, who.gid)
    before = tree_snapshot(outside)
    r = who.run(["-w", str(inside), "--", "touch", "-h", "-d", "@1500000000", str(inside / "link")])
    assert r.returncode == 0, r.stderr
    assert os.lstat(inside / "link").st_mtime == 1500000000
    assert tree_snapshot(outside) == before
