"""Red team of the emulated root's fast paths (issue 14): each attacked as a hostile
command would, INSIDE a sandbox, as root and as the unprivileged user.

- RootResolver.stat_path (stat/lstat of a clean absolute path by one openat2 from the
  root): names planted to look like its exclusions (/workx beside a /work mount, the
  root's own /dev), symlinks on the way into a mount, /proc and /dev and to a denied
  directory, denied files and a hard link to one, a directory without search
  permission, names too long; each spelled the short way (as it is, with "/." in
  front, relative to the cwd) and the general way ("/.." in front), which must agree,
  with the values a real root gives.  Controls:
  the same run without --fs-deny reads what the denials hide.
- the same short path with --workdir on the root (the upper layer's view),
  --fake-root (the recorded owner and mode), and --workdir without --root ('/' is
  the root: sandlock's own containers stay hidden).
- _rootscratch.Cwd.of_thread / _sweep: 2000 live threads asking their cwd leave the
  supervisor's fd count bounded (_notif.KNOWN_MAX; the control: 40 threads do show the pidfds it
  keeps), a live process's cwd survives the sweeps of 1500 forks that exit, and a
  thread's tid reused (certainly: ns_last_pid, progs/cwd_tid_reuse.py) while its
  process lives never answers that process's cwd.

(Exec's page-at-a-time argument reads: tests/security/test_exec_memory.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest

from conftest import IS_ROOT, wait_for

from .conftest import SecProgs  # noqa: F401  (fixture types)

PROBE = r'''
cd /
for p in "$@"; do
  for how in "" -L; do
    for spell in "$p" "/.$p" "/..$p" "${p#/}" "./${p#/}" "../${p#/}"; do
      out=$(stat $how -c '%F:%s' "$spell" 2>&1) || out="ERR ${out##*: }"
      printf '%s|%s|%s|%s\n' "$p" "$how" "$spell" "$out"
    done
  done
done
'''


def show(r: subprocess.CompletedProcess) -> str:
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def _plant(root: Path) -> None:
    (root / "workx").mkdir()
    (root / "workx/f").write_text("rootworkx\n")                     # 10 bytes
    (root / "sec/dir").mkdir(parents=True)
    (root / "sec/dir/s").write_text("secret\n")                      # 7 bytes
    (root / "sec/file").write_text("secret2\n")                      # 8 bytes
    os.link(root / "sec/file", root / "hardlink")
    for name, target in (("lw", "/work"), ("lp", "/proc/self"), ("ld", "/dev"), ("lsec", "/sec/dir")):
        os.symlink(target, root / name)
    (root / "dev/planted").write_text("planted\n")
    for name in ("procx", "devx"):                                   # look like /proc and /dev, are not
        (root / name).mkdir()
        (root / name / "f").write_text("prefix\n")                  # 7 bytes
    (root / "priv").mkdir(mode=0o700)
    (root / "priv/f").write_text("private\n")
    (root / "probe.sh").write_text(PROBE)


PATHS = ["/workx/f", "/work/f", "/lw/f", "/lp/status", "/ld/null", "/ld", "/sec", "/sec/dir", "/sec/dir/s",
         "/sec/file", "/hardlink", "/lsec/s", "/dev/planted", "/workx", "/work", "/priv/f", "/procx/f", "/devx/f",
         "/" + "x" * 300, "/" + "a/" * 2100 + "b"]


def _answers(r: subprocess.CompletedProcess) -> Dict[str, List[str]]:
    """path -> [stat, stat -L] as the short spelling answers; asserts that the others agree:
    "/." in front (short too: '.' folded), "/.." in front (the general way), and the same
    three relative to the cwd ("/"), joined to it."""
    rows: Dict[str, Dict[tuple, str]] = {}
    for line in r.stdout.splitlines():
        path, how, spell, out = line.split("|", 3)
        if out.startswith("directory:"):
            out = "directory"
        rows.setdefault(path, {})[(how, spell)] = out
    answers = {}
    for path, seen in rows.items():
        for how in ("", "-L"):
            spelled = {spell: out for (h, spell), out in seen.items() if h == how}
            assert len(spelled) == 6 and len(set(spelled.values())) == 1, (path, how, seen, show(r))
        answers[path] = [seen[("", path)], seen[("-L", path)]]
    return answers


def _short(path: str) -> str:
    return path if len(path) < 40 else path[:20] + "..."


def test_stat_of_planted_names_symlinks_and_denials_answers_as_the_general_way_and_a_root(
        who, busybox_root: Path, scratch: Path) -> None:
    mount = who.make_dir(scratch / "mnt")
    who.make_file(mount / "f", "mountf\n")                           # 7 bytes
    _plant(busybox_root)
    args = ["--root", str(busybox_root), "--fs-mount", f"/work:{mount}"]
    r = who.run([*args, "--fs-deny", "/sec/dir", "--fs-deny", "/sec/file", "--", "/bin/sh", "/probe.sh", *PATHS])
    assert r.returncode == 0, show(r)
    got = _answers(r)
    assert sorted(got) == sorted(PATHS), show(r)
    eacces, long = "ERR Permission denied", "ERR File name too long"
    expect = {
        "/workx/f": ["regular file:10"] * 2,             # beside the /work mount, the root's own
        "/work/f": ["regular file:7"] * 2,               # in the mount
        "/lw/f": ["regular file:7"] * 2,                 # a symlink on the way into the mount
        "/lp/status": ["regular empty file:0"] * 2,      # ... into /proc
        "/ld/null": ["character special file:0"] * 2,    # ... into /dev
        "/ld": ["symbolic link:4", "directory"],
        "/sec": ["directory"] * 2,                       # holds a denied directory: seen
        "/sec/dir": [eacces] * 2, "/sec/dir/s": [eacces] * 2, "/sec/file": [eacces] * 2,
        "/hardlink": [eacces] * 2,                       # another name of a denied file
        "/lsec/s": [eacces] * 2,                         # a symlink to a denied directory
        "/dev/planted": ["ERR No such file or directory"] * 2,  # the root's own /dev is not /dev
        "/workx": ["directory"] * 2, "/work": ["directory"] * 2,
        "/procx/f": ["regular file:7"] * 2, "/devx/f": ["regular file:7"] * 2,
        "/" + "x" * 300: [long] * 2, "/" + "a/" * 2100 + "b": [long] * 2,
    }
    if who.is_user:
        expect["/priv/f"] = [eacces] * 2                 # no search permission on /priv
    else:
        got.pop("/priv/f")                               # (root: only short == general, checked above)
    assert {_short(k): v for k, v in got.items()} == {_short(k): v for k, v in expect.items()}, show(r)

    # relative to a cwd in the mount (reached through a symlink too) or above a denial:
    # the short way does not apply or refuses as the general one
    # (and opens spelled with '.' and '//', which take the short open: the same decisions)
    script = ("cd /work && stat -c %s f ./f; cd /lw && stat -c %s f; cd /sec && stat -c %s dir/s; "
              "stat -c %s ./dir/s; cd /workx && stat -c %s f; cat /sec/./dir/s //sec/dir/s ./../sec/dir/s; "
              "cat /.//workx/./f /./work/f")
    r = who.run([*args, "--fs-deny", "/sec/dir", "--", "/bin/sh", "-c", script])
    assert r.stdout.split() == ["7", "7", "7", "10", "rootworkx", "mountf"], show(r)
    assert r.stderr.count("Permission denied") == 5, show(r)

    # control: without the denials the same probe reads what they hide
    r = who.run([*args, "--", "/bin/sh", "/probe.sh", "/sec/dir/s", "/sec/file", "/hardlink", "/lsec/s"])
    assert r.returncode == 0, show(r)
    assert _answers(r) == {"/sec/dir/s": ["regular file:7"] * 2, "/sec/file": ["regular file:8"] * 2,
                           "/hardlink": ["regular file:8"] * 2, "/lsec/s": ["regular file:7"] * 2}, show(r)


def test_stat_with_a_workdir_on_the_root_sees_the_runs_own_changes(who, busybox_root: Path) -> None:
    tmp = busybox_root / "tmp"
    for name in ("mod", "del"):
        who.make_file(tmp / name, "data\n")
    who.own(tmp)
    who.own(busybox_root)  # the workdir: its owner's to change
    script = ("echo longer-content > /tmp/mod; rm /tmp/del; echo x > /tmp/new; "
              "for f in /tmp/mod /tmp/del /tmp/new; do stat -c %s $f 2>&1; stat -c %s /..$f 2>&1; "
              "wc -c < $f 2>/dev/null; done")
    r = who.run(["--root", str(busybox_root), "--workdir", str(busybox_root), "-w", "/tmp", "--dry-run", "--",
                 "/bin/sh", "-c", script])
    assert r.returncode == 0, show(r)
    lines = [line.strip() for line in r.stdout.splitlines()]
    gone = "stat: can't stat '{}': No such file or directory"
    assert lines == ["15", "15", "15", gone.format("/tmp/del"), gone.format("/../tmp/del"), "2", "2", "2"], show(r)
    assert (tmp / "mod").read_text() == "data\n" and (tmp / "del").exists() and not (tmp / "new").exists()


def test_stat_with_fake_root_reports_the_recorded_owner_and_mode_by_every_spelling(who, busybox_root: Path) -> None:
    who.own(busybox_root / "tmp")
    script = ("echo a > /tmp/own && chown 4242:4343 /tmp/own && chmod 4711 /tmp/own && "
              "stat -c '%u %g %a' /tmp/own && stat -L -c '%u %g %a' /tmp/own && "
              "stat -c '%u %g %a' /../tmp/own && stat -c '%u %g %a' /./tmp/own && cd /tmp && stat -c '%u %g %a' own")
    r = who.run(["--root", str(busybox_root), "--fake-root", "-w", "/tmp", "--", "/bin/sh", "-c", script])
    assert r.returncode == 0, show(r)
    assert r.stdout.splitlines() == ["4242 4343 4711"] * 5, show(r)
    st = os.stat(busybox_root / "tmp/own")
    assert (st.st_uid, st.st_mode & 0o7777) == (who.uid, 0o711), st  # the host file: virtual only


THREADS_CODE = r'''
import os, sys, threading, time
n = int(sys.argv[1])
go = threading.Event()
answers = []
def ask():
    answers.append(os.getcwd())
    go.wait()
    answers.append(os.getcwd())
threads = [threading.Thread(target=ask) for _ in range(n)]
for t in threads:
    t.start()
while len(answers) < n:
    time.sleep(0.01)
open("/work/ready", "w").close()
while not os.path.exists("/work/go"):
    time.sleep(0.01)
os.chdir("/etc")                 # every live thread's remembered answer must follow
go.set()
for t in threads:
    t.join()
print(sorted(set(answers[:n])), sorted(set(answers[n:])), len(answers))
'''


def _pidfds(pid: int) -> int:
    """How many pidfds process pid holds."""
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            count += os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:[pidfd]"
        except OSError:
            pass
    return count


def _threads_run(who, deb_root: Path, work: Path, n: int) -> int:  # type: ignore[no-untyped-def]
    """Run n live threads asking their cwd; the pidfds sandlock holds while they live."""
    for name in ("ready", "go"):
        if (work / name).exists():
            (work / name).unlink()
    p = who.popen(["--root", str(deb_root), "--fs-mount", f"/work:{work}", "--cwd", "/usr", "--",
                   "/usr/bin/python3", "-c", THREADS_CODE, str(n)])
    try:
        assert wait_for(lambda: (work / "ready").exists(), 60), p.communicate(timeout=5)
        during = _pidfds(p.pid)
        (work / "go").touch()
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate()
    assert p.returncode == 0, (out, err)
    assert out == f"['/usr'] ['/etc'] {2 * n}\n", (out, err)
    return during


def test_thousands_of_live_threads_keep_the_supervisors_fds_bounded(who, deb_root: Path, scratch: Path) -> None:
    from sandlock import _notif, _syscalls
    work = who.make_dir(scratch / "work")
    held = _threads_run(who, deb_root, work, 2000)
    assert held <= _notif.KNOWN_MAX + 16, held  # the ids kept per thread (_notif.Known)
    if _syscalls.kernel_version() >= (6, 9):  # control: below the bound the pidfds are there to count
        assert _threads_run(who, deb_root, work, 40) >= 40


SWEEP_CODE = r'''
import os, time
r, w = os.pipe()
r2, w2 = os.pipe()
keeper = os.fork()
if keeper == 0:                  # stays alive, somewhere else, through every sweep
    os.chdir("/etc")
    os.write(w2, b"x")
    os.read(r, 1)
    os.write(w2, os.getcwd().encode())
    os._exit(0)
os.read(r2, 1)
os.chdir("/usr/share")
for i in range(int(os.environ["FORKS"])):
    pid = os.fork()
    if pid == 0:
        os.getcwd()              # an entry of its own, gone with it
        os._exit(0)
    os.waitpid(pid, 0)
pid = os.fork()
if pid == 0:
    os.write(w2, os.getcwd().encode())
    os._exit(0)
os.waitpid(pid, 0)
fresh = os.read(r2, 100).decode()
os.write(w, b"x")
os.waitpid(keeper, 0)
print(os.getcwd(), os.read(r2, 100).decode(), fresh)
'''


@pytest.mark.parametrize("forks", [1500, 10], ids=["sweeps", "control-no-sweep"])
def test_a_live_processs_cwd_survives_the_sweeps_of_processes_gone(who, deb_root: Path, forks: int) -> None:
    r = who.run(["--root", str(deb_root), "--cwd", "/usr", "--", "/usr/bin/python3", "-c", SWEEP_CODE],
                env={"FORKS": str(forks)}, timeout=300)
    assert (r.returncode, r.stdout) == (0, "/usr/share /etc /usr/share\n"), show(r)


def test_the_sweep_probe_gives_the_same_answers_in_a_real_chroot(deb_root: Path) -> None:
    if not IS_ROOT:
        pytest.skip("chroot(2) needs root")
    r = subprocess.run(["chroot", str(deb_root), "/bin/sh", "-c", 'cd /usr && exec /usr/bin/python3 -c "$0"',
                        SWEEP_CODE], capture_output=True, text=True, timeout=120,
                       env={"FORKS": "50", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    assert (r.returncode, r.stdout) == (0, "/usr/share /etc /usr/share\n"), show(r)


def test_a_threads_tid_reused_while_its_process_lives_never_answers_that_processs_cwd(who, scratch: Path) -> None:
    """of_thread's remembered thread -> process, against a tid reused for certain (ns_last_pid)."""
    top = who.make_dir(scratch / "anchors", 0o755)
    code = (Path(__file__).resolve().parent / "progs" / "cwd_tid_reuse.py").read_text()
    r = who.python(code, args=[str(top)], timeout=60)
    where = f"exit {r.returncode}\n--- stdout\n{r.stdout.decode()}\n--- stderr\n{r.stderr.decode()}"
    assert r.returncode == 0, where
    got = json.loads(r.stdout)
    if not got["pidfds"]:
        pytest.skip("PIDFD_THREAD needs Linux 6.9 (of_thread reads /proc every time then)")
    # control: the thread was X's and remembered; then its tid went to B
    assert (got["control"], got["remembered"], got["reused"]) == ("/x", True, True), where
    assert got["after"] == "/b", where


