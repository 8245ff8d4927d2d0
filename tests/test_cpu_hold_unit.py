"""_syscalls.CpuHold (README "How it works"): a trapped thread is held on the supervisor's
CPU while it takes an injected fd, and given back the affinity it had.

Each case holds a real process (a child blocked on a pipe) from this process pinned to
one CPU, so that the CPU sched_getcpu(3) names is known: the child's affinity while held
and after, a child whose affinity is one CPU or leaves ours out (never held), a child
gone (nothing held, still on), a refusal (EPERM: off for good), and an affinity that
can no longer be set as it was (EINVAL: every CPU, for the kernel to narrow).
"""

from __future__ import annotations

import errno
import os
from typing import Iterator, Set

import pytest

from sandlock import _syscalls

MINE = sorted(os.sched_getaffinity(0))

pytestmark = pytest.mark.skipif(len(MINE) < 2, reason="holding a thread on one CPU needs two CPUs to choose from")


@pytest.fixture
def here() -> Iterator[int]:
    """This process on its first CPU: sched_getcpu() is that one."""
    os.sched_setaffinity(0, {MINE[0]})
    try:
        yield MINE[0]
    finally:
        os.sched_setaffinity(0, MINE)


@pytest.fixture
def child() -> Iterator[int]:
    """A process blocked on a pipe, as a trapped caller waits for its answer."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.read(r, 1)
        os._exit(0)
    os.close(r)
    try:
        yield pid
    finally:
        os.close(w)
        os.waitpid(pid, 0)


def test_a_caller_is_held_on_this_cpu_and_given_back_its_affinity(here: int, child: int) -> None:
    os.sched_setaffinity(child, MINE)
    hold = _syscalls.CpuHold()
    held = hold.take(child)
    assert held == set(MINE)
    assert os.sched_getaffinity(child) == {here}
    hold.give_back(child, held)
    assert os.sched_getaffinity(child) == set(MINE)


def test_a_caller_on_one_cpu_or_not_on_ours_is_never_held(here: int, child: int) -> None:
    hold = _syscalls.CpuHold()
    for mask in ({here}, set(MINE) - {here}):
        os.sched_setaffinity(child, mask)
        assert hold.take(child) is None
        assert os.sched_getaffinity(child) == mask  # never moved where it may not run
    assert hold.on


def test_a_caller_gone_is_not_held_and_the_hold_stays_on(here: int) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    hold = _syscalls.CpuHold()
    assert hold.take(pid) is None
    assert hold.on


def test_a_refusal_turns_the_hold_off(here: int, child: int, monkeypatch: pytest.MonkeyPatch) -> None:
    os.sched_setaffinity(child, MINE)
    calls = []

    def refused(pid: int, mask: Set[int]) -> None:
        calls.append(pid)
        raise PermissionError(errno.EPERM, "Operation not permitted")
    monkeypatch.setattr(os, "sched_setaffinity", refused)
    hold = _syscalls.CpuHold()
    assert hold.take(child) is None
    assert not hold.on
    assert hold.take(child) is None
    assert calls == [child]  # not asked again
    monkeypatch.undo()
    assert os.sched_getaffinity(child) == set(MINE)


def test_an_affinity_that_cannot_be_set_again_becomes_every_cpu(here: int, child: int,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    os.sched_setaffinity(child, MINE)
    hold = _syscalls.CpuHold()
    held = hold.take(child)
    assert held is not None and os.sched_getaffinity(child) == {here}
    real = os.sched_setaffinity
    asked = []

    def cpuset_changed(pid: int, mask) -> None:  # type: ignore[no-untyped-def]
        asked.append(sorted(mask))
        if len(asked) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")  # none of them in its cpuset now
        real(pid, mask)
    monkeypatch.setattr(os, "sched_setaffinity", cpuset_changed)
    hold.give_back(child, held)
    assert asked == [MINE, list(range(1024))]
    assert os.sched_getaffinity(child) == set(MINE)  # every CPU it may use, as before
