"""The copy-on-write workdir, `--workdir DIR`: the end of a run.  DIR untouched until then;
commit, abort, keep, dry run and its change list, bad input, a commit killed halfway,
--max-disk.  Fixtures and the idea of these tests: tests/cowcase.py.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import time
from pathlib import Path
from typing import List, Optional

import pytest

from conftest import IS_ROOT, SYSTEM_PATH, SYSTEM_PYTHON, wait_for
from rootcase import show
from cowcase import LEFTOVER, sandlocks, snapshot, cow, change_lines, layers, layers_left, kept_path
from cowcase import base, wd, twin, canary, signals, busybox_shared, broot  # noqa: F401  (fixtures)


# --- 2. DIR is untouched until the end -------------------------------------------------------------

CHANGES = ("echo new > new.txt; echo more >> app.txt; rm gone.txt; chmod 600 mode.txt; "
           "touch -m -d @1000000000 time.txt; rm -r full; mv movedir movedir2; mkdir nd; ln -s keep.txt sl")


def test_the_workdir_is_untouched_while_the_command_runs_and_changed_after(who, wd: Path, signals: Path) -> None:
    before = snapshot(wd)
    script = (f'cd "$1" && {CHANGES} && touch "$2/ready" && '
              f'while [ ! -e "$2/go" ]; do sleep 0.05; done; ls -A; cat app.txt')
    proc = who.popen(["--workdir", str(wd), "-w", str(wd), "-w", str(signals), "--",
                      "sh", "-c", script, "sh", str(wd), str(signals)])
    try:
        ready = wait_for(lambda: (signals / "ready").exists() or proc.poll() is not None, 60)
        assert ready and proc.poll() is None, f"the command did not get ready: {proc.poll()}"
        during = snapshot(wd)
        (signals / "go").touch()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    changed = {k for k in set(before) | set(during) if before.get(k) != during.get(k)}
    assert not changed, f"DIR changed while the command ran: {sorted(changed)}\n{err}"
    assert proc.returncode == 0, err
    assert out.split("\n")[-3:] == ["line1", "more", ""], out
    assert (wd / "new.txt").read_text() == "new\n"
    assert (wd / "app.txt").read_text() == "line1\nmore\n"
    assert not (wd / "gone.txt").exists() and not (wd / "full").exists() and not (wd / "movedir").exists()
    assert (wd / "movedir2/deep/y").read_text() == "y\n"
    assert stat.S_IMODE(os.stat(wd / "mode.txt").st_mode) == 0o600
    assert os.stat(wd / "time.txt").st_mtime == 1000000000
    assert (wd / "nd").is_dir() and os.readlink(wd / "sl") == "keep.txt"


@pytest.mark.parametrize("options,status", [(["--on-exit", "abort"], 0), ([], 3), (["--dry-run"], 0),
                                            (["--dry-run"], 3)],
                         ids=["on-exit-abort", "exit-3", "dry-run", "dry-run-exit-3"])
def test_abort_and_dry_run_leave_the_workdir_byte_for_byte_unchanged(who, wd: Path, options: List[str],
                                                                      status: int) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", f'cd "$1" && {CHANGES} && cat app.txt && exit {status}', "sh", str(wd)],
            *options)
    assert (r.returncode, r.stdout) == (status, "line1\nmore\n"), show(r)
    after = snapshot(wd)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"DIR changed: {changed}\n{show(r)}"
    assert layers_left(wd) == [], f"upper layers left behind: {layers_left(wd)}\n{show(r)}"


# --- 4. the end of a run -------------------------------------------------------------------------------

@pytest.mark.parametrize("options,command,status,committed", [
    ([], "exit 0", 0, True),
    ([], "exit 3", 3, False),
    (["--on-exit", "abort"], "exit 0", 0, False),
    (["--on-error", "commit"], "exit 3", 3, True),
    (["--on-exit", "commit", "--on-error", "abort"], "kill -KILL $$", 128 + 9, False),
    (["--on-error", "commit"], "kill -KILL $$", 128 + 9, True),
    (["-t", "1"], "sleep 5", 124, False),
], ids=["default-commit", "default-abort", "on-exit-abort", "on-error-commit", "signal-aborts",
        "signal-on-error-commit", "timeout-aborts"])
def test_the_end_of_a_run_commits_or_aborts_as_asked(who, wd: Path, options: List[str], command: str,
                                                     status: int, committed: bool) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", f'cd "$1" && echo new > new.txt && rm gone.txt && {command}', "sh", str(wd)],
            *options)
    assert r.returncode == status, show(r)
    if committed:
        assert (wd / "new.txt").read_text() == "new\n" and not (wd / "gone.txt").exists(), show(r)
    else:
        assert snapshot(wd) == before, f"an aborted run changed DIR:\n{show(r)}"
    assert layers_left(wd) == [], f"upper layers left behind: {layers_left(wd)}\n{show(r)}"
    assert LEFTOVER not in r.stderr, show(r)


def test_the_layer_in_the_workdir_is_hidden_from_the_command_and_its_names_are_never_committed(
        who, wd: Path) -> None:  # type: ignore[no-untyped-def]
    script = ('ls -A "$1"; mkdir "$1/.sandlock-1-made" && echo x > "$1/.sandlock-1-made/f" && '
              'echo y > "$1/sub/.sandlock-2-f" && echo n > "$1/new"')
    r = cow(who, wd, ["sh", "-c", script, "sh", str(wd)])
    assert r.returncode == 0, show(r)
    assert ".sandlock" not in r.stdout and "keep.txt" in r.stdout, show(r)
    assert (wd / "new").read_text() == "n\n", show(r)
    assert not [n for n in os.listdir(wd) if n.startswith(".sandlock")], show(r)
    assert not (wd / "sub" / ".sandlock-2-f").exists(), show(r)


def test_keep_leaves_the_layer_prints_its_path_and_the_next_run_reports_it(who, wd: Path) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", 'cd "$1" && echo new > new.txt && rm gone.txt', "sh", str(wd)],
            "--on-exit", "keep")
    assert r.returncode == 0, show(r)
    assert snapshot(wd) == before, f"keep changed DIR:\n{show(r)}"
    kept = kept_path(r.stderr)
    assert kept.is_dir() and (kept / "new.txt").read_text() == "new\n", show(r)
    assert not (kept / "gone.txt").exists() and (kept / "keep.txt").read_text() == "keep\n", show(r)
    assert str(kept).startswith(f"{wd}/.sandlock-{who.uid}-"), f"kept outside DIR:\n{show(r)}"
    nxt = cow(who, wd, ["true"])
    assert nxt.returncode == 0, show(nxt)
    notes = [line for line in nxt.stderr.splitlines() if LEFTOVER in line]
    assert len(notes) == 1 and "(kept)" in notes[0], show(nxt)
    reported = notes[0].split(LEFTOVER, 1)[1].split(" (")[0]
    assert str(kept) == reported or str(kept).startswith(reported + "/"), show(nxt)
    assert kept.is_dir(), "the next run removed the kept layer"


def test_a_layer_kept_in_a_workdir_whose_parent_the_user_cannot_write_is_reported_too(  # type: ignore[no-untyped-def]
        sandlock_cli, scratch: Path, test_user) -> None:
    # The user may write DIR but not its parent: the layer is in DIR all the same (releases
    # before put it in ~/.cache or the temporary directory then); the next run reports it.
    locked = scratch / "locked"
    locked.mkdir()
    locked.chmod(0o755)  # root's when the suite runs as root: not writable by the test user
    d = locked / "wd"
    d.mkdir()
    (d / "keep.txt").write_text("keep\n")
    if IS_ROOT:
        for path in (d, d / "keep.txt"):
            os.chown(path, test_user.uid, test_user.gid)
    else:
        locked.chmod(0o555)
    before = snapshot(d)
    r = sandlock_cli(["--workdir", str(d), "-w", str(d), "--on-exit", "keep", "--", "sh", "-c", f"echo new > {d}/new"],
                     as_user=True)
    assert r.returncode == 0, show(r)
    assert snapshot(d) == before, show(r)
    kept = kept_path(r.stderr)
    assert (kept / "new").read_text() == "new\n", show(r)
    assert str(kept).startswith(f"{d}/.sandlock-{test_user.uid}-"), show(r)
    nxt = sandlock_cli(["--workdir", str(d), "-w", str(d), "--", "true"], as_user=True)
    assert nxt.returncode == 0, show(nxt)
    notes = [line for line in nxt.stderr.splitlines() if LEFTOVER in line]
    assert len(notes) == 1 and "(kept)" in notes[0], f"the layer kept at {kept} was not reported:\n{show(nxt)}"


# --- 5. dry run: the change list --------------------------------------------------------------------------

DRY_SCRIPT = ('cd "$0" && echo a > added && echo m >> app.txt && rm -r full && chmod 600 mode.txt && '
              'mkdir -p nd/sub && echo f > nd/sub/f && rm symold && mv ren_src.txt ren_dst.txt && exit 7')
DRY_CHANGES = sorted(["A added", "M app.txt", "D full", "D full/a", "D full/sub", "D full/sub/b", "M mode.txt",
                      "A nd", "A nd/sub", "A nd/sub/f", "D symold", "D ren_src.txt", "A ren_dst.txt"],
                     key=lambda line: line[2:])


def test_dry_run_prints_the_sorted_changes_keeps_the_exit_code_and_changes_nothing(who, wd: Path) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", DRY_SCRIPT, str(wd)], "--dry-run")
    assert r.returncode == 7, show(r)
    assert change_lines(r.stderr) == DRY_CHANGES, show(r)
    assert snapshot(wd) == before, f"--dry-run changed DIR:\n{show(r)}"
    assert layers_left(wd) == [], show(r)


API_COW = r"""
import json, sys
import sandlock
d, script = sys.argv[1], sys.argv[2]
out = {}
r = sandlock.Sandbox(workdir=d, fs_writable=[d], dry_run=True).run(["sh", "-c", script, d])
out["dry"] = [r.changes, r.exit_code, r.workdir_note]
r = sandlock.Sandbox(workdir=d, fs_writable=[d], on_error="commit").run(["sh", "-c", script, d])
out["commit"] = [r.changes, r.exit_code, r.workdir_note]
r = sandlock.Sandbox(workdir=d, fs_writable=[d], on_exit="abort").run(["sh", "-c", "echo x > \"$0\"/x", d])
out["abort"] = [r.changes, r.exit_code, r.workdir_note]
print(json.dumps(out))
"""


def test_the_api_reports_the_same_changes_and_commits_them(who, wd: Path) -> None:
    r = who.python(API_COW, args=[str(wd), DRY_SCRIPT], env={"PATH": SYSTEM_PATH}, timeout=60)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    out = json.loads(r.stdout)
    assert out["dry"][:2] == [DRY_CHANGES, 7], out
    assert out["commit"][:3] == [DRY_CHANGES, 7, ""], out
    assert (wd / "added").read_text() == "a\n" and not (wd / "full").exists()
    assert (wd / "nd/sub/f").read_text() == "f\n" and (wd / "ren_dst.txt").read_text() == "r\n"
    assert out["abort"][:2] == [["A x"], 0] and str(wd) in out["abort"][2], out
    assert not (wd / "x").exists()


# --- 8. bad input -------------------------------------------------------------------------------------------

def test_a_missing_workdir_exits_125_naming_it(who, base: Path) -> None:
    missing = base / "no-such-dir"
    r = who.run(["--workdir", str(missing), "--", "true"])
    assert r.returncode == 125, show(r)
    assert str(missing) in r.stderr and r.stderr.startswith("sandlock: "), show(r)


def test_a_workdir_that_is_a_file_exits_125_naming_it(who, wd: Path) -> None:
    r = who.run(["--workdir", str(wd / "keep.txt"), "--", "true"])
    assert r.returncode == 125 and str(wd / "keep.txt") in r.stderr, show(r)


def test_a_workdir_the_user_cannot_write_exits_125(sandlock_cli, scratch: Path) -> None:  # type: ignore[no-untyped-def]
    d = scratch / "not-mine"
    d.mkdir()
    (d / "f").write_text("f\n")
    d.chmod(0o755 if IS_ROOT else 0o555)  # root-owned 0755 is not writable by the test user
    before = snapshot(d)
    r = sandlock_cli(["--workdir", str(d), "-w", str(d), "--", "sh", "-c", f"echo x > {d}/g"], as_user=True)
    assert r.returncode == 125, show(r)
    assert str(d) in r.stderr and r.stderr.startswith("sandlock: "), show(r)
    assert snapshot(d) == before
    assert layers(scratch) == [], os.listdir(scratch)


@pytest.mark.parametrize("options,word", [
    (["--on-exit", "abort"], "--on-exit"),
    (["--on-error", "commit"], "--on-error"),
    (["--dry-run"], "--dry-run"),
    (["--workdir", "{wd}", "--on-exit", "bogus"], "bogus"),
    (["--workdir", "{wd}", "--on-error", "bogus"], "bogus"),
], ids=["on-exit-without-workdir", "on-error-without-workdir", "dry-run-without-workdir", "on-exit-bogus",
        "on-error-bogus"])
def test_end_options_without_a_workdir_or_with_a_bad_value_exit_125(who, wd: Path, options: List[str],
                                                                    word: str) -> None:
    before = snapshot(wd)
    args = [o.format(wd=wd) for o in options]
    r = who.run([*args, "--", "sh", "-c", f"echo x > {wd}/x"])
    assert r.returncode == 125, show(r)
    assert word in r.stderr and r.stderr.startswith("sandlock: "), show(r)
    assert snapshot(wd) == before, show(r)


# --- 9. crash safety of the commit -----------------------------------------------------------------------------

WRITER = r"""
import sys
d, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with open("%s/f%06d" % (d, i), "wb") as f:
        f.write(b"%07d\n" % i * 512)
