"""Integration tests of `python -m sandlock` (SPEC sections 1, 2, 3, 7, 8, 9).

Every test runs real programs under the CLI, as root and as the unprivileged
user (the `who` fixture), and asserts what a user sees: exit status, stdout,
the one-line message on stderr, errno, and the files on disk.  Nothing here
confines the test runner itself.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import signal
import stat
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import (SYSTEM_PYTHON, SYSTEM_READ, find_processes, kernel_landlock_abi, kill_marked,
                      tree_snapshot, unique_marker, wait_for)

SECRET = "TOPSECRET-7f3a9c"


def one_line(stderr: str) -> str:
    """stderr must be exactly one line; return it."""
    lines = stderr.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    return lines[0]


def parse_probes(stdout: str) -> Dict[str, List[int]]:
    """'NAME rc errno' lines of the C helpers, by NAME."""
    out: Dict[str, List[int]] = {}
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 3 and re.fullmatch(r"-?\d+", fields[1]) and fields[2].isdigit():
            out[fields[0]] = [int(fields[1]), int(fields[2])]
    return out


def errname(n: int) -> str:
    return errno.errorcode.get(n, str(n))


@pytest.fixture
def data(scratch: Path, who) -> Path:  # type: ignore[no-untyped-def]
    """scratch/data with pub (PUBLIC) and sec (the secret), sub/, and a writable scratch/w."""
    d = who.make_dir(scratch / "data")
    who.make_file(d / "pub", "PUBLIC\n")
    who.make_file(d / "sec", SECRET + "\n")
    who.make_dir(d / "sub")
    who.make_dir(scratch / "w", 0o777)
    return d


def test_the_command_runs_with_the_callers_uid_and_gid(sandlock_cli, test_user) -> None:
    r = sandlock_cli(["--", "id", "-u", "-r"], as_user=True)
    assert (r.returncode, r.stdout) == (0, f"{test_user.uid}\n"), r.stderr
    r = sandlock_cli(["--", "sh", "-c", "echo $(id -u) $(id -g)"], as_user=False)
    assert r.stdout.split() == [str(os.getuid()), str(os.getgid())], r.stdout + r.stderr


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


# --- timeout -------------------------------------------------------------------------------------

def test_timeout_kills_the_command_with_exit_124_and_leaves_no_process(who) -> None:
    marker = unique_marker()
    start = time.monotonic()
    try:
        r = who.run(["-t", "2", "--", "sh", "-c", f"sleep {marker} & sleep {marker}; wait"], timeout=30)
        elapsed = time.monotonic() - start
        assert r.returncode == 124, r.stderr
        assert 1.9 <= elapsed <= 5.0, elapsed
        assert "sandlock: timeout after 2" in r.stderr
        assert r.stdout == ""
        assert wait_for(lambda: not find_processes(marker), 1.0), "a sleep survived the timeout"
    finally:
        kill_marked(marker)


# --- --check, --version, --help ---------------------------------------------------------------

def test_check_exits_0_and_names_the_landlock_abi(who) -> None:
    r = who.run(["--check"])
    assert r.returncode == 0, r.stdout + r.stderr
    assert re.search(r"landlock.?abi", r.stdout, re.IGNORECASE), r.stdout
    assert str(kernel_landlock_abi()) in r.stdout


def test_check_json_prints_valid_json_naming_the_landlock_abi(who) -> None:
    r = who.run(["--check", "--json"])
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert isinstance(report, dict)
    flat = {re.sub(r"[^a-z0-9]", "", k.lower()): v for k, v in report.items()}
    assert flat.get("landlockabi") == kernel_landlock_abi(), report
    for feature in ("notif", "addfd", "openat2", "pidfd", "closerange", "tiocsti"):
        assert any(feature in key for key in flat), f"--check --json does not report {feature}: {sorted(report)}"


def test_check_says_who_enforces_the_network_policy(who) -> None:
    report = json.loads(who.run(["--check", "--json"]).stdout)
    kernel_tcp = "Landlock refuses the command's own TCP connect and bind"
    assert (kernel_tcp in report["network_kernel"]) is (kernel_landlock_abi() >= 4), report
    assert report["landlock_net"] is (kernel_landlock_abi() >= 4)
    assert "connect" in report["network_supervisor"] and "on behalf" in report["network_supervisor"]
    assert "NETLINK_ROUTE" in report["network_supervisor"], report
    text = who.run(["--check"]).stdout
    assert "network_kernel" in text and "network_supervisor" in text


def test_version_prints_one_line_with_python_kernel_and_landlock_abi(who) -> None:
    r = who.run(["--version"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 1, r.stdout
    assert re.search(r"Python 3\.\d+", lines[0]), lines[0]
    assert platform.release() in lines[0]
    m = re.search(r"Landlock ABI\D{0,3}(\d+)", lines[0], re.IGNORECASE)
    assert m and int(m.group(1)) == kernel_landlock_abi(), lines[0]


def test_help_exits_0_and_has_an_exit_status_section(who) -> None:
    r = who.run(["--help"])
    assert r.returncode == 0, r.stderr
    assert "EXIT STATUS" in r.stdout
    for flag in ("--fs-read", "--fs-write", "--fs-deny", "--timeout", "--max-memory", "--check"):
        assert flag in r.stdout


# --- sandlock's own failures: 125, 126, 127, one line, nothing changed ------------------------------

def test_a_nonexistent_command_exits_127_with_one_line(who, scratch: Path) -> None:
    before = tree_snapshot(scratch)
    r = who.run(["-w", str(scratch), "--", "nosuchcmd", "arg"])
    assert r.returncode == 127, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("sandlock: nosuchcmd: "), line
    assert "not found" in line
    assert r.stdout == ""
    assert tree_snapshot(scratch) == before


def test_a_non_executable_file_exits_126(who, scratch: Path) -> None:
    script = who.make_file(scratch / "bin" / "script.sh", "#!/bin/sh\ntouch " + str(scratch / "ran") + "\n", 0o644)
    before = tree_snapshot(scratch)
    r = who.run([*SYSTEM_READ, "-w", str(scratch), "--", str(script)])
    assert r.returncode == 126, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("sandlock: "), line
    assert str(script) in line and "Permission denied" in line
    assert r.stdout == ""
    assert tree_snapshot(scratch) == before


@pytest.mark.parametrize("bad,names", [
    (["-r", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["-w", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["--fs-deny", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["--max-memory", "12Q"], "--max-memory"),
    (["-m", "12Q"], "--max-memory"),
    (["--max-processes", "-3"], "--max-processes"),
    (["--max-open-files", "many"], "--max-open-files"),
    (["--timeout", "soon"], "--timeout"),
    (["--cwd", "/nonexistent/sandlock-probe"], "/nonexistent/sandlock-probe"),
    (["--no-such-option"], "--no-such-option"),
    (["--fs-re", "/usr"], "--fs-re"),
], ids=lambda v: v if isinstance(v, str) else " ".join(v))
def test_a_bad_option_exits_125_naming_it_and_runs_nothing(who, scratch: Path, bad: List[str], names: str) -> None:
    before = tree_snapshot(scratch)
    r = who.run(["-w", str(scratch), *bad, "--", "sh", "-c", f"touch {scratch}/ran"])
    assert r.returncode == 125, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("sandlock: "), line
    assert names in line
    assert "Traceback" not in r.stderr
    assert r.stdout == ""
    assert tree_snapshot(scratch) == before


# --- exit statuses -----------------------------------------------------------------------------------

@pytest.mark.parametrize("code", [0, 1, 7, 42])
def test_the_command_exit_status_is_passed_through(who, code: int) -> None:
    r = who.run(["--", "sh", "-c", f"exit {code}"])
    assert r.returncode == code, r.stderr
    assert r.stderr == ""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL, signal.SIGUSR1], ids=lambda s: s.name)
def test_death_by_signal_exits_128_plus_n(who, sig: signal.Signals) -> None:
    r = who.run(["--", "sh", "-c", f"kill -{sig.name[3:]} $$"])
    # SPEC 2: 128+N, or sandlock re-raises N on itself as timeout(1) does.
    assert r.returncode in (128 + sig, -sig), (r.returncode, r.stderr)
    assert r.returncode != 255


# --- refused syscalls --------------------------------------------------------------------------------

REFUSED_EPERM = ["ptrace_parent", "ptrace_init", "ptrace_traceme", "vm_readv_parent", "vm_readv_self", "mount",
                 "unshare_user", "unshare_ns", "chroot", "io_uring_setup", "bpf_prog_load", "clone_newuser",
                 "pidfd_getfd_parent", "prctl_set_dumpable", "prctl_set_ptracer", "socket_sock_diag", "keyctl",
                 "userfaultfd", "perf_event_open", "personality_linux32", "name_to_handle_at", "setns_own_uts",
                 "sethostname_same"]
CONTROLS = ["getpid", "getppid", "uname", "fork", "prctl_get_dumpable", "personality_query", "socket_unix"]


def test_dangerous_syscalls_are_refused_with_eperm_while_harmless_ones_work(who, progs) -> None:
    r = who.run([*SYSTEM_READ, "-r", "/proc", "-r", str(progs.dir), "--", progs["syscalls"], *CONTROLS,
                 *REFUSED_EPERM])
    assert r.returncode == 0, r.stderr
    probes = parse_probes(r.stdout)
    for op in CONTROLS:
        assert op in probes and probes[op][0] >= 0, f"control {op} failed: {r.stdout}"
    wrong = {op: probes.get(op) for op in REFUSED_EPERM
             if probes.get(op) is None or probes[op][0] != -1 or probes[op][1] != errno.EPERM}
    assert not wrong, "not refused with EPERM: " + ", ".join(
        f"{op}: rc={v[0]} errno={errname(v[1])}" if v else f"{op}: no result" for op, v in wrong.items())


def test_clone3_fails_with_enosys_so_libc_falls_back_to_clone(who, progs) -> None:
    r = who.run([*SYSTEM_READ, "-r", str(progs.dir), "--", progs["syscalls"], "clone3", "fork"])
    assert r.returncode == 0, r.stderr
    probes = parse_probes(r.stdout)
    assert probes["clone3"] == [-1, errno.ENOSYS], r.stdout
    assert probes["fork"][0] == 0, r.stdout


if platform.machine() == "x86_64":
    def test_an_x32_syscall_number_is_refused(who, progs) -> None:
        r = who.run([*SYSTEM_READ, "-r", str(progs.dir), "--", progs["syscalls"], "getpid", "x32_getpid"])
        probes = parse_probes(r.stdout)
        assert probes["getpid"][0] > 0, r.stdout
        if r.returncode == 128 + signal.SIGSYS or r.returncode == -signal.SIGSYS:
            return  # killed by the filter: refused
        assert r.returncode == 0, r.stderr
        rc, err = probes["x32_getpid"]
        assert rc == -1 and err in (errno.EPERM, errno.ENOSYS), f"x32 getpid gave rc={rc} errno={errname(err)}"


# --- inherited file descriptors ------------------------------------------------------------------

def test_fds_left_open_by_the_caller_are_not_visible_inside(who, scratch: Path) -> None:
    leaked = os.open(str(scratch), os.O_RDONLY)
    high = os.dup2(leaked, 37)
    try:
        os.set_inheritable(leaked, True)
        os.set_inheritable(high, True)
        r = who.run(["--", "ls", "/proc/self/fd"], pass_fds=(leaked, high))
        assert r.returncode == 0, r.stderr
        fds = set(r.stdout.split())
        assert {"0", "1", "2"} <= fds
        extra = fds - {"0", "1", "2"}
        assert len(extra) <= 1 and str(high) not in fds, f"fds inside: {sorted(fds, key=int)}"
    finally:
        os.close(leaked)
        os.close(high)


# --- lifecycle ----------------------------------------------------------------------------------------

def test_killing_sandlock_kills_every_sandboxed_process(who) -> None:
    m1, m2 = unique_marker(300), unique_marker(300)
    proc = who.popen(["--", "sh", "-c", f"sleep {m1} & sleep {m2} & wait"])
    try:
        assert wait_for(lambda: find_processes(m1) and find_processes(m2), 10), "the sleeps never started"
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        gone = wait_for(lambda: not find_processes(m1) and not find_processes(m2), 1.0, 0.01)
        assert gone, f"left running: {find_processes(m1) + find_processes(m2)}"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
        kill_marked(m1)
        kill_marked(m2)


def test_sigterm_to_sandlock_is_forwarded_and_the_inner_trap_decides_the_status(who) -> None:
    marker = unique_marker()
    proc = who.popen(["--", "sh", "-c", f"trap 'exit 3' TERM; sleep {marker} & wait"])
    try:
        assert wait_for(lambda: find_processes(marker), 10), "the sleep never started"
        time.sleep(0.1)  # let sh reach `wait` with its trap installed
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 3, err
        assert wait_for(lambda: not find_processes(marker), 2.0), "the sleep survived"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_marked(marker)


# --- resource limits ----------------------------------------------------------------------------------

FORKER = """
import errno, os, sys, time
marker = sys.argv[1]
ok = failed = 0
errors = set()
children = []
for i in range(20):
    try:
        pid = os.fork()
    except OSError as e:
        failed += 1
        errors.add(errno.errorcode[e.errno] + ":" + e.strerror)
        continue
    if pid == 0:
        time.sleep(1.5)
        os._exit(0)
    ok += 1
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
print("ok", ok, "failed", failed)
print("errors", sorted(errors))
"""


def test_max_processes_caps_concurrent_processes_and_fork_gets_eagain(who) -> None:
    marker = unique_marker()
    proc = who.popen(["-P", "5", "--", SYSTEM_PYTHON, "-c", FORKER, marker])
    peak = 0
    try:
        while proc.poll() is None:
            peak = max(peak, len(find_processes(marker)))
            time.sleep(0.02)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_marked(marker)
    assert proc.returncode == 0, err
    m = re.search(r"ok (\d+) failed (\d+)", out)
    assert m, out + err
    ok, failed = int(m.group(1)), int(m.group(2))
    assert 1 <= ok <= 4, out
    assert failed == 20 - ok
    assert "EAGAIN:Resource temporarily unavailable" in out
    assert peak <= 5, f"{peak} sandboxed processes at once"


def test_max_processes_makes_a_shell_fail_to_start_more_background_jobs(who) -> None:
    marker = unique_marker(3)
    r = who.run(["-P", "5", "--", "sh", "-c",
                 f"for i in $(seq 20); do sleep {marker} & done; wait; echo done"], timeout=60)
    # dash says "Cannot fork", bash "fork: Resource temporarily unavailable".
    assert re.search(r"Resource temporarily unavailable|Cannot fork", r.stderr), r.stderr


def test_max_open_files_gives_emfile(who) -> None:
    code = ("import os\nfds = []\ntry:\n    for i in range(100): fds.append(os.open('/dev/null', os.O_RDONLY))\n"
            "except OSError as e: print('error', e.strerror)\nprint('opened', len(fds))\n")
    r = who.run(["--max-open-files", "16", "--", SYSTEM_PYTHON, "-c", code])
    assert r.returncode == 0, r.stderr
    assert "error Too many open files" in r.stdout
    opened = int(r.stdout.split("opened")[1])
    assert 0 < opened < 16


def test_max_memory_stops_a_512_mib_allocation(who) -> None:
    code = ("import time\nb = b'\\x01' * (512 << 20)\nprint('allocated', flush=True)\n"
            "time.sleep(1)\nprint('survived', len(b))\n")
    r = who.run(["-m", "64M", "--", SYSTEM_PYTHON, "-c", code], timeout=60)
    assert r.returncode != 0
    assert "survived" not in r.stdout
    assert "MemoryError" in r.stderr or re.search(r"^sandlock: .*memory", r.stderr, re.M | re.I), r.stderr


# --- environment and cwd --------------------------------------------------------------------------------

def test_env_sets_a_variable(who) -> None:
    r = who.run(["--env", "FOO=bar", "--env", "EMPTY=", "--", "sh", "-c", 'echo "[$FOO] [${EMPTY-unset}]"'])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "[bar] []\n"


def test_clean_env_hides_parent_variables_but_keeps_path_and_home(who) -> None:
    r = who.run(["--clean-env", "--", "env"], env={"SANDLOCK_TEST_SECRET": "s3cr3t"})
    assert r.returncode == 0, r.stderr
    env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
    assert "SANDLOCK_TEST_SECRET" not in env and "s3cr3t" not in r.stdout
    assert "PYTHONPATH" not in env
    assert env.get("PATH") and env.get("HOME") == str(who.home) and env.get("LANG") == "C.UTF-8"
    r = who.run(["--", "env"], env={"SANDLOCK_TEST_SECRET": "s3cr3t"})
    assert "SANDLOCK_TEST_SECRET=s3cr3t" in r.stdout.splitlines()  # control: passed without --clean-env


def test_clean_env_with_env_adds_only_the_given_variable(who) -> None:
    r = who.run(["--clean-env", "--env", "FOO=bar", "--", "sh", "-c", 'echo "$FOO:$SANDLOCK_TEST_SECRET"'],
                env={"SANDLOCK_TEST_SECRET": "s3cr3t"})
    assert r.stdout == "bar:\n"


def test_cwd_starts_the_command_in_the_directory(who, scratch: Path) -> None:
    d = who.make_dir(scratch / "work", 0o777)
    r = who.run(["-w", str(d), "--cwd", str(d), "--", "sh", "-c", "pwd; echo x > relative"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{d}\n"
    assert (d / "relative").read_text() == "x\n"


# --- stat, readlink, existence: what Landlock does not cover (SPEC 1.5) -------------------------------------

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


# --- capabilities, NO_NEW_PRIVS, seccomp (SPEC 1.9) --------------------------------------------------------

SECBITS_CODE = """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
print("securebits", libc.prctl(27, 0, 0, 0, 0))  # PR_GET_SECUREBITS
for line in open("/proc/self/status"):
    if line.startswith(("Cap", "NoNewPrivs", "Seccomp:")):
        print(line.strip().replace(":", "", 1))
