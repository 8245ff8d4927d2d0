"""Conformance: CPython's own regression tests give in sandlock's emulated root what they give in a chroot.

The Debian root of tests/rootfs.py with CPython's test suite installed
(``debian_testsuite_rootfs``) is copied afresh for every run, then
``python3 -m test`` (regrtest) runs MODULES in it five ways, in one pytest run:

- as root: a bare ``chroot COPY`` (``/proc`` and ``/dev`` bind-mounted, in a
  private mount namespace so nothing stays mounted, and a private UTS
  namespace so the host's hostname is never changed) against
  ``sandlock --root COPY -w /``;
- as the unprivileged ``sandlock-test`` user: the same chroot entered as that
  user (``setpriv`` inside it: chroot itself needs CAP_SYS_CHROOT) against
  ``sandlock --root COPY -w /tmp`` started by that user.

- as the unprivileged user with ``--fake-root``, in a copy the user owns (the
  files an unprivileged builder of a root has): ``sandlock --root COPY -w /
  --fake-root`` against the chroot as root (the same baseline run as above),
  since that is what fake root stands for (identity ``fake`` in EXPECTED).

The command's environment is the same in both (``env -i`` with a fixed
PATH/HOME/LANG); sandlock is given the network a chroot has (``--net-allow
'*' --net-allow-bind '*'``: regrtest without ``-u`` only uses loopback).
Results come per test id from regrtest's ``-v`` lines: passed, skipped or
failed (errors count as failed); a test id missing from one run (a module that
crashed) is an outcome too.  Any test id whose outcome under sandlock differs
from the chroot's fails the test, by name — unless EXPECTED names it with the
reason it differs today, and then it must still differ (an entry that stops
differing fails too, so the list cannot rot).  Test ids that are flaky in a
chroot as well are not run at all (FLAKY, each with its reason).

This is its own CI stage (``.ci/run``): ``pytest tests`` does not collect
this directory (``norecursedirs`` in pyproject.toml); run it with
``python3 -m pytest -q tests/conformance`` (README "Tests"), one module while
working with ``SANDLOCK_CONFORMANCE_MODULES=test_os``.  It takes about 10 minutes
on a 2-core VM with a load of 2-4: five regrtest runs of 1.5-3 minutes each,
plus five copies of the 280 MB root.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

import rootfs
from chrootcase import chroot_run, copy_root, remove_root
import conftest
from conftest import CLI, IS_ROOT, Who, build_fixture

ALL_MODULES = ["test_os", "test_posix", "test_shutil", "test_tempfile", "test_pathlib", "test_glob",
           "test_tarfile", "test_zipfile", "test_subprocess", "test_importlib", "test_socket",
           "test_signal", "test_select", "test_mmap", "test_pty"]
# SANDLOCK_CONFORMANCE_MODULES="test_os test_glob" runs only those (while working on one).
MODULES = os.environ.get("SANDLOCK_CONFORMANCE_MODULES", "").split() or ALL_MODULES

# regrtest's own knobs: two workers (one per core of the CI VM), a module that
# hangs is killed (--timeout is per test case; the worker gets 1.5x of it).
WORKERS = 2
CASE_TIMEOUT = 300
RUN_TIMEOUT = 1500

# Test ids (glob patterns, as regrtest's --ignorefile takes them) that are not
# run in any mode: they are flaky in a bare chroot too.
FLAKY: Dict[str, str] = {
    "test.test_socket.ThreadedVSOCKSocketStreamTest.*":
        "on a VM, as root, its setUp waits in accept() for a client connecting to the VM's own "
        "vsock CID that never arrives in a chroot either; regrtest kills the worker after "
        "--timeout and the rest of test_socket has no result",
    "test.test_socket.NetworkConnectionAttributesTest.testSourceAddress":
        "binds a port find_unused_port() found free a moment before: another process "
        "(the other worker, any test run on the machine) may take it in between",
}

CAPS = ("sandlock runs root's command without capabilities (README \"What the sandbox allows\"); "
        "a fake-root mode is issue 15 item 4")
NO_DAC_OVERRIDE = ("the test skips itself for a root that may write anywhere (CAP_DAC_OVERRIDE); "
                   "sandlock's root has no capabilities, so it runs and passes")
UDPLITE = ("the network policy knows TCP, UDP and ICMP: a UDP-Lite socket is refused "
           "(EPROTONOSUPPORT, README \"Network\")")
FAKE = ("--fake-root is root over the files of the root only (README \"Fake root\"); "
        "a privilege beyond them stays the real user's")
SETID = "sandlock never lets a file or directory become set-id (README \"What the sandbox allows\")"
ABSTRACT = ("abstract unix names live under a per-run prefix (README \"Locks and kernel pools\"): "
            "a name of the full 107 bytes does not fit, EINVAL")

# (identity, test id) -> why sandlock differs from the chroot there today.  An exact
# id must still differ; a glob pattern (with *) must still match some differing id.
EXPECTED: Dict[Tuple[str, str], str] = {
    ("root", "test.test_os.ChownFileTests.test_chown_with_root"): CAPS + " (chown to another uid)",
    ("root", "test.test_posix.PosixTester.test_chown"): CAPS + " (chown to another uid)",
    ("root", "test.test_posix.PosixTester.test_fchown"): CAPS + " (chown to another uid)",
    ("root", "test.test_posix.PosixTester.test_lchown"): CAPS + " (chown to another uid)",
    ("root", "test.test_posix.PosixGroupsTester.test_initgroups"): CAPS + " (CAP_SETGID)",
    ("root", "test.test_posix.PosixGroupsTester.test_setgroups"): CAPS + " (CAP_SETGID)",
    **{("root", f"test.test_tarfile.{kind}MiscReadTest.{name}"):
       CAPS + " (tarfile as euid 0 chowns every member to its owner first)"
       for kind in ("", "Gzip", "Bz2", "Lzma")
       for name in ("test_extract_directory", "test_extract_pathlike_name", "test_extractall",
                    "test_extractall_pathlike_name")},
    ("root", "test.test_shutil.TestCopy.test_copyxattr"): CAPS + " (can_xattr sets a trusted.* xattr)",
    ("root", "test.test_shutil.TestCopy.test_copyxattr_symlinks"): CAPS + " (can_xattr sets a trusted.* xattr)",
    ("root", "test.test_shutil.TestCopy.test_copy2_xattr"): CAPS + " (can_xattr sets a trusted.* xattr)",
    ("root", "test.test_socket.GeneralModuleTests.test_sethostname"): CAPS + " (CAP_SYS_ADMIN)",
    ("root", "test.test_shutil.TestRmTree.test_on_error"): NO_DAC_OVERRIDE,
    ("root", "test.test_shutil.TestWhich.test_non_matching_mode"): NO_DAC_OVERRIDE,
    ("root", "test.test_shutil.TestWhichBytes.test_non_matching_mode"): NO_DAC_OVERRIDE,
    ("root", "test.test_tempfile.TestMkdtemp.test_read_only_directory"): NO_DAC_OVERRIDE,
    ("root", "test.test_tempfile.TestMkstempInner.test_read_only_directory"): NO_DAC_OVERRIDE,
    ("root", "test.test_socket.BasicVSOCKTest.*"):
        "/dev/vsock is not in the emulated /dev (the test skips) and AF_VSOCK is refused (README \"Network\")",
    **{(who, "test.test_os.MakedirTests.test_exist_ok_s_isgid_directory"): SETID for who in ("root", "user")},
    **{(who, "test.test_socket.TestLinuxAbstractNamespace.testMaxName"): ABSTRACT for who in ("root", "user")},
    **{(who, "test.test_socket.*UDPLITE*"): UDPLITE for who in ("root", "user", "fake")},
    **{("fake", f"test.test_shutil.TestCopy.{name}"): FAKE + " (can_xattr sets a trusted.* xattr: CAP_SYS_ADMIN)"
       for name in ("test_copyxattr", "test_copyxattr_symlinks", "test_copy2_xattr")},
    ("fake", "test.test_socket.GeneralModuleTests.test_sethostname"): FAKE + " (sethostname: CAP_SYS_ADMIN)",
    ("fake", "test.test_subprocess.POSIXProcessTestCase.test_preexec_fork_failure"):
        FAKE + " (RLIMIT_NPROC binds the real user; the test skips itself where it does not, as for real root)",
    ("fake", "test.test_socket.BasicVSOCKTest.*"):
        "/dev/vsock is not in the emulated /dev (the test skips) and AF_VSOCK is refused (README \"Network\")",
    ("fake", "test.test_socket.TestLinuxAbstractNamespace.testMaxName"): ABSTRACT,
}

Outcome = str  # "passed", "skipped", "failed", or "missing" (absent from the run)


# One line of `python3 -m test -v` per test: "name (test.module.Class.name) ... ok", or the
# status later (after what the test printed, or a docstring line); failed subtests as
# "  name (id) (params) ... FAIL"; class/module fixtures as "setUpClass (test.module.Class)".
_START = re.compile(r"^\s*([\w.]+) \(((?:\w+\.)+\w+)\)")
_STATUS = re.compile(r"(?:^|\.\.\. )(ok|FAIL|ERROR|skipped|expected failure|unexpected success)(?:$| ['\"])")
_OUTCOME = {"ok": "passed", "expected failure": "passed", "skipped": "skipped",
            "FAIL": "failed", "ERROR": "failed", "unexpected success": "failed"}
_RANK = {"passed": 0, "skipped": 1, "failed": 2}


def parse_verbose(text: str) -> Dict[str, Outcome]:
    """Test id -> outcome, from regrtest's -v output (a test seen twice: the worst counts).

    Not --junit-xml: with it regrtest buffers the tests' output, and a threaded
    test of test_socket whose setUp fails then takes the whole module down
    (CPython 3.11's RegressionTestResult reads a sys.stderr another thread restored)."""
    results: Dict[str, Outcome] = {}
    pending = None
    for line in text.splitlines():
        start = _START.match(line)
        if start:
            name, dotted = start.groups()
            pending = dotted if dotted.endswith("." + name) else f"{dotted}.{name}"
            line = line[start.end():]
        if pending is None:
            continue
        status = _STATUS.search(line)
        if status:
            outcome = _OUTCOME[status.group(1)]
            if _RANK[outcome] >= _RANK[results.get(pending, "passed")]:
                results[pending] = outcome
            pending = None
    return results


class Runner:
    """Runs regrtest in a fresh copy of the root, in a chroot or under sandlock, as one identity."""

    def __init__(self, base: Path, where: Path, who: Who, ignorefile: Path, fake_root: bool = False) -> None:
        self.base = base
        self.where = where
        self.who = who
        self.ignorefile = ignorefile
        self.fake_root = fake_root  # sandlock --fake-root in a copy the user owns, -w /

    def inner(self) -> List[str]:
        # sandlock: the passwd entry's home, else /; with fake root the command is uid 0: /root
        home = "/" if self.who.is_user and not self.fake_root else "/root"
        regrtest = (f"cd /tmp && exec python3 -m test -j{WORKERS} --timeout {CASE_TIMEOUT} "
                    f"--ignorefile /tmp/flaky.txt -v {' '.join(MODULES)}")
        return ["/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                f"HOME={home}", "LANG=C.UTF-8", "/bin/sh", "-c", regrtest]

    def run(self, mode: str) -> Tuple[Dict[str, Outcome], str, float]:
        copy = copy_root(self.base, self.where)
        try:
            if self.fake_root and mode != "chroot":
                # the files an unprivileged builder of a root has: all its own
                subprocess.run(["chown", "-R", "-h", f"{self.who.uid}:{self.who.gid}", str(copy)], check=True)
            shutil.copyfile(self.ignorefile, copy / "tmp" / "flaky.txt")
            (copy / "tmp" / "flaky.txt").chmod(0o644)
            start = time.monotonic()
            if mode == "chroot":
                done = self._chroot(copy)
            else:
                done = self._sandlock(copy)
            elapsed = time.monotonic() - start
            log = done.stdout + done.stderr
            results = parse_verbose(done.stdout)
            assert results, f"{mode} as {self.who.name}: no test ran (exit {done.returncode}):\n{log[-4000:]}"
            return results, log, elapsed
        finally:
            remove_root(copy)

    def _chroot(self, copy: Path) -> subprocess.CompletedProcess:
        # a private UTS namespace: test_socket's test_sethostname sets (and restores) the hostname as root
        return chroot_run(copy, self.inner(), self.who, timeout=RUN_TIMEOUT)

    def _sandlock(self, copy: Path) -> subprocess.CompletedProcess:
        write = "/tmp" if self.who.is_user and not self.fake_root else "/"
        fake = ["--fake-root"] if self.fake_root else []
        return self.who.run(["--root", str(copy), "-w", write, *fake, "--net-allow", "*", "--net-allow-bind", "*",
                             "--", *self.inner()], timeout=RUN_TIMEOUT)


def differences(chroot: Dict[str, Outcome], sandlock: Dict[str, Outcome]) -> Dict[str, Tuple[Outcome, Outcome]]:
    """Test id -> (chroot outcome, sandlock outcome) where they are not the same."""
    ids = set(chroot) | set(sandlock)
    return {i: (chroot.get(i, "missing"), sandlock.get(i, "missing")) for i in sorted(ids)
            if chroot.get(i, "missing") != sandlock.get(i, "missing")}


def _counts(results: Dict[str, Outcome]) -> str:
    return ", ".join(f"{k} {sum(1 for v in results.values() if v == k)}" for k in ("passed", "skipped", "failed"))


@pytest.fixture(scope="module")
def testsuite_root() -> Path:
    return build_fixture(rootfs.debian_testsuite_rootfs)


# identity -> its chroot's (results, log, seconds): the root one is the baseline of two tests
_CHROOT: Dict[str, Tuple[Dict[str, Outcome], str, float]] = {}


def chroot_baseline(runner: Runner) -> Tuple[Dict[str, Outcome], str, float]:
    if runner.who.name not in _CHROOT:
        _CHROOT[runner.who.name] = runner.run("chroot")
    return _CHROOT[runner.who.name]


def ignore_flaky(session_dir: Path) -> Path:
    ignorefile = session_dir / "flaky.txt"
    ignorefile.write_text("".join(f"{pattern}\n" for pattern in FLAKY))
    return ignorefile


def test_cpython_regression_tests_give_the_chroot_results_under_sandlock(
        who: Who, testsuite_root: Path, session_dir: Path) -> None:
    if not IS_ROOT:
        pytest.skip("the chroot baseline needs root (chroot, mount)")
    runner = Runner(testsuite_root, session_dir, who, ignore_flaky(session_dir))
    compare(who.name, chroot_baseline(runner), runner.run("sandlock"))


def test_cpython_regression_tests_as_a_user_with_fake_root_give_the_results_of_root_in_a_chroot(
        cli: CLI, test_user: conftest.TestUser, testsuite_root: Path, session_dir: Path) -> None:
    """The point of --fake-root: an unprivileged user, in a root of its own files, is root there."""
    if not IS_ROOT:
        pytest.skip("the chroot baseline needs root (chroot, mount)")
    cli.user = test_user
    ignorefile = ignore_flaky(session_dir)
    root = Runner(testsuite_root, session_dir, Who("root", cli, None), ignorefile)
    where = session_dir / "fake-root"  # the user makes COPY.sandlock-fakeroot next to its copy
    where.mkdir(exist_ok=True)
    where.chmod(0o1777)
    fake = Runner(testsuite_root, where, Who("user", cli, test_user), ignorefile, fake_root=True)
    compare("fake", chroot_baseline(root), fake.run("sandlock"))


def compare(name: str, baseline: Tuple[Dict[str, Outcome], str, float],
            under: Tuple[Dict[str, Outcome], str, float]) -> None:
    """Fail naming every test id whose outcome differs, unless EXPECTED says why for name."""
    (chroot, chroot_log, chroot_time), (sandlock, sandlock_log, sandlock_time) = baseline, under
    print(f"\n{name}: chroot {_counts(chroot)} in {chroot_time:.0f} s; "
          f"sandlock {_counts(sandlock)} in {sandlock_time:.0f} s")

    # The baseline itself ran every module (a module that crashed in both would compare nothing).
    ran = {test_id.split(".")[1] for test_id in chroot if test_id.startswith("test.")}
    assert not set(MODULES) - ran, f"modules with no result in the chroot: {sorted(set(MODULES) - ran)}\n" \
                                   f"{chroot_log[-4000:]}"

    missing = set(MODULES) - {test_id.split(".")[1] for test_id in sandlock if test_id.startswith("test.")}
    assert not missing, f"modules with no result under sandlock: {sorted(missing)}\n{sandlock_log[-6000:]}"

    found = differences(chroot, sandlock)
    expected = {pattern: reason for (who, pattern), reason in EXPECTED.items()
                if who == name and pattern.split(".")[1] in MODULES}
    report = judge(found, expected, chroot)
    print(f"{name}: {len(found)} test ids differ, EXPECTED has {len(expected)} entries for {name}")
    assert not report, f"as {name}, sandlock --root and chroot disagree:\n" + "\n".join(report)


def judge(found: Dict[str, Tuple[Outcome, Outcome]], expected: Dict[str, str],
          chroot: Dict[str, Outcome]) -> List[str]:
    """One line per difference no EXPECTED pattern explains, and per pattern nothing differs for."""
    unexpected = {i: d for i, d in found.items() if not any(fnmatch.fnmatchcase(i, p) for p in expected)}
    stale = [p for p in expected if not any(fnmatch.fnmatchcase(i, p) for i in found)]
    report = [f"  {i}: chroot {c}, sandlock {s}" for i, (c, s) in unexpected.items()]
    report += [f"  {p}: expected to differ ({expected[p]}) but "
               + (f"both {chroot.get(p, 'missing')}" if "*" not in p else "no test id it matches differs")
               for p in stale]
    return report


VERBOSE_SAMPLE = """\
0:00:01 load avg: 1.0 [ 1/2] test_x passed
test_a (test.test_x.T.test_a) ... ok
test_b (test.test_x.T.test_b) ... printed by the test
more output
ERROR
test_c (test.test_x.T.test_c)
The docstring's first line. ... skipped 'no foo'
test_d (test.test_x.T.test_d) ... skipped "can't"
  test_e (test.test_x.T.test_e) (i=1) ... FAIL
  test_e (test.test_x.T.test_e) (i=2) ... ok
test_f (test.test_x.T.test_f) ... expected failure
setUpClass (test.test_x.U) ... skipped 'no bar'
test.test_x.w (unittest.loader.ModuleSkipped.test.test_x.w) ... skipped 'no winreg'
FAIL: test_e (test.test_x.T.test_e) (i=1)
"""


def test_regrtest_verbose_lines_give_one_outcome_per_test_id() -> None:
    assert parse_verbose(VERBOSE_SAMPLE) == {
        "test.test_x.T.test_a": "passed", "test.test_x.T.test_b": "failed", "test.test_x.T.test_c": "skipped",
        "test.test_x.T.test_d": "skipped", "test.test_x.T.test_e": "failed", "test.test_x.T.test_f": "passed",
        "test.test_x.U.setUpClass": "skipped", "unittest.loader.ModuleSkipped.test.test_x.w": "skipped"}


def test_a_difference_fails_unless_expected_and_an_expected_entry_that_no_longer_differs_fails() -> None:
    chroot = {"test.m.A.a": "passed", "test.m.A.b": "passed", "test.m.UDPLITE.c": "passed", "test.m.A.d": "passed"}
    sandlock = {"test.m.A.a": "failed", "test.m.A.b": "passed", "test.m.UDPLITE.c": "failed"}
    found = differences(chroot, sandlock)
    assert found == {"test.m.A.a": ("passed", "failed"), "test.m.UDPLITE.c": ("passed", "failed"),
                     "test.m.A.d": ("passed", "missing")}
    everything = {"test.m.A.a": "r", "test.m.*UDPLITE*": "r", "test.m.A.d": "r"}
    assert judge(found, everything, chroot) == []
    assert judge(found, {"test.m.*UDPLITE*": "r", "test.m.A.d": "r"}, chroot) == [
        "  test.m.A.a: chroot passed, sandlock failed"]
    assert judge(found, {**everything, "test.m.A.b": "why"}, chroot) == [
        "  test.m.A.b: expected to differ (why) but both passed"]
    assert judge(found, {**everything, "test.m.*NOPE*": "why"}, chroot) == [
        "  test.m.*NOPE*: expected to differ (why) but no test id it matches differs"]
