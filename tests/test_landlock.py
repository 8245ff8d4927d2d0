"""Landlock rulesets across ABIs 1..7, and what older kernels mean for a policy.

The kernel here offers ABI 7; SANDLOCK_TEST_LANDLOCK_ABI lowers what sandlock
uses, to show what happens on older kernels (docs/design.md "Kernel compatibility").
"""

import os
import stat
import subprocess
import sys

import pytest

from sandlock import _landlock as L
from sandlock import _policy
from sandlock import _structs as S

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("abi, bits", [(1, 13), (2, 14), (3, 15), (4, 15), (5, 16), (6, 16), (7, 16)])
def test_each_abi_handles_exactly_its_filesystem_rights(abi, bits):
    assert L.fs_rights(abi) == (1 << bits) - 1
    plan = L.plan(_policy.make_policy(fs_writable=["/tmp"]), abi)
    assert plan.handled_fs == (1 << bits) - 1
    assert all(rule.access & ~plan.handled_fs == 0 for rule in plan.rules)


def test_rights_missing_before_their_abi_are_not_asked_for():
    old = L.plan(_policy.make_policy(fs_writable=["/tmp"]), 2)
    tmp = [r for r in old.rules if r.path == "/tmp"][0]
    assert tmp.access & S.LANDLOCK_ACCESS_FS_REFER
    assert not tmp.access & (S.LANDLOCK_ACCESS_FS_TRUNCATE | S.LANDLOCK_ACCESS_FS_IOCTL_DEV)


def test_scopes_start_at_abi_6_and_the_supervisor_keeps_only_the_socket_scope():
    policy = _policy.make_policy()
    assert L.plan(policy, 5).scoped == 0
    assert L.plan(policy, 6).scoped == S.LANDLOCK_SCOPE_SIGNAL | S.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
    assert L.plan(policy, 6, supervisor=True).scoped == S.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET


@pytest.mark.parametrize("abi", [5, 6, 7])
def test_the_stubs_layer_scopes_and_lets_through_only_the_childs_reparenting(abi, tmp_path):
    """Every layer denies reparenting unless it grants REFER, so the stub's layer grants it
    exactly where the child's does (a write rule), and is not made where nothing is scoped."""
    (tmp_path / "ro").mkdir()
    (tmp_path / "rw").mkdir()
    (tmp_path / "rw" / "f").write_text("x")
    (tmp_path / "rw" / "d").mkdir()
    child = L.plan(_policy.make_policy(fs_readable=[tmp_path / "ro"], fs_writable=[tmp_path / "rw"],
                                       fs_denied=[tmp_path / "rw" / "f"]), abi)
    stub = L.stub_plan(child)
    if abi < 6:
        assert stub == L.Plan(abi, 0, 0, ())
        return
    assert stub.handled_fs == S.LANDLOCK_ACCESS_FS_REFER
    assert stub.scoped == S.LANDLOCK_SCOPE_SIGNAL | S.LANDLOCK_SCOPE_ABSTRACT_UNIX_SOCKET
    assert set(stub.rules) == {L.Rule(str(tmp_path / "rw" / "d"), S.LANDLOCK_ACCESS_FS_REFER)}
    assert all(not r.path.startswith(str(tmp_path / "ro")) for r in stub.rules)
    os.close(L.create_ruleset(stub))  # the kernel takes it


def test_read_rules_grant_read_and_execute_only_and_files_get_file_rights_only(tmp_path):
    (tmp_path / "f").write_text("x")
    plan = L.plan(_policy.make_policy(fs_readable=[tmp_path, tmp_path / "f"]), 7)
    rules = dict(plan.rules)
    assert rules[str(tmp_path)] == L.READ
    assert rules[str(tmp_path / "f")] & ~L.FILE_ONLY == 0


def test_a_denied_file_is_cut_out_of_its_tree(tmp_path):
    for name in ("a", "b", "secret"):
        (tmp_path / name).write_text(name)
    (tmp_path / "sub").mkdir()
    os.symlink("secret", tmp_path / "link")
    plan = L.plan(_policy.make_policy(fs_writable=[tmp_path], fs_denied=[tmp_path / "secret"]), 7)
    paths = {r.path for r in plan.rules}
    assert {str(tmp_path / n) for n in ("a", "b", "sub")} <= paths
    assert str(tmp_path / "secret") not in paths
    assert str(tmp_path) not in paths          # the directory itself gets nothing
    assert str(tmp_path / "link") not in paths  # a link grants nothing itself
    supervisor = L.plan(_policy.make_policy(fs_writable=[tmp_path], fs_denied=[tmp_path / "secret"]), 7,
                        supervisor=True)
    assert (str(tmp_path), S.LANDLOCK_ACCESS_FS_READ_DIR) in supervisor.rules  # it may list it for the child


