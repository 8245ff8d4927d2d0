"""Unit tests of the supervisor's bounds (README "Known limits"): copies made in the
kernel with holes kept (_elf.copy_range, patch_interp_in), the worker pool's bound
(_notif.Workers) and the table of memory files in sockets' queues (_procops.InFlight)."""

from __future__ import annotations

import array
import errno
import os
import select
import socket
import sys
import subprocess
import threading
import time
from pathlib import Path
from typing import Dict, List, Tuple

import pytest

from sandlock import _elf, _syscalls, _threads
from sandlock._notif import Errno, Value, Workers
from sandlock._procops import InFlight


def test_copy_range_keeps_holes_and_content(tmp_path: Path) -> None:
    src = tmp_path / "sparse"
    with open(src, "wb") as f:
        f.write(b"head")
        f.seek(1 << 30)
        f.write(b"tail")
    fd = os.open(src, os.O_RDONLY)
    copy = os.memfd_create("t")
    try:
        _elf.copy_range(fd, copy, 0, os.fstat(fd).st_size, 0)
        st = os.fstat(copy)
        assert st.st_size == (1 << 30) + 4
        assert st.st_blocks * 512 < 1 << 20  # the hole stayed a hole
        assert os.pread(copy, 4, 0) == b"head" and os.pread(copy, 4, 1 << 30) == b"tail"
        # a range to another offset (a script after its rewritten first line)
        other = os.memfd_create("u")
        _elf.copy_range(fd, other, 2, 4, 10)
        assert os.pread(other, 100, 0) == bytes(10) + b"ad"
        os.close(other)
    finally:
        os.close(fd)
        os.close(copy)


def test_patch_interp_in_makes_what_patch_interp_makes() -> None:
    data = Path("/bin/true").read_bytes()
    if _elf.parse_elf(lambda o, n: data[o:o + n], os.uname().machine).interp is None:
        pytest.skip("/bin/true is static here")
    fd = os.memfd_create("t")
    try:
        os.write(fd, data)
        _elf.patch_interp_in(fd, b"/lib/other-loader.so")
        assert os.pread(fd, len(data) + 4096, 0) == _elf.patch_interp(data, b"/lib/other-loader.so")
    finally:
        os.close(fd)


def test_the_worker_pool_refuses_past_its_bound_with_eagain_and_answers_every_job() -> None:
    answers: List[tuple] = []
    lock = threading.Lock()

    def answer(call, reply) -> None:  # type: ignore[no-untyped-def]
        with lock:
            answers.append((call, reply))
    pool = Workers(answer, bound=3)
    release = threading.Event()
    for n in range(3):
        pool.submit(n, lambda n=n: (release.wait(10), Value(n))[1])  # type: ignore[arg-type]
    with pytest.raises(OSError) as caught:
        pool.submit(99, lambda: Value(99))  # type: ignore[arg-type]
    assert caught.value.errno == errno.EAGAIN
    assert sum(t.name == "sandlock-worker" for t in _threads.running()) == 3
    release.set()
    deadline = time.monotonic() + 10
    while len(answers) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(answers) == [(0, Value(0)), (1, Value(1)), (2, Value(2))]
    # free again: a job that fails is answered with its errno, and idle workers are reused
    pool.submit(7, lambda: (_ for _ in ()).throw(OSError(errno.EPIPE, "x")))  # type: ignore[arg-type]
    while len(answers) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert answers[3] == (7, Errno(errno.EPIPE))
    assert sum(t.name == "sandlock-worker" for t in _threads.running()) <= 3
    pool.close()
    while any(t.name == "sandlock-worker" for t in _threads.running()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "sandlock-worker" for t in _threads.running())


# --- memory files in sockets' queues (_procops.InFlight) ------------------------------------

def _memfd(size: int) -> int:
    fd = os.memfd_create("inflight")
    os.write(fd, b"\1" * size)
    return fd


def _send_fds(sock: socket.socket, fds: List[int], in_flight: InFlight) -> None:
    key = in_flight.sending(sock.fileno(), fds)
    try:
        sock.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))])
    finally:
        in_flight.sent(key)


def _fd_table() -> Dict[int, Tuple[int, int]]:
    """This process's fds, each with the (device, inode) of what it refers to."""
    table = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            st = os.fstat(int(name))
        except OSError:
            continue  # (the listing's own fd, closed by now)
        table[int(name)] = (st.st_dev, st.st_ino)
    return table


def _left_open(before: Dict[int, Tuple[int, int]]) -> Dict[int, Tuple[int, int]]:
    """The fds open now that were not open as they are now in `before`: what a test
    left open.  An fd another thread of this process closed meanwhile (a pool of an
    earlier test's Sandbox, a resolver collected with its handle) is not counted."""
    return {fd: what for fd, what in _fd_table().items() if before.get(fd) != what}


