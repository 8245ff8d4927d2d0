"""Where a run's watch (_supervisor.Watch) ends: at the stub's report of the command's
status where the stub sends it only once the rest of the sandbox is killed (a fork
server's stub under the signal scope: ends_at_status, _launch._reap), else at the
stub's exit.

The stub here is a forked child of the test that holds the status and error pipes'
write ends and leaves when told; the status is written by the test.
"""

from __future__ import annotations

import os
import select
import struct
import threading
import types

import pytest

from sandlock import _launch, _policy, _supervisor


class Stub:
    def __init__(self) -> None:
        self.pipes = _launch.make_pipes()
        self._leave_r, self._leave_w = os.pipe()
        self.pid = os.fork()
        if self.pid == 0:
            try:
                os.close(self._leave_w)
                os.read(self._leave_r, 1)
            finally:
                os._exit(0)
        self.pidfd = os.pidfd_open(self.pid)
        for fd in (self._leave_r, self.pipes.err_w):
            os.close(fd)   # the stub's own: the run's error pipe ends at its exit

    def report(self, code: int) -> None:
        os.write(self.pipes.status_w, struct.pack("=i", code << 8))
        os.close(self.pipes.status_w)   # the test's copy: the stub holds the pipe's other

    def alive(self) -> bool:
        return not select.select([self.pidfd], [], [], 0)[0]

    def leave(self) -> None:
        os.close(self._leave_w)

    def close(self) -> None:
        try:
            os.close(self._leave_w)
        except OSError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        for fd in (self.pidfd, *[fd for fd in self.pipes if fd != self.pipes.err_w]):
            try:
                os.close(fd)
            except OSError:
                pass


def watch(stub: Stub, scoped: bool, ends_at_status: bool) -> _supervisor.Watch:
    ctx = types.SimpleNamespace(policy_gate=None, upper=None, members=None)
    return _supervisor.Watch(_policy.make_policy(), ctx, stub.pid, stub.pidfd, True,  # type: ignore[arg-type]
                             forward_signals=False, restore_signals=True, input=None, scoped=scoped,
                             ends_at_status=ends_at_status)


def run_in_thread(w: _supervisor.Watch, stub: Stub) -> threading.Thread:
    thread = threading.Thread(target=w.run, args=(stub.pipes, {}, []), daemon=True)
    thread.start()
    return thread


def test_a_fork_server_s_scoped_run_ends_at_the_status_while_its_stub_is_still_there() -> None:
    stub = Stub()
    try:
        w = watch(stub, scoped=True, ends_at_status=True)
        stub.report(3)
        thread = run_in_thread(w, stub)
        thread.join(10)
        ended, alive = not thread.is_alive(), stub.alive()
        assert (ended, alive, w.status is not None and os.waitstatus_to_exitcode(w.status)) == (True, True, 3)
    finally:
        stub.close()


@pytest.mark.parametrize("scoped, ends_at_status", [(True, False), (False, True)],
                         ids=["direct-launch", "no-scope"])
def test_a_run_whose_status_does_not_say_the_sandbox_is_over_ends_at_the_stub_s_exit(
        scoped: bool, ends_at_status: bool) -> None:
    # direct: the stub is the caller's child, reaped as it ends; no scope: the stub
    # reports, then kills its group, itself included
    stub = Stub()
    try:
        w = watch(stub, scoped, ends_at_status)
        stub.report(3)
        thread = run_in_thread(w, stub)
        thread.join(0.5)
        waited = thread.is_alive()
        stub.leave()
        thread.join(10)
        assert (waited, thread.is_alive(), os.waitstatus_to_exitcode(w.status)) == (True, False, 3)
    finally:
        stub.close()


def test_a_fork_server_s_stub_that_ends_without_a_status_ends_the_run_at_its_exit() -> None:
    stub = Stub()
    try:
        w = watch(stub, scoped=True, ends_at_status=True)
        os.close(stub.pipes.status_w)   # the test's copy: the stub's dies with it, unwritten
        thread = run_in_thread(w, stub)
        thread.join(0.5)
        waited = thread.is_alive()
        stub.leave()
        thread.join(10)
        assert (waited, thread.is_alive(), w.status) == (True, False, None)
    finally:
        stub.close()
