"""The stub's doom (_launch._doom) kills only once the stub has confined itself.

Before the Landlock signal scope holds the stub, its kill(-1, SIGKILL) would reach
every process of the user -- of the machine, as root -- so a stub whose supervisor
dies before the stub confined itself only leaves (SECURITY.md "The stub's doom before it
confined itself").
Each case runs _doom in a forked child with os.kill and os.killpg replaced by a
recorder: nothing is ever signalled.  So do the cases of the stub's end (_launch._reap):
the order of its kill and of its report of the command's status.
"""

from __future__ import annotations

import json
import os
import posix
import struct
from typing import Callable

import pytest

from sandlock import _launch


class _Prep:
    def __init__(self, scope_ruleset: int) -> None:
        self.scope_ruleset = scope_ruleset


def recorded_in_child(confined: bool, act: "Callable[[list], None]") -> "tuple[int, list]":
    """act(calls) in a forked child whose os.kill and os.killpg append to calls instead of
    signalling, and whose os._exit reports them: (its exit code, the calls)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: record, never signal
        real_write, real_exit = os.write, os._exit
        try:
            os.close(r)
            calls: list = []
            os.kill = lambda *a: calls.append(["kill", *a])  # type: ignore[assignment]
            os.killpg = lambda *a: calls.append(["killpg", *a])  # type: ignore[assignment]

            def leave(code: int) -> None:
                real_write(w, json.dumps(calls).encode())
                real_exit(code)
            os._exit = leave  # type: ignore[assignment]
            _launch._confined = confined
            act(calls)
        finally:
            os._exit = real_exit  # type: ignore[assignment]
            real_exit(99)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(data or b"null")


def doom_in_child(confined: bool, scope_ruleset: int) -> "tuple[int, list]":
    return recorded_in_child(confined, lambda calls: _launch._doom(_Prep(scope_ruleset)))  # type: ignore[arg-type]


@pytest.mark.parametrize("scope_ruleset", [5, -1], ids=["scoped", "no-scope"])
def test_a_stub_that_has_not_confined_itself_only_leaves(scope_ruleset: int) -> None:
    assert doom_in_child(False, scope_ruleset) == (137, [])


def test_a_confined_stub_kills_every_process_the_signal_scope_lets_it_reach() -> None:
    assert doom_in_child(True, 5) == (137, [["kill", -1, 9]])


def test_a_confined_stub_without_a_signal_scope_kills_its_own_group() -> None:
    assert doom_in_child(True, -1) == (137, [["killpg", 0, 9]])


def reap_in_child(confined: bool, scope_ruleset: int) -> "tuple[int, list]":
    """_reap in a forked child (the stub) whose own child (the command) exits 3: the
    calls it makes, in order, its write of the status on the status pipe among them."""
    def act(calls: list) -> None:
        command = os.fork()
        if command == 0:
            posix._exit(3)   # os._exit reports the calls: the stub's alone
        _, status_w = os.pipe()
        real_write = os.write

        def write(fd: int, data: bytes) -> int:
            if fd != status_w:
                return real_write(fd, data)
            calls.append(["status", os.waitstatus_to_exitcode(struct.unpack("=i", data)[0])])
            return len(data)
        os.write = write  # type: ignore[assignment]
        _launch._reap(_Prep(scope_ruleset), command, status_w)  # type: ignore[arg-type]
    return recorded_in_child(confined, act)


def test_a_scoped_stub_kills_the_rest_of_the_sandbox_before_it_reports_the_command_s_status() -> None:
    # the status then says the sandbox is over: a run from the fork server ends there
    # (_supervisor.Watch.ends_at_status), without waiting for the stub's own exit
    assert reap_in_child(True, 5) == (137, [["kill", -1, 9], ["status", 3]])


def test_a_stub_without_a_signal_scope_reports_first_then_kills_its_own_group_itself_included() -> None:
    assert reap_in_child(True, -1) == (137, [["status", 3], ["killpg", 0, 9]])


@pytest.mark.parametrize("scope_ruleset", [5, -1], ids=["scoped", "no-scope"])
def test_a_stub_that_has_not_confined_itself_reports_and_kills_nothing(scope_ruleset: int) -> None:
    assert reap_in_child(False, scope_ruleset) == (137, [["status", 3]])
