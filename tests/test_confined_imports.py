"""Nothing is imported once the supervisor has confined itself (README "Start-up").

Confined, the supervisor may no longer read Python's library (with a root,
Landlock grants it the root, not the host's /usr): a module imported there
for the first time could fail a handler.  Modules only some policies need
are imported before confinement (_supervisor.preload).  Each test runs the
CLI under a harness that records every import the interpreter looks for
after _launch.confine_supervisor returned, with one feature on (host mode,
a root, a workdir, the network, a fake root, --debug), a command that uses
it, and prints what it recorded; the control shows the harness does see an
import made after confinement.  As root and as the unprivileged user.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import List

import pytest

from conftest import build_fixture

import rootfs

HARNESS = r"""
import os, sys, threading
import sandlock
from sandlock import _launch, _threads
late = []
confined = []


class Recorder:
    # consulted for every module not yet in sys.modules, by every thread
    def find_spec(self, name, path=None, target=None):
        if confined and _threads.current_name() != "sandlock-cleanup":  # the one unconfined thread
            late.append(name)
        return None


sys.meta_path.insert(0, Recorder())
confine = _launch.confine_supervisor


def confine_and_note(*args, **kwargs):
    confine(*args, **kwargs)
    confined.append(True)


_launch.confine_supervisor = confine_and_note
code = sandlock.main(sys.argv[1:])
if os.environ.get("HARNESS_CONTROL") == "1":
    try:
        import colorsys  # noqa: F401  (not imported by sandlock: the harness must list it)
    except (ImportError, OSError):  # PermissionError: this thread is confined, and Python's library may be outside its rules
        pass
