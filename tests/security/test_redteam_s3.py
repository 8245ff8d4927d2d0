"""Red team of the merge of 2026-12-06 (fake root, host renames and links made on
behalf, vendoring, Ctrl-Z in the command's group, the network verdict cache).

Each probe asserts what the attacker would see; each has a control.  Probes
that found a hole that is closed here say so in their docstring; those that
found nothing stay as cheap regression tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


# --- fake root: the supervisor's memory ----------------------------------------------------

def test_a_loop_of_files_made_chowned_and_removed_keeps_the_pending_changes_bounded(tmp_path: Path) -> None:
    """A command that creates a file, chowns it and removes it, again and again,
    leaves no record -- and must leave no pending change per inode number either
    (tmpfs never reuses inode numbers: one entry per loop, never released until
    the end of the run, was memory without bound).  Half the files are kept
    (distinct inode numbers on any filesystem) and chowned back to the default."""
    from sandlock import _fakeroot
    from sandlock import _syscalls
    hot = _syscalls.HotCalls()
    root = tmp_path / "root"
    root.mkdir()
    owners = _fakeroot.Owners.open(str(root))
    try:
        for i in range(300):
            fd = os.open(root / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            st = hot.fstat(fd)
            owners.set(fd, st, 1000, 1000, 0, 0)  # chown 1000:1000
            if i % 2:
                owners.set(fd, st, 0, 0, 0, 0)  # chown 0:0 again: the default view
            os.close(fd)
            if not i % 2:
                os.unlink(root / f"f{i}")
                owners.forget(st.dev, st.ino)  # its last name is gone
        assert owners.records == {}
        assert len(owners.changed) == 0, len(owners.changed)
        # control: a change that outlives the loop is still saved, and one removed
        # that was in the record file is removed from it
        (root / "kept").write_text("")
        (root / "gone").write_text("")
        for name in ("kept", "gone"):
            fd = os.open(root / name, os.O_PATH)
            owners.set(fd, hot.fstat(fd), 42, 42, 0, 0)
            os.close(fd)
        owners.save()
        fd = os.open(root / "gone", os.O_PATH)
        st = hot.fstat(fd)
        os.close(fd)
        owners.forget(st.dev, st.ino)
        owners.save()
    finally:
        owners.close()
    again = _fakeroot.Owners.open(str(root))
    again.close()
    assert [v[1] for v in again.records.values()] == [42]


def test_threads_setting_many_groups_keep_the_supervisors_memory_bounded(tmp_path: Path) -> None:
    """Virtual setgroups keeps a thread's groups in the supervisor: 4096 threads of
    65536 groups each (the kernel's NGROUPS_MAX) were ~10 GB of the supervisor's
    memory.  Past GROUPS_HELD_MAX groups over all live threads, setgroups fails
    with ENOMEM; control: a thread that replaces its own list, and dead threads'
    lists, never count against it."""
    import errno
    import threading
    from sandlock import _fakeroot
    root = tmp_path / "root"
    root.mkdir()
    owners = _fakeroot.Owners.open(str(root))
    release = threading.Event()
    tids: list = []
    started = threading.Barrier(41)

    def live() -> None:
        tids.append(threading.get_native_id())
        started.wait()
        release.wait()

    threads = [threading.Thread(target=live) for _ in range(40)]
    for t in threads:
        t.start()
    started.wait()
    groups = tuple(range(1000, 1000 + _fakeroot.NGROUPS_MAX))  # one tuple: the test stays small
    refused = []
    try:
        for tid in tids:
            try:
                _fakeroot._store(owners, tid, _fakeroot.Creds([0] * 4, [0] * 4, groups))
            except OSError as exc:
                refused.append(exc.errno)
        held = sum(len(c.groups) for c in owners.creds.values())
        assert held <= 1 << 20, held
        assert refused and set(refused) == {errno.ENOMEM}, refused
        # control: the same live thread replaces its list; a dead thread's list goes
        _fakeroot._store(owners, tids[0], _fakeroot.Creds([0] * 4, [0] * 4, groups))
        for tid in tids[:2]:
            _fakeroot._store(owners, tid, _fakeroot.Creds([0] * 4, [0] * 4, (5,)))
        owners.creds[2 ** 22 + 1] = _fakeroot.Creds([0] * 4, [0] * 4, groups)  # no such tid
        _fakeroot._store(owners, tids[-1], _fakeroot.Creds([0] * 4, [0] * 4, groups))
        assert 2 ** 22 + 1 not in owners.creds
    finally:
        release.set()
        for t in threads:
            t.join()
        owners.close()


# --- fake root: nothing real ----------------------------------------------------------------------

def _py_root(who, scratch: Path):  # type: ignore[no-untyped-def]
    """A small private root owned by who with the Debian root's /usr, /lib, /etc mounted
    read-only (as tests/test_fake_root.py's py_root)."""
    import subprocess
    from conftest import IS_ROOT, build_fixture
    import rootfs
    deb = build_fixture(rootfs.debian_rootfs)
    root = scratch / "pyroot"
    for d in ("tmp", "usr", "lib", "lib64", "etc", "bin"):
        (root / d).mkdir(parents=True, exist_ok=True)
    if IS_ROOT:
        subprocess.run(["chown", "-R", "-h", f"{who.uid}:{who.gid}", str(root)], check=True)
    (root / "tmp").chmod(0o1777)
    mounts = [a for d in ("usr", "lib", "lib64", "etc") if (deb / d).exists()
              for a in ("--fs-mount", f"/{d}:{deb / d}:ro")]
    return root, mounts


PRIVILEGE_PROBES = r"""
import ctypes, errno, os, struct, sys
def tryit(name, fn):
    try:
        fn(); print(name, "ok")
    except OSError as exc:
        print(name, errno.errorcode[exc.errno])
open("/tmp/f", "w").close()
# file capabilities: a v2 security.capability granting cap_setuid (bit 7), effective
cap = struct.pack("<IIIII", 0x02000001, 1 << 7, 1 << 7, 0, 0)
tryit("setcap", lambda: os.setxattr("/tmp/f", "security.capability", cap))
tryit("trusted", lambda: os.setxattr("/tmp/f", "trusted.x", b"1"))
# a set-id directory and a creating openat2 with set-id bits
tryit("mkdir", lambda: os.mkdir("/tmp/d", 0o6777))
tryit("chmod-dir", lambda: os.chmod("/tmp/d", 0o6777))
libc = ctypes.CDLL(None, use_errno=True)
how = struct.pack("QQQ", os.O_CREAT | os.O_WRONLY, 0o6755, 0)
fd = libc.syscall(437, -100, b"/tmp/o2", how, len(how))
print("openat2", "ok" if fd >= 0 else errno.errorcode[ctypes.get_errno()])
# a fake device through a hard link, a rename, the link left alone, and /proc/self/fd
os.mknod("/tmp/mem", 0o20666, os.makedev(1, 1))
os.link("/tmp/mem", "/tmp/mem2"); os.rename("/tmp/mem", "/tmp/mem3"); os.unlink("/tmp/mem3")
tryit("open-link", lambda: os.close(os.open("/tmp/mem2", os.O_RDWR)))
print("kind", oct(os.stat("/tmp/mem2").st_mode))
# virtual ids give nothing real: setuid(1234) then the kernel's view of the process
os.setuid(1234)
print("uid", os.getuid(), [l.split()[1] for l in open("/proc/self/status") if l.startswith("Uid:")][0] != "1234")
"""


def test_fake_root_makes_no_file_capability_set_id_directory_or_device_on_the_host(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """File capabilities are the set-id bits' twin: a real security.capability on a
    host file would be root for whoever runs it outside.  Neither it, nor a set-id
    directory, nor a set-id file by openat2, nor a device through a hard link whose
    first name is gone, is ever real.  Control: the same calls are answered (the
    fake device keeps its kind, the directory and the openat2 file are made)."""
    import stat as st_
    root, mounts = _py_root(who, scratch)
    r = who.run(["--root", str(root), "-w", "/tmp", "--fake-root", *mounts, "--",
                 "/usr/bin/python3", "-c", PRIVILEGE_PROBES])
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert r.returncode == 0, r.stdout + r.stderr
    assert out["setcap"] in ("EPERM", "EACCES", "EOPNOTSUPP") and out["trusted"] in ("EPERM", "EACCES", "EOPNOTSUPP"), out
    assert out["mkdir"] == "ok" and out["chmod-dir"] == "ok", out  # control: made, virtually set-id
    assert out["openat2"] in ("ok", "EPERM"), out
    assert out["open-link"] == "EACCES" and out["kind"] == oct(st_.S_IFCHR | 0o644), out
    assert out["uid"] == "1234 True", out
    tmp = root / "tmp"
    for name in ("f", "d", "o2", "mem2"):
        if (tmp / name).exists():
            assert not os.lstat(tmp / name).st_mode & 0o4000, name
            assert not (os.lstat(tmp / name).st_mode & 0o2000 and not (tmp / name).is_dir()), name
            assert (os.lstat(tmp / name).st_uid, os.lstat(tmp / name).st_gid) == (who.uid, who.gid), name
    assert "security.capability" not in os.listxattr(tmp / "f")
    assert st_.S_ISREG(os.lstat(tmp / "mem2").st_mode) and os.lstat(tmp / "mem2").st_size == 0


# --- host renames and links made on behalf: the kernel's answers ---------------------------------

RENAME_LINK_OPS = r"""
import ctypes, errno, os, sys
W, RO = sys.argv[1], sys.argv[2]
os.chdir(W)
libc = ctypes.CDLL(None, use_errno=True)
out = []
def e(name, f, *a, **k):
    try:
        f(*a, **k); out.append((name, "ok"))
    except OSError as x:
        out.append((name, errno.errorcode.get(x.errno, str(x.errno))))
def sc(nr, *a):
    if libc.syscall(nr, *a) < 0:
        n = ctypes.get_errno(); raise OSError(n, os.strerror(n))
def ren2(a, b, flags):
    sc(316, -100, a.encode(), -100, b.encode(), flags)
def linkat(fd, a, b, flags):
    sc(265, fd, a.encode(), -100, b.encode(), flags)
for n in "abc":
    open(n, "w").close()
os.mkdir("d"); os.mkdir("e"); open("e/f", "w").close()
os.symlink(RO + "/x", "s"); os.symlink("nowhere", "dang")
ro = os.open(RO + "/x", os.O_RDONLY); own = os.open("a", os.O_RDONLY); here = os.open(".", os.O_PATH)
r, w = os.pipe()
e("exchange", ren2, "a", "b", 2)
e("exchange-ro", ren2, "a", RO + "/x", 2)
e("noreplace", ren2, "a", "b", 1)
e("whiteout", ren2, "c", "c2", 4)
e("bad-flags", ren2, "a", "z", 3)
e("link-follow-symlink-to-ro", linkat, -100, "s", "l1", 0x400)
e("link-symlink-itself", os.link, "s", "l2", follow_symlinks=False)
e("link-follow-dangling", linkat, -100, "dang", "l3", 0x400)
e("link-proc-fd-of-ro", linkat, -100, "/proc/self/fd/%d" % ro, "l4", 0x400)
e("link-proc-fd-nofollow", os.link, "/proc/self/fd/%d" % ro, "l4b", follow_symlinks=False)
e("link-proc-fd-of-own", linkat, -100, "/proc/self/fd/%d" % own, "l4c", 0x400)
e("link-proc-fd-of-own-dir-fd", linkat, here, "a", "l4d", 0x400)
e("link-empty-path-ro", linkat, ro, "", "l5", 0x1000)
e("link-empty-path-own", linkat, own, "", "l6", 0x1000)
t = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o600)
e("link-tmpfile", linkat, -100, "/proc/self/fd/%d" % t, "l7", 0x400)
t2 = os.open(".", os.O_TMPFILE | os.O_WRONLY | os.O_EXCL, 0o600)
e("link-tmpfile-excl", linkat, -100, "/proc/self/fd/%d" % t2, "l7b", 0x400)
e("link-pipe", linkat, -100, "/proc/self/fd/%d" % r, "l8", 0x400)
e("link-dir", os.link, "d", "l9")
e("link-proc-file", os.link, "/proc/self/status", "l10")
e("link-proc-exe", linkat, -100, "/proc/self/exe", "l11", 0x400)
e("link-into-ro", os.link, "a", RO + "/y")
e("link-bad-flags", linkat, own, "", "l12", 0x4000)
e("rename-dir-over-nonempty", os.rename, "d", "e")
e("rename-file-over-dir", os.rename, "c", "d")
e("rename-dir-over-file", os.rename, "d", "c")
e("rename-long", os.rename, "c", "n" * 256)
e("rename-empty", os.rename, "c", "")
e("rename-through-proc-fd", os.rename, "/proc/self/fd/%d/c" % here, "m")
e("rename-dotdot", os.rename, "..", "z2")
e("rename-workdir-away", os.rename, W, W + "-moved")
e("rename-trailing-slash-dir", os.rename, "d/", "d2/")
e("rename-proc", os.rename, "/proc/self/status", "z3")
print("\n".join("%s %s" % p for p in out))
print("tree", sorted(os.listdir(".")))
"""


def test_host_renames_and_links_made_on_behalf_answer_as_the_kernel_does_under_the_same_landlock_rules(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """Differential: the same 32 renames and links (exchange, noreplace, whiteout,
    links through symlinks, /proc/self/fd of a read-only file, of an O_TMPFILE, of a
    pipe, AT_EMPTY_PATH, /proc/self/exe, trailing slashes) run in a host sandbox
    (-r RO -w W, made on behalf by the supervisor) and under sandlock.confine with the
    same rules (Landlock alone, the kernel's answers; without capabilities as root,
    as the supervisor's thread).  A different errno, or a success where the kernel
    refuses, would be a rename or link the sandbox gained."""
    import subprocess
    import sys
    from conftest import IS_ROOT, SYSTEM_DIRS, SYSTEM_READ
    ro = who.make_dir(scratch / "ro", 0o755)
    who.make_file(ro / "x", "x\n")
    results = []
    for how in ("sandbox", "kernel"):
        w = who.make_dir(scratch / f"w-{how}", 0o755)
        if how == "sandbox":
            r = who.run([*SYSTEM_READ, "-r", str(ro), "-w", str(w), "--",
                         "/usr/bin/python3", "-c", RENAME_LINK_OPS, str(w), str(ro)])
        else:
            code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parents[2])!r}); import sandlock; "
                    f"sandlock.confine(fs_readable={list(SYSTEM_DIRS) + [str(ro)]!r}, fs_writable=[{str(w)!r}]); "
                    f"sys.argv = ['x', {str(w)!r}, {str(ro)!r}]; exec({RENAME_LINK_OPS!r})")
            argv = ["/usr/bin/python3", "-c", code]
            if IS_ROOT:
                ids = [f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups"] if who.is_user else []
                argv = ["setpriv", *ids, "--bounding-set=-all", "--inh-caps=-all", "--", *argv]
            r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/")
        assert r.returncode == 0, f"{how}: {r.stdout}{r.stderr}"
        results.append(r.stdout.replace(f"w-{how}", "w-X"))
    sandbox, kernel = results
    assert "exchange ok" in kernel and "link-symlink-itself ok" in kernel  # control: the ops themselves work
    assert sandbox.splitlines() == kernel.splitlines(), "--- sandbox\n" + sandbox + "--- kernel\n" + kernel


TMPFILE_EXCL = r"""
import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
for name, extra in (("plain", 0), ("excl", os.O_EXCL)):
    t = os.open("/tmp", os.O_TMPFILE | os.O_WRONLY | extra, 0o600)
    ok = libc.syscall(265, -100, b"/proc/self/fd/%d" % t, -100, b"/tmp/" + name.encode(), 0x400) == 0
    print(name, "linked" if ok else errno.errorcode[ctypes.get_errno()])
"""


def test_an_o_tmpfile_opened_with_o_excl_can_never_be_linked_in_an_emulated_root(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """The open on behalf of an existing directory dropped O_EXCL, so an O_TMPFILE the
    program asked never to be linkable (open(2)) could be linked into the tree by
    anyone holding it (shown first by the host differential above).  Control: a
    plain O_TMPFILE is linked."""
    root, mounts = _py_root(who, scratch)
    r = who.run(["--root", str(root), "-w", "/tmp", *mounts, "--", "/usr/bin/python3", "-c", TMPFILE_EXCL])
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split("\n") == ["plain linked", "excl ENOENT", ""], r.stdout
    assert (root / "tmp/plain").exists() and not (root / "tmp/excl").exists()


# --- another run's layer: names ---------------------------------------------------------------------

def test_a_sandbox_that_may_write_a_workdir_cannot_learn_which_names_a_dry_run_wrote(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """mkdir, symlink, unlink and rmdir are not trapped in a host sandbox, so one that
    may write DIR answers "does the dry run's layer hold NAME?" with mkdir's EEXIST:
    a run without network hands data (one bit per name) to one with network.  The
    container's listing gives cow-<pid>-<random>; the run's directory below it must
    not be guessable.  Control: B makes and removes its own directory in DIR."""
    from conftest import SYSTEM_READ
    from security.test_redteam_containers import DryRun
    work = who.make_dir(scratch / "work", 0o755)
    who.make_file(work / "f", "base\n")
    signals = who.make_dir(scratch / "signals", 0o777)
    with DryRun(who, work, signals, ["--workdir", str(work), "--dry-run", "-w", str(work)], str(work)) as a:
        probe = (f"mkdir {work}/own && rmdir {work}/own && echo control; "
                 f"for c in {work}/.sandlock-*/cow-*; do for run in 1 2 3; do "
                 f"mkdir $c/$run/tree/new 2>&1 | grep -q 'File exists' && echo seen-new; "
                 f"mkdir $c/$run/tree/absent 2>/dev/null && rmdir $c/$run/tree/absent && echo made-absent; "
                 "done; done; true")
        r = who.run([*SYSTEM_READ, "-w", str(work), "--", "sh", "-c", probe])
    assert r.returncode == 0 and r.stdout.startswith("control\n"), r.stdout + r.stderr
    assert a.out == "SECRET-A\n" and not (work / "new").exists()  # control: run A read its own write
    assert "seen-new" not in r.stdout and "made-absent" not in r.stdout, r.stdout


# --- vendoring: sandlock's own files within the command's reach -------------------------------------

REWRITE_HELPERS = r"""
for f in {vend}/_*.py; do printf '\nopen("{marks}/" + __name__, "w").close()\n' >> $f; done
rm -rf {vend}/__pycache__
ls /proc > /dev/null; python3 -c 'import os, socket
s = socket.socket(); s.settimeout(1)
try: s.connect(("127.0.0.1", 9))
except OSError as e: print("connect", e.errno)
os.system("true")'
touch {vend}/x && mv {vend}/x {vend}/y && ln {vend}/y {vend}/z && echo rewritten
"""


@pytest.mark.parametrize("options", [[], ["--workdir", "{vend}", "--on-exit", "commit"]], ids=["host", "workdir-commit"])
def test_a_command_that_rewrites_a_writable_vendored_sandlock_runs_none_of_it_in_this_run(who, scratch: Path, options) -> None:  # type: ignore[no-untyped-def]
    """A vendored copy inside a directory the command may write (`-w .` in a project
    holding `_vendor/sandlock.py`): the command appends code to every helper.  No
    helper may be read after the command starts (a lazy import would run the
    command's code unconfined, beside the notification fd) -- nor after a workdir
    commit put the rewritten files in place.  Control: the files were rewritten (a
    NEXT run would load them: never let a command write sandlock's own files)."""
    import shutil
    import subprocess
    from conftest import IS_ROOT, REPO, SYSTEM_PYTHON, SYSTEM_READ
    vend = who.make_dir(scratch / "vend", 0o755)
    for f in [REPO / "sandlock.py", *sorted(REPO.glob("_*.py"))]:
        shutil.copy(f, vend / f.name)
        who.own(vend / f.name)
    marks = who.make_dir(scratch / "marks", 0o755)
    script = who.make_file(scratch / "cmd.sh", REWRITE_HELPERS.format(vend=vend, marks=marks))
    argv = [SYSTEM_PYTHON, "-I", str(vend / "sandlock.py"), *SYSTEM_READ, "-r", str(script), "-w", str(vend),
            *[o.format(vend=vend) for o in options], "--", "sh", str(script)]
    if who.is_user and IS_ROOT:
        argv = ["setpriv", f"--reuid={who.uid}", f"--regid={who.gid}", "--clear-groups", "--", *argv]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd="/", stdin=subprocess.DEVNULL)
    assert r.returncode == 0 and "rewritten" in r.stdout, r.stdout + r.stderr
    assert "open(" in (vend / "_fsops.py").read_text().splitlines()[-1]  # control: rewritten on disk
    assert sorted(os.listdir(marks)) == [], r.stderr
    # control: the marks are made when the rewritten helpers are loaded (the next run)
    subprocess.run(argv[:argv.index(str(vend / "sandlock.py")) + 1] + ["--version"], capture_output=True, timeout=60)
    assert "sandlock._errors" in os.listdir(marks)


# --- Ctrl-Z: SIGTSTP sent by the command itself -----------------------------------------------------

@pytest.fixture
def term(who):  # type: ignore[no-untyped-def]
    from test_terminal import Shell
    sh = Shell(who)
    sh.expect("PROMPT\\$ ")
    yield sh
    sh.close()


def test_a_command_sending_sigtstp_to_its_group_in_a_loop_neither_stops_nor_holds_up_sandlock(term) -> None:  # type: ignore[no-untyped-def]
    """In a terminal the command shares sandlock's process group, and sandlock waits
    up to 3 s for the command to stop on each SIGTSTP before stopping itself
    (Watch._stop_after): a command that ignores SIGTSTP and sends kill(0, SIGTSTP)
    in a loop would, if its signals reached sandlock, hold up its loop 3 s per signal
    (the -t timeout never ending it).  The signal scope keeps them from sandlock:
    the loop ends by -t 2 (exit 124) at once, and a command that stops itself
    that way is ended by -t too.  Control: a finite loop ends with ALIVE, exit 0."""
    import time
    term.send(f"{term.python} -m sandlock -- sh -c 'trap \"\" TSTP; i=0; while [ $i -lt 300 ]; do kill -TSTP 0; "
              "i=$((i+1)); done; echo ALIVE$((6*7))'; echo rc=$?\n")
    term.expect("ALIVE42\r?\n", timeout=20)
    term.expect("rc=0")
    start = time.monotonic()
    term.send(f"{term.python} -m sandlock -t 1 -- sh -c 'trap \"\" TSTP; while :; do kill -TSTP 0; done'; echo rc=$?\n")
    term.expect("rc=124", timeout=30)
    term.send(f"{term.python} -m sandlock -t 1 -- sh -c 'kill -TSTP 0; echo RUN$((6*7))'; echo rc=$?\n")
    assert term.expect("RUN42|rc=124", timeout=30) == "rc=124"  # stopped until -t ended it
    assert time.monotonic() - start < 15


# --- the network verdict cache --------------------------------------------------------------------

def test_a_learned_names_verdict_is_never_kept_for_another_spelling_protocol_or_port() -> None:
    """allows_packed keeps only verdicts that hold whatever was learned.  An address
    allowed by a learned name (asked as v4 and as v4-mapped v6, TCP and UDP), next to
    an address rule for the same address on another port, must be refused again on
    every spelling once the answer's lifetime is over, while the address rule's
    verdict stays (control)."""
    from ipaddress import ip_address
    from sandlock import _netpolicy as NP
    from sandlock import _policy
    r = NP.NetRules.from_policy(_policy.make_policy(net_allow=["api.example.com:443", "tcp://192.0.2.0/24:80"]))
    learned: dict = {}
    names_of = lambda ip: learned.get(str(ip), ())  # noqa: E731
    v4, mapped = ip_address("192.0.2.10").packed, ip_address("::ffff:192.0.2.10").packed
    asks = [(proto, spelled, port) for proto in ("tcp", "udp") for spelled in (v4, mapped) for port in (80, 443)]
    before = [r.allows_packed(p, a, n, names_of) for p, a, n in asks]
    learned["192.0.2.10"] = ("api.example.com",)
    during = [r.allows_packed(p, a, n, names_of) for p, a, n in asks]
    learned.clear()
    after = [r.allows_packed(p, a, n, names_of) for p, a, n in asks]
    #            tcp v4 80, 443; tcp mapped 80, 443; udp v4 80, 443; udp mapped 80, 443
    assert before == [True, False, True, False, False, False, False, False]
    assert during == [True, True, True, True, False, True, False, True]
    assert after == before


REACH_LAYER = r"""
import ctypes, errno, os, sys
container, rel = sys.argv[1], sys.argv[2]
def e(name, f, *a, **k):
    try:
        r = f(*a, **k)
        if isinstance(r, int) and r >= 0 and name != "inotify":
            try: print(name, os.read(r, 100))
            except OSError: print(name, "opened")
        else:
            print(name, "ok" if not isinstance(r, int) or r >= 0 else errno.errorcode[ctypes.get_errno()])
    except OSError as x:
        print(name, errno.errorcode[x.errno])
fd = os.open(container, os.O_PATH | os.O_DIRECTORY)
print("container", sorted(n.split("-")[0] for n in os.listdir(container)))
e("openat-opath", os.open, rel, os.O_RDONLY, dir_fd=fd)
e("proc-fd", os.open, "/proc/self/fd/%d/%s" % (fd, rel), os.O_RDONLY)
e("stat-dirfd", os.stat, rel, dir_fd=fd)
os.fchdir(fd)
e("fchdir-open", os.open, rel, os.O_RDONLY)
libc = ctypes.CDLL(None, use_errno=True)
ino = libc.inotify_init1(0)
e("inotify", lambda: libc.inotify_add_watch(ino, os.path.dirname(rel).encode(), 0xfff))
e("absolute-open", os.open, os.path.join(container, rel), os.O_RDONLY)
"""


def test_another_runs_layer_is_not_reached_through_a_container_fd_fchdir_or_proc_self_fd(who, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    """The container may be opened and listed (control: its cow-* entry), but nothing
    below it is reached through an O_PATH fd of it (openat, /proc/self/fd/N/...,
    fstatat), after fchdir into it, nor watched with inotify, even knowing the path."""
    from conftest import SYSTEM_READ
    from security.test_redteam_containers import DryRun
    work = who.make_dir(scratch / "work", 0o755)
    who.make_file(work / "f", "base\n")
    signals = who.make_dir(scratch / "signals", 0o777)
    with DryRun(who, work, signals, ["--workdir", str(work), "--dry-run", "-w", str(work)], str(work)) as a:
        tree = a.tree()
        container = tree.parents[2]
        rel = str((tree / "new").relative_to(container))
        r = who.run([*SYSTEM_READ, "-r", str(work), "--", "/usr/bin/python3", "-c", REACH_LAYER, str(container), rel])
    assert r.returncode == 0, r.stdout + r.stderr
    assert a.out == "SECRET-A\n"
    who.make_file(work / "sub" / "g", "base\n")  # control: the same reach into a plain directory of DIR
    c = who.run([*SYSTEM_READ, "-r", str(work), "--", "/usr/bin/python3", "-c", REACH_LAYER, str(work), "sub/g"])
    assert c.stdout.split("\n")[1:] == [f"{n} b'base\\n'" for n in ("openat-opath", "proc-fd")] + [
        "stat-dirfd ok", "fchdir-open b'base\\n'", "inotify ok", "absolute-open b'base\\n'", ""], c.stdout + c.stderr
    assert r.stdout.split("\n") == ["container ['.gitignore', '.sandlock', 'cow']", "openat-opath EACCES",
                                    "proc-fd EACCES", "stat-dirfd EACCES", "fchdir-open EACCES", "inotify EACCES",
                                    "absolute-open EACCES", ""], r.stdout


# --- the end of a run: nothing of the sandbox outlives sandlock -------------------------------------

def _alive_with(marker: str) -> list:
    found = []
    for pid in os.listdir("/proc"):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("how", [["-t", "1"], []], ids=["timeout", "exit"])
def test_a_process_in_a_session_of_its_own_does_not_outlive_a_timeout(who, scratch: Path, how) -> None:  # type: ignore[no-untyped-def]
    """On -t (and -m, --max-disk, a failing notifier: Watch.kill_all) the supervisor
    asked the stub to kill the sandbox and, at the same moment, SIGKILLed the stub's
    process group: the stub died before it could, and a process that had left the
    group (setsid) lived on, reparented to init, after sandlock had returned.
    Control: the same process is killed when the command exits by itself."""
    import signal
    import subprocess
    import time
    from conftest import SYSTEM_READ
    marker = f"{61 + os.getpid() % 1000 / 1000:.3f}{len(how)}"
    cli = who._cli
    out = scratch / "out"
    try:
        with open(out, "w") as f:  # sandlock's output a file (a terminal too), not a pipe it relays
            code = subprocess.run(cli.command([*how, *SYSTEM_READ, "--", "sh", "-c",
                                               f"(setsid sleep {marker}) & sleep {'5' if how else '0.3'}"], who.is_user),
                                  stdin=subprocess.DEVNULL, stdout=f, stderr=f, cwd="/", timeout=60,
                                  env=cli.environment(who.is_user, None)).returncode
        assert code == (124 if how else 0), out.read_text()
        deadline = time.monotonic() + 2
        while _alive_with(f"sleep\0{marker}") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _alive_with(f"sleep\0{marker}") == []
    finally:
        for pid in _alive_with(f"sleep\0{marker}"):
            os.kill(pid, signal.SIGKILL)
