"""The emulated root, `--root DIR`: the policy in virtual terms, /dev and /proc, root and the
user, and bad input.  Fixtures and the idea of these tests: tests/rootcase.py.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import List

import pytest

from conftest import tree_snapshot
from rootcase import SECRET, PY, show, in_root, assert_no_host_path, one_line, guest_file, python_version_name
from rootcase import deb_shared, deb, busybox_shared, musl, bb, work, canary  # noqa: F401  (fixtures)


# --- 7. policy in virtual terms -------------------------------------------------------------------------

def test_nothing_in_the_root_is_writable_without_a_write_rule(who, bb: Path) -> None:
    before = tree_snapshot(bb)
    probes = ["touch /tmp/x", "echo y > /tmp/y", "mkdir /tmp/d", "rm /etc/group", "mv /etc/group /etc/g2",
              "ln -s x /tmp/l", "chmod 600 /etc/passwd", "chown 0:0 /etc/passwd", "touch -c /etc/passwd",
              "truncate -s 0 /etc/passwd"]
    r = in_root(who, bb, ["sh", "-c", "; ".join(f"{p}; echo rc=$?" for p in probes)])
    codes = [line for line in r.stdout.splitlines() if line.startswith("rc=")]
    assert len(codes) == len(probes) and "rc=0" not in codes, show(r)
    assert "Permission denied" in r.stderr, show(r)
    assert tree_snapshot(bb) == before, "a file of the root changed without a write rule"


def test_a_write_rule_makes_only_that_directory_writable(who, bb: Path) -> None:
    who.make_dir(bb / "tmp/sub", 0o755)
    r = in_root(who, bb, ["sh", "-c", "echo in > /tmp/sub/in; echo rc=$?; echo out > /tmp/out; echo rc=$?; "
                                      "echo etc > /etc/out; echo rc=$?"], "-w", "/tmp/sub")
    assert r.stdout.splitlines()[0] == "rc=0", show(r)
    assert "rc=0" not in r.stdout.splitlines()[1:], show(r)
    assert r.stderr.count("Permission denied") == 2, show(r)
    assert (bb / "tmp/sub/in").read_text() == "in\n"
    assert not (bb / "tmp/out").exists() and not (bb / "etc/out").exists()


def test_fs_deny_names_guest_paths_and_holds_against_links_and_dot_dot(who, bb: Path) -> None:
    (bb / "etc/secret").write_text(SECRET + "\n")
    (bb / "srv/vault").mkdir(parents=True)
    (bb / "srv/vault/deep").write_text(SECRET + "\n")
    for p in (bb / "srv", bb / "srv/vault"):
        p.chmod(0o755)
    for p in (bb / "etc/secret", bb / "srv/vault/deep"):
        p.chmod(0o644)
    os.symlink("/etc/secret", bb / "tmp/abs-link")
    os.symlink("../etc/secret", bb / "tmp/rel-link")
    reads = ["cat /etc/secret", "cat /srv/vault/deep", "ls /srv/vault", "cat /tmp/abs-link", "cat /tmp/rel-link",
             "cat /tmp/../etc/secret", "cd /etc && cat secret", "stat -c %s /etc/secret"]
    r = in_root(who, bb, ["sh", "-c", "cat /etc/passwd; " + "; ".join(f"{c}; echo rc=$?" for c in reads)],
                "--fs-deny", "/etc/secret", "--fs-deny", "/srv/vault")
    assert r.stdout.startswith(guest_file(bb, "/etc/passwd")), show(r)
    assert SECRET not in r.stdout and "deep" not in r.stdout, show(r)
    codes = [line for line in r.stdout.splitlines() if line.startswith("rc=")]
    assert len(codes) == len(reads) and "rc=0" not in codes, show(r)
    assert r.stderr.count("Permission denied") == len(reads), show(r)


def test_created_files_get_the_mode_and_umask_of_the_command(who, bb: Path) -> None:
    r = in_root(who, bb, ["sh", "-c", "umask 027; touch /tmp/f; mkdir /tmp/d; umask 077; echo > /tmp/g"],
                "-w", "/tmp")
    assert r.returncode == 0, show(r)
    modes = {n: (bb / "tmp" / n).stat().st_mode & 0o7777 for n in ("f", "d", "g")}
    assert modes == {"f": 0o640, "d": 0o750, "g": 0o600}
    assert {(bb / "tmp" / n).stat().st_uid for n in ("f", "d", "g")} == {who.uid}


def test_read_rules_name_guest_paths_and_without_the_default_view_limit_what_is_readable(who, bb: Path) -> None:
    r = in_root(who, bb, ["sh", "-c", "cat /etc/group; ls /usr; echo rc=$?"], "--no-default-view",
                "-r", "/bin", "-r", "/etc")
    assert r.stdout == guest_file(bb, "/etc/group") + "rc=1\n", show(r)
    assert "Permission denied" in r.stderr, show(r)


def test_read_rules_in_a_root_add_to_the_whole_root(who, bb: Path) -> None:
    r = in_root(who, bb, ["sh", "-c", "cat /etc/group; ls /usr >/dev/null; echo rc=$?"], "-r", "/bin", "-r", "/etc")
    assert r.stdout == guest_file(bb, "/etc/group") + "rc=0\n", show(r)


# --- 8. /dev and /proc -------------------------------------------------------------------------------

DEV_SCRIPT = """cat /dev/null; echo rc=$?
echo gone > /dev/null; echo rc=$?
head -c 4 /dev/urandom | wc -c
head -c 4 /dev/random | wc -c
head -c 5 /dev/zero | tr '\\0' z; echo
ls /dev/fd/
echo hi | cat /dev/stdin
{ echo to-stdout > /dev/stdout; } | cat
{ echo to-stderr > /dev/stderr; } 2>&1 | cat
ls /nosuch 2>/dev/null; echo rc=$?
python3 -c 'import errno, os
try: os.write(os.open("/dev/full", os.O_WRONLY), b"x")
except OSError as e: print("full", errno.errorcode[e.errno])'
"""


def test_dev_offers_null_zero_full_random_urandom_fd_and_std_streams(who, deb: Path) -> None:
    r = in_root(who, deb, ["sh", "-c", DEV_SCRIPT])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["rc=0", "rc=0", "4", "4", "zzzzz", "0", "1", "2", "3", "hi", "to-stdout",
                                     "to-stderr", "rc=2", "full ENOSPC"], show(r)
    assert r.stderr == "", show(r)


def test_dev_shm_is_writable_private_and_multiprocessing_works(who, deb: Path) -> None:
    name = f"sandlock-probe-{uuid.uuid4().hex[:12]}"
    r = in_root(who, deb, ["sh", "-c", f"echo s > /dev/shm/{name} && cat /dev/shm/{name} && ls /dev/shm"])
    assert r.returncode == 0 and r.stdout.splitlines()[0] == "s" and name in r.stdout.split(), show(r)
    assert not Path("/dev/shm", name).exists(), "the sandbox wrote the host's /dev/shm"
    assert not (deb / "dev/shm" / name).exists()
    r = in_root(who, deb, ["ls", "/dev/shm"])
    assert r.returncode == 0 and name not in r.stdout.split(), f"/dev/shm outlived its sandbox:\n{show(r)}"
    r = in_root(who, deb, [PY, "-c", 'import multiprocessing as m; l = m.Lock(); l.acquire(); print("lock")'])
    assert (r.returncode, r.stdout) == (0, "lock\n"), show(r)


PROC_CODE = r'''
import errno, json, os, sys

def read(path):
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except OSError as e:
        return errno.errorcode[e.errno]

pids = [e for e in os.listdir("/proc") if e.isdigit()]
print(json.dumps({
    "status": read("/proc/self/status").splitlines()[0],
    "comm": read("/proc/self/comm").strip(),
    "maps_exe": sorted({l.split()[-1] for l in read("/proc/self/maps").splitlines()
                        if l.split()[-1].rsplit("/", 1)[-1] == sys.argv[2].rsplit("/", 1)[-1]}),
    "mountinfo": read("/proc/self/mountinfo"),
    "maps": read("/proc/self/maps"),
    "self_listed": str(os.getpid()) in pids,
    "init_listed": "1" in pids,
    "runner_listed": sys.argv[1] in pids,
    "init_environ": read("/proc/1/environ"),
    "runner_cmdline": read("/proc/%s/cmdline" % sys.argv[1]),
}))
'''


def test_proc_self_status_maps_and_mountinfo_show_guest_names(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", PROC_CODE, str(os.getpid()), python_version_name(deb)])
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    # as in a chroot: the name is the one exec'd (/usr/bin/python3), the mapping the file behind it
    assert (got["status"], got["comm"]) == ("Name:\tpython3", "python3"), show(r)
    assert got["maps_exe"] == [python_version_name(deb)], show(r)
    assert got["mountinfo"] not in ("ENOENT", "EACCES") and got["maps"] not in ("ENOENT", "EACCES"), show(r)
    assert_no_host_path(r, deb)
    r = in_root(who, deb, ["sh", "-c", "cat /proc/self/maps; cat /proc/self/mountinfo"])
    assert r.returncode == 0, show(r)
    assert any(line.endswith(" /usr/bin/cat") for line in r.stdout.splitlines()), show(r)
    assert_no_host_path(r, deb)


def test_proc_lists_only_the_sandboxs_processes(who, deb: Path) -> None:
    r = in_root(who, deb, [PY, "-c", PROC_CODE, str(os.getpid()), python_version_name(deb)])
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout)
    assert got["self_listed"], show(r)
    assert got["init_environ"] in ("ENOENT", "EACCES"), show(r)
    assert got["runner_cmdline"] in ("ENOENT", "EACCES"), show(r)
    assert not got["init_listed"] and not got["runner_listed"], f"/proc lists processes outside:\n{show(r)}"
    r = in_root(who, deb, ["ps", "-e", "-o", "comm="])
    assert (r.returncode, r.stdout.split()) == (0, ["ps"]), show(r)


# --- 10. root and the user --------------------------------------------------------------------------------

def test_a_root_only_file_is_readable_by_root_only_as_on_a_real_system(who, bb: Path) -> None:
    (bb / "etc/rootonly").write_text(SECRET + "\n")
    os.chown(bb / "etc/rootonly", 0, 0)
    (bb / "etc/rootonly").chmod(0o600)
    r = in_root(who, bb, ["sh", "-c", "id -u; cat /etc/rootonly"])
    if who.name == "root":
        assert (r.returncode, r.stdout) == (0, f"0\n{SECRET}\n"), show(r)
    else:
        assert (r.returncode, r.stdout) == (1, f"{who.uid}\n"), show(r)
        assert "Permission denied" in r.stderr, show(r)


# --- 11. bad input --------------------------------------------------------------------------------------------

def test_a_missing_root_exits_125_naming_it(who, scratch: Path) -> None:
    missing = scratch / "no-such-root"
    r = who.run(["--root", str(missing), "--", "true"])
    assert r.returncode == 125, show(r)
    assert str(missing) in one_line(r)


def test_a_root_that_is_a_regular_file_exits_125_naming_it(who, scratch: Path) -> None:
    plain = who.make_file(scratch / "plain-file", "x\n")
    r = who.run(["--root", str(plain), "--", "true"])
    assert r.returncode == 125, show(r)
    assert str(plain) in one_line(r)


@pytest.mark.parametrize("command", [["/nosuch"], ["nosuch-command"], ["/usr/bin/python3", "-c", "1"],
                                     ["python3", "-c", "1"]])
def test_a_command_missing_in_the_root_exits_127(who, bb: Path, command: List[str]) -> None:
    # python3 exists on the host, not in the busybox root
    r = in_root(who, bb, command)
    assert r.returncode == 127, show(r)
    assert command[0] in one_line(r)
    assert_no_host_path(r, bb)


def test_a_command_that_is_not_executable_exits_126(who, bb: Path) -> None:
    (bb / "bin/noexec").write_text("#!/bin/sh\necho ran\n")
    (bb / "bin/noexec").chmod(0o644)
    r = in_root(who, bb, ["/bin/noexec"])
    assert (r.returncode, r.stdout) == (126, ""), show(r)
    assert "/bin/noexec" in one_line(r)
    assert_no_host_path(r, bb)


@pytest.mark.parametrize("option", ["-w", "-r", "--fs-deny", "--cwd", "--fs-mount"])
def test_a_policy_path_missing_in_the_root_exits_125_naming_it(who, deb: Path, work: Path, option: str) -> None:
    # the work directory exists on the host, not in the root: policy paths are virtual
    path = {"-w": "/nosuch-dir", "-r": str(work), "--fs-deny": "/etc/nosuch", "--cwd": str(work),
            "--fs-mount": f"/data:{work}/nosuch-host-dir"}[option]
    r = in_root(who, deb, ["sh", "-c", "echo ran"], option, path)
    assert (r.returncode, r.stdout) == (125, ""), show(r)
    assert path.split(":")[-1] in one_line(r)


def test_a_symlink_loop_in_the_root_gives_eloop(who, bb: Path) -> None:
    os.symlink("b", bb / "a")
    os.symlink("a", bb / "b")
    r = in_root(who, bb, ["cat", "/a"])
    assert r.returncode != 0 and r.stdout == "", show(r)
    assert "Too many levels of symbolic links" in r.stderr, show(r)
    assert_no_host_path(r, bb)


def test_a_root_symlink_to_slash_lists_the_guest_root(who, bb: Path) -> None:
    os.symlink("/", bb / "host")
    r = in_root(who, bb, ["ls", "/host/"])
    assert (r.returncode, r.stdout.split()) == (0, sorted(os.listdir(bb))), show(r)
    r = in_root(who, bb, ["sh", "-c", "cat /host/etc/passwd"])
    assert (r.returncode, r.stdout) == (0, guest_file(bb, "/etc/passwd")), show(r)