HIDDEN_CODE = r'''
import json, os, sys
out = {}
for p in sys.argv[1:]:
    for q in (p, "/.." + p):
        for follow in (True, False):
            try:
                r = "mode %o" % os.stat(q, follow_symlinks=follow).st_mode
            except OSError as e:
                r = e.strerror
            out.setdefault(p, []).append(r)
print(json.dumps(out))
'''


def test_with_a_workdir_and_no_root_the_short_stat_keeps_sandlocks_own_directories_hidden(
        who, scratch: Path) -> None:
    """--workdir alone runs the emulated root with '/' as the root: stat_path reaches the
    whole host, so sandlock's own containers (of every user) and what lies in them must be
    refused as the general way (the "/.." spelling) refuses them."""
    from sandlock import _scratch
    work = who.make_dir(scratch / "wd")
    who.make_file(work / "f", "x\n")
    hidden = list(_scratch.hidden())
    below = [os.path.join(h, n) for h in hidden if os.path.isdir(h) for n in sorted(os.listdir(h))[:3]]
    assert hidden, "no container of sandlock's to probe"
    r = who.run(["--workdir", str(work), "-w", str(work), "--dry-run", "--", "/usr/bin/python3", "-c", HIDDEN_CODE,
                 *hidden, *below, str(work / "f")])
    assert r.returncode == 0, show(r)
    got = json.loads(r.stdout.splitlines()[0])
    assert got.pop(str(work / "f")) == ["mode 100644"] * 4, show(r)  # control: the workdir's own file
    for path, answers in got.items():
        assert len(set(answers)) == 1 and not answers[0].startswith("mode"), (path, answers, show(r))


