"""Hostile input to the supervisor: trapped syscalls with random arguments.

A seeded fuzzer (tests/progs/fuzz_syscalls.py, stdlib random, bounded) runs
inside the sandbox and issues every trapped syscall with invalid, unmapped,
kernel-space and page-straddling pointers, unterminated strings, paths of
PATH_MAX+1 bytes, non-UTF-8 bytes, negative fds and huge sizes.  The
sandboxed process must get an errno or a result for each call (it finishes
and reports), the supervisor must never hit an unexpected exception (with
--debug it would print "handler ... failed"), and nothing outside the
writable directory may change: a canary file and the interpreter itself sit
in a read-only directory and are compared before and after.
"""

import os
import shutil
import json
import stat
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FUZZER = os.path.join(ROOT, "tests", "progs", "fuzz_syscalls.py")
TRAPPED = ("stat,lstat,access,readlink,chdir,chmod,chown,lchown,utime,utimes,statfs,fstatfs,getxattr,"
           "lgetxattr,listxattr,setxattr,removexattr,fchmod,fchown,fsetxattr,fremovexattr,inotify_add_watch,"
           "openat,open,creat,newfstatat,readlinkat,fchmodat,faccessat,fchownat,futimesat,utimensat,faccessat2,"
           "openat2,statx,fchmodat2,connect,prlimit64,setpriority,sched_setaffinity,kill,tkill,tgkill,execve,"
           "truncate")
SYSTEM = ["-r", "/usr", "-r", "/lib", "-r", "/lib64", "-r", "/bin", "-r", "/etc", "-r", "/proc"]

pytestmark = pytest.mark.skipif(os.uname().machine != "x86_64", reason="the fuzzer uses x86_64 syscall numbers")


def _snapshot(*paths):
    out = {}
    for path in paths:
        st = os.lstat(path)
        out[path] = (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                     tuple(sorted(os.listxattr(path))) if not stat.S_ISLNK(st.st_mode) else ())
    return out


@pytest.fixture
def arena(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "canary").write_text("canary\n")
    # the fuzzed interpreter is a copy: /proc/self/exe leads to a watched file
    shutil.copy2(os.path.realpath("/usr/bin/python3"), ro / "py")
    shutil.copy2(FUZZER, ro / "fuzz.py")
    w = tmp_path / "w"
    w.mkdir()
    return ro, w


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("mode", ["abi7", "abi2", "deny"])
def test_random_arguments_get_an_errno_and_change_nothing_outside(arena, seed, mode):
    ro, w = arena
    watched = (str(ro), str(ro / "canary"), str(ro / "py"))
    before = _snapshot(*watched)
    env = dict(os.environ, PYTHONPATH=ROOT, FUZZ_DIR=str(w), FUZZ_CANARY=str(ro / "canary"))
    extra = []
    if mode == "abi2":
        env["SANDLOCK_TEST_LANDLOCK_ABI"] = "2"
    if mode == "deny":
        extra = ["--fs-deny", str(ro / "canary"), "-P", "20"]
    r = subprocess.run([sys.executable, "-m", "sandlock", "--debug", *extra, *SYSTEM, "-r", str(ro), "-w", str(w),
                        "--", str(ro / "py"), str(ro / "fuzz.py"), str(seed), "3000", TRAPPED],
                       stdin=open(ro / "canary", "rb"),  # /proc/self/fd/0 must lead to a watched file
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "failed:" not in r.stderr, r.stderr[-3000:]
    report = json.loads(r.stdout)
    assert report["calls"] == 3000
    # a call the kernel refuses for its AT_* flags must not be done on behalf
    assert report["refused_flags_accepted"] == [], report["refused_flags_accepted"][:5]
    errnos = {key.split(":")[1] for key in report["results"]}
    assert {"EFAULT", "ENAMETOOLONG", "EACCES", "ENOENT"} <= errnos, errnos
    assert _snapshot(*watched) == before


def test_chmod_through_proc_self_exe_cannot_change_the_host_binary(arena):
    """Regression: a magic link of the sandbox's own process once skipped the write check."""
    ro, w = arena
    before = _snapshot(str(ro / "py"))
    code = ("import os\nfor p in ('/proc/self/exe', '/proc/%d/exe' % os.getpid()):\n"
            "    try:\n        os.chmod(p, 0o6777); print('changed')\n"
            "    except OSError as e:\n        print(e.errno)\n")
    r = subprocess.run([sys.executable, "-m", "sandlock", *SYSTEM, "-r", str(ro), "--", str(ro / "py"), "-c", code],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=ROOT), timeout=60)
    assert r.stdout.split() == ["13", "13"], r.stdout + r.stderr
    assert _snapshot(str(ro / "py")) == before
