"""The stub's doom (_launch._doom) kills only once the stub has confined itself.

Before the Landlock signal scope holds the stub, its kill(-1, SIGKILL) would reach
every process of the user -- of the machine, as root -- so a stub whose supervisor
dies before the stub confined itself only leaves (SECURITY.md "Fork server").
Each case runs _doom in a forked child with os.kill and os.killpg replaced by a
recorder: nothing is ever signalled.
"""

from __future__ import annotations

import json
import os

import pytest

from sandlock import _launch


class _Prep:
    def __init__(self, scope_ruleset: int) -> None:
        self.scope_ruleset = scope_ruleset


def doom_in_child(confined: bool, scope_ruleset: int) -> "tuple[int, list]":
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: record, never signal
        try:
            os.close(r)
            calls: list = []
            os.kill = lambda *a: calls.append(["kill", *a])  # type: ignore[assignment]
            os.killpg = lambda *a: calls.append(["killpg", *a])  # type: ignore[assignment]
            real_exit = os._exit

            def leave(code: int) -> None:
                os.write(w, json.dumps(calls).encode())
                real_exit(code)
            os._exit = leave  # type: ignore[assignment]
            _launch._confined = confined
            _launch._doom(_Prep(scope_ruleset))  # type: ignore[arg-type]
        finally:
            os._exit = real_exit  # type: ignore[assignment]
            real_exit(99)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), json.loads(data or b"null")


@pytest.mark.parametrize("scope_ruleset", [5, -1], ids=["scoped", "no-scope"])
def test_a_stub_that_has_not_confined_itself_only_leaves(scope_ruleset: int) -> None:
    assert doom_in_child(False, scope_ruleset) == (137, [])


def test_a_confined_stub_kills_every_process_the_signal_scope_lets_it_reach() -> None:
    assert doom_in_child(True, 5) == (137, [["kill", -1, 9]])


def test_a_confined_stub_without_a_signal_scope_kills_its_own_group() -> None:
    assert doom_in_child(True, -1) == (137, [["killpg", 0, 9]])