def test_a_memory_file_in_flight_counts_until_its_socket_is_empty_and_never_when_held() -> None:
    in_flight = InFlight()
    a, b = socket.socketpair()
    fd = _memfd(1 << 20)
    key = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
    try:
        for _ in range(100):  # the same file cycled through the queue: one entry
            _send_fds(a, [fd], in_flight)
        assert len(in_flight) == 1
        assert in_flight.unheld(set()) == 1 << 20
        assert in_flight.unheld({key}) == 0        # held by an fd of the sandbox: counted there
        _receive_all(b)                            # received (and closed) by the other end
        assert in_flight.unheld(set()) == 0 and len(in_flight) == 0
        # a file that is not a memory file is not held
        with open("/proc/self/exe", "rb") as other:
            _send_fds(a, [other.fileno()], in_flight)
        assert len(in_flight) == 0
        # the other end closed with the file unreceived: the kernel frees the queue, we let go
        _send_fds(a, [fd], in_flight)
        assert len(in_flight) == 1
        b.close()
        assert in_flight.unheld(set()) == 0 and len(in_flight) == 0
    finally:
        in_flight.close()
        os.close(fd)
        a.close()
        b.close()


def _receive_all(sock: socket.socket) -> None:
    """Receive every message queued on sock and close the fds they carry."""
    while select.select([sock], [], [], 0)[0]:
        _, anc, _, _ = sock.recvmsg(1, socket.CMSG_LEN(4 * 8))
        for _, _, data in anc:
            for fd in array.array("i", data):
                os.close(fd)


def test_the_in_flight_table_is_bounded_refuses_with_etoomanyrefs_and_closes_everything_at_the_end() -> None:
    before = _fd_table()
    in_flight = InFlight(files_max=8, sockets_max=2)
    pairs = [socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM) for _ in range(3)]
    fds = [_memfd(4096) for _ in range(9)]
    try:
        _send_fds(pairs[0][0], fds[:8], in_flight)
        with pytest.raises(OSError) as exc:
            _send_fds(pairs[0][0], fds[8:], in_flight)     # a ninth file
        assert exc.value.errno == errno.ETOOMANYREFS
        _send_fds(pairs[0][0], fds[:3], in_flight)          # files it holds already are fine
        _send_fds(pairs[1][0], fds[:1], in_flight)          # a second socket
        with pytest.raises(OSError) as exc:
            _send_fds(pairs[2][0], fds[:1], in_flight)      # a third one
        assert exc.value.errno == errno.ETOOMANYREFS
        assert in_flight.unheld(set()) == 8 * 4096
        # once the first socket's messages are received, the table has room again
        _receive_all(pairs[0][1])
        _send_fds(pairs[2][0], fds[8:], in_flight)
        assert len(in_flight) == 2   # fds[0] (still queued on the second socket) and fds[8]
    finally:
        in_flight.close()
        for fd in fds:
            os.close(fd)
        for a, b in pairs:
            a.close()
            b.close()
    assert _left_open(before) == {}
    a, b = socket.socketpair()
    fd = _memfd(1)
    try:
        with pytest.raises(OSError):  # the run is over
            in_flight.sending(a.fileno(), [fd])
    finally:
        os.close(fd)
        a.close()
        b.close()


def test_memory_files_are_known_by_their_filesystem_or_a_memory_directory(tmp_path: Path) -> None:
    shm = tmp_path / "shm"             # a root's private /dev/shm, on whatever /tmp is
    shm.mkdir()
    in_flight, plain = InFlight((str(shm),)), InFlight()
    a, b = socket.socketpair()
    fds = [_memfd(4096), os.open(shm / "x", os.O_RDWR | os.O_CREAT, 0o600),
           os.open(sys.executable, os.O_RDONLY), os.open(tmp_path, os.O_RDONLY)]
    os.write(fds[1], b"\1" * 4096)
    try:
        _send_fds(a, fds, in_flight)
        _send_fds(a, fds, plain)
        assert len(in_flight) == 2     # the memfd and the file of the memory directory
        assert len(plain) == 1 + _on_tmpfs(tmp_path)   # the memfd (and x if /tmp is a tmpfs)
    finally:
        in_flight.close()
        plain.close()
        for fd in fds:
            os.close(fd)
        a.close()
        b.close()


def _on_tmpfs(path: Path) -> bool:
    from sandlock import _syscalls
    fd = os.open(path, os.O_RDONLY)
    try:
        return int.from_bytes(_syscalls.statfs(fd)[:8], sys.byteorder) == 0x01021994
    finally:
        os.close(fd)