"""


def test_the_command_has_no_capabilities_no_new_privs_and_a_seccomp_filter(who) -> None:
    r = who.run(["--", SYSTEM_PYTHON, "-c", SECBITS_CODE])
    assert r.returncode == 0, r.stderr
    status = dict(line.split()[:2] for line in r.stdout.splitlines())
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(status[cap], 16) == 0, f"{cap} = {status[cap]}"
    assert status["NoNewPrivs"] == "1"
    assert status["Seccomp"] == "2"
    if who.name == "root":
        assert int(status["CapBnd"], 16) == 0, f"bounding set kept: {status['CapBnd']}"
        bits = int(status["securebits"])
        assert bits & 0b11 == 0b11, f"SECBIT_NOROOT not set and locked: securebits={bits:#x}"


# --- processes outside the sandbox are out of reach (SPEC 1.6) ------------------------------------------------

@pytest.fixture
def outside_sleep(who):  # type: ignore[no-untyped-def]
    """A process of the same identity, not sandboxed: what the command must not touch."""
    marker = unique_marker()
    proc = who.spawn_outside(["sleep", marker])
    assert wait_for(lambda: find_processes(marker), 5)
    yield proc.pid
    proc.kill()
    proc.wait()


def test_signals_to_a_process_outside_the_sandbox_are_refused(who, outside_sleep: int) -> None:
    r = who.run(["--", "sh", "-c", f"kill -0 {outside_sleep}; echo zero=$?; kill -TERM {outside_sleep}; "
                                   f"echo term=$?; kill -0 $$; echo self=$?"])
    assert "zero=1" in r.stdout and "term=1" in r.stdout, r.stdout + r.stderr
    assert "self=0" in r.stdout
    assert "Operation not permitted" in r.stderr
    time.sleep(0.1)
    assert process_state_alive(outside_sleep), "the outside process was killed from inside the sandbox"


def process_state_alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


SCHED_CODE = """
import os, resource, sys
pid = int(sys.argv[1])
def attempt(name, call):
    try:
        call(); print(name, 0)
    except OSError as e:
        print(name, e.errno)
