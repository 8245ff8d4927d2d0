"""In-process unit tests of the process handlers (_procops): each table row driven through
decode -> check -> do with a fake context (tests/fakectx.py) whose sandbox is the test
process itself.  Signals sent are signal 0 (a check that the target exists), so nothing
is disturbed; pid 1 stands for a process outside the sandbox.
"""

from __future__ import annotations

import errno
import os
import threading

import pytest

from fakectx import CONTINUE, Errno, Value
from fakectx import drive, fake  # noqa: F401  (fixture)

OUTSIDE = 1                 # init: alive, never a member of the fake sandbox
PRIO_PROCESS, PRIO_USER = 0, 2
IOPRIO_WHO_PROCESS = 1
PIDFD_THREAD = os.O_EXCL


def gone_pid() -> int:
    """A pid no process has (above pid_max)."""
    with open("/proc/sys/kernel/pid_max") as f:
        return int(f.read()) + 1


@pytest.mark.rows("prlimit64", "sched_setaffinity", "sched_setparam", "sched_setscheduler", "sched_setattr")
def test_calls_aimed_at_a_pid_continue_for_the_sandbox_only(fake) -> None:
    ctx = fake()
    for name in ("prlimit64", "sched_setaffinity", "sched_setparam", "sched_setscheduler", "sched_setattr"):
        assert drive(ctx, name, 0) is CONTINUE, name          # "myself"
        assert drive(ctx, name, os.getpid()) is CONTINUE, name
        assert drive(ctx, name, OUTSIDE) == Errno(errno.EPERM), name
        assert drive(ctx, name, gone_pid()) == Errno(errno.ESRCH), name


@pytest.mark.rows("setpriority", "ioprio_set")
def test_priorities_reach_one_process_of_the_sandbox_and_never_a_group_or_a_user(fake) -> None:
    ctx = fake()
    assert drive(ctx, "setpriority", PRIO_PROCESS, os.getpid()) is CONTINUE
    assert drive(ctx, "setpriority", PRIO_PROCESS, OUTSIDE) == Errno(errno.EPERM)
    assert drive(ctx, "setpriority", PRIO_USER, 0) == Errno(errno.EPERM)
    assert drive(ctx, "ioprio_set", IOPRIO_WHO_PROCESS, os.getpid()) is CONTINUE
    assert drive(ctx, "ioprio_set", IOPRIO_WHO_PROCESS, OUTSIDE) == Errno(errno.EPERM)
    assert drive(ctx, "ioprio_set", PRIO_PROCESS, 0) == Errno(errno.EPERM)  # IOPRIO_WHO_PROCESS is 1 there


@pytest.mark.rows("fork", "vfork", "clone")
def test_forks_continue_below_max_processes_and_get_eagain_at_it(fake) -> None:
    room = fake(max_processes=2)      # the sandbox is one process: one more may start
    full = fake(max_processes=1)
    for name in ("fork", "vfork", "clone"):
        assert drive(room, name) is CONTINUE, name
        assert drive(full, name) == Errno(errno.EAGAIN), name
    # the fork let through counts until its thread calls again (the step before every
    # handler settles it): the same thread's next fork has room again
    assert room.members.pending == {room.tid: room.members.pending[room.tid]}
    assert drive(room, "fork") is CONTINUE


@pytest.mark.rows("kill", "tkill", "tgkill")
def test_signals_reach_the_sandboxs_processes_only(fake) -> None:
    ctx = fake()
    tid = threading.get_native_id()
    assert drive(ctx, "kill", os.getpid(), 0) == Value(0)
    assert drive(ctx, "kill", 0, 0) == Value(0)                  # its own process group
    assert drive(ctx, "kill", OUTSIDE, 0) == Errno(errno.EPERM)
    assert drive(ctx, "kill", gone_pid(), 0) == Errno(errno.ESRCH)
    assert drive(ctx, "kill", -1, 0) == Errno(errno.ESRCH)           # every other process: there is none
    assert drive(ctx, "kill", -gone_pid(), 0) == Errno(errno.ESRCH)  # a group with none of its processes
    assert drive(ctx, "tkill", tid, 0) == Value(0)
    assert drive(ctx, "tkill", OUTSIDE, 0) == Errno(errno.EPERM)
    assert drive(ctx, "tgkill", os.getpid(), tid, 0) == Value(0)
    assert drive(ctx, "tgkill", OUTSIDE, tid, 0) == Errno(errno.ESRCH)  # not a thread of that process
    assert drive(ctx, "tgkill", 0, tid, 0) == Errno(errno.EINVAL)


@pytest.mark.rows("rt_sigqueueinfo", "rt_tgsigqueueinfo")
def test_queued_signals_continue_to_the_sandbox_only(fake) -> None:
    ctx = fake()
    for name in ("rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        assert drive(ctx, name, os.getpid()) is CONTINUE, name
        assert drive(ctx, name, OUTSIDE) == Errno(errno.EPERM), name


@pytest.mark.rows("pidfd_send_signal", "pidfd_open")
def test_pidfds_are_opened_and_signalled_for_the_sandboxs_processes_only(fake) -> None:
    ctx = fake()
    got = drive(ctx, "pidfd_open", os.getpid(), 0)
    assert isinstance(got, Value)
    with open(f"/proc/self/fdinfo/{ctx.fds[got.value]}") as f:
        assert f"Pid:\t{os.getpid()}\n" in f.read()
    assert drive(ctx, "pidfd_open", OUTSIDE, 0) == Errno(errno.EPERM)
    assert drive(ctx, "pidfd_open", os.getpid(), 0x1) == Errno(errno.EINVAL)
    assert drive(ctx, "pidfd_send_signal", got.value, 0, 0, 0) == Value(0)
    assert drive(ctx, "pidfd_send_signal", got.value, 0, ctx.mem.buffer(128), 0) == Errno(errno.EPERM)
    outside = ctx.fds.add(os.pidfd_open(OUTSIDE))
    assert drive(ctx, "pidfd_send_signal", outside, 0, 0, 0) == Errno(errno.EPERM)