os.write(1, ("\nconfined %d late [%s] exit %d\n" % (len(confined), " ".join(late), code)).encode())
"""


def run_harnessed(who, args: List[str], **kwargs) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    r = who.python(HARNESS, args=args, **kwargs)
    return subprocess.CompletedProcess(r.args, r.returncode, r.stdout.decode(errors="replace"),
                                       r.stderr.decode(errors="replace"))


def verdict(r: subprocess.CompletedProcess) -> str:
    return r.stdout.splitlines()[-1] if r.stdout.strip() else f"no verdict: {r.stderr}"


@pytest.fixture
def bbroot(who, scratch: Path) -> Path:  # type: ignore[no-untyped-def]
    """A private copy of the busybox root, owned by who (a fake root records next to it)."""
    dest = scratch / "bbroot"
    subprocess.run(["cp", "-a", str(build_fixture(rootfs.busybox_rootfs)), str(dest)], check=True)
    if who.is_user:
        subprocess.run(["chown", "-R", "-h", f"{who.uid}:{who.gid}", str(dest)], check=True)
    return dest


HOST_SCRIPT = ("ls /proc/self >/dev/null; cat /proc/self/status /proc/self/maps >/dev/null; "
               "echo hi > /dev/null; (exec /bin/true); cd /usr; pwd")
ROOT_SCRIPT = ("ls /proc/self >/dev/null; cat /proc/self/maps /proc/self/mountinfo >/dev/null; echo hi > /tmp/x; "
               "cat /tmp/x; ls -l /bin/sh >/dev/null; cd /tmp; pwd; /bin/sh -c 'exit 0'")


def test_the_harness_lists_a_module_imported_after_the_supervisor_confined_itself(who) -> None:  # type: ignore[no-untyped-def]
    r = run_harnessed(who, ["--", "/bin/true"], env={"HARNESS_CONTROL": "1"})
    assert verdict(r) == "confined 1 late [colorsys] exit 0", r.stderr


def test_a_run_in_host_mode_imports_nothing_once_confined(who) -> None:  # type: ignore[no-untyped-def]
    r = run_harnessed(who, ["--", "/bin/sh", "-c", HOST_SCRIPT])
    assert verdict(r) == "confined 1 late [] exit 0", r.stderr
    assert r.stdout.splitlines()[0] == "/usr", r.stdout


def test_a_run_in_a_root_imports_nothing_once_confined(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    r = run_harnessed(who, ["--root", str(bbroot), "-w", "/tmp", "--", "/bin/sh", "-c", ROOT_SCRIPT])
    assert verdict(r) == "confined 1 late [] exit 0", r.stderr
    assert r.stdout.splitlines()[:2] == ["hi", "/tmp"], r.stdout


def test_a_python_run_in_the_debian_root_imports_nothing_once_confined(who) -> None:  # type: ignore[no-untyped-def]
    deb = build_fixture(rootfs.debian_rootfs)
    code = ("import os, subprocess; os.system('echo sys'); subprocess.run(['/bin/echo', 'sp']); "
            "print(open('/proc/self/maps').read().count('python3') > 0)")
    r = run_harnessed(who, ["--root", str(deb), "--", "/usr/bin/python3", "-c", code])
    assert verdict(r) == "confined 1 late [] exit 0", r.stderr
    assert r.stdout.splitlines()[:3] == ["sys", "sp", "True"], r.stdout


def test_a_run_with_a_workdir_imports_nothing_once_confined(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    work = who.make_dir(scratch / "work")
    who.make_file(work / "old", "old\n")
    r = run_harnessed(who, ["--workdir", str(work), "-w", str(work), "--dry-run", "--",
                            "/bin/sh", "-c", f"echo new > {work}/new; rm {work}/old; cat {work}/new"])
    assert verdict(r) == "confined 1 late [] exit 0", r.stderr
    assert r.stdout.splitlines()[0] == "new" and "A new" in r.stderr and "D old" in r.stderr, r.stderr
    assert sorted(p.name for p in work.iterdir()) == ["old"]  # a dry run changes nothing


def test_a_run_with_network_rules_imports_nothing_once_confined(who) -> None:  # type: ignore[no-untyped-def]
    code = ("import socket\n"
            "print(socket.getaddrinfo('localhost', 9, type=socket.SOCK_STREAM)[0][4][1])\n"
            "s = socket.socket(); print(s.connect_ex(('127.0.0.1', 9)))\n"
            "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print(u.sendto(b'x', ('192.0.2.1', 9)))\n")
    python = shutil.which("python3", path="/usr/bin")
    r = run_harnessed(who, ["--net-allow", "localhost:9", "--net-allow", "udp://192.0.2.1:9", "--",
                            str(python), "-c", code])
    assert verdict(r) == "confined 1 late [] exit 0", r.stderr
    assert r.stdout.splitlines()[:3] == ["9", "111", "1"], r.stdout  # ECONNREFUSED: the connect was made


def test_a_run_with_a_fake_root_imports_nothing_once_confined(who, bbroot: Path) -> None:  # type: ignore[no-untyped-def]
    script = "touch /tmp/y; chown 5:6 /tmp/y; mknod /tmp/n c 1 3; ls -ln /tmp/y /tmp/n"
    r = run_harnessed(who, ["--root", str(bbroot), "-w", "/", "--fake-root", "--", "/bin/sh", "-c", script])
    assert verdict(r) == "confined 1 late [] exit 0", r.stderr
    assert " 5 " in r.stdout and " 6 " in r.stdout and r.stdout.lstrip().startswith("c"), r.stdout


def test_a_debug_run_whose_command_is_missing_imports_nothing_once_confined(who) -> None:  # type: ignore[no-untyped-def]
    r = run_harnessed(who, ["--debug", "--", "/nonexistent/program"])
    assert verdict(r) == "confined 1 late [] exit 127", r.stderr
    assert "/nonexistent/program: not found" in r.stderr


def test_a_deterministic_run_imports_nothing_once_confined(who) -> None:  # type: ignore[no-untyped-def]
    # hashlib (the seeded streams) is imported by preload only for such runs: a plain run's
    # start does without it (README "Start-up")
    r = run_harnessed(who, ["--random-seed", "7", "--", "/bin/sh", "-c", "head -c 8 /dev/urandom | od -An -tx1"])
    r2 = run_harnessed(who, ["--random-seed", "7", "--", "/bin/sh", "-c", "head -c 8 /dev/urandom | od -An -tx1"])
    assert verdict(r) == "confined 1 late [] exit 0", r.stderr
    assert r.stdout.splitlines()[0] == r2.stdout.splitlines()[0] and r.stdout.split()[0], r.stdout  # seeded