def test_the_cwd_of_a_thread_is_remembered_while_it_runs_forgotten_once_it_exits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sandlock import _notif, _rootscratch
    if _syscalls.kernel_version() < (6, 9):
        pytest.skip("PIDFD_THREAD needs Linux 6.9")  # of_thread reads /proc every time then
    me = os.getpid()
    cwd = _rootscratch.Cwd(str(tmp_path), b"/start", lambda: [me], lambda pid: pid == me)
    reads: List[object] = []

    def counted(name, real):  # type: ignore[no-untyped-def]
        return lambda *a: reads.append((name,) + a) or real(*a)
    monkeypatch.setattr(_notif, "proc_status_field", counted("status", _notif.proc_status_field))
    monkeypatch.setattr(_notif, "proc_stat", counted("stat", _notif.proc_stat))
    monkeypatch.setattr(_rootscratch, "proc_stat", counted("stat", _rootscratch.proc_stat))
    try:
        started, stop, tids = threading.Event(), threading.Event(), []

        def run() -> None:
            tids.append(threading.get_native_id())
            started.set()
            stop.wait(10)

        t = threading.Thread(target=run)
        t.start()
        started.wait(10)
        tid = tids[0]
        assert cwd.of_thread(tid) == b"/start" and cwd.of_thread(tid) == b"/start" and reads
        del reads[:]
        assert cwd.of_thread(tid) == b"/start" and reads == []  # remembered: no /proc read
        cwd.set(me, b"/usr")
        del reads[:]
        assert cwd.of_thread(tid) == b"/usr" and reads == []  # a chdir is seen at once
        stop.set()
        t.join()
        # join() returns once Python is done with the thread, a moment before the kernel's
        # task ends (until then it is alive, and remembered): wait for the task itself
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/self/task/{tid}") and time.monotonic() < deadline:
            time.sleep(0.005)
        with pytest.raises(OSError) as exc:  # exited: asked again, and gone
            cwd.of_thread(tid)
        assert exc.value.errno == errno.ESRCH and reads
    finally:
        cwd.close()
        _notif.forget_exited()


def test_the_cwd_table_forgets_processes_gone_and_keeps_the_live_ones(tmp_path: Path) -> None:
    # a command that forks (and chdir's) forever must not grow the supervisor's table
    from sandlock import _rootscratch
    cwd = _rootscratch.Cwd(str(tmp_path), b"/start", lambda: [], lambda pid: False)
    cwd.ENTRIES_MIN = cwd._sweep_at = 16
    live = [subprocess.Popen(["sleep", "60"]) for _ in range(8)]
    try:
        for p in live:
            cwd.set(p.pid, b"/live/%d" % p.pid)
        most = 0
        for i in range(120):
            gone = subprocess.Popen(["sleep", "60"])
            cwd.set(gone.pid, b"/gone")
            gone.kill()
            gone.wait()
            most = max(most, len(cwd._entries))
        assert most <= 2 * (16 + len(live)) + 1, most
        for p in live:  # the live processes' own directories survived every sweep
            assert cwd.get(p.pid) == b"/live/%d" % p.pid
    finally:
        for p in live:
            p.kill()
            p.wait()
        cwd.close()


def test_a_sweep_never_drops_an_entry_made_again_while_it_decides(tmp_path: Path) -> None:
    # The sweep finds the entry of a process gone; before it drops it, a new process
    # with that pid changes directory (another notification thread): that new entry
    # must stay.  The interleaving is made certain: the sweep's look-up of the entry
    # starts the other thread's chdir and gives it half a second.
    from sandlock import _rootscratch
    cwd = _rootscratch.Cwd(str(tmp_path), b"/start", lambda: [], lambda pid: False)
    live = subprocess.Popen(["sleep", "60"])
    sweeper = threading.current_thread()
    others: List[threading.Thread] = []

    class Racing(dict):  # type: ignore[type-arg]
        def get(self, key, default=None):  # type: ignore[no-untyped-def]
            value = super().get(key, default)
            if key == live.pid and threading.current_thread() is sweeper and not others:
                other = threading.Thread(target=cwd.set, args=(live.pid, b"/new"))
                others.append(other)
                other.start()
                other.join(0.5)
            return value

    try:
        cwd._entries = Racing({live.pid: (b"1", b"/old")})  # the pid's previous owner, gone
        cwd._sweep_at = 0
        cwd._sweep()
        others[0].join(10)
        assert cwd.get(live.pid) == b"/new"
        # control: the entry of the process gone alone is dropped
        cwd._entries = {live.pid: (b"1", b"/old")}
        cwd._sweep_at = 0
        cwd._sweep()
        assert live.pid not in cwd._entries
    finally:
        live.kill()
        live.wait()
        cwd.close()