def test_the_stat_probe_gives_the_same_answers_in_a_real_chroot(busybox_root: Path) -> None:
    """The expected values of the planted-names test, where a chroot has the same tree (no
    mount, no denial, the root's own /dev): the short and the general spelling agree there too."""
    if not IS_ROOT:
        pytest.skip("chroot(2) needs root")
    _plant(busybox_root)
    paths = ["/workx/f", "/procx/f", "/devx/f", "/ld", "/sec/dir/s", "/sec/file", "/hardlink", "/lsec/s",
             "/" + "x" * 300, "/" + "a/" * 2100 + "b"]
    r = subprocess.run(["chroot", str(busybox_root), "/bin/sh", "/probe.sh", *paths], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, show(r)
    long = "ERR File name too long"
    assert {_short(k): v for k, v in _answers(r).items()} == {_short(k): v for k, v in {
        "/workx/f": ["regular file:10"] * 2, "/procx/f": ["regular file:7"] * 2, "/devx/f": ["regular file:7"] * 2,
        "/ld": ["symbolic link:4", "directory"], "/sec/dir/s": ["regular file:7"] * 2,
        "/sec/file": ["regular file:8"] * 2, "/hardlink": ["regular file:8"] * 2, "/lsec/s": ["regular file:7"] * 2,
        "/" + "x" * 300: [long] * 2, "/" + "a/" * 2100 + "b": [long] * 2}.items()}, show(r)