def test_a_cut_never_grants_sandlocks_containers_but_a_rule_inside_one_still_holds(tmp_path):
    # a workdir's layers live in it (.sandlock-<euid>-<random>): hard links to its files,
    # the denied ones too (README "Where sandlock keeps its own files")
    (tmp_path / "secret").mkdir()
    (tmp_path / "a").write_text("a")
    for name in (".sandlock-0-abc", ".sandlock-1000-xyz", ".sandlock-new-1-f", ".sandlock-x-y"):
        (tmp_path / name).mkdir()
    inner = tmp_path / ".sandlock-0-abc" / "cow-1-x"
    inner.mkdir()
    cut = L.plan(_policy.make_policy(fs_writable=[tmp_path], fs_denied=[tmp_path / "secret"]), 7)
    paths = {r.path for r in cut.rules}
    assert str(tmp_path / "a") in paths
    assert str(tmp_path / ".sandlock-0-abc") not in paths and str(tmp_path / ".sandlock-1000-xyz") not in paths
    assert {str(tmp_path / ".sandlock-new-1-f"), str(tmp_path / ".sandlock-x-y")} <= paths  # not container names
    named = L.plan(_policy.make_policy(fs_writable=[tmp_path, inner], fs_denied=[tmp_path / "secret"]), 7)
    assert str(inner) in {r.path for r in named.rules}
    whole = L.plan(_policy.make_policy(fs_writable=[tmp_path]), 7)  # a grant of DIR covers its layers
    assert str(tmp_path) in {r.path for r in whole.rules}


def test_the_supervisors_path_check_refuses_a_container_in_a_cut_directory_as_landlock_does(tmp_path):
    from sandlock import _resolve
    top = str(tmp_path)
    rules = _resolve.FsRules(["/"], [top, f"{top}/.sandlock-0-abc/cow-1-x/1/tree"], [f"{top}/secret"])
    for path in (f"{top}/.sandlock-0-abc", f"{top}/.sandlock-0-abc/cow-2-y/1/tree/secret/s",
                 f"{top}/.sandlock-0-abc/cow-1-x/2/tree/secret/s"):  # other runs' layers
        with pytest.raises(OSError):
            rules.check(os.fsencode(path), "meta")
    rules.check(os.fsencode(f"{top}/.sandlock-0-abc/cow-1-x/1/tree/secret/s"), "write")  # named by a rule
    rules.check(os.fsencode(f"{top}/a"), "write")
    rules.check(os.fsencode(f"{top}/.sandlock-new-1-a"), "write")
    # without a cut too: a grant of DIR reaches no other run's layer (SECURITY.md "Another
    # run's layer"), the container itself may be seen but not changed
    no_cut = _resolve.FsRules(["/"], [top, f"{top}/.sandlock-0-abc/cow-1-x/1/tree"], [])
    for path, need in ((f"{top}/.sandlock-0-abc/x", "read"), (f"{top}/.sandlock-0-abc/cow-2-y", "meta"),
                       (f"{top}/.sandlock-0-abc", "write"), (f"{top}/d/.sandlock-1000-q/f", "read")):
        with pytest.raises(OSError):
            no_cut.check(os.fsencode(path), need)
    no_cut.check(os.fsencode(f"{top}/.sandlock-0-abc"), "meta")  # ls -l DIR
    no_cut.check(os.fsencode(f"{top}/.sandlock-0-abc/cow-1-x/1/tree/f"), "write")  # the run's own layer
    no_cut.check(os.fsencode(f"{top}/.sandlock-x/f"), "write")  # not a container's name


def _cli(args, abi):
    env = dict(os.environ, SANDLOCK_TEST_LANDLOCK_ABI=str(abi), PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-m", "sandlock", *args], capture_output=True, text=True, env=env,
                          timeout=60)


def test_a_kernel_without_landlock_is_refused_with_a_hint_unless_best_effort():
    r = _cli(["--", "true"], 0)
    assert r.returncode == 125
    assert r.stderr.startswith("sandlock: Landlock is not available") and "--check" in r.stderr
    assert r.stderr.count("\n") == 1
    r = _cli(["--best-effort", "--", "sh", "-c", "echo ran"], 0)
    assert r.returncode == 0 and r.stdout == "ran\n"


@pytest.mark.parametrize("abi", [1, 2, 3, 4, 5, 6, 7])
def test_every_abi_still_keeps_read_only_files_read_only(abi, tmp_path):
    target = tmp_path / "ro"
    target.write_text("keep")
    r = _cli(["-r", "/usr", "-r", "/lib", "-r", "/lib64", "-r", "/bin", "-r", str(tmp_path), "--",
              "sh", "-c", f"truncate -s 0 {target}; echo x > {target}; chmod 777 {target}; cat {target}"], abi)
    assert r.stdout == "keep", r.stderr
    assert target.read_text() == "keep" and target.stat().st_mode & 0o777 != 0o777


