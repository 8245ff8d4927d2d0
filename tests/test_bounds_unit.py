"""Unit tests of the supervisor's bounds (README "Known limits"): copies made in the
kernel with holes kept (_elf.copy_range, patch_interp_in) and the worker pool's bound
(_notif.Workers)."""

from __future__ import annotations

import errno
import os
import threading
import time
from pathlib import Path
from typing import List

import pytest

import _elf
from _notif import Errno, Value, Workers


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
    assert sum(t.name == "sandlock-worker" for t in threading.enumerate()) == 3
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
    assert sum(t.name == "sandlock-worker" for t in threading.enumerate()) <= 3
    pool.close()
    while any(t.name == "sandlock-worker" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not any(t.name == "sandlock-worker" for t in threading.enumerate())