attempt("prlimit", lambda: resource.prlimit(pid, resource.RLIMIT_NOFILE, (10, 10)))
attempt("setpriority", lambda: os.setpriority(os.PRIO_PROCESS, pid, 15))
attempt("sched_setaffinity", lambda: os.sched_setaffinity(pid, {0}))
attempt("self_prlimit", lambda: resource.prlimit(0, resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE)))
attempt("self_setpriority", lambda: os.setpriority(os.PRIO_PROCESS, 0, 5))
"""


def test_prlimit_setpriority_and_affinity_of_an_outside_process_are_refused(who, outside_sleep: int) -> None:
    def observe() -> tuple:
        limits = [l for l in Path(f"/proc/{outside_sleep}/limits").read_text().splitlines() if "open files" in l]
        return (limits, os.getpriority(os.PRIO_PROCESS, outside_sleep), os.sched_getaffinity(outside_sleep))

    before = observe()
    r = who.run(["--", SYSTEM_PYTHON, "-c", SCHED_CODE, str(outside_sleep)])
    assert r.returncode == 0, r.stderr
    results = dict(line.split() for line in r.stdout.splitlines())
    for name in ("prlimit", "setpriority", "sched_setaffinity"):
        assert results[name] != "0", f"{name} on an outside process succeeded: {r.stdout}"
        assert int(results[name]) in (errno.EPERM, errno.EACCES, errno.ESRCH), r.stdout
    assert results["self_prlimit"] == "0" and results["self_setpriority"] == "0", r.stdout
    assert observe() == before


# --- unix sockets (SPEC 1.5, 1.6) ---------------------------------------------------------------------------------

CONNECT_CODE = """
import socket, sys
def connect(address):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(address); return 0
    except OSError as e:
        return e.errno
    finally:
        s.close()