@pytest.mark.parametrize("abi", [5, 6])
def test_signals_outside_the_sandbox_are_refused_with_or_without_scopes(abi):
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        r = _cli(["--", "sh", "-c", f"kill -TERM {sleeper.pid}; echo rc=$?"], abi)
        assert "rc=1" in r.stdout, r.stdout + r.stderr
        assert sleeper.poll() is None
    finally:
        sleeper.kill()
        sleeper.wait()


def test_abi_1_refuses_renames_across_directories_but_abi_2_allows_them(tmp_path):
    for abi, ok in ((1, False), (2, True)):
        (tmp_path / "a").mkdir(exist_ok=True)
        (tmp_path / "b").mkdir(exist_ok=True)
        (tmp_path / "a" / "f").write_text("x")
        r = _cli(["-r", "/usr", "-r", "/lib", "-r", "/lib64", "-r", "/bin", "-w", str(tmp_path), "--",
                  "/usr/bin/python3", "-c",
                  f"import os; os.rename('{tmp_path}/a/f', '{tmp_path}/b/f')"], abi)
        assert (r.returncode == 0) == ok, r.stderr
        if not ok:
            assert "Invalid cross-device link" in r.stderr
        for leftover in (tmp_path / "a" / "f", tmp_path / "b" / "f"):
            if leftover.exists():
                leftover.unlink()


@pytest.mark.parametrize("abi", [2, 7])
def test_a_read_only_truncating_open_cannot_empty_a_read_only_file(abi, tmp_path):
    """O_RDONLY|O_TRUNC truncates at open: below ABI 3 only the supervisor's check stops it."""
    target = tmp_path / "ro"
    target.write_text("keep")
    r = _cli(["-r", "/usr", "-r", "/lib", "-r", "/lib64", "-r", "/bin", "-r", str(tmp_path), "--",
              "/usr/bin/python3", "-c",
              f"import os\ntry:\n    os.open('{target}', os.O_RDONLY | os.O_TRUNC)\n    print('opened')\n"
              "except OSError as e:\n    print(e.errno)"], abi)
    assert r.stdout.strip() == "13", r.stdout + r.stderr
    assert target.read_text() == "keep"


def _device_nodes(top):
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            path = os.path.join(dirpath, name)
            try:
                mode = os.lstat(path).st_mode
            except OSError:
                continue
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                yield path


@pytest.mark.parametrize("rules", [dict(fs_readable=["/"]), dict(fs_writable=["/dev"]),
                                   dict(fs_readable=["/dev/pts"]), dict(fs_readable=["/"], fs_denied=["/etc/shadow"])])
def test_a_grant_covering_dev_reaches_no_device_but_the_allowed_ones(rules):
    policy = _policy.make_policy(**rules)
    allowed = {path for path, _ in _policy.device_paths(policy)}
    child, supervisor = L.plans(policy, 7)
    nodes = list(_device_nodes("/dev"))
    assert nodes and "/dev/null" in nodes
    for node in nodes:
        covering = [r.path for r in child.rules if L._under(node, r.path)]
        assert covering == ([node] if node in allowed else []), (node, covering)
    # the supervisor thread opens the sandbox's own pseudo-terminals there (see _resolve.Devices)
    assert any(r.path == "/dev/pts" for r in supervisor.rules)
    granted = tuple(policy.readable_paths()) + tuple(policy.fs_writable)
    if (any(L._under("/dev/shm", top) for top in granted)
            and os.path.isdir("/dev/shm") and os.stat("/dev/shm").st_dev != os.stat("/dev").st_dev):
        assert any(r.path == "/dev/shm" for r in child.rules)  # another filesystem: granted as usual


@pytest.mark.parametrize("rules", [{}, {"fs_readable": ["/"]}, {"fs_writable": ["/"]}, {"fs_readable": ["/proc/self"]}])
def test_no_rule_of_the_command_reaches_into_proc_but_the_supervisor_reads_it(rules):
    """/proc is opened on behalf (README, /proc): the command's own domain grants nothing there."""
    child, supervisor = L.plans(_policy.make_policy(**rules), 7)
    inside = [r.path for r in child.rules if r.path == "/proc" or r.path.startswith("/proc/")]
    assert inside == [], inside
    assert any(r.path == "/proc" for r in supervisor.rules)
    if rules.get("fs_readable") == ["/"]:  # the rest of / is still granted, entry by entry
        assert {"/usr", "/etc"} <= {r.path for r in child.rules}


