"""Per-run costs of a launch, cut without changing what the run sees: the signal
mask of the notifier's threads, the removal of a run's scratch directories and
the reads of /proc done for the exec of the first program in a root, the one
memory writer of a root's fork server.
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



def test_one_memory_writer_serves_several_runs_each_only_into_its_own_processes_and_refuses_once_closed() -> None:
    """A root's fork server has one writer of read-only pages for all its runs
    (_supervisor.MemoryWriter): each request is checked against the asking run's own
    membership test.  Here the 'runs' are two tests of this process, written through
    /proc/self/mem into a read-only page of our own."""
    import ctypes
    import errno
    import mmap
    import time

    import pytest

    from sandlock import _supervisor
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long)
    address = libc.mmap(None, mmap.PAGESIZE, mmap.PROT_READ, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    assert address not in (None, ctypes.c_void_p(-1).value)
    me, tid = os.getpid(), threading.get_native_id()
    writer = _supervisor.MemoryWriter()
    try:
        writer.write(lambda pid: pid == me, tid, address, b"mine")
        assert ctypes.string_at(address, 4) == b"mine"
        with pytest.raises(PermissionError):   # another run's test: not one of its processes
            writer.write(lambda pid: pid != me, tid, address, b"else")
        assert ctypes.string_at(address, 4) == b"mine"
    finally:
        writer.close()
    started = time.monotonic()
    with pytest.raises(OSError) as closed:   # at once, not after the 5 s a request may wait
        writer.write(lambda pid: True, tid, address, b"late")
    assert closed.value.errno == errno.ESRCH and time.monotonic() - started < 1.0
    assert ctypes.string_at(address, 4) == b"mine"


def test_a_run_s_anchor_directory_goes_to_a_later_run_with_its_stable_links_and_at_most_four_are_kept() -> None:
    """_rootscratch.Scratch.new_run/keep: a root's anchor directory (only the supervisor
    writes there) is reused by the next run, with the links an exec finds made; /dev/shm is
    new for every run; runs at once get directories of their own; SPARE_MAX bounds what is kept."""
    from sandlock import _rootscratch
    scratch = _rootscratch.Scratch()
    try:
        anchors, shm, links = scratch.new_run()
        assert links == {} and os.listdir(anchors) == [] and os.path.isdir(shm)
        cwd = _rootscratch.Cwd(anchors, b"/", lambda: [], lambda pid: False)
        name = cwd.link(b"/proc/self/fd/3", b"true", room=16)
        assert os.readlink(os.path.join(os.fsencode(anchors), name)) == b"/proc/self/fd/3"
        kept = cwd.kept_links()
        cwd.close()
        assert kept == {name: b"/proc/self/fd/3"}
        assert scratch.keep(anchors, kept)
        again, shm2, links2 = scratch.new_run()
        assert (again, links2) == (anchors, kept) and shm2 != shm
        before = os.stat(os.path.join(again, os.fsdecode(name)), follow_symlinks=False)
        cwd = _rootscratch.Cwd(again, b"/", lambda: [], lambda pid: False, links2)
        assert cwd.link(b"/proc/self/fd/3", b"true", room=16) == name   # found made: not made again
        after = os.stat(os.path.join(again, os.fsdecode(name)), follow_symlinks=False)
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
        other = cwd.link(b"/proc/self/fd/4", b"true", room=16)   # another fd number: a link of its own
        assert other != name and os.readlink(os.path.join(os.fsencode(again), other)) == b"/proc/self/fd/4"
        cwd.close()
        # runs at once: each its own directory; only SPARE_MAX of those over are kept
        runs = [scratch.new_run() for _ in range(_rootscratch.Scratch.SPARE_MAX + 2)]
        assert len({run[0] for run in runs}) == len(runs)
        kept_now = [scratch.keep(run[0], {}) for run in runs]
        assert kept_now == [True] * _rootscratch.Scratch.SPARE_MAX + [False, False]
    finally:
        scratch.close()