for arg in sys.argv[1:]:
    if arg == "own-abstract":
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind("\\0sandlock-own-" + str(id(server)))
        server.listen(1)
        print(arg, connect(server.getsockname()))
    elif arg.startswith("@"):
        print(arg, connect("\\0" + arg[1:]))
    else:
        print(arg, connect(arg))
"""


def test_connect_to_a_pathname_unix_socket_outside_the_rules_is_refused(who, scratch: Path) -> None:
    import socket
    d = who.make_dir(scratch / "sockdir", 0o777)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(d / "sock"))
    os.chmod(d / "sock", 0o777)
    server.listen(4)
    server.setblocking(False)
    try:
        r = who.run(["--", SYSTEM_PYTHON, "-c", CONNECT_CODE, str(d / "sock")])
        assert r.stdout.split() == [str(d / "sock"), str(errno.EACCES)], r.stdout + r.stderr
        with pytest.raises(BlockingIOError):
            server.accept()
        r = who.run(["-w", str(d), "--", SYSTEM_PYTHON, "-c", CONNECT_CODE, str(d / "sock")])
        assert r.stdout.split() == [str(d / "sock"), "0"], r.stdout + r.stderr  # control: allowed by -w
    finally:
        server.close()


def test_connect_to_an_abstract_socket_outside_the_sandbox_is_refused(who) -> None:
    import socket
    name = f"sandlock-test-{unique_marker()}"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind("\0" + name)
    server.listen(4)
    server.setblocking(False)
    try:
        r = who.run(["--", SYSTEM_PYTHON, "-c", CONNECT_CODE, "own-abstract", "@" + name])
        results = dict(line.split() for line in r.stdout.splitlines())
        assert results.get("own-abstract") == "0", r.stdout + r.stderr
        # the sandbox's abstract names are a namespace of their own (README): the host's is not in it
        assert results.get("@" + name) == str(errno.ECONNREFUSED), r.stdout + r.stderr
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


# --- more of the filesystem policy (SPEC 3) ------------------------------------------------------------------------

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


# --- memory of all processes together (SPEC 7) -------------------------------------------------------------------

MANY_ALLOCATORS = """
import os, time
for i in range(4):
    if os.fork() == 0:
        b = b"\\x01" * (60 << 20)
        time.sleep(3)
        os._exit(0)
for i in range(4):
    os.wait()
print("survived")
"""


def test_max_memory_counts_all_processes_together(who) -> None:
    r = who.run(["-m", "128M", "--", SYSTEM_PYTHON, "-c", MANY_ALLOCATORS], timeout=60)
    assert r.returncode != 0
    assert "survived" not in r.stdout
    assert re.search(r"^sandlock: .*memory", r.stderr, re.M | re.I), r.stderr


# --- signals forwarded (SPEC 2) ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGINT, signal.SIGUSR1], ids=lambda s: s.name)
def test_signals_to_sandlock_reach_the_sandboxed_command(who, sig: signal.Signals) -> None:
    marker = unique_marker()
    proc = who.popen(["--", "sh", "-c", f"trap 'exit 5' {sig.name[3:]}; sleep {marker} & wait"])
    try:
        assert wait_for(lambda: find_processes(marker), 10), "the sleep never started"
        time.sleep(0.1)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 5, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        kill_marked(marker)


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