def test_sandlocks_base_is_cut_out_of_every_grant_and_only_the_runs_own_pieces_are_granted(tmp_path):
    """README "Where sandlock keeps its own files": a grant that covers the base is cut
    around it (its siblings granted one by one), a rule naming a path inside it is
    dropped, and the run's own pieces (`own`) are granted as asked."""
    parent = tmp_path / "var-tmp"
    base = parent / ".sandlock-0"
    own = base / "root-1-x" / "shm" / "1-1"
    other = base / "root-2-y" / "shm" / "2-1"
    for d in (own, other, parent / "sibling"):
        d.mkdir(parents=True)
    (parent / "file").write_text("x")
    policy = _policy.make_policy(fs_readable=[tmp_path], fs_writable=[parent, own, other])
    child, supervisor = L.plans(policy, 7, hidden=(str(base),), own=(str(own),))
    for plan in (child, supervisor):
        paths = {r.path: r.access for r in plan.rules}
        inside = {p for p in paths if L._under(p, str(base))}
        assert inside == {str(own)}, inside
        assert paths[str(own)] == L.fs_rights(7)
        assert paths[str(parent / "sibling")] == L.fs_rights(7) and str(parent / "file") in paths
    # the way down gets no right of its own (the supervisor lists it for the command)
    assert {r.path for r in child.rules} & {str(parent), str(tmp_path)} == set()
    assert {r.access for r in supervisor.rules if r.path == str(parent)} == {S.LANDLOCK_ACCESS_FS_READ_DIR}
    # without a base in it, the same grant is one rule (nothing else is taken from it)
    plain = L.plans(_policy.make_policy(fs_writable=[parent / "sibling"]), 7, hidden=(str(base),))[0]
    assert L.Rule(str(parent / "sibling"), L.fs_rights(7)) in plain.rules


def test_procfs_mounts_names_proc():
    assert L.procfs_mounts()[0] == "/proc"


def test_a_mount_point_of_mountinfo_is_unescaped_and_a_plain_one_kept_as_it_is():
    assert L._unescape(rb"/mnt/a\040b\011c\012d\134e") == b"/mnt/a b\tc\nd\\e"
    assert L._unescape(b"/proc") == b"/proc"


WALL = r"""
import errno, os, sys
sys.path.insert(0, sys.argv[1])
from sandlock import _landlock, _policy, _syscalls, _launch
policy = _policy.make_policy(fs_readable=["/"])
keep = sys.argv[2] == "keep"
fd = _landlock.create_ruleset(_landlock.plan(policy, _syscalls.landlock_abi(), keep_proc=keep))
_syscalls.prctl(_launch.PR_SET_NO_NEW_PRIVS, 1)
_syscalls.landlock_restrict_self(fd)
for path in ("/proc/self/status", "/proc/1/cmdline", "/proc", "/etc/hostname"):
    try:
        os.close(os.open(path, os.O_RDONLY))
        print(path, "ok")
    except OSError as e:
        print(path, errno.errorcode[e.errno])
"""


def test_the_kernel_refuses_proc_to_the_command_even_under_a_grant_of_slash():
    """The wall behind the supervisor (README, /proc): the command's own ruleset, with -r /."""
    r = subprocess.run([sys.executable, "-c", WALL, ROOT, "cut"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["/proc/self/status EACCES", "/proc/1/cmdline EACCES", "/proc EACCES",
                                        "/etc/hostname ok"], r.stdout
    control = subprocess.run([sys.executable, "-c", WALL, ROOT, "keep"], capture_output=True, text=True)
    assert "/proc/self/status ok" in control.stdout and "/proc ok" in control.stdout, control.stdout + control.stderr


@pytest.mark.parametrize("abi", range(1, 8))
def test_from_abi_4_the_commands_domain_handles_tcp_bind_and_connect(abi):
    tcp = S.LANDLOCK_ACCESS_NET_BIND_TCP | S.LANDLOCK_ACCESS_NET_CONNECT_TCP
    assert L.net_rights(abi) == (tcp if abi >= 4 else 0)


def test_the_commands_domain_refuses_every_tcp_bind_and_connect_and_the_supervisors_does_not():
    # README "Network": the supervisor makes the allowed ones on behalf, so the command's
    # domain handles TCP bind/connect with no port rule (the kernel refuses the command's own)
    from sandlock import _supervisor
    from sandlock import _syscalls
    abi = _syscalls.landlock_abi()
    prepared = _supervisor.prepare(_policy.make_policy(net_allow=["tcp://127.0.0.1:80"]))
    try:
        assert prepared.child_plan.handled_net == L.net_rights(abi)
        assert prepared.supervisor_plan.handled_net == 0
        assert all(rule.access for rule in prepared.child_plan.rules)  # path rules only, no port rule
    finally:
        _supervisor.close_prepared(prepared)
