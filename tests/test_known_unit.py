"""The ids kept per thread (_notif.Known): a thread's tgid and its process's start time,
trusted only while a pidfd of that very task says it lives; the umask read anew every
time.  In-process, with real threads and processes (no sandbox)."""

import errno
import os
import subprocess
import sys
import threading
import time

import pytest

from sandlock import _notif, _syscalls

needs_thread_pidfds = pytest.mark.skipif(_syscalls.kernel_version() < (6, 9),
                                         reason="thread pidfds (PIDFD_THREAD) need Linux 6.9")


def _stat_start(pid: int) -> bytes:
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    return data[data.rindex(b")") + 2:].split()[19]


class Parked:
    """A thread that reports its tid and waits until released."""

    def __init__(self) -> None:
        self.tid = 0
        self._ready = threading.Event()
        self._go = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        self.tid = threading.get_native_id()
        self._ready.set()
        self._go.wait(30)

    def end(self) -> None:
        self._go.set()
        self.thread.join(10)
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{os.getpid()}/task/{self.tid}") and time.monotonic() < deadline:
            time.sleep(0.01)


@needs_thread_pidfds
def test_a_threads_group_and_start_time_are_those_of_its_process_and_are_kept() -> None:
    parked = Parked()
    try:
        assert _notif.tgid_of(parked.tid) == os.getpid()
        assert _notif.start_of(os.getpid()) == _stat_start(os.getpid())
        with _notif._KNOWN_LOCK:
            assert parked.tid in _notif._KNOWN  # kept: the next call reads no /proc
        # both at once, from the one entry (a relative path in a root asks them together)
        assert _notif.process_of(parked.tid) == (os.getpid(), _stat_start(os.getpid()))
    finally:
        parked.end()


@needs_thread_pidfds
def test_a_thread_that_exited_is_not_answered_from_what_was_kept_for_it() -> None:
    parked = Parked()
    tid = parked.tid
    assert _notif.tgid_of(tid) == os.getpid()
    assert _notif.umask_of(tid) == _notif.current_umask()  # its /proc/TID/status kept open
    parked.end()
    if os.path.exists(f"/proc/{tid}"):
        pytest.skip("the tid was reused at once")
    for ask in (_notif.tgid_of, _notif.process_of, _notif.umask_of):
        with pytest.raises(OSError) as caught:
            ask(tid)
        assert caught.value.errno == errno.ESRCH, ask
    with _notif._KNOWN_LOCK:
        assert tid not in _notif._KNOWN
    assert _notif.start_of(tid) == b""


def test_the_umask_is_read_anew_at_every_call() -> None:
    """umask(2) is not trapped: a kept value would be wrong after it (control: both values seen)."""
    old = os.umask(0o027)
    try:
        tid = threading.get_native_id()
        assert _notif.umask_of(tid) == 0o027
        os.umask(0o002)
        assert _notif.umask_of(tid) == 0o002
    finally:
        os.umask(old)


@needs_thread_pidfds
def test_kept_entries_are_bounded_and_those_of_exited_threads_are_forgotten(monkeypatch) -> None:
    monkeypatch.setattr(_notif, "KNOWN_MAX", 4)
    parked = [Parked() for _ in range(7)]
    try:
        for p in parked:
            assert _notif.tgid_of(p.tid) == os.getpid()
        with _notif._KNOWN_LOCK:
            assert len(_notif._KNOWN) <= 4
    finally:
        for p in parked:
            p.end()
    _notif.forget_exited()
    with _notif._KNOWN_LOCK:
        assert not any(p.tid in _notif._KNOWN for p in parked)


EXEC_BY_A_THREAD = r"""
import os, sys, threading
def run():
    os.write(1, b"%d\n" % threading.get_native_id())
    os.read(0, 1)
    os.execv("/bin/sleep", ["sleep", "30"])
threading.Thread(target=run).start()
threading.Event().wait()
"""


@needs_thread_pidfds
def test_after_an_exec_by_another_thread_its_old_tid_is_not_answered_from_what_was_kept() -> None:
    """The thread that execs takes the leader's tid (fs/exec.c de_thread): its own tid is
    gone, the process keeps its pid and start time."""
    child = subprocess.Popen([sys.executable, "-S", "-c", EXEC_BY_A_THREAD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        tid = int(child.stdout.readline())
        assert tid != child.pid
        assert _notif.tgid_of(tid) == child.pid
        start = _notif.start_of(child.pid)
        assert start and start == _stat_start(child.pid)
        child.stdin.write(b"x")
        child.stdin.flush()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with open(f"/proc/{child.pid}/comm", "rb") as f:
                if f.read().strip() == b"sleep":
                    break
            time.sleep(0.01)
        else:
            pytest.fail("the thread did not exec")
        if os.path.exists(f"/proc/{tid}"):
            pytest.skip("the tid was reused at once")
        with pytest.raises(OSError) as caught:
            _notif.tgid_of(tid)
        assert caught.value.errno == errno.ESRCH
        assert _notif.start_of(child.pid) == start == _stat_start(child.pid)
        assert _notif.tgid_of(child.pid) == child.pid
    finally:
        child.kill()
        child.wait()
