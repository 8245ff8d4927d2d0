"""Per-run costs of a launch, cut without changing what the run sees: the signal
mask of the notifier's threads, the removal of a run's scratch directories and
the reads of /proc done for the exec of the first program in a root.
In-process (no sandbox)."""

import os
import signal
import threading

from sandlock import _notif


def _in_a_new_thread(work):
    """The result of work() run in a thread of its own (which starts with no signal blocked)."""
    out = []
    thread = threading.Thread(target=lambda: out.append(work()))
    thread.start()
    thread.join(10)
    return out[0]


def test_a_notifier_thread_blocks_every_valid_signal_on_every_call_and_gets_back_what_it_replaced() -> None:
    every = {int(sig) for sig in signal.valid_signals()} - {signal.SIGKILL, signal.SIGSTOP}  # never blocked

    def block_then_read():
        before = _notif.block_signals()
        now = {int(sig) for sig in signal.pthread_sigmask(signal.SIG_BLOCK, ())}
        return {int(sig) for sig in before}, now

    for _ in range(2):  # the first call makes the set kept, the second uses it
        before, now = _in_a_new_thread(block_then_read)
        assert now == every
        assert before == {int(sig) for sig in signal.pthread_sigmask(signal.SIG_BLOCK, ())}


def test_an_empty_directory_is_removed_even_unreadable_and_a_link_to_one_loses_only_itself(tmp_path) -> None:
    from sandlock import _scratch
    (tmp_path / "empty").mkdir()
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked").chmod(0)
    (tmp_path / "target").mkdir()
    os.symlink(tmp_path / "target", tmp_path / "link")
    for name in ("empty", "locked", "link"):
        _scratch.remove_tree(str(tmp_path / name))
    assert sorted(os.listdir(tmp_path)) == ["target"]
    assert os.listdir(tmp_path / "target") == []


def test_proc_stat_and_status_read_with_os_read_give_what_the_files_say_and_fail_for_a_gone_process() -> None:
    import subprocess
    import pytest
    with open(f"/proc/{os.getpid()}/status", "rb") as f:
        lines = dict(line.split(b":", 1) for line in f.read().splitlines())
    assert _notif.proc_status("self", (b"Tgid", b"Umask", b"Groups")) == {
        key: lines[key].strip() for key in (b"Tgid", b"Umask", b"Groups")}
    assert _notif.proc_stat(os.getpid())[1] == str(os.getppid()).encode()
    assert _notif.parent_of(os.getpid()) == os.getppid()
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its pid names nothing now
    with pytest.raises(OSError):
        _notif.proc_status_field(child.pid, b"Tgid")
    with pytest.raises(OSError):
        _notif.proc_stat(child.pid)
