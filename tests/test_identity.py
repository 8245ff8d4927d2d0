"""The machine's identity the command sees (README "Host name", "Core dumps"):
--hostname NAME answers uname(2), gethostname, /proc/sys/kernel/hostname and /etc/hostname
(the host's, or the root's with --root); --no-coredump leaves RLIMIT_CORE at 0, soft and
hard, where the command cannot raise it and no core file is written.

Each is read the ways real programs read it: tests/progs/identity.c built static with
glibc (progs) and with musl (built here), Python's socket/platform/os, busybox's and
coreutils' hostname and uname; as root and unprivileged (`who`), with and without
--root, and each with a control run without the flag.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import shutil
import socket
from pathlib import Path

import pytest

from conftest import STRICT, musl_static, probe_lines
from rootcase import PY, show
from rootcase import deb_shared, deb, busybox_shared, bb  # noqa: F401  (fixtures)

from sandlock import _policy, _structs as S, _syscalls, _table
from sandlock._errors import PolicyError

NAME = "sandbox-7q"
HOST = socket.gethostname()
PY_READERS = ("import socket, platform, os\n"
              "print('socket', socket.gethostname())\n"
              "print('platform', platform.node())\n"
              "print('os', os.uname().nodename)\n"
              "print('proc', open('/proc/sys/kernel/hostname').read().strip())\n"
              "print('etc', open('/etc/hostname').read().strip())\n")



@pytest.fixture(scope="session")
def musl_identity(session_dir: Path) -> str:
    """tests/progs/identity.c, static with musl (its gethostname is uname(2) too)."""
    return musl_static(session_dir, "identity.c")


@pytest.fixture(params=["glibc", "musl"])
def identity(request: pytest.FixtureRequest, progs, musl_identity: str) -> str:  # type: ignore[no-untyped-def]
    if request.param == "glibc":
        assert progs.static, "tests/progs were not built static"
        return progs["identity"]
    return musl_identity


# --- in process ----------------------------------------------------------------------------------

def test_new_utsname_is_six_fields_of_65_bytes() -> None:
    assert ctypes.sizeof(S.new_utsname) == 390
    assert S.new_utsname.nodename.offset == 65 and S.new_utsname.domainname.offset == 325
    assert _syscalls.uname()[:65].rstrip(b"\0") == os.uname().sysname.encode()


def test_struct_sysinfo_has_the_64_bit_layout() -> None:
    assert ctypes.sizeof(S.sysinfo) == 112
    assert (S.sysinfo.totalram.offset, S.sysinfo.procs.offset, S.sysinfo.mem_unit.offset) == (32, 80, 104)


def test_uname_is_trapped_only_when_a_hostname_is_given() -> None:
    assert "uname" not in _table.traps_for(_policy.make_policy(), 6)
    assert "uname" in _table.traps_for(_policy.make_policy(hostname=NAME), 6)


@pytest.mark.parametrize("bad", ["", "-x", "a b", "x" * 65, "a/b", "é", 7])
def test_a_hostname_uname_cannot_carry_is_a_policy_error(bad: object) -> None:
    with pytest.raises(PolicyError, match=r"^--hostname: invalid host name"):
        _policy.make_policy(labels={"hostname": "--hostname"}, hostname=bad)
    assert _policy.make_policy(hostname="x" * 64).hostname == "x" * 64


# --- --hostname on the host ---------------------------------------------------------------------

def test_the_c_probe_sees_the_name_every_way_and_the_host_s_without_the_flag(who, identity: str) -> None:
    read = ["-r", os.path.dirname(identity), "--", identity]
    r = who.run(["--hostname", NAME] + read)
    assert r.returncode == 0, r.stderr
    got = probe_lines(r.stdout)
    assert [got["uname"], got["gethostname"], got["proc"], got["etc"]] == [NAME] * 4, r.stdout
    control = probe_lines(who.run(read).stdout)
    with open("/etc/hostname") as f:
        assert control["etc"] == f.readline().strip()
    assert [control["uname"], control["gethostname"], control["proc"]] == [HOST] * 3


def test_python_and_the_shell_tools_see_the_name_and_the_host_s_without_the_flag(who) -> None:
    r = who.run(["--hostname", NAME, "--", "python3", "-c", PY_READERS])
    assert r.returncode == 0, r.stderr
    assert set(probe_lines(r.stdout).values()) == {NAME}, r.stdout
    r = who.run(["--hostname", NAME, "--", "sh", "-c", "hostname; uname -n; cat /etc/../etc/hostname"])
    assert r.stdout == f"{NAME}\n" * 3, r.stderr
    control = who.run(["--", "sh", "-c", "hostname; uname -n"])
    assert control.stdout == f"{HOST}\n" * 2


def test_the_name_is_not_a_host_file_and_sethostname_stays_refused(who, scratch: Path) -> None:
    out = who.make_dir(scratch / "out", 0o777)
    code = ("import os, socket, sys\n"
            "fd = os.open('/etc/hostname', os.O_RDONLY)\n"
            "st = os.fstat(fd)\n"
            "print(os.read(fd, 100).decode().strip(), st.st_size)\n"
            "try:\n    socket.sethostname('other')\nexcept OSError as e:\n    print('sethostname', e.errno)\n"
            "print(socket.gethostname())\n")
    r = who.run(["--hostname", NAME, "-w", str(out), "--", "python3", "-c", code])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{NAME} {len(NAME) + 1}", f"sethostname {errno.EPERM}", NAME]
    assert socket.gethostname() == HOST


# --- --hostname in a root -----------------------------------------------------------------------

def test_in_a_debian_root_python_sees_the_name_and_the_root_s_file_without_the_flag(who, deb: Path) -> None:
    r = who.run(["--root", str(deb), "--hostname", NAME, "--", PY, "-c", PY_READERS])
    assert r.returncode == 0, show(r)
    assert set(probe_lines(r.stdout).values()) == {NAME}, r.stdout
    control = who.run(["--root", str(deb), "--", PY, "-c", PY_READERS])
    got = probe_lines(control.stdout)
    assert got["etc"] == (deb / "etc" / "hostname").read_text().strip()
    assert (got["socket"], got["os"], got["proc"]) == (HOST, HOST, HOST)


def test_in_a_busybox_root_the_static_probes_and_busybox_see_the_name(who, bb: Path, identity: str) -> None:
    (bb / "etc" / "hostname").write_text("guest-file\n")
    (bb / "etc" / "hostname").chmod(0o644)
    shutil.copy(identity, bb / "identity")
    (bb / "identity").chmod(0o755)
    r = who.run(["--root", str(bb), "--hostname", NAME, "--", "/identity"])
    assert r.returncode == 0, show(r)
    got = probe_lines(r.stdout)
    assert [got["uname"], got["gethostname"], got["proc"], got["etc"]] == [NAME] * 4, r.stdout
    r = who.run(["--root", str(bb), "--hostname", NAME, "--", "/bin/sh", "-c", "hostname; uname -n"])
    assert r.stdout == f"{NAME}\n" * 2, show(r)
    control = probe_lines(who.run(["--root", str(bb), "--", "/identity"]).stdout)
    assert (control["uname"], control["etc"]) == (HOST, "guest-file")
    assert (bb / "etc" / "hostname").read_text() == "guest-file\n"


def test_a_hostname_file_the_command_writes_holds_what_it_wrote_and_reads_as_the_name(who, bb: Path) -> None:
    """Opened for writing, /etc/hostname is the root's own file; read, it is the name, even
    a new file put in its place."""
    (bb / "etc" / "hostname").write_text("old\n")
    who.own(bb / "etc")
    who.own(bb / "etc" / "hostname")
    r = who.run(["--root", str(bb), "--hostname", NAME, "-w", "/etc", "--", "/bin/sh", "-c",
                 "echo new > /etc/hostname; cat /etc/hostname"])
    assert r.returncode == 0, show(r)
    assert (bb / "etc" / "hostname").read_text() == "new\n"
    assert r.stdout == f"{NAME}\n"  # the same file (device and inode), read: the name
    r = who.run(["--root", str(bb), "--hostname", NAME, "-w", "/etc", "--", "/bin/sh", "-c",
                 "rm /etc/hostname; echo newer > /etc/hostname; cat /etc/hostname"])
    assert r.stdout == f"{NAME}\n", show(r)
    assert (bb / "etc" / "hostname").read_text() == "newer\n"
    r = who.run(["--root", str(bb), "-w", "/etc", "--", "/bin/sh", "-c", "cat /etc/hostname"])
    assert r.stdout == "newer\n", show(r)


# --- --no-coredump ------------------------------------------------------------------------------

def _shown(limit: int) -> str:
    return "-1" if limit == resource.RLIM_INFINITY else str(limit)


@pytest.mark.parametrize("root", [False, True], ids=["host", "root"])
def test_no_coredump_pins_rlimit_core_at_0_and_the_command_cannot_raise_it(who, identity: str, bb: Path,
                                                                           root: bool) -> None:
    if root:
        shutil.copy(identity, bb / "identity")
        (bb / "identity").chmod(0o755)
        run = ["--root", str(bb), "--", "/identity"]
    else:
        run = ["-r", os.path.dirname(identity), "--", identity]
    r = who.run(["--no-coredump"] + run)
    assert r.returncode == 0, show(r)
    got = probe_lines(r.stdout)
    assert (got["core"], got["core-after"]) == ("0 0", "0 0"), r.stdout
    assert (got["raise"], got["prlimit"]) == (f"-1 {errno.EPERM}", f"-1 {errno.EPERM}")
    control = probe_lines(who.run(run).stdout)
    hard = _shown(resource.getrlimit(resource.RLIMIT_CORE)[1])  # the user's too (setpriv keeps limits)
    assert control["core"].split()[1] == hard
    if hard == "-1":
        assert (control["raise"], control["core-after"]) == ("0 0", "-1 -1"), control


def test_no_coredump_writes_no_core_file_where_one_is_written_without_it(who, scratch: Path) -> None:
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("|") or "/" in pattern:
        message = f"core_pattern {pattern!r} does not write a core file into the cwd"
        pytest.fail(message) if STRICT else pytest.skip(message)
    if resource.getrlimit(resource.RLIMIT_CORE)[1] == 0:
        pytest.fail("the hard RLIMIT_CORE of the test is 0: the control cannot dump")
    crash = "ulimit -c unlimited 2>/dev/null; ulimit -S -c $(ulimit -H -c); kill -SEGV $$"
    for flag, dumped in (([], True), (["--no-coredump"], False)):
        work = who.make_dir(scratch / ("dump" if dumped else "nodump"), 0o777)
        r = who.run(flag + ["-w", str(work), "--cwd", str(work), "--", "sh", "-c", crash])
        assert r.returncode == 128 + 11, show(r)
        cores = [p.name for p in work.iterdir() if p.name.startswith(pattern.split("%")[0] or "core")]
        assert bool(cores) is dumped, (flag, cores)