"""


def expected_content(name: str) -> Optional[bytes]:
    """What file f000123 must hold (4096 bytes), None for other names."""
    if len(name) == 7 and name[0] == "f" and name[1:].isdigit():
        return b"%07d\n" % int(name[1:]) * 512
    return None


def kill_during_commit(who, base: Path, wd: Path, count: int) -> Optional[Path]:  # type: ignore[no-untyped-def]
    """Run the writer, SIGKILL sandlock once its layer's state says 'committing'.

    Returns the run's layer directory if the kill landed during the commit,
    None if the commit was over first.
    """
    proc = who.popen(["--workdir", str(wd), "-w", str(wd), "--", SYSTEM_PYTHON, "-c", WRITER, str(wd), str(count)])
    prefix = f"cow-{proc.pid}-"
    deadline = time.monotonic() + 60
    run_dir: Optional[Path] = None
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if run_dir is None:
                found = [n for n in layers(wd) if n.split("/")[1].startswith(prefix)]
                runs = sorted((wd / found[0]).glob("1-*")) if found else []
                run_dir = runs[0] if runs else None
            if run_dir is not None:
                try:
                    state = (run_dir / "state").read_text()
                except OSError:
                    state = ""
                if state.strip() == "committing":
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.communicate(timeout=60)
                    try:
                        landed = (run_dir / "state").read_text().strip() == "committing"
                    except OSError:
                        landed = False
                    return run_dir if landed else None
            time.sleep(0.0005)
        assert proc.poll() is not None, "the writer did not finish in 60 s"
        out, err = proc.communicate()
        assert proc.returncode == 0, f"exit {proc.returncode}\n{err}"
        return None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_a_commit_killed_halfway_leaves_no_torn_file_and_is_reported(who, base: Path) -> None:
    wd = who.make_dir(base / "crash")
    run_dir = None
    tried = []
    for count in (3000, 9000, 27000):
        if run_dir is None:
            for name in os.listdir(wd):
                if not sandlocks(name):
                    os.unlink(wd / name)
            tried.append(count)
            run_dir = kill_during_commit(who, base, wd, count)
    assert run_dir is not None, f"the SIGKILL never landed during a commit (tried {tried} files)"
    names = [n for n in os.listdir(wd) if not sandlocks(n)]
    for name in names:
        data = (wd / name).read_bytes()
        if name.startswith(".sandlock-new-"):
            target = name.split("-", 3)[3]  # .sandlock-new-PID-NAME
            assert data == expected_content(target), f"temporary {name} is not a whole copy of {target}"
            continue
        assert data == expected_content(name), f"{name}: torn or wrong ({len(data)} bytes) after the kill"
    # the layer is kept whole, so the user can finish the commit by hand
    kept = [n for n in os.listdir(run_dir / "tree") if expected_content(n) is not None]
    assert len(kept) == tried[-1], f"the kept layer has {len(kept)} of {tried[-1]} files"
    r = cow(who, wd, ["true"])
    assert r.returncode == 0, show(r)
    notes = [line for line in r.stderr.splitlines() if LEFTOVER in line]
    assert notes == [f"sandlock: {LEFTOVER}{run_dir} (committing): inspect it, then remove it"], show(r)


MAX_DISK = r"""
cd "$1"
head -c 300000 /dev/zero > a || echo "a failed"
sleep 0.6
head -c 300000 /dev/zero > b 2> /dev/null && echo "b made" || echo "b ENOSPC"
mkdir c 2> /dev/null && echo "c made" || echo "c ENOSPC"
echo more >> keep.txt 2> /dev/null && echo "keep written" || echo "keep ENOSPC"
rm a && echo "a removed"
"""


def test_max_disk_gives_enospc_once_the_layer_is_full(who, wd: Path) -> None:
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", MAX_DISK, "sh", str(wd)], "--max-disk", "200K", "--on-exit", "abort")
    # 300 kB written through one fd: RLIMIT_FSIZE (= --max-disk) stops the file at the
    # limit (SIGXFSZ); the layer is then full and nothing new may be made in it
    assert r.returncode == 0, show(r)
    assert r.stdout == "a failed\nb ENOSPC\nc ENOSPC\nkeep ENOSPC\na removed\n", show(r)
    assert "File size limit exceeded" in r.stderr, show(r)
    assert snapshot(wd) == before, "an aborted run must not change the workdir"


def test_max_disk_refuses_a_copy_up_that_would_not_fit(who, wd: Path) -> None:
    who.make_file(wd / "big", b"x" * 300_000)
    before = snapshot(wd)
    r = cow(who, wd, ["sh", "-c", 'cd "$1"; echo more >> big; echo "append $?"; echo small > s; echo "new $?"',
                      "sh", str(wd)], "--max-disk", "200K")
    assert r.returncode == 0, show(r)
    assert "append 0" not in r.stdout and "No space left on device" in r.stderr, show(r)
    assert "new 0" in r.stdout, show(r)
    after = snapshot(wd)
    assert after.pop("s", None) is not None and after.pop(".", None) is not None, show(r)
    before.pop(".", None)
    assert after == before, "the refused append must not reach the workdir"


def test_a_workdir_is_read_at_the_end_only_once_no_handler_of_the_sandbox_is_at_work(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process killed at the run's end may have had a call on behalf under way in the
    upper layer: the layer is compared and committed once the notification loop has
    ended (the filter has no process left), the direct launch and from the fork server.
    Each run leaves a `sleep` behind, killed at its end: the filter keeps it until it is
    reaped."""
    import sandlock
    from sandlock import _supervisor
    seen: List[bool] = []
    end = _supervisor.Session._end_workdir

    def recording(self, outcome):  # type: ignore[no-untyped-def]
        seen.append(self.notifier.receivers.over.is_set())
        return end(self, outcome)
    monkeypatch.setattr(_supervisor.Session, "_end_workdir", recording)
    work = tmp_path / "work"
    work.mkdir()
    box = sandlock.Sandbox(workdir=str(work), fs_writable=[str(work)], cwd=str(work))
    for i in range(2):
        assert box.run(["sh", "-c", f"sleep 30 & echo {i} > run{i}.txt"]).returncode == 0
    assert wait_for(lambda: box._server is not None and box._server.usable(), 30), "no fork server"
    assert box.run(["sh", "-c", "sleep 30 & echo 2 > run2.txt"]).returncode == 0
    assert seen == [True, True, True]
    assert [(work / f"run{i}.txt").read_text() for i in range(3)] == ["0\n", "1\n", "2\n"]
